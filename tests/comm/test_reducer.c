/*
 * comm: the background reducer, with ranks as threads of one process joined
 * by socketpairs, so ThreadSanitizer sees every thread involved (`make
 * tsan-test`). Buckets submitted while earlier ones are being reduced all
 * come out as exact sums, round after round; a dead peer fails the first
 * bucket, skips the rest, and wf_reducer_wait returns that first error with
 * its message.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/comm.h"

#define P 3
#define NB 6

static struct wf_conn conns[P][P]; /* conns[r][j]: rank r's end towards rank j */
static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;
static int failures;

static int64_t value(int q, size_t i, size_t salt) { return (int64_t)wf_mix64(((uint64_t)q << 40) ^ (i << 8) ^ salt); }

static void *rank_main(void *arg) {
    int r = (int)(long)arg, bad = 0;
    static const size_t bn[NB] = {5000, 1, 0, 100000, 20000, 3};
    struct wf_conn *peers[P];
    for (int j = 0; j < P; j++)
        peers[j] = j == r ? NULL : &conns[r][j];
    struct wf_group g = {.rank = r, .size = P, .peers = peers, .timeout_s = 10.0};
    struct wf_reducer *red;
    if (wf_reducer_create(&red, &g) != WF_OK) return (void *)1;
    int64_t *b[NB];
    for (int k = 0; k < NB; k++)
        b[k] = malloc((bn[k] + 1) * 8);
    for (size_t round = 0; round < 5; round++) {
        wf_reducer_begin(red);
        for (size_t k = 0; k < NB; k++) {
            /* filling the next bucket overlaps the reduction of the previous ones */
            for (size_t i = 0; i < bn[k]; i++)
                b[k][i] = value(r, i, round * 16 + k);
            bad |= wf_reducer_submit(red, b[k], bn[k]) != WF_OK;
            (void)wf_reducer_busy_seconds(red); /* read while the thread adds to it */
        }
        if (wf_reducer_wait(red) != WF_OK) {
            fprintf(stderr, "rank %d: %s\n", r, wf_errmsg());
            bad = 1;
        }
        for (size_t k = 0; k < NB; k++)
            for (size_t i = 0; i < bn[k]; i++) {
                uint64_t s = 0;
                for (int q = 0; q < P; q++)
                    s += (uint64_t)value(q, i, round * 16 + k);
                bad |= b[k][i] != (int64_t)s;
            }
    }
    wf_reducer_destroy(red);
    for (int k = 0; k < NB; k++)
        free(b[k]);
    pthread_mutex_lock(&check_mu);
    failures += bad;
    pthread_mutex_unlock(&check_mu);
    return NULL;
}

static void test_ranks_as_threads(void) {
    for (int r = 0; r < P; r++)
        for (int j = r + 1; j < P; j++) {
            int sv[2];
            CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
            char name[32];
            snprintf(name, sizeof name, "rank %d", j);
            CHECK(wf_conn_from_fd(&conns[r][j], sv[0], name) == WF_OK);
            snprintf(name, sizeof name, "rank %d", r);
            CHECK(wf_conn_from_fd(&conns[j][r], sv[1], name) == WF_OK);
        }
    pthread_t t[P];
    for (int r = 0; r < P; r++)
        CHECK(pthread_create(&t[r], NULL, rank_main, (void *)(long)r) == 0);
    for (int r = 0; r < P; r++)
        pthread_join(t[r], NULL);
    CHECKF(failures == 0, "%d ranks saw wrong sums or errors", failures);
    for (int r = 0; r < P; r++)
        for (int j = 0; j < P; j++)
            if (j != r) wf_conn_close(&conns[r][j]);
}

static void test_dead_peer(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    close(sv[1]); /* rank 1 is gone before it ever answers */
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, sv[0], "rank 1") == WF_OK);
    struct wf_conn *peers[2] = {NULL, &c};
    struct wf_group g = {.rank = 0, .size = 2, .peers = peers, .timeout_s = 5.0};
    struct wf_reducer *red;
    CHECK(wf_reducer_create(&red, &g) == WF_OK);
    static int64_t a[1000], b[100000];
    for (int round = 0; round < 2; round++) {
        wf_reducer_begin(red);
        CHECK(wf_reducer_submit(red, a, 1000) == WF_OK);
        CHECK(wf_reducer_submit(red, b, 100000) == WF_OK);
        CHECK(wf_reducer_submit(red, a, 10) == WF_OK);
        double t0 = wf_now();
        int st = wf_reducer_wait(red);
        CHECKF(st == WF_ERR_PEER && strstr(wf_errmsg(), "reducer bucket 0") && strstr(wf_errmsg(), "rank 1"),
               "round %d: %d %s", round, st, wf_errmsg());
        CHECK(wf_now() - t0 < 2.0 * wf_test_slow()); /* the later buckets were skipped, not timed out */
    }
    wf_reducer_destroy(red);
    wf_reducer_destroy(NULL);
    wf_conn_close(&c);
}

int main(void) {
    alarm((unsigned)(60 * wf_test_slow()));
    test_ranks_as_threads();
    test_dead_peer();
    return wf_test_done("test_reducer");
}
