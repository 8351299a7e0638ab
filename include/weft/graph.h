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

/* The built-in ops; only their definitions (src/graph/ops_*.c, op_table.c) name them. */
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
    WF_OP_MSE,
    WF_OP_BCE_LOGITS,
    WF_OP_ACCURACY,
    WF_OP_RNN_TANH,
    WF_OP_GRU,
    WF_OP_LSTM,
    WF_OP_UNIT,       /* a recurrent unit: its body graph once per time step (struct wf_unit) */
    WF_OP_REGION_IN,  /* a skip region's start: the live rows of a value, packed */
    WF_OP_REGION_OUT, /* a skip region's end: the live rows back in place, the bypass value elsewhere */
    WF_OP_ACCUM,      /* backward only: out = sum of inputs */
    WF_OP_COUNT
};

enum wf_attr_type { WF_AT_INT, WF_AT_FLOAT, WF_AT_BOOL, WF_AT_SHAPE };
#define WF_ATTR_UNSET INT64_MIN /* optional int attribute not given */
#define WF_ATTR_MAX 2147483647  /* |int attribute| (kernels take int sizes) */
#define WF_MAX_NUMEL 2147483647 /* elements of one tensor (kernels index rows and columns with int) */

struct wf_attr_spec {
    const char *name;
    int type; /* enum wf_attr_type */
    int required;
    double def; /* default for INT/FLOAT/BOOL; WF_ATTR_UNSET allowed for ints */
};

enum wf_vkind { WF_V_INPUT, WF_V_PARAM, WF_V_ACT, WF_V_AUX, WF_V_GRAD, WF_V_CONST };
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
    double init_arg;   /* fan-in for uniform, std for normal; a constant's value */
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
    double bytes; /* moved per execution: inputs read and outputs written */
};

struct wf_hmap;

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
    int loss;           /* scalar loss value: the first scalar f32 output; -1 if none */
    int loss_grad;      /* training: the loss's gradient, written before the backward runs (the seed, 1/K) */
    int logits, labels; /* of a classification loss (cross_entropy) producing the loss, -1: accuracy in eval */
    int n_params;
    int params[256]; /* parameter values in definition order */
    /* a pipeline stage (wf_graph_autodiff_stage): the gradient of `seed`
     * arrives from the next stage into `seed_grad`; the final gradients of
     * the inputs diff_in[] go to the previous stage from in_grad[] */
    int seed, seed_grad;
    int n_diff_in;
    int diff_in[WF_MAX_IO], in_grad[WF_MAX_IO];
    /* a unit's body (wf_graph_autodiff_seeds): more roots, each with a gradient value of its own */
    int n_seeds;
    int seeds[WF_MAX_IO], seed_grads[WF_MAX_IO];
    struct wf_hmap *names; /* value name -> first value of that name (wf_graph_find); kept by the builder */
    struct wf_unit *units; /* the recurrent units (model statement `unit`), one node each */
    int n_units;
};

/* A recurrent unit (docs/recurrent.md): one node of the outer graph (op
 * `unit`, ai[0] = its index in g->units) whose body graph the executor runs
 * once per time step, forward in time order and backward in reverse. The
 * outer node's inputs are `over`, the states' initial values, `length` and
 * `when` where given, then the body's parameters (the same names, in body
 * order); its outputs the per-step outputs stacked to [B, T, ...], then the
 * final states. Body values of a skip region are packed: only the first
 * `rows` of their leading dimension are the live (t, sample) pairs. */
struct wf_unit {
    struct wf_graph body;
    int node, T;
    int n_in_fixed;   /* outer inputs before the parameters */
    int length, when; /* outer node input slots (-1: none) */
    int step_in;      /* body input: step t of `over` */
    int n_states;
    int state_in[WF_MAX_IO];   /* body inputs */
    int state_next[WF_MAX_IO]; /* body values: the next step's state */
    int state_init[WF_MAX_IO]; /* outer node input slot of from=, -1: zeros */
    int n_outs;
    int out_body[WF_MAX_IO];  /* body values stacked into the outer outputs 0..n_outs-1 */
    int region;               /* 1: the body has a skip region */
    unsigned char *packed;    /* per body value: 1 if it holds packed (live) rows; after autodiff: gradients too */
    unsigned char *live_node; /* per body node: runs on the packed rows only (skipped when there are none) */
};

/* The rows a unit's skip region works on at one step, set by the executor
 * (wf_run.step) for region_in / region_out:
 *   rows[0..n)  the samples computed, in packed order (skipping off: all)
 *   pos[b]      sample b's packed row, -1 if not computed
 *   keep[b]     1 if the region's result counts for sample b (its condition
 *               holds), else the bypass value does */
struct wf_step_rows {
    int n, batch;
    const int *rows, *pos;
    const unsigned char *keep;
};

/* ---- the op table ----
 * Every op is declared once, in one wf_op_def: what the parser, `weft
 * check`, autodiff, the memory planner, the partitioner and the executor
 * know of it. The built-in ops live in src/graph/ops_*.c (their table is
 * tied to enum wf_op by a static assertion); wf_op_register adds one at
 * run time (custom operators). */

struct wf_graph;
struct wf_node;

/* Shape inference of one layer (wf_op_def.infer). `in` holds copies of the
 * argument values: adding parameters and outputs moves g->v. */
struct wf_infer {
    struct wf_graph *g;
    int node; /* the node being built; g->n[node] has its inputs and attributes */
    int n_in;
    struct wf_value *in; /* [n_in] copies */
    const char *path, *layer, *op;
    int line, col;
};
/* Error at the layer's file:line:column, naming the layer and op (WF_ERR_SHAPE). */
int wf_infer_err(const struct wf_infer *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Creates parameter LAYER.suffix (f32) and appends it to the node's inputs; returns its value or an error. */
int wf_infer_param(struct wf_infer *c, const char *suffix, int ndim, const int64_t *shape, int init, double init_arg);
/* Appends an output (suffix NULL: the layer's main output, named as the layer; else LAYER:suffix,
 * e.g. a saved auxiliary of kind WF_V_AUX). Sizes are overflow-checked. Returns the value or an error. */
int wf_infer_out(struct wf_infer *c, const char *suffix, int kind, int dtype, int ndim, const int64_t *shape);
/* "f32[64, 784]" of argument i (a static buffer per call site is the caller's: buf of 96 bytes). */
const char *wf_infer_shape(const struct wf_infer *c, int i, char *buf);

/* One execution of a node (forward or backward), filled by the executor. */
struct wf_run {
    const struct wf_graph *g;
    const struct wf_node *n;             /* the forward node */
    const struct wf_node *b;             /* the backward node (backward only), else NULL */
    int ni;                              /* index of n */
    void *(*ptr)(const void *ex, int v); /* a value's memory; NULL for -1 or a value without storage */
    const void *ex;
    float *work; /* the node's scratch (wf_op_def.work floats) */
    int train;
    uint64_t rng_key, rng_step; /* random ops: key from the seed, stream of (step, micro-batch) */
    int rows; /* rows of the leading (batch) dimension to process: fewer than shape[0] inside a skip region (the
                 live prefix); 0 means all. Only ops that say so honour it (the recurrent cells, ops_rnn.c); the
                 executor also runs ROWWISE ops of a region on shapes cut to the packed rows */
    const struct wf_step_rows *step; /* in a unit's body: the skip region's rows at this step, else NULL */
    /* the unit op: runs the node's body graph over time (provided by the executor, exec layer) */
    int (*unit)(const struct wf_run *r, int backward);
};
static inline void *wf_run_ptr(const struct wf_run *r, int v) { return v < 0 ? (void *)0 : r->ptr(r->ex, v); }

enum wf_op_flag {
    WF_OPF_VIEW = 1,     /* out[0] views in[0]'s memory; the input gradient views the output gradient */
    WF_OPF_GEMM = 2,     /* backward costs about twice the forward (the cost model) */
    WF_OPF_INTERNAL = 4, /* made by autodiff, never in a model file */
    WF_OPF_CLASSIFY = 8, /* a loss of (logits in[0], labels in[1]) whose accuracy evaluation reports */
    WF_OPF_METRIC = 16,  /* a scalar share of the rows of in[0] got right (accuracy), reported by evaluation */
    WF_OPF_ROWWISE = 32, /* row b of every batch-sized output depends only on row b of the batch-sized inputs: the
                            op may run in a skip region, on the packed rows */
    WF_OPF_MULTI = 64,   /* every output is differentiable: its backward gets each output's gradient (unit) */
};

struct wf_arg_spec {
    unsigned dtypes;        /* bit (1 << WF_F32) | (1 << WF_I32); 0 means f32 */
    int min_rank, max_rank; /* max_rank 0 means WF_MAX_DIMS */
};
#define WF_DT(t) (1u << (t))

struct wf_op_def {
    const char *name;
    int min_in, max_in;        /* tensor arguments */
    struct wf_arg_spec arg[4]; /* argument i is checked against arg[min(i, 3)] */
    int n_attr;
    struct wf_attr_spec attr[WF_MAX_ATTRS];
    unsigned flags;           /* enum wf_op_flag */
    unsigned no_grad;         /* arguments that get no gradient (bit i: argument i) */
    unsigned bwd_in, bwd_out; /* the inputs / outputs the backward reads (bit masks) */
    /* shape inference: checks ranks and attributes, creates parameters and outputs, sets n->flops */
    int (*infer)(struct wf_infer *c);
    int (*forward)(const struct wf_run *r);
    int (*backward)(const struct wf_run *r); /* NULL: not differentiable */
    /* scratch floats a node (forward or backward) of this op needs; NULL: none */
    size_t (*work)(const struct wf_graph *g, const struct wf_node *f);
    /* memory plan hook, called for each forward node a of the op in [0, nn): may mark values that need
     * no storage (none[v] = 1) and stretch lifetimes (start, end): fusions (ops_conv.c) */
    void (*plan)(const struct wf_graph *g, int nn, int a, unsigned char *none, int *start, int *end);
};

/* The op of id `op` (built-in enum wf_op or registered), NULL if none. */
const struct wf_op_def *wf_op_get(int op);
/* Op id by model-file name, -1 if unknown (internal ops are not found). */
int wf_op_find(const char *name);
/* Number of op ids (built-in and registered). */
int wf_op_count(void);
/* Adds an op at run time; def must outlive its use. Returns its id, or an
 * error if the name is taken or the definition is incomplete. Not thread-safe
 * against concurrent graph builds: register before building graphs. */
int wf_op_register(const struct wf_op_def *def);
/* "linear, matmul, ..." (model-file ops) into buf. */
void wf_op_names(char *buf, size_t cap);

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
/* The backward of a unit's body: from several roots (its next states and
 * per-step outputs), each with a gradient value of its own (g->seed_grads),
 * to the parameters and diff_in[] (g->in_grad); a root that depends on
 * nothing differentiable gets no gradient. */
int wf_graph_autodiff_seeds(struct wf_graph *g, const int *seeds, int n_seeds, const int *diff_in, int n_diff_in);
void wf_graph_free(struct wf_graph *g);

int wf_graph_find(const struct wf_graph *g, const char *name); /* value index or -1 */
/* The inputs fed from a dataset, in the order the model declares them: the
 * samples (f32 images or i32 token ids), then the labels (i32), then the
 * sequence lengths (i32[B]); -1 where absent. */
void wf_graph_data_inputs(const struct wf_graph *g, int *x, int *y);
int wf_graph_len_input(const struct wf_graph *g);
/* "f32[64, 784]" into buf */
const char *wf_shape_str(const struct wf_value *v, char *buf, int n);
int64_t wf_graph_param_count(const struct wf_graph *g);

/* Queries for the memory planner's fusion hooks, over the nodes [0, nn) a program runs:
 * whether v must stay visible (an output of the program, the loss, a stage's boundary);
 * whether v is read by no node but r1 and r2 (-1: none), nothing views it and it is not kept;
 * the backward node of forward node f, or -1. */
int wf_graph_kept(const struct wf_graph *g, int v);
int wf_graph_read_only_by(const struct wf_graph *g, int nn, int v, int r1, int r2);
int wf_graph_backward_of(const struct wf_graph *g, int nn, int f);

#endif
