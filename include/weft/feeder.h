/*
 * weft data layer: the feeder, which hands training its batches in step
 * order and decides where their preprocessing runs (DESIGN.md C11).
 *
 * A feeder serves the positions [lo, hi) of every global batch of steps
 * [first_step, end_step): the ids of step t are those of epoch
 * t / steps_per_epoch in the order wf_epoch_order(seed, epoch), so a
 * pipeline stage or data-parallel replica asks for exactly its slice.
 *
 * Placement of the preprocessing (wf_loader_fetch: cache, store, transforms):
 *   cpu     a pool of `workers` threads prepares up to `depth` batches ahead
 *           into a bounded queue, overlapping the training step;
 *   device  the training process's compute threads (wf_parallel_for, the
 *           kernels' own pool) prepare each batch when training asks for it:
 *           no overlap, but all compute threads on it (a GPU path would run
 *           the transforms there);
 *   auto    starts on cpu; every `window` steps a controller reads the
 *           time-averaged occupancy of the queue and the utilization of the
 *           compute device (the share of wall time training is not waiting
 *           for data). A trial runs one window on the other placement and
 *           keeps it when it served over 3 % more steps per second than the
 *           window before and the next window confirms it. Trials start at once when the queue runs dry while the
 *           device waits, else after 4, then 16, 32, 64, ... windows: on a
 *           CPU-only machine a pool that keeps the queue full still takes
 *           cores from the kernels.
 * Batches reach training in step order whatever ran them, and a sample's
 * bytes do not depend on the placement (transforms are keyed by
 * (seed, epoch, id) only).
 *
 *   struct wf_feeder *f;
 *   wf_feeder_new(&f, loader, &(struct wf_feeder_opts){.batch = 64, .hi = 64, .seed = 7,
 *                                                      .steps_per_epoch = 937, .end_step = 9370});
 *   struct wf_feed_batch b;
 *   while (wf_feeder_next(f, &b) == WF_OK && b.n) train(b.x, b.y);   // b valid until the next call
 *   wf_feeder_free(f);
 */
#ifndef WEFT_FEEDER_H
#define WEFT_FEEDER_H

#include <stdint.h>

#include "weft/loader.h"

struct wf_feeder;

enum wf_place { WF_PLACE_AUTO = 0, WF_PLACE_CPU = 1, WF_PLACE_DEVICE = 2 };

struct wf_feeder_opts {
    int batch;            /* samples in a global batch */
    int lo, hi;           /* positions [lo, hi) of each global batch served; hi = 0 means batch */
    uint64_t seed;        /* the epoch order's seed */
    long steps_per_epoch; /* global batches in an epoch (the order's remainder is dropped) */
    long first_step;      /* the first step served */
    long end_step;        /* one past the last step served */
    int workers;          /* cpu placement: pool threads (default 1) */
    int depth;            /* cpu placement: batches prepared ahead at most (default 3) */
    int placement;        /* enum wf_place (default auto) */
    int window;           /* auto: steps per measurement window (default 16) */
    int labels_only;      /* prepare labels (and lengths) only (x stays NULL): a stage that has no sample input */
};

struct wf_feed_batch {
    long step;       /* global step */
    int epoch;       /* its epoch */
    long epoch_step; /* its step within the epoch */
    int n;           /* samples (hi - lo); 0 after end_step */
    const float *x;  /* n * c*h*w, float32 CHW; NULL with labels_only and for token data (see xv) */
    const int32_t *y;
    const uint32_t *ids; /* the n sample ids, in order */
    double wait_s;       /* how long wf_feeder_next waited or prepared */
    int placement;       /* where this batch was prepared: WF_PLACE_CPU or WF_PLACE_DEVICE */
    /* typed data (the store's wf_store_info says what a sample is) */
    const void *xv;     /* n * x_per values of x_dtype; equal to x for images; NULL with labels_only */
    int x_dtype;        /* WF_F32 (images) or WF_I32 (token ids), weft/safetensors.h */
    int x_per;          /* values a sample: c*h*w, or T */
    int y_per;          /* labels a sample: 1, or T; y holds n * y_per int32 */
    const int32_t *len; /* n sample lengths (tokens, WF_SAMPLE_SEQUENCE); NULL unless the store has_len */
};

struct wf_feeder_stats {
    long batches, batches_cpu, batches_device;
    double wait_s;      /* total time training spent in wf_feeder_next */
    double occupancy;   /* time-averaged ready batches in the queue, last cpu window */
    double device_util; /* share of wall time training was not waiting for data, last window */
    int placement;      /* current placement */
    int switches;       /* placement changes by the controller */
    char decision[160]; /* the controller's last decision, in words */
};

int wf_feeder_new(struct wf_feeder **out, struct wf_loader *l, const struct wf_feeder_opts *o);
/* The next batch in step order (b->n = 0 once end_step is reached). The
 * batch's memory is the feeder's, valid until the next call. Errors of the
 * loader (a truncated file, say) are returned here, for the step they hit. */
int wf_feeder_next(struct wf_feeder *f, struct wf_feed_batch *b);
void wf_feeder_stats(struct wf_feeder *f, struct wf_feeder_stats *st);
void wf_feeder_free(struct wf_feeder *f);
const char *wf_place_name(int placement);
/* Parses "auto", "cpu" or "device"; -1 for anything else. */
int wf_place_parse(const char *s);

#endif
