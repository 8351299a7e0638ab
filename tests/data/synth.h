/*
 * data layer tests, shared helpers (header-only): synthetic IDX datasets
 * whose every sample differs from every other, temp folders, and the
 * reference output of a loader computed without store, cache or loader.
 */
#ifndef WEFT_TEST_SYNTH_H
#define WEFT_TEST_SYNTH_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/data.h"
#include "weft/loader.h"

static inline uint8_t synth_pixel(uint32_t id, uint32_t k, uint32_t salt) {
    return (uint8_t)(wf_mix64(((uint64_t)id << 32 | k) ^ salt) >> 13);
}

static inline void synth_put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static inline void synth_write(const char *path, int gz, const unsigned char *b, size_t len) {
    if (gz) {
        gzFile g = gzopen(path, "wb1");
        CHECK(g != NULL);
        if (!g) return;
        CHECK(gzwrite(g, b, (unsigned)len) == (int)len);
        CHECK(gzclose(g) == Z_OK);
    } else {
        FILE *fp = fopen(path, "wb");
        CHECK(fp != NULL);
        if (!fp) return;
        CHECK(fwrite(b, 1, len, fp) == len);
        fclose(fp);
    }
}

/* Writes DIR/train-{images-idx3,labels-idx1}-ubyte[.gz]: n samples of h x w,
 * pixels from synth_pixel(id, k, salt), labels id % 10. */
static inline void synth_dataset(const char *dir, uint32_t n, uint32_t h, uint32_t w, uint32_t salt, int gz) {
    size_t hw = (size_t)h * w, len = 16 + (size_t)n * hw;
    unsigned char *b = malloc(len);
    synth_put_be32(b, 0x803);
    synth_put_be32(b + 4, n);
    synth_put_be32(b + 8, h);
    synth_put_be32(b + 12, w);
    for (uint32_t i = 0; i < n; i++)
        for (size_t k = 0; k < hw; k++)
            b[16 + i * hw + k] = synth_pixel(i, (uint32_t)k, salt);
    char path[1024];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte%s", dir, gz ? ".gz" : "");
    synth_write(path, gz, b, len);
    synth_put_be32(b, 0x801);
    synth_put_be32(b + 4, n);
    for (uint32_t i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i % 10);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte%s", dir, gz ? ".gz" : "");
    synth_write(path, gz, b, 8 + (size_t)n);
    free(b);
}

/* Makes a fresh folder /tmp/weft-test-NAME-XXXXXX into buf; 0 on failure (reported). */
static inline int synth_mkdtemp(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "/tmp/weft-test-%s-XXXXXX", name);
    if (mkdtemp(buf)) return 1;
    perror("mkdtemp");
    return 0;
}

static inline void synth_rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            synth_rm_rf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* The expected loader output for sample id of epoch: the dataset held in
 * memory (wf_dataset_load_idx), the prefix, the random ops. */
static inline void synth_reference(const struct wf_dataset *d, const struct wf_xf_chain *ch, uint64_t seed,
                                   uint64_t epoch, uint32_t id, float *x, float *scratch) {
    size_t chw = (size_t)d->c * d->h * d->w;
    wf_xf_prefix(ch, d->images + (size_t)id * chw, d->c, d->h, d->w, x);
    wf_xf_random(ch, seed, epoch, id, d->c, d->h, d->w, x, scratch);
}

/* Fetches a whole epoch in batches of B through l and checks that every id
 * comes exactly once with the reference bytes and label. Returns mismatches. */
static inline int synth_check_epoch(struct wf_loader *l, const struct wf_dataset *d, uint64_t seed, uint64_t epoch,
                                    int B, void (*between)(int batch, void *ctx), void *ctx) {
    uint32_t n = (uint32_t)d->n;
    size_t chw = (size_t)d->c * d->h * d->w;
    uint32_t *perm = malloc(n * sizeof *perm);
    int *seen = calloc(n, sizeof *seen);
    float *x = malloc((size_t)B * chw * sizeof *x), *ref = malloc(chw * sizeof *ref), *scr = malloc(chw * sizeof *scr);
    int32_t *y = malloc((size_t)B * sizeof *y);
    wf_epoch_order(perm, n, seed, epoch);
    int bad = 0, batch = 0;
    for (uint32_t at = 0; at < n; at += (uint32_t)B, batch++) {
        if (between) between(batch, ctx);
        int nb = (int)WF_MIN((uint32_t)B, n - at);
        int rc = wf_loader_fetch(l, perm + at, nb, epoch, x, y);
        CHECKF(rc == WF_OK, "fetch at %u: %s", at, wf_errmsg());
        if (rc) {
            bad++;
            continue;
        }
        for (int i = 0; i < nb; i++) {
            uint32_t id = perm[at + (uint32_t)i];
            seen[id]++;
            synth_reference(d, wf_loader_chain(l), seed, epoch, id, ref, scr);
            if (y[i] != d->labels[id] || memcmp(ref, x + (size_t)i * chw, chw * sizeof *ref)) bad++;
        }
    }
    for (uint32_t i = 0; i < n; i++)
        bad += seen[i] != 1;
    free(perm);
    free(seen);
    free(x);
    free(ref);
    free(scr);
    free(y);
    return bad;
}

#endif
