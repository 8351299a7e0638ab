/*
 * data layer test: IDX reading (plain and gzip), rejection of truncated and
 * malformed files, dataset loading, the epoch order and batch gathering; and
 * the real Fashion-MNIST when it is installed.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/data.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void write_bytes(const char *path, int gz, const void *data, size_t len) {
    if (gz) {
        gzFile g = gzopen(path, "wb");
        CHECK(g != NULL);
        if (!g) return;
        if (len) CHECK(gzwrite(g, data, (unsigned)len) == (int)len);
        CHECK(gzclose(g) == Z_OK);
    } else {
        FILE *fp = fopen(path, "wb");
        CHECK(fp != NULL);
        if (!fp) return;
        CHECK(fwrite(data, 1, len, fp) == len);
        fclose(fp);
    }
}

/* An IDX file: magic, ndim big-endian dims, payload. `cut` bytes dropped
 * from the end, `extra` garbage bytes appended (before compression). */
static void write_idx(const char *path, int gz, uint32_t magic, int ndim, const uint32_t *dims, const uint8_t *payload,
                      size_t plen, size_t cut, size_t extra) {
    size_t len = 4 + 4 * (size_t)ndim + plen + extra;
    unsigned char *b = calloc(1, len);
    put_be32(b, magic);
    for (int i = 0; i < ndim; i++)
        put_be32(b + 4 + 4 * i, dims[i]);
    memcpy(b + 4 + 4 * ndim, payload, plen);
    memset(b + len - extra, 0xab, extra);
    write_bytes(path, gz, b, len - cut);
    free(b);
}

/* Synthetic data: N images of R x C, labels i % 3. */
enum { N = 7, R = 5, C = 4 };
static uint8_t img[N * R * C], lbl[N];

static void make_data(void) {
    for (int i = 0; i < N * R * C; i++)
        img[i] = (uint8_t)(i * 31 + 7);
    for (int i = 0; i < N; i++)
        lbl[i] = (uint8_t)(i % 3);
}

static void write_images(const char *path, int gz, size_t cut, size_t extra) {
    uint32_t dims[3] = {N, R, C};
    write_idx(path, gz, 0x803, 3, dims, img, sizeof img, cut, extra);
}

static void write_labels(const char *path, int gz, int n, size_t cut, size_t extra) {
    uint32_t dims[1] = {(uint32_t)n};
    write_idx(path, gz, 0x801, 1, dims, lbl, (size_t)n, cut, extra);
}

static int msg_has(const char *s) { return strstr(wf_errmsg(), s) != NULL; }

static void expect_images_error(const char *path, int want, const char *needle, int line) {
    uint8_t *data = (uint8_t *)1;
    int n = -1, r = -1, c = -1;
    int rc = wf_idx_read_images(path, &data, &n, &r, &c);
    CHECKF(rc == want, "line %d: %s, want %s (%s)", line, wf_status_str(rc), wf_status_str(want), wf_errmsg());
    CHECKF(msg_has(path), "line %d: message does not name the file: %s", line, wf_errmsg());
    if (needle) CHECKF(msg_has(needle), "line %d: '%s' not in: %s", line, needle, wf_errmsg());
    CHECK(data == NULL && n == 0);
}
#define EXPECT_IMAGES_ERROR(p, want, needle) expect_images_error(p, want, needle, __LINE__)

static void expect_labels_error(const char *path, int want, const char *needle, int line) {
    uint8_t *data = (uint8_t *)1;
    int n = -1;
    int rc = wf_idx_read_labels(path, &data, &n);
    CHECKF(rc == want, "line %d: %s, want %s (%s)", line, wf_status_str(rc), wf_status_str(want), wf_errmsg());
    CHECKF(msg_has(path), "line %d: message does not name the file: %s", line, wf_errmsg());
    if (needle) CHECKF(msg_has(needle), "line %d: '%s' not in: %s", line, needle, wf_errmsg());
    CHECK(data == NULL && n == 0);
}
#define EXPECT_LABELS_ERROR(p, want, needle) expect_labels_error(p, want, needle, __LINE__)

static void test_read(void) {
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = tmp_path(gz ? "img.gz" : "img"), *lp = tmp_path(gz ? "lbl.gz" : "lbl");
        write_images(ip, gz, 0, 0);
        write_labels(lp, gz, N, 0, 0);
        uint8_t *data, *labels;
        int n, r, c;
        CHECKF(wf_idx_read_images(ip, &data, &n, &r, &c) == WF_OK, "%s", wf_errmsg());
        CHECK(n == N && r == R && c == C && !memcmp(data, img, sizeof img));
        wf_free(data);
        CHECKF(wf_idx_read_labels(lp, &labels, &n) == WF_OK, "%s", wf_errmsg());
        CHECK(n == N && !memcmp(labels, lbl, N));
        wf_free(labels);

        /* Truncated payload, truncated header, trailing garbage, wrong magic. */
        write_images(ip, gz, 1, 0);
        EXPECT_IMAGES_ERROR(ip, WF_ERR_CORRUPT, "truncated: expected 140 bytes of image data, got 139");
        write_images(ip, gz, sizeof img + 2, 0);
        EXPECT_IMAGES_ERROR(ip, WF_ERR_CORRUPT, "truncated: expected a 16-byte IDX3 image header, got 14");
        write_images(ip, gz, 0, 3);
        EXPECT_IMAGES_ERROR(ip, WF_ERR_CORRUPT, "trailing data");
        write_labels(lp, gz, N, 2, 0);
        EXPECT_LABELS_ERROR(lp, WF_ERR_CORRUPT, "truncated: expected 7 bytes of label data, got 5");
        write_labels(lp, gz, N, 0, 1);
        EXPECT_LABELS_ERROR(lp, WF_ERR_CORRUPT, "trailing data");
        write_labels(ip, gz, N, 0, 0);
        EXPECT_IMAGES_ERROR(ip, WF_ERR_CORRUPT, "bad magic 0x00000801, expected 0x00000803");
        write_images(lp, gz, 0, 0);
        EXPECT_LABELS_ERROR(lp, WF_ERR_CORRUPT, "this is an image file");
        write_bytes(ip, gz, "", 0);
        EXPECT_IMAGES_ERROR(ip, WF_ERR_CORRUPT, "truncated");
        write_bytes(ip, gz, "\x00\x00", 2);
        EXPECT_IMAGES_ERROR(ip, WF_ERR_CORRUPT, "truncated");
    }
    const char *p = tmp_path("dims");
    uint32_t big_side[3] = {1, 5000, 2}, zero_side[3] = {1, 0, 2}, big_n[3] = {200000000, 1, 1};
    uint32_t huge[3] = {100000000, 4096, 4096}; /* 1.6 PB promised by a 16-byte file */
    write_idx(p, 0, 0x803, 3, big_side, img, 0, 0, 0);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "image dimension 1 is 5000");
    write_idx(p, 0, 0x803, 3, zero_side, img, 0, 0, 0);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "image dimension 1 is 0");
    write_idx(p, 0, 0x803, 3, big_n, img, 0, 0, 0);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "200000000 samples");
    write_idx(p, 1, 0x803, 3, huge, img, sizeof img, 0, 0);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "truncated: expected 1677721600000000 bytes of image data, got 140");
    write_idx(p, 0, 0x12345678, 3, big_side, img, 0, 0, 0);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "bad magic 0x12345678");

    /* A gzip file cut short, and one with a damaged body. */
    write_images(p, 1, 0, 0);
    char *gzb;
    size_t gzl;
    CHECK(wf_read_file(p, &gzb, &gzl) == WF_OK && gzl > 30);
    write_bytes(p, 0, gzb, gzl - 10);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "gzip stream ends early");
    write_bytes(p, 0, gzb, gzl - 4); /* length trailer missing */
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, NULL);
    gzb[gzl - 6] ^= 0x55; /* CRC-32 trailer */
    write_bytes(p, 0, gzb, gzl);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, "corrupt gzip stream");
    gzb[gzl - 6] ^= 0x55;
    for (size_t i = 10; i < gzl - 8; i++)
        gzb[i] = (char)0xff; /* deflate body */
    write_bytes(p, 0, gzb, gzl);
    EXPECT_IMAGES_ERROR(p, WF_ERR_CORRUPT, NULL);
    wf_free(gzb);

    /* Missing files: not found, naming the path. */
    EXPECT_IMAGES_ERROR(tmp_path("nope-images"), WF_ERR_NOTFOUND, NULL);
    EXPECT_LABELS_ERROR(tmp_path("nope-labels.gz"), WF_ERR_NOTFOUND, NULL);
    /* A directory is an I/O error, not a crash. */
    EXPECT_IMAGES_ERROR(tmpdir, WF_ERR_IO, NULL);
}

static void test_dataset(void) {
    /* train: plain images, gzipped labels; test: counts disagree. */
    write_images(tmp_path("train-images-idx3-ubyte"), 0, 0, 0);
    write_labels(tmp_path("train-labels-idx1-ubyte.gz"), 1, N, 0, 0);
    struct wf_dataset d;
    CHECKF(wf_dataset_load_idx(&d, tmpdir, "train") == WF_OK, "%s", wf_errmsg());
    CHECK(d.n == N && d.c == 1 && d.h == R && d.w == C && d.n_classes == 3);
    CHECK(d.bytes_read == 16 + sizeof img + 8 + N);
    const char *base = strrchr(tmpdir, '/') + 1;
    char want[300];
    snprintf(want, sizeof want, "%s/train", base);
    CHECKF(d.name && !strcmp(d.name, want), "name %s", d.name ? d.name : "(null)");
    for (int i = 0; i < N; i++)
        CHECK(d.labels[i] == lbl[i]);

    uint32_t ids[3] = {6, 0, 3};
    float x[3 * R * C];
    int32_t y[3];
    wf_dataset_gather(&d, ids, 3, x, y);
    int bad = 0;
    for (int b = 0; b < 3; b++) {
        CHECK(y[b] == (int32_t)lbl[ids[b]]);
        for (int k = 0; k < R * C; k++)
            bad += x[b * R * C + k] != (float)img[ids[b] * R * C + k] / 255.0f;
    }
    CHECK(bad == 0);
    uint32_t one = 1;
    float px[R * C];
    wf_dataset_gather(&d, &one, 1, px, y);
    CHECK(px[0] == (float)img[R * C] / 255.0f && px[0] >= 0.0f && px[0] <= 1.0f);
    wf_dataset_free(&d);
    wf_dataset_free(&d);
    wf_dataset_free(NULL);

    /* Trailing slash on the directory: same name. */
    char slash[300];
    snprintf(slash, sizeof slash, "%s/", tmpdir);
    CHECK(wf_dataset_load_idx(&d, slash, "train") == WF_OK && d.name && !strcmp(d.name, want));
    wf_dataset_free(&d);

    write_images(tmp_path("t10k-images-idx3-ubyte.gz"), 1, 0, 0);
    CHECK(wf_dataset_load_idx(&d, tmpdir, "test") == WF_ERR_NOTFOUND);
    CHECKF(msg_has("t10k-labels-idx1-ubyte"), "%s", wf_errmsg());
    CHECK(d.images == NULL && d.labels == NULL && d.name == NULL);
    write_labels(tmp_path("t10k-labels-idx1-ubyte"), 0, N - 1, 0, 0);
    CHECK(wf_dataset_load_idx(&d, tmpdir, "test") == WF_ERR_CORRUPT);
    CHECKF(msg_has("7 images") && msg_has("6 labels"), "%s", wf_errmsg());
    CHECK(d.images == NULL && d.labels == NULL && d.n == 0);
    write_labels(tmp_path("t10k-labels-idx1-ubyte"), 0, N, 1, 0);
    CHECK(wf_dataset_load_idx(&d, tmpdir, "test") == WF_ERR_CORRUPT);
    CHECKF(msg_has("t10k-labels-idx1-ubyte") && msg_has("truncated"), "%s", wf_errmsg());
    CHECK(wf_dataset_load_idx(&d, tmpdir, "valid") == WF_ERR_INVALID);
    CHECK(wf_dataset_load_idx(&d, tmp_path("no-such-dir"), "train") == WF_ERR_NOTFOUND);
    CHECKF(msg_has("no-such-dir/train-images-idx3-ubyte"), "%s", wf_errmsg());

    /* Allocation failure anywhere: NOMEM, nothing leaked. */
    int k, ok = 0;
    for (k = 1; k < 1000 && !ok; k++) {
        wf_alloc_fail_at(k);
        int rc = wf_dataset_load_idx(&d, tmpdir, "train");
        wf_alloc_fail_at(0);
        CHECKF(rc == WF_OK || rc == WF_ERR_NOMEM, "failing allocation %d: %s", k, wf_errmsg());
        if (rc) CHECK(d.images == NULL && d.labels == NULL && d.name == NULL);
        ok = rc == WF_OK;
        wf_dataset_free(&d);
    }
    CHECK(ok && k > 3);
}

static int is_perm(const uint32_t *p, uint32_t n) {
    uint8_t *seen = calloc(n ? n : 1, 1);
    int ok = 1;
    for (uint32_t i = 0; i < n && ok; i++) {
        if (p[i] >= n || seen[p[i]])
            ok = 0;
        else
            seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_epoch_order(void) {
    enum { M = 1000 };
    static uint32_t a[M], b[M], c[M], e[M];
    wf_epoch_order(a, M, 42, 0);
    wf_epoch_order(b, M, 42, 0);
    wf_epoch_order(c, M, 42, 1);
    wf_epoch_order(e, M, 43, 0);
    CHECK(is_perm(a, M) && is_perm(c, M) && is_perm(e, M));
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);
    CHECK(memcmp(a, e, sizeof a) != 0);
    int fixed = 0;
    for (int i = 0; i < M; i++)
        fixed += a[i] == (uint32_t)i;
    CHECKF(fixed < 10, "%d fixed points: not shuffled", fixed);
    /* A prefix of the order does not depend on anything but (seed, epoch). */
    wf_epoch_order(b, M, 42, 0);
    CHECK(!memcmp(a, b, sizeof a));
    uint32_t one = 77;
    wf_epoch_order(&one, 1, 1, 1);
    CHECK(one == 0);
    wf_epoch_order(NULL, 0, 1, 1);
    /* Every position takes every id about equally often (n = 4, 4000 epochs). */
    int count[4][4] = {{0}};
    for (uint64_t ep = 0; ep < 4000; ep++) {
        uint32_t q[4];
        wf_epoch_order(q, 4, 7, ep);
        CHECK(is_perm(q, 4));
        for (int i = 0; i < 4; i++)
            count[i][q[i]]++;
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            CHECKF(count[i][j] > 850 && count[i][j] < 1150, "[%d][%d] = %d", i, j, count[i][j]);
}

static void test_fashion_mnist(void) {
    struct stat st;
    if (stat(FMNIST_DIR, &st) != 0) {
        fprintf(stderr, "test_idx: %s absent, skipping the Fashion-MNIST checks\n", FMNIST_DIR);
        return;
    }
    static const struct {
        const char *split;
        int n;
        uint64_t label_sum, pixel_sum; /* sum (i+1)*label[i]; sum of all pixels (from Python's gzip) */
    } want[] = {{"train", 60000, 8087486427ull, 3431114169ull}, {"test", 10000, 225777341ull, 573469082ull}};
    for (int s = 0; s < 2; s++) {
        struct wf_dataset d;
        double t0 = wf_now();
        int rc = wf_dataset_load_idx(&d, FMNIST_DIR, want[s].split);
        CHECKF(rc == WF_OK, "%s", wf_errmsg());
        if (rc) continue;
        fprintf(stderr, "test_idx: %s: %d samples in %.2f s\n", d.name, d.n, wf_now() - t0);
        CHECK(d.n == want[s].n && d.c == 1 && d.h == 28 && d.w == 28 && d.n_classes == 10);
        CHECK(!strcmp(d.name, s ? "fashion-mnist/test" : "fashion-mnist/train"));
        CHECK(d.bytes_read == 16 + (size_t)d.n * 784 + 8 + (size_t)d.n);
        uint64_t ls = 0, ps = 0;
        int per_class[10] = {0};
        for (int i = 0; i < d.n; i++) {
            ls += (uint64_t)(i + 1) * (uint64_t)d.labels[i];
            if (d.labels[i] >= 0 && d.labels[i] < 10) per_class[d.labels[i]]++;
        }
        for (size_t i = 0; i < (size_t)d.n * 784; i++)
            ps += d.images[i];
        CHECKF(ls == want[s].label_sum, "label checksum %llu", (unsigned long long)ls);
        CHECKF(ps == want[s].pixel_sum, "pixel sum %llu", (unsigned long long)ps);
        for (int k = 0; k < 10; k++)
            CHECK(per_class[k] == d.n / 10);
        CHECK(d.labels[0] == 9); /* the first sample of both splits is an ankle boot */
        wf_dataset_free(&d);
    }
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
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-test-idx-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    make_data();
    test_read();
    test_dataset();
    test_epoch_order();
    test_fashion_mnist();
    rm_tmpdir();
    return wf_test_done("test_idx");
}
