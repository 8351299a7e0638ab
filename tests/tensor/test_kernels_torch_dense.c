/* tensor: weft's dense kernels and optimizers against PyTorch.
 *
 * tests/ref/dense/ holds reference data written by tools/ref/gen_dense_ref.py
 * with PyTorch 1.13 (float32): inputs, a random upstream gradient, PyTorch's
 * outputs and gradients. This test only reads those files, so it needs no
 * PyTorch. Every case listed in MANIFEST runs; each prints its worst error.
 * Pass: |weft - torch| <= ATOL + RTOL*|torch| element-wise. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

#define RTOL 1e-5
#define ATOL 1e-6

static float *copy(const float *x, long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

/* ---- one runner per op ---- */

static void run_linear(struct wf_ref_case *rc) {
    int B = wf_ref_int(rc, "B"), C = wf_ref_int(rc, "C"), OC = wf_ref_int(rc, "OC"), hb = wf_ref_int(rc, "has_bias");
    const float *inp = wf_ref_array(rc, "inp", (long)B * C), *w = wf_ref_array(rc, "w", (long)OC * C);
    const float *bias = hb ? wf_ref_array(rc, "bias", OC) : NULL, *dout = wf_ref_array(rc, "dout", (long)B * OC);
    const float *out = wf_ref_array(rc, "out", (long)B * OC), *dinp = wf_ref_array(rc, "dinp", (long)B * C);
    const float *dw = wf_ref_array(rc, "dw", (long)OC * C), *dbias = hb ? wf_ref_array(rc, "dbias", OC) : NULL;
    if (rc->missing) return;
    float *o = wf_test_filled((long)B * OC, NAN), *di = wf_test_filled((long)B * C, NAN),
          *dwt = wf_test_filled((long)OC * C, NAN), *db = wf_test_filled(OC, NAN);
    wf_linear_forward(o, inp, w, bias, B, C, OC);
    wf_linear_backward(di, dwt, hb ? db : NULL, dout, inp, w, B, C, OC);
    wf_ref_cmp(rc, "out", o, out, (long)B * OC);
    wf_ref_cmp(rc, "dinp", di, dinp, (long)B * C);
    wf_ref_cmp(rc, "dw", dwt, dw, (long)OC * C);
    if (hb) wf_ref_cmp(rc, "dbias", db, dbias, OC);
    free(o), free(di), free(dwt), free(db);
}

static void run_matmul(struct wf_ref_case *rc) {
    int nb = wf_ref_int(rc, "nb"), M = wf_ref_int(rc, "M"), K = wf_ref_int(rc, "K"), N = wf_ref_int(rc, "N"),
        sh = wf_ref_int(rc, "b_shared");
    long na = (long)nb * M * K, nbb = sh ? (long)K * N : (long)nb * K * N, no = (long)nb * M * N;
    const float *a = wf_ref_array(rc, "a", na), *b = wf_ref_array(rc, "b", nbb), *dout = wf_ref_array(rc, "dout", no);
    const float *out = wf_ref_array(rc, "out", no), *da = wf_ref_array(rc, "da", na), *db = wf_ref_array(rc, "db", nbb);
    if (rc->missing) return;
    float *o = wf_test_filled(no, NAN), *dat = wf_test_filled(na, NAN), *dbt = wf_test_filled(nbb, NAN);
    wf_matmul_forward(o, a, b, nb, M, K, N, sh);
    wf_matmul_backward(dat, dbt, dout, a, b, nb, M, K, N, sh);
    wf_ref_cmp(rc, "out", o, out, no);
    wf_ref_cmp(rc, "da", dat, da, na);
    wf_ref_cmp(rc, "db", dbt, db, nbb);
    free(o), free(dat), free(dbt);
}

static void run_binary(struct wf_ref_case *rc, int is_mul) {
    long n = wf_ref_int(rc, "n"), m = wf_ref_int(rc, "m");
    const float *a = wf_ref_array(rc, "a", n), *b = wf_ref_array(rc, "b", m), *dout = wf_ref_array(rc, "dout", n);
    const float *out = wf_ref_array(rc, "out", n), *da = wf_ref_array(rc, "da", n), *db = wf_ref_array(rc, "db", m);
    if (rc->missing) return;
    float *o = wf_test_filled(n, NAN), *dat = wf_test_filled(n, NAN), *dbt = wf_test_filled(m, NAN);
    if (is_mul) {
        wf_mul_forward(o, a, b, n, m);
        wf_mul_backward(dat, dbt, dout, a, b, n, m);
    } else {
        wf_add_forward(o, a, b, n, m);
        wf_add_backward(dat, dbt, dout, n, m);
    }
    wf_ref_cmp(rc, "out", o, out, n);
    wf_ref_cmp(rc, "da", dat, da, n);
    wf_ref_cmp(rc, "db", dbt, db, m);
    free(o), free(dat), free(dbt);
}

static void run_unary(struct wf_ref_case *rc) {
    long n = wf_ref_int(rc, "n");
    const float *inp = wf_ref_array(rc, "inp", n), *dout = wf_ref_array(rc, "dout", n),
                *out = wf_ref_array(rc, "out", n);
    const float *dinp = wf_ref_array(rc, "dinp", n);
    if (rc->missing) return;
    float *o = wf_test_filled(n, NAN), *di = wf_test_filled(n, NAN);
    const char *op = rc->op;
    if (!strcmp(op, "relu")) {
        wf_relu_forward(o, inp, n);
        wf_relu_backward(di, dout, o, n);
    } else if (!strcmp(op, "gelu")) {
        wf_gelu_forward(o, inp, n);
        wf_gelu_backward(di, dout, inp, n);
    } else if (!strcmp(op, "tanh")) {
        wf_tanh_forward(o, inp, n);
        wf_tanh_backward(di, dout, o, n);
    } else {
        wf_sigmoid_forward(o, inp, n);
        wf_sigmoid_backward(di, dout, o, n);
    }
    wf_ref_cmp(rc, "out", o, out, n);
    wf_ref_cmp(rc, "dinp", di, dinp, n);
    free(o), free(di);
}

static void run_softmax(struct wf_ref_case *rc, int is_log) {
    int R = wf_ref_int(rc, "R"), V = wf_ref_int(rc, "V");
    long n = (long)R * V;
    const float *inp = wf_ref_array(rc, "inp", n), *dout = wf_ref_array(rc, "dout", n),
                *out = wf_ref_array(rc, "out", n);
    const float *dinp = wf_ref_array(rc, "dinp", n);
    if (rc->missing) return;
    float *o = wf_test_filled(n, NAN), *di = wf_test_filled(n, NAN);
    if (is_log) {
        wf_log_softmax_forward(o, inp, R, V);
        wf_log_softmax_backward(di, dout, o, R, V);
    } else {
        wf_softmax_forward(o, inp, R, V);
        wf_softmax_backward(di, dout, o, R, V);
    }
    wf_ref_cmp(rc, "out", o, out, n);
    wf_ref_cmp(rc, "dinp", di, dinp, n);
    free(o), free(di);
}

static void run_xent(struct wf_ref_case *rc) {
    int B = wf_ref_int(rc, "B"), V = wf_ref_int(rc, "V");
    float scale = wf_ref_float(rc, "scale"), dloss = wf_ref_float(rc, "dloss");
    long n = (long)B * V;
    const float *logits = wf_ref_array(rc, "logits", n), *loss = wf_ref_array(rc, "loss", 1),
                *probs = wf_ref_array(rc, "probs", n);
    const float *dlogits = wf_ref_array(rc, "dlogits", n);
    const int32_t *t = wf_ref_ids(rc, "targets", B);
    if (rc->missing) return;
    float *p = wf_test_filled(n, NAN), *dl = wf_test_filled(n, NAN), l = NAN;
    CHECK(wf_softmax_xent_forward(&l, p, logits, t, B, V, scale) == -1);
    wf_softmax_xent_backward(dl, p, t, B, V, scale, dloss);
    wf_ref_cmp(rc, "loss", &l, loss, 1);
    wf_ref_cmp(rc, "probs", p, probs, n);
    wf_ref_cmp(rc, "dlogits", dl, dlogits, n);
    free(p), free(dl);
}

static void run_argmax(struct wf_ref_case *rc) {
    int B = wf_ref_int(rc, "B"), V = wf_ref_int(rc, "V"), want = wf_ref_int(rc, "correct");
    const float *logits = wf_ref_array(rc, "logits", (long)B * V);
    const int32_t *t = wf_ref_ids(rc, "targets", B);
    if (rc->missing) return;
    int got = wf_argmax_correct(logits, t, B, V);
    CHECKF(got == want, "%s: %d correct, torch says %d", rc->name, got, want);
}

static void run_layernorm(struct wf_ref_case *rc) {
    int R = wf_ref_int(rc, "R"), C = wf_ref_int(rc, "C");
    float eps = wf_ref_float(rc, "eps");
    long n = (long)R * C;
    const float *inp = wf_ref_array(rc, "inp", n), *w = wf_ref_array(rc, "w", C), *b = wf_ref_array(rc, "b", C),
                *dout = wf_ref_array(rc, "dout", n);
    const float *out = wf_ref_array(rc, "out", n), *mean = wf_ref_array(rc, "mean", R),
                *rstd = wf_ref_array(rc, "rstd", R);
    const float *dinp = wf_ref_array(rc, "dinp", n), *dw = wf_ref_array(rc, "dw", C), *db = wf_ref_array(rc, "db", C);
    if (rc->missing) return;
    float *o = wf_test_filled(n, NAN), *mu = wf_test_filled(R, NAN), *rs = wf_test_filled(R, NAN),
          *di = wf_test_filled(n, NAN), *dwt = wf_test_filled(C, NAN), *dbt = wf_test_filled(C, NAN);
    wf_layernorm_forward(o, mu, rs, inp, w, b, R, C, eps);
    wf_layernorm_backward(di, dwt, dbt, dout, inp, w, mu, rs, R, C);
    wf_ref_cmp(rc, "out", o, out, n);
    wf_ref_cmp(rc, "mean", mu, mean, R);
    wf_ref_cmp(rc, "rstd", rs, rstd, R);
    wf_ref_cmp(rc, "dinp", di, dinp, n);
    wf_ref_cmp(rc, "dw", dwt, dw, C);
    wf_ref_cmp(rc, "db", dbt, db, C);
    free(o), free(mu), free(rs), free(di), free(dwt), free(dbt);
}

static void run_embedding(struct wf_ref_case *rc) {
    int B = wf_ref_int(rc, "B"), V = wf_ref_int(rc, "V"), D = wf_ref_int(rc, "D");
    const int32_t *ids = wf_ref_ids(rc, "ids", B);
    const float *table = wf_ref_array(rc, "table", (long)V * D), *dout = wf_ref_array(rc, "dout", (long)B * D);
    const float *out = wf_ref_array(rc, "out", (long)B * D), *dtable = wf_ref_array(rc, "dtable", (long)V * D);
    if (rc->missing) return;
    float *o = wf_test_filled((long)B * D, NAN), *dt = wf_test_filled((long)V * D, NAN);
    CHECK(wf_embedding_forward(o, ids, table, B, V, D) == -1);
    wf_embedding_backward(dt, dout, ids, B, V, D);
    wf_ref_cmp(rc, "out", o, out, (long)B * D);
    wf_ref_cmp(rc, "dtable", dt, dtable, (long)V * D);
    free(o), free(dt);
}

static void run_concat(struct wf_ref_case *rc) {
    int n = wf_ref_int(rc, "n");
    long outer = wf_ref_int(rc, "outer"), inner = wf_ref_int(rc, "inner"), tot = 0;
    int dims[8];
    const float *ins[8], *dins_want[8];
    float *dins[8];
    if (n < 1 || n > 8) {
        CHECKF(0, "%s: bad n %d", rc->name, n);
        return;
    }
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "dim%d", i);
        dims[i] = wf_ref_int(rc, k);
        tot += dims[i];
    }
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "in%d", i);
        ins[i] = wf_ref_array(rc, k, outer * dims[i] * inner);
        snprintf(k, sizeof k, "din%d", i);
        dins_want[i] = wf_ref_array(rc, k, outer * dims[i] * inner);
    }
    const float *dout = wf_ref_array(rc, "dout", outer * tot * inner),
                *out = wf_ref_array(rc, "out", outer * tot * inner);
    if (rc->missing) return;
    float *o = wf_test_filled(outer * tot * inner, NAN);
    wf_concat_forward(o, ins, dims, n, outer, inner);
    wf_ref_cmp(rc, "out", o, out, outer * tot * inner);
    for (int i = 0; i < n; i++)
        dins[i] = wf_test_filled(outer * dims[i] * inner, NAN);
    float *skipped = dins[1];
    dins[1] = NULL; /* a NULL gradient output is skipped */
    wf_concat_backward(dins, dout, dims, n, outer, inner);
    dins[1] = skipped;
    CHECK(isnan(dins[1][0]));
    wf_concat_backward(dins, dout, dims, n, outer, inner);
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "din%d", i);
        wf_ref_cmp(rc, k, dins[i], dins_want[i], outer * dims[i] * inner);
        free(dins[i]);
    }
    free(o);
}

static void run_slice(struct wf_ref_case *rc) {
    long outer = wf_ref_int(rc, "outer"), inner = wf_ref_int(rc, "inner");
    int dim = wf_ref_int(rc, "dim"), start = wf_ref_int(rc, "start"), len = wf_ref_int(rc, "len");
    const float *inp = wf_ref_array(rc, "inp", outer * dim * inner),
                *dout = wf_ref_array(rc, "dout", outer * len * inner);
    const float *out = wf_ref_array(rc, "out", outer * len * inner),
                *dinp = wf_ref_array(rc, "dinp", outer * dim * inner);
    if (rc->missing) return;
    float *o = wf_test_filled(outer * len * inner, NAN), *di = wf_test_filled(outer * dim * inner, NAN);
    wf_slice_forward(o, inp, outer, dim, inner, start, len);
    wf_slice_backward(di, dout, outer, dim, inner, start, len);
    wf_ref_cmp(rc, "out", o, out, outer * len * inner);
    wf_ref_cmp(rc, "dinp", di, dinp, outer * dim * inner);
    free(o), free(di);
}

static void run_transpose(struct wf_ref_case *rc) {
    long A = wf_ref_int(rc, "A"), X = wf_ref_int(rc, "X"), M = wf_ref_int(rc, "M"), Y = wf_ref_int(rc, "Y"),
         Z = wf_ref_int(rc, "Z");
    long n = A * X * M * Y * Z;
    const float *inp = wf_ref_array(rc, "inp", n), *dout = wf_ref_array(rc, "dout", n),
                *out = wf_ref_array(rc, "out", n);
    const float *dinp = wf_ref_array(rc, "dinp", n);
    if (rc->missing) return;
    float *o = wf_test_filled(n, NAN), *di = wf_test_filled(n, NAN);
    wf_transpose_forward(o, inp, A, X, M, Y, Z);
    wf_transpose_forward(di, dout, A, Y, M, X, Z); /* the backward is the transpose back */
    wf_ref_cmp(rc, "out", o, out, n);
    wf_ref_cmp(rc, "dinp", di, dinp, n);
    free(o), free(di);
}

static void run_reduce(struct wf_ref_case *rc, int is_mean) {
    long outer = wf_ref_int(rc, "outer"), inner = wf_ref_int(rc, "inner");
    int dim = wf_ref_int(rc, "dim");
    const float *inp = wf_ref_array(rc, "inp", outer * dim * inner), *dout = wf_ref_array(rc, "dout", outer * inner);
    const float *out = wf_ref_array(rc, "out", outer * inner), *dinp = wf_ref_array(rc, "dinp", outer * dim * inner);
    if (rc->missing) return;
    float *o = wf_test_filled(outer * inner, NAN), *di = wf_test_filled(outer * dim * inner, NAN);
    if (is_mean) {
        wf_mean_forward(o, inp, outer, dim, inner);
        wf_mean_backward(di, dout, outer, dim, inner);
    } else {
        wf_sum_forward(o, inp, outer, dim, inner);
        wf_sum_backward(di, dout, outer, dim, inner);
    }
    wf_ref_cmp(rc, "out", o, out, outer * inner);
    wf_ref_cmp(rc, "dinp", di, dinp, outer * dim * inner);
    free(o), free(di);
}

static void run_sgd(struct wf_ref_case *rc) {
    long n = wf_ref_int(rc, "n");
    int steps = wf_ref_int(rc, "steps"), nesterov = wf_ref_int(rc, "nesterov");
    float lr = wf_ref_float(rc, "lr"), mom = wf_ref_float(rc, "momentum"), wd = wf_ref_float(rc, "wd");
    const float *p0 = wf_ref_array(rc, "p0", n), *g = wf_ref_array(rc, "grads", n * steps),
                *want = wf_ref_array(rc, "params", n * steps);
    const float *buf_want = mom != 0.0f ? wf_ref_array(rc, "buf", n) : NULL;
    if (rc->missing) return;
    float *p = copy(p0, n), *buf = mom != 0.0f ? wf_test_filled(n, NAN) : NULL; /* step 1 must not read buf */
    for (int s = 0; s < steps; s++) {
        wf_sgd_update(p, g + s * n, buf, n, lr, mom, wd, nesterov, s + 1);
        char k[32];
        snprintf(k, sizeof k, "p[step %d]", s + 1);
        wf_ref_cmp(rc, k, p, want + s * n, n);
    }
    if (buf) wf_ref_cmp(rc, "buf", buf, buf_want, n);
    free(p), free(buf);
}

static void run_adam(struct wf_ref_case *rc) {
    long n = wf_ref_int(rc, "n");
    int steps = wf_ref_int(rc, "steps"), dec = wf_ref_int(rc, "decoupled");
    float lr = wf_ref_float(rc, "lr"), b1 = wf_ref_float(rc, "beta1"), b2 = wf_ref_float(rc, "beta2"),
          eps = wf_ref_float(rc, "eps"), wd = wf_ref_float(rc, "wd");
    const float *p0 = wf_ref_array(rc, "p0", n), *g = wf_ref_array(rc, "grads", n * steps),
                *want = wf_ref_array(rc, "params", n * steps);
    const float *mw = wf_ref_array(rc, "m", n), *vw = wf_ref_array(rc, "v", n);
    if (rc->missing) return;
    float *p = copy(p0, n), *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
    for (int s = 0; s < steps; s++) {
        wf_adam_update(p, g + s * n, m, v, n, lr, b1, b2, eps, wd, dec, s + 1);
        char k[32];
        snprintf(k, sizeof k, "p[step %d]", s + 1);
        wf_ref_cmp(rc, k, p, want + s * n, n);
    }
    wf_ref_cmp(rc, "m", m, mw, n);
    wf_ref_cmp(rc, "v", v, vw, n);
    free(p), free(m), free(v);
}

/* torch.nn.utils.clip_grad_norm_: total = ||all grads||, coef = max/(total + 1e-6), scale by min(coef, 1) */
static void run_clip(struct wf_ref_case *rc) {
    int k = wf_ref_int(rc, "n");
    long sizes[8], tot = 0;
    float max_norm = wf_ref_float(rc, "max_norm");
    if (k < 1 || k > 8) {
        CHECKF(0, "%s: bad n %d", rc->name, k);
        return;
    }
    for (int i = 0; i < k; i++) {
        char key[16];
        snprintf(key, sizeof key, "size%d", i);
        sizes[i] = wf_ref_int(rc, key);
        tot += sizes[i];
    }
    const float *g0 = wf_ref_array(rc, "grads", tot), *norm = wf_ref_array(rc, "total_norm", 1),
                *want = wf_ref_array(rc, "clipped", tot);
    if (rc->missing) return;
    float *g = copy(g0, tot);
    double ss = 0;
    long off = 0;
    for (int i = 0; i < k; i++) { /* one tensor at a time, as the graph layer would */
        ss += wf_sumsq(g + off, sizes[i]);
        off += sizes[i];
    }
    float total = (float)sqrt(ss);
    float coef = (float)((double)max_norm / ((double)total + 1e-6));
    if (coef < 1.0f) {
        for (int i = 0, o = 0; i < k; o += (int)sizes[i], i++)
            wf_scale(g + o, sizes[i], coef);
    }
    wf_ref_cmp(rc, "total_norm", &total, norm, 1);
    wf_ref_cmp(rc, "clipped", g, want, tot);
    free(g);
}

static void run_case(struct wf_ref_case *rc) {
    const char *op = rc->op;
    if (!strcmp(op, "linear"))
        run_linear(rc);
    else if (!strcmp(op, "matmul"))
        run_matmul(rc);
    else if (!strcmp(op, "add") || !strcmp(op, "mul"))
        run_binary(rc, !strcmp(op, "mul"));
    else if (!strcmp(op, "relu") || !strcmp(op, "gelu") || !strcmp(op, "tanh") || !strcmp(op, "sigmoid"))
        run_unary(rc);
    else if (!strcmp(op, "softmax") || !strcmp(op, "log_softmax"))
        run_softmax(rc, !strcmp(op, "log_softmax"));
    else if (!strcmp(op, "softmax_xent"))
        run_xent(rc);
    else if (!strcmp(op, "argmax"))
        run_argmax(rc);
    else if (!strcmp(op, "layernorm"))
        run_layernorm(rc);
    else if (!strcmp(op, "embedding"))
        run_embedding(rc);
    else if (!strcmp(op, "concat"))
        run_concat(rc);
    else if (!strcmp(op, "slice"))
        run_slice(rc);
    else if (!strcmp(op, "transpose"))
        run_transpose(rc);
    else if (!strcmp(op, "sum") || !strcmp(op, "mean"))
        run_reduce(rc, !strcmp(op, "mean"));
    else if (!strcmp(op, "sgd"))
        run_sgd(rc);
    else if (!strcmp(op, "adam"))
        run_adam(rc);
    else if (!strcmp(op, "clip"))
        run_clip(rc);
    else
        CHECKF(0, "%s: unknown op '%s'", rc->name, op);
}

int main(void) {
    wf_blas_set_threads(1);
    wf_ref_run("tests/ref/dense", run_case, RTOL, ATOL, 30);
    return wf_test_done("test_kernels_torch_dense");
}
