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
void wf_program_free(struct wf_program *p);
/* Scratch a node needs (floats). */
size_t wf_node_work_floats(const struct wf_graph *g, const struct wf_node *n);

#endif
