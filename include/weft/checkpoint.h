/*
 * weft exec layer: a checkpoint opened for evaluation, without a dataset.
 *
 * `weft eval CKPT` trusts nothing in CKPT: the safetensors layer checks
 * every size and offset, and wf_ckpt_eval_init then checks what the exec
 * layer reads from it before any dataset is opened:
 *
 *     metadata   weft.format = 1; weft.step, weft.epoch, weft.epoch_step
 *                counts; weft.job the job settings, space-separated
 *                key=value words (seed, batch and optimizer among them);
 *                weft.model the model text; weft.transforms (optional) a
 *                transform chain; weft.data the dataset folder
 *     model      parses, builds and compiles for evaluation at `batch`;
 *                has an f32 image input, an i32 label input and a
 *                cross_entropy loss
 *     tensors    every parameter of the model, F32, of the model's shape
 *
 * Errors name the checkpoint (and "CKPT:weft.model:line:col" for its
 * model). wf_checkpoint_evaluate (train.h) then opens the dataset and
 * checks the model's inputs against its sample shape before running.
 * Taking bytes rather than a path, this is what tests/fuzz/fuzz_ckpt.c
 * feeds hostile checkpoints to.
 */
#ifndef WEFT_CHECKPOINT_H
#define WEFT_CHECKPOINT_H

#include <stddef.h>

#include "weft/compile.h"
#include "weft/model.h"
#include "weft/safetensors.h"

struct wf_ckpt_eval {
    struct wf_st_file f;    /* the checkpoint; tensors point into it */
    struct wf_model m;      /* its model (weft.model) */
    struct wf_program prog; /* m compiled for evaluation (train = 0) at the batch given */
    long step;              /* optimizer steps done when it was written */
    const char *data;       /* its dataset folder (weft.data, in f), NULL if absent */
    char prefix[4096];      /* canonical text of its transforms' deterministic prefix, "" if none */
    int x_in, y_in;         /* prog.g values: the image input (f32), the label input (i32) */
    int n_classes;          /* the logits' last dimension */
};

/* Opens a checkpoint from its bytes (copied; path names it in messages,
 * may be NULL) and checks it as above, compiling its model for `batch`
 * samples (> 0). Returns WF_OK, or WF_ERR_CORRUPT (not a weft checkpoint,
 * bad metadata or tensors), WF_ERR_PARSE (model text, transforms),
 * WF_ERR_SHAPE / WF_ERR_NOTFOUND (a parameter missing or of another
 * shape), another graph or compile error, or WF_ERR_NOMEM. On error *ce
 * is left empty (safe to free). */
int wf_ckpt_eval_init(struct wf_ckpt_eval *ce, const char *path, const void *bytes, size_t len, int batch);
/* The same for a checkpoint file. */
int wf_ckpt_eval_load(struct wf_ckpt_eval *ce, const char *path, int batch);
void wf_ckpt_eval_free(struct wf_ckpt_eval *ce);

#endif
