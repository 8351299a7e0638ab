/*
 * exec layer: the executor — one call per node into the op table
 * (graph.h), on the pointers fixed by the memory plan.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/exec.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#include "exec_int.h"

void *wf_exec_ptr(const struct wf_exec *e, int v) {
    if (v < 0) return NULL;
    switch (e->prog.storage[v]) {
    case WF_STORE_ARENA: return e->arena + e->prog.offset[v];
    case WF_STORE_PARAM: return e->params + e->prog.offset[v];
    case WF_STORE_GRAD: return e->grads + e->prog.offset[v];
    }
    return NULL;
}

static void *exec_ptr(const void *ex, int v) { return wf_exec_ptr(ex, v); }

/* ---- memory checks that name the largest tensors ----
 * Only a refusal looks for them: one pass over the values, no allocation. */
enum { TOP_N = 3 };
struct top {
    int n;
    int id[TOP_N];       /* value or node index */
    size_t bytes[TOP_N]; /* descending; ties keep the earlier index first */
};

static void top_add(struct top *t, int id, size_t bytes) {
    int i = t->n;
    if (i == TOP_N) {
        if (bytes <= t->bytes[TOP_N - 1]) return;
        i = TOP_N - 1;
    } else {
        t->n++;
    }
    for (; i > 0 && t->bytes[i - 1] < bytes; i--) {
        t->id[i] = t->id[i - 1];
        t->bytes[i] = t->bytes[i - 1];
    }
    t->id[i] = id;
    t->bytes[i] = bytes;
}

/* the refusal of `bytes`, naming the values in t with their shapes */
static int refuse_values(const struct wf_graph *g, const char *who, const char *what, size_t bytes,
                         const char *items_what, const struct top *t) {
    char shape[TOP_N][96];
    struct wf_mem_item it[TOP_N];
    for (int i = 0; i < t->n; i++) {
        const struct wf_value *v = &g->v[t->id[i]];
        it[i] = (struct wf_mem_item){v->name, wf_shape_str(v, shape[i], sizeof shape[i]), t->bytes[i]};
    }
    return wf_mem_check_items(who, what, bytes, items_what, it, t->n);
}

int wf_mem_check_params(const struct wf_program *p, const char *who, const char *what, size_t bytes) {
    if (wf_mem_check(who, what, bytes) == WF_OK) return WF_OK;
    const struct wf_graph *g = &p->g;
    struct top t = {0};
    for (int i = 0; i < g->n_params; i++)
        top_add(&t, g->params[i], (size_t)g->v[g->params[i]].numel * (size_t)wf_dtype_size(g->v[g->params[i]].dtype));
    return refuse_values(g, who, what, bytes, "parameters", &t);
}

int wf_mem_check_plan(const struct wf_program *p, const char *who) {
    const struct wf_graph *g = &p->g;
    if (wf_mem_check(who, "activations", p->arena_bytes) < 0) {
        struct top t = {0};
        for (int v = 0; v < g->nv; v++) /* views share their base's bytes */
            if (p->storage[v] == WF_STORE_ARENA && g->v[v].alias < 0)
                top_add(&t, v, (size_t)g->v[v].numel * (size_t)wf_dtype_size(g->v[v].dtype));
        return refuse_values(g, who, "activations", p->arena_bytes, "values", &t);
    }
    size_t work = p->work_floats * sizeof(float);
    if (wf_mem_check(who, "kernel scratch", work) < 0) {
        struct top t = {0};
        for (int i = 0; i < p->n_exec; i++) {
            size_t w = wf_node_work_floats(g, &g->n[i]) * sizeof(float);
            if (w) top_add(&t, i, w);
        }
        char ops[TOP_N][64];
        struct wf_mem_item it[TOP_N];
        for (int i = 0; i < t.n; i++) {
            const struct wf_node *n = &g->n[t.id[i]];
            const struct wf_op_def *d = wf_op_get(n->op);
            snprintf(ops[i], sizeof ops[i], "(%s)", d ? d->name : "?");
            it[i] = (struct wf_mem_item){n->name, ops[i], t.bytes[i]};
        }
        return wf_mem_check_items(who, "kernel scratch", work, "layers", it, t.n);
    }
    return WF_OK;
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
    size_t work = e->prog.work_floats * sizeof(float);
    if ((rc = wf_mem_check_plan(&e->prog, e->prog.g.path)) < 0) {
        wf_exec_free(e);
        return rc;
    }
    e->arena = wf_aalloc(e->prog.arena_bytes);
    e->work = wf_aalloc(work);
    e->node_seconds = wf_calloc((size_t)e->prog.g.nn, sizeof(double));
    if (!e->arena || !e->work || !e->node_seconds) {
        wf_exec_free(e);
        return wf_error(WF_ERR_NOMEM, "out of memory allocating %zu bytes of activations", e->prog.arena_bytes);
    }
    const char *skip = getenv("WEFT_SKIP"); /* 0: skip regions compute every row, then mask (for comparisons) */
    e->no_skip = skip && !strcmp(skip, "0");
    if ((rc = wf_exec_units_init(e)) < 0) {
        wf_exec_free(e);
        return rc;
    }
    return WF_OK;
}

void wf_exec_free(struct wf_exec *e) {
    if (!e) return;
    wf_exec_units_free(e);
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

int wf_exec_seed(struct wf_exec *e, float seed) {
    float *d = wf_exec_ptr(e, e->prog.g.loss_grad);
    if (!d) return wf_error(WF_ERR_INTERNAL, "%s: the program has no loss to seed", e->prog.g.path);
    *d = seed;
    return WF_OK;
}

/* Constants (numeric literals of the model) into their arena slots: they
 * live for the whole program, so once per forward pass is enough. */
static void set_constants(struct wf_exec *e) {
    const struct wf_graph *g = &e->prog.g;
    for (int v = 0; v < g->nv; v++)
        if (g->v[v].kind == WF_V_CONST) {
            float *p = wf_exec_ptr(e, v);
            if (p) *p = (float)g->v[v].init_arg;
        }
}

int wf_exec_run(struct wf_exec *e, int from, int to) {
    const struct wf_graph *g = &e->prog.g;
    if (from == 0) set_constants(e);
    struct wf_run r = {.g = g,
                       .ptr = exec_ptr,
                       .ex = e,
                       .work = e->work,
                       .train = e->train,
                       .rng_key = e->rng_key,
                       .rng_step = e->rng_step,
                       .step = e->step,
                       .unit = wf_exec_unit_hook};
    for (int i = from; i < to; i++) {
        const struct wf_node *n = &g->n[i];
        double t0 = e->profile ? wf_now() : 0;
        /* a backward node runs its forward node's backward; accum (no forward node) runs its own forward */
        int bwd = n->backward && n->fwd >= 0;
        r.n = bwd ? &g->n[n->fwd] : n;
        r.b = bwd ? n : NULL;
        r.ni = bwd ? n->fwd : i;
        const struct wf_op_def *d = wf_op_get(r.n->op);
        r.rows = 0;
        if (e->unit && e->unit->live_node[i]) { /* a skip region's node: the step's packed rows, if any */
            if (!e->step || e->step->n == 0) continue;
            r.rows = e->step->n;
        }
        int (*fn)(const struct wf_run *) = bwd ? d->backward : d->forward;
        if (!fn)
            return wf_error(WF_ERR_INTERNAL, "node '%s': op '%s' has no %s", n->name, d->name,
                            bwd ? "backward" : "forward");
        int rc = fn(&r);
        if (rc < 0) return rc;
        if (e->profile) e->node_seconds[i] += wf_now() - t0;
        if (e->node_done) e->node_done(e->node_done_ud, i);
    }
    return WF_OK;
}
