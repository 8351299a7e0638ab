/* core: the allocation seam. Tests make the n-th allocation fail. */
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

int wf_mem_check(const char *who, const char *what, size_t bytes) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    double limit = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
    const char *kind = "physical memory";
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (limit == 0 || (double)rl.rlim_cur < limit)) {
        limit = (double)rl.rlim_cur;
        kind = "address-space limit (ulimit -v)";
    }
    if (limit > 0 && (double)bytes > limit)
        return wf_error(WF_ERR_NOMEM, "%s: %s need %.3g GB, more than this machine's %s of %.3g GB", who, what,
                        (double)bytes / 1e9, kind, limit / 1e9);
    return WF_OK;
}
