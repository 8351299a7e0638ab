/*
 * tests/tensor: convolution and pooling kernels against direct (naive)
 * forward loops in double and against central finite differences of
 * L = sum(out * R) for a random R; checks that backward overwrites its
 * outputs, honours NULL gradients and is bitwise deterministic, within a
 * process and across processes, with 1 and 2 threads.
 *
 * Every convolution check runs once per backend (src/tensor/conv_int.h):
 * BLAS, oneDNN, and the per-op mix "auto" that is the default.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/tensor/conv_int.h"
#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

static const char *backend_name[] = {"auto", "blas", "dnnl"};

/* FD tolerance on |analytic - numeric| / (1 + |numeric|). Convolution and
 * average pooling are linear, so the only FD error is float rounding of the
 * outputs divided by 2*eps (~1e-5 here); max pooling is piecewise linear
 * and the inputs are spaced wider than eps, so it is exact the same way. */
#define FD_TOL 1e-3
#define FD_EPS 1e-2

static double worst_fd = 0;

static float *fvec(long n) { return wf_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)); }

static void fill(float *x, long n, struct wf_rng *r, float scale) {
    for (long i = 0; i < n; i++)
        x[i] = (2.0f * wf_rng_uniform(r) - 1.0f) * scale;
}

static void fill_nan(float *x, long n) {
    for (long i = 0; i < n; i++)
        x[i] = NAN;
}

static int bits_equal(const float *a, const float *b, long n) { return memcmp(a, b, sizeof(float) * n) == 0; }

static double dot(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ---- convolution ---- */

struct conv_case {
    struct wf_conv2d_shape s;
    float *inp, *w, *bias, *R, *out, *work;
    long ni, nw, no, nwork;
};

static double conv_loss(struct conv_case *c) {
    wf_conv2d_forward(c->out, c->inp, c->w, c->bias, &c->s, c->work);
    return dot(c->out, c->R, c->no);
}

/* Central difference of L w.r.t. x[i]; the step actually taken in float is
 * used as the denominator. */
static double fd(struct conv_case *c, float *x, long i) {
    float x0 = x[i];
    float xp = x0 + (float)FD_EPS, xm = x0 - (float)FD_EPS;
    x[i] = xp;
    double lp = conv_loss(c);
    x[i] = xm;
    double lm = conv_loss(c);
    x[i] = x0;
    return (lp - lm) / ((double)xp - (double)xm);
}

/* checks up to max_checks entries of grad (n) spread over the array */
static void check_fd(const char *what, struct conv_case *c, float *x, const float *grad, long n, long max_checks) {
    long step = n > max_checks ? n / max_checks : 1;
    double worst = 0;
    long worst_i = -1;
    for (long i = 0; i < n; i += step) {
        double num = fd(c, x, i);
        double err = fabs((double)grad[i] - num) / (1.0 + fabs(num));
        if (err > worst || worst_i < 0) {
            worst = err;
            worst_i = i;
        }
    }
    if (worst > worst_fd) worst_fd = worst;
    CHECKF(worst <= FD_TOL, "%s: fd error %.3g at [%ld]", what, worst, worst_i);
}

static void conv_naive(float *out, const float *inp, const float *w, const float *bias,
                       const struct wf_conv2d_shape *s) {
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int c = 0; c < s->C; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += (double)inp[((long)(n * s->C + c) * s->H + ih) * s->W + iw] *
                                       w[((oc * s->C + c) * s->KH + kh) * s->KW + kw];
                            }
                    out[((long)(n * s->OC + oc) * s->OH + oh) * s->OW + ow] = (float)acc;
                }
}

static void test_conv(int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad, int with_bias,
                      long max_checks) {
    char name[128];
    snprintf(name, sizeof name, "%s conv N%d C%d %dx%d OC%d k%dx%d s%d p%d%s", backend_name[wf_conv_backend_get()], N,
             C, H, W, OC, KH, KW, stride, pad, with_bias ? "" : " nobias");
    struct conv_case c;
    memset(&c, 0, sizeof c);
    wf_conv2d_shape_init(&c.s, N, C, H, W, OC, KH, KW, stride, pad);
    CHECKF(c.s.OH == (H + 2 * pad - KH) / stride + 1 && c.s.OW == (W + 2 * pad - KW) / stride + 1, "%s: shape", name);
    c.ni = (long)N * C * H * W;
    c.nw = (long)OC * C * KH * KW;
    c.no = (long)N * OC * c.s.OH * c.s.OW;
    c.nwork = wf_conv2d_workspace(&c.s);
    CHECK(c.nwork >= 0);
    struct wf_rng r;
    wf_rng_init(&r, 1234, (uint64_t)(N * 1000003 + C * 10007 + H * 101 + KH * 11 + stride * 3 + pad));
    c.inp = fvec(c.ni);
    c.w = fvec(c.nw);
    c.bias = with_bias ? fvec(OC) : NULL;
    c.R = fvec(c.no);
    c.out = fvec(c.no);
    /* exactly the advertised size, so ASan catches any overrun */
    c.work = c.nwork > 0 ? wf_malloc(sizeof(float) * (size_t)c.nwork) : NULL;
    fill(c.inp, c.ni, &r, 1.0f);
    fill(c.w, c.nw, &r, 0.5f);
    if (c.bias) fill(c.bias, OC, &r, 0.5f);
    fill(c.R, c.no, &r, 1.0f);

    /* forward against the direct loop */
    float *ref = fvec(c.no);
    conv_naive(ref, c.inp, c.w, c.bias, &c.s);
    fill_nan(c.out, c.no);
    wf_conv2d_forward(c.out, c.inp, c.w, c.bias, &c.s, c.work);
    char what[160];
    snprintf(what, sizeof what, "%s: forward", name);
    wf_test_close(what, c.out, ref, c.no, 1e-5, 1e-5);
    /* again with a dirty workspace: the same bits */
    float *out2 = fvec(c.no);
    if (c.work) fill_nan(c.work, c.nwork);
    wf_conv2d_forward(out2, c.inp, c.w, c.bias, &c.s, c.work);
    CHECKF(bits_equal(c.out, out2, c.no), "%s: forward not deterministic", name);
    wf_free(out2);

    /* backward into NaN-filled outputs: all must be overwritten */
    float *dinp = fvec(c.ni), *dw = fvec(c.nw), *db = fvec(OC);
    fill_nan(dinp, c.ni);
    fill_nan(dw, c.nw);
    fill_nan(db, OC);
    wf_conv2d_backward(dinp, dw, db, c.R, c.inp, c.w, &c.s, c.work);

    /* zero-filled outputs and a dirty workspace give the same bits */
    float *dinp2 = fvec(c.ni), *dw2 = fvec(c.nw), *db2 = fvec(OC);
    memset(dinp2, 0, sizeof(float) * c.ni);
    memset(dw2, 0, sizeof(float) * c.nw);
    memset(db2, 0, sizeof(float) * OC);
    if (c.work) fill_nan(c.work, c.nwork);
    wf_conv2d_backward(dinp2, dw2, db2, c.R, c.inp, c.w, &c.s, c.work);
    CHECKF(bits_equal(dinp, dinp2, c.ni) && bits_equal(dw, dw2, c.nw) && bits_equal(db, db2, OC),
           "%s: backward not deterministic or does not overwrite", name);

    /* NULL dinp and dbias: dw unchanged, bit for bit */
    fill_nan(dw2, c.nw);
    wf_conv2d_backward(NULL, dw2, NULL, c.R, c.inp, c.w, &c.s, c.work);
    CHECKF(bits_equal(dw, dw2, c.nw), "%s: dw differs with NULL dinp/dbias", name);

    snprintf(what, sizeof what, "%s: dinp", name);
    check_fd(what, &c, c.inp, dinp, c.ni, max_checks);
    snprintf(what, sizeof what, "%s: dw", name);
    check_fd(what, &c, c.w, dw, c.nw, max_checks);
    if (c.bias) {
        snprintf(what, sizeof what, "%s: dbias", name);
        check_fd(what, &c, c.bias, db, OC, max_checks);
    } else {
        /* dbias does not depend on the bias: sum of R over N, OH, OW */
        float *sum = fvec(OC);
        long P = (long)c.s.OH * c.s.OW;
        for (int oc = 0; oc < OC; oc++) {
            double acc = 0;
            for (int n = 0; n < N; n++)
                for (long j = 0; j < P; j++)
                    acc += c.R[((long)n * OC + oc) * P + j];
            sum[oc] = (float)acc;
        }
        snprintf(what, sizeof what, "%s: dbias", name);
        wf_test_close(what, db, sum, OC, 1e-5, 1e-5);
        wf_free(sum);
    }

    wf_free(ref);
    wf_free(dinp);
    wf_free(dw);
    wf_free(db);
    wf_free(dinp2);
    wf_free(dw2);
    wf_free(db2);
    wf_free(c.inp);
    wf_free(c.w);
    wf_free(c.bias);
    wf_free(c.R);
    wf_free(c.out);
    wf_free(c.work);
}

/* A batch split over several chunks equals the samples done one at a time:
 * dinp per sample, dw and dbias as the sum of per-sample gradients. */
static void test_conv_chunks(int N, int C, int H, int W, int OC, int K, int pad) {
    struct wf_conv2d_shape s, s1;
    wf_conv2d_shape_init(&s, N, C, H, W, OC, K, K, 1, pad);
    wf_conv2d_shape_init(&s1, 1, C, H, W, OC, K, K, 1, pad);
    long ni = (long)C * H * W, nw = (long)OC * C * K * K, no = (long)OC * s.OH * s.OW;
    long nwork = wf_conv2d_workspace(&s), nwork1 = wf_conv2d_workspace(&s1);
    struct wf_rng r;
    wf_rng_init(&r, 99, 7);
    float *inp = fvec(N * ni), *w = fvec(nw), *bias = fvec(OC), *dout = fvec(N * no);
    float *out = fvec(N * no), *out1 = fvec(N * no), *dinp = fvec(N * ni), *dinp1 = fvec(N * ni);
    float *dw = fvec(nw), *dwn = fvec(nw), *db = fvec(OC), *dbn = fvec(OC), *dwsum = fvec(nw), *dbsum = fvec(OC);
    float *work = wf_malloc(sizeof(float) * (size_t)nwork), *work1 = wf_malloc(sizeof(float) * (size_t)nwork1);
    fill(inp, N * ni, &r, 1.0f);
    fill(w, nw, &r, 0.3f);
    fill(bias, OC, &r, 0.3f);
    fill(dout, N * no, &r, 1.0f);
    wf_conv2d_forward(out, inp, w, bias, &s, work);
    wf_conv2d_backward(dinp, dw, db, dout, inp, w, &s, work);
    double *accw = wf_calloc((size_t)nw, sizeof(double)), *accb = wf_calloc((size_t)OC, sizeof(double));
    for (int n = 0; n < N; n++) {
        wf_conv2d_forward(out1 + n * no, inp + n * ni, w, bias, &s1, work1);
        wf_conv2d_backward(dinp1 + n * ni, dwn, dbn, dout + n * no, inp + n * ni, w, &s1, work1);
        for (long i = 0; i < nw; i++)
            accw[i] += dwn[i];
        for (int i = 0; i < OC; i++)
            accb[i] += dbn[i];
    }
    for (long i = 0; i < nw; i++)
        dwsum[i] = (float)accw[i];
    for (int i = 0; i < OC; i++)
        dbsum[i] = (float)accb[i];
    char what[64];
    const char *b = backend_name[wf_conv_backend_get()];
    snprintf(what, sizeof what, "%s chunks: forward", b);
    wf_test_close(what, out, out1, N * no, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s chunks: dinp", b);
    wf_test_close(what, dinp, dinp1, N * ni, 1e-5, 1e-5);
    snprintf(what, sizeof what, "%s chunks: dw", b);
    wf_test_close(what, dw, dwsum, nw, 1e-4, 1e-4);
    snprintf(what, sizeof what, "%s chunks: dbias", b);
    wf_test_close(what, db, dbsum, OC, 1e-4, 1e-4);
    wf_free(accw);
    wf_free(accb);
    float *bufs[] = {inp, w, bias, dout, out, out1, dinp, dinp1, dw, dwn, db, dbn, dwsum, dbsum, work, work1};
    for (size_t i = 0; i < WF_ARRAY_LEN(bufs); i++)
        wf_free(bufs[i]);
}

/* Degenerate shapes: an empty batch, and a kernel larger than the padded
 * input (OH = 0). Gradients are zero-filled, nothing else is touched. */
static void test_conv_empty(void) {
    struct wf_conv2d_shape s;
    float w[2 * 3 * 3 * 3], dw[2 * 3 * 3 * 3], db[2], dinp[3 * 2 * 2], dout[1] = {0}, inp[3 * 2 * 2] = {0};
    for (size_t i = 0; i < WF_ARRAY_LEN(w); i++)
        w[i] = 1.0f;
    wf_conv2d_shape_init(&s, 0, 3, 4, 4, 2, 3, 3, 1, 1);
    CHECK(wf_conv2d_workspace(&s) == 0);
    fill_nan(dw, WF_ARRAY_LEN(dw));
    fill_nan(db, 2);
    wf_conv2d_forward(NULL, NULL, w, NULL, &s, NULL);
    wf_conv2d_backward(NULL, dw, db, NULL, NULL, w, &s, NULL);
    int zero = 1;
    for (size_t i = 0; i < WF_ARRAY_LEN(dw); i++)
        zero &= dw[i] == 0.0f;
    CHECK(zero && db[0] == 0.0f && db[1] == 0.0f);
    wf_conv2d_shape_init(&s, 1, 3, 2, 2, 2, 3, 3, 1, 0); /* 3x3 kernel on 2x2: OH = OW = 0 */
    CHECK(s.OH == 0 && s.OW == 0 && wf_conv2d_workspace(&s) == 0);
    fill_nan(dw, WF_ARRAY_LEN(dw));
    fill_nan(dinp, WF_ARRAY_LEN(dinp));
    wf_conv2d_backward(dinp, dw, NULL, dout, inp, w, &s, NULL);
    zero = 1;
    for (size_t i = 0; i < WF_ARRAY_LEN(dw); i++)
        zero &= dw[i] == 0.0f;
    for (size_t i = 0; i < WF_ARRAY_LEN(dinp); i++)
        zero &= dinp[i] == 0.0f;
    CHECK(zero);
}

/* ---- reproducibility ---- */

/* The CNN's two convolutions at batch 64, forward and full backward, run
 * reps times: returns a hash of every output bit of the first run and
 * clears *stable if a later run differs in any bit. */
static uint64_t conv_digest(int C, int H, int OC, int reps, int *stable) {
    struct wf_conv2d_shape s;
    wf_conv2d_shape_init(&s, 64, C, H, H, OC, 5, 5, 1, 2);
    long ni = (long)s.N * C * H * H, nw = (long)OC * C * 25, no = (long)s.N * OC * s.OH * s.OW;
    long nwork = wf_conv2d_workspace(&s);
    struct wf_rng r;
    wf_rng_init(&r, 4242, (uint64_t)C);
    float *inp = fvec(ni), *w = fvec(nw), *bias = fvec(OC), *dout = fvec(no), *out = fvec(no), *dinp = fvec(ni);
    float *dw = fvec(nw), *db = fvec(OC), *work = fvec(nwork);
    fill(inp, ni, &r, 1.0f);
    fill(w, nw, &r, 0.2f);
    fill(bias, OC, &r, 0.5f);
    fill(dout, no, &r, 1.0f);
    uint64_t first = 0;
    for (int i = 0; i < reps; i++) {
        wf_conv2d_forward(out, inp, w, bias, &s, work);
        wf_conv2d_backward(dinp, dw, db, dout, inp, w, &s, work);
        uint64_t h = wf_hash64(out, sizeof(float) * no, 1);
        h = wf_hash_combine(h, wf_hash64(dinp, sizeof(float) * ni, 2));
        h = wf_hash_combine(h, wf_hash64(dw, sizeof(float) * nw, 3));
        h = wf_hash_combine(h, wf_hash64(db, sizeof(float) * OC, 4));
        if (i == 0)
            first = h;
        else if (h != first)
            *stable = 0;
    }
    float *bufs[] = {inp, w, bias, dout, out, dinp, dw, db, work};
    for (size_t i = 0; i < WF_ARRAY_LEN(bufs); i++)
        wf_free(bufs[i]);
    return first;
}

static void digest_text(char *buf, size_t n, int reps, int *stable) {
    uint64_t c1 = conv_digest(1, 28, 32, reps, stable), c2 = conv_digest(32, 14, 64, reps, stable);
    snprintf(buf, n, "%016llx %016llx", (unsigned long long)c1, (unsigned long long)c2);
}

/* child mode: prints the digest for a backend and thread count */
static int digest_child(int backend, int threads) {
    wf_conv_backend_set((enum wf_conv_backend)backend);
    wf_blas_set_threads(threads);
    char d[64];
    int stable = 1;
    digest_text(d, sizeof d, 1, &stable);
    printf("%s\n", d);
    return 0;
}

/* Bitwise identical outputs and gradients across repeated calls and across
 * processes, per backend, with 1 and 2 threads. */
static void test_reproducible(void) {
    char exe[512];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(len > 0);
    exe[len > 0 ? len : 0] = '\0';
    for (int t = 1; t <= 2; t++) {
        wf_blas_set_threads(t);
        for (int b = WF_CONV_AUTO; b <= WF_CONV_DNNL; b++) {
            wf_conv_backend_set((enum wf_conv_backend)b);
            char here[64], there[64] = "";
            int stable = 1;
            digest_text(here, sizeof here, 5, &stable);
            CHECKF(stable, "%s, %d threads: repeated calls differ", backend_name[b], t);
            char cmd[600];
            snprintf(cmd, sizeof cmd, "'%s' --digest %d %d", exe, b, t);
            FILE *f = popen(cmd, "r");
            CHECKF(f != NULL, "popen %s", cmd);
            if (!f) continue;
            if (!fgets(there, sizeof there, f)) there[0] = '\0';
            there[strcspn(there, "\n")] = '\0';
            int rc = pclose(f);
            CHECKF(rc == 0 && strcmp(here, there) == 0, "%s, %d threads: this process %s, a new one %s (rc %d)",
                   backend_name[b], t, here, there, rc);
            printf("reproducible: %s, %d thread%s: %s\n", backend_name[b], t, t > 1 ? "s" : "", here);
        }
    }
}

/* A workspace sized at 1 thread, then used at 2: oneDNN's scratch may grow
 * with the thread count, so such a call must fit or fall back to BLAS (ASan
 * catches an overrun: the buffer is exactly the advertised size). */
static void test_thread_change(void) {
    struct wf_conv2d_shape s;
    wf_conv2d_shape_init(&s, 8, 32, 14, 14, 64, 5, 5, 1, 2);
    long ni = 8L * 32 * 196, nw = 64L * 32 * 25, no = 8L * 64 * 196;
    struct wf_rng r;
    wf_rng_init(&r, 5, 6);
    float *inp = fvec(ni), *w = fvec(nw), *out = fvec(no), *ref = fvec(no), *dout = fvec(no);
    float *dinp = fvec(ni), *dw = fvec(nw), *db = fvec(64);
    fill(inp, ni, &r, 1.0f);
    fill(w, nw, &r, 0.2f);
    fill(dout, no, &r, 1.0f);
    conv_naive(ref, inp, w, NULL, &s);
    wf_conv_backend_set(WF_CONV_DNNL);
    wf_blas_set_threads(1);
    long nwork = wf_conv2d_workspace(&s);
    float *work = fvec(nwork);
    wf_blas_set_threads(2);
    wf_conv2d_forward(out, inp, w, NULL, &s, work);
    wf_conv2d_backward(dinp, dw, db, dout, inp, w, &s, work);
    wf_test_close("workspace from 1 thread, run with 2: forward", out, ref, no, 1e-5, 1e-5);
    float *bufs[] = {inp, w, out, ref, dout, dinp, dw, db, work};
    for (size_t i = 0; i < WF_ARRAY_LEN(bufs); i++)
        wf_free(bufs[i]);
}

/* ---- pooling ---- */

struct pool_case {
    struct wf_pool2d_shape s;
    int is_max;
    float *inp, *R, *out;
    int32_t *argmax;
    long ni, no;
};

static double pool_loss(struct pool_case *p) {
    if (p->is_max)
        wf_maxpool2d_forward(p->out, p->argmax, p->inp, &p->s);
    else
        wf_avgpool2d_forward(p->out, p->inp, &p->s);
    return dot(p->out, p->R, p->no);
}

static void pool_naive(float *out, int32_t *argmax, const float *inp, const struct wf_pool2d_shape *s, int is_max) {
    for (long pl = 0; pl < (long)s->N * s->C; pl++)
        for (int oh = 0; oh < s->OH; oh++)
            for (int ow = 0; ow < s->OW; ow++) {
                double acc = 0;
                float best = -INFINITY;
                int bi = -1;
                for (int kh = 0; kh < s->k; kh++)
                    for (int kw = 0; kw < s->k; kw++) {
                        int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                        if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                        float v = inp[(pl * s->H + ih) * s->W + iw];
                        acc += v;
                        if (bi < 0 || v > best) {
                            best = v;
                            bi = ih * s->W + iw;
                        }
                    }
                long o = (pl * s->OH + oh) * s->OW + ow;
                if (is_max) {
                    out[o] = best;
                    argmax[o] = bi;
                } else {
                    out[o] = (float)(acc / (s->k * s->k));
                }
            }
}

static void test_pool(int is_max, int N, int C, int H, int W, int k, int stride, int pad) {
    char name[128], what[160];
    snprintf(name, sizeof name, "%spool N%d C%d %dx%d k%d s%d p%d", is_max ? "max" : "avg", N, C, H, W, k, stride, pad);
    struct pool_case p;
    memset(&p, 0, sizeof p);
    p.is_max = is_max;
    wf_pool2d_shape_init(&p.s, N, C, H, W, k, stride, pad);
    CHECKF(p.s.OH == (H + 2 * pad - k) / stride + 1 && p.s.OW == (W + 2 * pad - k) / stride + 1, "%s: shape", name);
    p.ni = (long)N * C * H * W;
    p.no = (long)N * C * p.s.OH * p.s.OW;
    p.inp = fvec(p.ni);
    p.R = fvec(p.no);
    p.out = fvec(p.no);
    p.argmax = wf_malloc(sizeof(int32_t) * (size_t)p.no);
    struct wf_rng r;
    wf_rng_init(&r, 77, (uint64_t)(H * 131 + k * 7 + stride * 3 + pad + is_max * 100000));
    /* distinct inputs spaced 4*eps apart (a shuffled ramp), so no window
     * has a near-tie a finite-difference step could flip */
    for (long i = 0; i < p.ni; i++)
        p.inp[i] = (float)((double)(i - p.ni / 2) * 4.0 * FD_EPS);
    for (long i = p.ni - 1; i > 0; i--) {
        long j = (long)wf_rng_below(&r, (uint32_t)(i + 1));
        float t = p.inp[i];
        p.inp[i] = p.inp[j];
        p.inp[j] = t;
    }
    fill(p.R, p.no, &r, 1.0f);

    float *ref = fvec(p.no);
    int32_t *refa = wf_malloc(sizeof(int32_t) * (size_t)p.no);
    pool_naive(ref, refa, p.inp, &p.s, is_max);
    pool_loss(&p);
    snprintf(what, sizeof what, "%s: forward", name);
    wf_test_close(what, p.out, ref, p.no, 1e-6, 1e-6);
    if (is_max) CHECKF(memcmp(p.argmax, refa, sizeof(int32_t) * p.no) == 0, "%s: argmax", name);

    float *dinp = fvec(p.ni);
    fill_nan(dinp, p.ni);
    if (is_max)
        wf_maxpool2d_backward(dinp, p.R, p.argmax, &p.s);
    else
        wf_avgpool2d_backward(dinp, p.R, &p.s);
    double worst = 0;
    long worst_i = -1;
    for (long i = 0; i < p.ni; i++) {
        float x0 = p.inp[i], xp = x0 + (float)FD_EPS, xm = x0 - (float)FD_EPS;
        p.inp[i] = xp;
        double lp = pool_loss(&p);
        p.inp[i] = xm;
        double lm = pool_loss(&p);
        p.inp[i] = x0;
        double num = (lp - lm) / ((double)xp - (double)xm);
        double err = fabs((double)dinp[i] - num) / (1.0 + fabs(num));
        if (err > worst || worst_i < 0) {
            worst = err;
            worst_i = i;
        }
    }
    if (worst > worst_fd) worst_fd = worst;
    CHECKF(worst <= FD_TOL, "%s: dinp fd error %.3g at [%ld]", name, worst, worst_i);
    wf_free(ref);
    wf_free(refa);
    wf_free(dinp);
    wf_free(p.inp);
    wf_free(p.R);
    wf_free(p.out);
    wf_free(p.argmax);
}

/* Ties keep the first position of the window; padding never wins, even
 * over all-negative inputs; NaN propagates. */
static void test_maxpool_ties(void) {
    struct wf_pool2d_shape s;
    wf_pool2d_shape_init(&s, 1, 1, 4, 4, 3, 2, 1); /* OH = OW = 2 */
    float inp[16], out[4];
    int32_t am[4];
    for (int i = 0; i < 16; i++)
        inp[i] = -5.0f;
    wf_maxpool2d_forward(out, am, inp, &s);
    /* windows start at rows/cols -1 and 1: first valid positions (0,0), (0,1), (1,0), (1,1) */
    static const int32_t want[4] = {0, 1, 4, 5};
    for (int i = 0; i < 4; i++)
        CHECKF(out[i] == -5.0f && am[i] == want[i], "tie %d: %g at %d", i, out[i], am[i]);
    inp[5] = 2.0f;
    inp[10] = 2.0f; /* (2,2) is only in the last window, after (1,1) */
    wf_maxpool2d_forward(out, am, inp, &s);
    CHECK(am[0] == 5 && am[1] == 5 && am[2] == 5 && am[3] == 5);
    inp[6] = NAN;
    wf_maxpool2d_forward(out, am, inp, &s);
    /* (1,2) is in the two right-hand windows */
    CHECK(out[0] == 2.0f && am[0] == 5 && out[2] == 2.0f && am[2] == 5);
    CHECK(isnan(out[1]) && am[1] == 6 && isnan(out[3]) && am[3] == 6);
    /* backward: overlapping windows add into the shared argmax */
    float dout[4] = {1, 2, 3, 4}, dinp[16];
    fill_nan(dinp, 16);
    wf_maxpool2d_backward(dinp, dout, am, &s);
    for (int i = 0; i < 16; i++)
        CHECK(dinp[i] == (i == 5 ? 4.0f : i == 6 ? 6.0f : 0.0f));
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--digest") == 0) return digest_child(atoi(argv[2]), atoi(argv[3]));
    CHECKF(wf_conv_dnnl_available(), "libdnnl.so.2 is not loaded: the dnnl checks would test BLAS");
    for (int b = WF_CONV_AUTO; b <= WF_CONV_DNNL; b++) {
        wf_conv_backend_set((enum wf_conv_backend)b);
        /* stride 1 and 2, pad 0/1/2, non-square kernels, C>1, OC>1, N>1 */
        test_conv(2, 3, 7, 6, 4, 3, 2, 1, 0, 1, 1000);
        test_conv(2, 3, 7, 6, 4, 3, 2, 2, 1, 1, 1000);
        test_conv(3, 2, 8, 8, 3, 5, 5, 1, 2, 1, 1000);
        test_conv(2, 2, 9, 7, 3, 3, 3, 2, 2, 0, 1000);
        test_conv(2, 2, 6, 5, 2, 2, 4, 2, 1, 1, 1000);
        test_conv(1, 1, 5, 5, 1, 3, 3, 1, 1, 1, 1000);
        test_conv(2, 4, 5, 4, 3, 1, 1, 1, 0, 1, 1000); /* pointwise fast path */
        test_conv(2, 4, 5, 4, 3, 1, 1, 2, 0, 0, 1000); /* 1x1 strided: im2col path */
        test_conv(2, 2, 4, 3, 2, 1, 3, 2, 2, 1, 1000); /* pad larger than the kernel: empty rows */
        test_conv(2, 1, 12, 12, 4, 5, 5, 1, 2, 1, 1000);
        test_conv(2, 2, 6, 4, 2, 2, 4, 1, 0, 1, 1000); /* stride 1, too narrow for the wide dinp layout */
        test_conv(2, 2, 6, 7, 3, 3, 5, 1, 1, 1, 1000); /* stride 1, narrow with padding */
        /* several samples per GEMM chunk (small maps), the last chunk partial */
        test_conv(7, 2, 12, 12, 3, 3, 3, 1, 1, 1, 300);
        test_conv(5, 2, 5, 5, 3, 3, 3, 2, 1, 0, 1000);
        /* the CNN's layers at a small batch; 16+ channels take oneDNN's blocked kernels in "auto" */
        test_conv(2, 1, 28, 28, 32, 5, 5, 1, 2, 1, 300);
        test_conv(2, 32, 14, 14, 64, 5, 5, 1, 2, 1, 300);
        test_conv(3, 20, 9, 9, 24, 3, 3, 1, 1, 0, 300); /* channels not a multiple of 16 */
        test_conv_chunks(7, 2, 12, 12, 3, 3, 1);
        test_conv_chunks(9, 2, 6, 6, 3, 3, 1);
        test_conv_chunks(5, 3, 20, 20, 2, 3, 1);
        test_conv_chunks(3, 32, 14, 14, 8, 5, 2);
        /* more samples than oneDNN's chunk (64): a full chunk and a tail */
        test_conv_chunks(70, 16, 6, 6, 16, 3, 1);
        test_conv(67, 16, 4, 4, 16, 3, 3, 1, 1, 1, 200);
        test_conv_empty();
    }
    test_reproducible();
    test_thread_change();
    wf_conv_backend_set(WF_CONV_AUTO);

    for (int is_max = 0; is_max <= 1; is_max++) {
        test_pool(is_max, 2, 3, 8, 8, 2, 2, 0);
        test_pool(is_max, 2, 2, 7, 5, 2, 2, 0); /* odd sizes: floor */
        test_pool(is_max, 1, 2, 7, 7, 3, 2, 1);
        test_pool(is_max, 2, 2, 6, 5, 3, 1, 1); /* overlapping windows */
        test_pool(is_max, 1, 3, 9, 8, 4, 3, 2);
        test_pool(is_max, 2, 1, 5, 6, 2, 1, 0);
    }
    test_maxpool_ties();
    printf("worst finite-difference error: %.3g (tolerance %g)\n", worst_fd, FD_TOL);
    return wf_test_done("test_kernels_conv");
}
