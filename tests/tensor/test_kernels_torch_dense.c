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
#define MAX_ITEMS 48

/* ---- reading a case file (format in tools/ref/gen_dense_ref.py) ---- */

struct ref_item {
    char key[32];
    int kind;   /* 'i' int, 'f' float, 'a' array */
    int is_int; /* arrays: 1 = int32, 0 = float32 */
    long count; /* arrays: elements */
    double num; /* ints and floats */
    void *data; /* arrays: an aligned copy */
};

struct ref_case {
    char name[64];
    char op[32];
    int n;
    struct ref_item items[MAX_ITEMS];
    int missing; /* a lookup failed: the case is reported and skipped */
};

static void ref_free(struct ref_case *rc) {
    for (int i = 0; i < rc->n; i++)
        free(rc->items[i].data);
    rc->n = 0;
}

/* Returns 0 on success; the header is text lines, then the arrays' bytes. */
static int ref_load(struct ref_case *rc, const char *path) {
    memset(rc, 0, sizeof *rc);
    char *buf;
    size_t len;
    if (wf_read_file(path, &buf, &len) != WF_OK) return -1;
    size_t pos = 0;
    int ok = 0, first = 1;
    while (pos < len) {
        char *eol = memchr(buf + pos, '\n', len - pos);
        if (!eol) break;
        *eol = '\0';
        char *line = buf + pos;
        pos = (size_t)(eol - buf) + 1;
        char a[32], b[64], c[32];
        double d = 0;
        long cnt = 0;
        if (first) {
            if (strcmp(line, "weft-ref 1") != 0) break;
            first = 0;
        } else if (strcmp(line, "end") == 0) {
            ok = 1;
            break;
        } else if (sscanf(line, "case %63s", b) == 1) {
            snprintf(rc->name, sizeof rc->name, "%s", b);
        } else if (sscanf(line, "op %31s", a) == 1) {
            snprintf(rc->op, sizeof rc->op, "%s", a);
        } else if (rc->n < MAX_ITEMS && sscanf(line, "int %31s %lf", a, &d) == 2) {
            struct ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'i';
            it->num = d;
        } else if (rc->n < MAX_ITEMS && sscanf(line, "float %31s %63s", a, b) == 2) {
            struct ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'f';
            it->num = strtof(b, NULL);
        } else if (rc->n < MAX_ITEMS && sscanf(line, "array %31s %31s %ld", a, c, &cnt) == 3 && cnt >= 0) {
            struct ref_item *it = &rc->items[rc->n++];
            snprintf(it->key, sizeof it->key, "%s", a);
            it->kind = 'a';
            it->is_int = strcmp(c, "i32") == 0;
            it->count = cnt;
        } else {
            break;
        }
    }
    for (int i = 0; ok && i < rc->n; i++) {
        struct ref_item *it = &rc->items[i];
        if (it->kind != 'a') continue;
        size_t bytes = (size_t)it->count * 4;
        if (len - pos < bytes) {
            ok = 0;
            break;
        }
        it->data = malloc(bytes ? bytes : 4);
        memcpy(it->data, buf + pos, bytes); /* the machines we run on are little-endian */
        pos += bytes;
    }
    free(buf);
    if (!ok || pos != len) {
        ref_free(rc);
        return -1;
    }
    return 0;
}

static struct ref_item *find(struct ref_case *rc, const char *key, int kind) {
    for (int i = 0; i < rc->n; i++) {
        if (rc->items[i].kind == kind && strcmp(rc->items[i].key, key) == 0) return &rc->items[i];
    }
    fprintf(stderr, "%s: missing %s\n", rc->name, key);
    rc->missing = 1;
    return NULL;
}

static int gi(struct ref_case *rc, const char *key) {
    struct ref_item *it = find(rc, key, 'i');
    return it ? (int)it->num : 0;
}

static float gf(struct ref_case *rc, const char *key) {
    struct ref_item *it = find(rc, key, 'f');
    return it ? (float)it->num : 0.0f;
}

/* The array `key`, which must have `count` elements. */
static const float *ga(struct ref_case *rc, const char *key, long count) {
    static float dummy[1];
    struct ref_item *it = find(rc, key, 'a');
    if (it && it->count != count) {
        fprintf(stderr, "%s: %s has %ld elements, want %ld\n", rc->name, key, it->count, count);
        rc->missing = 1;
    }
    return it && it->count == count ? it->data : dummy;
}

static const int32_t *gid(struct ref_case *rc, const char *key, long count) {
    return (const int32_t *)ga(rc, key, count);
}

/* ---- comparison ---- */

static double worst_ratio_all = 0; /* over all cases: max |d| / (ATOL + RTOL|want|) */
static char worst_where[128];
static double case_ratio, case_abs; /* this case */

static void cmp(struct ref_case *rc, const char *what, const float *got, const float *want, long n) {
    double worst = 0, wabs = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double r = d / (ATOL + RTOL * fabs((double)want[i]));
        if (!(r <= worst)) worst = r; /* NaN counts as worst */
        if (d > wabs) wabs = d;
    }
    if (!(worst <= case_ratio)) case_ratio = worst;
    if (wabs > case_abs) case_abs = wabs;
    if (!(worst <= worst_ratio_all)) {
        worst_ratio_all = worst;
        snprintf(worst_where, sizeof worst_where, "%s.%s", rc->name, what);
    }
    char label[128];
    snprintf(label, sizeof label, "%s.%s", rc->name, what);
    wf_test_close(label, got, want, n, RTOL, ATOL);
}

/* A buffer pre-filled with NaN, so a kernel that fails to overwrite shows. */
static float *nanbuf(long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (long i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static float *copy(const float *x, long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, x, (size_t)n * sizeof(float));
    return p;
}

/* ---- one runner per op ---- */

static void run_linear(struct ref_case *rc) {
    int B = gi(rc, "B"), C = gi(rc, "C"), OC = gi(rc, "OC"), hb = gi(rc, "has_bias");
    const float *inp = ga(rc, "inp", (long)B * C), *w = ga(rc, "w", (long)OC * C);
    const float *bias = hb ? ga(rc, "bias", OC) : NULL, *dout = ga(rc, "dout", (long)B * OC);
    const float *out = ga(rc, "out", (long)B * OC), *dinp = ga(rc, "dinp", (long)B * C);
    const float *dw = ga(rc, "dw", (long)OC * C), *dbias = hb ? ga(rc, "dbias", OC) : NULL;
    if (rc->missing) return;
    float *o = nanbuf((long)B * OC), *di = nanbuf((long)B * C), *dwt = nanbuf((long)OC * C), *db = nanbuf(OC);
    wf_linear_forward(o, inp, w, bias, B, C, OC);
    wf_linear_backward(di, dwt, hb ? db : NULL, dout, inp, w, B, C, OC);
    cmp(rc, "out", o, out, (long)B * OC);
    cmp(rc, "dinp", di, dinp, (long)B * C);
    cmp(rc, "dw", dwt, dw, (long)OC * C);
    if (hb) cmp(rc, "dbias", db, dbias, OC);
    free(o), free(di), free(dwt), free(db);
}

static void run_matmul(struct ref_case *rc) {
    int nb = gi(rc, "nb"), M = gi(rc, "M"), K = gi(rc, "K"), N = gi(rc, "N"), sh = gi(rc, "b_shared");
    long na = (long)nb * M * K, nbb = sh ? (long)K * N : (long)nb * K * N, no = (long)nb * M * N;
    const float *a = ga(rc, "a", na), *b = ga(rc, "b", nbb), *dout = ga(rc, "dout", no);
    const float *out = ga(rc, "out", no), *da = ga(rc, "da", na), *db = ga(rc, "db", nbb);
    if (rc->missing) return;
    float *o = nanbuf(no), *dat = nanbuf(na), *dbt = nanbuf(nbb);
    wf_matmul_forward(o, a, b, nb, M, K, N, sh);
    wf_matmul_backward(dat, dbt, dout, a, b, nb, M, K, N, sh);
    cmp(rc, "out", o, out, no);
    cmp(rc, "da", dat, da, na);
    cmp(rc, "db", dbt, db, nbb);
    free(o), free(dat), free(dbt);
}

static void run_binary(struct ref_case *rc, int is_mul) {
    long n = gi(rc, "n"), m = gi(rc, "m");
    const float *a = ga(rc, "a", n), *b = ga(rc, "b", m), *dout = ga(rc, "dout", n);
    const float *out = ga(rc, "out", n), *da = ga(rc, "da", n), *db = ga(rc, "db", m);
    if (rc->missing) return;
    float *o = nanbuf(n), *dat = nanbuf(n), *dbt = nanbuf(m);
    if (is_mul) {
        wf_mul_forward(o, a, b, n, m);
        wf_mul_backward(dat, dbt, dout, a, b, n, m);
    } else {
        wf_add_forward(o, a, b, n, m);
        wf_add_backward(dat, dbt, dout, n, m);
    }
    cmp(rc, "out", o, out, n);
    cmp(rc, "da", dat, da, n);
    cmp(rc, "db", dbt, db, m);
    free(o), free(dat), free(dbt);
}

static void run_unary(struct ref_case *rc) {
    long n = gi(rc, "n");
    const float *inp = ga(rc, "inp", n), *dout = ga(rc, "dout", n), *out = ga(rc, "out", n);
    const float *dinp = ga(rc, "dinp", n);
    if (rc->missing) return;
    float *o = nanbuf(n), *di = nanbuf(n);
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
    cmp(rc, "out", o, out, n);
    cmp(rc, "dinp", di, dinp, n);
    free(o), free(di);
}

static void run_softmax(struct ref_case *rc, int is_log) {
    int R = gi(rc, "R"), V = gi(rc, "V");
    long n = (long)R * V;
    const float *inp = ga(rc, "inp", n), *dout = ga(rc, "dout", n), *out = ga(rc, "out", n);
    const float *dinp = ga(rc, "dinp", n);
    if (rc->missing) return;
    float *o = nanbuf(n), *di = nanbuf(n);
    if (is_log) {
        wf_log_softmax_forward(o, inp, R, V);
        wf_log_softmax_backward(di, dout, o, R, V);
    } else {
        wf_softmax_forward(o, inp, R, V);
        wf_softmax_backward(di, dout, o, R, V);
    }
    cmp(rc, "out", o, out, n);
    cmp(rc, "dinp", di, dinp, n);
    free(o), free(di);
}

static void run_xent(struct ref_case *rc) {
    int B = gi(rc, "B"), V = gi(rc, "V");
    float scale = gf(rc, "scale"), dloss = gf(rc, "dloss");
    long n = (long)B * V;
    const float *logits = ga(rc, "logits", n), *loss = ga(rc, "loss", 1), *probs = ga(rc, "probs", n);
    const float *dlogits = ga(rc, "dlogits", n);
    const int32_t *t = gid(rc, "targets", B);
    if (rc->missing) return;
    float *p = nanbuf(n), *dl = nanbuf(n), l = NAN;
    CHECK(wf_softmax_xent_forward(&l, p, logits, t, B, V, scale) == -1);
    wf_softmax_xent_backward(dl, p, t, B, V, scale, dloss);
    cmp(rc, "loss", &l, loss, 1);
    cmp(rc, "probs", p, probs, n);
    cmp(rc, "dlogits", dl, dlogits, n);
    free(p), free(dl);
}

static void run_argmax(struct ref_case *rc) {
    int B = gi(rc, "B"), V = gi(rc, "V"), want = gi(rc, "correct");
    const float *logits = ga(rc, "logits", (long)B * V);
    const int32_t *t = gid(rc, "targets", B);
    if (rc->missing) return;
    int got = wf_argmax_correct(logits, t, B, V);
    CHECKF(got == want, "%s: %d correct, torch says %d", rc->name, got, want);
}

static void run_layernorm(struct ref_case *rc) {
    int R = gi(rc, "R"), C = gi(rc, "C");
    float eps = gf(rc, "eps");
    long n = (long)R * C;
    const float *inp = ga(rc, "inp", n), *w = ga(rc, "w", C), *b = ga(rc, "b", C), *dout = ga(rc, "dout", n);
    const float *out = ga(rc, "out", n), *mean = ga(rc, "mean", R), *rstd = ga(rc, "rstd", R);
    const float *dinp = ga(rc, "dinp", n), *dw = ga(rc, "dw", C), *db = ga(rc, "db", C);
    if (rc->missing) return;
    float *o = nanbuf(n), *mu = nanbuf(R), *rs = nanbuf(R), *di = nanbuf(n), *dwt = nanbuf(C), *dbt = nanbuf(C);
    wf_layernorm_forward(o, mu, rs, inp, w, b, R, C, eps);
    wf_layernorm_backward(di, dwt, dbt, dout, inp, w, mu, rs, R, C);
    cmp(rc, "out", o, out, n);
    cmp(rc, "mean", mu, mean, R);
    cmp(rc, "rstd", rs, rstd, R);
    cmp(rc, "dinp", di, dinp, n);
    cmp(rc, "dw", dwt, dw, C);
    cmp(rc, "db", dbt, db, C);
    free(o), free(mu), free(rs), free(di), free(dwt), free(dbt);
}

static void run_embedding(struct ref_case *rc) {
    int B = gi(rc, "B"), V = gi(rc, "V"), D = gi(rc, "D");
    const int32_t *ids = gid(rc, "ids", B);
    const float *table = ga(rc, "table", (long)V * D), *dout = ga(rc, "dout", (long)B * D);
    const float *out = ga(rc, "out", (long)B * D), *dtable = ga(rc, "dtable", (long)V * D);
    if (rc->missing) return;
    float *o = nanbuf((long)B * D), *dt = nanbuf((long)V * D);
    CHECK(wf_embedding_forward(o, ids, table, B, V, D) == -1);
    wf_embedding_backward(dt, dout, ids, B, V, D);
    cmp(rc, "out", o, out, (long)B * D);
    cmp(rc, "dtable", dt, dtable, (long)V * D);
    free(o), free(dt);
}

static void run_concat(struct ref_case *rc) {
    int n = gi(rc, "n");
    long outer = gi(rc, "outer"), inner = gi(rc, "inner"), tot = 0;
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
        dims[i] = gi(rc, k);
        tot += dims[i];
    }
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "in%d", i);
        ins[i] = ga(rc, k, outer * dims[i] * inner);
        snprintf(k, sizeof k, "din%d", i);
        dins_want[i] = ga(rc, k, outer * dims[i] * inner);
    }
    const float *dout = ga(rc, "dout", outer * tot * inner), *out = ga(rc, "out", outer * tot * inner);
    if (rc->missing) return;
    float *o = nanbuf(outer * tot * inner);
    wf_concat_forward(o, ins, dims, n, outer, inner);
    cmp(rc, "out", o, out, outer * tot * inner);
    for (int i = 0; i < n; i++)
        dins[i] = nanbuf(outer * dims[i] * inner);
    float *skipped = dins[1];
    dins[1] = NULL; /* a NULL gradient output is skipped */
    wf_concat_backward(dins, dout, dims, n, outer, inner);
    dins[1] = skipped;
    CHECK(isnan(dins[1][0]));
    wf_concat_backward(dins, dout, dims, n, outer, inner);
    for (int i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "din%d", i);
        cmp(rc, k, dins[i], dins_want[i], outer * dims[i] * inner);
        free(dins[i]);
    }
    free(o);
}

static void run_slice(struct ref_case *rc) {
    long outer = gi(rc, "outer"), inner = gi(rc, "inner");
    int dim = gi(rc, "dim"), start = gi(rc, "start"), len = gi(rc, "len");
    const float *inp = ga(rc, "inp", outer * dim * inner), *dout = ga(rc, "dout", outer * len * inner);
    const float *out = ga(rc, "out", outer * len * inner), *dinp = ga(rc, "dinp", outer * dim * inner);
    if (rc->missing) return;
    float *o = nanbuf(outer * len * inner), *di = nanbuf(outer * dim * inner);
    wf_slice_forward(o, inp, outer, dim, inner, start, len);
    wf_slice_backward(di, dout, outer, dim, inner, start, len);
    cmp(rc, "out", o, out, outer * len * inner);
    cmp(rc, "dinp", di, dinp, outer * dim * inner);
    free(o), free(di);
}

static void run_transpose(struct ref_case *rc) {
    long A = gi(rc, "A"), X = gi(rc, "X"), M = gi(rc, "M"), Y = gi(rc, "Y"), Z = gi(rc, "Z");
    long n = A * X * M * Y * Z;
    const float *inp = ga(rc, "inp", n), *dout = ga(rc, "dout", n), *out = ga(rc, "out", n);
    const float *dinp = ga(rc, "dinp", n);
    if (rc->missing) return;
    float *o = nanbuf(n), *di = nanbuf(n);
    wf_transpose_forward(o, inp, A, X, M, Y, Z);
    wf_transpose_forward(di, dout, A, Y, M, X, Z); /* the backward is the transpose back */
    cmp(rc, "out", o, out, n);
    cmp(rc, "dinp", di, dinp, n);
    free(o), free(di);
}

static void run_reduce(struct ref_case *rc, int is_mean) {
    long outer = gi(rc, "outer"), inner = gi(rc, "inner");
    int dim = gi(rc, "dim");
    const float *inp = ga(rc, "inp", outer * dim * inner), *dout = ga(rc, "dout", outer * inner);
    const float *out = ga(rc, "out", outer * inner), *dinp = ga(rc, "dinp", outer * dim * inner);
    if (rc->missing) return;
    float *o = nanbuf(outer * inner), *di = nanbuf(outer * dim * inner);
    if (is_mean) {
        wf_mean_forward(o, inp, outer, dim, inner);
        wf_mean_backward(di, dout, outer, dim, inner);
    } else {
        wf_sum_forward(o, inp, outer, dim, inner);
        wf_sum_backward(di, dout, outer, dim, inner);
    }
    cmp(rc, "out", o, out, outer * inner);
    cmp(rc, "dinp", di, dinp, outer * dim * inner);
    free(o), free(di);
}

static void run_sgd(struct ref_case *rc) {
    long n = gi(rc, "n");
    int steps = gi(rc, "steps"), nesterov = gi(rc, "nesterov");
    float lr = gf(rc, "lr"), mom = gf(rc, "momentum"), wd = gf(rc, "wd");
    const float *p0 = ga(rc, "p0", n), *g = ga(rc, "grads", n * steps), *want = ga(rc, "params", n * steps);
    const float *buf_want = mom != 0.0f ? ga(rc, "buf", n) : NULL;
    if (rc->missing) return;
    float *p = copy(p0, n), *buf = mom != 0.0f ? nanbuf(n) : NULL; /* step 1 must not read buf */
    for (int s = 0; s < steps; s++) {
        wf_sgd_update(p, g + s * n, buf, n, lr, mom, wd, nesterov, s + 1);
        char k[32];
        snprintf(k, sizeof k, "p[step %d]", s + 1);
        cmp(rc, k, p, want + s * n, n);
    }
    if (buf) cmp(rc, "buf", buf, buf_want, n);
    free(p), free(buf);
}

static void run_adam(struct ref_case *rc) {
    long n = gi(rc, "n");
    int steps = gi(rc, "steps"), dec = gi(rc, "decoupled");
    float lr = gf(rc, "lr"), b1 = gf(rc, "beta1"), b2 = gf(rc, "beta2"), eps = gf(rc, "eps"), wd = gf(rc, "wd");
    const float *p0 = ga(rc, "p0", n), *g = ga(rc, "grads", n * steps), *want = ga(rc, "params", n * steps);
    const float *mw = ga(rc, "m", n), *vw = ga(rc, "v", n);
    if (rc->missing) return;
    float *p = copy(p0, n), *m = calloc((size_t)n, sizeof(float)), *v = calloc((size_t)n, sizeof(float));
    for (int s = 0; s < steps; s++) {
        wf_adam_update(p, g + s * n, m, v, n, lr, b1, b2, eps, wd, dec, s + 1);
        char k[32];
        snprintf(k, sizeof k, "p[step %d]", s + 1);
        cmp(rc, k, p, want + s * n, n);
    }
    cmp(rc, "m", m, mw, n);
    cmp(rc, "v", v, vw, n);
    free(p), free(m), free(v);
}

/* torch.nn.utils.clip_grad_norm_: total = ||all grads||, coef = max/(total + 1e-6), scale by min(coef, 1) */
static void run_clip(struct ref_case *rc) {
    int k = gi(rc, "n");
    long sizes[8], tot = 0;
    float max_norm = gf(rc, "max_norm");
    if (k < 1 || k > 8) {
        CHECKF(0, "%s: bad n %d", rc->name, k);
        return;
    }
    for (int i = 0; i < k; i++) {
        char key[16];
        snprintf(key, sizeof key, "size%d", i);
        sizes[i] = gi(rc, key);
        tot += sizes[i];
    }
    const float *g0 = ga(rc, "grads", tot), *norm = ga(rc, "total_norm", 1), *want = ga(rc, "clipped", tot);
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
    cmp(rc, "total_norm", &total, norm, 1);
    cmp(rc, "clipped", g, want, tot);
    free(g);
}

static void run_case(struct ref_case *rc) {
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
    CHECKF(!rc->missing, "%s: malformed case", rc->name);
}

int main(void) {
    wf_blas_set_threads(1);
    char *manifest;
    size_t len;
    int ncases = 0;
    if (wf_read_file(wf_test_src("tests/ref/dense/MANIFEST"), &manifest, &len) != WF_OK) {
        CHECKF(0, "cannot read tests/ref/dense/MANIFEST: %s", wf_errmsg());
        return wf_test_done("test_kernels_torch_dense");
    }
    for (char *save = NULL, *name = strtok_r(manifest, "\n", &save); name; name = strtok_r(NULL, "\n", &save)) {
        char rel[256];
        snprintf(rel, sizeof rel, "tests/ref/dense/%s.ref", name);
        struct ref_case *rc = malloc(sizeof *rc);
        if (ref_load(rc, wf_test_src(rel)) != 0) {
            CHECKF(0, "cannot load %s", rel);
            free(rc);
            continue;
        }
        case_ratio = case_abs = 0;
        int before = wf_test_failures;
        run_case(rc);
        printf("%-16s %-13s worst |weft-torch| %.3g, %.3g of tolerance%s\n", rc->name, rc->op, case_abs, case_ratio,
               wf_test_failures > before ? "  FAILED" : "");
        ref_free(rc);
        free(rc);
        ncases++;
    }
    free(manifest);
    CHECKF(ncases >= 30, "only %d cases in MANIFEST", ncases);
    printf("%d cases; worst at %.3g of tolerance (rtol %g, atol %g) in %s\n", ncases, worst_ratio_all, RTOL, ATOL,
           worst_where);
    return wf_test_done("test_kernels_torch_dense");
}
