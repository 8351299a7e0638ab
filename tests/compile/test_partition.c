/*
 * Pipeline partitioning: every layer and backward node lands in exactly one
 * stage, split points that do not cut the graph are refused with a message
 * naming them, and a model run stage by stage (activations forward,
 * gradients backward by hand) gives the same bits as the whole model.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/model.h"

#define MAXS 4

static void fill(float *p, long n, uint64_t seed, float scale) {
    struct wf_rng r;
    wf_rng_init(&r, seed, 7);
    for (long i = 0; i < n; i++)
        p[i] = (2 * wf_rng_uniform(&r) - 1) * scale;
}

/* Sets every parameter of e from a name-keyed deterministic fill. */
static void init_params(struct wf_exec *e) {
    const struct wf_graph *g = &e->prog.g;
    for (int i = 0; i < g->n_params; i++) {
        const struct wf_value *v = &g->v[g->params[i]];
        fill(e->params + e->prog.offset[g->params[i]], (long)v->numel, wf_hash64(v->name, strlen(v->name), 1), 0.1f);
    }
}

static void feed_inputs(struct wf_exec *e, const char *x, const char *y, int B) {
    const struct wf_graph *g = &e->prog.g;
    int xi = wf_graph_find(g, x), yi = wf_graph_find(g, y);
    if (xi >= 0) fill(wf_exec_ptr(e, xi), (long)g->v[xi].numel, 99, 1.0f);
    if (yi >= 0) {
        int32_t *lab = wf_exec_ptr(e, yi);
        for (int i = 0; i < B; i++)
            lab[i] = (i * 7) % 10;
    }
}

/* Gradient of parameter `name` in e, or NULL. */
static const float *param_grad(const struct wf_exec *e, const char *name) {
    int v = wf_graph_find(&e->prog.g, name);
    return v < 0 ? NULL : e->grads + e->prog.offset[v];
}

static void check_split(const char *model_rel, char **split, int ns, int B) {
    struct wf_model m;
    CHECK(wf_model_load(&m, wf_test_src(model_rel)) == WF_OK);
    struct wf_partition p;
    int rc = wf_partition_build(&p, &m, ns, split);
    CHECKF(rc == WF_OK, "%s: %s", model_rel, wf_errmsg());
    if (rc < 0) {
        wf_model_free(&m);
        return;
    }
    CHECK(p.n_stages == ns + 1);
    /* the whole model */
    struct wf_exec full;
    CHECK(wf_exec_init(&full, &m, B, 1, NULL, NULL) == WF_OK);
    full.params = wf_aalloc(sizeof(float) * (size_t)full.prog.n_param_floats);
    full.grads = wf_aalloc(sizeof(float) * (size_t)full.prog.n_param_floats);
    init_params(&full);
    wf_exec_set_rng(&full, 5, 3, 1);
    feed_inputs(&full, p.x_name, p.y_name, B);
    CHECK(wf_exec_forward(&full) == WF_OK && wf_exec_backward(&full) == WF_OK);
    float full_loss = *(float *)wf_exec_ptr(&full, full.prog.g.loss);

    /* the stages: each node of the full graph in exactly one stage, by name */
    struct wf_exec st[MAXS];
    struct wf_model sm[MAXS];
    int *count = calloc((size_t)full.prog.g.nn, sizeof(int));
    int S = p.n_stages;
    for (int k = 0; k < S; k++) {
        const struct wf_stage_spec *s = &p.st[k];
        CHECKF(wf_model_parse(&sm[k], "<stage>", s->model_text) == WF_OK, "%s", wf_errmsg());
        struct wf_stage_opts o = {.seed = s->out};
        if (s->in && s->in_grad) o.diff_in[o.n_diff_in++] = s->in;
        rc = wf_exec_init_stage(&st[k], &sm[k], B, 1, &o, NULL, NULL);
        CHECKF(rc == WF_OK, "stage %d: %s\n%s", k, wf_errmsg(), s->model_text);
        if (rc < 0) return;
        st[k].params = wf_aalloc(sizeof(float) * (size_t)st[k].prog.n_param_floats + 64);
        st[k].grads = wf_aalloc(sizeof(float) * (size_t)st[k].prog.n_param_floats + 64);
        CHECK(st[k].prog.n_param_floats == s->param_floats);
        init_params(&st[k]);
        wf_exec_set_rng(&st[k], 5, 3, 1);
        const struct wf_graph *sg = &st[k].prog.g;
        for (int ni = 0; ni < sg->nn; ni++) {
            int found = 0;
            for (int fi = 0; fi < full.prog.g.nn; fi++)
                if (!strcmp(full.prog.g.n[fi].name, sg->n[ni].name)) {
                    count[fi]++;
                    found = 1;
                    CHECKF(p.node_stage[fi] == k, "node %s: stage %d, partition says %d", sg->n[ni].name, k,
                           p.node_stage[fi]);
                }
            CHECKF(found, "stage %d node '%s' is not in the whole graph", k, sg->n[ni].name);
        }
    }
    for (int fi = 0; fi < full.prog.g.nn; fi++)
        CHECKF(count[fi] == 1, "node '%s' runs in %d stages", full.prog.g.n[fi].name, count[fi]);
    /* forward through the stages, then backward */
    for (int k = 0; k < S; k++) {
        feed_inputs(&st[k], p.x_name, p.y_name, B);
        if (k > 0) {
            const struct wf_graph *a = &st[k - 1].prog.g, *b = &st[k].prog.g;
            int o = wf_graph_find(a, p.st[k].in), i = wf_graph_find(b, p.st[k].in);
            CHECK(o >= 0 && i >= 0 && a->v[o].numel == b->v[i].numel);
            memcpy(wf_exec_ptr(&st[k], i), wf_exec_ptr(&st[k - 1], o), sizeof(float) * (size_t)a->v[o].numel);
        }
        CHECK(wf_exec_forward(&st[k]) == WF_OK);
    }
    float stage_loss = *(float *)wf_exec_ptr(&st[S - 1], st[S - 1].prog.g.loss);
    CHECKF(memcmp(&stage_loss, &full_loss, 4) == 0, "loss %.9g vs whole model %.9g", stage_loss, full_loss);
    for (int k = S - 1; k >= 0; k--) {
        if (k < S - 1) {
            const struct wf_graph *a = &st[k + 1].prog.g, *b = &st[k].prog.g;
            CHECK(a->n_diff_in == 1 && b->seed_grad >= 0);
            memcpy(wf_exec_ptr(&st[k], b->seed_grad), wf_exec_ptr(&st[k + 1], a->in_grad[0]),
                   sizeof(float) * (size_t)b->v[b->seed_grad].numel);
        }
        CHECK(wf_exec_backward(&st[k]) == WF_OK);
    }
    /* every parameter gradient bit-identical */
    const struct wf_graph *fg = &full.prog.g;
    int same = 0;
    for (int i = 0; i < fg->n_params; i++) {
        const struct wf_value *v = &fg->v[fg->params[i]];
        const float *a = full.grads + full.prog.offset[fg->params[i]], *b = NULL;
        for (int k = 0; k < S && !b; k++)
            b = param_grad(&st[k], v->name);
        CHECKF(b != NULL, "parameter %s in no stage", v->name);
        if (b && !memcmp(a, b, sizeof(float) * (size_t)v->numel))
            same++;
        else
            fprintf(stderr, "%s: gradient of %s differs from the whole model\n", model_rel, v->name);
    }
    CHECK(same == fg->n_params);
    for (int k = 0; k < S; k++) {
        wf_afree(st[k].params);
        wf_afree(st[k].grads);
        wf_exec_free(&st[k]);
        wf_model_free(&sm[k]);
    }
    free(count);
    wf_afree(full.params);
    wf_afree(full.grads);
    wf_exec_free(&full);
    wf_partition_free(&p);
    wf_model_free(&m);
}

static void check_refused(const char *model_rel, char **split, int ns, const char *want) {
    struct wf_model m;
    CHECK(wf_model_load(&m, wf_test_src(model_rel)) == WF_OK);
    struct wf_partition p;
    int rc = wf_partition_build(&p, &m, ns, split);
    CHECKF(rc < 0 && strstr(wf_errmsg(), want), "%s: expected an error with '%s', got %d: %s", model_rel, want, rc,
           rc < 0 ? wf_errmsg() : "");
    if (rc == WF_OK) wf_partition_free(&p);
    wf_model_free(&m);
}

int main(void) {
    char *cnn1[] = {"p1"}, *cnn2[] = {"p1", "flat"}, *cnn3[] = {"r1", "p2", "r3"};
    check_split("examples/cnn.wf", cnn1, 1, 4);
    check_split("examples/cnn.wf", cnn2, 2, 3);
    check_split("examples/cnn.wf", cnn3, 3, 2);
    char *res1[] = {"s0"}, *res2[] = {"s1", "head"};
    check_split("examples/resmlp.wf", res1, 1, 4);
    check_split("examples/resmlp.wf", res2, 2, 5);
    char *mlp[] = {"h1"};
    check_split("examples/mlp.wf", mlp, 1, 4);

    char *bad1[] = {"b1b"}, *bad2[] = {"nope"}, *bad3[] = {"loss"}, *bad4[] = {"p2", "p1"}, *bad5[] = {"x"};
    check_refused("examples/resmlp.wf", bad1, 1, "split point 'b1b' does not cut the graph: layer 's1'");
    check_refused("examples/cnn.wf", bad2, 1, "split point 'nope' is not a tensor");
    check_refused("examples/cnn.wf", bad3, 1, "is the loss");
    check_refused("examples/cnn.wf", bad4, 2, "out of order");
    check_refused("examples/cnn.wf", bad5, 1, "must be the f32 output of a layer");

    /* automatic split points balance compute and are valid cuts */
    struct wf_model m;
    CHECK(wf_model_load(&m, wf_test_src("examples/resmlp.wf")) == WF_OK);
    char **names = NULL;
    int n = wf_partition_auto(&m, 3, &names);
    CHECKF(n == 2, "%s", wf_errmsg());
    if (n == 2) {
        struct wf_partition p;
        CHECKF(wf_partition_build(&p, &m, n, names) == WF_OK, "%s", wf_errmsg());
        wf_partition_free(&p);
        for (int i = 0; i < 3; i++)
            wf_free(names[i]);
        wf_free(names);
    }
    wf_model_free(&m);
    return wf_test_done("test_partition");
}
