/*
 * tensor layer, private: the two convolution backends behind the public
 * wf_conv2d_* kernels. conv.c owns the API, the im2col + OpenBLAS backend
 * and the choice of backend per op; conv_dnnl.c wraps oneDNN.
 *
 * The backend is a process setting: WEFT_CONV=blas|dnnl|auto (default
 * auto), read on first use; tests switch it with wf_conv_backend_set().
 * "auto" picks per op and per shape by a fixed rule (see conv.c), so the
 * choice, like the results, depends only on the shape and thread count.
 */
#ifndef WEFT_TENSOR_CONV_INT_H
#define WEFT_TENSOR_CONV_INT_H

#include "weft/kernels.h"

enum wf_conv_backend { WF_CONV_AUTO = 0, WF_CONV_BLAS = 1, WF_CONV_DNNL = 2 };

/* ops, as a bit mask */
enum { WF_CONV_OP_FWD = 1, WF_CONV_OP_BWD_DATA = 2, WF_CONV_OP_BWD_WEIGHTS = 4, WF_CONV_OP_ALL = 7 };

void wf_conv_backend_set(enum wf_conv_backend b);
enum wf_conv_backend wf_conv_backend_get(void);
/* the ops of shape s that run on oneDNN under the current backend */
int wf_conv_dnnl_ops(const struct wf_conv2d_shape *s);

/* ---- conv_dnnl.c ----
 * Primitives are created on first use of a (shape, thread count) and kept
 * for the life of the process; a call never creates one again. Calls
 * return 0, or -1 when oneDNN cannot run this shape here (libdnnl.so.2
 * missing, creation failed, or the workspace returned for the shape is
 * smaller than this thread count needs), and the caller then runs the BLAS
 * backend: the same -1 every time for the same shape and thread count, so
 * the results stay reproducible. */

/* floats of scratch for the oneDNN ops in mask (0 if it cannot run them);
 * records the size so that calls can check their work is big enough */
long wf_conv_dnnl_workspace(const struct wf_conv2d_shape *s, int ops);
/* src_blk: inp / dinp in nChw16c (C a multiple of 16); dst_blk: out / dout
 * in nChw16c (OC a multiple of 16) */
int wf_conv_dnnl_forward(float *out, const float *inp, const float *w, const float *bias,
                         const struct wf_conv2d_shape *s, float *work, int src_blk, int dst_blk);
/* dinp (N,C,H,W) = conv_transpose(dout, w) */
int wf_conv_dnnl_backward_data(float *dinp, const float *dout, const float *w, const struct wf_conv2d_shape *s,
                               float *work, int src_blk, int dst_blk);
/* dw (OC,C,KH,KW), dbias (OC) [nullable] */
int wf_conv_dnnl_backward_weights(float *dw, float *dbias, const float *dout, const float *inp,
                                  const struct wf_conv2d_shape *s, float *work, int src_blk, int dst_blk);
/* oneDNN's threads (OpenMP) for the calling thread, as wf_blas_set_threads */
void wf_conv_dnnl_set_threads(int n);
/* 1 if libdnnl.so.2 is loaded (loading it if need be), else 0 */
int wf_conv_dnnl_available(void);
/* the implementation oneDNN chose for op (one bit of the mask), or "" */
const char *wf_conv_dnnl_impl(const struct wf_conv2d_shape *s, int op);

#endif
