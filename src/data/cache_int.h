/*
 * data layer, private: the cache interface the backends implement
 * (cache.c: in-process; cache_redis.c: Redis). wf_cache_* in cache.c
 * dispatch through the ops table.
 */
#ifndef WEFT_DATA_CACHE_INT_H
#define WEFT_DATA_CACHE_INT_H

#include <pthread.h>

#include "weft/loader.h"

struct cache_ops {
    int (*get)(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, void *vals, uint8_t *hit);
    int (*put)(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, const void *vals);
    void (*stats)(struct wf_cache *c, struct wf_cache_stats *st); /* under c->mu; fills backend fields */
    void (*free)(struct wf_cache *c);
};

struct wf_cache {
    const struct cache_ops *ops;
    pthread_mutex_t mu;       /* serializes every call on the backend */
    struct wf_cache_stats st; /* counted under mu */
    char name[128];           /* "memory", "redis host:port" */
    char last_error[512];     /* last failure, "" if none */
};

/* Sets up the common part; the backend fills ops and name. */
int wf_cache_base_init(struct wf_cache *c);
/* Records msg as the cache's last error and as this thread's error; returns status. */
int wf_cache_fail(struct wf_cache *c, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
