/*
 * compile layer: the memory plan. Lifetimes come from the execution order;
 * arena offsets are assigned greedily, largest value first, at the lowest
 * offset that no value with an overlapping lifetime occupies. The result is
 * a pure function of the graph, so every worker plans the same way.
 */
#include <stdlib.h>
#include <string.h>

#include "weft/compile.h"
#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#define ALIGN 64

size_t wf_node_work_floats(const struct wf_graph *g, const struct wf_node *n) {
    const struct wf_node *f = n->backward && n->fwd >= 0 ? &g->n[n->fwd] : n;
    const struct wf_op_def *d = wf_op_get(f->op);
    return d && d->work ? d->work(g, f) : 0;
}

static int root_of(const struct wf_graph *g, int v) {
    while (g->v[v].alias >= 0)
        v = g->v[v].alias;
    return v;
}

struct block {
    int v;
    int start, end;
    size_t size;
    int64_t off;
};

static int cmp_block(const void *a, const void *b) {
    const struct block *x = a, *y = b;
    if (x->size != y->size) return x->size > y->size ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->v - y->v;
}

/* ---- placement: the lowest offset free over a lifetime ----
 * A block goes at the lowest offset where it overlaps no placed block whose
 * lifetime meets its own. Scanning every placed block for each new one is
 * quadratic, and a training graph keeps most forward activations alive
 * across its middle, so a segment tree over time finds them instead: a
 * placed block is recorded in `full` of the nodes that make up its lifetime
 * and in `part` of those nodes and their ancestors. The blocks whose
 * lifetimes meet a range are then those in `full` of every node a walk to
 * the range visits and in `part` of the nodes that make up the range. Each
 * set holds the union of its blocks' bytes as sorted, disjoint, non-touching
 * runs, so the search for a gap jumps over neighbouring blocks at once. The
 * offsets are those of trying every placed block in order of offset. */

struct runs {
    int64_t *r; /* r[2i], r[2i + 1]: bytes [lo, hi) of run i, ascending */
    int n, cap; /* runs */
};

struct placer {
    int leaves;       /* time steps covered: a power of two */
    int *full, *part; /* per tree node (1 .. 2 * leaves - 1): index into set + 1, 0 if empty */
    struct runs *set; /* nset used of cap */
    int nset, cap;
    int *q, nq; /* the sets a query checks */
};

/* First run of r ending after o (n if none). */
static int runs_after(const struct runs *r, int64_t o) {
    int lo = 0, hi = r->n;
    while (lo < hi) {
        int m = (lo + hi) / 2;
        if (r->r[2 * m + 1] > o)
            hi = m;
        else
            lo = m + 1;
    }
    return lo;
}

/* Adds bytes [lo, hi) to the union, merging the runs it overlaps or touches. */
static int runs_add(struct runs *r, int64_t lo, int64_t hi) {
    int i = 0, j, a = 0, b = r->n; /* runs [i, j) merge: those with r.hi >= lo and r.lo <= hi */
    while (a < b) {
        int m = (a + b) / 2;
        if (r->r[2 * m + 1] >= lo)
            b = m;
        else
            a = m + 1;
    }
    i = a;
    for (j = i; j < r->n && r->r[2 * j] <= hi; j++) {
        if (r->r[2 * j] < lo) lo = r->r[2 * j];
        if (r->r[2 * j + 1] > hi) hi = r->r[2 * j + 1];
    }
    if (i == j) { /* a new run at i */
        if (r->n == r->cap) {
            int cap = r->cap ? r->cap * 2 : 2;
            int64_t *nr = wf_realloc(r->r, sizeof *nr * 2 * (size_t)cap);
            if (!nr) return WF_ERR_NOMEM;
            r->r = nr;
            r->cap = cap;
        }
        memmove(r->r + 2 * (i + 1), r->r + 2 * i, sizeof *r->r * 2 * (size_t)(r->n - i));
        r->n++;
    } else if (j > i + 1) { /* runs i+1 .. j-1 fold into run i */
        memmove(r->r + 2 * (i + 1), r->r + 2 * j, sizeof *r->r * 2 * (size_t)(r->n - j));
        r->n -= j - i - 1;
    }
    r->r[2 * i] = lo;
    r->r[2 * i + 1] = hi;
    return WF_OK;
}

static int placer_init(struct placer *pl, int steps) {
    memset(pl, 0, sizeof *pl);
    pl->leaves = 1;
    while (pl->leaves < steps)
        pl->leaves *= 2;
    int levels = 1;
    for (int k = pl->leaves; k > 1; k /= 2)
        levels++;
    pl->full = wf_calloc(2 * (size_t)pl->leaves, sizeof(int));
    pl->part = wf_calloc(2 * (size_t)pl->leaves, sizeof(int));
    pl->q = wf_malloc(sizeof(int) * 8 * (size_t)levels); /* <= 4 nodes a level, 2 sets a node */
    return pl->full && pl->part && pl->q ? WF_OK : WF_ERR_NOMEM;
}

static void placer_free(struct placer *pl) {
    for (int i = 0; i < pl->nset; i++)
        wf_free(pl->set[i].r);
    wf_free(pl->set);
    wf_free(pl->full);
    wf_free(pl->part);
    wf_free(pl->q);
}

/* Adds [lo, hi) to the set of *slot, making the set if it has none. */
static int slot_add(struct placer *pl, int *slot, int64_t lo, int64_t hi) {
    if (!*slot) {
        if (pl->nset == pl->cap) {
            int cap = pl->cap ? pl->cap * 2 : 256;
            struct runs *ns = wf_realloc(pl->set, sizeof *ns * (size_t)cap);
            if (!ns) return WF_ERR_NOMEM;
            pl->set = ns;
            pl->cap = cap;
        }
        pl->set[pl->nset] = (struct runs){0};
        *slot = ++pl->nset;
    }
    return runs_add(&pl->set[*slot - 1], lo, hi);
}

/* Records bytes [lo, hi) as taken during steps [s, e]; node covers steps [l, r]. */
static int tree_add(struct placer *pl, int node, int l, int r, int s, int e, int64_t lo, int64_t hi) {
    if (e < l || r < s) return WF_OK;
    int rc = slot_add(pl, &pl->part[node], lo, hi);
    if (rc < 0) return rc;
    if (s <= l && r <= e) return slot_add(pl, &pl->full[node], lo, hi);
    int m = l + (r - l) / 2;
    if ((rc = tree_add(pl, 2 * node, l, m, s, e, lo, hi)) < 0) return rc;
    return tree_add(pl, 2 * node + 1, m + 1, r, s, e, lo, hi);
}

/* Collects in pl->q the sets holding every placed block whose lifetime meets steps [s, e]. */
static void tree_sets(struct placer *pl, int node, int l, int r, int s, int e) {
    if (e < l || r < s) return;
    if (pl->full[node]) pl->q[pl->nq++] = pl->full[node] - 1;
    if (s <= l && r <= e) {
        if (pl->part[node]) pl->q[pl->nq++] = pl->part[node] - 1;
        return;
    }
    int m = l + (r - l) / 2;
    tree_sets(pl, 2 * node, l, m, s, e);
    tree_sets(pl, 2 * node + 1, m + 1, r, s, e);
}

/* The lowest offset where `size` bytes are free during steps [s, e]. */
static int64_t placer_find(struct placer *pl, int s, int e, int64_t size) {
    pl->nq = 0;
    tree_sets(pl, 1, 0, pl->leaves - 1, s, e);
    int64_t o = 0;
    /* every set in turn until all of them, one after another, have nothing in [o, o + size) */
    for (int k = 0, clear = 0; clear < pl->nq;) {
        const struct runs *r = &pl->set[pl->q[k]];
        int i = runs_after(r, o);
        if (i < r->n && r->r[2 * i] < o + size) {
            o = r->r[2 * i + 1];
            clear = 0;
        } else {
            clear++;
            k = k + 1 == pl->nq ? 0 : k + 1;
        }
    }
    return o;
}

/* Fusions across neighbouring nodes are the ops' own (wf_op_def.plan, e.g.
 * relu -> max pool in ops_conv.c): each may leave values without storage
 * (none[]) and stretch lifetimes. WEFT_FUSE=0 turns them off. */
static void plan_hooks(const struct wf_program *p, unsigned char *none, int *start, int *end) {
    const struct wf_graph *g = &p->g;
    const char *env = getenv("WEFT_FUSE");
    if (env && strcmp(env, "0") == 0) return;
    for (int a = 0; a < g->n_fwd && a < p->n_exec; a++) {
        const struct wf_op_def *d = wf_op_get(g->n[a].op);
        if (d && d->plan && !g->n[a].backward) d->plan(g, p->n_exec, a, none, start, end);
    }
}

static int plan(struct wf_program *p) {
    struct wf_graph *g = &p->g;
    int nv = g->nv, nn = p->n_exec;
    p->storage = wf_calloc((size_t)nv, sizeof *p->storage);
    p->offset = wf_calloc((size_t)nv, sizeof *p->offset);
    int *start = wf_malloc(sizeof(int) * (size_t)nv), *end = wf_malloc(sizeof(int) * (size_t)nv);
    struct block *bl = wf_malloc(sizeof *bl * (size_t)nv);
    unsigned char *none = wf_calloc((size_t)nv, 1);
    struct placer pl;
    int rc = placer_init(&pl, nn + 1); /* lifetimes are steps 0 .. nn */
    if (rc < 0 || !p->storage || !p->offset || !start || !end || !bl || !none) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory planning memory");
        goto done;
    }
    /* parameters and their final gradients: flat vectors in parameter order */
    int64_t off = 0;
    for (int i = 0; i < g->n_params; i++) {
        int pv = g->params[i];
        p->storage[pv] = WF_STORE_PARAM;
        p->offset[pv] = off;
        int gv = g->v[pv].grad;
        if (gv >= 0 && nn > g->n_fwd) {
            p->storage[gv] = WF_STORE_GRAD;
            p->offset[gv] = off;
        }
        off += g->v[pv].numel;
    }
    p->n_param_floats = off;

    /* lifetimes over the execution order */
    for (int v = 0; v < nv; v++) {
        start[v] = g->v[v].producer >= 0 ? g->v[v].producer : 0;
        end[v] = start[v];
    }
    for (int ni = 0; ni < nn; ni++) {
        const struct wf_node *n = &g->n[ni];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] >= 0 && end[n->in[i]] < ni) end[n->in[i]] = ni;
        for (int i = 0; i < n->n_out; i++)
            if (n->out[i] >= 0 && end[n->out[i]] < ni) end[n->out[i]] = ni;
        size_t w = wf_node_work_floats(g, n);
        if (w > p->work_floats) p->work_floats = w;
        if (n->backward)
            p->flops_bwd += n->flops;
        else
            p->flops_fwd += n->flops;
    }
    for (int i = 0; i < g->n_outputs; i++)
        end[g->outputs[i]] = nn;
    if (g->loss >= 0) end[g->loss] = nn;
    if (g->seed >= 0) end[g->seed] = nn;
    for (int k = 0; k < g->n_seeds;
         k++) /* a unit's body: its roots are read after it, their gradients written before */
        if (g->seed_grads[k] >= 0) {
            start[g->seed_grads[k]] = 0;
            end[g->seed_grads[k]] = nn;
        }
    for (int i = 0; i < g->n_diff_in; i++)
        if (g->in_grad[i] >= 0) end[g->in_grad[i]] = nn;
    if (g->logits >= 0) end[g->logits] = nn;
    if (g->loss_grad >= 0) {
        start[g->loss_grad] = 0;
        end[g->loss_grad] = nn;
    }
    for (int v = 0; v < nv; v++)
        if (g->v[v].kind == WF_V_CONST) { /* written once per forward pass, read anywhere */
            start[v] = 0;
            end[v] = nn;
        }
    plan_hooks(p, none, start, end);
    /* a view keeps its base alive */
    for (int v = nv - 1; v >= 0; v--) {
        if (g->v[v].alias < 0) continue;
        int r = root_of(g, v);
        if (end[v] > end[r]) end[r] = end[v];
        if (start[v] < start[r]) start[r] = start[v];
    }
    int nb = 0;
    p->naive_bytes = 0;
    for (int v = 0; v < nv; v++) {
        if (p->storage[v] != WF_STORE_NONE || none[v]) continue;
        const struct wf_value *x = &g->v[v];
        if (x->producer >= nn) continue; /* not executed by this program */
        p->storage[v] = WF_STORE_ARENA;
        if (x->alias >= 0) continue;
        size_t sz = ((size_t)x->numel * 4 + ALIGN - 1) / ALIGN * ALIGN; /* numel <= WF_MAX_NUMEL */
        bl[nb++] = (struct block){v, start[v], end[v], sz, 0};
        if (__builtin_add_overflow(p->naive_bytes, sz, &p->naive_bytes)) {
            rc = wf_error(WF_ERR_NOMEM, "%s: the activations of this model do not fit in memory", g->path);
            goto done;
        }
    }
    qsort(bl, (size_t)nb, sizeof *bl, cmp_block);
    size_t top = 0;
    for (int i = 0; i < nb; i++) {
        int64_t o = placer_find(&pl, bl[i].start, bl[i].end, (int64_t)bl[i].size);
        if (tree_add(&pl, 1, 0, pl.leaves - 1, bl[i].start, bl[i].end, o, o + (int64_t)bl[i].size) < 0) {
            rc = wf_error(WF_ERR_NOMEM, "out of memory planning memory");
            goto done;
        }
        bl[i].off = o;
        p->offset[bl[i].v] = o;
        if ((size_t)o + bl[i].size > top) top = (size_t)o + bl[i].size;
    }
    p->arena_bytes = top;
    for (int v = 0; v < nv; v++)
        if (p->storage[v] == WF_STORE_ARENA && g->v[v].alias >= 0) {
            int r = root_of(g, v);
            p->storage[v] = p->storage[r];
            p->offset[v] = p->offset[r];
        }
done:
    wf_free(start);
    wf_free(end);
    wf_free(bl);
    wf_free(none);
    placer_free(&pl);
    return rc;
}

int wf_program_compile(struct wf_program *p, const struct wf_model *m, int batch, int train) {
    return wf_program_compile_stage(p, m, batch, train, NULL);
}

/* Resolves the stage's seed and differentiated inputs by name. */
static int stage_values(const struct wf_graph *g, const struct wf_stage_opts *o, int *seed, int *diff_in) {
    *seed = -1;
    if (o->seed && g->loss < 0) {
        *seed = wf_graph_find(g, o->seed);
        if (*seed < 0 || g->v[*seed].kind != WF_V_ACT || g->v[*seed].dtype != WF_F32)
            return wf_error(WF_ERR_NOTFOUND, "%s: stage output '%s' is not an f32 layer output of this sub-graph",
                            g->path, o->seed);
    }
    for (int i = 0; i < o->n_diff_in; i++) {
        diff_in[i] = wf_graph_find(g, o->diff_in[i]);
        if (diff_in[i] < 0 || g->v[diff_in[i]].kind != WF_V_INPUT || g->v[diff_in[i]].dtype != WF_F32)
            return wf_error(WF_ERR_NOTFOUND, "%s: stage input '%s' is not an f32 input of this sub-graph", g->path,
                            o->diff_in[i]);
    }
    return WF_OK;
}

int wf_program_compile_stage(struct wf_program *p, const struct wf_model *m, int batch, int train,
                             const struct wf_stage_opts *o) {
    memset(p, 0, sizeof *p);
    double t0 = wf_now();
    int rc = wf_graph_build(&p->g, m, batch);
    if (rc < 0) return rc;
    if (train && !o) rc = wf_graph_autodiff(&p->g);
    if (train && o) {
        int seed, diff_in[WF_MAX_IO];
        if (o->n_diff_in > WF_MAX_IO) {
            rc = wf_error(WF_ERR_INVALID, "too many stage inputs");
            goto fail;
        }
        if ((rc = stage_values(&p->g, o, &seed, diff_in)) == WF_OK)
            rc = wf_graph_autodiff_stage(&p->g, seed, diff_in, o->n_diff_in);
    }
    if (rc < 0) goto fail;
    p->n_exec = train ? p->g.nn : p->g.n_fwd;
    if ((rc = plan(p)) < 0) goto fail;
    p->compile_seconds = wf_now() - t0;
    return WF_OK;
fail:
    wf_program_free(p);
    return rc;
}

int wf_program_from_graph(struct wf_program *p, struct wf_graph *g, int train) {
    memset(p, 0, sizeof *p);
    double t0 = wf_now();
    p->g = *g;
    memset(g, 0, sizeof *g);
    p->n_exec = train ? p->g.nn : p->g.n_fwd;
    int rc = plan(p);
    if (rc < 0) {
        wf_program_free(p);
        return rc;
    }
    p->compile_seconds = wf_now() - t0;
    return WF_OK;
}

void wf_program_free(struct wf_program *p) {
    if (!p) return;
    wf_graph_free(&p->g);
    wf_free(p->storage);
    wf_free(p->offset);
    memset(p, 0, sizeof *p);
}
