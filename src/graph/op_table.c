/*
 * graph layer: the op table — the built-in ops (declared in ops_*.c, one
 * wf_op_def each, tied to enum wf_op here) and the ops registered at run
 * time (custom operators).
 */
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/graph.h"
#include "weft/lex.h"
#include "weft/safetensors.h"

#include "ops_int.h"

static const struct wf_op_def *const builtin[] = {
    [WF_OP_LINEAR] = &wf_opdef_linear,
    [WF_OP_MATMUL] = &wf_opdef_matmul,
    [WF_OP_ADD] = &wf_opdef_add,
    [WF_OP_MUL] = &wf_opdef_mul,
    [WF_OP_RELU] = &wf_opdef_relu,
    [WF_OP_GELU] = &wf_opdef_gelu,
    [WF_OP_TANH] = &wf_opdef_tanh,
    [WF_OP_SIGMOID] = &wf_opdef_sigmoid,
    [WF_OP_SOFTMAX] = &wf_opdef_softmax,
    [WF_OP_LOG_SOFTMAX] = &wf_opdef_log_softmax,
    [WF_OP_CROSS_ENTROPY] = &wf_opdef_cross_entropy,
    [WF_OP_CONV2D] = &wf_opdef_conv2d,
    [WF_OP_MAXPOOL2D] = &wf_opdef_maxpool2d,
    [WF_OP_AVGPOOL2D] = &wf_opdef_avgpool2d,
    [WF_OP_RESHAPE] = &wf_opdef_reshape,
    [WF_OP_FLATTEN] = &wf_opdef_flatten,
    [WF_OP_TRANSPOSE] = &wf_opdef_transpose,
    [WF_OP_LAYERNORM] = &wf_opdef_layernorm,
    [WF_OP_DROPOUT] = &wf_opdef_dropout,
    [WF_OP_EMBEDDING] = &wf_opdef_embedding,
    [WF_OP_CONCAT] = &wf_opdef_concat,
    [WF_OP_SLICE] = &wf_opdef_slice,
    [WF_OP_SUM] = &wf_opdef_sum,
    [WF_OP_MEAN] = &wf_opdef_mean,
    [WF_OP_MSE] = &wf_opdef_mse,
    [WF_OP_BCE_LOGITS] = &wf_opdef_bce_logits,
    [WF_OP_ACCURACY] = &wf_opdef_accuracy,
    [WF_OP_RNN_TANH] = &wf_opdef_rnn_tanh,
    [WF_OP_GRU] = &wf_opdef_gru,
    [WF_OP_LSTM] = &wf_opdef_lstm,
    [WF_OP_UNIT] = &wf_opdef_unit,
    [WF_OP_REGION_IN] = &wf_opdef_region_in,
    [WF_OP_REGION_OUT] = &wf_opdef_region_out,
    [WF_OP_ACCUM] = &wf_opdef_accum,
};
_Static_assert(WF_ARRAY_LEN(builtin) == WF_OP_COUNT, "op table out of step with enum wf_op");

int wf_ops_accum_id(void) { return WF_OP_ACCUM; }
int wf_ops_unit_id(void) { return WF_OP_UNIT; }

int wf_ops_find_any(const char *name) {
    for (int i = 0; i < wf_op_count(); i++) {
        const struct wf_op_def *d = wf_op_get(i);
        if (d && !strcmp(d->name, name)) return i;
    }
    return -1;
}

#define MAX_REGISTERED 256
static const struct wf_op_def *registered[MAX_REGISTERED];
static int n_registered;

int wf_op_count(void) { return WF_OP_COUNT + n_registered; }

const struct wf_op_def *wf_op_get(int op) {
    if (op >= 0 && op < WF_OP_COUNT) return builtin[op];
    if (op >= WF_OP_COUNT && op < WF_OP_COUNT + n_registered) return registered[op - WF_OP_COUNT];
    return NULL;
}

int wf_op_find(const char *name) {
    for (int i = 0; i < wf_op_count(); i++) {
        const struct wf_op_def *d = wf_op_get(i);
        if (d && !(d->flags & WF_OPF_INTERNAL) && !strcmp(d->name, name)) return i;
    }
    return -1;
}

void wf_op_names(char *buf, size_t cap) {
    size_t k = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < wf_op_count() && k < cap; i++) {
        const struct wf_op_def *d = wf_op_get(i);
        if (!d || (d->flags & WF_OPF_INTERNAL)) continue;
        int w = snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", d->name);
        if (w < 0) break;
        k += (size_t)w;
    }
}

int wf_op_register(const struct wf_op_def *def) {
    if (!def || !def->name || !wf_lex_is_ident(def->name))
        return wf_error(WF_ERR_INVALID, "op registration: the op needs a name that is an identifier");
    if (!def->infer || !def->forward)
        return wf_error(WF_ERR_INVALID, "op registration: op '%s' needs infer and forward functions", def->name);
    if (def->min_in < 0 || def->max_in < def->min_in || def->max_in > WF_MAX_IO || def->n_attr < 0 ||
        def->n_attr > WF_MAX_ATTRS)
        return wf_error(WF_ERR_INVALID, "op registration: op '%s' has bad argument or attribute counts", def->name);
    for (int k = 0; k < def->n_attr; k++) {
        const struct wf_attr_spec *a = &def->attr[k];
        if (!a->name || !wf_lex_is_ident(a->name) || a->type < WF_AT_INT || a->type > WF_AT_SHAPE)
            return wf_error(WF_ERR_INVALID, "op registration: attribute %d of op '%s' needs a name and a type", k + 1,
                            def->name);
    }
    for (int i = 0; i < 4; i++) {
        const struct wf_arg_spec *a = &def->arg[i];
        if ((a->dtypes & ~(WF_DT(WF_F32) | WF_DT(WF_I32))) || a->min_rank < 0 || a->max_rank < 0 ||
            a->max_rank > WF_MAX_DIMS || (a->max_rank && a->min_rank > a->max_rank))
            return wf_error(WF_ERR_INVALID, "op registration: op '%s' has a bad argument spec %d", def->name, i + 1);
    }
    for (int i = 0; i < wf_op_count(); i++) /* internal ops too: names are unique */
        if (wf_op_get(i) && !strcmp(wf_op_get(i)->name, def->name))
            return wf_error(WF_ERR_INVALID, "op registration: an op named '%s' exists already", def->name);
    if (wf_op_find(def->name) >= 0)
        return wf_error(WF_ERR_INVALID, "op registration: an op named '%s' exists already", def->name);
    if (n_registered >= MAX_REGISTERED)
        return wf_error(WF_ERR_INVALID, "op registration: at most %d ops can be registered", MAX_REGISTERED);
    registered[n_registered++] = def;
    return WF_OP_COUNT + n_registered - 1;
}
