/*
 * graph layer: reverse-mode autodiff. Appends to a forward graph the nodes
 * of its backward pass.
 *
 * The backward is seeded at the loss, whatever scalar it is: its gradient
 * is a value of its own (g->loss_grad) that the trainer sets before the
 * backward runs (1/K for K micro-batches a step). What each op's backward
 * reads and whether it has one come from the op table (graph.h).
 *
 * A backward node B of forward node F has
 *   in[0]               the gradient of F's main output
 *   in[1 + i]           F.in[i] if the backward reads it, else -1
 *   in[1 + F.n_in + j]  F.out[j] if the backward reads it, else -1
 *   out[i]              the gradient contribution to F.in[i], -1 if not needed
 * so the memory planner and the partitioner see exactly what each backward
 * keeps alive. A value used by several nodes gets one contribution from
 * each; an `accum` node sums them (in a fixed order: reverse execution order
 * of the consumers) into its gradient.
 */
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/graph.h"
#include "weft/safetensors.h"

#include "ops_int.h"

struct contribs {
    int n;
    int v[WF_MAX_IO];
};

/* Sums the contributions to value vi into one gradient value. */
static int finalize(struct wf_graph *g, struct contribs *c, int vi) {
    struct contribs *cv = &c[vi];
    if (cv->n == 0) return -1;
    if (cv->n == 1) return cv->v[0];
    char name[512];
    snprintf(name, sizeof name, "d%s", g->v[vi].name);
    const struct wf_value x = g->v[vi]; /* a copy: adding values moves g->v */
    int gi = wf_graph_add_value(g, name, WF_V_GRAD, WF_F32, x.ndim, x.shape);
    if (gi < 0) return gi;
    char nname[520];
    snprintf(nname, sizeof nname, "%s.sum", name); /* not "d<layer>": that is the layer's backward */
    int ni = wf_graph_add_node(g, wf_ops_accum_id(), nname);
    if (ni < 0) return ni;
    struct wf_node *n = &g->n[ni];
    n->backward = 1;
    n->line = g->v[vi].line;
    n->col = g->v[vi].col;
    for (int k = 0; k < cv->n; k++)
        n->in[n->n_in++] = cv->v[k];
    n->out[n->n_out++] = gi;
    n->flops = (double)x.numel * (cv->n - 1);
    g->v[gi].producer = ni;
    g->v[gi].grad_of = vi;
    return gi;
}

int wf_graph_autodiff(struct wf_graph *g) { return wf_graph_autodiff_stage(g, -1, NULL, 0); }

static int autodiff(struct wf_graph *g, const int *roots, int n_roots, int strict, const int *diff_in, int n_diff_in);

int wf_graph_autodiff_stage(struct wf_graph *g, int seed, const int *diff_in, int n_diff_in) {
    if (g->loss < 0 && seed < 0)
        return wf_error(WF_ERR_INVALID, "%s: no scalar f32 output to differentiate (name the loss in `output`)",
                        g->path);
    int root = g->loss >= 0 ? g->loss : seed;
    return autodiff(g, &root, 1, 1, diff_in, n_diff_in);
}

int wf_graph_autodiff_seeds(struct wf_graph *g, const int *seeds, int n_seeds, const int *diff_in, int n_diff_in) {
    if (n_seeds < 1 || n_seeds > WF_MAX_IO)
        return wf_error(WF_ERR_INVALID, "%s: 1 to %d roots to differentiate, got %d", g->path, WF_MAX_IO, n_seeds);
    return autodiff(g, seeds, n_seeds, 0, diff_in, n_diff_in);
}

/* The backward of the roots (with strict, the one root must depend on a parameter or a differentiated input;
 * else roots that do not get no gradient). */
static int autodiff(struct wf_graph *g, const int *roots, int n_roots, int strict, const int *diff_in, int n_diff_in) {
    if (n_diff_in > WF_MAX_IO) return wf_error(WF_ERR_INVALID, "%s: too many differentiated inputs", g->path);
    int rc = WF_OK;
    /* indexed by forward values only, which all exist already */
    struct contribs *c = wf_calloc((size_t)g->nv + 1, sizeof *c);
    if (!c) return wf_error(WF_ERR_NOMEM, "out of memory in autodiff");

    /* Which values depend on a parameter (or on a differentiated input). */
    for (int i = 0; i < g->nv; i++)
        g->v[i].requires_grad = g->v[i].kind == WF_V_PARAM;
    for (int i = 0; i < n_diff_in; i++)
        g->v[diff_in[i]].requires_grad = 1;
    for (int ni = 0; ni < g->n_fwd; ni++) {
        struct wf_node *n = &g->n[ni];
        const struct wf_op_def *d = wf_op_get(n->op);
        int rg = 0;
        for (int i = 0; i < n->n_in; i++)
            if (!((d->no_grad >> i) & 1)) rg |= g->v[n->in[i]].requires_grad;
        if (!d->backward) rg = 0; /* no gradient flows through it: its outputs are constants */
        for (int j = 0; j < n->n_out; j++)
            if (g->v[n->out[j]].kind == WF_V_ACT) g->v[n->out[j]].requires_grad = rg;
    }
    if (strict && !g->v[roots[0]].requires_grad) {
        wf_free(c);
        return wf_error(WF_ERR_INVALID, "%s: the %s '%s' does not depend on any parameter", g->path,
                        g->loss >= 0 ? "loss" : "stage output", g->v[roots[0]].name);
    }
    /* each root's gradient comes from outside (the trainer's seed, the next stage, the unit's next step): its
     * first contribution */
    g->n_seeds = 0;
    for (int k = 0; k < n_roots; k++) {
        int root = roots[k];
        char name[512];
        snprintf(name, sizeof name, n_roots > 1 ? "d%s#%d" : "d%s", g->v[root].name, k);
        const struct wf_value x = g->v[root];
        int gi = wf_graph_add_value(g, name, WF_V_GRAD, WF_F32, x.ndim, x.shape);
        if (gi < 0) {
            wf_free(c);
            return gi;
        }
        g->v[gi].grad_of = root;
        if (!strict) {
            g->seeds[g->n_seeds] = root;
            g->seed_grads[g->n_seeds++] = gi;
        } else if (g->loss >= 0) {
            g->loss_grad = gi;
        } else {
            g->seed = root;
            g->seed_grad = gi;
        }
        if (!g->v[root].requires_grad) continue; /* written, read by nothing */
        if (c[root].n >= WF_MAX_IO) {
            wf_free(c);
            return wf_error(WF_ERR_INVALID, "%s: '%s' is a root more than %d times", g->path, x.name, WF_MAX_IO);
        }
        c[root].v[c[root].n++] = gi;
    }

    int n_fwd = g->n_fwd;
    for (int ni = n_fwd - 1; ni >= 0; ni--) {
        const struct wf_op_def *d0 = wf_op_get(g->n[ni].op);
        /* the gradient of the main output; of a MULTI op (a unit), of every output */
        int n_douts = d0->flags & WF_OPF_MULTI ? g->n[ni].n_out : 1, douts[WF_MAX_IO], any = 0;
        for (int j = 0; j < n_douts; j++) {
            int vo = g->n[ni].out[j];
            douts[j] = g->v[vo].requires_grad ? finalize(g, c, vo) : -1;
            if (douts[j] < -1) {
                rc = douts[j];
                goto done;
            }
            any |= douts[j] >= 0;
        }
        if (!any) continue; /* does not reach a root */
        int dout = douts[0];
        const struct wf_op_def *def = wf_op_get(g->n[ni].op);
        char name[512];
        snprintf(name, sizeof name, "d%s", g->n[ni].name);
        int bi = wf_graph_add_node(g, g->n[ni].op, name);
        if (bi < 0) {
            rc = bi;
            goto done;
        }
        struct wf_node *f = &g->n[ni], *b = &g->n[bi];
        b->backward = 1;
        b->fwd = ni;
        b->line = f->line;
        b->col = f->col;
        memcpy(b->ai, f->ai, sizeof b->ai);
        memcpy(b->af, f->af, sizeof b->af);
        b->sn = f->sn;
        memcpy(b->sattr, f->sattr, sizeof b->sattr);
        b->flops = def->flags & WF_OPF_GEMM ? 2 * f->flops : f->flops;
        b->bytes = f->bytes;
        unsigned in_mask = def->bwd_in, out_mask = def->bwd_out;
        b->in[b->n_in++] = dout;
        for (int i = 0; i < f->n_in; i++)
            b->in[b->n_in++] = (in_mask >> i) & 1 ? f->in[i] : -1;
        for (int j = 0; j < f->n_out; j++)
            b->in[b->n_in++] = (out_mask >> j) & 1 ? f->out[j] : -1;
        if (b->n_in + n_douts - 1 > WF_MAX_IO) {
            rc = wf_error(WF_ERR_INVALID, "%s:%d:%d: '%s' has too many inputs and outputs to differentiate", g->path,
                          f->line, f->col, f->name);
            goto done;
        }
        for (int j = 1; j < n_douts; j++) /* a MULTI op's other output gradients follow */
            b->in[b->n_in++] = douts[j];
        int fin = f->n_in;
        for (int i = 0; i < fin; i++) {
            int xi = g->n[ni].in[i];
            g->n[bi].out[g->n[bi].n_out++] = -1;
            if (!g->v[xi].requires_grad || g->v[xi].dtype != WF_F32 || ((def->no_grad >> i) & 1)) continue;
            if (c[xi].n >= WF_MAX_IO) {
                rc = wf_error(WF_ERR_INVALID, "%s:%d:%d: '%s' is used by more than %d layers", g->path, g->v[xi].line,
                              g->v[xi].col, g->v[xi].name, WF_MAX_IO);
                goto done;
            }
            char gname[600];
            snprintf(gname, sizeof gname, "d%s@%s", g->v[xi].name, g->n[ni].name);
            int64_t shape[WF_MAX_DIMS];
            memcpy(shape, g->v[xi].shape, sizeof shape);
            int gi = wf_graph_add_value(g, gname, WF_V_GRAD, WF_F32, g->v[xi].ndim, shape);
            if (gi < 0) {
                rc = gi;
                goto done;
            }
            g->v[gi].producer = bi;
            g->v[gi].grad_of = xi;
            g->v[gi].line = g->v[xi].line;
            g->v[gi].col = g->v[xi].col;
            if ((def->flags & WF_OPF_VIEW) && i == 0) g->v[gi].alias = dout;
            g->n[bi].out[i] = gi;
            c[xi].v[c[xi].n++] = gi;
        }
    }
    for (int p = 0; p < g->n_params; p++) {
        int pi = g->params[p];
        int gi = finalize(g, c, pi);
        if (gi < -1) {
            rc = gi;
            goto done;
        }
        g->v[pi].grad = gi;
        if (gi < 0) WF_LOGW("graph", "%s: parameter '%s' does not affect the loss", g->path, g->v[pi].name);
    }
    for (int i = 0; i < n_diff_in; i++) {
        int gi = finalize(g, c, diff_in[i]);
        if (gi < -1) {
            rc = gi;
            goto done;
        }
        g->diff_in[i] = diff_in[i];
        g->in_grad[i] = gi;
        g->v[diff_in[i]].grad = gi;
    }
    g->n_diff_in = n_diff_in;
done:
    wf_free(c);
    return rc;
}
