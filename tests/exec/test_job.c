/* exec: job files — defaults, every key, path resolution, the canonical
 * writer, every error with its line:col, file checks, allocation failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/job.h"
#include "weft/loader.h"

static void test_defaults(void) {
    struct wf_job j;
    int rc = wf_job_parse(&j, "exp/j1.job", "model = mlp.wf\ndata = /data/fmnist\n");
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(strcmp(j.path, "exp/j1.job") == 0);
    CHECK(strcmp(j.model, "exp/mlp.wf") == 0);
    CHECK(strcmp(j.data, "/data/fmnist") == 0);
    CHECK(strcmp(j.out, "runs/j1") == 0);
    CHECK(j.init == NULL);
    CHECK(j.epochs == 1 && j.batch == 64 && j.micro_batches == 1 && j.seed == 0 && j.threads == 1);
    CHECK(j.max_steps == 0 && j.optimizer == WF_OPT_SGD && j.lr == 0.01 && j.momentum == 0 && j.nesterov == 0);
    CHECK(j.weight_decay == 0 && j.beta1 == 0.9 && j.beta2 == 0.999 && j.eps == 1e-8 && j.clip_norm == 0);
    CHECK(j.lr_schedule == WF_LR_CONSTANT && j.warmup == 0 && j.step_size == 0 && j.gamma == 0.1 && j.min_lr == 0);
    CHECK(j.checkpoint_every == 0 && j.eval_batch == 1000);
    CHECK(j.n_split == 0 && j.split == NULL && j.pp == 1 && j.dp == 1 && strcmp(j.pipeline, "1f1b") == 0);
    CHECK(j.model_at.line == 1 && j.model_at.col == 9 && j.data_at.line == 2 && j.data_at.col == 8);
    CHECK(j.out_at.line == 0 && j.init_at.line == 0);

    char *text;
    size_t len;
    rc = wf_job_write(&j, &text, &len);
    CHECK(rc == WF_OK);
    if (!rc) {
        const char *want = "model = exp/mlp.wf\n"
                           "data = /data/fmnist\n"
                           "out = runs/j1\n"
                           "epochs = 1\n"
                           "batch = 64\n"
                           "micro_batches = 1\n"
                           "seed = 0\n"
                           "threads = 1\n"
                           "max_steps = 0\n"
                           "optimizer = sgd\n"
                           "lr = 0.01\n"
                           "momentum = 0.0\n"
                           "nesterov = false\n"
                           "weight_decay = 0.0\n"
                           "beta1 = 0.9\n"
                           "beta2 = 0.999\n"
                           "eps = 1e-08\n"
                           "clip_norm = 0.0\n"
                           "lr_schedule = constant\n"
                           "warmup = 0\n"
                           "gamma = 0.1\n"
                           "min_lr = 0.0\n"
                           "checkpoint_every = 0\n"
                           "eval_batch = 1000\n"
                           "split = []\n"
                           "pp = 1\n"
                           "dp = 1\n"
                           "pipeline = 1f1b\n"
                           "transforms = \"\"\n"
                           "cache = memory\n"
                           "cache_mb = 1024\n"
                           "placement = auto\n"
                           "loader_workers = 1\n"
                           "prefetch = 3\n";
        CHECKF(strcmp(text, want) == 0 && len == strlen(want), "got:\n%s", text);
        wf_free(text);
    }
    wf_job_free(&j);
    wf_job_free(&j);
    wf_job_free(NULL);
}

static const char *full_text = "# every key\n"
                               "model = mlp.wf                  # relative to the job file's folder\n"
                               "data = ../data/fashion-mnist\n"
                               "out = \"my runs/a\\\"b\"\n"
                               "init = /w/init.safetensors\n"
                               "epochs = 10\n"
                               "batch = 128\n"
                               "micro_batches = 4\n"
                               "seed = 18446744073709551615\n"
                               "threads = 256\n"
                               "max_steps = 5000\n"
                               "optimizer = adamw\n"
                               "lr = 3e-4\n"
                               "momentum = 0.9\n"
                               "nesterov = true\n"
                               "weight_decay = 0.01\n"
                               "beta1 = 0\n"
                               "beta2 = 0.98\n"
                               "eps = 1e-6\n"
                               "clip_norm = 1\n"
                               "lr_schedule = step\n"
                               "warmup = 100\n"
                               "step_size = 1000\n"
                               "gamma = 0.5\n"
                               "min_lr = 1e-5\n"
                               "checkpoint_every = 200\n"
                               "eval_batch = 500\n"
                               "split = [fc1, a1.out]\n"
                               "pp = 3\n"
                               "dp = 2\n"
                               "pipeline = gpipe\n"
                               "transforms = \"normalize(mean=0.5, std=0.25), flip\"\n"
                               "cache = \"redis://127.0.0.1:6390\"\n"
                               "cache_mb = 64\n"
                               "placement = device\n"
                               "loader_workers = 2\n"
                               "prefetch = 5\n"
                               "data_stage = stage\n"
                               "resume = runs/a/checkpoint.safetensors\n";

static void test_every_key(void) {
    struct wf_job j;
    int rc = wf_job_parse(&j, "/abs/exp/full.wf", full_text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(strcmp(j.model, "/abs/exp/mlp.wf") == 0);
    CHECK(strcmp(j.data, "/abs/exp/../data/fashion-mnist") == 0);
    CHECK(strcmp(j.out, "/abs/exp/my runs/a\"b") == 0 && j.out_at.line == 4 && j.out_at.col == 7);
    CHECK(strcmp(j.init, "/w/init.safetensors") == 0 && j.init_at.line == 5);
    CHECK(j.epochs == 10 && j.batch == 128 && j.micro_batches == 4 && j.seed == UINT64_MAX && j.threads == 256);
    CHECK(j.max_steps == 5000 && j.optimizer == WF_OPT_ADAMW && j.lr == 3e-4 && j.momentum == 0.9 && j.nesterov == 1);
    CHECK(j.weight_decay == 0.01 && j.beta1 == 0 && j.beta2 == 0.98 && j.eps == 1e-6 && j.clip_norm == 1.0);
    CHECK(j.lr_schedule == WF_LR_STEP && j.warmup == 100 && j.step_size == 1000 && j.gamma == 0.5 && j.min_lr == 1e-5);
    CHECK(j.checkpoint_every == 200 && j.eval_batch == 500);
    CHECK(j.n_split == 2 && strcmp(j.split[0], "fc1") == 0 && strcmp(j.split[1], "a1.out") == 0);
    CHECK(j.pp == 3 && j.dp == 2 && strcmp(j.pipeline, "gpipe") == 0);
    CHECK(!strcmp(j.transforms, "normalize(mean=0.5, std=0.25), flip") && !strcmp(j.cache, "redis://127.0.0.1:6390"));
    CHECK(j.cache_mb == 64 && j.placement == 2 && j.loader_workers == 2 && j.prefetch == 5);
    CHECK(!strcmp(j.data_stage, "/abs/exp/stage"));
    CHECK(!strcmp(j.resume, "/abs/exp/runs/a/checkpoint.safetensors"));
    char host[64];
    int port = 0;
    CHECK(wf_job_cache_redis(j.cache, host, sizeof host, &port) == WF_OK && !strcmp(host, "127.0.0.1") && port == 6390);

    /* the canonical text parses back to the same job and is a fixed point */
    char *t1 = NULL, *t2 = NULL;
    CHECK(wf_job_write(&j, &t1, NULL) == WF_OK);
    CHECKF(strstr(t1, "out = \"/abs/exp/my runs/a\\\"b\"\n") && strstr(t1, "lr = 0.0003\n") &&
               strstr(t1, "seed = 18446744073709551615\n") && strstr(t1, "split = [fc1, a1.out]\n") &&
               strstr(t1, "step_size = 1000\n") && strstr(t1, "clip_norm = 1.0\n"),
           "%s", t1);
    struct wf_job k;
    rc = wf_job_parse(&k, NULL, t1);
    CHECKF(rc == WF_OK, "%s\n%s", wf_errmsg(), t1);
    if (!rc) {
        CHECK(wf_job_write(&k, &t2, NULL) == WF_OK);
        CHECKF(strcmp(t1, t2) == 0, "%s---\n%s", t1, t2);
        CHECK(strcmp(k.out, j.out) == 0 && k.seed == j.seed && k.lr == j.lr && k.min_lr == j.min_lr);
        wf_free(t2);
        wf_job_free(&k);
    }
    wf_free(t1);
    wf_job_free(&j);
}

static void test_paths(void) {
    struct wf_job j;
    const char *text = "model = mlp.wf\ndata = d\n";
    CHECK(wf_job_parse(&j, "job.wf", text) == WF_OK);
    CHECK(strcmp(j.model, "mlp.wf") == 0 && strcmp(j.data, "d") == 0 && strcmp(j.out, "runs/job") == 0);
    wf_job_free(&j);
    CHECK(wf_job_parse(&j, NULL, text) == WF_OK);
    CHECK(strcmp(j.model, "mlp.wf") == 0 && strcmp(j.out, "runs/job") == 0 && strcmp(j.path, "<memory>") == 0);
    wf_job_free(&j);
    CHECK(wf_job_parse(&j, "/train.v2.job", text) == WF_OK);
    CHECK(strcmp(j.model, "/mlp.wf") == 0 && strcmp(j.out, "runs/train.v2") == 0);
    wf_job_free(&j);
    CHECK(wf_job_parse(&j, "a/b/.hidden", "model = ./m.wf\ndata = \"x y\"\nout = o\ninit = 12\n") == WF_OK);
    CHECK(strcmp(j.model, "a/b/./m.wf") == 0 && strcmp(j.data, "a/b/x y") == 0 && strcmp(j.out, "a/b/o") == 0);
    CHECK(strcmp(j.init, "a/b/12") == 0);
    wf_job_free(&j);
    /* words in paths: - + . _ / and digits; `=` without spaces */
    CHECK(wf_job_parse(&j, "j", "model=m-1+2_x.wf\ndata=/a-b/c_d/1.5\n") == WF_OK);
    CHECK(strcmp(j.model, "m-1+2_x.wf") == 0 && strcmp(j.data, "/a-b/c_d/1.5") == 0);
    wf_job_free(&j);
}

static void expect_error(int line, const char *text, const char *want) {
    struct wf_job j;
    int rc = wf_job_parse(&j, "job.wf", text);
    wf_test_checks++;
    if (rc != WF_ERR_PARSE || !strstr(wf_errmsg(), want) || j.model || j.path || j.out) {
        wf_test_failures++;
        fprintf(stderr, "%s:%d: parse of\n%s\ngave rc %d '%s', want '%s'\n", __FILE__, line, text, rc, wf_errmsg(),
                want);
    }
    wf_job_free(&j);
}
#define EXPECT_ERROR(text, want) expect_error(__LINE__, text, want)
#define HEAD "model = m.wf\ndata = d\n" /* lines 1 and 2 */

static void test_errors(void) {
    /* keys */
    EXPECT_ERROR(HEAD "lrr = 0.1\n",
                 "job.wf:3:1: unknown key 'lrr' (valid keys: model, data, out, init, epochs, batch, "
                 "micro_batches, seed, threads, max_steps, optimizer, lr, momentum, nesterov, "
                 "weight_decay, beta1, beta2, eps, clip_norm, lr_schedule, warmup, step_size, "
                 "gamma, min_lr, checkpoint_every, eval_batch, split, pp, dp, pipeline, transforms, cache, "
                 "cache_mb, placement, loader_workers, prefetch, data_stage, resume, seq_len, sample, labels, stride)");
    EXPECT_ERROR(HEAD "cache = \"redis://host\"\n",
                 "job.wf:3:9: expected cache = memory, none or \"redis://HOST:PORT\", got 'redis://host'");
    EXPECT_ERROR(HEAD "cache = disk\n",
                 "job.wf:3:9: expected cache = memory, none or \"redis://HOST:PORT\", got 'disk'");
    EXPECT_ERROR(HEAD "placement = gpu\n", "job.wf:3:13: expected placement auto, cpu or device, got 'gpu'");
    EXPECT_ERROR(HEAD "transforms = \"flip, blur(r=2)\"\n",
                 "job.wf:3:14: bad transforms (transforms:1:7: unknown transform 'blur' (expected normalize, crop, "
                 "flip or noise))");
    EXPECT_ERROR(HEAD "prefetch = 0\n", "job.wf:3:12: expected prefetch in 1..64, got '0'");
    EXPECT_ERROR(HEAD "lr = 0.1\n# again\nlr = 0.2\n", "job.wf:5:1: duplicate key 'lr' (first at job.wf:3:1)");
    EXPECT_ERROR(HEAD "model = n.wf\n", "job.wf:3:1: duplicate key 'model' (first at job.wf:1:1)");
    EXPECT_ERROR(HEAD "3 = 4\n", "job.wf:3:1: expected key, got '3'");
    EXPECT_ERROR(HEAD "epochs 10\n", "job.wf:3:8: expected '=' after 'epochs', got '10'");
    EXPECT_ERROR(HEAD "epochs =\n", "job.wf:3:9: expected value, got end of line");
    EXPECT_ERROR(HEAD "epochs = # none\n", "job.wf:3:16: expected value, got end of line");
    EXPECT_ERROR(HEAD "epochs = 10 20\n", "job.wf:3:13: expected end of line, got '20'");
    EXPECT_ERROR("model = my model.wf\ndata = d\n",
                 "job.wf:1:12: expected end of line (quote a path with spaces), got 'model.wf'");
    /* missing required keys */
    EXPECT_ERROR("data = d\n", "job.wf: missing required key 'model'");
    EXPECT_ERROR("model = m\nepochs = 2\n", "job.wf: missing required key 'data'");
    EXPECT_ERROR("", "job.wf: missing required key 'model'");
    /* types */
    EXPECT_ERROR(HEAD "epochs = ten\n", "job.wf:3:10: expected integer for epochs, got 'ten'");
    EXPECT_ERROR(HEAD "epochs = 2.5\n", "job.wf:3:10: expected integer for epochs, got '2.5'");
    EXPECT_ERROR(HEAD "seed = x\n", "job.wf:3:8: expected integer for seed, got 'x'");
    EXPECT_ERROR(HEAD "lr = fast\n", "job.wf:3:6: expected number for lr, got 'fast'");
    EXPECT_ERROR(HEAD "lr = \"0.1\"\n", "job.wf:3:6: expected number for lr, got \"0.1\"");
    EXPECT_ERROR(HEAD "nesterov = 1\n", "job.wf:3:12: expected true or false for nesterov, got '1'");
    EXPECT_ERROR(HEAD "init = [a]\n", "job.wf:3:8: expected path for init, got '['");
    EXPECT_ERROR(HEAD "init = \"\"\n", "job.wf:3:8: expected non-empty path for init, got \"\"");
    EXPECT_ERROR(HEAD "split = fc1\n", "job.wf:3:9: expected [name, ...] for split, got 'fc1'");
    EXPECT_ERROR(HEAD "optimizer = 3\n", "job.wf:3:13: expected optimizer sgd, adam or adamw, got '3'");
    /* ranges */
    EXPECT_ERROR(HEAD "epochs = 0\n", "job.wf:3:10: expected epochs >= 1, got '0'");
    EXPECT_ERROR(HEAD "epochs = 99999999999\n", "job.wf:3:10: expected epochs >= 1, got '99999999999'");
    EXPECT_ERROR(HEAD "batch = -1\n", "job.wf:3:9: expected batch >= 1, got '-1'");
    EXPECT_ERROR(HEAD "micro_batches = 0\n", "job.wf:3:17: expected micro_batches >= 1, got '0'");
    EXPECT_ERROR(HEAD "micro_batches = 5\nbatch = 64\n",
                 "job.wf:3:17: expected micro_batches dividing batch (64), got 5");
    EXPECT_ERROR(HEAD "micro_batches = 128\n", "job.wf:3:17: expected micro_batches dividing batch (64), got 128");
    EXPECT_ERROR(HEAD "seed = -1\n", "job.wf:3:8: expected seed >= 0, got '-1'");
    EXPECT_ERROR(HEAD "threads = 0\n", "job.wf:3:11: expected threads in 1..256, got '0'");
    EXPECT_ERROR(HEAD "threads = 257\n", "job.wf:3:11: expected threads in 1..256, got '257'");
    EXPECT_ERROR(HEAD "max_steps = -1\n", "job.wf:3:13: expected max_steps >= 0, got '-1'");
    EXPECT_ERROR(HEAD "lr = 0\n", "job.wf:3:6: expected lr > 0, got '0'");
    EXPECT_ERROR(HEAD "lr = -0.1\n", "job.wf:3:6: expected lr > 0, got '-0.1'");
    EXPECT_ERROR(HEAD "lr = inf\n", "job.wf:3:6: expected lr > 0, got 'inf'");
    EXPECT_ERROR(HEAD "lr = nan\n", "job.wf:3:6: expected lr > 0, got 'nan'");
    EXPECT_ERROR(HEAD "momentum = 1\n", "job.wf:3:12: expected momentum in [0, 1), got '1'");
    EXPECT_ERROR(HEAD "momentum = -0.5\n", "job.wf:3:12: expected momentum in [0, 1), got '-0.5'");
    EXPECT_ERROR(HEAD "beta1 = 1.0\n", "job.wf:3:9: expected beta1 in [0, 1), got '1.0'");
    EXPECT_ERROR(HEAD "beta2 = 1.5\n", "job.wf:3:9: expected beta2 in [0, 1), got '1.5'");
    EXPECT_ERROR(HEAD "eps = 0\n", "job.wf:3:7: expected eps > 0, got '0'");
    EXPECT_ERROR(HEAD "weight_decay = -1e-4\n", "job.wf:3:16: expected weight_decay >= 0, got '-1e-4'");
    EXPECT_ERROR(HEAD "clip_norm = -1\n", "job.wf:3:13: expected clip_norm >= 0, got '-1'");
    EXPECT_ERROR(HEAD "gamma = 0\n", "job.wf:3:9: expected gamma > 0, got '0'");
    EXPECT_ERROR(HEAD "min_lr = -1\n", "job.wf:3:10: expected min_lr >= 0, got '-1'");
    EXPECT_ERROR(HEAD "eval_batch = 0\n", "job.wf:3:14: expected eval_batch >= 1, got '0'");
    EXPECT_ERROR(HEAD "pp = 0\n", "job.wf:3:6: expected pp >= 1, got '0'");
    EXPECT_ERROR(HEAD "dp = 0\n", "job.wf:3:6: expected dp >= 1, got '0'");
    EXPECT_ERROR(HEAD "pipeline = zigzag\n", "job.wf:3:12: expected pipeline 1f1b or gpipe, got 'zigzag'");
    EXPECT_ERROR(HEAD "optimizer = rmsprop\n", "job.wf:3:13: expected optimizer sgd, adam or adamw, got 'rmsprop'");
    EXPECT_ERROR(HEAD "lr_schedule = linear\n",
                 "job.wf:3:15: expected lr_schedule constant, step or cosine, got 'linear'");
    EXPECT_ERROR(HEAD "lr_schedule = step\n", "job.wf:3:15: lr_schedule step requires key 'step_size'");
    EXPECT_ERROR(HEAD "step_size = 0\n", "job.wf:3:13: expected step_size >= 1, got '0'");
    /* split lists */
    EXPECT_ERROR(HEAD "split = [a, b\n",
                 "job.wf:3:14: expected ',' or ']' to close the list opened at 3:9, got end of line");
    EXPECT_ERROR(HEAD "split = [a, b/c]\n", "job.wf:3:13: expected tensor name, got 'b/c'");
    EXPECT_ERROR(HEAD "split = [a, 3]\n", "job.wf:3:13: expected tensor name, got '3'");
    EXPECT_ERROR(HEAD "split = [a, a]\n", "job.wf:3:13: 'a' listed twice in split");
    EXPECT_ERROR(HEAD "split = [a,]\n", "job.wf:3:12: expected tensor name, got ']'");
    char big[1024];
    size_t o = (size_t)snprintf(big, sizeof big, HEAD "split = [");
    for (int k = 0; k <= 64; k++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%st%d", k ? ", " : "", k);
    snprintf(big + o, sizeof big - o, "]\n");
    EXPECT_ERROR(big, "job.wf:3:");
    EXPECT_ERROR(big, "split too long (at most 64 names)");
    /* the lexer */
    EXPECT_ERROR(HEAD "out = \"open\n", "job.wf:3:7: expected '\"' to close the string, got end of line");
    EXPECT_ERROR(HEAD "out = ~/x\n", "job.wf:3:7: unexpected character '~'");
    EXPECT_ERROR(HEAD "lr = 1e999\n", "job.wf:3:6: expected number in the range of a double");
    EXPECT_ERROR(HEAD "seed = 18446744073709551616\n", "job.wf:3:8: expected integer in 64-bit range");

    /* a valid split, an empty one, and the edges of the ranges */
    struct wf_job j;
    CHECK(wf_job_parse(&j, "job.wf", HEAD "split = []\nmomentum = 0.999\nthreads = 1\nbatch = 1\n") == WF_OK);
    CHECK(j.n_split == 0 && j.momentum == 0.999 && j.batch == 1);
    wf_job_free(&j);
    CHECK(wf_job_parse(&j, "job.wf", HEAD "lr_schedule = step\nstep_size = 1\nbatch = 96\nmicro_batches = 96\n") ==
          WF_OK);
    wf_job_free(&j);
}

static void test_load_and_check_files(void) {
    char dir[1024], path[1100], model[1100], data[1100];
    snprintf(dir, sizeof dir, "%s/test_job_files", WF_BINARY_DIR);
    snprintf(path, sizeof path, "%s/t.job", dir);
    snprintf(model, sizeof model, "%s/mlp.wf", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    CHECK(wf_mkdir_p(data) == WF_OK);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs("model = mlp.wf\ndata = data\n", f);
    fclose(f);
    remove(model);

    struct wf_job j;
    int rc = wf_job_load(&j, path);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(strcmp(j.model, model) == 0 && strcmp(j.data, data) == 0 && strcmp(j.out, "runs/t") == 0);
    char want[3000];
    snprintf(want, sizeof want, "%s:1:9: model file '%s' not found", path, model);
    CHECK(wf_job_check_files(&j) == WF_ERR_NOTFOUND);
    CHECKF(strstr(wf_errmsg(), want), "%s", wf_errmsg());
    f = fopen(model, "wb");
    fputs("output x\n", f);
    fclose(f);
    CHECKF(wf_job_check_files(&j) == WF_OK, "%s", wf_errmsg());
    wf_free(j.init);
    j.init = wf_strdup(data);
    j.init_at.line = 7;
    j.init_at.col = 8;
    CHECK(wf_job_check_files(&j) == WF_ERR_INVALID);
    snprintf(want, sizeof want, "%s:7:8: init file '%s' is not a regular file", path, data);
    CHECKF(strstr(wf_errmsg(), want), "%s", wf_errmsg());
    wf_job_free(&j);

    f = fopen(path, "wb");
    fputs("model = mlp.wf\ndata = mlp.wf\n", f);
    fclose(f);
    CHECK(wf_job_load(&j, path) == WF_OK);
    CHECK(wf_job_check_files(&j) == WF_ERR_INVALID);
    snprintf(want, sizeof want, "%s:2:8: data folder '%s' is not a directory", path, model);
    CHECKF(strstr(wf_errmsg(), want), "%s", wf_errmsg());
    wf_job_free(&j);

    f = fopen(path, "wb");
    fputs("model = mlp.wf\ndata = data\nepochs = 0\n", f);
    fclose(f);
    CHECK(wf_job_load(&j, path) == WF_ERR_PARSE);
    snprintf(want, sizeof want, "%s:3:10: expected epochs >= 1", path);
    CHECKF(strstr(wf_errmsg(), want), "%s", wf_errmsg());
    remove(path);
    CHECK(wf_job_load(&j, path) == WF_ERR_NOTFOUND && j.model == NULL);
    remove(model);
    rmdir(data);
    rmdir(dir);
}

static void test_alloc_failures(void) {
    int ok = 0, nomem = 0, other = 0;
    for (long k = 1; k < 10000 && !ok; k++) {
        struct wf_job j;
        wf_alloc_fail_at(k);
        int rc = wf_job_parse(&j, "/abs/exp/full.wf", full_text);
        wf_alloc_fail_at(0);
        if (rc == WF_OK)
            ok = 1;
        else if (rc == WF_ERR_NOMEM)
            nomem++;
        else
            other++;
        CHECK(rc != WF_ERR_NOMEM || (j.path == NULL && j.model == NULL && j.split == NULL));
        wf_job_free(&j);
    }
    CHECK(ok && nomem > 5 && other == 0);
    struct wf_job j;
    CHECK(wf_job_parse(&j, "/abs/exp/full.wf", full_text) == WF_OK);
    ok = nomem = other = 0;
    for (long k = 1; k < 10000 && !ok; k++) {
        char *out = NULL;
        wf_alloc_fail_at(k);
        int rc = wf_job_write(&j, &out, NULL);
        wf_alloc_fail_at(0);
        if (rc == WF_OK) {
            ok = 1;
        } else if (rc == WF_ERR_NOMEM) {
            nomem++;
            CHECK(out == NULL);
        } else {
            other++;
        }
        wf_free(out);
    }
    CHECK(ok && nomem >= 1 && other == 0);
    wf_job_free(&j);
}

/* Token-data keys: defaults, labels = class (sequence only), the canonical text. */
static void test_token_keys(void) {
    struct wf_job j;
    int rc = wf_job_parse(&j, "job.wf", HEAD "seq_len = 64\nsample = sequence\n");
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    CHECK(j.seq_len == 64 && j.sample == WF_SAMPLE_SEQUENCE && j.labels == WF_LABELS_SHIFTED && j.labels_at.line == 0);
    wf_job_free(&j);
    CHECK(wf_job_parse(&j, "job.wf", HEAD "seq_len = 16\n") == WF_OK);
    CHECK(j.sample == WF_SAMPLE_WINDOW && j.labels == WF_LABELS_NEXT);
    wf_job_free(&j);
    rc = wf_job_parse(&j, "job.wf", HEAD "seq_len = 64\nsample = sequence\nlabels = class\n");
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    CHECK(j.labels == WF_LABELS_CLASS && j.labels_at.line == 5 && j.labels_at.col == 1);
    struct wf_sample_opts so;
    wf_job_sample_opts(&j, &so);
    CHECK(so.seq_len == 64 && so.sample == WF_SAMPLE_SEQUENCE && so.labels == WF_LABELS_CLASS);
    char *text;
    CHECK(wf_job_write(&j, &text, NULL) == WF_OK);
    CHECKF(strstr(text, "\nseq_len = 64\nsample = sequence\nlabels = class\n") && !strstr(text, "stride"), "%s", text);
    struct wf_job k; /* the canonical text parses back to the same job */
    CHECK(wf_job_parse(&k, "job.wf", text) == WF_OK && k.labels == WF_LABELS_CLASS && k.sample == WF_SAMPLE_SEQUENCE);
    wf_job_free(&k);
    wf_free(text);
    wf_job_free(&j);
    EXPECT_ERROR(HEAD "seq_len = 64\nlabels = class\n",
                 "job.wf:4:10: labels = class needs sample = sequence (each sequence has a class, a window none)");
    EXPECT_ERROR(HEAD "seq_len = 64\nsample = window\nlabels = class\n", "job.wf:5:10: labels = class needs sample");
    EXPECT_ERROR(HEAD "seq_len = 64\nsample = sequence\nlabels = next\n",
                 "job.wf:5:10: labels = next needs sample = window (a sequence is labelled per token, labels = "
                 "shifted, or by its class, labels = class)");
    EXPECT_ERROR(HEAD "seq_len = 64\nsample = sequence\nlabels = file\n",
                 "job.wf:5:10: expected labels next, shifted or class, got 'file'");
    EXPECT_ERROR(HEAD "labels = class\n", "job.wf:3:1: 'labels' applies to token data only: set seq_len too");
}

int main(void) {
    test_defaults();
    test_every_key();
    test_paths();
    test_errors();
    test_token_keys();
    test_load_and_check_files();
    test_alloc_failures();
    return wf_test_done("test_job");
}
