#include "auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int add_key(auth *a, const char *k, size_t len, const char *where, char *err,
                   size_t err_cap)
{
    if (len == 0)
        return 0;
    if (len > AUTH_KEY_MAX) {
        snprintf(err, err_cap, "%s: key of %zu bytes (expected at most %d)", where, len,
                 AUTH_KEY_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if (k[i] <= 0x20 || k[i] >= 0x7f) {
            snprintf(err, err_cap, "%s: key has a space or non-printable byte", where);
            return -1;
        }
    void *nk = realloc(a->keys, (a->n + 1) * sizeof *a->keys);
    if (!nk) {
        snprintf(err, err_cap, "%s: out of memory", where);
        return -1;
    }
    a->keys = nk;
    memset(a->keys[a->n], 0, sizeof a->keys[a->n]);
    memcpy(a->keys[a->n], k, len);
    a->n++;
    return 0;
}

int auth_init(auth *a, const char *key_file, const char *env_keys, char *err, size_t err_cap)
{
    a->keys = NULL;
    a->n = 0;
    if (key_file && key_file[0]) {
        FILE *f = fopen(key_file, "r");
        if (!f) {
            snprintf(err, err_cap, "server.api_key_file: %s: %s", key_file, strerror(errno));
            return -1;
        }
        char line[AUTH_KEY_MAX + 64];
        int lineno = 0;
        while (fgets(line, sizeof line, f)) {
            lineno++;
            size_t len = strcspn(line, "\r\n");
            if (len == strlen(line) && !feof(f)) {
                snprintf(err, err_cap, "%s: line %d: longer than %d bytes", key_file, lineno,
                         AUTH_KEY_MAX);
                fclose(f);
                goto fail;
            }
            line[len] = '\0';
            if (line[0] == '#')
                continue;
            char where[600];
            snprintf(where, sizeof where, "%s: line %d", key_file, lineno);
            if (add_key(a, line, len, where, err, err_cap)) {
                fclose(f);
                goto fail;
            }
        }
        fclose(f);
    }
    for (const char *p = env_keys; p && *p;) {
        size_t len = strcspn(p, ",");
        if (add_key(a, p, len, "LNSERVE_API_KEYS", err, err_cap))
            goto fail;
        p += len + (p[len] == ',');
    }
    return 0;
fail:
    auth_fini(a);
    return -1;
}

void auth_fini(auth *a)
{
    free(a->keys);
    a->keys = NULL;
    a->n = 0;
}

int auth_enabled(const auth *a)
{
    return a->n > 0;
}

int auth_check(const auth *a, const char *header)
{
    static const char scheme[] = "Bearer ";
    if (!header || strncasecmp(header, scheme, sizeof scheme - 1))
        return 0;
    const char *given = header + sizeof scheme - 1;
    /* Pad the candidate to the full width so every comparison reads the
     * same number of bytes whatever its length; an over-long one can
     * match nothing (its last byte would have to be the pad). */
    char cand[AUTH_KEY_MAX + 1];
    memset(cand, 0, sizeof cand);
    size_t len = strnlen(given, AUTH_KEY_MAX + 1);
    memcpy(cand, given, len > AUTH_KEY_MAX ? AUTH_KEY_MAX : len);
    unsigned char too_long = len > AUTH_KEY_MAX;
    int match = 0;
    for (size_t k = 0; k < a->n; k++) {
        unsigned char diff = too_long;
        for (size_t i = 0; i < sizeof cand; i++)
            diff |= (unsigned char)(cand[i] ^ a->keys[k][i]);
        /* volatile-free constant-time select: no early exit, no branch
         * on the bytes compared. */
        match |= (diff == 0);
    }
    return match;
}
