/*
 * weft tensor layer: compute kernels, forward and backward.
 *
 * Conventions (llm.c style):
 *  - raw float32 pointers, row-major, NCHW for images; the shape of every
 *    argument is in the comment above the function;
 *  - backward kernels OVERWRITE their gradient outputs (=, never +=); the
 *    graph layer adds fan-out contributions itself. A gradient output passed
 *    as NULL is not computed (e.g. the gradient of the input images);
 *  - kernels never allocate; scratch memory is passed in, sized by the
 *    matching *_workspace() function;
 *  - kernels are deterministic for a given BLAS thread count: every
 *    reduction runs in a fixed order (DESIGN.md §4 rule 2);
 *  - GEMM goes through OpenBLAS (cblas_sgemm); convolutions through oneDNN
 *    where it measured faster (loaded at run time; WEFT_CONV=blas|dnnl|auto
 *    picks the path, see conv.c), else im2col + GEMM;
 *  - wf_blas_set_threads sets the thread count of all three: OpenBLAS,
 *    oneDNN's OpenMP and weft's own pool, which runs long element-wise
 *    loops (ReLU, pooling, optimizer updates) in contiguous chunks;
 *  - transpose has no backward of its own: it is wf_transpose_forward with
 *    the two swapped axes exchanged.
 */
#ifndef WEFT_KERNELS_H
#define WEFT_KERNELS_H

#include <stdint.h>

/* Sets the BLAS thread count for this process (openblas_set_num_threads). */
void wf_blas_set_threads(int n);
int wf_blas_get_threads(void);

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; ta/tb: 1 = transpose */
void wf_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
              float beta, float *C, int ldc);

/* ---- dense ---- */
/* out (B,OC) = inp (B,C) @ w (OC,C)^T + bias (OC) [bias may be NULL] */
void wf_linear_forward(float *out, const float *inp, const float *w, const float *bias, int B, int C, int OC);
/* dinp (B,C) [nullable], dw (OC,C), dbias (OC) [nullable] from dout (B,OC) */
void wf_linear_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        int B, int C, int OC);

/* batched matmul: out (nb,M,N) = a (nb,M,K) @ b (nb,K,N); if b_shared, b is (K,N) for every batch */
void wf_matmul_forward(float *out, const float *a, const float *b, int nb, int M, int K, int N, int b_shared);
/* da (nb,M,K) [nullable], db (nb,K,N) or (K,N) if b_shared [nullable] */
void wf_matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b, int nb, int M, int K,
                        int N, int b_shared);

/* ---- element-wise; b broadcasts over leading dims: a,out have n elements, b has m, n % m == 0 ---- */
void wf_add_forward(float *out, const float *a, const float *b, long n, long m);
/* da (n) [nullable] = dout; db (m) [nullable] = sum of dout over the leading n/m rows */
void wf_add_backward(float *da, float *db, const float *dout, long n, long m);
void wf_mul_forward(float *out, const float *a, const float *b, long n, long m);
void wf_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b, long n, long m);

/* activations: out (n) = f(inp); backward takes what it needs */
void wf_relu_forward(float *out, const float *inp, long n);
void wf_relu_backward(float *dinp, const float *dout, const float *out, long n);
void wf_gelu_forward(float *out, const float *inp, long n); /* exact erf form, as torch.nn.GELU() */
void wf_gelu_backward(float *dinp, const float *dout, const float *inp, long n);
void wf_tanh_forward(float *out, const float *inp, long n);
void wf_tanh_backward(float *dinp, const float *dout, const float *out, long n);
void wf_sigmoid_forward(float *out, const float *inp, long n);
void wf_sigmoid_backward(float *dinp, const float *dout, const float *out, long n);

/* ---- softmax family, over the last axis of (R,V) ---- */
void wf_softmax_forward(float *out, const float *inp, int R, int V);
void wf_softmax_backward(float *dinp, const float *dout, const float *out, int R, int V);
void wf_log_softmax_forward(float *out, const float *inp, int R, int V);
void wf_log_softmax_backward(float *dinp, const float *dout, const float *out, int R, int V);

/* Fused, numerically stable softmax + cross-entropy.
 * loss (scalar) = scale * sum_b -log softmax(logits[b])[targets[b]]
 * probs (B,V) is saved for the backward. Returns the index of the first
 * target outside [0,V), or -1 if all are valid (then *loss is set). */
int wf_softmax_xent_forward(float *loss, float *probs, const float *logits, const int32_t *targets, int B, int V,
                            float scale);
/* dlogits (B,V) = dloss * scale * (probs - onehot(targets)) */
void wf_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *targets, int B, int V, float scale,
                              float dloss);
/* The same where rows whose target is `ignore` count for nothing: no loss, a zero gradient (the
 * caller's scale is 1 / the rows that count); their target need not be a class. */
int wf_softmax_xent_forward_ign(float *loss, float *probs, const float *logits, const int32_t *targets, int B, int V,
                                float scale, int32_t ignore);
void wf_softmax_xent_backward_ign(float *dlogits, const float *probs, const int32_t *targets, int B, int V, float scale,
                                  float dloss, int32_t ignore);
/* number of rows whose argmax equals the target (ties: lowest index) */
int wf_argmax_correct(const float *logits, const int32_t *targets, int B, int V);

/* ---- convolution and pooling, NCHW ---- */
struct wf_conv2d_shape {
    int N, C, H, W;  /* input */
    int OC, KH, KW;  /* filters: w is (OC, C, KH, KW) */
    int stride, pad; /* same for both axes */
    int OH, OW;      /* output, (H + 2*pad - KH)/stride + 1 */
};
void wf_conv2d_shape_init(struct wf_conv2d_shape *s, int N, int C, int H, int W, int OC, int KH, int KW, int stride,
                          int pad);
long wf_conv2d_workspace(const struct wf_conv2d_shape *s); /* floats of scratch for forward and backward */

/* Layouts of an image tensor: NCHW, or NCHW16C = (N, C/16, H, W, 16), channels in blocks of 16 innermost
 * (oneDNN's nChw16c; C a multiple of 16, so it takes as many floats as NCHW). Between a convolution and a
 * fused relu + max pool, activations and their gradients go over in NCHW16C (see the executor): oneDNN
 * then reorders none of them. */
enum wf_layout { WF_LAYOUT_NCHW = 0, WF_LAYOUT_NCHW16C = 1 };
/* 1 if s's output / input is best handed over in NCHW16C: OC / C a multiple of 16, and oneDNN runs the ops
 * that touch it (wf_conv2d_*_ex take NCHW16C whenever the channels are a multiple of 16, converting for
 * the BLAS backend) */
int wf_conv2d_blocked_ok(const struct wf_conv2d_shape *s);
int wf_conv2d_blocked_in_ok(const struct wf_conv2d_shape *s);
/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w) + bias (OC) [nullable] */
void wf_conv2d_forward(float *out, const float *inp, const float *w, const float *bias, const struct wf_conv2d_shape *s,
                       float *work);
/* dinp [nullable], dw, dbias [nullable] */
void wf_conv2d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        const struct wf_conv2d_shape *s, float *work);
/* the same with inp, dinp in in_layout and out, dout in out_layout (enum wf_layout); dout NCHW16C may be
 * overwritten */
void wf_conv2d_forward_ex(float *out, const float *inp, const float *w, const float *bias,
                          const struct wf_conv2d_shape *s, float *work, int in_layout, int out_layout);
void wf_conv2d_backward_ex(float *dinp, float *dw, float *dbias, float *dout, const float *inp, const float *w,
                           const struct wf_conv2d_shape *s, float *work, int in_layout, int out_layout);

struct wf_pool2d_shape {
    int N, C, H, W;
    int k, stride, pad;
    int OH, OW; /* floor((H + 2*pad - k)/stride) + 1 */
};
void wf_pool2d_shape_init(struct wf_pool2d_shape *s, int N, int C, int H, int W, int k, int stride, int pad);
/* out (N,C,OH,OW); argmax (N,C,OH,OW) holds the flat input index h*W+w of each max (first max wins) */
void wf_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s);
void wf_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, const struct wf_pool2d_shape *s);
/* relu then max pooling, fused (pad must be 0): out = maxpool2d(relu(inp)) bit for bit, without the relu'd
 * tensor. argmax as wf_maxpool2d_forward's, except that a window whose maximum is not > 0 (0, or NaN) records
 * -1 - index, so wf_maxpool2d_backward(dinp, dout, argmax) gives it no gradient: dinp is then the gradient of
 * inp, relu's input, bit for bit what relu's backward of the unfused pair gives. */
void wf_maxpool2d_relu_forward(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s);
/* the same with inp, dinp in inp_layout and out, argmax, dout in out_layout (enum wf_layout; out_layout
 * NCHW16C only with inp_layout NCHW16C, else it is taken as NCHW) */
void wf_maxpool2d_relu_forward_ex(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s,
                                  int inp_layout, int out_layout);
void wf_maxpool2d_backward_ex(float *dinp, const float *dout, const int32_t *argmax, const struct wf_pool2d_shape *s,
                              int dinp_layout, int dout_layout);
/* average with count_include_pad = true (PyTorch's default) */
void wf_avgpool2d_forward(float *out, const float *inp, const struct wf_pool2d_shape *s);
void wf_avgpool2d_backward(float *dinp, const float *dout, const struct wf_pool2d_shape *s);

/* ---- normalization, dropout, embedding ---- */
/* out (R,C) = (inp - mean) * rstd * w + b over the last axis; saves mean (R), rstd (R) */
void wf_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int R,
                          int C, float eps);
void wf_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           const float *mean, const float *rstd, int R, int C);

/* Inverted dropout: element i is kept iff wf_rng_uniform_at(key, stream, i) >= p;
 * kept elements are scaled by 1/(1-p). mask (n) holds the multiplier (0 or 1/(1-p)). */
void wf_dropout_forward(float *out, float *mask, const float *inp, long n, float p, uint64_t key, uint64_t stream);
void wf_dropout_backward(float *dinp, const float *dout, const float *mask, long n);

/* out (B,D) = table[ids[b]]; returns the index of the first id outside [0,V), or -1 */
int wf_embedding_forward(float *out, const int32_t *ids, const float *table, int B, int V, int D);
/* dtable (V,D) = sum of dout rows per id, summed in increasing b (deterministic) */
void wf_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int B, int V, int D);

/* ---- shape ops. A tensor is viewed as (outer, dim, inner) around the axis ---- */
/* concat of n inputs along an axis: input i is (outer, dims[i], inner) */
void wf_concat_forward(float *out, const float *const *ins, const int *dims, int n, long outer, long inner);
void wf_concat_backward(float *const *dins, const float *dout, const int *dims, int n, long outer, long inner);
/* out (outer, len, inner) = inp (outer, dim, inner)[:, start:start+len, :] */
void wf_slice_forward(float *out, const float *inp, long outer, int dim, long inner, int start, int len);
void wf_slice_backward(float *dinp, const float *dout, long outer, int dim, long inner, int start, int len);
/* swaps two axes: inp has shape (d0,d1,d2,d3,d4) after the two axes are moved into
 * positions 1 and 3, i.e. inp (A, X, M, Y, Z) -> out (A, Y, M, X, Z) */
void wf_transpose_forward(float *out, const float *inp, long A, long X, long M, long Y, long Z);
/* sum / mean over an axis: inp (outer, dim, inner) -> out (outer, inner) */
void wf_sum_forward(float *out, const float *inp, long outer, int dim, long inner);
void wf_sum_backward(float *dinp, const float *dout, long outer, int dim, long inner);
void wf_mean_forward(float *out, const float *inp, long outer, int dim, long inner);
void wf_mean_backward(float *dinp, const float *dout, long outer, int dim, long inner);

/* ---- recurrent cells, one time step (src/tensor/rnn.c; docs/recurrent.md) ----
 * PyTorch's formulas and gate order (nn.RNNCell, nn.GRUCell, nn.LSTMCell). For G gates of H units:
 * x (B,C), w_ih (G*H,C), w_hh (G*H,H), b_ih (G*H), b_hh (G*H); G = 1 (rnn_tanh), 3 (gru: r, z, n),
 * 4 (lstm: i, f, g, o). Only the B rows given are read and written (a caller may pass a live prefix of a
 * larger batch); weight and bias gradients are sums over those rows. Every gradient output is nullable.
 * work holds *_workspace(B, C, H) floats (forward and backward). A row's results do not depend on the other
 * rows of the call (the GEMMs run ROW_TILE rows at a time, rnn.c), so a skip region's packed rows give the
 * bits of the same rows computed in a full batch. */
long wf_rnn_tanh_workspace(int B, int C, int H);
long wf_gru_workspace(int B, int C, int H);
long wf_lstm_workspace(int B, int C, int H);
/* h1 (B,H) = tanh(x w_ih^T + b_ih + h0 w_hh^T + b_hh), h0 (B,H) */
void wf_rnn_tanh_forward(float *h1, const float *x, const float *h0, const float *w_ih, const float *w_hh,
                         const float *b_ih, const float *b_hh, int B, int C, int H, float *work);
/* dx (B,C), dh0 (B,H), dw_ih, dw_hh, db_ih, db_hh from dh1 (B,H) and the output h1 */
void wf_rnn_tanh_backward(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                          const float *dh1, const float *x, const float *h0, const float *w_ih, const float *w_hh,
                          const float *h1, int B, int C, int H, float *work);
/* h1 (B,H) = (1 - z) * n + z * h0; saves gates (B,3H) = the activated r, z, n and hn (B,H) = h0 w_hn^T + b_hn */
void wf_gru_forward(float *h1, float *gates, float *hn, const float *x, const float *h0, const float *w_ih,
                    const float *w_hh, const float *b_ih, const float *b_hh, int B, int C, int H, float *work);
void wf_gru_backward(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, const float *dh1,
                     const float *x, const float *h0, const float *w_ih, const float *w_hh, const float *gates,
                     const float *hn, int B, int C, int H, float *work);
/* The state s = [h | c] per row, (B,2H): s1 = [o * tanh(c1) | c1], c1 = f * c0 + i * g; saves gates (B,4H) =
 * the activated i, f, g, o. The backward reads s1 (for tanh(c1)) and writes ds0 = [dh0 | dc0]. */
void wf_lstm_forward(float *s1, float *gates, const float *x, const float *s0, const float *w_ih, const float *w_hh,
                     const float *b_ih, const float *b_hh, int B, int C, int H, float *work);
void wf_lstm_backward(float *dx, float *ds0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh, const float *ds1,
                      const float *x, const float *s0, const float *w_ih, const float *w_hh, const float *gates,
                      const float *s1, int B, int C, int H, float *work);

/* ---- optimizers, element-wise over one parameter tensor; formulas as PyTorch's ---- */
/* SGD: g += wd*p; buf = (step==1 ? g : momentum*buf + g); g = nesterov ? g + momentum*buf : buf; p -= lr*g
 * (momentum == 0: buf unused, may be NULL). step counts from 1. */
void wf_sgd_update(float *p, const float *g, float *buf, long n, float lr, float momentum, float wd, int nesterov,
                   long step);
/* Adam (decoupled = 0: g += wd*p) / AdamW (decoupled = 1: p *= 1 - lr*wd), step from 1 */
void wf_adam_update(float *p, const float *g, float *m, float *v, long n, float lr, float beta1, float beta2, float eps,
                    float wd, int decoupled, long step);
/* sum of squares in double, fixed order */
double wf_sumsq(const float *x, long n);
void wf_scale(float *x, long n, float s);

/* ---- losses over n elements, reduced to one scalar (src/tensor/loss.c) ----
 * The forward sums in double in a fixed order on the calling thread, so the
 * loss has the same bits on every run and thread count; scale = 1/n gives the
 * mean (torch's reduction="mean"). Gradient outputs may be NULL (skipped). */
/* Mean squared error: loss[0] = scale * sum_i (a_i - b_i)^2 (scale = 1/n gives the mean,
 * as torch.nn.functional.mse_loss). a, b, da, db are (n); da = dloss * scale * 2 (a - b), db = -da. */
void wf_mse_forward(float *loss, const float *a, const float *b, long n, float scale);
void wf_mse_backward(float *da, float *db, const float *a, const float *b, long n, float scale, float dloss);
/* Binary cross-entropy on logits x (n) against targets t (n), numerically stable, as torch's
 * binary_cross_entropy_with_logits: loss[0] = scale * sum_i (max(x,0) - x*t + log1p(exp(-|x|)));
 * dx (n) = dloss*scale*(sigmoid(x) - t), dt (n) = dloss*scale*(-x). */
void wf_bce_logits_forward(float *loss, const float *x, const float *t, long n, float scale);
void wf_bce_logits_backward(float *dx, float *dt, const float *x, const float *t, long n, float scale, float dloss);

#endif
