/* tensor: optimizer updates, element-wise over one parameter tensor, with
 * the arithmetic of torch.optim (1.13): SGD with momentum / nesterov /
 * weight decay, Adam and AdamW; plus the sum of squares and the scaling
 * that gradient clipping needs. */
#include <math.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "weft/core.h"

#include "weft/kernels.h"

static void sgd_serial(float *p, const float *g, float *buf, long n, float lr, float momentum, float wd, int nesterov,
                       long step) {
    if (momentum == 0.0f || !buf) {
        if (wd != 0.0f) {
            for (long i = 0; i < n; i++)
                p[i] = p[i] - lr * (g[i] + wd * p[i]);
        } else {
            for (long i = 0; i < n; i++)
                p[i] = p[i] - lr * g[i];
        }
        return;
    }
    /* PyTorch starts the momentum buffer as a copy of the first gradient */
    float keep = step <= 1 ? 0.0f : momentum;
    for (long i = 0; i < n; i++) {
        float d = wd != 0.0f ? g[i] + wd * p[i] : g[i];
        float bi = keep != 0.0f ? buf[i] * keep + d : d;
        buf[i] = bi;
        float u = nesterov ? d + momentum * bi : bi;
        p[i] = p[i] - lr * u;
    }
}

/* dst[i] = sqrtf(src[i]). The vector instruction is correctly rounded like
 * sqrtf, so both paths give the same bits; it is spelled out because GCC
 * keeps sqrtf's errno path (a branch) unless -fno-math-errno, and that
 * branch stops the loop from vectorizing. */
static void sqrt_block(float *dst, const float *src, long n) {
    long i = 0;
#if defined(__AVX__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_sqrt_ps(_mm256_loadu_ps(src + i)));
#endif
    for (; i < n; i++)
        dst[i] = sqrtf(src[i]);
}

#define ADAM_BLOCK 512 /* elements per pass; the sqrt scratch lives on the stack */

static void adam_serial(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2,
                        float eps, float wd, int decoupled, long step) {
    /* The scalars are computed in double then rounded, as Python computes
     * them before handing them to torch's float kernels. */
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    double bc2 = 1.0 - pow((double)beta2, (double)step);
    float step_size = (float)((double)lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float omb1 = (float)(1.0 - (double)beta1), omb2 = (float)(1.0 - (double)beta2);
    float decay = (float)(1.0 - (double)lr * (double)wd);
    int coupled = wd != 0.0f && !decoupled, shrink = wd != 0.0f && decoupled;
    float s[ADAM_BLOCK];
    for (long i0 = 0; i0 < n; i0 += ADAM_BLOCK) {
        long nk = WF_MIN(ADAM_BLOCK, n - i0);
        float *pb = p + i0, *mb = m + i0, *vb = v + i0;
        const float *gb = g + i0;
        /* three simple passes over a block that stays in L1, each vectorizable */
        if (coupled) {
            for (long k = 0; k < nk; k++) {
                float gk = gb[k] + wd * pb[k];
                mb[k] = mb[k] * beta1 + omb1 * gk;
                vb[k] = vb[k] * beta2 + omb2 * gk * gk;
            }
        } else {
            if (shrink) {
                for (long k = 0; k < nk; k++)
                    pb[k] = pb[k] * decay;
            }
            for (long k = 0; k < nk; k++) {
                float gk = gb[k];
                mb[k] = mb[k] * beta1 + omb1 * gk;
                vb[k] = vb[k] * beta2 + omb2 * gk * gk;
            }
        }
        sqrt_block(s, vb, nk);
        for (long k = 0; k < nk; k++) {
            float denom = s[k] / bc2_sqrt + eps;
            pb[k] = pb[k] - step_size * mb[k] / denom;
        }
    }
}

double wf_sumsq(const float *x, long n) {
    /* 8 interleaved accumulators: a fixed order the compiler can vectorize */
    double acc[8] = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[i + k] * (double)x[i + k];
    }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        s += (double)x[i] * (double)x[i];
    return s;
}

void wf_scale(float *x, long n, float s) {
    for (long i = 0; i < n; i++)
        x[i] *= s;
}

/* ---- the updates over the pool's threads, in contiguous chunks ---- */

struct opt_job {
    float *p, *buf, *m, *v;
    const float *g;
    float lr, momentum, wd, beta1, beta2, eps;
    int nesterov, decoupled;
    long step;
};

static void sgd_chunk(void *ctx, long b, long e) {
    const struct opt_job *j = ctx;
    sgd_serial(j->p + b, j->g + b, j->buf ? j->buf + b : NULL, e - b, j->lr, j->momentum, j->wd, j->nesterov, j->step);
}

static void adam_chunk(void *ctx, long b, long e) {
    const struct opt_job *j = ctx;
    adam_serial(j->p + b, j->g + b, j->m + b, j->v + b, e - b, j->lr, j->beta1, j->beta2, j->eps, j->wd, j->decoupled,
                j->step);
}

void wf_sgd_update(float *p, const float *g, float *buf, long n, float lr, float momentum, float wd, int nesterov,
                   long step) {
    struct opt_job j = {
        .p = p, .buf = buf, .g = g, .lr = lr, .momentum = momentum, .wd = wd, .nesterov = nesterov, .step = step};
    wf_parallel_for(n, 65536, sgd_chunk, &j);
}

void wf_adam_update(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2, float eps,
                    float wd, int decoupled, long step) {
    struct opt_job j = {.p = p,
                        .m = m,
                        .v = v,
                        .g = g,
                        .lr = lr,
                        .wd = wd,
                        .beta1 = beta1,
                        .beta2 = beta2,
                        .eps = eps,
                        .decoupled = decoupled,
                        .step = step};
    wf_parallel_for(n, 32768, adam_chunk, &j);
}
