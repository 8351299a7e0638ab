/* tensor: the BLAS seam. Every GEMM in weft goes through wf_sgemm, which
 * forwards to OpenBLAS (cblas_sgemm, row-major). Results are deterministic
 * for a given BLAS thread count (DESIGN.md §4 rule 2). The thread count is
 * also oneDNN's, which runs the convolutions (conv_dnnl.c). */
#include <cblas.h>

#include "conv_int.h"
#include "weft/core.h"
#include "weft/kernels.h"

/* Some cblas.h builds (netlib's) lack the OpenBLAS extensions. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

/* oneDNN (OpenMP) gets the same count: 1 thread means 1 thread in both */
void wf_blas_set_threads(int n) {
    openblas_set_num_threads(n > 0 ? n : 1);
    wf_conv_dnnl_set_threads(n > 0 ? n : 1);
    wf_pool_set_threads(n > 0 ? n : 1);
}

int wf_blas_get_threads(void) { return openblas_get_num_threads(); }

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
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}
