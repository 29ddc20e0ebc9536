/*
 * fuzz_config.c -- libFuzzer harness for the config loader (config/config.c).
 *
 * Input: a config file's text, given to config_load_string. An input that
 * starts with "--" is a command line instead: one argument per line, given
 * to config_parse_args, which reaches the flag parsers (--cpus 0,2-3,
 * --port=N, --model JSON) that a file does not. --config is dropped from
 * such a command line: it would have the fuzzer open files.
 *
 * Checked on every input, beyond what ASan (leaks included) and UBSan see:
 *   - rejected: a non-empty message that fits in CONFIG_ERR_MAX;
 *   - accepted: config_validate agrees, and the config survives a round
 *     trip: config_print's output loads back (config_load_string) into a
 *     config that prints the same text, byte for byte.
 * config_print always runs, into a memory stream, and config_fini frees
 * everything. A failed check aborts, so libFuzzer saves the input.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "fuzz_config: check failed at line %d: %s\n", \
                    __LINE__, #cond);                                     \
            abort();                                                      \
        }                                                                 \
    } while (0)

/* Most arguments taken from one command-line input. */
#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* jansson seeds its hash from /dev/urandom; a fixed seed makes a crash
     * replay the same way. */
    json_object_seed(1);
    return 0;
}

/* config_print of c as a malloc'd NUL-terminated string. */
static char *print_to_string(const config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    CHECK(f != NULL);
    config_print(c, f);
    CHECK(fclose(f) == 0);
    CHECK(text != NULL && strlen(text) == len && len > 0);
    return text;
}

static void check_err(const char *err)
{
    size_t len = strnlen(err, CONFIG_ERR_MAX);

    CHECK(len > 0 && len < CONFIG_ERR_MAX);
}

/* Splits text (modified in place) at newlines into argv, argv[0] being the
 * program name; drops --config and --config=FILE and the value after a
 * bare --config. Returns argc. */
static int split_args(char *text, char **argv)
{
    int argc = 0;
    char *save = NULL;

    argv[argc++] = "lnserve";
    for (char *a = strtok_r(text, "\n", &save); a && argc < MAX_ARGS;
         a = strtok_r(NULL, "\n", &save)) {
        if (strcmp(a, "--config") == 0) {
            strtok_r(NULL, "\n", &save);
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0)
            continue;
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    return argc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[CONFIG_ERR_MAX];
    char *argv[MAX_ARGS + 1];
    char *text, *printed, *again;
    config c, back;
    int rc;

    /* The loader takes a NUL-terminated string; a NUL inside the input
     * just ends it early, as it would for a file read into a string. */
    text = malloc(size + 1);
    CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    config_init(&c);
    memset(err, 0x55, sizeof err);
    if (size >= 2 && data[0] == '-' && data[1] == '-') {
        int argc = split_args(text, argv);
        rc = config_parse_args(&c, argc, argv, err);
    } else {
        rc = config_load_string(&c, text, "fuzz", err);
    }

    if (rc != 0) {
        CHECK(rc == -1);
        check_err(err);
        printed = print_to_string(&c); /* a half-loaded config prints too */
        free(printed);
        goto done;
    }
    CHECK(config_validate(&c, err) == 0);

    /* Round trip: what --print-config writes must load back unchanged. */
    printed = print_to_string(&c);
    config_init(&back);
    rc = config_load_string(&back, printed, "printed", err);
    if (rc != 0)
        fprintf(stderr, "fuzz_config: printed config does not load: %s\n%s",
                err, printed);
    CHECK(rc == 0);
    again = print_to_string(&back);
    if (strcmp(printed, again) != 0)
        fprintf(stderr, "fuzz_config: print differs after reload:\n%s\n%s",
                printed, again);
    CHECK(strcmp(printed, again) == 0);
    free(again);
    free(printed);
    config_fini(&back);

done:
    config_fini(&c);
    free(text);
    return 0;
}
