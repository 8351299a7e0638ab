/*
 * weft exec layer: the training step, once for every layout.
 *
 * A step is the pipeline stage's: for each task of the schedule (1F1B or
 * GPipe over this replica's micro-batches) receive the stage input, run
 * the forward, send the stage output (or seed the loss), receive the
 * output's gradient, run the backward, send the input's gradient; sum the
 * micro-batch gradients exactly (64-bit fixed point, each parameter as soon
 * as its gradient is final), reduce them across data-parallel replicas,
 * clip by the global norm, update. `weft train` is the one-stage,
 * one-replica case with no links; a pipeline worker (cluster layer)
 * implements the links over its transport and has no step of its own.
 *
 *     struct wf_step s = {.ex = &ex, .job = &job, .params = p, .grads = g, ..., .S = 1, .K = K, .nk = K};
 *     wf_step_init(&s);
 *     wf_step_run(&s, step, lr, &batch, &loss);   // allocates nothing
 *     wf_step_free(&s);
 */
#ifndef WEFT_STEP_H
#define WEFT_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "weft/exec.h"
#include "weft/feeder.h"
#include "weft/job.h"

/* What a step spends its time on (the links' span hook, the trace). */
enum wf_span { WF_SPAN_F, WF_SPAN_B, WF_SPAN_REDUCE = 4, WF_SPAN_OPT = 5 };

/* A stage's links to the rest of its job. A function is NULL where there is
 * no such link: the whole step then runs locally. */
struct wf_links {
    void *ud;
    /* the stage input of micro-batch mb from the previous stage, n floats */
    int (*recv_act)(void *ud, long step, int mb, float *dst, size_t n);
    /* the stage output to the next stage; copy = 0: src stays untouched until mb's gradient came back */
    int (*send_act)(void *ud, long step, int mb, const float *src, size_t n, int copy);
    int (*recv_grad)(void *ud, long step, int mb, float *dst, size_t n);
    int (*send_grad)(void *ud, long step, int mb, const float *src, size_t n);
    /* data-parallel replicas: sum the exact (int64) gradient sums in place */
    void (*reduce_begin)(void *ud);
    int (*reduce_submit)(void *ud, int64_t *acc, size_t n);
    int (*reduce_wait)(void *ud);
    /* clipping with several stages: this stage's per-parameter sums of squares in, the whole model's out */
    int (*global_sumsq)(void *ud, long step, const double *part, int n, double *total);
    /* observation: what is being done (for status), and spans of time (enum wf_span) */
    void (*doing)(void *ud, long step, const char *what, int mb);
    void (*span)(void *ud, int kind, int mb, double t0, double t1);
};

struct wf_step {
    /* set by the caller before wf_step_init */
    struct wf_exec *ex; /* the train program at the micro-batch size (a stage's: wf_exec_init_stage) */
    const struct wf_job *job;
    float *params, *grads, *opt_a, *opt_b; /* the executor's flat vectors; opt_* NULL where the optimizer has none */
    int64_t *acc;                          /* exact sums, n_params (needed when K > 1) */
    int64_t n_params;
    unsigned char **arenas; /* nslots activation arenas (micro-batches in flight); NULL: the executor's own */
    int nslots;
    int S, s;               /* stages, this stage */
    int K, k0, nk;          /* micro-batches a step; this replica's first and count */
    int sched;              /* enum wf_sched_kind */
    int train_bwd;          /* this stage runs a backward (all but a pipeline's stages before any parameter) */
    int in_v, out_v;        /* the stage's split input and output values, -1 */
    int x_in, y_in, len_in; /* data inputs fed from the batch, -1 */
    struct wf_links links;
    /* results */
    double *losses;           /* [nk]: each micro-batch's loss / K (the stage with the loss) */
    double t_compute, t_comm; /* seconds in kernels, in reductions and global sums */
    int max_live;             /* most micro-batches with live activations */
    /* private */
    char *ready;
    double *clip_part;
    int submitted_hi, reduce_rc, acc_first, acc_last, fused;
    long cur_step;
    double cur_lr;
};

int wf_step_init(struct wf_step *st);
/* One optimizer step `step` (0-based) with learning rate lr on this replica's part b of the
 * global batch (b may be NULL on a stage fed by no data input). *loss: the sum of losses[]
 * (the step's mean loss when this stage has the loss and all its micro-batches), else 0. */
int wf_step_run(struct wf_step *st, long step, double lr, const struct wf_feed_batch *b, double *loss);
void wf_step_free(struct wf_step *st);

#endif
