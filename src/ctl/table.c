/*
 * table.c: result sets as text tables or JSON (see table.h).
 */
#include "ctl/table.h"

#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "wire/crypto.h"
#include "wire/json.h"

#define CELL_WIDTH_MAX 40 /* display columns of one table cell */
#define CELL_ELLIPSIS  "..."

struct ctl_cell {
    int type;     /* SQLITE_INTEGER, _FLOAT, _TEXT, _BLOB or _NULL */
    char *bytes;  /* NUL-terminated copy (text, integer decimal, blob) */
    size_t len;
};

struct ctl_rows {
    size_t ncol, nrow, cap;
    char **names;
    unsigned char *json_col; /* per column: its text is JSON */
    struct ctl_cell *cells;  /* nrow * ncol */
};

/* Copy column i of the current row into c. */
static int rows_cell(sqlite3_stmt *st, int i, struct ctl_cell *c)
{
    const void *p;

    c->type = sqlite3_column_type(st, i);
    if (c->type == SQLITE_NULL)
        return 0;
    p = c->type == SQLITE_BLOB ? sqlite3_column_blob(st, i) : sqlite3_column_text(st, i);
    c->len = (size_t)sqlite3_column_bytes(st, i);
    if (!(c->bytes = malloc(c->len + 1)))
        return -1;
    if (c->len)
        memcpy(c->bytes, p, c->len);
    c->bytes[c->len] = '\0';
    return 0;
}

/* Room for one more row. */
static int rows_grow(struct ctl_rows *r)
{
    struct ctl_cell *n;
    size_t cap;

    if (r->nrow < r->cap)
        return 0;
    cap = r->cap ? r->cap * 2 : 16;
    if (!(n = realloc(r->cells, cap * r->ncol * sizeof(*n))))
        return -1;
    memset(n + r->cap * r->ncol, 0, (cap - r->cap) * r->ncol * sizeof(*n));
    r->cells = n;
    r->cap = cap;
    return 0;
}

static struct ctl_rows *rows_new(sqlite3_stmt *st)
{
    struct ctl_rows *r = calloc(1, sizeof(*r));
    size_t i;

    if (!r)
        return NULL;
    r->ncol = (size_t)sqlite3_column_count(st);
    r->names = calloc(r->ncol ? r->ncol : 1, sizeof(*r->names));
    r->json_col = calloc(r->ncol ? r->ncol : 1, 1);
    if (!r->names || !r->json_col)
        return ctl_rows_free(r);
    for (i = 0; i < r->ncol; i++)
        if (!(r->names[i] = util_strdup(sqlite3_column_name(st, (int)i))))
            return ctl_rows_free(r);
    return r;
}

struct ctl_rows *ctl_rows_read(sqlite3_stmt *st, char *err, size_t errlen)
{
    struct ctl_rows *r = rows_new(st);
    size_t i;
    int rc;

    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows_grow(r) < 0)
            break;
        for (i = 0; i < r->ncol; i++)
            if (rows_cell(st, (int)i, &r->cells[r->nrow * r->ncol + i]) < 0)
                break;
        r->nrow++;
        if (i < r->ncol)
            break;
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s",
                 rc == SQLITE_ROW ? "out of memory" : sqlite3_errmsg(sqlite3_db_handle(st)));
        return ctl_rows_free(r);
    }
    return r;
}

void ctl_rows_json_column(struct ctl_rows *r, const char *column)
{
    size_t i;

    for (i = 0; i < r->ncol; i++)
        if (strcmp(r->names[i], column) == 0)
            r->json_col[i] = 1;
}

size_t ctl_rows_count(const struct ctl_rows *r)
{
    return r->nrow;
}

struct ctl_rows *ctl_rows_free(struct ctl_rows *r)
{
    size_t i;

    if (!r)
        return NULL;
    for (i = 0; i < r->nrow * r->ncol; i++)
        free(r->cells[i].bytes);
    for (i = 0; r->names && i < r->ncol; i++)
        free(r->names[i]);
    free(r->names);
    free(r->json_col);
    free(r->cells);
    free(r);
    return NULL;
}

/* ---- text -------------------------------------------------------------- */

/* Display columns of code point cp: 2 for the wide (CJK) ranges. */
static size_t cp_width(unsigned cp)
{
    return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
                   (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
                   (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
                   (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x20000 && cp <= 0x3fffd)
               ? 2
               : 1;
}

/* The code point of the valid k-byte UTF-8 sequence at p. */
static unsigned cp_decode(const unsigned char *p, size_t k)
{
    static const unsigned char lead_mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
    unsigned cp = p[0] & lead_mask[k];
    size_t i;

    for (i = 1; i < k; i++)
        cp = (cp << 6) | (p[i] & 0x3f);
    return cp;
}

/*
 * Append the printable form of p[0..n) to out, stopping before a character
 * that would pass `limit` display columns (0: no limit). Control bytes, C1
 * controls and bytes that are not UTF-8 are written as \n, \t, \r or \xNN,
 * so nothing reaches the terminal as a control sequence. Returns the
 * display width written; *cut says whether characters were left out.
 */
static size_t text_put(struct buf *out, const char *p, size_t n, size_t limit, int *cut)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0, w = 0, k, cw;
    char esc[8];

    *cut = 0;
    while (i < n) {
        k = json_utf8_len(u + i, n - i);
        esc[0] = '\0';
        if (k == 1 && u[i] >= 0x20 && u[i] != 0x7f)
            esc[0] = (char)u[i], esc[1] = '\0';
        else if (k == 1 || k == 0 || (k == 2 && cp_decode(u + i, k) < 0xa0))
            k = 1, snprintf(esc, sizeof(esc), "%s",
                            u[i] == '\n' ? "\\n" : u[i] == '\t' ? "\\t" : u[i] == '\r' ? "\\r" : "");
        if (k == 1 && !esc[0])
            snprintf(esc, sizeof(esc), "\\x%02x", u[i]);
        cw = esc[0] ? strlen(esc) : cp_width(cp_decode(u + i, k));
        if (limit && w + cw > limit) {
            *cut = 1;
            return w;
        }
        if (esc[0])
            buf_puts(out, esc);
        else
            buf_append(out, p + i, k);
        w += cw;
        i += k;
    }
    return w;
}

/* text_put, shortened to maxw columns with "..." when it does not fit. */
static size_t text_append(struct buf *out, const char *p, size_t n, size_t maxw)
{
    size_t start = out->len, w;
    int cut;

    w = text_put(out, p, n, maxw, &cut);
    if (!cut)
        return w;
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    w = text_put(out, p, n, maxw - strlen(CELL_ELLIPSIS), &cut);
    buf_puts(out, CELL_ELLIPSIS);
    return w + strlen(CELL_ELLIPSIS);
}

static const struct ctl_cell *rows_at(const struct ctl_rows *r, size_t row, size_t col)
{
    return &r->cells[row * r->ncol + col];
}

/* A column is numeric (right-aligned) when no cell is text or a blob. */
static int col_numeric(const struct ctl_rows *r, size_t col)
{
    size_t i;
    int t;

    for (i = 0; i < r->nrow; i++)
        if ((t = rows_at(r, i, col)->type) != SQLITE_INTEGER && t != SQLITE_FLOAT &&
            t != SQLITE_NULL)
            return 0;
    return 1;
}

/* One cell's printable text into out (emptied first); its display width. */
static size_t cell_text(const struct ctl_cell *c, struct buf *out, size_t maxw)
{
    out->len = 0;
    if (out->data)
        out->data[0] = '\0';
    if (c->type == SQLITE_NULL)
        return text_append(out, "-", 1, 0);
    return text_append(out, c->bytes, c->len, maxw);
}

/* Print cell text padded to width w (right-aligned when numeric). */
static void cell_pad(FILE *f, const char *text, size_t tw, size_t w, int right, int last)
{
    size_t pad = w > tw ? w - tw : 0;

    if (right)
        fprintf(f, "%*s", (int)pad, "");
    fputs(text, f);
    if (!right && !last)
        fprintf(f, "%*s", (int)pad, "");
    if (!last)
        fputs("  ", f);
}

int ctl_rows_print(const struct ctl_rows *r, FILE *f, const char *empty)
{
    struct buf b = {0};
    size_t *w, i, j, tw;
    unsigned char *num;

    if (!r->nrow) {
        fprintf(f, "%s\n", empty);
        return 0;
    }
    w = calloc(r->ncol, sizeof(*w));
    num = calloc(r->ncol, 1);
    if (!w || !num) {
        free(w), free(num);
        return -1;
    }
    for (j = 0; j < r->ncol; j++) {
        w[j] = strlen(r->names[j]);
        num[j] = (unsigned char)col_numeric(r, j);
        for (i = 0; i < r->nrow; i++)
            if ((tw = cell_text(rows_at(r, i, j), &b, CELL_WIDTH_MAX)) > w[j])
                w[j] = tw;
    }
    for (j = 0; j < r->ncol; j++)
        cell_pad(f, r->names[j], strlen(r->names[j]), w[j], num[j], j + 1 == r->ncol);
    fputc('\n', f);
    for (i = 0; i < r->nrow; i++) {
        for (j = 0; j < r->ncol; j++) {
            tw = cell_text(rows_at(r, i, j), &b, CELL_WIDTH_MAX);
            cell_pad(f, b.data ? b.data : "", tw, w[j], num[j], j + 1 == r->ncol);
        }
        fputc('\n', f);
    }
    buf_free(&b);
    free(w);
    free(num);
    return 0;
}

void ctl_rows_print_record(const struct ctl_rows *r, size_t row, FILE *f)
{
    struct buf b = {0};
    size_t j, w = 0;

    if (row >= r->nrow)
        return;
    for (j = 0; j < r->ncol; j++)
        if (strlen(r->names[j]) > w)
            w = strlen(r->names[j]);
    for (j = 0; j < r->ncol; j++) {
        cell_text(rows_at(r, row, j), &b, 0);
        fprintf(f, "%-*s  %s\n", (int)w + 1, r->names[j], b.data ? b.data : "");
    }
    buf_free(&b);
}

/* ---- JSON -------------------------------------------------------------- */

/* Add cell c under its column's name to o. */
static int cell_json(cJSON *o, const struct ctl_rows *r, size_t col, const struct ctl_cell *c)
{
    const char *name = r->names[col];
    cJSON *v = NULL;
    char key[128];

    switch (c->type) {
    case SQLITE_NULL:
        v = cJSON_CreateNull();
        break;
    case SQLITE_INTEGER:
        v = cJSON_CreateRaw(c->bytes); /* exact, beyond 2^53 too */
        break;
    case SQLITE_FLOAT:
        v = cJSON_CreateNumber(strtod(c->bytes, NULL));
        break;
    default:
        if (!json_utf8_text(c->bytes, c->len)) {
            char *b64 = crypto_b64_encode(c->bytes, c->len);
            snprintf(key, sizeof(key), "%s_base64", name);
            v = b64 ? cJSON_CreateString(b64) : NULL;
            free(b64);
            return v && cJSON_AddItemToObject(o, key, v) ? 0 : (cJSON_Delete(v), -1);
        }
        if (r->json_col[col] && (v = cJSON_ParseWithLength(c->bytes, c->len)) != NULL)
            break;
        v = cJSON_CreateString(c->bytes);
    }
    return v && cJSON_AddItemToObject(o, name, v) ? 0 : (cJSON_Delete(v), -1);
}

cJSON *ctl_rows_json_row(const struct ctl_rows *r, size_t row)
{
    cJSON *o;
    size_t j;

    if (row >= r->nrow || !(o = cJSON_CreateObject()))
        return NULL;
    for (j = 0; j < r->ncol; j++)
        if (cell_json(o, r, j, rows_at(r, row, j)) < 0) {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

cJSON *ctl_rows_json(const struct ctl_rows *r)
{
    cJSON *a = cJSON_CreateArray(), *o;
    size_t i;

    for (i = 0; a && i < r->nrow; i++) {
        if (!(o = ctl_rows_json_row(r, i)) || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

int ctl_json_print(const cJSON *doc, FILE *f)
{
    char *t = doc ? cJSON_Print(doc) : NULL;

    if (!t)
        return -1;
    fputs(t, f);
    fputc('\n', f);
    free(t);
    return 0;
}
