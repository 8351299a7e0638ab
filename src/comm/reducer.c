/*
 * comm: the background reducer. One thread all-reduces gradient buckets in
 * the order they were submitted while the caller's thread goes on with the
 * backward pass. Every rank submits the same buckets in the same order, so
 * the collectives match up without any negotiation.
 *
 * After the first error of a round the remaining buckets are skipped (their
 * peers are gone or out of step; waiting out a timeout for each would only
 * delay the report), and wf_reducer_wait returns that error with its
 * message, which was recorded on the reducer's thread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "comm_int.h"

struct bucket {
    int64_t *buf;
    size_t n;
};

struct wf_reducer {
    struct wf_group *g;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a bucket was queued, or stop */
    pthread_cond_t idle; /* the queue ran empty */
    struct bucket *q;    /* this round's buckets; [head, tail) still to do */
    size_t cap, head, tail;
    int stop;
    int err;                      /* first error of the round, WF_OK if none */
    char errmsg[1024];            /* its message */
    atomic_uint_fast64_t busy_ns; /* time spent in all-reduce since create */
};

static void *reducer_main(void *arg) {
    struct wf_reducer *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->stop && r->head == r->tail)
            pthread_cond_wait(&r->work, &r->mu);
        if (r->stop) break;
        struct bucket b = r->q[r->head];
        size_t idx = r->head;
        int failed = r->err != WF_OK;
        pthread_mutex_unlock(&r->mu);

        int st = WF_OK;
        if (!failed) {
            double t0 = wf_now();
            st = wf_allreduce_i64(r->g, b.buf, b.n);
            atomic_fetch_add(&r->busy_ns, (uint_fast64_t)((wf_now() - t0) * 1e9));
            if (st) wf_error_prefix(st, "reducer bucket %zu (%zu values)", idx, b.n);
        }

        pthread_mutex_lock(&r->mu);
        if (st && r->err == WF_OK) {
            r->err = st;
            snprintf(r->errmsg, sizeof r->errmsg, "%s", wf_errmsg());
        }
        r->head++;
        if (r->head == r->tail) pthread_cond_broadcast(&r->idle);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int wf_reducer_create(struct wf_reducer **out, struct wf_group *g) {
    *out = NULL;
    struct wf_reducer *r = wf_calloc(1, sizeof *r);
    if (!r) return wf_error(WF_ERR_NOMEM, "reducer: out of memory");
    r->g = g;
    atomic_init(&r->busy_ns, 0);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->idle, NULL);
    /* the collectives keep a chunk or two of scratch on the stack: ask for room explicitly */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 2u << 20);
    int e = pthread_create(&r->tid, &attr, reducer_main, r);
    pthread_attr_destroy(&attr);
    if (e) {
        pthread_cond_destroy(&r->idle);
        pthread_cond_destroy(&r->work);
        pthread_mutex_destroy(&r->mu);
        wf_free(r);
        return wf_error(WF_ERR_NOMEM, "reducer: cannot start its thread: %s", strerror(e));
    }
    *out = r;
    return WF_OK;
}

void wf_reducer_destroy(struct wf_reducer *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1; /* a bucket in progress finishes (bounded by the group's timeout); the rest are dropped */
    pthread_cond_signal(&r->work);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->tid, NULL);
    pthread_cond_destroy(&r->idle);
    pthread_cond_destroy(&r->work);
    pthread_mutex_destroy(&r->mu);
    wf_free(r->q);
    wf_free(r);
}

void wf_reducer_begin(struct wf_reducer *r) {
    pthread_mutex_lock(&r->mu);
    if (r->head == r->tail) {
        r->head = r->tail = 0;
        r->err = WF_OK;
        r->errmsg[0] = 0;
    }
    pthread_mutex_unlock(&r->mu);
}

int wf_reducer_submit(struct wf_reducer *r, int64_t *buf, size_t n) {
    pthread_mutex_lock(&r->mu);
    if (r->tail == r->cap) {
        /* grows in the first rounds only: the queue is reused from round to round */
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct bucket *q = wf_realloc(r->q, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&r->mu);
            return wf_error(WF_ERR_NOMEM, "reducer: out of memory queueing bucket %zu", r->tail);
        }
        r->q = q;
        r->cap = cap;
    }
    r->q[r->tail++] = (struct bucket){buf, n};
    pthread_cond_signal(&r->work);
    pthread_mutex_unlock(&r->mu);
    return WF_OK;
}

int wf_reducer_wait(struct wf_reducer *r) {
    char msg[sizeof r->errmsg];
    pthread_mutex_lock(&r->mu);
    while (r->head != r->tail)
        pthread_cond_wait(&r->idle, &r->mu);
    int st = r->err;
    memcpy(msg, r->errmsg, sizeof msg);
    r->head = r->tail = 0;
    r->err = WF_OK;
    r->errmsg[0] = 0;
    pthread_mutex_unlock(&r->mu);
    return st ? wf_error(st, "%s", msg) : WF_OK;
}

double wf_reducer_busy_seconds(const struct wf_reducer *r) {
    /* atomic_load on a const object is not accepted by every compiler we build with */
    return 1e-9 * (double)atomic_load(&((struct wf_reducer *)r)->busy_ns);
}
