/*
 * core: the fork-join pool. Every index is visited exactly once for any
 * thread count and loop length, chunks are contiguous and in order, the
 * pool can be resized, and thousands of back-to-back loops neither lose a
 * wake-up nor hang (the ctest timeout would catch a hang). Run under TSan
 * by `make tsan-test`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"

static int visits[100000];

struct ctx {
    int *v;
    long chunks;
};

static void mark(void *c, long b, long e) {
    struct ctx *x = c;
    for (long i = b; i < e; i++)
        x->v[i]++;
}

static void check_once(long n, long min_chunk) {
    memset(visits, 0, sizeof visits);
    struct ctx c = {visits, 0};
    wf_parallel_for(n, min_chunk, mark, &c);
    int ok = 1;
    for (long i = 0; i < n; i++)
        ok &= visits[i] == 1;
    for (long i = n; i < (long)WF_ARRAY_LEN(visits) && i < n + 16; i++)
        ok &= visits[i] == 0;
    CHECKF(ok, "threads %d n %ld min_chunk %ld: some index not visited exactly once", wf_pool_threads(), n, min_chunk);
}

static void square(void *c, long b, long e) {
    float *x = c;
    for (long i = b; i < e; i++)
        x[i] = x[i] * x[i] + 0.5f;
}

int main(void) {
    static const long sizes[] = {0, 1, 2, 3, 7, 64, 1000, 4097, 99999};
    for (int t = 1; t <= 5; t++) {
        CHECK(wf_pool_set_threads(t) == WF_OK);
        CHECK(wf_pool_threads() == t);
        for (size_t i = 0; i < WF_ARRAY_LEN(sizes); i++) {
            check_once(sizes[i], 1);
            check_once(sizes[i], 1000);
        }
    }
    /* many short loops back to back: no lost wake-ups */
    CHECK(wf_pool_set_threads(2) == WF_OK);
    for (int r = 0; r < 3000; r++)
        check_once(64, 1);
    /* results do not depend on the thread count */
    float a[5000], b[5000];
    for (int i = 0; i < 5000; i++)
        a[i] = b[i] = (float)i * 0.001f;
    CHECK(wf_pool_set_threads(1) == WF_OK);
    wf_parallel_for(5000, 1, square, a);
    CHECK(wf_pool_set_threads(3) == WF_OK);
    wf_parallel_for(5000, 1, square, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(wf_pool_set_threads(1) == WF_OK);
    return wf_test_done("test_pool");
}
