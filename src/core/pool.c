/*
 * core: a fork-join pool for data-parallel loops. wf_parallel_for splits
 * [0, n) into one contiguous chunk per thread; each element is computed by
 * the same code whichever thread runs it, and nothing is reduced across
 * chunks, so results do not depend on the thread count. Workers sleep on a
 * condition variable between loops: no spinning that would steal a core
 * from the BLAS or from another process.
 */
#include <pthread.h>
#include <string.h>

#include "weft/core.h"

#define WF_POOL_MAX 64

static struct {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t tid[WF_POOL_MAX];
    int n_workers;     /* threads besides the caller */
    unsigned long gen; /* bumped for every loop */
    int pending;       /* workers still running the current loop */
    int stop;
    unsigned long start_gen; /* gen when the workers were started */
    /* the current loop */
    long n;
    int parts;
    void (*fn)(void *, long, long);
    void *ctx;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER, .done = PTHREAD_COND_INITIALIZER};

static void chunk(long n, int parts, int k, long *b, long *e) {
    *b = n * k / parts;
    *e = n * (k + 1) / parts;
}

static void *worker(void *arg) {
    int k = (int)(long)arg; /* chunk index, 1.. */
    pthread_mutex_lock(&pool.mu);
    /* loops dispatched before this thread existed are not its business */
    unsigned long seen = pool.start_gen;
    for (;;) {
        while (!pool.stop && pool.gen == seen)
            pthread_cond_wait(&pool.go, &pool.mu);
        if (pool.stop) break;
        seen = pool.gen;
        if (k < pool.parts) {
            long n = pool.n, b, e;
            int parts = pool.parts;
            void (*fn)(void *, long, long) = pool.fn;
            void *ctx = pool.ctx;
            pthread_mutex_unlock(&pool.mu);
            chunk(n, parts, k, &b, &e);
            if (b < e) fn(ctx, b, e);
            pthread_mutex_lock(&pool.mu);
        }
        if (--pool.pending == 0) pthread_cond_signal(&pool.done);
    }
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

static void pool_stop(void) {
    pthread_mutex_lock(&pool.mu);
    pool.stop = 1;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    for (int i = 0; i < pool.n_workers; i++)
        pthread_join(pool.tid[i], NULL);
    pool.n_workers = 0;
    pool.stop = 0;
}

int wf_pool_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > WF_POOL_MAX) n = WF_POOL_MAX;
    if (n - 1 == pool.n_workers) return WF_OK;
    pool_stop();
    pool.start_gen = pool.gen;
    for (int i = 0; i < n - 1; i++) {
        if (pthread_create(&pool.tid[i], NULL, worker, (void *)(long)(i + 1)) != 0) {
            pool_stop();
            return wf_error(WF_ERR_NOMEM, "cannot start worker thread %d of %d", i + 1, n - 1);
        }
        pool.n_workers = i + 1;
    }
    return WF_OK;
}

int wf_pool_threads(void) { return pool.n_workers + 1; }

void wf_parallel_for(long n, long min_chunk, void (*fn)(void *ctx, long begin, long end), void *ctx) {
    int parts = pool.n_workers + 1;
    if (min_chunk < 1) min_chunk = 1;
    if (n / min_chunk < parts) parts = (int)(n / min_chunk);
    if (parts <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.mu);
    pool.n = n;
    pool.parts = parts;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.pending = pool.n_workers;
    pool.gen++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.mu);
    long b, e;
    chunk(n, parts, 0, &b, &e);
    fn(ctx, b, e);
    pthread_mutex_lock(&pool.mu);
    while (pool.pending > 0)
        pthread_cond_wait(&pool.done, &pool.mu);
    pthread_mutex_unlock(&pool.mu);
}
