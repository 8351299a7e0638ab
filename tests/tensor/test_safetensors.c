/*
 * tensor layer test: safetensors round trip, deterministic bytes, rejection
 * of truncated and corrupt files with precise messages, and allocation
 * failure at every allocation of load and save.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/safetensors.h"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_raw(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    CHECK(fwrite(data, 1, len, fp) == len);
    fclose(fp);
}

/* Writes a file with the given header JSON (padded to 8) and data block. */
static void write_st(const char *path, const char *json, const void *data, size_t dlen) {
    size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
    unsigned char *b = calloc(1, 8 + hl + dlen + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, jl);
    memset(b + 8 + jl, ' ', hl - jl);
    if (dlen) memcpy(b + 8 + hl, data, dlen);
    write_raw(path, b, 8 + hl + dlen);
    free(b);
}

/* Loads path, expects status `want` and a message naming the file and
 * containing `needle`; the struct must be left empty. */
static void expect_load_error(const char *path, int want, const char *needle, int line) {
    struct wf_st_file f;
    memset(&f, 0x5a, sizeof f);
    int rc = wf_st_load(&f, path);
    CHECKF(rc == want, "line %d: status %s, want %s (%s)", line, wf_status_str(rc), wf_status_str(want), wf_errmsg());
    CHECKF(strstr(wf_errmsg(), path) != NULL, "line %d: message does not name the file: %s", line, wf_errmsg());
    if (needle) CHECKF(strstr(wf_errmsg(), needle) != NULL, "line %d: '%s' not in: %s", line, needle, wf_errmsg());
    CHECK(f.n == 0 && f.t == NULL && f.buf == NULL && f.path == NULL && f.n_meta == 0);
    wf_st_free(&f);
}
#define EXPECT_LOAD_ERROR(path, want, needle) expect_load_error(path, want, needle, __LINE__)

/* ---- the test checkpoint ---- */

static float w1[12], b1[4];
static double zd[4];
static int64_t step = 1234567890123ll;
static uint8_t mask[5] = {1, 0, 1, 1, 0};

struct spec {
    const char *name;
    int dtype, ndim;
    int64_t shape[3];
    const void *data;
};

static const struct spec specs[] = {
    {"fc1.weight", WF_F32, 2, {3, 4}, w1}, {"fc1.bias", WF_F32, 1, {4}, b1},
    {"step", WF_I64, 0, {0}, &step},       /* 0-d scalar */
    {"mask", WF_U8, 1, {5}, mask},         /* odd size: later tensors unaligned */
    {"empty", WF_I32, 3, {2, 0, 3}, NULL}, /* zero elements */
    {"z.double", WF_F64, 2, {2, 2}, zd},
};
#define NSPEC ((int)(sizeof specs / sizeof specs[0]))

static const char *meta[][2] = {
    {"format", "pt"},
    {"weft.step", "1234"},
    {"note", "quote \" backslash \\ newline \n tab \t utf8 \xc3\xa9"},
};
#define NMETA ((int)(sizeof meta / sizeof meta[0]))

/* Adds everything, in the given order (reversed if rev). */
static int build(struct wf_st_writer *w, int rev) {
    wf_st_writer_init(w);
    for (int i = 0; i < NMETA; i++) {
        int k = rev ? NMETA - 1 - i : i;
        int rc = wf_st_writer_meta(w, meta[k][0], meta[k][1]);
        if (rc) return rc;
    }
    for (int i = 0; i < NSPEC; i++) {
        const struct spec *s = &specs[rev ? NSPEC - 1 - i : i];
        int rc = wf_st_writer_add(w, s->name, s->dtype, s->ndim, s->shape, s->data);
        if (rc) return rc;
    }
    return WF_OK;
}

static void check_contents(const struct wf_st_file *f) {
    CHECK(f->n == NSPEC);
    for (int i = 0; i < NSPEC; i++) {
        const struct spec *s = &specs[i];
        const struct wf_st_tensor *t = wf_st_find(f, s->name);
        CHECKF(t != NULL, "tensor %s missing", s->name);
        if (!t) continue;
        CHECK(t->dtype == s->dtype && t->ndim == s->ndim);
        size_t count = 1;
        for (int d = 0; d < s->ndim; d++) {
            CHECK(t->shape[d] == s->shape[d]);
            count *= (size_t)s->shape[d];
        }
        CHECK(t->nbytes == count * (size_t)wf_dtype_size(s->dtype));
        if (t->nbytes) CHECK(memcmp(t->data, s->data, t->nbytes) == 0);
    }
    CHECK(wf_st_find(f, "nope") == NULL);
    CHECK(f->n_meta == NMETA);
    for (int i = 0; i < NMETA; i++) {
        const char *v = wf_st_meta(f, meta[i][0]);
        CHECKF(v && !strcmp(v, meta[i][1]), "meta %s", meta[i][0]);
    }
    CHECK(wf_st_meta(f, "nope") == NULL);
}

static void test_dtypes(void) {
    CHECK(!strcmp(wf_dtype_name(WF_F32), "F32") && !strcmp(wf_dtype_name(WF_I32), "I32"));
    CHECK(!strcmp(wf_dtype_name(WF_I64), "I64") && !strcmp(wf_dtype_name(WF_U8), "U8"));
    CHECK(!strcmp(wf_dtype_name(WF_F64), "F64"));
    CHECK(wf_dtype_size(WF_F32) == 4 && wf_dtype_size(WF_I32) == 4 && wf_dtype_size(WF_I64) == 8);
    CHECK(wf_dtype_size(WF_U8) == 1 && wf_dtype_size(WF_F64) == 8);
    CHECK(wf_dtype_size(-1) == 0 && wf_dtype_size(99) == 0);
}

static void test_round_trip(void) {
    for (int i = 0; i < 12; i++)
        w1[i] = 0.5f * (float)i - 3.0f;
    for (int i = 0; i < 4; i++)
        b1[i] = 1.0f / (float)(i + 1), zd[i] = 1e300 / (i + 1);

    struct wf_st_writer w;
    CHECK(build(&w, 0) == WF_OK);
    const char *path = tmp_path("ckpt.safetensors");
    CHECKF(wf_st_writer_save(&w, path) == WF_OK, "%s", wf_errmsg());

    unsigned char *mem;
    size_t mlen;
    CHECK(wf_st_writer_serialize(&w, &mem, &mlen) == WF_OK);
    /* Header: length field, then JSON padded with spaces to a multiple of 8. */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | mem[i];
    CHECK(hl % 8 == 0 && 8 + hl <= mlen);
    CHECK(mem[8] == '{');
    CHECK(!memcmp(mem + 8, "{\"__metadata__\":{\"format\":\"pt\",\"note\":", 38));
    size_t data = 4 * 12 + 4 * 4 + 8 + 5 + 0 + 8 * 4;
    CHECK(mlen == 8 + hl + data);
    /* Data packed in name order: empty, fc1.bias, fc1.weight, mask, step, z.double. */
    CHECK(!memcmp(mem + 8 + hl, b1, 16) && !memcmp(mem + 8 + hl + 16, w1, 48));
    CHECK(!memcmp(mem + 8 + hl + 64, mask, 5) && !memcmp(mem + 8 + hl + 69, &step, 8));

    struct wf_st_file f;
    CHECKF(wf_st_load(&f, path) == WF_OK, "%s", wf_errmsg());
    check_contents(&f);
    CHECK(f.len == mlen && !memcmp(f.buf, mem, mlen)); /* the file is the serialized bytes */
    wf_st_free(&f);
    wf_st_free(&f); /* idempotent */
    wf_free(mem);

    /* Same contents added in another order: same bytes. */
    struct wf_st_writer w2;
    CHECK(build(&w2, 1) == WF_OK);
    unsigned char *m1, *m2;
    size_t l1, l2;
    CHECK(wf_st_writer_serialize(&w, &m1, &l1) == WF_OK);
    CHECK(wf_st_writer_serialize(&w2, &m2, &l2) == WF_OK);
    CHECK(l1 == l2 && !memcmp(m1, m2, l1));
    wf_free(m1);
    wf_free(m2);
    wf_st_writer_free(&w2);
    wf_st_writer_free(&w);

    /* The exact bytes of a tiny file. */
    wf_st_writer_init(&w);
    float one = 1.0f;
    int64_t shp[1] = {1};
    CHECK(wf_st_writer_add(&w, "x", WF_F32, 1, shp, &one) == WF_OK);
    CHECK(wf_st_writer_serialize(&w, &m1, &l1) == WF_OK);
    const char *want = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t wl = strlen(want), wpad = (wl + 7) / 8 * 8;
    CHECK(l1 == 8 + wpad + 4 && m1[0] == wpad && m1[1] == 0);
    CHECK(!memcmp(m1 + 8, want, wl));
    for (size_t i = wl; i < wpad; i++)
        CHECK(m1[8 + i] == ' ');
    CHECK(!memcmp(m1 + 8 + wpad, &one, 4));
    wf_free(m1);
    wf_st_writer_free(&w);

    /* An empty file: "{}" and no data. */
    wf_st_writer_init(&w);
    CHECK(wf_st_writer_save(&w, tmp_path("empty.safetensors")) == WF_OK);
    CHECK(wf_st_load(&f, tmp_path("empty.safetensors")) == WF_OK);
    CHECK(f.n == 0 && f.n_meta == 0 && f.len == 16);
    wf_st_free(&f);
    wf_st_writer_free(&w);

    /* A header as another writer may lay it out: metadata last, whitespace. */
    float two[2] = {1.5f, -2.5f};
    write_st(tmp_path("other.safetensors"),
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"__metadata__\": {\"format\": "
             "\"pt\"}}",
             two, 8);
    CHECKF(wf_st_load(&f, tmp_path("other.safetensors")) == WF_OK, "%s", wf_errmsg());
    CHECK(f.n == 1 && wf_st_find(&f, "a") && !memcmp(wf_st_find(&f, "a")->data, two, 8));
    CHECK(wf_st_meta(&f, "format") && !strcmp(wf_st_meta(&f, "format"), "pt"));
    wf_st_free(&f);
}

static void test_writer_errors(void) {
    struct wf_st_writer w;
    wf_st_writer_init(&w);
    float v[4] = {0};
    int64_t s2[2] = {2, 2}, neg[1] = {-1};
    CHECK(wf_st_writer_add(&w, "a", WF_F32, 2, s2, v) == WF_OK);
    CHECK(wf_st_writer_add(&w, "a", WF_F32, 2, s2, v) == WF_ERR_INVALID);
    CHECK(strstr(wf_errmsg(), "duplicate") != NULL);
    CHECK(wf_st_writer_add(&w, "", WF_F32, 2, s2, v) == WF_ERR_INVALID);
    CHECK(wf_st_writer_add(&w, "__metadata__", WF_F32, 2, s2, v) == WF_ERR_INVALID);
    CHECK(wf_st_writer_add(&w, "b", 17, 2, s2, v) == WF_ERR_INVALID);
    CHECK(wf_st_writer_add(&w, "b", WF_F32, 1, neg, v) == WF_ERR_INVALID);
    CHECK(wf_st_writer_add(&w, "b", WF_F32, 9, s2, v) == WF_ERR_INVALID);
    CHECK(wf_st_writer_add(&w, "b", WF_F32, 2, s2, NULL) == WF_ERR_INVALID);
    int64_t huge[3] = {1ll << 40, 1ll << 40, 1ll << 40};
    CHECK(wf_st_writer_add(&w, "b", WF_F32, 3, huge, v) == WF_ERR_RANGE);
    CHECK(wf_st_writer_meta(&w, "k", "v") == WF_OK);
    CHECK(wf_st_writer_meta(&w, "k", "w") == WF_ERR_INVALID);
    CHECK(w.n == 1 && w.n_meta == 1);
    /* Saving into a missing directory is an I/O error naming the path. */
    CHECK(wf_st_writer_save(&w, "/nonexistent-weft-dir/x.safetensors") == WF_ERR_IO);
    CHECK(strstr(wf_errmsg(), "/nonexistent-weft-dir/x.safetensors") != NULL);
    wf_st_writer_free(&w);
    wf_st_writer_free(NULL);
}

static void test_corrupt(void) {
    const char *src = tmp_path("ckpt.safetensors");
    char *good;
    size_t glen;
    CHECK(wf_read_file(src, &good, &glen) == WF_OK);
    const char *p = tmp_path("bad.safetensors");

    /* Every truncation of a valid file is rejected. */
    int bad = 0;
    for (size_t L = 0; L < glen; L++) {
        write_raw(p, good, L);
        struct wf_st_file f;
        int rc = wf_st_load(&f, p);
        if (rc != WF_ERR_CORRUPT || !strstr(wf_errmsg(), p) || f.buf || f.n) {
            if (bad++ < 5) fprintf(stderr, "truncation to %zu: %s: %s\n", L, wf_status_str(rc), wf_errmsg());
        }
        wf_st_free(&f);
    }
    CHECKF(bad == 0, "%d truncations not rejected", bad);
    write_raw(p, good, 5);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "too short");
    write_raw(p, good, 40);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "file truncated?");
    write_raw(p, good, glen - 1);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "exceed the data block");
    /* Trailing bytes after the last tensor. */
    char *longer = malloc(glen + 3);
    memcpy(longer, good, glen);
    memset(longer + glen, 7, 3);
    write_raw(p, longer, glen + 3);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "trailing bytes");
    free(longer);

    /* Header length beyond the file, and beyond the cap. */
    unsigned char hdr[16] = {0x00, 0x10, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    write_raw(p, hdr, sizeof hdr);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "header length 4096 exceeds the 8 bytes");
    hdr[1] = 0, hdr[4] = 1; /* 2^32 */
    write_raw(p, hdr, sizeof hdr);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "limit");
    hdr[4] = 0xff, hdr[7] = 0xff; /* would overflow 8 + N */
    write_raw(p, hdr, sizeof hdr);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "limit");

    float d[6] = {0};
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "not valid JSON");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "after the header JSON");
    write_st(p, "[1,2,3]", d, 0);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "not start with '{'");
    write_st(p, "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d, 4);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "unsupported dtype 'BF16'");
    write_st(p, "{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "dtype is not a string");
    write_st(p, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}", d, 24);
    EXPECT_LOAD_ERROR(
        p, WF_ERR_CORRUPT,
        "tensor 'fc1.weight': data_offsets [0, 4096) exceed the data block of 24 bytes (file truncated?)");
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
             d, 24);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "overlap");
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
             d, 20);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "belong to no tensor");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", d, 24);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "shape [2, 3] of F32 is 24 bytes but data_offsets [0, 20) span 20");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4096],\"data_offsets\":[0,8]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "larger than the data block");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "shape[0] is not a non-negative integer");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "shape[0]");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "9 dimensions");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "end before");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "data_offsets");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "missing field 'data_offsets'");
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", d, 8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "unknown field 'extra'");
    write_st(p, "{\"a\":[1]}", d, 0);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "not an object");
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
             d, 16);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "duplicate tensor name 'a'");
    write_st(p, "{\"__metadata__\":{\"epoch\":3},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", d,
             8);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "metadata value of 'epoch' is not a string");
    write_st(p, "{\"__metadata__\":[\"x\"]}", d, 0);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "__metadata__");
    write_st(p, "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", d, 0);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, "duplicate metadata key 'k'");
    /* Deeply nested JSON is rejected, not a stack overflow. */
    char deep[8192];
    memset(deep, '[', sizeof deep - 1);
    deep[0] = '{', deep[1] = '"', deep[2] = 'a', deep[3] = '"', deep[4] = ':';
    deep[sizeof deep - 1] = 0;
    write_st(p, deep, d, 0);
    EXPECT_LOAD_ERROR(p, WF_ERR_CORRUPT, NULL);

    /* A missing file is not found, naming the path. */
    EXPECT_LOAD_ERROR(tmp_path("missing.safetensors"), WF_ERR_NOTFOUND, NULL);
    /* A zero-size tensor between two others is fine. */
    write_st(p,
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"e\":{\"dtype\":\"I64\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
             "\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[8,9]}}",
             d, 9);
    struct wf_st_file f;
    CHECKF(wf_st_load(&f, p) == WF_OK, "%s", wf_errmsg());
    CHECK(f.n == 3 && wf_st_find(&f, "e")->nbytes == 0 && wf_st_find(&f, "s")->ndim == 0);
    wf_st_free(&f);
    wf_free(good);
}

static void test_alloc_failure(void) {
    const char *path = tmp_path("ckpt.safetensors");
    int k, ok = 0;
    for (k = 1; k < 10000 && !ok; k++) {
        struct wf_st_file f;
        wf_alloc_fail_at(k);
        int rc = wf_st_load(&f, path);
        wf_alloc_fail_at(0);
        CHECKF(rc == WF_OK || rc == WF_ERR_NOMEM, "load, failing allocation %d: %s (%s)", k, wf_status_str(rc),
               wf_errmsg());
        if (rc == WF_OK) {
            check_contents(&f);
            ok = 1;
        } else {
            CHECK(f.buf == NULL && f.t == NULL && f.n == 0);
        }
        wf_st_free(&f);
    }
    CHECK(ok && k > 3);

    const char *out = tmp_path("oom.safetensors");
    ok = 0;
    for (k = 1; k < 10000 && !ok; k++) {
        struct wf_st_writer w;
        wf_alloc_fail_at(k);
        int rc = build(&w, k & 1);
        if (rc == WF_OK) rc = wf_st_writer_save(&w, out);
        wf_alloc_fail_at(0);
        CHECKF(rc == WF_OK || rc == WF_ERR_NOMEM, "save, failing allocation %d: %s (%s)", k, wf_status_str(rc),
               wf_errmsg());
        wf_st_writer_free(&w);
        ok = rc == WF_OK;
    }
    CHECK(ok && k > 3);
    char *a, *b;
    size_t la, lb;
    CHECK(wf_read_file(path, &a, &la) == WF_OK && wf_read_file(out, &b, &lb) == WF_OK);
    CHECK(la == lb && !memcmp(a, b, la));
    wf_free(a);
    wf_free(b);
}

static void rm_tmpdir(void) {
    DIR *dir = opendir(tmpdir);
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(tmp_path(e->d_name));
    closedir(dir);
    rmdir(tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-test-st-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_dtypes();
    test_round_trip();
    test_writer_errors();
    test_corrupt();
    test_alloc_failure();
    rm_tmpdir();
    return wf_test_done("test_safetensors");
}
