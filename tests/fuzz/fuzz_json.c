/*
 * fuzz_json.c: fuzzes json_parse (src/wire/json.c) with a small depth limit over
 * input that ends right before an unreadable page, then json_text and
 * json_string on every member of every object in the tree. Invariants: an
 * accepted tree is no deeper than the limit and has no object with a
 * repeated key; an accepted text is JSON to SQLite too (json_valid: a TP
 * message is stored as received, and the store's views read it with
 * json_extract, which fails the whole query on one malformed row);
 * json_text's result fits its buffer, is NUL-terminated, and equals
 * json_string's for a string member; a failure gives a reason.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_util.h"
#include "wire/json.h"

#define FUZZ_DEPTH 6

/* Check json_text / json_string on every member of obj, recursively. */
static void walk(const cJSON *node, unsigned depth)
{
    const cJSON *it, *b;
    char small[8], big[4096];
    const char *s;
    int n;

    FUZZ_CHECK(depth <= FUZZ_DEPTH);
    for (it = node->child; it; it = it->next) {
        if (cJSON_IsObject(node)) {
            FUZZ_CHECK(it->string != NULL);
            for (b = it->next; b; b = b->next)
                FUZZ_CHECK(strcmp(it->string, b->string) != 0);
            n = json_text(node, it->string, big, sizeof(big));
            FUZZ_CHECK(n == -ENOENT || n == -EINVAL || n == -ERANGE || n == -ENOSPC ||
                       (n >= 0 && (size_t)n < sizeof(big) && big[n] == '\0'));
            s = json_string(node, it->string);
            FUZZ_CHECK(!s == !cJSON_IsString(it));
            if (s && n >= 0)
                FUZZ_CHECK(strcmp(s, big) == 0);
            n = json_text(node, it->string, small, sizeof(small));
            FUZZ_CHECK(n < 0 || ((size_t)n < sizeof(small) && small[n] == '\0'));
        }
        if (cJSON_IsObject(it) || cJSON_IsArray(it))
            walk(it, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = fuzz_guarded(data, size);
    cJSON *root = NULL;
    char err[256] = "";
    int r = json_parse(s, size, FUZZ_DEPTH, &root, err, sizeof(err));

    if (r < 0) {
        FUZZ_CHECK(r == -EINVAL || r == -E2BIG || r == -EEXIST || r == -ENOMEM);
        FUZZ_CHECK(root == NULL && err[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(root != NULL);
    if (!fuzz_sqlite_json_valid(s, size))
        fuzz_die("json_parse accepts what SQLite's json_valid() refuses");
    if (cJSON_IsObject(root) || cJSON_IsArray(root))
        walk(root, 1);
    json_text(root, "x", err, sizeof(err)); /* a non-object root is not an error */
    json_string(root, "x");
    json_free(root);
    return 0;
}
