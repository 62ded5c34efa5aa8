/*
 * alipay_response.h: verifying the signature of an Alipay OpenAPI response
 * (protocols.md section 5). Alipay signs the exact raw text of the value of
 * "<method with dots as underscores>_response", from its '{' to the matching
 * '}', so it is cut out of the body byte for byte, never re-serialised.
 * Lower layer: never logs; returns -errno with a reason.
 */
#ifndef PAYHOOKD_ALIPAY_RESPONSE_H
#define PAYHOOKD_ALIPAY_RESPONSE_H

#include <stddef.h>

#include "wire/crypto.h"

/*
 * Find the value of top-level member `key` in a JSON object and give its
 * exact extent. The value must be an object. Returns 0 with *start and
 * *len set, or -ENOENT (absent), -EEXIST (the key occurs twice at the top
 * level: ambiguous), -EINVAL (not a JSON object, malformed, or the value is
 * not an object).
 */
int alipay_response_content(const char *raw, size_t raw_len, const char *key, size_t *start,
                            size_t *len);

/*
 * The top-level "sign" string, JSON escapes resolved (base64 may arrive
 * with "\/"). *sign is malloc'd. Returns 0, -ENOKEY (no sign: Alipay leaves
 * some error answers unsigned), -EEXIST, -EINVAL, -ENOMEM.
 */
int alipay_response_sign(const char *raw, size_t raw_len, char **sign);

/*
 * Verify a response to `method` (e.g. "alipay.trade.query"): the content of
 * alipay_trade_query_response (or of error_response when that is what came
 * back), signed with `hash` by the key. If the check fails and the content
 * contains "\/", one more check with "\/" replaced by "/" (what the official
 * SDKs do). Returns 0 verified, -EBADMSG (signature wrong), -ENOKEY
 * (unsigned), -ENOENT, -EEXIST, -EINVAL, -ENOMEM; err says which.
 */
int alipay_response_verify(const char *raw, size_t raw_len, const char *method,
                           const struct crypto_key *key, enum crypto_hash hash, char *err,
                           size_t errlen);

#endif
