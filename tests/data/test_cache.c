/*
 * data layer test: the in-process cache (bounded bytes, CLOCK eviction,
 * statistics, many threads) and the synchronous loader over it: every id of
 * an epoch exactly once with the reference bytes, with no cache, a cache
 * too small (mixed hits and misses) and a cache big enough (epoch 2 reads 0
 * bytes from the store); several threads fetching at once; Fashion-MNIST
 * when it is installed.
 */
#include <pthread.h>

#include "synth.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmp[256];

static void fill(uint8_t *v, size_t size, uint32_t id, uint64_t cid) {
    for (size_t k = 0; k < size; k++)
        v[k] = (uint8_t)(id * 7 + k + cid);
}

static int value_ok(const uint8_t *v, size_t size, uint32_t id, uint64_t cid) {
    for (size_t k = 0; k < size; k++)
        if (v[k] != (uint8_t)(id * 7 + k + cid)) return 0;
    return 1;
}

static void test_mem_cache(void) {
    enum { SZ = 100 };
    struct wf_cache *c;
    CHECK(wf_cache_new_mem(&c, 10 * SZ) == WF_OK);
    CHECK(!strcmp(wf_cache_name(c), "memory"));
    uint32_t ids[15];
    uint8_t vals[15 * SZ], out[15 * SZ], hit[15];
    for (uint32_t i = 0; i < 15; i++) {
        ids[i] = i;
        fill(vals + i * SZ, SZ, i, 5);
    }
    CHECK(wf_cache_put(c, 5, ids, 10, SZ, vals) == WF_OK);
    struct wf_cache_stats st;
    wf_cache_stats(c, &st);
    CHECK(st.puts == 10 && st.bytes == 10 * SZ && st.evictions == 0);
    CHECK(wf_cache_get(c, 5, ids, 15, SZ, out, hit) == WF_OK);
    int h = 0, ok = 1;
    for (int i = 0; i < 15; i++) {
        h += hit[i];
        if (hit[i]) ok &= value_ok(out + i * SZ, SZ, (uint32_t)i, 5);
    }
    CHECK(h == 10 && ok && hit[9] && !hit[10]);
    wf_cache_stats(c, &st);
    CHECK(st.hits == 10 && st.misses == 5);
    /* Another cache id, or another value size: misses. */
    CHECK(wf_cache_get(c, 6, ids, 10, SZ, out, hit) == WF_OK && memchr(hit, 1, 10) == NULL);
    CHECK(wf_cache_get(c, 5, ids, 10, SZ - 1, out, hit) == WF_OK && memchr(hit, 1, 10) == NULL);

    /* A full cache whose ids 0..4 were hit since: the CLOCK evicts 5..9 for five new ones. */
    wf_cache_free(c);
    CHECK(wf_cache_new_mem(&c, 10 * SZ) == WF_OK);
    CHECK(wf_cache_put(c, 5, ids, 10, SZ, vals) == WF_OK);
    CHECK(wf_cache_get(c, 5, ids, 5, SZ, out, hit) == WF_OK && memchr(hit, 0, 5) == NULL);
    CHECK(wf_cache_put(c, 5, ids + 10, 5, SZ, vals + 10 * SZ) == WF_OK);
    wf_cache_stats(c, &st);
    CHECK(st.evictions == 5 && st.bytes == 10 * SZ && st.puts == 15);
    CHECK(wf_cache_get(c, 5, ids, 15, SZ, out, hit) == WF_OK);
    int want[15] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1}; /* CLOCK kept the referenced ones */
    ok = 1;
    for (int i = 0; i < 15; i++) {
        ok &= hit[i] == want[i];
        if (hit[i]) ok &= value_ok(out + i * SZ, SZ, (uint32_t)i, 5);
    }
    CHECK(ok);
    /* Re-putting a key replaces its value; a value larger than the budget is not stored. */
    fill(vals, SZ, 99, 5);
    CHECK(wf_cache_put(c, 5, ids, 1, SZ, vals) == WF_OK);
    CHECK(wf_cache_get(c, 5, ids, 1, SZ, out, hit) == WF_OK && hit[0] && value_ok(out, SZ, 99, 5));
    static uint8_t big[11 * SZ];
    CHECK(wf_cache_put(c, 7, ids, 1, sizeof big, big) == WF_OK);
    CHECK(wf_cache_get(c, 7, ids, 1, sizeof big, big, hit) == WF_OK && !hit[0]);
    wf_cache_stats(c, &st);
    CHECK(st.bytes <= 10 * SZ && st.errors == 0);
    char err[64];
    wf_cache_last_error(c, err, sizeof err);
    CHECK(err[0] == 0);
    wf_cache_free(c);
    wf_cache_free(NULL);

    /* Many entries through a small cache: table growth and eviction stay consistent. */
    CHECK(wf_cache_new_mem(&c, 1000 * 8) == WF_OK);
    int bad = 0;
    for (uint32_t round = 0; round < 20; round++) {
        uint32_t bid[256];
        uint64_t v[256], o[256];
        uint8_t hh[256];
        for (int i = 0; i < 256; i++) {
            bid[i] = round * 200 + (uint32_t)i; /* overlaps the previous round */
            v[i] = wf_mix64(bid[i]);
        }
        CHECK(wf_cache_get(c, 1, bid, 256, 8, o, hh) == WF_OK);
        for (int i = 0; i < 256; i++)
            bad += hh[i] && o[i] != v[i];
        CHECK(wf_cache_put(c, 1, bid, 256, 8, v) == WF_OK);
    }
    wf_cache_stats(c, &st);
    CHECK(bad == 0 && st.bytes <= 8000 && st.evictions > 0 && st.hits > 0);
    CHECKF(st.puts - st.evictions == st.bytes / 8, "puts %llu evictions %llu bytes %llu", (unsigned long long)st.puts,
           (unsigned long long)st.evictions, (unsigned long long)st.bytes);
    wf_cache_free(c);
}

/* ---- many threads on one small cache ---- */

enum { TH = 4 };
static struct wf_cache *shared;
static int thread_bad[TH];

static void *cache_thread(void *arg) {
    int t = (int)(intptr_t)arg;
    for (uint32_t round = 0; round < 200; round++) {
        uint32_t ids[32];
        uint8_t v[32 * 16], o[32 * 16], hit[32];
        for (int i = 0; i < 32; i++) {
            ids[i] = (round * 13 + (uint32_t)i * 7 + (uint32_t)t) % 500;
            fill(v + i * 16, 16, ids[i], 3);
        }
        if (wf_cache_get(shared, 3, ids, 32, 16, o, hit)) thread_bad[t]++;
        for (int i = 0; i < 32; i++)
            if (hit[i] && !value_ok(o + i * 16, 16, ids[i], 3)) thread_bad[t]++;
        if (wf_cache_put(shared, 3, ids, 32, 16, v)) thread_bad[t]++;
    }
    return NULL;
}

static void test_threads(void) {
    CHECK(wf_cache_new_mem(&shared, 300 * 16) == WF_OK);
    pthread_t th[TH];
    for (int t = 0; t < TH; t++)
        pthread_create(&th[t], NULL, cache_thread, (void *)(intptr_t)t);
    for (int t = 0; t < TH; t++)
        pthread_join(th[t], NULL);
    struct wf_cache_stats st;
    wf_cache_stats(shared, &st);
    CHECK(st.hits + st.misses == TH * 200 * 32 && st.bytes <= 300 * 16 && st.evictions > 0);
    for (int t = 0; t < TH; t++)
        CHECK(thread_bad[t] == 0);
    wf_cache_free(shared);
}

/* ---- the loader ---- */

static const char *chain = "normalize(mean=0.2860, std=0.3530), crop(pad=2), flip(p=0.5), noise(std=0.05)";

static void test_loader(void) {
    enum { N = 1000, H = 12, W = 10, B = 64 };
    const size_t vsize = 4 + H * W * 4;
    synth_dataset(tmp, N, H, W, 9, 0);
    struct wf_dataset d;
    CHECKF(wf_dataset_load_idx(&d, tmp, "train") == WF_OK, "%s", wf_errmsg());
    struct wf_store *s;
    int rc = wf_store_open(&s, tmp, "train", NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    struct wf_loader_stats ls;

    /* No cache: every epoch reads every sample. */
    struct wf_loader *l;
    CHECK(wf_loader_new(&l, s, chain, 42, NULL) == WF_OK);
    CHECK(synth_check_epoch(l, &d, 42, 0, B, NULL, NULL) == 0);
    wf_loader_stats(l, &ls);
    CHECK(ls.samples == N && ls.bytes_read == N * (H * W + 1) && ls.hits == 0 && ls.misses == N);
    uint32_t badid = N;
    float x[H * W];
    int32_t y;
    CHECK(wf_loader_fetch(l, &badid, 1, 0, x, &y) == WF_ERR_RANGE);
    CHECK(wf_loader_fetch(l, &badid, 0, 0, x, &y) == WF_OK);
    wf_loader_free(l);
    CHECK(wf_loader_new(&l, s, "flip(p=2)", 42, NULL) == WF_ERR_PARSE && l == NULL);

    /* A big cache: epoch 2 and 3 read nothing from the store. */
    struct wf_cache *c;
    CHECK(wf_cache_new_mem(&c, 2 * N * vsize) == WF_OK);
    CHECK(wf_loader_new(&l, s, chain, 42, c) == WF_OK);
    uint64_t store0 = wf_store_bytes_read(s);
    CHECK(synth_check_epoch(l, &d, 42, 0, B, NULL, NULL) == 0);
    wf_loader_stats(l, &ls);
    CHECK(ls.misses == N && ls.hits == 0 && ls.bytes_read == N * (H * W + 1));
    for (uint64_t ep = 1; ep <= 2; ep++)
        CHECK(synth_check_epoch(l, &d, 42, ep, B, NULL, NULL) == 0);
    wf_loader_stats(l, &ls);
    CHECKF(ls.hits == 2 * N && ls.misses == N && ls.bytes_read == N * (H * W + 1), "hits %llu misses %llu bytes %llu",
           (unsigned long long)ls.hits, (unsigned long long)ls.misses, (unsigned long long)ls.bytes_read);
    CHECK(wf_store_bytes_read(s) - store0 == N * (H * W + 1)); /* the store agrees: epochs 2, 3 read 0 bytes */
    CHECK(ls.fallback_batches == 0 && ls.cache_errors == 0);
    /* Another seed and the same prefix: same cache id, all hits; the other seed's bytes. */
    struct wf_loader *l2;
    CHECK(wf_loader_new(&l2, s, "normalize(mean=0.286, std=0.353), noise(std=0.3, repeat=3)", 7, c) == WF_OK);
    CHECK(wf_loader_cache_id(l2) == wf_loader_cache_id(l));
    CHECK(synth_check_epoch(l2, &d, 7, 0, B, NULL, NULL) == 0);
    wf_loader_stats(l2, &ls);
    CHECK(ls.hits == N && ls.bytes_read == 0);
    wf_loader_free(l2);
    /* A different prefix: no hits from the other pipeline. */
    CHECK(wf_loader_new(&l2, s, "normalize(mean=0.5, std=0.5), flip()", 42, c) == WF_OK);
    CHECK(wf_loader_cache_id(l2) != wf_loader_cache_id(l));
    CHECK(synth_check_epoch(l2, &d, 42, 0, B, NULL, NULL) == 0);
    wf_loader_stats(l2, &ls);
    CHECK(ls.hits == 0 && ls.misses == N);
    wf_loader_free(l2);
    wf_loader_free(l);
    wf_cache_free(c);

    /* A cache holding a third of the samples: mixed hits and misses, each id once, evictions counted. */
    CHECK(wf_cache_new_mem(&c, N / 3 * vsize) == WF_OK);
    CHECK(wf_loader_new(&l, s, chain, 42, c) == WF_OK);
    for (uint64_t ep = 0; ep < 3; ep++)
        CHECK(synth_check_epoch(l, &d, 42, ep, B, NULL, NULL) == 0);
    wf_loader_stats(l, &ls);
    struct wf_cache_stats cs;
    wf_cache_stats(c, &cs);
    fprintf(stderr, "test_cache: small cache: %llu hits, %llu misses, %llu evictions over 3 epochs\n",
            (unsigned long long)ls.hits, (unsigned long long)ls.misses, (unsigned long long)cs.evictions);
    CHECK(ls.samples == 3 * N && ls.hits + ls.misses == 3 * N && ls.hits > 0 && ls.misses > N);
    CHECK(ls.bytes_read == ls.misses * (H * W + 1));
    CHECK(cs.evictions > 0 && cs.bytes <= N / 3 * vsize && cs.hits == ls.hits);
    wf_loader_free(l);
    wf_cache_free(c);

    wf_store_free(s);
    wf_dataset_free(&d);
}

/* ---- threads over one loader ---- */

struct fetch_job {
    struct wf_loader *l;
    const struct wf_dataset *d;
    const uint32_t *perm;
    int first, stride, nbatches, B, bad;
};

static void *fetch_thread(void *arg) {
    struct fetch_job *j = arg;
    size_t chw = (size_t)j->d->h * j->d->w;
    float *x = malloc((size_t)j->B * chw * sizeof *x), *ref = malloc(chw * 4), *scr = malloc(chw * 4);
    int32_t *y = malloc((size_t)j->B * sizeof *y);
    for (int b = j->first; b < j->nbatches; b += j->stride) {
        const uint32_t *ids = j->perm + (size_t)b * j->B;
        if (wf_loader_fetch(j->l, ids, j->B, 5, x, y)) {
            j->bad++;
            continue;
        }
        for (int i = 0; i < j->B; i++) {
            synth_reference(j->d, wf_loader_chain(j->l), 42, 5, ids[i], ref, scr);
            j->bad += y[i] != j->d->labels[ids[i]] || memcmp(ref, x + (size_t)i * chw, chw * 4) != 0;
        }
    }
    free(x);
    free(ref);
    free(scr);
    free(y);
    return NULL;
}

static void test_loader_threads(void) {
    enum { N = 1024, B = 32, T = 4 };
    synth_dataset(tmp, N, 8, 8, 11, 0);
    struct wf_dataset d;
    CHECKF(wf_dataset_load_idx(&d, tmp, "train") == WF_OK, "%s", wf_errmsg());
    struct wf_store *s;
    struct wf_cache *c;
    struct wf_loader *l;
    CHECK(wf_store_open(&s, tmp, "train", NULL) == WF_OK);
    CHECK(wf_cache_new_mem(&c, 2 * N * (4 + 64 * 4)) == WF_OK);
    CHECK(wf_loader_new(&l, s, chain, 42, c) == WF_OK);
    uint32_t perm[N];
    wf_epoch_order(perm, N, 42, 5);
    for (int round = 0; round < 2; round++) {
        struct fetch_job jobs[T];
        pthread_t th[T];
        for (int t = 0; t < T; t++) {
            jobs[t] = (struct fetch_job){l, &d, perm, t, T, N / B, B, 0};
            pthread_create(&th[t], NULL, fetch_thread, &jobs[t]);
        }
        for (int t = 0; t < T; t++) {
            pthread_join(th[t], NULL);
            CHECK(jobs[t].bad == 0);
        }
    }
    struct wf_loader_stats ls;
    wf_loader_stats(l, &ls);
    CHECK(ls.samples == 2 * N && ls.hits == N && ls.misses == N);
    wf_loader_free(l);
    wf_cache_free(c);
    wf_store_free(s);
    wf_dataset_free(&d);
}

static void test_fashion_mnist(void) {
    struct stat st;
    if (stat(FMNIST_DIR, &st) != 0) {
        fprintf(stderr, "test_cache: %s absent, skipping the Fashion-MNIST checks\n", FMNIST_DIR);
        return;
    }
    char stage[512];
    snprintf(stage, sizeof stage, "%s/stage", tmp);
    struct wf_dataset d;
    struct wf_store *s;
    struct wf_cache *c;
    struct wf_loader *l;
    int rc = wf_dataset_load_idx(&d, FMNIST_DIR, "test");
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(wf_store_open(&s, FMNIST_DIR, "test", stage) == WF_OK);
    CHECK(wf_cache_new_mem(&c, (size_t)64 << 20) == WF_OK);
    /* No noise here: 7.8 M normal draws an epoch, twice (loader and reference), are slow in a Debug build. */
    CHECK(wf_loader_new(&l, s, "normalize(mean=0.2860, std=0.3530), crop(pad=4), flip(p=0.5)", 42, c) == WF_OK);
    double t0 = wf_now();
    CHECK(synth_check_epoch(l, &d, 42, 0, 128, NULL, NULL) == 0);
    double t1 = wf_now();
    CHECK(synth_check_epoch(l, &d, 42, 1, 128, NULL, NULL) == 0);
    double t2 = wf_now();
    struct wf_loader_stats ls;
    wf_loader_stats(l, &ls);
    fprintf(stderr, "test_cache: fashion-mnist/test: epoch 1 %.3f s (%llu bytes read), epoch 2 %.3f s, %llu hits\n",
            t1 - t0, (unsigned long long)ls.bytes_read, t2 - t1, (unsigned long long)ls.hits);
    CHECK(ls.bytes_read == 10000ull * 785 && ls.hits == 10000 && ls.misses == 10000);
    wf_loader_free(l);
    wf_cache_free(c);
    wf_store_free(s);
    wf_dataset_free(&d);
}

int main(void) {
    if (!synth_mkdtemp(tmp, sizeof tmp, "cache")) return 1;
    test_mem_cache();
    test_threads();
    test_loader();
    test_loader_threads();
    test_fashion_mnist();
    synth_rm_rf(tmp);
    return wf_test_done("test_cache");
}
