/*
 * core layer: a map from borrowed strings to ints (open addressing, linear
 * probing, wf_hash64). The graph builder indexes value names with it and
 * the model parser the names it has defined, so that finding a name does
 * not scan every earlier one.
 */
#include <string.h>

#include "weft/core.h"

void wf_hmap_init(struct wf_hmap *h) { memset(h, 0, sizeof *h); }

void wf_hmap_free(struct wf_hmap *h) {
    if (!h) return;
    wf_free(h->slot);
    memset(h, 0, sizeof *h);
}

static uint64_t hash_key(const char *key) { return wf_hash64(key, strlen(key), 0); }

/* The slot holding key, or the empty slot where it would go (cap > 0). */
static size_t probe(const struct wf_hmap_slot *slot, size_t cap, const char *key, uint64_t hash) {
    size_t i = (size_t)hash & (cap - 1);
    while (slot[i].key && (slot[i].hash != hash || strcmp(slot[i].key, key)))
        i = (i + 1) & (cap - 1);
    return i;
}

int wf_hmap_get(const struct wf_hmap *h, const char *key) {
    if (!h->cap) return -1;
    size_t i = probe(h->slot, h->cap, key, hash_key(key));
    return h->slot[i].key ? h->slot[i].val : -1;
}

static int grow(struct wf_hmap *h) {
    size_t cap = h->cap ? h->cap * 2 : 64;
    struct wf_hmap_slot *s = wf_calloc(cap, sizeof *s);
    if (!s) return WF_ERR_NOMEM;
    for (size_t i = 0; i < h->cap; i++)
        if (h->slot[i].key) s[probe(s, cap, h->slot[i].key, h->slot[i].hash)] = h->slot[i];
    wf_free(h->slot);
    h->slot = s;
    h->cap = cap;
    return WF_OK;
}

int wf_hmap_put(struct wf_hmap *h, const char *key, int val) {
    uint64_t hash = hash_key(key);
    if (h->cap) {
        size_t i = probe(h->slot, h->cap, key, hash);
        if (h->slot[i].key) return 0;
    }
    if ((h->n + 1) * 2 > h->cap && grow(h) < 0) return WF_ERR_NOMEM;
    size_t i = probe(h->slot, h->cap, key, hash);
    h->slot[i] = (struct wf_hmap_slot){key, hash, val};
    h->n++;
    return 1;
}
