/*
 * weft exec layer: job files — what to train, on what, how.
 *
 *     # train the MLP on Fashion-MNIST
 *     model = mlp.wf                  # relative to the job file's folder
 *     data = /usr/share/datasets/fashion-mnist
 *     epochs = 10
 *     batch = 64                      # global batch
 *     micro_batches = 1               # K; batch % K == 0
 *     optimizer = sgd                 # sgd | adam | adamw
 *     lr = 0.1
 *
 * One `key = value` per line, `#` comments. Unknown keys, duplicates, bad
 * values and missing required keys are errors naming file:line:column.
 * Relative paths are resolved against the job file's folder.
 *
 * Values are numbers (integers are accepted where a float is expected),
 * true/false, words (enum values, paths made of letters, digits and
 * / . - _ +), double-quoted strings ("a path/with spaces", with \" and \\
 * escapes) and, for split only, lists `[t1, t2]` of up to 64 tensor names.
 * Keys, with their ranges:
 *
 *     model, data       paths, required
 *     out               path, default runs/<job file stem> (relative to the cwd)
 *     init              path, default none
 *     epochs, batch     >= 1
 *     micro_batches     >= 1, divides batch
 *     seed              0 .. 2^64-1
 *     threads           1 .. 256
 *     max_steps, warmup, checkpoint_every   >= 0
 *     step_size         >= 1, required when lr_schedule = step
 *     eval_batch, pp, dp                    >= 1
 *     optimizer         sgd | adam | adamw
 *     lr_schedule       constant | step | cosine
 *     pipeline          1f1b | gpipe
 *     lr, eps, gamma    > 0
 *     momentum, beta1, beta2                in [0, 1)
 *     weight_decay, clip_norm, min_lr       >= 0
 *     nesterov          true | false
 *     split             [name, ...]
 *   the data service (include/weft/loader.h, feeder.h):
 *     transforms        "normalize(mean=0.286, std=0.353), crop(pad=2), flip(p=0.5),
 *                        noise(std=0.05, repeat=1)"; default "" (pixels / 255)
 *     cache             memory (default) | none | "redis://HOST:PORT"
 *     cache_mb          in 0..2^24, default 1024 (memory cache bound)
 *     placement         auto (default) | cpu | device: where preprocessing runs
 *     loader_workers    1..64, default 1 (cpu placement threads)
 *     prefetch          1..64, default 3 (batches prepared ahead)
 *     data_stage        path, default $XDG_CACHE_HOME/weft/data or ~/.cache/weft/data:
 *                       where a .gz dataset is decompressed once
 *     resume            path of a checkpoint to continue from (what --resume sets)
 *   token data (a data folder with train.tok, test.tok, vocab.txt; docs/formats.md):
 *     seq_len           1..1048576: T, tokens a sample; required for token data, refused otherwise
 *     sample            window (default) | sequence
 *     labels            next (default for window) | shifted (default for sequence) | class (sequence only:
 *                       each sequence's class; the data folder needs train.cls, test.cls and classes.txt,
 *                       made by weft tokenize --classes file)
 *     stride            >= 1, default 1: window only, tokens between the starts of two samples
 *   sample, labels and stride need seq_len; a token job takes no transforms.
 */
#ifndef WEFT_JOB_H
#define WEFT_JOB_H

#include <stddef.h>
#include <stdint.h>

enum wf_opt_kind { WF_OPT_SGD, WF_OPT_ADAM, WF_OPT_ADAMW };
enum wf_lr_kind { WF_LR_CONSTANT, WF_LR_STEP, WF_LR_COSINE };

struct wf_job {
    char *path;        /* the job file */
    char *model;       /* model file path, resolved (required) */
    char *data;        /* dataset folder, resolved (required) */
    char *out;         /* output folder, resolved (default: runs/<job file stem>) */
    char *init;        /* optional safetensors file of initial weights, resolved; NULL = seeded init */
    int epochs;        /* default 1, >= 1 */
    int batch;         /* global batch, default 64, >= 1 */
    int micro_batches; /* K, default 1, batch % K == 0 */
    uint64_t seed;     /* default 0 */
    int threads;       /* BLAS threads per process, default 1 */
    long max_steps;    /* stop after this many steps, 0 = no limit (default 0) */
    /* optimizer */
    int optimizer;       /* enum wf_opt_kind, default sgd */
    double lr;           /* default 0.01 */
    double momentum;     /* sgd, default 0 */
    int nesterov;        /* sgd, default false */
    double weight_decay; /* default 0 */
    double beta1, beta2; /* adam, default 0.9, 0.999 */
    double eps;          /* adam, default 1e-8 */
    double clip_norm;    /* global-norm clipping, 0 = off (default) */
    /* learning-rate schedule */
    int lr_schedule; /* enum wf_lr_kind, default constant */
    long warmup;     /* linear warm-up steps, default 0 */
    long step_size;  /* step schedule: decay every step_size steps (required for step) */
    double gamma;    /* step schedule factor, default 0.1 */
    double min_lr;   /* cosine floor, default 0 */
    /* checkpoints and evaluation */
    long checkpoint_every; /* steps between checkpoints, 0 = at each epoch end (default) */
    int eval_batch;        /* default 1000 */
    /* parallel layout (used by later layers; parsed and checked now) */
    int n_split;
    char **split;   /* split = [t1, t2] : tensor names */
    int pp, dp;     /* default 1, 1 */
    char *pipeline; /* "1f1b" (default) or "gpipe" */
    /* the data service */
    char *transforms;   /* transform chain text, default "" */
    char *cache;        /* "memory" (default), "none" or "redis://HOST:PORT" */
    int cache_mb;       /* memory cache bound, default 1024 */
    int placement;      /* 0 auto (default), 1 cpu, 2 device (enum wf_place) */
    int loader_workers; /* default 1 */
    int prefetch;       /* default 3 */
    char *data_stage;   /* NULL = the default folder */
    char *resume;       /* a checkpoint to continue from (weft train --resume, weft run --resume), or NULL */
    /* token data (include/weft/loader.h, struct wf_sample_opts) */
    int seq_len; /* T, tokens a sample; 0 = not set (image data) */
    int sample;  /* enum wf_sample_mode: 0 window (default), 1 sequence */
    int labels;  /* enum wf_label_mode: 0 next, 1 shifted, 2 class; default next for window, shifted for sequence */
    int stride;  /* window: tokens between sample starts, default 1 */
    /* where the path values were given in the job file, for messages; 0 if defaulted */
    struct wf_job_loc {
        int line, col;
    } model_at, data_at, out_at, init_at, data_stage_at, resume_at;
    struct wf_job_loc seq_len_at; /* where seq_len was given, 0 if not */
    struct wf_job_loc labels_at;  /* where labels was given, 0 if not */
};

struct wf_sample_opts;
/* The job's sample options for wf_store_open_opts (seq_len 0 when the job
 * sets none: an image dataset). */
void wf_job_sample_opts(const struct wf_job *j, struct wf_sample_opts *o);

/* Parses text into *j (overwritten); path (may be NULL: "<memory>") names
 * the job file for messages, for resolving relative paths against its folder
 * and for the default out. Errors: WF_ERR_PARSE with "path:line:col: ...",
 * WF_ERR_NOMEM; on error *j is left empty. Does not touch the file system. */
int wf_job_parse(struct wf_job *j, const char *path, const char *text);
int wf_job_load(struct wf_job *j, const char *path);
void wf_job_free(struct wf_job *j);
/* Canonical text of a job (all keys, resolved paths; init and step_size only
 * when set); caller frees *text with wf_free, len may be NULL. */
int wf_job_write(const struct wf_job *j, char **text, size_t *len);
/* Checks that the model file and, if set, the init file are regular files
 * and the data folder is a directory. WF_ERR_NOTFOUND (or WF_ERR_INVALID for
 * the wrong kind of file) with "job:line:col: model file 'x' not found: ..."
 * naming where the job file gave the path. */
int wf_job_check_files(const struct wf_job *j);
/* Splits cache = "redis://HOST:PORT"; WF_ERR_INVALID for anything else. */
int wf_job_cache_redis(const char *spec, char *host, size_t cap, int *port);

#endif
