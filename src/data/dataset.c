/*
 * data layer: in-memory image classification datasets, the per-epoch sample
 * order and batch gathering. The order of an epoch is a pure function of
 * (seed, epoch), so any worker, on any run, sees the same ids in the same
 * places (DESIGN.md §4 rule 1).
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "weft/core.h"
#include "weft/data.h"

/* Stream tag of the epoch-order generator: "EPOCHORD" in ASCII. */
#define EPOCH_TAG 0x45504F43484F5244ull

void wf_dataset_free(struct wf_dataset *d) {
    if (!d) return;
    wf_free(d->name);
    wf_free(d->images);
    wf_free(d->labels);
    memset(d, 0, sizeof *d);
}

/* Finds DIR/BASE.gz or DIR/BASE; NOTFOUND names both candidates. */
static int find_idx(const char *dir, const char *base, char *out, size_t cap) {
    struct stat st;
    if ((size_t)snprintf(out, cap, "%s/%s.gz", dir, base) >= cap)
        return wf_error(WF_ERR_INVALID, "%s: dataset path too long", dir);
    if (stat(out, &st) == 0) return WF_OK;
    snprintf(out, cap, "%s/%s", dir, base);
    if (stat(out, &st) == 0) return WF_OK;
    return wf_error(WF_ERR_NOTFOUND, "%s/%s: no such file (nor %s.gz)", dir, base, base);
}

/* "fashion-mnist/train" from "/usr/share/datasets/fashion-mnist/" and "train". */
static char *dataset_name(const char *dir, const char *split) {
    size_t end = strlen(dir);
    while (end > 1 && dir[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    size_t n = end - start + 1 + strlen(split) + 1;
    char *s = wf_malloc(n);
    if (s) snprintf(s, n, "%.*s/%s", (int)(end - start), dir + start, split);
    return s;
}

int wf_dataset_load_idx(struct wf_dataset *d, const char *dir, const char *split) {
    memset(d, 0, sizeof *d);
    const char *prefix = !strcmp(split, "train") ? "train" : !strcmp(split, "test") ? "t10k" : NULL;
    if (!prefix) return wf_error(WF_ERR_INVALID, "dataset split '%s': expected 'train' or 'test'", split);

    char ipath[4096], lpath[4096], base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    int rc = find_idx(dir, base, ipath, sizeof ipath);
    if (rc) return rc;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    if ((rc = find_idx(dir, base, lpath, sizeof lpath))) return rc;

    uint8_t *labels8 = NULL;
    int n_img, n_lbl;
    if ((rc = wf_idx_read_images(ipath, &d->images, &n_img, &d->h, &d->w))) goto fail;
    if ((rc = wf_idx_read_labels(lpath, &labels8, &n_lbl))) goto fail;
    if (n_img != n_lbl) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: %d images but %s has %d labels", ipath, n_img, lpath, n_lbl);
        goto fail;
    }
    if (n_img == 0) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: dataset has no samples", ipath);
        goto fail;
    }
    d->n = n_img;
    d->c = 1;
    d->labels = wf_malloc((size_t)n_img * sizeof *d->labels);
    d->name = dataset_name(dir, split);
    if (!d->labels || !d->name) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    int max = 0;
    for (int i = 0; i < n_img; i++) {
        d->labels[i] = labels8[i];
        max = WF_MAX(max, (int)labels8[i]);
    }
    d->n_classes = max + 1;
    d->bytes_read = 16 + (size_t)n_img * (size_t)d->h * (size_t)d->w + 8 + (size_t)n_lbl;
    wf_free(labels8);
    return WF_OK;
fail:
    wf_free(labels8);
    wf_dataset_free(d);
    return rc;
}

void wf_epoch_order(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t epoch) {
    struct wf_rng r;
    wf_rng_init(&r, seed, wf_hash_combine(EPOCH_TAG, epoch));
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = wf_rng_below(&r, i);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
}

void wf_dataset_gather(const struct wf_dataset *d, const uint32_t *ids, int B, float *x, int32_t *y) {
    size_t chw = (size_t)d->c * (size_t)d->h * (size_t)d->w;
    for (int b = 0; b < B; b++) {
        assert(ids[b] < (uint32_t)d->n); /* ids come from wf_epoch_order, not from a file */
        const uint8_t *src = d->images + (size_t)ids[b] * chw;
        float *dst = x + (size_t)b * chw;
        for (size_t k = 0; k < chw; k++)
            dst[k] = (float)src[k] / 255.0f;
        y[b] = d->labels[ids[b]];
    }
}
