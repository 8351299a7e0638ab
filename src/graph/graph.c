/*
 * graph layer: the operator registry and the graph builder — resolves a
 * parsed model's names, checks attributes, infers every shape, creates the
 * parameters. Errors name the model file, line, column and layer.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/graph.h"
#include "weft/lex.h"
#include "weft/safetensors.h"

#include "ops_int.h"

const char *wf_shape_str(const struct wf_value *v, char *buf, int n) {
    int k = snprintf(buf, (size_t)n, "%s[", v->dtype == WF_I32 ? "i32" : "f32");
    for (int i = 0; i < v->ndim && k < n; i++)
        k += snprintf(buf + k, (size_t)(n - k), "%s%lld", i ? ", " : "", (long long)v->shape[i]);
    if (k < n) snprintf(buf + k, (size_t)(n - k), "]");
    return buf;
}

int wf_graph_find(const struct wf_graph *g, const char *name) {
    if (g->names) return wf_hmap_get(g->names, name);
    for (int i = 0; i < g->nv; i++)
        if (g->v[i].name && !strcmp(g->v[i].name, name)) return i;
    return -1;
}

void wf_graph_data_inputs(const struct wf_graph *g, int *x, int *y) {
    int k = 0;
    *x = *y = -1;
    for (int i = 0; i < g->nv && k < 2; i++)
        if (g->v[i].kind == WF_V_INPUT) *(k++ ? y : x) = i;
}

int wf_graph_len_input(const struct wf_graph *g) {
    int k = 0;
    for (int i = 0; i < g->nv; i++)
        if (g->v[i].kind == WF_V_INPUT && k++ == 2) return i;
    return -1;
}

int64_t wf_graph_param_count(const struct wf_graph *g) {
    int64_t n = 0;
    for (int i = 0; i < g->n_params; i++)
        n += g->v[g->params[i]].numel;
    return n;
}

void wf_graph_free(struct wf_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_units; i++) {
        wf_graph_free(&g->units[i].body);
        wf_free(g->units[i].packed);
        wf_free(g->units[i].live_node);
    }
    wf_free(g->units);
    for (int i = 0; i < g->nv; i++)
        wf_free(g->v[i].name);
    for (int i = 0; i < g->nn; i++)
        wf_free(g->n[i].name);
    wf_free(g->v);
    wf_free(g->n);
    wf_free(g->name);
    wf_free(g->path);
    wf_hmap_free(g->names);
    wf_free(g->names);
    memset(g, 0, sizeof *g);
}

/* ---- construction helpers (also used by autodiff.c) ---- */

int wf_graph_add_value(struct wf_graph *g, const char *name, int kind, int dtype, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > WF_MAX_DIMS)
        return wf_error(WF_ERR_SHAPE, "tensor '%s' has %d dimensions (at most %d)", name, ndim, WF_MAX_DIMS);
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
        if (shape[i] <= 0 || __builtin_mul_overflow(v->numel, shape[i], &v->numel) || v->numel > WF_MAX_NUMEL) {
            wf_free(v->name);
            return wf_error(WF_ERR_SHAPE, "tensor '%s' is too large (at most %d elements)", name, WF_MAX_NUMEL);
        }
    }
    v->producer = v->alias = v->grad = v->grad_of = -1;
    /* the index keeps the first value of a name, as a scan from the start finds
     * (a gradient "dX" may take the name of a layer) */
    if (!g->names && g->nv == 0 && (g->names = wf_malloc(sizeof *g->names))) wf_hmap_init(g->names);
    if (!g->names || wf_hmap_put(g->names, v->name, g->nv) < 0) {
        wf_free(v->name);
        return wf_error(WF_ERR_NOMEM, "out of memory building the graph");
    }
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
    int internal; /* a unit's body: the region ops may be used */
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

/* ---- what an op's shape inference calls (graph.h) ---- */

int wf_infer_err(const struct wf_infer *c, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wf_error(WF_ERR_SHAPE, "%s:%d:%d: layer '%s' (%s): %s", c->path, c->line, c->col, c->layer, c->op, msg);
}

const char *wf_infer_shape(const struct wf_infer *c, int i, char *buf) { return wf_shape_str(&c->in[i], buf, 96); }

/* numel of a shape, or -1 if a dimension is not positive or the product is above WF_MAX_NUMEL */
static int64_t checked_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] <= 0 || __builtin_mul_overflow(n, shape[i], &n) || n > WF_MAX_NUMEL) return -1;
    return n;
}

static int shape_fits(const struct wf_infer *c, const char *what, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > WF_MAX_DIMS)
        return wf_infer_err(c, "%s would have %d dimensions (at most %d)", what, ndim, WF_MAX_DIMS);
    if (checked_numel(ndim, shape) >= 0) return WF_OK;
    char s[256];
    int k = snprintf(s, sizeof s, "[");
    for (int i = 0; i < ndim && k < (int)sizeof s; i++)
        k += snprintf(s + k, sizeof s - (size_t)k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < (int)sizeof s) snprintf(s + k, sizeof s - (size_t)k, "]");
    return wf_infer_err(c, "%s would be %s: dimensions must be positive and hold at most %d elements", what, s,
                        WF_MAX_NUMEL);
}

int wf_infer_param(struct wf_infer *c, const char *suffix, int ndim, const int64_t *shape, int init, double arg) {
    char name[512];
    snprintf(name, sizeof name, "%s.%s", c->layer, suffix);
    struct wf_graph *g = c->g;
    if (wf_graph_find(g, name) >= 0) return wf_infer_err(c, "parameter '%s' is already defined", name);
    int rc = shape_fits(c, name, ndim, shape);
    if (rc < 0) return rc;
    if (g->n_params >= (int)WF_ARRAY_LEN(g->params))
        return wf_infer_err(c, "too many parameters (at most %d)", (int)WF_ARRAY_LEN(g->params));
    struct wf_node *n = &g->n[c->node];
    if (n->n_in >= WF_MAX_IO) return wf_infer_err(c, "too many inputs");
    int vi = wf_graph_add_value(g, name, WF_V_PARAM, WF_F32, ndim, shape);
    if (vi < 0) return vi;
    struct wf_value *v = &g->v[vi];
    v->init = init;
    v->init_arg = arg;
    v->line = c->line;
    v->col = c->col;
    g->params[g->n_params++] = vi;
    n = &g->n[c->node];
    n->in[n->n_in++] = vi;
    return vi;
}

int wf_infer_out(struct wf_infer *c, const char *suffix, int kind, int dtype, int ndim, const int64_t *shape) {
    char name[512];
    if (suffix)
        snprintf(name, sizeof name, "%s:%s", c->layer, suffix);
    else
        snprintf(name, sizeof name, "%s", c->layer);
    struct wf_graph *g = c->g;
    int rc = shape_fits(c, suffix ? name : "the output", ndim, shape);
    if (rc < 0) return rc;
    if (g->n[c->node].n_out >= WF_MAX_IO) return wf_infer_err(c, "too many outputs");
    int vi = wf_graph_add_value(g, name, kind, dtype, ndim, shape);
    if (vi < 0) return vi;
    g->v[vi].producer = c->node;
    g->v[vi].line = c->line;
    g->v[vi].col = c->col;
    struct wf_node *n = &g->n[c->node];
    n->out[n->n_out++] = vi;
    return vi;
}

/* Checks the arguments against the op's specs (count checked by the caller). */
static int check_args(struct wf_infer *c, const struct wf_op_def *d) {
    char s[96];
    for (int i = 0; i < c->n_in; i++) {
        const struct wf_arg_spec *a = &d->arg[i < 3 ? i : 3];
        const struct wf_value *v = &c->in[i];
        unsigned dt = a->dtypes ? a->dtypes : WF_DT(WF_F32);
        if (!(dt & WF_DT(v->dtype)))
            return wf_infer_err(c, "argument %d '%s' must be %s, got %s", i + 1, v->name,
                                dt == WF_DT(WF_I32)   ? "i32"
                                : dt == WF_DT(WF_F32) ? "f32"
                                                      : "f32 or i32",
                                wf_shape_str(v, s, sizeof s));
        int hi = a->max_rank ? a->max_rank : WF_MAX_DIMS;
        if (v->ndim < a->min_rank || v->ndim > hi) {
            if (a->min_rank == hi)
                return wf_infer_err(c, "argument %d '%s' must have %d dimension%s, got %s", i + 1, v->name, hi,
                                    hi == 1 ? "" : "s", wf_shape_str(v, s, sizeof s));
            return wf_infer_err(c, "argument %d '%s' must have %d to %d dimensions, got %s", i + 1, v->name,
                                a->min_rank, hi, wf_shape_str(v, s, sizeof s));
        }
    }
    return WF_OK;
}

/* ---- graph queries for the memory planner's fusion hooks ---- */

int wf_graph_kept(const struct wf_graph *g, int v) {
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return 1;
    for (int i = 0; i < g->n_diff_in; i++)
        if (g->in_grad[i] == v || g->diff_in[i] == v) return 1;
    return v == g->loss || v == g->loss_grad || v == g->logits || v == g->labels || v == g->seed || v == g->seed_grad;
}

int wf_graph_read_only_by(const struct wf_graph *g, int nn, int v, int r1, int r2) {
    for (int k = 0; k < nn; k++) {
        if (k == r1 || k == r2) continue;
        const struct wf_node *n = &g->n[k];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == v) return 0;
    }
    for (int u = 0; u < g->nv; u++)
        if (g->v[u].alias == v) return 0;
    return !wf_graph_kept(g, v);
}

int wf_graph_backward_of(const struct wf_graph *g, int nn, int f) {
    for (int k = g->n_fwd; k < nn; k++)
        if (g->n[k].backward && g->n[k].fwd == f) return k;
    return -1;
}

static int set_attrs(struct build *b, struct wf_node *n) {
    const struct wf_op_def *info = wf_op_get(n->op);
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
            if (a->i < -(int64_t)WF_ATTR_MAX || a->i > WF_ATTR_MAX)
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' = %lld is out of range (|value| <= %d)",
                              a->key, (long long)a->i, WF_ATTR_MAX);
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
            if (!isfinite(n->af[k]))
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' must be finite", a->key);
            break;
        case WF_AT_SHAPE:
            if (a->type != WF_MV_LIST || a->n < 1 || a->n > WF_MAX_DIMS)
                return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s' expects a list of 1 to %d dimensions",
                              a->key, WF_MAX_DIMS);
            n->sn = a->n;
            for (int d = 0; d < a->n; d++) {
                int64_t v = a->list[d] == WF_DIM_B ? b->g->batch : a->list[d];
                if (v <= 0 || v > WF_MAX_NUMEL)
                    return err_at(b, a->line, a->col, WF_ERR_PARSE, "attribute '%s': dimension %d must be in [1, %d]",
                                  a->key, d + 1, WF_MAX_NUMEL);
                n->sattr[d] = v;
            }
            break;
        }
    }
    return WF_OK;
}

/* A numeric literal argument ("0.0001") is a scalar f32 constant, made once per text. */
static int is_literal(const char *a) { return (*a >= '0' && *a <= '9') || *a == '-' || *a == '+' || *a == '.'; }

static int constant(struct build *b, const char *text, int line, int col) {
    int vi = wf_graph_find(b->g, text);
    if (vi >= 0) return vi;
    char *end;
    double x = strtod(text, &end);
    if (*end || !isfinite(x) || fabs(x) > 3.4028235e38)
        return err_at(b, line, col, WF_ERR_PARSE, "constant '%s' is not a finite f32 number", text);
    vi = wf_graph_add_value(b->g, text, WF_V_CONST, WF_F32, 0, NULL);
    if (vi < 0) return vi;
    b->g->v[vi].init_arg = (double)(float)x;
    b->g->v[vi].line = line;
    b->g->v[vi].col = col;
    return vi;
}

static int build_layer(struct build *b) {
    const struct wf_mstmt *st = b->st;
    struct wf_graph *g = b->g;
    int op = b->internal ? wf_ops_find_any(st->op) : wf_op_find(st->op);
    if (op < 0) {
        char known[1024];
        wf_op_names(known, sizeof known);
        return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "unknown op '%s' (expected one of: %s)", st->op, known);
    }
    const struct wf_op_def *info = wf_op_get(op);
    if (st->n_args < info->min_in || st->n_args > info->max_in) {
        if (info->min_in == info->max_in)
            return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "%s takes %d tensor argument%s, got %d", info->name,
                          info->min_in, info->min_in > 1 ? "s" : "", st->n_args);
        return err_at(b, st->op_line, st->op_col, WF_ERR_PARSE, "%s takes %d to %d tensor arguments, got %d",
                      info->name, info->min_in, info->max_in, st->n_args);
    }
    if (wf_graph_find(g, st->name) >= 0)
        return err_at(b, st->line, st->col, WF_ERR_PARSE, "'%s' is already defined", st->name);
    int args[WF_MAX_IO];
    for (int i = 0; i < st->n_args; i++) {
        int vi = is_literal(st->args[i]) ? constant(b, st->args[i], st->arg_line[i], st->arg_col[i])
                                         : wf_graph_find(g, st->args[i]);
        if (vi < -1) return vi;
        if (vi < 0 || g->v[vi].kind == WF_V_AUX)
            return err_at(b, st->arg_line[i], st->arg_col[i], WF_ERR_PARSE, "unknown tensor '%s'%s", st->args[i],
                          " (it must be an input, a param or a layer defined above)");
        args[i] = vi;
    }
    int ni = wf_graph_add_node(g, op, st->name);
    if (ni < 0) return ni;
    b->node = ni;
    struct wf_node *n = &g->n[ni];
    n->line = st->line;
    n->col = st->col;
    struct wf_value in[WF_MAX_IO];
    for (int i = 0; i < st->n_args; i++) {
        n->in[n->n_in++] = args[i];
        in[i] = g->v[args[i]];
    }
    int rc = set_attrs(b, n);
    if (rc < 0) return rc;
    struct wf_infer c = {.g = g,
                         .node = ni,
                         .n_in = st->n_args,
                         .in = in,
                         .path = b->m->path ? b->m->path : "<model>",
                         .layer = st->name,
                         .op = info->name,
                         .line = st->line,
                         .col = st->col};
    if ((rc = check_args(&c, info)) < 0) return rc;
    if ((rc = info->infer(&c)) < 0) return rc;
    n = &g->n[ni];
    if (n->n_out < 1) return wf_infer_err(&c, "the op made no output");
    double bytes = 0;
    for (int i = 0; i < n->n_in; i++)
        bytes += (double)g->v[n->in[i]].numel * 4;
    for (int j = 0; j < n->n_out; j++)
        bytes += (double)g->v[n->out[j]].numel * 4;
    n->bytes = bytes;
    return WF_OK;
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
    if (checked_numel(st->ndim, sh) < 0)
        return err_at(b, st->line, st->col, WF_ERR_SHAPE, "'%s' is too large: at most %d elements per tensor", st->name,
                      WF_MAX_NUMEL);
    if (wf_graph_find(b->g, st->name) >= 0)
        return err_at(b, st->line, st->col, WF_ERR_PARSE, "'%s' is already defined", st->name);
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
    return wf_graph_build_ex(g, m, batch, 0);
}

int wf_graph_build_ex(struct wf_graph *g, const struct wf_model *m, int batch, int internal) {
    memset(g, 0, sizeof *g);
    g->loss = g->logits = g->labels = -1;
    g->seed = g->seed_grad = g->loss_grad = -1;
    g->batch = batch;
    struct build b = {.g = g, .m = m, .internal = internal};
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
        case WF_MS_UNIT:
            rc = internal ? err_at(&b, b.st->line, b.st->col, WF_ERR_PARSE, "units do not nest")
                          : wf_graph_build_unit(g, m, b.st);
            break;
        case WF_MS_STATE:
        case WF_MS_REGION:
        case WF_MS_NEXT:
            rc = err_at(&b, b.st->line, b.st->col, WF_ERR_PARSE, "`state`, `next` and `region` belong in a unit");
            break;
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
        if (wf_op_get(ln->op)->flags & WF_OPF_CLASSIFY) {
            g->logits = ln->in[0];
            g->labels = ln->in[1];
        }
    }
    return WF_OK;
fail:
    wf_graph_free(g);
    return rc;
}
