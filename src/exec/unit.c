/*
 * exec layer: recurrent units (docs/recurrent.md). A unit's body graph is
 * planned once and run by an executor of its own, once per time step:
 * forward in time order, each step in an arena of its own (training keeps
 * every step's values for the backward; evaluation reuses one), backward
 * in reverse, the parameters' gradients summed over the steps in that
 * fixed order. The backward of the body is autodiff's, from the next
 * states and the per-step outputs (wf_graph_autodiff_seeds).
 *
 * Skip regions: at each step the samples whose condition holds (t <
 * length, when[b, t] != 0) are the step's rows; the region's nodes run on
 * those rows packed at the front of their values (the executor cuts the
 * values' leading dimension to their number), and not at all when there
 * are none. With no_skip every row is computed and the end nodes mask.
 */
#include <string.h>

#include "weft/core.h"
#include "weft/exec.h"

#include "exec_int.h"

#define WF_UNIT_SETS 64

struct wf_unit_rt {
    struct wf_unit *def; /* in the outer program's graph; its body moved into ex.prog */
    struct wf_exec ex;   /* the body */
    int T, B, train;
    /* the steps' arenas (training: T, one per step; evaluation: 1), one set per arena of the outer executor: a
     * pipeline stage has several micro-batches between their forward and backward */
    int n_sets;
    unsigned char *set_key[WF_UNIT_SETS];
    unsigned char **set_arenas[WF_UNIT_SETS];
    unsigned char **arenas; /* the set in use */
    size_t arena_bytes;
    float *grads; /* the body's parameter gradients of one step */
    int *rows, *pos;
    unsigned char *keep;
    struct wf_step_rows step;
    int64_t *full_numel; /* per body value: numel at B rows */
    float *carry;        /* the states between two steps */
    uint64_t live, computed, total;
};

/* The step's rows from the lengths and the mask; shapes of packed values cut to them. */
static void step_rows(struct wf_unit_rt *u, const struct wf_run *r, int t, int no_skip, int count) {
    const struct wf_unit *d = u->def;
    const int32_t *len = d->length >= 0 ? wf_run_ptr(r, r->n->in[d->length]) : NULL;
    const int32_t *when = d->when >= 0 ? wf_run_ptr(r, r->n->in[d->when]) : NULL;
    int n = 0, live = 0;
    for (int b = 0; b < u->B; b++) { /* the live rows first, in sample order */
        int k = (!len || t < len[b]) && (!when || when[(size_t)b * (size_t)u->T + (size_t)t] != 0);
        u->keep[b] = (unsigned char)k;
        live += k;
        u->pos[b] = -1;
        if (k || !d->region) {
            u->pos[b] = n;
            u->rows[n++] = b;
        }
    }
    /* skipping off: then the others, so that every live row stands where it stands with skipping on (the
     * cells' rows do not depend on the rows after them: kernels.h) */
    for (int b = 0; no_skip && d->region && b < u->B; b++)
        if (!u->keep[b]) {
            u->pos[b] = n;
            u->rows[n++] = b;
        }
    u->step = (struct wf_step_rows){.n = n, .batch = u->B, .rows = u->rows, .pos = u->pos, .keep = u->keep};
    struct wf_graph *g = &u->ex.prog.g;
    for (int v = 0; v < g->nv; v++)
        if (d->packed[v] && g->v[v].ndim) {
            int64_t w = u->full_numel[v] / u->B;
            g->v[v].shape[0] = n ? n : 1; /* a zero-row step runs none of their nodes */
            g->v[v].numel = (n ? n : 1) * w;
        }
    if (d->region && count) {
        u->live += (uint64_t)live;
        u->computed += (uint64_t)n;
        u->total += (uint64_t)u->B;
    }
}

static void full_shapes(struct wf_unit_rt *u) {
    struct wf_graph *g = &u->ex.prog.g;
    for (int v = 0; v < g->nv; v++)
        if (u->def->packed[v] && g->v[v].ndim) {
            g->v[v].shape[0] = u->B;
            g->v[v].numel = u->full_numel[v];
        }
}

static float *bptr(struct wf_unit_rt *u, int v) { return wf_exec_ptr(&u->ex, v); }

/* The arenas of the outer arena in use (made at its first forward). */
static int use_set(struct wf_unit_rt *u, const struct wf_exec *outer, const char *name) {
    for (int i = 0; i < u->n_sets; i++)
        if (u->set_key[i] == outer->arena) {
            u->arenas = u->set_arenas[i];
            return WF_OK;
        }
    if (u->n_sets == WF_UNIT_SETS)
        return wf_error(WF_ERR_INTERNAL, "unit '%s': more than %d activation slots", name, WF_UNIT_SETS);
    int n = u->train ? u->T : 1;
    unsigned char **a = wf_calloc((size_t)n, sizeof *a);
    if (!a) return wf_error(WF_ERR_NOMEM, "out of memory for unit '%s'", name);
    u->set_key[u->n_sets] = outer->arena;
    u->set_arenas[u->n_sets++] = a;
    for (int t = 0; t < n; t++)
        if (!(a[t] = wf_aalloc(u->arena_bytes ? u->arena_bytes : 64)))
            return wf_error(WF_ERR_NOMEM, "out of memory for unit '%s' over %d steps", name, u->T);
    u->arenas = a;
    return WF_OK;
}

/* Row b of step t of a [B, T, w] tensor. */
static float *at(float *x, int b, int t, int T, long w) { return x + ((size_t)b * (size_t)T + (size_t)t) * (size_t)w; }

static long width(const struct wf_graph *g, int v) { return (long)(g->v[v].numel / g->v[v].shape[0]); }

static int unit_forward(struct wf_unit_rt *u, const struct wf_run *r, const struct wf_exec *outer) {
    const struct wf_unit *d = u->def;
    struct wf_graph *bg = &u->ex.prog.g;
    int T = u->T, B = u->B, rc = WF_OK;
    float *over = wf_run_ptr(r, r->n->in[0]);
    long w_in = width(bg, d->step_in);
    u->ex.params = outer->params + outer->prog.offset[r->n->in[d->n_in_fixed]];
    if ((rc = use_set(u, outer, r->n->name)) < 0) return rc;
    for (int t = 0; t < T && rc == WF_OK; t++) {
        u->ex.arena = u->arenas[u->train ? t : 0];
        step_rows(u, r, t, outer->no_skip, 1);
        /* the states: zeros or from= at t = 0, else the last step's next values, through `carry` (with one
         * arena a state input may share bytes with another state's last next value) */
        if (t > 0) {
            unsigned char *cur = u->ex.arena;
            u->ex.arena = u->arenas[u->train ? t - 1 : 0];
            for (int k = 0, off = 0; k < d->n_states; off += (int)bg->v[d->state_next[k]].numel, k++)
                memcpy(u->carry + off, bptr(u, d->state_next[k]),
                       sizeof(float) * (size_t)bg->v[d->state_next[k]].numel);
            u->ex.arena = cur;
        }
        for (int k = 0, off = 0; k < d->n_states; off += (int)bg->v[d->state_in[k]].numel, k++) {
            float *s = bptr(u, d->state_in[k]);
            size_t n = (size_t)bg->v[d->state_in[k]].numel;
            if (t > 0)
                memcpy(s, u->carry + off, sizeof(float) * n);
            else if (d->state_init[k] >= 0)
                memcpy(s, wf_run_ptr(r, r->n->in[d->state_init[k]]), sizeof(float) * n);
            else
                memset(s, 0, sizeof(float) * n);
        }
        /* the step's slice after the states: with one arena (evaluation) the slice may share bytes with the
         * last step's next state, which is dead once copied */
        float *x = bptr(u, d->step_in);
        for (int b = 0; b < B; b++)
            memcpy(x + (size_t)b * (size_t)w_in, at(over, b, t, T, w_in), sizeof(float) * (size_t)w_in);
        u->ex.step = &u->step;
        if ((rc = wf_exec_run(&u->ex, 0, bg->n_fwd)) < 0) break;
        for (int j = 0; j < d->n_outs; j++) {
            const float *o = bptr(u, d->out_body[j]);
            long w = width(bg, d->out_body[j]);
            float *dst = wf_run_ptr(r, r->n->out[j]);
            for (int b = 0; b < B; b++)
                memcpy(at(dst, b, t, T, w), o + (size_t)b * (size_t)w, sizeof(float) * (size_t)w);
        }
    }
    for (int k = 0; rc == WF_OK && k < d->n_states; k++) {
        float *dst = wf_run_ptr(r, r->n->out[d->n_outs + k]);
        if (dst) memcpy(dst, bptr(u, d->state_next[k]), sizeof(float) * (size_t)bg->v[d->state_next[k]].numel);
    }
    full_shapes(u);
    return rc;
}

/* The gradient the outer backward node holds for output j of the unit (-1: none). */
static int dout_of(const struct wf_run *r, int j) {
    if (j == 0) return r->b->in[0];
    return r->b->in[1 + r->n->n_in + r->n->n_out + (j - 1)];
}

static int unit_backward(struct wf_unit_rt *u, const struct wf_run *r, const struct wf_exec *outer) {
    const struct wf_unit *d = u->def;
    struct wf_graph *bg = &u->ex.prog.g;
    int T = u->T, B = u->B, rc = WF_OK;
    if (!u->train) return wf_error(WF_ERR_INTERNAL, "unit '%s': backward of an evaluation program", r->n->name);
    u->ex.params = outer->params + outer->prog.offset[r->n->in[d->n_in_fixed]];
    u->ex.grads = u->grads;
    if ((rc = use_set(u, outer, r->n->name)) < 0) return rc;
    float *dover = wf_run_ptr(r, r->b->out[0]);
    long w_in = width(bg, d->step_in);
    /* the parameters' gradients: summed over the steps, from T - 1 down to 0 */
    int np = r->n->n_in - d->n_in_fixed;
    for (int p = 0; p < np; p++) {
        float *gp = wf_run_ptr(r, r->b->out[d->n_in_fixed + p]);
        if (gp) memset(gp, 0, sizeof(float) * (size_t)r->g->v[r->n->in[d->n_in_fixed + p]].numel);
    }
    int n_fwd = bg->n_fwd, nn = u->ex.prog.n_exec;
    for (int t = T - 1; t >= 0 && rc == WF_OK; t--) {
        u->ex.arena = u->arenas[t];
        step_rows(u, r, t, outer->no_skip, 0);
        /* the roots' gradients: the next states' from step t + 1 (or the final states'), the outputs' at t */
        for (int k = 0; k < bg->n_seeds; k++) {
            float *sg = bptr(u, bg->seed_grads[k]);
            size_t n = (size_t)bg->v[bg->seed_grads[k]].numel;
            if (k < d->n_states) {
                const float *src = NULL;
                if (t == T - 1) {
                    int dv = dout_of(r, d->n_outs + k);
                    src = dv >= 0 ? wf_run_ptr(r, dv) : NULL;
                } else {
                    unsigned char *cur = u->ex.arena;
                    u->ex.arena = u->arenas[t + 1];
                    src = bptr(u, bg->in_grad[1 + k]);
                    u->ex.arena = cur;
                }
                if (src)
                    memcpy(sg, src, sizeof(float) * n);
                else
                    memset(sg, 0, sizeof(float) * n);
            } else {
                int j = k - d->n_states, dv = dout_of(r, j);
                const float *src = dv >= 0 ? wf_run_ptr(r, dv) : NULL;
                long w = width(bg, d->out_body[j]);
                for (int b = 0; b < B; b++)
                    if (src)
                        memcpy(sg + (size_t)b * (size_t)w, at((float *)src, b, t, T, w), sizeof(float) * (size_t)w);
                    else
                        memset(sg + (size_t)b * (size_t)w, 0, sizeof(float) * (size_t)w);
            }
        }
        if (u->step.n == 0) memset(u->grads, 0, sizeof(float) * (size_t)u->ex.prog.n_param_floats);
        u->ex.step = &u->step;
        if ((rc = wf_exec_run(&u->ex, n_fwd, nn)) < 0) break;
        if (u->step.n > 0 || !d->region)
            for (int p = 0; p < np; p++) {
                float *gp = wf_run_ptr(r, r->b->out[d->n_in_fixed + p]);
                int bp = bg->params[p];
                if (!gp || bg->v[bp].grad < 0) continue;
                const float *gs = u->grads + u->ex.prog.offset[bp];
                for (int64_t i = 0; i < bg->v[bp].numel; i++)
                    gp[i] += gs[i];
            }
        if (dover && bg->in_grad[0] >= 0) {
            const float *dx = bptr(u, bg->in_grad[0]);
            for (int b = 0; b < B; b++)
                memcpy(at(dover, b, t, T, w_in), dx + (size_t)b * (size_t)w_in, sizeof(float) * (size_t)w_in);
        } else if (dover) {
            for (int b = 0; b < B; b++)
                memset(at(dover, b, t, T, w_in), 0, sizeof(float) * (size_t)w_in);
        }
    }
    /* a state's initial value from a tensor: the gradient at step 0 */
    for (int k = 0; rc == WF_OK && k < d->n_states; k++) {
        if (d->state_init[k] < 0) continue;
        float *di = wf_run_ptr(r, r->b->out[d->state_init[k]]);
        if (!di) continue;
        size_t n = (size_t)bg->v[d->state_in[k]].numel;
        const float *src = bg->in_grad[1 + k] >= 0 ? bptr(u, bg->in_grad[1 + k]) : NULL;
        if (src)
            memcpy(di, src, sizeof(float) * n);
        else
            memset(di, 0, sizeof(float) * n);
    }
    full_shapes(u);
    return rc;
}

int wf_exec_unit_hook(const struct wf_run *r, int backward) {
    const struct wf_exec *outer = r->ex;
    int ui = (int)r->n->ai[0];
    if (ui < 0 || ui >= outer->n_units) return wf_error(WF_ERR_INTERNAL, "unit '%s' has no runtime", r->n->name);
    struct wf_unit_rt *u = &outer->units[ui];
    return backward ? unit_backward(u, r, outer) : unit_forward(u, r, outer);
}

static void rt_free(struct wf_unit_rt *u) {
    u->ex.arena = NULL; /* one of the arenas below */
    wf_exec_free(&u->ex);
    for (int i = 0; i < u->n_sets; i++) {
        for (int t = 0; u->set_arenas[i] && t < (u->train ? u->T : 1); t++)
            wf_afree(u->set_arenas[i][t]);
        wf_free(u->set_arenas[i]);
    }
    wf_afree(u->grads);
    wf_free(u->rows);
    wf_free(u->pos);
    wf_free(u->keep);
    wf_free(u->full_numel);
    wf_free(u->carry);
}

void wf_exec_units_free(struct wf_exec *e) {
    for (int i = 0; i < e->n_units; i++)
        rt_free(&e->units[i]);
    wf_free(e->units);
    e->units = NULL;
    e->n_units = 0;
}

/* The body's backward (training), its plan, its arenas. */
static int rt_init(struct wf_unit_rt *u, struct wf_unit *d, int train, const char *path) {
    memset(u, 0, sizeof *u);
    u->def = d;
    u->T = d->T;
    u->B = d->body.batch;
    u->train = train;
    struct wf_graph *bg = &d->body;
    int rc = WF_OK;
    if (train) {
        int seeds[WF_MAX_IO], diff[WF_MAX_IO], ns = 0, nd = 0;
        for (int k = 0; k < d->n_states; k++)
            seeds[ns++] = d->state_next[k];
        for (int j = 0; j < d->n_outs; j++)
            seeds[ns++] = d->out_body[j];
        diff[nd++] = d->step_in;
        for (int k = 0; k < d->n_states; k++)
            diff[nd++] = d->state_in[k];
        int nv0 = bg->nv, nn0 = bg->nn;
        if ((rc = wf_graph_autodiff_seeds(bg, seeds, ns, diff, nd)) < 0) return rc;
        /* gradients of packed values are packed; the backward of a region node, and sums of packed gradients,
         * run on the packed rows */
        unsigned char *pk = wf_realloc(d->packed, (size_t)bg->nv + 1),
                      *ln = wf_realloc(d->live_node, (size_t)bg->nn + 1);
        if (pk) d->packed = pk;
        if (ln) d->live_node = ln;
        if (!pk || !ln) return wf_error(WF_ERR_NOMEM, "out of memory");
        memset(d->packed + nv0, 0, (size_t)(bg->nv - nv0));
        memset(d->live_node + nn0, 0, (size_t)(bg->nn - nn0));
        for (int v = nv0; v < bg->nv; v++)
            if (bg->v[v].grad_of >= 0 && d->packed[bg->v[v].grad_of]) d->packed[v] = 1;
        for (int i = nn0; i < bg->nn; i++) {
            const struct wf_node *n = &bg->n[i];
            if (n->fwd >= 0)
                d->live_node[i] = d->live_node[n->fwd];
            else if (n->n_out && n->out[0] >= 0)
                d->live_node[i] = d->packed[n->out[0]];
        }
    }
    u->full_numel = wf_malloc(sizeof(int64_t) * ((size_t)bg->nv + 1));
    if (!u->full_numel) return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int v = 0; v < bg->nv; v++)
        u->full_numel[v] = bg->v[v].numel;
    struct wf_program *p = &u->ex.prog;
    if ((rc = wf_program_from_graph(p, bg, train)) < 0) return rc;
    u->ex.train = train;
    u->ex.unit = d;
    int n_arenas = train ? u->T : 1;
    size_t total;
    if (__builtin_mul_overflow(p->arena_bytes, (size_t)n_arenas, &total))
        return wf_error(WF_ERR_NOMEM, "%s: unit: the steps' activations do not fit in memory", path);
    if ((rc = wf_mem_check(path, "a unit's activations over its steps (per micro-batch in flight)", total)) < 0)
        return rc;
    u->arena_bytes = p->arena_bytes;
    u->ex.work = wf_aalloc(p->work_floats * sizeof(float));
    u->grads = wf_aalloc(sizeof(float) * ((size_t)p->n_param_floats + 1));
    u->rows = wf_malloc(sizeof(int) * (size_t)u->B);
    u->pos = wf_malloc(sizeof(int) * (size_t)u->B);
    u->keep = wf_malloc((size_t)u->B);
    u->ex.node_seconds = wf_calloc((size_t)p->g.nn + 1, sizeof(double));
    size_t carry = 1;
    for (int k = 0; k < d->n_states; k++)
        carry += (size_t)p->g.v[d->state_in[k]].numel;
    u->carry = wf_malloc(sizeof(float) * carry);
    if (!u->ex.work || !u->grads || !u->rows || !u->pos || !u->keep || !u->ex.node_seconds || !u->carry)
        return wf_error(WF_ERR_NOMEM, "out of memory for a unit");
    return WF_OK;
}

int wf_exec_units_init(struct wf_exec *e) {
    struct wf_graph *g = &e->prog.g;
    if (!g->n_units) return WF_OK;
    e->units = wf_calloc((size_t)g->n_units, sizeof *e->units);
    if (!e->units) return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_units; i++) {
        int rc = rt_init(&e->units[i], &g->units[i], e->train, g->path);
        e->n_units = i + 1;
        if (rc < 0) return rc;
    }
    return WF_OK;
}

int wf_exec_unit_counts(const struct wf_exec *e, struct wf_unit_counts *out, int max) {
    for (int i = 0; i < e->n_units && i < max; i++)
        out[i] = (struct wf_unit_counts){.name = e->prog.g.n[e->units[i].def->node].name,
                                         .live = e->units[i].live,
                                         .computed = e->units[i].computed,
                                         .total = e->units[i].total};
    return e->n_units;
}
