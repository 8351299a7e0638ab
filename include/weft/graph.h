/*
 * weft graph layer: the IR, the operator registry, shape inference and
 * reverse-mode autodiff.
 *
 *     struct wf_model m;  wf_model_load(&m, "mlp.wf");     // syntax (model.h)
 *     struct wf_graph g;  wf_graph_build(&g, &m, batch);   // ops, shapes, params
 *     wf_graph_autodiff(&g);                                // appends backward nodes
 *
 * A graph is a list of values (named tensors: inputs, parameters,
 * activations, saved auxiliaries, gradients) and a list of nodes in
 * execution order. Forward nodes come first; autodiff appends one backward
 * node per forward node that needs it, plus `accum` nodes where a value
 * fans out. Backward nodes carry the index of their forward node and
 * compute every input gradient of it at once (the kernels in kernels.h).
 */
#ifndef WEFT_GRAPH_H
#define WEFT_GRAPH_H

#include <stdint.h>

#include "weft/model.h"

#define WF_MAX_DIMS 6
#define WF_MAX_IO 16
#define WF_MAX_ATTRS 6

enum wf_op {
    WF_OP_LINEAR,
    WF_OP_MATMUL,
    WF_OP_ADD,
    WF_OP_MUL,
    WF_OP_RELU,
    WF_OP_GELU,
    WF_OP_TANH,
    WF_OP_SIGMOID,
    WF_OP_SOFTMAX,
    WF_OP_LOG_SOFTMAX,
    WF_OP_CROSS_ENTROPY,
    WF_OP_CONV2D,
    WF_OP_MAXPOOL2D,
    WF_OP_AVGPOOL2D,
    WF_OP_RESHAPE,
    WF_OP_FLATTEN,
    WF_OP_TRANSPOSE,
    WF_OP_LAYERNORM,
    WF_OP_DROPOUT,
    WF_OP_EMBEDDING,
    WF_OP_CONCAT,
    WF_OP_SLICE,
    WF_OP_SUM,
    WF_OP_MEAN,
    WF_OP_ACCUM, /* backward only: out = sum of inputs */
    WF_OP_COUNT
};

enum wf_attr_type { WF_AT_INT, WF_AT_FLOAT, WF_AT_BOOL, WF_AT_SHAPE };
#define WF_ATTR_UNSET INT64_MIN /* optional int attribute not given */

struct wf_attr_spec {
    const char *name;
    int type; /* enum wf_attr_type */
    int required;
    double def; /* default for INT/FLOAT/BOOL; WF_ATTR_UNSET allowed for ints */
};

struct wf_op_info {
    const char *name;
    int min_in, max_in; /* tensor arguments */
    int n_attr;
    struct wf_attr_spec attr[WF_MAX_ATTRS];
    int n_param;        /* parameters the layer creates */
    int differentiable; /* has a backward */
};
const struct wf_op_info *wf_op_get(int op);
int wf_op_find(const char *name); /* -1 if unknown */

enum wf_vkind { WF_V_INPUT, WF_V_PARAM, WF_V_ACT, WF_V_AUX, WF_V_GRAD };
enum wf_init { WF_INIT_NONE, WF_INIT_FANIN_UNIFORM, WF_INIT_NORMAL, WF_INIT_ONES, WF_INIT_ZEROS };

struct wf_value {
    char *name;
    int kind;  /* enum wf_vkind */
    int dtype; /* WF_F32 or WF_I32 */
    int ndim;
    int64_t shape[WF_MAX_DIMS];
    int64_t numel;
    int producer;      /* node index, -1 for inputs and params */
    int alias;         /* value whose memory this one views (reshape), -1 */
    int grad;          /* final gradient value, -1 */
    int grad_of;       /* for gradients: the value, -1 */
    int requires_grad; /* set by autodiff */
    int init;          /* params: enum wf_init */
    double init_arg;   /* fan-in for uniform, std for normal */
    int line, col;     /* where it is defined in the model file */
};

struct wf_node {
    int op;       /* enum wf_op */
    int backward; /* 0: forward node; 1: backward of node `fwd` */
    int fwd;
    char *name; /* layer name; backward: "d<layer>" */
    int line, col;
    int n_in, in[WF_MAX_IO];   /* forward: tensor args then params; backward: see autodiff.c */
    int n_out, out[WF_MAX_IO]; /* forward: out[0] main output, then saved auxiliaries;
                                  backward: gradient of fwd in[i] at out[i], -1 if not needed */
    int64_t ai[WF_MAX_ATTRS];  /* attributes by spec slot (ints, bools) */
    double af[WF_MAX_ATTRS];   /* attributes by spec slot (floats) */
    int sn;                    /* shape attribute (reshape), WF_DIM_B resolved */
    int64_t sattr[WF_MAX_DIMS];
    double flops; /* per execution */
};

struct wf_graph {
    char *name;
    char *path; /* model file, for messages */
    int batch;  /* value bound to B */
    struct wf_value *v;
    int nv, vcap;
    struct wf_node *n;
    int nn, ncap;
    int n_fwd; /* nodes [0, n_fwd) are the forward pass */
    int n_outputs;
    int outputs[WF_MAX_IO];
    int loss;           /* scalar loss value, -1 if none */
    int logits, labels; /* of the cross_entropy producing the loss, -1 */
    int n_params;
    int params[256]; /* parameter values in definition order */
    /* a pipeline stage (wf_graph_autodiff_stage): the gradient of `seed`
     * arrives from the next stage into `seed_grad`; the final gradients of
     * the inputs diff_in[] go to the previous stage from in_grad[] */
    int seed, seed_grad;
    int n_diff_in;
    int diff_in[WF_MAX_IO], in_grad[WF_MAX_IO];
};

/* Builds the forward graph from a parsed model, B bound to `batch`.
 * Errors name the model file, line, column and layer:
 * "cnn.wf:9:6: layer 'fc1': linear expects 3136 inputs per row ..." */
int wf_graph_build(struct wf_graph *g, const struct wf_model *m, int batch);
/* Appends the backward pass for g->loss. */
int wf_graph_autodiff(struct wf_graph *g);
/* Appends the backward pass of a pipeline stage: from g->loss if the stage
 * has one, else from value `seed` (its gradient is an input, g->seed_grad);
 * gradients of the inputs diff_in[0..n) are produced too (g->in_grad). The
 * nodes and their order are those the whole model's backward runs for the
 * same layers, so a stage computes the same bits. */
int wf_graph_autodiff_stage(struct wf_graph *g, int seed, const int *diff_in, int n_diff_in);
void wf_graph_free(struct wf_graph *g);

int wf_graph_find(const struct wf_graph *g, const char *name); /* value index or -1 */
/* The inputs fed from a dataset: the first f32 input (images) and the first
 * i32 input (labels); -1 where absent. */
void wf_graph_data_inputs(const struct wf_graph *g, int *x, int *y);
/* "f32[64, 784]" into buf */
const char *wf_shape_str(const struct wf_value *v, char *buf, int n);
int64_t wf_graph_param_count(const struct wf_graph *g);

#endif
