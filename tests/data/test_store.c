/*
 * data layer test: the per-sample store. Reads match wf_dataset_load_idx
 * byte for byte and every byte is counted; a .gz source is staged once and
 * reused; the content digest follows the content, not the compression;
 * truncated, corrupt and mismatched files are refused with a message naming
 * the file, the sample, the offset and the sizes; allocation failures leak
 * nothing. Fashion-MNIST too when it is installed.
 */
#include <errno.h>

#include "synth.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static char tmp[256];

static const char *path_in(const char *sub, const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s%s%s", tmp, sub, name[0] ? "/" : "", name);
    return p;
}

static int msg_has(const char *s) { return strstr(wf_errmsg(), s) != NULL; }

static int no_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int ok = 1;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) ok = 0;
    if (d) closedir(d);
    return ok;
}

/* Every sample through wf_store_read equals the in-memory dataset; bytes counted. */
static void check_all_samples(struct wf_store *s, const char *dir, const char *split) {
    struct wf_dataset d;
    int rc = wf_dataset_load_idx(&d, dir, split);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    const struct wf_store_info *in = wf_store_info(s);
    CHECK(in->n == d.n && in->c == 1 && in->h == d.h && in->w == d.w && in->n_classes == d.n_classes);
    size_t chw = (size_t)d.h * d.w;
    uint8_t *pix = malloc(chw);
    uint64_t before = wf_store_bytes_read(s);
    int bad = 0;
    for (uint32_t id = (uint32_t)d.n; id-- > 0;) {
        int32_t label = -1;
        rc = wf_store_read(s, id, pix, &label);
        bad += rc != WF_OK || label != d.labels[id] || memcmp(pix, d.images + id * chw, chw) != 0;
    }
    CHECKF(bad == 0, "%d samples differ from wf_dataset_load_idx", bad);
    CHECK(wf_store_bytes_read(s) - before == (uint64_t)d.n * (chw + 1));
    free(pix);
    wf_dataset_free(&d);
}

static void test_plain_and_staged(void) {
    enum { N = 300, H = 9, W = 7 };
    mkdir(path_in("plain", ""), 0755);
    mkdir(path_in("gz", ""), 0755);
    synth_dataset(path_in("plain", ""), N, H, W, 1, 0);
    synth_dataset(path_in("gz", ""), N, H, W, 1, 1);

    struct wf_store *s;
    int rc = wf_store_open(&s, path_in("plain", ""), "train", NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    const struct wf_store_info *in = wf_store_info(s);
    CHECK(in->stage == WF_STAGE_NONE && in->stage_bytes == 0);
    CHECK(in->n == N && in->h == H && in->w == W && in->n_classes == 10);
    CHECK(strlen(in->digest_hex) == 64);
    CHECK(in->open_bytes >= 16 + (uint64_t)N * H * W + 8 + N); /* digest and label pass, apart from per-sample reads */
    CHECK(wf_store_bytes_read(s) == 0);
    char digest_plain[65];
    memcpy(digest_plain, in->digest_hex, 65);
    check_all_samples(s, path_in("plain", ""), "train");
    int32_t label;
    uint8_t pix[H * W];
    CHECK(wf_store_read(s, N, pix, &label) == WF_ERR_RANGE);
    wf_store_free(s);
    wf_store_free(NULL);

    /* .gz without a staging folder: a clear refusal. */
    CHECK(wf_store_open(&s, path_in("gz", ""), "train", NULL) == WF_ERR_INVALID && s == NULL);
    CHECKF(msg_has("train-images-idx3-ubyte.gz") && msg_has("staging"), "%s", wf_errmsg());

    /* First open converts, the second reuses; the digest is the content's. */
    char stage[1024];
    snprintf(stage, sizeof stage, "%s", path_in("stage/deep", ""));
    rc = wf_store_open(&s, path_in("gz", ""), "train", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    in = wf_store_info(s);
    CHECK(in->stage == WF_STAGE_CONVERTED);
    CHECK(in->stage_bytes == 16 + (uint64_t)N * H * W + 8 + N);
    CHECK(in->stage_s >= 0.0);
    CHECKF(!strcmp(in->digest_hex, digest_plain), "gz %s plain %s", in->digest_hex, digest_plain);
    CHECK(strncmp(in->image_path, stage, strlen(stage)) == 0);
    check_all_samples(s, path_in("plain", ""), "train");
    char staged_img[1024];
    snprintf(staged_img, sizeof staged_img, "%s", in->image_path);
    wf_store_free(s);
    CHECK(no_temp_files(stage));

    rc = wf_store_open(&s, path_in("gz", ""), "train", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    in = wf_store_info(s);
    CHECK(in->stage == WF_STAGE_REUSED && in->stage_bytes == 0);
    CHECK(!strcmp(in->digest_hex, digest_plain));
    wf_store_free(s);

    /* A staged copy altered behind our back (same size) is not reused. */
    FILE *fp = fopen(staged_img, "r+b");
    CHECK(fp != NULL);
    if (fp) {
        fseek(fp, 100, SEEK_SET);
        int c = fgetc(fp);
        fseek(fp, 100, SEEK_SET);
        fputc(c ^ 0x5a, fp);
        fclose(fp);
    }
    rc = wf_store_open(&s, path_in("gz", ""), "train", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(wf_store_info(s)->stage == WF_STAGE_CONVERTED);
    CHECK(!strcmp(wf_store_info(s)->digest_hex, digest_plain));
    check_all_samples(s, path_in("plain", ""), "train");
    wf_store_free(s);

    /* Different content, different digest. */
    mkdir(path_in("other", ""), 0755);
    synth_dataset(path_in("other", ""), N, H, W, 2, 0);
    rc = wf_store_open(&s, path_in("other", ""), "train", NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(strcmp(wf_store_info(s)->digest_hex, digest_plain) != 0);
    wf_store_free(s);

    /* Allocation failure anywhere in open: NOMEM, nothing leaked (ASan). */
    int k, ok = 0;
    for (k = 1; k < 200 && !ok; k++) {
        wf_alloc_fail_at(k);
        rc = wf_store_open(&s, path_in("gz", ""), "train", stage);
        wf_alloc_fail_at(0);
        CHECKF(rc == WF_OK || rc == WF_ERR_NOMEM, "failing allocation %d: %s", k, wf_errmsg());
        CHECK(rc == WF_OK || s == NULL);
        ok = rc == WF_OK;
        wf_store_free(s);
    }
    CHECK(ok && k > 3);
}

static void test_corrupt(void) {
    enum { N = 50, H = 4, W = 5 };
    char dir[1024], img[1024]; /* path_in's buffers rotate */
    snprintf(dir, sizeof dir, "%s", path_in("bad", ""));
    snprintf(img, sizeof img, "%s", path_in("bad", "train-images-idx3-ubyte"));
    mkdir(dir, 0755);
    synth_dataset(dir, N, H, W, 3, 0);
    struct wf_store *s;

    /* Truncated before open: refused, naming the file, the sample, its offset and the sizes. */
    CHECK(truncate(img, 16 + (N - 1) * H * W + 7) == 0);
    CHECK(wf_store_open(&s, dir, "train", NULL) == WF_ERR_CORRUPT && s == NULL);
    CHECKF(msg_has("train-images-idx3-ubyte") && msg_has("truncated") && msg_has("sample 49") &&
               msg_has("offset 996") && msg_has("expects 20 bytes, has 7"),
           "%s", wf_errmsg());
    CHECK(truncate(img, 10) == 0);
    CHECK(wf_store_open(&s, dir, "train", NULL) == WF_ERR_CORRUPT);
    CHECKF(msg_has("header"), "%s", wf_errmsg());

    /* Trailing data, bad magic, label count mismatch. */
    synth_dataset(dir, N, H, W, 3, 0);
    CHECK(truncate(img, 16 + N * H * W + 3) == 0);
    CHECK(wf_store_open(&s, dir, "train", NULL) == WF_ERR_CORRUPT);
    CHECKF(msg_has("trailing"), "%s", wf_errmsg());
    synth_dataset(dir, N, H, W, 3, 0);
    rename(path_in("bad", "train-labels-idx1-ubyte"), path_in("bad", "keep"));
    rename(img, path_in("bad", "train-labels-idx1-ubyte"));
    rename(path_in("bad", "keep"), img);
    CHECK(wf_store_open(&s, dir, "train", NULL) == WF_ERR_CORRUPT);
    CHECKF(msg_has("bad magic"), "%s", wf_errmsg());
    synth_dataset(dir, N, H, W, 3, 0);
    mkdir(path_in("bad2", ""), 0755);
    synth_dataset(path_in("bad2", ""), N - 1, H, W, 3, 0);
    rename(path_in("bad2", "train-labels-idx1-ubyte"), path_in("bad", "train-labels-idx1-ubyte"));
    CHECK(wf_store_open(&s, dir, "train", NULL) == WF_ERR_CORRUPT);
    CHECKF(msg_has("50 images") && msg_has("49 labels"), "%s", wf_errmsg());
    CHECK(wf_store_open(&s, path_in("nothere", ""), "train", NULL) == WF_ERR_NOTFOUND);
    CHECKF(msg_has("nothere/train-images-idx3-ubyte"), "%s", wf_errmsg());
    CHECK(wf_store_open(&s, dir, "valid", NULL) == WF_ERR_INVALID);

    /* Truncated after open: the read fails with the id, offset and sizes; never garbage. */
    synth_dataset(dir, N, H, W, 3, 0);
    int rc = wf_store_open(&s, dir, "train", NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(truncate(img, 16 + 40 * H * W + 5) == 0);
    uint8_t pix[H * W];
    int32_t label = -7;
    CHECK(wf_store_read(s, 39, pix, &label) == WF_OK && label == 9);
    label = -7;
    CHECK(wf_store_read(s, 40, pix, &label) == WF_ERR_CORRUPT && label == -7);
    CHECKF(msg_has("train-images-idx3-ubyte") && msg_has("sample 40") && msg_has("offset 816") &&
               msg_has("expects 20 bytes, read 5"),
           "%s", wf_errmsg());
    CHECK(wf_store_read(s, 45, pix, &label) == WF_ERR_CORRUPT);
    CHECKF(msg_has("sample 45") && msg_has("read 0"), "%s", wf_errmsg());
    wf_store_free(s);

    /* A truncated .gz: refused at staging, naming the .gz. */
    char gdir[1024];
    snprintf(gdir, sizeof gdir, "%s", path_in("badgz", ""));
    mkdir(gdir, 0755);
    synth_dataset(gdir, N, H, W, 3, 1);
    const char *gimg = path_in("badgz", "train-images-idx3-ubyte.gz");
    struct stat st;
    CHECK(stat(gimg, &st) == 0);
    CHECK(truncate(gimg, st.st_size - 9) == 0);
    CHECK(wf_store_open(&s, gdir, "train", path_in("badgz-stage", "")) == WF_ERR_CORRUPT);
    CHECKF(msg_has("train-images-idx3-ubyte.gz") && (msg_has("truncated") || msg_has("corrupt")), "%s", wf_errmsg());
    CHECK(no_temp_files(path_in("badgz-stage", "")));
}

static void test_fashion_mnist(void) {
    struct stat st;
    if (stat(FMNIST_DIR, &st) != 0) {
        fprintf(stderr, "test_store: %s absent, skipping the Fashion-MNIST checks\n", FMNIST_DIR);
        return;
    }
    char stage[1024];
    snprintf(stage, sizeof stage, "%s", path_in("fm-stage", ""));
    struct wf_store *s;
    int rc = wf_store_open(&s, FMNIST_DIR, "test", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    const struct wf_store_info *in = wf_store_info(s);
    fprintf(stderr, "test_store: fashion-mnist/test staged %llu bytes in %.3f s, digest %.16s..., open %.3f s\n",
            (unsigned long long)in->stage_bytes, in->stage_s, in->digest_hex, in->open_s);
    CHECK(in->stage == WF_STAGE_CONVERTED && in->stage_bytes == 16 + 10000ull * 784 + 8 + 10000);
    CHECK(in->n == 10000 && in->h == 28 && in->w == 28 && in->n_classes == 10);
    char digest[65];
    memcpy(digest, in->digest_hex, 65);
    check_all_samples(s, FMNIST_DIR, "test");
    wf_store_free(s);
    rc = wf_store_open(&s, FMNIST_DIR, "test", stage);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(wf_store_info(s)->stage == WF_STAGE_REUSED && !strcmp(wf_store_info(s)->digest_hex, digest));
    wf_store_free(s);
}

int main(void) {
    if (!synth_mkdtemp(tmp, sizeof tmp, "store")) return 1;
    test_plain_and_staged();
    test_corrupt();
    test_fashion_mnist();
    synth_rm_rf(tmp);
    return wf_test_done("test_store");
}
