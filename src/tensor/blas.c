/* tensor: the BLAS seam. Every GEMM in weft goes through wf_sgemm (the
 * im2col convolution through wf_sgemm_rule's thread choice too), which
 * forwards to OpenBLAS (cblas_sgemm, row-major). Results are deterministic
 * for a given BLAS thread count (DESIGN.md §4 rule 2). The thread count is
 * also oneDNN's, which runs the convolutions (conv_dnnl.c), and weft's own
 * pool's.
 *
 * Threads per GEMM: a GEMM of fewer than WF_BLAS_MT_MIN multiply-adds runs
 * on one OpenBLAS thread whatever the count, larger ones on all of them.
 * OpenBLAS's second thread does not pay off below that (2 threads against
 * 1, OpenBLAS 0.3.21 SkylakeX kernels, medians: 64x256x784 238 vs 220 us,
 * 64x784x256 210 vs 174, 256x256x64 65 vs 57; 64x128x3136 385 vs 444, a
 * small gain), and a threaded call costs far more than its own time: after
 * each one OpenBLAS's worker threads spin (sched_yield) for about 2^28
 * cycles, ~0.1 s, taking a core from oneDNN's OpenMP threads and weft's
 * pool, which then run up to 1.4x slower (the CNN's step at 2 threads, 37
 * against 26 ms with OPENBLAS_THREAD_TIMEOUT=4). The choice depends only on
 * the shape and the thread count, so results stay reproducible. */
#include <cblas.h>
#include <stdatomic.h>

#include "conv_int.h"
#include "weft/core.h"
#include "weft/kernels.h"

/* Some cblas.h builds (netlib's) lack the OpenBLAS extensions. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

#ifndef WF_BLAS_MT_MIN
#define WF_BLAS_MT_MIN (1L << 25) /* multiply-adds: 256x256x512 */
#endif

static _Atomic int threads_set;    /* wf_blas_set_threads's count; 0: never called */
static _Atomic int threads_active; /* OpenBLAS's count now; 0: unknown */

/* oneDNN (OpenMP) gets the same count: 1 thread means 1 thread in both */
void wf_blas_set_threads(int n) {
    n = n > 0 ? n : 1;
    threads_set = n;
    openblas_set_num_threads(n);
    threads_active = n;
    wf_conv_dnnl_set_threads(n);
    wf_pool_set_threads(n);
}

int wf_blas_get_threads(void) {
    int n = threads_set;
    return n > 0 ? n : openblas_get_num_threads();
}

void wf_blas_threads_for(long M, long N, long K) {
    const int n = wf_blas_get_threads();
    const int want = n > 1 && M * N * K >= WF_BLAS_MT_MIN ? n : 1;
    if (threads_active != want) {
        openblas_set_num_threads(want);
        threads_active = want;
    }
}

void wf_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        /* An empty product: C = beta*C, and beta == 0 overwrites even NaN
         * (BLAS leaves the K == 0 case to the implementation). */
        for (int i = 0; i < M; i++) {
            float *c = C + (long)i * ldc;
            if (beta == 0.0f) {
                for (int j = 0; j < N; j++)
                    c[j] = 0.0f;
            } else {
                for (int j = 0; j < N; j++)
                    c[j] *= beta;
            }
        }
        return;
    }
    wf_blas_threads_for(M, N, K);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}
