/*
 * weft exec layer: runs a compiled program on memory it binds once.
 *
 * Parameters and gradients are flat vectors owned by the caller and shared
 * between the train and eval executors of a model; the arena and kernel
 * scratch are owned by the executor and allocated once in wf_exec_init, so
 * running nodes allocates nothing.
 */
#ifndef WEFT_EXEC_H
#define WEFT_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "weft/compile.h"

struct wf_exec {
    struct wf_program prog;
    float *params;        /* n_param_floats, caller-owned */
    float *grads;         /* n_param_floats, caller-owned (train only) */
    unsigned char *arena; /* prog.arena_bytes, owned */
    float *work;          /* prog.work_floats, owned */
    int train;
    uint64_t rng_key;     /* dropout: key from the seed */
    uint64_t rng_step;    /* dropout: stream from (step, global micro-batch index) */
    double *node_seconds; /* per node, accumulated when profiling */
    int profile;
    /* called after each node; lets the trainer update a parameter the moment
     * its gradient is final, while it is still in cache */
    void (*node_done)(void *ud, int node);
    void *node_done_ud;
    /* recurrent units (src/exec/unit.c): the runtime of each, and in a unit's body executor its definition and
     * the skip region's rows at the step being run */
    struct wf_unit_rt *units;
    int n_units;
    const struct wf_unit *unit;
    const struct wf_step_rows *step;
    int no_skip; /* 1: skip regions compute every row, then mask (the reference skipping is checked against) */
};

/* Per unit of a program, summed over the runs since the executor was made:
 * (t, sample) pairs whose region condition held, and pairs the region's
 * nodes ran on (equal unless no_skip). Returns the number of units. */
struct wf_unit_counts {
    const char *name;
    uint64_t live, computed, total;
};
int wf_exec_unit_counts(const struct wf_exec *e, struct wf_unit_counts *out, int max);

/* params/grads may be NULL and set later (the plan tells their size,
 * prog.n_param_floats); they must be set before the first run. */
int wf_exec_init(struct wf_exec *e, const struct wf_model *m, int batch, int train, float *params, float *grads);
/* The same for a pipeline stage (o may be NULL: a whole model). */
int wf_exec_init_stage(struct wf_exec *e, const struct wf_model *m, int batch, int train, const struct wf_stage_opts *o,
                       float *params, float *grads);
void wf_exec_free(struct wf_exec *e);
/* Memory checks of a compiled program (wf_mem_check, core.h), made before
 * anything it sizes is allocated; a refusal names the largest tensors.
 * wf_mem_check_plan: its activations (the planned arena) and its kernel
 * scratch; refusals name the 3 largest planned values, or the layers that
 * need the most scratch:
 *   "m.wf: activations need 1.05 MiB, more than the --max-memory of 1 KiB;
 *    largest values: fc1 f32[32, 256] 32 KiB, ..."
 * (wf_exec_init makes it). wf_mem_check_params: `bytes` for the parameters
 * and what comes with them (`what`: "the parameters, their gradients and
 * optimizer state"); a refusal names the 3 largest parameters:
 *   "...; largest parameters: fc1.weight f32[256, 784] 784 KiB, ...".
 * One pass over the values, and only on refusal. */
int wf_mem_check_plan(const struct wf_program *p, const char *who);
int wf_mem_check_params(const struct wf_program *p, const char *who, const char *what, size_t bytes);
/* Pointer to a value's memory (NULL for -1). */
void *wf_exec_ptr(const struct wf_exec *e, int v);
/* Runs nodes [from, to) of the program. */
int wf_exec_run(struct wf_exec *e, int from, int to);
static inline int wf_exec_forward(struct wf_exec *e) { return wf_exec_run(e, 0, e->prog.g.n_fwd); }
static inline int wf_exec_backward(struct wf_exec *e) { return wf_exec_run(e, e->prog.g.n_fwd, e->prog.n_exec); }
/* Sets the gradient of the loss the backward starts from: 1/K for one of K
 * micro-batches of a step (the step's loss is their mean). */
int wf_exec_seed(struct wf_exec *e, float seed);
/* Sets the dropout stream for one micro-batch: (seed, step, global micro-batch index). */
void wf_exec_set_rng(struct wf_exec *e, uint64_t seed, uint64_t step, uint64_t micro_batch);

/* ---- pipeline schedules (schedule.c) ---- */
enum wf_sched_kind { WF_SCHED_1F1B, WF_SCHED_GPIPE };
enum wf_ev_kind { WF_EV_F, WF_EV_B };
struct wf_sched_ev {
    int kind; /* enum wf_ev_kind */
    int mb;   /* micro-batch, 0 .. K-1 */
};
/* Fills ev (2K entries) with stage s's task order; returns 2K. */
int wf_schedule(int kind, int S, int s, int K, struct wf_sched_ev *ev);
/* Largest number of micro-batches whose activations are alive at once. */
int wf_schedule_max_live(const struct wf_sched_ev *ev, int n);

#endif
