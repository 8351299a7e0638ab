/*
 * data layer: the feeder (include/weft/feeder.h). One mutex guards the
 * queue, the claim counter and the controller; batches are prepared outside
 * it. Step t lives in slot t % (depth + 1): depth batches ahead plus the one
 * training holds. A step is claimed exactly once, by a pool thread (cpu) or
 * by training itself (device), so every batch is prepared once and handed
 * on in order.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/data.h"
#include "weft/feeder.h"
#include "weft/safetensors.h"

enum { FREE, CLAIMED, READY };

_Static_assert(sizeof(float) == sizeof(int32_t), "a sample value (float32 or int32) is 4 bytes");

struct slot {
    long step;
    int state;
    int placement; /* who prepared it */
    int rc;
    char err[512];
    uint32_t *ids;
    void *x;      /* n * x_per values of the store's x_dtype (4 bytes each) */
    int32_t *y;   /* n * y_per */
    int32_t *len; /* n, when the store has_len */
};

struct wf_feeder {
    struct wf_loader *l;
    struct wf_feeder_opts o;
    int n;         /* samples a batch */
    size_t x_per;  /* values a sample (c*h*w floats, or T ids) */
    size_t x_size; /* bytes a value */
    size_t y_per;  /* labels a sample */
    int x_dtype;   /* WF_F32 or WF_I32 */
    int has_len;   /* samples carry a length */
    int ns;        /* slots */
    struct slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long next_claim, next_deliver;
    int placement, stop;
    pthread_t *th;
    int nth;
    /* epoch orders: the two most recent (guarded by mu) */
    long perm_epoch[2];
    uint32_t *perm[2];
    int n_samples;
    /* occupancy: ready batches integrated over time */
    int ready;
    double occ_t, occ_int;
    /* the current window */
    double win_t0, win_wait, win_occ0;
    long win_steps, windows;
    /* controller */
    int probing;        /* this window is a trial of the other placement */
    int trial_started;  /* ... and a batch the trial placement prepared has been delivered */
    int confirming;     /* this window checks a trial that was kept */
    double rate_before; /* steps/s of the window before the trial */
    int since;          /* windows since the last decision */
    int hold, backoff;  /* windows before the next trial; the hold after the next decision */
    struct wf_feeder_stats st;
};

const char *wf_place_name(int p) { return p == WF_PLACE_CPU ? "cpu" : p == WF_PLACE_DEVICE ? "device" : "auto"; }

int wf_place_parse(const char *s) {
    if (!strcmp(s, "auto")) return WF_PLACE_AUTO;
    if (!strcmp(s, "cpu")) return WF_PLACE_CPU;
    if (!strcmp(s, "device")) return WF_PLACE_DEVICE;
    return -1;
}

/* Called with mu held whenever `ready` is about to change. */
static void occ_tick(struct wf_feeder *f) {
    double t = wf_now();
    f->occ_int += f->ready * (t - f->occ_t);
    f->occ_t = t;
}

/* The ids of step t into ids (mu held). */
static void step_ids(struct wf_feeder *f, long t, uint32_t *ids) {
    long epoch = t / f->o.steps_per_epoch, es = t % f->o.steps_per_epoch;
    int k = f->perm_epoch[0] == epoch ? 0 : f->perm_epoch[1] == epoch ? 1 : -1;
    if (k < 0) { /* replace the older order */
        k = f->perm_epoch[0] < f->perm_epoch[1] ? 0 : 1;
        wf_epoch_order(f->perm[k], (uint32_t)f->n_samples, f->o.seed, (uint64_t)epoch);
        f->perm_epoch[k] = epoch;
    }
    memcpy(ids, f->perm[k] + (size_t)es * (size_t)f->o.batch + (size_t)f->o.lo, sizeof(uint32_t) * (size_t)f->n);
}

struct par {
    struct wf_feeder *f;
    struct slot *s;
    long epoch;
    pthread_mutex_t mu;
};

static void prepare_range(void *ctx, long b, long e) {
    struct par *p = ctx;
    struct wf_feeder *f = p->f;
    struct slot *s = p->s;
    void *x = s->x ? (char *)s->x + (size_t)b * f->x_per * f->x_size : NULL; /* NULL: labels only */
    int rc = wf_loader_fetch_any(f->l, s->ids + b, (int)(e - b), (uint64_t)p->epoch, x, s->y + (size_t)b * f->y_per,
                                 s->len ? s->len + b : NULL);
    if (rc < 0) {
        pthread_mutex_lock(&p->mu);
        if (!s->rc) {
            s->rc = rc;
            snprintf(s->err, sizeof s->err, "%s", wf_errmsg());
        }
        pthread_mutex_unlock(&p->mu);
    }
}

/* Prepares the claimed slot s: on this thread, or on the compute threads. */
static void prepare(struct wf_feeder *f, struct slot *s, int on_device) {
    struct par p = {.f = f, .s = s, .epoch = s->step / f->o.steps_per_epoch};
    pthread_mutex_init(&p.mu, NULL);
    s->rc = 0;
    s->err[0] = 0;
    if (on_device)
        wf_parallel_for(f->n, 1, prepare_range, &p);
    else
        prepare_range(&p, 0, f->n);
    pthread_mutex_destroy(&p.mu);
    if (s->rc && !strstr(s->err, "step "))
        snprintf(s->err + strlen(s->err), sizeof s->err - strlen(s->err), " (preparing step %ld)", s->step);
}

/* Claims the next step into its slot (mu held); NULL when none may be claimed. */
static struct slot *claim(struct wf_feeder *f) {
    long t = f->next_claim;
    if (t >= f->o.end_step || t >= f->next_deliver + f->o.depth) return NULL;
    struct slot *s = &f->slots[t % f->ns];
    if (s->state != FREE) return NULL;
    f->next_claim++;
    s->step = t;
    s->state = CLAIMED;
    step_ids(f, t, s->ids);
    return s;
}

static void finish(struct wf_feeder *f, struct slot *s, int placement) {
    occ_tick(f);
    s->placement = placement;
    s->state = READY;
    f->ready++;
    pthread_cond_broadcast(&f->cv);
}

static void *pool_main(void *arg) {
    struct wf_feeder *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        struct slot *s = f->placement == WF_PLACE_CPU ? claim(f) : NULL;
        if (!s) {
            pthread_cond_wait(&f->cv, &f->mu);
            continue;
        }
        pthread_mutex_unlock(&f->mu);
        prepare(f, s, 0);
        pthread_mutex_lock(&f->mu);
        finish(f, s, WF_PLACE_CPU);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int wf_feeder_new(struct wf_feeder **out, struct wf_loader *l, const struct wf_feeder_opts *o) {
    *out = NULL;
    struct wf_feeder_opts op = *o;
    if (op.hi == 0) op.hi = op.batch;
    if (op.workers <= 0) op.workers = 1;
    if (op.depth <= 0) op.depth = 3;
    if (op.window <= 0) op.window = 16;
    const struct wf_store_info *info = wf_store_info(wf_loader_store(l));
    if (op.batch <= 0 || op.lo < 0 || op.hi <= op.lo || op.hi > op.batch || op.steps_per_epoch <= 0 ||
        (long)op.batch * op.steps_per_epoch > info->n || op.first_step < 0 || op.end_step < op.first_step)
        return wf_error(WF_ERR_INVALID,
                        "feeder: bad batch geometry (batch %d, positions [%d, %d), %ld steps an epoch, steps [%ld, "
                        "%ld), %d samples)",
                        op.batch, op.lo, op.hi, op.steps_per_epoch, op.first_step, op.end_step, info->n);
    if (op.placement < WF_PLACE_AUTO || op.placement > WF_PLACE_DEVICE)
        return wf_error(WF_ERR_INVALID, "feeder: unknown placement %d", op.placement);
    struct wf_feeder *f = wf_calloc(1, sizeof *f);
    if (!f) return wf_error(WF_ERR_NOMEM, "feeder: out of memory");
    f->l = l;
    f->o = op;
    f->n = op.hi - op.lo;
    f->x_per = (size_t)info->x_per;
    f->x_size = sizeof(float); /* float32 or int32: 4 bytes either way */
    f->x_dtype = info->x_dtype;
    f->y_per = (size_t)info->y_per;
    f->has_len = info->has_len;
    f->n_samples = info->n;
    f->ns = op.depth + 1;
    f->slots = wf_calloc((size_t)f->ns, sizeof *f->slots);
    f->perm[0] = wf_malloc(sizeof(uint32_t) * (size_t)info->n);
    f->perm[1] = wf_malloc(sizeof(uint32_t) * (size_t)info->n);
    f->perm_epoch[0] = f->perm_epoch[1] = -1;
    int ok = f->slots && f->perm[0] && f->perm[1];
    for (int i = 0; ok && i < f->ns; i++) {
        struct slot *s = &f->slots[i];
        s->step = -1;
        s->ids = wf_malloc(sizeof(uint32_t) * (size_t)f->n);
        s->x = op.labels_only ? NULL : wf_aalloc(f->x_size * (size_t)f->n * f->x_per);
        s->y = wf_malloc(sizeof(int32_t) * (size_t)f->n * f->y_per);
        s->len = f->has_len ? wf_malloc(sizeof(int32_t) * (size_t)f->n) : NULL;
        ok = s->ids && (s->x || op.labels_only) && s->y && (s->len || !f->has_len);
    }
    if (!ok) {
        f->nth = 0;
        wf_feeder_free(f);
        return wf_error(WF_ERR_NOMEM, "feeder: out of memory for %d batches of %d samples", op.depth + 1, f->n);
    }
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->next_claim = f->next_deliver = op.first_step;
    f->placement = op.placement == WF_PLACE_DEVICE ? WF_PLACE_DEVICE : WF_PLACE_CPU;
    f->occ_t = f->win_t0 = wf_now();
    f->hold = 4;
    f->backoff = 16;
    f->st.placement = f->placement;
    snprintf(f->st.decision, sizeof f->st.decision, "%s (%s)", wf_place_name(f->placement),
             op.placement == WF_PLACE_AUTO ? "auto: starting on the cpu pool" : "fixed by the job");
    f->th = wf_calloc((size_t)op.workers, sizeof *f->th);
    if (!f->th) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        f->nth = 0;
        wf_feeder_free(f);
        return wf_error(WF_ERR_NOMEM, "feeder: out of memory");
    }
    for (int i = 0; f->th && i < op.workers && op.placement != WF_PLACE_DEVICE; i++) {
        if (pthread_create(&f->th[i], NULL, pool_main, f)) break;
        f->nth++;
    }
    if (op.placement != WF_PLACE_DEVICE && f->nth == 0) {
        wf_feeder_free(f);
        return wf_error(WF_ERR_IO, "feeder: cannot start a preprocessing thread");
    }
    *out = f;
    return WF_OK;
}

void wf_feeder_free(struct wf_feeder *f) {
    if (!f) return;
    if (f->nth) {
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        for (int i = 0; i < f->nth; i++)
            pthread_join(f->th[i], NULL);
    }
    if (f->th || f->nth) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
    }
    for (int i = 0; f->slots && i < f->ns; i++) {
        wf_free(f->slots[i].ids);
        wf_afree(f->slots[i].x);
        wf_free(f->slots[i].y);
        wf_free(f->slots[i].len);
    }
    wf_free(f->slots);
    wf_free(f->perm[0]);
    wf_free(f->perm[1]);
    wf_free(f->th);
    wf_free(f);
}

static void set_placement(struct wf_feeder *f, int p, const char *why) {
    if (p != f->placement) f->st.switches++;
    f->placement = p;
    snprintf(f->st.decision, sizeof f->st.decision, "%s (%s)", wf_place_name(p), why);
    pthread_cond_broadcast(&f->cv);
}

/* At the end of a window (mu held): the auto controller. A trial runs one
 * window on the other placement and keeps it when that window served over
 * 3 % more steps per second than the window before it, and the window after
 * it still served more; otherwise it goes back.
 * Trials start at once when the queue runs dry while training waits, else
 * after `hold` windows (4, then 16, 32, 64, ... after each decision): on a
 * CPU-only machine a pool that keeps the queue full may still take cores
 * from the kernels. */
static void end_window(struct wf_feeder *f, double now) {
    double wall = now - f->win_t0;
    if (wall <= 0) return;
    double rate = (double)f->win_steps / wall;
    f->st.device_util = 1.0 - f->win_wait / wall;
    if (f->placement == WF_PLACE_CPU) f->st.occupancy = (f->occ_int - f->win_occ0) / wall;
    f->windows++;
    int here = f->placement, other = here == WF_PLACE_CPU ? WF_PLACE_DEVICE : WF_PLACE_CPU;
    int starved = here == WF_PLACE_CPU && f->st.occupancy < 0.5 && f->st.device_util < 0.9;
    /* the first window fills the queue: it decides only when the queue stayed dry */
    if (f->o.placement == WF_PLACE_AUTO && (f->windows > 1 || starved)) {
        char why[160];
        if (f->probing) { /* the trial window is over: keep it (to be confirmed), or go back */
            int keep = rate > 1.03 * f->rate_before; /* a 3 % margin: one window's noise does not flip it */
            snprintf(why, sizeof why, "%s %.1f vs %s %.1f steps/s", wf_place_name(here), rate, wf_place_name(other),
                     f->rate_before);
            if (keep)
                snprintf(f->st.decision, sizeof f->st.decision, "%s (%s)", wf_place_name(here), why);
            else
                set_placement(f, other, why);
            f->probing = 0;
            f->confirming = keep;
            f->since = 0;
            f->hold = f->backoff;
            if (f->backoff < (1 << 20)) f->backoff *= 2; /* a million windows: no more trials in practice */
        } else if (f->confirming) {                      /* a kept trial must win a second window too */
            f->confirming = 0;
            if (rate < f->rate_before) {
                snprintf(why, sizeof why, "not confirmed: %s %.1f vs %s %.1f steps/s", wf_place_name(here), rate,
                         wf_place_name(other), f->rate_before);
                set_placement(f, other, why);
            }
        } else if (starved || ++f->since > f->hold) {
            if (starved)
                snprintf(why, sizeof why, "trial: queue %.2f full while training waits %.0f%% of the time",
                         f->st.occupancy, 100 * (1 - f->st.device_util));
            else
                snprintf(why, sizeof why, "trial after %d windows on %s", f->since - 1, wf_place_name(here));
            f->rate_before = rate;
            f->probing = 1;
            f->trial_started = 0;
            set_placement(f, other, why);
        }
    }
    f->win_t0 = now;
    f->win_wait = 0;
    f->win_steps = 0;
    f->win_occ0 = f->occ_int;
}

int wf_feeder_next(struct wf_feeder *f, struct wf_feed_batch *b) {
    memset(b, 0, sizeof *b);
    double t0 = wf_now();
    pthread_mutex_lock(&f->mu);
    long t = f->next_deliver;
    b->step = t;
    if (t >= f->o.end_step) {
        pthread_mutex_unlock(&f->mu);
        return WF_OK;
    }
    /* the batch training held until now is free for the pool again */
    if (t > f->o.first_step) f->slots[(t - 1) % f->ns].state = FREE;
    pthread_cond_broadcast(&f->cv);
    struct slot *s = &f->slots[t % f->ns];
    double waited = 0;
    for (;;) {
        if (s->step == t && s->state == READY) break;
        if (f->placement == WF_PLACE_DEVICE && f->next_claim == t) {
            struct slot *c = claim(f);
            pthread_mutex_unlock(&f->mu);
            prepare(f, c, 1);
            pthread_mutex_lock(&f->mu);
            finish(f, c, WF_PLACE_DEVICE);
            continue;
        }
        double w0 = wf_now();
        pthread_cond_wait(&f->cv, &f->mu);
        waited += wf_now() - w0;
    }
    occ_tick(f);
    f->ready--;
    f->next_deliver++;
    double now = wf_now();
    f->win_wait += waited;
    f->win_steps++;
    f->st.batches++;
    f->st.wait_s += now - t0;
    if (s->placement == WF_PLACE_CPU)
        f->st.batches_cpu++;
    else
        f->st.batches_device++;
    if (f->probing && !f->trial_started) {
        /* a trial is timed from its first batch on: batches the other placement
         * prepared before the switch, and the wait for the first one, are not its */
        f->trial_started = s->placement == f->placement;
        f->win_t0 = now;
        f->win_wait = 0;
        f->win_steps = 0;
        f->win_occ0 = f->occ_int;
    } else if (f->win_steps >= (f->windows ? f->o.window : (f->o.window + 1) / 2)) {
        end_window(f, now); /* the first window, which fills the queue, is half as long */
    }
    f->st.placement = f->placement;
    int rc = s->rc;
    char err[512];
    if (rc) snprintf(err, sizeof err, "%s", s->err);
    pthread_mutex_unlock(&f->mu);
    if (rc) return wf_error(rc, "%s", err);
    b->epoch = (int)(t / f->o.steps_per_epoch);
    b->epoch_step = t % f->o.steps_per_epoch;
    b->n = f->n;
    b->x = f->x_dtype == WF_F32 ? s->x : NULL;
    b->xv = s->x;
    b->x_dtype = f->x_dtype;
    b->x_per = (int)f->x_per;
    b->y_per = (int)f->y_per;
    b->len = s->len;
    b->y = s->y;
    b->ids = s->ids;
    b->wait_s = now - t0;
    b->placement = s->placement;
    return WF_OK;
}

void wf_feeder_stats(struct wf_feeder *f, struct wf_feeder_stats *st) {
    pthread_mutex_lock(&f->mu);
    *st = f->st;
    pthread_mutex_unlock(&f->mu);
}
