/*
 * amount.h: money as integer fen (1/100 yuan), converted exactly from the
 * platforms' strings and never through a floating-point value.
 */
#ifndef PAYHOOKD_AMOUNT_H
#define PAYHOOKD_AMOUNT_H

#include <stddef.h>
#include <stdint.h>

/*
 * A decimal yuan string ("0.01", "1", "1.5", "99999999.99") to fen.
 * Grammar: DIGITS [ "." 1*2DIGIT ], no sign, no spaces, no exponent, no
 * leading zeros except a lone "0" before the point; up to four more fraction
 * digits are accepted when they are zeros ("13.880"), never when they would
 * name a fraction of a fen ("1.234"). Returns 0 and writes
 * *fen only on success; -EINVAL for anything else (including a negative
 * amount), -ERANGE when the result does not fit in int64_t.
 */
int amount_yuan_to_fen(const char *s, size_t len, int64_t *fen);

/* An integer fen string (Baidu: "100"): DIGITS, or "-" DIGITS when
 * allow_negative. Same errors as amount_yuan_to_fen. */
int amount_fen_parse(const char *s, size_t len, int allow_negative, int64_t *fen);

/* Format fen as a yuan string with exactly two decimals ("12.30", "-0.01").
 * Returns the length written (excluding NUL), or -ENOSPC if buf is too small. */
int amount_fen_to_yuan(int64_t fen, char *buf, size_t buflen);

#endif
