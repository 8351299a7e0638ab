/*
 * data layer: synchronous batch fetch over a store, a transform chain and a
 * cache (DESIGN.md C12). Slot i of the output is always sample ids[i]: a
 * cache hit fills it from the cached prefix output, anything else from the
 * store, so a failing cache can cost speed but never a sample.
 *
 * A cached value (cache id = wf_xf_cache_id) is:
 *   OFFSET  SIZE      MEANING
 *   0       4         label, int32, host byte order
 *   4       4*c*h*w   prefix output, float32 CHW, host byte order
 *
 * A token sample is cached as read (cache id = tok_cache_id), host byte order:
 *   OFFSET        SIZE      MEANING
 *   0             4         length, int32 (T for a window)
 *   4             4*y_per   labels, int32
 *   4 + 4*y_per   4*T       token ids, int32
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "tokens_int.h"
#include "weft/core.h"
#include "weft/loader.h"
#include "weft/safetensors.h"

struct wf_loader {
    struct wf_store *store; /* borrowed */
    struct wf_cache *cache; /* borrowed, may be NULL */
    struct wf_xf_chain ch;
    uint64_t seed;
    uint64_t cid;   /* cache id */
    int n, c, h, w; /* samples and their shape */
    size_t chw;     /* floats a sample */
    int tokens;     /* a token store: samples are x_per ids, y_per labels and a length */
    size_t x_per, y_per;
    size_t vsize; /* bytes of a cached value */
    atomic_ullong samples, bytes_read, hits, misses, fallback_batches, fallback_ids, cache_errors;
    pthread_mutex_t mu;      /* guards the free scratch list */
    struct scratch *scratch; /* free scratch sets: a fetch allocates nothing once one fits */
};

/* What one fetch works in, for batches of up to cap_n samples. */
struct scratch {
    struct scratch *next;
    int cap_n;
    uint8_t *hit, *pix;
    float *fs;
    uint32_t *miss_ids;
    char *vals, *mvals;
};

static void scratch_free(struct scratch *s) {
    if (!s) return;
    wf_free(s->hit);
    wf_free(s->pix);
    wf_free(s->fs);
    wf_free(s->miss_ids);
    wf_free(s->vals);
    wf_free(s->mvals);
    wf_free(s);
}

/* A free scratch set for n samples, or a new one (NULL when out of memory). */
static struct scratch *scratch_get(struct wf_loader *l, int n) {
    pthread_mutex_lock(&l->mu);
    struct scratch **pp = &l->scratch;
    while (*pp && (*pp)->cap_n < n)
        pp = &(*pp)->next;
    struct scratch *s = *pp;
    if (s) *pp = s->next;
    pthread_mutex_unlock(&l->mu);
    if (s) return s;
    s = wf_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cap_n = n;
    s->hit = wf_calloc((size_t)n, 1);
    s->pix = l->tokens ? NULL : wf_malloc(l->chw);
    s->fs = l->tokens ? NULL : wf_malloc(l->chw * sizeof(float));
    s->miss_ids = wf_malloc((size_t)n * sizeof(uint32_t));
    s->vals = l->cache ? wf_malloc((size_t)n * l->vsize) : NULL; /* slot i: hit values */
    s->mvals = wf_malloc((size_t)n * l->vsize);                  /* the j-th miss's value */
    if (!s->hit || (!l->tokens && (!s->pix || !s->fs)) || !s->miss_ids || (l->cache && !s->vals) || !s->mvals) {
        scratch_free(s);
        return NULL;
    }
    return s;
}

static void scratch_put(struct wf_loader *l, struct scratch *s) {
    pthread_mutex_lock(&l->mu);
    s->next = l->scratch;
    l->scratch = s;
    pthread_mutex_unlock(&l->mu);
}

/* A token pipeline's cache id: its own tag, so that it cannot meet an image
 * pipeline's ids (wf_xf_cache_id) but by a 64-bit hash coincidence; the
 * file's digest, the sample options and the value format. */
#define TOK_CACHE_TAG 0x746f6b656e73ull /* "tokens" */
static uint64_t tok_cache_id(const struct wf_store_info *info) {
    uint64_t h = wf_hash64(info->digest, sizeof info->digest, TOK_CACHE_TAG);
    h = wf_hash_combine(h, (uint64_t)info->sample.seq_len << 32 | (uint64_t)(uint32_t)info->sample.stride);
    h = wf_hash_combine(h, (uint64_t)info->sample.sample << 8 | (uint64_t)info->sample.labels);
    h = wf_hash_combine(h, (uint64_t)(uint32_t)info->vocab << 32 | (uint64_t)(uint32_t)info->pad_id);
    return wf_hash_combine(h, 2); /* value format: int32 length, y_per int32 labels, T int32 ids */
}

int wf_loader_new(struct wf_loader **out, struct wf_store *store, const char *transforms, uint64_t seed,
                  struct wf_cache *cache) {
    *out = NULL;
    struct wf_loader *l = wf_calloc(1, sizeof *l);
    if (!l) return wf_error(WF_ERR_NOMEM, "loader: out of memory");
    int rc = wf_xf_parse(&l->ch, transforms);
    if (rc) {
        wf_free(l);
        return rc;
    }
    const struct wf_store_info *info = wf_store_info(store);
    if (info->kind == WF_STORE_TOKENS && l->ch.n > 0) {
        wf_free(l);
        return wf_error(WF_ERR_INVALID,
                        "transforms = \"%s\": a token dataset takes no transforms (its ids pass untransformed)",
                        transforms);
    }
    l->store = store;
    l->cache = cache;
    l->seed = seed;
    l->cid = info->kind == WF_STORE_TOKENS ? tok_cache_id(info) : wf_xf_cache_id(&l->ch, info);
    l->n = info->n;
    l->c = info->c;
    l->h = info->h;
    l->w = info->w;
    l->chw = (size_t)info->c * (size_t)info->h * (size_t)info->w;
    l->vsize = sizeof(int32_t) + l->chw * sizeof(float);
    if (info->kind == WF_STORE_TOKENS) {
        l->tokens = 1;
        l->x_per = (size_t)info->x_per;
        l->y_per = (size_t)info->y_per;
        l->vsize = sizeof(int32_t) * (1 + l->y_per + l->x_per);
    }
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return WF_OK;
}

void wf_loader_free(struct wf_loader *l) {
    if (!l) return;
    while (l->scratch) {
        struct scratch *s = l->scratch;
        l->scratch = s->next;
        scratch_free(s);
    }
    pthread_mutex_destroy(&l->mu);
    wf_free(l);
}

uint64_t wf_loader_cache_id(const struct wf_loader *l) { return l->cid; }
const struct wf_xf_chain *wf_loader_chain(const struct wf_loader *l) { return &l->ch; }
struct wf_store *wf_loader_store(const struct wf_loader *l) {
    return l->store;
}

void wf_loader_stats(const struct wf_loader *l, struct wf_loader_stats *st) {
    struct wf_loader *m = (struct wf_loader *)l;
    st->samples = atomic_load(&m->samples);
    st->bytes_read = atomic_load(&m->bytes_read);
    st->hits = atomic_load(&m->hits);
    st->misses = atomic_load(&m->misses);
    st->fallback_batches = atomic_load(&m->fallback_batches);
    st->fallback_ids = atomic_load(&m->fallback_ids);
    st->cache_errors = atomic_load(&m->cache_errors);
}

/* Clears hit[0..n) and looks the batch up in the cache, if there is one: a
 * hit's value lands in vals at its batch position. Returns 1 when the cache
 * answered (values read from the store may then be written back), 0 when
 * there is no cache or the lookup failed (every id comes from the store). */
static int cache_lookup(struct wf_loader *l, const uint32_t *ids, int n, char *vals, uint8_t *hit) {
    memset(hit, 0, (size_t)n);
    if (!l->cache) return 0;
    if (wf_cache_get(l->cache, l->cid, ids, n, l->vsize, vals, hit) == WF_OK) return 1;
    WF_LOGD("data", "loader: cache lookup failed, %d ids from the dataset: %s", n, wf_errmsg());
    atomic_fetch_add(&l->cache_errors, 1);
    atomic_fetch_add(&l->fallback_batches, 1);
    atomic_fetch_add(&l->fallback_ids, (uint64_t)n);
    memset(hit, 0, (size_t)n);
    wf_error_clear();
    return 0;
}

/* Counts a batch of n ids of which nmiss (nread bytes) came from the store,
 * and writes those values (mvals) back when the cache answered the lookup. */
static void count_and_write_back(struct wf_loader *l, int cache_ok, int n, int nmiss, uint64_t nread,
                                 const uint32_t *miss_ids, const char *mvals) {
    atomic_fetch_add(&l->bytes_read, nread);
    atomic_fetch_add(&l->hits, (uint64_t)(n - nmiss));
    atomic_fetch_add(&l->misses, (uint64_t)nmiss);
    if (cache_ok && nmiss > 0 && wf_cache_put(l->cache, l->cid, miss_ids, nmiss, l->vsize, mvals) != WF_OK) {
        WF_LOGD("data", "loader: cache write-back of %d values failed: %s", nmiss, wf_errmsg());
        atomic_fetch_add(&l->cache_errors, 1);
        wf_error_clear();
    }
}

/* Token samples: the same path as images without the transforms. */
static int fetch_tokens(struct wf_loader *l, const uint32_t *ids, int n, int32_t *x, int32_t *y, int32_t *len) {
    int rc = WF_OK;
    struct scratch *sc = scratch_get(l, n);
    if (!sc) return wf_error(WF_ERR_NOMEM, "loader: out of memory for a batch of %d", n);
    uint8_t *hit = sc->hit;
    uint32_t *miss_ids = sc->miss_ids;
    char *vals = sc->vals, *mvals = sc->mvals;
    int cache_ok = cache_lookup(l, ids, n, vals, hit);
    int nmiss = 0;
    uint64_t nread = 0;
    for (int i = 0; i < n; i++) {
        if (hit[i]) continue;
        int32_t *v = (int32_t *)(void *)(mvals + (size_t)nmiss * l->vsize);
        uint64_t nb = 0;
        rc = wf_store_read_tokens_n(l->store, ids[i], v + 1 + l->y_per, v + 1, v, &nb);
        nread += nb;
        if (rc) goto out;
        miss_ids[nmiss++] = ids[i];
    }
    count_and_write_back(l, cache_ok, n, nmiss, nread, miss_ids, mvals);
    for (int i = 0, j = 0; i < n; i++) {
        const int32_t *v =
            (const int32_t *)(const void *)(hit[i] ? vals + (size_t)i * l->vsize : mvals + (size_t)j++ * l->vsize);
        if (len) len[i] = v[0];
        memcpy(y + (size_t)i * l->y_per, v + 1, sizeof(int32_t) * l->y_per);
        if (x) memcpy(x + (size_t)i * l->x_per, v + 1 + l->y_per, sizeof(int32_t) * l->x_per);
    }
    atomic_fetch_add(&l->samples, (uint64_t)n);
out:
    scratch_put(l, sc);
    return rc;
}

static int check_ids(const struct wf_loader *l, const uint32_t *ids, int n) {
    for (int i = 0; i < n; i++)
        if (ids[i] >= (uint32_t)l->n)
            return wf_error(WF_ERR_RANGE,
                            "loader: sample id %" PRIu32 " at batch position %d out of range (%d samples)", ids[i], i,
                            l->n);
    return WF_OK;
}

int wf_loader_fetch_any(struct wf_loader *l, const uint32_t *ids, int n, uint64_t epoch, void *x, int32_t *y,
                        int32_t *len) {
    if (!l->tokens) return wf_loader_fetch(l, ids, n, epoch, x, y);
    if (n <= 0) return WF_OK;
    int rc = check_ids(l, ids, n);
    return rc ? rc : fetch_tokens(l, ids, n, x, y, len);
}

int wf_loader_fetch(struct wf_loader *l, const uint32_t *ids, int n, uint64_t epoch, float *x, int32_t *y) {
    if (l->tokens)
        return wf_error(WF_ERR_INVALID, "loader: a token dataset's samples are int32: use wf_loader_fetch_any");
    if (n <= 0) return WF_OK;
    int rc = check_ids(l, ids, n);
    if (rc) return rc;
    struct scratch *sc = scratch_get(l, n);
    if (!sc) return wf_error(WF_ERR_NOMEM, "loader: out of memory for a batch of %d", n);
    uint8_t *hit = sc->hit, *pix = sc->pix;
    float *scratch = sc->fs;
    uint32_t *miss_ids = sc->miss_ids;
    char *vals = sc->vals, *mvals = sc->mvals;
    int cache_ok = cache_lookup(l, ids, n, vals, hit);

    int nmiss = 0;
    uint64_t nread = 0;
    for (int i = 0; i < n; i++) {
        if (hit[i]) continue;
        char *v = mvals + (size_t)nmiss * l->vsize;
        int32_t label;
        if ((rc = wf_store_read(l->store, ids[i], pix, &label))) goto out;
        nread += l->chw + 1;
        memcpy(v, &label, sizeof label);
        wf_xf_prefix(&l->ch, pix, l->c, l->h, l->w, (float *)(void *)scratch);
        memcpy(v + sizeof label, scratch, l->chw * sizeof(float));
        miss_ids[nmiss++] = ids[i];
    }
    count_and_write_back(l, cache_ok, n, nmiss, nread, miss_ids, mvals);

    for (int i = 0, j = 0; i < n; i++) {
        const char *v = hit[i] ? vals + (size_t)i * l->vsize : mvals + (size_t)j++ * l->vsize;
        memcpy(&y[i], v, sizeof(int32_t));
        if (!x) continue; /* labels only: no image, no random ops */
        float *xi = x + (size_t)i * l->chw;
        memcpy(xi, v + sizeof(int32_t), l->chw * sizeof(float));
        wf_xf_random(&l->ch, l->seed, epoch, ids[i], l->c, l->h, l->w, xi, scratch);
    }
    atomic_fetch_add(&l->samples, (uint64_t)n);
out:
    scratch_put(l, sc);
    return rc;
}
