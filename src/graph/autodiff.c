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

int wf_graph_add_value(struct wf_graph *g, const char *name, int kind, int dtype, int ndim, const int64_t *shape);
int wf_graph_add_node(struct wf_graph *g, int op, const char *name);

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

int wf_graph_autodiff_stage(struct wf_graph *g, int seed, const int *diff_in, int n_diff_in) {
    if (g->loss < 0 && seed < 0)
        return wf_error(WF_ERR_INVALID, "%s: no scalar f32 output to differentiate (name the loss in `output`)",
                        g->path);
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
    {
        /* the root's gradient comes from outside (the trainer's seed, or the next stage): its only
         * contribution */
        int root = g->loss >= 0 ? g->loss : seed;
        char name[512];
        snprintf(name, sizeof name, "d%s", g->v[root].name);
        const struct wf_value x = g->v[root];
        int gi = wf_graph_add_value(g, name, WF_V_GRAD, WF_F32, x.ndim, x.shape);
        if (gi < 0) {
            wf_free(c);
            return gi;
        }
        g->v[gi].grad_of = root;
        if (g->loss >= 0) {
            g->loss_grad = gi;
        } else {
            g->seed = seed;
            g->seed_grad = gi;
        }
        c[root].v[c[root].n++] = gi;
    }
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
    int root = g->loss >= 0 ? g->loss : seed;
    if (!g->v[root].requires_grad) {
        wf_free(c);
        return wf_error(WF_ERR_INVALID, "%s: the %s '%s' does not depend on any parameter", g->path,
                        g->loss >= 0 ? "loss" : "stage output", g->v[root].name);
    }

    int n_fwd = g->n_fwd;
    for (int ni = n_fwd - 1; ni >= 0; ni--) {
        int main_out = g->n[ni].out[0];
        if (!g->v[main_out].requires_grad) continue;
        int dout = finalize(g, c, main_out);
        if (dout == -1) continue; /* does not reach the loss */
        if (dout < 0) {
            rc = dout;
            goto done;
        }
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
