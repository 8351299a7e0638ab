/*
 * exec: a job's data source — the stores of its train and test splits, the
 * cache the job names and the loaders over them (include/weft/loader.h),
 * opened the same way by `weft train` and by every pipeline worker, so that
 * both see the same bytes for the same sample. A data folder holding
 * train.tok is a token dataset, sampled as the job's seq_len, sample,
 * labels and stride say (include/weft/loader.h, struct wf_sample_opts);
 * labels = class needs its class files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/core.h"
#include "weft/loader.h"
#include "weft/train.h"

void wf_data_stage_dir(const struct wf_job *j, char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (j->data_stage)
        snprintf(buf, cap, "%s", j->data_stage);
    else if (xdg && xdg[0] == '/')
        snprintf(buf, cap, "%s/weft/data", xdg);
    else if (home && home[0] == '/')
        snprintf(buf, cap, "%s/.cache/weft/data", home);
    else
        snprintf(buf, cap, "/tmp/weft-data-%ld", (long)getuid());
}

void wf_data_close(struct wf_data_src *d) {
    wf_loader_free(d->ltrain);
    wf_loader_free(d->ltest);
    wf_cache_free(d->cache);
    wf_store_free(d->train);
    wf_store_free(d->test);
    memset(d, 0, sizeof *d);
}

static int open_cache(struct wf_data_src *d, const struct wf_job *j) {
    const char *spec = j->cache ? j->cache : "memory";
    if (!strcmp(spec, "none") || (!strcmp(spec, "memory") && j->cache_mb == 0)) return WF_OK;
    if (!strcmp(spec, "memory")) return wf_cache_new_mem(&d->cache, (size_t)j->cache_mb << 20);
    char host[64];
    int port;
    if (wf_job_cache_redis(spec, host, sizeof host, &port) < 0)
        return wf_error(WF_ERR_INVALID, "cache = %s: expected memory, none or redis://HOST:PORT", spec);
    return wf_cache_new_redis(&d->cache, host, port, NULL);
}

/* The job's keys against the folder's kind of data, with where the job gave them. */
static int check_kind(const struct wf_job *j, int tokens) {
    const char *job = j->path ? j->path : "<memory>";
    char where[64] = "";
    if (tokens && !j->seq_len) {
        if (j->data_at.line) snprintf(where, sizeof where, ":%d:%d", j->data_at.line, j->data_at.col);
        return wf_error(
            WF_ERR_INVALID,
            "%s%s: data = %s holds a token dataset (train.tok): set seq_len (and sample, labels) in the job", job,
            where, j->data);
    }
    if (!tokens && j->seq_len) {
        if (j->seq_len_at.line) snprintf(where, sizeof where, ":%d:%d", j->seq_len_at.line, j->seq_len_at.col);
        return wf_error(WF_ERR_INVALID,
                        "%s%s: seq_len is set, but data = %s holds no token dataset (train.tok, test.tok, vocab.txt)",
                        job, where, j->data);
    }
    if (tokens && j->labels == WF_LABELS_CLASS && !wf_store_dir_has_classes(j->data)) {
        if (j->labels_at.line) snprintf(where, sizeof where, ":%d:%d", j->labels_at.line, j->labels_at.col);
        return wf_error(WF_ERR_INVALID,
                        "%s%s: labels = class, but data = %s has no class labels (classes.txt, train.cls, test.cls: "
                        "made by weft tokenize --classes file)",
                        job, where, j->data);
    }
    return WF_OK;
}

int wf_data_open(struct wf_data_src *d, const struct wf_job *j) {
    memset(d, 0, sizeof *d);
    char stage[4096];
    wf_data_stage_dir(j, stage, sizeof stage);
    int tokens = wf_store_dir_is_tokens(j->data);
    int rc = check_kind(j, tokens);
    if (rc) return rc;
    struct wf_sample_opts so;
    wf_job_sample_opts(j, &so);
    rc = wf_store_open_opts(&d->train, j->data, "train", stage, tokens ? &so : NULL);
    if (rc == WF_OK) rc = wf_store_open_opts(&d->test, j->data, "test", stage, tokens ? &so : NULL);
    if (rc == WF_OK) rc = open_cache(d, j);
    if (rc == WF_OK) rc = wf_loader_new(&d->ltrain, d->train, j->transforms ? j->transforms : "", j->seed, d->cache);
    if (rc == WF_OK) {
        /* the test split goes through the deterministic part of the chain only */
        const struct wf_xf_chain *ch = wf_loader_chain(d->ltrain);
        char prefix[2048];
        wf_xf_text(ch, 0, ch->n_prefix, prefix, sizeof prefix);
        rc = wf_loader_new(&d->ltest, d->test, prefix, j->seed, d->cache);
    }
    if (rc < 0) {
        wf_data_close(d);
        return wf_error_prefix(rc, "%s: data = %s", j->path ? j->path : "job", j->data);
    }
    d->itrain = wf_store_info(d->train);
    d->itest = wf_store_info(d->test);
    return WF_OK;
}

int wf_data_feeder(struct wf_data_src *d, const struct wf_job *j, long first_step, int lo, int hi, int labels_only,
                   struct wf_feeder **out) {
    long spe = d->itrain->n / j->batch;
    struct wf_feeder_opts o = {.batch = j->batch,
                               .lo = lo,
                               .hi = hi,
                               .seed = j->seed,
                               .steps_per_epoch = spe,
                               .first_step = first_step,
                               .end_step = WF_MAX(first_step, spe * j->epochs),
                               .workers = j->loader_workers,
                               .depth = j->prefetch,
                               .placement = j->placement,
                               .labels_only = labels_only};
    int rc = wf_feeder_new(out, d->ltrain, &o);
    return rc < 0 ? wf_error_prefix(rc, "%s", j->path ? j->path : "job") : WF_OK;
}

void wf_data_stats_json(const struct wf_data_src *d, struct wf_feeder *f, char *buf, size_t cap) {
    struct wf_loader_stats a, b;
    wf_loader_stats(d->ltrain, &a);
    wf_loader_stats(d->ltest, &b);
    uint64_t hits = a.hits + b.hits, look = a.hits + a.misses + b.hits + b.misses;
    struct wf_cache_stats cs = {0};
    if (d->cache) wf_cache_stats(d->cache, &cs);
    int k = snprintf(buf, cap,
                     "\"cache\":\"%s\",\"cache_hits\":%llu,\"cache_misses\":%llu,\"cache_hit_rate\":%.4f,"
                     "\"cache_evictions\":%llu,\"cache_fallbacks\":%llu,\"data_bytes_read\":%llu",
                     d->cache ? wf_cache_name(d->cache) : "none", (unsigned long long)hits,
                     (unsigned long long)(look - hits), look ? (double)hits / (double)look : 0.0,
                     (unsigned long long)cs.evictions, (unsigned long long)(a.fallback_batches + b.fallback_batches),
                     (unsigned long long)(a.bytes_read + b.bytes_read));
    if (f && k > 0 && (size_t)k < cap) {
        struct wf_feeder_stats fs;
        wf_feeder_stats(f, &fs);
        char dec[200];
        size_t o = 0;
        for (const char *s = fs.decision; *s && o + 2 < sizeof dec; s++) { /* JSON-safe: no quotes in it */
            if (*s == '"' || *s == '\\') dec[o++] = '\\';
            dec[o++] = *s;
        }
        dec[o] = 0;
        snprintf(buf + k, cap - (size_t)k,
                 ",\"placement\":\"%s\",\"placement_decision\":\"%s\",\"placement_switches\":%d,"
                 "\"batches_cpu\":%ld,\"batches_device\":%ld,\"queue_occupancy\":%.3f,\"device_util\":%.3f,"
                 "\"data_wait_s\":%.4f",
                 wf_place_name(fs.placement), dec, fs.switches, fs.batches_cpu, fs.batches_device, fs.occupancy,
                 fs.device_util, fs.wait_s);
    }
}
