/*
 * graph layer, op table: 2-d convolution and pooling, with the two things
 * the engine does across neighbouring nodes for them:
 *
 *  - relu -> max pool fusion (the maxpool's plan hook). A relu whose output
 *    feeds only a max pool right after it (and relu's own backward) runs
 *    inside the pool: wf_maxpool2d_relu_forward pools relu's input directly,
 *    and the pool's backward, right before relu's, writes relu's input
 *    gradient (kernels.h). The relu'd tensor and its gradient are then never
 *    formed, and get no storage: that is how the run functions know. Their
 *    producers stay in the graph, as no-ops. Relu's input lives on until the
 *    pool, and its gradient is born at the pool's backward, so that the plan
 *    keeps them apart from what those nodes read and write. The results are
 *    the unfused graph's, bit for bit. Only where nothing else could see the
 *    difference: the relu'd tensor, its gradient and the pool's argmax are
 *    read by no other node of the program and are no output of it.
 *  - blocked layouts (NCHW16C) for the tensors a fused conv -> relu -> pool
 *    -> conv chain hands along (handoff_layout, pooled_layout).
 */
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define F32 WF_DT(WF_F32)

static void conv_shape(const struct wf_graph *g, const struct wf_node *f, struct wf_conv2d_shape *s) {
    const struct wf_value *x = &g->v[f->in[0]], *y = &g->v[f->out[0]];
    wf_conv2d_shape_init(s, (int)x->shape[0], (int)x->shape[1], (int)x->shape[2], (int)x->shape[3], (int)y->shape[1],
                         (int)f->ai[1], (int)f->ai[1], (int)f->ai[2], (int)f->ai[3]);
}

static void pool_shape(const struct wf_graph *g, const struct wf_node *f, struct wf_pool2d_shape *s) {
    const struct wf_value *x = &g->v[f->in[0]];
    wf_pool2d_shape_init(s, (int)x->shape[0], (int)x->shape[1], (int)x->shape[2], (int)x->shape[3], (int)f->ai[0],
                         (int)f->ai[1], (int)f->ai[2]);
}

/* The relu fused into max pool node `pool` (its output, the pool's input, has no storage). */
static int fused_relu(const struct wf_graph *g, const struct wf_node *pool) { return g->v[pool->in[0]].producer; }

/* The layout in which conv node ci hands its output to the relu right
 * after it, and gets the gradient back: NCHW16C when that relu is fused
 * into a max pool, so nothing but the pool reads the conv's output (the
 * plan hook fuses only then), and the shape allows it. The conv, the pool
 * and their backwards all ask this, so they agree. */
static int handoff_layout(const struct wf_run *r, int ci) {
    const struct wf_graph *g = r->g;
    if (ci < 0 || ci + 1 >= g->n_fwd) return WF_LAYOUT_NCHW;
    const struct wf_node *c = &g->n[ci], *u = c + 1;
    if (c->op != WF_OP_CONV2D || c->backward || u->op != WF_OP_RELU || u->in[0] != c->out[0] ||
        wf_run_ptr(r, u->out[0]))
        return WF_LAYOUT_NCHW;
    struct wf_conv2d_shape s;
    conv_shape(g, c, &s);
    return wf_conv2d_blocked_ok(&s) ? WF_LAYOUT_NCHW16C : WF_LAYOUT_NCHW;
}

/* The layout of fused max pool node pi's pooled side (its output, argmax
 * and their gradients): NCHW16C when its input comes so (handoff_layout)
 * and the node right after it is a convolution reading its output (the
 * plan hook then made sure nothing else does) that takes its input so. */
static int pooled_layout(const struct wf_run *r, int pi) {
    const struct wf_graph *g = r->g;
    if (pi < 0 || pi + 1 >= g->n_fwd) return WF_LAYOUT_NCHW;
    const struct wf_node *p = &g->n[pi], *c = p + 1;
    if (p->op != WF_OP_MAXPOOL2D || p->backward || wf_run_ptr(r, p->in[0]) || c->op != WF_OP_CONV2D || c->backward ||
        c->in[0] != p->out[0] || handoff_layout(r, fused_relu(g, p) - 1) != WF_LAYOUT_NCHW16C)
        return WF_LAYOUT_NCHW;
    struct wf_conv2d_shape s;
    conv_shape(g, c, &s);
    return wf_conv2d_blocked_in_ok(&s) ? WF_LAYOUT_NCHW16C : WF_LAYOUT_NCHW;
}

/* ---- conv2d ---- */

static int conv_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0];
    struct wf_node *n = &c->g->n[c->node];
    char s1[96];
    int64_t OC = n->ai[0], k = n->ai[1], st = n->ai[2], p = n->ai[3]; /* |attr| < 2^31: no overflow below */
    if (OC <= 0 || k <= 0 || st <= 0 || p < 0) return wf_infer_err(c, "out, kernel, stride must be > 0, pad >= 0");
    if (x->shape[2] + 2 * p > INT32_MAX || x->shape[3] + 2 * p > INT32_MAX)
        return wf_infer_err(c, "the padded input must fit 2^31 (pad %lld)", (long long)p);
    if (x->shape[2] + 2 * p < k || x->shape[3] + 2 * p < k)
        return wf_infer_err(c, "kernel %lld does not fit input %s with pad %lld", (long long)k,
                            wf_infer_shape(c, 0, s1), (long long)p);
    int64_t OH = (x->shape[2] + 2 * p - k) / st + 1, OW = (x->shape[3] + 2 * p - k) / st + 1;
    int64_t ws[4] = {OC, x->shape[1], k, k};
    double fanin = (double)x->shape[1] * (double)k * (double)k;
    int rc;
    if ((rc = wf_infer_param(c, "weight", 4, ws, WF_INIT_FANIN_UNIFORM, fanin)) < 0) return rc;
    if (n->ai[4] && (rc = wf_infer_param(c, "bias", 1, &OC, WF_INIT_FANIN_UNIFORM, fanin)) < 0) return rc;
    int64_t sh[4] = {x->shape[0], OC, OH, OW};
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, 4, sh)) < 0) return rc;
    c->g->n[c->node].flops = 2.0 * (double)x->shape[0] * (double)OC * (double)OH * (double)OW * fanin;
    return WF_OK;
}

static size_t conv_work(const struct wf_graph *g, const struct wf_node *f) {
    struct wf_conv2d_shape s;
    conv_shape(g, f, &s);
    long w = wf_conv2d_workspace(&s);
    return w > 0 ? (size_t)w : 0;
}

static int conv_fwd(const struct wf_run *r) {
    struct wf_conv2d_shape s;
    conv_shape(r->g, r->n, &s);
    wf_conv2d_forward_ex(OUT(r, 0), IN(r, 0), IN(r, 1), r->n->n_in > 2 ? IN(r, 2) : NULL, &s, r->work,
                         pooled_layout(r, r->ni - 1), handoff_layout(r, r->ni));
    return WF_OK;
}

static int conv_bwd(const struct wf_run *r) {
    struct wf_conv2d_shape s;
    conv_shape(r->g, r->n, &s);
    wf_conv2d_backward_ex(DIN(r, 0), DIN(r, 1), r->n->n_in > 2 ? DIN(r, 2) : NULL, DOUT(r), IN(r, 0), IN(r, 1), &s,
                          r->work, pooled_layout(r, r->ni - 1), handoff_layout(r, r->ni));
    return WF_OK;
}

const struct wf_op_def wf_opdef_conv2d = {
    .name = "conv2d",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 4, 4}},
    .n_attr = 5,
    .attr = {{"out", WF_AT_INT, 1, 0},
             {"kernel", WF_AT_INT, 1, 0},
             {"stride", WF_AT_INT, 0, 1},
             {"pad", WF_AT_INT, 0, 0},
             {"bias", WF_AT_BOOL, 0, 1}},
    .flags = WF_OPF_GEMM,
    .bwd_in = 3,
    .infer = conv_infer,
    .forward = conv_fwd,
    .backward = conv_bwd,
    .work = conv_work,
};

/* ---- pools ---- */

static int pool_infer(struct wf_infer *c) {
    const struct wf_value *x = &c->in[0];
    struct wf_node *n = &c->g->n[c->node];
    char s1[96];
    if (n->ai[1] == WF_ATTR_UNSET) n->ai[1] = n->ai[0];
    int64_t k = n->ai[0], st = n->ai[1], p = n->ai[2];
    if (k <= 0 || st <= 0 || p < 0 || 2 * p > k)
        return wf_infer_err(c, "need kernel, stride > 0 and 0 <= pad <= kernel/2");
    if (x->shape[2] + 2 * p > INT32_MAX || x->shape[3] + 2 * p > INT32_MAX)
        return wf_infer_err(c, "the padded input must fit 2^31 (pad %lld)", (long long)p);
    if (x->shape[2] + 2 * p < k || x->shape[3] + 2 * p < k)
        return wf_infer_err(c, "kernel %lld does not fit input %s", (long long)k, wf_infer_shape(c, 0, s1));
    int64_t sh[4] = {x->shape[0], x->shape[1], (x->shape[2] + 2 * p - k) / st + 1, (x->shape[3] + 2 * p - k) / st + 1};
    int rc;
    if ((rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, 4, sh)) < 0) return rc;
    if (n->op == WF_OP_MAXPOOL2D && (rc = wf_infer_out(c, "argmax", WF_V_AUX, WF_I32, 4, sh)) < 0) return rc;
    c->g->n[c->node].flops = (double)sh[0] * (double)sh[1] * (double)sh[2] * (double)sh[3] * (double)(k * k);
    return WF_OK;
}

static int maxpool_fwd(const struct wf_run *r) {
    struct wf_pool2d_shape s;
    pool_shape(r->g, r->n, &s);
    const float *in = IN(r, 0);
    if (!in) { /* relu fused in: pool relu's input */
        const int u = fused_relu(r->g, r->n);
        wf_maxpool2d_relu_forward_ex(OUT(r, 0), OUTI(r, 1), wf_run_ptr(r, r->g->n[u].in[0]), &s,
                                     handoff_layout(r, u - 1), pooled_layout(r, r->ni));
    } else {
        wf_maxpool2d_forward(OUT(r, 0), OUTI(r, 1), in, &s);
    }
    return WF_OK;
}

static int maxpool_bwd(const struct wf_run *r) {
    struct wf_pool2d_shape s;
    pool_shape(r->g, r->n, &s);
    float *dx = DIN(r, 0);
    const struct wf_node *b = r->b;
    if (b->out[0] >= 0 && !dx) /* relu fused in: write relu's input gradient (relu's backward runs next) */
        wf_maxpool2d_backward_ex(wf_run_ptr(r, b[1].out[0]), DOUT(r), OUTI(r, 1), &s, handoff_layout(r, b[1].fwd - 1),
                                 pooled_layout(r, r->ni));
    else
        wf_maxpool2d_backward(dx, DOUT(r), OUTI(r, 1), &s);
    return WF_OK;
}

static int avgpool_fwd(const struct wf_run *r) {
    struct wf_pool2d_shape s;
    pool_shape(r->g, r->n, &s);
    wf_avgpool2d_forward(OUT(r, 0), IN(r, 0), &s);
    return WF_OK;
}

static int avgpool_bwd(const struct wf_run *r) {
    struct wf_pool2d_shape s;
    pool_shape(r->g, r->n, &s);
    wf_avgpool2d_backward(DIN(r, 0), DOUT(r), &s);
    return WF_OK;
}

/* The plan hook of a max pool at node a + 1 whose input a relu at node a makes. */
static void maxpool_plan(const struct wf_graph *g, int nn, int p, unsigned char *none, int *start, int *end) {
    const int a = p - 1;
    if (a < 0 || p >= g->n_fwd || p >= nn) return;
    const struct wf_node *A = &g->n[a], *B = &g->n[p];
    if (A->op != WF_OP_RELU || A->backward || B->backward) return;
    const int c = A->in[0], r = A->out[0], am = B->n_out > 1 ? B->out[1] : -1;
    if (B->in[0] != r || B->ai[2] != 0 || am < 0) return;
    if (g->v[c].kind != WF_V_ACT || g->v[c].dtype != WF_F32 || g->v[r].alias >= 0) return;
    /* a convolution's output may then be handed over in its blocked layout (handoff_layout):
     * only if nothing but the relu reads it */
    const int cp = g->v[c].producer;
    if (cp >= 0 && g->n[cp].op == WF_OP_CONV2D && !wf_graph_read_only_by(g, nn, c, a, -1)) return;
    /* and a convolution right after the pool may take the pooled tensor in that layout too:
     * only if nothing but it (and its backward) reads it */
    const int pv = B->out[0];
    if (a + 2 < g->n_fwd && a + 2 < nn && g->n[a + 2].op == WF_OP_CONV2D && g->n[a + 2].in[0] == pv &&
        !wf_graph_read_only_by(g, nn, pv, a + 2, wf_graph_backward_of(g, nn, a + 2)))
        return;
    const int da = wf_graph_backward_of(g, nn, a), db = wf_graph_backward_of(g, nn, p);
    if ((da < 0) != (db < 0)) return;
    if (!wf_graph_read_only_by(g, nn, r, p, da) || !wf_graph_read_only_by(g, nn, am, db, -1)) return;
    int dr = -1, dc = -1;
    if (db >= 0) {
        dr = g->n[db].out[0];
        dc = g->n[da].out[0];
        if (da != db + 1 || dr < 0 || dc < 0 || g->n[da].in[0] != dr || g->v[dr].alias >= 0 || g->v[dc].alias >= 0 ||
            !wf_graph_read_only_by(g, nn, dr, da, -1))
            return;
    }
    none[r] = 1;
    if (end[c] < p) end[c] = p;
    if (dr >= 0) {
        none[dr] = 1;
        if (start[dc] > db) start[dc] = db;
    }
}

#define POOL_ATTRS                                                                                                     \
    .n_attr = 3,                                                                                                       \
    .attr = {{"kernel", WF_AT_INT, 1, 0}, {"stride", WF_AT_INT, 0, WF_ATTR_UNSET}, {"pad", WF_AT_INT, 0, 0}}

const struct wf_op_def wf_opdef_maxpool2d = {
    .name = "maxpool2d",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 4, 4}},
    POOL_ATTRS,
    .bwd_out = 2,
    .infer = pool_infer,
    .forward = maxpool_fwd,
    .backward = maxpool_bwd,
    .plan = maxpool_plan,
};

const struct wf_op_def wf_opdef_avgpool2d = {
    .name = "avgpool2d",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 4, 4}},
    POOL_ATTRS,
    .infer = pool_infer,
    .forward = avgpool_fwd,
    .backward = avgpool_bwd,
};
