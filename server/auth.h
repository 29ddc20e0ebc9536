/*
 * auth.h -- API keys: requests carry "Authorization: Bearer <key>", checked
 * in constant time against the keys from server.api_key_file (one per
 * line; blank lines and lines starting with # ignored) and from the
 * environment variable LNSERVE_API_KEYS (comma-separated). No keys at all
 * means authentication is off.
 *
 * Built once in main before threads start; read-only afterwards.
 */
#pragma once

#include <stddef.h>

/* Longest key accepted; every comparison covers this many bytes. */
#define AUTH_KEY_MAX 255

typedef struct auth {
    char (*keys)[AUTH_KEY_MAX + 1]; /* NUL-padded to the full width */
    size_t n;
} auth;

/* Loads the keys. 0, or -1 with "FILE: line N: reason" in err (err_cap). */
int auth_init(auth *a, const char *key_file, const char *env_keys, char *err, size_t err_cap);

void auth_fini(auth *a);

/* 1 when keys are configured. */
int auth_enabled(const auth *a);

/* 1 when header (the Authorization value, may be NULL) is "Bearer <key>"
 * with a configured key. Time depends on the number of keys only, not on
 * how much of a key matched nor on its length. */
int auth_check(const auth *a, const char *header);
