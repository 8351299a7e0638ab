/*
 * graph layer, op table: dense layers, elementwise ops, normalization,
 * dropout and embedding — shape inference, forward, backward and cost of
 * each, on the kernels of the tensor layer.
 */
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define F32 WF_DT(WF_F32)
#define I32 WF_DT(WF_I32)

/* ---- shared ---- */

void wf_ops_split_axis(const struct wf_value *v, int a, long *outer, int *dim, long *inner) {
    long o = 1, in = 1;
    for (int i = 0; i < a; i++)
        o *= (long)v->shape[i];
    for (int i = a + 1; i < v->ndim; i++)
        in *= (long)v->shape[i];
    *outer = o;
    *dim = (int)v->shape[a];
    *inner = in;
}

int wf_ops_axis(int64_t a, int nd) {
    int64_t r = a < 0 ? a + nd : a;
    return r >= 0 && r < nd ? (int)r : -1;
}

int wf_ops_same_shape(struct wf_infer *c, double per) {
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, c->in[0].ndim, c->in[0].shape);
    if (rc < 0) return rc;
    c->g->n[c->node].flops = (double)c->in[0].numel * per;
    return WF_OK;
}

/* ---- linear ---- */

static int linear_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0];
    struct wf_node *n = &c->g->n[c->node];
    int64_t C = x->shape[x->ndim - 1], OC = n->ai[0];
    if (OC <= 0) return wf_infer_err(c, "out must be positive, got %lld", (long long)OC);
    int64_t ws[2] = {OC, C}, sh[WF_MAX_DIMS];
    int rc, bias = (int)n->ai[1];
    if ((rc = wf_infer_param(c, "weight", 2, ws, WF_INIT_FANIN_UNIFORM, (double)C)) < 0) return rc;
    if (bias && (rc = wf_infer_param(c, "bias", 1, &OC, WF_INIT_FANIN_UNIFORM, (double)C)) < 0) return rc;
    memcpy(sh, x->shape, sizeof sh);
    sh[x->ndim - 1] = OC;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, x->ndim, sh)) < 0) return rc;
    c->g->n[c->node].flops = 2.0 * (double)(x->numel / C) * (double)C * (double)OC;
    return WF_OK;
}

static int linear_fwd(const struct wf_run *r) {
    const struct wf_value *x = XV(r, 0), *y = YV(r, 0);
    long last = wf_ops_last(x);
    wf_linear_forward(OUT(r, 0), IN(r, 0), IN(r, 1), r->n->n_in > 2 ? IN(r, 2) : NULL, (int)(x->numel / last),
                      (int)last, (int)y->shape[y->ndim - 1]);
    return WF_OK;
}

static int linear_bwd(const struct wf_run *r) {
    const struct wf_value *x = XV(r, 0), *y = YV(r, 0);
    long last = wf_ops_last(x);
    wf_linear_backward(DIN(r, 0), DIN(r, 1), r->n->n_in > 2 ? DIN(r, 2) : NULL, DOUT(r), IN(r, 0), IN(r, 1),
                       (int)(x->numel / last), (int)last, (int)y->shape[y->ndim - 1]);
    return WF_OK;
}

const struct wf_op_def wf_opdef_linear = {
    .name = "linear",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 1, 0}},
    .n_attr = 2,
    .attr = {{"out", WF_AT_INT, 1, 0}, {"bias", WF_AT_BOOL, 0, 1}},
    .flags = WF_OPF_GEMM | WF_OPF_ROWWISE,
    .bwd_in = 3,
    .infer = linear_infer,
    .forward = linear_fwd,
    .backward = linear_bwd,
};

/* ---- matmul ---- */

static int matmul_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0], *y = &c->in[1];
    char s1[96], s2[96];
    int nd = x->ndim;
    int64_t K = x->shape[nd - 1], K2 = y->shape[y->ndim - 2], sh[WF_MAX_DIMS];
    if (K != K2)
        return wf_infer_err(c, "inner dimensions differ: %s @ %s", wf_infer_shape(c, 0, s1), wf_infer_shape(c, 1, s2));
    if (y->ndim > 2) {
        if (y->ndim != nd) return wf_infer_err(c, "batched matmul needs equal ranks");
        for (int i = 0; i < nd - 2; i++)
            if (x->shape[i] != y->shape[i])
                return wf_infer_err(c, "batch dimensions differ: %s @ %s", wf_infer_shape(c, 0, s1),
                                    wf_infer_shape(c, 1, s2));
    }
    memcpy(sh, x->shape, sizeof sh);
    sh[nd - 1] = y->shape[y->ndim - 1];
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, nd, sh);
    if (rc < 0) return rc;
    c->g->n[c->node].flops = 2.0 * (double)x->numel * (double)sh[nd - 1];
    return WF_OK;
}

static void matmul_dims(const struct wf_run *r, int *nb, int *M, int *K, int *N) {
    const struct wf_value *x = XV(r, 0), *b = XV(r, 1);
    *M = (int)x->shape[x->ndim - 2];
    *K = (int)x->shape[x->ndim - 1];
    *N = (int)b->shape[b->ndim - 1];
    *nb = (int)(x->numel / ((long)*M * *K));
}

static int matmul_fwd(const struct wf_run *r) {
    int nb, M, K, N;
    matmul_dims(r, &nb, &M, &K, &N);
    wf_matmul_forward(OUT(r, 0), IN(r, 0), IN(r, 1), nb, M, K, N, XV(r, 1)->ndim == 2);
    return WF_OK;
}

static int matmul_bwd(const struct wf_run *r) {
    int nb, M, K, N;
    matmul_dims(r, &nb, &M, &K, &N);
    wf_matmul_backward(DIN(r, 0), DIN(r, 1), DOUT(r), IN(r, 0), IN(r, 1), nb, M, K, N, XV(r, 1)->ndim == 2);
    return WF_OK;
}

const struct wf_op_def wf_opdef_matmul = {
    .name = "matmul",
    .min_in = 2,
    .max_in = 2,
    .arg = {{F32, 2, 0}, {F32, 2, 0}},
    .flags = WF_OPF_GEMM,
    .bwd_in = 3,
    .infer = matmul_infer,
    .forward = matmul_fwd,
    .backward = matmul_bwd,
};

/* ---- add, mul: the second argument matches the trailing dimensions of the first ---- */

static int bcast_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0], *y = &c->in[1];
    char s1[96], s2[96];
    int ok = y->ndim <= x->ndim;
    for (int i = 0; ok && i < y->ndim; i++)
        ok = y->shape[y->ndim - 1 - i] == x->shape[x->ndim - 1 - i];
    if (!ok)
        return wf_infer_err(c, "second argument %s must match the trailing dimensions of %s", wf_infer_shape(c, 1, s1),
                            wf_infer_shape(c, 0, s2));
    return wf_ops_same_shape(c, 1);
}

static int add_fwd(const struct wf_run *r) {
    wf_add_forward(OUT(r, 0), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, (long)XV(r, 1)->numel);
    return WF_OK;
}

static int add_bwd(const struct wf_run *r) {
    wf_add_backward(DIN(r, 0), DIN(r, 1), DOUT(r), (long)XV(r, 0)->numel, (long)XV(r, 1)->numel);
    return WF_OK;
}

static int mul_fwd(const struct wf_run *r) {
    wf_mul_forward(OUT(r, 0), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, (long)XV(r, 1)->numel);
    return WF_OK;
}

static int mul_bwd(const struct wf_run *r) {
    wf_mul_backward(DIN(r, 0), DIN(r, 1), DOUT(r), IN(r, 0), IN(r, 1), (long)XV(r, 0)->numel, (long)XV(r, 1)->numel);
    return WF_OK;
}

const struct wf_op_def wf_opdef_add = {
    .name = "add",
    .min_in = 2,
    .max_in = 2,
    .flags = WF_OPF_ROWWISE,
    .infer = bcast_infer,
    .forward = add_fwd,
    .backward = add_bwd,
};

const struct wf_op_def wf_opdef_mul = {
    .name = "mul",
    .min_in = 2,
    .max_in = 2,
    .flags = WF_OPF_ROWWISE,
    .bwd_in = 3,
    .infer = bcast_infer,
    .forward = mul_fwd,
    .backward = mul_bwd,
};

/* ---- elementwise activations ---- */

static int act_infer(struct wf_infer *c) { return wf_ops_same_shape(c, 4); }

#define N0(r) ((long)XV(r, 0)->numel)

static int relu_fwd(const struct wf_run *r) {
    float *out = OUT(r, 0);
    /* no storage for the output: fused into the max pool that follows (ops_conv.c) */
    if (out) wf_relu_forward(out, IN(r, 0), N0(r));
    return WF_OK;
}
static int relu_bwd(const struct wf_run *r) {
    /* fused into the max pool's backward, which ran just before (no storage for dout) */
    if (DOUT(r)) wf_relu_backward(DIN(r, 0), DOUT(r), OUT(r, 0), N0(r));
    return WF_OK;
}
static int gelu_fwd(const struct wf_run *r) {
    wf_gelu_forward(OUT(r, 0), IN(r, 0), N0(r));
    return WF_OK;
}
static int gelu_bwd(const struct wf_run *r) {
    wf_gelu_backward(DIN(r, 0), DOUT(r), IN(r, 0), N0(r));
    return WF_OK;
}
static int tanh_fwd(const struct wf_run *r) {
    wf_tanh_forward(OUT(r, 0), IN(r, 0), N0(r));
    return WF_OK;
}
static int tanh_bwd(const struct wf_run *r) {
    wf_tanh_backward(DIN(r, 0), DOUT(r), OUT(r, 0), N0(r));
    return WF_OK;
}
static int sigmoid_fwd(const struct wf_run *r) {
    wf_sigmoid_forward(OUT(r, 0), IN(r, 0), N0(r));
    return WF_OK;
}
static int sigmoid_bwd(const struct wf_run *r) {
    wf_sigmoid_backward(DIN(r, 0), DOUT(r), OUT(r, 0), N0(r));
    return WF_OK;
}
static int softmax_fwd(const struct wf_run *r) {
    wf_softmax_forward(OUT(r, 0), IN(r, 0), (int)wf_ops_rows(XV(r, 0)), (int)wf_ops_last(XV(r, 0)));
    return WF_OK;
}
static int softmax_bwd(const struct wf_run *r) {
    wf_softmax_backward(DIN(r, 0), DOUT(r), OUT(r, 0), (int)wf_ops_rows(XV(r, 0)), (int)wf_ops_last(XV(r, 0)));
    return WF_OK;
}
static int log_softmax_fwd(const struct wf_run *r) {
    wf_log_softmax_forward(OUT(r, 0), IN(r, 0), (int)wf_ops_rows(XV(r, 0)), (int)wf_ops_last(XV(r, 0)));
    return WF_OK;
}
static int log_softmax_bwd(const struct wf_run *r) {
    wf_log_softmax_backward(DIN(r, 0), DOUT(r), OUT(r, 0), (int)wf_ops_rows(XV(r, 0)), (int)wf_ops_last(XV(r, 0)));
    return WF_OK;
}

#define ACT(nm, fw, bw, bi, bo, rank)                                                                                  \
    {                                                                                                                  \
        .name = nm, .min_in = 1, .max_in = 1, .arg = {{F32, rank, 0}}, .bwd_in = bi, .bwd_out = bo,                    \
        .flags = WF_OPF_ROWWISE, .infer = act_infer, .forward = fw, .backward = bw                                     \
    }
const struct wf_op_def wf_opdef_relu = ACT("relu", relu_fwd, relu_bwd, 0, 1, 0);
const struct wf_op_def wf_opdef_gelu = ACT("gelu", gelu_fwd, gelu_bwd, 1, 0, 0);
const struct wf_op_def wf_opdef_tanh = ACT("tanh", tanh_fwd, tanh_bwd, 0, 1, 0);
const struct wf_op_def wf_opdef_sigmoid = ACT("sigmoid", sigmoid_fwd, sigmoid_bwd, 0, 1, 0);
const struct wf_op_def wf_opdef_softmax = ACT("softmax", softmax_fwd, softmax_bwd, 0, 1, 1);
const struct wf_op_def wf_opdef_log_softmax = ACT("log_softmax", log_softmax_fwd, log_softmax_bwd, 0, 1, 1);

/* ---- layernorm over the last dimension ---- */

static int layernorm_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0];
    double eps = c->g->n[c->node].af[0];
    if (!(eps > 0 && eps <= 1)) return wf_infer_err(c, "eps must be in (0, 1], got %g", eps);
    int64_t C = x->shape[x->ndim - 1], R = x->numel / C;
    int rc;
    if ((rc = wf_infer_param(c, "weight", 1, &C, WF_INIT_ONES, 0)) < 0) return rc;
    if ((rc = wf_infer_param(c, "bias", 1, &C, WF_INIT_ZEROS, 0)) < 0) return rc;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, x->ndim, x->shape)) < 0) return rc;
    if ((rc = wf_infer_out(c, "mean", WF_V_AUX, WF_F32, 1, &R)) < 0) return rc;
    if ((rc = wf_infer_out(c, "rstd", WF_V_AUX, WF_F32, 1, &R)) < 0) return rc;
    c->g->n[c->node].flops = (double)x->numel * 8;
    return WF_OK;
}

static int layernorm_fwd(const struct wf_run *r) {
    const struct wf_value *x = XV(r, 0);
    wf_layernorm_forward(OUT(r, 0), OUT(r, 1), OUT(r, 2), IN(r, 0), IN(r, 1), IN(r, 2), (int)wf_ops_rows(x),
                         (int)wf_ops_last(x), (float)r->n->af[0]);
    return WF_OK;
}

static int layernorm_bwd(const struct wf_run *r) {
    const struct wf_value *x = XV(r, 0);
    wf_layernorm_backward(DIN(r, 0), DIN(r, 1), DIN(r, 2), DOUT(r), IN(r, 0), IN(r, 1), OUT(r, 1), OUT(r, 2),
                          (int)wf_ops_rows(x), (int)wf_ops_last(x));
    return WF_OK;
}

const struct wf_op_def wf_opdef_layernorm = {
    .name = "layernorm",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 1, 0}},
    .n_attr = 1,
    .attr = {{"eps", WF_AT_FLOAT, 0, 1e-5}},
    .flags = WF_OPF_ROWWISE,
    .bwd_in = 3,
    .bwd_out = 6,
    .infer = layernorm_infer,
    .forward = layernorm_fwd,
    .backward = layernorm_bwd,
};

/* ---- dropout ---- */

static int dropout_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0];
    double p = c->g->n[c->node].af[0];
    if (!(p >= 0 && p < 1)) return wf_infer_err(c, "p must be in [0, 1), got %g", p);
    int rc;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, x->ndim, x->shape)) < 0) return rc;
    if ((rc = wf_infer_out(c, "mask", WF_V_AUX, WF_F32, x->ndim, x->shape)) < 0) return rc;
    c->g->n[c->node].flops = (double)x->numel;
    return WF_OK;
}

static int dropout_fwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    if (r->train) {
        /* keyed by the layer's name, not its position: a stage of a pipeline
         * draws the same mask as the whole model in one process */
        uint64_t stream = wf_hash_combine(r->rng_step, wf_hash64(n->name, strlen(n->name), 0));
        wf_dropout_forward(OUT(r, 0), OUT(r, 1), IN(r, 0), N0(r), (float)n->af[0], r->rng_key, stream);
    } else {
        memcpy(OUT(r, 0), IN(r, 0), sizeof(float) * (size_t)N0(r));
    }
    return WF_OK;
}

static int dropout_bwd(const struct wf_run *r) {
    wf_dropout_backward(DIN(r, 0), DOUT(r), OUT(r, 1), N0(r));
    return WF_OK;
}

const struct wf_op_def wf_opdef_dropout = {
    .name = "dropout",
    .min_in = 1,
    .max_in = 1,
    .n_attr = 1,
    .attr = {{"p", WF_AT_FLOAT, 0, 0.5}},
    .bwd_out = 2,
    .infer = dropout_infer,
    .forward = dropout_fwd,
    .backward = dropout_bwd,
};

/* ---- embedding: ids of any shape -> (ids..., dim) ---- */

static int embedding_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0];
    struct wf_node *n = &c->g->n[c->node];
    int64_t V = n->ai[0], D = n->ai[1], sh[WF_MAX_DIMS];
    if (V <= 0 || D <= 0) return wf_infer_err(c, "vocab and dim must be positive");
    int64_t ws[2] = {V, D};
    int rc;
    if ((rc = wf_infer_param(c, "weight", 2, ws, WF_INIT_NORMAL, 1.0)) < 0) return rc;
    memcpy(sh, x->shape, sizeof sh);
    sh[x->ndim] = D;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, x->ndim + 1, sh)) < 0) return rc;
    c->g->n[c->node].flops = (double)x->numel * (double)D;
    return WF_OK;
}

static int embedding_fwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    const int32_t *ids = INI(r, 0);
    int V = (int)n->ai[0];
    int bad = wf_embedding_forward(OUT(r, 0), ids, IN(r, 1), (int)N0(r), V, (int)n->ai[1]);
    if (bad >= 0)
        return wf_error(WF_ERR_RANGE, "%s:%d:%d: layer '%s': id %d at position %d is outside [0, %d)", r->g->path,
                        n->line, n->col, n->name, (int)ids[bad], bad, V);
    return WF_OK;
}

static int embedding_bwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    wf_embedding_backward(DIN(r, 1), DOUT(r), INI(r, 0), (int)N0(r), (int)n->ai[0], (int)n->ai[1]);
    return WF_OK;
}

const struct wf_op_def wf_opdef_embedding = {
    .name = "embedding",
    .min_in = 1,
    .max_in = 1,
    .arg = {{I32, 0, WF_MAX_DIMS - 1}},
    .n_attr = 2,
    .attr = {{"vocab", WF_AT_INT, 1, 0}, {"dim", WF_AT_INT, 1, 0}},
    .no_grad = 1,
    .bwd_in = 1,
    .infer = embedding_infer,
    .forward = embedding_fwd,
    .backward = embedding_bwd,
};
