/*
 * graph layer: the operator registry and the graph builder — resolves a
 * parsed model's names, checks attributes, infers every shape, creates the
 * parameters. Errors name the model file, line, column and layer.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/graph.h"
#include "weft/safetensors.h"

#define U WF_ATTR_UNSET
#define REQ(n, t)                                                                                                      \
    { n, t, 1, 0 }
#define OPT(n, t, d)                                                                                                   \
    { n, t, 0, d }

static const struct wf_op_info ops[WF_OP_COUNT] = {
    [WF_OP_LINEAR] = {"linear", 1, 1, 2, {REQ("out", WF_AT_INT), OPT("bias", WF_AT_BOOL, 1)}, 2, 1},
    [WF_OP_MATMUL] = {"matmul", 2, 2, 0, {{0}}, 0, 1},
    [WF_OP_ADD] = {"add", 2, 2, 0, {{0}}, 0, 1},
    [WF_OP_MUL] = {"mul", 2, 2, 0, {{0}}, 0, 1},
    [WF_OP_RELU] = {"relu", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_GELU] = {"gelu", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_TANH] = {"tanh", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_SIGMOID] = {"sigmoid", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_SOFTMAX] = {"softmax", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_LOG_SOFTMAX] = {"log_softmax", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_CROSS_ENTROPY] = {"cross_entropy", 2, 2, 0, {{0}}, 0, 1},
    [WF_OP_CONV2D] = {"conv2d",
                      1,
                      1,
                      5,
                      {REQ("out", WF_AT_INT), REQ("kernel", WF_AT_INT), OPT("stride", WF_AT_INT, 1),
                       OPT("pad", WF_AT_INT, 0), OPT("bias", WF_AT_BOOL, 1)},
                      2,
                      1},
    [WF_OP_MAXPOOL2D] =
        {"maxpool2d", 1, 1, 3, {REQ("kernel", WF_AT_INT), OPT("stride", WF_AT_INT, U), OPT("pad", WF_AT_INT, 0)}, 0, 1},
    [WF_OP_AVGPOOL2D] =
        {"avgpool2d", 1, 1, 3, {REQ("kernel", WF_AT_INT), OPT("stride", WF_AT_INT, U), OPT("pad", WF_AT_INT, 0)}, 0, 1},
    [WF_OP_RESHAPE] = {"reshape", 1, 1, 1, {REQ("shape", WF_AT_SHAPE)}, 0, 1},
    [WF_OP_FLATTEN] = {"flatten", 1, 1, 0, {{0}}, 0, 1},
    [WF_OP_TRANSPOSE] = {"transpose", 1, 1, 2, {REQ("dim0", WF_AT_INT), REQ("dim1", WF_AT_INT)}, 0, 1},
    [WF_OP_LAYERNORM] = {"layernorm", 1, 1, 1, {OPT("eps", WF_AT_FLOAT, 1e-5)}, 2, 1},
    [WF_OP_DROPOUT] = {"dropout", 1, 1, 1, {OPT("p", WF_AT_FLOAT, 0.5)}, 0, 1},
    [WF_OP_EMBEDDING] = {"embedding", 1, 1, 2, {REQ("vocab", WF_AT_INT), REQ("dim", WF_AT_INT)}, 1, 1},
    [WF_OP_CONCAT] = {"concat", 2, 8, 1, {REQ("axis", WF_AT_INT)}, 0, 1},
    [WF_OP_SLICE] = {"slice", 1, 1, 3, {REQ("axis", WF_AT_INT), REQ("start", WF_AT_INT), REQ("len", WF_AT_INT)}, 0, 1},
    [WF_OP_SUM] = {"sum", 1, 1, 1, {OPT("axis", WF_AT_INT, U)}, 0, 1},
    [WF_OP_MEAN] = {"mean", 1, 1, 1, {OPT("axis", WF_AT_INT, U)}, 0, 1},
    [WF_OP_ACCUM] = {"accum", 1, WF_MAX_IO, 0, {{0}}, 0, 0},
};
_Static_assert(WF_ARRAY_LEN(ops) == WF_OP_COUNT, "op table out of step with enum wf_op");

const struct wf_op_info *wf_op_get(int op) { return op >= 0 && op < WF_OP_COUNT ? &ops[op] : NULL; }

int wf_op_find(const char *name) {
    for (int i = 0; i < WF_OP_COUNT; i++)
        if (i != WF_OP_ACCUM && ops[i].name && !strcmp(ops[i].name, name)) return i;
    return -1;
}

const char *wf_shape_str(const struct wf_value *v, char *buf, int n) {
    int k = snprintf(buf, (size_t)n, "%s[", v->dtype == WF_I32 ? "i32" : "f32");
    for (int i = 0; i < v->ndim && k < n; i++)
        k += snprintf(buf + k, (size_t)(n - k), "%s%lld", i ? ", " : "", (long long)v->shape[i]);
    if (k < n) snprintf(buf + k, (size_t)(n - k), "]");
    return buf;
}

int wf_graph_find(const struct wf_graph *g, const char *name) {
    for (int i = 0; i < g->nv; i++)
        if (g->v[i].name && !strcmp(g->v[i].name, name)) return i;
    return -1;
}

void wf_graph_data_inputs(const struct wf_graph *g, int *x, int *y) {
    *x = *y = -1;
    for (int i = 0; i < g->nv; i++) {
        if (g->v[i].kind != WF_V_INPUT) continue;
        if (g->v[i].dtype == WF_F32 && *x < 0) *x = i;
        if (g->v[i].dtype == WF_I32 && *y < 0) *y = i;
    }
}

int64_t wf_graph_param_count(const struct wf_graph *g) {
    int64_t n = 0;
    for (int i = 0; i < g->n_params; i++)
        n += g->v[g->params[i]].numel;
    return n;
}

void wf_graph_free(struct wf_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nv; i++)
        wf_free(g->v[i].name);
    for (int i = 0; i < g->nn; i++)
        wf_free(g->n[i].name);
    wf_free(g->v);
    wf_free(g->n);
    wf_free(g->name);
    wf_free(g->path);
    memset(g, 0, sizeof *g);
}

/* ---- construction helpers (also used by autodiff.c) ---- */

int wf_graph_add_value(struct wf_graph *g, const char *name, int kind, int dtype, int ndim, const int64_t *shape);
int wf_graph_add_node(struct wf_graph *g, int op, const char *name);

int wf_graph_add_value(struct wf_graph *g, const char *name, int kind, int dtype, int ndim, const int64_t *shape) {
    if (g->nv == g->vcap) {
        int cap = g->vcap ? g->vcap * 2 : 64;
        struct wf_value *nv = wf_realloc(g->v, sizeof *nv * (size_t)cap);
        if (!nv) return wf_error(WF_ERR_NOMEM, "out of memory building the graph");
        g->v = nv;
        g->vcap = cap;
    }
    struct wf_value *v = &g->v[g->nv];
    memset(v, 0, sizeof *v);
    v->name = wf_strdup(name);
    if (!v->name) return wf_error(WF_ERR_NOMEM, "out of memory building the graph");
    v->kind = kind;
    v->dtype = dtype;
    v->ndim = ndim;
    v->numel = 1;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->numel *= shape[i];
    }
    v->producer = v->alias = v->grad = v->grad_of = -1;
    return g->nv++;
}

int wf_graph_add_node(struct wf_graph *g, int op, const char *name) {
    if (g->nn == g->ncap) {
        int cap = g->ncap ? g->ncap * 2 : 64;
        struct wf_node *nn = wf_realloc(g->n, sizeof *nn * (size_t)cap);
        if (!nn) return wf_error(WF_ERR_NOMEM, "out of memory building the graph");
        g->n = nn;
        g->ncap = cap;
    }
    struct wf_node *n = &g->n[g->nn];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->fwd = -1;
    n->name = wf_strdup(name);
    if (!n->name) return wf_error(WF_ERR_NOMEM, "out of memory building the graph");
    return g->nn++;
}

/* ---- the builder ---- */

struct build {
    struct wf_graph *g;
    const struct wf_model *m;
    const struct wf_mstmt *st;
    int node;
};

static int err_at(struct build *b, int line, int col, int status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int err_at(struct build *b, int line, int col, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wf_error(status, "%s:%d:%d: %s", b->m->path ? b->m->path : "<model>", line, col, msg);
}

#define LAYER_ERR(b, ...) layer_err(b, __VA_ARGS__)
static int layer_err(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int layer_err(struct build *b, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_at(b, b->st->line, b->st->col, WF_ERR_SHAPE, "layer '%s' (%s): %s", b->st->name, b->st->op, msg);
}

static const char *vshape(const struct build *b, int vi, char *buf) { return wf_shape_str(&b->g->v[vi], buf, 96); }

/* resolve a possibly negative axis */
static int axis_of(int64_t a, int ndim) { return (int)(a < 0 ? a + ndim : a); }

static int add_param(struct build *b, const char *suffix, int ndim, const int64_t *shape, int init, double arg) {
    char name[512];
    snprintf(name, sizeof name, "%s.%s", b->st->name, suffix);
    if (wf_graph_find(b->g, name) >= 0)
        return err_at(b, b->st->line, b->st->col, WF_ERR_PARSE, "parameter '%s' of layer '%s' is already defined", name,
                      b->st->name);
    int vi = wf_graph_add_value(b->g, name, WF_V_PARAM, WF_F32, ndim, shape);
    if (vi < 0) return vi;
    struct wf_value *v = &b->g->v[vi];
    v->init = init;
    v->init_arg = arg;
    v->line = b->st->line;
    v->col = b->st->col;
    if (b->g->n_params >= (int)WF_ARRAY_LEN(b->g->params))
        return layer_err(b, "too many parameters (at most %d)", (int)WF_ARRAY_LEN(b->g->params));
    b->g->params[b->g->n_params++] = vi;
    struct wf_node *n = &b->g->n[b->node];
    n->in[n->n_in++] = vi;
    return vi;
}

static int add_out(struct build *b, const char *suffix, int kind, int dtype, int ndim, const int64_t *shape) {
    char name[512];
    if (suffix)
        snprintf(name, sizeof name, "%s:%s", b->st->name, suffix);
    else
        snprintf(name, sizeof name, "%s", b->st->name);
    int vi = wf_graph_add_value(b->g, name, kind, dtype, ndim, shape);
    if (vi < 0) return vi;
    b->g->v[vi].producer = b->node;
    b->g->v[vi].line = b->st->line;
    b->g->v[vi].col = b->st->col;
    struct wf_node *n = &b->g->n[b->node];
    n->out[n->n_out++] = vi;
    return vi;
}

static int need_f32(struct build *b, int vi, const char *what) {
    char s[96];
    if (b->g->v[vi].dtype != WF_F32)
        return LAYER_ERR(b, "%s '%s' must be f32, got %s", what, b->g->v[vi].name, vshape(b, vi, s));
    return WF_OK;
}

/* Infers the layer's output shape, creates its params and saved values. */
static int infer(struct build *b) {
    struct wf_graph *g = b->g;
    struct wf_node *n = &g->n[b->node];
    const struct wf_value xcopy = g->v[n->in[0]]; /* adding params and outputs moves g->v */
    const struct wf_value *x = &xcopy;
    int64_t sh[WF_MAX_DIMS];
    char s1[96], s2[96];
    int nd = x->ndim, rc;
    memcpy(sh, x->shape, sizeof sh);
    for (int i = 0; i < n->n_in; i++) {
        int want_i32 = (n->op == WF_OP_EMBEDDING) || (n->op == WF_OP_CROSS_ENTROPY && i == 1);
        if (want_i32 && g->v[n->in[i]].dtype != WF_I32)
            return LAYER_ERR(b, "argument %d '%s' must be i32, got %s", i + 1, g->v[n->in[i]].name,
                             vshape(b, n->in[i], s1));
        if (!want_i32 && (rc = need_f32(b, n->in[i], i ? "argument" : "input")) < 0) return rc;
    }
    switch (n->op) {
    case WF_OP_LINEAR: {
        int64_t C = x->shape[nd - 1], OC = n->ai[0];
        if (OC <= 0) return LAYER_ERR(b, "out must be positive, got %lld", (long long)OC);
        int64_t ws[2] = {OC, C};
        if ((rc = add_param(b, "weight", 2, ws, WF_INIT_FANIN_UNIFORM, (double)C)) < 0) return rc;
        if (n->ai[1] && (rc = add_param(b, "bias", 1, &OC, WF_INIT_FANIN_UNIFORM, (double)C)) < 0) return rc;
        sh[nd - 1] = OC;
        n->flops = 2.0 * (double)(x->numel / C) * (double)C * (double)OC;
        break;
    }
    case WF_OP_MATMUL: {
        const struct wf_value *y = &g->v[n->in[1]];
        if (nd < 2 || y->ndim < 2) return LAYER_ERR(b, "both arguments need at least 2 dimensions");
        int64_t K = x->shape[nd - 1], K2 = y->shape[y->ndim - 2];
        if (K != K2)
            return LAYER_ERR(b, "inner dimensions differ: %s @ %s", vshape(b, n->in[0], s1), vshape(b, n->in[1], s2));
        if (y->ndim > 2) {
            if (y->ndim != nd) return LAYER_ERR(b, "batched matmul needs equal ranks");
            for (int i = 0; i < nd - 2; i++)
                if (x->shape[i] != y->shape[i])
                    return LAYER_ERR(b, "batch dimensions differ: %s @ %s", vshape(b, n->in[0], s1),
                                     vshape(b, n->in[1], s2));
        }
        sh[nd - 1] = y->shape[y->ndim - 1];
        n->flops = 2.0 * (double)(x->numel) * (double)sh[nd - 1];
        break;
    }
    case WF_OP_ADD:
    case WF_OP_MUL: {
        const struct wf_value *y = &g->v[n->in[1]];
        int ok = y->ndim <= nd;
        for (int i = 0; ok && i < y->ndim; i++)
            ok = y->shape[y->ndim - 1 - i] == x->shape[nd - 1 - i];
        if (!ok)
            return LAYER_ERR(b, "second argument %s must match the trailing dimensions of %s", vshape(b, n->in[1], s1),
                             vshape(b, n->in[0], s2));
        n->flops = (double)x->numel;
        break;
    }
    case WF_OP_RELU:
    case WF_OP_GELU:
    case WF_OP_TANH:
    case WF_OP_SIGMOID:
    case WF_OP_SOFTMAX:
    case WF_OP_LOG_SOFTMAX: n->flops = (double)x->numel * 4; break;
    case WF_OP_CROSS_ENTROPY: {
        const struct wf_value *y = &g->v[n->in[1]];
        if (y->numel * x->shape[nd - 1] != x->numel)
            return LAYER_ERR(b, "labels %s do not match logits %s (want one label per row)", vshape(b, n->in[1], s1),
                             vshape(b, n->in[0], s2));
        if ((rc = add_out(b, NULL, WF_V_ACT, WF_F32, 0, sh)) < 0) return rc;
        if ((rc = add_out(b, "probs", WF_V_AUX, WF_F32, nd, x->shape)) < 0) return rc;
        n->flops = (double)x->numel * 6;
        return WF_OK;
    }
    case WF_OP_CONV2D: {
        if (nd != 4) return LAYER_ERR(b, "input must be 4-d (N, C, H, W), got %s", vshape(b, n->in[0], s1));
        int64_t OC = n->ai[0], k = n->ai[1], st = n->ai[2], p = n->ai[3];
        if (OC <= 0 || k <= 0 || st <= 0 || p < 0) return LAYER_ERR(b, "out, kernel, stride must be > 0, pad >= 0");
        int64_t OH = (x->shape[2] + 2 * p - k) / st + 1, OW = (x->shape[3] + 2 * p - k) / st + 1;
        if (x->shape[2] + 2 * p < k || x->shape[3] + 2 * p < k || OH <= 0 || OW <= 0)
            return LAYER_ERR(b, "kernel %lld does not fit input %s with pad %lld", (long long)k,
                             vshape(b, n->in[0], s1), (long long)p);
        int64_t ws[4] = {OC, x->shape[1], k, k};
        double fanin = (double)(x->shape[1] * k * k);
        if ((rc = add_param(b, "weight", 4, ws, WF_INIT_FANIN_UNIFORM, fanin)) < 0) return rc;
        if (n->ai[4] && (rc = add_param(b, "bias", 1, &OC, WF_INIT_FANIN_UNIFORM, fanin)) < 0) return rc;
        sh[1] = OC;
        sh[2] = OH;
        sh[3] = OW;
        n->flops = 2.0 * (double)(x->shape[0] * OC * OH * OW) * fanin;
        break;
    }
    case WF_OP_MAXPOOL2D:
    case WF_OP_AVGPOOL2D: {
        if (nd != 4) return LAYER_ERR(b, "input must be 4-d (N, C, H, W), got %s", vshape(b, n->in[0], s1));
        if (n->ai[1] == WF_ATTR_UNSET) n->ai[1] = n->ai[0];
        int64_t k = n->ai[0], st = n->ai[1], p = n->ai[2];
        if (k <= 0 || st <= 0 || p < 0 || 2 * p > k)
            return LAYER_ERR(b, "need kernel, stride > 0 and 0 <= pad <= kernel/2");
        sh[2] = (x->shape[2] + 2 * p - k) / st + 1;
        sh[3] = (x->shape[3] + 2 * p - k) / st + 1;
        if (x->shape[2] + 2 * p < k || x->shape[3] + 2 * p < k)
            return LAYER_ERR(b, "kernel %lld does not fit input %s", (long long)k, vshape(b, n->in[0], s1));
        if ((rc = add_out(b, NULL, WF_V_ACT, WF_F32, 4, sh)) < 0) return rc;
        if (n->op == WF_OP_MAXPOOL2D && (rc = add_out(b, "argmax", WF_V_AUX, WF_I32, 4, sh)) < 0) return rc;
        n->flops = (double)(sh[0] * sh[1] * sh[2] * sh[3] * k * k);
        return WF_OK;
    }
    case WF_OP_RESHAPE:
    case WF_OP_FLATTEN: {
        if (n->op == WF_OP_FLATTEN) {
            if (nd < 2) return LAYER_ERR(b, "flatten needs at least 2 dimensions, got %s", vshape(b, n->in[0], s1));
            nd = 2;
            sh[1] = x->numel / x->shape[0];
        } else {
            int64_t p = 1;
            nd = n->sn;
            for (int i = 0; i < nd; i++) {
                sh[i] = n->sattr[i];
                p *= sh[i];
            }
            if (p != x->numel)
                return LAYER_ERR(b, "cannot reshape %s (%lld elements) to %lld elements", vshape(b, n->in[0], s1),
                                 (long long)x->numel, (long long)p);
        }
        if ((rc = add_out(b, NULL, WF_V_ACT, WF_F32, nd, sh)) < 0) return rc;
        g->v[rc].alias = n->in[0];
        return WF_OK;
    }
    case WF_OP_TRANSPOSE: {
        int a0 = axis_of(n->ai[0], nd), a1 = axis_of(n->ai[1], nd);
        if (a0 < 0 || a0 >= nd || a1 < 0 || a1 >= nd)
            return LAYER_ERR(b, "dims %lld, %lld out of range for %s", (long long)n->ai[0], (long long)n->ai[1],
                             vshape(b, n->in[0], s1));
        n->ai[0] = WF_MIN(a0, a1);
        n->ai[1] = WF_MAX(a0, a1);
        int64_t t = sh[a0];
        sh[a0] = sh[a1];
        sh[a1] = t;
        break;
    }
    case WF_OP_LAYERNORM: {
        int64_t C = x->shape[nd - 1], R = x->numel / C;
        if ((rc = add_param(b, "weight", 1, &C, WF_INIT_ONES, 0)) < 0) return rc;
        if ((rc = add_param(b, "bias", 1, &C, WF_INIT_ZEROS, 0)) < 0) return rc;
        if ((rc = add_out(b, NULL, WF_V_ACT, WF_F32, nd, sh)) < 0) return rc;
        if ((rc = add_out(b, "mean", WF_V_AUX, WF_F32, 1, &R)) < 0) return rc;
        if ((rc = add_out(b, "rstd", WF_V_AUX, WF_F32, 1, &R)) < 0) return rc;
        n->flops = (double)x->numel * 8;
        return WF_OK;
    }
    case WF_OP_DROPOUT: {
        if (!(n->af[0] >= 0 && n->af[0] < 1)) return LAYER_ERR(b, "p must be in [0, 1), got %g", n->af[0]);
        if ((rc = add_out(b, NULL, WF_V_ACT, WF_F32, nd, sh)) < 0) return rc;
        if ((rc = add_out(b, "mask", WF_V_AUX, WF_F32, nd, sh)) < 0) return rc;
        n->flops = (double)x->numel;
        return WF_OK;
    }
    case WF_OP_EMBEDDING: {
        int64_t V = n->ai[0], D = n->ai[1];
        if (V <= 0 || D <= 0) return LAYER_ERR(b, "vocab and dim must be positive");
        if (nd >= WF_MAX_DIMS) return LAYER_ERR(b, "ids have too many dimensions");
        int64_t ws[2] = {V, D};
        if ((rc = add_param(b, "weight", 2, ws, WF_INIT_NORMAL, 1.0)) < 0) return rc;
        sh[nd++] = D;
        break;
    }
    case WF_OP_CONCAT: {
        int a = axis_of(n->ai[0], nd);
        if (a < 0 || a >= nd) return LAYER_ERR(b, "axis %lld out of range", (long long)n->ai[0]);
        n->ai[0] = a;
        sh[a] = 0;
        for (int i = 0; i < n->n_in; i++) {
            const struct wf_value *y = &g->v[n->in[i]];
            int ok = y->ndim == nd;
            for (int d = 0; ok && d < nd; d++)
                ok = d == a || y->shape[d] == x->shape[d];
            if (!ok)
                return LAYER_ERR(b, "argument %d %s does not match %s outside axis %d", i + 1, vshape(b, n->in[i], s1),
                                 vshape(b, n->in[0], s2), a);
            sh[a] += y->shape[a];
        }
        break;
    }
    case WF_OP_SLICE: {
        int a = axis_of(n->ai[0], nd);
        if (a < 0 || a >= nd) return LAYER_ERR(b, "axis %lld out of range", (long long)n->ai[0]);
        n->ai[0] = a;
        if (n->ai[1] < 0 || n->ai[2] <= 0 || n->ai[1] + n->ai[2] > x->shape[a])
            return LAYER_ERR(b, "slice [%lld, %lld) outside axis %d of %s", (long long)n->ai[1],
                             (long long)(n->ai[1] + n->ai[2]), a, vshape(b, n->in[0], s1));
        sh[a] = n->ai[2];
        break;
    }
    case WF_OP_SUM:
    case WF_OP_MEAN: {
        if (n->ai[0] == WF_ATTR_UNSET) {
            nd = 0;
        } else {
            int a = axis_of(n->ai[0], nd);
            if (a < 0 || a >= nd) return LAYER_ERR(b, "axis %lld out of range", (long long)n->ai[0]);
            n->ai[0] = a;
            for (int d = a; d < nd - 1; d++)
                sh[d] = sh[d + 1];
            nd--;
        }
        n->flops = (double)x->numel;
        break;
    }
    default: return LAYER_ERR(b, "op cannot appear in a model file");
    }
    rc = add_out(b, NULL, WF_V_ACT, WF_F32, nd, sh);
    return rc < 0 ? rc : WF_OK;
}

static int set_attrs(struct build *b, struct wf_node *n) {
    const struct wf_op_info *info = &ops[n->op];
    const struct wf_mstmt *st = b->st;
    for (int i = 0; i < st->n_attrs; i++) {
        const struct wf_mattr *a = &st->attrs[i];
        int k = 0;
        while (k < info->n_attr && strcmp(info->attr[k].name, a->key))
            k++;
        if (k == info->n_attr) {
            char known[256] = "";
            for (int j = 0; j < info->n_attr; j++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", j ? ", " : "",
                         info->attr[j].name);
            return err_at(b, a->line, a->col, WF_ERR_PARSE, "%s has no attribute '%s' (expected %s)", info->name,
                          a->key, info->n_attr ? known : "none");
        }
    }
    for (int k = 0; k < info->n_attr; k++) {
        const struct wf_attr_spec *sp = &info->attr[k];
        const struct wf_mattr *a = wf_mstmt_attr(st, sp->name);
        if (!a) {
            if (sp->required)
                return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "%s needs attribute '%s'", info->name,
                              sp->name);
            n->ai[k] = sp->def == (double)WF_ATTR_UNSET ? WF_ATTR_UNSET : (int64_t)sp->def;
            n->af[k] = sp->def;
            continue;
        }
        switch (sp->type) {
        case WF_AT_INT:
            if (a->type != WF_MV_INT)
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' expects an integer", a->key);
            n->ai[k] = a->i;
            break;
        case WF_AT_BOOL:
            if (a->type != WF_MV_BOOL)
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' expects true or false", a->key);
            n->ai[k] = a->i;
            break;
        case WF_AT_FLOAT:
            if (a->type != WF_MV_FLOAT && a->type != WF_MV_INT)
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' expects a number", a->key);
            n->af[k] = a->type == WF_MV_INT ? (double)a->i : a->f;
            break;
        case WF_AT_SHAPE:
            if (a->type != WF_MV_LIST || a->n < 1 || a->n > WF_MAX_DIMS)
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' expects a list of 1 to %d dimensions",
                              a->key, WF_MAX_DIMS);
            n->sn = a->n;
            for (int d = 0; d < a->n; d++) {
                int64_t v = a->list[d] == WF_DIM_B ? b->g->batch : a->list[d];
                if (v <= 0)
                    return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s': dimension %d must be positive",
                                  a->key, d + 1);
                n->sattr[d] = v;
            }
            break;
        }
    }
    return WF_OK;
}

static int build_layer(struct build *b) {
    const struct wf_mstmt *st = b->st;
    struct wf_graph *g = b->g;
    int op = wf_op_find(st->op);
    if (op < 0) {
        char known[512] = "";
        for (int i = 0; i < WF_OP_COUNT; i++)
            if (i != WF_OP_ACCUM)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", ops[i].name);
        return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "unknown op '%s' (expected one of: %s)", st->op, known);
    }
    const struct wf_op_info *info = &ops[op];
    if (st->n_args < info->min_in || st->n_args > info->max_in) {
        if (info->min_in == info->max_in)
            return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "%s takes %d tensor argument%s, got %d", info->name,
                          info->min_in, info->min_in > 1 ? "s" : "", st->n_args);
        return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "%s takes %d to %d tensor arguments, got %d",
                      info->name, info->min_in, info->max_in, st->n_args);
    }
    int ni = wf_graph_add_node(g, op, st->name);
    if (ni < 0) return ni;
    b->node = ni;
    struct wf_node *n = &g->n[ni];
    n->line = st->line;
    n->col = st->col;
    for (int i = 0; i < st->n_args; i++) {
        int vi = wf_graph_find(g, st->args[i]);
        if (vi < 0 || g->v[vi].kind == WF_V_AUX)
            return err_at(b, st->arg_line[i], st->arg_col[i], WF_ERR_PARSE, "unknown tensor '%s'%s", st->args[i],
                          " (it must be an input, a param or a layer defined above)");
        n->in[n->n_in++] = vi;
    }
    int rc = set_attrs(b, n);
    if (rc < 0) return rc;
    return infer(b);
}

static int build_decl(struct build *b) {
    const struct wf_mstmt *st = b->st;
    int64_t sh[WF_MAX_DIMS];
    if (st->ndim > WF_MAX_DIMS)
        return err_at(b, st->line, st->col, WF_ERR_PARSE, "'%s' has %d dimensions, at most %d are supported", st->name,
                      st->ndim, WF_MAX_DIMS);
    for (int i = 0; i < st->ndim; i++) {
        sh[i] = st->dims[i] == WF_DIM_B ? b->g->batch : st->dims[i];
        if (sh[i] <= 0)
            return err_at(b, st->line, st->col, WF_ERR_PARSE, "'%s': dimension %d must be positive", st->name, i + 1);
    }
    if (st->kind == WF_MS_PARAM && st->dtype != WF_F32)
        return err_at(b, st->line, st->col, WF_ERR_PARSE, "param '%s' must be f32", st->name);
    int vi =
        wf_graph_add_value(b->g, st->name, st->kind == WF_MS_INPUT ? WF_V_INPUT : WF_V_PARAM, st->dtype, st->ndim, sh);
    if (vi < 0) return vi;
    struct wf_value *v = &b->g->v[vi];
    v->line = st->line;
    v->col = st->col;
    if (st->kind == WF_MS_INPUT) return WF_OK;
    for (int i = 0; i < st->ndim; i++)
        if (st->dims[i] == WF_DIM_B)
            return err_at(b, st->line, st->col, WF_ERR_PARSE, "param '%s' cannot depend on the batch size B", st->name);
    v->init = WF_INIT_NORMAL;
    v->init_arg = 0.02;
    for (int i = 0; i < st->n_attrs; i++) {
        const struct wf_mattr *a = &st->attrs[i];
        if (!strcmp(a->key, "init") && a->type == WF_MV_IDENT) {
            if (!strcmp(a->s, "normal"))
                v->init = WF_INIT_NORMAL;
            else if (!strcmp(a->s, "zeros"))
                v->init = WF_INIT_ZEROS;
            else if (!strcmp(a->s, "ones"))
                v->init = WF_INIT_ONES;
            else if (!strcmp(a->s, "uniform"))
                v->init = WF_INIT_FANIN_UNIFORM;
            else
                return err_at(b, a->line, a->col, WF_ERR_PARSE,
                              "unknown init '%s' (expected normal, uniform, zeros or ones)", a->s);
        } else if (!strcmp(a->key, "std") && (a->type == WF_MV_FLOAT || a->type == WF_MV_INT)) {
            v->init_arg = a->type == WF_MV_FLOAT ? a->f : (double)a->i;
        } else {
            return err_at(b, a->line, a->col, WF_ERR_PARSE,
                          "param attribute '%s' not understood (expected init=normal|uniform|zeros|ones, std=NUMBER)",
                          a->key);
        }
    }
    if (v->init == WF_INIT_FANIN_UNIFORM) v->init_arg = st->ndim > 1 ? (double)(v->numel / sh[0]) : (double)sh[0];
    if (b->g->n_params >= (int)WF_ARRAY_LEN(b->g->params))
        return err_at(b, st->line, st->col, WF_ERR_INVALID, "too many parameters");
    b->g->params[b->g->n_params++] = vi;
    return WF_OK;
}

int wf_graph_build(struct wf_graph *g, const struct wf_model *m, int batch) {
    memset(g, 0, sizeof *g);
    g->loss = g->logits = g->labels = -1;
    g->seed = g->seed_grad = -1;
    g->batch = batch;
    struct build b = {.g = g, .m = m};
    int rc = WF_OK;
    if (batch <= 0) return wf_error(WF_ERR_INVALID, "batch size must be positive, got %d", batch);
    g->path = wf_strdup(m->path ? m->path : "<model>");
    g->name = wf_strdup(m->name ? m->name : "model");
    if (!g->path || !g->name) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->n && rc == WF_OK; i++) {
        b.st = &m->st[i];
        switch (b.st->kind) {
        case WF_MS_INPUT:
        case WF_MS_PARAM: rc = build_decl(&b); break;
        case WF_MS_LAYER: rc = build_layer(&b); break;
        case WF_MS_OUTPUT:
            for (int k = 0; k < b.st->n_args && rc == WF_OK; k++) {
                int vi = wf_graph_find(g, b.st->args[k]);
                if (vi < 0)
                    rc = err_at(&b, b.st->arg_line[k], b.st->arg_col[k], WF_ERR_PARSE, "unknown tensor '%s'",
                                b.st->args[k]);
                else if (g->n_outputs >= WF_MAX_IO)
                    rc = err_at(&b, b.st->line, b.st->col, WF_ERR_PARSE, "too many outputs (at most %d)", WF_MAX_IO);
                else
                    g->outputs[g->n_outputs++] = vi;
            }
            break;
        }
    }
    if (rc < 0) goto fail;
    g->n_fwd = g->nn;
    if (g->n_outputs == 0) {
        rc = wf_error(WF_ERR_PARSE, "%s: no `output` statement (name the loss, e.g. `output loss`)", g->path);
        goto fail;
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const struct wf_value *v = &g->v[g->outputs[i]];
        if (v->ndim == 0 && v->dtype == WF_F32) {
            g->loss = g->outputs[i];
            break;
        }
    }
    if (g->loss >= 0 && g->v[g->loss].producer >= 0) {
        const struct wf_node *ln = &g->n[g->v[g->loss].producer];
        if (ln->op == WF_OP_CROSS_ENTROPY) {
            g->logits = ln->in[0];
            g->labels = ln->in[1];
        }
    }
    return WF_OK;
fail:
    wf_graph_free(g);
    return rc;
}
