/* graph layer, private: the built-in op definitions (ops_*.c) and what they share. */
#ifndef WEFT_OPS_INT_H
#define WEFT_OPS_INT_H

#include <stdint.h>

#include "weft/graph.h"

extern const struct wf_op_def wf_opdef_linear, wf_opdef_matmul, wf_opdef_add, wf_opdef_mul, wf_opdef_relu,
    wf_opdef_gelu, wf_opdef_tanh, wf_opdef_sigmoid, wf_opdef_softmax, wf_opdef_log_softmax, wf_opdef_cross_entropy,
    wf_opdef_conv2d, wf_opdef_maxpool2d, wf_opdef_avgpool2d, wf_opdef_reshape, wf_opdef_flatten, wf_opdef_transpose,
    wf_opdef_layernorm, wf_opdef_dropout, wf_opdef_embedding, wf_opdef_concat, wf_opdef_slice, wf_opdef_sum,
    wf_opdef_mean, wf_opdef_mse, wf_opdef_bce_logits, wf_opdef_accuracy, wf_opdef_accum, wf_opdef_rnn_tanh,
    wf_opdef_gru, wf_opdef_lstm, wf_opdef_unit, wf_opdef_region_in, wf_opdef_region_out;

/* the id of autodiff's accum op (sums gradient contributions) */
int wf_ops_accum_id(void);
/* the id of the unit op (a recurrent unit's outer node, unit.c) */
int wf_ops_unit_id(void);
/* an op by name, internal ops included (a unit's body uses region_in and region_out), -1 if none */
int wf_ops_find_any(const char *name);

/* value pointers of a run: forward inputs/outputs, backward output gradient / input gradients */
#define IN(r, i) ((float *)wf_run_ptr((r), (r)->n->in[i]))
#define INI(r, i) ((int32_t *)wf_run_ptr((r), (r)->n->in[i]))
#define OUT(r, j) ((float *)wf_run_ptr((r), (r)->n->out[j]))
#define OUTI(r, j) ((int32_t *)wf_run_ptr((r), (r)->n->out[j]))
#define DOUT(r) ((float *)wf_run_ptr((r), (r)->b->in[0]))
#define DIN(r, i) ((float *)wf_run_ptr((r), (r)->b->out[i]))
#define XV(r, i) (&(r)->g->v[(r)->n->in[i]])
#define YV(r, j) (&(r)->g->v[(r)->n->out[j]])

/* the graph builder with internal ops allowed (a unit's body), and the unit block (unit.c) */
struct wf_model;
struct wf_mstmt;
int wf_graph_build_ex(struct wf_graph *g, const struct wf_model *m, int batch, int internal);
int wf_graph_build_unit(struct wf_graph *g, const struct wf_model *m, const struct wf_mstmt *st);
int wf_graph_add_value(struct wf_graph *g, const char *name, int kind, int dtype, int ndim, const int64_t *shape);
int wf_graph_add_node(struct wf_graph *g, int op, const char *name);

/* (outer, dim, inner) around axis a of v */
void wf_ops_split_axis(const struct wf_value *v, int a, long *outer, int *dim, long *inner);
/* the last dimension of v (1 for a scalar) and the number of rows before it */
static inline long wf_ops_last(const struct wf_value *v) { return v->ndim ? (long)v->shape[v->ndim - 1] : 1; }
static inline long wf_ops_rows(const struct wf_value *v) { return (long)(v->numel / wf_ops_last(v)); }
/* resolves a possibly negative axis of a rank-nd tensor; -1 if out of range */
int wf_ops_axis(int64_t a, int nd);
/* the main output, same shape and dtype f32 as argument 0; flops per element */
int wf_ops_same_shape(struct wf_infer *c, double flops_per_elem);

#endif
