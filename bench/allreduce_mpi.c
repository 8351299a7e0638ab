/*
 * bench: Open MPI's MPI_Allreduce (MPI_INT64_T, MPI_SUM, in place), timed
 * exactly as bench/allreduce_weft.c times weft: a barrier before each
 * iteration, the mean over ranks, the median over ITERS. Run by
 * bench/allreduce.sh under mpirun.
 *
 *     mpirun -np RANKS allreduce_mpi ITERS BYTES...
 *     -> ranks bytes median_s busbw_GBps
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int r, p;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &p);
    if (argc < 3) {
        if (r == 0) fprintf(stderr, "usage: %s ITERS BYTES...\n", argv[0]);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int iters = atoi(argv[1]);
    double *t = malloc(sizeof *t * (size_t)iters);
    for (int s = 2; s < argc; s++) {
        size_t bytes = (size_t)strtoull(argv[s], NULL, 10), n = bytes / 8;
        int64_t *buf = malloc(n * 8 + 8);
        for (size_t i = 0; i < n; i++)
            buf[i] = (int64_t)(i * 31 + (size_t)r);
        for (int it = -2; it < iters; it++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
            double dt = MPI_Wtime() - t0, sum;
            MPI_Allreduce(&dt, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
            if (it >= 0) t[it] = sum / p;
        }
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        double med = t[iters / 2];
        if (r == 0) printf("%d %zu %.6f %.3f\n", p, bytes, med, 2.0 * (p - 1) / p * (double)bytes / med / 1e9);
        fflush(stdout);
        free(buf);
    }
    free(t);
    MPI_Finalize();
    return 0;
}
