/*
 * fuzz_modelfile.c -- libFuzzer harness for the .npy and .safetensors
 * loaders (config/modelfile.c).
 *
 * Input: a file's bytes, written to a memfd and opened by both loaders
 * through /proc/self/fd/N (a regular file to fstat, like one on disk). The
 * .safetensors loader looks for tensor "w", the name the corpus uses.
 * Each loader is probed, then, when the probe succeeds, loaded with the
 * length it gave and with that length plus one.
 *
 * Checked on every input, beyond what ASan and UBSan see:
 *   - rejected: -1 and a message that fits in MODELFILE_ERR_MAX and starts
 *     with "PATH: " (.npy) or "PATH: tensor w: " (.safetensors);
 *   - probe and load agree: a probed file loads unless a value is
 *     non-finite (the one check a probe leaves out), and every loaded
 *     value is finite;
 *   - the length the probe gives fits the file (no value is under a byte).
 * A failed check aborts, so libFuzzer saves the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <math.h>

#include "../../config/modelfile.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_modelfile: check failed at line %d: %s\n", __LINE__, #cond);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fd = memfd_create("fuzz_modelfile", MFD_CLOEXEC);
    CHECK(fd >= 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

static void check_err(const char *err, const char *tensor)
{
    char prefix[128];
    size_t len = strnlen(err, MODELFILE_ERR_MAX);

    CHECK(len > 0 && len < MODELFILE_ERR_MAX);
    if (tensor)
        snprintf(prefix, sizeof prefix, "%s: tensor %s: ", path, tensor);
    else
        snprintf(prefix, sizeof prefix, "%s: ", path);
    CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
}

/* One loader: probe, then load with the probed length and one more. */
static void run(const char *tensor, size_t size)
{
    char err[MODELFILE_ERR_MAX];
    size_t len = 0;
    float *out;
    int rc;

    memset(err, 0x55, sizeof err);
    rc = tensor ? modelfile_probe_safetensors(path, tensor, &len, err)
                : modelfile_probe_npy(path, &len, err);
    if (rc != 0) {
        CHECK(rc == -1);
        check_err(err, tensor);
        return;
    }
    CHECK(len > 0 && len <= size); /* every value takes 2 bytes at least */
    out = malloc((len + 1) * sizeof *out);
    CHECK(out != NULL);
    memset(err, 0x55, sizeof err);
    rc = tensor ? modelfile_load_safetensors(path, tensor, len, out, err)
                : modelfile_load_npy(path, len, out, err);
    if (rc == 0) {
        for (size_t i = 0; i < len; i++)
            CHECK(isfinite(out[i]));
    } else {
        CHECK(rc == -1);
        check_err(err, tensor);
        CHECK(strstr(err, " at index ") != NULL); /* only values can fail now */
    }
    rc = tensor ? modelfile_load_safetensors(path, tensor, len + 1, out, err)
                : modelfile_load_npy(path, len + 1, out, err);
    CHECK(rc == -1);
    check_err(err, tensor);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    CHECK(ftruncate(fd, 0) == 0);
    CHECK(size == 0 || pwrite(fd, data, size, 0) == (ssize_t)size);
    run(NULL, size);
    run("w", size);
    return 0;
}
