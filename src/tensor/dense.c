/* tensor: dense kernels (linear, batched matmul, element-wise, activations,
 * softmax family, layernorm, dropout, embedding, shape ops, reductions).
 *
 * Rules (see kernels.h): backward kernels overwrite their outputs, NULL
 * gradient outputs are skipped, nothing allocates, and every reduction runs
 * in a fixed order so results depend only on the inputs and the BLAS thread
 * count. Sums whose length grows with the batch are accumulated in double;
 * column sums walk the rows in order into a block of double accumulators so
 * the inner loop over columns vectorizes. */
#include <math.h>
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"

#define COL_BLOCK 256 /* double accumulators per column block (2 KiB of stack) */

/* Sum of x[0..n) in double with 8 interleaved accumulators (fixed order). */
static double sum_contig(const float *x, long n) {
    double acc[8] = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[i + k];
    }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        s += (double)x[i];
    return s;
}

/* Sum of x[i]*y[i] in double, same order as sum_contig. */
static double dot_contig(const float *x, const float *y, long n) {
    double acc[8] = {0};
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[i + k] * (double)y[i + k];
    }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; i++)
        s += (double)x[i] * (double)y[i];
    return s;
}

/* out[j] = scale * sum_r x[r*cols + j] (* y[r*cols + j] if y), rows summed in
 * increasing r. x is (rows, cols) row-major. */
static void col_sum(float *out, const float *x, const float *y, long rows, long cols, double scale) {
    if (cols == 1) {
        out[0] = (float)(scale * (y ? dot_contig(x, y, rows) : sum_contig(x, rows)));
        return;
    }
    double acc[COL_BLOCK];
    for (long j0 = 0; j0 < cols; j0 += COL_BLOCK) {
        long nj = WF_MIN(COL_BLOCK, cols - j0);
        for (long j = 0; j < nj; j++)
            acc[j] = 0.0;
        for (long r = 0; r < rows; r++) {
            const float *xr = x + r * cols + j0;
            if (y) {
                const float *yr = y + r * cols + j0;
                for (long j = 0; j < nj; j++)
                    acc[j] += (double)xr[j] * (double)yr[j];
            } else {
                for (long j = 0; j < nj; j++)
                    acc[j] += (double)xr[j];
            }
        }
        for (long j = 0; j < nj; j++)
            out[j0 + j] = (float)(scale * acc[j]);
    }
}

/* ---- linear and matmul ---- */

void wf_linear_forward(float *out, const float *inp, const float *w, const float *bias, int B, int C, int OC) {
    if (!bias) {
        wf_sgemm(0, 1, B, OC, C, 1.0f, inp, C, w, C, 0.0f, out, OC);
        return;
    }
    /* Start from the bias and accumulate with beta = 1 (as torch.addmm):
     * OpenBLAS's beta = 0 path clears C in a pass of its own, so this saves
     * one pass over out against beta = 0 then a bias pass. */
    for (int b = 0; b < B; b++)
        memcpy(out + (long)b * OC, bias, (size_t)OC * sizeof(float));
    wf_sgemm(0, 1, B, OC, C, 1.0f, inp, C, w, C, 1.0f, out, OC);
}

void wf_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        int B, int C, int OC) {
    if (dinp) wf_sgemm(0, 0, B, C, OC, 1.0f, dout, OC, w, C, 0.0f, dinp, C);
    if (dw) wf_sgemm(1, 0, OC, C, B, 1.0f, dout, OC, inp, C, 0.0f, dw, C);
    if (dbias) col_sum(dbias, dout, NULL, B, OC, 1.0);
}

void wf_matmul_forward(float *out, const float *a, const float *b, int nb, int M, int K, int N, int b_shared) {
    if (b_shared) {
        /* one GEMM over all batches stacked: (nb*M, K) @ (K, N) */
        wf_sgemm(0, 0, nb * M, N, K, 1.0f, a, K, b, N, 0.0f, out, N);
        return;
    }
    for (int i = 0; i < nb; i++) {
        wf_sgemm(0, 0, M, N, K, 1.0f, a + (long)i * M * K, K, b + (long)i * K * N, N, 0.0f, out + (long)i * M * N, N);
    }
}

void wf_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b, int nb, int M, int K,
                        int N, int b_shared) {
    if (b_shared) {
        /* da (nb*M, K) = dout (nb*M, N) @ b^T; db (K, N) = a^T (K, nb*M) @ dout */
        if (da) wf_sgemm(0, 1, nb * M, K, N, 1.0f, dout, N, b, N, 0.0f, da, K);
        if (db) wf_sgemm(1, 0, K, N, nb * M, 1.0f, a, K, dout, N, 0.0f, db, N);
        return;
    }
    for (int i = 0; i < nb; i++) {
        const float *ai = a + (long)i * M * K, *bi = b + (long)i * K * N, *di = dout + (long)i * M * N;
        if (da) wf_sgemm(0, 1, M, K, N, 1.0f, di, N, bi, N, 0.0f, da + (long)i * M * K, K);
        if (db) wf_sgemm(1, 0, K, N, M, 1.0f, ai, K, di, N, 0.0f, db + (long)i * K * N, N);
    }
}

/* ---- element-wise with broadcasting ---- */

void wf_add_forward(float *out, const float *a, const float *b, long n, long m) {
    if (m <= 0) return;
    if (m == 1) {
        float s = b[0];
        for (long i = 0; i < n; i++)
            out[i] = a[i] + s;
        return;
    }
    for (long r = 0; r < n; r += m) {
        for (long j = 0; j < m; j++)
            out[r + j] = a[r + j] + b[j];
    }
}

void wf_add_backward(float *da, float *db, const float *dout, long n, long m) {
    if (m <= 0) return;
    if (db) col_sum(db, dout, NULL, n / m, m, 1.0);
    if (da && da != dout) memcpy(da, dout, (size_t)n * sizeof(float));
}

void wf_mul_forward(float *out, const float *a, const float *b, long n, long m) {
    if (m <= 0) return;
    if (m == 1) {
        float s = b[0];
        for (long i = 0; i < n; i++)
            out[i] = a[i] * s;
        return;
    }
    for (long r = 0; r < n; r += m) {
        for (long j = 0; j < m; j++)
            out[r + j] = a[r + j] * b[j];
    }
}

void wf_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b, long n, long m) {
    if (m <= 0) return;
    /* db first: da may alias dout */
    if (db) col_sum(db, dout, a, n / m, m, 1.0);
    if (!da) return;
    if (m == 1) {
        float s = b[0];
        for (long i = 0; i < n; i++)
            da[i] = dout[i] * s;
        return;
    }
    for (long r = 0; r < n; r += m) {
        for (long j = 0; j < m; j++)
            da[r + j] = dout[r + j] * b[j];
    }
}

/* ---- activations ---- */

/* Element-wise loops long enough to be worth a second thread run on the
 * pool in contiguous chunks: every element is computed the same way. */
#define WF_PAR_MIN 32768

struct ew_job {
    float *out;
    const float *a, *b;
};

/* The pointers are copied out of the job first: read through ctx, they
 * could alias the stores, and the loops would not vectorize (3-4x slower,
 * measured). out may be the input itself, never partly overlap it. */
static void relu_fwd_chunk(void *ctx, long b, long e) {
    const struct ew_job *j = ctx;
    float *out = j->out;
    const float *a = j->a;
    /* written so NaN propagates, as torch.relu does */
    for (long i = b; i < e; i++)
        out[i] = a[i] < 0.0f ? 0.0f : a[i];
}

static void relu_bwd_chunk(void *ctx, long b, long e) {
    const struct ew_job *j = ctx;
    float *out = j->out;
    const float *d = j->a, *y = j->b;
    for (long i = b; i < e; i++)
        out[i] = y[i] > 0.0f ? d[i] : 0.0f;
}

void wf_relu_forward(float *out, const float *inp, long n) {
    struct ew_job j = {out, inp, NULL};
    wf_parallel_for(n, WF_PAR_MIN, relu_fwd_chunk, &j);
}

void wf_relu_backward(float *dinp, const float *dout, const float *out, long n) {
    struct ew_job j = {dinp, dout, out};
    wf_parallel_for(n, WF_PAR_MIN, relu_bwd_chunk, &j);
}

#define WF_SQRT1_2 0.70710678118654752440f
#define WF_INV_SQRT_2PI 0.39894228040143267794f

void wf_gelu_forward(float *out, const float *inp, long n) {
    /* 0.5*x*(1 + erf(x/sqrt2)) written with erfc, which keeps its accuracy
     * for negative x where 1 + erf cancels */
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * erfcf(-x * WF_SQRT1_2);
    }
}

void wf_gelu_backward(float *dinp, const float *dout, const float *inp, long n) {
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * erfcf(-x * WF_SQRT1_2);
        float pdf = WF_INV_SQRT_2PI * expf(-0.5f * x * x);
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

void wf_tanh_forward(float *out, const float *inp, long n) {
    for (long i = 0; i < n; i++)
        out[i] = tanhf(inp[i]);
}

void wf_tanh_backward(float *dinp, const float *dout, const float *out, long n) {
    for (long i = 0; i < n; i++)
        dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

void wf_sigmoid_forward(float *out, const float *inp, long n) {
    for (long i = 0; i < n; i++) {
        float x = inp[i];
        if (x >= 0.0f) {
            out[i] = 1.0f / (1.0f + expf(-x));
        } else {
            float e = expf(x);
            out[i] = e / (1.0f + e);
        }
    }
}

void wf_sigmoid_backward(float *dinp, const float *dout, const float *out, long n) {
    for (long i = 0; i < n; i++)
        dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

/* ---- softmax family ---- */

static float row_max(const float *x, int V) {
    float mx = x[0];
    for (int j = 1; j < V; j++)
        mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* e[j] = exp(x[j] - mx); returns the sum in double */
static double row_exp(float *e, const float *x, float mx, int V) {
    double s = 0.0;
    for (int j = 0; j < V; j++) {
        float v = expf(x[j] - mx);
        e[j] = v;
        s += (double)v;
    }
    return s;
}

void wf_softmax_forward(float *out, const float *inp, int R, int V) {
    if (V <= 0) return;
    for (int r = 0; r < R; r++) {
        const float *x = inp + (long)r * V;
        float *o = out + (long)r * V;
        double s = row_exp(o, x, row_max(x, V), V);
        float inv = (float)(1.0 / s);
        for (int j = 0; j < V; j++)
            o[j] *= inv;
    }
}

void wf_softmax_backward(float *dinp, const float *dout, const float *out, int R, int V) {
    for (int r = 0; r < R; r++) {
        const float *d = dout + (long)r * V, *y = out + (long)r * V;
        float *g = dinp + (long)r * V;
        float dot = (float)dot_contig(d, y, V);
        for (int j = 0; j < V; j++)
            g[j] = y[j] * (d[j] - dot);
    }
}

void wf_log_softmax_forward(float *out, const float *inp, int R, int V) {
    if (V <= 0) return;
    for (int r = 0; r < R; r++) {
        const float *x = inp + (long)r * V;
        float *o = out + (long)r * V;
        float mx = row_max(x, V);
        /* o holds exp(x - mx) only to get the sum; it is overwritten next */
        float lse = (float)log(row_exp(o, x, mx, V));
        for (int j = 0; j < V; j++)
            o[j] = (x[j] - mx) - lse;
    }
}

void wf_log_softmax_backward(float *dinp, const float *dout, const float *out, int R, int V) {
    for (int r = 0; r < R; r++) {
        const float *d = dout + (long)r * V, *y = out + (long)r * V;
        float *g = dinp + (long)r * V;
        float s = (float)sum_contig(d, V);
        for (int j = 0; j < V; j++)
            g[j] = d[j] - expf(y[j]) * s;
    }
}

int wf_softmax_xent_forward(float *loss, float *probs, const float *logits, const int32_t *targets, int B, int V,
                            float scale) {
    return wf_softmax_xent_forward_ign(loss, probs, logits, targets, B, V, scale, INT32_MIN);
}

int wf_softmax_xent_forward_ign(float *loss, float *probs, const float *logits, const int32_t *targets, int B, int V,
                                float scale, int32_t ignore) {
    for (int b = 0; b < B; b++) {
        if (targets[b] != ignore && (targets[b] < 0 || targets[b] >= V)) return b;
    }
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        /* an ignored row (padding) costs nothing: its loss is not counted and its gradient is 0, so its
         * probabilities are never read (the backward writes 0 without them) */
        if (targets[b] == ignore) continue;
        const float *x = logits + (long)b * V;
        float *p = probs + (long)b * V;
        float mx = row_max(x, V);
        double s = row_exp(p, x, mx, V);
        /* -log softmax[t] = log(sum) - (x[t] - mx), without forming p[t] */
        total += log(s) - (double)(x[targets[b]] - mx);
        float inv = (float)(1.0 / s);
        for (int j = 0; j < V; j++)
            p[j] *= inv;
    }
    *loss = (float)((double)scale * total);
    return -1;
}

void wf_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *targets, int B, int V, float scale,
                              float dloss) {
    wf_softmax_xent_backward_ign(dlogits, probs, targets, B, V, scale, dloss, INT32_MIN);
}

void wf_softmax_xent_backward_ign(float *dlogits, const float *probs, const int32_t *targets, int B, int V, float scale,
                                  float dloss, int32_t ignore) {
    float s = dloss * scale;
    for (int b = 0; b < B; b++) {
        const float *p = probs + (long)b * V;
        float *d = dlogits + (long)b * V;
        int t = targets[b];
        if (t == ignore) {
            for (int j = 0; j < V; j++)
                d[j] = 0.0f;
            continue;
        }
        float pt = (t >= 0 && t < V) ? p[t] : 0.0f; /* read before d (may alias p) is written */
        for (int j = 0; j < V; j++)
            d[j] = s * p[j];
        if (t >= 0 && t < V) d[t] = s * (pt - 1.0f);
    }
}

int wf_argmax_correct(const float *logits, const int32_t *targets, int B, int V) {
    int correct = 0;
    if (V <= 0) return 0;
    for (int b = 0; b < B; b++) {
        const float *x = logits + (long)b * V;
        int best = 0;
        for (int j = 1; j < V; j++) {
            if (x[j] > x[best]) best = j;
        }
        correct += best == targets[b];
    }
    return correct;
}

/* ---- layernorm ---- */

void wf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int R,
                          int C, float eps) {
    for (int r = 0; r < R; r++) {
        const float *x = inp + (long)r * C;
        float *o = out + (long)r * C;
        double m = sum_contig(x, C) / C;
        double v = 0.0; /* two-pass variance: no cancellation */
        for (int j = 0; j < C; j++) {
            double d = (double)x[j] - m;
            v += d * d;
        }
        v /= C;
        float mf = (float)m, rs = (float)(1.0 / sqrt(v + (double)eps));
        for (int j = 0; j < C; j++) {
            float y = (x[j] - mf) * rs;
            o[j] = w ? y * w[j] + (b ? b[j] : 0.0f) : y + (b ? b[j] : 0.0f);
        }
        mean[r] = mf;
        rstd[r] = rs;
    }
}

void wf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           const float *mean, const float *rstd, int R, int C) {
    /* dw, db first: dinp may alias dout */
    if (dw || db) {
        double aw[COL_BLOCK], ab[COL_BLOCK];
        for (int j0 = 0; j0 < C; j0 += COL_BLOCK) {
            int nj = WF_MIN(COL_BLOCK, C - j0);
            for (int j = 0; j < nj; j++)
                aw[j] = ab[j] = 0.0;
            for (int r = 0; r < R; r++) {
                const float *d = dout + (long)r * C + j0, *x = inp + (long)r * C + j0;
                float m = mean[r], rs = rstd[r];
                for (int j = 0; j < nj; j++) {
                    aw[j] += (double)d[j] * (double)((x[j] - m) * rs);
                    ab[j] += (double)d[j];
                }
            }
            for (int j = 0; j < nj; j++) {
                if (dw) dw[j0 + j] = (float)aw[j];
                if (db) db[j0 + j] = (float)ab[j];
            }
        }
    }
    if (!dinp) return;
    for (int r = 0; r < R; r++) {
        const float *d = dout + (long)r * C, *x = inp + (long)r * C;
        float *g = dinp + (long)r * C;
        float m = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0; /* sum of dout*w, and of dout*w*xhat */
        for (int j = 0; j < C; j++) {
            float gj = w ? d[j] * w[j] : d[j];
            sg += (double)gj;
            sgx += (double)gj * (double)((x[j] - m) * rs);
        }
        float a = (float)(sg / C), c = (float)(sgx / C);
        for (int j = 0; j < C; j++) {
            float gj = w ? d[j] * w[j] : d[j];
            g[j] = rs * (gj - a - (x[j] - m) * rs * c);
        }
    }
}

/* ---- dropout ---- */

void wf_dropout_forward(float *out, float *mask, const float *inp, long n, float p, uint64_t key, uint64_t stream) {
    float scale = p <= 0.0f ? 1.0f : (p < 1.0f ? 1.0f / (1.0f - p) : 0.0f);
    /* One Philox block gives the draws of 4 consecutive elements; this is
     * wf_rng_uniform_at(key, stream, i) without recomputing the block 4
     * times (the tests check the two agree). */
    for (long i0 = 0; i0 < n; i0 += 4) {
        uint32_t r[4];
        wf_philox(key, stream, (uint64_t)i0 >> 2, r);
        long nk = WF_MIN(4, n - i0);
        for (long k = 0; k < nk; k++) {
            float u = (float)(r[k] >> 8) * (1.0f / 16777216.0f);
            float mk = u >= p ? scale : 0.0f;
            mask[i0 + k] = mk;
            out[i0 + k] = inp[i0 + k] * mk;
        }
    }
}

void wf_dropout_backward(float *dinp, const float *dout, const float *mask, long n) {
    for (long i = 0; i < n; i++)
        dinp[i] = dout[i] * mask[i];
}

/* ---- embedding ---- */

int wf_embedding_forward(float *out, const int32_t *ids, const float *table, int B, int V, int D) {
    for (int b = 0; b < B; b++) {
        if (ids[b] < 0 || ids[b] >= V) return b;
    }
    for (int b = 0; b < B; b++) {
        memcpy(out + (long)b * D, table + (long)ids[b] * D, (size_t)D * sizeof(float));
    }
    return -1;
}

void wf_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int B, int V, int D) {
    memset(dtable, 0, (size_t)V * (size_t)D * sizeof(float));
    for (int b = 0; b < B; b++) {
        if (ids[b] < 0 || ids[b] >= V) continue; /* rejected by the forward */
        float *t = dtable + (long)ids[b] * D;
        const float *d = dout + (long)b * D;
        for (int j = 0; j < D; j++)
            t[j] += d[j];
    }
}

/* ---- shape ops ---- */

void wf_concat_forward(float *out, const float *const *ins, const int *dims, int n, long outer, long inner) {
    for (long o = 0; o < outer; o++) {
        for (int i = 0; i < n; i++) {
            long len = dims[i] * inner;
            memcpy(out, ins[i] + o * len, (size_t)len * sizeof(float));
            out += len;
        }
    }
}

void wf_concat_backward(float *const *dins, const float *dout, const int *dims, int n, long outer, long inner) {
    for (long o = 0; o < outer; o++) {
        for (int i = 0; i < n; i++) {
            long len = dims[i] * inner;
            if (dins[i]) memcpy(dins[i] + o * len, dout, (size_t)len * sizeof(float));
            dout += len;
        }
    }
}

void wf_slice_forward(float *out, const float *inp, long outer, int dim, long inner, int start, int len) {
    for (long o = 0; o < outer; o++) {
        memcpy(out + o * len * inner, inp + (o * dim + start) * inner, (size_t)(len * inner) * sizeof(float));
    }
}

void wf_slice_backward(float *dinp, const float *dout, long outer, int dim, long inner, int start, int len) {
    for (long o = 0; o < outer; o++) {
        float *g = dinp + o * dim * inner;
        memset(g, 0, (size_t)(start * inner) * sizeof(float));
        memcpy(g + start * inner, dout + o * len * inner, (size_t)(len * inner) * sizeof(float));
        memset(g + (start + len) * inner, 0, (size_t)((dim - start - len) * inner) * sizeof(float));
    }
}

#define TR_TILE 16

void wf_transpose_forward(float *out, const float *inp, long A, long X, long M, long Y, long Z) {
    /* out[a,y,m,x,:] = inp[a,x,m,y,:], in TR_TILE x TR_TILE tiles of (x,y)
     * so both sides stay in cache when Z is small */
    long sx = M * Y * Z, sy = Z; /* input strides of x and y */
    long dy = M * X * Z, dx = Z; /* output strides */
    for (long a = 0; a < A; a++) {
        for (long m = 0; m < M; m++) {
            const float *src = inp + a * X * M * Y * Z + m * Y * Z;
            float *dst = out + a * Y * M * X * Z + m * X * Z;
            for (long x0 = 0; x0 < X; x0 += TR_TILE) {
                long x1 = WF_MIN(X, x0 + TR_TILE);
                for (long y0 = 0; y0 < Y; y0 += TR_TILE) {
                    long y1 = WF_MIN(Y, y0 + TR_TILE);
                    for (long y = y0; y < y1; y++) {
                        for (long x = x0; x < x1; x++) {
                            if (Z == 1) {
                                dst[y * dy + x] = src[x * sx + y];
                            } else {
                                memcpy(dst + y * dy + x * dx, src + x * sx + y * sy, (size_t)Z * sizeof(float));
                            }
                        }
                    }
                }
            }
        }
    }
}

void wf_sum_forward(float *out, const float *inp, long outer, int dim, long inner) {
    for (long o = 0; o < outer; o++)
        col_sum(out + o * inner, inp + o * dim * inner, NULL, dim, inner, 1.0);
}

void wf_sum_backward(float *dinp, const float *dout, long outer, int dim, long inner) {
    for (long o = 0; o < outer; o++) {
        for (int d = 0; d < dim; d++) {
            memcpy(dinp + (o * dim + d) * inner, dout + o * inner, (size_t)inner * sizeof(float));
        }
    }
}

void wf_mean_forward(float *out, const float *inp, long outer, int dim, long inner) {
    /* dim == 0 gives NaN, as torch.mean of an empty axis */
    for (long o = 0; o < outer; o++)
        col_sum(out + o * inner, inp + o * dim * inner, NULL, dim, inner, 1.0 / dim);
}

void wf_mean_backward(float *dinp, const float *dout, long outer, int dim, long inner) {
    float fd = (float)dim;
    for (long o = 0; o < outer; o++) {
        const float *g = dout + o * inner;
        for (int d = 0; d < dim; d++) {
            float *t = dinp + (o * dim + d) * inner;
            for (long i = 0; i < inner; i++)
                t[i] = g[i] / fd;
        }
    }
}
