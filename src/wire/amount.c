/*
 * amount.c: exact conversions between the platforms' money strings and
 * integer fen. Only integer arithmetic, with every overflow detected before
 * it happens (magnitudes are accumulated as uint64_t, so nothing wraps and
 * no signed overflow can occur).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "wire/amount.h"

/* Largest magnitude a negative int64_t can hold: 2^63. */
#define AMOUNT_NEG_LIMIT ((uint64_t)INT64_MAX + 1)

/* Most fraction digits accepted ("1.000000" still names a whole number of fen). */
#define AMOUNT_FRAC_MAX 6

/* Whether s[0..len) is one or more ASCII digits. */
static int amount_all_digits(const char *s, size_t len)
{
    size_t i;

    if (len == 0)
        return 0;
    for (i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Value of a digit string (already checked) that must not exceed limit;
 * -ERANGE otherwise. */
static int amount_digits_value(const char *s, size_t len, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Check the yuan grammar; on success give the lengths of the integer and
 * fraction digit runs (the fraction follows the '.'). */
static int amount_yuan_split(const char *s, size_t len, size_t *int_len, size_t *frac_len)
{
    const char *dot = memchr(s, '.', len);
    size_t il = dot ? (size_t)(dot - s) : len;
    size_t fl = dot ? len - il - 1 : 0;

    if (!amount_all_digits(s, il))
        return -EINVAL;
    if (il > 1 && s[0] == '0')
        return -EINVAL;
    if (dot && (fl < 1 || !amount_all_digits(dot + 1, fl)))
        return -EINVAL;
    /* Digits past the fen are accepted only as zeros ("13.880", as a gateway
     * that types amounts as floats may write them): the value stays exact. */
    if (fl > 2 && (fl > AMOUNT_FRAC_MAX || strspn(dot + 3, "0") != fl - 2))
        return -EINVAL;
    *int_len = il;
    *frac_len = fl;
    return 0;
}

/* A decimal yuan string to fen, exactly. */
int amount_yuan_to_fen(const char *s, size_t len, int64_t *fen)
{
    size_t il, fl;
    uint64_t yuan, cents = 0;
    int r;

    if (!s || !fen)
        return -EINVAL;
    r = amount_yuan_split(s, len, &il, &fl);
    if (r < 0)
        return r;
    if (fl > 0)
        cents = (uint64_t)(s[il + 1] - '0') * 10;
    if (fl > 1)
        cents += (uint64_t)(s[il + 2] - '0');
    r = amount_digits_value(s, il, INT64_MAX, &yuan);
    if (r < 0)
        return r;
    if (yuan > ((uint64_t)INT64_MAX - cents) / 100)
        return -ERANGE;
    *fen = (int64_t)(yuan * 100 + cents);
    return 0;
}

/* An integer fen string, optionally negative, to fen. */
int amount_fen_parse(const char *s, size_t len, int allow_negative, int64_t *fen)
{
    int neg = 0;
    uint64_t v;
    int r;

    if (!s || !fen)
        return -EINVAL;
    if (len > 0 && s[0] == '-' && allow_negative) {
        neg = 1;
        s++;
        len--;
    }
    if (!amount_all_digits(s, len))
        return -EINVAL;
    r = amount_digits_value(s, len, neg ? AMOUNT_NEG_LIMIT : INT64_MAX, &v);
    if (r < 0)
        return r;
    if (!neg)
        *fen = (int64_t)v;
    else if (v == AMOUNT_NEG_LIMIT)
        *fen = INT64_MIN;
    else
        *fen = -(int64_t)v;
    return 0;
}

/* Format fen as a yuan string with two decimals. */
int amount_fen_to_yuan(int64_t fen, char *buf, size_t buflen)
{
    /* Built backwards: "-92233720368547758.08" is the longest, 21 bytes. */
    char tmp[24];
    size_t o = sizeof(tmp);
    uint64_t mag = fen < 0 ? (uint64_t)0 - (uint64_t)fen : (uint64_t)fen;
    size_t n;

    tmp[--o] = (char)('0' + mag % 10);
    tmp[--o] = (char)('0' + mag / 10 % 10);
    tmp[--o] = '.';
    mag /= 100;
    do {
        tmp[--o] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag > 0);
    if (fen < 0)
        tmp[--o] = '-';
    n = sizeof(tmp) - o;
    if (!buf || n >= buflen)
        return -ENOSPC;
    memcpy(buf, tmp + o, n);
    buf[n] = '\0';
    return (int)n;
}
