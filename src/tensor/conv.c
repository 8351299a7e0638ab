/*
 * tensor layer: 2-D convolution and pooling kernels, NCHW, float32.
 *
 * Convolution has two backends (conv_int.h): oneDNN's direct kernels
 * (conv_dnnl.c) and im2col + OpenBLAS here. WEFT_CONV=blas|dnnl|auto picks
 * one for every op, auto (the default) per op and shape by the rule at
 * wf_conv_dnnl_ops(). The workspace covers both, so a oneDNN call that
 * cannot run falls back to BLAS.
 *
 * The BLAS backend is im2col + SGEMM, per chunk of samples; weights
 * are (OC, C, KH, KW), exactly PyTorch's nn.Conv2d layout, so its weights
 * load directly. Forward: out_n (OC, P) = w (OC, K) @ col_n (K, P), with
 * P = OH*OW and K = C*KH*KW. Backward, per chunk in sample order:
 * dw^T (+)= col_n @ dout_n^T (beta = 1 after the first chunk; transposed
 * into dw at the end), dcol = w^T @ dout_n, then col2im into dinp. dbias
 * sums dout in a fixed order. The scratch layout (struct conv_plan)
 * depends only on the shape, so every reduction runs in the same order on
 * every call: results are bitwise reproducible for a given BLAS build and
 * thread count.
 *
 * A 1x1, stride 1, unpadded convolution needs no im2col: the input planes
 * are the columns, and it needs no scratch at all.
 *
 * Activations can also come and go in NCHW16C (kernels.h), the layout
 * oneDNN computes in: the executor hands them over so between a
 * convolution and a fused relu + max pool. oneDNN then runs the same
 * primitives without reordering them; the BLAS backend converts.
 *
 * Pooling is direct loops; max pooling records the flat index h*W+w of each
 * maximum in its (n,c) plane for the backward. The relu + max pool fusion
 * (wf_maxpool2d_relu_forward) applies relu to each window value as it
 * reads it; its NCHW16C kernels take 16 channels per vector.
 */
#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conv_int.h"
#include "weft/core.h"
#include "weft/kernels.h"

/* Columns per GEMM: a chunk holds as many samples as fit in this many
 * columns, at least one. Per-sample GEMMs of a few hundred columns run as
 * fast as one big GEMM (measured) and keep col in L2, so chunks of several
 * samples only happen for small feature maps, where a per-sample GEMM
 * would be too narrow. */
#ifndef CONV_CHUNK_COLS
#define CONV_CHUNK_COLS 384
#endif
/* The backward's dinp goes through the wide layout (see conv_plan) when it
 * wastes at most this fraction of extra dcol columns, (Wx - OW) / OW: for
 * the 5x5 pad-2 convolution on 14x14 maps, 29% more dcol GEMM work buys a
 * col2im about 4x faster, a net gain (measured). */
#ifndef CONV_WIDE_MAX_WASTE
#define CONV_WIDE_MAX_WASTE 0.5
#endif

static void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                  float beta, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                B, ldb, beta, C, ldc);
}

void wf_conv2d_shape_init(struct wf_conv2d_shape *s, int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                          int pad) {
    s->N = N;
    s->C = C;
    s->H = H;
    s->W = W;
    s->OC = OC;
    s->KH = KH;
    s->KW = KW;
    s->stride = stride;
    s->pad = pad;
    s->OH = (H + 2 * pad - KH) / stride + 1;
    s->OW = (W + 2 * pad - KW) / stride + 1;
}

/* How a call lays out its scratch: a pure function of the shape, so every
 * call runs the same reductions in the same order.
 *
 * The image im2col reads is (C, Hx, Wx): the input itself, or a zero-padded
 * copy in xp. With stride 1 the backward can compute dcol in a "wide"
 * layout, Q = OH*Wx columns per sample instead of OH*OW, from a copy of
 * dout whose extra columns are zero: row (c,kh,kw) of dcol then lands on
 * one contiguous run of the image, and col2im is a plain vector add instead
 * of OH short rows. The extra dcol entries are w^T @ 0: exact zeros unless
 * a weight is infinite or NaN. */
struct conv_plan {
    int nb;     /* samples per chunk */
    int Hx, Wx; /* image as im2col reads it */
    int wide;   /* backward dcol in the wide layout */
    long K;     /* C*KH*KW, rows of col */
    long P, Q;  /* GEMM columns per sample: P = OH*OW; Q = OH*Wx if wide, else P */
    long ncol;  /* floats: col (K, nb*Q), also dcol */
    long ntmp;  /* floats: GEMM output (forward) or permuted/widened dout (backward) */
    long nxp;   /* floats: padded image (C, Hx, Wx) */
    long ndwt;  /* floats: dw^T (K, OC), the backward's accumulator */
};

/* nothing to compute: an empty batch, or a kernel larger than the padded
 * input (shape_init then gives OH or OW <= 0; callers should reject it) */
static int conv_is_empty(const struct wf_conv2d_shape *s) { return s->N <= 0 || s->OH <= 0 || s->OW <= 0; }

static int conv_is_pointwise(const struct wf_conv2d_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

static void conv_plan(struct conv_plan *p, const struct wf_conv2d_shape *s) {
    p->K = (long)s->C * s->KH * s->KW;
    p->P = (long)s->OH * s->OW;
    p->Hx = s->H + 2 * s->pad;
    p->Wx = s->W + 2 * s->pad;
    p->wide = s->stride == 1 && p->Wx - s->OW <= CONV_WIDE_MAX_WASTE * s->OW;
    p->Q = p->wide ? (long)s->OH * p->Wx : p->P;
    long nb = CONV_CHUNK_COLS / p->P;
    nb = nb > s->N ? s->N : nb;
    p->nb = nb < 1 ? 1 : (int)nb;
    p->ncol = p->K * p->nb * p->Q;
    long permute = p->nb > 1 ? (long)s->OC * p->nb * p->P : 0, widened = p->wide ? (long)s->OC * p->nb * p->Q : 0;
    p->ntmp = permute > widened ? permute : widened;
    p->nxp = s->pad > 0 ? (long)s->C * p->Hx * p->Wx : 0;
    p->ndwt = p->K * s->OC;
}

/* xp (C, H+2p, W+2p) = img (C,H,W) with a zero border */
static void pad_image(float *xp, const float *img, const struct wf_conv2d_shape *s) {
    const int H = s->H, W = s->W, p = s->pad, Wp = W + 2 * p;
    for (int c = 0; c < s->C; c++) {
        float *dst = xp + (long)c * (H + 2 * p) * Wp;
        memset(dst, 0, sizeof(float) * ((long)p * Wp + p));
        for (int h = 0; h < H; h++) {
            memcpy(dst + (long)(h + p) * Wp + p, img + ((long)c * H + h) * W, sizeof(float) * W);
            /* right border of this row and left border of the next */
            memset(dst + (long)(h + p) * Wp + p + W, 0, sizeof(float) * 2 * p);
        }
        memset(dst + (long)(H + p) * Wp + p, 0, sizeof(float) * ((long)p * Wp - p));
    }
}

/* dst[0..n) = src[0..n). Rows of 8..32 floats (OW = 14, 28, ...) are
 * copied as 8-float blocks, the last one overlapping, without a scalar tail
 * or a library call; fixed-size memcpy compiles to single vector moves. */
static inline void copy_row(float *restrict dst, const float *restrict src, int n) {
    if (n < 8 || n > 32) {
        memcpy(dst, src, sizeof(float) * n);
        return;
    }
    memcpy(dst, src, 8 * sizeof(float));
    if (n > 16) memcpy(dst + 8, src + 8, 8 * sizeof(float));
    if (n > 24) memcpy(dst + 16, src + 16, 8 * sizeof(float));
    memcpy(dst + n - 8, src + n - 8, 8 * sizeof(float));
}

/* col (K, ld) columns [0, P) = im2col of x (C, Hx, Wx), an image already
 * padded (or needing none), so every read is in bounds: no branches. */
static void im2col(float *col, long ld, const float *x, int Hx, int Wx, const struct wf_conv2d_shape *s) {
    const int OH = s->OH, OW = s->OW, st = s->stride;
    for (int c = 0; c < s->C; c++) {
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                float *dst = col + ((long)(c * s->KH + kh) * s->KW + kw) * ld;
                const float *src = x + ((long)c * Hx + kh) * Wx + kw;
                if (st == 1) {
                    for (int oh = 0; oh < OH; oh++)
                        copy_row(dst + (long)oh * OW, src + (long)oh * Wx, OW);
                } else {
                    for (int oh = 0; oh < OH; oh++)
                        for (int ow = 0; ow < OW; ow++)
                            dst[(long)oh * OW + ow] = src[(long)oh * st * Wx + ow * st];
                }
            }
        }
    }
}

/* x (C, Hx, Wx) = col2im of col (K, ld) columns [0, P): zeroed, then every
 * column entry added in (c, kh, kw, oh, ow) order. */
static void col2im(float *x, int Hx, int Wx, const float *col, long ld, const struct wf_conv2d_shape *s) {
    const int OH = s->OH, OW = s->OW, st = s->stride;
    memset(x, 0, sizeof(float) * s->C * Hx * Wx);
    for (int c = 0; c < s->C; c++) {
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const float *src = col + ((long)(c * s->KH + kh) * s->KW + kw) * ld;
                float *dst = x + ((long)c * Hx + kh) * Wx + kw;
                for (int oh = 0; oh < OH; oh++)
                    for (int ow = 0; ow < OW; ow++)
                        dst[(long)oh * st * Wx + ow * st] += src[(long)oh * OW + ow];
            }
        }
    }
}

/* col2im of a wide dcol (K, ld) columns [0, OH*Wx), stride 1: row
 * (c,kh,kw) covers x[c, kh + oh, kw + ow] for oh < OH, ow < Wx, i.e. one
 * contiguous run; it is cut at the last real column so it stays inside
 * channel c. Same addition order as col2im. */
static void col2im_wide(float *x, int Hx, int Wx, const float *col, long ld, const struct wf_conv2d_shape *s) {
    const long len = (long)(s->OH - 1) * Wx + s->OW;
    memset(x, 0, sizeof(float) * s->C * Hx * Wx);
    for (int c = 0; c < s->C; c++) {
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const float *restrict src = col + ((long)(c * s->KH + kh) * s->KW + kw) * ld;
                float *restrict dst = x + ((long)c * Hx + kh) * Wx + kw;
                for (long j = 0; j < len; j++)
                    dst[j] += src[j];
            }
        }
    }
}

/* im2col of sample img into columns [0,P) of col (K, ld), padding through xp */
static void im2col_sample(float *col, long ld, const float *img, float *xp, const struct wf_conv2d_shape *s) {
    if (s->pad > 0) {
        pad_image(xp, img, s);
        im2col(col, ld, xp, s->H + 2 * s->pad, s->W + 2 * s->pad, s);
    } else {
        im2col(col, ld, img, s->H, s->W, s);
    }
}

/* dimg (C,H,W) = col2im of one sample's dcol columns (K, ld), accumulating in xp when padded */
static void col2im_sample(float *dimg, const float *dcol, long ld, float *xp, const struct conv_plan *p,
                          const struct wf_conv2d_shape *s) {
    const int H = s->H, W = s->W, pad = s->pad;
    float *x = pad > 0 ? xp : dimg;
    if (p->wide)
        col2im_wide(x, p->Hx, p->Wx, dcol, ld, s);
    else
        col2im(x, p->Hx, p->Wx, dcol, ld, s);
    if (pad == 0) return;
    for (int c = 0; c < s->C; c++)
        for (int h = 0; h < H; h++)
            memcpy(dimg + ((long)c * H + h) * W, xp + ((long)c * p->Hx + h + pad) * p->Wx + pad, sizeof(float) * W);
}

/* One sample's (C, P) planes between NCHW and NCHW16C: the BLAS backend's
 * side of the hand-over (only a fallback: oneDNN runs these ops). */
static void to_blocked(float *restrict dst, const float *restrict src, int C, long P) {
    for (int cb = 0; cb < C / 16; cb++)
        for (long p = 0; p < P; p++)
            for (int l = 0; l < 16; l++)
                dst[((long)cb * P + p) * 16 + l] = src[((long)cb * 16 + l) * P + p];
}

static void from_blocked(float *restrict dst, const float *restrict src, int C, long P) {
    for (int cb = 0; cb < C / 16; cb++)
        for (int l = 0; l < 16; l++)
            for (long p = 0; p < P; p++)
                dst[((long)cb * 16 + l) * P + p] = src[((long)cb * P + p) * 16 + l];
}

/* the same for the N samples of x in place, through tmp (C*P floats) */
static void batch_to_blocked(float *x, int N, int C, long P, float *tmp) {
    for (int n = 0; n < N; n++) {
        memcpy(tmp, x + n * C * P, sizeof(float) * (size_t)C * P);
        to_blocked(x + n * C * P, tmp, C, P);
    }
}

static void batch_from_blocked(float *x, int N, int C, long P, float *tmp) {
    for (int n = 0; n < N; n++) {
        memcpy(tmp, x + n * C * P, sizeof(float) * (size_t)C * P);
        from_blocked(x + n * C * P, tmp, C, P);
    }
}

/* The sample of inp the BLAS backend reads: inp itself, or with in_blk
 * (NCHW16C) its NCHW copy in xs (C*H*W floats). */
static const float *sample_in(const float *inp, int in_blk, float *xs, const struct wf_conv2d_shape *s) {
    if (!in_blk) return inp;
    from_blocked(xs, inp, s->C, (long)s->H * s->W);
    return xs;
}

/* dinp's sample, just written in NCHW, to NCHW16C with in_blk (tmp: C*H*W floats) */
static void sample_out(float *dinp, int in_blk, float *tmp, const struct wf_conv2d_shape *s) {
    if (!in_blk) return;
    memcpy(tmp, dinp, sizeof(float) * (size_t)s->C * s->H * s->W);
    to_blocked(dinp, tmp, s->C, (long)s->H * s->W);
}

/* out (OC, P) += bias, per channel */
static void add_bias(float *out, const float *bias, int OC, long P) {
    for (int oc = 0; oc < OC; oc++, out += P) {
        const float b = bias[oc];
        for (long j = 0; j < P; j++)
            out[j] += b;
    }
}

/* floats of the BLAS backend's scratch: the plan's, then xs (sample_in) */
static long blas_scratch(const struct wf_conv2d_shape *s) {
    if (conv_is_pointwise(s)) return 0;
    struct conv_plan p;
    conv_plan(&p, s);
    return p.ncol + p.ntmp + p.nxp + p.ndwt;
}

static long blas_xs(const struct wf_conv2d_shape *s) { return s->C % 16 == 0 ? (long)s->C * s->H * s->W : 0; }

/* in_blk: inp in NCHW16C, converted sample by sample */
static void blas_forward(float *out, const float *inp, const float *w, const float *bias,
                         const struct wf_conv2d_shape *s, float *work, int in_blk) {
    const int OC = s->OC;
    const long P = (long)s->OH * s->OW, inp_n = (long)s->C * s->H * s->W, out_n = OC * P;
    float *xs = work + blas_scratch(s);
    if (conv_is_pointwise(s)) {
        for (int n = 0; n < s->N; n++) {
            const float *x = sample_in(inp + n * inp_n, in_blk, xs, s);
            sgemm(0, 0, OC, (int)P, s->C, 1.0f, w, s->C, x, (int)P, 0.0f, out + n * out_n, (int)P);
            if (bias) add_bias(out + n * out_n, bias, OC, P);
        }
        return;
    }
    struct conv_plan p;
    conv_plan(&p, s);
    const int K = (int)p.K;
    float *col = work, *tmp = col + p.ncol, *xp = tmp + p.ntmp;
    for (int n0 = 0; n0 < s->N; n0 += p.nb) {
        const int nb = WF_MIN(p.nb, s->N - n0);
        const long ld = nb * P;
        for (int i = 0; i < nb; i++)
            im2col_sample(col + i * P, ld, sample_in(inp + (n0 + i) * inp_n, in_blk, xs, s), xp, s);
        if (nb == 1) {
            sgemm(0, 0, OC, (int)P, K, 1.0f, w, K, col, (int)P, 0.0f, out + n0 * out_n, (int)P);
            if (bias) add_bias(out + n0 * out_n, bias, OC, P);
            continue;
        }
        sgemm(0, 0, OC, (int)ld, K, 1.0f, w, K, col, (int)ld, 0.0f, tmp, (int)ld);
        /* tmp (OC, nb, P) -> out (nb, OC, P), adding the bias on the way */
        for (int i = 0; i < nb; i++) {
            for (int oc = 0; oc < OC; oc++) {
                float *o = out + (n0 + i) * out_n + oc * P;
                const float *t = tmp + oc * ld + i * P;
                const float b = bias ? bias[oc] : 0.0f;
                for (long j = 0; j < P; j++)
                    o[j] = t[j] + b;
            }
        }
    }
}

/* sum of x[0..n) in 16 float lanes (vectorizable, fixed order), lanes combined in double */
static double plane_sum(const float *x, long n) {
    float acc[16] = {0};
    long i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[i + j];
    double sum = 0;
    for (int j = 0; j < 16; j++)
        sum += acc[j];
    for (; i < n; i++)
        sum += x[i];
    return sum;
}

/* dinp, dw and dbias each nullable: only the others are computed; in_blk:
 * inp and dinp in NCHW16C, converted sample by sample */
static void blas_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                          const struct wf_conv2d_shape *s, float *work, int in_blk) {
    float *xs = work + blas_scratch(s);
    const int OC = s->OC, OH = s->OH, OW = s->OW;
    const long P = (long)OH * OW, inp_n = (long)s->C * s->H * s->W, out_n = OC * P;
    if (dbias) {
        for (int oc = 0; oc < OC; oc++) {
            double sum = 0;
            for (int n = 0; n < s->N; n++)
                sum += plane_sum(dout + n * out_n + oc * P, P);
            dbias[oc] = (float)sum;
        }
    }
    if (conv_is_pointwise(s)) {
        const int C = s->C;
        for (int n = 0; n < s->N; n++) {
            const float *dout_n = dout + n * out_n, *inp_ = dw ? sample_in(inp + n * inp_n, in_blk, xs, s) : NULL;
            /* dw (OC,C) (+)= dout_n (OC,P) @ inp_n (C,P)^T */
            if (dw) sgemm(0, 1, OC, C, (int)P, 1.0f, dout_n, (int)P, inp_, (int)P, n ? 1.0f : 0.0f, dw, C);
            /* dinp_n (C,P) = w (OC,C)^T @ dout_n */
            if (dinp) {
                sgemm(1, 0, C, (int)P, OC, 1.0f, w, C, dout_n, (int)P, 0.0f, dinp + n * inp_n, (int)P);
                sample_out(dinp + n * inp_n, in_blk, xs, s);
            }
        }
        return;
    }
    struct conv_plan p;
    conv_plan(&p, s);
    const int K = (int)p.K;
    float *col = work, *tmp = col + p.ncol, *xp = tmp + p.ntmp, *dwt = xp + p.nxp;
    if (!dw && !dinp) return;
    for (int n0 = 0; n0 < s->N; n0 += p.nb) {
        const int nb = WF_MIN(p.nb, s->N - n0);
        const long ld = nb * P;
        if (dw)
            for (int i = 0; i < nb; i++)
                im2col_sample(col + i * P, ld, sample_in(inp + (n0 + i) * inp_n, in_blk, xs, s), xp, s);
        const float *d = dout + n0 * out_n;
        if (nb > 1) {
            /* dout (nb, OC, P) -> tmp (OC, nb, P) */
            for (int i = 0; i < nb; i++)
                for (int oc = 0; oc < OC; oc++)
                    memcpy(tmp + oc * ld + i * P, dout + (n0 + i) * out_n + oc * P, sizeof(float) * P);
            d = tmp;
        }
        /* dw^T (K,OC) (+)= col (K, nb*P) @ d (OC, nb*P)^T, chunks summed in
         * order; the transposed product runs ~10% faster in OpenBLAS here */
        if (dw) sgemm(0, 1, K, OC, (int)ld, 1.0f, col, (int)ld, d, (int)ld, n0 ? 1.0f : 0.0f, dwt, OC);
        if (!dinp) continue;
        long ldq = ld;
        if (p.wide) {
            /* d -> tmp (OC, nb, OH, Wx), zero beyond column OW */
            ldq = nb * p.Q;
            for (int oc = 0; oc < OC; oc++) {
                for (int i = 0; i < nb; i++) {
                    const float *src = dout + (n0 + i) * out_n + oc * P;
                    float *dst = tmp + oc * ldq + i * p.Q;
                    for (int oh = 0; oh < OH; oh++) {
                        memcpy(dst + (long)oh * p.Wx, src + (long)oh * OW, sizeof(float) * OW);
                        memset(dst + (long)oh * p.Wx + OW, 0, sizeof(float) * (p.Wx - OW));
                    }
                }
            }
            d = tmp;
        }
        /* dcol (K, nb*Q) = w (OC,K)^T @ d, overwriting col */
        sgemm(1, 0, K, (int)ldq, OC, 1.0f, w, K, d, (int)ldq, 0.0f, col, (int)ldq);
        const long q = p.wide ? p.Q : P; /* dcol columns per sample */
        for (int i = 0; i < nb; i++) {
            col2im_sample(dinp + (n0 + i) * inp_n, col + i * q, ldq, xp, &p, s);
            sample_out(dinp + (n0 + i) * inp_n, in_blk, xs, s);
        }
    }
    if (!dw) return;
    for (int oc = 0; oc < OC; oc++)
        for (int k = 0; k < K; k++)
            dw[(long)oc * K + k] = dwt[(long)k * OC + oc];
}

/* ---- the backend per op ---- */

static _Atomic int backend_setting = -1; /* enum wf_conv_backend, -1: WEFT_CONV not read yet */

void wf_conv_backend_set(enum wf_conv_backend b) { backend_setting = (int)b; }

enum wf_conv_backend wf_conv_backend_get(void) {
    int b = backend_setting;
    if (b >= 0) return (enum wf_conv_backend)b;
    const char *v = getenv("WEFT_CONV");
    b = WF_CONV_AUTO;
    if (v && strcmp(v, "blas") == 0)
        b = WF_CONV_BLAS;
    else if (v && strcmp(v, "dnnl") == 0)
        b = WF_CONV_DNNL;
    else if (v && *v && strcmp(v, "auto") != 0)
        WF_LOGW("tensor", "WEFT_CONV=%s is not blas, dnnl or auto; using auto", v);
    backend_setting = b;
    return (enum wf_conv_backend)b;
}

/* "auto": oneDNN where it was measured faster (the CNN's layers at N=64,
 * medians, OpenBLAS SkylakeX kernels; 1 thread: thread CPU time, 2: wall).
 * Its direct kernels work on blocks of 16 channels. With 16+ input and
 * output channels (conv2, 32 -> 64) all three ops ran 1.6-2x faster than
 * im2col + OpenBLAS at 1 thread (forward 7.5 vs 12.2 ms, backward-weights
 * 7.7 vs 11.8, backward-data 7.3 vs 14.8) and 2-3x at 2 (5.4 vs 13.1
 * forward): the per-sample GEMMs are too small for OpenBLAS to gain from a
 * second thread. With few input channels (conv1, 1 -> 32) the forward does
 * little arithmetic per output, and most of its time on oneDNN goes to
 * reordering the output out of the blocked layout: with the output handed
 * over in that layout (WF_LAYOUT_NCHW16C, a conv feeding a fused relu +
 * max pool) it takes 0.62 ms against 1.11 on BLAS at 1 thread, and with the
 * reorder to NCHW 1.17 (min of 50). It runs on oneDNN either way: one
 * backend per op whatever the layout, so that a pipeline cut that leaves
 * the pair unfused changes no bit (DESIGN.md §4). Backward-weights gains
 * too (1.6 vs 1.7 ms; 1.2 vs 2.0 at 2 threads); backward-data, unmeasured
 * with so few channels, stays on BLAS. Pointwise convolutions need no
 * im2col and stay on BLAS, unmeasured against oneDNN. Every op on oneDNN
 * also has its nChw16c variant when OC is a multiple of 16. */
int wf_conv_dnnl_ops(const struct wf_conv2d_shape *s) {
    if (conv_is_empty(s)) return 0;
    switch (wf_conv_backend_get()) {
    case WF_CONV_BLAS: return 0;
    case WF_CONV_DNNL: return WF_CONV_OP_ALL;
    default: break;
    }
    if (conv_is_pointwise(s) || s->OC < 16) return 0;
    return s->C >= 16 ? WF_CONV_OP_ALL : WF_CONV_OP_FWD | WF_CONV_OP_BWD_WEIGHTS;
}

/* Hand-over in nChw16c only where oneDNN runs the ops that touch the
 * tensor: the BLAS backend would have to convert (correct, but slower than
 * NCHW). The output: the forward (it reads the gradient back too, but a
 * first layer's backward-data is never needed); the input: all three. */
int wf_conv2d_blocked_ok(const struct wf_conv2d_shape *s) {
    return !conv_is_empty(s) && s->OC % 16 == 0 && (wf_conv_dnnl_ops(s) & WF_CONV_OP_FWD) && wf_conv_dnnl_available();
}

int wf_conv2d_blocked_in_ok(const struct wf_conv2d_shape *s) {
    return !conv_is_empty(s) && s->C % 16 == 0 && wf_conv_dnnl_ops(s) == WF_CONV_OP_ALL && wf_conv_dnnl_available();
}

long wf_conv2d_workspace(const struct wf_conv2d_shape *s) {
    if (conv_is_empty(s)) return 0;
    /* the BLAS part stays: it is the fallback if oneDNN cannot run a call */
    const long n = blas_scratch(s) + blas_xs(s);
    /* oneDNN's nChw16c variants of an op need no more than its NCHW one */
    const int ops = wf_conv_dnnl_ops(s);
    const long d = ops ? wf_conv_dnnl_workspace(s, ops) : 0;
    /* a sample of the output, for converting it in place */
    const long b = s->OC % 16 == 0 ? (long)s->OC * s->OH * s->OW : 0;
    return WF_MAX(WF_MAX(n, d), b);
}

void wf_conv2d_forward(float *out, const float *inp, const float *w, const float *bias, const struct wf_conv2d_shape *s,
                       float *work) {
    wf_conv2d_forward_ex(out, inp, w, bias, s, work, WF_LAYOUT_NCHW, WF_LAYOUT_NCHW);
}

void wf_conv2d_forward_ex(float *out, const float *inp, const float *w, const float *bias,
                          const struct wf_conv2d_shape *s, float *work, int in_layout, int out_layout) {
    if (conv_is_empty(s)) return;
    const int ib = in_layout == WF_LAYOUT_NCHW16C, ob = out_layout == WF_LAYOUT_NCHW16C;
    if ((wf_conv_dnnl_ops(s) & WF_CONV_OP_FWD) && wf_conv_dnnl_forward(out, inp, w, bias, s, work, ib, ob) == 0) return;
    blas_forward(out, inp, w, bias, s, work, ib);
    if (ob) batch_to_blocked(out, s->N, s->OC, (long)s->OH * s->OW, work);
}

void wf_conv2d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        const struct wf_conv2d_shape *s, float *work) {
    wf_conv2d_backward_ex(dinp, dw, dbias, (float *)dout, inp, w, s, work, WF_LAYOUT_NCHW, WF_LAYOUT_NCHW);
}

void wf_conv2d_backward_ex(float *dinp, float *dw, float *dbias, float *dout, const float *inp, const float *w,
                           const struct wf_conv2d_shape *s, float *work, int in_layout, int out_layout) {
    if (conv_is_empty(s)) {
        memset(dw, 0, sizeof(float) * (size_t)s->OC * s->C * s->KH * s->KW);
        if (dbias) memset(dbias, 0, sizeof(float) * (size_t)s->OC);
        if (dinp && s->N > 0) memset(dinp, 0, sizeof(float) * (size_t)s->N * s->C * s->H * s->W);
        return;
    }
    const int ops = wf_conv_dnnl_ops(s);
    const int ib = in_layout == WF_LAYOUT_NCHW16C, ob = out_layout == WF_LAYOUT_NCHW16C;
    if ((ops & WF_CONV_OP_BWD_WEIGHTS) && wf_conv_dnnl_backward_weights(dw, dbias, dout, inp, s, work, ib, ob) == 0)
        dw = dbias = NULL;
    if (dinp && (ops & WF_CONV_OP_BWD_DATA) && wf_conv_dnnl_backward_data(dinp, dout, w, s, work, ib, ob) == 0)
        dinp = NULL;
    if (!dw && !dinp) return;
    /* the BLAS backend: dout, read by nothing after this node, is converted
     * to NCHW in place; inp and dinp sample by sample */
    if (ob) batch_from_blocked(dout, s->N, s->OC, (long)s->OH * s->OW, work);
    blas_backward(dinp, dw, dbias, dout, inp, w, s, work, ib);
}

/* ---- pooling ---- */

void wf_pool2d_shape_init(struct wf_pool2d_shape *s, int N, int C, int H, int W, int k, int stride, int pad) {
    s->N = N;
    s->C = C;
    s->H = H;
    s->W = W;
    s->k = k;
    s->stride = stride;
    s->pad = pad;
    s->OH = (H + 2 * pad - k) / stride + 1;
    s->OW = (W + 2 * pad - k) / stride + 1;
}

/* relu as wf_relu_forward computes it: NaN and -0.0 pass through */
static inline float relu1(float v) { return v < 0.0f ? 0.0f : v; }

/* The 2x2, stride-2 pool of one row pair (x0, x1: rows 2*oh and 2*oh+1 of a
 * plane of width W), ow in [ow0, OW); i0 = 2*oh*W, the flat index of x0[0].
 * A candidate replaces the best if strictly greater, or NaN: the first
 * maximum wins, as in PyTorch. relu: the window's values are relu'd first,
 * and a maximum not > 0 records -1 - index (see wf_maxpool2d_relu_forward). */
static inline void maxpool22_row_tail(float *restrict o, int32_t *restrict a, const float *restrict x0,
                                      const float *restrict x1, int W, int i0, int ow0, int OW, int relu) {
    for (int ow = ow0; ow < OW; ow++) {
        const int i = i0 + 2 * ow;
        float v00 = x0[2 * ow], v01 = x0[2 * ow + 1], v10 = x1[2 * ow], v11 = x1[2 * ow + 1];
        if (relu) {
            v00 = relu1(v00);
            v01 = relu1(v01);
            v10 = relu1(v10);
            v11 = relu1(v11);
        }
        float b = v00;
        int32_t bi = i, c;
        c = (v01 > b) | (v01 != v01);
        b = c ? v01 : b;
        bi = c ? i + 1 : bi;
        c = (v10 > b) | (v10 != v10);
        b = c ? v10 : b;
        bi = c ? i + W : bi;
        c = (v11 > b) | (v11 != v11);
        b = c ? v11 : b;
        bi = c ? i + W + 1 : bi;
        if (relu && !(b > 0.0f)) bi = -1 - bi;
        o[ow] = b;
        a[ow] = bi;
    }
}

#if defined(__AVX512F__)
/* The same, 16 outputs at a time: the even and odd columns of 32 inputs
 * are split with one permute each; the masked loads stay inside the row. */
static void maxpool22_row(float *restrict o, int32_t *restrict a, const float *restrict x0, const float *restrict x1,
                          int W, int i0, int OW, int relu) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    const __m512 zero = _mm512_setzero_ps();
    const __m512i one = _mm512_set1_epi32(1), w = _mm512_set1_epi32(W), w1 = _mm512_set1_epi32(W + 1);
    for (int ow = 0; ow < OW; ow += 16) {
        const int n = OW - ow < 16 ? OW - ow : 16;
        const __mmask16 mo = (__mmask16)((1u << n) - 1);
        const __mmask16 mlo = (__mmask16)(n >= 8 ? 0xffff : (1u << 2 * n) - 1);
        const __mmask16 mhi = (__mmask16)(n <= 8 ? 0 : (1u << 2 * (n - 8)) - 1);
        const float *r0 = x0 + 2 * ow, *r1 = x1 + 2 * ow;
        __m512 l0 = _mm512_maskz_loadu_ps(mlo, r0), h0 = _mm512_maskz_loadu_ps(mhi, r0 + 16);
        __m512 l1 = _mm512_maskz_loadu_ps(mlo, r1), h1 = _mm512_maskz_loadu_ps(mhi, r1 + 16);
        __m512 v00 = _mm512_permutex2var_ps(l0, even, h0), v01 = _mm512_permutex2var_ps(l0, odd, h0);
        __m512 v10 = _mm512_permutex2var_ps(l1, even, h1), v11 = _mm512_permutex2var_ps(l1, odd, h1);
        if (relu) {
            v00 = _mm512_mask_mov_ps(v00, _mm512_cmp_ps_mask(v00, zero, _CMP_LT_OQ), zero);
            v01 = _mm512_mask_mov_ps(v01, _mm512_cmp_ps_mask(v01, zero, _CMP_LT_OQ), zero);
            v10 = _mm512_mask_mov_ps(v10, _mm512_cmp_ps_mask(v10, zero, _CMP_LT_OQ), zero);
            v11 = _mm512_mask_mov_ps(v11, _mm512_cmp_ps_mask(v11, zero, _CMP_LT_OQ), zero);
        }
        const __m512i i = _mm512_add_epi32(_mm512_set1_epi32(i0 + 2 * ow), even); /* 2 * lane */
        __m512 b = v00;
        __m512i bi = i;
        __mmask16 c = _mm512_cmp_ps_mask(v01, b, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v01, v01, _CMP_UNORD_Q);
        b = _mm512_mask_mov_ps(b, c, v01);
        bi = _mm512_mask_mov_epi32(bi, c, _mm512_add_epi32(i, one));
        c = _mm512_cmp_ps_mask(v10, b, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v10, v10, _CMP_UNORD_Q);
        b = _mm512_mask_mov_ps(b, c, v10);
        bi = _mm512_mask_mov_epi32(bi, c, _mm512_add_epi32(i, w));
        c = _mm512_cmp_ps_mask(v11, b, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v11, v11, _CMP_UNORD_Q);
        b = _mm512_mask_mov_ps(b, c, v11);
        bi = _mm512_mask_mov_epi32(bi, c, _mm512_add_epi32(i, w1));
        if (relu) {
            const __mmask16 pos = _mm512_cmp_ps_mask(b, zero, _CMP_GT_OQ);
            bi = _mm512_mask_mov_epi32(_mm512_sub_epi32(_mm512_set1_epi32(-1), bi), pos, bi);
        }
        _mm512_mask_storeu_ps(o + ow, mo, b);
        _mm512_mask_storeu_epi32(a + ow, mo, bi);
    }
}
#else
static void maxpool22_row(float *restrict o, int32_t *restrict a, const float *restrict x0, const float *restrict x1,
                          int W, int i0, int OW, int relu) {
    maxpool22_row_tail(o, a, x0, x1, W, i0, 0, OW, relu);
}
#endif

/* Unpadded windows are always whole ((OH-1)*stride + k <= H), so the window
 * offsets can be the outer loops and ow the inner one: branch-free selects
 * that vectorize. Offsets are visited in row-major window order and only a
 * strictly greater value (or a NaN) replaces the best, so the first
 * maximum wins, as in PyTorch. relu: as maxpool22_row. */
static void maxpool_unpadded(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s, int relu) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, k = s->k, st = s->stride;
    const long planes = (long)s->N * s->C;
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        for (int oh = 0; oh < OH; oh++) {
            float *restrict o = out + (pl * OH + oh) * OW;
            int32_t *restrict a = argmax + (pl * OH + oh) * OW;
            const int h0 = oh * st;
            if (k == 2 && st == 2) { /* the common 2x2 pool */
                if (relu)
                    maxpool22_row(o, a, x + h0 * W, x + (h0 + 1) * W, W, h0 * W, OW, 1);
                else
                    maxpool22_row(o, a, x + h0 * W, x + (h0 + 1) * W, W, h0 * W, OW, 0);
                continue;
            }
            for (int ow = 0; ow < OW; ow++) {
                o[ow] = relu ? relu1(x[h0 * W + ow * st]) : x[h0 * W + ow * st];
                a[ow] = h0 * W + ow * st;
            }
            for (int kh = 0; kh < k; kh++) {
                for (int kw = kh == 0 ? 1 : 0; kw < k; kw++) {
                    const int base = (h0 + kh) * W + kw;
                    const float *restrict xb = x + base;
                    for (int ow = 0; ow < OW; ow++) {
                        const float v = relu ? relu1(xb[ow * st]) : xb[ow * st];
                        const int better = (v > o[ow]) | (v != v);
                        o[ow] = better ? v : o[ow];
                        a[ow] = better ? base + ow * st : a[ow];
                    }
                }
            }
            if (relu)
                for (int ow = 0; ow < OW; ow++)
                    a[ow] = o[ow] > 0.0f ? a[ow] : -1 - a[ow];
        }
    }
}

/* Max over the window, padding excluded; ties keep the first (row-major)
 * position and NaN propagates, as PyTorch's CPU kernel. An empty window
 * (only possible with pad > k/2, which PyTorch rejects) gives 0 and -1. */
static void maxpool2d_forward_serial(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s) {
    if (s->pad == 0) {
        maxpool_unpadded(out, argmax, inp, s, 0);
        return;
    }
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, k = s->k, st = s->stride, pad = s->pad;
    const long planes = (long)s->N * s->C;
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *o = out + pl * OH * OW;
        int32_t *a = argmax + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * st - pad, h1 = WF_MIN(h0 + k, H);
            h0 = WF_MAX(h0, 0);
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * st - pad, w1 = WF_MIN(w0 + k, W);
                w0 = WF_MAX(w0, 0);
                int32_t bi = -1;
                float bv = 0.0f;
                if (h0 < h1 && w0 < w1) {
                    bi = h0 * W + w0;
                    bv = x[bi];
                    for (int h = h0; h < h1; h++) {
                        for (int w_ = w0; w_ < w1; w_++) {
                            float v = x[h * W + w_];
                            if (v > bv || isnan(v)) {
                                bv = v;
                                bi = h * W + w_;
                            }
                        }
                    }
                }
                o[oh * OW + ow] = bv;
                a[oh * OW + ow] = bi;
            }
        }
    }
}

/* The backward of a pool whose windows tile the plane (k == stride, no
 * padding): every input belongs to at most one window, so each gets
 * 0 + dout of its window where the argmax points at it, else 0, written
 * once; the same values as zeroing then adding dout at every argmax (0 + g
 * too, so even a -0.0 gradient becomes +0.0 the same way). The 2x2 rows go
 * 16 windows at a time. */
static void maxpool_tiled_backward(float *dinp, const float *dout, const int32_t *argmax,
                                   const struct wf_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, k = s->k;
    const long planes = (long)s->N * s->C;
    for (long pl = 0; pl < planes; pl++) {
        float *d = dinp + pl * H * W;
        for (int oh = 0; oh < OH; oh++) {
            const float *restrict g = dout + (pl * OH + oh) * OW;
            const int32_t *restrict a = argmax + (pl * OH + oh) * OW;
            const int h0 = oh * k;
            int ow0 = 0;
#if defined(__AVX512F__)
            if (k == 2) {
                const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                /* interleave two vectors: lanes 0-7 of each into the low half, 8-15 into the high */
                const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
                const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
                const __m512 zero = _mm512_setzero_ps();
                for (; ow0 < OW; ow0 += 16) {
                    const int n = OW - ow0 < 16 ? OW - ow0 : 16;
                    const __mmask16 mo = (__mmask16)((1u << n) - 1);
                    const __mmask16 mlo = (__mmask16)(n >= 8 ? 0xffff : (1u << 2 * n) - 1);
                    const __mmask16 mhi = (__mmask16)(n <= 8 ? 0 : (1u << 2 * (n - 8)) - 1);
                    const __m512 gv = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(mo, g + ow0));
                    const __m512i av = _mm512_maskz_loadu_epi32(mo, a + ow0);
                    const __m512i i = _mm512_add_epi32(_mm512_set1_epi32(h0 * W + 2 * ow0), even);
                    for (int dy = 0; dy < 2; dy++) {
                        const __m512i i_dy = _mm512_add_epi32(i, _mm512_set1_epi32(dy * W));
                        const __m512 e = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(av, i_dy), gv);
                        const __m512 o = _mm512_maskz_mov_ps(
                            _mm512_cmpeq_epi32_mask(av, _mm512_add_epi32(i_dy, _mm512_set1_epi32(1))), gv);
                        float *row = d + (long)(h0 + dy) * W + 2 * ow0;
                        _mm512_mask_storeu_ps(row, mlo, _mm512_permutex2var_ps(e, lo, o));
                        _mm512_mask_storeu_ps(row + 16, mhi, _mm512_permutex2var_ps(e, hi, o));
                    }
                }
            }
#endif
            for (int ow = ow0; ow < OW; ow++) {
                const float gz = 0.0f + g[ow];
                for (int dy = 0; dy < k; dy++) {
                    float *row = d + (long)(h0 + dy) * W + ow * k;
                    const int base = (h0 + dy) * W + ow * k;
                    for (int dx = 0; dx < k; dx++)
                        row[dx] = a[ow] == base + dx ? gz : 0.0f;
                }
            }
            /* columns right of the last window */
            for (int dy = 0; dy < k && OW * k < W; dy++)
                memset(d + (long)(h0 + dy) * W + OW * k, 0, sizeof(float) * (size_t)(W - OW * k));
        }
        /* rows below the last window */
        if (OH * k < H) memset(d + (long)OH * k * W, 0, sizeof(float) * (size_t)(H - OH * k) * W);
    }
}

static void maxpool2d_backward_serial(float *dinp, const float *dout, const int32_t *argmax,
                                      const struct wf_pool2d_shape *s) {
    if (s->pad == 0 && s->k == s->stride) {
        maxpool_tiled_backward(dinp, dout, argmax, s);
        return;
    }
    const long HW = (long)s->H * s->W, OHW = (long)s->OH * s->OW, planes = (long)s->N * s->C;
    memset(dinp, 0, sizeof(float) * planes * HW);
    for (long pl = 0; pl < planes; pl++) {
        float *d = dinp + pl * HW;
        const float *g = dout + pl * OHW;
        const int32_t *a = argmax + pl * OHW;
        for (long j = 0; j < OHW; j++)
            if (a[j] >= 0) d[a[j]] += g[j];
    }
}

/* count_include_pad: the divisor is always k*k */
static void avgpool2d_forward_serial(float *out, const float *inp, const struct wf_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, k = s->k, st = s->stride, pad = s->pad;
    const long planes = (long)s->N * s->C;
    const float div = (float)(k * k);
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + pl * H * W;
        float *o = out + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * st - pad, h1 = WF_MIN(h0 + k, H);
            h0 = WF_MAX(h0, 0);
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * st - pad, w1 = WF_MIN(w0 + k, W);
                w0 = WF_MAX(w0, 0);
                float sum = 0.0f;
                for (int h = h0; h < h1; h++)
                    for (int w_ = w0; w_ < w1; w_++)
                        sum += x[h * W + w_];
                o[oh * OW + ow] = sum / div;
            }
        }
    }
}

static void avgpool2d_backward_serial(float *dinp, const float *dout, const struct wf_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, k = s->k, st = s->stride, pad = s->pad;
    const long planes = (long)s->N * s->C;
    const float div = (float)(k * k);
    memset(dinp, 0, sizeof(float) * planes * H * W);
    for (long pl = 0; pl < planes; pl++) {
        float *d = dinp + pl * H * W;
        const float *g = dout + pl * OH * OW;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * st - pad, h1 = WF_MIN(h0 + k, H);
            h0 = WF_MAX(h0, 0);
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * st - pad, w1 = WF_MIN(w0 + k, W);
                w0 = WF_MAX(w0, 0);
                float v = g[oh * OW + ow] / div;
                for (int h = h0; h < h1; h++)
                    for (int w_ = w0; w_ < w1; w_++)
                        d[h * W + w_] += v;
            }
        }
    }
}

/* ---- max pooling on NCHW16C: each (sample, block of 16 channels) is a
 * group (H, W, 16); the 16 channels of a window position are one vector,
 * and the selects and comparisons, lane by lane, are those of the NCHW
 * kernels above, in the same window order, so the results are the same
 * bits. The pooled side (output, argmax, their gradient) is NCHW16C too,
 * (OH, OW, 16) per group, or NCHW: then 16 windows at a time, in the order
 * of the output plane, are transposed to or from the 16 planes (16x16 in
 * registers with AVX-512). A pooled group: channel l of output j at
 * l * ls + j * js from its start (NCHW: ls = OH*OW, js = 1; NCHW16C: 1, 16). */

#if defined(__AVX512F__)
/* r[i] lane j <- r[j] lane i */
static inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int a = 0; a < 8; a++) {
        t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    /* r[4b+c], 128-bit lane L: rows 4b..4b+3 of column 4L+c */
    for (int b = 0; b < 4; b++) {
        __m512d t0 = _mm512_castps_pd(t[4 * b]), t1 = _mm512_castps_pd(t[4 * b + 1]);
        __m512d t2 = _mm512_castps_pd(t[4 * b + 2]), t3 = _mm512_castps_pd(t[4 * b + 3]);
        r[4 * b] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        r[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        r[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        r[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    /* then a 4x4 transpose of 128-bit lanes for each c */
    for (int c = 0; c < 4; c++) {
        const __m512 p0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x44), p1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xee);
        const __m512 q0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x44);
        const __m512 q1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xee);
        t[c] = _mm512_shuffle_f32x4(p0, q0, 0x88);
        t[4 + c] = _mm512_shuffle_f32x4(p0, q0, 0xdd);
        t[8 + c] = _mm512_shuffle_f32x4(p1, q1, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(p1, q1, 0xdd);
    }
    for (int i = 0; i < 16; i++)
        r[i] = t[i];
}

static inline __m512 relu16(__m512 v) {
    const __m512 zero = _mm512_setzero_ps();
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), zero);
}

static void maxpool_relu_blk_group(float *out, int32_t *argmax, long ls, const float *x,
                                   const struct wf_pool2d_shape *s) {
    const int W = s->W, OW = s->OW, k = s->k, st = s->stride, OHW = s->OH * s->OW;
    const __m512 zero = _mm512_setzero_ps();
    for (int j0 = 0; j0 < OHW; j0 += 16) {
        const int nw = WF_MIN(16, OHW - j0);
        __m512 b[16], bi[16];
        for (int j = 0; j < 16; j++) {
            if (j >= nw) {
                b[j] = bi[j] = zero;
                continue;
            }
            const int oh = (j0 + j) / OW, ow = (j0 + j) - oh * OW;
            const int h0 = oh * st, w0 = ow * st, i0 = h0 * W + w0;
            __m512 bj = relu16(_mm512_loadu_ps(x + (long)i0 * 16));
            __m512i ij = _mm512_set1_epi32(i0);
            for (int kh = 0; kh < k; kh++) {
                for (int kw = kh == 0 ? 1 : 0; kw < k; kw++) {
                    const int i = (h0 + kh) * W + w0 + kw;
                    const __m512 v = relu16(_mm512_loadu_ps(x + (long)i * 16));
                    const __mmask16 c = _mm512_cmp_ps_mask(v, bj, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
                    bj = _mm512_mask_mov_ps(bj, c, v);
                    ij = _mm512_mask_mov_epi32(ij, c, _mm512_set1_epi32(i));
                }
            }
            const __mmask16 pos = _mm512_cmp_ps_mask(bj, zero, _CMP_GT_OQ);
            ij = _mm512_mask_mov_epi32(_mm512_sub_epi32(_mm512_set1_epi32(-1), ij), pos, ij);
            b[j] = bj;
            bi[j] = _mm512_castsi512_ps(ij);
        }
        if (ls == 1) { /* NCHW16C: window j is one vector */
            for (int j = 0; j < nw; j++) {
                _mm512_storeu_ps(out + (long)(j0 + j) * 16, b[j]);
                _mm512_storeu_ps(argmax + (long)(j0 + j) * 16, bi[j]);
            }
            continue;
        }
        transpose16(b);
        transpose16(bi);
        const __mmask16 m = (__mmask16)((1u << nw) - 1);
        for (int l = 0; l < 16; l++) {
            _mm512_mask_storeu_ps(out + l * ls + j0, m, b[l]);
            _mm512_mask_storeu_ps(argmax + l * ls + j0, m, bi[l]);
        }
    }
}
#else
static void maxpool_relu_blk_group(float *out, int32_t *argmax, long ls, const float *x,
                                   const struct wf_pool2d_shape *s) {
    const int W = s->W, OW = s->OW, k = s->k, st = s->stride, OHW = s->OH * s->OW;
    const long js = ls == 1 ? 16 : 1;
    for (int j = 0; j < OHW; j++) {
        const int oh = j / OW, ow = j - oh * OW;
        const int h0 = oh * st, w0 = ow * st, i0 = h0 * W + w0;
        float b[16];
        int32_t bi[16];
        for (int l = 0; l < 16; l++) {
            b[l] = relu1(x[(long)i0 * 16 + l]);
            bi[l] = i0;
        }
        for (int kh = 0; kh < k; kh++) {
            for (int kw = kh == 0 ? 1 : 0; kw < k; kw++) {
                const int i = (h0 + kh) * W + w0 + kw;
                for (int l = 0; l < 16; l++) {
                    const float r = relu1(x[(long)i * 16 + l]);
                    const int better = (r > b[l]) | (r != r);
                    b[l] = better ? r : b[l];
                    bi[l] = better ? i : bi[l];
                }
            }
        }
        for (int l = 0; l < 16; l++) {
            out[l * ls + j * js] = b[l];
            argmax[l * ls + j * js] = b[l] > 0.0f ? bi[l] : -1 - bi[l];
        }
    }
}
#endif

/* d (H, W, 16) = the gradient of one group from its pooled side (ls as
 * above) */
static void maxpool_blk_group_backward(float *d, const float *dout, const int32_t *argmax, long ls,
                                       const struct wf_pool2d_shape *s) {
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, k = s->k, OHW = OH * OW;
    const long js = ls == 1 ? 16 : 1;
    if (k != s->stride) {
        /* overlapping windows: zero, then add in window order, lane by lane as NCHW planes */
        memset(d, 0, sizeof(float) * (size_t)H * W * 16);
        for (int l = 0; l < 16; l++)
            for (long j = 0; j < OHW; j++) {
                const int32_t a = argmax[l * ls + j * js];
                if (a >= 0) d[(long)a * 16 + l] += dout[l * ls + j * js];
            }
        return;
    }
    /* tiled windows: every input written once, as maxpool_tiled_backward */
#if defined(__AVX512F__)
    const __m512 zero = _mm512_setzero_ps();
    for (int j0 = 0; j0 < OHW; j0 += 16) {
        const int nw = WF_MIN(16, OHW - j0);
        const __mmask16 m = (__mmask16)((1u << nw) - 1);
        __m512 g[16], a[16];
        if (ls == 1) {
            for (int j = 0; j < nw; j++) {
                g[j] = _mm512_add_ps(zero, _mm512_loadu_ps(dout + (long)(j0 + j) * 16));
                a[j] = _mm512_loadu_ps(argmax + (long)(j0 + j) * 16);
            }
        } else {
            for (int l = 0; l < 16; l++) {
                g[l] = _mm512_add_ps(zero, _mm512_maskz_loadu_ps(m, dout + l * ls + j0));
                a[l] = _mm512_maskz_loadu_ps(m, argmax + l * ls + j0);
            }
            transpose16(g);
            transpose16(a);
        }
        for (int j = 0; j < nw; j++) {
            const int oh = (j0 + j) / OW, ow = (j0 + j) - oh * OW;
            const __m512i aj = _mm512_castps_si512(a[j]);
            for (int kh = 0; kh < k; kh++) {
                const int i0 = (oh * k + kh) * W + ow * k;
                for (int kw = 0; kw < k; kw++)
                    _mm512_storeu_ps(
                        d + (long)(i0 + kw) * 16,
                        _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(aj, _mm512_set1_epi32(i0 + kw)), g[j]));
            }
        }
    }
#else
    for (int j = 0; j < OHW; j++) {
        const int oh = j / OW, ow = j - oh * OW;
        for (int kh = 0; kh < k; kh++) {
            const int i0 = (oh * k + kh) * W + ow * k;
            for (int kw = 0; kw < k; kw++)
                for (int l = 0; l < 16; l++)
                    d[(long)(i0 + kw) * 16 + l] =
                        argmax[l * ls + j * js] == i0 + kw ? 0.0f + dout[l * ls + j * js] : 0.0f;
        }
    }
#endif
    /* columns right of the last window */
    for (int h = 0; h < OH * k && OW * k < W; h++)
        memset(d + ((long)h * W + OW * k) * 16, 0, sizeof(float) * (size_t)(W - OW * k) * 16);
    /* rows below the last window */
    if (OH * k < H) memset(d + (long)OH * k * W * 16, 0, sizeof(float) * (size_t)(H - OH * k) * W * 16);
}

/* ---- pooling over the pool's threads: planes are independent, so each
 * thread takes a contiguous range of (n, c) planes; same bits for any count */

enum { POOL_MAX_F, POOL_MAX_RELU_F, POOL_MAX_B, POOL_AVG_F, POOL_AVG_B, POOL_MAX_RELU_F_BLK, POOL_MAX_B_BLK };

struct pool_job {
    int kind;
    int pooled_blk; /* the NCHW16C jobs: the pooled side in NCHW16C too */
    const struct wf_pool2d_shape *s;
    float *out;
    int32_t *argmax;
    const float *in;
    const int32_t *cargmax;
};

/* the NCHW16C jobs: [b, e) are groups (sample, block of 16 channels) */
static void pool_chunk_blk(const struct pool_job *j, long b, long e) {
    const struct wf_pool2d_shape *s = j->s;
    const long HW = (long)s->H * s->W, OHW = (long)s->OH * s->OW, nb = s->C / 16;
    for (long gi = b; gi < e; gi++) {
        /* the pooled side: NCHW16C, or NCHW from the plane of the group's first channel */
        const long po = j->pooled_blk ? gi * OHW * 16 : ((gi / nb) * s->C + (gi % nb) * 16) * OHW;
        const long ls = j->pooled_blk ? 1 : OHW;
        if (j->kind == POOL_MAX_RELU_F_BLK)
            maxpool_relu_blk_group(j->out + po, j->argmax + po, ls, j->in + gi * HW * 16, s);
        else
            maxpool_blk_group_backward(j->out + gi * HW * 16, j->in + po, j->cargmax + po, ls, s);
    }
}

static void pool_chunk(void *ctx, long b, long e) {
    const struct pool_job *j = ctx;
    if (j->kind >= POOL_MAX_RELU_F_BLK) {
        pool_chunk_blk(j, b, e);
        return;
    }
    struct wf_pool2d_shape s2 = *j->s;
    long HW = (long)s2.H * s2.W, OHW = (long)s2.OH * s2.OW;
    s2.N = 1;
    s2.C = (int)(e - b);
    switch (j->kind) {
    case POOL_MAX_F: maxpool2d_forward_serial(j->out + b * OHW, j->argmax + b * OHW, j->in + b * HW, &s2); break;
    case POOL_MAX_RELU_F: maxpool_unpadded(j->out + b * OHW, j->argmax + b * OHW, j->in + b * HW, &s2, 1); break;
    case POOL_MAX_B: maxpool2d_backward_serial(j->out + b * HW, j->in + b * OHW, j->cargmax + b * OHW, &s2); break;
    case POOL_AVG_F: avgpool2d_forward_serial(j->out + b * OHW, j->in + b * HW, &s2); break;
    case POOL_AVG_B: avgpool2d_backward_serial(j->out + b * HW, j->in + b * OHW, &s2); break;
    }
}

static void pool_run(const struct pool_job *j) {
    long planes = (long)j->s->N * j->s->C, hw = (long)j->s->H * j->s->W;
    if (j->kind >= POOL_MAX_RELU_F_BLK) { /* groups of 16 planes */
        planes /= 16;
        hw *= 16;
    }
    wf_parallel_for(planes, WF_MAX(1, 32768 / WF_MAX(hw, 1)), pool_chunk, (void *)j);
}

void wf_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s) {
    struct pool_job j = {POOL_MAX_F, 0, s, out, argmax, inp, NULL};
    pool_run(&j);
}

void wf_maxpool2d_relu_forward(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s) {
    wf_maxpool2d_relu_forward_ex(out, argmax, inp, s, WF_LAYOUT_NCHW, WF_LAYOUT_NCHW);
}

void wf_maxpool2d_relu_forward_ex(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s,
                                  int inp_layout, int out_layout) {
    const int ib = inp_layout == WF_LAYOUT_NCHW16C;
    struct pool_job j = {
        ib ? POOL_MAX_RELU_F_BLK : POOL_MAX_RELU_F, ib && out_layout == WF_LAYOUT_NCHW16C, s, out, argmax, inp, NULL};
    pool_run(&j);
}

void wf_maxpool2d_backward_ex(float *dinp, const float *dout, const int32_t *argmax, const struct wf_pool2d_shape *s,
                              int dinp_layout, int dout_layout) {
    const int ib = dinp_layout == WF_LAYOUT_NCHW16C;
    struct pool_job j = {
        ib ? POOL_MAX_B_BLK : POOL_MAX_B, ib && dout_layout == WF_LAYOUT_NCHW16C, s, dinp, NULL, dout, argmax};
    pool_run(&j);
}

void wf_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, const struct wf_pool2d_shape *s) {
    struct pool_job j = {POOL_MAX_B, 0, s, dinp, NULL, dout, argmax};
    pool_run(&j);
}

void wf_avgpool2d_forward(float *out, const float *inp, const struct wf_pool2d_shape *s) {
    struct pool_job j = {POOL_AVG_F, 0, s, out, NULL, inp, NULL};
    pool_run(&j);
}

void wf_avgpool2d_backward(float *dinp, const float *dout, const struct wf_pool2d_shape *s) {
    struct pool_job j = {POOL_AVG_B, 0, s, dinp, NULL, dout, NULL};
    pool_run(&j);
}
