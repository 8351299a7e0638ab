/*
 * weft compile layer: turns a graph into an executable program — execution
 * order, storage class and byte offset of every value (the memory plan,
 * computed once), scratch size per kernel, FLOP counts.
 *
 * Storage classes: parameters and their final gradients live in two flat
 * float vectors shared by every program of a model (train and eval), in
 * parameter order; everything else lives in one arena, where values whose
 * lifetimes do not overlap share bytes. Views (reshape, flatten) share their
 * base's bytes.
 */
#ifndef WEFT_COMPILE_H
#define WEFT_COMPILE_H

#include <stddef.h>
#include <stdint.h>

#include "weft/graph.h"

enum wf_storage { WF_STORE_NONE, WF_STORE_ARENA, WF_STORE_PARAM, WF_STORE_GRAD };

struct wf_program {
    struct wf_graph g;      /* owned */
    int n_exec;             /* nodes to run: g.nn (train) or g.n_fwd (eval) */
    int *storage;           /* per value: enum wf_storage */
    int64_t *offset;        /* per value: bytes into the arena, or floats into params/grads */
    size_t arena_bytes;     /* planned arena */
    size_t naive_bytes;     /* the arena without reuse, for reports */
    size_t work_floats;     /* largest kernel scratch */
    int64_t n_param_floats; /* length of the flat parameter vector */
    double flops_fwd, flops_bwd;
    double compile_seconds;
};

/* Builds graph (B = batch), its backward if train, and the memory plan. */
int wf_program_compile(struct wf_program *p, const struct wf_model *m, int batch, int train);

/* A pipeline stage's backward: without a loss, the gradient of output
 * `seed` comes from the next stage; the gradients of the inputs diff_in go
 * to the previous one (see wf_graph_autodiff_stage). */
struct wf_stage_opts {
    const char *seed; /* NULL: the stage has the loss */
    int n_diff_in;
    const char *diff_in[WF_MAX_IO];
};
int wf_program_compile_stage(struct wf_program *p, const struct wf_model *m, int batch, int train,
                             const struct wf_stage_opts *o);
void wf_program_free(struct wf_program *p);
/* Plans a graph already built (and differentiated, for train): *g moves
 * into p (a unit's body, exec layer). */
int wf_program_from_graph(struct wf_program *p, struct wf_graph *g, int train);

/* ---- pipeline partitioning (partition.c) ---- */
struct wf_stage_spec {
    char *model_text;              /* the stage's sub-model, canonical model syntax (the wire format) */
    char *in;                      /* split tensor received from the previous stage; NULL for stage 0 */
    int in_grad;                   /* its gradient is sent back */
    char *out;                     /* split tensor sent to the next stage; NULL for the last */
    int out_grad;                  /* its gradient comes back */
    int64_t in_floats, out_floats; /* per sample */
    int n_layers, n_params;
    int64_t param_floats;
    double flops_fwd, flops_bwd; /* per sample */
};
struct wf_partition {
    int n_stages;
    struct wf_stage_spec *st;
    struct wf_graph g;                /* the logical graph (B = 2) with its backward */
    int *node_stage;                  /* per node of g, forward and backward */
    char *x_name, *y_name, *len_name; /* inputs fed from the dataset: samples, labels, lengths ("" if none) */
};
/* Cuts model m at the split tensors, in order (none: one stage). Errors
 * name the split point and the layer that crosses it. Builds no program:
 * the workers compile the stages. */
int wf_partition_build(struct wf_partition *p, const struct wf_model *m, int n_split, char *const *split);
void wf_partition_free(struct wf_partition *p);
/* Picks n_stages - 1 split points that balance estimated compute; *names
 * (n_stages entries, free each and the array with wf_free). Returns the
 * number of split points or an error. */
int wf_partition_auto(const struct wf_model *m, int n_stages, char ***names);
/* Scratch a node needs (floats). */
size_t wf_node_work_floats(const struct wf_graph *g, const struct wf_node *n);

#endif
