/* tensor: dense kernels checked against finite differences and against
 * their own contract (kernels.h): every backward is compared with central
 * differences of L = sum(out * R) for a random R (L accumulated in double);
 * backward outputs are pre-filled with NaN and with 1e30 and must come out
 * the same (they overwrite); NULL gradient outputs are skipped without
 * changing the others; bad targets and ids are reported, not trusted. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

#define FD_TOL 1e-2 /* |fd - analytic| / max(|analytic|, |fd|, FD_FLOOR) */
#define FD_FLOOR 0.1

static struct wf_rng rng;

/* ---- small helpers ---- */

static double dotd(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

/* An op under test: fwd() computes out from the inputs; L = sum(out * R). */
struct op {
    void (*fwd)(struct op *o);
    float *in[4];
    const int32_t *ids;
    int i[8];
    long l[4];
    float f[4];
    float *out;
    const float *R;
    long nout;
};

static double objective(void *op) {
    struct op *o = op;
    o->fwd(o);
    return dotd(o->out, o->R, o->nout);
}

/* Central differences of L over every element of x against grad. */
static void fd_check(const char *what, struct op *o, float *x, const float *grad, long n, float eps) {
    wf_test_fd(what, objective, o, x, grad, n, eps, FD_FLOOR, FD_TOL);
    objective(o); /* leave o->out as the unperturbed forward */
}

/* ---- linear ---- */

static void linear_fwd(struct op *o) {
    wf_linear_forward(o->out, o->in[0], o->in[1], o->in[2], o->i[0], o->i[1], o->i[2]);
}

static void test_linear(int B, int C, int OC, int with_bias) {
    printf("linear B=%d C=%d OC=%d bias=%d\n", B, C, OC, with_bias);
    float *inp = wf_test_randn(&rng, (long)B * C, 1), *w = wf_test_randn(&rng, (long)OC * C, 0.5f),
          *bias = with_bias ? wf_test_randn(&rng, OC, 1) : NULL;
    float *out = wf_test_filled((long)B * OC, NAN), *R = wf_test_randn(&rng, (long)B * OC, 1);
    struct op o = {.fwd = linear_fwd, .in = {inp, w, bias}, .i = {B, C, OC}, .out = out, .R = R, .nout = (long)B * OC};
    objective(&o);
    /* overwrite: NaN-filled and 1e30-filled outputs give the same bits */
    float *di = wf_test_filled((long)B * C, NAN), *dw = wf_test_filled((long)OC * C, NAN),
          *db = wf_test_filled(OC, NAN);
    float *di2 = wf_test_filled((long)B * C, 1e30f), *dw2 = wf_test_filled((long)OC * C, 1e30f),
          *db2 = wf_test_filled(OC, 1e30f);
    wf_linear_backward(di, dw, db, R, inp, w, B, C, OC);
    wf_linear_backward(di2, dw2, db2, R, inp, w, B, C, OC);
    CHECK(wf_test_same_bits(di, di2, (long)B * C) && wf_test_same_bits(dw, dw2, (long)OC * C) &&
          wf_test_same_bits(db, db2, OC));
    fd_check("linear dinp", &o, inp, di, (long)B * C, 1e-2f);
    fd_check("linear dw", &o, w, dw, (long)OC * C, 1e-2f);
    if (bias) fd_check("linear dbias", &o, bias, db, OC, 1e-2f);
    /* NULL dinp / dbias: the rest is unchanged */
    float *dw3 = wf_test_filled((long)OC * C, NAN);
    wf_linear_backward(NULL, dw3, NULL, R, inp, w, B, C, OC);
    CHECK(wf_test_same_bits(dw, dw3, (long)OC * C));
    free(inp), free(w), free(bias), free(out), free(R), free(di), free(dw), free(db), free(di2), free(dw2), free(db2),
        free(dw3);
}

/* ---- batched matmul ---- */

static void matmul_fwd(struct op *o) {
    wf_matmul_forward(o->out, o->in[0], o->in[1], o->i[0], o->i[1], o->i[2], o->i[3], o->i[4]);
}

static void test_matmul(int nb, int M, int K, int N, int sh) {
    printf("matmul nb=%d M=%d K=%d N=%d b_shared=%d\n", nb, M, K, N, sh);
    long na = (long)nb * M * K, nbb = sh ? (long)K * N : (long)nb * K * N, no = (long)nb * M * N;
    float *a = wf_test_randn(&rng, na, 1), *b = wf_test_randn(&rng, nbb, 1), *out = wf_test_filled(no, NAN),
          *R = wf_test_randn(&rng, no, 1);
    struct op o = {.fwd = matmul_fwd, .in = {a, b}, .i = {nb, M, K, N, sh}, .out = out, .R = R, .nout = no};
    objective(&o);
    float *da = wf_test_filled(na, NAN), *db = wf_test_filled(nbb, NAN), *da2 = wf_test_filled(na, 1e30f),
          *db2 = wf_test_filled(nbb, 1e30f);
    wf_matmul_backward(da, db, R, a, b, nb, M, K, N, sh);
    wf_matmul_backward(da2, db2, R, a, b, nb, M, K, N, sh);
    CHECK(wf_test_same_bits(da, da2, na) && wf_test_same_bits(db, db2, nbb));
    fd_check(sh ? "matmul(shared) da" : "matmul da", &o, a, da, na, 1e-2f);
    fd_check(sh ? "matmul(shared) db" : "matmul db", &o, b, db, nbb, 1e-2f);
    float *x = wf_test_filled(nbb > na ? nbb : na, NAN);
    wf_matmul_backward(NULL, x, R, a, b, nb, M, K, N, sh);
    CHECK(wf_test_same_bits(x, db, nbb));
    wf_matmul_backward(x, NULL, R, a, b, nb, M, K, N, sh);
    CHECK(wf_test_same_bits(x, da, na));
    free(a), free(b), free(out), free(R), free(da), free(db), free(da2), free(db2), free(x);
}

/* ---- add / mul with broadcasting ---- */

static void binary_fwd(struct op *o) {
    if (o->i[0])
        wf_mul_forward(o->out, o->in[0], o->in[1], o->l[0], o->l[1]);
    else
        wf_add_forward(o->out, o->in[0], o->in[1], o->l[0], o->l[1]);
}

static void test_binary(int is_mul, long n, long m) {
    printf("%s n=%ld m=%ld\n", is_mul ? "mul" : "add", n, m);
    float *a = wf_test_randn(&rng, n, 1), *b = wf_test_randn(&rng, m, 1), *out = wf_test_filled(n, NAN),
          *R = wf_test_randn(&rng, n, 1);
    struct op o = {.fwd = binary_fwd, .in = {a, b}, .i = {is_mul}, .l = {n, m}, .out = out, .R = R, .nout = n};
    objective(&o);
    /* a broadcast is a plain loop over (i % m) */
    int ok = 1;
    for (long i = 0; i < n; i++)
        ok &= out[i] == (is_mul ? a[i] * b[i % m] : a[i] + b[i % m]);
    CHECK(ok);
    float *da = wf_test_filled(n, NAN), *db = wf_test_filled(m, NAN), *da2 = wf_test_filled(n, 1e30f),
          *db2 = wf_test_filled(m, 1e30f);
    if (is_mul) {
        wf_mul_backward(da, db, R, a, b, n, m);
        wf_mul_backward(da2, db2, R, a, b, n, m);
    } else {
        wf_add_backward(da, db, R, n, m);
        wf_add_backward(da2, db2, R, n, m);
    }
    CHECK(wf_test_same_bits(da, da2, n) && wf_test_same_bits(db, db2, m));
    char what[64];
    snprintf(what, sizeof what, "%s(m=%ld) da", is_mul ? "mul" : "add", m);
    fd_check(what, &o, a, da, n, 1e-2f);
    snprintf(what, sizeof what, "%s(m=%ld) db", is_mul ? "mul" : "add", m);
    fd_check(what, &o, b, db, m, 1e-2f);
    /* NULL outputs, and da computed in place over dout */
    float *x = wf_test_filled(n, NAN), *y = wf_test_filled(m, NAN);
    if (is_mul) {
        wf_mul_backward(NULL, y, R, a, b, n, m);
        CHECK(wf_test_same_bits(y, db, m));
        memcpy(x, R, (size_t)n * sizeof(float));
        wf_mul_backward(x, y, x, a, b, n, m);
    } else {
        wf_add_backward(NULL, y, R, n, m);
        CHECK(wf_test_same_bits(y, db, m));
        memcpy(x, R, (size_t)n * sizeof(float));
        wf_add_backward(x, y, x, n, m);
    }
    CHECK(wf_test_same_bits(x, da, n) && wf_test_same_bits(y, db, m));
    free(a), free(b), free(out), free(R), free(da), free(db), free(da2), free(db2), free(x), free(y);
}

/* ---- activations ---- */

enum { ACT_RELU, ACT_GELU, ACT_TANH, ACT_SIGMOID };
static const char *act_names[] = {"relu", "gelu", "tanh", "sigmoid"};

static void act_fwd(struct op *o) {
    long n = o->l[0];
    switch (o->i[0]) {
    case ACT_RELU: wf_relu_forward(o->out, o->in[0], n); break;
    case ACT_GELU: wf_gelu_forward(o->out, o->in[0], n); break;
    case ACT_TANH: wf_tanh_forward(o->out, o->in[0], n); break;
    default: wf_sigmoid_forward(o->out, o->in[0], n); break;
    }
}

static void act_bwd(int act, float *dinp, const float *dout, const float *inp, const float *out, long n) {
    switch (act) {
    case ACT_RELU: wf_relu_backward(dinp, dout, out, n); break;
    case ACT_GELU: wf_gelu_backward(dinp, dout, inp, n); break;
    case ACT_TANH: wf_tanh_backward(dinp, dout, out, n); break;
    default: wf_sigmoid_backward(dinp, dout, out, n); break;
    }
}

static void test_activation(int act) {
    long n = 200;
    printf("%s n=%ld\n", act_names[act], n);
    float *x = wf_test_randn(&rng, n, 2.5f), *out = wf_test_filled(n, NAN), *R = wf_test_randn(&rng, n, 1);
    for (long i = 0; i < n; i++) {
        if (fabsf(x[i]) < 0.05f) x[i] = x[i] < 0 ? -0.05f : 0.05f; /* relu's kink */
    }
    struct op o = {.fwd = act_fwd, .i = {act}, .in = {x}, .l = {n}, .out = out, .R = R, .nout = n};
    objective(&o);
    float *d = wf_test_filled(n, NAN), *d2 = wf_test_filled(n, 1e30f);
    act_bwd(act, d, R, x, out, n);
    act_bwd(act, d2, R, x, out, n);
    CHECK(wf_test_same_bits(d, d2, n));
    char what[64];
    snprintf(what, sizeof what, "%s dinp", act_names[act]);
    fd_check(what, &o, x, d, n, 1e-2f);
    /* in place: out over inp, dinp over dout */
    float *y = malloc((size_t)n * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    o.in[0] = y;
    o.out = y;
    act_fwd(&o);
    CHECK(wf_test_same_bits(y, out, n));
    memcpy(d2, R, (size_t)n * sizeof(float));
    act_bwd(act, d2, d2, x, out, n);
    CHECK(wf_test_same_bits(d, d2, n));
    free(x), free(out), free(R), free(d), free(d2), free(y);
}

static void test_activation_values(void) {
    float x[6] = {-100.0f, -5.0f, -1.0f, 0.0f, 3.0f, 100.0f}, y[6];
    wf_sigmoid_forward(y, x, 6);
    CHECK(y[0] >= 0.0f && y[0] < 1e-40f && y[3] == 0.5f && y[5] == 1.0f);
    wf_gelu_forward(y, x, 6);
    CHECK(y[0] == -0.0f && fabsf(y[2] - (-0.15865525f)) < 1e-7f && y[3] == 0.0f && y[5] == 100.0f);
    /* accurate in the negative tail, where 1 + erf(x) would cancel */
    CHECKF(fabs(y[1] / (-2.5 * erfc(5.0 / sqrt(2.0))) - 1.0) < 1e-5, "gelu(-5) = %g", y[1]);
    float z[2] = {NAN, -0.0f}, r[2];
    wf_relu_forward(r, z, 2);
    CHECK(isnan(r[0])); /* NaN propagates, as in torch */
    wf_tanh_forward(y, x, 6);
    CHECK(y[0] == -1.0f && y[5] == 1.0f);
}

/* ---- softmax family ---- */

static void softmax_fwd(struct op *o) {
    if (o->i[2])
        wf_log_softmax_forward(o->out, o->in[0], o->i[0], o->i[1]);
    else
        wf_softmax_forward(o->out, o->in[0], o->i[0], o->i[1]);
}

static void test_softmax(int is_log, int R_, int V) {
    long n = (long)R_ * V;
    printf("%s R=%d V=%d\n", is_log ? "log_softmax" : "softmax", R_, V);
    float *x = wf_test_randn(&rng, n, 2), *out = wf_test_filled(n, NAN), *R = wf_test_randn(&rng, n, 1);
    struct op o = {.fwd = softmax_fwd, .in = {x}, .i = {R_, V, is_log}, .out = out, .R = R, .nout = n};
    objective(&o);
    float *d = wf_test_filled(n, NAN), *d2 = wf_test_filled(n, 1e30f);
    if (is_log) {
        wf_log_softmax_backward(d, R, out, R_, V);
        wf_log_softmax_backward(d2, R, out, R_, V);
    } else {
        wf_softmax_backward(d, R, out, R_, V);
        wf_softmax_backward(d2, R, out, R_, V);
    }
    CHECK(wf_test_same_bits(d, d2, n));
    fd_check(is_log ? "log_softmax dinp" : "softmax dinp", &o, x, d, n, 1e-2f);
    free(x), free(out), free(R), free(d), free(d2);
}

static void test_softmax_extreme(void) {
    /* huge logits: no overflow, rows still sum to 1 */
    float x[8] = {1000.0f, 999.0f, -1000.0f, 0.0f, -3e38f, -3e38f, 3e38f, 3e38f}, p[8], lp[8];
    wf_softmax_forward(p, x, 2, 4);
    wf_log_softmax_forward(lp, x, 2, 4);
    CHECK(fabsf(p[0] + p[1] + p[2] + p[3] - 1.0f) < 1e-6f && p[2] == 0.0f);
    CHECK(fabsf(p[6] - 0.5f) < 1e-6f && p[4] == 0.0f);
    CHECK(fabsf(lp[0] - (-0.31326169f)) < 1e-6f && isfinite(lp[1]));
}

static void xent_fwd(struct op *o) {
    float loss = NAN;
    int bad = wf_softmax_xent_forward(&loss, o->in[1], o->in[0], o->ids, o->i[0], o->i[1], o->f[0]);
    o->out[0] = bad == -1 ? loss : NAN;
}

static void test_xent(int B, int V, float scale) {
    long n = (long)B * V;
    printf("softmax_xent B=%d V=%d scale=%g\n", B, V, scale);
    float *x = wf_test_randn(&rng, n, 3), *probs = wf_test_filled(n, NAN), loss, dloss = 0.7f;
    int32_t *t = malloc((size_t)B * sizeof(int32_t));
    for (int b = 0; b < B; b++)
        t[b] = (int32_t)wf_rng_below(&rng, (uint32_t)V);
    struct op o = {
        .fwd = xent_fwd, .in = {x, probs}, .ids = t, .i = {B, V}, .f = {scale}, .out = &loss, .R = &dloss, .nout = 1};
    objective(&o);
    /* probs are the softmax, loss the mean-style sum */
    float *sm = wf_test_filled(n, NAN);
    wf_softmax_forward(sm, x, B, V);
    wf_test_close("xent probs vs softmax", probs, sm, n, 1e-6, 1e-7);
    double want = 0;
    for (int b = 0; b < B; b++)
        want -= log((double)sm[(long)b * V + t[b]]);
    CHECKF(fabs(loss - scale * want) <= 1e-5 * fabs(scale * want), "loss %g want %g", loss, scale * want);
    float *d = wf_test_filled(n, NAN), *d2 = wf_test_filled(n, 1e30f);
    wf_softmax_xent_backward(d, probs, t, B, V, scale, dloss);
    wf_softmax_xent_backward(d2, probs, t, B, V, scale, dloss);
    CHECK(wf_test_same_bits(d, d2, n));
    fd_check("softmax_xent dlogits", &o, x, d, n, 1e-2f);
    /* in place over probs */
    memcpy(d2, probs, (size_t)n * sizeof(float));
    wf_softmax_xent_backward(d2, d2, t, B, V, scale, dloss);
    CHECK(wf_test_same_bits(d, d2, n));
    /* a bad target is reported by index, and the loss is left alone */
    t[B - 1] = V;
    float l2 = 42.0f;
    CHECK(wf_softmax_xent_forward(&l2, probs, x, t, B, V, scale) == B - 1 && l2 == 42.0f);
    t[0] = -1;
    CHECK(wf_softmax_xent_forward(&l2, probs, x, t, B, V, scale) == 0);
    wf_softmax_xent_backward(d, probs, t, B, V, scale, dloss); /* must not read out of range */
    free(x), free(probs), free(t), free(sm), free(d), free(d2);
}

static void test_xent_stable(void) {
    float x[6] = {1000.0f, -1000.0f, 0.0f, 88.0f, 89.0f, 90.0f}, p[6], loss;
    int32_t t[2] = {1, 2};
    CHECK(wf_softmax_xent_forward(&loss, p, x, t, 2, 3, 1.0f) == -1);
    /* row 0: -log softmax = 2000; row 1: log(e^-2 + e^-1 + 1) = 0.40760596 */
    CHECKF(isfinite(loss) && fabsf(loss - 2000.4076f) < 1e-3f, "loss %g", loss);
}

static void test_argmax(void) {
    float x[12] = {1, 3, 3, 0, /* tie: lowest index 1 */ -1, -1, -1, -1, /* all equal: 0 */ 0, 0, 0, 5};
    int32_t t[3] = {1, 0, 3}, t2[3] = {2, 1, 3}, t3[3] = {-1, 7, 3};
    CHECK(wf_argmax_correct(x, t, 3, 4) == 3);
    CHECK(wf_argmax_correct(x, t2, 3, 4) == 1);
    CHECK(wf_argmax_correct(x, t3, 3, 4) == 1); /* bad targets just do not count */
}

/* ---- layernorm ---- */

static void ln_fwd(struct op *o) {
    wf_layernorm_forward(o->out, o->in[3], o->in[3] + o->i[0], o->in[0], o->in[1], o->in[2], o->i[0], o->i[1], 1e-5f);
}

static void test_layernorm(int R_, int C) {
    long n = (long)R_ * C;
    printf("layernorm R=%d C=%d\n", R_, C);
    float *x = wf_test_randn(&rng, n, 2), *w = wf_test_randn(&rng, C, 1), *b = wf_test_randn(&rng, C, 1),
          *stats = wf_test_filled(2L * R_, NAN);
    for (long i = 0; i < n; i++)
        x[i] += 5.0f; /* an offset mean */
    float *out = wf_test_filled(n, NAN), *R = wf_test_randn(&rng, n, 1);
    struct op o = {.fwd = ln_fwd, .in = {x, w, b, stats}, .i = {R_, C}, .out = out, .R = R, .nout = n};
    objective(&o);
    const float *mean = stats, *rstd = stats + R_;
    float *dx = wf_test_filled(n, NAN), *dw = wf_test_filled(C, NAN), *db = wf_test_filled(C, NAN);
    float *dx2 = wf_test_filled(n, 1e30f), *dw2 = wf_test_filled(C, 1e30f), *db2 = wf_test_filled(C, 1e30f);
    wf_layernorm_backward(dx, dw, db, R, x, w, mean, rstd, R_, C);
    wf_layernorm_backward(dx2, dw2, db2, R, x, w, mean, rstd, R_, C);
    CHECK(wf_test_same_bits(dx, dx2, n) && wf_test_same_bits(dw, dw2, C) && wf_test_same_bits(db, db2, C));
    fd_check("layernorm dinp", &o, x, dx, n, 1e-2f);
    fd_check("layernorm dw", &o, w, dw, C, 1e-2f);
    fd_check("layernorm db", &o, b, db, C, 1e-2f);
    /* NULL outputs; dinp in place over dout */
    memcpy(dx2, R, (size_t)n * sizeof(float));
    wf_layernorm_backward(dx2, NULL, NULL, dx2, x, w, mean, rstd, R_, C);
    CHECK(wf_test_same_bits(dx, dx2, n));
    wf_layernorm_backward(NULL, dw2, NULL, R, x, w, mean, rstd, R_, C);
    CHECK(wf_test_same_bits(dw, dw2, C));
    /* NULL w and b act as ones and zeros */
    float *ones = wf_test_filled(C, 1.0f), *zeros = wf_test_filled(C, 0.0f), *o1 = wf_test_filled(n, NAN),
          *o2 = wf_test_filled(n, NAN);
    wf_layernorm_forward(o1, stats, stats + R_, x, ones, zeros, R_, C, 1e-5f);
    wf_layernorm_forward(o2, stats, stats + R_, x, NULL, NULL, R_, C, 1e-5f);
    CHECK(wf_test_same_bits(o1, o2, n));
    wf_layernorm_backward(o1, NULL, NULL, R, x, ones, mean, rstd, R_, C);
    wf_layernorm_backward(o2, NULL, NULL, R, x, NULL, mean, rstd, R_, C);
    CHECK(wf_test_same_bits(o1, o2, n));
    free(x), free(w), free(b), free(stats), free(out), free(R), free(dx), free(dw), free(db), free(dx2), free(dw2),
        free(db2), free(ones), free(zeros), free(o1), free(o2);
}

/* ---- dropout ---- */

static void dropout_fwd(struct op *o) { wf_dropout_forward(o->out, o->in[1], o->in[0], o->l[0], o->f[0], 1234, 99); }

static void test_dropout(void) {
    long n = 4003;
    float p = 0.3f;
    printf("dropout n=%ld p=%g\n", n, p);
    float *x = wf_test_randn(&rng, n, 1), *mask = wf_test_filled(n, NAN), *out = wf_test_filled(n, NAN),
          *R = wf_test_randn(&rng, n, 1);
    struct op o = {.fwd = dropout_fwd, .in = {x, mask}, .l = {n}, .f = {p}, .out = out, .R = R, .nout = n};
    objective(&o);
    long kept = 0;
    int ok = 1;
    float scale = 1.0f / (1.0f - p);
    for (long i = 0; i < n; i++) {
        int keep = wf_rng_uniform_at(1234, 99, (uint64_t)i) >= p;
        kept += keep;
        ok &= mask[i] == (keep ? scale : 0.0f) && out[i] == x[i] * mask[i];
    }
    CHECKF(ok, "dropout mask differs from wf_rng_uniform_at");
    CHECKF(fabs((double)kept / n - (1 - p)) < 0.03, "kept %ld of %ld", kept, n);
    float *d = wf_test_filled(n, NAN), *d2 = wf_test_filled(n, 1e30f);
    wf_dropout_backward(d, R, mask, n);
    wf_dropout_backward(d2, R, mask, n);
    CHECK(wf_test_same_bits(d, d2, n));
    o.l[0] = 100; /* the objective needs only a prefix; same key, same mask */
    o.nout = 100;
    fd_check("dropout dinp", &o, x, d, 100, 1e-2f);
    /* p = 0 keeps everything unscaled; p = 1 drops everything */
    wf_dropout_forward(out, mask, x, n, 0.0f, 1, 2);
    CHECK(wf_test_same_bits(out, x, n));
    wf_dropout_forward(out, mask, x, n, 1.0f, 1, 2);
    ok = 1;
    for (long i = 0; i < n; i++)
        ok &= out[i] == 0.0f && mask[i] == 0.0f;
    CHECK(ok);
    free(x), free(mask), free(out), free(R), free(d), free(d2);
}

/* ---- embedding ---- */

static void emb_fwd(struct op *o) {
    int bad = wf_embedding_forward(o->out, o->ids, o->in[0], o->i[0], o->i[1], o->i[2]);
    if (bad != -1) o->out[0] = NAN;
}

static void test_embedding(void) {
    int B = 12, V = 7, D = 5;
    printf("embedding B=%d V=%d D=%d\n", B, V, D);
    int32_t ids[12] = {3, 1, 3, 0, 6, 3, 2, 2, 5, 1, 0, 3};
    float *table = wf_test_randn(&rng, (long)V * D, 1), *out = wf_test_filled((long)B * D, NAN),
          *R = wf_test_randn(&rng, (long)B * D, 1);
    struct op o = {.fwd = emb_fwd, .in = {table}, .ids = ids, .i = {B, V, D}, .out = out, .R = R, .nout = (long)B * D};
    objective(&o);
    CHECK(wf_test_same_bits(out + 2 * D, table + 3 * D, D));
    float *dt = wf_test_filled((long)V * D, NAN), *dt2 = wf_test_filled((long)V * D, 1e30f);
    wf_embedding_backward(dt, R, ids, B, V, D);
    wf_embedding_backward(dt2, R, ids, B, V, D);
    CHECK(wf_test_same_bits(dt, dt2, (long)V * D));
    fd_check("embedding dtable", &o, table, dt, (long)V * D, 1e-2f);
    /* V=4 is never used: its gradient is exactly zero */
    int zero = 1;
    for (int j = 0; j < D; j++)
        zero &= dt[4 * D + j] == 0.0f;
    CHECK(zero);
    int32_t bad[3] = {0, 7, -1};
    CHECK(wf_embedding_forward(out, bad, table, 3, V, D) == 1);
    bad[1] = 0;
    CHECK(wf_embedding_forward(out, bad, table, 3, V, D) == 2);
    wf_embedding_backward(dt, R, bad, 3, V, D); /* skips the bad id, no out-of-bounds write */
    free(table), free(out), free(R), free(dt), free(dt2);
}

/* ---- shape ops ---- */

static void concat_fwd(struct op *o) {
    const float *ins[3] = {o->in[0], o->in[1], o->in[2]};
    wf_concat_forward(o->out, ins, o->i, 3, o->l[0], o->l[1]);
}

static void test_concat(void) {
    long outer = 3, inner = 4;
    int dims[3] = {2, 1, 3};
    long tot = 6 * outer * inner;
    printf("concat outer=%ld dims=2,1,3 inner=%ld\n", outer, inner);
    float *a = wf_test_randn(&rng, outer * 2 * inner, 1), *b = wf_test_randn(&rng, outer * 1 * inner, 1),
          *c = wf_test_randn(&rng, outer * 3 * inner, 1);
    float *out = wf_test_filled(tot, NAN), *R = wf_test_randn(&rng, tot, 1);
    struct op o = {
        .fwd = concat_fwd, .in = {a, b, c}, .i = {2, 1, 3}, .l = {outer, inner}, .out = out, .R = R, .nout = tot};
    objective(&o);
    CHECK(wf_test_same_bits(out + 2 * inner, b, inner)); /* outer 0: a's 2 rows, then b's row */
    float *da = wf_test_filled(outer * 2 * inner, NAN), *db = wf_test_filled(outer * inner, NAN),
          *dc = wf_test_filled(outer * 3 * inner, NAN);
    float *dins[3] = {da, db, dc};
    wf_concat_backward(dins, R, dims, 3, outer, inner);
    fd_check("concat din0", &o, a, da, outer * 2 * inner, 1e-2f);
    fd_check("concat din1", &o, b, db, outer * inner, 1e-2f);
    fd_check("concat din2", &o, c, dc, outer * 3 * inner, 1e-2f);
    free(a), free(b), free(c), free(out), free(R), free(da), free(db), free(dc);
}

static void slice_fwd(struct op *o) { wf_slice_forward(o->out, o->in[0], o->l[0], o->i[0], o->l[1], o->i[1], o->i[2]); }

static void test_slice(void) {
    long outer = 3, inner = 2;
    int dim = 7, start = 2, len = 4;
    printf("slice outer=%ld dim=%d inner=%ld start=%d len=%d\n", outer, dim, inner, start, len);
    long nin = outer * dim * inner, nout = outer * len * inner;
    float *x = wf_test_randn(&rng, nin, 1), *out = wf_test_filled(nout, NAN), *R = wf_test_randn(&rng, nout, 1);
    struct op o = {
        .fwd = slice_fwd, .in = {x}, .i = {dim, start, len}, .l = {outer, inner}, .out = out, .R = R, .nout = nout};
    objective(&o);
    float *d = wf_test_filled(nin, NAN), *d2 = wf_test_filled(nin, 1e30f);
    wf_slice_backward(d, R, outer, dim, inner, start, len);
    wf_slice_backward(d2, R, outer, dim, inner, start, len);
    CHECK(wf_test_same_bits(d, d2, nin));
    fd_check("slice dinp", &o, x, d, nin, 1e-2f);
    free(x), free(out), free(R), free(d), free(d2);
}

static void transpose_fwd(struct op *o) {
    wf_transpose_forward(o->out, o->in[0], o->l[0], o->l[1], o->l[2], o->l[3], o->i[0]);
}

static void test_transpose(long A, long X, long M, long Y, int Z) {
    long n = A * X * M * Y * Z;
    printf("transpose (%ld,%ld,%ld,%ld,%d)\n", A, X, M, Y, Z);
    float *x = wf_test_randn(&rng, n, 1), *out = wf_test_filled(n, NAN), *back = wf_test_filled(n, NAN),
          *R = wf_test_randn(&rng, n, 1);
    struct op o = {.fwd = transpose_fwd, .in = {x}, .l = {A, X, M, Y}, .i = {Z}, .out = out, .R = R, .nout = n};
    objective(&o);
    int ok = 1;
    for (long a = 0; a < A; a++)
        for (long xx = 0; xx < X; xx++)
            for (long m = 0; m < M; m++)
                for (long y = 0; y < Y; y++)
                    for (long z = 0; z < Z; z++)
                        ok &= out[(((a * Y + y) * M + m) * X + xx) * Z + z] ==
                              x[(((a * X + xx) * M + m) * Y + y) * Z + z];
    CHECK(ok);
    wf_transpose_forward(back, out, A, Y, M, X, Z);
    CHECK(wf_test_same_bits(back, x, n));
    /* the backward is the transpose back */
    wf_transpose_forward(back, R, A, Y, M, X, Z);
    if (n <= 400) fd_check("transpose dinp", &o, x, back, n, 1e-2f);
    free(x), free(out), free(back), free(R);
}

static void reduce_fwd(struct op *o) {
    if (o->i[1])
        wf_mean_forward(o->out, o->in[0], o->l[0], o->i[0], o->l[1]);
    else
        wf_sum_forward(o->out, o->in[0], o->l[0], o->i[0], o->l[1]);
}

static void test_reduce(int is_mean, long outer, int dim, long inner) {
    long nin = outer * dim * inner, nout = outer * inner;
    printf("%s outer=%ld dim=%d inner=%ld\n", is_mean ? "mean" : "sum", outer, dim, inner);
    float *x = wf_test_randn(&rng, nin, 1), *out = wf_test_filled(nout, NAN), *R = wf_test_randn(&rng, nout, 1);
    struct op o = {
        .fwd = reduce_fwd, .in = {x}, .i = {dim, is_mean}, .l = {outer, inner}, .out = out, .R = R, .nout = nout};
    objective(&o);
    float *d = wf_test_filled(nin, NAN), *d2 = wf_test_filled(nin, 1e30f);
    if (is_mean) {
        wf_mean_backward(d, R, outer, dim, inner);
        wf_mean_backward(d2, R, outer, dim, inner);
    } else {
        wf_sum_backward(d, R, outer, dim, inner);
        wf_sum_backward(d2, R, outer, dim, inner);
    }
    CHECK(wf_test_same_bits(d, d2, nin));
    char what[64];
    snprintf(what, sizeof what, "%s(inner=%ld) dinp", is_mean ? "mean" : "sum", inner);
    fd_check(what, &o, x, d, nin, 1e-2f);
    free(x), free(out), free(R), free(d), free(d2);
}

/* Long sums stay accurate: double accumulation, fixed order. */
static void test_long_sums(void) {
    long n = 1 << 20;
    float *x = wf_test_filled(n, 0.1f), out, dbias[3];
    wf_sum_forward(&out, x, 1, (int)n, 1);
    CHECKF(fabs(out - n * (double)0.1f) < 1e-3, "sum %.9g", out);
    float *ones = wf_test_filled(3L * 100000, 1.0f / 3.0f);
    wf_linear_backward(NULL, NULL, dbias, ones, NULL, NULL, 100000, 0, 3);
    CHECKF(fabs(dbias[0] - 100000 / 3.0) < 1e-2, "dbias %.9g", dbias[0]);
    float s1;
    wf_add_backward(NULL, &s1, x, n, 1);
    CHECK(s1 == out);
    free(x), free(ones);
}

/* ---- BLAS edge cases ---- */

static void test_sgemm_edges(void) {
    float c[6], a[1] = {1}, b[1] = {1};
    for (int i = 0; i < 6; i++)
        c[i] = NAN;
    wf_sgemm(0, 0, 2, 3, 0, 1.0f, a, 1, b, 3, 0.0f, c, 3); /* K = 0, beta = 0: zeros */
    int ok = 1;
    for (int i = 0; i < 6; i++)
        ok &= c[i] == 0.0f;
    CHECK(ok);
    float bias[3] = {1, 2, 3}, out[6];
    wf_linear_forward(out, a, a, bias, 2, 0, 3); /* C = 0: out = bias */
    CHECK(out[0] == 1 && out[4] == 2 && out[5] == 3);
    wf_blas_set_threads(2);
    CHECK(wf_blas_get_threads() >= 1);
    wf_blas_set_threads(1);
    CHECK(wf_blas_get_threads() == 1);
}

/* ---- optimizers: bit-exact against the scalar formulas (torch's order) ---- */

static void test_sgd(float momentum, float wd, int nesterov) {
    long n = 1000;
    float lr = 0.05f;
    float *p = wf_test_randn(&rng, n, 1), *q = malloc((size_t)n * sizeof(float)), *buf = wf_test_filled(n, NAN),
          *qb = wf_test_filled(n, 0);
    memcpy(q, p, (size_t)n * sizeof(float));
    int ok = 1;
    for (long step = 1; step <= 4; step++) {
        float *g = wf_test_randn(&rng, n, 1);
        wf_sgd_update(p, g, momentum != 0.0f ? buf : NULL, n, lr, momentum, wd, nesterov, step);
        for (long i = 0; i < n; i++) {
            float d = g[i];
            if (wd != 0.0f) d = d + wd * q[i];
            if (momentum != 0.0f) {
                qb[i] = step == 1 ? d : qb[i] * momentum + d;
                d = nesterov ? d + momentum * qb[i] : qb[i];
            }
            q[i] = q[i] - lr * d;
        }
        ok &= wf_test_same_bits(p, q, n) && (momentum == 0.0f || wf_test_same_bits(buf, qb, n));
        free(g);
    }
    CHECKF(ok, "sgd momentum %g wd %g nesterov %d", momentum, wd, nesterov);
    free(p), free(q), free(buf), free(qb);
}

static void test_adam(float wd, int decoupled) {
    long n = 1031; /* not a multiple of the kernel's block or vector width */
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float *p = wf_test_randn(&rng, n, 1), *q = malloc((size_t)n * sizeof(float));
    float *m = wf_test_filled(n, 0), *v = wf_test_filled(n, 0), *qm = wf_test_filled(n, 0), *qv = wf_test_filled(n, 0);
    memcpy(q, p, (size_t)n * sizeof(float));
    int ok = 1;
    for (long step = 1; step <= 5; step++) {
        float *g = wf_test_randn(&rng, n, 0.1f);
        wf_adam_update(p, g, m, v, n, lr, b1, b2, eps, wd, decoupled, step);
        float ss = (float)(lr / (1.0 - pow(b1, (double)step)));
        float bc2 = (float)sqrt(1.0 - pow(b2, (double)step));
        for (long i = 0; i < n; i++) {
            float gi = g[i];
            if (wd != 0.0f && !decoupled) gi = gi + wd * q[i];
            if (wd != 0.0f && decoupled) q[i] = q[i] * (float)(1.0 - (double)lr * wd);
            qm[i] = qm[i] * b1 + (float)(1.0 - b1) * gi;
            qv[i] = qv[i] * b2 + (float)(1.0 - b2) * gi * gi;
            q[i] = q[i] - ss * qm[i] / (sqrtf(qv[i]) / bc2 + eps);
        }
        ok &= wf_test_same_bits(p, q, n) && wf_test_same_bits(m, qm, n) && wf_test_same_bits(v, qv, n);
        free(g);
    }
    CHECKF(ok, "adam wd %g decoupled %d", wd, decoupled);
    free(p), free(q), free(m), free(v), free(qm), free(qv);
}

static void test_sumsq_scale(void) {
    long n = 100003;
    float *x = wf_test_randn(&rng, n, 1);
    long double want = 0;
    for (long i = 0; i < n; i++)
        want += (long double)x[i] * x[i];
    double got = wf_sumsq(x, n);
    CHECKF(fabsl((long double)got - want) <= 1e-12L * want, "sumsq %.17g want %.17Lg", got, want);
    CHECK(wf_sumsq(x, n) == got && wf_sumsq(x, 0) == 0.0);
    float *y = malloc((size_t)n * sizeof(float));
    memcpy(y, x, (size_t)n * sizeof(float));
    wf_scale(y, n, 0.25f);
    int ok = 1;
    for (long i = 0; i < n; i++)
        ok &= y[i] == x[i] * 0.25f;
    CHECK(ok);
    free(x), free(y);
}

int main(void) {
    wf_rng_init(&rng, 7, 0);
    wf_blas_set_threads(1);
    test_sgemm_edges();
    test_linear(4, 7, 5, 1);
    test_linear(3, 6, 4, 0);
    test_linear(9, 33, 10, 1);
    test_matmul(3, 4, 5, 3, 0);
    test_matmul(3, 4, 5, 3, 1);
    test_matmul(1, 2, 1, 6, 1);
    test_binary(0, 60, 60);
    test_binary(0, 60, 15);
    test_binary(0, 60, 1);
    test_binary(1, 60, 60);
    test_binary(1, 60, 12);
    test_binary(1, 60, 1);
    test_binary(0, 3 * 300, 300); /* more columns than one accumulator block */
    for (int a = ACT_RELU; a <= ACT_SIGMOID; a++)
        test_activation(a);
    test_activation_values();
    test_softmax(0, 3, 7);
    test_softmax(1, 3, 7);
    test_softmax(0, 2, 1);
    test_softmax_extreme();
    test_xent(5, 10, 1.0f / 5);
    test_xent(3, 33, 1.0f);
    test_xent_stable();
    test_argmax();
    test_layernorm(3, 9);
    test_layernorm(2, 300);
    test_dropout();
    test_embedding();
    test_concat();
    test_slice();
    test_transpose(2, 3, 2, 4, 3);
    test_transpose(1, 5, 1, 6, 1);
    test_transpose(1, 40, 1, 37, 1);
    test_reduce(0, 3, 5, 4);
    test_reduce(0, 4, 9, 1);
    test_reduce(1, 3, 5, 4);
    test_reduce(1, 4, 9, 1);
    test_long_sums();
    test_sgd(0.0f, 0.0f, 0);
    test_sgd(0.0f, 0.01f, 0);
    test_sgd(0.9f, 0.0f, 0);
    test_sgd(0.9f, 1e-3f, 1);
    test_adam(0.0f, 0);
    test_adam(0.05f, 0);
    test_adam(0.1f, 1);
    test_sumsq_scale();
    wf_test_fd_summary(FD_TOL);
    return wf_test_done("test_kernels_dense");
}
