/*
 * data layer: the training-data cache (DESIGN.md C12). One small interface,
 * batch get and batch put of fixed-size values keyed by (cache id, sample
 * id), with hit/miss/eviction statistics; this file holds the dispatcher and
 * the in-process backend, cache_redis.c the Redis one.
 *
 * In-process backend: a chained hash table over an entry array, values
 * bounded to max_bytes in total (value bytes; the table's own overhead is
 * about 48 bytes a value on top) and evicted by CLOCK: a hit sets an entry's
 * reference bit, the hand clears set bits and evicts the first clear one.
 * A value larger than the whole budget is not stored. One mutex guards it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cache_int.h"
#include "weft/core.h"

int wf_cache_base_init(struct wf_cache *c) {
    if (pthread_mutex_init(&c->mu, NULL) != 0) return wf_error(WF_ERR_INTERNAL, "cache: mutex init failed");
    return WF_OK;
}

int wf_cache_fail(struct wf_cache *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->last_error, sizeof c->last_error, fmt, ap);
    va_end(ap);
    return wf_error(status, "%s", c->last_error);
}

int wf_cache_get(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, void *vals, uint8_t *hit) {
    memset(hit, 0, (size_t)(n > 0 ? n : 0));
    if (n <= 0) return WF_OK;
    pthread_mutex_lock(&c->mu);
    int rc = c->ops->get(c, cid, ids, n, size, vals, hit);
    if (rc) {
        memset(hit, 0, (size_t)n);
        c->st.errors++;
    }
    uint64_t h = 0;
    for (int i = 0; i < n; i++)
        h += hit[i];
    c->st.hits += h;
    c->st.misses += (uint64_t)n - h;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int wf_cache_put(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, const void *vals) {
    if (n <= 0) return WF_OK;
    pthread_mutex_lock(&c->mu);
    int rc = c->ops->put(c, cid, ids, n, size, vals);
    if (rc) c->st.errors++;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void wf_cache_stats(struct wf_cache *c, struct wf_cache_stats *st) {
    pthread_mutex_lock(&c->mu);
    c->ops->stats(c, &c->st);
    *st = c->st;
    pthread_mutex_unlock(&c->mu);
}

const char *wf_cache_name(const struct wf_cache *c) { return c->name; }

void wf_cache_last_error(struct wf_cache *c, char *buf, size_t cap) {
    pthread_mutex_lock(&c->mu);
    snprintf(buf, cap, "%s", c->last_error);
    pthread_mutex_unlock(&c->mu);
}

void wf_cache_free(struct wf_cache *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    c->ops->free(c);
}

/* ---- in-process backend ---- */

struct ent {
    uint64_t cid; /* cache id */
    uint32_t id;  /* sample id */
    uint8_t used; /* 1: holds a value */
    uint8_t ref;  /* CLOCK reference bit, set by a hit */
    int32_t next; /* next entry in the bucket chain, or in the free list; -1 ends */
    size_t size;  /* value bytes */
    void *val;    /* the value */
};

struct mem_cache {
    struct wf_cache base;
    size_t max_bytes; /* budget for value bytes */
    size_t bytes;     /* value bytes held */
    struct ent *ents; /* entry array, cap_ents long, n_ents ever used */
    int32_t n_ents, cap_ents;
    int32_t free_head; /* unused entries below n_ents, -1 if none */
    int32_t *buckets;  /* nbuckets chain heads */
    uint32_t nbuckets; /* power of two */
    int32_t count;     /* entries in use */
    int32_t hand;      /* CLOCK hand over ents */
};

static uint32_t bucket_of(const struct mem_cache *m, uint64_t cid, uint32_t id) {
    return (uint32_t)wf_hash_combine(cid, id) & (m->nbuckets - 1);
}

static int32_t mem_find(const struct mem_cache *m, uint64_t cid, uint32_t id) {
    for (int32_t e = m->buckets[bucket_of(m, cid, id)]; e >= 0; e = m->ents[e].next)
        if (m->ents[e].cid == cid && m->ents[e].id == id) return e;
    return -1;
}

static int mem_get(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, void *vals,
                   uint8_t *hit) {
    struct mem_cache *m = (struct mem_cache *)c;
    for (int i = 0; i < n; i++) {
        int32_t e = mem_find(m, cid, ids[i]);
        if (e < 0 || m->ents[e].size != size) continue;
        memcpy((char *)vals + (size_t)i * size, m->ents[e].val, size);
        m->ents[e].ref = 1;
        hit[i] = 1;
    }
    return WF_OK;
}

static void mem_unlink(struct mem_cache *m, int32_t e) {
    struct ent *x = &m->ents[e];
    int32_t *p = &m->buckets[bucket_of(m, x->cid, x->id)];
    while (*p != e)
        p = &m->ents[*p].next;
    *p = x->next;
    wf_free(x->val);
    m->bytes -= x->size;
    x->val = NULL;
    x->used = 0;
    x->next = m->free_head;
    m->free_head = e;
    m->count--;
}

static void mem_evict_one(struct mem_cache *m) {
    for (;;) { /* ends: bytes > 0 means some entry is in use; a sweep clears every ref bit */
        if (m->hand >= m->n_ents) m->hand = 0;
        struct ent *x = &m->ents[m->hand];
        if (x->used && x->ref) {
            x->ref = 0;
        } else if (x->used) {
            mem_unlink(m, m->hand);
            m->base.st.evictions++;
            m->hand++;
            return;
        }
        m->hand++;
    }
}

static int mem_grow_table(struct mem_cache *m) {
    uint32_t nb = m->nbuckets * 2;
    int32_t *b = wf_malloc((size_t)nb * sizeof *b);
    if (!b) return WF_ERR_NOMEM;
    for (uint32_t i = 0; i < nb; i++)
        b[i] = -1;
    wf_free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
    for (int32_t e = 0; e < m->n_ents; e++) {
        struct ent *x = &m->ents[e];
        if (!x->used) continue;
        uint32_t k = bucket_of(m, x->cid, x->id);
        x->next = b[k];
        b[k] = e;
    }
    return WF_OK;
}

static int32_t mem_new_entry(struct mem_cache *m) {
    if (m->free_head >= 0) {
        int32_t e = m->free_head;
        m->free_head = m->ents[e].next;
        return e;
    }
    if (m->n_ents == m->cap_ents) {
        if (m->cap_ents >= INT32_MAX / 2) return -1;
        int32_t cap = m->cap_ents ? 2 * m->cap_ents : 64;
        struct ent *ne = wf_realloc(m->ents, (size_t)cap * sizeof *ne);
        if (!ne) return -1;
        m->ents = ne;
        m->cap_ents = cap;
    }
    return m->n_ents++;
}

static int mem_put(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, const void *vals) {
    struct mem_cache *m = (struct mem_cache *)c;
    if (size > m->max_bytes) return WF_OK;
    for (int i = 0; i < n; i++) {
        const void *v = (const char *)vals + (size_t)i * size;
        int32_t e = mem_find(m, cid, ids[i]);
        if (e >= 0 && m->ents[e].size == size) { /* same key: refresh the value */
            memcpy(m->ents[e].val, v, size);
            continue;
        }
        if (e >= 0) mem_unlink(m, e);
        while (m->bytes + size > m->max_bytes)
            mem_evict_one(m);
        if ((uint64_t)(m->count + 1) * 4 > (uint64_t)m->nbuckets * 3 && mem_grow_table(m))
            return wf_cache_fail(c, WF_ERR_NOMEM, "memory cache: out of memory growing the table");
        void *copy = wf_malloc(size);
        int32_t ne = copy ? mem_new_entry(m) : -1;
        if (ne < 0) {
            wf_free(copy);
            return wf_cache_fail(c, WF_ERR_NOMEM, "memory cache: out of memory storing %zu bytes", size);
        }
        memcpy(copy, v, size);
        struct ent *x = &m->ents[ne];
        uint32_t k = bucket_of(m, cid, ids[i]);
        *x = (struct ent){
            .cid = cid, .id = ids[i], .used = 1, .ref = 0, .next = m->buckets[k], .size = size, .val = copy};
        m->buckets[k] = ne;
        m->bytes += size;
        m->count++;
        m->base.st.puts++;
    }
    return WF_OK;
}

static void mem_stats(struct wf_cache *c, struct wf_cache_stats *st) { st->bytes = ((struct mem_cache *)c)->bytes; }

static void mem_free(struct wf_cache *c) {
    struct mem_cache *m = (struct mem_cache *)c;
    for (int32_t e = 0; e < m->n_ents; e++)
        wf_free(m->ents[e].val);
    wf_free(m->ents);
    wf_free(m->buckets);
    wf_free(m);
}

static const struct cache_ops mem_ops = {mem_get, mem_put, mem_stats, mem_free};

int wf_cache_new_mem(struct wf_cache **out, size_t max_bytes) {
    *out = NULL;
    struct mem_cache *m = wf_calloc(1, sizeof *m);
    if (!m) return wf_error(WF_ERR_NOMEM, "memory cache: out of memory");
    m->nbuckets = 64;
    m->free_head = -1;
    m->max_bytes = max_bytes;
    if (!(m->buckets = wf_malloc(m->nbuckets * sizeof *m->buckets))) {
        wf_free(m);
        return wf_error(WF_ERR_NOMEM, "memory cache: out of memory");
    }
    for (uint32_t i = 0; i < m->nbuckets; i++)
        m->buckets[i] = -1;
    int rc = wf_cache_base_init(&m->base);
    if (rc) {
        wf_free(m->buckets);
        wf_free(m);
        return rc;
    }
    m->base.ops = &mem_ops;
    snprintf(m->base.name, sizeof m->base.name, "memory");
    *out = &m->base;
    return WF_OK;
}
