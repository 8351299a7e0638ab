/*
 * cli layer: the weft command. The only place that prints to stdout.
 *
 *   weft train JOB [--resume [CKPT]] [--stop-after N] [--quiet] [--max-memory SIZE]
 *   weft eval CHECKPOINT [--data DIR] [--batch N]
 *   weft check MODEL [--batch N] [--max-memory SIZE]
 *   weft sample CHECKPOINT [--prompt TEXT] [--n N] [--temperature T] [--seed S] [--vocab FILE]   (sample.c)
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/compile.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/graph.h"
#include "weft/model.h"
#include "weft/train.h"

#include "cli_int.h"

#define WEFT_VERSION "0.1.0"

static void usage_main(FILE *f) {
    fprintf(f, "usage: weft COMMAND [ARGS]\n\n"
               "commands:\n"
               "  train JOB        train a model as the job file says\n"
               "  eval CHECKPOINT  evaluate a checkpoint on its test data\n"
               "  check MODEL      validate a model file and print its graph\n"
               "  run JOB          train on a coordinator and N local worker processes\n"
               "  coordinator      serve workers and jobs (see weft worker, submit, status)\n"
               "  worker           join a coordinator and run the stages it assigns\n"
               "  submit JOB       run a job on a running coordinator\n"
               "  status           show a coordinator's workers and job\n"
               "  tokenize TEXT... make a token dataset of text files (train.tok, test.tok, vocab.txt)\n"
               "  sample CKPT      generate text with a model trained on a token dataset\n\n"
               "`weft COMMAND --help` tells more. Environment: WEFT_LOG=error|warn|info|debug;\n"
               "WEFT_MAX_MEMORY=SIZE, the default of --max-memory (train, check, run, worker, eval, sample).\n");
}

static void usage_train(FILE *f) {
    fprintf(f, "usage: weft train JOB [options]\n\n"
               "Trains the model of a job file (see examples/*.job). Writes OUT/checkpoint.safetensors\n"
               "(atomically, at each epoch end or every checkpoint_every steps) and OUT/metrics.jsonl.\n\n"
               "options:\n"
               "  --resume [CKPT]   continue from CKPT (default OUT/checkpoint.safetensors)\n"
               "  --stop-after N    stop (with a checkpoint) after N more steps\n"
               "  --quiet           print only the final result\n"
               "  --profile         time every node and print where a step spends its time\n"
               "  --max-memory SIZE refuse, before allocating, a model whose parameters (with gradients\n"
               "                    and optimizer state), activations or scratch need more than SIZE\n"
               "                    bytes (K, M, G, T: powers of 1024, e.g. 2G); it replaces physical\n"
               "                    memory as the bound, a lower `ulimit -v` still wins; 0: none\n"
               "                    (default: WEFT_MAX_MEMORY)\n"
               "  --help            this text\n");
}

static void usage_eval(FILE *f) {
    fprintf(f, "usage: weft eval CHECKPOINT [--data DIR] [--batch N]\n\n"
               "Evaluates a checkpoint on the test split of the dataset it was trained on\n"
               "(or of DIR) and prints the loss and accuracy. The model is stored in the checkpoint.\n");
}

static void usage_check(FILE *f) {
    fprintf(f, "usage: weft check MODEL [--batch N] [--max-memory SIZE]\n\n"
               "Parses and validates a model file, builds its graph and backward pass, and prints\n"
               "every layer with its output shape, parameters and FLOPs, and the memory plan.\n"
               "Shapes are shown for batch N (default 1). With --max-memory SIZE (or WEFT_MAX_MEMORY;\n"
               "K, M, G, T: powers of 1024) the model is refused, as weft train would refuse it, if its\n"
               "activations, scratch, or parameters with their gradients need more than SIZE.\n");
}

static int fail(const char *cmd) {
    fprintf(stderr, "weft %s: error: %s\n", cmd, wf_errmsg());
    return 1;
}
int wf_cli_fail(const char *cmd) { return fail(cmd); }

/* where the memory override came from, for weft check's report */
static const char *max_memory_origin = "--max-memory";

int wf_cli_max_memory(const char *cmd, const char *value) {
    uint64_t bytes;
    if (wf_mem_parse_size("--max-memory", value, &bytes) < 0) {
        fprintf(stderr, "weft %s: error: %s\n", cmd, value ? wf_errmsg() : "--max-memory needs a size, e.g. 2G");
        return -1;
    }
    wf_mem_set_limit(bytes, "--max-memory");
    max_memory_origin = "--max-memory";
    return 0;
}

/* WEFT_MAX_MEMORY: --max-memory's default, for the commands that size models
 * (weft run passes --max-memory to its workers through it) */
static int max_memory_env(const char *cmd) {
    const char *s = getenv("WEFT_MAX_MEMORY");
    if (!s || !*s) return 0;
    uint64_t bytes;
    if (wf_mem_parse_size("WEFT_MAX_MEMORY", s, &bytes) < 0) {
        fprintf(stderr, "weft %s: error: %s\n", cmd, wf_errmsg());
        return -1;
    }
    wf_mem_set_limit(bytes, "--max-memory (WEFT_MAX_MEMORY)");
    max_memory_origin = "WEFT_MAX_MEMORY";
    return 0;
}

static void fmt_count(char *buf, size_t n, double v) {
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

/* "test acc 91.23%  " (with two spaces), or "" for a model that has no accuracy (NAN) */
static void acc_text(char *buf, size_t n, const char *what, double acc) {
    if (acc == acc)
        snprintf(buf, n, "%s %.2f%%  ", what, 100 * acc);
    else if (n)
        buf[0] = 0;
}

static void fmt_time(char *buf, size_t n, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

struct progress_state {
    struct wf_trainer *t; /* for the epoch-end sample of a token model */
    int tty;
    int quiet;
    double last_plain;
    double epoch_start;
};

int wf_cli_epoch_sample(struct wf_trainer *t, char *buf, size_t cap); /* sample.c */

static void on_progress(void *ud, const struct wf_progress *p) {
    struct progress_state *s = ud;
    if (s->quiet) return;
    char eta[32];
    fmt_time(eta, sizeof eta, p->eta_s);
    double frac = (double)p->epoch_step / (double)(p->epoch_steps ? p->epoch_steps : 1);
    if (p->epoch_done) {
        double now = wf_now();
        if (s->tty) printf("\r\033[K");
        char acc[48];
        acc_text(acc, sizeof acc, "test acc", p->test_acc);
        printf("epoch %d/%d  loss %.4f  %stest loss %.4f  %.0f samples/s  (%.1f s)", p->epoch + 1, p->epochs, p->loss,
               acc, p->test_loss, p->samples_per_s, now - s->epoch_start);
        if (p->placement)
            printf("  data: %s, wait %.0f%%, cache hits %.0f%%", p->placement, 100 * p->data_wait_frac,
                   100 * p->hit_rate);
        printf("\n");
        char text[512];
        if (s->t && s->t->data.itrain->kind == WF_STORE_TOKENS && s->t->data.itrain->sample.labels != WF_LABELS_CLASS) {
            /* a language model: the loss is the mean over predicted characters, nats a character, and bits */
            printf("  test loss per character %.4f nats = %.4f bits", p->test_loss, p->test_loss / log(2.0));
            if (wf_cli_epoch_sample(s->t, text, sizeof text) < 0)
                printf("; no sample: %s\n", wf_errmsg());
            else
                printf("; sample: \"%s\"\n", text);
        }
        fflush(stdout);
        s->epoch_start = now;
        return;
    }
    if (s->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        printf("\r\033[Kepoch %d/%d [%s] %3.0f%%  loss %.4f  %.0f samples/s  ETA %s", p->epoch + 1, p->epochs, bar,
               100 * frac, p->loss, p->samples_per_s, eta);
        if (p->placement)
            printf("  data %s wait %.0f%% hits %.0f%%", p->placement, 100 * p->data_wait_frac, 100 * p->hit_rate);
        fflush(stdout);
    } else {
        double now = wf_now();
        if (now - s->last_plain >= 10) {
            printf("epoch %d/%d step %ld/%ld  loss %.4f  %.0f samples/s  ETA %s", p->epoch + 1, p->epochs, p->step,
                   p->steps_total, p->loss, p->samples_per_s, eta);
            if (p->placement)
                printf("  data %s wait %.0f%% hits %.0f%%", p->placement, 100 * p->data_wait_frac, 100 * p->hit_rate);
            printf("\n");
            fflush(stdout);
            s->last_plain = now;
        }
    }
}

int wf_cli_parse_long(const char *cmd, const char *opt, const char *s, long *out) {
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *end || end == s || v <= 0) {
        fprintf(stderr, "weft %s: error: %s needs a positive integer, got '%s'\n", cmd, opt, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

static void print_profile(const struct wf_trainer *t) {
    const struct wf_program *p = &t->ex.prog;
    double total = 0;
    for (int i = 0; i < p->n_exec; i++)
        total += t->ex.node_seconds[i];
    printf("\nprofile: %.3f s in %d nodes (per step: %.1f us)\n", total, p->n_exec,
           1e6 * total / (double)(t->step ? t->step : 1));
    printf("%-20s %-14s %10s %7s %10s\n", "node", "op", "us/step", "share", "GFLOP/s");
    for (int i = 0; i < p->n_exec; i++) {
        const struct wf_node *n = &p->g.n[i];
        double s = t->ex.node_seconds[i];
        double per = s / (double)(t->step ? t->step : 1) / t->job.micro_batches;
        printf("%-20s %-14s %10.1f %6.1f%% %10.1f\n", n->name, wf_op_get(n->op)->name, 1e6 * per,
               100 * s / (total > 0 ? total : 1), per > 0 ? n->flops / per / 1e9 : 0.0);
    }
    struct wf_unit_counts uc[16];
    int nu = wf_exec_unit_counts(&t->ex, uc, 16);
    for (int i = 0; i < nu && i < 16; i++)
        if (uc[i].total)
            printf("unit %s: skip region ran on %llu of %llu (t, sample) pairs (%.1f%%); %llu skipped\n", uc[i].name,
                   (unsigned long long)uc[i].computed, (unsigned long long)uc[i].total,
                   100.0 * (double)uc[i].computed / (double)uc[i].total,
                   (unsigned long long)(uc[i].total - uc[i].computed));
}

static int cmd_train(int argc, char **argv) {
    const char *job = NULL, *resume = NULL;
    int want_resume = 0, quiet = 0, profile = 0;
    long stop_after = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_train(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--resume")) {
            want_resume = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-' && job) resume = argv[++i];
        } else if (!strcmp(argv[i], "--stop-after")) {
            if (wf_cli_parse_long("train", "--stop-after", i + 1 < argc ? argv[++i] : NULL, &stop_after) < 0) return 2;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (!strcmp(argv[i], "--profile")) {
            profile = 1;
        } else if (!strcmp(argv[i], "--max-memory")) {
            if (wf_cli_max_memory("train", i + 1 < argc ? argv[++i] : NULL) < 0) return 2;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "weft train: error: unknown option '%s'\n", argv[i]);
            usage_train(stderr);
            return 2;
        } else if (!job) {
            job = argv[i];
        } else if (want_resume && !resume) {
            resume = argv[i];
        } else {
            fprintf(stderr, "weft train: error: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!job) {
        usage_train(stderr);
        return 2;
    }
    struct wf_trainer t;
    char ckpt[4096];
    if (want_resume && !resume) {
        /* default: the job's own latest checkpoint */
        struct wf_job j;
        if (wf_job_load(&j, job) < 0) return fail("train");
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", j.out);
        wf_job_free(&j);
        resume = ckpt;
    }
    if (wf_trainer_init(&t, job, resume) < 0) return fail("train");
    struct progress_state ps = {.t = &t, .tty = isatty(STDOUT_FILENO), .quiet = quiet, .epoch_start = wf_now()};
    if (!quiet) {
        char np[32];
        fmt_count(np, sizeof np, (double)t.n_params);
        printf("weft train %s: model %s (%s parameters), %d train / %d test samples, batch %d = %d x %d, "
               "%d thread%s%s\n",
               job, t.model.name ? t.model.name : "model", np, t.data.itrain->n, t.data.itest->n, t.job.batch,
               t.job.micro_batches, t.job.batch / t.job.micro_batches, t.job.threads, t.job.threads > 1 ? "s" : "",
               resume ? ", resumed" : "");
        if (resume) printf("resumed from %s at step %ld (epoch %d)\n", resume, t.step, t.epoch + 1);
        fflush(stdout);
    }
    t.ex.profile = profile;
    double t0 = wf_now();
    if (wf_trainer_run(&t, stop_after, on_progress, &ps) < 0) {
        if (ps.tty && !quiet) printf("\n");
        wf_trainer_free(&t);
        return fail("train");
    }
    if (ps.tty && !quiet) printf("\r\033[K");
    double loss, acc;
    if (wf_trainer_evaluate(&t, &loss, &acc) < 0) {
        wf_trainer_free(&t);
        return fail("train");
    }
    if (profile) print_profile(&t);
    char accs[48];
    acc_text(accs, sizeof accs, "test accuracy", acc);
    printf("step %ld: %stest loss %.4f  (%.1f s)  checkpoint %s\n", t.step, accs, loss, wf_now() - t0, t.ckpt_path);
    wf_trainer_free(&t);
    return 0;
}

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL;
    long batch = 1000;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_eval(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            data = argv[++i];
        } else if (!strcmp(argv[i], "--batch")) {
            if (wf_cli_parse_long("eval", "--batch", i + 1 < argc ? argv[++i] : NULL, &batch) < 0) return 2;
        } else if (argv[i][0] == '-' || ckpt) {
            fprintf(stderr, "weft eval: error: unexpected argument '%s'\n", argv[i]);
            usage_eval(stderr);
            return 2;
        } else {
            ckpt = argv[i];
        }
    }
    if (!ckpt) {
        usage_eval(stderr);
        return 2;
    }
    double loss, acc;
    long step;
    char *name = NULL;
    if (wf_checkpoint_evaluate(ckpt, data, (int)batch, &loss, &acc, &step, &name) < 0) return fail("eval");
    char accs[48];
    acc_text(accs, sizeof accs, "test accuracy", acc);
    printf("%s: model %s, step %ld: %stest loss %.4f\n", ckpt, name, step, accs, loss);
    wf_free(name);
    return 0;
}

static int cmd_check(int argc, char **argv) {
    const char *path = NULL;
    long batch = 1;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_check(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--batch")) {
            if (wf_cli_parse_long("check", "--batch", i + 1 < argc ? argv[++i] : NULL, &batch) < 0) return 2;
        } else if (!strcmp(argv[i], "--max-memory")) {
            if (wf_cli_max_memory("check", i + 1 < argc ? argv[++i] : NULL) < 0) return 2;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "weft check: error: unexpected argument '%s'\n", argv[i]);
            usage_check(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        usage_check(stderr);
        return 2;
    }
    struct wf_model m;
    struct wf_program p;
    if (wf_model_load(&m, path) < 0) return fail("check");
    int train = 1;
    if (wf_program_compile(&p, &m, (int)batch, 1) < 0) {
        /* a model without a loss is still worth checking forward-only */
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", wf_errmsg());
        if (wf_program_compile(&p, &m, (int)batch, 0) < 0 || p.g.loss >= 0) {
            wf_model_free(&m);
            return fail("check");
        }
        train = 0;
        fprintf(stderr, "weft check: note: %s; checked forward only\n", msg);
    }
    const struct wf_graph *g = &p.g;
    /* with a memory bound given, what weft train would refuse before allocating (the optimizer's
     * state depends on the job: only the parameters and their gradients are counted) */
    uint64_t limit = wf_mem_limit();
    size_t pbytes = sizeof(float) * (size_t)p.n_param_floats * (train ? 2 : 1);
    if (limit > 0 && (wf_mem_check_plan(&p, g->path) < 0 ||
                      wf_mem_check_params(&p, g->path, train ? "the parameters and their gradients" : "the parameters",
                                          pbytes) < 0)) {
        wf_program_free(&p);
        wf_model_free(&m);
        return fail("check");
    }
    char s[96], f[32], np[32];
    printf("model %s (%s), batch %ld\n\n", g->name, path, batch);
    printf("%-16s %-14s %-26s %12s %12s\n", "layer", "op", "output", "params", "flops");
    for (int i = 0; i < g->nv; i++)
        if (g->v[i].kind == WF_V_INPUT)
            printf("%-16s %-14s %-26s\n", g->v[i].name, "input", wf_shape_str(&g->v[i], s, sizeof s));
    for (int i = 0; i < g->n_fwd; i++) {
        const struct wf_node *n = &g->n[i];
        int64_t pc = 0;
        for (int k = 0; k < n->n_in; k++)
            if (g->v[n->in[k]].kind == WF_V_PARAM && g->v[n->in[k]].producer < 0 && strchr(g->v[n->in[k]].name, '.') &&
                !strncmp(g->v[n->in[k]].name, n->name, strlen(n->name)))
                pc += g->v[n->in[k]].numel;
        fmt_count(f, sizeof f, n->flops);
        printf("%-16s %-14s %-26s %12lld %12s\n", n->name, wf_op_get(n->op)->name,
               wf_shape_str(&g->v[n->out[0]], s, sizeof s), (long long)pc, f);
    }
    fmt_count(np, sizeof np, (double)wf_graph_param_count(g));
    printf("\nparameters: %lld (%s) in %d tensors\n", (long long)wf_graph_param_count(g), np, g->n_params);
    fmt_count(f, sizeof f, p.flops_fwd / (double)batch);
    printf("forward FLOPs per sample: %s", f);
    if (train) {
        fmt_count(f, sizeof f, (p.flops_fwd + p.flops_bwd) / (double)batch);
        printf("; forward+backward: %s", f);
    }
    printf("\nmemory plan: %zu activation bytes (%zu without reuse), %zu scratch bytes, %d nodes (%d forward)\n",
           p.arena_bytes, p.naive_bytes, p.work_floats * sizeof(float), p.n_exec, g->n_fwd);
    if (g->loss >= 0) printf("loss: %s\n", g->v[g->loss].name);
    if (limit > 0) {
        char lim[32];
        wf_fmt_bytes(lim, sizeof lim, (double)limit, 1);
        printf("memory: within the %s of %s (activations, scratch, the parameters%s)\n", max_memory_origin, lim,
               train ? " with their gradients" : "");
    }
    wf_program_free(&p);
    wf_model_free(&m);
    return 0;
}

int cmd_tokenize(int argc, char **argv); /* tokenize.c */
int cmd_sample(int argc, char **argv);   /* sample.c */

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("weft %s\n", WEFT_VERSION);
        return 0;
    }
    /* the commands that size models take --max-memory's default from the environment */
    static const char *const sizes_models[] = {"train", "eval", "check", "run", "worker", "sample"};
    for (size_t i = 0; i < WF_ARRAY_LEN(sizes_models); i++)
        if (!strcmp(cmd, sizes_models[i]) && max_memory_env(cmd) < 0) return 2;
    if (!strcmp(cmd, "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(cmd, "check")) return cmd_check(argc - 2, argv + 2);
    if (!strcmp(cmd, "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "coordinator")) return cmd_coordinator(argc - 2, argv + 2);
    if (!strcmp(cmd, "worker")) return cmd_worker(argc - 2, argv + 2);
    if (!strcmp(cmd, "submit")) return cmd_submit(argc - 2, argv + 2);
    if (!strcmp(cmd, "status")) return cmd_status(argc - 2, argv + 2);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 2, argv + 2);
    if (!strcmp(cmd, "sample")) return cmd_sample(argc - 2, argv + 2);
    fprintf(stderr,
            "weft: error: unknown command '%s' (commands: train, eval, check, run, coordinator, worker, submit, "
            "status, tokenize, sample; see weft --help)\n",
            cmd);
    return 2;
}
