/*
 * graph layer, op table: recurrent units and their skip regions
 * (docs/recurrent.md).
 *
 * `unit` is the outer node of a `unit` block: the executor runs its body
 * graph once per time step (wf_run.unit, exec layer). Inside a body, a skip
 * region starts with a `region_in` per value it reads from outside (the
 * start node: it packs the rows of the samples whose condition holds, so
 * the region's nodes work on those rows only) and ends with a `region_out`
 * per value read after it (the end node: each sample's row comes back from
 * the packed rows, or is the bypass value: the state unchanged, or 0). The
 * rows of the step come from the executor (wf_run.step). None of the three
 * can be written in a model file.
 */
#include <string.h>

#include "weft/core.h"
#include "weft/graph.h"
#include "weft/safetensors.h"

#include "ops_int.h"

#define ANY (WF_DT(WF_F32) | WF_DT(WF_I32))

/* ---- unit: built from a `unit` block (unit.c), run by the executor ---- */

static int unit_infer(struct wf_infer *c) {
    return wf_infer_err(c, "a unit is written as a `unit NAME(...) { }` block");
}

static int unit_fwd(const struct wf_run *r) {
    if (!r->unit) return wf_error(WF_ERR_INTERNAL, "unit '%s': this executor does not run units", r->n->name);
    return r->unit(r, 0);
}

static int unit_bwd(const struct wf_run *r) {
    if (!r->unit) return wf_error(WF_ERR_INTERNAL, "unit '%s': this executor does not run units", r->n->name);
    return r->unit(r, 1);
}

const struct wf_op_def wf_opdef_unit = {
    .name = "unit",
    .min_in = 1,
    .max_in = WF_MAX_IO,
    .arg = {{ANY, 0, 0}, {ANY, 0, 0}, {ANY, 0, 0}, {ANY, 0, 0}},
    .flags = WF_OPF_INTERNAL | WF_OPF_MULTI | WF_OPF_GEMM,
    .bwd_in = 0xFFFFu, /* the lengths, the mask and the parameters; the sequence and states: in the unit's steps */
    .infer = unit_infer,
    .forward = unit_fwd,
    .backward = unit_bwd,
};

/* ---- region_in, region_out: a skip region's start and end nodes ---- */

static long row_width(const struct wf_value *v) { return v->ndim ? (long)(v->numel / v->shape[0]) : 1; }

static int region_in_infer(struct wf_infer *c) { return wf_ops_same_shape(c, 0); }

static int region_in_fwd(const struct wf_run *r) {
    const float *x = IN(r, 0);
    float *y = OUT(r, 0);
    long w = row_width(XV(r, 0));
    const struct wf_step_rows *s = r->step;
    if (!s) {
        memcpy(y, x, sizeof(float) * (size_t)XV(r, 0)->numel);
        return WF_OK;
    }
    for (int k = 0; k < s->n; k++)
        memcpy(y + (size_t)k * (size_t)w, x + (size_t)s->rows[k] * (size_t)w, sizeof(float) * (size_t)w);
    return WF_OK;
}

static int region_in_bwd(const struct wf_run *r) {
    float *dx = DIN(r, 0);
    const float *dy = DOUT(r);
    if (!dx) return WF_OK;
    long w = row_width(XV(r, 0));
    const struct wf_step_rows *s = r->step;
    if (!s) {
        memcpy(dx, dy, sizeof(float) * (size_t)XV(r, 0)->numel);
        return WF_OK;
    }
    for (int b = 0; b < s->batch; b++) /* a sample not computed took nothing from x */
        if (s->pos[b] >= 0)
            memcpy(dx + (size_t)b * (size_t)w, dy + (size_t)s->pos[b] * (size_t)w, sizeof(float) * (size_t)w);
        else
            memset(dx + (size_t)b * (size_t)w, 0, sizeof(float) * (size_t)w);
    return WF_OK;
}

const struct wf_op_def wf_opdef_region_in = {
    .name = "region_in",
    .min_in = 1,
    .max_in = 1,
    .arg = {{WF_DT(WF_F32), 1, 0}},
    .flags = WF_OPF_INTERNAL,
    .infer = region_in_infer,
    .forward = region_in_fwd,
    .backward = region_in_bwd,
};

static int region_out_infer(struct wf_infer *c) {
    if (c->n_in == 2) {
        const struct wf_value *y = &c->in[0], *p = &c->in[1];
        char s1[96], s2[96];
        if (y->ndim != p->ndim || memcmp(y->shape, p->shape, sizeof(int64_t) * (size_t)y->ndim))
            return wf_infer_err(c, "the value %s and the state it replaces %s differ in shape",
                                wf_infer_shape(c, 0, s1), wf_infer_shape(c, 1, s2));
    }
    return wf_ops_same_shape(c, 0);
}

static int region_out_fwd(const struct wf_run *r) {
    const float *y = IN(r, 0), *bypass = r->n->n_in > 1 ? IN(r, 1) : NULL;
    float *out = OUT(r, 0);
    long w = row_width(YV(r, 0));
    const struct wf_step_rows *s = r->step;
    if (!s) {
        memcpy(out, y, sizeof(float) * (size_t)YV(r, 0)->numel);
        return WF_OK;
    }
    for (int b = 0; b < s->batch; b++) {
        float *o = out + (size_t)b * (size_t)w;
        if (s->keep[b])
            memcpy(o, y + (size_t)s->pos[b] * (size_t)w, sizeof(float) * (size_t)w);
        else if (bypass)
            memcpy(o, bypass + (size_t)b * (size_t)w, sizeof(float) * (size_t)w);
        else
            memset(o, 0, sizeof(float) * (size_t)w);
    }
    return WF_OK;
}

static int region_out_bwd(const struct wf_run *r) {
    const float *dout = DOUT(r);
    float *dy = DIN(r, 0), *dbypass = r->b->n_out > 1 ? DIN(r, 1) : NULL;
    long w = row_width(YV(r, 0));
    const struct wf_step_rows *s = r->step;
    if (!s) {
        if (dy) memcpy(dy, dout, sizeof(float) * (size_t)YV(r, 0)->numel);
        if (dbypass) memset(dbypass, 0, sizeof(float) * (size_t)YV(r, 0)->numel);
        return WF_OK;
    }
    for (int k = 0; dy && k < s->n; k++) { /* a computed row whose result was not kept got no gradient */
        int b = s->rows[k];
        if (s->keep[b])
            memcpy(dy + (size_t)k * (size_t)w, dout + (size_t)b * (size_t)w, sizeof(float) * (size_t)w);
        else
            memset(dy + (size_t)k * (size_t)w, 0, sizeof(float) * (size_t)w);
    }
    for (int b = 0; dbypass && b < s->batch; b++) {
        if (s->keep[b])
            memset(dbypass + (size_t)b * (size_t)w, 0, sizeof(float) * (size_t)w);
        else
            memcpy(dbypass + (size_t)b * (size_t)w, dout + (size_t)b * (size_t)w, sizeof(float) * (size_t)w);
    }
    return WF_OK;
}

const struct wf_op_def wf_opdef_region_out = {
    .name = "region_out",
    .min_in = 1,
    .max_in = 2,
    .arg = {{WF_DT(WF_F32), 1, 0}, {WF_DT(WF_F32), 1, 0}},
    .flags = WF_OPF_INTERNAL,
    .infer = region_out_infer,
    .forward = region_out_fwd,
    .backward = region_out_bwd,
};
