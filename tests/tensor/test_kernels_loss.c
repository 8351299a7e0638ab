/* tensor: the loss kernels (src/tensor/loss.c) checked against finite
 * differences and against their own contract (kernels.h): both gradients of
 * each loss are compared with central differences of dloss * loss; values
 * match a plain double-precision sum; the bce of huge logits stays finite and
 * exact; backward outputs are pre-filled with NaN and with 1e30 and must come
 * out the same (they overwrite); NULL gradient outputs are skipped without
 * changing the others; two runs, and runs at other thread counts, give the
 * same bits. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

#define FD_TOL 1e-2 /* |fd - analytic| / max(|analytic|, |fd|, floor) */
/* Steps: the loss is a float of size O(1) while one element's gradient is
 * O(scale), so the step must be large enough that the loss's rounding
 * (~1e-7) stays far below eps * scale. Central differences are exact for the
 * quadratic mse at any step; for bce the error is ~eps^2/6 times the third
 * derivative of softplus (at most 0.1). */
#define FD_EPS_MSE 0.25f
#define FD_EPS_BCE 0.05f

static struct wf_rng rng;

static float *uniform01(long n) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++)
        x[i] = wf_rng_uniform(&rng);
    return x;
}

/* A loss under test: fwd(loss, p, q, n, scale), the objective dloss * loss. */
typedef void (*loss_fwd)(float *loss, const float *p, const float *q, long n, float scale);

struct loss_objective {
    loss_fwd fwd;
    const float *p, *q;
    long n;
    float scale, dloss;
};

static double objective(void *ctx) {
    struct loss_objective *o = ctx;
    float l = NAN;
    o->fwd(&l, o->p, o->q, o->n, o->scale);
    return (double)o->dloss * (double)l;
}

/* Central differences of dloss * loss over every element of x (p or q) against grad.
 * floor: the size below which a gradient counts as zero (scales with `scale`). */
static void fd_check(const char *what, loss_fwd fwd, float *p, float *q, float *x, const float *grad, long n,
                     float scale, float dloss, double floor, float eps) {
    struct loss_objective o = {fwd, p, q, n, scale, dloss};
    wf_test_fd(what, objective, &o, x, grad, n, eps, floor, FD_TOL);
}

/* ---- the plain double-precision definitions ---- */

static double mse_ref(const float *a, const float *b, long n, float scale) {
    double s = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return (double)scale * s;
}

static double bce_ref(const float *x, const float *t, long n, float scale) {
    double s = 0;
    for (long i = 0; i < n; i++) {
        /* -(t log sigmoid(x) + (1-t) log(1 - sigmoid(x))), fine for moderate x */
        double sg = 1.0 / (1.0 + exp(-(double)x[i]));
        s -= (double)t[i] * log(sg) + (1.0 - (double)t[i]) * log1p(-sg);
    }
    return (double)scale * s;
}

/* ---- mse ---- */

static void test_mse(long n, float scale) {
    printf("mse n=%ld scale=%g\n", n, scale);
    float *a = wf_test_randn(&rng, n, 1), *b = wf_test_randn(&rng, n, 1), dloss = 0.7f, loss = NAN;
    wf_mse_forward(&loss, a, b, n, scale);
    double want = mse_ref(a, b, n, scale);
    CHECKF(fabs(loss - want) <= 1e-6 * fabs(want) + 1e-30, "mse %.9g want %.9g", loss, want);
    float *da = wf_test_filled(n, NAN), *db = wf_test_filled(n, NAN), *da2 = wf_test_filled(n, 1e30f),
          *db2 = wf_test_filled(n, 1e30f);
    wf_mse_backward(da, db, a, b, n, scale, dloss);
    wf_mse_backward(da2, db2, a, b, n, scale, dloss);
    CHECK(wf_test_same_bits(da, da2, n) && wf_test_same_bits(db, db2, n));
    int neg = 1;
    for (long i = 0; i < n; i++)
        neg &= db[i] == -da[i];
    CHECKF(neg, "mse db is not -da");
    double floor = 0.1 * (double)scale * dloss; /* gradients are O(scale * dloss) */
    fd_check("mse da", wf_mse_forward, a, b, a, da, n, scale, dloss, floor, FD_EPS_MSE);
    fd_check("mse db", wf_mse_forward, a, b, b, db, n, scale, dloss, floor, FD_EPS_MSE);
    /* NULL outputs are skipped, the other is unchanged */
    float *x = wf_test_filled(n, NAN);
    wf_mse_backward(x, NULL, a, b, n, scale, dloss);
    CHECK(wf_test_same_bits(x, da, n));
    wf_mse_backward(NULL, x, a, b, n, scale, dloss);
    CHECK(wf_test_same_bits(x, db, n));
    wf_mse_backward(NULL, NULL, a, b, n, scale, dloss);
    free(a), free(b), free(da), free(db), free(da2), free(db2), free(x);
}

static void test_mse_values(void) {
    float a[3] = {1, 2, 3}, b[3] = {0, 0, 0}, loss = NAN, da[3], db[3];
    wf_mse_forward(&loss, a, b, 3, 1.0f / 3.0f);
    CHECKF(fabsf(loss - 14.0f / 3.0f) < 1e-6f, "mse %.9g", loss);
    wf_mse_backward(da, db, a, b, 3, 0.5f, 2.0f); /* 2 * 0.5 * 2 * (a - b) */
    CHECK(da[0] == 2 && da[1] == 4 && da[2] == 6 && db[0] == -2 && db[2] == -6);
    loss = NAN;
    wf_mse_forward(&loss, a, a, 3, 1.0f / 3.0f); /* identical: exactly 0 */
    CHECK(loss == 0.0f);
    loss = NAN;
    wf_mse_forward(&loss, a, b, 0, 1.0f); /* nothing to sum */
    CHECK(loss == 0.0f);
    /* a long sum stays accurate (double, fixed order) */
    long n = 1 << 20;
    float *x = wf_test_filled(n, 0.1f), *z = wf_test_filled(n, 0.0f);
    wf_mse_forward(&loss, x, z, n, 1.0f / (float)n);
    double want = (double)0.1f * (double)0.1f;
    CHECKF(fabs(loss - want) < 1e-7 * want, "long mse %.9g want %.9g", loss, want);
    free(x), free(z);
}

/* ---- bce with logits ---- */

static void test_bce(long n, float scale, float xscale, int hard) {
    printf("bce_logits n=%ld scale=%g |x|~%g %s targets\n", n, scale, xscale, hard ? "0/1" : "soft");
    float *x = wf_test_randn(&rng, n, xscale), *t = uniform01(n), dloss = -1.3f, loss = NAN;
    if (hard) {
        for (long i = 0; i < n; i++)
            t[i] = t[i] < 0.5f ? 0.0f : 1.0f;
    }
    wf_bce_logits_forward(&loss, x, t, n, scale);
    double want = bce_ref(x, t, n, scale);
    CHECKF(fabs(loss - want) <= 1e-6 * fabs(want), "bce %.9g want %.9g", loss, want);
    float *dx = wf_test_filled(n, NAN), *dt = wf_test_filled(n, NAN), *dx2 = wf_test_filled(n, 1e30f),
          *dt2 = wf_test_filled(n, 1e30f);
    wf_bce_logits_backward(dx, dt, x, t, n, scale, dloss);
    wf_bce_logits_backward(dx2, dt2, x, t, n, scale, dloss);
    CHECK(wf_test_same_bits(dx, dx2, n) && wf_test_same_bits(dt, dt2, n));
    double floor = 0.1 * (double)scale * fabs(dloss);
    fd_check("bce_logits dx", wf_bce_logits_forward, x, t, x, dx, n, scale, dloss, floor, FD_EPS_BCE);
    fd_check("bce_logits dt", wf_bce_logits_forward, x, t, t, dt, n, scale, dloss, floor, FD_EPS_BCE);
    float *y = wf_test_filled(n, NAN);
    wf_bce_logits_backward(y, NULL, x, t, n, scale, dloss);
    CHECK(wf_test_same_bits(y, dx, n));
    wf_bce_logits_backward(NULL, y, x, t, n, scale, dloss);
    CHECK(wf_test_same_bits(y, dt, n));
    free(x), free(t), free(dx), free(dt), free(dx2), free(dt2), free(y);
}

static int all_finite(const float *x, long n) {
    for (long i = 0; i < n; i++) {
        if (!isfinite(x[i])) return 0;
    }
    return 1;
}

static void test_bce_extreme(void) {
    /* logits far past where exp overflows in float (|x| > 88) and in double (> 709) */
    enum { N = 12 };
    float x[N] = {1e4f, -1e4f, 1e4f, -1e4f, 100.0f, -100.0f, 1e30f, -1e30f, 89.0f, -750.0f, 0.0f, 0.0f};
    float t[N] = {1.0f, 0.0f, 0.0f, 1.0f, 0.5f, 0.5f, 1.0f, 0.0f, 1.0f, 0.0f, 0.5f, 1.0f};
    float loss, dx[N], dt[N];
    /* one at a time: each term's exact value */
    double want[N] = {0, 0, 1e4, 1e4, 50, 50, 0, 0, 0, 0, log(2.0), log(2.0)};
    for (int i = 0; i < N; i++) {
        loss = NAN;
        wf_bce_logits_forward(&loss, x + i, t + i, 1, 1.0f);
        CHECKF(isfinite(loss) && fabs(loss - want[i]) <= 1e-6 * fmax(1.0, want[i]), "bce(x=%g, t=%g) = %.9g want %.9g",
               x[i], t[i], loss, want[i]);
    }
    /* x = 89, t = 1: log1p(exp(-89)) ~ 2.2e-39, exact to a float denormal */
    wf_bce_logits_forward(&loss, x, t, N, 1.0f / N);
    CHECKF(isfinite(loss), "bce of extreme logits %g", loss);
    wf_bce_logits_backward(dx, dt, x, t, N, 1.0f, 1.0f);
    CHECK(all_finite(dx, N) && all_finite(dt, N));
    /* sigmoid(+-1e4) is exactly 1 / 0 */
    CHECK(dx[0] == 0.0f && dx[1] == 0.0f && dx[2] == 1.0f && dx[3] == -1.0f);
    CHECK(dx[6] == 0.0f && dx[7] == 0.0f && dx[10] == 0.0f && dx[11] == -0.5f);
    CHECK(dt[0] == -1e4f && dt[7] == 1e30f);
}

/* ---- determinism: same bits on every run and thread count ---- */

static void test_determinism(void) {
    long n = 3 * 100000 + 5; /* not a multiple of 8 */
    float *a = wf_test_randn(&rng, n, 1), *b = wf_test_randn(&rng, n, 1), *t = uniform01(n);
    float l0[2], l1[2];
    float *g0 = wf_test_filled(4 * n, NAN), *g1 = wf_test_filled(4 * n, 1e30f);
    float scale = 1.0f / (float)n, dloss = 1.0f;
    wf_blas_set_threads(1);
    wf_mse_forward(&l0[0], a, b, n, scale);
    wf_bce_logits_forward(&l0[1], a, t, n, scale);
    wf_mse_backward(g0, g0 + n, a, b, n, scale, dloss);
    wf_bce_logits_backward(g0 + 2 * n, g0 + 3 * n, a, t, n, scale, dloss);
    int threads[3] = {1, 4, 3};
    for (int r = 0; r < 3; r++) {
        wf_blas_set_threads(threads[r]);
        l1[0] = l1[1] = NAN;
        wf_mse_forward(&l1[0], a, b, n, scale);
        wf_bce_logits_forward(&l1[1], a, t, n, scale);
        wf_mse_backward(g1, g1 + n, a, b, n, scale, dloss);
        wf_bce_logits_backward(g1 + 2 * n, g1 + 3 * n, a, t, n, scale, dloss);
        CHECKF(wf_test_same_bits(l0, l1, 2), "losses differ at %d threads: %.9g %.9g vs %.9g %.9g", threads[r], l1[0],
               l1[1], l0[0], l0[1]);
        CHECKF(wf_test_same_bits(g0, g1, 4 * n), "gradients differ at %d threads", threads[r]);
    }
    wf_blas_set_threads(1);
    printf("determinism: mse %.9g bce %.9g, same bits at 1, 4, 3 threads\n", l0[0], l0[1]);
    free(a), free(b), free(t), free(g0), free(g1);
}

int main(void) {
    wf_rng_init(&rng, 11, 0);
    wf_blas_set_threads(1);
    test_mse(1, 1.0f);
    test_mse(37, 1.0f);
    test_mse(37, 1.0f / 37);
    test_mse(300, 1.0f / 300);
    test_mse_values();
    test_bce(1, 1.0f, 1.0f, 0);
    test_bce(37, 1.0f, 2.0f, 0);
    test_bce(37, 1.0f / 37, 2.0f, 1);
    test_bce(300, 1.0f / 300, 4.0f, 1);
    test_bce_extreme();
    test_determinism();
    wf_test_fd_summary(FD_TOL);
    return wf_test_done("test_kernels_loss");
}
