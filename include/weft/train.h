/*
 * weft exec layer: the training loop of one process.
 *
 * A step takes the next global batch of the epoch's order (a pure function
 * of (seed, epoch)), runs it as K micro-batches of batch/K samples, sums the
 * micro-batch gradients exactly (fixed point, so the sum does not depend on
 * the order or the worker that computed each part — DESIGN.md §4 rule 3),
 * clips, and applies the optimizer with the scheduled learning rate.
 * Checkpoints hold everything needed to continue bit for bit.
 */
#ifndef WEFT_TRAIN_H
#define WEFT_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include "weft/data.h"
#include "weft/exec.h"
#include "weft/feeder.h"
#include "weft/job.h"
#include "weft/model.h"
#include "weft/step.h"

/* Fixed-point scale for exact gradient sums over micro-batches: 2^40. */
#define WF_GRAD_FIXED_SHIFT 40

struct wf_progress {
    int epoch, epochs;      /* 0-based epoch, total */
    long step, steps_total; /* optimizer steps done, planned */
    long epoch_step, epoch_steps;
    double loss;          /* last step's mean loss */
    double samples_per_s; /* since this process started training */
    double eta_s;
    double lr;
    int epoch_done;             /* set on the call that closes an epoch */
    double test_acc, test_loss; /* valid when epoch_done */
    /* the data side (0 / NULL when not known) */
    double data_wait_frac; /* share of the recent wall time spent waiting for batches */
    double hit_rate;       /* cache hits / lookups so far */
    const char *placement; /* "cpu" or "device": where preprocessing runs now */
};
typedef void (*wf_progress_fn)(void *ud, const struct wf_progress *p);

/* A job's data: its train and test stores, the cache it names, a loader
 * for each split (the test split through the chain's deterministic prefix
 * only). Opened alike by weft train and every pipeline worker. */
struct wf_data_src {
    struct wf_store *train, *test;
    struct wf_cache *cache; /* NULL for cache = none */
    struct wf_loader *ltrain, *ltest;
    const struct wf_store_info *itrain, *itest;
};
int wf_data_open(struct wf_data_src *d, const struct wf_job *j);
void wf_data_close(struct wf_data_src *d);
/* The folder a .gz dataset is decompressed into: data_stage, else
 * $XDG_CACHE_HOME/weft/data, else ~/.cache/weft/data. */
void wf_data_stage_dir(const struct wf_job *j, char *buf, size_t cap);
/* A feeder of positions [lo, hi) of the job's global batches from first_step
 * on; labels_only: no images (a pipeline stage fed only the labels). */
int wf_data_feeder(struct wf_data_src *d, const struct wf_job *j, long first_step, int lo, int hi, int labels_only,
                   struct wf_feeder **out);
/* The data side's counters as JSON members (no braces), for metrics lines; f may be NULL. */
void wf_data_stats_json(const struct wf_data_src *d, struct wf_feeder *f, char *buf, size_t cap);
/* Mean loss and accuracy of the first n samples of a loader's split, in
 * batches of e's batch (rest: an executor for the remainder, or NULL);
 * accuracy NAN when the model has none. */
int wf_evaluate_split(struct wf_exec *e, struct wf_exec *rest, struct wf_loader *l, int n, double *loss, double *acc);

struct wf_trainer {
    struct wf_job job;
    struct wf_model model;
    char *model_text;        /* canonical model text */
    struct wf_data_src data; /* stores, cache, loaders */
    struct wf_feeder *feed;  /* batches of the steps to come */
    struct wf_exec ex;       /* train program, batch = batch / K */
    struct wf_step st;       /* the step over ex (include/weft/step.h) */
    struct wf_exec eval, eval_rest;
    int has_eval_rest;
    int64_t n_params;                      /* floats */
    float *params, *grads, *opt_a, *opt_b; /* opt_a: momentum or exp_avg; opt_b: exp_avg_sq */
    int64_t *acc;                          /* fixed-point gradient sums when K > 1 */
    int x_in, y_in, len_in;                /* model input values fed from the dataset (samples, labels, lengths) */
    long step;                             /* optimizer steps done */
    int epoch;                             /* current epoch */
    long epoch_step;                       /* steps done in the current epoch */
    long steps_per_epoch;
    double last_loss;
    double data_wait_s; /* time steps waited for their batch */
    double last_wait_s; /* ... the last step */
    double step_lr;     /* learning rate of the step in progress */
    FILE *metrics;
    char *ckpt_path;
    int quiet;
};

/* Loads job, model, data; compiles; initializes or restores state.
 * resume: path of a checkpoint to continue from, or NULL. */
int wf_trainer_init(struct wf_trainer *t, const char *job_path, const char *resume);
/* Trains until the job's epochs (or max_steps, or stop_after_steps > 0
 * more steps) are done, checkpointing as the job says and at the end. */
int wf_trainer_run(struct wf_trainer *t, long stop_after_steps, wf_progress_fn fn, void *ud);
/* One optimizer step on the next global batch; allocates nothing. */
int wf_trainer_step(struct wf_trainer *t, double *loss);
/* Mean loss and accuracy on the test split. */
int wf_trainer_evaluate(struct wf_trainer *t, double *loss, double *acc);
int wf_trainer_save(struct wf_trainer *t, const char *path);
void wf_trainer_free(struct wf_trainer *t);

/* A checkpoint from its parts, in the parameter order of graph g (the
 * whole model): what the trainer writes, and what a coordinator writes from
 * the pieces its pipeline stages send — equal states give equal bytes. */
struct wf_ckpt_state {
    const struct wf_job *job;
    const char *model_text; /* canonical model text */
    const struct wf_graph *g;
    const float *const *param;                /* per parameter i of g->params */
    const float *const *opt_a, *const *opt_b; /* NULL when the optimizer has no such slot */
    long step;
    int epoch;
    long epoch_step;
};
int wf_checkpoint_write(const char *path, const struct wf_ckpt_state *cs);
/* Where a checkpoint stands in its job. */
struct wf_ckpt_pos {
    long step;
    int epoch;
    long epoch_step;
};
/* Reads a checkpoint written for job j: checks that it was written with j's
 * settings (and for model_text, the canonical whole-model text, unless
 * NULL), returns its position, and loads every parameter of g with its
 * optimizer slots by name into params / opt_a / opt_b at offset[value] (g
 * may be a pipeline stage's sub-graph; g NULL: check only). Errors name the
 * file and what differs. */
int wf_checkpoint_read(const char *path, const struct wf_job *j, const char *model_text, long steps_per_epoch,
                       const struct wf_graph *g, const int64_t *offset, float *params, float *opt_a, float *opt_b,
                       struct wf_ckpt_pos *pos);

/* Optimizer state slots per parameter: 0 (plain SGD), 1 (momentum), 2 (Adam). */
int wf_opt_slots(const struct wf_job *j);
/* After the forward of an eval program on B samples: adds the loss times B to *loss_sum and, where the
 * model has an accuracy (a metric output such as accuracy(), or a classification loss), the rows it
 * got right to *correct and sets *has_acc. */
/* Checks the model's data inputs (x samples, y labels, len lengths; -1 where absent, x too for a
 * pipeline stage without it) against the dataset's samples, naming the model file, line and both
 * shapes. Every program that is fed is checked: its batch is g->batch. */
int wf_check_data_inputs(const struct wf_graph *g, const struct wf_store_info *in, int x, int y, int len);
/* Copies micro-batch k (mb samples) of batch b into the inputs x, y, len of e (-1: not fed). */
void wf_feed_micro_batch(struct wf_exec *e, const struct wf_feed_batch *b, int x, int y, int len, int k, int mb);
/* Test samples ids[0..B) into x, y, len (y, len may be NULL: not read by the model). */
int wf_eval_fetch(struct wf_loader *l, const uint32_t *ids, int B, void *x, int32_t *y, int32_t *len);
int wf_eval_tally(const struct wf_exec *e, int B, double *loss_sum, long *correct, int *has_acc);
/* Rows a sample that accuracy counts (1, or T for per-token labels); 0 when the model has none. */
int64_t wf_eval_rows_per_sample(const struct wf_graph *g);
/* Exact gradient sums (DESIGN.md §4 rule 3): acc = (first ? 0 : acc) + g x 2^WF_GRAD_FIXED_SHIFT
 * as int64; K bounds the values so K sums cannot overflow. Fails naming element base + i
 * if one is non-finite or too large. */
int wf_fixed_add(int64_t *acc, const float *g, int64_t n, int K, int first, int64_t base);
void wf_fixed_to_float(float *g, const int64_t *acc, int64_t n);
/* One parameter's optimizer update (a, b: its state slots, NULL where the optimizer has none). */
void wf_update_param(const struct wf_job *j, float *p, const float *g, float *a, float *b, long n, double lr,
                     long step);

/* A parameter's initial values: a pure function of (seed, its name, its init). */
void wf_init_param(const struct wf_value *v, float *p, uint64_t seed);
struct wf_st_file;
/* Copies tensor `name` of a safetensors file into dst after checking its dtype and shape. */
int wf_load_param(const struct wf_st_file *f, const char *name, const struct wf_value *v, float *dst);

/* Learning rate of step `step` (0-based) of `total`. */
double wf_lr_at(const struct wf_job *j, long step, long total);

/* Evaluates a checkpoint on the test split of its dataset (or data_dir). */
int wf_checkpoint_evaluate(const char *ckpt, const char *data_dir, int batch, double *loss, double *acc, long *step,
                           char **model_name);

#endif
