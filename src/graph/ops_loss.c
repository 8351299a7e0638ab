/*
 * graph layer, op table: losses and metrics — cross_entropy (fused softmax
 * + cross-entropy, mean over the rows; `ignore=ID`: rows labelled ID, such
 * as padding, count for nothing), mse and bce_with_logits (means over
 * the elements), accuracy (share of rows whose argmax is the label; no
 * gradient). A loss is a scalar like any other: the backward is seeded at
 * whatever scalar the model outputs (autodiff.c).
 */
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define F32 WF_DT(WF_F32)
#define I32 WF_DT(WF_I32)

/* (logits [..., V], labels [...]) with one label per row */
static int classify_args(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0], *y = &c->in[1];
    char s1[96], s2[96];
    int64_t V = x->shape[x->ndim - 1];
    if (y->numel != x->numel / V)
        return wf_infer_err(c, "labels %s do not match logits %s (want one label per row)", wf_infer_shape(c, 1, s1),
                            wf_infer_shape(c, 0, s2));
    return WF_OK;
}

static int xent_infer(struct wf_infer *c) {
    int rc = classify_args(c);
    if (rc < 0) return rc;
    const struct wf_value *x = &c->in[0];
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, 0, NULL)) < 0) return rc;
    if ((rc = wf_infer_out(c, "probs", WF_V_AUX, WF_F32, x->ndim, x->shape)) < 0) return rc;
    c->g->n[c->node].flops = (double)x->numel * 6;
    return WF_OK;
}

/* `ignore`: the label of rows that count for nothing (padding); the loss is the mean over the others */
static int32_t xent_ignore(const struct wf_run *r) {
    return r->n->ai[0] == WF_ATTR_UNSET ? INT32_MIN : (int32_t)r->n->ai[0];
}

static float xent_scale(const struct wf_run *r, long R) {
    int32_t ign = xent_ignore(r);
    long rows = R;
    if (ign != INT32_MIN) {
        const int32_t *t = INI(r, 1);
        rows = 0;
        for (long i = 0; i < R; i++)
            rows += t[i] != ign;
    }
    return rows ? (float)(1.0 / (double)rows) : 0.0f;
}

static int xent_fwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    const struct wf_value *x = XV(r, 0);
    long R = wf_ops_rows(x), V = wf_ops_last(x);
    const int32_t *t = INI(r, 1);
    int bad = wf_softmax_xent_forward_ign(OUT(r, 0), OUT(r, 1), IN(r, 0), t, (int)R, (int)V, xent_scale(r, R),
                                          xent_ignore(r));
    if (bad >= 0)
        return wf_error(WF_ERR_RANGE, "%s:%d:%d: layer '%s': label %d of row %d is outside [0, %ld)", r->g->path,
                        n->line, n->col, n->name, (int)t[bad], bad, V);
    return WF_OK;
}

static int xent_bwd(const struct wf_run *r) {
    const struct wf_value *x = XV(r, 0);
    long R = wf_ops_rows(x), V = wf_ops_last(x);
    wf_softmax_xent_backward_ign(DIN(r, 0), OUT(r, 1), INI(r, 1), (int)R, (int)V, xent_scale(r, R), DOUT(r)[0],
                                 xent_ignore(r));
    return WF_OK;
}

const struct wf_op_def wf_opdef_cross_entropy = {
    .name = "cross_entropy",
    .min_in = 2,
    .max_in = 2,
    .arg = {{F32, 1, 0}, {I32, 0, 0}},
    .n_attr = 1,
    .attr = {{"ignore", WF_AT_INT, 0, WF_ATTR_UNSET}},
    .flags = WF_OPF_CLASSIFY,
    .no_grad = 2,
    .bwd_in = 2,
    .bwd_out = 2,
    .infer = xent_infer,
    .forward = xent_fwd,
    .backward = xent_bwd,
};

/* ---- mse, bce_with_logits: two tensors of one shape -> the mean of an elementwise loss ---- */

static int pair_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0], *y = &c->in[1];
    char s1[96], s2[96];
    int ok = x->ndim == y->ndim;
    for (int i = 0; ok && i < x->ndim; i++)
        ok = x->shape[i] == y->shape[i];
    if (!ok)
        return wf_infer_err(c, "arguments must have the same shape, got %s and %s", wf_infer_shape(c, 0, s1),
                            wf_infer_shape(c, 1, s2));
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, 0, NULL);
    if (rc < 0) return rc;
    c->g->n[c->node].flops = (double)x->numel * 3;
    return WF_OK;
}

static float inv_n(const struct wf_run *r) { return (float)(1.0 / (double)XV(r, 0)->numel); }

static int mse_fwd(const struct wf_run *r) {
    wf_mse_forward(OUT(r, 0), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, inv_n(r));
    return WF_OK;
}

static int mse_bwd(const struct wf_run *r) {
    wf_mse_backward(DIN(r, 0), DIN(r, 1), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, inv_n(r), DOUT(r)[0]);
    return WF_OK;
}

static int bce_fwd(const struct wf_run *r) {
    wf_bce_logits_forward(OUT(r, 0), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, inv_n(r));
    return WF_OK;
}

static int bce_bwd(const struct wf_run *r) {
    wf_bce_logits_backward(DIN(r, 0), DIN(r, 1), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, inv_n(r), DOUT(r)[0]);
    return WF_OK;
}

const struct wf_op_def wf_opdef_mse = {
    .name = "mse",
    .min_in = 2,
    .max_in = 2,
    .bwd_in = 3,
    .infer = pair_infer,
    .forward = mse_fwd,
    .backward = mse_bwd,
};

const struct wf_op_def wf_opdef_bce_logits = {
    .name = "bce_with_logits",
    .min_in = 2,
    .max_in = 2,
    .bwd_in = 3,
    .infer = pair_infer,
    .forward = bce_fwd,
    .backward = bce_bwd,
};

/* ---- accuracy: a metric, no gradient ---- */

static int acc_infer(struct wf_infer *c) {
    int rc = classify_args(c);
    if (rc < 0) return rc;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, 0, NULL)) < 0) return rc;
    c->g->n[c->node].flops = (double)c->in[0].numel;
    return WF_OK;
}

static int acc_fwd(const struct wf_run *r) {
    const struct wf_value *x = XV(r, 0);
    long R = wf_ops_rows(x), V = wf_ops_last(x);
    int k = wf_argmax_correct(IN(r, 0), INI(r, 1), (int)R, (int)V);
    OUT(r, 0)[0] = (float)((double)k / (double)R);
    return WF_OK;
}

const struct wf_op_def wf_opdef_accuracy = {
    .name = "accuracy",
    .min_in = 2,
    .max_in = 2,
    .arg = {{F32, 1, 0}, {I32, 0, 0}},
    .flags = WF_OPF_METRIC,
    .no_grad = 3,
    .infer = acc_infer,
    .forward = acc_fwd,
};
