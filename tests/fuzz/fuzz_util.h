/*
 * fuzz_util.h: what the libFuzzer targets in tests/fuzz share: a copy of the
 * input with an unreadable page right after it (so that a read past the end
 * faults even in code ASan does not instrument: glibc, cJSON, inih), a
 * private temporary directory removed at exit, and keys generated at start.
 */
#ifndef PAYHOOKD_FUZZ_UTIL_H
#define PAYHOOKD_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

struct crypto_key;

/* Print a message and abort(): a broken invariant is a crash for libFuzzer. */
void fuzz_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Print a line when $PAYHOOKD_FUZZ_VERBOSE is set (to see what a seed does). */
void fuzz_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Abort with the failed condition unless it holds. */
#define FUZZ_CHECK(cond)                                                                 \
    do {                                                                                 \
        if (!(cond))                                                                     \
            fuzz_die("%s:%d: invariant failed: %s", __FILE__, __LINE__, #cond);          \
    } while (0)

/*
 * The input copied so that its last byte is the last readable byte before a
 * PROT_NONE page, with the bytes before it poisoned for ASan. Valid until the
 * next call. Not NUL-terminated: exactly what a (pointer, length) API gets.
 */
const char *fuzz_guarded(const uint8_t *data, size_t size);

/* A NUL-terminated malloc'd copy (what http.c hands a provider: a body that
 * is NUL-terminated but may contain NUL bytes). Aborts on ENOMEM. */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* 1 when SQLite's json_valid() accepts len bytes of text: the store's views
 * read the fields column with json_extract(), which fails the whole query
 * on one malformed row. */
int fuzz_sqlite_json_valid(const char *text, size_t len);

/* A directory made once (under $PAYHOOKD_FUZZ_TMP, else /dev/shm, else /tmp)
 * and removed with everything in it at exit. */
const char *fuzz_tmpdir(void);

/* Write size bytes to path (truncating); aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t size);

/* A fresh RSA key pair (fuzz_keys.c) of `bits` bits; *pub_b64 (malloc'd) is the public
 * key as one line of base64 DER, for a config file. Aborts on failure. */
void fuzz_keypair(int bits, struct crypto_key **pub, struct crypto_key **priv,
                  char **pub_b64);

#endif
