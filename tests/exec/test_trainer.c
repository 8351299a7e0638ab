/*
 * exec: the training loop. A step allocates nothing (counted through the
 * allocation seam, over every thread: the data feeder's too) — with no
 * cache, and with a memory cache once every sample is in it (filling the
 * cache in epoch 1 is the one allocation per new sample); the learning-rate schedules follow their formulas; a
 * batch run as two micro-batches gives the gradient of the whole batch.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/train.h"

static char dir[256];

static const char *write_job(const char *name, const char *extra) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.job", dir, name);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "model = %s\ndata = /usr/share/datasets/fashion-mnist\nepochs = 2\nbatch = 32\nseed = 5\n"
            "out = %s/out-%s\n%s\n",
            wf_test_src("examples/mlp.wf"), dir, name, extra);
    fclose(f);
    return path;
}

static void test_no_allocation_in_step(const char *extra, int warm) {
    struct wf_trainer t;
    int rc = wf_trainer_init(&t, write_job("alloc", extra), NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    double loss;
    for (int i = 0; i < warm; i++)
        if (wf_trainer_step(&t, &loss) != WF_OK) {
            CHECKF(0, "step %d: %s", i, wf_errmsg());
            break;
        }
    long before = wf_alloc_count();
    for (int i = 0; i < 20; i++)
        CHECK(wf_trainer_step(&t, &loss) == WF_OK);
    CHECKF(wf_alloc_count() == before, "[%s] %ld allocations in 20 steps", extra, wf_alloc_count() - before);
    CHECK(isfinite(loss) && loss > 0);
    wf_trainer_free(&t);
}

static void test_micro_batches(void) {
    /* K=1 and K=2 from the same initial weights: the first step's gradients
     * agree to rounding (the K=2 sum is exact fixed point of two halves) */
    struct wf_trainer a, b;
    int ra = wf_trainer_init(&a, write_job("k1", "optimizer = sgd\nlr = 0.05\nclip_norm = 1e9"), NULL);
    int rb =
        wf_trainer_init(&b, write_job("k2", "optimizer = sgd\nlr = 0.05\nmicro_batches = 2\nclip_norm = 1e9"), NULL);
    CHECKF(ra == WF_OK && rb == WF_OK, "%s", wf_errmsg());
    if (ra || rb) return;
    double la, lb;
    CHECK(wf_trainer_step(&a, &la) == WF_OK);
    CHECK(wf_trainer_step(&b, &lb) == WF_OK);
    CHECKF(fabs(la - lb) <= 1e-6 * fabs(la), "loss K=1 %.9g vs K=2 %.9g", la, lb);
    CHECK(a.n_params == b.n_params);
    wf_test_close("grads K=2 vs K=1", b.grads, a.grads, (long)a.n_params, 1e-4, 1e-7);
    wf_test_close("params K=2 vs K=1", b.params, a.params, (long)a.n_params, 1e-5, 1e-7);
    wf_trainer_free(&a);
    wf_trainer_free(&b);
}

static void test_schedules(void) {
    struct wf_job j;
    memset(&j, 0, sizeof j);
    j.lr = 0.1;
    j.lr_schedule = WF_LR_CONSTANT;
    CHECK(wf_lr_at(&j, 0, 100) == 0.1 && wf_lr_at(&j, 99, 100) == 0.1);
    j.warmup = 10;
    CHECK(fabs(wf_lr_at(&j, 0, 100) - 0.01) < 1e-12 && fabs(wf_lr_at(&j, 9, 100) - 0.1) < 1e-12);
    j.warmup = 0;
    j.lr_schedule = WF_LR_STEP;
    j.step_size = 30;
    j.gamma = 0.5;
    CHECK(fabs(wf_lr_at(&j, 29, 100) - 0.1) < 1e-12 && fabs(wf_lr_at(&j, 30, 100) - 0.05) < 1e-12);
    CHECK(fabs(wf_lr_at(&j, 95, 100) - 0.0125) < 1e-12);
    j.lr_schedule = WF_LR_COSINE;
    j.min_lr = 0.0;
    j.warmup = 20;
    CHECK(fabs(wf_lr_at(&j, 20, 120) - 0.1) < 1e-12);
    CHECK(fabs(wf_lr_at(&j, 70, 120) - 0.05) < 1e-12);
    CHECK(wf_lr_at(&j, 119, 120) < 1e-4);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/weft-test-trainer-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_schedules();
    test_no_allocation_in_step("optimizer = sgd\nlr = 0.05\nmomentum = 0.9\ncache = none", 3);
    test_no_allocation_in_step("optimizer = sgd\nmomentum = 0.9\nmicro_batches = 4\nclip_norm = 1.0\ncache = none", 3);
    test_no_allocation_in_step("optimizer = adamw\nlr = 0.001\ncache = none\nplacement = device", 3);
    /* epoch 1 (1875 steps of 32) fills the memory cache; epoch 2 only reads it */
    test_no_allocation_in_step("optimizer = sgd\nlr = 0.05\ncache = memory", 1880);
    test_micro_batches();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return wf_test_done("test_trainer");
}
