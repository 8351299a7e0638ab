/*
 * bench/sgemm_peak.c: the BLAS's own SGEMM speed on this machine, the
 * ceiling that weft's GFLOP/s are compared against.
 *
 *     sgemm_peak [--n N] [--threads 1,2] [--runs R] [--json]
 *
 * For each thread count (openblas_set_num_threads) it times C = A * B on
 * square N x N float32 matrices (default N = 1024): one warm-up call, then
 * R timed runs (default 7), each run as many calls as fit in ~0.2 s, and
 * prints the median GFLOP/s (2 N^3 per call). The OpenBLAS kernel in use
 * (openblas_get_corename: set OPENBLAS_CORETYPE to change it) is printed
 * too. Build: cc -O2 sgemm_peak.c $(pkg-config --cflags --libs openblas).
 */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* OpenBLAS extensions; declared here in case cblas.h does not. */
void openblas_set_num_threads(int num_threads);
char *openblas_get_corename(void);
char *openblas_get_config(void);

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int n = 1024, runs = 7, json = 0;
    int threads[16], nt = 0;
    const char *tlist = "1,2";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            tlist = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else {
            fprintf(stderr, "usage: sgemm_peak [--n N] [--threads 1,2] [--runs R] [--json]\n");
            return 2;
        }
    }
    for (const char *p = tlist; *p && nt < 16;) {
        threads[nt++] = atoi(p);
        while (*p && *p != ',')
            p++;
        if (*p == ',') p++;
    }
    if (n < 16 || runs < 1 || runs > 101 || nt == 0) {
        fprintf(stderr, "sgemm_peak: bad arguments\n");
        return 2;
    }
    size_t nn = (size_t)n * (size_t)n;
    float *a = aligned_alloc(64, nn * sizeof(float));
    float *b = aligned_alloc(64, nn * sizeof(float));
    float *c = aligned_alloc(64, nn * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: out of memory\n");
        return 1;
    }
    unsigned s = 12345;
    for (size_t i = 0; i < nn; i++) {
        s = s * 1103515245u + 12345u;
        a[i] = (float)((s >> 16) & 0x7fff) / 32768.0f - 0.5f;
        s = s * 1103515245u + 12345u;
        b[i] = (float)((s >> 16) & 0x7fff) / 32768.0f - 0.5f;
        c[i] = 0;
    }
    const double flop = 2.0 * (double)n * (double)n * (double)n;
    double gf[101];
    if (!json)
        printf("OpenBLAS core: %s  (%s)\n", openblas_get_corename(), openblas_get_config());
    else
        printf("{\"core\":\"%s\",\"n\":%d,\"runs\":%d", openblas_get_corename(), n, runs);
    for (int t = 0; t < nt; t++) {
        openblas_set_num_threads(threads[t]);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        /* calls per run: about 0.2 s worth, at least 2 */
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double one = now() - t0;
        int reps = (int)(0.2 / (one > 1e-6 ? one : 1e-6));
        if (reps < 2) reps = 2;
        if (reps > 1000) reps = 1000;
        for (int r = 0; r < runs; r++) {
            t0 = now();
            for (int k = 0; k < reps; k++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            gf[r] = flop * reps / (now() - t0) / 1e9;
        }
        qsort(gf, (size_t)runs, sizeof gf[0], cmp_double);
        double med = runs % 2 ? gf[runs / 2] : 0.5 * (gf[runs / 2 - 1] + gf[runs / 2]);
        if (!json)
            printf("SGEMM %dx%d, %d thread%s: median %.1f GFLOP/s (min %.1f, max %.1f, %d runs x %d calls)\n", n, n,
                   threads[t], threads[t] == 1 ? "" : "s", med, gf[0], gf[runs - 1], runs, reps);
        else
            printf(",\"gflops_%d\":%.2f", threads[t], med);
    }
    if (json) printf("}\n");
    free(a);
    free(b);
    free(c);
    return 0;
}
