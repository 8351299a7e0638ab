/*
 * cluster layer: the worker agent. It registers with the coordinator,
 * compiles the stage sub-graph it is sent (its own topological order,
 * kernels, memory plan and send/recv endpoints), waits at the compile
 * barrier, connects to its pipeline and data-parallel peers and runs its
 * stage's schedule step after step.
 *
 * Threads: the main thread computes; a control thread (control.c) owns
 * reading the coordinator connection; a sender thread writes activations and gradients to peers so a
 * stage never blocks in a send while its neighbour blocks in one to it.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "weft/cluster.h"
#include "weft/core.h"
#include "weft/data.h"
#include "weft/exec.h"
#include "weft/job.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"
#include "weft/step.h"
#include "weft/train.h"

#include "cluster_int.h"
#include "control.h"

#define PEER_TIMEOUT 120.0 /* a peer's activation can take a long step; failures come by heartbeat */
#define QN 64
#define STOPPED 1 /* run_job: the coordinator took this worker out of the node set */

/* ---- sender thread ---- */

struct sitem {
    struct wf_conn *c;
    int type;
    uint8_t hdr[WF_BLOCK_HDR];
    float *buf;       /* owned copy (pooled), or NULL */
    const float *src; /* what is sent: buf, or the caller's memory (zero-copy) */
    size_t cap, n;    /* floats */
    int64_t step;     /* for the trace */
    int mb;
    int started; /* the poster sent part of it (part) */
    struct wf_send_part part;
};

struct sbuf {
    float *p;
    size_t cap;
};

struct sender {
    struct sbuf pool[QN]; /* sent buffers, free for the next post */
    int npool;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sitem it[QN];
    int head, count, stop, err;
    char errmsg[512];
    pthread_t th;
    double busy;
    struct wf_trace_ev *tr; /* with --trace: when each message went out (kind TR_XMIT) */
    long ntr, trcap;
};

/* Counts a message going out (with s->mu held): busy time, and the trace. */
static void sender_xmit(struct sender *s, int64_t step, int mb, double t0, double t1) {
    s->busy += t1 - t0;
    if (s->ntr < s->trcap)
        s->tr[s->ntr++] = (struct wf_trace_ev){.kind = TR_XMIT, .mb = mb, .step = step, .t0 = t0, .t1 = t1};
}

static void *sender_main(void *arg) {
    struct sender *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->count && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (!s->count && s->stop) break;
        struct sitem *it = &s->it[s->head];
        pthread_mutex_unlock(&s->mu);
        double t0 = wf_now();
        size_t nb = it->n * sizeof(float);
        int rc = it->started ? 0 : wf_send2_begin(it->c, &it->part, it->type, it->hdr, sizeof it->hdr, it->src, nb);
        if (rc == 0) rc = wf_send2_rest(it->c, &it->part, it->hdr, sizeof it->hdr, it->src, nb, PEER_TIMEOUT);
        double t1 = wf_now();
        pthread_mutex_lock(&s->mu);
        sender_xmit(s, it->step, it->mb, t0, t1);
        if (rc < 0 && !s->err) {
            s->err = rc;
            snprintf(s->errmsg, sizeof s->errmsg, "%s", wf_errmsg());
        }
        if (it->buf) s->pool[s->npool++] = (struct sbuf){it->buf, it->cap}; /* back to the pool */
        it->buf = NULL;
        it->src = NULL;
        it->cap = 0;
        it->started = 0;
        s->head = (s->head + 1) % QN;
        s->count--;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Sends data to peer c, or queues it for the sender thread: a copy, or with
 * copy = 0 data itself, which the caller must leave untouched until the peer
 * has provably received it. When nothing is queued, this thread hands the
 * kernel what the socket takes at once (often the whole message) and queues
 * only the rest: waking the sender thread costs milliseconds when the
 * machine's cores are all computing (bench/PIPELINE.md). */
static int sender_post(struct sender *s, struct wf_conn *c, int type, int64_t step, int mb, const float *data, size_t n,
                       int copy) {
    pthread_mutex_lock(&s->mu);
    while (s->count == QN && !s->err)
        pthread_cond_wait(&s->cv, &s->mu);
    if (s->err) {
        int rc = wf_error(s->err, "%s", s->errmsg);
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    int idle = s->count == 0; /* and stays so: only this thread posts */
    struct sitem *it = &s->it[(s->head + s->count) % QN];
    pthread_mutex_unlock(&s->mu);
    size_t nb = n * sizeof(float);
    wf_msg_block_hdr(it->hdr, step, (uint32_t)mb, nb);
    it->started = 0;
    if (idle) {
        double t0 = wf_now();
        int rc = wf_send2_begin(c, &it->part, type, it->hdr, sizeof it->hdr, data, nb);
        double t1 = wf_now();
        pthread_mutex_lock(&s->mu);
        sender_xmit(s, step, mb, t0, t1);
        pthread_mutex_unlock(&s->mu);
        if (rc != 0) return rc < 0 ? rc : WF_OK; /* an error, or all of it sent */
        it->started = 1;
    }
    pthread_mutex_lock(&s->mu);
    /* reuse a buffer that has been sent: memory stays at the messages in flight */
    if (copy && !it->buf && s->npool > 0) {
        s->npool--;
        it->buf = s->pool[s->npool].p;
        it->cap = s->pool[s->npool].cap;
    }
    pthread_mutex_unlock(&s->mu);
    if (it->started && it->part.shm && it->part.off == it->part.len)
        copy = 0; /* the payload is in shared memory: only a descriptor is left */
    if (copy && it->cap < n) {
        wf_afree(it->buf);
        it->buf = wf_aalloc(nb);
        it->cap = it->buf ? n : 0;
        /* part of the frame is out: finish it here rather than cut the stream */
        if (!it->buf && it->started)
            return wf_send2_rest(c, &it->part, it->hdr, sizeof it->hdr, data, nb, PEER_TIMEOUT);
        if (!it->buf) return wf_error(WF_ERR_NOMEM, "out of memory queueing a send to %s", c->name);
    }
    if (copy) memcpy(it->buf, data, nb); /* whole, also when part is sent: the rest is sent from the same offsets */
    it->src = copy ? it->buf : data;
    it->n = n;
    it->c = c;
    it->type = type;
    it->step = step;
    it->mb = mb;
    pthread_mutex_lock(&s->mu);
    s->count++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return WF_OK;
}

/* Waits until everything queued is sent; returns the first error. */
static int sender_flush(struct sender *s) {
    pthread_mutex_lock(&s->mu);
    while (s->count && !s->err)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->err ? wf_error(s->err, "%s", s->errmsg) : WF_OK;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- the stage ---- */

struct stage {
    const char *in_name, *out_name, *x_name, *y_name, *len_name; /* from ASSIGN; "" when absent */
    struct wf_job job;
    struct wf_model model;
    int S, s, D, r, K, sched, w, k0, nk;
    struct wf_exec ex, eval, eval_rest;
    int has_rest, train_bwd;
    int nslots;
    unsigned char **arenas;
    float *params, *grads, *opt_a, *opt_b;
    int64_t *acc;
    int64_t n_params;
    struct wf_data_src data;
    struct wf_feeder *feed;          /* this replica's part of each global batch; NULL on a stage without data inputs */
    float *xs;                       /* gather scratch for a stage without the image input */
    int32_t *ys;                     /* ... without the label input */
    struct wf_conn prev, next;       /* received on by this thread */
    struct wf_conn prev_tx, next_tx; /* the same sockets (dup), sent on by the sender thread: an error on
                                      * one side closes only that side's descriptor */
    int has_prev, has_next;
    struct wf_conn *dp_conns;
    struct wf_conn **dp_peers;
    struct wf_group dp;
    struct wf_reducer *red;
    long step, epoch_step, steps_per_epoch, total;
    int epoch;
    double t_idle; /* compute and communication: step_.t_compute, step_.t_comm */
    struct wf_trace_ev *tr;
    long ntr, trcap;
    int tracing;
    struct sender snd;
    struct control *ct;
    struct wf_step step_;    /* the step (exec layer), over the links below */
    int elastic, snap_every; /* elastic job: snapshots every step, a copy for a peer every snap_every */
    long start_step;
    uint32_t *ids; /* this step's sample ids (last stage): reported with the losses */
    int n_ids;
    uint32_t ct_lost; /* times the coordinator was lost before the ASSIGN was taken on (ct_losses) */
};

/* What the job sends goes only to the coordinator that assigned it, none
 * registered with again after losing it. */
static int job_send(struct stage *st, const struct wf_msg *m) { return ctl_send_since(st->ct, m, st->ct_lost); }

static void trace(struct stage *st, int kind, int mb, double t0, double t1) {
    if (!st->tracing || st->ntr >= st->trcap) return;
    st->tr[st->ntr++] = (struct wf_trace_ev){.kind = (uint8_t)kind, .mb = mb, .step = st->step, .t0 = t0, .t1 = t1};
}

static int value_of(const struct wf_exec *e, const char *name) {
    return name && *name ? wf_graph_find(&e->prog.g, name) : -1;
}

static void stage_free(struct stage *st) {
    wf_exec_free(&st->ex);
    wf_exec_free(&st->eval);
    wf_exec_free(&st->eval_rest);
    for (int i = 1; st->arenas && i < st->nslots; i++) /* arenas[0] is the executor's own */
        wf_afree(st->arenas[i]);
    wf_free(st->arenas);
    wf_afree(st->params);
    wf_afree(st->grads);
    wf_afree(st->opt_a);
    wf_afree(st->opt_b);
    wf_afree(st->acc);
    wf_feeder_free(st->feed);
    wf_afree(st->xs);
    wf_afree(st->ys);
    wf_free(st->tr);
    wf_free(st->snd.tr);
    wf_step_free(&st->step_);
    wf_free(st->ids);
    wf_data_close(&st->data);
    wf_model_free(&st->model);
    wf_job_free(&st->job);
    if (st->red) wf_reducer_destroy(st->red);
    ct_untrack_all(st->ct);
    wf_conn_close(&st->prev);
    wf_conn_close(&st->next);
    wf_conn_close(&st->prev_tx);
    wf_conn_close(&st->next_tx);
    for (int i = 0; st->dp_conns && i < st->D; i++)
        wf_conn_close(&st->dp_conns[i]);
    wf_free(st->dp_conns);
    wf_free(st->dp_peers);
}

/* Compiles the stage: the train program at the micro-batch size, the eval
 * programs, the memory for in-flight micro-batches. */
static int stage_compile(struct stage *st, const struct wf_msg *a, const struct wf_msg *rs, double *seconds,
                         uint64_t *bytes, uint64_t *nodes) {
    double t0 = wf_now();
    int rc;
    if ((rc = wf_job_parse(&st->job, NULL, a->job_text)) < 0) return wf_error_prefix(rc, "the job sent");
    const struct wf_job *j = &st->job;
    char where[64];
    snprintf(where, sizeof where, "<stage %u sub-graph>", a->stage);
    if ((rc = wf_model_parse(&st->model, where, a->model_text)) < 0) return rc;
    st->S = (int)a->n_stages;
    st->s = (int)a->stage;
    st->D = (int)a->n_replicas;
    st->r = (int)a->replica;
    st->K = (int)a->micro_batches;
    st->sched = (int)a->schedule;
    st->w = (int)a->worker;
    st->k0 = st->r * st->K / st->D;
    st->nk = (st->r + 1) * st->K / st->D - st->k0;
    st->tracing = (int)a->trace;
    if (j->batch % st->K)
        return wf_error(WF_ERR_INVALID, "batch %d is not a multiple of %d micro-batches", j->batch, st->K);
    int mb = j->batch / st->K;
    wf_blas_set_threads(a->threads ? (int)a->threads : j->threads);
    if ((rc = wf_data_open(&st->data, j)) < 0) return rc;
    int n_train = st->data.itrain->n, n_test = st->data.itest->n;
    struct wf_stage_opts o = {.seed = *a->out && a->out_grad ? a->out : NULL};
    if (*a->in && a->in_grad) o.diff_in[o.n_diff_in++] = a->in;
    st->train_bwd = st->s == st->S - 1 || o.seed;
    if ((rc = wf_exec_init_stage(&st->ex, &st->model, mb, st->train_bwd, &o, NULL, NULL)) < 0) return rc;
    const char *fail = getenv("WEFT_TEST_FAIL_COMPILE"); /* fault injection for tests: "stage index" */
    if (fail && atoi(fail) == st->s)
        return wf_error(WF_ERR_INVALID, "compile of stage %d failed on purpose (WEFT_TEST_FAIL_COMPILE)", st->s);
    st->n_params = st->ex.prog.n_param_floats;
    size_t pb = sizeof(float) * (size_t)(st->n_params + 1);
    if ((rc = wf_mem_check_params(&st->ex.prog, where, "the stage's parameters, gradients and optimizer state",
                                  pb * (size_t)(4 + wf_opt_slots(j)))) < 0)
        return rc;
    st->params = wf_aalloc(pb);
    st->grads = wf_aalloc(pb);
    int slots = wf_opt_slots(j);
    if (slots >= 1) st->opt_a = wf_aalloc(pb);
    if (slots >= 2) st->opt_b = wf_aalloc(pb);
    st->acc = wf_aalloc(sizeof(int64_t) * (size_t)(st->n_params + 1));
    size_t chw = (size_t)st->data.itrain->x_per; /* 4-byte values (f32 pixels or i32 ids) a sample */
    int eb = WF_MIN(j->eval_batch, n_test), big = WF_MAX(mb, eb);
    st->xs = wf_aalloc(sizeof(float) * chw * (size_t)big);
    st->ys = wf_aalloc(sizeof(int32_t) * (size_t)big);
    st->nslots = st->sched == WF_SCHED_GPIPE ? st->nk : WF_MIN(st->nk, st->S - st->s);
    if (st->nslots < 1) st->nslots = 1;
    st->arenas = wf_calloc((size_t)st->nslots, sizeof *st->arenas);
    if (!st->params || !st->grads || (slots >= 1 && !st->opt_a) || (slots >= 2 && !st->opt_b) || !st->acc || !st->xs ||
        !st->ys || !st->arenas)
        return wf_error(WF_ERR_NOMEM, "out of memory for stage %d", st->s);
    st->arenas[0] = st->ex.arena;
    for (int i = 1; i < st->nslots; i++)
        if (!(st->arenas[i] = wf_aalloc(st->ex.prog.arena_bytes)))
            return wf_error(WF_ERR_NOMEM, "out of memory for %d micro-batches of activations", st->nslots);
    st->ex.params = st->params;
    st->ex.grads = st->grads;
    const struct wf_graph *g = &st->ex.prog.g;
    /* eval: replica 0 of each stage runs the test set through the pipeline */
    if ((rc = wf_exec_init_stage(&st->eval, &st->model, eb, 0, NULL, st->params, NULL)) < 0) return rc;
    if (n_test % eb) {
        if ((rc = wf_exec_init_stage(&st->eval_rest, &st->model, n_test % eb, 0, NULL, st->params, NULL)) < 0)
            return rc;
        st->has_rest = 1;
    }
    /* the data inputs of every program that is fed, against the dataset (the coordinator checked the
     * whole model at one batch; a dimension fixed to one batch size fails here) */
    struct wf_exec *fed[3] = {&st->ex, &st->eval, st->has_rest ? &st->eval_rest : NULL};
    for (int k = 0; k < 3; k++)
        if (fed[k] && (rc = wf_check_data_inputs(&fed[k]->prog.g, k ? st->data.itest : st->data.itrain,
                                                 value_of(fed[k], st->x_name), value_of(fed[k], st->y_name),
                                                 value_of(fed[k], st->len_name))) < 0)
            return rc;
    /* parameters: seeded by name, the same values the whole model starts from */
    for (int i = 0; i < g->n_params; i++) {
        const struct wf_value *v = &g->v[g->params[i]];
        wf_init_param(v, st->params + st->ex.prog.offset[g->params[i]], j->seed);
    }
    if (j->init) {
        struct wf_st_file f;
        if ((rc = wf_st_load(&f, j->init)) < 0) return rc;
        for (int i = 0; i < g->n_params && rc == WF_OK; i++) {
            const struct wf_value *v = &g->v[g->params[i]];
            rc = wf_load_param(&f, v->name, v, st->params + st->ex.prog.offset[g->params[i]]);
        }
        wf_st_free(&f);
        if (rc < 0) return rc;
    }
    st->steps_per_epoch = n_train / j->batch;
    if (j->resume) { /* the coordinator has checked the checkpoint against the whole model */
        struct wf_ckpt_pos pos;
        if ((rc = wf_checkpoint_read(j->resume, j, NULL, st->steps_per_epoch, g, st->ex.prog.offset, st->params,
                                     st->opt_a, st->opt_b, &pos)) < 0)
            return rc;
        st->step = pos.step;
        st->epoch = pos.epoch;
        st->epoch_step = pos.epoch_step;
    }
    if (rs && rs->nbytes) { /* elastic recovery: the state the coordinator assembled from its peers' snapshots */
        int64_t n = st->n_params;
        size_t want = sizeof(float) * (size_t)n * (size_t)(1 + slots);
        if (rs->nbytes != want)
            return wf_error(WF_ERR_PEER, "the coordinator sent %llu bytes of state for stage %d, which holds %zu",
                            (unsigned long long)rs->nbytes, st->s, want);
        const float *src = rs->data;
        memcpy(st->params, src, sizeof(float) * (size_t)n);
        if (slots >= 1) memcpy(st->opt_a, src + n, sizeof(float) * (size_t)n);
        if (slots >= 2) memcpy(st->opt_b, src + 2 * n, sizeof(float) * (size_t)n);
        st->step = rs->step;
        st->epoch = (int)rs->epoch;
        st->epoch_step = rs->epoch_step;
    }
    st->start_step = st->step;
    st->elastic = (int)a->elastic;
    st->snap_every = a->snapshot_every > 0 ? (int)a->snapshot_every : 10;
    if (st->s == st->S - 1 && !(st->ids = wf_malloc(sizeof(uint32_t) * (size_t)(st->nk * mb + 1))))
        return wf_error(WF_ERR_NOMEM, "out of memory");
    /* a stage fed from the dataset reads this replica's micro-batches of every global batch */
    if ((*st->x_name || *st->y_name || *st->len_name) &&
        (rc = wf_data_feeder(&st->data, j, st->step, st->k0 * mb, (st->k0 + st->nk) * mb, !*st->x_name, &st->feed)) < 0)
        return rc;
    st->total = st->steps_per_epoch * j->epochs;
    if (j->max_steps > 0 && j->max_steps < st->total) st->total = j->max_steps;
    if (st->tracing) {
        st->trcap = 1 << 20;
        st->tr = wf_malloc(sizeof *st->tr * (size_t)st->trcap);
        st->snd.trcap = 1 << 18;
        st->snd.tr = wf_malloc(sizeof *st->snd.tr * (size_t)st->snd.trcap);
        if (!st->tr || !st->snd.tr) st->tracing = 0;
        if (!st->snd.tr) st->snd.trcap = 0;
    }
    *seconds = wf_now() - t0;
    *bytes = (uint64_t)st->ex.prog.arena_bytes * (uint64_t)st->nslots + st->eval.prog.arena_bytes + pb * 4;
    *nodes = (uint64_t)st->ex.prog.n_exec;
    return WF_OK;
}

/* ---- links ---- */

struct want {
    int peer, link;
    struct wf_conn *c;
};

/* Pipeline peers on one machine move activations and gradients through
 * shared memory (src/comm/shm.c); WEFT_SHM=0 keeps them on the sockets.
 * Stage s offers to s + 1 and answers s - 1: offers never wait, so the
 * chain cannot deadlock. A ring holds two of the step's messages. */
static int stage_shm(struct stage *st) {
    const char *env = getenv("WEFT_SHM");
    int allow = !(env && !strcmp(env, "0")), rc = WF_OK;
    struct wf_shm *pending = NULL;
    if (st->has_next) {
        int v = value_of(&st->ex, st->out_name);
        uint64_t msg = WF_BLOCK_HDR + (v >= 0 ? (uint64_t)st->ex.prog.g.v[v].numel * sizeof(float) : 0);
        uint64_t ring = WF_MIN(2 * msg + (64u << 10), (uint64_t)256 << 20);
        rc = wf_shm_offer_send(&st->next, allow && msg >= WF_SHM_MIN ? ring : 0, &pending, CTL_TIMEOUT);
    }
    /* the neighbours may still be connecting to others: as long as a peer may take */
    if (rc >= 0 && st->has_prev) rc = wf_shm_answer(&st->prev, allow, PEER_TIMEOUT);
    if (rc >= 0 && st->has_next) return wf_shm_offer_finish(&st->next, pending, PEER_TIMEOUT);
    wf_shm_cancel(pending);
    return rc;
}

struct accepting {
    struct want *want;
    int nw, me, D, got;
    uint64_t job_id;
    struct control *ct;
};

/* An authenticated peer: one this stage is waiting for, or a late one of an older node set. */
static void accepted_peer(void *arg, struct wf_conn *c, struct wf_msg *h) {
    struct accepting *ax = arg;
    int found = 0;
    for (int i = 0; i < ax->nw && !found; i++) {
        struct want *w = &ax->want[i];
        if (h->role == WF_ROLE_PEER && h->job_id == ax->job_id && (int)h->id == w->peer && (int)h->link == w->link &&
            w->c->fd < 0) {
            *w->c = *c;
            wf_conn_set_name(w->c, "worker %d (stage %d, replica %d)", w->peer, w->peer / ax->D, w->peer % ax->D);
            ct_track(ax->ct, w->c->fd);
            found = 1;
            ax->got++;
        }
    }
    wf_msg_free(h);
    if (!found) { /* a late connection from an older node set: closed, not counted */
        WF_LOGW("worker", "worker %d: refused an unexpected peer connection", ax->me);
        wf_conn_close(c);
    }
}

/* Connects to or accepts from every peer this stage talks to. The lower
 * worker index connects, the higher accepts, so there is no cycle of
 * waits; each accepted connection says who it is in its HELLO. */
static int stage_connect(struct stage *st, const struct wf_msg *a, int lfd, const struct wf_token *tok) {
    int D = st->D;
    int me = st->w;
    st->prev.fd = st->next.fd = st->prev_tx.fd = st->next_tx.fd = -1;
    st->dp_conns = wf_calloc((size_t)D, sizeof *st->dp_conns);
    st->dp_peers = wf_calloc((size_t)D, sizeof *st->dp_peers);
    if (!st->dp_conns || !st->dp_peers) return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < D; i++)
        st->dp_conns[i].fd = -1;
    struct want want[WF_MAX_WORKERS];
    int nw = 0;
    if (st->s > 0) want[nw++] = (struct want){(st->s - 1) * D + st->r, WF_LINK_PIPE, &st->prev};
    if (st->s < st->S - 1) want[nw++] = (struct want){(st->s + 1) * D + st->r, WF_LINK_PIPE, &st->next};
    for (int i = 0; i < D; i++)
        if (i != st->r) want[nw++] = (struct want){st->s * D + i, WF_LINK_DP, &st->dp_conns[i]};
    int rc = WF_OK, n_accept = 0;
    for (int i = 0; i < nw && rc == WF_OK; i++) {
        if (want[i].peer < me) {
            n_accept++;
            continue;
        }
        const struct wf_peer_addr *pa = &a->peers[want[i].peer];
        char name[96];
        snprintf(name, sizeof name, "worker %d (%s:%u)", want[i].peer, pa->host, pa->port);
        if ((rc = wf_tcp_connect(want[i].c, pa->host, (int)pa->port, name, CTL_TIMEOUT)) < 0) break;
        ct_track(st->ct, want[i].c->fd);
        struct wf_msg h = {
            .role = WF_ROLE_PEER, .job_id = a->job_id, .id = (uint64_t)me, .link = (uint32_t)want[i].link};
        rc = wf_auth_connect(want[i].c, tok, &h, CTL_TIMEOUT);
    }
    /* the peers this stage accepts come through a gate: a stranger's idle, slow or oversized
     * connection is dropped by deadline or cap and never holds the others up */
    struct accepting ax = {.want = want, .nw = nw, .job_id = a->job_id, .me = me, .D = D, .ct = st->ct};
    double deadline = wf_now() + CTL_TIMEOUT;
    struct wf_gate g;
    if (rc == WF_OK && n_accept > 0 && (rc = wf_gate_init(&g, lfd, tok, WF_GATE_CAP, 5.0)) == WF_OK) {
        while (ax.got < n_accept) {
            if (ct_stopping(st->ct)) {
                rc = wf_error(WF_ERR_PEER, "stopped by the coordinator while connecting");
                break;
            }
            if (wf_now() > deadline) {
                rc = wf_error(WF_ERR_TIMEOUT, "worker %d: %d of %d peers connected within %.0f s%s%s", me, ax.got,
                              n_accept, CTL_TIMEOUT, g.last_refusal[0] ? "; the latest refused: " : "", g.last_refusal);
                break;
            }
            struct pollfd pf[1 + WF_GATE_CAP];
            int np = wf_gate_pollfds(&g, pf);
            if (poll(pf, (nfds_t)np, 200) < 0 && errno != EINTR) {
                rc = wf_error(WF_ERR_IO, "worker %d: poll: %s", me, strerror(errno));
                break;
            }
            wf_gate_service(&g, pf, wf_now(), accepted_peer, &ax);
        }
        wf_gate_free(&g);
    }
    if (rc < 0) return rc;
    for (int i = 0; i < nw; i++)
        if (want[i].peer > me)
            wf_conn_set_name(want[i].c, "worker %d (stage %d, replica %d)", want[i].peer, want[i].peer / D,
                             want[i].peer % D);
    st->has_prev = st->s > 0;
    st->has_next = st->s < st->S - 1;
    if ((rc = stage_shm(st)) < 0) return rc;
    if (st->has_prev && (rc = wf_conn_dup(&st->prev_tx, &st->prev)) < 0) return rc;
    if (st->has_next && (rc = wf_conn_dup(&st->next_tx, &st->next)) < 0) return rc;
    for (int i = 0; i < D; i++)
        st->dp_peers[i] = i == st->r ? NULL : &st->dp_conns[i];
    st->dp = (struct wf_group){.rank = st->r, .size = D, .peers = st->dp_peers, .timeout_s = PEER_TIMEOUT};
    if (D > 1 && (rc = wf_reducer_create(&st->red, &st->dp)) < 0) return rc;
    return WF_OK;
}

/* ---- one step ---- */

/* Receives a frame of `type` for micro-batch mb into dst (n floats). */
static int recv_tensor(struct stage *st, struct wf_conn *c, int type, int64_t step, int mb, float *dst, size_t n) {
    double t0 = wf_now();
    struct wf_msg m;
    int rc = wf_msg_recv_block(c, &m, dst, n * sizeof(float), PEER_TIMEOUT);
    if (rc < 0) return rc;
    if (m.type != type || m.step != step || (int)m.first != mb || m.nbytes != n * sizeof(float))
        rc = wf_error(WF_ERR_PEER,
                      "%s sent %s for step %lld micro-batch %u (%llu bytes); expected %s for step %lld "
                      "micro-batch %d (%zu bytes)",
                      c->name, wf_msg_name(m.type), (long long)m.step, m.first, (unsigned long long)m.nbytes,
                      wf_msg_name(type), (long long)step, mb, n * sizeof(float));
    wf_msg_free(&m);
    double t1 = wf_now();
    st->t_idle += t1 - t0;
    trace(st, TR_RECV, mb, t0, t1);
    return rc;
}

/* The test samples [first, first + B) into the eval program's data inputs. */
static int gather_test(struct stage *st, struct wf_exec *e, int first, int B) {
    int xi = value_of(e, st->x_name), yi = value_of(e, st->y_name), li = value_of(e, st->len_name);
    if (xi < 0 && yi < 0 && li < 0) return WF_OK;
    uint32_t ids[4096];
    uint32_t *idp = B <= 4096 ? ids : wf_malloc(sizeof(uint32_t) * (size_t)B);
    if (!idp) return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int k = 0; k < B; k++)
        idp[k] = (uint32_t)(first + k);
    int rc = wf_eval_fetch(st->data.ltest, idp, B, xi >= 0 ? wf_exec_ptr(e, xi) : st->xs,
                           yi >= 0 ? wf_exec_ptr(e, yi) : NULL, li >= 0 ? wf_exec_ptr(e, li) : NULL);
    if (idp != ids) wf_free(idp);
    return rc;
}

/* ---- the step's links (include/weft/step.h) over this worker's transport ---- */

static int link_recv_act(void *ud, long step, int mb, float *dst, size_t n) {
    struct stage *st = ud;
    return recv_tensor(st, &st->prev, WF_M_ACT, step, mb, dst, n);
}

static int link_send_act(void *ud, long step, int mb, const float *src, size_t n, int copy) {
    struct stage *st = ud;
    double t0 = wf_now();
    int rc = sender_post(&st->snd, &st->next_tx, WF_M_ACT, step, mb, src, n, copy);
    trace(st, TR_SEND, mb, t0, wf_now());
    return rc;
}

static int link_recv_grad(void *ud, long step, int mb, float *dst, size_t n) {
    struct stage *st = ud;
    return recv_tensor(st, &st->next, WF_M_GRAD, step, mb, dst, n);
}

static int link_send_grad(void *ud, long step, int mb, const float *src, size_t n) {
    struct stage *st = ud;
    double t0 = wf_now();
    int rc = sender_post(&st->snd, &st->prev_tx, WF_M_GRAD, step, mb, src, n, 1);
    trace(st, TR_SEND, mb, t0, wf_now());
    return rc;
}

static void link_reduce_begin(void *ud) { wf_reducer_begin(((struct stage *)ud)->red); }

static int link_reduce_submit(void *ud, int64_t *acc, size_t n) {
    return wf_reducer_submit(((struct stage *)ud)->red, acc, n);
}

static int link_reduce_wait(void *ud) { return wf_reducer_wait(((struct stage *)ud)->red); }

/* Clipping with several stages: each stage's replica 0 sends its parts, the coordinator adds
 * every stage's in the whole model's parameter order, as one process does, and answers all. */
static int link_global_sumsq(void *ud, long step, const double *part, int n, double *total) {
    struct stage *st = ud;
    int rc;
    if (st->r == 0) {
        struct wf_msg m = {
            .type = WF_M_CLIP_PART, .step = step, .first = (uint32_t)st->s, .n = (uint32_t)n, .vals = (double *)part};
        if ((rc = job_send(st, &m)) < 0) return rc;
    }
    ctl_doing(st->ct, step + 1, "waiting for the global gradient norm");
    struct wf_msg m;
    ctl_next(st->ct, &m);
    int ok = m.type == WF_M_CLIP && m.step == step;
    *total = m.value;
    wf_msg_free(&m);
    if (!ok)
        return wf_error(WF_ERR_PEER, "the coordinator sent %s while the global norm of step %ld was due",
                        wf_msg_name(m.type), step + 1);
    return WF_OK;
}

static void link_doing(void *ud, long step, const char *what, int mb) {
    ctl_doing(((struct stage *)ud)->ct, step + 1, "%s of micro-batch %d", what, mb);
}

static void link_span(void *ud, int kind, int mb, double t0, double t1) { trace(ud, kind, mb, t0, t1); }

/* The step of this stage: its executor, memory and links. */
static int stage_step_init(struct stage *st) {
    st->step_ = (struct wf_step){
        .ex = &st->ex,
        .job = &st->job,
        .params = st->params,
        .grads = st->grads,
        .opt_a = st->opt_a,
        .opt_b = st->opt_b,
        .acc = st->acc,
        .n_params = st->n_params,
        .arenas = st->arenas,
        .nslots = st->nslots,
        .S = st->S,
        .s = st->s,
        .K = st->K,
        .k0 = st->k0,
        .nk = st->nk,
        .sched = st->sched,
        .train_bwd = st->train_bwd,
        .in_v = value_of(&st->ex, st->in_name),
        .out_v = value_of(&st->ex, st->out_name),
        .x_in = value_of(&st->ex, st->x_name),
        .y_in = value_of(&st->ex, st->y_name),
        .len_in = value_of(&st->ex, st->len_name),
        .links = {.ud = st, .doing = link_doing, .span = link_span},
    };
    struct wf_links *L = &st->step_.links;
    if (st->has_prev) {
        L->recv_act = link_recv_act;
        L->send_grad = link_send_grad;
    }
    if (st->has_next) {
        L->send_act = link_send_act;
        L->recv_grad = link_recv_grad;
    }
    if (st->red) {
        L->reduce_begin = link_reduce_begin;
        L->reduce_submit = link_reduce_submit;
        L->reduce_wait = link_reduce_wait;
    }
    if (st->S > 1) L->global_sumsq = link_global_sumsq;
    return wf_step_init(&st->step_);
}

static int stage_step(struct stage *st) {
    const struct wf_job *j = &st->job;
    int mb = j->batch / st->K;
    struct wf_feed_batch b = {0};
    if (st->feed) {
        int frc = wf_feeder_next(st->feed, &b);
        if (frc < 0) return frc;
        if (b.step != st->step || b.n != st->nk * mb)
            return wf_error(WF_ERR_INTERNAL, "the feeder handed step %ld for step %ld", b.step, st->step);
        st->t_idle += b.wait_s;
        if (st->ids && b.ids) {
            memcpy(st->ids, b.ids, sizeof(uint32_t) * (size_t)b.n);
            st->n_ids = b.n;
        }
    }
    double lr = wf_lr_at(j, st->step, st->steps_per_epoch * j->epochs), loss;
    int rc = wf_step_run(&st->step_, st->step, lr, st->feed ? &b : NULL, &loss);
    if (rc < 0) return rc;
    if (st->s == st->S - 1) {
        struct wf_msg m = {.type = WF_M_STEP_LOSS,
                           .step = st->step,
                           .first = (uint32_t)st->k0,
                           .n = (uint32_t)st->nk,
                           .vals = st->step_.losses,
                           .ids = st->ids,
                           .n_ids = (uint32_t)st->n_ids};
        if ((rc = job_send(st, &m)) < 0) return rc;
    }
    st->step++;
    st->epoch_step++;
    return WF_OK;
}

/* The test set through the pipeline (replica 0 of each stage). */
static int stage_eval(struct stage *st) {
    if (st->r != 0) return WF_OK;
    int n = st->data.itest->n, eb = st->eval.prog.g.batch, chunk = 0, rc = WF_OK;
    double sum = 0;
    long correct = 0;
    int has_acc = 0;
    double t0 = wf_now();
    ctl_doing(st->ct, st->step, "evaluating after epoch %d", st->epoch + 1);
    for (int i = 0; i < n && rc == WF_OK; i += eb, chunk++) {
        int B = WF_MIN(eb, n - i);
        struct wf_exec *e = B == eb ? &st->eval : &st->eval_rest;
        if ((rc = gather_test(st, e, i, B)) < 0) break;
        const struct wf_graph *g = &e->prog.g;
        int in_v = value_of(e, st->in_name), out_v = value_of(e, st->out_name);
        if (st->has_prev && (rc = recv_tensor(st, &st->prev, WF_M_ACT, -1 - st->epoch, chunk, wf_exec_ptr(e, in_v),
                                              (size_t)g->v[in_v].numel)) < 0)
            break;
        if ((rc = wf_exec_forward(e)) < 0) break;
        if (st->has_next) {
            rc = sender_post(&st->snd, &st->next_tx, WF_M_ACT, -1 - st->epoch, chunk, wf_exec_ptr(e, out_v),
                             (size_t)g->v[out_v].numel, 1);
        } else {
            rc = wf_eval_tally(e, B, &sum, &correct, &has_acc);
        }
    }
    trace(st, TR_EVAL, -1, t0, wf_now());
    if (rc < 0 || st->has_next) return rc;
    struct wf_msg m = {.type = WF_M_EVAL,
                       .epoch = st->epoch,
                       .loss_sum = sum,
                       .correct = has_acc ? (uint64_t)correct : WF_EVAL_NO_ACC,
                       .count = (uint64_t)n};
    return job_send(st, &m);
}

static int stage_send_state(struct stage *st) {
    if (st->r != 0) return WF_OK;
    int64_t n = st->n_params;
    int slots = (st->opt_a != NULL) + (st->opt_b != NULL);
    size_t bytes = sizeof(float) * (size_t)n * (size_t)(1 + slots);
    float *buf = wf_malloc(bytes + 4);
    if (!buf) return wf_error(WF_ERR_NOMEM, "out of memory");
    memcpy(buf, st->params, sizeof(float) * (size_t)n);
    if (st->opt_a) memcpy(buf + n, st->opt_a, sizeof(float) * (size_t)n);
    if (st->opt_b) memcpy(buf + 2 * n, st->opt_b, sizeof(float) * (size_t)n);
    struct wf_msg m = {.type = WF_M_STATE,
                       .step = st->step,
                       .epoch = st->epoch,
                       .epoch_step = st->epoch_step,
                       .data = buf,
                       .nbytes = bytes};
    int rc = job_send(st, &m);
    wf_free(buf);
    return rc;
}

/* Elastic jobs: the stage's state at this step boundary into the snapshot
 * ring (every step); at a multiple of snapshot_every (and where the set
 * started) also a copy for the peer that keeps it, by way of the coordinator. */
static int stage_snapshot(struct stage *st) {
    if (!st->elastic) return WF_OK;
    struct control *ct = st->ct;
    int64_t n = st->n_params;
    int slots = (st->opt_a != NULL) + (st->opt_b != NULL);
    int every = st->step % st->snap_every == 0 || st->step == st->start_step;
    pthread_mutex_lock(&ct->snap_mu);
    uint32_t version = ct->version;
    struct snap *p = snap_slot(ct, every ? 1 : 0);
    int rc = snap_fill(p, every ? 1 : 0, version, st->s, st->step, (size_t)n * (size_t)(1 + slots));
    if (rc == WF_OK) {
        memcpy(p->data, st->params, sizeof(float) * (size_t)n);
        if (st->opt_a) memcpy(p->data + n, st->opt_a, sizeof(float) * (size_t)n);
        if (st->opt_b) memcpy(p->data + 2 * n, st->opt_b, sizeof(float) * (size_t)n);
    }
    pthread_mutex_unlock(&ct->snap_mu);
    if (rc < 0 || !every || st->S == 1) return rc;
    /* only this thread writes own snapshots, so p->data stays as it is while it is sent */
    struct wf_msg m = {.type = WF_M_SNAP,
                       .version = version,
                       .stage = (uint32_t)st->s,
                       .step = st->step,
                       .data = p->data,
                       .nbytes = p->n * sizeof(float)};
    return job_send(st, &m);
}

static int stage_run(struct stage *st) {
    const struct wf_job *j = &st->job;
    int rc = stage_snapshot(st);
    while (st->step < st->total && rc == WF_OK) {
        if (st->elastic && stop_check(st->ct, st->step)) return STOPPED;
        if ((rc = stage_step(st)) < 0) break;
        int epoch_end = st->epoch_step == st->steps_per_epoch;
        if (epoch_end) {
            if ((rc = sender_flush(&st->snd)) < 0) break;
            if ((rc = stage_eval(st)) < 0) break;
            st->epoch++;
            st->epoch_step = 0;
        }
        int ckpt = (epoch_end && j->checkpoint_every == 0) ||
                   (j->checkpoint_every > 0 && st->step % j->checkpoint_every == 0) || st->step == st->total;
        if (ckpt) rc = stage_send_state(st);
        if (rc == WF_OK) rc = stage_snapshot(st);
    }
    if (rc == WF_OK) rc = sender_flush(&st->snd);
    /* stopped inside an epoch (max_steps): evaluate the final weights too */
    if (rc == WF_OK && st->epoch_step != 0) rc = stage_eval(st);
    if (rc == WF_OK) rc = sender_flush(&st->snd);
    return rc;
}

/* ---- the agent ---- */

static int local_addr(int fd, char *host, size_t n) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return wf_error(WF_ERR_IO, "getsockname failed");
    void *a = ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                       : (void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!inet_ntop(ss.ss_family, a, host, (socklen_t)n)) return wf_error(WF_ERR_IO, "inet_ntop failed");
    return WF_OK;
}

static int run_job(struct control *ct, const struct wf_msg *a, int lfd, const struct wf_token *tok, uint32_t ct_lost) {
    struct stage *st = wf_calloc(1, sizeof *st);
    if (!st) return wf_error(WF_ERR_NOMEM, "out of memory");
    st->ct = ct;
    st->ct_lost = ct_lost;
    st->prev.fd = st->next.fd = st->prev_tx.fd = st->next_tx.fd = -1;
    st->in_name = a->in;
    st->out_name = a->out;
    st->x_name = a->x_name;
    st->y_name = a->y_name;
    st->len_name = a->len_name ? a->len_name : "";
    double secs = 0;
    uint64_t bytes = 0, nodes = 0;
    const char *delay = getenv("WEFT_TEST_COMPILE_DELAY"); /* tests: a slow compile on one stage "stage:seconds" */
    if (delay && atoi(delay) == (int)a->stage && strchr(delay, ':'))
        usleep((useconds_t)(atof(strchr(delay, ':') + 1) * 1e6));
    struct wf_msg rs = {0};
    if (a->restore) { /* the state to start from follows the ASSIGN */
        ctl_doing(ct, 0, "waiting for the state of stage %u", a->stage);
        ctl_next(ct, &rs);
        if (rs.type != WF_M_RESTORE) {
            int t = rs.type;
            wf_msg_free(&rs);
            wf_free(st);
            if (t == WF_M_STOP) return STOPPED;
            return wf_error(WF_ERR_PEER, "the coordinator sent %s instead of RESTORE", wf_msg_name(t));
        }
    }
    ctl_doing(ct, 0, "compiling stage %u", a->stage);
    int rc = stage_compile(st, a, a->restore ? &rs : NULL, &secs, &bytes, &nodes);
    wf_msg_free(&rs);
    struct wf_msg m = {.type = rc < 0 ? WF_M_COMPILE_FAIL : WF_M_COMPILE_DONE};
    char text[1024];
    if (rc < 0) {
        snprintf(text, sizeof text, "%s", wf_errmsg());
        m.text = text;
    } else {
        m.seconds = secs;
        m.bytes = bytes;
        m.nodes = nodes;
        WF_LOGI("worker", "worker %u: stage %u/%u replica %u/%u compiled in %.3f s: %llu nodes, %.1f MiB planned",
                a->worker, a->stage, a->n_stages, a->replica, a->n_replicas, secs, (unsigned long long)nodes,
                (double)bytes / 1048576.0);
    }
    int src = job_send(st, &m);
    if (rc < 0 || src < 0) {
        stage_free(st);
        wf_free(st);
        if (rc == WF_OK && ct_stopping(ct)) return STOPPED; /* not sent: the coordinator was lost */
        return rc < 0 ? rc : src;
    }
    struct wf_msg go;
    ctl_doing(ct, 0, "waiting at the compile barrier");
    ctl_next(ct, &go);
    int start = go.type == WF_M_START;
    wf_msg_free(&go);
    if (!start) {
        stage_free(st);
        wf_free(st);
        if (go.type == WF_M_STOP) return STOPPED;
        return wf_error(WF_ERR_PEER, "the coordinator sent %s instead of START", wf_msg_name(go.type));
    }
    ctl_doing(ct, 0, "connecting to peers");
    pthread_mutex_init(&st->snd.mu, NULL);
    pthread_cond_init(&st->snd.cv, NULL);
    pthread_create(&st->snd.th, NULL, sender_main, &st->snd);
    rc = stage_connect(st, a, lfd, tok);
    if (rc == WF_OK) rc = stage_step_init(st);
    if (rc == WF_OK) rc = stage_run(st);
    pthread_mutex_lock(&st->snd.mu);
    st->snd.stop = 1;
    pthread_cond_broadcast(&st->snd.cv);
    pthread_mutex_unlock(&st->snd.mu);
    pthread_join(st->snd.th, NULL);
    for (int i = 0; i < QN; i++)
        wf_afree(st->snd.it[i].buf);
    for (int i = 0; i < st->snd.npool; i++)
        wf_afree(st->snd.pool[i].p);
    for (long i = 0; st->tracing && i < st->snd.ntr && st->ntr < st->trcap; i++)
        st->tr[st->ntr++] = st->snd.tr[i];
    if (st->elastic && rc != WF_OK) { /* an error after a STOP is the STOP's doing */
        pthread_mutex_lock(&ct->mu);
        if (ct->stop_req) rc = STOPPED;
        pthread_mutex_unlock(&ct->mu);
    }
    if (rc == WF_OK) {
        if (st->tracing) {
            struct wf_msg t = {.type = WF_M_TRACE, .data = st->tr, .nbytes = sizeof *st->tr * (size_t)st->ntr};
            rc = job_send(st, &t);
        }
        struct wf_msg d = {.type = WF_M_DONE,
                           .step = st->step,
                           .compute_s = st->step_.t_compute,
                           .comm_s = st->step_.t_comm,
                           .idle_s = st->t_idle,
                           .max_live = (uint64_t)st->step_.max_live};
        if (rc == WF_OK) rc = job_send(st, &d);
    }
    stage_free(st);
    wf_free(st);
    return rc;
}

int wf_worker(const char *host, int port, const struct wf_token *tok, int once, double reconnect_s) {
    signal(SIGPIPE, SIG_IGN);
    struct wf_conn c;
    char name[300];
    snprintf(name, sizeof name, "coordinator %s:%d", host, port);
    int rc = wf_tcp_connect(&c, host, port, name, CTL_TIMEOUT);
    if (rc < 0) return rc;
    char me[64];
    int lfd = -1, dport = 0;
    if ((rc = local_addr(c.fd, me, sizeof me)) < 0 || (rc = wf_tcp_listen(me, 0, &lfd, &dport)) < 0) {
        wf_conn_close(&c);
        return rc;
    }
    char hn[64] = "worker";
    gethostname(hn, sizeof hn - 1);
    struct ctl_link l = {.host = host,
                         .port = port,
                         .tok = tok,
                         .cores = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN),
                         .mem = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE),
                         .data_port = (uint32_t)dport,
                         .pid = (uint32_t)getpid(),
                         .name = hn,
                         .reconnect_s = reconnect_s};
    struct wf_msg h = {
        .role = WF_ROLE_WORKER, .cores = l.cores, .mem = l.mem, .port = l.data_port, .pid = l.pid, .name = hn};
    uint64_t id = 0;
    if ((rc = ctl_register(&c, tok, &h, CTL_TIMEOUT, &id)) < 0) {
        close(lfd);
        wf_conn_close(&c);
        return rc;
    }
    WF_LOGI("worker", "registered with %s as worker %llu (data port %d)", c.name, (unsigned long long)id, dport);
    struct control *ct = ctl_start(&c, &l);
    if (!ct) {
        close(lfd);
        wf_conn_close(&c);
        return wf_error(WF_ERR_NOMEM, "out of memory");
    }
    for (;;) {
        struct wf_msg m;
        ctl_doing(ct, 0, "idle");
        ctl_next(ct, &m);
        if (m.type == WF_M_SHUTDOWN) {
            wf_msg_free(&m);
            rc = WF_OK;
            break;
        }
        if (m.type == WF_M_STOP) { /* taken out of a set while idle (after a failure): its snapshots */
            uint32_t v = m.version;
            int own = m.link; /* the control thread's, on losing the coordinator: the restarted one sends its own */
            wf_msg_free(&m);
            pthread_mutex_lock(&ct->mu);
            int answer = !own && v != ct->answered;
            pthread_mutex_unlock(&ct->mu);
            if (answer) send_stopped(ct, v);
            continue;
        }
        if (m.type != WF_M_ASSIGN) {
            wf_msg_free(&m);
            continue;
        }
        int elastic = (int)m.elastic;
        uint32_t ct_lost = ct_losses(ct);
        rc = run_job(ct, &m, lfd, tok, ct_lost);
        wf_msg_free(&m);
        if (rc == STOPPED) { /* out of the node set; this process stays for the next one */
            uint32_t v;
            if (!ct_stopped_by_loss(ct, &v)) send_stopped(ct, v);
            rc = WF_OK;
            continue;
        }
        if (rc < 0) {
            char text[1024];
            snprintf(text, sizeof text, "%s", wf_errmsg());
            struct wf_msg f = {.type = WF_M_FAIL, .text = text};
            ctl_send_since(ct, &f, ct_lost); /* not to a coordinator registered with again: not its job */
            fprintf(stderr, "weft worker: %s\n", text);
            if (elastic) continue; /* the coordinator decides: a recovery (STOP) or the end (ABORT) */
            if (once) break;
        }
        if (once) break;
    }
    ctl_end(ct);
    close(lfd);
    wf_conn_close(&c);
    return rc;
}
