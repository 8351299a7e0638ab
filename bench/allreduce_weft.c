/*
 * bench: weft's wf_allreduce_i64 on loopback TCP. Forks RANKS processes,
 * builds the full mesh (each listens on an ephemeral port; lower ranks
 * connect to higher ones and send their rank), then for each size times
 * in-place all-reduces of int64. Built and run by bench/allreduce.sh.
 *
 *     allreduce_weft RANKS ITERS ALGO BYTES...
 *
 * Each iteration starts after a barrier; its time is the mean over the
 * ranks (as OSU and nccl-tests report); the median over ITERS is printed:
 *
 *     ranks bytes median_s busbw_GBps     (busbw = 2(p-1)/p * bytes / time)
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft/comm.h"

#define MAXR 16

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int mesh(int r, int p, const int *lfd, const int *port, struct wf_conn *conns, struct wf_conn **peers) {
    for (int j = r + 1; j < p; j++) {
        char name[32];
        snprintf(name, sizeof name, "rank %d", j);
        uint8_t hello[4] = {(uint8_t)r};
        if (wf_tcp_connect(&conns[j], "127.0.0.1", port[j], name, 10.0) || wf_send(&conns[j], 1, hello, 4, 10.0))
            return -1;
    }
    for (int k = 0; k < r; k++) {
        struct wf_conn c;
        int type;
        const void *pl;
        size_t n;
        if (wf_tcp_accept(lfd[r], &c, "rank ?", 10.0) || wf_recv(&c, &type, &pl, &n, 10.0) || n != 4) return -1;
        int j = ((const uint8_t *)pl)[0];
        if (j >= r) return -1;
        wf_conn_set_name(&c, "rank %d", j);
        conns[j] = c;
    }
    for (int j = 0; j < p; j++)
        peers[j] = j == r ? NULL : &conns[j];
    return 0;
}

static int rank_main(int r, int p, int iters, int algo, int nsizes, char **sizes, const int *lfd, const int *port) {
    struct wf_conn conns[MAXR];
    struct wf_conn *peers[MAXR];
    for (int j = 0; j < p; j++)
        if (j != r) close(lfd[j]);
    if (mesh(r, p, lfd, port, conns, peers)) {
        fprintf(stderr, "rank %d: mesh: %s\n", r, wf_errmsg());
        return 1;
    }
    struct wf_group g = {.rank = r, .size = p, .peers = peers, .timeout_s = 60.0};
    double *t = malloc(sizeof *t * (size_t)iters);
    for (int s = 0; s < nsizes; s++) {
        size_t bytes = (size_t)strtoull(sizes[s], NULL, 10), n = bytes / 8;
        int64_t *buf = malloc(n * 8 + 8);
        for (size_t i = 0; i < n; i++)
            buf[i] = (int64_t)(i * 31 + (size_t)r);
        for (int it = -2; it < iters; it++) { /* two warm-up rounds */
            int64_t ns;
            if (wf_barrier(&g)) goto fail;
            double t0 = wf_now();
            if (wf_allreduce_i64_algo(&g, buf, n, algo)) goto fail;
            ns = (int64_t)((wf_now() - t0) * 1e9);
            if (wf_allreduce_i64(&g, &ns, 1)) goto fail;
            if (it >= 0) t[it] = (double)ns * 1e-9 / p;
        }
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        double med = t[iters / 2];
        if (r == 0) printf("%d %zu %.6f %.3f\n", p, bytes, med, 2.0 * (p - 1) / p * (double)bytes / med / 1e9);
        fflush(stdout);
        free(buf);
    }
    free(t);
    return 0;
fail:
    fprintf(stderr, "rank %d: %s\n", r, wf_errmsg());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s RANKS ITERS ALGO BYTES...\n", argv[0]);
        return 2;
    }
    int p = atoi(argv[1]), iters = atoi(argv[2]), algo = atoi(argv[3]);
    if (p < 1 || p > MAXR || iters < 1) return 2;
    int lfd[MAXR], port[MAXR];
    pid_t pid[MAXR];
    for (int r = 0; r < p; r++)
        if (wf_tcp_listen("127.0.0.1", 0, &lfd[r], &port[r])) {
            fprintf(stderr, "%s\n", wf_errmsg());
            return 1;
        }
    fflush(stdout);
    for (int r = 0; r < p; r++) {
        pid[r] = fork();
        if (pid[r] == 0) _exit(rank_main(r, p, iters, algo, argc - 4, argv + 4, lfd, port));
    }
    int bad = 0;
    for (int r = 0; r < p; r++) {
        int ws;
        waitpid(pid[r], &ws, 0);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws)) {
            bad = 1;
            for (int q = 0; q < p; q++) /* one failed: do not leave the others waiting out their timeouts */
                if (q != r) kill(pid[q], SIGTERM);
        }
    }
    return bad;
}
