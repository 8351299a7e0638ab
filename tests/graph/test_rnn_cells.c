/*
 * graph: the recurrent cell ops rnn_tanh, gru and lstm (ops_rnn.c) through
 * the op table, the graph builder, autodiff, the memory plan and the executor.
 *
 *  - PyTorch: tests/ref/rnn/ holds nn.RNNCell / GRUCell / LSTMCell cases
 *    written by tools/ref/rnn_cells.py (PyTorch 1.13, float32): the inputs,
 *    the weights, the output and every gradient of sum(out * R). Each case
 *    builds `c = OP(x, s, hidden=H)` as a pipeline stage seeded at c (its
 *    gradient R comes from outside; x and s are differentiated inputs), loads
 *    the weights by their PyTorch names, runs forward and backward and
 *    compares (|weft - torch| <= ATOL + RTOL |torch|). CI needs no PyTorch.
 *  - The live prefix (wf_run.rows = k < B): forward and backward called
 *    through the op table on k rows change only the first k rows of every
 *    output and input gradient, and give the bits of a program built for
 *    batch k; the parameter gradients sum over those k rows only.
 *  - Shape inference: parameter names, shapes and init bounds, FLOPs, saved
 *    values, and the errors for a bad hidden size or state.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/kernels.h"
#include "weft/model.h"
#include "weft/safetensors.h"
#include "weft/train.h"

#define RTOL 1e-5
#define ATOL 1e-6

static const char *param_names[4] = {"weight_ih", "weight_hh", "bias_ih", "bias_hh"};

/* c = OP(x, s, hidden=H) as a stage: seeded at c, x and s differentiated */
struct cell_prog {
    struct wf_model m;
    struct wf_exec e;
    float *params, *grads;
    int x, s, c, seed_grad, dx, ds;
    int param[4]; /* c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh */
    int S;        /* state width */
};

static int cell_open(struct cell_prog *p, const char *op, int B, int I, int H) {
    memset(p, 0, sizeof *p);
    char text[512];
    p->S = strcmp(op, "lstm") ? H : 2 * H;
    snprintf(text, sizeof text,
             "model cell\ninput x : f32[B, %d]\ninput s : f32[B, %d]\nc = %s(x, s, hidden=%d)\noutput c\n", I, p->S, op,
             H);
    int rc = wf_model_parse(&p->m, "cell.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return rc;
    struct wf_stage_opts o = {.seed = "c", .n_diff_in = 2, .diff_in = {"x", "s"}};
    rc = wf_exec_init_stage(&p->e, &p->m, B, 1, &o, NULL, NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) {
        wf_model_free(&p->m);
        return rc;
    }
    size_t np = (size_t)p->e.prog.n_param_floats;
    p->e.params = p->params = wf_aalloc(sizeof(float) * np);
    p->e.grads = p->grads = wf_aalloc(sizeof(float) * np);
    const struct wf_graph *g = &p->e.prog.g;
    p->x = wf_graph_find(g, "x");
    p->s = wf_graph_find(g, "s");
    p->c = wf_graph_find(g, "c");
    p->seed_grad = g->seed_grad;
    p->dx = g->in_grad[0];
    p->ds = g->in_grad[1];
    for (int k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof name, "c.%s", param_names[k]);
        p->param[k] = wf_graph_find(g, name);
        CHECKF(p->param[k] >= 0 && g->v[p->param[k]].kind == WF_V_PARAM, "%s: no parameter %s", op, name);
    }
    CHECK(p->x >= 0 && p->s >= 0 && p->c >= 0 && p->seed_grad >= 0 && p->dx >= 0 && p->ds >= 0);
    return WF_OK;
}

static void cell_close(struct cell_prog *p) {
    wf_afree(p->params);
    wf_afree(p->grads);
    wf_exec_free(&p->e);
    wf_model_free(&p->m);
}

static float *vptr(struct cell_prog *p, int v) { return wf_exec_ptr(&p->e, v); }
static float *param_ptr(struct cell_prog *p, int k) { return p->params + p->e.prog.offset[p->param[k]]; }
static float *grad_ptr(struct cell_prog *p, int k) { return p->grads + p->e.prog.offset[p->param[k]]; }
static long vnumel(struct cell_prog *p, int v) { return (long)p->e.prog.g.v[v].numel; }

/* ---- against PyTorch ---- */

/* the worst relative error per op over elements with |torch| >= 1e-3, for the record */
static const char *rel_ops[3] = {"rnn_tanh", "gru", "lstm"};
static double rel_worst[3];

static void cmp(struct wf_ref_case *rc, const char *what, const float *got, const float *want, long n) {
    wf_ref_cmp(rc, what, got, want, n);
    for (int o = 0; o < 3; o++)
        if (!strcmp(rc->op, rel_ops[o]))
            for (long i = 0; i < n; i++)
                if (fabs(want[i]) >= 1e-3) rel_worst[o] = fmax(rel_worst[o], fabs(got[i] - want[i]) / fabs(want[i]));
}

static void run_case(struct wf_ref_case *rc) {
    int B = wf_ref_int(rc, "B"), I = wf_ref_int(rc, "I"), H = wf_ref_int(rc, "H");
    if (rc->missing) return;
    struct cell_prog p;
    if (cell_open(&p, rc->op, B, I, H) != WF_OK) {
        rc->missing = 1;
        return;
    }
    long S = p.S, G = vnumel(&p, p.param[2]) / H;
    const float *x = wf_ref_array(rc, "x", (long)B * I), *s = wf_ref_array(rc, "s", B * S);
    const float *R = wf_ref_array(rc, "R", B * S), *out = wf_ref_array(rc, "out", B * S);
    const float *dx = wf_ref_array(rc, "dx", (long)B * I), *ds = wf_ref_array(rc, "ds", B * S);
    const long pn[4] = {G * H * I, G * H * H, G * H, G * H};
    const float *w[4], *dw[4];
    for (int k = 0; k < 4; k++) {
        char dname[32];
        snprintf(dname, sizeof dname, "d%s", param_names[k]);
        w[k] = wf_ref_array(rc, param_names[k], pn[k]);
        dw[k] = wf_ref_array(rc, dname, pn[k]);
        CHECKF(vnumel(&p, p.param[k]) == pn[k], "%s: c.%s has %ld elements, torch %ld", rc->name, param_names[k],
               vnumel(&p, p.param[k]), pn[k]);
    }
    if (!rc->missing) {
        for (int k = 0; k < 4; k++)
            memcpy(param_ptr(&p, k), w[k], sizeof(float) * (size_t)pn[k]);
        memcpy(vptr(&p, p.x), x, sizeof(float) * (size_t)B * I);
        memcpy(vptr(&p, p.s), s, sizeof(float) * (size_t)(B * S));
        CHECK(wf_exec_forward(&p.e) == WF_OK);
        cmp(rc, "out", vptr(&p, p.c), out, B * S);
        memcpy(vptr(&p, p.seed_grad), R, sizeof(float) * (size_t)(B * S));
        CHECK(wf_exec_backward(&p.e) == WF_OK);
        cmp(rc, "dx", vptr(&p, p.dx), dx, (long)B * I);
        cmp(rc, "ds", vptr(&p, p.ds), ds, B * S);
        for (int k = 0; k < 4; k++) {
            char dname[32];
            snprintf(dname, sizeof dname, "d%s", param_names[k]);
            cmp(rc, dname, grad_ptr(&p, k), dw[k], pn[k]);
        }
    }
    cell_close(&p);
}

/* ---- the live prefix: wf_run.rows ---- */

static void *exec_ptr(const void *ex, int v) { return wf_exec_ptr(ex, v); }

/* Runs forward node 0 (bwd = 0) or its backward (bwd = 1) on `rows` rows through the op table. */
static int run_rows(struct cell_prog *p, int bwd, int rows) {
    const struct wf_graph *g = &p->e.prog.g;
    int bi = wf_graph_backward_of(g, g->nn, 0);
    CHECK(bi > 0);
    struct wf_run r = {.g = g,
                       .n = &g->n[0],
                       .b = bwd ? &g->n[bi] : NULL,
                       .ni = 0,
                       .ptr = exec_ptr,
                       .ex = &p->e,
                       .work = p->e.work,
                       .train = 1,
                       .rows = rows};
    const struct wf_op_def *d = wf_op_get(g->n[0].op);
    return bwd ? d->backward(&r) : d->forward(&r);
}

static const uint32_t SENTINEL = 0x7fc0beefu; /* a NaN with a payload: any write shows */

static void fill_sentinel(float *x, long n) {
    for (long i = 0; i < n; i++)
        memcpy(&x[i], &SENTINEL, 4);
}

static int all_sentinel(const float *x, long n) {
    for (long i = 0; i < n; i++)
        if (memcmp(&x[i], &SENTINEL, 4)) return 0;
    return 1;
}

static void test_rows(const char *op, int B, int k, int I, int H) {
    printf("%s: rows %d of %d (I=%d H=%d)\n", op, k, B, I, H);
    struct cell_prog big, small;
    if (cell_open(&big, op, B, I, H) != WF_OK) return;
    if (cell_open(&small, op, k, I, H) != WF_OK) {
        cell_close(&big);
        return;
    }
    struct wf_rng rng;
    wf_rng_init(&rng, 5, 1);
    long S = big.S;
    for (int q = 0; q < 4; q++) {
        long n = vnumel(&big, big.param[q]);
        for (long i = 0; i < n; i++)
            param_ptr(&big, q)[i] = param_ptr(&small, q)[i] = 0.4f * wf_rng_normal(&rng);
    }
    /* the first k rows of every input are the small program's */
    struct {
        int vb, vs;
        long per;
    } in[3] = {{big.x, small.x, I}, {big.s, small.s, S}, {big.seed_grad, small.seed_grad, S}};
    for (int t = 0; t < 3; t++) {
        float *a = vptr(&big, in[t].vb), *b = vptr(&small, in[t].vs);
        for (long i = 0; i < B * in[t].per; i++)
            a[i] = wf_rng_normal(&rng);
        memcpy(b, a, sizeof(float) * (size_t)(k * in[t].per));
    }
    const struct wf_graph *g = &big.e.prog.g;
    const struct wf_node *n = &g->n[0];
    /* every output (the cell's state and its saved values): sentinel past row k */
    for (int j = 0; j < n->n_out; j++)
        fill_sentinel(vptr(&big, n->out[j]), vnumel(&big, n->out[j]));
    CHECK(run_rows(&big, 0, k) == WF_OK);
    CHECK(wf_exec_forward(&small.e) == WF_OK);
    for (int j = 0; j < n->n_out; j++) {
        long per = vnumel(&big, n->out[j]) / B;
        const float *a = vptr(&big, n->out[j]), *b = vptr(&small, small.e.prog.g.n[0].out[j]);
        CHECKF(wf_test_same_bits(a, b, k * per), "%s: output %d: the first %d rows differ from a batch of %d", op, j, k,
               k);
        CHECKF(all_sentinel(a + k * per, (B - k) * per), "%s: output %d: rows past %d were written", op, j, k);
    }
    /* backward: input gradients past row k untouched, the rest and the parameter gradients a batch of k's bits */
    fill_sentinel(vptr(&big, big.dx), vnumel(&big, big.dx));
    fill_sentinel(vptr(&big, big.ds), vnumel(&big, big.ds));
    for (int q = 0; q < 4; q++)
        fill_sentinel(grad_ptr(&big, q), vnumel(&big, big.param[q]));
    CHECK(run_rows(&big, 1, k) == WF_OK);
    CHECK(wf_exec_backward(&small.e) == WF_OK);
    const int gv[2][2] = {{big.dx, small.dx}, {big.ds, small.ds}};
    for (int t = 0; t < 2; t++) {
        long per = vnumel(&big, gv[t][0]) / B;
        const float *a = vptr(&big, gv[t][0]), *b = vptr(&small, gv[t][1]);
        CHECKF(wf_test_same_bits(a, b, k * per), "%s: d%s: the first %d rows differ from a batch of %d", op,
               t ? "s" : "x", k, k);
        CHECKF(all_sentinel(a + k * per, (B - k) * per), "%s: d%s: rows past %d were written", op, t ? "s" : "x", k);
    }
    for (int q = 0; q < 4; q++)
        CHECKF(wf_test_same_bits(grad_ptr(&big, q), grad_ptr(&small, q), vnumel(&big, big.param[q])),
               "%s: d%s over %d rows differs from a batch of %d", op, param_names[q], k, k);
    /* rows = 0 and rows = B are the whole batch, as the executor runs it; run twice, the same bits */
    float *ref = malloc(sizeof(float) * (size_t)vnumel(&big, big.c));
    CHECK(wf_exec_forward(&big.e) == WF_OK);
    memcpy(ref, vptr(&big, big.c), sizeof(float) * (size_t)vnumel(&big, big.c));
    CHECK(run_rows(&big, 0, B) == WF_OK);
    CHECKF(wf_test_same_bits(ref, vptr(&big, big.c), vnumel(&big, big.c)), "%s: rows = B differs from rows = 0", op);
    CHECK(wf_exec_forward(&big.e) == WF_OK);
    CHECKF(wf_test_same_bits(ref, vptr(&big, big.c), vnumel(&big, big.c)), "%s: a second run differs", op);
    free(ref);
    /* more rows than the batch is refused */
    int rc = run_rows(&big, 0, B + 1);
    CHECKF(rc == WF_ERR_INTERNAL && strstr(wf_errmsg(), "asked to run"), "%d: %s", rc, wf_errmsg());
    rc = run_rows(&big, 1, -1);
    CHECKF(rc == WF_ERR_INTERNAL, "%d: %s", rc, wf_errmsg());
    cell_close(&small);
    cell_close(&big);
}

/* ---- shape inference ---- */

static void test_infer(void) {
    static const struct {
        const char *op;
        int G, S, n_aux;
    } ops[] = {{"rnn_tanh", 1, 1, 0}, {"gru", 3, 1, 2}, {"lstm", 4, 2, 1}};
    const int B = 3, I = 6, H = 10;
    for (size_t o = 0; o < WF_ARRAY_LEN(ops); o++) {
        struct cell_prog p;
        if (cell_open(&p, ops[o].op, B, I, H) != WF_OK) continue;
        const struct wf_graph *g = &p.e.prog.g;
        const struct wf_node *n = &g->n[0];
        int64_t GH = (int64_t)ops[o].G * H;
        const int64_t want[4][2] = {{GH, I}, {GH, H}, {GH, 0}, {GH, 0}};
        for (int k = 0; k < 4; k++) {
            const struct wf_value *v = &g->v[p.param[k]];
            CHECKF(v->ndim == (k < 2 ? 2 : 1) && v->shape[0] == want[k][0] && (k >= 2 || v->shape[1] == want[k][1]),
                   "%s: %s has the wrong shape", ops[o].op, v->name);
            CHECKF(n->in[2 + k] == p.param[k], "%s: %s is not input %d of the node", ops[o].op, v->name, 2 + k);
            /* PyTorch's init: uniform within 1/sqrt(H) */
            float *w = param_ptr(&p, k);
            wf_init_param(v, w, 42);
            double bound = 1.0 / sqrt((double)H), lo = 0, hi = 0;
            for (int64_t i = 0; i < v->numel; i++)
                lo = fmin(lo, w[i]), hi = fmax(hi, w[i]);
            CHECKF(lo >= -bound && hi <= bound && hi - lo > bound, "%s: %s initialized in [%g, %g], bound %g",
                   ops[o].op, v->name, lo, hi, bound);
        }
        const struct wf_value *c = &g->v[p.c];
        CHECKF(c->ndim == 2 && c->shape[0] == B && c->shape[1] == ops[o].S * H, "%s: output shape", ops[o].op);
        CHECKF(n->n_out == 1 + ops[o].n_aux, "%s: %d outputs", ops[o].op, n->n_out);
        for (int j = 1; j < n->n_out; j++)
            CHECKF(g->v[n->out[j]].kind == WF_V_AUX, "%s: output %d is not a saved value", ops[o].op, j);
        double gemm = 2.0 * B * (double)GH * (I + H);
        CHECKF(n->flops >= gemm && n->flops < 1.5 * gemm, "%s: %g flops, the GEMMs alone %g", ops[o].op, n->flops,
               gemm);
        cell_close(&p);
    }
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"input x : f32[B, 4]\ninput s : f32[B, 5]\nc = gru(x, s, hidden=0)\noutput c\n", "hidden must be positive"},
        {"input x : f32[B, 4]\ninput s : f32[B, 5]\nc = lstm(x, s, hidden=5)\noutput c\n",
         "the state must be f32[2, 10] ([h | c] per row) for input f32[2, 4], got f32[2, 5]"},
        {"input x : f32[B, 4]\ninput s : f32[3, 5]\nc = rnn_tanh(x, s, hidden=5)\noutput c\n",
         "the state must be f32[2, 5] for input f32[2, 4], got f32[3, 5]"},
        {"input x : f32[B, 4]\ninput s : f32[B, 2, 5]\nc = gru(x, s, hidden=5)\noutput c\n",
         "argument 2 's' must have 2 dimensions"},
        {"input x : f32[B, 4]\ninput s : f32[B, 5]\nc = gru(x, s)\noutput c\n", "gru needs attribute 'hidden'"},
        {"input x : i32[B, 4]\ninput s : f32[B, 5]\nc = gru(x, s, hidden=5)\noutput c\n", "must be f32"},
        {"input x : f32[B, 4]\ninput s : f32[B, 5]\nc.weight_ih = linear(x, out=2)\nc = gru(x, s, hidden=5)\noutput "
         "c\n",
         "parameter 'c.weight_ih' is already defined"},
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        struct wf_model m;
        struct wf_graph g;
        if (wf_model_parse(&m, "bad.wf", bad[i].text) != WF_OK) {
            CHECKF(0, "%s", wf_errmsg());
            continue;
        }
        int rc = wf_graph_build(&g, &m, 2);
        CHECKF(rc < 0 && strstr(wf_errmsg(), bad[i].want), "case %zu: %d: %s", i, rc, wf_errmsg());
        if (rc == WF_OK) wf_graph_free(&g);
        wf_model_free(&m);
    }
}

int main(void) {
    wf_blas_set_threads(1);
    test_infer();
    test_rows("rnn_tanh", 5, 2, 4, 7);
    test_rows("gru", 5, 3, 4, 7);
    test_rows("lstm", 5, 2, 4, 7);
    test_rows("lstm", 4, 1, 9, 13);
    wf_ref_run("tests/ref/rnn", run_case, RTOL, ATOL, 15);
    for (int o = 0; o < 3; o++)
        printf("%s: worst relative error against PyTorch %.3g (elements with |torch| >= 1e-3)\n", rel_ops[o],
               rel_worst[o]);
    return wf_test_done("test_rnn_cells");
}
