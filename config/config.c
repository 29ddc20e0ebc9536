/*
 * config.c -- lnserve's configuration (see config.h for the contract).
 *
 * One table, server_keys[], lists every scalar server key. The file parser,
 * the flag parser, --print-config, --help and config_validate() all walk
 * it, so a key added to the table is at once a file key, a flag, printed,
 * documented and bounds-checked. Models are objects, not scalars, and have
 * their own small parser (parse_model) shared by the file and --model;
 * gain and bias may name a .npy or .safetensors file, read by
 * config/modelfile.c when the model is parsed.
 *
 * Every error message has the shape "origin: key.path: reason (expected
 * ...)", where origin is the file name, the flag ("--port"), or "--model".
 */
#include "config.h"
#include "modelfile.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Upper bound on a model's dim: gain and bias are held in memory, and
 * products like rows * dim must not come near overflow. */
#define DIM_MAX (1LL << 30)

/* Smallest magnitude that rounds to infinity in float32 (FLT_MAX plus half
 * an ulp): compared as a double, so no out-of-range conversion happens. */
#define F32_OVERFLOW 0x1.ffffffp127

#define DEFAULT_EPS 1e-5f

typedef enum key_type {
    KEY_INT,    /* int field; bounds min..max */
    KEY_SIZE,   /* size_t field; bounds min..max */
    KEY_ADDR,   /* char[] field of `size` bytes holding an IP literal */
    KEY_CPUS,   /* the cpus[] / n_cpus pair; JSON array or "0,2-3" flag */
    KEY_PATH,   /* char[] field of `size` bytes holding a file path; "" = unset */
    KEY_CHOICE, /* int field: the index of a name in `arg` ("a|b|c"); default def_str */
} key_type;

typedef struct key_spec {
    const char *key;      /* JSON key under "server"; flag --key-with-dashes */
    key_type type;
    long long min, max;   /* KEY_INT / KEY_SIZE bounds, inclusive */
    long long def;        /* KEY_INT / KEY_SIZE default */
    const char *def_str;  /* KEY_ADDR default */
    size_t offset;        /* of the field in struct config */
    size_t size;          /* of the field (KEY_ADDR: buffer incl. NUL) */
    const char *arg;      /* placeholder in --help */
    const char *help;
} key_spec;

#define FIELD(f) offsetof(config, f), sizeof(((config *)0)->f)

/*
 * Server keys. Copy-ready for the README:
 *
 * | key (flag)                        | type     | default   | bounds        |
 * |-----------------------------------|----------|-----------|---------------|
 * | address (--address)               | IP       | 127.0.0.1 | IPv4 or IPv6  |
 * | port (--port)                     | int      | 8000      | 0..65535      |
 * | io_threads (--io-threads)         | int      | 1         | 1..64         |
 * | workers (--workers)               | int      | 0 (=CPUs) | 0..1024       |
 * | cpus (--cpus 0,2-3)               | int list | [] (=0..) | 0..1023 each  |
 * | queue_capacity (--queue-capacity) | int      | 1024      | 1..2^24       |
 * | max_batch_rows (--max-batch-rows) | int      | 1         | 1..2^30       |
 * | max_queue_delay_us                | int      | 0         | 0..10^6       |
 * | max_body_bytes (--max-body-bytes) | int      | 64 MiB    | 1 KiB..4 GiB  |
 * | max_rows (--max-rows)             | int      | 65536     | 1..2^30       |
 * | max_n (--max-n)                   | int      | 2^20      | 1..2^30       |
 * | max_connections                   | int      | 1000      | 1..2^20       |
 * | connection_timeout_s              | int      | 60        | 1..86400      |
 * | drain_timeout_s                   | int      | 30        | 0..3600       |
 * | access_log (--access-log)         | int      | 0         | 0 or 1        |
 * | max_connections_per_ip            | int      | 0 (none)  | 0..2^20       |
 * | max_elements (--max-elements)     | int      | 2^26      | 1..2^32       |
 * | tls_cert_file, tls_key_file       | path     | "" (HTTP) | PEM files     |
 * | api_key_file (--api-key-file)     | path     | "" (none) | one key/line  |
 * | auth_open_health                  | int      | 1         | 0 or 1        |
 * | log_level (--log-level)           | string   | info      | debug, info, warn, error |
 * | log_format (--log-format)         | string   | text      | text, json    |
 * | binary_port (--binary-port)       | int      | -1 (off)  | -1..65535     |
 * | unix_socket (--unix-socket)       | path     | "" (off)  | <= 107 bytes  |
 *
 * Models ("models": [...], or --model '{...}' to append one):
 *
 * | key    | type                       | default   | rule                   |
 * |--------|----------------------------|-----------|------------------------|
 * | name   | string                     | required  | [A-Za-z0-9_.-]+, unique, not "layernorm"/"rmsnorm" |
 * | kind   | "layernorm" or "rmsnorm"   | layernorm |                        |
 * | dim    | int                        | 0 (any N) | 0..2^30; > 0 with gain/bias |
 * | groups | int                        | 1         | >= 1, divides dim      |
 * | eps    | number                     | 1e-5      | >= 0, finite in float32 |
 * | gain   | array of dim numbers, or a file (below) | all 1 |             |
 * | bias   | array of dim numbers, or a file (below) | all 0 |             |
 *
 * A file: {"file": "ln.npy"} or {"file": "m.safetensors", "tensor":
 * "encoder.layer.0.output.LayerNorm.weight"}; float16/bfloat16/float32/
 * float64 values, shape (N,) or (1, N) (config/modelfile.h). A relative
 * path resolves against the config file's directory (--model: the current
 * directory). With a file, dim may be omitted: it is the file's N.
 * --print-config prints the file reference, with the path made absolute,
 * not the values: it loads back to the same values from any directory.
 */
static const key_spec server_keys[] = {
    {"address", KEY_ADDR, 0, 0, 0, "127.0.0.1", FIELD(address), "ADDR",
     "IPv4 or IPv6 address to bind"},
    {"port", KEY_INT, 0, 65535, 8000, NULL, FIELD(port), "N",
     "HTTP port; 0 picks a free one"},
    {"io_threads", KEY_INT, 1, 64, 1, NULL, FIELD(io_threads), "N",
     "HTTP I/O threads"},
    {"workers", KEY_INT, 0, 1024, 0, NULL, FIELD(workers), "N",
     "kernel worker threads; 0 = one per online CPU"},
    {"cpus", KEY_CPUS, 0, CONFIG_MAX_CPUS - 1, 0, NULL, FIELD(cpus), "LIST",
     "CPUs to pin workers to, e.g. 0,2-3; empty = 0..workers-1"},
    {"queue_capacity", KEY_SIZE, 1, 1LL << 24, 1024, NULL,
     FIELD(queue_capacity), "N", "jobs queued at most; beyond: 503"},
    /* Dynamic batching (server/batch.h). Off by default: a worker that
     * holds several small jobs runs them one after another while another
     * worker may sit idle, so batching trades latency for fewer wake-ups. */
    {"max_batch_rows", KEY_SIZE, 1, 1LL << 30, 1, NULL, FIELD(max_batch_rows), "N",
     "dynamic batching: a worker gathers jobs up to this many rows (a larger job runs alone); "
     "1 = one job at a time"},
    {"max_queue_delay_us", KEY_INT, 0, 1000000, 0, NULL, FIELD(max_queue_delay_us), "US",
     "dynamic batching: longest a job waits, from its arrival in the queue, for others to "
     "join its batch; 0 = take only what is queued, never wait"},
    {"max_body_bytes", KEY_SIZE, 1024, 1LL << 32, 64LL << 20, NULL,
     FIELD(max_body_bytes), "BYTES", "largest request body; beyond: 413"},
    {"max_rows", KEY_SIZE, 1, 1LL << 30, 65536, NULL, FIELD(max_rows), "N",
     "most rows in one request"},
    {"max_n", KEY_SIZE, 1, 1LL << 30, 1LL << 20, NULL, FIELD(max_n), "N",
     "longest row for models without a fixed dim"},
    {"max_connections", KEY_INT, 1, 1LL << 20, 1000, NULL,
     FIELD(max_connections), "N", "concurrent HTTP connections"},
    {"connection_timeout_s", KEY_INT, 1, 86400, 60, NULL,
     FIELD(connection_timeout_s), "S",
     "idle timeout, and the longest one request may take to arrive (headers + body)"},
    {"drain_timeout_s", KEY_INT, 0, 3600, 30, NULL, FIELD(drain_timeout_s),
     "S", "on SIGTERM, longest wait for requests in flight"},
    {"access_log", KEY_INT, 0, 1, 0, NULL, FIELD(access_log), "0|1",
     "1 = one line per request on stderr (id, method, path, status, bytes, us)"},
    {"max_connections_per_ip", KEY_INT, 0, 1LL << 20, 0, NULL,
     FIELD(max_connections_per_ip), "N", "connections from one IP address; 0 = no limit"},
    {"max_elements", KEY_SIZE, 1, 1LL << 32, 1LL << 26, NULL, FIELD(max_elements), "N",
     "rows x N in one request"},
    {"tls_cert_file", KEY_PATH, 0, 0, 0, "", FIELD(tls_cert_file), "FILE",
     "PEM certificate: serve HTTPS (needs tls_key_file)"},
    {"tls_key_file", KEY_PATH, 0, 0, 0, "", FIELD(tls_key_file), "FILE",
     "PEM private key for tls_cert_file"},
    {"api_key_file", KEY_PATH, 0, 0, 0, "", FIELD(api_key_file), "FILE",
     "API keys, one per line: requests need Authorization: Bearer KEY"},
    {"auth_open_health", KEY_INT, 0, 1, 1, NULL, FIELD(auth_open_health), "0|1",
     "1 = /v2/health/* need no API key"},
    {"binary_port", KEY_INT, -1, 65535, -1, NULL, FIELD(binary_port), "N",
     "binary protocol (proto/frame.md) over TCP on server.address; -1 = off, 0 = a free port"},
    {"unix_socket", KEY_PATH, 0, 0, 0, "", FIELD(unix_socket), "PATH",
     "binary protocol on this Unix socket; \"\" = off"},
    {"log_level", KEY_CHOICE, 0, 0, 0, "info", FIELD(log_level), "debug|info|warn|error",
     "lines below this level are dropped"},
    {"log_format", KEY_CHOICE, 0, 0, 0, "text", FIELD(log_format), "text|json",
     "text lines, or one JSON object per line"},
};

#define N_KEYS (sizeof server_keys / sizeof *server_keys)

static int fail(char *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


/* Writes the message into err (CONFIG_ERR_MAX bytes) and returns -1. */
static int fail(char *err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, CONFIG_ERR_MAX, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}

static void *field(config *c, const key_spec *k)
{
    return (char *)c + k->offset;
}

/* Index of name among k->arg's "a|b|c" choices, or -1. */
static int choice_index(const key_spec *k, const char *name)
{
    const char *p = k->arg;
    size_t len = strlen(name);
    for (int i = 0; *p; i++) {
        size_t n = strcspn(p, "|");
        if (n == len && strncmp(p, name, n) == 0)
            return i;
        p += n + (p[n] == '|');
    }
    return -1;
}

/* Writes choice i of k into buf (cap bytes). */
static const char *choice_name(const key_spec *k, int i, char *buf, size_t cap)
{
    const char *p = k->arg;
    for (; i > 0 && *p; i--)
        p += strcspn(p, "|") + (p[strcspn(p, "|")] == '|');
    snprintf(buf, cap, "%.*s", (int)strcspn(p, "|"), p);
    return buf;
}

static int set_choice(config *c, const key_spec *k, const char *s, const char *where,
                      char *err)
{
    int i = choice_index(k, s);
    if (i < 0)
        return fail(err, "%s: \"%.32s\" is not one of %s", where, s, k->arg);
    *(int *)field(c, k) = i;
    return 0;
}

static long long get_number(const config *c, const key_spec *k)
{
    const void *p = (const char *)c + k->offset;

    if (k->type == KEY_INT)
        return *(const int *)p;
    return (long long)*(const size_t *)p;
}

/* Stores v after the bounds check; where = "origin: path" or "--flag". */
static int set_number(config *c, const key_spec *k, long long v,
                      const char *where, char *err)
{
    if (v < k->min || v > k->max)
        return fail(err, "%s: %lld is out of range (expected an integer in "
                         "%lld..%lld)",
                    where, v, k->min, k->max);
    if (k->type == KEY_INT)
        *(int *)field(c, k) = (int)v;
    else
        *(size_t *)field(c, k) = (size_t)v;
    return 0;
}

static int valid_address(const char *s)
{
    unsigned char tmp[16];

    return inet_pton(AF_INET, s, tmp) == 1 || inet_pton(AF_INET6, s, tmp) == 1;
}

static int set_address(config *c, const key_spec *k, const char *s,
                       const char *where, char *err)
{
    if (strlen(s) >= k->size || !valid_address(s))
        return fail(err, "%s: \"%.64s\" is not an IP address (expected an "
                         "IPv4 or IPv6 literal such as 127.0.0.1 or ::1)",
                    where, s);
    strcpy((char *)field(c, k), s);
    return 0;
}

static int set_path(config *c, const key_spec *k, const char *s, const char *where,
                    char *err)
{
    json_t *utf8;

    if (strlen(s) >= k->size)
        return fail(err, "%s: path is %zu bytes long (expected at most %zu)", where, strlen(s),
                    k->size - 1);
    /* A flag can carry any bytes, but --print-config writes JSON, whose
     * strings are UTF-8: json_string() checks it (found by
     * tests/fuzz/fuzz_config: "--api-key-file \xff" printed
     * {"error": "out of memory"}). */
    utf8 = json_string(s);
    if (!utf8)
        return fail(err, "%s: path is not valid UTF-8 (expected a UTF-8 path)", where);
    json_decref(utf8);
    strcpy((char *)field(c, k), s);
    return 0;
}

/* Appends cpu to the list, refusing out-of-range and repeated CPUs. */
static int add_cpu(int *cpus, int *n, long long cpu, const char *where,
                   char *err)
{
    if (cpu < 0 || cpu >= CONFIG_MAX_CPUS)
        return fail(err, "%s: CPU %lld is out of range (expected 0..%d)",
                    where, cpu, CONFIG_MAX_CPUS - 1);
    for (int i = 0; i < *n; i++)
        if (cpus[i] == cpu)
            return fail(err, "%s: CPU %lld is listed twice (expected each "
                             "CPU once)",
                        where, cpu);
    cpus[(*n)++] = (int)cpu;
    return 0;
}

/* Parses a whole decimal integer (no trailing text) into *v. */
static int parse_ll(const char *s, long long *v)
{
    char *end;

    if (!*s)
        return -1;
    errno = 0;
    *v = strtoll(s, &end, 10);
    return (errno || *end) ? -1 : 0;
}

/* "0,2,5-7" -> cpus. An empty string clears the list. */
static int parse_cpu_list(config *c, const char *s, const char *where,
                          char *err)
{
    int cpus[CONFIG_MAX_CPUS];
    int n = 0;
    const char *p = s;

    while (*p) {
        char *end;
        long long lo, hi;

        errno = 0;
        lo = strtoll(p, &end, 10);
        if (end == p || errno)
            goto bad;
        hi = lo;
        if (*end == '-') {
            p = end + 1;
            hi = strtoll(p, &end, 10);
            if (end == p || errno || hi < lo)
                goto bad;
        }
        if (*end != ',' && *end != '\0')
            goto bad;
        /* hi >= lo, so the unsigned difference is exact; hi - lo as a
         * long long overflows for "-9223372036854775807-9223372036854775807"
         * (tests/fuzz/corpus/config/args_cpu_range). */
        if ((unsigned long long)hi - (unsigned long long)lo >= CONFIG_MAX_CPUS)
            return fail(err, "%s: range %lld-%lld is out of range (expected "
                             "CPUs in 0..%d)",
                        where, lo, hi, CONFIG_MAX_CPUS - 1);
        for (long long cpu = lo; cpu <= hi; cpu++)
            if (add_cpu(cpus, &n, cpu, where, err) != 0)
                return -1;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            goto bad;
    }
    memcpy(c->cpus, cpus, sizeof(int) * (size_t)n);
    c->n_cpus = n;
    return 0;
bad:
    return fail(err, "%s: \"%.64s\" is not a CPU list (expected numbers and "
                     "ranges such as 0,2,4-7)",
                where, s);
}

static int set_cpus_json(config *c, const json_t *v, const char *where,
                         char *err)
{
    int cpus[CONFIG_MAX_CPUS];
    int n = 0;
    char path[192];

    if (!json_is_array(v))
        return fail(err, "%s: expected an array of CPU numbers, got %s",
                    where, type_name(v));
    if (json_array_size(v) > CONFIG_MAX_CPUS)
        return fail(err, "%s: %zu CPUs (expected at most %d)", where,
                    json_array_size(v), CONFIG_MAX_CPUS);
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *e = json_array_get(v, i);
        snprintf(path, sizeof path, "%s[%zu]", where, i);
        if (!json_is_integer(e))
            return fail(err, "%s: expected an integer CPU number, got %s",
                        path, type_name(e));
        if (add_cpu(cpus, &n, json_integer_value(e), path, err) != 0)
            return -1;
    }
    memcpy(c->cpus, cpus, sizeof(int) * (size_t)n);
    c->n_cpus = n;
    return 0;
}

/* Sets key k from a JSON value (a file's "server" object). */
static int set_from_json(config *c, const key_spec *k, const json_t *v,
                         const char *where, char *err)
{
    switch (k->type) {
    case KEY_INT:
    case KEY_SIZE:
        if (!json_is_integer(v))
            return fail(err, "%s: expected an integer in %lld..%lld, got %s",
                        where, k->min, k->max, type_name(v));
        return set_number(c, k, json_integer_value(v), where, err);
    case KEY_ADDR:
        if (!json_is_string(v))
            return fail(err, "%s: expected a string with an IP address, "
                             "got %s",
                        where, type_name(v));
        return set_address(c, k, json_string_value(v), where, err);
    case KEY_CPUS:
        return set_cpus_json(c, v, where, err);
    case KEY_PATH:
        if (!json_is_string(v))
            return fail(err, "%s: expected a string with a file path, got %s", where,
                        type_name(v));
        return set_path(c, k, json_string_value(v), where, err);
    case KEY_CHOICE:
        if (!json_is_string(v))
            return fail(err, "%s: expected one of %s, got %s", where, k->arg, type_name(v));
        return set_choice(c, k, json_string_value(v), where, err);
    }
    return fail(err, "%s: internal error: bad key type", where);
}

/* Sets key k from a command-line value. */
static int set_from_string(config *c, const key_spec *k, const char *s,
                           const char *where, char *err)
{
    long long v;

    switch (k->type) {
    case KEY_INT:
    case KEY_SIZE:
        if (parse_ll(s, &v) != 0)
            return fail(err, "%s: \"%.64s\" is not an integer (expected an "
                             "integer in %lld..%lld)",
                        where, s, k->min, k->max);
        return set_number(c, k, v, where, err);
    case KEY_ADDR:
        return set_address(c, k, s, where, err);
    case KEY_CPUS:
        return parse_cpu_list(c, s, where, err);
    case KEY_PATH:
        return set_path(c, k, s, where, err);
    case KEY_CHOICE:
        return set_choice(c, k, s, where, err);
    }
    return fail(err, "%s: internal error: bad key type", where);
}

static const key_spec *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(server_keys[i].key, name) == 0)
            return &server_keys[i];
    return NULL;
}

/* ---------------------------------------------------------------- models */

static void model_fini(config_model *m)
{
    free(m->gain);
    free(m->bias);
    free(m->gain_file);
    free(m->gain_tensor);
    free(m->bias_file);
    free(m->bias_tensor);
    m->gain = m->bias = NULL;
    m->gain_file = m->gain_tensor = m->bias_file = m->bias_tensor = NULL;
}

static int valid_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
              ch == '-'))
            return 0;
    }
    return 1;
}

/* A JSON number as a finite float32, or -1. */
static int json_f32(const json_t *v, float *out)
{
    double d;

    if (!json_is_number(v))
        return -1;
    d = json_number_value(v);
    if (!(fabs(d) < F32_OVERFLOW))
        return -1;
    *out = (float)d;
    return 0;
}

/* Reads an array of exactly dim finite float32 values into a new buffer. */
static int parse_vector(const json_t *v, size_t dim, const char *where,
                        float **out, char *err)
{
    float *p;

    if (!json_is_array(v))
        return fail(err, "%s: expected an array of %zu numbers or a {\"file\": ...} object, "
                         "got %s",
                    where, dim, type_name(v));
    if (dim == 0)
        return fail(err, "%s: given but dim is 0 (expected dim > 0 with gain "
                         "or bias)",
                    where);
    if (json_array_size(v) != dim)
        return fail(err, "%s: %zu values (expected dim = %zu)", where,
                    json_array_size(v), dim);
    p = malloc(dim * sizeof(float));
    if (!p)
        return fail(err, "%s: out of memory", where);
    for (size_t i = 0; i < dim; i++) {
        const json_t *e = json_array_get(v, i);
        if (json_f32(e, &p[i]) != 0) {
            free(p);
            if (!json_is_number(e))
                return fail(err, "%s[%zu]: expected a number, got %s", where,
                            i, type_name(e));
            return fail(err, "%s[%zu]: %g is not finite in float32 "
                             "(expected |x| <= 3.4028235e38)",
                        where, i, json_number_value(e));
        }
    }
    *out = p;
    return 0;
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && !strcmp(s + n - k, suffix);
}

/* "a" + "/" + "b", without doubling a slash that ends a. */
static char *join_path(const char *a, const char *b)
{
    size_t n = strlen(a);
    char *out = malloc(n + strlen(b) + 2);

    if (out)
        sprintf(out, "%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
    return out;
}

/*
 * path resolved against base_dir (the config file's directory; NULL: the
 * current directory) and made absolute, in a new string. Absolute, so
 * that --print-config's output names the same file wherever it is loaded
 * from. Not canonicalized: "..", symlinks stay as written.
 */
static int resolve_path(const char *path, const char *base_dir, const char *where, char **out,
                        char *err)
{
    char cwd[PATH_MAX], *base = NULL, *full;
    json_t *utf8;

    if (path[0] == '/') {
        full = strdup(path);
    } else {
        if (!base_dir || base_dir[0] != '/') {
            if (!getcwd(cwd, sizeof cwd))
                return fail(err, "%s: cannot resolve \"%.128s\": current directory: %s", where,
                            path, strerror(errno));
            base = base_dir ? join_path(cwd, base_dir) : strdup(cwd);
            if (!base)
                return fail(err, "%s: out of memory", where);
        }
        full = join_path(base ? base : base_dir, path);
        free(base);
    }
    if (!full)
        return fail(err, "%s: out of memory", where);
    if (strlen(full) >= PATH_MAX) {
        size_t len = strlen(full);
        free(full);
        return fail(err, "%s: path \"%.64s...\" resolves to %zu bytes (expected under %d)",
                    where, path, len, PATH_MAX);
    }
    /* --print-config writes it as a JSON string, which must be UTF-8; a
     * config file's directory (from argv) or the cwd need not be. */
    utf8 = json_string(full);
    if (!utf8) {
        free(full);
        return fail(err, "%s: path resolves to bytes that are not UTF-8 (expected a UTF-8 "
                         "path)",
                    where);
    }
    json_decref(utf8);
    *out = full;
    return 0;
}

/*
 * Parses a {"file": ..., "tensor": ...} object: *path gets the resolved
 * path, *tensor the tensor name for .safetensors (NULL for .npy); both
 * new strings, owned by the caller also on error.
 */
static int parse_file_ref(const json_t *v, const char *where, const char *base_dir, char **path,
                          char **tensor, char *err)
{
    const json_t *file = NULL, *name = NULL, *x;
    const char *key, *fname;

    json_object_foreach((json_t *)v, key, x) {
        if (!strcmp(key, "file"))
            file = x;
        else if (!strcmp(key, "tensor"))
            name = x;
        else
            return fail(err, "%s.%.64s: unknown key (expected file, and tensor for "
                             ".safetensors)",
                        where, key);
    }
    if (!file)
        return fail(err, "%s.file: missing (expected the path of a .npy or .safetensors file)",
                    where);
    if (!json_is_string(file))
        return fail(err, "%s.file: expected a string with a file path, got %s", where,
                    type_name(file));
    fname = json_string_value(file);
    if (has_suffix(fname, ".safetensors")) {
        if (!name)
            return fail(err, "%s.tensor: missing (expected the name of a tensor in %.128s, "
                             "e.g. \"encoder.layer.0.output.LayerNorm.weight\")",
                        where, fname);
        if (!json_is_string(name))
            return fail(err, "%s.tensor: expected a string with a tensor name, got %s", where,
                        type_name(name));
        *tensor = strdup(json_string_value(name));
        if (!*tensor)
            return fail(err, "%s: out of memory", where);
    } else if (has_suffix(fname, ".npy")) {
        if (name)
            return fail(err, "%s.tensor: given for a .npy file (expected it only with "
                             ".safetensors: a .npy file holds one array)",
                        where);
    } else {
        return fail(err, "%s.file: \"%.128s\" is neither .npy nor .safetensors (expected a "
                         "name ending in .npy or .safetensors)",
                    where, fname);
    }
    return resolve_path(fname, base_dir, where, path, err);
}

/* The number of values in a file reference, for a model without dim. */
static int probe_file(const char *path, const char *tensor, const char *where, size_t *len,
                      char *err)
{
    char why[MODELFILE_ERR_MAX];
    int rc = tensor ? modelfile_probe_safetensors(path, tensor, len, why)
                    : modelfile_probe_npy(path, len, why);

    if (rc != 0)
        return fail(err, "%s: %s", where, why);
    if ((long long)*len > DIM_MAX)
        return fail(err, "%s: %s holds %zu values (expected at most %lld)", where, path, *len,
                    DIM_MAX);
    return 0;
}

/* Reads exactly dim values from a file reference into a new buffer. */
static int load_file(const char *path, const char *tensor, size_t dim, const char *where,
                     float **out, char *err)
{
    char why[MODELFILE_ERR_MAX];
    float *p = malloc(dim * sizeof(float));
    int rc;

    if (!p)
        return fail(err, "%s: out of memory", where);
    rc = tensor ? modelfile_load_safetensors(path, tensor, dim, p, why)
                : modelfile_load_npy(path, dim, p, why);
    if (rc != 0) {
        free(p);
        return fail(err, "%s: %s", where, why);
    }
    *out = p;
    return 0;
}

/* Checks one model on its own; pre = "origin: models[i]" or similar. */
static int check_model(const config_model *m, const char *pre, char *err)
{
    if (memchr(m->name, '\0', sizeof m->name) == NULL || !valid_name(m->name))
        return fail(err, "%s.name: \"%.64s\" is not a valid name (expected "
                         "1..%d characters from [A-Za-z0-9_.-])",
                    pre, m->name, CONFIG_NAME_MAX - 1);
    if (!strcmp(m->name, "layernorm") || !strcmp(m->name, "rmsnorm"))
        return fail(err, "%s.name: \"%s\" is a built-in model (expected "
                         "another name)",
                    pre, m->name);
    if (m->kind != LN_KIND_LAYERNORM && m->kind != LN_KIND_RMSNORM)
        return fail(err, "%s.kind: unknown kind (expected \"layernorm\" or "
                         "\"rmsnorm\")",
                    pre);
    if ((long long)m->dim > DIM_MAX)
        return fail(err, "%s.dim: %zu is out of range (expected an integer "
                         "in 0..%lld)",
                    pre, m->dim, DIM_MAX);
    if (m->groups < 1 || (long long)m->groups > DIM_MAX)
        return fail(err, "%s.groups: %zu is out of range (expected an "
                         "integer in 1..%lld)",
                    pre, m->groups, DIM_MAX);
    if (m->dim > 0 && m->dim % m->groups != 0)
        return fail(err, "%s.groups: %zu does not divide dim %zu (expected "
                         "a divisor of dim)",
                    pre, m->groups, m->dim);
    if (!(m->eps >= 0.0f) || !isfinite(m->eps))
        return fail(err, "%s.eps: %g is invalid (expected a finite number "
                         ">= 0)",
                    pre, (double)m->eps);
    if ((m->gain || m->bias) && m->dim == 0)
        return fail(err, "%s.%s: given but dim is 0 (expected dim > 0 with "
                         "gain or bias)",
                    pre, m->gain ? "gain" : "bias");
    return 0;
}

/* A non-negative integer model field within lo..hi. */
static int model_int(const json_t *v, long long lo, long long hi,
                     const char *pre, const char *key, size_t *out, char *err)
{
    if (!json_is_integer(v))
        return fail(err, "%s.%s: expected an integer in %lld..%lld, got %s",
                    pre, key, lo, hi, type_name(v));
    if (json_integer_value(v) < lo || json_integer_value(v) > hi)
        return fail(err, "%s.%s: %lld is out of range (expected an integer "
                         "in %lld..%lld)",
                    pre, key, (long long)json_integer_value(v), lo, hi);
    *out = (size_t)json_integer_value(v);
    return 0;
}

/*
 * Parses one model object into *m (on failure *m owns nothing). pre is
 * "origin: models[i]"; base_dir resolves relative file paths (NULL: the
 * current directory).
 */
static int parse_model(const json_t *obj, const char *pre, const char *base_dir,
                       config_model *m, char *err)
{
    const char *key;
    const json_t *v, *gain = NULL, *bias = NULL;
    char where[256];
    int have_name = 0;

    memset(m, 0, sizeof *m);
    m->kind = LN_KIND_LAYERNORM;
    m->groups = 1;
    m->eps = DEFAULT_EPS;
    if (!json_is_object(obj))
        return fail(err, "%s: expected an object {\"name\": ..., \"dim\": "
                         "...}, got %s",
                    pre, type_name(obj));
    json_object_foreach((json_t *)obj, key, v) {
        if (!strcmp(key, "name")) {
            if (!json_is_string(v))
                return fail(err, "%s.name: expected a string, got %s", pre,
                            type_name(v));
            if (json_string_length(v) >= sizeof m->name ||
                !valid_name(json_string_value(v)))
                return fail(err, "%s.name: \"%.64s\" is not a valid name "
                                 "(expected 1..%d characters from "
                                 "[A-Za-z0-9_.-])",
                            pre, json_string_value(v), CONFIG_NAME_MAX - 1);
            strcpy(m->name, json_string_value(v));
            have_name = 1;
        } else if (!strcmp(key, "kind")) {
            const char *kind = json_is_string(v) ? json_string_value(v) : "";
            if (!json_is_string(v))
                return fail(err, "%s.kind: expected \"layernorm\" or "
                                 "\"rmsnorm\", got %s",
                            pre, type_name(v));
            if (!strcmp(kind, "layernorm"))
                m->kind = LN_KIND_LAYERNORM;
            else if (!strcmp(kind, "rmsnorm"))
                m->kind = LN_KIND_RMSNORM;
            else
                return fail(err, "%s.kind: unknown kind \"%.32s\" (expected "
                                 "\"layernorm\" or \"rmsnorm\")",
                            pre, kind);
        } else if (!strcmp(key, "dim")) {
            if (model_int(v, 0, DIM_MAX, pre, "dim", &m->dim, err) != 0)
                return -1;
        } else if (!strcmp(key, "groups")) {
            if (model_int(v, 1, DIM_MAX, pre, "groups", &m->groups, err) != 0)
                return -1;
        } else if (!strcmp(key, "eps")) {
            if (!json_is_number(v))
                return fail(err, "%s.eps: expected a number >= 0, got %s",
                            pre, type_name(v));
            if (json_f32(v, &m->eps) != 0 || m->eps < 0.0f)
                return fail(err, "%s.eps: %g is out of range (expected a "
                                 "finite float32 >= 0)",
                            pre, json_number_value(v));
        } else if (!strcmp(key, "gain")) {
            gain = v;
        } else if (!strcmp(key, "bias")) {
            bias = v;
        } else {
            return fail(err, "%s.%.64s: unknown key (expected name, kind, "
                             "dim, groups, eps, gain or bias)",
                        pre, key);
        }
    }
    if (!have_name)
        return fail(err, "%s.name: missing (expected a model name)", pre);
    /* gain and bias last: their length depends on dim, wherever it is, and
     * a file gives dim when the model leaves it 0: file references first,
     * the first one found fixing dim, then the values. */
    {
        const json_t *val[2] = {gain, bias};
        const char *const which[2] = {"gain", "bias"};
        float **dst[2] = {&m->gain, &m->bias};
        char **file[2] = {&m->gain_file, &m->bias_file};
        char **tensor[2] = {&m->gain_tensor, &m->bias_tensor};

        for (int i = 0; i < 2; i++) {
            snprintf(where, sizeof where, "%s.%s", pre, which[i]);
            if (json_is_object(val[i]) &&
                parse_file_ref(val[i], where, base_dir, file[i], tensor[i], err) != 0)
                goto fail;
        }
        for (int i = 0; i < 2 && m->dim == 0; i++) {
            snprintf(where, sizeof where, "%s.%s", pre, which[i]);
            if (*file[i] && probe_file(*file[i], *tensor[i], where, &m->dim, err) != 0)
                goto fail;
        }
        for (int i = 0; i < 2; i++) {
            snprintf(where, sizeof where, "%s.%s", pre, which[i]);
            if (*file[i]) {
                if (load_file(*file[i], *tensor[i], m->dim, where, dst[i], err) != 0)
                    goto fail;
            } else if (val[i] && parse_vector(val[i], m->dim, where, dst[i], err) != 0) {
                goto fail;
            }
        }
    }
    if (check_model(m, pre, err) != 0)
        goto fail;
    return 0;
fail:
    model_fini(m);
    return -1;
}

/* Parses obj and appends it to c->models; base_dir as for parse_model. */
static int append_model(config *c, const json_t *obj, const char *pre, const char *base_dir,
                        char *err)
{
    config_model m, *grown;

    if (parse_model(obj, pre, base_dir, &m, err) != 0)
        return -1;
    grown = realloc(c->models, (c->n_models + 1) * sizeof *grown);
    if (!grown) {
        model_fini(&m);
        return fail(err, "%s: out of memory", pre);
    }
    c->models = grown;
    c->models[c->n_models++] = m;
    return 0;
}

/* ------------------------------------------------------------ the file */

static int load_server(config *c, const json_t *server, const char *origin,
                       char *err)
{
    const char *key;
    const json_t *v;
    char where[256];

    if (!json_is_object(server))
        return fail(err, "%s: server: expected an object, got %s", origin,
                    type_name(server));
    json_object_foreach((json_t *)server, key, v) {
        const key_spec *k = find_key(key);
        snprintf(where, sizeof where, "%s: server.%.64s", origin, key);
        if (!k)
            return fail(err, "%s: unknown key (expected one of the keys "
                             "listed by --help)",
                        where);
        if (set_from_json(c, k, v, where, err) != 0)
            return -1;
    }
    return 0;
}

static int load_json(config *c, const json_t *root, const char *origin,
                     const char *base_dir, char *err)
{
    const char *key;
    const json_t *v;
    char pre[256];

    if (!json_is_object(root))
        return fail(err, "%s: expected an object with \"server\" and "
                         "\"models\", got %s",
                    origin, type_name(root));
    json_object_foreach((json_t *)root, key, v) {
        if (!strcmp(key, "server")) {
            if (load_server(c, v, origin, err) != 0)
                return -1;
        } else if (!strcmp(key, "models")) {
            if (!json_is_array(v))
                return fail(err, "%s: models: expected an array of model "
                                 "objects, got %s",
                            origin, type_name(v));
            for (size_t i = 0; i < json_array_size(v); i++) {
                snprintf(pre, sizeof pre, "%s: models[%zu]", origin, i);
                if (append_model(c, json_array_get(v, i), pre, base_dir, err) != 0)
                    return -1;
            }
        } else {
            return fail(err, "%s: %.64s: unknown key (expected \"server\" or "
                             "\"models\")",
                        origin, key);
        }
    }
    return 0;
}

/* Runs config_validate and puts origin in front of its message. */
static int validate_with_origin(const config *c, const char *origin,
                                char *err)
{
    char why[CONFIG_ERR_MAX];

    if (config_validate(c, why) == 0)
        return 0;
    return fail(err, "%s: %s", origin, why);
}

/* base_dir: the directory relative model file paths resolve against
 * (NULL: the current directory). */
static int load_root(config *c, json_t *root, const json_error_t *je,
                     const char *origin, const char *base_dir, char *err)
{
    int rc;

    if (!root)
        return fail(err, "%s: line %d, column %d: %s (expected valid JSON)",
                    origin, je->line, je->column, je->text);
    rc = load_json(c, root, origin, base_dir, err);
    json_decref(root);
    if (rc != 0)
        return -1;
    return validate_with_origin(c, origin, err);
}

int config_load_string(config *c, const char *json, const char *origin,
                       char *err)
{
    json_error_t je;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);

    return load_root(c, root, &je, origin ? origin : "config", NULL, err);
}

int config_load_file(config *c, const char *path, char *err)
{
    json_error_t je;
    json_t *root;
    FILE *f = fopen(path, "r");
    const char *slash = strrchr(path, '/');
    char *dir;
    int rc;

    if (!f)
        return fail(err, "%s: cannot open: %s (expected a readable JSON file)",
                    path, strerror(errno));
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
    fclose(f);
    /* Model files sit beside the config: "conf/a.json" -> "conf", "/a.json"
     * -> "/", "a.json" -> the current directory. */
    dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
    if (slash && !dir) {
        json_decref(root);
        return fail(err, "%s: out of memory", path);
    }
    rc = load_root(c, root, &je, path, dir, err);
    free(dir);
    return rc;
}

/* ------------------------------------------------------------ the flags */

/* Flags that are not server keys. */
enum meta_flag { META_NONE, META_CONFIG, META_CHECK, META_PRINT, META_HELP,
                 META_MODEL };

static enum meta_flag find_meta(const char *name)
{
    if (!strcmp(name, "config"))
        return META_CONFIG;
    if (!strcmp(name, "check_config"))
        return META_CHECK;
    if (!strcmp(name, "print_config"))
        return META_PRINT;
    if (!strcmp(name, "help"))
        return META_HELP;
    if (!strcmp(name, "model"))
        return META_MODEL;
    return META_NONE;
}

/*
 * Splits argv[*i] into a normalized name ("io_threads") and a value taken
 * from "=..." or from the next argument when the flag takes one (*i then
 * advances). *value is NULL for flags without one.
 */
static int split_flag(int argc, char **argv, int *i, char *name,
                      size_t name_cap, const char **value, int takes_value,
                      char *err)
{
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);

    if (len - 2 >= name_cap)
        return fail(err, "%.64s: unknown flag (expected one listed by --help)",
                    arg);
    for (size_t j = 2; j < len; j++)
        name[j - 2] = arg[j] == '-' ? '_' : arg[j];
    name[len - 2] = '\0';
    *value = NULL;
    if (!takes_value) {
        if (eq)
            return fail(err, "--%.*s: takes no value", (int)(len - 2),
                        arg + 2);
        return 0;
    }
    if (eq) {
        *value = eq + 1;
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        return fail(err, "%s: missing value", arg);
    }
    return 0;
}

/* The normalized name of argv[i] ("--io-threads=2" -> "io_threads"). */
static void flag_name(const char *arg, char *name, size_t cap)
{
    size_t j = 0;

    for (arg += 2; *arg && *arg != '=' && j + 1 < cap; arg++)
        name[j++] = *arg == '-' ? '_' : *arg;
    name[j] = '\0';
}

int config_parse_args(config *c, int argc, char **argv, char *err)
{
    const char *config_path = NULL;
    char name[64], where[128], pre[96];
    const char *value;
    int i;

    /* Pass 1: the file, so flags override it whatever their order. */
    for (i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0)
            continue;
        flag_name(argv[i], name, sizeof name);
        if (find_meta(name) == META_CONFIG) {
            if (split_flag(argc, argv, &i, name, sizeof name, &value, 1,
                           err) != 0)
                return -1;
            if (config_path)
                return fail(err, "--config: given twice (expected one "
                                 "config file)");
            config_path = value;
        } else if ((find_key(name) || find_meta(name) == META_MODEL) &&
                   !strchr(argv[i], '=')) {
            i++; /* skip the value: it may itself start with "--" */
        }
    }
    if (config_path && config_load_file(c, config_path, err) != 0)
        return -1;

    /* Pass 2: every other flag, in order. */
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const key_spec *k;
        enum meta_flag meta;

        if (!strcmp(arg, "-h")) {
            c->help = 1;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return fail(err, "%.64s: unexpected argument (expected --flag "
                             "[value]; see --help)",
                        arg);
        flag_name(arg, name, sizeof name);
        k = find_key(name);
        meta = find_meta(name);
        if (!k && meta == META_NONE)
            return fail(err, "%.64s: unknown flag (expected one listed by "
                             "--help)",
                        arg);
        if (split_flag(argc, argv, &i, name, sizeof name, &value,
                       k || meta == META_CONFIG || meta == META_MODEL,
                       err) != 0)
            return -1;
        snprintf(where, sizeof where, "--%.64s", arg + 2);
        if (strchr(where, '='))
            *strchr(where, '=') = '\0';
        switch (meta) {
        case META_CONFIG:
            break;
        case META_CHECK:
            c->check_only = 1;
            break;
        case META_PRINT:
            c->print_only = 1;
            break;
        case META_HELP:
            c->help = 1;
            break;
        case META_MODEL: {
            json_error_t je;
            json_t *obj = json_loads(value, JSON_REJECT_DUPLICATES, &je);
            int rc;
            if (!obj)
                return fail(err, "--model: column %d: %s (expected a JSON "
                                 "model object)",
                            je.column, je.text);
            snprintf(pre, sizeof pre, "--model: models[%zu]", c->n_models);
            rc = append_model(c, obj, pre, NULL, err);
            json_decref(obj);
            if (rc != 0)
                return -1;
            break;
        }
        case META_NONE:
            if (set_from_string(c, k, value, where, err) != 0)
                return -1;
            break;
        }
    }
    return validate_with_origin(c, "command line", err);
}

/* ------------------------------------------------------------ the rest */

void config_init(config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &server_keys[i];
        if (k->type == KEY_INT)
            *(int *)field(c, k) = (int)k->def;
        else if (k->type == KEY_SIZE)
            *(size_t *)field(c, k) = (size_t)k->def;
        else if (k->type == KEY_ADDR || k->type == KEY_PATH)
            snprintf((char *)field(c, k), k->size, "%s", k->def_str);
        else if (k->type == KEY_CHOICE)
            *(int *)field(c, k) = choice_index(k, k->def_str);
    }
}

void config_fini(config *c)
{
    for (size_t i = 0; i < c->n_models; i++)
        model_fini(&c->models[i]);
    free(c->models);
    c->models = NULL;
    c->n_models = 0;
}

int config_validate(const config *c, char *err)
{
    char pre[32];

    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &server_keys[i];
        if (k->type == KEY_INT || k->type == KEY_SIZE) {
            long long v = get_number(c, k);
            if (v < k->min || v > k->max)
                return fail(err, "server.%s: %lld is out of range (expected "
                                 "an integer in %lld..%lld)",
                            k->key, v, k->min, k->max);
        } else if (k->type == KEY_ADDR) {
            const char *s = (const char *)c + k->offset;
            if (!memchr(s, '\0', k->size) || !valid_address(s))
                return fail(err, "server.%s: not an IP address (expected an "
                                 "IPv4 or IPv6 literal)",
                            k->key);
        } else if (k->type == KEY_PATH) {
            if (!memchr((const char *)c + k->offset, '\0', k->size))
                return fail(err, "server.%s: path too long", k->key);
        } else if (k->type == KEY_CHOICE) {
            char name[32];
            int v = *(const int *)((const char *)c + k->offset);
            if (v < 0 || !choice_name(k, v, name, sizeof name)[0])
                return fail(err, "server.%s: %d is not one of %s", k->key, v, k->arg);
        }
    }
    if (!c->tls_cert_file[0] != !c->tls_key_file[0])
        return fail(err, "server.%s: set together with server.%s (expected both or neither)",
                    c->tls_cert_file[0] ? "tls_cert_file" : "tls_key_file",
                    c->tls_cert_file[0] ? "tls_key_file" : "tls_cert_file");
    if (c->n_cpus < 0 || c->n_cpus > CONFIG_MAX_CPUS)
        return fail(err, "server.cpus: %d CPUs (expected 0..%d)", c->n_cpus,
                    CONFIG_MAX_CPUS);
    for (int i = 0; i < c->n_cpus; i++)
        if (c->cpus[i] < 0 || c->cpus[i] >= CONFIG_MAX_CPUS)
            return fail(err, "server.cpus[%d]: CPU %d is out of range "
                             "(expected 0..%d)",
                        i, c->cpus[i], CONFIG_MAX_CPUS - 1);
    for (size_t i = 0; i < c->n_models; i++) {
        snprintf(pre, sizeof pre, "models[%zu]", i);
        if (check_model(&c->models[i], pre, err) != 0)
            return -1;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c->models[i].name, c->models[j].name))
                return fail(err, "models[%zu].name: \"%s\" is already used "
                                 "by models[%zu] (expected unique names)",
                            i, c->models[i].name, j);
    }
    return 0;
}

/*
 * The double whose shortest "%.Ng" form parses back to f: jansson prints
 * reals with JSON_REAL_PRECISION(9), which then yields "1e-05" rather than
 * "9.99999975e-06" for 1e-5f, and still parses back to the same float.
 */
static double short_double(float f)
{
    char tmp[32];

    for (int prec = 1; prec < 9; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, (double)f);
        if ((float)strtod(tmp, NULL) == f)
            return strtod(tmp, NULL);
    }
    return (double)f;
}

static json_t *vector_json(const float *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_real(short_double(v[i]))) != 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

/* gain or bias as printed: the file reference it came from (the path
 * already absolute), else the values. NULL on allocation failure. */
static json_t *param_json(const float *v, size_t n, const char *file, const char *tensor)
{
    json_t *o;

    if (!file)
        return vector_json(v, n);
    o = json_pack("{s:s}", "file", file);
    if (o && tensor && json_object_set_new(o, "tensor", json_string(tensor)) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* The effective config as a jansson tree, or NULL on allocation failure. */
static json_t *config_json(const config *c)
{
    json_t *root = json_object(), *server = json_object();
    json_t *models = json_array(), *cpus = json_array();
    int bad = !root || !server || !models || !cpus;

    for (int i = 0; !bad && i < c->n_cpus; i++)
        bad = json_array_append_new(cpus, json_integer(c->cpus[i])) != 0;
    for (size_t i = 0; !bad && i < N_KEYS; i++) {
        const key_spec *k = &server_keys[i];
        json_t *v;
        if (k->type == KEY_ADDR || k->type == KEY_PATH)
            v = json_string((const char *)c + k->offset);
        else if (k->type == KEY_CPUS)
            v = json_incref(cpus);
        else if (k->type == KEY_CHOICE) {
            char name[32];
            v = json_string(choice_name(k, *(const int *)((const char *)c + k->offset), name,
                                        sizeof name));
        } else
            v = json_integer(get_number(c, k));
        bad = json_object_set_new(server, k->key, v) != 0;
    }
    for (size_t i = 0; !bad && i < c->n_models; i++) {
        const config_model *m = &c->models[i];
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:f}", "name", m->name, "kind",
            m->kind == LN_KIND_RMSNORM ? "rmsnorm" : "layernorm", "dim",
            (json_int_t)m->dim, "groups", (json_int_t)m->groups, "eps",
            short_double(m->eps));
        bad = !o;
        if (!bad && m->gain)
            bad = json_object_set_new(o, "gain", param_json(m->gain, m->dim, m->gain_file,
                                                            m->gain_tensor)) != 0;
        if (!bad && m->bias)
            bad = json_object_set_new(o, "bias", param_json(m->bias, m->dim, m->bias_file,
                                                            m->bias_tensor)) != 0;
        if (json_array_append_new(models, o) != 0)
            bad = 1;
    }
    if (!bad)
        bad = json_object_set(root, "server", server) != 0 ||
              json_object_set(root, "models", models) != 0;
    json_decref(server);
    json_decref(models);
    json_decref(cpus);
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

void config_print(const config *c, void *file)
{
    FILE *f = file;
    json_t *root = config_json(c);

    if (!root) {
        fprintf(f, "{\"error\": \"out of memory\"}\n");
        return;
    }
    json_dumpf(root, f, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    fputc('\n', f);
    json_decref(root);
}

void config_usage(void *file, const char *argv0)
{
    FILE *f = file;
    char flag[64];

    fprintf(f,
            "Usage: %s [--config FILE] [flags]\n"
            "\n"
            "Serves LayerNorm and RMSNorm over the Open Inference Protocol.\n"
            "Flags override the config file whatever their order.\n"
            "\n"
            "  --config FILE              JSON config file (see config/example.json)\n"
            "  --check-config             validate the configuration and exit\n"
            "  --print-config             print the effective configuration as JSON and exit\n"
            "  --model JSON               add a model, e.g. '{\"name\":\"ln768\",\"dim\":768}'\n"
            "  --help, -h                 this text\n"
            "\n"
            "Server keys (\"server\" object in the file; flag --key or --key=value):\n",
            argv0 ? argv0 : "lnserve");
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &server_keys[i];
        size_t j;
        for (j = 0; k->key[j] && j + 1 < sizeof flag; j++)
            flag[j] = k->key[j] == '_' ? '-' : k->key[j];
        flag[j] = '\0';
        fprintf(f, "  --%s %-*s %s", flag,
                (int)(24 > strlen(flag) + 1 ? 24 - strlen(flag) - 1 : 0),
                k->arg, k->help);
        if (k->type == KEY_ADDR)
            fprintf(f, " (default %s)\n", k->def_str);
        else if (k->type == KEY_PATH)
            fprintf(f, " (default: none)\n");
        else if (k->type == KEY_CHOICE)
            fprintf(f, " (default %s)\n", k->def_str);
        else if (k->type == KEY_CPUS)
            fprintf(f, " (default: none)\n");
        else
            fprintf(f, " (default %lld, %lld..%lld)\n", k->def, k->min,
                    k->max);
    }
    fprintf(f, "\nModel keys (\"models\" array; built-ins \"layernorm\" and "
               "\"rmsnorm\" need none):\n"
               "  name (required, [A-Za-z0-9_.-]+), kind (layernorm|rmsnorm), "
               "dim (0 = any N),\n"
               "  groups (divides dim, default 1), eps (default 1e-5), "
               "gain and bias (dim numbers each,\n"
               "  or {\"file\": \"F.npy\"} or {\"file\": \"F.safetensors\", \"tensor\": \"NAME\"}: "
               "dim may then be omitted)\n");
}
