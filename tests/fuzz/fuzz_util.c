/*
 * fuzz_util.c: helpers shared by the libFuzzer targets (see fuzz_util.h).
 * Harness code: it aborts on any setup failure instead of returning errors.
 */
#include "fuzz_util.h"

#include <ftw.h>
#include <limits.h>
#include <sanitizer/asan_interface.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *guard_base; /* readable pages, then one PROT_NONE page */
static size_t guard_cap; /* readable bytes */
static char tmpdir[4096];

/* Print and abort. */
void fuzz_die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Print a line when asked to. */
void fuzz_verbose(const char *fmt, ...)
{
    static int on = -1;
    va_list ap;

    if (on < 0)
        on = getenv("PAYHOOKD_FUZZ_VERBOSE") != NULL;
    if (!on)
        return;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Make room for size readable bytes before the guard page. */
static void guard_grow(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), cap = (size + page - 1) / page * page;
    char *p;

    if (cap == 0)
        cap = page;
    if (guard_base) {
        ASAN_UNPOISON_MEMORY_REGION(guard_base, guard_cap);
        munmap(guard_base, guard_cap + page);
    }
    p = mmap(NULL, cap + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
             0);
    if (p == MAP_FAILED || mprotect(p + cap, page, PROT_NONE) < 0)
        fuzz_die("cannot map %zu bytes with a guard page", cap);
    guard_base = p;
    guard_cap = cap;
}

/* The input ending right before an unreadable page. */
const char *fuzz_guarded(const uint8_t *data, size_t size)
{
    char *copy;

    if (!guard_base || size > guard_cap)
        guard_grow(size);
    copy = guard_base + guard_cap - size;
    ASAN_UNPOISON_MEMORY_REGION(guard_base, guard_cap);
    ASAN_POISON_MEMORY_REGION(guard_base, guard_cap - size);
    if (size)
        memcpy(copy, data, size);
    return copy;
}

/* A NUL-terminated copy. */
char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (!s)
        fuzz_die("out of memory");
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* json_valid() of an in-memory SQLite database opened on first use. */
int fuzz_sqlite_json_valid(const char *text, size_t len)
{
    static sqlite3 *db;
    static sqlite3_stmt *st;
    int valid;

    if (len > INT_MAX)
        fuzz_die("%zu bytes are too many for SQLite", len);
    if (!db &&
        (sqlite3_open(":memory:", &db) != SQLITE_OK ||
         sqlite3_prepare_v2(db, "SELECT json_valid(?1)", -1, &st, NULL) != SQLITE_OK))
        fuzz_die("cannot open an in-memory SQLite database");
    sqlite3_bind_text(st, 1, text, (int)len, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        fuzz_die("json_valid failed: %s", sqlite3_errmsg(db));
    valid = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return valid;
}

/* nftw callback: remove one entry (children come first with FTW_DEPTH). */
static int tmpdir_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* atexit: remove the directory and what the target left in it. */
static void tmpdir_cleanup(void)
{
    if (tmpdir[0])
        nftw(tmpdir, tmpdir_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* The private directory, made on first use. */
const char *fuzz_tmpdir(void)
{
    const char *base = getenv("PAYHOOKD_FUZZ_TMP");

    if (tmpdir[0])
        return tmpdir;
    if (!base || !base[0])
        base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/payhookd-fuzz.XXXXXX", base);
    if (!mkdtemp(tmpdir))
        fuzz_die("mkdtemp %s failed", tmpdir);
    atexit(tmpdir_cleanup);
    return tmpdir;
}

/* Write a whole file. */
void fuzz_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "w");

    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        fuzz_die("cannot write %s", path);
}
