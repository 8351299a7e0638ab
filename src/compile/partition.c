/*
 * compile layer: cutting a model into pipeline stages at split points.
 *
 * Split tensors t1 .. t(S-1), in order, cut the forward graph: a layer
 * belongs to stage k when it depends on t1 .. tk and not on t(k+1). A split
 * is valid when the only value that crosses from stage k-1 into stage k is
 * tk itself (parameters belong to the one stage that uses them; model
 * inputs are read from the dataset by whichever stage needs them). Each
 * stage becomes a sub-model in the model-file syntax — the wire format the
 * coordinator sends — with tk declared as an input and t(k+1) as its
 * output. The whole-model backward is built too, so every forward and
 * backward node of the job has exactly one stage (node_stage).
 */
#include <stdio.h>
#include <string.h>

#include "weft/compile.h"
#include "weft/core.h"
#include "weft/safetensors.h"

/* Index of the last split a set of splits reaches, -1 for none. */
static int top_split(uint64_t dep) { return dep ? 63 - __builtin_clzll(dep) : -1; }

static int find_split_value(const struct wf_graph *g, const char *name, const char *path) {
    int v = wf_graph_find(g, name);
    if (v < 0) return wf_error(WF_ERR_NOTFOUND, "split point '%s' is not a tensor of %s", name, path);
    if (g->v[v].kind != WF_V_ACT || g->v[v].dtype != WF_F32)
        return wf_error(WF_ERR_INVALID, "split point '%s' of %s must be the f32 output of a layer", name, path);
    if (v == g->loss) return wf_error(WF_ERR_INVALID, "split point '%s' is the loss; nothing would follow it", name);
    if (g->v[v].ndim == 0)
        return wf_error(WF_ERR_INVALID, "split point '%s' of %s is a scalar; split at a tensor with a batch dimension",
                        name, path);
    return v;
}

/* Stage of every forward node, checking that the splits cut the graph. */
static int assign_stages(const struct wf_graph *g, const int *split, int ns, int *stage) {
    uint64_t *dep = wf_calloc((size_t)g->nv, sizeof *dep);
    int *pstage = wf_malloc(sizeof(int) * (size_t)g->nv);
    if (!dep || !pstage) {
        wf_free(dep);
        wf_free(pstage);
        return wf_error(WF_ERR_NOMEM, "out of memory partitioning");
    }
    for (int v = 0; v < g->nv; v++)
        pstage[v] = -1;
    int rc = WF_OK;
    for (int ni = 0; ni < g->n_fwd && rc == WF_OK; ni++) {
        const struct wf_node *n = &g->n[ni];
        uint64_t d = 0;
        for (int i = 0; i < n->n_in; i++)
            d |= dep[n->in[i]];
        int k = top_split(d) + 1;
        if (d != (k ? (~0ull >> (64 - k)) : 0)) {
            int miss = __builtin_ctzll(~d);
            rc = wf_error(WF_ERR_INVALID,
                          "%s:%d:%d: split points out of order: layer '%s' depends on '%s' but not on the earlier "
                          "split point '%s'",
                          g->path, n->line, n->col, n->name, g->v[split[k - 1]].name, g->v[split[miss]].name);
            break;
        }
        stage[ni] = k;
        for (int j = 0; j < n->n_out; j++) {
            int o = n->out[j];
            dep[o] = d;
            for (int s = 0; s < ns; s++)
                if (split[s] == o) dep[o] |= 1ull << s;
        }
    }
    /* A layer that reads only parameters, constants and other such layers (a weight
     * penalty: sum(mul(w, w))) depends on no split point; it runs in the stage of its first reader,
     * so that a parameter stays with the layers that use it. Last layers first: readers are placed. */
    char *free_ = wf_calloc((size_t)g->n_fwd + 1, 1);
    if (!free_ && rc == WF_OK) rc = wf_error(WF_ERR_NOMEM, "out of memory partitioning");
    for (int ni = 0; ni < g->n_fwd && rc == WF_OK; ni++) {
        const struct wf_node *n = &g->n[ni];
        int f = 1;
        for (int i = 0; i < n->n_in && f; i++) {
            const struct wf_value *x = &g->v[n->in[i]];
            if (x->kind == WF_V_INPUT) f = 0;
            if (x->kind == WF_V_ACT || x->kind == WF_V_AUX) f = x->producer >= 0 && free_[x->producer];
        }
        for (int j = 0; j < n->n_out && f; j++)
            for (int s = 0; s < ns; s++)
                if (split[s] == n->out[j]) f = 0;
        free_[ni] = (char)f;
    }
    /* rstage[v]: the lowest stage of a layer after v's producer that reads v, -1 if none; filled from the
     * last layer back, each layer's stage final when it reaches its inputs */
    int *rstage = rc == WF_OK ? wf_malloc(sizeof(int) * ((size_t)g->nv + 1)) : NULL;
    if (!rstage && rc == WF_OK) rc = wf_error(WF_ERR_NOMEM, "out of memory partitioning");
    for (int v = 0; v < g->nv && rc == WF_OK; v++)
        rstage[v] = -1;
    for (int ni = g->n_fwd - 1; ni >= 0 && rc == WF_OK; ni--) {
        const struct wf_node *n = &g->n[ni];
        if (free_[ni]) {
            int first = -1;
            for (int j = 0; j < n->n_out; j++)
                if (rstage[n->out[j]] >= 0 && (first < 0 || rstage[n->out[j]] < first)) first = rstage[n->out[j]];
            if (first < 0) first = ns; /* read by no layer (a metric output): the last stage writes the outputs */
            if (first > stage[ni]) stage[ni] = first;
        }
        for (int i = 0; i < n->n_in; i++) {
            int x = n->in[i];
            if (rstage[x] < 0 || stage[ni] < rstage[x]) rstage[x] = stage[ni];
        }
    }
    wf_free(rstage);
    wf_free(free_);
    for (int ni = 0; ni < g->n_fwd && rc == WF_OK; ni++) {
        const struct wf_node *n = &g->n[ni];
        int k = stage[ni];
        /* the values this node reads must live in its stage, or be its stage's split input */
        for (int i = 0; i < n->n_in && rc == WF_OK; i++) {
            int v = n->in[i];
            const struct wf_value *x = &g->v[v];
            if (x->kind == WF_V_INPUT || x->kind == WF_V_CONST) continue;
            if (x->kind == WF_V_PARAM) {
                if (pstage[v] >= 0 && pstage[v] != k)
                    rc = wf_error(WF_ERR_INVALID,
                                  "%s:%d:%d: parameter '%s' is used in stage %d and by layer '%s' in stage %d; a "
                                  "parameter must stay in one stage",
                                  g->path, n->line, n->col, x->name, pstage[v], n->name, k);
                pstage[v] = k;
                continue;
            }
            int from = stage[x->producer];
            if (from == k || (k > 0 && v == split[k - 1] && from == k - 1)) continue;
            if (k > 0)
                rc = wf_error(WF_ERR_INVALID,
                              "%s:%d:%d: split point '%s' does not cut the graph: layer '%s' (stage %d) also reads "
                              "'%s' from stage %d",
                              g->path, n->line, n->col, g->v[split[k - 1]].name, n->name, k, x->name, from);
            else
                rc = wf_error(WF_ERR_INTERNAL, "stage of '%s' is %d, after its reader '%s'", x->name, from, n->name);
        }
    }
    if (rc == WF_OK && g->loss >= 0 && top_split(dep[g->loss]) != ns - 1) {
        int miss = top_split(dep[g->loss]) + 1;
        rc =
            wf_error(WF_ERR_INVALID, "%s: the loss '%s' does not depend on split point '%s': it does not cut the graph",
                     g->path, g->v[g->loss].name, g->v[split[miss]].name);
    }
    wf_free(dep);
    wf_free(pstage);
    return rc;
}

/* Each dim of value v: WF_DIM_B if it is the batch, else its size; from
 * the same value in graphs built with batch 2 (g2) and 3 (g3). */
static int batch_dims(const struct wf_value *a, const struct wf_value *b, int64_t *dims) {
    for (int i = 0; i < a->ndim; i++) {
        if (a->shape[i] == b->shape[i])
            dims[i] = a->shape[i];
        else if (a->shape[i] == 2 && b->shape[i] == 3)
            dims[i] = WF_DIM_B;
        else
            return wf_error(WF_ERR_INVALID,
                            "split point '%s': dimension %d is a multiple of the batch size, which a stage input "
                            "cannot declare; split at another tensor",
                            a->name, i + 1);
    }
    return WF_OK;
}

/* The names statement s reads: a layer's arguments; a unit's sequence, lengths, mask and states' from=. */
static int stmt_reads(const struct wf_mstmt *s, const char **out, int max) {
    int n = 0;
    if (s->kind == WF_MS_LAYER) {
        for (int a = 0; a < s->n_args && n < max; a++)
            out[n++] = s->args[a];
    } else if (s->kind == WF_MS_UNIT) {
        for (int k = 0; k < s->n_attrs && n < max; k++)
            if (s->attrs[k].type == WF_MV_IDENT) out[n++] = s->attrs[k].s;
        for (int i = 0; s->body && i < s->body->n && n < max; i++) {
            const struct wf_mattr *f =
                s->body->st[i].kind == WF_MS_STATE ? wf_mstmt_attr(&s->body->st[i], "from") : NULL;
            if (f && f->type == WF_MV_IDENT) out[n++] = f->s;
        }
    }
    return n;
}

/* Writes stage k's sub-model. */
static int stage_text(const struct wf_model *m, const struct wf_graph *g2, const struct wf_graph *g3, const int *split,
                      int ns, const int *stage, int k, char **text) {
    struct wf_model sub = {.path = m->path};
    char name[300];
    snprintf(name, sizeof name, "%s.stage%d", m->name ? m->name : "model", k);
    sub.name = name;
    sub.st = wf_calloc((size_t)m->n + 2, sizeof *sub.st);
    char *uses = wf_calloc((size_t)m->n + 1, 1);
    const char *outs[WF_MAX_IO];
    int n_out = 0, rc = WF_OK;
    struct wf_mstmt in = {0}, out = {0};
    struct wf_hmap decls;
    wf_hmap_init(&decls);
    if (!sub.st || !uses) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory partitioning");
        goto done;
    }
    if (k > 0) {
        const struct wf_value *t = &g2->v[split[k - 1]];
        in.kind = WF_MS_INPUT;
        in.name = t->name;
        in.dtype = WF_F32;
        in.ndim = t->ndim;
        if ((rc = batch_dims(t, &g3->v[split[k - 1]], in.dims)) < 0) goto done;
        sub.st[sub.n++] = in;
    }
    /* names read by this stage's layers: the declarations (inputs, params) above them */
    for (int i = 0; i < m->n && rc == WF_OK; i++)
        if ((m->st[i].kind == WF_MS_INPUT || m->st[i].kind == WF_MS_PARAM) && wf_hmap_put(&decls, m->st[i].name, i) < 0)
            rc = wf_error(WF_ERR_NOMEM, "out of memory partitioning");
    if (rc < 0) goto done;
    int layer = 0;
    for (int i = 0; i < m->n; i++) {
        const struct wf_mstmt *s = &m->st[i];
        if (s->kind != WF_MS_LAYER && s->kind != WF_MS_UNIT) continue; /* one node each, in order */
        int mine = stage[layer++] == k;
        if (!mine) continue;
        uses[i] = 1;
        const char *reads[WF_MODEL_MAX_ARGS + 16];
        int nr = stmt_reads(s, reads, (int)WF_ARRAY_LEN(reads));
        for (int a = 0; a < nr; a++) {
            int j = wf_hmap_get(&decls, reads[a]);
            if (j >= 0 && j < i) uses[j] = 1;
        }
    }
    for (int i = 0; i < m->n; i++)
        if (uses[i]) sub.st[sub.n++] = m->st[i];
    if (k < ns) {
        outs[n_out++] = g2->v[split[k]].name;
    } else {
        for (int i = 0; i < g2->n_outputs; i++) {
            const struct wf_value *v = &g2->v[g2->outputs[i]];
            if (v->producer >= 0 && stage[v->producer] == k && n_out < WF_MAX_IO) outs[n_out++] = v->name;
        }
    }
    out.kind = WF_MS_OUTPUT;
    out.n_args = n_out;
    out.args = (char **)outs;
    sub.st[sub.n++] = out;
    rc = wf_model_write(&sub, text, NULL);
done:
    wf_free(sub.st);
    wf_free(uses);
    wf_hmap_free(&decls);
    return rc;
}

void wf_partition_free(struct wf_partition *p) {
    if (!p) return;
    for (int k = 0; k < p->n_stages; k++) {
        struct wf_stage_spec *s = &p->st[k];
        wf_free(s->model_text);
        wf_free(s->in);
        wf_free(s->out);
    }
    wf_free(p->st);
    wf_free(p->node_stage);
    wf_free(p->x_name);
    wf_free(p->y_name);
    wf_free(p->len_name);
    wf_graph_free(&p->g);
    memset(p, 0, sizeof *p);
}

int wf_partition_build(struct wf_partition *p, const struct wf_model *m, int n_split, char *const *split_names) {
    memset(p, 0, sizeof *p);
    struct wf_graph g3;
    memset(&g3, 0, sizeof g3);
    int split[64], rc;
    if (n_split > 63) return wf_error(WF_ERR_INVALID, "at most 63 split points, got %d", n_split);
    /* the logical graph and its backward (B = 2; B = 3 tells which dims are the batch) */
    if ((rc = wf_graph_build(&p->g, m, 2)) < 0) goto fail;
    if ((rc = wf_graph_build(&g3, m, 3)) < 0) goto fail;
    struct wf_graph *g = &p->g;
    for (int i = 0; i < n_split; i++) {
        if ((rc = find_split_value(g, split_names[i], g->path)) < 0) goto fail;
        split[i] = rc;
        for (int j = 0; j < i; j++)
            if (split[j] == split[i]) {
                rc = wf_error(WF_ERR_INVALID, "split point '%s' is named twice", split_names[i]);
                goto fail;
            }
    }
    p->n_stages = n_split + 1;
    p->st = wf_calloc((size_t)p->n_stages, sizeof *p->st);
    int *fstage = wf_calloc((size_t)g->n_fwd + 1, sizeof(int));
    if (!p->st || !fstage) {
        wf_free(fstage);
        rc = wf_error(WF_ERR_NOMEM, "out of memory partitioning");
        goto fail;
    }
    rc = assign_stages(g, split, n_split, fstage);
    if (rc == WF_OK) rc = wf_graph_autodiff(g);
    if (rc == WF_OK) {
        p->node_stage = wf_malloc(sizeof(int) * (size_t)g->nn);
        if (!p->node_stage) rc = wf_error(WF_ERR_NOMEM, "out of memory partitioning");
    }
    if (rc < 0) {
        wf_free(fstage);
        goto fail;
    }
    /* backward nodes run where their forward node does; an accum node where
     * the value it sums the gradient of is read */
    for (int ni = 0; ni < g->nn; ni++) {
        const struct wf_node *n = &g->n[ni];
        if (!n->backward) {
            p->node_stage[ni] = fstage[ni];
        } else if (n->fwd >= 0) {
            p->node_stage[ni] = fstage[n->fwd];
        } else {
            const struct wf_value *c = &g->v[n->in[0]]; /* a contribution: made by a backward node */
            p->node_stage[ni] = p->node_stage[c->producer];
        }
    }
    for (int k = 0; k < p->n_stages && rc == WF_OK; k++) {
        struct wf_stage_spec *s = &p->st[k];
        if ((rc = stage_text(m, g, &g3, split, n_split, fstage, k, &s->model_text)) < 0) break;
        for (int ni = 0; ni < g->nn; ni++) {
            if (p->node_stage[ni] != k) continue;
            if (g->n[ni].backward)
                s->flops_bwd += g->n[ni].flops / g->batch;
            else {
                s->n_layers++;
                s->flops_fwd += g->n[ni].flops / g->batch;
            }
        }
        if (!s->n_layers) {
            rc = wf_error(WF_ERR_INVALID, "stage %d has no layers: split points '%s' and '%s' are the same cut", k,
                          g->v[split[k - 1]].name, k < n_split ? g->v[split[k]].name : "(end)");
            break;
        }
        if (k > 0) {
            const struct wf_value *t = &g->v[split[k - 1]];
            s->in = wf_strdup(t->name);
            s->in_grad = t->requires_grad;
            s->in_floats = t->numel / g->batch;
        }
        if (k < n_split) {
            const struct wf_value *t = &g->v[split[k]];
            s->out = wf_strdup(t->name);
            s->out_grad = t->requires_grad;
            s->out_floats = t->numel / g->batch;
        }
        if ((k > 0 && !s->in) || (k < n_split && !s->out)) rc = wf_error(WF_ERR_NOMEM, "out of memory");
        for (int i = 0; i < g->n_params; i++) {
            int pv = g->params[i];
            for (int ni = 0; ni < g->n_fwd; ni++) {
                const struct wf_node *n = &g->n[ni];
                int uses = 0;
                for (int a = 0; a < n->n_in; a++)
                    uses |= n->in[a] == pv;
                if (uses && fstage[ni] == k) {
                    s->param_floats += g->v[pv].numel;
                    s->n_params++;
                    break;
                }
            }
        }
    }
    wf_free(fstage);
    if (rc < 0) goto fail;
    int x, y;
    wf_graph_data_inputs(g, &x, &y);
    p->x_name = wf_strdup(x >= 0 ? g->v[x].name : "");
    p->y_name = wf_strdup(y >= 0 ? g->v[y].name : "");
    int len = wf_graph_len_input(g);
    p->len_name = wf_strdup(len >= 0 ? g->v[len].name : "");
    if (!p->x_name || !p->y_name || !p->len_name) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    wf_graph_free(&g3);
    return WF_OK;
fail:
    wf_graph_free(&g3);
    wf_partition_free(p);
    return rc;
}

/* Whether value t alone cuts the forward graph: nothing produced before t
 * (except t and values computed from parameters and constants alone,
 * which move to their reader's stage) is read by a layer that
 * depends on t. */
static int is_cut(const struct wf_graph *g, int t, char *after, const char *freev) {
    memset(after, 0, (size_t)g->nv);
    after[t] = 1;
    for (int ni = g->v[t].producer + 1; ni < g->n_fwd; ni++) {
        const struct wf_node *n = &g->n[ni];
        int d = 0;
        for (int i = 0; i < n->n_in; i++)
            d |= after[n->in[i]];
        if (!d) continue;
        for (int i = 0; i < n->n_in; i++) {
            const struct wf_value *x = &g->v[n->in[i]];
            if (x->kind == WF_V_ACT || x->kind == WF_V_AUX)
                if (!after[n->in[i]] && n->in[i] != t && !freev[n->in[i]]) return 0;
        }
        for (int j = 0; j < n->n_out; j++)
            after[n->out[j]] = 1;
    }
    return g->loss >= 0 && after[g->loss];
}

/* Whether a cut after node c keeps every parameter in one stage: no parameter is read (at its
 * readers' anchors) both at or before c and after it. [lo[p], hi[p]]: the anchors of parameter
 * p's reads (lo > hi: none). */
static int params_stay(const struct wf_graph *g, int c, const int *lo, const int *hi) {
    for (int p = 0; p < g->n_params; p++)
        if (lo[p] <= c && hi[p] > c) return 0;
    return 1;
}

int wf_partition_auto(const struct wf_model *m, int n_stages, char ***names_out) {
    *names_out = NULL;
    struct wf_graph g;
    int rc = wf_graph_build(&g, m, 2);
    if (rc < 0) return rc;
    char *after = wf_malloc((size_t)g.nv + 1), *freev = wf_calloc((size_t)g.nv + 1, 1);
    int *anchor = wf_malloc(sizeof(int) * ((size_t)g.n_fwd + 1));
    double *prefix = wf_calloc((size_t)g.n_fwd + 1, sizeof(double));
    int *cand = wf_malloc(sizeof(int) * ((size_t)g.n_fwd + 1));
    char **names = wf_calloc((size_t)n_stages + 1, sizeof(char *));
    int *reader = wf_malloc(sizeof(int) * ((size_t)g.nv + 1));
    int plo[WF_ARRAY_LEN(g.params)], phi[WF_ARRAY_LEN(g.params)];
    int nc = 0;
    if (!after || !freev || !anchor || !prefix || !cand || !names || !reader) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int ni = 0; ni < g.n_fwd;
         ni++) { /* values of layers that read only parameters and constants (a weight penalty) */
        const struct wf_node *n = &g.n[ni];
        int f = 1;
        for (int i = 0; i < n->n_in && f; i++) {
            const struct wf_value *x = &g.v[n->in[i]];
            if (x->kind == WF_V_INPUT) f = 0;
            if (x->kind == WF_V_ACT || x->kind == WF_V_AUX) f = freev[n->in[i]];
        }
        for (int j = 0; j < n->n_out; j++)
            freev[n->out[j]] = (char)f;
    }
    /* where each layer's parameters are read from: a layer that reads only parameters and constants
     * runs in the stage of its first reader, so its reads count there (anchor: that reader's index) */
    for (int v = 0; v < g.nv; v++)
        reader[v] = -1;
    for (int ni = g.n_fwd - 1; ni >= 0; ni--) { /* reader[v]: the first layer reading v */
        for (int i = 0; i < g.n[ni].n_in; i++)
            reader[g.n[ni].in[i]] = ni;
    }
    for (int ni = g.n_fwd - 1; ni >= 0; ni--) {
        anchor[ni] = ni;
        if (!freev[g.n[ni].out[0]]) continue;
        int first = -1;
        for (int k = 0; k < g.n[ni].n_out; k++)
            if (reader[g.n[ni].out[k]] >= 0 && (first < 0 || reader[g.n[ni].out[k]] < first))
                first = reader[g.n[ni].out[k]];
        anchor[ni] = first >= 0 ? anchor[first] : g.n_fwd - 1;
    }
    for (int p = 0; p < g.n_params; p++) {
        plo[p] = g.n_fwd;
        phi[p] = -1;
    }
    for (int v = 0; v < g.nv; v++)
        reader[v] = -1;
    for (int p = 0; p < g.n_params; p++)
        reader[g.params[p]] = p;
    for (int ni = 0; ni < g.n_fwd; ni++)
        for (int i = 0; i < g.n[ni].n_in; i++) {
            int p = reader[g.n[ni].in[i]];
            if (p < 0) continue;
            int at = freev[g.n[ni].out[0]] ? anchor[ni] : ni;
            if (at < plo[p]) plo[p] = at;
            if (at > phi[p]) phi[p] = at;
        }
    /* cost of a layer: forward + backward FLOPs (backward ~ 2x for GEMM layers) */
    double total = 0;
    for (int ni = 0; ni < g.n_fwd; ni++) {
        const struct wf_node *n = &g.n[ni];
        total += n->flops * (wf_op_get(n->op)->flags & WF_OPF_GEMM ? 3 : 2);
        prefix[ni] = total;
        int o = n->out[0];
        if (o != g.loss && g.v[o].dtype == WF_F32 && g.v[o].ndim > 0 && g.v[o].alias < 0 && !freev[o] &&
            is_cut(&g, o, after, freev) && params_stay(&g, ni, plo, phi))
            cand[nc++] = ni;
    }
    if (nc < n_stages - 1) {
        rc = wf_error(WF_ERR_INVALID, "%s has %d places where it can be cut into pipeline stages; %d stages need %d",
                      g.path, nc, n_stages, n_stages - 1);
        goto done;
    }
    /* boundary i: the candidate closest to i/S of the cost, after the previous one */
    int prev = -1;
    for (int i = 1; i < n_stages; i++) {
        double want = total * i / n_stages;
        int best = -1;
        for (int c = prev + 1; c <= nc - (n_stages - i); c++) {
            if (best < 0 || __builtin_fabs(prefix[cand[c]] - want) < __builtin_fabs(prefix[cand[best]] - want))
                best = c;
        }
        prev = best;
        names[i - 1] = wf_strdup(g.v[g.n[cand[best]].out[0]].name);
        if (!names[i - 1]) {
            rc = wf_error(WF_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    *names_out = names;
    names = NULL;
    rc = n_stages - 1;
done:
    if (names)
        for (int i = 0; i < n_stages; i++)
            wf_free(names[i]);
    wf_free(names);
    wf_free(after);
    wf_free(freev);
    wf_free(anchor);
    wf_free(prefix);
    wf_free(cand);
    wf_free(reader);
    wf_graph_free(&g);
    return rc;
}
