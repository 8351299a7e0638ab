/* core: the allocation seam. Tests make the n-th allocation fail. */
#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "weft/core.h"

static atomic_long fail_countdown; /* 0: off; k: the k-th call from now fails */
static atomic_long n_allocs;       /* successful or not, every call counts */

long wf_alloc_count(void) { return atomic_load(&n_allocs); }

void wf_alloc_fail_at(long n) { atomic_store(&fail_countdown, n > 0 ? n : 0); }

static int should_fail(void) {
    atomic_fetch_add(&n_allocs, 1);
    long c = atomic_load(&fail_countdown);
    while (c > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &c, c - 1)) return c == 1;
    }
    return 0;
}

void *wf_malloc(size_t size) {
    if (should_fail()) return NULL;
    return malloc(size ? size : 1);
}

void *wf_calloc(size_t n, size_t size) {
    if (should_fail()) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *wf_realloc(void *p, size_t size) {
    if (should_fail()) return NULL;
    return realloc(p, size ? size : 1);
}

void wf_free(void *p) { free(p); }

char *wf_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = wf_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void wf_appendf(char *buf, size_t n, size_t *k, const char *fmt, ...) {
    if (n == 0 || *k >= n - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf + *k, n - *k, fmt, ap);
    va_end(ap);
    if (r > 0) *k = *k + (size_t)r < n - 1 ? *k + (size_t)r : n - 1;
}

void *wf_aalloc(size_t size) {
    if (should_fail()) return NULL;
    size = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, size ? size : 64);
    if (p) memset(p, 0, size);
    return p;
}

void wf_afree(void *p) { free(p); }

/* ---- the memory bound ----
 * One process-wide override, set by the command line before any thread
 * starts (--max-memory, WEFT_MAX_MEMORY); read by every check after. */
static uint64_t mem_limit; /* bytes; 0: none */
static char mem_limit_origin[64] = "--max-memory";

void wf_mem_set_limit(uint64_t bytes, const char *origin) {
    mem_limit = bytes;
    snprintf(mem_limit_origin, sizeof mem_limit_origin, "%s", origin && *origin ? origin : "--max-memory");
}

uint64_t wf_mem_limit(void) { return mem_limit; }

int wf_mem_parse_size(const char *name, const char *text, uint64_t *bytes) {
    const char *s = text ? text : "";
    uint64_t v = 0;
    int digits = 0, ok = 1;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) ok = 0;
        if (ok) v = v * 10 + (uint64_t)(*s - '0');
    }
    static const char suffix[] = "KMGT"; /* powers of 1024 */
    const char *u = *s ? strchr(suffix, toupper((unsigned char)*s)) : NULL;
    int shift = u ? 10 * (int)(u - suffix + 1) : 0;
    if (u) s++;
    if (!digits || *s)
        return wf_error(WF_ERR_INVALID,
                        "%s: '%s' is not a size: want a number of bytes, optionally followed by K, M, G or T "
                        "(powers of 1024), e.g. 512M or 2G",
                        name, text ? text : "");
    if (!ok || (shift && v > (UINT64_MAX >> shift)))
        return wf_error(WF_ERR_RANGE, "%s: '%s' is too large: at most 2^64 - 1 bytes", name, text);
    *bytes = v << shift;
    return WF_OK;
}

void wf_fmt_bytes(char *buf, size_t n, double bytes, int binary) {
    static const char *dec[] = {"bytes", "kB", "MB", "GB", "TB", "PB"};
    static const char *bin[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double base = binary ? 1024 : 1000;
    int u = 0;
    while (u < 5 && (bytes >= base || (u > 0 && bytes >= 999.5))) { /* never "1e+03 KiB" */
        bytes /= base;
        u++;
    }
    if (u == 0)
        snprintf(buf, n, "%.0f bytes", bytes);
    else
        snprintf(buf, n, "%.3g %s", bytes, binary ? bin[u] : dec[u]);
}

int wf_mem_check_items(const char *who, const char *what, size_t bytes, const char *items_what,
                       const struct wf_mem_item *items, int n_items) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    double limit = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
    /* the override replaces physical memory as the bound (higher or lower); a lower ulimit -v still wins */
    int over = mem_limit > 0;
    if (over) limit = (double)mem_limit;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (limit == 0 || (double)rl.rlim_cur < limit)) {
        limit = (double)rl.rlim_cur;
        over = -1;
    }
    if (!(limit > 0 && (double)bytes > limit)) return WF_OK;
    /* the machine's bounds in decimal units; the override in the binary units it is given in */
    int binary = over > 0;
    char msg[2048], need[32], have[32];
    size_t k = 0;
    wf_fmt_bytes(need, sizeof need, (double)bytes, binary);
    wf_fmt_bytes(have, sizeof have, limit, binary);
    if (binary)
        wf_appendf(msg, sizeof msg, &k, "%s: %s need %s, more than the %s of %s", who, what, need, mem_limit_origin,
                   have);
    else
        wf_appendf(msg, sizeof msg, &k, "%s: %s need %s, more than this machine's %s of %s", who, what, need,
                   over < 0 ? "address-space limit (ulimit -v)" : "physical memory", have);
    if (n_items > 0) wf_appendf(msg, sizeof msg, &k, "; largest %s:", items_what ? items_what : "tensors");
    for (int i = 0; i < n_items; i++) {
        char sz[32];
        wf_fmt_bytes(sz, sizeof sz, (double)items[i].bytes, binary);
        wf_appendf(msg, sizeof msg, &k, "%s %s", i ? "," : "", items[i].name);
        if (items[i].shape) wf_appendf(msg, sizeof msg, &k, " %s", items[i].shape);
        wf_appendf(msg, sizeof msg, &k, " %s", sz);
    }
    return wf_error(WF_ERR_NOMEM, "%s", msg);
}

int wf_mem_check(const char *who, const char *what, size_t bytes) {
    return wf_mem_check_items(who, what, bytes, NULL, NULL, 0);
}
