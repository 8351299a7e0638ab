/*
 * comm: collectives across real processes. The test forks 2, 3 and 4 ranks
 * that build a full TCP mesh over 127.0.0.1 (every rank listens on an
 * ephemeral port; a lower rank connects to a higher one and sends its rank)
 * and checks exact int64 sums for several sizes with every algorithm,
 * broadcast from every root, the barrier, and the background reducer; every
 * rank's results hash the same. Then ranks are killed and stopped on
 * purpose: the others get WF_ERR_PEER / WF_ERR_TIMEOUT naming the rank.
 *
 * The parent only forks, waits and compares; an alarm in each process
 * bounds the time, and the parent kills only the pids it forked.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/comm.h"

#define MAXR 4
#define MSG_RANK 1 /* the test's own hello: "I am rank r" */

static pid_t pids[MAXR];
static int npids;

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "test_allreduce: timed out, killing the ranks\n";
    for (int i = 0; i < npids; i++)
        if (pids[i] > 0) kill(pids[i], SIGKILL);
    for (int i = 0; i < npids; i++)
        if (pids[i] > 0) waitpid(pids[i], NULL, 0);
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(2);
}

/* ---- in a rank ---- */

struct rank_ctx {
    int rank, size;
    struct wf_group g;
    struct wf_conn conns[MAXR];
    struct wf_conn *peers[MAXR];
    int hash_fd;
};

static int build_mesh(struct rank_ctx *x, const int *lfd, const int *port) {
    int r = x->rank;
    for (int j = r + 1; j < x->size; j++) {
        char name[32];
        snprintf(name, sizeof name, "rank %d", j);
        uint8_t hello[4] = {(uint8_t)r};
        if (wf_tcp_connect(&x->conns[j], "127.0.0.1", port[j], name, 5.0) ||
            wf_send(&x->conns[j], MSG_RANK, hello, 4, 5.0))
            return -1;
    }
    for (int k = 0; k < r; k++) {
        struct wf_conn c;
        int type;
        const void *p;
        size_t n;
        if (wf_tcp_accept(lfd[r], &c, "rank ?", 5.0) || wf_recv(&c, &type, &p, &n, 5.0)) return -1;
        int j = n == 4 ? ((const uint8_t *)p)[0] : -1;
        if (type != MSG_RANK || j < 0 || j >= r || x->conns[j].fd >= 0) {
            fprintf(stderr, "rank %d: bad hello\n", r);
            return -1;
        }
        char addr[64];
        snprintf(addr, sizeof addr, "%s", strchr(c.name, '('));
        wf_conn_set_name(&c, "rank %d %s", j, addr);
        x->conns[j] = c;
    }
    for (int j = 0; j < x->size; j++)
        x->peers[j] = j == r ? NULL : &x->conns[j];
    x->g = (struct wf_group){.rank = r, .size = x->size, .peers = x->peers, .timeout_s = 10.0};
    return 0;
}

static void put_hash(struct rank_ctx *x, const void *p, size_t n) {
    uint64_t h = wf_hash64(p, n, 0);
    if (write(x->hash_fd, &h, 8) != 8) wf_test_failures++;
}

/* What rank q holds for case `salt`: spans all of int64, so sums wrap. */
static int64_t value(int q, size_t i, uint64_t salt) {
    return (int64_t)wf_mix64(((uint64_t)q << 48) ^ (i << 8) ^ salt);
}

static void fill(int64_t *buf, int q, size_t n, uint64_t salt) {
    for (size_t i = 0; i < n; i++)
        buf[i] = value(q, i, salt);
}

static int check_sum(const int64_t *buf, int size, size_t n, uint64_t salt) {
    for (size_t i = 0; i < n; i++) {
        uint64_t s = 0;
        for (int q = 0; q < size; q++)
            s += (uint64_t)value(q, i, salt);
        if (buf[i] != (int64_t)s) return 0;
    }
    return 1;
}

static const size_t sizes[] = {0, 1, 7, 1000, 300000};

static void body_collectives(struct rank_ctx *x) {
    struct wf_group *g = &x->g;
    int64_t *buf = malloc(300000 * sizeof *buf);
    for (int algo = 0; algo <= 2; algo++)
        for (size_t k = 0; k < WF_ARRAY_LEN(sizes); k++) {
            size_t n = sizes[k];
            uint64_t salt = (uint64_t)algo * 16 + k;
            fill(buf, x->rank, n, salt);
            int st = wf_allreduce_i64_algo(g, buf, n, algo);
            CHECKF(st == WF_OK, "rank %d: %s", x->rank, wf_errmsg());
            CHECKF(check_sum(buf, x->size, n, salt), "rank %d of %d: algo %d n %zu: wrong sum", x->rank, x->size, algo,
                   n);
            put_hash(x, buf, n * 8);
        }
    CHECK(g->bytes > 0);

    /* broadcast from every root, small (direct) and large (chain) */
    static const size_t bsizes[] = {1, 1000, 200001};
    for (int root = 0; root < x->size; root++)
        for (size_t k = 0; k < WF_ARRAY_LEN(bsizes); k++) {
            uint8_t *b = (uint8_t *)buf;
            for (size_t i = 0; i < bsizes[k]; i++)
                b[i] = (uint8_t)(x->rank == root ? i * 7 + (size_t)root : 0xee);
            CHECKF(wf_broadcast(g, root, b, bsizes[k]) == WF_OK, "rank %d: %s", x->rank, wf_errmsg());
            int ok = 1;
            for (size_t i = 0; i < bsizes[k]; i++)
                ok &= b[i] == (uint8_t)(i * 7 + (size_t)root);
            CHECKF(ok, "rank %d: broadcast of %zu bytes from %d differs", x->rank, bsizes[k], root);
            put_hash(x, b, bsizes[k]);
        }

    /* the barrier holds everyone until the last one arrives: the last rank enters it 0.2 s late, and no
     * rank leaves it before that moment (one clock for every process on the machine; the ranks' own
     * arrival times differ on a busy machine, so each compares with the last one's) */
    CHECKF(wf_barrier(g) == WF_OK, "rank %d: %s", x->rank, wf_errmsg());
    if (x->rank == x->size - 1) usleep(200 * 1000);
    double entered = wf_now();
    CHECKF(wf_barrier(g) == WF_OK, "rank %d: %s", x->rank, wf_errmsg());
    double left = wf_now();
    CHECKF(wf_broadcast(g, x->size - 1, &entered, sizeof entered) == WF_OK, "rank %d: %s", x->rank, wf_errmsg());
    CHECKF(left >= entered, "rank %d left the barrier %.3f s before the last rank entered it", x->rank, entered - left);
    for (int i = 0; i < 20; i++)
        CHECK(wf_barrier(g) == WF_OK);
    free(buf);
}

static void body_reducer(struct rank_ctx *x) {
    static const size_t bn[] = {1000, 0, 7, 300000, 70000, 1, 9000};
    int64_t *b[WF_ARRAY_LEN(bn)];
    struct wf_reducer *red;
    CHECK(wf_reducer_create(&red, &x->g) == WF_OK);
    for (int round = 0; round < 2; round++) {
        wf_reducer_begin(red);
        for (size_t k = 0; k < WF_ARRAY_LEN(bn); k++) {
            b[k] = malloc((bn[k] + 1) * 8);
            fill(b[k], x->rank, bn[k], 1000 + k + 100 * (size_t)round);
            CHECK(wf_reducer_submit(red, b[k], bn[k]) == WF_OK);
        }
        CHECKF(wf_reducer_wait(red) == WF_OK, "rank %d: %s", x->rank, wf_errmsg());
        for (size_t k = 0; k < WF_ARRAY_LEN(bn); k++) {
            CHECKF(check_sum(b[k], x->size, bn[k], 1000 + k + 100 * (size_t)round), "rank %d: bucket %zu wrong",
                   x->rank, k);
            put_hash(x, b[k], bn[k] * 8);
            free(b[k]);
        }
    }
    CHECK(wf_reducer_busy_seconds(red) > 0);
    wf_reducer_destroy(red);
}

/* rank `victim` was killed or stopped after the opening barrier */
static void body_expect_failure(struct rank_ctx *x, int victim, int want) {
    static int64_t buf[300000];
    x->g.timeout_s = 0.5;
    double t0 = wf_now();
    int st = wf_allreduce_i64(&x->g, buf, 300000);
    double dt = wf_now() - t0;
    /* the rank receiving from the victim must name it; the others may name a neighbour that gave up first */
    if ((victim + 1) % x->size == x->rank) {
        char who[16];
        snprintf(who, sizeof who, "rank %d", victim);
        CHECKF(st == want && strstr(wf_errmsg(), who), "rank %d: got %d: %s", x->rank, st, wf_errmsg());
    } else {
        CHECKF(st == WF_ERR_PEER || st == WF_ERR_TIMEOUT, "rank %d: got %d: %s", x->rank, st, wf_errmsg());
    }
    CHECKF(dt < 3.0 * wf_test_slow(), "rank %d: failing took %.2f s", x->rank, dt);
}

/* rank 0 broadcasts while rank 1 all-reduces */
static void body_out_of_step(struct rank_ctx *x) {
    int64_t v[4] = {1, 2, 3, 4};
    if (x->rank == 0) {
        CHECK(wf_broadcast(&x->g, 0, v, sizeof v) == WF_OK);
    } else {
        int st = wf_allreduce_i64(&x->g, v, 4);
        CHECKF(st == WF_ERR_PEER && strstr(wf_errmsg(), "rank 0") && strstr(wf_errmsg(), "different orders"),
               "got %d: %s", st, wf_errmsg());
    }
}

enum body { COLLECTIVES, REDUCER, KILLED, STOPPED, OUT_OF_STEP };

static int rank_main(int rank, int size, const int *lfd, const int *port, int hash_fd, enum body body, int victim) {
    alarm((unsigned)(30 * wf_test_slow()));
    wf_test_failures = 0; /* count this rank's own, not the parent's so far */
    struct rank_ctx x = {.rank = rank, .size = size, .hash_fd = hash_fd};
    for (int j = 0; j < MAXR; j++)
        x.conns[j].fd = -1;
    for (int j = 0; j < size; j++)
        if (j != rank) close(lfd[j]);
    if (build_mesh(&x, lfd, port) || wf_barrier(&x.g)) {
        fprintf(stderr, "rank %d: %s\n", rank, wf_errmsg());
        return 1;
    }
    if (rank == victim) raise(body == KILLED ? SIGKILL : SIGSTOP);
    switch (body) {
    case COLLECTIVES: body_collectives(&x); break;
    case REDUCER: body_reducer(&x); break;
    case KILLED: body_expect_failure(&x, victim, WF_ERR_PEER); break;
    case STOPPED: body_expect_failure(&x, victim, WF_ERR_TIMEOUT); break;
    case OUT_OF_STEP: body_out_of_step(&x); break;
    }
    for (int j = 0; j < size; j++)
        if (j != rank) wf_conn_close(&x.conns[j]);
    return wf_test_failures ? 1 : 0;
}

/* ---- in the parent ---- */

static void run(int size, enum body body, int victim) {
    int lfd[MAXR], port[MAXR], hp[MAXR][2];
    for (int r = 0; r < size; r++) {
        CHECK(wf_tcp_listen("127.0.0.1", 0, &lfd[r], &port[r]) == WF_OK);
        CHECK(pipe(hp[r]) == 0);
    }
    fflush(NULL);
    npids = size;
    for (int r = 0; r < size; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            for (int q = 0; q < size; q++)
                close(hp[q][0]);
            _exit(rank_main(r, size, lfd, port, hp[r][1], body, victim));
        }
        CHECK(pids[r] > 0);
    }
    for (int r = 0; r < size; r++) {
        close(lfd[r]);
        close(hp[r][1]);
    }
    /* the survivors first; a stopped rank is killed once they are done */
    for (int r = 0; r < size; r++) {
        if (r == victim) continue;
        int ws;
        CHECK(waitpid(pids[r], &ws, 0) == pids[r]);
        CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "%d ranks, body %d: rank %d failed (status 0x%x)", size, body, r,
               ws);
        pids[r] = 0;
    }
    if (victim >= 0) {
        int ws;
        kill(pids[victim], SIGKILL);
        CHECK(waitpid(pids[victim], &ws, 0) == pids[victim]);
        CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
        pids[victim] = 0;
    }
    npids = 0;
    /* every rank computed the same bits */
    uint64_t h0[256], h[256];
    ssize_t n0 = -1;
    for (int r = 0; r < size; r++) {
        ssize_t n = read(hp[r][0], r == 0 ? h0 : h, sizeof h);
        if (r == 0)
            n0 = n;
        else
            CHECKF(n == n0 && memcmp(h, h0, (size_t)n) == 0, "%d ranks: rank %d's results differ from rank 0's", size,
                   r);
        close(hp[r][0]);
    }
    if (victim < 0 && body != OUT_OF_STEP) CHECK(n0 > 0);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(60 * wf_test_slow())); /* measured here, before the ranks are forked */
    for (int size = 2; size <= 4; size++) {
        double t0 = wf_now();
        run(size, COLLECTIVES, -1);
        run(size, REDUCER, -1);
        printf("%d ranks: %.2f s\n", size, wf_now() - t0);
    }
    run(3, KILLED, 2);
    run(3, STOPPED, 2);
    run(2, OUT_OF_STEP, -1);
    return wf_test_done("test_allreduce");
}
