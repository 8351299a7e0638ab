/*
 * graph: the op table. Every built-in op id has a complete definition with a
 * unique name; model-file ops are found by name and internal ones are not;
 * registration refuses what it cannot use with a clear message. Then a toy
 * op defined here through the public interface only (graph.h) — cube(x,
 * scale=S) = S·x³ elementwise, backward 3·S·x²·dout, with kernel scratch —
 * is registered, used by a model, checked against central finite
 * differences through the executor, trained with SGD until its loss falls,
 * and cut into two pipeline stages whose re-parsed sub-models give the whole
 * model's bits.
 */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/graph.h"
#include "weft/model.h"
#include "weft/safetensors.h"
#include "weft/train.h"

/* ---- the built-in ops ---- */

/* every op a model file may name, with its id */
static const struct {
    const char *name;
    int id;
} model_ops[] = {
    {"linear", WF_OP_LINEAR},
    {"matmul", WF_OP_MATMUL},
    {"add", WF_OP_ADD},
    {"mul", WF_OP_MUL},
    {"relu", WF_OP_RELU},
    {"gelu", WF_OP_GELU},
    {"tanh", WF_OP_TANH},
    {"sigmoid", WF_OP_SIGMOID},
    {"softmax", WF_OP_SOFTMAX},
    {"log_softmax", WF_OP_LOG_SOFTMAX},
    {"cross_entropy", WF_OP_CROSS_ENTROPY},
    {"conv2d", WF_OP_CONV2D},
    {"maxpool2d", WF_OP_MAXPOOL2D},
    {"avgpool2d", WF_OP_AVGPOOL2D},
    {"reshape", WF_OP_RESHAPE},
    {"flatten", WF_OP_FLATTEN},
    {"transpose", WF_OP_TRANSPOSE},
    {"layernorm", WF_OP_LAYERNORM},
    {"dropout", WF_OP_DROPOUT},
    {"embedding", WF_OP_EMBEDDING},
    {"concat", WF_OP_CONCAT},
    {"slice", WF_OP_SLICE},
    {"sum", WF_OP_SUM},
    {"mean", WF_OP_MEAN},
    {"mse", WF_OP_MSE},
    {"bce_with_logits", WF_OP_BCE_LOGITS},
    {"accuracy", WF_OP_ACCURACY},
    {"rnn_tanh", WF_OP_RNN_TANH},
    {"gru", WF_OP_GRU},
    {"lstm", WF_OP_LSTM},
};

static void check_builtins(void) {
    CHECKF(wf_op_count() == WF_OP_COUNT, "%d ops before any registration, %d built in", wf_op_count(), WF_OP_COUNT);
    CHECK(wf_op_get(-1) == NULL);
    CHECK(wf_op_get(wf_op_count()) == NULL);
    CHECK(wf_op_get(1 << 30) == NULL);
    for (int i = 0; i < WF_OP_COUNT; i++) {
        const struct wf_op_def *d = wf_op_get(i);
        CHECKF(d != NULL, "op %d has no definition", i);
        if (!d) continue;
        CHECKF(d->name && d->name[0], "op %d has no name", i);
        const char *nm = d->name ? d->name : "?";
        CHECKF(d->infer != NULL, "op %d '%s' has no infer", i, nm);
        CHECKF(d->forward != NULL, "op %d '%s' has no forward", i, nm);
        CHECKF(d->min_in >= 0 && d->min_in <= d->max_in && d->max_in <= WF_MAX_IO, "op '%s': arguments [%d, %d]", nm,
               d->min_in, d->max_in);
        CHECKF(d->n_attr >= 0 && d->n_attr <= WF_MAX_ATTRS, "op '%s': %d attributes", nm, d->n_attr);
        for (int k = 0; k < d->n_attr && k < WF_MAX_ATTRS; k++)
            CHECKF(d->attr[k].name && d->attr[k].type >= WF_AT_INT && d->attr[k].type <= WF_AT_SHAPE,
                   "op '%s': attribute %d", nm, k);
        for (int a = 0; a < 4; a++) {
            const struct wf_arg_spec *s = &d->arg[a];
            int hi = s->max_rank ? s->max_rank : WF_MAX_DIMS;
            CHECKF(s->min_rank >= 0 && s->min_rank <= hi && hi <= WF_MAX_DIMS, "op '%s': argument %d ranks [%d, %d]",
                   nm, a, s->min_rank, hi);
            CHECKF(!(s->dtypes & ~(WF_DT(WF_F32) | WF_DT(WF_I32))), "op '%s': argument %d dtypes 0x%x", nm, a,
                   s->dtypes);
        }
        for (int j = 0; j < i; j++) {
            const struct wf_op_def *e = wf_op_get(j);
            CHECKF(!e || !d->name || !e->name || strcmp(d->name, e->name), "ops %d and %d are both named '%s'", j, i,
                   nm);
        }
    }
    int n_model = 0;
    for (int i = 0; i < WF_OP_COUNT; i++) {
        const struct wf_op_def *d = wf_op_get(i);
        if (d && d->name && !(d->flags & WF_OPF_INTERNAL)) {
            n_model++;
            CHECKF(wf_op_find(d->name) == i, "wf_op_find(\"%s\") = %d, want %d", d->name, wf_op_find(d->name), i);
        }
    }
    CHECKF(n_model == (int)WF_ARRAY_LEN(model_ops), "%d model-file ops, the test knows %d", n_model,
           (int)WF_ARRAY_LEN(model_ops));
    char names[2048];
    wf_op_names(names, sizeof names);
    for (size_t i = 0; i < WF_ARRAY_LEN(model_ops); i++) {
        CHECKF(wf_op_find(model_ops[i].name) == model_ops[i].id, "wf_op_find(\"%s\") = %d, want %d", model_ops[i].name,
               wf_op_find(model_ops[i].name), model_ops[i].id);
        const struct wf_op_def *d = wf_op_get(model_ops[i].id);
        CHECKF(d && !strcmp(d->name, model_ops[i].name), "op %d is '%s', want '%s'", model_ops[i].id,
               d ? d->name : "(none)", model_ops[i].name);
        size_t L = strlen(model_ops[i].name);
        int listed = 0;
        for (const char *p = names; (p = strstr(p, model_ops[i].name)) != NULL; p += L)
            if ((p == names || p[-1] == ' ') && (p[L] == ',' || p[L] == 0)) listed = 1;
        CHECKF(listed, "wf_op_names lacks '%s': %s", model_ops[i].name, names);
    }
    /* internal ops exist but a model file cannot name them */
    CHECK(wf_op_get(WF_OP_ACCUM) && !strcmp(wf_op_get(WF_OP_ACCUM)->name, "accum"));
    CHECK(wf_op_get(WF_OP_ACCUM)->flags & WF_OPF_INTERNAL);
    CHECK(wf_op_find("accum") == -1);
    CHECKF(!strstr(names, "accum"), "wf_op_names lists an internal op: %s", names);
    CHECK(wf_op_find("") == -1);
    CHECK(wf_op_find("Linear") == -1);
    CHECK(wf_op_find("linear ") == -1);
    CHECK(wf_op_find("cube") == -1);
    /* the names are cut, never overrun, in a short buffer */
    char small[12];
    memset(small, 'z', sizeof small);
    wf_op_names(small, 8);
    CHECK(memchr(small, 0, 8) != NULL && small[8] == 'z');

    /* a model that names accum is refused like any unknown op */
    struct wf_model m;
    struct wf_graph g;
    CHECK(wf_model_parse(&m, "acc.wf", "input x : f32[B, 3]\ns = accum(x)\noutput s\n") == WF_OK);
    int rc = wf_graph_build(&g, &m, 2);
    const char *want = "acc.wf:2:5: unknown op 'accum' (expected one of: linear, matmul, add,";
    CHECKF(rc == WF_ERR_PARSE && !strncmp(wf_errmsg(), want, strlen(want)), "%d: %s", rc, wf_errmsg());
    if (rc == WF_OK) wf_graph_free(&g);
    wf_model_free(&m);
}

/* ---- the toy op: cube(x, scale=1) = scale * x^3 ---- */

/* out is x's shape; 4 flops per element (square, multiply, scale) */
static int cube_infer(struct wf_infer *c) {
    struct wf_node *n = &c->g->n[c->node];
    if (n->af[0] == 0) return wf_infer_err(c, "scale must not be 0");
    char s[96];
    if (c->in[0].numel > 1000000)
        return wf_infer_err(c, "the toy op takes at most 1e6 elements, got %s", wf_infer_shape(c, 0, s));
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, c->in[0].ndim, c->in[0].shape);
    if (rc < 0) return rc;
    c->g->n[c->node].flops = 4.0 * (double)c->in[0].numel;
    return WF_OK;
}

/* scratch: x^2, one float per element */
static size_t cube_work(const struct wf_graph *g, const struct wf_node *f) { return (size_t)g->v[f->in[0]].numel; }

static long cube_n(const struct wf_run *r) { return (long)r->g->v[r->n->in[0]].numel; }

/* out (n) = scale * x^3 */
static int cube_forward(const struct wf_run *r) {
    const float *x = wf_run_ptr(r, r->n->in[0]);
    float *out = wf_run_ptr(r, r->n->out[0]), *sq = r->work, s = (float)r->n->af[0];
    long n = cube_n(r);
    for (long i = 0; i < n; i++)
        sq[i] = x[i] * x[i];
    for (long i = 0; i < n; i++)
        out[i] = s * sq[i] * x[i];
    return WF_OK;
}

/* dx (n) = 3 * scale * x^2 * dout */
static int cube_backward(const struct wf_run *r) {
    float *dx = wf_run_ptr(r, r->b->out[0]);
    if (!dx) return WF_OK; /* x needs no gradient */
    const float *x = wf_run_ptr(r, r->b->in[1]), *dout = wf_run_ptr(r, r->b->in[0]);
    float *sq = r->work, s = (float)r->n->af[0];
    long n = cube_n(r);
    for (long i = 0; i < n; i++)
        sq[i] = x[i] * x[i];
    for (long i = 0; i < n; i++)
        dx[i] = 3.0f * s * sq[i] * dout[i];
    return WF_OK;
}

static const struct wf_op_def cube_def = {
    .name = "cube",
    .min_in = 1,
    .max_in = 1,
    .arg = {{WF_DT(WF_F32), 1, 0}},
    .n_attr = 1,
    .attr = {{"scale", WF_AT_FLOAT, 0, 1.0}},
    .bwd_in = 1, /* the backward reads x */
    .infer = cube_infer,
    .forward = cube_forward,
    .backward = cube_backward,
    .work = cube_work,
};
static int cube_id = -1;

static int fwd_ok(const struct wf_run *r) {
    (void)r;
    return WF_OK;
}
static int infer_ok(struct wf_infer *c) {
    return wf_infer_out(c, NULL, WF_V_ACT, WF_F32, c->in[0].ndim, c->in[0].shape) < 0 ? -1 : WF_OK;
}

/* Registration is refused with a message naming the problem; the table is unchanged. */
static void expect_refused(const struct wf_op_def *d, const char *want) {
    int before = wf_op_count();
    wf_error_clear();
    int rc = wf_op_register(d);
    CHECKF(rc == WF_ERR_INVALID && !strcmp(wf_errmsg(), want), "register: want '%s', got %d '%s'", want, rc,
           wf_errmsg());
    CHECK(wf_op_count() == before);
}

static void check_registration(void) {
    struct wf_op_def d = {.name = "toy", .min_in = 1, .max_in = 1, .infer = infer_ok, .forward = fwd_ok};
    expect_refused(NULL, "op registration: the op needs a name that is an identifier");
    d.name = NULL;
    expect_refused(&d, "op registration: the op needs a name that is an identifier");
    d.name = "";
    expect_refused(&d, "op registration: the op needs a name that is an identifier");
    d.name = "3x";
    expect_refused(&d, "op registration: the op needs a name that is an identifier");
    d.name = "two words";
    expect_refused(&d, "op registration: the op needs a name that is an identifier");
    d.name = "relu";
    expect_refused(&d, "op registration: an op named 'relu' exists already");
    d.name = "cross_entropy";
    expect_refused(&d, "op registration: an op named 'cross_entropy' exists already");
    d.name = "toy";
    d.infer = NULL;
    expect_refused(&d, "op registration: op 'toy' needs infer and forward functions");
    d.infer = infer_ok;
    d.forward = NULL;
    expect_refused(&d, "op registration: op 'toy' needs infer and forward functions");
    d.forward = fwd_ok;
    const char *bad_counts = "op registration: op 'toy' has bad argument or attribute counts";
    d.min_in = -1;
    expect_refused(&d, bad_counts);
    d.min_in = 2;
    d.max_in = 1;
    expect_refused(&d, bad_counts);
    d.min_in = 1;
    d.max_in = WF_MAX_IO + 1;
    expect_refused(&d, bad_counts);
    d.max_in = 1;
    d.n_attr = -1;
    expect_refused(&d, bad_counts);
    d.n_attr = WF_MAX_ATTRS + 1;
    expect_refused(&d, bad_counts);
    d.n_attr = 0;
    CHECK(wf_op_count() == WF_OP_COUNT);

    /* the toy op */
    cube_id = wf_op_register(&cube_def);
    CHECKF(cube_id == WF_OP_COUNT, "register cube: %d %s", cube_id, wf_errmsg());
    CHECK(wf_op_count() == WF_OP_COUNT + 1);
    CHECK(wf_op_get(cube_id) == &cube_def);
    CHECK(wf_op_find("cube") == cube_id);
    char names[2048];
    wf_op_names(names, sizeof names);
    size_t L = strlen(names);
    CHECKF(L > 6 && !strcmp(names + L - 6, ", cube"), "wf_op_names: %s", names);
    expect_refused(&cube_def, "op registration: an op named 'cube' exists already");
}

/* a model file's mistakes with a registered op are reported like a built-in's */
static void expect_build_error(const char *text, int status, const char *want) {
    struct wf_model m;
    struct wf_graph g;
    int rc = wf_model_parse(&m, "toy.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    rc = wf_graph_build(&g, &m, 4);
    CHECKF(rc == status && !strcmp(wf_errmsg(), want), "want %d '%s', got %d '%s'", status, want, rc, wf_errmsg());
    if (rc == WF_OK) wf_graph_free(&g);
    wf_model_free(&m);
}

static void check_cube_errors(void) {
    expect_build_error("input x : f32[B, 3]\nc = cube(x, scale=0)\noutput c\n", WF_ERR_SHAPE,
                       "toy.wf:2:1: layer 'c' (cube): scale must not be 0");
    expect_build_error("input x : f32[B, 3]\nc = cube(x, x)\noutput c\n", WF_ERR_PARSE,
                       "toy.wf:2:5: cube takes 1 tensor argument, got 2");
    expect_build_error("input x : f32[B, 3]\nc = cube(x, power=3)\noutput c\n", WF_ERR_PARSE,
                       "toy.wf:2:13: cube has no attribute 'power' (expected scale)");
    expect_build_error("input x : f32[B, 3]\nc = cube(x, scale=nan)\noutput c\n", WF_ERR_PARSE,
                       "toy.wf:2:13: attribute 'scale' must be finite");
    expect_build_error("input y : i32[B]\nc = cube(y)\noutput c\n", WF_ERR_SHAPE,
                       "toy.wf:2:1: layer 'c' (cube): argument 1 'y' must be f32, got i32[4]");
    expect_build_error("input x : f32[B, 300000]\nc = cube(x)\noutput c\n", WF_ERR_SHAPE,
                       "toy.wf:2:1: layer 'c' (cube): the toy op takes at most 1e6 elements, got f32[4, 300000]");
    expect_build_error("input x : f32[B, 3]\ns = sum(x)\nc = cube(s)\noutput c\n", WF_ERR_SHAPE,
                       "toy.wf:3:1: layer 'c' (cube): argument 1 's' must have 1 to 6 dimensions, got f32[]");
}

/* ---- gradients, training and partitioning through the executor ---- */

static const char *toy_model = "model toy\n"
                               "input x : f32[B, 6]\n"
                               "input y : i32[B]\n"
                               "h = linear(x, out=5)\n"
                               "c = cube(h, scale=0.5)\n"
                               "o = linear(c, out=3)\n"
                               "loss = cross_entropy(o, y)\n"
                               "acc = accuracy(o, y)\n"
                               "output loss, acc\n";

/* synthetic classification data: 3 classes, the argmax of a fixed linear map of x */
static void make_data(float *x, int32_t *y, int n, uint64_t seed) {
    struct wf_rng r;
    wf_rng_init(&r, seed, 1);
    static const float w[3][6] = {
        {1, -1, 0.5f, 0, 0.3f, -0.2f}, {-0.5f, 1, 1, -1, 0, 0.4f}, {0, 0.2f, -1, 1, 1, -0.3f}};
    for (int i = 0; i < n; i++) {
        float best = -1e30f;
        for (int k = 0; k < 6; k++)
            x[i * 6 + k] = wf_rng_normal(&r);
        for (int c = 0; c < 3; c++) {
            float s = 0;
            for (int k = 0; k < 6; k++)
                s += w[c][k] * x[i * 6 + k];
            if (s > best) {
                best = s;
                y[i] = c;
            }
        }
    }
}

/* inputs are fed before every forward: the plan may reuse their bytes after their last use */
static void feed(struct wf_exec *e, const float *x, const int32_t *y) {
    const struct wf_graph *g = &e->prog.g;
    int xi = wf_graph_find(g, "x"), yi = wf_graph_find(g, "y");
    if (xi >= 0) memcpy(wf_exec_ptr(e, xi), x, sizeof(float) * (size_t)g->v[xi].numel);
    if (yi >= 0) memcpy(wf_exec_ptr(e, yi), y, sizeof(int32_t) * (size_t)g->v[yi].numel);
}

static float forward_loss(struct wf_exec *e, const float *x, const int32_t *y) {
    feed(e, x, y);
    CHECK(wf_exec_forward(e) == WF_OK);
    return *(float *)wf_exec_ptr(e, e->prog.g.loss);
}

static void init_params(struct wf_exec *e, uint64_t seed) {
    const struct wf_graph *g = &e->prog.g;
    for (int i = 0; i < g->n_params; i++)
        wf_init_param(&g->v[g->params[i]], e->params + e->prog.offset[g->params[i]], seed);
}

static void check_cube_gradients(const struct wf_model *m) {
    enum { B = 4 };
    float x[B * 6];
    int32_t y[B];
    make_data(x, y, B, 21);
    struct wf_exec e;
    int rc = wf_exec_init(&e, m, B, 1, NULL, NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    const struct wf_graph *g = &e.prog.g;
    /* the backward runs the toy op's backward: a node "dc" of op cube */
    int found = 0;
    for (int i = g->n_fwd; i < g->nn; i++)
        if (g->n[i].backward && g->n[i].op == cube_id && !strcmp(g->n[i].name, "dc")) found = 1;
    CHECK(found);
    CHECKF(e.prog.work_floats >= B * 5, "kernel scratch %zu floats, the toy op asked for %d", e.prog.work_floats,
           B * 5);
    int64_t np = e.prog.n_param_floats;
    CHECK(np == 5 * 6 + 5 + 3 * 5 + 3);
    e.params = wf_aalloc(sizeof(float) * (size_t)np);
    e.grads = wf_aalloc(sizeof(float) * (size_t)np);
    struct wf_rng r;
    wf_rng_init(&r, 3, 4);
    for (int64_t i = 0; i < np; i++)
        e.params[i] = 0.6f * wf_rng_normal(&r);
    forward_loss(&e, x, y);
    CHECK(wf_exec_seed(&e, 1.0f) == WF_OK);
    CHECK(wf_exec_backward(&e) == WF_OK);
    double worst = 0;
    for (int p = 0; p < g->n_params; p++) {
        const struct wf_value *v = &g->v[g->params[p]];
        int64_t off = e.prog.offset[g->params[p]];
        CHECKF(v->grad >= 0, "parameter %s has no gradient", v->name);
        for (int64_t k = 0; k < v->numel; k++) {
            float *w = e.params + off + k, save = *w;
            const float h = 1e-3f;
            *w = save + h;
            double lp = forward_loss(&e, x, y);
            *w = save - h;
            double lm = forward_loss(&e, x, y);
            *w = save;
            double fd = (lp - lm) / (2.0 * h), an = e.grads[off + k];
            /* a loss of about 1 in f32 moves in steps of 6e-8: 3e-4 absolute is a few of them over 2h */
            double err = fabs(fd - an) / (3e-4 + 5e-3 * fabs(fd));
            if (err > worst) worst = err;
            CHECKF(err <= 1, "d loss / d %s[%lld]: analytic %.6g, finite difference %.6g", v->name, (long long)k, an,
                   fd);
        }
    }
    printf("cube: worst gradient error %.2f of the tolerance (|fd - analytic| <= 3e-4 + 5e-3 |fd|) at every parameter "
           "element\n",
           worst);
    wf_afree(e.params);
    wf_afree(e.grads);
    wf_exec_free(&e);
}

/* Plain SGD on a fixed training set of 128 samples in 4 batches of 32, 40 steps: the loss falls. */
static void check_cube_training(const struct wf_model *m) {
    enum { B = 32, NB = 4, STEPS = 40 };
    static float x[NB * B * 6];
    static int32_t y[NB * B];
    make_data(x, y, NB * B, 5);
    struct wf_exec e;
    int rc = wf_exec_init(&e, m, B, 1, NULL, NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    int64_t np = e.prog.n_param_floats;
    e.params = wf_aalloc(sizeof(float) * (size_t)np);
    e.grads = wf_aalloc(sizeof(float) * (size_t)np);
    init_params(&e, 1);
    struct wf_exec ev; /* the eval program over all 128 samples, sharing the parameters */
    rc = wf_exec_init(&ev, m, NB * B, 0, e.params, NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    int acc_v = wf_graph_find(&ev.prog.g, "acc");
    CHECK(acc_v >= 0);
    float first = forward_loss(&ev, x, y), acc0 = *(float *)wf_exec_ptr(&ev, acc_v);
    long allocs = 0;
    for (int s = 0; s < STEPS; s++) {
        if (s == 1) allocs = wf_alloc_count();
        const float *bx = x + (s % NB) * B * 6;
        const int32_t *by = y + (s % NB) * B;
        float l = forward_loss(&e, bx, by);
        CHECKF(isfinite(l), "step %d: loss %g", s, l);
        CHECK(wf_exec_seed(&e, 1.0f) == WF_OK);
        CHECK(wf_exec_backward(&e) == WF_OK);
        for (int64_t i = 0; i < np; i++)
            e.params[i] -= 0.3f * e.grads[i];
    }
    CHECKF(wf_alloc_count() == allocs, "a training step allocated %ld times", wf_alloc_count() - allocs);
    float last = forward_loss(&ev, x, y), acc1 = *(float *)wf_exec_ptr(&ev, acc_v);
    printf("cube: SGD %d steps: loss %.4f -> %.4f, accuracy %.3f -> %.3f\n", STEPS, first, last, acc0, acc1);
    CHECKF(last < 0.7f * first, "the loss did not fall: %.4f -> %.4f", first, last);
    CHECKF(acc1 > acc0 && acc1 >= 0.6f, "accuracy %.3f -> %.3f", acc0, acc1);
    wf_exec_free(&ev);
    wf_afree(e.params);
    wf_afree(e.grads);
    wf_exec_free(&e);
}

/* Two pipeline stages, cut at h (the toy op in stage 1) and at c (in stage 0): each
 * stage's sub-model is canonical text naming the op, re-parsed and compiled on
 * its own; run stage by stage it gives the whole model's loss and gradient bits. */
static void check_cube_partition(const struct wf_model *m, const char *cut, int cube_stage) {
    enum { B = 6 };
    float x[B * 6];
    int32_t y[B];
    make_data(x, y, B, 9);
    struct wf_partition p;
    char *split[] = {(char *)cut};
    int rc = wf_partition_build(&p, m, 1, split);
    CHECKF(rc == WF_OK, "cut at %s: %s", cut, wf_errmsg());
    if (rc) return;
    CHECK(p.n_stages == 2);
    CHECKF(p.n_stages == 2 && strstr(p.st[cube_stage].model_text, "c = cube(h, scale=0.5)") &&
               !strstr(p.st[1 - cube_stage].model_text, "cube("),
           "cut at %s: stage texts:\n%s---\n%s", cut, p.st[0].model_text, p.st[1].model_text);
    struct wf_exec full;
    CHECK(wf_exec_init(&full, m, B, 1, NULL, NULL) == WF_OK);
    full.params = wf_aalloc(sizeof(float) * (size_t)full.prog.n_param_floats);
    full.grads = wf_aalloc(sizeof(float) * (size_t)full.prog.n_param_floats);
    init_params(&full, 2);
    float full_loss = forward_loss(&full, x, y);
    CHECK(wf_exec_seed(&full, 1.0f) == WF_OK && wf_exec_backward(&full) == WF_OK);

    struct wf_model sm[2];
    struct wf_exec st[2];
    memset(st, 0, sizeof st);
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        ok &= (rc = wf_model_parse(&sm[k], "<stage>", p.st[k].model_text)) == WF_OK;
        CHECKF(rc == WF_OK, "stage %d: %s", k, wf_errmsg());
        if (rc) continue;
        struct wf_stage_opts o = {.seed = p.st[k].out};
        if (p.st[k].in && p.st[k].in_grad) o.diff_in[o.n_diff_in++] = p.st[k].in;
        rc = wf_exec_init_stage(&st[k], &sm[k], B, 1, &o, NULL, NULL);
        CHECKF(rc == WF_OK, "stage %d: %s\n%s", k, wf_errmsg(), p.st[k].model_text);
        ok &= rc == WF_OK;
        if (rc) continue;
        st[k].params = wf_aalloc(sizeof(float) * (size_t)st[k].prog.n_param_floats + 64);
        st[k].grads = wf_aalloc(sizeof(float) * (size_t)st[k].prog.n_param_floats + 64);
        init_params(&st[k], 2);
    }
    if (ok) {
        feed(&st[0], x, y);
        CHECK(wf_exec_forward(&st[0]) == WF_OK);
        const struct wf_graph *a = &st[0].prog.g, *b = &st[1].prog.g;
        int o = wf_graph_find(a, p.st[1].in), i = wf_graph_find(b, p.st[1].in);
        CHECK(o >= 0 && i >= 0 && a->v[o].numel == b->v[i].numel);
        if (o >= 0 && i >= 0)
            memcpy(wf_exec_ptr(&st[1], i), wf_exec_ptr(&st[0], o), sizeof(float) * (size_t)a->v[o].numel);
        float stage_loss = forward_loss(&st[1], x, y);
        CHECKF(memcmp(&stage_loss, &full_loss, 4) == 0, "cut at %s: loss %.9g vs whole model %.9g", cut, stage_loss,
               full_loss);
        CHECK(wf_exec_seed(&st[1], 1.0f) == WF_OK && wf_exec_backward(&st[1]) == WF_OK);
        CHECK(b->n_diff_in == 1 && a->seed_grad >= 0);
        if (b->n_diff_in == 1 && a->seed_grad >= 0)
            memcpy(wf_exec_ptr(&st[0], a->seed_grad), wf_exec_ptr(&st[1], b->in_grad[0]),
                   sizeof(float) * (size_t)a->v[a->seed_grad].numel);
        CHECK(wf_exec_backward(&st[0]) == WF_OK);
        const struct wf_graph *fg = &full.prog.g;
        for (int q = 0; q < fg->n_params; q++) {
            const struct wf_value *v = &fg->v[fg->params[q]];
            const float *ga = full.grads + full.prog.offset[fg->params[q]], *gb = NULL;
            for (int k = 0; k < 2 && !gb; k++) {
                int sv = wf_graph_find(&st[k].prog.g, v->name);
                if (sv >= 0) gb = st[k].grads + st[k].prog.offset[sv];
            }
            CHECKF(gb && !memcmp(ga, gb, sizeof(float) * (size_t)v->numel),
                   "cut at %s: gradient of %s differs from the whole model", cut, v->name);
        }
    }
    for (int k = 0; k < 2; k++) {
        wf_afree(st[k].params);
        wf_afree(st[k].grads);
        if (st[k].prog.g.nv) wf_exec_free(&st[k]);
        wf_model_free(&sm[k]);
    }
    wf_afree(full.params);
    wf_afree(full.grads);
    wf_exec_free(&full);
    wf_partition_free(&p);
}

int main(void) {
    check_builtins();
    check_registration();
    if (cube_id >= 0) {
        check_cube_errors();
        struct wf_model m;
        int rc = wf_model_parse(&m, "toy.wf", toy_model);
        CHECKF(rc == WF_OK, "%s", wf_errmsg());
        if (rc == WF_OK) {
            check_cube_gradients(&m);
            check_cube_training(&m);
            check_cube_partition(&m, "h", 1);
            check_cube_partition(&m, "c", 0);
            wf_model_free(&m);
        }
    }
    return wf_test_done("test_op_table");
}
