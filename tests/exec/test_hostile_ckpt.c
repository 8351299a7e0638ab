/*
 * exec layer: hostile checkpoints. Every seed of the fuzz corpus
 * (tests/fuzz/ckpt_seeds.h) gives wf_ckpt_eval_init its exact message; a
 * resume reads counts strictly; and wf_checkpoint_evaluate checks the
 * checkpoint's model inputs against the dataset's sample shape (and its
 * classes against the labels) before it runs, naming both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz/ckpt_seeds.h"
#include "testutil.h"
#include "weft/checkpoint.h"
#include "weft/core.h"
#include "weft/train.h"

static void test_seeds(const struct ck *base) {
    for (size_t i = 0; i < WF_ARRAY_LEN(ck_seeds); i++) {
        const struct ck_seed *s = &ck_seeds[i];
        struct ck c;
        ck_copy(&c, base);
        s->edit(&c);
        unsigned char *b;
        size_t n;
        ck_bytes(&c, &b, &n);
        struct wf_ckpt_eval ce;
        int rc = wf_ckpt_eval_init(&ce, CK_PATH, b, n, 2);
        if (!s->msg) {
            CHECKF(rc == WF_OK, "%s: %s", s->name, wf_errmsg());
            if (rc == WF_OK) {
                CHECK(ce.step == 2);
                CHECK(ce.n_classes == 3);
                CHECK(ce.data && !strcmp(ce.data, "/usr/share/datasets/fashion-mnist"));
                CHECK(ce.prefix[0] == 0);
                CHECK(ce.prog.g.batch == 2);
            }
        } else {
            CHECKF(rc < 0 && ck_msg_ok(s, wf_errmsg()), "%s: got '%s', want '%s'", s->name,
                   rc ? wf_errmsg() : "success", s->msg);
        }
        wf_ckpt_eval_free(&ce);
        /* every prefix of the file is an error, never a crash */
        for (size_t cut = 0; cut < n; cut += 1 + cut / 8) {
            rc = wf_ckpt_eval_init(&ce, CK_PATH, b, cut, 2);
            CHECKF(rc < 0, "%s cut to %zu bytes: accepted", s->name, cut);
            wf_ckpt_eval_free(&ce);
        }
        free(b);
        ck_free(&c);
    }
}

/* Out of memory at each allocation of the setup: an error, no leak. */
static void test_nomem(const unsigned char *valid, size_t n) {
    int saw_nomem = 0;
    for (long k = 1; k < 100000; k++) {
        struct wf_ckpt_eval ce;
        wf_alloc_fail_at(k);
        int rc = wf_ckpt_eval_init(&ce, CK_PATH, valid, n, 2);
        wf_alloc_fail_at(0);
        wf_ckpt_eval_free(&ce);
        if (rc == WF_OK) break;
        saw_nomem += rc == WF_ERR_NOMEM;
    }
    CHECK(saw_nomem > 0);
}

static char tmpdir[256];

static void write_file(const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static void be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* DIR/t10k-{images-idx3,labels-idx1}-ubyte: n samples of h x w, labels i % classes. */
static void test_split(const char *dir, uint32_t n, uint32_t h, uint32_t w, uint32_t classes) {
    char sub[512];
    snprintf(sub, sizeof sub, "%s/%s", tmpdir, dir);
    mkdir(sub, 0755);
    size_t len = 16 + (size_t)n * h * w;
    unsigned char *b = malloc(len);
    be32(b, 0x803), be32(b + 4, n), be32(b + 8, h), be32(b + 12, w);
    for (size_t i = 16; i < len; i++)
        b[i] = (unsigned char)(i * 37);
    char name[600];
    snprintf(name, sizeof name, "%s/t10k-images-idx3-ubyte", dir);
    write_file(name, b, len);
    be32(b, 0x801), be32(b + 4, n);
    for (uint32_t i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i % classes);
    snprintf(name, sizeof name, "%s/t10k-labels-idx1-ubyte", dir);
    write_file(name, b, 8 + (size_t)n);
    free(b);
}

static void test_evaluate(const unsigned char *valid, size_t n) {
    write_file("ck.safetensors", valid, n);
    char ck[512], fits[512], wide[512], classes[512];
    snprintf(ck, sizeof ck, "%s/ck.safetensors", tmpdir);
    snprintf(fits, sizeof fits, "%s/fits", tmpdir);
    snprintf(wide, sizeof wide, "%s/wide", tmpdir);
    snprintf(classes, sizeof classes, "%s/classes", tmpdir);
    test_split("fits", 10, 2, 2, 3);    /* 4 values a sample, labels 0..2: what the model takes */
    test_split("wide", 10, 28, 28, 3);  /* 784 values a sample */
    test_split("classes", 10, 2, 2, 7); /* labels up to 6, the model scores 3 */
    double loss = -1, acc = -1;
    long step = -1;
    char *name = NULL;
    int rc = wf_checkpoint_evaluate(ck, fits, 4, &loss, &acc, &step, &name); /* 4 + 4 + a rest of 2 */
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    CHECK(step == 2 && loss > 0 && acc >= 0 && acc <= 1);
    CHECK(name && !strcmp(name, "tiny"));
    wf_free(name);

    char want[2048];
    rc = wf_checkpoint_evaluate(ck, wide, 4, &loss, &acc, &step, NULL);
    snprintf(want, sizeof want,
             "%s:weft.model:2:1: input 'x' is f32[B, 4]: 4 values per sample, but %s/t10k-images-idx3-ubyte has 1 x "
             "28 x 28 = 784 per sample",
             ck, wide);
    CHECKF(rc == WF_ERR_SHAPE && !strcmp(wf_errmsg(), want), "got '%s'\nwant '%s'", wf_errmsg(), want);

    rc = wf_checkpoint_evaluate(ck, classes, 4, &loss, &acc, &step, NULL);
    snprintf(want, sizeof want,
             "%s:weft.model: the model scores 3 classes, but %s/t10k-labels-idx1-ubyte has labels up to 6", ck,
             classes);
    CHECKF(rc == WF_ERR_SHAPE && !strcmp(wf_errmsg(), want), "got '%s'\nwant '%s'", wf_errmsg(), want);

    rc = wf_checkpoint_evaluate(ck, fits, 0, &loss, &acc, &step, NULL);
    snprintf(want, sizeof want, "%s: evaluation batch 0, must be positive", ck);
    CHECKF(rc == WF_ERR_INVALID && !strcmp(wf_errmsg(), want), "got '%s'", wf_errmsg());
}

/* A resume reads the same counts strictly (wf_checkpoint_read, g NULL: check only). */
static void test_resume(const struct ck *base) {
    struct ck c;
    ck_copy(&c, base);
    ck_meta(&c, "weft.epoch", "18446744073709551617", 0);
    unsigned char *b;
    size_t n;
    ck_bytes(&c, &b, &n);
    write_file("resume.safetensors", b, n);
    char path[512];
    snprintf(path, sizeof path, "%s/resume.safetensors", tmpdir);
    struct wf_job j;
    memset(&j, 0, sizeof j);
    j.epochs = 1;
    struct wf_ckpt_pos pos;
    int rc = wf_checkpoint_read(path, &j, NULL, 10, NULL, NULL, NULL, NULL, NULL, &pos);
    char want[1024];
    snprintf(want, sizeof want, "%s: metadata 'weft.epoch' is '18446744073709551617', expected a count", path);
    CHECKF(rc == WF_ERR_CORRUPT && !strcmp(wf_errmsg(), want), "got '%s'", wf_errmsg());
    free(b);
    ck_free(&c);
}

int main(void) {
    struct ck base;
    unsigned char *valid;
    size_t n;
    int rc = ck_valid(&base, &valid, &n);
    CHECKF(rc == 0, "the valid checkpoint: %s", wf_errmsg());
    if (rc) return wf_test_done("test_hostile_ckpt");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-test-hostile-ckpt-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_seeds(&base);
    test_nomem(valid, n);
    test_evaluate(valid, n);
    test_resume(&base);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    wf_free(valid);
    ck_free(&base);
    return wf_test_done("test_hostile_ckpt");
}
