/*
 * test_config.c -- unit tests for config/config.c: defaults, the example
 * file, flags over a file, CPU lists, --model, every class of error (each
 * message must carry the origin and the key path), and --print-config
 * output loading back to the same configuration. Then config/modelfile.c:
 * .npy and .safetensors files the tests write themselves, good and broken
 * in every way listed in modelfile.h, and models that name such files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../config/config.h"
#include "../config/modelfile.h"

/* Writes text to a fresh temporary file; the caller unlinks path. */
static void write_temp(char path[64], const char *text)
{
    int fd;
    FILE *f;

    strcpy(path, "/tmp/lnserve-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_contains(const char *got, const char *want)
{
    if (!strstr(got, want)) {
        print_error("message: %s\nwanted:  %s\n", got, want);
        fail();
    }
}

static void test_defaults(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];

    config_init(&c);
    assert_string_equal(c.address, "127.0.0.1");
    assert_int_equal(c.port, 8000);
    assert_int_equal(c.io_threads, 1);
    assert_int_equal(c.workers, 0);
    assert_int_equal(c.n_cpus, 0);
    assert_int_equal(c.queue_capacity, 1024);
    assert_int_equal(c.max_batch_rows, 1); /* dynamic batching off */
    assert_int_equal(c.max_queue_delay_us, 0);
    assert_int_equal(c.max_body_bytes, 64u << 20);
    assert_int_equal(c.max_rows, 65536);
    assert_int_equal(c.max_n, 1u << 20);
    assert_int_equal(c.max_connections, 1000);
    assert_int_equal(c.binary_port, -1); /* binary protocol off */
    assert_string_equal(c.unix_socket, "");
    assert_int_equal(c.connection_timeout_s, 60);
    assert_int_equal(c.drain_timeout_s, 30);
    assert_int_equal(c.n_models, 0);
    assert_null(c.models);
    assert_false(c.check_only || c.print_only || c.help);
    assert_int_equal(config_validate(&c, err), 0);
    config_fini(&c);
}

static void test_example_file(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];
    const char *path = access("config/example.json", R_OK) == 0
                           ? "config/example.json"
                           : "../config/example.json";

    config_init(&c);
    if (config_load_file(&c, path, err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[0].name, "ln8_affine");
    assert_int_equal(c.models[0].kind, LN_KIND_LAYERNORM);
    assert_int_equal(c.models[0].dim, 8);
    assert_int_equal(c.models[0].groups, 1);
    assert_true(c.models[0].eps == 1e-5f);
    assert_non_null(c.models[0].gain);
    assert_non_null(c.models[0].bias);
    assert_true(c.models[0].gain[2] == 2.0f);
    assert_true(c.models[0].bias[7] == -0.5f);
    assert_string_equal(c.models[1].name, "rms16_g4");
    assert_int_equal(c.models[1].kind, LN_KIND_RMSNORM);
    assert_int_equal(c.models[1].groups, 4);
    assert_null(c.models[1].gain);
    config_fini(&c);
}

static void test_good_string(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];
    const char *doc =
        "{\"server\": {\"address\": \"::1\", \"port\": 0, \"io_threads\": 4,"
        " \"workers\": 3, \"cpus\": [4, 2, 0], \"max_body_bytes\": 1024,"
        " \"max_rows\": 1, \"queue_capacity\": 16777216,"
        " \"max_batch_rows\": 256, \"max_queue_delay_us\": 100,"
        " \"api_key_file\": \"/etc/lnserve/keys\", \"max_connections_per_ip\": 8},"
        " \"models\": [{\"name\": \"a.b-c_1\", \"dim\": 4, \"groups\": 2,"
        "   \"eps\": 0, \"bias\": [1, -2.5, 3e-3, 0]},"
        "  {\"name\": \"anyn\", \"kind\": \"rmsnorm\", \"groups\": 3}]}";

    config_init(&c);
    if (config_load_string(&c, doc, "good.json", err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    assert_string_equal(c.address, "::1");
    assert_int_equal(c.port, 0);
    assert_int_equal(c.io_threads, 4);
    assert_int_equal(c.workers, 3);
    assert_int_equal(c.n_cpus, 3);
    assert_int_equal(c.cpus[0], 4);
    assert_int_equal(c.cpus[2], 0);
    assert_int_equal(c.max_body_bytes, 1024);
    assert_int_equal(c.queue_capacity, 1 << 24);
    assert_int_equal(c.max_batch_rows, 256);
    assert_int_equal(c.max_queue_delay_us, 100);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.api_key_file, "/etc/lnserve/keys");
    assert_string_equal(c.tls_cert_file, "");
    assert_int_equal(c.max_connections_per_ip, 8);
    assert_null(c.models[0].gain);
    assert_true(c.models[0].bias[1] == -2.5f);
    assert_true(c.models[0].bias[2] == 3e-3f);
    assert_true(c.models[0].eps == 0.0f);
    assert_int_equal(c.models[1].dim, 0);
    assert_int_equal(c.models[1].groups, 3);
    assert_true(c.models[1].eps == 1e-5f);
    config_fini(&c);
    /* config_fini leaves a config that can be initialised again. */
    config_init(&c);
    assert_int_equal(c.n_models, 0);
    config_fini(&c);
}

static void test_flags_override_file(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX], path[64];
    char *argv[16];
    int argc = 0;

    write_temp(path, "{\"server\": {\"port\": 9000, \"io_threads\": 2,"
                     " \"workers\": 5},"
                     " \"models\": [{\"name\": \"fromfile\", \"dim\": 2}]}");
    argv[argc++] = "lnserve";
    argv[argc++] = "--port";
    argv[argc++] = "9100";
    argv[argc++] = "--io-threads=4";
    argv[argc++] = "--config";
    argv[argc++] = path;
    argv[argc++] = "--max_rows";
    argv[argc++] = "7";
    argv[argc++] = "--max-batch-rows=32";
    argv[argc++] = "--max-queue-delay-us";
    argv[argc++] = "250";
    argv[argc++] = "--address=0.0.0.0";
    argv[argc++] = "--check-config";
    argv[argc++] = "--print-config";
    config_init(&c);
    if (config_parse_args(&c, argc, argv, err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    unlink(path);
    assert_int_equal(c.port, 9100);
    assert_int_equal(c.io_threads, 4);
    assert_int_equal(c.workers, 5); /* from the file */
    assert_int_equal(c.max_rows, 7);
    assert_int_equal(c.max_batch_rows, 32);
    assert_int_equal(c.max_queue_delay_us, 250);
    assert_string_equal(c.address, "0.0.0.0");
    assert_true(c.check_only);
    assert_true(c.print_only);
    assert_false(c.help);
    assert_int_equal(c.n_models, 1);
    assert_string_equal(c.models[0].name, "fromfile");
    config_fini(&c);
}

static int parse(config *c, char *err, int argc, ...)
{
    char *argv[32];
    va_list ap;

    argv[0] = "lnserve";
    va_start(ap, argc);
    for (int i = 1; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    return config_parse_args(c, argc, argv, err);
}

static void test_cpus(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];

    config_init(&c);
    assert_int_equal(parse(&c, err, 3, "--cpus", "0,2,3"), 0);
    assert_int_equal(c.n_cpus, 3);
    assert_int_equal(c.cpus[0], 0);
    assert_int_equal(c.cpus[1], 2);
    assert_int_equal(c.cpus[2], 3);
    assert_int_equal(parse(&c, err, 2, "--cpus=1-3,7"), 0);
    assert_int_equal(c.n_cpus, 4);
    assert_int_equal(c.cpus[2], 3);
    assert_int_equal(c.cpus[3], 7);
    assert_int_equal(parse(&c, err, 2, "--cpus="), 0);
    assert_int_equal(c.n_cpus, 0);
    config_fini(&c);

    static const struct {
        const char *value, *want;
    } bad[] = {
        {"1,,2", "--cpus: \"1,,2\" is not a CPU list"},
        {"1,", "--cpus: \"1,\" is not a CPU list"},
        {"a", "is not a CPU list (expected numbers and ranges"},
        {"3-1", "is not a CPU list"},
        {"-1", "--cpus: CPU -1 is out of range"},
        {"3,3", "--cpus: CPU 3 is listed twice"},
        {"5000", "--cpus: CPU 5000 is out of range (expected 0..1023)"},
        {"0-99999", "--cpus: range 0-99999 is out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        config_init(&c);
        assert_int_equal(parse(&c, err, 3, "--cpus", bad[i].value), -1);
        expect_contains(err, bad[i].want);
        config_fini(&c);
    }
}

static void test_model_flag(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX], path[64];

    write_temp(path, "{\"models\": [{\"name\": \"first\"}]}");
    config_init(&c);
    assert_int_equal(parse(&c, err, 5, "--model",
                           "{\"name\":\"m4\",\"dim\":4,\"gain\":[1,2,3,4]}",
                           "--config", path),
                     0);
    assert_int_equal(c.n_models, 2);
    assert_string_equal(c.models[0].name, "first");
    assert_string_equal(c.models[1].name, "m4");
    assert_true(c.models[1].gain[3] == 4.0f);
    config_fini(&c);

    /* The same name as the file's model. */
    config_init(&c);
    assert_int_equal(parse(&c, err, 5, "--config", path, "--model",
                           "{\"name\":\"first\"}"),
                     -1);
    expect_contains(err, "models[1].name: \"first\" is already used by "
                         "models[0]");
    config_fini(&c);

    config_init(&c);
    assert_int_equal(parse(&c, err, 3, "--model", "{\"name\":"), -1);
    expect_contains(err, "--model: column");
    expect_contains(err, "(expected a JSON model object)");
    config_fini(&c);

    config_init(&c);
    assert_int_equal(parse(&c, err, 3, "--model=[1]", "--port"), -1);
    expect_contains(err, "--model: models[0]: expected an object");
    config_fini(&c);

    config_init(&c);
    assert_int_equal(parse(&c, err, 3, "--model",
                           "{\"name\":\"g\",\"dim\":6,\"groups\":4}"),
                     -1);
    expect_contains(err, "--model: models[0].groups: 4 does not divide dim 6");
    config_fini(&c);
    unlink(path);
}

static void test_meta_flags(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];

    config_init(&c);
    assert_int_equal(parse(&c, err, 2, "--help"), 0);
    assert_true(c.help);
    config_fini(&c);
    config_init(&c);
    assert_int_equal(parse(&c, err, 2, "-h"), 0);
    assert_true(c.help);
    config_fini(&c);
}

static const struct file_case {
    const char *doc;
    const char *want;
} file_cases[] = {
    /* bad JSON: the line number of the error */
    {"{\n  \"server\": {\n    \"port\": 80,,\n  }\n}", "t.json: line 3, "},
    {"{\"server\": {\"port\": 1, \"port\": 2}}", "t.json: line 1"},
    {"", "t.json: line"},
    {"[]", "t.json: expected an object with \"server\" and \"models\""},
    {"{\"sever\": {}}", "t.json: sever: unknown key (expected \"server\" or "
                        "\"models\")"},
    {"{\"server\": []}", "t.json: server: expected an object, got an array"},
    {"{\"server\": {\"prot\": 1}}", "t.json: server.prot: unknown key"},
    {"{\"server\": {\"port\": \"80\"}}",
     "t.json: server.port: expected an integer in 0..65535, got a string"},
    {"{\"server\": {\"port\": 80.5}}",
     "t.json: server.port: expected an integer in 0..65535, got a real"},
    {"{\"server\": {\"port\": 65536}}",
     "t.json: server.port: 65536 is out of range (expected an integer in "
     "0..65535)"},
    {"{\"server\": {\"io_threads\": 0}}",
     "server.io_threads: 0 is out of range (expected an integer in 1..64)"},
    {"{\"server\": {\"io_threads\": 65}}", "server.io_threads: 65 is out"},
    {"{\"server\": {\"workers\": -1}}", "server.workers: -1 is out of range"},
    {"{\"server\": {\"workers\": 1025}}", "server.workers: 1025 is out"},
    {"{\"server\": {\"queue_capacity\": 0}}", "server.queue_capacity: 0 is"},
    {"{\"server\": {\"queue_capacity\": 16777217}}",
     "server.queue_capacity: 16777217 is out of range"},
    {"{\"server\": {\"max_batch_rows\": 0}}",
     "server.max_batch_rows: 0 is out of range (expected an integer in 1..1073741824)"},
    {"{\"server\": {\"max_batch_rows\": 1073741825}}", "server.max_batch_rows: 1073741825 is"},
    {"{\"server\": {\"max_queue_delay_us\": -1}}",
     "server.max_queue_delay_us: -1 is out of range (expected an integer in 0..1000000)"},
    {"{\"server\": {\"max_queue_delay_us\": 1000001}}", "server.max_queue_delay_us: 1000001"},
    {"{\"server\": {\"max_queue_delay_us\": 1.5}}", "server.max_queue_delay_us"},
    {"{\"server\": {\"max_body_bytes\": 1023}}",
     "server.max_body_bytes: 1023 is out of range (expected an integer in "
     "1024..4294967296)"},
    {"{\"server\": {\"max_body_bytes\": 4294967297}}",
     "server.max_body_bytes: 4294967297 is out"},
    {"{\"server\": {\"max_rows\": 0}}", "server.max_rows: 0 is out of range"},
    {"{\"server\": {\"max_n\": 0}}", "server.max_n: 0 is out of range"},
    {"{\"server\": {\"max_connections\": 0}}", "server.max_connections: 0"},
    {"{\"server\": {\"connection_timeout_s\": 0}}",
     "server.connection_timeout_s: 0"},
    {"{\"server\": {\"drain_timeout_s\": 3601}}",
     "server.drain_timeout_s: 3601"},
    {"{\"server\": {\"address\": \"localhost\"}}",
     "t.json: server.address: \"localhost\" is not an IP address"},
    {"{\"server\": {\"address\": 1}}",
     "server.address: expected a string with an IP address"},
    {"{\"server\": {\"cpus\": 3}}",
     "server.cpus: expected an array of CPU numbers, got an integer"},
    {"{\"server\": {\"cpus\": [0, \"1\"]}}",
     "server.cpus[1]: expected an integer CPU number, got a string"},
    {"{\"server\": {\"cpus\": [0, 1024]}}",
     "server.cpus[1]: CPU 1024 is out of range"},
    {"{\"server\": {\"cpus\": [2, 2]}}", "server.cpus[1]: CPU 2 is listed "
                                         "twice"},
    {"{\"server\": {\"tls_cert_file\": 1}}",
     "server.tls_cert_file: expected a string with a file path, got an integer"},
    {"{\"server\": {\"tls_cert_file\": \"c.pem\"}}",
     "server.tls_cert_file: set together with server.tls_key_file"},
    {"{\"server\": {\"tls_key_file\": \"k.pem\"}}",
     "server.tls_key_file: set together with server.tls_cert_file"},
    {"{\"server\": {\"auth_open_health\": 2}}", "server.auth_open_health: 2 is out of range"},
    {"{\"server\": {\"log_level\": \"loud\"}}",
     "server.log_level: \"loud\" is not one of debug|info|warn|error"},
    {"{\"server\": {\"log_format\": 1}}", "server.log_format: expected one of text|json, got an integer"},
    {"{\"server\": {\"max_elements\": 0}}", "server.max_elements: 0 is out of range"},
    {"{\"models\": {}}", "t.json: models: expected an array"},
    {"{\"models\": [3]}", "t.json: models[0]: expected an object"},
    {"{\"models\": [{}]}", "t.json: models[0].name: missing"},
    {"{\"models\": [{\"name\": 5}]}", "models[0].name: expected a string"},
    {"{\"models\": [{\"name\": \"a b\"}]}",
     "t.json: models[0].name: \"a b\" is not a valid name (expected 1..63 "
     "characters from [A-Za-z0-9_.-])"},
    {"{\"models\": [{\"name\": \"\"}]}", "models[0].name: \"\" is not a "
                                         "valid name"},
    {"{\"models\": [{\"name\": "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}]}",
     "models[0].name: \"aaaa"},
    {"{\"models\": [{\"name\": \"layernorm\"}]}",
     "models[0].name: \"layernorm\" is a built-in model"},
    {"{\"models\": [{\"name\": \"rmsnorm\"}]}", "is a built-in model"},
    {"{\"models\": [{\"name\": \"a\"}, {\"name\": \"b\"}, {\"name\": "
     "\"a\"}]}",
     "t.json: models[2].name: \"a\" is already used by models[0] (expected "
     "unique names)"},
    {"{\"models\": [{\"name\": \"a\", \"knd\": 1}]}",
     "t.json: models[0].knd: unknown key (expected name, kind"},
    {"{\"models\": [{\"name\": \"a\", \"kind\": \"batchnorm\"}]}",
     "models[0].kind: unknown kind \"batchnorm\" (expected \"layernorm\" or "
     "\"rmsnorm\")"},
    {"{\"models\": [{\"name\": \"a\", \"kind\": 0}]}",
     "models[0].kind: expected \"layernorm\" or \"rmsnorm\", got an integer"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": -1}]}",
     "models[0].dim: -1 is out of range"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": \"8\"}]}",
     "models[0].dim: expected an integer"},
    {"{\"models\": [{\"name\": \"a\", \"groups\": 0}]}",
     "models[0].groups: 0 is out of range (expected an integer in 1.."},
    {"{\"models\": [{\"name\": \"a\", \"dim\": 10, \"groups\": 4}]}",
     "t.json: models[0].groups: 4 does not divide dim 10 (expected a "
     "divisor of dim)"},
    {"{\"models\": [{\"name\": \"a\", \"eps\": -1e-5}]}",
     "models[0].eps: -1e-05 is out of range (expected a finite float32 >= "
     "0)"},
    {"{\"models\": [{\"name\": \"a\", \"eps\": 1e39}]}",
     "models[0].eps: 1e+39 is out of range"},
    {"{\"models\": [{\"name\": \"a\", \"eps\": null}]}",
     "models[0].eps: expected a number >= 0, got null"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": 4, \"gain\": [1, 2, 3]}]}",
     "t.json: models[0].gain: 3 values (expected dim = 4)"},
    {"{\"models\": [{\"name\": \"a\", \"bias\": [1, 2, 3], \"dim\": 2}]}",
     "models[0].bias: 3 values (expected dim = 2)"},
    {"{\"models\": [{\"name\": \"a\", \"gain\": [1]}]}",
     "models[0].gain: given but dim is 0 (expected dim > 0 with gain or "
     "bias)"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": 2, \"gain\": {}}]}",
     "models[0].gain.file: missing (expected the path of a .npy or .safetensors file)"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": 2, \"gain\": \"w.npy\"}]}",
     "models[0].gain: expected an array of 2 numbers or a {\"file\": ...} object, got a string"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": 2, \"gain\": [1, \"x\"]}]}",
     "models[0].gain[1]: expected a number, got a string"},
    {"{\"models\": [{\"name\": \"a\", \"dim\": 2, \"gain\": [1, 2],"
     " \"bias\": [1e39, 0]}]}",
     "models[0].bias[0]: 1e+39 is not finite in float32"},
};

static void test_file_errors(void **state)
{
    for (size_t i = 0; i < sizeof file_cases / sizeof *file_cases; i++) {
        config c;
        char err[CONFIG_ERR_MAX];

        config_init(&c);
        err[0] = '\0';
        if (config_load_string(&c, file_cases[i].doc, "t.json", err) != -1) {
            print_error("accepted: %s\n", file_cases[i].doc);
            fail();
        }
        expect_contains(err, file_cases[i].want);
        assert_true(strlen(err) < CONFIG_ERR_MAX);
        config_fini(&c);
    }
}

static void test_missing_file(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];

    config_init(&c);
    assert_int_equal(config_load_file(&c, "/nonexistent/lnserve.json", err),
                     -1);
    expect_contains(err, "/nonexistent/lnserve.json: cannot open: No such "
                         "file or directory");
    assert_int_equal(parse(&c, err, 3, "--config", "/nonexistent/x.json"),
                     -1);
    expect_contains(err, "/nonexistent/x.json: cannot open");
    config_fini(&c);
}

static void test_flag_errors(void **state)
{
    static const struct {
        const char *a, *b, *want;
    } cases[] = {
        {"--prot", "80", "--prot: unknown flag"},
        {"--port", NULL, "--port: missing value"},
        {"--port", "eighty", "--port: \"eighty\" is not an integer (expected "
                             "an integer in 0..65535)"},
        {"--port=80x", NULL, "--port: \"80x\" is not an integer"},
        {"--port", "", "--port: \"\" is not an integer"},
        {"--port", "70000", "--port: 70000 is out of range (expected an "
                            "integer in 0..65535)"},
        {"--io-threads", "0", "--io-threads: 0 is out of range"},
        {"--max-body-bytes", "100", "--max-body-bytes: 100 is out of range "
                                    "(expected an integer in 1024.."},
        {"--address", "example.com", "--address: \"example.com\" is not an "
                                     "IP address"},
        {"serve", NULL, "serve: unexpected argument"},
        {"--help=yes", NULL, "--help: takes no value"},
        {"--config", NULL, "--config: missing value"},
        {"--", NULL, "--: unexpected argument"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        config c;
        char err[CONFIG_ERR_MAX];
        int rc;

        config_init(&c);
        if (cases[i].b)
            rc = parse(&c, err, 3, cases[i].a, cases[i].b);
        else
            rc = parse(&c, err, 2, cases[i].a);
        if (rc != -1) {
            print_error("accepted: %s %s\n", cases[i].a,
                        cases[i].b ? cases[i].b : "");
            fail();
        }
        expect_contains(err, cases[i].want);
        config_fini(&c);
    }

    {
        config c;
        char err[CONFIG_ERR_MAX];
        config_init(&c);
        assert_int_equal(parse(&c, err, 5, "--config", "a.json", "--config",
                               "b.json"),
                         -1);
        expect_contains(err, "--config: given twice");
        config_fini(&c);
    }
}

static void test_validate(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];

    config_init(&c);
    c.port = -5;
    assert_int_equal(config_validate(&c, err), -1);
    expect_contains(err, "server.port: -5 is out of range");
    config_init(&c);
    c.n_cpus = 1;
    c.cpus[0] = 4096;
    assert_int_equal(config_validate(&c, err), -1);
    expect_contains(err, "server.cpus[0]: CPU 4096 is out of range");
    config_fini(&c);
}

static void assert_same_config(const config *a, const config *b)
{
    assert_string_equal(a->address, b->address);
    assert_int_equal(a->port, b->port);
    assert_int_equal(a->io_threads, b->io_threads);
    assert_int_equal(a->workers, b->workers);
    assert_int_equal(a->n_cpus, b->n_cpus);
    assert_memory_equal(a->cpus, b->cpus, sizeof(int) * (size_t)a->n_cpus);
    assert_int_equal(a->queue_capacity, b->queue_capacity);
    assert_int_equal(a->max_batch_rows, b->max_batch_rows);
    assert_int_equal(a->max_queue_delay_us, b->max_queue_delay_us);
    assert_int_equal(a->max_body_bytes, b->max_body_bytes);
    assert_int_equal(a->max_rows, b->max_rows);
    assert_int_equal(a->max_n, b->max_n);
    assert_int_equal(a->max_connections, b->max_connections);
    assert_int_equal(a->connection_timeout_s, b->connection_timeout_s);
    assert_int_equal(a->drain_timeout_s, b->drain_timeout_s);
    assert_int_equal(a->n_models, b->n_models);
    for (size_t i = 0; i < a->n_models; i++) {
        const config_model *x = &a->models[i], *y = &b->models[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->dim, y->dim);
        assert_int_equal(x->groups, y->groups);
        assert_memory_equal(&x->eps, &y->eps, sizeof x->eps);
        assert_int_equal(x->gain == NULL, y->gain == NULL);
        assert_int_equal(x->bias == NULL, y->bias == NULL);
        if (x->gain)
            assert_memory_equal(x->gain, y->gain, x->dim * sizeof(float));
        if (x->bias)
            assert_memory_equal(x->bias, y->bias, x->dim * sizeof(float));
    }
}

/* Prints c, loads the text into a fresh config, and compares. Returns the
 * printed text (caller frees). */
static char *print_and_reload(const config *c)
{
    config back;
    char err[CONFIG_ERR_MAX];
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    assert_non_null(f);
    config_print(c, f);
    fclose(f);
    config_init(&back);
    if (config_load_string(&back, text, "printed", err) != 0) {
        print_error("%s\n%s\n", err, text);
        fail();
    }
    assert_same_config(c, &back);
    config_fini(&back);
    return text;
}

static void test_print_roundtrip(void **state)
{
    config c, again;
    char err[CONFIG_ERR_MAX];
    char *text, *text2;

    config_init(&c);
    text = print_and_reload(&c);
    free(text);

    /* Awkward floats: subnormals, FLT_MAX, -0, values with 9 digits. */
    assert_int_equal(
        parse(&c, err, 9, "--cpus", "3,1,2", "--port", "0", "--model",
              "{\"name\":\"odd\",\"dim\":6,\"groups\":3,\"eps\":1e-45,"
              "\"gain\":[1.4e-45,3.4028234e38,-0.0,0.1,1e-38,16777217],"
              "\"bias\":[-1.17549435e-38,2,3,4,5,6]}",
              "--model", "{\"name\":\"rms\",\"kind\":\"rmsnorm\"}"),
        0);
    text = print_and_reload(&c);
    /* Printing is stable: the reloaded config prints the same text. */
    config_init(&again);
    assert_int_equal(config_load_string(&again, text, "printed", err), 0);
    text2 = print_and_reload(&again);
    assert_string_equal(text, text2);
    expect_contains(text, "\"eps\": 1e-5\n");
    free(text);
    free(text2);
    config_fini(&again);
    config_fini(&c);
}

static void test_usage(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    assert_non_null(f);
    config_usage(f, "lnserve");
    fclose(f);
    expect_contains(text, "Usage: lnserve");
    expect_contains(text, "--io-threads N");
    expect_contains(text, "--cpus LIST");
    expect_contains(text, "--max-body-bytes BYTES");
    expect_contains(text, "(default 8000, 0..65535)");
    expect_contains(text, "--model JSON");
    free(text);
}

/* Inputs tests/fuzz/fuzz_config found crashing or misbehaving, kept as
 * regressions (their files are in tests/fuzz/corpus/config/ too). */
static void test_fuzz_regressions(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX], *text = NULL;
    size_t len = 0;
    FILE *f;

    /* hi - lo overflowed a long long (UBSan: signed integer overflow). */
    config_init(&c);
    assert_int_equal(
        parse(&c, err, 2, "--cpus=-9223372036854775807-9223372036854775807"),
        -1);
    expect_contains(err, "--cpus: range -9223372036854775807-"
                         "9223372036854775807 is out of range");
    config_fini(&c);

    /* A non-UTF-8 path was accepted, then --print-config could not write
     * it and printed {"error": "out of memory"}. */
    config_init(&c);
    assert_int_equal(parse(&c, err, 3, "--api-key-file", "keys\xff"), -1);
    expect_contains(err, "--api-key-file: path is not valid UTF-8");
    assert_int_equal(parse(&c, err, 3, "--api-key-file", "k\xc3\xa9ys"), 0);
    f = open_memstream(&text, &len);
    assert_non_null(f);
    config_print(&c, f);
    fclose(f);
    expect_contains(text, "\"api_key_file\": \"k\xc3\xa9ys\"");
    free(text);
    config_fini(&c);
}

/* ------------------------------------------------------------ model files */

/* A growing byte string: the file a test is about to write. */
typedef struct bytes {
    unsigned char *p;
    size_t n;
} bytes;

static void put(bytes *b, const void *data, size_t n)
{
    b->p = realloc(b->p, b->n + n + 1);
    assert_non_null(b->p);
    if (n)
        memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_str(bytes *b, const char *s)
{
    put(b, s, strlen(s));
}

/* v as size bytes, little-endian or big-endian. */
static void put_int(bytes *b, uint64_t v, int size, int big_endian)
{
    unsigned char t[8];

    for (int i = 0; i < size; i++)
        t[big_endian ? size - 1 - i : i] = (unsigned char)(v >> (8 * i));
    put(b, t, (size_t)size);
}

static void put_f32(bytes *b, float f, int big_endian)
{
    uint32_t u;

    memcpy(&u, &f, sizeof u);
    put_int(b, u, 4, big_endian);
}

static void put_f64(bytes *b, double d, int big_endian)
{
    uint64_t u;

    memcpy(&u, &d, sizeof u);
    put_int(b, u, 8, big_endian);
}

static void bytes_free(bytes *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

/* Writes b to dir/name; path gets the full name. */
static void write_file(const char *dir, const char *name, const bytes *b, char path[PATH_MAX])
{
    FILE *f;

    snprintf(path, PATH_MAX, "%s/%s", dir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b->p, 1, b->n, f), b->n);
    assert_int_equal(fclose(f), 0);
}

static void make_temp_dir(char dir[64])
{
    strcpy(dir, "/tmp/lnserve-test-modelfile-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];
    struct stat st;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_int_equal(lstat(path, &st), 0);
        if (S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

/*
 * A .npy file as numpy.save writes it: magic, version major.0, the header
 * length (2 bytes for 1.0, 4 after), the dict padded with spaces and a
 * newline to a multiple of 64 bytes, then data.
 */
static void npy_build(bytes *b, int major, const char *dict, const bytes *data)
{
    size_t pre = major == 1 ? 10 : 12, len = strlen(dict) + 1;

    len += (64 - (pre + len) % 64) % 64;
    put(b, "\x93NUMPY", 6);
    put_int(b, (uint64_t)major, 1, 0);
    put_int(b, 0, 1, 0);
    put_int(b, len, major == 1 ? 2 : 4, 0);
    put_str(b, dict);
    for (size_t i = strlen(dict) + 1; i < len; i++)
        put_str(b, " ");
    put_str(b, "\n");
    if (data)
        put(b, data->p, data->n);
}

/* Values exact in each dtype, with their float32 results. */
static const uint16_t f16_bits[] = {0x3c00, 0xc000, 0x3800, 0x3555, 0x0001,
                                    0x8000, 0x7bff, 0x03ff, 0x0400};
static const float f16_vals[] = {1.0f,    -2.0f,   0.5f,         0.333251953125f, 0x1p-24f,
                                 -0.0f,   65504.0f, 0x3ffp-24f,  0x1p-14f};
static const uint16_t bf16_bits[] = {0x3f80, 0xc000, 0x4049, 0x0080, 0x0001, 0x7f7f, 0x8000};
static const float bf16_vals[] = {1.0f, -2.0f, 3.140625f, 0x1p-126f, 0x1p-133f, 0x1.fep127f, -0.0f};
static const float f32_vals[] = {1.0f, -2.0f, 0.1f, 3.4028235e38f, 0x1p-149f, -0.0f, 16777216.0f};
/* float64 -> float32 rounds to nearest: 0.1, 2^24 + 1 (a tie, to even),
 * just under the overflow threshold (to FLT_MAX), and an underflow. */
static const double f64_in[] = {1.0, -2.0, 0.1, 16777217.0, 0x1.fffffefffffffp127, 1e-50, -0.0};
static const float f64_vals[] = {1.0f, -2.0f, 0.1f, 16777216.0f, 3.4028235e38f, 0.0f, -0.0f};

enum { NPY_F2, NPY_F4, NPY_F8 };

/* The data of test vector `dtype` and its expected floats and length. */
static void test_vector(int dtype, int big_endian, bytes *data, const float **want, size_t *n)
{
    switch (dtype) {
    case NPY_F2:
        *n = sizeof f16_bits / sizeof *f16_bits;
        for (size_t i = 0; i < *n; i++)
            put_int(data, f16_bits[i], 2, big_endian);
        *want = f16_vals;
        break;
    case NPY_F4:
        *n = sizeof f32_vals / sizeof *f32_vals;
        for (size_t i = 0; i < *n; i++)
            put_f32(data, f32_vals[i], big_endian);
        *want = f32_vals;
        break;
    default:
        *n = sizeof f64_in / sizeof *f64_in;
        for (size_t i = 0; i < *n; i++)
            put_f64(data, f64_in[i], big_endian);
        *want = f64_vals;
        break;
    }
}

/* Bitwise, so -0.0 and 0.0 differ. */
static void assert_floats(const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            print_error("value %zu: got %a, want %a\n", i, (double)got[i], (double)want[i]);
            fail();
        }
}

static void test_modelfile_npy_good(void **state)
{
    static const char *const codes[] = {"f2", "f4", "f8"};
    char dir[64], path[PATH_MAX], err[MODELFILE_ERR_MAX], dict[160];
    float got[16];
    size_t len;

    make_temp_dir(dir);
    /* Every version x dtype x byte order x shape form x fortran_order. */
    for (int major = 1; major <= 3; major++)
        for (int dt = NPY_F2; dt <= NPY_F8; dt++)
            for (int be = 0; be <= 1; be++)
                for (int two_d = 0; two_d <= 1; two_d++)
                    for (int fortran = 0; fortran <= 1; fortran++) {
                        bytes data = {0}, file = {0};
                        const float *want;
                        size_t n;
                        test_vector(dt, be, &data, &want, &n);
                        snprintf(dict, sizeof dict,
                                 "{'descr': '%c%s', 'fortran_order': %s, 'shape': %s%zu,), }",
                                 be ? '>' : '<', codes[dt], fortran ? "True" : "False",
                                 two_d ? "(1, " : "(", n);
                        npy_build(&file, major, dict, &data);
                        write_file(dir, "v.npy", &file, path);
                        memset(got, 0x55, sizeof got);
                        if (modelfile_load_npy(path, n, got, err) != 0) {
                            print_error("v%d %s: %s\n", major, dict, err);
                            fail();
                        }
                        assert_floats(got, want, n);
                        assert_int_equal(modelfile_probe_npy(path, &len, err), 0);
                        assert_int_equal(len, n);
                        bytes_free(&data);
                        bytes_free(&file);
                    }

    /* Other spellings of the header that numpy (or Python) writes. */
    static const char *const dicts[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2,)}",
        "{'shape': (2L,), 'fortran_order': False, 'descr': '<f4'}", /* Python 2 numpy */
        "{'descr':'<f4','fortran_order':False,'shape':(1,2,),}",
        "  { 'descr' : '<f4' ,\t'fortran_order' : False , 'shape' : ( 2 , ) , }  ",
    };
    for (size_t i = 0; i < sizeof dicts / sizeof *dicts; i++) {
        bytes data = {0}, file = {0};
        put_f32(&data, 1.5f, 0);
        put_f32(&data, -3.0f, 0);
        npy_build(&file, 1, dicts[i], &data);
        write_file(dir, "s.npy", &file, path);
        if (modelfile_load_npy(path, 2, got, err) != 0) {
            print_error("%s: %s\n", dicts[i], err);
            fail();
        }
        assert_true(got[0] == 1.5f && got[1] == -3.0f);
        bytes_free(&data);
        bytes_free(&file);
    }
    remove_tree(dir);
}

/* The message names the file first: "PATH: ...", and carries want. */
static void expect_file_error(const char *err, const char *path, const char *tensor,
                              const char *want)
{
    char prefix[PATH_MAX + 160];

    if (tensor)
        snprintf(prefix, sizeof prefix, "%s: tensor %s: ", path, tensor);
    else
        snprintf(prefix, sizeof prefix, "%s: ", path);
    if (strncmp(err, prefix, strlen(prefix)) != 0) {
        print_error("message: %s\nwanted a start: %s\n", err, prefix);
        fail();
    }
    assert_true(strlen(err) < MODELFILE_ERR_MAX);
    expect_contains(err, want);
}

/* Writes file, expects modelfile_load_npy(expected_len) to fail with want;
 * probe (when the file itself is bad, not its values or length) too. */
static void expect_npy_error(const char *dir, const bytes *file, size_t expected_len,
                             int bad_file, const char *want)
{
    char path[PATH_MAX], err[MODELFILE_ERR_MAX];
    float got[16];
    size_t len;

    write_file(dir, "bad.npy", file, path);
    memset(err, 0, sizeof err);
    if (modelfile_load_npy(path, expected_len, got, err) != -1) {
        print_error("accepted a file that should fail with: %s\n", want);
        fail();
    }
    expect_file_error(err, path, NULL, want);
    if (bad_file) {
        assert_int_equal(modelfile_probe_npy(path, &len, err), -1);
        expect_file_error(err, path, NULL, want);
    }
}

/* A good 4-value '<f4' v1 file with this dict, or with data replaced. */
static void npy_dict(bytes *file, const char *dict)
{
    bytes data = {0};

    for (int i = 0; i < 4; i++)
        put_f32(&data, (float)i, 0);
    npy_build(file, 1, dict, &data);
    bytes_free(&data);
}

static void test_modelfile_npy_errors(void **state)
{
    static const struct {
        const char *dict, *want;
    } headers[] = {
        {"[1, 2]", "header is not a dict literal this loader reads: at byte 0, expected '{'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1}",
         "header: unknown key 'extra' (expected only 'descr', 'fortran_order' and 'shape')"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}",
         "header: key 'descr' given twice"},
        {"{'descr': '<f4', 'fortran_order': False}", "header has no 'shape'"},
        {"{'shape': (4,), 'fortran_order': False}", "header has no 'descr'"},
        {"{'descr': '<i4', 'fortran_order': False, 'shape': (4,)}",
         "dtype '<i4' is not supported (expected '<f4', '<f8' or '<f2'"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (4,)}", "dtype '<c8' is not"},
        {"{'descr': '<V2', 'fortran_order': False, 'shape': (4,)}", "dtype '<V2' is not"},
        {"{'descr': '|f4', 'fortran_order': False, 'shape': (4,)}",
         "dtype '|f4' has no byte order (expected '<' or '>'"},
        {"{'descr': '=f4', 'fortran_order': False, 'shape': (4,)}", "dtype '=f4' has no byte"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}",
         "expected a dtype string such as '<f4' for 'descr'"},
        {"{'descr': '<f\\x34', 'fortran_order': False, 'shape': (4,)}",
         "expected a dtype string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}",
         "shape (2, 2) is not a non-empty vector (expected (N,) or (1, N), N > 0)"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 4)}", "shape (1, 1, 4) is"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': ()}", "shape () is not a"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (0,)}", "shape (0,) is not a"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4)}",
         "expected a tuple of integers such as (16,) for 'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-4,)}", "a tuple of integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (04,)}", "a tuple of integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
         "a tuple of integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296)}",
         "a tuple of integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904,)}",
         "but shape (4611686018427387904,) needs 4611686018427387904 values of 4 bytes"},
        {"{'descr': '<f4', 'fortran_order': 'no', 'shape': (4,)}",
         "expected True or False for 'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': Falsey, 'shape': (4,)}", "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x",
         "expected nothing but spaces after the closing '}'"},
        {"{'descr': '<f4', 'fortran_order': False 'shape': (4,)}", "expected ',' or '}'"},
        {"{'descr' '<f4'}", "expected ':'"},
        {"{descr: '<f4'}", "expected a quoted key"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'd\xc3\xa9': 1}",
         "expected a quoted key"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,)", "expected ',' or '}'"},
    };
    char dir[64], path[PATH_MAX], err[MODELFILE_ERR_MAX];
    bytes file = {0}, good = {0};
    float got[8];

    make_temp_dir(dir);
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        npy_dict(&file, headers[i].dict);
        expect_npy_error(dir, &file, 4, 1, headers[i].want);
        bytes_free(&file);
    }
    npy_dict(&good, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }");

    /* Truncated at every byte: each prefix fails, naming the file. */
    for (size_t cut = 0; cut < good.n; cut++) {
        bytes part = {0};
        put(&part, good.p, cut);
        expect_npy_error(dir, &part, 4, 1,
                         cut < 10                 ? "too short for a .npy file (expected at "
                                                    "least 10)"
                         : cut < good.n - 16      ? "goes beyond the file's"
                         : cut == good.n - 16 ? "shape (4,) needs 4 values of 4 bytes (expected "
                                                "the whole array: truncated file?)"
                                              : "truncated file?");
        bytes_free(&part);
    }
    /* The same for a version 2.0 file (4-byte header length). */
    {
        bytes data = {0}, v2 = {0};
        put_f64(&data, 1.0, 0);
        npy_build(&v2, 2, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", &data);
        for (size_t cut = 0; cut < v2.n; cut++) {
            bytes part = {0};
            put(&part, v2.p, cut);
            expect_npy_error(dir, &part, 1, 1, "");
            bytes_free(&part);
        }
        put_str(&v2, "!");
        expect_npy_error(dir, &v2, 1, 1, "1 bytes follow the array's 8 (expected the array to "
                                         "end the file)");
        bytes_free(&data);
        bytes_free(&v2);
    }

    /* Bad magic, versions, lengths. */
    put(&file, good.p, good.n);
    file.p[5] = 'Z';
    expect_npy_error(dir, &file, 4, 1, "bad magic (expected a .npy file");
    file.p[5] = 'Y';
    file.p[6] = 4;
    expect_npy_error(dir, &file, 4, 1, "format version 4.0 is not supported (expected 1.0, "
                                       "2.0 or 3.0)");
    file.p[6] = 1;
    file.p[7] = 1;
    expect_npy_error(dir, &file, 4, 1, "format version 1.1 is not supported");
    file.p[7] = 0;
    file.p[8] = 0xff;
    file.p[9] = 0xff;
    expect_npy_error(dir, &file, 4, 1, "header length 65535 goes beyond the file's 144 bytes "
                                       "(expected at most 134: truncated file?)");
    file.p[8] = 0x20; /* the dict cut short */
    file.p[9] = 0;
    expect_npy_error(dir, &file, 4, 1, "header is not a dict literal");
    bytes_free(&file);
    /* A NUL in the header. */
    npy_dict(&file, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}");
    file.p[60] = '\0';
    expect_npy_error(dir, &file, 4, 1, "header holds a NUL byte");
    bytes_free(&file);
    /* A v2 header longer than the loader reads, in a file that holds it. */
    {
        static char big[(1 << 20) + 64];
        memset(big, ' ', sizeof big - 1);
        memcpy(big, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", 55);
        npy_build(&file, 2, big, NULL);
        put(&file, good.p + good.n - 16, 16);
        expect_npy_error(dir, &file, 4, 1, "is too large (expected at most 1048576)");
        bytes_free(&file);
    }
    /* Trailing bytes, a wrong length. */
    put(&file, good.p, good.n);
    put(&file, "\0\0\0\0", 4);
    expect_npy_error(dir, &file, 4, 1, "4 bytes follow the array's 16");
    bytes_free(&file);
    expect_npy_error(dir, &good, 5, 0, "holds 4 values (expected 5)");
    expect_npy_error(dir, &good, 3, 0, "holds 4 values (expected 3)");

    /* Non-finite values, named by index. */
    {
        static const struct {
            const char *descr;
            int size;
            uint64_t bits[3];
            const char *want;
        } vals[] = {
            {"<f4", 4, {0, 0, 0x7fc00000}, "value at index 2 is NaN (expected finite values)"},
            {"<f4", 4, {0x7f800000, 0, 0}, "value at index 0 is +inf"},
            {">f4", 4, {0, 0xff800000, 0}, "value at index 1 is -inf"},
            {"<f2", 2, {0x3c00, 0x7c00, 0}, "value at index 1 is +inf"},
            {"<f2", 2, {0x3c00, 0, 0xfe00}, "value at index 2 is NaN"},
            {"<f8", 8, {0, 0x7e37e43c8800759cull, 0}, /* 1e300 */
             "value 1e+300 at index 1 overflows float32 (expected |x| <= 3.4028235e38)"},
            {"<f8", 8, {0, 0, 0x47effffff0000000ull}, /* FLT_MAX + half an ulp: a tie, up */
             "at index 2 overflows float32"},
            {"<f8", 8, {0xfff0000000000000ull, 0, 0}, "value at index 0 is -inf"},
            {"<f8", 8, {0, 0x7ff8000000000000ull, 0}, "value at index 1 is NaN"},
        };
        for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
            bytes data = {0};
            char dict[96];
            for (int j = 0; j < 3; j++)
                put_int(&data, vals[i].bits[j], vals[i].size, vals[i].descr[0] == '>');
            snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (3,)}",
                     vals[i].descr);
            npy_build(&file, 1, dict, &data);
            expect_npy_error(dir, &file, 3, 0, vals[i].want);
            bytes_free(&file);
            bytes_free(&data);
        }
    }

    /* Not a file: missing, a directory, a FIFO (refused, not waited on). */
    snprintf(path, sizeof path, "%s/missing.npy", dir);
    assert_int_equal(modelfile_load_npy(path, 4, got, err), -1);
    expect_file_error(err, path, NULL, "cannot open: No such file or directory (expected a "
                                       "readable file)");
    assert_int_equal(modelfile_load_npy(dir, 4, got, err), -1);
    expect_file_error(err, dir, NULL, "not a regular file");
    snprintf(path, sizeof path, "%s/fifo.npy", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(modelfile_load_npy(path, 4, got, err), -1);
    expect_file_error(err, path, NULL, "not a regular file");

    bytes_free(&good);
    remove_tree(dir);
}

/* One tensor of a .safetensors file being built. */
typedef struct st_tensor {
    const char *name, *dtype, *shape; /* shape as JSON: "[1, 4]" */
    bytes data;
} st_tensor;

/* A .safetensors file: the header names the tensors in the order given,
 * with offsets into data laid out in data_order (indices), as writers
 * that sort by dtype or name do. metadata: JSON object text or NULL. */
static void st_build(bytes *b, const char *metadata, const st_tensor *t, size_t n,
                     const size_t *data_order)
{
    bytes hdr = {0}, data = {0};
    size_t begin[16], end[16];
    char entry[512];

    assert_true(n <= 16);
    for (size_t k = 0; k < n; k++) {
        size_t i = data_order ? data_order[k] : k;
        begin[i] = data.n;
        put(&data, t[i].data.p, t[i].data.n);
        end[i] = data.n;
    }
    put_str(&hdr, "{");
    if (metadata) {
        put_str(&hdr, "\"__metadata__\": ");
        put_str(&hdr, metadata);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(entry, sizeof entry,
                 "%s\"%s\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%zu, %zu]}",
                 i || metadata ? ", " : "", t[i].name, t[i].dtype, t[i].shape, begin[i], end[i]);
        put_str(&hdr, entry);
    }
    put_str(&hdr, "}");
    while (hdr.n % 8)
        put_str(&hdr, " ");
    put_int(b, hdr.n, 8, 0);
    put(b, hdr.p, hdr.n);
    put(b, data.p, data.n);
    bytes_free(&hdr);
    bytes_free(&data);
}

/* A file from a header text and raw data. */
static void st_raw(bytes *b, const char *header, size_t data_len)
{
    put_int(b, strlen(header), 8, 0);
    put_str(b, header);
    for (size_t i = 0; i < data_len; i++)
        put_int(b, i, 1, 0);
}

static void test_modelfile_safetensors_good(void **state)
{
    char dir[64], path[PATH_MAX], err[MODELFILE_ERR_MAX];
    st_tensor t[] = {
        {"encoder.layer.0.output.LayerNorm.weight", "F32", "[7]", {0}},
        {"encoder.layer.0.output.LayerNorm.bias", "F16", "[1, 9]", {0}},
        {"b16", "BF16", "[7]", {0}},
        {"f64", "F64", "[1,7]", {0}},
        {"ids", "I64", "[2]", {0}},
        {"mask", "BOOL", "[3]", {0}},
        {"empty", "F32", "[0]", {0}},
        {"scalar", "F32", "[]", {0}},
        {"matrix", "U8", "[2, 3]", {0}},
        {"future", "F8_E4M3", "[5]", {0}},
    };
    static const size_t order[] = {9, 5, 3, 0, 8, 2, 7, 1, 6, 4};
    const size_t n = sizeof t / sizeof *t;
    bytes file = {0};
    float got[16];
    size_t len;
    static const struct {
        const char *name;
        const float *want;
        size_t n;
    } loads[] = {
        {"encoder.layer.0.output.LayerNorm.weight", f32_vals, 7},
        {"encoder.layer.0.output.LayerNorm.bias", f16_vals, 9},
        {"b16", bf16_vals, 7},
        {"f64", f64_vals, 7},
    };

    for (size_t i = 0; i < 7; i++)
        put_f32(&t[0].data, f32_vals[i], 0);
    for (size_t i = 0; i < 9; i++)
        put_int(&t[1].data, f16_bits[i], 2, 0);
    for (size_t i = 0; i < 7; i++)
        put_int(&t[2].data, bf16_bits[i], 2, 0);
    for (size_t i = 0; i < 7; i++)
        put_f64(&t[3].data, f64_in[i], 0);
    put_int(&t[4].data, 1, 8, 0);
    put_int(&t[4].data, 2, 8, 0);
    put(&t[5].data, "\1\0\1", 3);
    put_f32(&t[7].data, 5.0f, 0);
    put_str(&t[8].data, "abcdef");
    put_str(&t[9].data, "12345");

    make_temp_dir(dir);
    st_build(&file, "{\"format\": \"pt\", \"source\": \"test_config\"}", t, n, order);
    write_file(dir, "m.safetensors", &file, path);
    for (size_t i = 0; i < sizeof loads / sizeof *loads; i++) {
        memset(got, 0x55, sizeof got);
        if (modelfile_load_safetensors(path, loads[i].name, loads[i].n, got, err) != 0) {
            print_error("%s\n", err);
            fail();
        }
        assert_floats(got, loads[i].want, loads[i].n);
        assert_int_equal(modelfile_probe_safetensors(path, loads[i].name, &len, err), 0);
        assert_int_equal(len, loads[i].n);
    }
    /* The other tensors are in a good file, but are no vectors of floats. */
    assert_int_equal(modelfile_load_safetensors(path, "ids", 2, got, err), -1);
    expect_file_error(err, path, "ids", "dtype I64 is not supported (expected F32, F16, BF16 or "
                                        "F64)");
    assert_int_equal(modelfile_load_safetensors(path, "future", 5, got, err), -1);
    expect_file_error(err, path, "future", "dtype F8_E4M3 is not supported");
    assert_int_equal(modelfile_probe_safetensors(path, "empty", &len, err), -1);
    expect_file_error(err, path, "empty", "shape [0] is not a non-empty vector (expected [N] or "
                                          "[1, N], N > 0)");
    assert_int_equal(modelfile_load_safetensors(path, "scalar", 1, got, err), -1);
    expect_file_error(err, path, "scalar", "shape [] is not a non-empty vector");
    assert_int_equal(modelfile_load_safetensors(path, "b16", 6, got, err), -1);
    expect_file_error(err, path, "b16", "holds 7 values (expected 6)");
    assert_int_equal(modelfile_load_safetensors(path, "encoder.layer.1.output.LayerNorm.weight",
                                                7, got, err),
                     -1);
    expect_file_error(err, path, "encoder.layer.1.output.LayerNorm.weight",
                      "not in the file (expected one of its 10 tensors: future, mask, f64, ");
    assert_int_equal(modelfile_load_safetensors(path, "__metadata__", 7, got, err), -1);
    expect_file_error(err, path, "__metadata__", "not in the file");
    bytes_free(&file);

    /* No __metadata__, and a header without padding. */
    {
        bytes one = {0};
        st_tensor w = {"w", "F32", "[7]", {0}};
        put(&w.data, t[0].data.p, t[0].data.n);
        st_build(&one, NULL, &w, 1, NULL);
        write_file(dir, "one.safetensors", &one, path);
        assert_int_equal(modelfile_load_safetensors(path, "w", 7, got, err), 0);
        assert_floats(got, f32_vals, 7);
        bytes_free(&one);
        st_raw(&one, "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 0);
        put_int(&one, 0x3f80, 2, 0);
        put_int(&one, 0xbf80, 2, 0);
        write_file(dir, "raw.safetensors", &one, path);
        assert_int_equal(modelfile_load_safetensors(path, "w", 2, got, err), 0);
        assert_true(got[0] == 1.0f && got[1] == -1.0f);
        bytes_free(&one);
        bytes_free(&w.data);
    }
    for (size_t i = 0; i < n; i++)
        bytes_free(&t[i].data);
    remove_tree(dir);
}

/* Writes file, expects loading tensor "w" (4 values) to fail with want. */
static void expect_st_error(const char *dir, const bytes *file, const char *tensor,
                            size_t expected_len, const char *want)
{
    char path[PATH_MAX], err[MODELFILE_ERR_MAX];
    float got[16];

    write_file(dir, "bad.safetensors", file, path);
    memset(err, 0, sizeof err);
    if (modelfile_load_safetensors(path, tensor, expected_len, got, err) != -1) {
        print_error("accepted a file that should fail with: %s\n", want);
        fail();
    }
    expect_file_error(err, path, tensor, want);
}

#define W4 "\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}"

static void test_modelfile_safetensors_errors(void **state)
{
    static const struct {
        const char *header;
        size_t data_len;
        const char *want;
    } headers[] = {
        {"[" W4 "]", 16, "header does not start with '{' (expected a JSON object)"},
        {"{" W4 ",}", 16, "header is not valid JSON: "},
        {"{" W4 "} x", 16, "header is not valid JSON: "},
        {"{" W4 ", " W4 "}", 16, "header is not valid JSON: duplicate object key"},
        {"{\"w\": 3}", 16, "header: tensor \"w\": not an object"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16], \"x\": 1}}",
         16, "header: tensor \"w\": unknown key \"x\" (expected dtype, shape and data_offsets)"},
        {"{\"w\": {\"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "header: tensor \"w\": dtype is missing"},
        {"{\"w\": {\"dtype\": 32, \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "dtype is not a string (expected a string such as \"F32\")"},
        {"{\"w\": {\"dtype\": \"F33\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "dtype F33 is not supported (expected F32, F16, BF16 or F64)"},
        {"{\"w\": {\"dtype\": \"f32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "dtype f32 is not supported"},
        {"{\"w\": {\"dtype\": \"I32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "dtype I32 is not supported"},
        {"{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 16]}}", 16,
         "header: tensor \"w\": shape is missing (expected an array of integers)"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": 4, \"data_offsets\": [0, 16]}}", 16,
         "shape is not an array"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", 16,
         "header: tensor \"w\": shape[0] is not an integer >= 0"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 4.0], \"data_offsets\": [0, 16]}}", 16,
         "shape[1] is not an integer"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [\"4\"], \"data_offsets\": [0, 16]}}", 16,
         "shape[0] is not an integer"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
         "\"data_offsets\": [0, 16]}}",
         16, "header: tensor \"w\": shape overflows"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4]}}", 16,
         "data_offsets is missing (expected [begin, end], two integers >= 0)"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0]}}", 16,
         "data_offsets is malformed"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16, 32]}}", 16,
         "data_offsets is malformed"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [\"0\", 16]}}", 16,
         "data_offsets is malformed"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [-16, 0]}}", 16,
         "data_offsets is malformed"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [16, 0]}}", 16,
         "header: tensor \"w\": data_offsets [16, 0] lie outside the data's 16 bytes"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 12,
         "data_offsets [0, 16] lie outside the data's 12 bytes (expected begin <= end <= 12: "
         "truncated file?)"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 12]}}", 12,
         "header: tensor \"w\": data_offsets [0, 12] hold 12 bytes, but shape [4] of F32 "
         "needs 16 (expected them equal)"},
        {"{\"w\": {\"dtype\": \"F4\", \"shape\": [3], \"data_offsets\": [0, 2]}, "
         "\"v\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [2, 18]}}",
         18, "tensor \"w\": data_offsets [0, 2] hold 2 bytes, but shape [3] of F4 needs"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 4], \"data_offsets\": [0, 16]}, "
         "\"v\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}",
         24, "header: tensors \"w\" and \"v\" overlap (data_offsets [0, 16] and [8, 24]; "
             "expected disjoint ranges)"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
         "\"v\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
         16, "overlap"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
         "\"v\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [20, 36]}}",
         36, "header: data bytes 16..20 belong to no tensor (expected the tensors to cover the "
             "data's 36 bytes without gaps)"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [4, 20]}}", 20,
         "data bytes 0..4 belong to no tensor"},
        {"{" W4 "}", 20, "data bytes 16..20 belong to no tensor"},
        {"{\"__metadata__\": [], " W4 "}", 16,
         "header: __metadata__ is not an object (expected string keys and values)"},
        {"{\"__metadata__\": {\"format\": \"pt\", \"n\": 1}, " W4 "}", 16,
         "header: __metadata__.n is not a string"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 16]}}", 16,
         "shape [2, 2] is not a non-empty vector (expected [N] or [1, N], N > 0)"},
        {"{\"w\": {\"dtype\": \"F32\", \"shape\": [4, 1], \"data_offsets\": [0, 16]}}", 16,
         "shape [4, 1] is not a non-empty vector"},
        {"{\"v\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "not in the file (expected one of its 1 tensors: v)"},
        {"{}", 0, "not in the file (expected one of its 0 tensors: none)"},
        {"{\"a\\nb\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 16,
         "its 1 tensors: a?b)"},
    };
    char dir[64], path[PATH_MAX], err[MODELFILE_ERR_MAX];
    bytes file = {0}, good = {0};
    float got[8];

    make_temp_dir(dir);
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        st_raw(&file, headers[i].header, headers[i].data_len);
        expect_st_error(dir, &file, "w", 4, headers[i].want);
        bytes_free(&file);
    }

    /* Truncated at every byte. */
    st_raw(&good, "{\"__metadata__\": {\"format\": \"pt\"}, " W4 "}", 0);
    for (int i = 0; i < 4; i++)
        put_f32(&good, (float)i, 0);
    for (size_t cut = 0; cut < good.n; cut++) {
        bytes part = {0};
        put(&part, good.p, cut);
        expect_st_error(dir, &part, "w", 4,
                        cut < 8          ? "too short for a .safetensors file (expected at least "
                                           "8)"
                        : cut < good.n - 16 ? "goes beyond the file's"
                                            : "truncated file?");
        bytes_free(&part);
    }
    assert_int_equal(modelfile_load_safetensors(dir, "w", 4, got, err), -1);
    expect_file_error(err, dir, "w", "not a regular file");

    /* Bad lengths in the first 8 bytes. */
    put(&file, good.p, good.n);
    memcpy(file.p, "\xff\xff\xff\xff\xff\xff\xff\xff", 8);
    expect_st_error(dir, &file, "w", 4, "header length 18446744073709551615 goes beyond the "
                                        "file's");
    memcpy(file.p, "\1\0\0\0\0\0\0\0", 8);
    expect_st_error(dir, &file, "w", 4, "header length 1 is too small (expected a JSON object)");
    memcpy(file.p, "{\"w\": {}", 8); /* no length: JSON right away */
    expect_st_error(dir, &file, "w", 4, "goes beyond the file's");
    bytes_free(&file);
    {
        /* A header longer than safetensors allows, in a file that holds it. */
        FILE *f;
        snprintf(path, sizeof path, "%s/huge.safetensors", dir);
        f = fopen(path, "wb");
        assert_non_null(f);
        fwrite("\x01\xe1\xf5\x05\0\0\0\0{", 1, 9, f); /* 100000001 */
        assert_int_equal(ftruncate(fileno(f), 8 + 100000001), 0);
        fclose(f);
        assert_int_equal(modelfile_load_safetensors(path, "w", 4, got, err), -1);
        expect_file_error(err, path, "w", "header length 100000001 is too large (expected at "
                                          "most 100000000)");
    }

    /* Values. */
    {
        static const struct {
            const char *dtype;
            int size;
            uint64_t bits[3];
            const char *want;
        } vals[] = {
            {"F32", 4, {0, 0, 0xffc00000}, "value at index 2 is NaN (expected finite values)"},
            {"F16", 2, {0xfc00, 0, 0}, "value at index 0 is -inf"},
            {"BF16", 2, {0, 0x7f80, 0}, "value at index 1 is +inf"},
            {"BF16", 2, {0, 0, 0x7fc1}, "value at index 2 is NaN"},
            {"F64", 8, {0, 0, 0xc7effffff0000000ull}, "value -3.40282e+38 at index 2 overflows"},
        };
        for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
            char header[160];
            snprintf(header, sizeof header,
                     "{\"w\": {\"dtype\": \"%s\", \"shape\": [3], \"data_offsets\": [0, %d]}}",
                     vals[i].dtype, 3 * vals[i].size);
            put_int(&file, strlen(header), 8, 0);
            put_str(&file, header);
            for (int j = 0; j < 3; j++)
                put_int(&file, vals[i].bits[j], vals[i].size, 0);
            expect_st_error(dir, &file, "w", 3, vals[i].want);
            bytes_free(&file);
        }
    }
    bytes_free(&good);
    remove_tree(dir);
}

/* Models that name files: relative paths, dim from the file, printing. */
static void test_config_model_files(void **state)
{
    char dir[64], sub[128], models[160], path[PATH_MAX], want[PATH_MAX + 64];
    char cwd[PATH_MAX], err[CONFIG_ERR_MAX], doc[1024];
    st_tensor t[] = {{"ln.weight", "F16", "[1, 4]", {0}}, {"ln.bias", "F32", "[4]", {0}}};
    static const float gain[] = {1.0f, -2.0f, 0.5f, 0.333251953125f};
    static const float bias[] = {0.25f, 0.1f, -1.0f, 3.0f};
    bytes file = {0}, data = {0};
    config c;
    char *text;

    assert_non_null(getcwd(cwd, sizeof cwd));
    make_temp_dir(dir);
    snprintf(sub, sizeof sub, "%s/conf", dir);
    snprintf(models, sizeof models, "%s/conf/models", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(mkdir(models, 0700), 0);
    for (int i = 0; i < 4; i++) {
        put_int(&t[0].data, f16_bits[i], 2, 0);
        put_f32(&t[1].data, bias[i], 0);
        put_f64(&data, (double)bias[i], 0);
    }
    st_build(&file, "{\"format\": \"pt\"}", t, 2, NULL);
    write_file(models, "g.safetensors", &file, path);
    bytes_free(&file);
    npy_build(&file, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }", &data);
    write_file(models, "b.npy", &file, path);
    bytes_free(&file);

    /* A config file beside models/: paths resolve against its directory,
     * and dim comes from the first file. */
    snprintf(doc, sizeof doc,
             "{\"models\": [{\"name\": \"m\", \"eps\": 1e-6,"
             " \"gain\": {\"file\": \"models/g.safetensors\", \"tensor\": \"ln.weight\"},"
             " \"bias\": {\"file\": \"models/b.npy\"}},"
             " {\"name\": \"n\", \"gain\": [1, 2, 3, 4],"
             " \"bias\": {\"file\": \"%s/b.npy\"}, \"groups\": 2}]}",
             models);
    {
        bytes cf = {0};
        put_str(&cf, doc);
        write_file(sub, "c.json", &cf, path);
        bytes_free(&cf);
    }
    config_init(&c);
    if (config_load_file(&c, path, err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    assert_int_equal(c.n_models, 2);
    assert_int_equal(c.models[0].dim, 4);
    assert_floats(c.models[0].gain, gain, 4);
    assert_floats(c.models[0].bias, bias, 4);
    snprintf(want, sizeof want, "%s/g.safetensors", models);
    assert_string_equal(c.models[0].gain_file, want);
    assert_string_equal(c.models[0].gain_tensor, "ln.weight");
    snprintf(want, sizeof want, "%s/b.npy", models);
    assert_string_equal(c.models[0].bias_file, want);
    assert_null(c.models[0].bias_tensor);
    /* dim from bias's file, then the inline gain must match it. */
    assert_int_equal(c.models[1].dim, 4);
    assert_int_equal(c.models[1].groups, 2);
    assert_null(c.models[1].gain_file);
    assert_true(c.models[1].gain[3] == 4.0f);
    assert_floats(c.models[1].bias, bias, 4);

    /* --print-config: the references, absolute; they load back the same. */
    text = print_and_reload(&c);
    snprintf(want, sizeof want,
             "\"gain\": {\n        \"file\": \"%s/g.safetensors\",\n"
             "        \"tensor\": \"ln.weight\"\n      }",
             models);
    expect_contains(text, want);
    snprintf(want, sizeof want, "\"bias\": {\n        \"file\": \"%s/b.npy\"\n      }", models);
    expect_contains(text, want);
    expect_contains(text, "\"gain\": [\n        1.0,\n        2.0,");
    expect_contains(text, "\"dim\": 4,");
    {
        /* ... from another directory too. */
        config back;
        assert_int_equal(chdir("/"), 0);
        config_init(&back);
        assert_int_equal(config_load_string(&back, text, "printed", err), 0);
        assert_string_equal(back.models[0].gain_file, c.models[0].gain_file);
        assert_string_equal(back.models[0].gain_tensor, "ln.weight");
        assert_floats(back.models[0].gain, gain, 4);
        config_fini(&back);
        assert_int_equal(chdir(cwd), 0);
    }
    free(text);
    config_fini(&c);

    /* The config file named relatively: its directory is relative too. */
    assert_int_equal(chdir(dir), 0);
    config_init(&c);
    assert_int_equal(config_load_file(&c, "conf/c.json", err), 0);
    snprintf(want, sizeof want, "%s/g.safetensors", models);
    assert_string_equal(c.models[0].gain_file, want);
    config_fini(&c);
    /* --model and config_load_string: against the current directory. */
    assert_int_equal(chdir(sub), 0);
    config_init(&c);
    assert_int_equal(parse(&c, err, 3, "--model",
                           "{\"name\":\"r\",\"dim\":4,\"bias\":{\"file\":\"models/b.npy\"}}"),
                     0);
    snprintf(want, sizeof want, "%s/b.npy", models);
    assert_string_equal(c.models[0].bias_file, want);
    assert_floats(c.models[0].bias, bias, 4);
    config_fini(&c);
    assert_int_equal(chdir(dir), 0);
    config_init(&c);
    assert_int_equal(
        config_load_string(&c, "{\"models\": [{\"name\": \"s\", \"gain\": {\"file\": "
                               "\"conf/models/g.safetensors\", \"tensor\": \"ln.weight\"}}]}",
                           "s.json", err),
        0);
    snprintf(want, sizeof want, "%s/g.safetensors", models);
    assert_string_equal(c.models[0].gain_file, want);
    config_fini(&c);
    assert_int_equal(chdir(cwd), 0);

    /* Errors: the origin, the key path, then the file's own message. */
    {
        static const struct {
            const char *model, *want;
        } bad[] = {
            {"\"gain\": {\"file\": \"models/nope.npy\"}",
             "c.json: models[0].gain: DIR/nope.npy: cannot open: No such file or directory"},
            {"\"gain\": {\"file\": \"models/g.safetensors\"}",
             "c.json: models[0].gain.tensor: missing (expected the name of a tensor in "
             "models/g.safetensors"},
            {"\"gain\": {\"file\": \"models/g.safetensors\", \"tensor\": 1}",
             "models[0].gain.tensor: expected a string with a tensor name, got an integer"},
            {"\"gain\": {\"file\": \"models/g.safetensors\", \"tensor\": \"ln.w\"}",
             "c.json: models[0].gain: DIR/g.safetensors: tensor ln.w: not in the file (expected "
             "one of its 2 tensors: ln.weight, ln.bias)"},
            {"\"bias\": {\"file\": \"models/b.npy\", \"tensor\": \"x\"}",
             "models[0].bias.tensor: given for a .npy file (expected it only with .safetensors"},
            {"\"bias\": {\"file\": \"models/b.bin\"}",
             "models[0].bias.file: \"models/b.bin\" is neither .npy nor .safetensors"},
            {"\"bias\": {\"file\": \".npy\"}", "is neither .npy nor .safetensors"},
            {"\"bias\": {\"file\": 3}", "models[0].bias.file: expected a string with a file "
                                        "path, got an integer"},
            {"\"bias\": {\"tensor\": \"w\"}", "models[0].bias.file: missing"},
            {"\"bias\": {\"file\": \"models/b.npy\", \"dtype\": \"F32\"}",
             "models[0].bias.dtype: unknown key (expected file, and tensor for .safetensors)"},
            {"\"dim\": 8, \"bias\": {\"file\": \"models/b.npy\"}",
             "c.json: models[0].bias: DIR/b.npy: holds 4 values (expected 8)"},
            {"\"gain\": {\"file\": \"models/g.safetensors\", \"tensor\": \"ln.weight\"},"
             " \"bias\": [1, 2, 3]",
             "models[0].bias: 3 values (expected dim = 4)"},
            {"\"groups\": 3, \"bias\": {\"file\": \"models/b.npy\"}",
             "models[0].groups: 3 does not divide dim 4"},
            {"\"gain\": [1, 2, 3, 4], \"bias\": [1, 2, 3, 4]",
             "models[0].gain: given but dim is 0"},
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            bytes cf = {0};
            char *at;
            snprintf(doc, sizeof doc, "{\"models\": [{\"name\": \"m\", %s}]}", bad[i].model);
            put_str(&cf, doc);
            write_file(sub, "c.json", &cf, path);
            bytes_free(&cf);
            config_init(&c);
            if (config_load_file(&c, path, err) != -1) {
                print_error("accepted: %s\n", doc);
                fail();
            }
            /* DIR stands for the models directory. */
            at = strstr(bad[i].want, "DIR");
            if (at)
                snprintf(want, sizeof want, "%.*s%s%s", (int)(at - bad[i].want), bad[i].want,
                         models, at + 3);
            else
                snprintf(want, sizeof want, "%s", bad[i].want);
            expect_contains(err, want);
            assert_int_equal(c.n_models, 0);
            config_fini(&c);
        }
    }
    bytes_free(&data);
    bytes_free(&t[0].data);
    bytes_free(&t[1].data);
    remove_tree(dir);
}

/* config/example-files.json and the model files it serves. */
static void test_example_files(void **state)
{
    config c;
    char err[CONFIG_ERR_MAX];
    const char *path = access("config/example-files.json", R_OK) == 0
                           ? "config/example-files.json"
                           : "../config/example-files.json";

    config_init(&c);
    if (config_load_file(&c, path, err) != 0) {
        print_error("%s\n", err);
        fail();
    }
    assert_int_equal(c.n_models, 2);
    for (size_t i = 0; i < 2; i++) {
        const config_model *m = &c.models[i];
        assert_int_equal(m->dim, 16);
        /* The generator's values (tools/make_example_model.py). */
        for (int k = 0; k < 16; k++) {
            assert_true(m->gain[k] == 1.0f + ((float)(k % 4) - 1.5f) / 8.0f);
            assert_true(m->bias[k] == (float)(2 * k - 15) / 64.0f);
        }
    }
    assert_int_equal(c.models[1].groups, 4);
    assert_null(c.models[1].bias_tensor);
    config_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_good_string),
        cmocka_unit_test(test_flags_override_file),
        cmocka_unit_test(test_cpus),
        cmocka_unit_test(test_model_flag),
        cmocka_unit_test(test_meta_flags),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_print_roundtrip),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_fuzz_regressions),
        cmocka_unit_test(test_modelfile_npy_good),
        cmocka_unit_test(test_modelfile_npy_errors),
        cmocka_unit_test(test_modelfile_safetensors_good),
        cmocka_unit_test(test_modelfile_safetensors_errors),
        cmocka_unit_test(test_config_model_files),
        cmocka_unit_test(test_example_files),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
