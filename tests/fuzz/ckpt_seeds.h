/*
 * fuzz: hostile checkpoints, one per way a file can lie, shared by the seed
 * generator (make_corpus.c writes them to tests/fuzz/corpus/fuzz_ckpt/) and
 * the unit test that checks each one's exact message
 * (tests/exec/test_hostile_ckpt.c).
 *
 * A valid checkpoint of a tiny model is written by wf_checkpoint_write (the
 * trainer's own writer), read back, and re-serialized from a plain
 * description (struct ck) that each seed edits: a metadata value, a
 * tensor's dtype, shape or byte range, the header length field, or raw
 * JSON. Header-only (no main, no test macros): include it once.
 */
#ifndef WEFT_FUZZ_CKPT_SEEDS_H
#define WEFT_FUZZ_CKPT_SEEDS_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/checkpoint.h"
#include "weft/core.h"
#include "weft/graph.h"
#include "weft/model.h"
#include "weft/safetensors.h"
#include "weft/train.h"

/* The name the seeds are opened under, so messages are fixed text. */
#define CK_PATH "fuzz.safetensors"

static const char ck_model_src[] = "model tiny\n"
                                   "input x : f32[B, 4]\n"
                                   "input y : i32[B]\n"
                                   "fc = linear(x, out=3)\n"
                                   "loss = cross_entropy(fc, y)\n"
                                   "output loss\n";

#define CK_MAX 16

/* A checkpoint as parts; ck_bytes serializes it. */
struct ck {
    int n_meta;
    char *key[CK_MAX], *val[CK_MAX]; /* val: a JSON string's contents, escaped by ck_bytes */
    int raw[CK_MAX];                 /* 1: val is raw JSON (not a string) */
    int n_t;
    char *name[CK_MAX], *dtype[CK_MAX], *shape[CK_MAX]; /* shape: JSON array text */
    uint64_t begin[CK_MAX], end[CK_MAX];
    const char *extra;        /* raw JSON members appended to the header object, or NULL */
    const char *header;       /* the whole header instead of the above, or NULL */
    unsigned char data[1024]; /* the data block */
    size_t n_data;
    int64_t hlen_delta; /* added to the header length field */
    size_t cut;         /* bytes cut from the end of the file */
};

static void ck_free(struct ck *c) {
    for (int i = 0; i < c->n_meta; i++) {
        free(c->key[i]);
        free(c->val[i]);
    }
    for (int i = 0; i < c->n_t; i++) {
        free(c->name[i]);
        free(c->dtype[i]);
        free(c->shape[i]);
    }
    memset(c, 0, sizeof *c);
}

static void ck_copy(struct ck *d, const struct ck *s) {
    *d = *s;
    for (int i = 0; i < s->n_meta; i++) {
        d->key[i] = strdup(s->key[i]);
        d->val[i] = strdup(s->val[i]);
    }
    for (int i = 0; i < s->n_t; i++) {
        d->name[i] = strdup(s->name[i]);
        d->dtype[i] = strdup(s->dtype[i]);
        d->shape[i] = strdup(s->shape[i]);
    }
}

/* Sets (val != NULL) or removes metadata key. */
static void ck_meta(struct ck *c, const char *key, const char *val, int raw) {
    for (int i = 0; i < c->n_meta; i++) {
        if (strcmp(c->key[i], key)) continue;
        free(c->val[i]);
        if (val) {
            c->val[i] = strdup(val);
            c->raw[i] = raw;
            return;
        }
        free(c->key[i]);
        for (int k = i + 1; k < c->n_meta; k++) {
            c->key[k - 1] = c->key[k];
            c->val[k - 1] = c->val[k];
            c->raw[k - 1] = c->raw[k];
        }
        c->n_meta--;
        return;
    }
    if (val && c->n_meta < CK_MAX) {
        c->key[c->n_meta] = strdup(key);
        c->val[c->n_meta] = strdup(val);
        c->raw[c->n_meta++] = raw;
    }
}

static int ck_tensor(const struct ck *c, const char *name) {
    for (int i = 0; i < c->n_t; i++)
        if (!strcmp(c->name[i], name)) return i;
    fprintf(stderr, "ckpt_seeds: no tensor '%s'\n", name);
    abort();
}

static void ck_set(char **slot, const char *v) {
    free(*slot);
    *slot = strdup(v);
}

/* Appends s to the growable buffer, JSON-escaped if esc. */
static void ck_put(char **b, size_t *n, size_t *cap, const char *s, int esc) {
    if (!*b) *b = malloc(*cap = 1024);
    for (; *s; s++) {
        char tmp[8];
        const char *p = tmp;
        unsigned char ch = (unsigned char)*s;
        if (esc && (ch == '"' || ch == '\\'))
            snprintf(tmp, sizeof tmp, "\\%c", ch);
        else if (esc && ch < 0x20)
            snprintf(tmp, sizeof tmp, "\\u%04x", ch);
        else
            tmp[0] = (char)ch, tmp[1] = 0;
        for (; *p; p++) {
            if (*n + 2 > *cap) *b = realloc(*b, *cap = *cap ? *cap * 2 : 1024);
            (*b)[(*n)++] = *p;
        }
    }
    (*b)[*n] = 0;
}

/* The file's bytes (malloc'd) into *out, *len. */
static void ck_bytes(const struct ck *c, unsigned char **out, size_t *len) {
    char *h = NULL;
    size_t n = 0, cap = 0;
    char num[64];
    ck_put(&h, &n, &cap, "", 0);
    if (c->header) {
        ck_put(&h, &n, &cap, c->header, 0);
    } else {
        ck_put(&h, &n, &cap, "{\"__metadata__\":{", 0);
        for (int i = 0; i < c->n_meta; i++) {
            ck_put(&h, &n, &cap, i ? ",\"" : "\"", 0);
            ck_put(&h, &n, &cap, c->key[i], 1);
            ck_put(&h, &n, &cap, c->raw[i] ? "\":" : "\":\"", 0);
            ck_put(&h, &n, &cap, c->val[i], !c->raw[i]);
            if (!c->raw[i]) ck_put(&h, &n, &cap, "\"", 0);
        }
        ck_put(&h, &n, &cap, "}", 0);
        for (int i = 0; i < c->n_t; i++) {
            ck_put(&h, &n, &cap, ",\"", 0);
            ck_put(&h, &n, &cap, c->name[i], 1);
            ck_put(&h, &n, &cap, "\":{\"dtype\":\"", 0);
            ck_put(&h, &n, &cap, c->dtype[i], 1);
            ck_put(&h, &n, &cap, "\",\"shape\":", 0);
            ck_put(&h, &n, &cap, c->shape[i], 0);
            snprintf(num, sizeof num, ",\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", c->begin[i], c->end[i]);
            ck_put(&h, &n, &cap, num, 0);
        }
        if (c->extra) ck_put(&h, &n, &cap, c->extra, 0);
        ck_put(&h, &n, &cap, "}", 0);
    }
    size_t total = 8 + n + c->n_data;
    unsigned char *b = malloc(total);
    uint64_t hl = (uint64_t)((int64_t)n + c->hlen_delta);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(hl >> (8 * i));
    memcpy(b + 8, h, n);
    memcpy(b + 8 + n, c->data, c->n_data);
    free(h);
    *out = b;
    *len = total - (c->cut < total ? c->cut : total);
}

/* Writes the tiny model's checkpoint with the trainer's writer, reads it
 * into *c and its bytes into *valid (free with wf_free). Returns 0, or -1 with the
 * reason in wf_errmsg(). */
static int ck_valid(struct ck *c, unsigned char **valid, size_t *valid_len) {
    memset(c, 0, sizeof *c);
    struct wf_model m;
    struct wf_graph g;
    char *text = NULL;
    int rc = wf_model_parse(&m, "tiny.wf", ck_model_src);
    if (rc) return -1;
    if ((rc = wf_model_write(&m, &text, NULL)) || (rc = wf_graph_build(&g, &m, 1))) {
        wf_model_free(&m);
        wf_free(text);
        return -1;
    }
    float vals[2][256];
    const float *p[256], *a[256];
    for (int i = 0; i < 256; i++)
        vals[0][i] = (float)(i % 7 - 3) / 8.0f, vals[1][i] = (float)(i % 5) / 16.0f;
    for (int i = 0; i < g.n_params; i++)
        p[i] = vals[0], a[i] = vals[1];
    struct wf_job j;
    memset(&j, 0, sizeof j);
    j.seed = 1, j.batch = 4, j.micro_batches = 1, j.epochs = 1, j.threads = 1;
    j.optimizer = WF_OPT_SGD, j.lr = 0.1, j.momentum = 0.9, j.lr_schedule = WF_LR_CONSTANT;
    j.data = "/usr/share/datasets/fashion-mnist";
    j.transforms = "";
    struct wf_ckpt_state cs = {
        .job = &j, .model_text = text, .g = &g, .param = p, .opt_a = a, .step = 2, .epoch = 0, .epoch_step = 2};
    char path[] = "/tmp/weft-ckpt-seed-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) rc = wf_error(WF_ERR_IO, "mkstemp failed");
    if (fd >= 0) close(fd);
    if (!rc) rc = wf_checkpoint_write(path, &cs);
    char *bytes = NULL;
    size_t n = 0;
    if (!rc) rc = wf_read_file(path, &bytes, &n);
    if (fd >= 0) unlink(path);
    struct wf_st_file f;
    if (!rc) rc = wf_st_parse(&f, CK_PATH, bytes, n);
    if (!rc) {
        for (int i = 0; i < f.n_meta; i++)
            ck_meta(c, f.meta_key[i], f.meta_val[i], 0);
        const unsigned char *base = f.buf + f.len;
        for (int i = 0; i < f.n; i++) {
            const unsigned char *d = f.t[i].data;
            if ((const unsigned char *)d < base) base = d;
        }
        c->n_data = (size_t)(f.buf + f.len - base);
        memcpy(c->data, base, c->n_data < sizeof c->data ? c->n_data : sizeof c->data);
        for (int i = 0; i < f.n && c->n_t < CK_MAX; i++) {
            char sh[128];
            size_t k = 0;
            wf_appendf(sh, sizeof sh, &k, "[");
            for (int d = 0; d < f.t[i].ndim; d++)
                wf_appendf(sh, sizeof sh, &k, "%s%" PRId64, d ? "," : "", f.t[i].shape[d]);
            wf_appendf(sh, sizeof sh, &k, "]");
            c->name[c->n_t] = strdup(f.t[i].name);
            c->dtype[c->n_t] = strdup(wf_dtype_name(f.t[i].dtype));
            c->shape[c->n_t] = strdup(sh);
            c->begin[c->n_t] = (uint64_t)((const unsigned char *)f.t[i].data - base);
            c->end[c->n_t] = c->begin[c->n_t] + f.t[i].nbytes;
            c->n_t++;
        }
        wf_st_free(&f);
    }
    *valid = (unsigned char *)bytes;
    *valid_len = n;
    wf_graph_free(&g);
    wf_model_free(&m);
    wf_free(text);
    return rc ? -1 : 0;
}

/* One seed: an edit of the valid checkpoint and the exact message
 * wf_ckpt_eval_init gives for it (NULL: accepted). A message ending in
 * "..." is a prefix: the rest counts bytes of the writer's header, or is
 * another layer's wording. */
struct ck_seed {
    const char *name;
    void (*edit)(struct ck *c);
    const char *msg;
};

static void ck_as_is(struct ck *c) { (void)c; }
static void ck_truncated(struct ck *c) { c->cut = 10; }
static void ck_truncated_header(struct ck *c) { c->cut = c->n_data + 40; }
static void ck_hlen_past_end(struct ck *c) { c->hlen_delta = (int64_t)c->n_data + 1; }
static void ck_hlen_huge(struct ck *c) { c->hlen_delta = (int64_t)1 << 62; }
static void ck_hlen_short(struct ck *c) { c->hlen_delta = -2; }
static void ck_offsets_reversed(struct ck *c) {
    int i = ck_tensor(c, "fc.weight");
    uint64_t b = c->begin[i];
    c->begin[i] = c->end[i];
    c->end[i] = b;
}
static void ck_offsets_overlap(struct ck *c) {
    int i = ck_tensor(c, "optim.fc.bias.momentum_buffer"), k = ck_tensor(c, "fc.bias");
    c->begin[i] = c->begin[k] + 4;
    c->end[i] = c->end[k] + 4;
}
static void ck_offsets_past_end(struct ck *c) {
    int i = ck_tensor(c, "optim.fc.weight.momentum_buffer");
    c->begin[i] += 12;
    c->end[i] += 12;
}
static void ck_offsets_gap(struct ck *c) {
    c->data[c->n_data] = 0;
    c->n_data += 4; /* 4 bytes no tensor claims */
}
static void ck_offsets_huge(struct ck *c) {
    int i = ck_tensor(c, "fc.bias");
    c->begin[i] = (uint64_t)1 << 52;
    c->end[i] = ((uint64_t)1 << 52) + 12;
}
static void ck_shape_overflow(struct ck *c) {
    ck_set(&c->shape[ck_tensor(c, "fc.weight")], "[4294967296,4294967296,16]");
}
static void ck_shape_negative(struct ck *c) { ck_set(&c->shape[ck_tensor(c, "fc.weight")], "[-3,-4]"); }
static void ck_shape_float(struct ck *c) { ck_set(&c->shape[ck_tensor(c, "fc.weight")], "[3.5,4]"); }
static void ck_shape_too_many_dims(struct ck *c) {
    ck_set(&c->shape[ck_tensor(c, "fc.weight")], "[1,1,1,1,1,1,1,1,3,4]");
}
static void ck_shape_transposed(struct ck *c) { ck_set(&c->shape[ck_tensor(c, "fc.weight")], "[4,3]"); }
static void ck_dtype_i32(struct ck *c) { ck_set(&c->dtype[ck_tensor(c, "fc.weight")], "I32"); }
static void ck_dtype_f64(struct ck *c) { ck_set(&c->dtype[ck_tensor(c, "fc.weight")], "F64"); }
static void ck_dtype_bf16(struct ck *c) { ck_set(&c->dtype[ck_tensor(c, "fc.weight")], "BF16"); }
static void ck_duplicate_tensor(struct ck *c) {
    ck_set(&c->name[ck_tensor(c, "optim.fc.bias.momentum_buffer")], "fc.bias");
}
static void ck_duplicate_meta(struct ck *c) {
    c->key[c->n_meta] = strdup("weft.step");
    c->val[c->n_meta] = strdup("7");
    c->raw[c->n_meta++] = 0;
}
static void ck_missing_param(struct ck *c) {
    int i = ck_tensor(c, "fc.bias");
    ck_set(&c->name[i], "fc.bias2");
}
static void ck_model_unparsable(struct ck *c) {
    ck_meta(c, "weft.model", "input x : f32[B, 4]\nfc = linear(x, out=3\n", 0);
}
static void ck_model_nul(struct ck *c) {
    ck_meta(c, "weft.model", "\"input x : f32[B, 4]\\u0000\\ninput y : i32[B]\"", 1);
}
static void ck_model_bad_utf8(struct ck *c) { ck_meta(c, "weft.model", "# caf\xe9\ninput x : f32[B, 4]\n", 0); }
static void ck_model_wider(struct ck *c) {
    ck_meta(c, "weft.model",
            "model tiny\ninput x : f32[B, 4]\ninput y : i32[B]\nfc = linear(x, out=5)\nloss = cross_entropy(fc, "
            "y)\noutput loss\n",
            0);
}
static void ck_model_no_labels(struct ck *c) {
    ck_meta(c, "weft.model", "model tiny\ninput x : f32[B, 4]\nfc = linear(x, out=3)\noutput fc\n", 0);
}
static void ck_model_huge_param(struct ck *c) {
    ck_meta(c, "weft.model",
            "model tiny\ninput x : f32[B, 4]\ninput y : i32[B]\nparam p : f32[4611686018427387904, 4]\nfc = "
            "linear(x, out=3)\nloss = cross_entropy(fc, y)\noutput loss\n",
            0);
}
static void ck_model_missing(struct ck *c) { ck_meta(c, "weft.model", NULL, 0); }
static void ck_job_missing(struct ck *c) { ck_meta(c, "weft.job", NULL, 0); }
static void ck_job_twice(struct ck *c) { ck_meta(c, "weft.job", "seed=1 batch=4 optimizer=sgd seed=2", 0); }
static void ck_job_no_batch(struct ck *c) { ck_meta(c, "weft.job", "seed=1 optimizer=sgd lr=0.1", 0); }
static void ck_job_garbage(struct ck *c) { ck_meta(c, "weft.job", "seed=1  batch=4", 0); }
static void ck_job_not_string(struct ck *c) { ck_meta(c, "weft.job", "{\"seed\":1}", 1); }
static void ck_step_negative(struct ck *c) { ck_meta(c, "weft.step", "-1", 0); }
static void ck_step_overflow(struct ck *c) { ck_meta(c, "weft.step", "99999999999999999999999", 0); }
static void ck_step_space(struct ck *c) { ck_meta(c, "weft.step", " 2", 0); }
static void ck_format_2(struct ck *c) { ck_meta(c, "weft.format", "2", 0); }
static void ck_format_missing(struct ck *c) { ck_meta(c, "weft.format", NULL, 0); }
static void ck_transforms_bad(struct ck *c) { ck_meta(c, "weft.transforms", "flip(p=0.5", 0); }
static void ck_deep_nesting(struct ck *c) { c->extra = ",\"deep\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]"; }
static void ck_not_json(struct ck *c) { c->header = "{\"__metadata__\":{\"weft.format\":\"1\"},"; }
static void ck_not_object(struct ck *c) { c->header = "[1,2,3]"; }
static void ck_trailing(struct ck *c) { c->extra = "} x"; }
static void ck_header_nul(struct ck *c) { c->header = "{\"a\\u0000b\":{}}"; }
static void ck_no_metadata(struct ck *c) {
    while (c->n_meta)
        ck_meta(c, c->key[0], NULL, 0);
}

static const struct ck_seed ck_seeds[] = {
    {"valid", ck_as_is, NULL},
    {"truncated", ck_truncated,
     CK_PATH ": tensor 'optim.fc.weight.momentum_buffer': data_offsets [72, 120) exceed the data block of 110 bytes "
             "(file truncated?)"},
    {"truncated_header", ck_truncated_header, CK_PATH ": header length ..."},
    {"hlen_past_end", ck_hlen_past_end, CK_PATH ": header length ..."},
    {"hlen_huge", ck_hlen_huge, CK_PATH ": header length 4611686018427388..."},
    {"hlen_short", ck_hlen_short, CK_PATH ": header is not valid JSON (error at byte ..."},
    {"offsets_reversed", ck_offsets_reversed,
     CK_PATH ": tensor 'fc.weight': data_offsets [60, 12) end before they begin"},
    {"offsets_overlap", ck_offsets_overlap,
     CK_PATH ": tensors 'fc.bias' [0, 12) and 'optim.fc.bias.momentum_buffer' [4, 16) overlap in the data block"},
    {"offsets_past_end", ck_offsets_past_end,
     CK_PATH ": tensor 'optim.fc.weight.momentum_buffer': data_offsets [84, 132) exceed the data block of 120 bytes "
             "(file truncated?)"},
    {"offsets_gap", ck_offsets_gap,
     CK_PATH ": data block is 124 bytes but the tensors cover only 120 (trailing bytes after the last tensor)"},
    {"offsets_huge", ck_offsets_huge,
     CK_PATH ": tensor 'fc.bias': data_offsets [4503599627370496, 4503599627370508) exceed the data block of 120 "
             "bytes (file truncated?)"},
    {"shape_overflow", ck_shape_overflow,
     CK_PATH ": tensor 'fc.weight': shape [4294967296, 4294967296, 16] of F32 is larger than the data block of 120 "
             "bytes"},
    {"shape_negative", ck_shape_negative, CK_PATH ": tensor 'fc.weight': shape[0] is not a non-negative integer"},
    {"shape_float", ck_shape_float, CK_PATH ": tensor 'fc.weight': shape[0] is not a non-negative integer"},
    {"shape_too_many_dims", ck_shape_too_many_dims, CK_PATH ": tensor 'fc.weight': 10 dimensions, at most 8 supported"},
    {"shape_transposed", ck_shape_transposed, CK_PATH ": tensor 'fc.weight' is F32[4, 3], the model needs f32[3, 4]"},
    {"dtype_i32", ck_dtype_i32, CK_PATH ": tensor 'fc.weight' is I32[3, 4], the model needs f32[3, 4]"},
    {"dtype_f64", ck_dtype_f64,
     CK_PATH ": tensor 'fc.weight': shape [3, 4] of F64 is 96 bytes but data_offsets [12, 60) span 48"},
    {"dtype_bf16", ck_dtype_bf16,
     CK_PATH ": tensor 'fc.weight': unsupported dtype 'BF16' (weft reads F32, I32, I64, U8, F64)"},
    {"duplicate_tensor", ck_duplicate_tensor, CK_PATH ": header: duplicate tensor name 'fc.bias'"},
    {"duplicate_meta", ck_duplicate_meta, CK_PATH ": header: duplicate metadata key 'weft.step'"},
    {"missing_param", ck_missing_param, CK_PATH ": no tensor 'fc.bias' (the model needs f32[3])"},
    {"model_unparsable", ck_model_unparsable,
     CK_PATH ":weft.model:2:21: expected ',' or ')' to close the call opened at 2:12, got end of line"},
    {"model_nul", ck_model_nul, CK_PATH ": header has a NUL character (\\u0000) in a string at byte ..."},
    {"model_bad_utf8", ck_model_bad_utf8, CK_PATH ":weft.model:1:6: invalid UTF-8 (byte 0xe9)"},
    {"model_wider", ck_model_wider, CK_PATH ": tensor 'fc.weight' is F32[3, 4], the model needs f32[5, 4]"},
    {"model_no_labels", ck_model_no_labels,
     CK_PATH ":weft.model: evaluation needs an input for the samples and a scalar f32 loss output"},
    {"model_huge_param", ck_model_huge_param, CK_PATH ":weft.model:4:1: ..."},
    {"model_missing", ck_model_missing, CK_PATH ": not a weft checkpoint (no 'weft.model' in its metadata)"},
    {"job_missing", ck_job_missing, CK_PATH ": not a weft checkpoint (no 'weft.job' in its metadata)"},
    {"job_twice", ck_job_twice, CK_PATH ": metadata 'weft.job': setting 'seed' given twice"},
    {"job_no_batch", ck_job_no_batch, CK_PATH ": metadata 'weft.job' has no 'batch' setting"},
    {"job_garbage", ck_job_garbage, CK_PATH ": metadata 'weft.job': empty setting at byte 7"},
    {"job_not_string", ck_job_not_string, CK_PATH ": header: metadata value of 'weft.job' is not a string"},
    {"step_negative", ck_step_negative, CK_PATH ": metadata 'weft.step' is '-1', expected a count"},
    {"step_overflow", ck_step_overflow,
     CK_PATH ": metadata 'weft.step' is '99999999999999999999999', expected a count"},
    {"step_space", ck_step_space, CK_PATH ": metadata 'weft.step' is ' 2', expected a count"},
    {"format_2", ck_format_2, CK_PATH ": checkpoint format '2', this weft reads format 1"},
    {"format_missing", ck_format_missing, CK_PATH ": not a weft checkpoint (no 'weft.format' in its metadata)"},
    {"transforms_bad", ck_transforms_bad,
     CK_PATH ": metadata 'weft.transforms': transforms:1:11: expected ',' or ')', got end of file"},
    {"deep_nesting", ck_deep_nesting, CK_PATH ": header nests deeper than 8 levels at byte ..."},
    {"not_json", ck_not_json, CK_PATH ": header is not valid JSON (error at byte 43; the header is bytes [8, 44))"},
    {"not_object", ck_not_object, CK_PATH ": header does not start with '{' (not a safetensors file?)"},
    {"trailing", ck_trailing, CK_PATH ": unexpected bytes after the header JSON at byte ..."},
    {"header_nul", ck_header_nul, CK_PATH ": header has a NUL character (\\u0000) in a string at byte 11"},
    {"no_metadata", ck_no_metadata, CK_PATH ": not a weft checkpoint (no 'weft.format' in its metadata)"},
};

/* 1 if msg is what seed s expects (exactly, or its prefix before "..."). */
static int ck_msg_ok(const struct ck_seed *s, const char *msg) {
    size_t n = strlen(s->msg);
    if (n >= 3 && !strcmp(s->msg + n - 3, "...")) return !strncmp(s->msg, msg, n - 3);
    return !strcmp(s->msg, msg);
}

#endif
