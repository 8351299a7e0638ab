/*
 * exec: recurrent units and skip regions (issue 14). Stacked units (lstm,
 * gru, rnn_tanh cells) over sequences with random lengths (0 and T
 * included): every parameter gradient against central finite differences;
 * skipping on against skipping off (every padded step computed, then
 * masked) — the loss, the outputs and every parameter gradient bit for bit
 * — over several seeds, batch sizes and length distributions; the region's
 * counters equal the live (t, sample) pairs exactly.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/model.h"
#include "weft/safetensors.h"
#include "weft/train.h"

#define T 5

static const char *model_stack = "model stack\n"
                                 "input x : f32[B, 5, 3]\n"
                                 "input len : i32[B]\n"
                                 "input y : i32[B]\n"
                                 "proj = linear(x, out=3)\n"
                                 "unit l1(over=proj, length=len) {\n"
                                 "    state s : f32[B, 8]\n"
                                 "    region {\n"
                                 "        s1 = lstm(proj, s, hidden=4)\n"
                                 "        h = slice(s1, axis=1, start=0, len=4)\n"
                                 "    }\n"
                                 "    next s = s1\n"
                                 "    output h\n"
                                 "}\n"
                                 "unit l2(over=l1.h, length=len) {\n"
                                 "    state s : f32[B, 3]\n"
                                 "    region {\n"
                                 "        s1 = gru(l1.h, s, hidden=3)\n"
                                 "        a = tanh(s1)\n"
                                 "    }\n"
                                 "    next s = s1\n"
                                 "    output a\n"
                                 "}\n"
                                 "pool = mean(l1.h, axis=1)\n"
                                 "both = concat(pool, l2.s, axis=1)\n"
                                 "fc = linear(both, out=3)\n"
                                 "loss = cross_entropy(fc, y)\n"
                                 "output loss\n";

/* wider: the BLAS blocks rows and columns at these sizes (hidden 40, batch up to 37) */
static const char *model_wide = "model wide\n"
                                "input x : f32[B, 5, 24]\n"
                                "input len : i32[B]\n"
                                "input y : i32[B]\n"
                                "unit l1(over=x, length=len) {\n"
                                "    state s : f32[B, 80]\n"
                                "    region {\n"
                                "        s1 = lstm(x, s, hidden=40)\n"
                                "        h = slice(s1, axis=1, start=0, len=40)\n"
                                "    }\n"
                                "    next s = s1\n"
                                "    output h\n"
                                "}\n"
                                "unit l2(over=l1.h, length=len) {\n"
                                "    state s : f32[B, 48]\n"
                                "    region {\n"
                                "        s1 = gru(l1.h, s, hidden=48)\n"
                                "    }\n"
                                "    next s = s1\n"
                                "}\n"
                                "fc = linear(l2.s, out=3)\n"
                                "loss = cross_entropy(fc, y)\n"
                                "output loss\n";

/* rnn_tanh under a mask (when=), a state from a tensor, a layer after the region reading its value */
static const char *model_rnn = "model rnn\n"
                               "input x : f32[B, 5, 2]\n"
                               "input m : i32[B, 5]\n"
                               "input y : i32[B]\n"
                               "input h0in : f32[B, 3]\n"
                               "h0 = linear(h0in, out=3)\n"
                               "unit r(over=x, when=m) {\n"
                               "    state s : f32[B, 3] from=h0\n"
                               "    region {\n"
                               "        s1 = rnn_tanh(x, s, hidden=3)\n"
                               "    }\n"
                               "    o = mul(s1, 2)\n"
                               "    next s = s1\n"
                               "    output o\n"
                               "}\n"
                               "pool = mean(r.o, axis=1)\n"
                               "fc = linear(pool, out=3)\n"
                               "loss = cross_entropy(fc, y)\n"
                               "output loss\n";

static int len_mode; /* 0 random in [0, T], 1 all T, 2 all 0, 3 sorted descending */

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
            int is_len = !strcmp(g->v[i].name, "len");
            for (int64_t k = 0; k < g->v[i].numel; k++) {
                if (!is_len)
                    p[k] = (int32_t)wf_rng_below(&r, 3);
                else if (len_mode == 1)
                    p[k] = T;
                else if (len_mode == 2)
                    p[k] = 0;
                else if (len_mode == 3)
                    p[k] = (int32_t)(T - (k * (T + 1)) / g->v[i].numel);
                else
                    p[k] = (int32_t)wf_rng_below(&r, T + 1);
            }
        }
    }
}

static double loss_of(struct wf_exec *e, uint64_t seed) {
    fill_inputs(e, seed);
    CHECK(wf_exec_forward(e) == WF_OK);
    return (double)*(float *)wf_exec_ptr(e, e->prog.g.loss);
}

struct rig {
    struct wf_model m;
    struct wf_exec e;
    float *params, *grads;
    int64_t np;
};

static int rig_open(struct rig *r, const char *text, int batch, uint64_t pseed) {
    memset(r, 0, sizeof *r);
    int rc = wf_model_parse(&r->m, "unit.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return rc;
    struct wf_program probe;
    rc = wf_program_compile(&probe, &r->m, batch, 1);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return rc;
    r->np = probe.n_param_floats;
    wf_program_free(&probe);
    r->params = wf_aalloc(sizeof(float) * (size_t)r->np);
    r->grads = wf_aalloc(sizeof(float) * (size_t)r->np);
    rc = wf_exec_init(&r->e, &r->m, batch, 1, r->params, r->grads);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return rc;
    const struct wf_graph *g = &r->e.prog.g;
    for (int p = 0; p < g->n_params; p++)
        wf_init_param(&g->v[g->params[p]], r->params + r->e.prog.offset[g->params[p]], pseed);
    CHECK(wf_exec_seed(&r->e, 1.0f) == WF_OK);
    return WF_OK;
}

static void rig_close(struct rig *r) {
    wf_exec_free(&r->e);
    wf_afree(r->params);
    wf_afree(r->grads);
    wf_model_free(&r->m);
}

static void check_fd(const char *text, int batch, int mode) {
    len_mode = mode;
    struct rig r;
    if (rig_open(&r, text, batch, 5) < 0) return;
    loss_of(&r.e, 11);
    CHECK(wf_exec_backward(&r.e) == WF_OK);
    const struct wf_graph *g = &r.e.prog.g;
    double worst = 0;
    for (int p = 0; p < g->n_params; p++) {
        const struct wf_value *v = &g->v[g->params[p]];
        int64_t off = r.e.prog.offset[g->params[p]];
        int64_t stride = v->numel > 12 ? v->numel / 12 : 1;
        for (int64_t k = 0; k < v->numel; k += stride) {
            float *w = r.params + off + k, save = *w;
            const float h = 2e-3f;
            *w = save + h;
            double lp = loss_of(&r.e, 11);
            *w = save - h;
            double lm = loss_of(&r.e, 11);
            *w = save;
            double fd = (lp - lm) / (2.0 * h), an = r.grads[off + k];
            double err = fabs(fd - an) / fmax(1e-2, fabs(fd) + fabs(an));
            if (err > worst) worst = err;
            CHECKF(err < 3e-2, "B=%d lengths %d: d loss / d %s[%lld]: analytic %.6g, finite difference %.6g", batch,
                   mode, v->name, (long long)k, an, fd);
        }
    }
    printf("finite differences, B=%d, lengths %d: worst relative error %.2e\n", batch, mode, worst);
    rig_close(&r);
}

/* skipping on and off: the same bits */
static void check_exact(const char *text, int batch, int mode, uint64_t seed) {
    len_mode = mode;
    struct rig a, b;
    if (rig_open(&a, text, batch, seed) < 0) return;
    if (rig_open(&b, text, batch, seed) < 0) {
        rig_close(&a);
        return;
    }
    b.e.no_skip = 1;
    double la = loss_of(&a.e, seed + 1), lb = loss_of(&b.e, seed + 1);
    const struct wf_graph *g = &a.e.prog.g;
    for (int v = 0; v < g->nv; v++) { /* the units' outputs */
        if (g->v[v].producer < 0 || strcmp(wf_op_get(g->n[g->v[v].producer].op)->name, "unit")) continue;
        if (g->v[v].producer >= g->n_fwd) continue;
        CHECKF(!memcmp(wf_exec_ptr(&a.e, v), wf_exec_ptr(&b.e, v), sizeof(float) * (size_t)g->v[v].numel),
               "B=%d lengths %d seed %llu: output %s differs with skipping off", batch, mode, (unsigned long long)seed,
               g->v[v].name);
    }
    CHECK(wf_exec_backward(&a.e) == WF_OK);
    CHECK(wf_exec_backward(&b.e) == WF_OK);
    uint32_t ba, bb;
    float fa = (float)la, fb = (float)lb;
    memcpy(&ba, &fa, 4);
    memcpy(&bb, &fb, 4);
    CHECKF(ba == bb, "B=%d lengths %d: loss %.9g vs %.9g", batch, mode, la, lb);
    for (int p = 0; p < g->n_params; p++) {
        const struct wf_value *v = &g->v[g->params[p]];
        int64_t off = a.e.prog.offset[g->params[p]];
        CHECKF(!memcmp(a.grads + off, b.grads + off, sizeof(float) * (size_t)v->numel),
               "B=%d lengths %d seed %llu: gradient of %s differs with skipping off", batch, mode,
               (unsigned long long)seed, v->name);
    }
    /* counters: computed pairs = live pairs = the sum of min(length, T) */
    const int32_t *len = NULL, *mask = NULL;
    for (int v = 0; v < g->nv; v++) {
        if (!strcmp(g->v[v].name, "len")) len = wf_exec_ptr(&a.e, v);
        if (!strcmp(g->v[v].name, "m")) mask = wf_exec_ptr(&a.e, v);
    }
    uint64_t want = 0;
    for (int i = 0; len && i < batch; i++)
        want += (uint64_t)(len[i] < T ? len[i] : T);
    for (int i = 0; mask && i < batch * T; i++)
        want += mask[i] != 0;
    struct wf_unit_counts ca[4], cb[4];
    int nu = wf_exec_unit_counts(&a.e, ca, 4);
    CHECK(wf_exec_unit_counts(&b.e, cb, 4) == nu);
    for (int u = 0; u < nu; u++) {
        CHECKF(ca[u].live == want && ca[u].computed == want && ca[u].total == (uint64_t)batch * T,
               "unit %s: live %llu, computed %llu, total %llu; %llu live pairs", ca[u].name,
               (unsigned long long)ca[u].live, (unsigned long long)ca[u].computed, (unsigned long long)ca[u].total,
               (unsigned long long)want);
        CHECK(cb[u].live == want && cb[u].computed == (uint64_t)batch * T);
    }
    rig_close(&a);
    rig_close(&b);
}

/* an evaluation executor (one arena for all steps) gives the training executor's loss */
static void check_eval(const char *text, int batch) {
    len_mode = 0;
    struct rig a;
    if (rig_open(&a, text, batch, 9) < 0) return;
    struct wf_exec ev;
    int rc = wf_exec_init(&ev, &a.m, batch, 0, a.params, NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        double lt = loss_of(&a.e, 21), le = loss_of(&ev, 21);
        CHECKF(lt == le, "B=%d: evaluation loss %.9g, training forward %.9g", batch, le, lt);
        wf_exec_free(&ev);
    }
    rig_close(&a);
}

int main(void) {
    check_eval(model_stack, 5);
    check_eval(model_rnn, 3);
    check_fd(model_stack, 4, 0);
    check_fd(model_stack, 3, 1);
    check_fd(model_rnn, 4, 0);
    int batches[] = {1, 3, 8, 17};
    for (int bi = 0; bi < 4; bi++)
        for (int mode = 0; mode < 4; mode++)
            for (uint64_t seed = 1; seed <= 3; seed++)
                check_exact(model_stack, batches[bi], mode, seed);
    for (int bi = 0; bi < 4; bi++)
        for (uint64_t seed = 1; seed <= 3; seed++)
            check_exact(model_rnn, batches[bi], 0, seed);
    int wide[] = {9, 16, 37};
    for (int bi = 0; bi < 3; bi++)
        for (int mode = 0; mode < 4; mode += 3)
            check_exact(model_wide, wide[bi], mode, 5);
    return wf_test_done("test_unit");
}
