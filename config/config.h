/*
 * config.h -- lnserve's configuration: one JSON file (jansson) whose every
 * key is also a command-line flag, validated with the key path and the
 * reason on error. Table-driven: one table in config.c lists every scalar
 * key with its flag, type, bounds, default and help, and drives the file
 * parser, the flag parser, --print-config and --help alike.
 *
 * Single-threaded: called from main before any thread starts.
 *
 * File shape (every key optional):
 *   {
 *     "server": { "address": "127.0.0.1", "port": 8000, "io_threads": 1,
 *                 "workers": 0, "cpus": [0, 1], "queue_capacity": 1024,
 *                 "max_batch_rows": 1, "max_queue_delay_us": 0,
 *                 "max_body_bytes": 67108864, "max_rows": 65536,
 *                 "max_n": 1048576, "max_connections": 1000,
 *                 "connection_timeout_s": 60, "drain_timeout_s": 30 },
 *     "models": [ { "name": "ln768", "kind": "layernorm", "dim": 768,
 *                   "groups": 1, "eps": 1e-5, "gain": [...], "bias": [...] } ]
 *   }
 * gain and bias may instead name a file (config/modelfile.h):
 *   {"file": "ln.npy"} or {"file": "m.safetensors", "tensor": "ln.weight"};
 * a relative path resolves against the config file's directory (against
 * the current directory for --model and config_load_string), and dim may
 * then be omitted (or 0): it is taken from the file.
 * Flags: --config FILE, --check-config, --print-config, --help, and one
 * per server key with dashes for underscores (--port 8000, --io-threads 2,
 * --cpus 0,1, ...). --model JSON appends one model object. Flags override
 * the file whatever their order on the command line.
 */
#pragma once

#include <stddef.h>

#include "../core/ln.h"

#define CONFIG_ERR_MAX 512
#define CONFIG_MAX_CPUS 1024
#define CONFIG_NAME_MAX 64

typedef struct config_model {
    char name[CONFIG_NAME_MAX]; /* [A-Za-z0-9_.-]+, unique */
    ln_kind kind;
    size_t dim;    /* 0 = any N (only without gain/bias) */
    size_t groups; /* >= 1, divides dim when dim > 0 */
    float eps;     /* >= 0 */
    float *gain;   /* [dim] owned, or NULL */
    float *bias;   /* [dim] owned, or NULL */
    /* Where gain / bias came from when given as {"file": ...}: the path as
     * resolved (absolute, so --print-config output loads from anywhere)
     * and, for .safetensors, the tensor name; all owned, NULL when the
     * values were inline or absent. gain / bias hold the loaded values. */
    char *gain_file, *gain_tensor;
    char *bias_file, *bias_tensor;
} config_model;

typedef struct config {
    char address[64];        /* IPv4 or IPv6 literal to bind */
    int port;                /* 0 = pick a free port (printed at start) */
    int io_threads;          /* libmicrohttpd pool threads, >= 1 */
    int workers;             /* kernel threads; 0 = one per online CPU */
    int cpus[CONFIG_MAX_CPUS]; /* CPUs to pin workers to, round robin */
    int n_cpus;              /* 0 = CPUs 0..workers-1 */
    size_t queue_capacity;   /* jobs queued at most; beyond: 503 */
    size_t max_batch_rows;   /* dynamic batching: rows a worker gathers per batch */
    int max_queue_delay_us;  /* dynamic batching: longest wait for more; 0 = none */
    size_t max_body_bytes;   /* beyond: 413 */
    size_t max_rows;         /* per request */
    size_t max_n;            /* row length limit for dim-0 models */
    int max_connections;
    int connection_timeout_s; /* idle timeout; also the longest a request may take to arrive */
    int drain_timeout_s;      /* SIGTERM: longest wait for in-flight work */
    int access_log;           /* 1: log every request */
    int max_connections_per_ip; /* 0 = no limit */
    size_t max_elements;      /* rows x N per request */
    char tls_cert_file[512];  /* "" = plain HTTP */
    char tls_key_file[512];
    char api_key_file[512];   /* "" = no API keys (unless LNSERVE_API_KEYS) */
    int auth_open_health;     /* 1: health endpoints need no key */
    int log_level;            /* 0 debug, 1 info, 2 warn, 3 error (server/log.h order) */
    int log_format;           /* 0 text, 1 json */
    int binary_port;          /* binary protocol TCP port: -1 off, 0 any free */
    char unix_socket[108];    /* binary protocol Unix socket ("" = off); sun_path's size */
    config_model *models;     /* configured models (not the built-ins) */
    size_t n_models;
    int check_only;  /* --check-config given */
    int print_only;  /* --print-config given */
    int help;        /* --help given */
} config;

/* Fills *c with the defaults; owns nothing yet. */
void config_init(config *c);

/* Releases the models. *c may be config_init'ed again afterwards. */
void config_fini(config *c);

/*
 * Loads a JSON config file over *c. On error returns -1 and writes
 * "FILE: key.path: reason" into err (CONFIG_ERR_MAX bytes).
 */
int config_load_file(config *c, const char *path, char *err);

/* Same, from a string (for tests); origin names it in messages. */
int config_load_string(config *c, const char *json, const char *origin,
                       char *err);

/*
 * Parses argv: first --config FILE (if any) is loaded, then every flag is
 * applied over it. Returns 0, or -1 with the flag and reason in err.
 */
int config_parse_args(config *c, int argc, char **argv, char *err);

/* Cross-key checks (models unique, groups divide dim, gain length == dim,
 * ...). Returns 0 or -1 with the key path and reason in err. Called by
 * config_load_* and config_parse_args; exposed for tests. */
int config_validate(const config *c, char *err);

/* Writes the effective config as JSON (the file format) to f. */
void config_print(const config *c, void *file /* FILE* */);

/* Writes --help text to f. */
void config_usage(void *file /* FILE* */, const char *argv0);
