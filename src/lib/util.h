/*
 * util.h: small helpers shared by every module: a growable byte buffer,
 * time stamps and string utilities.
 */
#ifndef PAYHOOKD_UTIL_H
#define PAYHOOKD_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A growable byte buffer; always NUL-terminated after a successful append. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Make room for n more bytes (one allocation ahead of many appends). */
int buf_reserve(struct buf *b, size_t n);
/* Append n bytes; 0 or -ENOMEM (the buffer is unchanged on failure). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Append a NUL-terminated string. */
int buf_puts(struct buf *b, const char *s);
/* Append printf-formatted text. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Release the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);
/* Wipe a NUL-terminated secret (a token, a code), free it, set *p NULL. */
void util_free_secret(char **p);
/* Take ownership of the bytes (NULL if nothing was ever appended). */
char *buf_steal(struct buf *b);

/* Wall-clock "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC). */
void util_iso8601_now(char out[32]);
/* The same for now + delta_ms (may be negative). */
void util_iso8601_in(int64_t delta_ms, char out[32]);
/* The same for a time in milliseconds since the epoch (not before 1970). */
void util_iso8601_at(int64_t unix_ms, char out[32]);
/* Wall-clock milliseconds since the epoch. */
int64_t util_unix_ms(void);
/* Monotonic clock in nanoseconds. */
uint64_t util_now_ns(void);

/* strdup that returns NULL only when s is NULL or on ENOMEM. */
char *util_strdup(const char *s);
/* Copy at most n bytes of s into a new NUL-terminated string. */
char *util_strndup(const char *s, size_t n);

/*
 * Libraries that allocate behind an API (cJSON, OpenSSL) report an
 * allocation failure the same way as bad input: a NULL parse, a signature
 * that "does not verify". A genuine callback must then get 503 (retry), not
 * 400 or 401, so their allocations go through these, which count failures
 * per thread; a caller compares util_alloc_failures() before and after.
 */
void *util_counted_malloc(size_t n);
void *util_counted_realloc(void *p, size_t n);
/* Allocation failures seen by the calling thread so far. */
unsigned long util_alloc_failures(void);

/*
 * The one sanitiser for text a client or a platform sent, before it goes
 * into a log line, an error message, a rejection row or a terminal: nothing
 * in it can then forge a line, drive a terminal or hide where a value ends.
 * Printable ASCII is kept; control bytes, DEL and, unless UTIL_ESC_KEEP_HIGH,
 * bytes >= 0x80 are written as \xNN. A value quoted into a message takes
 * UTIL_ESC_QUOTES: ' " and \ are escaped too, so the quotes show where it
 * ends and an escape in it is never taken for one of ours. A whole line
 * (log.c) takes neither flag's quoting: the values in it were quoted
 * already, and their escapes stay as they are. Text that does not fit in
 * outlen - 1 bytes is cut at an escape boundary (and, with
 * UTIL_ESC_KEEP_HIGH, a UTF-8 character boundary) and ends in "...".
 * Returns out, always NUL-terminated.
 */
enum {
    UTIL_ESC_QUOTES = 1,    /* a quoted value in a message */
    UTIL_ESC_KEEP_HIGH = 2, /* whole log lines, answers: UTF-8 text stays legible */
};
/* Room for every byte of n escaped, plus "..." and the NUL. */
#define UTIL_ESC_SIZE(n) ((n)*4 + 4)
const char *util_escape(const void *p, size_t n, unsigned flags, char *out,
                        size_t outlen);

/* A region allocator for one request's strings: freed all at once. */
struct arena {
    struct arena_chunk *head;
};

/* n bytes (8-aligned) that live until arena_free; NULL on ENOMEM. */
void *arena_alloc(struct arena *a, size_t n);
/* Copies of strings in the arena (NULL in, NULL out). */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* printf into the arena. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adopt a malloc'd block: it is freed with the arena. Returns p (NULL if p
 * was NULL or on ENOMEM, when p has been freed already). */
void *arena_adopt(struct arena *a, void *p);
/* Adopt an object released with its own function (cJSON_Delete, form_free). */
void *arena_own(struct arena *a, void *p, void (*release)(void *));
/* Free everything; the arena is empty and reusable. */
void arena_free(struct arena *a);
/* A 256-entry table of bytes, entry c being F(c), as a constant initializer:
 * byte classifiers on hot paths are one load instead of a chain of tests. */
#define UTIL_BT4(F, c) F(c), F((c) + 1), F((c) + 2), F((c) + 3)
#define UTIL_BT16(F, c)                                                                  \
    UTIL_BT4(F, c), UTIL_BT4(F, (c) + 4), UTIL_BT4(F, (c) + 8), UTIL_BT4(F, (c) + 12)
#define UTIL_BT64(F, c)                                                                  \
    UTIL_BT16(F, c), UTIL_BT16(F, (c) + 16), UTIL_BT16(F, (c) + 32),                     \
        UTIL_BT16(F, (c) + 48)
#define UTIL_BYTE_TABLE(F)                                                               \
    {                                                                                    \
        UTIL_BT64(F, 0), UTIL_BT64(F, 64), UTIL_BT64(F, 128), UTIL_BT64(F, 192)          \
    }

#endif
