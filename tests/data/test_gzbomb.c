/*
 * data layer test: staging a .gz IDX file trusts nothing in it. A gzip bomb
 * (a header claiming 10 samples of 28x28, then 100 MB of zeros) is refused
 * having written no more than its header implies, quickly, leaving nothing
 * in the staging folder; a header promising 2^40 bytes is refused before
 * anything is written; a short stream is refused; a failure after the copy
 * is made (its .meta cannot be written) removes the copy; a copy staged by
 * an older weft that fails the check is removed; an honest .gz still
 * stages and is reused.
 */
#include <errno.h>

#include "synth.h"

static char tmp[256];

static const char *path_in(const char *sub, const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s%s%s", tmp, sub, name[0] ? "/" : "", name);
    return p;
}

static int msg_has(const char *s) { return strstr(wf_errmsg(), s) != NULL; }

/* Entries of dir other than . and .., and the first such name into first. */
static int count_entries(const char *dir, char *first, size_t cap) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (first) first[0] = 0;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n++ == 0 && first) snprintf(first, cap, "%s", e->d_name);
    }
    if (d) closedir(d);
    return n;
}

/* An IDX image header for n samples of h x w. */
static void image_header(unsigned char h[16], uint32_t n, uint32_t rows, uint32_t cols) {
    synth_put_be32(h, 0x803);
    synth_put_be32(h + 4, n);
    synth_put_be32(h + 8, rows);
    synth_put_be32(h + 12, cols);
}

/* Writes path as gzip: the header, then `zeros` zero bytes. */
static void write_gz(const char *path, const unsigned char *hdr, size_t hlen, uint64_t zeros) {
    gzFile g = gzopen(path, "wb6");
    CHECK(g != NULL);
    if (!g) return;
    CHECK(gzwrite(g, hdr, (unsigned)hlen) == (int)hlen);
    static unsigned char z[1 << 20];
    while (zeros > 0) {
        unsigned k = (unsigned)WF_MIN(zeros, (uint64_t)sizeof z);
        CHECK(gzwrite(g, z, k) == (int)k);
        zeros -= k;
    }
    CHECK(gzclose(g) == Z_OK);
}

/* Honest labels for n samples, so only the image file is at fault. */
static void write_labels(const char *dir, uint32_t n) {
    unsigned char *b = calloc(1, 8 + (size_t)n);
    synth_put_be32(b, 0x801);
    synth_put_be32(b + 4, n);
    char p[1024];
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    synth_write(p, 1, b, 8 + (size_t)n);
    free(b);
}

static void test_bomb(void) {
    char dir[1024], stage[1024]; /* path_in's buffers rotate */
    snprintf(dir, sizeof dir, "%s", path_in("bomb", ""));
    snprintf(stage, sizeof stage, "%s", path_in("bomb-stage", ""));
    mkdir(dir, 0755);
    unsigned char h[16];
    image_header(h, 10, 28, 28);
    write_gz(path_in("bomb", "train-images-idx3-ubyte.gz"), h, 16, 100u << 20);
    write_labels(dir, 10);
    struct stat st;
    CHECK(stat(path_in("bomb", "train-images-idx3-ubyte.gz"), &st) == 0 && st.st_size < (1 << 20));

    struct wf_store *s = (struct wf_store *)1;
    double t0 = wf_now();
    int rc = wf_store_open(&s, dir, "train", stage);
    double dt = wf_now() - t0;
    CHECK(rc == WF_ERR_CORRUPT && s == NULL);
    CHECKF(msg_has("train-images-idx3-ubyte.gz") && msg_has("holds more than its header's 7856 bytes"), "%s",
           wf_errmsg());
    char first[256];
    int n = count_entries(stage, first, sizeof first);
    CHECKF(n == 0, "%d entries left in the staging folder, first %s", n, first);
    CHECKF(dt < 1.0, "refusing the bomb took %.3f s", dt);
    fprintf(stderr, "test_gzbomb: bomb refused in %.4f s: %s\n", dt, wf_errmsg());
}

/* A label file can be a bomb too: the images stage, the labels do not. */
static void test_label_bomb(void) {
    char dir[1024], stage[1024]; /* path_in's buffers rotate */
    snprintf(dir, sizeof dir, "%s", path_in("lbomb", ""));
    snprintf(stage, sizeof stage, "%s", path_in("lbomb-stage", ""));
    mkdir(dir, 0755);
    synth_dataset(dir, 10, 4, 4, 3, 1);
    unsigned char h[8];
    synth_put_be32(h, 0x801);
    synth_put_be32(h + 4, 10);
    write_gz(path_in("lbomb", "train-labels-idx1-ubyte.gz"), h, 8, 100u << 20);
    struct wf_store *s;
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    CHECKF(msg_has("train-labels-idx1-ubyte.gz") && msg_has("holds more than its header's 18 bytes"), "%s",
           wf_errmsg());
    DIR *d = opendir(stage);
    struct dirent *e;
    int labels = 0, images = 0;
    while (d && (e = readdir(d))) {
        labels += strstr(e->d_name, "labels") != NULL;
        images += strstr(e->d_name, "images") != NULL;
    }
    if (d) closedir(d);
    CHECKF(labels == 0 && images == 2, "%d label and %d image entries staged", labels, images);
}

static void test_huge_header(void) {
    char dir[1024], stage[1024]; /* path_in's buffers rotate */
    snprintf(dir, sizeof dir, "%s", path_in("huge", ""));
    snprintf(stage, sizeof stage, "%s", path_in("huge-stage", ""));
    mkdir(dir, 0755);
    unsigned char h[16];
    image_header(h, 65536, 4096, 4096); /* 2^40 bytes of pixels */
    write_gz(path_in("huge", "train-images-idx3-ubyte.gz"), h, 16, 1u << 20);
    write_labels(dir, 65536);
    struct wf_store *s;
    double t0 = wf_now();
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    double dt = wf_now() - t0;
    CHECKF(msg_has("train-images-idx3-ubyte.gz") && msg_has("1099511627792 bytes") && msg_has("gzip can hold"), "%s",
           wf_errmsg());
    CHECK(count_entries(stage, NULL, 0) == 0);
    CHECKF(dt < 0.5, "took %.3f s", dt);
}

static void test_short_stream(void) {
    char dir[1024], stage[1024]; /* path_in's buffers rotate */
    snprintf(dir, sizeof dir, "%s", path_in("short", ""));
    snprintf(stage, sizeof stage, "%s", path_in("short-stage", ""));
    mkdir(dir, 0755);
    unsigned char h[16];
    image_header(h, 10, 28, 28);
    write_gz(path_in("short", "train-images-idx3-ubyte.gz"), h, 16, 5 * 784);
    write_labels(dir, 10);
    struct wf_store *s;
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    CHECKF(msg_has("train-images-idx3-ubyte.gz") && msg_has("truncated") && msg_has("ends after 3936 bytes") &&
               msg_has("7856 bytes"),
           "%s", wf_errmsg());
    CHECK(count_entries(stage, NULL, 0) == 0);

    /* Only a header, and not even that. */
    write_gz(path_in("short", "train-images-idx3-ubyte.gz"), h, 16, 0);
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    CHECKF(msg_has("ends after 16 bytes"), "%s", wf_errmsg());
    write_gz(path_in("short", "train-images-idx3-ubyte.gz"), h, 10, 0);
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    CHECKF(msg_has("16-byte IDX3 image header, got 10 bytes"), "%s", wf_errmsg());
    /* A wrong magic is refused on the header alone. */
    synth_put_be32(h, 0x801);
    write_gz(path_in("short", "train-images-idx3-ubyte.gz"), h, 16, 7840);
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    CHECKF(msg_has("bad magic"), "%s", wf_errmsg());
    CHECK(count_entries(stage, NULL, 0) == 0);
}

/* The staged path of DIR/BASE.gz in stage (as store.c names it). */
static void staged_path(char *out, size_t cap, const char *stage, const char *dir, const char *base) {
    char src[1024];
    snprintf(src, sizeof src, "%s/%s.gz", dir, base);
    char *abs = realpath(src, NULL);
    CHECK(abs != NULL);
    uint64_t h = wf_hash64(abs ? abs : src, strlen(abs ? abs : src), 0x5354414745ull);
    free(abs);
    snprintf(out, cap, "%s/%s-%016llx", stage, base, (unsigned long long)h);
}

static void test_honest_and_cleanup(void) {
    char dir[1024], stage[1024]; /* path_in's buffers rotate */
    snprintf(dir, sizeof dir, "%s", path_in("honest", ""));
    snprintf(stage, sizeof stage, "%s", path_in("honest-stage", ""));
    mkdir(dir, 0755);
    synth_dataset(dir, 50, 6, 5, 7, 1);
    struct wf_store *s;
    int rc = wf_store_open(&s, dir, "train", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(wf_store_info(s)->stage == WF_STAGE_CONVERTED);
    CHECK(wf_store_info(s)->stage_bytes == 16 + 50 * 30 + 8 + 50);
    uint8_t pix[30];
    int32_t label;
    CHECK(wf_store_read(s, 49, pix, &label) == WF_OK && label == 9);
    CHECK(pix[0] == synth_pixel(49, 0, 7) && pix[29] == synth_pixel(49, 29, 7));
    wf_store_free(s);
    CHECK(count_entries(stage, NULL, 0) == 4);
    rc = wf_store_open(&s, dir, "train", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(wf_store_info(s)->stage == WF_STAGE_REUSED && wf_store_info(s)->stage_bytes == 0);
    wf_store_free(s);

    /* A copy an older weft staged from a bomb (its .meta matching): refused
     * at validation and removed with its .meta. */
    char img[1024], meta[1100], cmd[2300];
    staged_path(img, sizeof img, stage, dir, "train-images-idx3-ubyte");
    snprintf(meta, sizeof meta, "%s.meta", img);
    FILE *f = fopen(img, "ab");
    CHECK(f != NULL);
    if (f) {
        fputs("trailing", f);
        fclose(f);
    }
    struct stat sst, st;
    CHECK(stat(path_in("honest", "train-images-idx3-ubyte.gz"), &sst) == 0 && stat(img, &st) == 0);
    char hex[65] = "";
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", img);
    FILE *p = popen(cmd, "r");
    CHECK(p && fscanf(p, "%64s", hex) == 1);
    if (p) pclose(p);
    f = fopen(meta, "w");
    CHECK(f != NULL);
    if (f) {
        fprintf(f, "weft-stage 1\nsource_size %llu\nsource_mtime %lld.%09ld\nsize %llu\nsha256 %s\n",
                (unsigned long long)sst.st_size, (long long)sst.st_mtim.tv_sec, (long)sst.st_mtim.tv_nsec,
                (unsigned long long)st.st_size, hex);
        fclose(f);
    }
    CHECK(wf_store_open(&s, dir, "train", stage) == WF_ERR_CORRUPT);
    CHECKF(msg_has("trailing data"), "%s", wf_errmsg());
    CHECK(stat(img, &st) != 0 && stat(meta, &st) != 0);
    /* ...and the next open stages it afresh. */
    rc = wf_store_open(&s, dir, "train", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        CHECK(wf_store_info(s)->stage == WF_STAGE_CONVERTED);
        wf_store_free(s);
    }

    /* The .meta cannot be written (a folder is in its place): the staged
     * copy goes too, and no temporary stays. */
    char stage2[1024];
    snprintf(stage2, sizeof stage2, "%s", path_in("honest-stage2", ""));
    CHECK(mkdir(stage2, 0755) == 0);
    staged_path(img, sizeof img, stage2, dir, "train-images-idx3-ubyte");
    snprintf(meta, sizeof meta, "%s.meta", img);
    CHECK(mkdir(meta, 0755) == 0);
    CHECK(wf_store_open(&s, dir, "train", stage2) == WF_ERR_IO);
    CHECKF(msg_has(".meta"), "%s", wf_errmsg());
    char first[256];
    int n = count_entries(stage2, first, sizeof first);
    CHECKF(n == 1 && !strcmp(first, strrchr(meta, '/') + 1), "%d entries, first %s", n, first);
}

int main(void) {
    if (!synth_mkdtemp(tmp, sizeof tmp, "gzbomb")) return 1;
    test_bomb();
    test_label_bomb();
    test_huge_header();
    test_short_stream();
    test_honest_and_cleanup();
    synth_rm_rf(tmp);
    return wf_test_done("test_gzbomb");
}
