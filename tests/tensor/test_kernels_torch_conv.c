/*
 * tests/tensor: convolution and pooling kernels against PyTorch 1.13.
 * Reads the committed reference data in tests/ref/conv (format in its
 * manifest.txt, generator tools/ref/gen_conv_ref.py); regenerates the
 * inputs, runs forward and backward, and compares every output. The
 * convolution cases run under each backend (src/tensor/conv_int.h): BLAS,
 * oneDNN, and "auto", the default per-op mix.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/tensor/conv_int.h"
#include "testutil.h"
#include "weft/core.h"
#include "weft/kernels.h"

#define RTOL 1e-4
#define ATOL 1e-5

enum { S_INP = 1, S_W = 2, S_BIAS = 3, S_DOUT = 4 }; /* gen() streams, as the generator */

static double worst_ratio = 0; /* max |got - want| / (ATOL + RTOL |want|) */
static double worst_abs = 0;
static char worst_what[256];

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void gen(float *x, long n, uint64_t seed, uint64_t stream, double scale, int quant) {
    uint64_t key = (seed << 40) ^ (stream << 32);
    for (long i = 0; i < n; i++) {
        double u = (double)(splitmix64(key ^ (uint64_t)i) >> 40) / 16777216.0;
        x[i] = quant ? (float)(floor(u * 3.0) - 1.0) : (float)((2.0 * u - 1.0) * scale);
    }
}

/* A cursor over NAME.bin: little-endian 4-byte values, whatever the host. */
struct reader {
    const unsigned char *p;
    size_t left;
    int short_read;
};

static uint32_t next_u32(struct reader *r) {
    if (r->left < 4) {
        r->short_read = 1;
        return 0;
    }
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    r->left -= 4;
    return v;
}

static float *read_f32(struct reader *r, long n) {
    float *x = wf_malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) {
        uint32_t v = next_u32(r);
        memcpy(&x[i], &v, 4);
    }
    return x;
}

static int32_t *read_i32(struct reader *r, long n) {
    int32_t *x = wf_malloc(sizeof(int32_t) * (size_t)n);
    for (long i = 0; i < n; i++) {
        uint32_t v = next_u32(r);
        memcpy(&x[i], &v, 4);
    }
    return x;
}

static void compare(const char *name, const char *arr, const float *got, const float *want, long n) {
    char what[160];
    snprintf(what, sizeof what, "%s: %s", name, arr);
    for (long i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double ratio = d / (ATOL + RTOL * fabs((double)want[i]));
        if (d > worst_abs) worst_abs = d;
        if (ratio > worst_ratio) {
            worst_ratio = ratio;
            snprintf(worst_what, sizeof worst_what, "%s [%ld]: got %.9g want %.9g", what, i, (double)got[i],
                     (double)want[i]);
        }
    }
    wf_test_close(what, got, want, n, RTOL, ATOL);
}

static void run_conv(const char *name, uint64_t seed, struct reader *rd, const int *d) {
    struct wf_conv2d_shape s;
    wf_conv2d_shape_init(&s, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]);
    int has_bias = d[9];
    long ni = (long)s.N * s.C * s.H * s.W, nw = (long)s.OC * s.C * s.KH * s.KW;
    long no = (long)s.N * s.OC * s.OH * s.OW, nwork = wf_conv2d_workspace(&s);
    float *inp = wf_malloc(sizeof(float) * ni), *w = wf_malloc(sizeof(float) * nw);
    float *bias = wf_malloc(sizeof(float) * s.OC), *dout = wf_malloc(sizeof(float) * no);
    gen(inp, ni, seed, S_INP, 1.0, 0);
    gen(w, nw, seed, S_W, 1.0 / sqrt((double)(s.C * s.KH * s.KW)), 0);
    gen(bias, s.OC, seed, S_BIAS, 0.5, 0);
    gen(dout, no, seed, S_DOUT, 1.0, 0);
    float *want_out = read_f32(rd, no), *want_dinp = read_f32(rd, ni), *want_dw = read_f32(rd, nw);
    float *want_db = read_f32(rd, s.OC);
    CHECKF(!rd->short_read && rd->left == 0, "%s: reference file size does not match the shape", name);

    float *work = wf_malloc(sizeof(float) * (size_t)(nwork > 0 ? nwork : 1));
    float *out = wf_malloc(sizeof(float) * no), *dinp = wf_malloc(sizeof(float) * ni);
    float *dw = wf_malloc(sizeof(float) * nw), *db = wf_malloc(sizeof(float) * s.OC);
    wf_conv2d_forward(out, inp, w, has_bias ? bias : NULL, &s, work);
    wf_conv2d_backward(dinp, dw, db, dout, inp, w, &s, work);
    compare(name, "out", out, want_out, no);
    compare(name, "dinp", dinp, want_dinp, ni);
    compare(name, "dw", dw, want_dw, nw);
    compare(name, "dbias", db, want_db, s.OC);
    float *bufs[] = {inp, w, bias, dout, want_out, want_dinp, want_dw, want_db, work, out, dinp, dw, db};
    for (size_t i = 0; i < WF_ARRAY_LEN(bufs); i++)
        wf_free(bufs[i]);
}

static void run_pool(const char *name, int is_max, uint64_t seed, struct reader *rd, const int *d) {
    struct wf_pool2d_shape s;
    wf_pool2d_shape_init(&s, d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
    int quant = d[7];
    long ni = (long)s.N * s.C * s.H * s.W, no = (long)s.N * s.C * s.OH * s.OW;
    float *inp = wf_malloc(sizeof(float) * ni), *dout = wf_malloc(sizeof(float) * no);
    gen(inp, ni, seed, S_INP, 1.0, quant);
    gen(dout, no, seed, S_DOUT, 1.0, 0);
    float *want_out = read_f32(rd, no);
    int32_t *want_am = is_max ? read_i32(rd, no) : NULL;
    float *want_dinp = read_f32(rd, ni);
    CHECKF(!rd->short_read && rd->left == 0, "%s: reference file size does not match the shape", name);

    float *out = wf_malloc(sizeof(float) * no), *dinp = wf_malloc(sizeof(float) * ni);
    int32_t *am = wf_malloc(sizeof(int32_t) * no);
    if (is_max) {
        wf_maxpool2d_forward(out, am, inp, &s);
        wf_maxpool2d_backward(dinp, dout, am, &s);
        long bad = 0, first = -1;
        for (long i = 0; i < no; i++)
            if (am[i] != want_am[i] && bad++ == 0) first = i;
        CHECKF(bad == 0, "%s: %ld argmax differ, first [%ld]: %d want %d", name, bad, first, am[first], want_am[first]);
    } else {
        wf_avgpool2d_forward(out, inp, &s);
        wf_avgpool2d_backward(dinp, dout, &s);
    }
    compare(name, "out", out, want_out, no);
    compare(name, "dinp", dinp, want_dinp, ni);
    wf_free(inp);
    wf_free(dout);
    wf_free(want_out);
    wf_free(want_am);
    wf_free(want_dinp);
    wf_free(out);
    wf_free(dinp);
    wf_free(am);
}

static const char *backend_name[] = {"auto", "blas", "dnnl"};

/* Runs every case of the manifest; pass 0 runs pooling too. Returns the
 * number of cases. */
static int run_manifest(char *manifest, int pass) {
    int ncases = 0;
    char *save = NULL;
    for (char *line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || line[0] == '\0') continue;
        uint64_t seed = (uint64_t)++ncases;
        char kind[16], name[64];
        int d[10];
        int got = sscanf(line, "%15s %63s %d %d %d %d %d %d %d %d %d %d", kind, name, &d[0], &d[1], &d[2], &d[3], &d[4],
                         &d[5], &d[6], &d[7], &d[8], &d[9]);
        int is_conv = strcmp(kind, "conv") == 0, is_max = strcmp(kind, "maxpool") == 0;
        int want = is_conv ? 12 : 10;
        CHECKF(got == want && (is_conv || is_max || strcmp(kind, "avgpool") == 0), "bad manifest line: %s", line);
        if (got != want || (!is_conv && pass > 0)) continue;
        char rel[128];
        snprintf(rel, sizeof rel, "tests/ref/conv/%s.bin", name);
        char *data = NULL;
        size_t n = 0;
        int rc = wf_read_file(wf_test_src(rel), &data, &n);
        CHECKF(rc == WF_OK, "%s: %s", rel, wf_errmsg());
        if (rc != WF_OK) continue;
        struct reader rd = {(const unsigned char *)data, n, 0};
        char what[96];
        snprintf(what, sizeof what, "%s %s", backend_name[wf_conv_backend_get()], name);
        if (is_conv)
            run_conv(what, seed, &rd, d);
        else
            run_pool(what, is_max, seed, &rd, d);
        wf_free(data);
    }
    return ncases;
}

int main(void) {
    CHECKF(wf_conv_dnnl_available(), "libdnnl.so.2 is not loaded: the dnnl checks would test BLAS");
    int ncases = 0;
    for (int b = WF_CONV_AUTO; b <= WF_CONV_DNNL; b++) {
        char *manifest = NULL;
        size_t len = 0;
        int rc = wf_read_file(wf_test_src("tests/ref/conv/manifest.txt"), &manifest, &len);
        CHECKF(rc == WF_OK, "reading the manifest: %s", wf_errmsg());
        if (rc != WF_OK) return wf_test_done("test_kernels_torch_conv");
        wf_conv_backend_set((enum wf_conv_backend)b);
        ncases = run_manifest(manifest, b - WF_CONV_AUTO);
        wf_free(manifest);
    }
    CHECKF(ncases >= 18, "only %d cases in the manifest", ncases);
    printf("%d cases x 3 backends; worst |err| %.3g; worst |err|/(atol + rtol|want|) %.3g (atol %g rtol %g) at %s\n",
           ncases, worst_abs, worst_ratio, ATOL, RTOL, worst_what);
    return wf_test_done("test_kernels_torch_conv");
}
