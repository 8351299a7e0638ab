/*
 * exec layer: the executor — one call per node into the kernels, on the
 * pointers fixed by the memory plan.
 */
#include <string.h>

#include "weft/core.h"
#include "weft/exec.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

void *wf_exec_ptr(const struct wf_exec *e, int v) {
    if (v < 0) return NULL;
    switch (e->prog.storage[v]) {
    case WF_STORE_ARENA: return e->arena + e->prog.offset[v];
    case WF_STORE_PARAM: return e->params + e->prog.offset[v];
    case WF_STORE_GRAD: return e->grads + e->prog.offset[v];
    }
    return NULL;
}

int wf_exec_init(struct wf_exec *e, const struct wf_model *m, int batch, int train, float *params, float *grads) {
    return wf_exec_init_stage(e, m, batch, train, NULL, params, grads);
}

int wf_exec_init_stage(struct wf_exec *e, const struct wf_model *m, int batch, int train, const struct wf_stage_opts *o,
                       float *params, float *grads) {
    memset(e, 0, sizeof *e);
    int rc = wf_program_compile_stage(&e->prog, m, batch, train, o);
    if (rc < 0) return rc;
    e->train = train;
    e->params = params;
    e->grads = grads;
    e->loss_scale = 1.0f;
    e->arena = wf_aalloc(e->prog.arena_bytes);
    e->work = wf_aalloc(e->prog.work_floats * sizeof(float));
    e->node_seconds = wf_calloc((size_t)e->prog.g.nn, sizeof(double));
    if (!e->arena || !e->work || !e->node_seconds) {
        wf_exec_free(e);
        return wf_error(WF_ERR_NOMEM, "out of memory allocating %zu bytes of activations", e->prog.arena_bytes);
    }
    return WF_OK;
}

void wf_exec_free(struct wf_exec *e) {
    if (!e) return;
    wf_program_free(&e->prog);
    wf_afree(e->arena);
    wf_afree(e->work);
    wf_free(e->node_seconds);
    memset(e, 0, sizeof *e);
}

void wf_exec_set_rng(struct wf_exec *e, uint64_t seed, uint64_t step, uint64_t micro_batch) {
    e->rng_key = wf_mix64(seed ^ 0x44524F504F555421ull);
    e->rng_step = wf_hash_combine(wf_hash_combine(0x5354455000000000ull, step), micro_batch);
}

/* (outer, dim, inner) around axis a */
static void split_axis(const struct wf_value *v, int a, long *outer, int *dim, long *inner) {
    long o = 1, in = 1;
    for (int i = 0; i < a; i++)
        o *= v->shape[i];
    for (int i = a + 1; i < v->ndim; i++)
        in *= v->shape[i];
    *outer = o;
    *dim = (int)v->shape[a];
    *inner = in;
}

static void transpose_dims(const struct wf_value *x, int a0, int a1, long d[5]) {
    long A = 1, M = 1, Z = 1;
    for (int i = 0; i < a0; i++)
        A *= x->shape[i];
    for (int i = a0 + 1; i < a1; i++)
        M *= x->shape[i];
    for (int i = a1 + 1; i < x->ndim; i++)
        Z *= x->shape[i];
    d[0] = A;
    d[1] = x->shape[a0];
    d[2] = M;
    d[3] = x->shape[a1];
    d[4] = Z;
}

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

/* The relu fused into max pool node `pool` (its output, the pool's input,
 * has no storage: plan.c). */
static int fused_relu(const struct wf_graph *g, const struct wf_node *pool) { return g->v[pool->in[0]].producer; }

/* The layout in which conv node ci hands its output to the relu right
 * after it, and gets the gradient back: NCHW16C (kernels.h) when that relu
 * is fused into a max pool, so nothing but the pool reads the conv's output
 * (plan.c fuses only then), and the shape allows it. The conv, the pool
 * and their backwards all ask this, so they agree. */
static int handoff_layout(const struct wf_exec *e, int ci) {
    const struct wf_graph *g = &e->prog.g;
    if (ci < 0 || ci + 1 >= g->n_fwd) return WF_LAYOUT_NCHW;
    const struct wf_node *c = &g->n[ci], *r = c + 1;
    if (c->op != WF_OP_CONV2D || c->backward || r->op != WF_OP_RELU || r->in[0] != c->out[0] ||
        wf_exec_ptr(e, r->out[0]))
        return WF_LAYOUT_NCHW;
    struct wf_conv2d_shape s;
    conv_shape(g, c, &s);
    return wf_conv2d_blocked_ok(&s) ? WF_LAYOUT_NCHW16C : WF_LAYOUT_NCHW;
}

/* The layout of fused max pool node pi's pooled side (its output, argmax
 * and their gradients): NCHW16C when its input comes so (handoff_layout)
 * and the node right after it is a convolution reading its output (plan.c
 * then made sure nothing else does) that takes its input so. */
static int pooled_layout(const struct wf_exec *e, int pi) {
    const struct wf_graph *g = &e->prog.g;
    if (pi < 0 || pi + 1 >= g->n_fwd) return WF_LAYOUT_NCHW;
    const struct wf_node *p = &g->n[pi], *c = p + 1;
    if (p->op != WF_OP_MAXPOOL2D || p->backward || wf_exec_ptr(e, p->in[0]) || c->op != WF_OP_CONV2D || c->backward ||
        c->in[0] != p->out[0] || handoff_layout(e, fused_relu(g, p) - 1) != WF_LAYOUT_NCHW16C)
        return WF_LAYOUT_NCHW;
    struct wf_conv2d_shape s;
    conv_shape(g, c, &s);
    return wf_conv2d_blocked_in_ok(&s) ? WF_LAYOUT_NCHW16C : WF_LAYOUT_NCHW;
}

#define P(v) ((float *)wf_exec_ptr(e, (v)))
#define PI(v) ((int32_t *)wf_exec_ptr(e, (v)))

static int run_forward(struct wf_exec *e, const struct wf_node *n) {
    const struct wf_graph *g = &e->prog.g;
    const struct wf_value *x = &g->v[n->in[0]], *y = &g->v[n->out[0]];
    float *out = P(n->out[0]);
    long numel = (long)x->numel;
    int last = x->ndim ? (int)x->shape[x->ndim - 1] : 1;
    switch (n->op) {
    case WF_OP_LINEAR:
        wf_linear_forward(out, P(n->in[0]), P(n->in[1]), n->n_in > 2 ? P(n->in[2]) : NULL, (int)(numel / last), last,
                          (int)y->shape[y->ndim - 1]);
        break;
    case WF_OP_MATMUL: {
        const struct wf_value *b = &g->v[n->in[1]];
        int M = (int)x->shape[x->ndim - 2], K = last, N = (int)b->shape[b->ndim - 1];
        wf_matmul_forward(out, P(n->in[0]), P(n->in[1]), (int)(numel / ((long)M * K)), M, K, N, b->ndim == 2);
        break;
    }
    case WF_OP_ADD: wf_add_forward(out, P(n->in[0]), P(n->in[1]), numel, (long)g->v[n->in[1]].numel); break;
    case WF_OP_MUL: wf_mul_forward(out, P(n->in[0]), P(n->in[1]), numel, (long)g->v[n->in[1]].numel); break;
    case WF_OP_RELU:
        /* no storage for the output: fused into the max pool that follows (plan.c) */
        if (out) wf_relu_forward(out, P(n->in[0]), numel);
        break;
    case WF_OP_GELU: wf_gelu_forward(out, P(n->in[0]), numel); break;
    case WF_OP_TANH: wf_tanh_forward(out, P(n->in[0]), numel); break;
    case WF_OP_SIGMOID: wf_sigmoid_forward(out, P(n->in[0]), numel); break;
    case WF_OP_SOFTMAX: wf_softmax_forward(out, P(n->in[0]), (int)(numel / last), last); break;
    case WF_OP_LOG_SOFTMAX: wf_log_softmax_forward(out, P(n->in[0]), (int)(numel / last), last); break;
    case WF_OP_CROSS_ENTROPY: {
        int R = (int)(numel / last);
        const int32_t *t = PI(n->in[1]);
        int bad = wf_softmax_xent_forward(out, P(n->out[1]), P(n->in[0]), t, R, last, e->loss_scale);
        if (bad >= 0)
            return wf_error(WF_ERR_RANGE, "%s:%d:%d: layer '%s': label %d of row %d is outside [0, %d)", g->path,
                            n->line, n->col, n->name, (int)t[bad], bad, last);
        break;
    }
    case WF_OP_CONV2D: {
        struct wf_conv2d_shape s;
        conv_shape(g, n, &s);
        const int i = (int)(n - g->n);
        wf_conv2d_forward_ex(out, P(n->in[0]), P(n->in[1]), n->n_in > 2 ? P(n->in[2]) : NULL, &s, e->work,
                             pooled_layout(e, i - 1), handoff_layout(e, i));
        break;
    }
    case WF_OP_MAXPOOL2D:
    case WF_OP_AVGPOOL2D: {
        struct wf_pool2d_shape s;
        pool_shape(g, n, &s);
        const float *in = P(n->in[0]);
        if (n->op == WF_OP_MAXPOOL2D && !in) { /* relu fused in: pool relu's input */
            const int r = fused_relu(g, n);
            wf_maxpool2d_relu_forward_ex(out, PI(n->out[1]), P(g->n[r].in[0]), &s, handoff_layout(e, r - 1),
                                         pooled_layout(e, (int)(n - g->n)));
        } else if (n->op == WF_OP_MAXPOOL2D)
            wf_maxpool2d_forward(out, PI(n->out[1]), in, &s);
        else
            wf_avgpool2d_forward(out, P(n->in[0]), &s);
        break;
    }
    case WF_OP_RESHAPE:
    case WF_OP_FLATTEN:
        if (out != P(n->in[0])) memcpy(out, P(n->in[0]), sizeof(float) * (size_t)numel);
        break;
    case WF_OP_TRANSPOSE: {
        long d[5];
        transpose_dims(x, (int)n->ai[0], (int)n->ai[1], d);
        wf_transpose_forward(out, P(n->in[0]), d[0], d[1], d[2], d[3], d[4]);
        break;
    }
    case WF_OP_LAYERNORM:
        wf_layernorm_forward(out, P(n->out[1]), P(n->out[2]), P(n->in[0]), P(n->in[1]), P(n->in[2]),
                             (int)(numel / last), last, (float)n->af[0]);
        break;
    case WF_OP_DROPOUT: {
        if (e->train) {
            /* keyed by the layer's name, not its position: a stage of a pipeline
             * draws the same mask as the whole model in one process */
            uint64_t stream = wf_hash_combine(e->rng_step, wf_hash64(n->name, strlen(n->name), 0));
            wf_dropout_forward(out, P(n->out[1]), P(n->in[0]), numel, (float)n->af[0], e->rng_key, stream);
        } else {
            memcpy(out, P(n->in[0]), sizeof(float) * (size_t)numel);
        }
        break;
    }
    case WF_OP_EMBEDDING: {
        const int32_t *ids = PI(n->in[0]);
        int V = (int)n->ai[0];
        int bad = wf_embedding_forward(out, ids, P(n->in[1]), (int)numel, V, (int)n->ai[1]);
        if (bad >= 0)
            return wf_error(WF_ERR_RANGE, "%s:%d:%d: layer '%s': id %d at position %d is outside [0, %d)", g->path,
                            n->line, n->col, n->name, (int)ids[bad], bad, V);
        break;
    }
    case WF_OP_CONCAT: {
        const float *ins[WF_MAX_IO];
        int dims[WF_MAX_IO], dim;
        long outer, inner;
        for (int i = 0; i < n->n_in; i++) {
            ins[i] = P(n->in[i]);
            split_axis(&g->v[n->in[i]], (int)n->ai[0], &outer, &dims[i], &inner);
        }
        split_axis(y, (int)n->ai[0], &outer, &dim, &inner);
        wf_concat_forward(out, ins, dims, n->n_in, outer, inner);
        break;
    }
    case WF_OP_SLICE: {
        long outer, inner;
        int dim;
        split_axis(x, (int)n->ai[0], &outer, &dim, &inner);
        wf_slice_forward(out, P(n->in[0]), outer, dim, inner, (int)n->ai[1], (int)n->ai[2]);
        break;
    }
    case WF_OP_SUM:
    case WF_OP_MEAN: {
        long outer = 1, inner = 1;
        int dim = (int)numel;
        if (n->ai[0] != WF_ATTR_UNSET) split_axis(x, (int)n->ai[0], &outer, &dim, &inner);
        if (n->op == WF_OP_SUM)
            wf_sum_forward(out, P(n->in[0]), outer, dim, inner);
        else
            wf_mean_forward(out, P(n->in[0]), outer, dim, inner);
        break;
    }
    default: return wf_error(WF_ERR_INTERNAL, "node '%s': op %d has no forward", n->name, n->op);
    }
    return WF_OK;
}

static int run_backward(struct wf_exec *e, const struct wf_node *b) {
    const struct wf_graph *g = &e->prog.g;
    if (b->op == WF_OP_ACCUM) {
        float *out = P(b->out[0]);
        long numel = (long)g->v[b->out[0]].numel;
        wf_add_forward(out, P(b->in[0]), P(b->in[1]), numel, numel);
        for (int i = 2; i < b->n_in; i++)
            wf_add_forward(out, out, P(b->in[i]), numel, numel);
        return WF_OK;
    }
    const struct wf_node *f = &g->n[b->fwd];
    const struct wf_value *x = &g->v[f->in[0]], *y = &g->v[f->out[0]];
    const float *dout = P(b->in[0]);
    float *dx = P(b->out[0]);
    long numel = (long)x->numel;
    int last = x->ndim ? (int)x->shape[x->ndim - 1] : 1;
    switch (f->op) {
    case WF_OP_LINEAR:
        wf_linear_backward(dx, P(b->out[1]), f->n_in > 2 ? P(b->out[2]) : NULL, dout, P(f->in[0]), P(f->in[1]),
                           (int)(numel / last), last, (int)y->shape[y->ndim - 1]);
        break;
    case WF_OP_MATMUL: {
        const struct wf_value *bv = &g->v[f->in[1]];
        int M = (int)x->shape[x->ndim - 2], K = last, N = (int)bv->shape[bv->ndim - 1];
        wf_matmul_backward(dx, P(b->out[1]), dout, P(f->in[0]), P(f->in[1]), (int)(numel / ((long)M * K)), M, K, N,
                           bv->ndim == 2);
        break;
    }
    case WF_OP_ADD: wf_add_backward(dx, P(b->out[1]), dout, numel, (long)g->v[f->in[1]].numel); break;
    case WF_OP_MUL:
        wf_mul_backward(dx, P(b->out[1]), dout, P(f->in[0]), P(f->in[1]), numel, (long)g->v[f->in[1]].numel);
        break;
    case WF_OP_RELU:
        /* fused into the max pool's backward, which ran just before (no storage for dout) */
        if (dout) wf_relu_backward(dx, dout, P(f->out[0]), numel);
        break;
    case WF_OP_GELU: wf_gelu_backward(dx, dout, P(f->in[0]), numel); break;
    case WF_OP_TANH: wf_tanh_backward(dx, dout, P(f->out[0]), numel); break;
    case WF_OP_SIGMOID: wf_sigmoid_backward(dx, dout, P(f->out[0]), numel); break;
    case WF_OP_SOFTMAX: wf_softmax_backward(dx, dout, P(f->out[0]), (int)(numel / last), last); break;
    case WF_OP_LOG_SOFTMAX: wf_log_softmax_backward(dx, dout, P(f->out[0]), (int)(numel / last), last); break;
    case WF_OP_CROSS_ENTROPY:
        wf_softmax_xent_backward(dx, P(f->out[1]), PI(f->in[1]), (int)(numel / last), last, e->loss_scale,
                                 dout ? dout[0] : 1.0f);
        break;
    case WF_OP_CONV2D: {
        struct wf_conv2d_shape s;
        conv_shape(g, f, &s);
        wf_conv2d_backward_ex(dx, P(b->out[1]), f->n_in > 2 ? P(b->out[2]) : NULL, P(b->in[0]), P(f->in[0]),
                              P(f->in[1]), &s, e->work, pooled_layout(e, b->fwd - 1), handoff_layout(e, b->fwd));
        break;
    }
    case WF_OP_MAXPOOL2D:
    case WF_OP_AVGPOOL2D: {
        struct wf_pool2d_shape s;
        pool_shape(g, f, &s);
        if (f->op == WF_OP_MAXPOOL2D && b->out[0] >= 0 && !dx) /* relu fused in: write relu's input gradient */
            wf_maxpool2d_backward_ex(P(b[1].out[0]), dout, PI(f->out[1]), &s, handoff_layout(e, b[1].fwd - 1),
                                     pooled_layout(e, b->fwd));
        else if (f->op == WF_OP_MAXPOOL2D)
            wf_maxpool2d_backward(dx, dout, PI(f->out[1]), &s);
        else
            wf_avgpool2d_backward(dx, dout, &s);
        break;
    }
    case WF_OP_RESHAPE:
    case WF_OP_FLATTEN:
        if (dx && dx != dout) memcpy(dx, dout, sizeof(float) * (size_t)numel);
        break;
    case WF_OP_TRANSPOSE: {
        long d[5];
        transpose_dims(x, (int)f->ai[0], (int)f->ai[1], d);
        wf_transpose_forward(dx, dout, d[0], d[3], d[2], d[1], d[4]);
        break;
    }
    case WF_OP_LAYERNORM:
        wf_layernorm_backward(dx, P(b->out[1]), P(b->out[2]), dout, P(f->in[0]), P(f->in[1]), P(f->out[1]),
                              P(f->out[2]), (int)(numel / last), last);
        break;
    case WF_OP_DROPOUT: wf_dropout_backward(dx, dout, P(f->out[1]), numel); break;
    case WF_OP_EMBEDDING:
        wf_embedding_backward(P(b->out[1]), dout, PI(f->in[0]), (int)numel, (int)f->ai[0], (int)f->ai[1]);
        break;
    case WF_OP_CONCAT: {
        float *dins[WF_MAX_IO];
        int dims[WF_MAX_IO], dim;
        long outer, inner;
        for (int i = 0; i < f->n_in; i++) {
            dins[i] = P(b->out[i]);
            split_axis(&g->v[f->in[i]], (int)f->ai[0], &outer, &dims[i], &inner);
        }
        split_axis(y, (int)f->ai[0], &outer, &dim, &inner);
        wf_concat_backward(dins, dout, dims, f->n_in, outer, inner);
        break;
    }
    case WF_OP_SLICE: {
        long outer, inner;
        int dim;
        split_axis(x, (int)f->ai[0], &outer, &dim, &inner);
        wf_slice_backward(dx, dout, outer, dim, inner, (int)f->ai[1], (int)f->ai[2]);
        break;
    }
    case WF_OP_SUM:
    case WF_OP_MEAN: {
        long outer = 1, inner = 1;
        int dim = (int)numel;
        if (f->ai[0] != WF_ATTR_UNSET) split_axis(x, (int)f->ai[0], &outer, &dim, &inner);
        if (f->op == WF_OP_SUM)
            wf_sum_backward(dx, dout, outer, dim, inner);
        else
            wf_mean_backward(dx, dout, outer, dim, inner);
        break;
    }
    default: return wf_error(WF_ERR_INTERNAL, "node '%s': op %d has no backward", b->name, f->op);
    }
    return WF_OK;
}

int wf_exec_run(struct wf_exec *e, int from, int to) {
    const struct wf_graph *g = &e->prog.g;
    for (int i = from; i < to; i++) {
        const struct wf_node *n = &g->n[i];
        double t0 = e->profile ? wf_now() : 0;
        int rc = n->backward ? run_backward(e, n) : run_forward(e, n);
        if (rc < 0) return rc;
        if (e->profile) e->node_seconds[i] += wf_now() - t0;
        if (e->node_done) e->node_done(e->node_done_ud, i);
    }
    return WF_OK;
}
