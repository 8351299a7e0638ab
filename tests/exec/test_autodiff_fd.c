/*
 * exec: whole-graph gradient checks. Builds small models that use every op
 * (fan-out, views, saved values, reused memory), runs forward+backward
 * through the compiled program and compares every parameter gradient with
 * central finite differences of the loss.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/model.h"
#include "weft/safetensors.h"
#include "weft/train.h"

static const char *model_all_ops = "model allops\n"
                                   "input x : f32[B, 2, 6, 6]\n"
                                   "input y : i32[B]\n"
                                   "param scale : f32[8] init=normal std=0.5\n"
                                   "c1 = conv2d(x, out=3, kernel=3, pad=1, stride=1)\n"
                                   "t1 = tanh(c1)\n"
                                   "m1 = maxpool2d(t1, kernel=2)\n"
                                   "a1 = avgpool2d(t1, kernel=2)\n"
                                   "cat = concat(m1, a1, axis=1)\n"
                                   "f = flatten(cat)\n"
                                   "l1 = linear(f, out=8)\n"
                                   "ln = layernorm(l1)\n"
                                   "g = gelu(ln)\n"
                                   "d = dropout(g, p=0.25)\n"
                                   "sc = mul(d, scale)\n"
                                   "s = sigmoid(sc)\n"
                                   "r = reshape(s, shape=[B, 2, 4])\n"
                                   "tr = transpose(r, dim0=1, dim1=2)\n"
                                   "sl = slice(tr, axis=1, start=1, len=3)\n"
                                   "sm = sum(sl, axis=2)\n"
                                   "mm = mean(tr, axis=2)\n"
                                   "res = add(l1, g)\n"
                                   "rl = relu(res)\n"
                                   "l2 = linear(rl, out=3, bias=false)\n"
                                   "both = concat(sm, l2, axis=1)\n"
                                   "k = linear(both, out=4)\n"
                                   "k2 = add(k, mm)\n"
                                   "loss = cross_entropy(k2, y)\n"
                                   "output loss\n";

static const char *model_seq = "model seq\n"
                               "input ids : i32[B, 5]\n"
                               "input y : i32[B]\n"
                               "param pos : f32[5, 6] init=normal std=0.3\n"
                               "param wq : f32[6, 6] init=uniform\n"
                               "e = embedding(ids, vocab=7, dim=6)\n"
                               "h = add(e, pos)\n"
                               "q = matmul(h, wq)\n"
                               "kt = transpose(h, dim0=1, dim1=2)\n"
                               "att = matmul(q, kt)\n"
                               "p = softmax(att)\n"
                               "ctx = matmul(p, h)\n"
                               "lp = log_softmax(ctx)\n"
                               "pool = mean(lp, axis=1)\n"
                               "o = linear(pool, out=3)\n"
                               "loss = cross_entropy(o, y)\n"
                               "output loss\n";

/* Any scalar is a loss: losses composed with add, mul by constants, a
 * parameter penalty, a square of the loss, the mean of a scalar; mse and
 * bce_with_logits; a metric output that has no gradient. */
static const char *model_losses = "model losses\n"
                                  "input x : f32[B, 6]\n"
                                  "input y : i32[B]\n"
                                  "input t : f32[B, 3]\n"
                                  "h = linear(x, out=5)\n"
                                  "th = tanh(h)\n"
                                  "o = linear(th, out=3)\n"
                                  "ce = cross_entropy(o, y)\n"
                                  "b = bce_with_logits(o, t)\n"
                                  "dec = linear(th, out=6)\n"
                                  "rec = mse(dec, x)\n"
                                  "sq = mul(h.weight, h.weight)\n"
                                  "pen = sum(sq)\n"
                                  "reg = mul(pen, 0.01)\n"
                                  "l1 = add(ce, b)\n"
                                  "l2 = add(l1, rec)\n"
                                  "l3 = add(l2, reg)\n"
                                  "half = mul(l3, 0.5)\n"
                                  "sqr = mul(half, half)\n"
                                  "loss = mean(sqr)\n"
                                  "acc = accuracy(o, y)\n"
                                  "output loss, acc\n";

/* Per-token labels with padding: rows labelled 0 count for nothing (cross_entropy's ignore). */
static const char *model_tokens = "model tokens\n"
                                  "input ids : i32[B, 5]\n"
                                  "input y : i32[B, 5]\n"
                                  "e = embedding(ids, vocab=7, dim=6)\n"
                                  "h = linear(e, out=8)\n"
                                  "a = tanh(h)\n"
                                  "o = linear(a, out=4)\n"
                                  "loss = cross_entropy(o, y, ignore=0)\n"
                                  "output loss\n";

/* conv -> relu -> maxpool twice: the pattern the planner fuses (ReLU into the
 * pool, oneDNN's blocked layout kept between conv and pool). Finite
 * differences are meaningless across so many ReLU/max kinks; each op passes
 * them alone (test_kernels_conv), and the fused program must give exactly
 * the unfused program's bits. */
static const char *model_convnet = "model convnet\n"
                                   "input x : f32[B, 2, 8, 8]\n"
                                   "input y : i32[B]\n"
                                   "c1 = conv2d(x, out=16, kernel=3, pad=1)\n"
                                   "r1 = relu(c1)\n"
                                   "p1 = maxpool2d(r1, kernel=2)\n"
                                   "c2 = conv2d(p1, out=16, kernel=3, pad=1)\n"
                                   "r2 = relu(c2)\n"
                                   "p2 = maxpool2d(r2, kernel=2)\n"
                                   "f = flatten(p2)\n"
                                   "o = linear(f, out=3)\n"
                                   "loss = cross_entropy(o, y)\n"
                                   "output loss\n";

/* The recurrent cells (ops_rnn.c), chained as a recurrent construct will chain them: the input and the
 * first state come from layers (so their gradients reach parameters), each cell's state is the previous
 * cell's output, x fans out to all three, the lstm's state is [h | c] built with concat and taken apart
 * with slice. H = 7: not a multiple of 8. */
static const char *model_rnn = "model rnn\n"
                               "input x : f32[B, 5]\n"
                               "input y : i32[B]\n"
                               "xe = linear(x, out=4)\n"
                               "xt = tanh(xe)\n"
                               "h0 = linear(x, out=7)\n"
                               "r1 = rnn_tanh(xt, h0, hidden=7)\n"
                               "g1 = gru(xt, r1, hidden=7)\n"
                               "c0 = linear(x, out=7)\n"
                               "s0 = concat(g1, c0, axis=1)\n"
                               "l1 = lstm(xt, s0, hidden=7)\n"
                               "h = slice(l1, axis=1, start=0, len=7)\n"
                               "c = slice(l1, axis=1, start=7, len=7)\n"
                               "hc = add(h, c)\n"
                               "o = linear(hc, out=3)\n"
                               "loss = cross_entropy(o, y)\n"
                               "output loss\n";

static void fill_inputs(struct wf_exec *e, uint64_t seed) {
    const struct wf_graph *g = &e->prog.g;
    struct wf_rng r;
    wf_rng_init(&r, seed, 99);
    for (int i = 0; i < g->nv; i++) {
        if (g->v[i].kind != WF_V_INPUT) continue;
        if (g->v[i].dtype == WF_F32) {
            float *p = wf_exec_ptr(e, i);
            for (int64_t k = 0; k < g->v[i].numel; k++)
                p[k] = wf_rng_normal(&r);
        } else {
            int32_t *p = wf_exec_ptr(e, i);
            int classes = 3;
            if (!strcmp(g->v[i].name, "ids")) classes = 7;
            for (int64_t k = 0; k < g->v[i].numel; k++)
                p[k] = (int32_t)wf_rng_below(&r, (uint32_t)classes);
        }
    }
}

/* inputs are refilled each time: the plan may reuse their bytes after their last use */
static double loss_of(struct wf_exec *e) {
    fill_inputs(e, 11);
    wf_exec_set_rng(e, 7, 0, 0);
    CHECK(wf_exec_forward(e) == WF_OK);
    return (double)*(float *)wf_exec_ptr(e, e->prog.g.loss);
}

static void check_model(const char *name, const char *text, int batch) {
    struct wf_model m;
    int rc = wf_model_parse(&m, name, text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    struct wf_program probe;
    rc = wf_program_compile(&probe, &m, batch, 1);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) {
        wf_model_free(&m);
        return;
    }
    int64_t np = probe.n_param_floats;
    wf_program_free(&probe);
    float *params = wf_aalloc(sizeof(float) * (size_t)np), *grads = wf_aalloc(sizeof(float) * (size_t)np);
    struct wf_exec e;
    CHECK(wf_exec_init(&e, &m, batch, 1, params, grads) == WF_OK);
    struct wf_rng r;
    wf_rng_init(&r, 3, 4);
    for (int64_t i = 0; i < np; i++)
        params[i] = 0.5f * wf_rng_normal(&r);
    /* layernorm weight near 1 keeps the check well conditioned */
    CHECK(wf_exec_seed(&e, 1.0f) == WF_OK);
    loss_of(&e);
    CHECK(wf_exec_backward(&e) == WF_OK);
    /* every parameter is checked at up to 24 positions */
    const struct wf_graph *g = &e.prog.g;
    double worst = 0;
    const char *worst_name = "";
    for (int p = 0; p < g->n_params; p++) {
        const struct wf_value *v = &g->v[g->params[p]];
        int64_t off = e.prog.offset[g->params[p]];
        CHECKF(v->grad >= 0, "%s: parameter %s has no gradient", name, v->name);
        int64_t stride = v->numel > 24 ? v->numel / 24 : 1;
        for (int64_t k = 0; k < v->numel; k += stride) {
            float *w = params + off + k, save = *w;
            const float h = 2e-3f;
            *w = save + h;
            double lp = loss_of(&e);
            *w = save - h;
            double lm = loss_of(&e);
            *w = save;
            double fd = (lp - lm) / (2.0 * h), an = grads[off + k];
            double err = fabs(fd - an) / fmax(1e-2, fabs(fd) + fabs(an));
            if (err > worst) {
                worst = err;
                worst_name = v->name;
            }
            CHECKF(err < 3e-2, "%s: d loss / d %s[%lld]: analytic %.6g, finite difference %.6g", name, v->name,
                   (long long)k, an, fd);
        }
    }
    printf("%s: worst relative gradient error %.2e (%s)\n", name, worst, worst_name);
    wf_exec_free(&e);
    wf_afree(params);
    wf_afree(grads);
    wf_model_free(&m);
}

/* The fused program gives the same loss and gradient bits as the unfused one (WEFT_FUSE=0). */
static void check_fusion_exact(const char *text, int batch) {
    struct wf_model m;
    CHECK(wf_model_parse(&m, "convnet.wf", text) == WF_OK);
    float *grads[2] = {NULL, NULL};
    float loss[2] = {0, 0};
    int64_t np = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass) setenv("WEFT_FUSE", "0", 1);
        struct wf_exec e;
        CHECK(wf_exec_init(&e, &m, batch, 1, NULL, NULL) == WF_OK);
        np = e.prog.n_param_floats;
        int r1 = wf_graph_find(&e.prog.g, "r1");
        /* fused: the ReLU output gets no storage of its own */
        CHECKF(r1 >= 0 && (e.prog.storage[r1] == WF_STORE_NONE) == !pass, "pass %d: r1 storage %d", pass,
               r1 >= 0 ? e.prog.storage[r1] : -1);
        e.params = wf_aalloc(sizeof(float) * (size_t)np);
        e.grads = grads[pass] = wf_aalloc(sizeof(float) * (size_t)np);
        struct wf_rng r;
        wf_rng_init(&r, 3, 4);
        for (int64_t i = 0; i < np; i++)
            e.params[i] = 0.5f * wf_rng_normal(&r);
        CHECK(wf_exec_seed(&e, 1.0f) == WF_OK);
        loss[pass] = (float)loss_of(&e);
        CHECK(wf_exec_backward(&e) == WF_OK);
        wf_afree(e.params);
        wf_exec_free(&e);
    }
    unsetenv("WEFT_FUSE");
    CHECKF(memcmp(&loss[0], &loss[1], sizeof(float)) == 0, "fused loss %.9g, unfused %.9g", loss[0], loss[1]);
    CHECKF(memcmp(grads[0], grads[1], sizeof(float) * (size_t)np) == 0, "fused and unfused gradients differ");
    wf_afree(grads[0]);
    wf_afree(grads[1]);
    wf_model_free(&m);
}

/* ignore: a padded row adds nothing; the loss is the mean over the rows that count. Checked against
 * the same model without ignore on only the rows that count (labels of ignored rows moved to the end). */
static void check_ignore(void) {
    static const char *m1 = "model ign\ninput x : f32[B, 3]\ninput y : i32[B]\no = linear(x, out=4)\n"
                            "loss = cross_entropy(o, y, ignore=3)\noutput loss\n";
    static const char *m2 = "model ign\ninput x : f32[B, 3]\ninput y : i32[B]\no = linear(x, out=4)\n"
                            "loss = cross_entropy(o, y)\noutput loss\n";
    struct wf_model a, b;
    CHECK(wf_model_parse(&a, "ign.wf", m1) == WF_OK);
    CHECK(wf_model_parse(&b, "ign.wf", m2) == WF_OK);
    struct wf_exec ea, eb;
    CHECK(wf_exec_init(&ea, &a, 4, 0, NULL, NULL) == WF_OK);
    CHECK(wf_exec_init(&eb, &b, 2, 0, NULL, NULL) == WF_OK);
    float w[16 + 4];
    for (int i = 0; i < 20; i++)
        w[i] = 0.1f * (float)(i % 7) - 0.3f;
    ea.params = eb.params = w;
    const float xs[4][3] = {{1, 2, 3}, {0.5f, -1, 2}, {-2, 0, 1}, {3, 1, -1}};
    const int32_t ya[4] = {1, 3, 2, 3}, yb[2] = {1, 2}; /* rows 1 and 3 are padding */
    memcpy(wf_exec_ptr(&ea, wf_graph_find(&ea.prog.g, "x")), xs, sizeof xs);
    memcpy(wf_exec_ptr(&ea, wf_graph_find(&ea.prog.g, "y")), ya, sizeof ya);
    float *xb = wf_exec_ptr(&eb, wf_graph_find(&eb.prog.g, "x"));
    memcpy(xb, xs[0], sizeof xs[0]);
    memcpy(xb + 3, xs[2], sizeof xs[2]);
    memcpy(wf_exec_ptr(&eb, wf_graph_find(&eb.prog.g, "y")), yb, sizeof yb);
    CHECK(wf_exec_forward(&ea) == WF_OK && wf_exec_forward(&eb) == WF_OK);
    float la = *(float *)wf_exec_ptr(&ea, ea.prog.g.loss), lb = *(float *)wf_exec_ptr(&eb, eb.prog.g.loss);
    CHECKF(fabsf(la - lb) <= 1e-6f * fabsf(lb), "ignore: loss %.9g, the rows that count alone %.9g", la, lb);
    wf_exec_free(&ea);
    wf_exec_free(&eb);
    wf_model_free(&a);
    wf_model_free(&b);
}

/* Accuracy counts rows: per-token labels have T rows a sample; an output that is no metric is no accuracy. */
static void check_acc_rows(void) {
    struct wf_program p;
    struct wf_model m;
    CHECK(wf_model_parse(&m, "tokens.wf", model_tokens) == WF_OK);
    CHECK(wf_program_compile(&p, &m, 3, 0) == WF_OK);
    CHECKF(wf_eval_rows_per_sample(&p.g) == 5, "rows a sample %lld", (long long)wf_eval_rows_per_sample(&p.g));
    wf_program_free(&p);
    wf_model_free(&m);
    CHECK(wf_model_parse(&m, "extra.wf",
                         "input x : f32[B, 3]\ninput y : i32[B]\no = linear(x, out=4)\nce = cross_entropy(o, y)\n"
                         "loss = mul(ce, 2)\noutput loss, ce\n") == WF_OK);
    CHECK(wf_program_compile(&p, &m, 3, 0) == WF_OK);
    CHECK(wf_eval_rows_per_sample(&p.g) == 0);
    wf_program_free(&p);
    wf_model_free(&m);
}

int main(void) {
    check_ignore();
    check_acc_rows();
    check_fusion_exact(model_convnet, 4);
    check_model("allops.wf", model_all_ops, 3);
    check_model("seq.wf", model_seq, 2);
    check_model("losses.wf", model_losses, 3);
    check_model("tokens.wf", model_tokens, 3);
    check_model("rnn.wf", model_rnn, 3);
    check_model("rnn.wf", model_rnn, 1);
    return wf_test_done("test_autodiff_fd");
}
