/* tensor: the recurrent cell kernels (src/tensor/rnn.c) — rnn_tanh, gru,
 * lstm, one time step — against finite differences and their contract.
 *
 * For each cell and shape (B = 1, H not a multiple of 8, ...): every
 * gradient (x, the state, both weights, both biases) against central
 * differences of L = sum(out * R) for a random R (L in double); backward
 * outputs pre-filled with NaN and with 1e30 come out the same (they are
 * overwritten); NULL gradient outputs are skipped without changing the
 * others; two runs give the same bits. Then two steps sharing the weights —
 * s2 = cell(x2, cell(x1, s0)) — whose weight gradients are the sum of the two
 * steps' contributions (what autodiff's accum does when a recurrent construct
 * feeds one parameter to several steps), checked against finite differences
 * of the two-step L. PyTorch agreement is tests/graph/test_rnn_cells.c's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

#define FD_TOL 1e-2 /* |fd - analytic| / max(|analytic|, |fd|, FD_FLOOR) */
#define FD_FLOOR 0.05
#define FD_EPS 1e-2f

enum { RNN_TANH, GRU, LSTM };
static const char *cell_name[] = {"rnn_tanh", "gru", "lstm"};
static const int cell_gates[] = {1, 3, 4};

static struct wf_rng rng;

static double dotd(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

/* One cell's arguments, parameters, outputs and scratch. p[0..5] = x, s, w_ih, w_hh, b_ih, b_hh. */
struct cell {
    int kind, B, C, H, G, S; /* S: state width (H, or 2H for the lstm) */
    float *p[6];
    long np[6];
    float *out, *aux1, *aux2, *work;
    float *R; /* the objective's weights (B, S) */
};

static const char *arg_name[] = {"x", "state", "weight_ih", "weight_hh", "bias_ih", "bias_hh"};

static void cell_init(struct cell *c, int kind, int B, int C, int H) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->B = B, c->C = C, c->H = H, c->G = cell_gates[kind];
    c->S = kind == LSTM ? 2 * H : H;
    long GH = (long)c->G * H;
    long np[6] = {(long)B * C, (long)B * c->S, GH * C, GH * H, GH, GH};
    float scale[6] = {1.0f, 0.7f, 0.4f, 0.4f, 0.3f, 0.3f};
    for (int i = 0; i < 6; i++) {
        c->np[i] = np[i];
        c->p[i] = wf_test_randn(&rng, np[i], scale[i]);
    }
    c->out = wf_test_filled((long)B * c->S, NAN);
    c->aux1 = wf_test_filled((long)B * GH, NAN);
    c->aux2 = wf_test_filled((long)B * H, NAN);
    long w = kind == RNN_TANH ? wf_rnn_tanh_workspace(B, C, H)
             : kind == GRU    ? wf_gru_workspace(B, C, H)
                              : wf_lstm_workspace(B, C, H);
    c->work = wf_test_filled(w, NAN);
    c->R = wf_test_randn(&rng, (long)B * c->S, 1);
}

static void cell_free(struct cell *c) {
    for (int i = 0; i < 6; i++)
        free(c->p[i]);
    free(c->out), free(c->aux1), free(c->aux2), free(c->work), free(c->R);
}

/* out = cell(x, s) with the given weights (p[2..5] of c unless w is given) */
static void forward_with(struct cell *c, float *out, const float *x, const float *s, float *const *w) {
    float *const *q = w ? w : c->p + 2;
    switch (c->kind) {
    case RNN_TANH: wf_rnn_tanh_forward(out, x, s, q[0], q[1], q[2], q[3], c->B, c->C, c->H, c->work); break;
    case GRU: wf_gru_forward(out, c->aux1, c->aux2, x, s, q[0], q[1], q[2], q[3], c->B, c->C, c->H, c->work); break;
    default: wf_lstm_forward(out, c->aux1, x, s, q[0], q[1], q[2], q[3], c->B, c->C, c->H, c->work); break;
    }
}

/* g[0..5]: gradients of x, s, w_ih, w_hh, b_ih, b_hh (any NULL) from dout; out/aux from the matching forward */
static void backward_with(struct cell *c, float **g, const float *dout, const float *x, const float *s,
                          const float *out) {
    float *const *q = c->p + 2;
    switch (c->kind) {
    case RNN_TANH:
        wf_rnn_tanh_backward(g[0], g[1], g[2], g[3], g[4], g[5], dout, x, s, q[0], q[1], out, c->B, c->C, c->H,
                             c->work);
        break;
    case GRU:
        wf_gru_backward(g[0], g[1], g[2], g[3], g[4], g[5], dout, x, s, q[0], q[1], c->aux1, c->aux2, c->B, c->C, c->H,
                        c->work);
        break;
    default:
        wf_lstm_backward(g[0], g[1], g[2], g[3], g[4], g[5], dout, x, s, q[0], q[1], c->aux1, out, c->B, c->C, c->H,
                         c->work);
        break;
    }
}

static double objective(void *ctx) {
    struct cell *c = ctx;
    forward_with(c, c->out, c->p[0], c->p[1], NULL);
    return dotd(c->out, c->R, (long)c->B * c->S);
}

static float **grads_filled(const struct cell *c, float v) {
    float **g = malloc(6 * sizeof *g);
    for (int i = 0; i < 6; i++)
        g[i] = wf_test_filled(c->np[i], v);
    return g;
}

static void grads_free(float **g) {
    for (int i = 0; i < 6; i++)
        free(g[i]);
    free(g);
}

/* fd: which gradients (bit i: p[i]) are checked against finite differences */
static void test_cell(int kind, int B, int C, int H, unsigned fd) {
    printf("%s B=%d C=%d H=%d\n", cell_name[kind], B, C, H);
    struct cell c;
    cell_init(&c, kind, B, C, H);
    long no = (long)B * c.S;
    objective(&c);
    float *out0 = malloc(sizeof(float) * (size_t)no);
    memcpy(out0, c.out, sizeof(float) * (size_t)no);
    for (long i = 0; i < no; i++)
        CHECKF(isfinite(c.out[i]), "%s: output %ld is not finite", cell_name[kind], i);
    /* the same bits again (scratch and saved values refilled with garbage first) */
    for (long i = 0; i < (long)B * c.G * H; i++)
        c.aux1[i] = 1e30f;
    objective(&c);
    CHECKF(wf_test_same_bits(out0, c.out, no), "%s: a second forward differs", cell_name[kind]);

    float **g = grads_filled(&c, NAN), **g2 = grads_filled(&c, 1e30f);
    backward_with(&c, g, c.R, c.p[0], c.p[1], c.out);
    backward_with(&c, g2, c.R, c.p[0], c.p[1], c.out);
    for (int i = 0; i < 6; i++)
        CHECKF(wf_test_same_bits(g[i], g2[i], c.np[i]), "%s: d%s depends on what its buffer held", cell_name[kind],
               arg_name[i]);
    for (int i = 0; i < 6; i++) {
        if (!((fd >> i) & 1)) continue;
        char what[64];
        snprintf(what, sizeof what, "%s d%s", cell_name[kind], arg_name[i]);
        wf_test_fd(what, objective, &c, c.p[i], g[i], c.np[i], FD_EPS, FD_FLOOR, FD_TOL);
    }
    objective(&c);
    /* each gradient alone (the others NULL) gives the same bits */
    for (int i = 0; i < 6; i++) {
        float *one[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
        one[i] = wf_test_filled(c.np[i], NAN);
        backward_with(&c, one, c.R, c.p[0], c.p[1], c.out);
        CHECKF(wf_test_same_bits(one[i], g[i], c.np[i]), "%s: d%s alone differs", cell_name[kind], arg_name[i]);
        free(one[i]);
    }
    grads_free(g);
    grads_free(g2);
    free(out0);
    cell_free(&c);
}

/* ---- two steps sharing the weights ---- */

struct two {
    struct cell c; /* p[0] = x1, p[1] = s0; weights shared */
    float *x2, *s1, *s2;
    float *aux1b, *aux2b; /* step 2's saved values */
};

static void two_forward(struct two *t) {
    struct cell *c = &t->c;
    forward_with(c, t->s1, c->p[0], c->p[1], NULL);
    /* step 2 keeps its own saved values: swap them in */
    float *a1 = c->aux1, *a2 = c->aux2;
    c->aux1 = t->aux1b, c->aux2 = t->aux2b;
    forward_with(c, t->s2, t->x2, t->s1, NULL);
    c->aux1 = a1, c->aux2 = a2;
}

static double two_objective(void *ctx) {
    struct two *t = ctx;
    two_forward(t);
    return dotd(t->s2, t->c.R, (long)t->c.B * t->c.S);
}

static void test_shared(int kind, int B, int C, int H) {
    printf("%s two steps, shared weights, B=%d C=%d H=%d\n", cell_name[kind], B, C, H);
    struct two t;
    struct cell *c = &t.c;
    cell_init(c, kind, B, C, H);
    long ns = (long)B * c->S;
    t.x2 = wf_test_randn(&rng, (long)B * C, 1);
    t.s1 = wf_test_filled(ns, NAN);
    t.s2 = wf_test_filled(ns, NAN);
    t.aux1b = wf_test_filled((long)B * c->G * H, NAN);
    t.aux2b = wf_test_filled((long)B * H, NAN);
    two_objective(&t);
    /* backward of step 2, then of step 1; each overwrites its own contributions */
    float **g2 = grads_filled(c, NAN), **g1 = grads_filled(c, NAN);
    float *a1 = c->aux1, *a2 = c->aux2;
    c->aux1 = t.aux1b, c->aux2 = t.aux2b;
    backward_with(c, g2, c->R, t.x2, t.s1, t.s2); /* g2[1] = d s1 */
    c->aux1 = a1, c->aux2 = a2;
    backward_with(c, g1, g2[1], c->p[0], c->p[1], t.s1);
    for (int i = 2; i < 6; i++) {
        for (long k = 0; k < c->np[i]; k++)
            g1[i][k] += g2[i][k]; /* the sum autodiff's accum forms, in its order */
        char what[64];
        snprintf(what, sizeof what, "%s 2 steps d%s", cell_name[kind], arg_name[i]);
        wf_test_fd(what, two_objective, &t, c->p[i], g1[i], c->np[i], FD_EPS, FD_FLOOR, FD_TOL);
    }
    const char *more[3] = {"state", "x1", "x2"};
    float *at[3] = {c->p[1], c->p[0], t.x2}, *grad[3] = {g1[1], g1[0], g2[0]};
    long len[3] = {c->np[1], c->np[0], (long)B * C};
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s 2 steps d%s", cell_name[kind], more[i]);
        wf_test_fd(what, two_objective, &t, at[i], grad[i], len[i], FD_EPS, FD_FLOOR, FD_TOL);
    }
    grads_free(g1);
    grads_free(g2);
    free(t.x2), free(t.s1), free(t.s2), free(t.aux1b), free(t.aux2b);
    cell_free(c);
}

/* Hand-computed values: B = 1, C = 1, H = 1, every weight and bias given. */
static void test_values(void) {
    const float x = 0.5f, h = -0.25f, wi[4] = {0.3f, -0.2f, 0.6f, 0.1f}, wh[4] = {-0.4f, 0.5f, 0.2f, 0.7f},
                bi[4] = {0.05f, -0.1f, 0.15f, 0.2f}, bh[4] = {0.1f, 0.02f, -0.3f, 0.05f};
    float out[2], gates[4], hn[1], work[64]; /* >= every cell's workspace at B = C = H = 1 */
    CHECK(wf_lstm_workspace(1, 1, 1) <= 64 && wf_gru_workspace(1, 1, 1) <= 64 && wf_rnn_tanh_workspace(1, 1, 1) <= 64);
    /* rnn_tanh */
    wf_rnn_tanh_forward(out, &x, &h, wi, wh, bi, bh, 1, 1, 1, work);
    double want = tanh(0.3 * 0.5 + 0.05 + -0.4 * -0.25 + 0.1);
    CHECKF(fabs(out[0] - want) < 1e-6, "rnn_tanh %.9g, want %.9g", out[0], want);
    /* gru: r, z, n */
    wf_gru_forward(out, gates, hn, &x, &h, wi, wh, bi, bh, 1, 1, 1, work);
    double sg[3];
    double r = 1 / (1 + exp(-(0.3 * 0.5 + 0.05 + -0.4 * -0.25 + 0.1)));
    double z = 1 / (1 + exp(-(-0.2 * 0.5 - 0.1 + 0.5 * -0.25 + 0.02)));
    double an = 0.2 * -0.25 - 0.3;
    double n = tanh(0.6 * 0.5 + 0.15 + r * an);
    sg[0] = r, sg[1] = z, sg[2] = n;
    want = (1 - z) * n + z * -0.25;
    CHECKF(fabs(out[0] - want) < 1e-6, "gru %.9g, want %.9g", out[0], want);
    for (int k = 0; k < 3; k++)
        CHECKF(fabs(gates[k] - sg[k]) < 1e-6, "gru gate %d %.9g, want %.9g", k, gates[k], sg[k]);
    CHECKF(fabs(hn[0] - an) < 1e-6, "gru hn %.9g, want %.9g", hn[0], an);
    /* lstm: state [h | c] */
    const float s0[2] = {-0.25f, 0.8f};
    wf_lstm_forward(out, gates, &x, s0, wi, wh, bi, bh, 1, 1, 1, work);
    double pre[4], act[4];
    for (int k = 0; k < 4; k++)
        pre[k] = wi[k] * 0.5 + bi[k] + wh[k] * -0.25 + bh[k];
    act[0] = 1 / (1 + exp(-pre[0])), act[1] = 1 / (1 + exp(-pre[1])), act[2] = tanh(pre[2]),
    act[3] = 1 / (1 + exp(-pre[3]));
    double c1 = act[1] * 0.8 + act[0] * act[2], h1 = act[3] * tanh(c1);
    CHECKF(fabs(out[0] - h1) < 1e-6 && fabs(out[1] - c1) < 1e-6, "lstm [%.9g | %.9g], want [%.9g | %.9g]", out[0],
           out[1], h1, c1);
    for (int k = 0; k < 4; k++)
        CHECKF(fabs(gates[k] - act[k]) < 1e-6, "lstm gate %d %.9g, want %.9g", k, gates[k], act[k]);
}

int main(void) {
    wf_rng_init(&rng, 23, 0);
    wf_blas_set_threads(1);
    test_values();
    for (int k = RNN_TANH; k <= LSTM; k++) {
        test_cell(k, 1, 3, 5, 0x3F);
        test_cell(k, 4, 6, 9, 0x3F);
        test_cell(k, 3, 8, 8, 0x3F);
        test_shared(k, 2, 4, 7);
    }
    /* bias sums over more columns (4H = 280) than one accumulator block; the state's and the biases'
     * gradients only (the weights have 100k elements) */
    test_cell(LSTM, 5, 9, 70, 0x32);
    wf_test_fd_summary(FD_TOL);
    return wf_test_done("test_kernels_rnn");
}
