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
    int fi = n->backward ? n->fwd : -1;
    const struct wf_node *f = fi >= 0 ? &g->n[fi] : n;
    if (f->op != WF_OP_CONV2D) return 0;
    const struct wf_value *x = &g->v[f->in[0]], *y = &g->v[f->out[0]];
    struct wf_conv2d_shape s;
    wf_conv2d_shape_init(&s, (int)x->shape[0], (int)x->shape[1], (int)x->shape[2], (int)x->shape[3], (int)y->shape[1],
                         (int)f->ai[1], (int)f->ai[1], (int)f->ai[2], (int)f->ai[3]);
    return (size_t)wf_conv2d_workspace(&s);
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

static int cmp_off(const void *a, const void *b) {
    const struct block *x = *(const struct block *const *)a, *y = *(const struct block *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* ---- relu -> max pool fusion ----
 * A relu whose output feeds only a max pool right after it (and relu's own
 * backward) runs inside the pool: wf_maxpool2d_relu_forward pools relu's
 * input directly, and the pool's backward, right before relu's, writes
 * relu's input gradient (kernels.h). The relu'd tensor and its gradient are
 * then never formed, and get no storage (WF_STORE_NONE): that is how the
 * executor knows. Their producers stay in the graph, as no-ops. Relu's
 * input lives on until the pool, and its gradient is born at the pool's
 * backward, so that the plan keeps them apart from what those nodes read
 * and write. The results are the unfused graph's, bit for bit.
 *
 * Only where nothing else could see the difference: the relu'd tensor, its
 * gradient and the pool's argmax are read by no other node of the program
 * and are no output of it (graph outputs, loss, pipeline stage values). */

/* 1 if value v must stay visible: an output of the program */
static int kept(const struct wf_graph *g, int v) {
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return 1;
    for (int i = 0; i < g->n_diff_in; i++)
        if (g->in_grad[i] == v || g->diff_in[i] == v) return 1;
    return v == g->loss || v == g->logits || v == g->labels || v == g->seed || v == g->seed_grad;
}

/* 1 if value v is read by no node of [0, nn) other than r1 and r2, and nothing views it */
static int read_only_by(const struct wf_graph *g, int nn, int v, int r1, int r2) {
    for (int k = 0; k < nn; k++) {
        if (k == r1 || k == r2) continue;
        const struct wf_node *n = &g->n[k];
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] == v) return 0;
    }
    for (int u = 0; u < g->nv; u++)
        if (g->v[u].alias == v) return 0;
    return !kept(g, v);
}

/* the backward node of forward node f among [n_fwd, nn), or -1 */
static int backward_of(const struct wf_graph *g, int nn, int f) {
    for (int k = g->n_fwd; k < nn; k++)
        if (g->n[k].backward && g->n[k].fwd == f && g->n[k].op != WF_OP_ACCUM) return k;
    return -1;
}

/* Marks in none[] the values fused pairs leave without storage, and moves
 * the lifetimes of relu's input and its gradient as described above. */
static void fuse_relu_pool(const struct wf_program *p, unsigned char *none, int *start, int *end) {
    const struct wf_graph *g = &p->g;
    const int nn = p->n_exec;
    const char *env = getenv("WEFT_FUSE");
    if (env && strcmp(env, "0") == 0) return;
    for (int a = 0; a + 1 < g->n_fwd && a + 1 < nn; a++) {
        const struct wf_node *A = &g->n[a], *B = &g->n[a + 1];
        if (A->op != WF_OP_RELU || A->backward || B->op != WF_OP_MAXPOOL2D || B->backward) continue;
        const int c = A->in[0], r = A->out[0], am = B->n_out > 1 ? B->out[1] : -1;
        if (B->in[0] != r || B->ai[2] != 0 || am < 0) continue;
        if (g->v[c].kind != WF_V_ACT || g->v[c].dtype != WF_F32 || g->v[r].alias >= 0) continue;
        /* a convolution's output may then be handed over in its blocked layout (the executor's
         * handoff_layout): only if nothing but the relu reads it */
        const int cp = g->v[c].producer;
        if (cp >= 0 && g->n[cp].op == WF_OP_CONV2D && !read_only_by(g, nn, c, a, -1)) continue;
        /* and a convolution right after the pool may take the pooled tensor in that layout too:
         * only if nothing but it (and its backward) reads it */
        const int pv = B->out[0];
        if (a + 2 < g->n_fwd && a + 2 < nn && g->n[a + 2].op == WF_OP_CONV2D && g->n[a + 2].in[0] == pv &&
            !read_only_by(g, nn, pv, a + 2, backward_of(g, nn, a + 2)))
            continue;
        const int da = backward_of(g, nn, a), db = backward_of(g, nn, a + 1);
        if ((da < 0) != (db < 0)) continue;
        if (!read_only_by(g, nn, r, a + 1, da) || !read_only_by(g, nn, am, db, -1)) continue;
        int dr = -1, dc = -1;
        if (db >= 0) {
            dr = g->n[db].out[0];
            dc = g->n[da].out[0];
            if (da != db + 1 || dr < 0 || dc < 0 || g->n[da].in[0] != dr || g->v[dr].alias >= 0 ||
                g->v[dc].alias >= 0 || !read_only_by(g, nn, dr, da, -1))
                continue;
        }
        none[r] = 1;
        if (end[c] < a + 1) end[c] = a + 1;
        if (dr >= 0) {
            none[dr] = 1;
            if (start[dc] > db) start[dc] = db;
        }
    }
}

static int plan(struct wf_program *p) {
    struct wf_graph *g = &p->g;
    int nv = g->nv, nn = p->n_exec;
    p->storage = wf_calloc((size_t)nv, sizeof *p->storage);
    p->offset = wf_calloc((size_t)nv, sizeof *p->offset);
    int *start = wf_malloc(sizeof(int) * (size_t)nv), *end = wf_malloc(sizeof(int) * (size_t)nv);
    struct block *bl = wf_malloc(sizeof *bl * (size_t)nv);
    struct block **act = wf_malloc(sizeof *act * (size_t)nv);
    unsigned char *none = wf_calloc((size_t)nv, 1);
    int rc = WF_OK;
    if (!p->storage || !p->offset || !start || !end || !bl || !act || !none) {
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
    for (int i = 0; i < g->n_diff_in; i++)
        if (g->in_grad[i] >= 0) end[g->in_grad[i]] = nn;
    if (g->logits >= 0) end[g->logits] = nn;
    fuse_relu_pool(p, none, start, end);
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
        size_t sz = ((size_t)x->numel * 4 + ALIGN - 1) / ALIGN * ALIGN;
        bl[nb++] = (struct block){v, start[v], end[v], sz, 0};
        p->naive_bytes += sz;
    }
    qsort(bl, (size_t)nb, sizeof *bl, cmp_block);
    size_t top = 0;
    for (int i = 0; i < nb; i++) {
        int na = 0;
        for (int j = 0; j < i; j++)
            if (bl[j].start <= bl[i].end && bl[i].start <= bl[j].end) act[na++] = &bl[j];
        qsort(act, (size_t)na, sizeof *act, cmp_off);
        int64_t o = 0;
        for (int j = 0; j < na; j++) {
            if (act[j]->off >= o + (int64_t)bl[i].size) break;
            int64_t e = act[j]->off + (int64_t)act[j]->size;
            if (e > o) o = e;
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
    wf_free(act);
    wf_free(none);
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

void wf_program_free(struct wf_program *p) {
    if (!p) return;
    wf_graph_free(&p->g);
    wf_free(p->storage);
    wf_free(p->offset);
    memset(p, 0, sizeof *p);
}
