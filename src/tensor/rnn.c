/* tensor: recurrent cells, one time step — rnn_tanh, gru, lstm — forward
 * and backward, with PyTorch's formulas and gate order (nn.RNNCell,
 * nn.GRUCell, nn.LSTMCell; docs/recurrent.md).
 *
 * A step is two GEMMs over the whole batch, x·W_ih^T and h·W_hh^T (G*H
 * columns for G gates), then one pass over the gates that adds the biases,
 * applies the nonlinearities and combines them with the state. The backward
 * is one pass that turns the output gradient into the gradients of the gates'
 * pre-activations, then one GEMM each for the input, the state and the two
 * weights, and column sums (in double, rows in order) for the biases.
 *
 * Rules (see kernels.h): gradient outputs are overwritten, NULL ones are
 * skipped, nothing allocates (scratch is passed in, sized by the
 * *_workspace functions) and every reduction runs in a fixed order, so the
 * bits depend only on the inputs and the BLAS thread count. B is the number
 * of rows to process: rows past it are neither read nor written. */
#include <math.h>
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"

#define COL_BLOCK 256 /* double accumulators per column block (2 KiB of stack) */

/* exp(x) for x <= 0, branch-free so that the gate loops vectorize: Cody-Waite range reduction by ln 2 and
 * Cephes' degree-6 polynomial on [-ln2/2, ln2/2] (within 2 ulp of expf); below -87.3 it is clamped (exp is
 * then under the smallest normal float, which the gates never tell from 0). */
static inline float rnn_exp_neg(float x) {
    x = x > -87.3f ? x : -87.3f;
    /* n = round(x / ln 2) in [-126, 0]: truncating a positive value (x / ln2 + 128.5 > 2) is a floor */
    int32_t ni = (int32_t)(x * 1.44269504088896341f + 128.5f) - 128;
    float n = (float)ni;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = (ni + 127) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* sigmoid without a branch: 1 / (1 + e) or e / (1 + e), e = exp(-|x|), so exp never sees a positive argument */
static inline float sigm(float x) {
    float e = rnn_exp_neg(-fabsf(x)), s = 1.0f / (1.0f + e);
    float m = (float)(x >= 0.0f); /* a blend, not a branch: 1 * s, or e * s */
    return (m + (1.0f - m) * e) * s;
}

/* tanh through one exp: (1 - e) / (1 + e) with e = exp(-2|x|), and below |x| = 1/16, where 1 - e would
 * cancel, its Taylor series to x^7 (the next term is under 1e-9 of x); branch-free (both are computed).
 * Relative error within a few float ulps, well inside the 1e-5 the PyTorch references allow; the backward
 * calls it on the same floats, so the forward's bits are reproduced. */
static inline float rnn_tanh_f(float x) {
    float a = fabsf(x), x2 = x * x;
    float small = x + x * x2 * (-1.0f / 3.0f + x2 * (2.0f / 15.0f + x2 * (-17.0f / 315.0f)));
    float e = rnn_exp_neg(-2.0f * a);
    float big = copysignf((1.0f - e) / (1.0f + e), x);
    float m = (float)(a < 0.0625f); /* a blend, not a branch (both are finite) */
    return m * small + (1.0f - m) * big;
}

/* out[j] = sum over the B rows of x (B, cols), rows in increasing order, in double */
static void col_sum(float *out, const float *x, int B, int cols) {
    double acc[COL_BLOCK];
    for (int j0 = 0; j0 < cols; j0 += COL_BLOCK) {
        int nj = WF_MIN(COL_BLOCK, cols - j0);
        for (int j = 0; j < nj; j++)
            acc[j] = 0.0;
        for (int b = 0; b < B; b++) {
            const float *xr = x + (long)b * cols + j0;
            for (int j = 0; j < nj; j++)
                acc[j] += (double)xr[j];
        }
        for (int j = 0; j < nj; j++)
            out[j0 + j] = (float)acc[j];
    }
}

/* ---- GEMMs whose rows do not depend on each other's company ----
 * A skip region runs a cell on the live rows packed at the front; with skipping off it runs every row (the
 * live ones first, the same way). For the two to give the same bits, a row's result may depend neither on
 * how many rows the GEMM has nor on where the row stands: the BLAS blocks rows into tiles, and a row at the
 * edge or at another place of a tile can round differently. So every GEMM over the batch rows is made of
 * calls of exactly ROW_TILE rows (a size at which rows were measured to be place-independent, under the
 * kernels' register tiles), the last one padded with zero rows in `tile`; and a weight gradient sums its
 * rows ROW_TILE at a time, tile after tile, so the live rows' partial sums are the same whatever follows
 * them (rows that do not count carry a zero gradient, and adding it changes no sum). */
#define ROW_TILE 8

/* Scratch floats for the tiles of a cell with input size C, hidden H and G gates. */
static long tile_floats(int C, int H, int G) { return (long)ROW_TILE * ((long)G * H + (C > H ? C : H)); }

/* C (M x N, ldc) = A (M x K, lda) . W^T (tw = 1; W is N x K) or W (tw = 0; K x N) + beta * C */
static void gemm_rows(int tw, int M, int N, int K, const float *A, int lda, const float *W, int ldw, float beta,
                      float *C, int ldc, float *tile) {
    int full = M / ROW_TILE * ROW_TILE, m = M - full;
    for (int i = 0; i < full; i += ROW_TILE)
        wf_sgemm(0, tw, ROW_TILE, N, K, 1.0f, A + (long)i * lda, lda, W, ldw, beta, C + (long)i * ldc, ldc);
    if (!m) return;
    float *ta = tile, *tc = tile + (long)ROW_TILE * K;
    memset(ta, 0, sizeof(float) * (size_t)ROW_TILE * (size_t)K);
    memset(tc, 0, sizeof(float) * (size_t)ROW_TILE * (size_t)N);
    for (int i = 0; i < m; i++) {
        memcpy(ta + (long)i * K, A + (long)(full + i) * lda, sizeof(float) * (size_t)K);
        if (beta != 0.0f) memcpy(tc + (long)i * N, C + (long)(full + i) * ldc, sizeof(float) * (size_t)N);
    }
    wf_sgemm(0, tw, ROW_TILE, N, K, 1.0f, ta, K, W, ldw, beta, tc, N);
    for (int i = 0; i < m; i++)
        memcpy(C + (long)(full + i) * ldc, tc + (long)i * N, sizeof(float) * (size_t)N);
}

/* C (GH x N, ldc) = A^T . X over the M rows of A (M x GH, lda) and X (M x N, ldx), ROW_TILE rows a call */
static void gemm_wgrad(int M, int GH, int N, const float *A, int lda, const float *X, int ldx, float *C, int ldc,
                       float *tile) {
    if (M == 0) {
        for (int i = 0; i < GH; i++)
            memset(C + (long)i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    int full = M / ROW_TILE * ROW_TILE, m = M - full;
    float beta = 0.0f;
    for (int i = 0; i < full; i += ROW_TILE, beta = 1.0f)
        wf_sgemm(1, 0, GH, N, ROW_TILE, 1.0f, A + (long)i * lda, lda, X + (long)i * ldx, ldx, beta, C, ldc);
    if (!m) return;
    float *ta = tile, *tx = tile + (long)ROW_TILE * GH;
    memset(ta, 0, sizeof(float) * (size_t)ROW_TILE * (size_t)GH);
    memset(tx, 0, sizeof(float) * (size_t)ROW_TILE * (size_t)N);
    for (int i = 0; i < m; i++) {
        memcpy(ta + (long)i * GH, A + (long)(full + i) * lda, sizeof(float) * (size_t)GH);
        memcpy(tx + (long)i * N, X + (long)(full + i) * ldx, sizeof(float) * (size_t)N);
    }
    wf_sgemm(1, 0, GH, N, ROW_TILE, 1.0f, ta, GH, tx, N, beta, C, ldc);
}

/* The GEMMs and bias sums every backward ends with, from the gradients of the gates' pre-activations on
 * the input side dgi (B, GH) and on the state side dgh (B, GH) (the same array but for the gru, whose
 * candidate gate sees W_hn h + b_hn through the reset gate):
 *   dx (B, C) = dgi W_ih;  dh0 (B, H; row stride ldh) = dgh W_hh + beta_h * dh0;
 *   dw_ih (GH, C) = dgi^T x;  dw_hh (GH, H) = dgh^T h0 (h0's row stride ldh0);
 *   db_ih, db_hh (GH) = column sums of dgi, dgh. */
static void cell_grads(float *dx, float *dh0, int ldh, float beta_h, float *dw_ih, float *dw_hh, float *db_ih,
                       float *db_hh, const float *dgi, const float *dgh, const float *x, const float *h0, int ldh0,
                       const float *w_ih, const float *w_hh, int B, int C, int H, int GH, float *tile) {
    if (dx) gemm_rows(0, B, C, GH, dgi, GH, w_ih, C, 0.0f, dx, C, tile);
    if (dh0) gemm_rows(0, B, H, GH, dgh, GH, w_hh, H, beta_h, dh0, ldh, tile);
    if (dw_ih) gemm_wgrad(B, GH, C, dgi, GH, x, C, dw_ih, C, tile);
    if (dw_hh) gemm_wgrad(B, GH, H, dgh, GH, h0, ldh0, dw_hh, H, tile);
    if (db_ih) col_sum(db_ih, dgi, B, GH);
    if (db_hh) {
        if (dgh == dgi && db_ih)
            memcpy(db_hh, db_ih, sizeof(float) * (size_t)GH);
        else
            col_sum(db_hh, dgh, B, GH);
    }
}

long wf_rnn_tanh_workspace(int B, int C, int H) { return (long)B * H + tile_floats(C, H, 1); }
long wf_gru_workspace(int B, int C, int H) { return 6L * B * H + tile_floats(C, H, 3); }
long wf_lstm_workspace(int B, int C, int H) { return 4L * B * H + tile_floats(C, H, 4); }

/* ---- rnn_tanh: h1 = tanh(x W_ih^T + b_ih + h0 W_hh^T + b_hh) ---- */

void wf_rnn_tanh_forward(float *h1, const float *x, const float *h0, const float *w_ih, const float *w_hh,
                         const float *b_ih, const float *b_hh, int B, int C, int H, float *work) {
    float *tile = work + (long)B * H;
    gemm_rows(1, B, H, C, x, C, w_ih, C, 0.0f, h1, H, tile);
    gemm_rows(1, B, H, H, h0, H, w_hh, H, 1.0f, h1, H, tile);
    for (int b = 0; b < B; b++) {
        float *o = h1 + (long)b * H;
        for (int j = 0; j < H; j++)
            o[j] = rnn_tanh_f(o[j] + (b_ih[j] + b_hh[j]));
    }
}

void wf_rnn_tanh_backward(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                          const float *dh1, const float *x, const float *h0, const float *w_ih, const float *w_hh,
                          const float *h1, int B, int C, int H, float *work) {
    float *dg = work; /* (B, H) */
    long n = (long)B * H;
    for (long i = 0; i < n; i++)
        dg[i] = dh1[i] * (1.0f - h1[i] * h1[i]);
    cell_grads(dx, dh0, H, 0.0f, dw_ih, dw_hh, db_ih, db_hh, dg, dg, x, h0, H, w_ih, w_hh, B, C, H, H, work + n);
}

/* ---- gru, gates r, z, n ----
 * r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
 * n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h1 = (1 - z) * n + z * h, evaluated as PyTorch does:
 * n + z * (h - n). */

void wf_gru_forward(float *h1, float *gates, float *hn, const float *x, const float *h0, const float *w_ih,
                    const float *w_hh, const float *b_ih, const float *b_hh, int B, int C, int H, float *work) {
    int G = 3 * H;
    float *gh = work, *tile = work + 6L * B * H; /* gh (B, 3H): h0 W_hh^T */
    gemm_rows(1, B, G, C, x, C, w_ih, C, 0.0f, gates, G, tile);
    gemm_rows(1, B, G, H, h0, H, w_hh, H, 0.0f, gh, G, tile);
    for (int b = 0; b < B; b++) {
        float *gi = gates + (long)b * G, *a = hn + (long)b * H, *o = h1 + (long)b * H;
        const float *gr = gh + (long)b * G, *hp = h0 + (long)b * H;
        for (int j = 0; j < H; j++) {
            float r = sigm((gi[j] + b_ih[j]) + (gr[j] + b_hh[j]));
            float z = sigm((gi[H + j] + b_ih[H + j]) + (gr[H + j] + b_hh[H + j]));
            float an = gr[2 * H + j] + b_hh[2 * H + j];
            float nn = rnn_tanh_f((gi[2 * H + j] + b_ih[2 * H + j]) + r * an);
            gi[j] = r;
            gi[H + j] = z;
            gi[2 * H + j] = nn;
            a[j] = an;
            o[j] = nn + z * (hp[j] - nn);
        }
    }
}

void wf_gru_backward(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, const float *dh1,
                     const float *x, const float *h0, const float *w_ih, const float *w_hh, const float *gates,
                     const float *hn, int B, int C, int H, float *work) {
    int G = 3 * H;
    float *dgi = work, *dgh = work + (long)B * G; /* (B, 3H) each */
    for (int b = 0; b < B; b++) {
        const float *gt = gates + (long)b * G, *a = hn + (long)b * H, *hp = h0 + (long)b * H, *d = dh1 + (long)b * H;
        float *di = dgi + (long)b * G, *dh = dgh + (long)b * G;
        for (int j = 0; j < H; j++) {
            float r = gt[j], z = gt[H + j], nn = gt[2 * H + j];
            float dnp = d[j] * (1.0f - z) * (1.0f - nn * nn); /* through n's tanh */
            float drp = dnp * a[j] * r * (1.0f - r);
            float dzp = d[j] * (hp[j] - nn) * z * (1.0f - z);
            di[j] = dh[j] = drp;
            di[H + j] = dh[H + j] = dzp;
            di[2 * H + j] = dnp;
            dh[2 * H + j] = dnp * r;
        }
        if (dh0) {
            float *o = dh0 + (long)b * H;
            for (int j = 0; j < H; j++)
                o[j] = d[j] * gt[H + j]; /* h's direct path; the GEMM adds the gates' */
        }
    }
    cell_grads(dx, dh0, H, 1.0f, dw_ih, dw_hh, db_ih, db_hh, dgi, dgh, x, h0, H, w_ih, w_hh, B, C, H, G,
               work + 6L * B * H);
}

/* ---- lstm, gates i, f, g, o; the state s = [h | c] per row (B, 2H) ----
 * (i, f, g, o) = (sigmoid, sigmoid, tanh, sigmoid)(W_ih x + b_ih + W_hh h + b_hh),
 * c1 = f * c + i * g, h1 = o * tanh(c1). */

void wf_lstm_forward(float *s1, float *gates, const float *x, const float *s0, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, int B, int C, int H, float *work) {
    int G = 4 * H, S = 2 * H;
    float *tile = work + 4L * B * H;
    gemm_rows(1, B, G, C, x, C, w_ih, C, 0.0f, gates, G, tile);
    gemm_rows(1, B, G, H, s0, S, w_hh, H, 1.0f, gates, G, tile); /* h: the first H of each state row */
    for (int b = 0; b < B; b++) { /* simple passes over contiguous rows, each of which vectorizes */
        float *gt = gates + (long)b * G, *h1 = s1 + (long)b * S, *c1 = h1 + H;
        const float *c = s0 + (long)b * S + H;
        for (int j = 0; j < G; j++)
            gt[j] = gt[j] + (b_ih[j] + b_hh[j]);
        for (int j = 0; j < 2 * H; j++) /* i, f */
            gt[j] = sigm(gt[j]);
        for (int j = 2 * H; j < 3 * H; j++) /* g */
            gt[j] = rnn_tanh_f(gt[j]);
        for (int j = 3 * H; j < G; j++) /* o */
            gt[j] = sigm(gt[j]);
        for (int j = 0; j < H; j++)
            c1[j] = gt[H + j] * c[j] + gt[j] * gt[2 * H + j];
        for (int j = 0; j < H; j++)
            h1[j] = gt[3 * H + j] * rnn_tanh_f(c1[j]);
    }
}

void wf_lstm_backward(float *dx, float *ds0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, const float *ds1,
                      const float *x, const float *s0, const float *w_ih, const float *w_hh, const float *gates,
                      const float *s1, int B, int C, int H, float *work) {
    int G = 4 * H, S = 2 * H;
    float *dg = work;             /* (B, 4H) */
    for (int b = 0; b < B; b++) { /* passes over contiguous rows, each of which vectorizes */
        const float *gt = gates + (long)b * G, *c = s0 + (long)b * S + H, *c1 = s1 + (long)b * S + H;
        const float *dh = ds1 + (long)b * S, *dc1 = ds1 + (long)b * S + H;
        float *d = dg + (long)b * G, *dc0 = ds0 ? ds0 + (long)b * S + H : NULL;
        for (int j = 0; j < H; j++) /* tanh(c1) for a while in the o gate's slot: the forward's bits */
            d[3 * H + j] = rnn_tanh_f(c1[j]);
        for (int j = 0; j < H; j++) { /* dc for a while in the g gate's slot; the o gate */
            float og = gt[3 * H + j], tc = d[3 * H + j];
            d[2 * H + j] = dc1[j] + dh[j] * og * (1.0f - tc * tc);
            d[3 * H + j] = dh[j] * tc * og * (1.0f - og);
        }
        if (dc0)
            for (int j = 0; j < H; j++)
                dc0[j] = d[2 * H + j] * gt[H + j];
        for (int j = 0; j < H; j++) {
            float ig = gt[j], fg = gt[H + j], gg = gt[2 * H + j], dc = d[2 * H + j];
            d[j] = dc * gg * ig * (1.0f - ig);
            d[H + j] = dc * c[j] * fg * (1.0f - fg);
            d[2 * H + j] = dc * ig * (1.0f - gg * gg);
        }
    }
    /* dh0 is the first H of each row of ds0 (row stride 2H) */
    cell_grads(dx, ds0, S, 0.0f, dw_ih, dw_hh, db_ih, db_hh, dg, dg, x, s0, S, w_ih, w_hh, B, C, H, G,
               work + 4L * B * H);
}
