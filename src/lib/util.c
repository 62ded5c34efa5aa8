/*
 * util.c: small helpers shared by every module.
 */
#include "lib/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Grow b so that n more bytes plus a NUL fit. */
int buf_reserve(struct buf *b, size_t n)
{
    size_t need, cap;
    char *p;

    if (n > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Append n bytes. */
int buf_append(struct buf *b, const void *p, size_t n)
{
    int r = buf_reserve(b, n);

    if (r < 0)
        return r;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* Append a NUL-terminated string. */
int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Append printf-formatted text. */
int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, r;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    r = buf_reserve(b, (size_t)n);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Release the memory. */
void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Take ownership of the bytes. */
char *buf_steal(struct buf *b)
{
    char *p = b->data;

    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Wall-clock ISO-8601 UTC with milliseconds, delta_ms from now. */
void util_iso8601_at(int64_t unix_ms, char out[32])
{
    time_t sec = (time_t)(unix_ms / 1000);
    struct tm tm;

    gmtime_r(&sec, &tm);
    strftime(out, 24, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + 19, 13, ".%03dZ", (int)(unix_ms % 1000));
}

void util_iso8601_in(int64_t delta_ms, char out[32])
{
    util_iso8601_at(util_unix_ms() + delta_ms, out);
}

/* Wall-clock ISO-8601 UTC with milliseconds. */
void util_iso8601_now(char out[32])
{
    util_iso8601_in(0, out);
}

/* Milliseconds since the epoch. */
int64_t util_unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic clock in nanoseconds. */
uint64_t util_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* strdup that tolerates NULL. */
char *util_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Copy at most n bytes into a new string. */
char *util_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);

    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static _Thread_local unsigned long alloc_failures;

void *util_counted_malloc(size_t n)
{
    void *p = malloc(n);

    if (!p && n)
        alloc_failures++;
    return p;
}

void *util_counted_realloc(void *p, size_t n)
{
    void *q = realloc(p, n);

    if (!q && n)
        alloc_failures++;
    return q;
}

unsigned long util_alloc_failures(void)
{
    return alloc_failures;
}

/* Does byte c need \xNN under flags? */
static int util_esc_needed(unsigned char c, unsigned flags)
{
    if (c < 0x20 || c == 0x7f)
        return 1;
    if (c >= 0x80)
        return !(flags & UTIL_ESC_KEEP_HIGH);
    return (flags & UTIL_ESC_QUOTES) && (c == '\'' || c == '"' || c == '\\');
}

const char *util_escape(const void *p, size_t n, unsigned flags, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = p;
    size_t i, o = 0, total = 0, room, cut;

    if (outlen == 0)
        return out;
    room = outlen - 1;
    for (i = 0; i < n && total <= room; i++)
        total += util_esc_needed(s[i], flags) ? 4 : 1;
    /* all of it, or what fits before "..." (a UTF-8 character kept whole) */
    cut = total <= room ? n : 0;
    for (i = 0; !cut && i < n; i++) {
        size_t w = util_esc_needed(s[i], flags) ? 4 : 1;
        if (o + w + 3 > room)
            break;
        o += w;
    }
    if (!cut) {
        cut = i;
        while ((flags & UTIL_ESC_KEEP_HIGH) && cut > 0 && cut < n &&
               (s[cut] & 0xc0) == 0x80)
            cut--;
    }
    for (i = 0, o = 0; i < cut; i++) {
        if (!util_esc_needed(s[i], flags)) {
            out[o++] = (char)s[i];
            continue;
        }
        out[o++] = '\\';
        out[o++] = 'x';
        out[o++] = hex[s[i] >> 4];
        out[o++] = hex[s[i] & 0x0f];
    }
    if (cut < n && o + 3 <= room) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

/* A chunk of an arena: a header followed by its bytes. */
struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    void *adopted; /* an object adopted whole (then cap == 0) */
    void (*release)(void *);
    max_align_t data[];
};

#define ARENA_CHUNK 4096

/* n bytes from the arena. */
void *arena_alloc(struct arena *a, size_t n)
{
    struct arena_chunk *c = a->head;
    size_t need = (n + 7) & ~(size_t)7, cap;
    void *p;

    if (n > SIZE_MAX - 64)
        return NULL;
    if (!c || c->cap - c->used < need) {
        cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
        c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->used = 0;
        c->cap = cap;
        c->adopted = NULL;
        c->release = NULL;
        c->next = a->head;
        a->head = c;
    }
    p = (char *)c->data + c->used;
    c->used += need;
    return p;
}

/* Copy of n bytes of s, NUL-terminated. */
char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p;

    if (!s)
        return NULL;
    p = arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* Copy of a string. */
char *arena_strdup(struct arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

/* printf into the arena. */
char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !(p = arena_alloc(a, (size_t)n + 1)))
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* Take ownership of an object with its release function. */
void *arena_own(struct arena *a, void *p, void (*release)(void *))
{
    struct arena_chunk *c;

    if (!p)
        return NULL;
    c = malloc(sizeof(*c));
    if (!c) {
        release(p);
        return NULL;
    }
    c->used = c->cap = 0;
    c->adopted = p;
    c->release = release;
    c->next = a->head;
    a->head = c;
    return p;
}

/* Take ownership of a malloc'd block. */
void *arena_adopt(struct arena *a, void *p)
{
    return arena_own(a, p, free);
}

/* Free every chunk. */
void arena_free(struct arena *a)
{
    struct arena_chunk *c, *next;

    for (c = a->head; c; c = next) {
        next = c->next;
        if (c->adopted)
            c->release(c->adopted);
        free(c);
    }
    a->head = NULL;
}

void util_free_secret(char **p)
{
    if (*p)
        explicit_bzero(*p, strlen(*p));
    free(*p);
    *p = NULL;
}
