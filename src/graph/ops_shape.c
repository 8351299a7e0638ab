/*
 * graph layer, op table: ops that move or reduce data — reshape, flatten,
 * transpose, concat, slice, sum, mean — and autodiff's accum.
 */
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define F32 WF_DT(WF_F32)

/* ---- reshape, flatten: views of their input ---- */

static int view_out(struct wf_infer *c, int nd, const int64_t *sh) {
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, nd, sh);
    if (rc < 0) return rc;
    c->g->v[rc].alias = c->g->n[c->node].in[0];
    return WF_OK;
}

static int reshape_infer(struct wf_infer *c) {
    const struct wf_node *n = &c->g->n[c->node];
    int64_t p = 1;
    char s1[96];
    for (int i = 0; i < n->sn; i++)
        if (__builtin_mul_overflow(p, n->sattr[i], &p)) p = -1;
    if (p != c->in[0].numel)
        return wf_infer_err(c, "cannot reshape %s (%lld elements) to %s%lld elements", wf_infer_shape(c, 0, s1),
                            (long long)c->in[0].numel, p < 0 ? "more than " : "", (long long)(p < 0 ? INT64_MAX : p));
    int64_t sh[WF_MAX_DIMS];
    memcpy(sh, n->sattr, sizeof sh);
    return view_out(c, n->sn, sh);
}

static int flatten_infer(struct wf_infer *c) {
    int64_t sh[2] = {c->in[0].shape[0], c->in[0].numel / c->in[0].shape[0]};
    return view_out(c, 2, sh);
}

static int view_fwd(const struct wf_run *r) {
    float *out = OUT(r, 0), *in = IN(r, 0);
    if (out != in) memcpy(out, in, sizeof(float) * (size_t)XV(r, 0)->numel);
    return WF_OK;
}

static int view_bwd(const struct wf_run *r) {
    float *dx = DIN(r, 0), *dout = DOUT(r);
    if (dx && dx != dout) memcpy(dx, dout, sizeof(float) * (size_t)XV(r, 0)->numel);
    return WF_OK;
}

const struct wf_op_def wf_opdef_reshape = {
    .name = "reshape",
    .min_in = 1,
    .max_in = 1,
    .n_attr = 1,
    .attr = {{"shape", WF_AT_SHAPE, 1, 0}},
    .flags = WF_OPF_VIEW,
    .infer = reshape_infer,
    .forward = view_fwd,
    .backward = view_bwd,
};

const struct wf_op_def wf_opdef_flatten = {
    .name = "flatten",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 2, 0}},
    .flags = WF_OPF_VIEW | WF_OPF_ROWWISE,
    .infer = flatten_infer,
    .forward = view_fwd,
    .backward = view_bwd,
};

/* ---- transpose of two dimensions ---- */

static int transpose_infer(struct wf_infer *c) {
    struct wf_node *n = &c->g->n[c->node];
    const struct wf_value *x = &c->in[0];
    char s1[96];
    int a0 = wf_ops_axis(n->ai[0], x->ndim), a1 = wf_ops_axis(n->ai[1], x->ndim);
    if (a0 < 0 || a1 < 0)
        return wf_infer_err(c, "dims %lld, %lld out of range for %s", (long long)n->ai[0], (long long)n->ai[1],
                            wf_infer_shape(c, 0, s1));
    if (a0 == a1)
        return wf_infer_err(c, "dim0 and dim1 are the same dimension (%d) of %s", a0, wf_infer_shape(c, 0, s1));
    n->ai[0] = WF_MIN(a0, a1);
    n->ai[1] = WF_MAX(a0, a1);
    int64_t sh[WF_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[a0] = x->shape[a1];
    sh[a1] = x->shape[a0];
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, x->ndim, sh);
    return rc < 0 ? rc : WF_OK;
}

static void transpose_dims(const struct wf_value *x, int a0, int a1, long d[5]) {
    long A = 1, M = 1, Z = 1;
    for (int i = 0; i < a0; i++)
        A *= (long)x->shape[i];
    for (int i = a0 + 1; i < a1; i++)
        M *= (long)x->shape[i];
    for (int i = a1 + 1; i < x->ndim; i++)
        Z *= (long)x->shape[i];
    d[0] = A;
    d[1] = (long)x->shape[a0];
    d[2] = M;
    d[3] = (long)x->shape[a1];
    d[4] = Z;
}

static int transpose_fwd(const struct wf_run *r) {
    long d[5];
    transpose_dims(XV(r, 0), (int)r->n->ai[0], (int)r->n->ai[1], d);
    wf_transpose_forward(OUT(r, 0), IN(r, 0), d[0], d[1], d[2], d[3], d[4]);
    return WF_OK;
}

static int transpose_bwd(const struct wf_run *r) {
    long d[5];
    transpose_dims(XV(r, 0), (int)r->n->ai[0], (int)r->n->ai[1], d);
    wf_transpose_forward(DIN(r, 0), DOUT(r), d[0], d[3], d[2], d[1], d[4]);
    return WF_OK;
}

const struct wf_op_def wf_opdef_transpose = {
    .name = "transpose",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 2, 0}},
    .n_attr = 2,
    .attr = {{"dim0", WF_AT_INT, 1, 0}, {"dim1", WF_AT_INT, 1, 0}},
    .infer = transpose_infer,
    .forward = transpose_fwd,
    .backward = transpose_bwd,
};

/* ---- concat along an axis ---- */

static int concat_infer(struct wf_infer *c) {
    struct wf_node *n = &c->g->n[c->node];
    const struct wf_value *x = &c->in[0];
    char s1[96], s2[96];
    int nd = x->ndim, a = wf_ops_axis(n->ai[0], nd);
    if (a < 0) return wf_infer_err(c, "axis %lld out of range", (long long)n->ai[0]);
    n->ai[0] = a;
    int64_t sh[WF_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[a] = 0;
    for (int i = 0; i < c->n_in; i++) {
        const struct wf_value *y = &c->in[i];
        int ok = y->ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = d == a || y->shape[d] == x->shape[d];
        if (!ok)
            return wf_infer_err(c, "argument %d %s does not match %s outside axis %d", i + 1, wf_infer_shape(c, i, s1),
                                wf_infer_shape(c, 0, s2), a);
        sh[a] += y->shape[a]; /* at most WF_MAX_IO dims below 2^31 each */
    }
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, nd, sh);
    return rc < 0 ? rc : WF_OK;
}

static int concat_fwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    const float *ins[WF_MAX_IO];
    int dims[WF_MAX_IO], dim;
    long outer, inner;
    for (int i = 0; i < n->n_in; i++) {
        ins[i] = IN(r, i);
        wf_ops_split_axis(XV(r, i), (int)n->ai[0], &outer, &dims[i], &inner);
    }
    wf_ops_split_axis(YV(r, 0), (int)n->ai[0], &outer, &dim, &inner);
    wf_concat_forward(OUT(r, 0), ins, dims, n->n_in, outer, inner);
    return WF_OK;
}

static int concat_bwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    float *dins[WF_MAX_IO];
    int dims[WF_MAX_IO], dim;
    long outer, inner;
    for (int i = 0; i < n->n_in; i++) {
        dins[i] = DIN(r, i);
        wf_ops_split_axis(XV(r, i), (int)n->ai[0], &outer, &dims[i], &inner);
    }
    wf_ops_split_axis(YV(r, 0), (int)n->ai[0], &outer, &dim, &inner);
    wf_concat_backward(dins, DOUT(r), dims, n->n_in, outer, inner);
    return WF_OK;
}

const struct wf_op_def wf_opdef_concat = {
    .name = "concat",
    .min_in = 2,
    .max_in = 8,
    .arg = {{F32, 1, 0}, {F32, 1, 0}, {F32, 1, 0}, {F32, 1, 0}},
    .n_attr = 1,
    .attr = {{"axis", WF_AT_INT, 1, 0}},
    .flags = WF_OPF_ROWWISE, /* along an axis other than 0 (checked where a region is built) */
    .infer = concat_infer,
    .forward = concat_fwd,
    .backward = concat_bwd,
};

/* ---- slice [start, start + len) of an axis ---- */

static int slice_infer(struct wf_infer *c) {
    struct wf_node *n = &c->g->n[c->node];
    const struct wf_value *x = &c->in[0];
    char s1[96];
    int a = wf_ops_axis(n->ai[0], x->ndim);
    if (a < 0) return wf_infer_err(c, "axis %lld out of range", (long long)n->ai[0]);
    n->ai[0] = a;
    int64_t start = n->ai[1], len = n->ai[2]; /* |attributes| < 2^31: the sum cannot overflow */
    if (len <= 0) return wf_infer_err(c, "len must be positive, got %lld", (long long)len);
    if (start < 0 || start > x->shape[a] || len > x->shape[a] - start)
        return wf_infer_err(c, "slice [%lld, %lld) outside axis %d of %s", (long long)start, (long long)(start + len),
                            a, wf_infer_shape(c, 0, s1));
    int64_t sh[WF_MAX_DIMS];
    memcpy(sh, x->shape, sizeof sh);
    sh[a] = len;
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, x->ndim, sh);
    return rc < 0 ? rc : WF_OK;
}

static int slice_fwd(const struct wf_run *r) {
    long outer, inner;
    int dim;
    wf_ops_split_axis(XV(r, 0), (int)r->n->ai[0], &outer, &dim, &inner);
    wf_slice_forward(OUT(r, 0), IN(r, 0), outer, dim, inner, (int)r->n->ai[1], (int)r->n->ai[2]);
    return WF_OK;
}

static int slice_bwd(const struct wf_run *r) {
    long outer, inner;
    int dim;
    wf_ops_split_axis(XV(r, 0), (int)r->n->ai[0], &outer, &dim, &inner);
    wf_slice_backward(DIN(r, 0), DOUT(r), outer, dim, inner, (int)r->n->ai[1], (int)r->n->ai[2]);
    return WF_OK;
}

const struct wf_op_def wf_opdef_slice = {
    .name = "slice",
    .min_in = 1,
    .max_in = 1,
    .arg = {{F32, 1, 0}},
    .n_attr = 3,
    .attr = {{"axis", WF_AT_INT, 1, 0}, {"start", WF_AT_INT, 1, 0}, {"len", WF_AT_INT, 1, 0}},
    .flags = WF_OPF_ROWWISE, /* along an axis other than 0 (checked where a region is built) */
    .infer = slice_infer,
    .forward = slice_fwd,
    .backward = slice_bwd,
};

/* ---- sum, mean: over everything (a scalar), or over one axis ---- */

static int reduce_infer(struct wf_infer *c) {
    struct wf_node *n = &c->g->n[c->node];
    const struct wf_value *x = &c->in[0];
    int64_t sh[WF_MAX_DIMS];
    int nd = x->ndim;
    memcpy(sh, x->shape, sizeof sh);
    if (n->ai[0] == WF_ATTR_UNSET) {
        nd = 0;
    } else {
        int a = wf_ops_axis(n->ai[0], nd);
        if (a < 0) return wf_infer_err(c, "axis %lld out of range", (long long)n->ai[0]);
        n->ai[0] = a;
        for (int d = a; d < nd - 1; d++)
            sh[d] = sh[d + 1];
        nd--;
    }
    int rc = wf_infer_out(c, NULL, WF_V_ACT, WF_F32, nd, sh);
    if (rc < 0) return rc;
    c->g->n[c->node].flops = (double)x->numel;
    return WF_OK;
}

static void reduce_dims(const struct wf_run *r, long *outer, int *dim, long *inner) {
    *outer = *inner = 1;
    *dim = (int)XV(r, 0)->numel;
    if (r->n->ai[0] != WF_ATTR_UNSET) wf_ops_split_axis(XV(r, 0), (int)r->n->ai[0], outer, dim, inner);
}

static int sum_fwd(const struct wf_run *r) {
    long o, i;
    int d;
    reduce_dims(r, &o, &d, &i);
    wf_sum_forward(OUT(r, 0), IN(r, 0), o, d, i);
    return WF_OK;
}
static int sum_bwd(const struct wf_run *r) {
    long o, i;
    int d;
    reduce_dims(r, &o, &d, &i);
    wf_sum_backward(DIN(r, 0), DOUT(r), o, d, i);
    return WF_OK;
}
static int mean_fwd(const struct wf_run *r) {
    long o, i;
    int d;
    reduce_dims(r, &o, &d, &i);
    wf_mean_forward(OUT(r, 0), IN(r, 0), o, d, i);
    return WF_OK;
}
static int mean_bwd(const struct wf_run *r) {
    long o, i;
    int d;
    reduce_dims(r, &o, &d, &i);
    wf_mean_backward(DIN(r, 0), DOUT(r), o, d, i);
    return WF_OK;
}

const struct wf_op_def wf_opdef_sum = {
    .name = "sum",
    .min_in = 1,
    .max_in = 1,
    .n_attr = 1,
    .attr = {{"axis", WF_AT_INT, 0, WF_ATTR_UNSET}},
    .infer = reduce_infer,
    .forward = sum_fwd,
    .backward = sum_bwd,
};

const struct wf_op_def wf_opdef_mean = {
    .name = "mean",
    .min_in = 1,
    .max_in = 1,
    .n_attr = 1,
    .attr = {{"axis", WF_AT_INT, 0, WF_ATTR_UNSET}},
    .infer = reduce_infer,
    .forward = mean_fwd,
    .backward = mean_bwd,
};

/* ---- accum (made by autodiff): out = the sum of its inputs, in order ---- */

static int accum_infer(struct wf_infer *c) { return wf_infer_err(c, "accum cannot appear in a model file"); }

static int accum_fwd(const struct wf_run *r) {
    const struct wf_node *n = r->n;
    float *out = OUT(r, 0);
    long numel = (long)YV(r, 0)->numel;
    wf_add_forward(out, IN(r, 0), IN(r, 1), numel, numel);
    for (int i = 2; i < n->n_in; i++)
        wf_add_forward(out, out, IN(r, i), numel, numel);
    return WF_OK;
}

const struct wf_op_def wf_opdef_accum = {
    .name = "accum",
    .min_in = 1,
    .max_in = WF_MAX_IO,
    .flags = WF_OPF_INTERNAL | WF_OPF_ROWWISE,
    .infer = accum_infer,
    .forward = accum_fwd,
};
