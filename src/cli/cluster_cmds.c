/*
 * cli layer: the cluster commands.
 *
 *   weft run JOB --workers N [--pp P] [--dp D] [--schedule 1f1b|gpipe] [--micro-batches K] [--trace FILE]
 *            [--resume [CKPT]] [--max-memory SIZE]
 *   weft coordinator [--listen HOST:PORT] [--token-file F] [--journal FILE]
 *   weft worker --coordinator HOST:PORT [--token-file F] [--once] [--reconnect S] [--max-memory SIZE]
 *   weft submit JOB --coordinator HOST:PORT [layout options] [--reconnect S]
 *   weft status --coordinator HOST:PORT
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/cluster.h"
#include "weft/core.h"
#include "weft/job.h"

#include "cli_int.h"

extern volatile sig_atomic_t wf_coord_interrupted;

static void usage_run(FILE *f) {
    fprintf(f, "usage: weft run JOB [options]\n\n"
               "Trains a job on a coordinator and N worker processes on this machine (loopback),\n"
               "streams progress and stops every process on exit, error or Ctrl-C. The final\n"
               "checkpoint is bit-identical to `weft train` with the same micro-batches and threads.\n\n"
               "options:\n"
               "  --workers N            worker processes (default pp x dp)\n"
               "  --pp P                 pipeline stages (default: the job's split points + 1; without\n"
               "                         split points weft picks them to balance compute)\n"
               "  --dp D                 data-parallel replicas of each stage (default workers / pp)\n"
               "  --schedule S           1f1b (default) or gpipe\n"
               "  --micro-batches K      micro-batches per step (default: the job's)\n"
               "  --threads T            BLAS threads per worker (default: the job's)\n"
               "  --trace FILE           write every worker's F/B/send/recv/reduce events (Chrome trace)\n"
               "  --heartbeat-timeout S  declare a silent worker dead after S seconds (default 5)\n"
               "  --nodes MIN:MAX        elastic: the job goes on when workers die, hang or join, on MIN to\n"
               "                         MAX workers (below MIN it holds until workers join); without it a\n"
               "                         lost worker fails the job\n"
               "  --settle S             elastic: a joined worker waits S seconds before the set grows (default 2)\n"
               "  --max-recoveries N     elastic: more than N failures within an hour fail the job (default 20)\n"
               "  --snapshot-every N     elastic: steps between the stage copies workers keep for each other\n"
               "                         (default 10)\n"
               "  --resume [CKPT]        continue from CKPT (default OUT/checkpoint.safetensors), with any\n"
               "                         layout: each stage loads its parameters and optimizer state by name\n"
               "  --max-memory SIZE      each worker refuses, before allocating, a stage whose parameters\n"
               "                         (with gradients and optimizer state), activations or scratch need\n"
               "                         more than SIZE bytes (K, M, G, T: powers of 1024, e.g. 2G; in place\n"
               "                         of physical memory, a lower `ulimit -v` still wins; passed to the\n"
               "                         workers as WEFT_MAX_MEMORY, which is also its default)\n"
               "  --quiet                no progress line\n");
}

static void usage_cluster(FILE *f) {
    fprintf(f, "usage: weft coordinator [--listen HOST:PORT] [--token-file F] [--journal FILE]\n"
               "       weft worker --coordinator HOST:PORT [--token-file F] [--once] [--reconnect S]\n"
               "                   [--max-memory SIZE]\n"
               "       weft submit JOB --coordinator HOST:PORT [--token-file F] [layout options of weft run]\n"
               "                   [--reconnect S]\n"
               "       weft status --coordinator HOST:PORT [--token-file F]\n\n"
               "A coordinator accepts workers and jobs; workers register their cores and memory and\n"
               "run the pipeline stages they are given. Every process needs the cluster token: the\n"
               "coordinator writes a new one to --token-file (default ./weft-token) unless\n"
               "WEFT_TOKEN is set; the others read WEFT_TOKEN or the file.\n\n"
               "  --journal FILE   the coordinator records its job and node sets in FILE; a coordinator\n"
               "                   started again with the same FILE (same address and token) takes over\n"
               "                   a job that was running when the last one died (elastic jobs, --nodes)\n"
               "  --reconnect S    a worker (or submit) that loses the coordinator tries to register\n"
               "                   again (watch the job again) for S seconds (default 60; 0 with --once)\n"
               "  --max-memory SIZE  a worker refuses, before allocating, a stage that needs more than SIZE\n"
               "                   bytes (K, M, G, T: powers of 1024, e.g. 2G) for its parameters (with\n"
               "                   gradients and optimizer state), activations or scratch, in place of\n"
               "                   physical memory (a lower `ulimit -v` still wins; default: WEFT_MAX_MEMORY)\n");
}

/* Layout options shared by run and submit; returns 1 if consumed (with *i advanced), -1 on a bad value. */
static int layout_opt(const char *cmd, int argc, char **argv, int *i, struct wf_run_opts *o) {
    const char *a = argv[*i];
    long v;
    int *dst = !strcmp(a, "--workers")          ? &o->workers
               : !strcmp(a, "--pp")             ? &o->pp
               : !strcmp(a, "--dp")             ? &o->dp
               : !strcmp(a, "--micro-batches")  ? &o->micro_batches
               : !strcmp(a, "--threads")        ? &o->threads
               : !strcmp(a, "--max-recoveries") ? &o->max_recoveries
               : !strcmp(a, "--snapshot-every") ? &o->snapshot_every
                                                : NULL;
    if (dst) {
        if (wf_cli_parse_long(cmd, a, *i + 1 < argc ? argv[*i + 1] : NULL, &v) < 0) return -1;
        *dst = (int)v;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--nodes")) { /* MIN:MAX, or N for N:N */
        const char *s = *i + 1 < argc ? argv[*i + 1] : "";
        char *end;
        long lo = strtol(s, &end, 10), hi = lo;
        if (*end == ':') hi = strtol(end + 1, &end, 10);
        if (!*s || *end || lo < 1 || hi < lo || hi > WF_MAX_WORKERS) {
            fprintf(stderr, "weft %s: error: --nodes is MIN:MAX with 1 <= MIN <= MAX <= %d, got '%s'\n", cmd,
                    WF_MAX_WORKERS, s);
            return -1;
        }
        o->nodes_min = (int)lo;
        o->nodes_max = (int)hi;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--heartbeat-timeout") || !strcmp(a, "--settle")) {
        const char *s = *i + 1 < argc ? argv[*i + 1] : "";
        char *end;
        double secs = strtod(s, &end);
        if (!*s || *end || !(secs > 0) || secs > 3600) {
            fprintf(stderr, "weft %s: error: %s takes seconds (0 to 3600), got '%s'\n", cmd, a, s);
            return -1;
        }
        *(!strcmp(a, "--settle") ? &o->settle_s : &o->heartbeat_timeout_s) = secs;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--schedule")) {
        const char *s = *i + 1 < argc ? argv[*i + 1] : "";
        if (strcmp(s, "1f1b") && strcmp(s, "gpipe")) {
            fprintf(stderr, "weft %s: error: --schedule is 1f1b or gpipe, got '%s'\n", cmd, s);
            return -1;
        }
        o->schedule = !strcmp(s, "gpipe");
        (*i)++;
        return 1;
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    struct wf_run_opts o = {.schedule = -1};
    int want_resume = 0;
    char ckpt[4200];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r = layout_opt("run", argc, argv, &i, &o);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_run(stdout);
            return 0;
        } else if (!strcmp(a, "--trace") && i + 1 < argc) {
            o.trace = argv[++i];
        } else if (!strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--max-memory")) {
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            /* the workers are new processes of this executable: they read it from the environment */
            if (wf_cli_max_memory("run", v) < 0 || setenv("WEFT_MAX_MEMORY", v, 1) < 0) return 2;
        } else if (!strcmp(a, "--resume")) {
            want_resume = 1;
            if (i + 1 < argc && argv[i + 1][0] != '-' && o.job_path) o.resume = argv[++i];
        } else if (!a[0] || a[0] == '-' || (o.job_path && !(want_resume && !o.resume))) {
            fprintf(stderr, "weft run: error: unexpected argument '%s'\n", a);
            usage_run(stderr);
            return 2;
        } else if (o.job_path) { /* weft run --resume CKPT JOB: the first path was the checkpoint */
            o.resume = o.job_path;
            o.job_path = a;
        } else {
            o.job_path = a;
        }
    }
    if (!o.job_path) {
        usage_run(stderr);
        return 2;
    }
    if (want_resume && !o.resume) { /* default: the job's own latest checkpoint */
        struct wf_job j;
        if (wf_job_load(&j, o.job_path) < 0) return wf_cli_fail("run");
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", j.out);
        wf_job_free(&j);
        o.resume = ckpt;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "weft run: error: cannot find its own executable\n");
        return 1;
    }
    self[n] = 0;
    if (wf_run_local(&o, self) < 0) return wf_cli_fail("run");
    return wf_coord_interrupted ? 130 : 0;
}

struct common {
    const char *coord, *token_file, *listen, *job, *journal;
    int once;
    double reconnect; /* -1: the default */
    struct wf_run_opts o;
};

static int parse_common(const char *cmd, int argc, char **argv, struct common *c) {
    memset(c, 0, sizeof *c);
    c->o.schedule = -1;
    c->reconnect = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r = layout_opt(cmd, argc, argv, &i, &c->o);
        if (r < 0) return -1;
        if (r) continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_cluster(stdout);
            return 1;
        } else if (!strcmp(a, "--coordinator") && i + 1 < argc) {
            c->coord = argv[++i];
        } else if (!strcmp(a, "--token-file") && i + 1 < argc) {
            c->token_file = argv[++i];
        } else if (!strcmp(a, "--listen") && i + 1 < argc) {
            c->listen = argv[++i];
        } else if (!strcmp(a, "--once")) {
            c->once = 1;
        } else if (!strcmp(a, "--max-memory") && !strcmp(cmd, "worker")) {
            if (wf_cli_max_memory(cmd, i + 1 < argc ? argv[++i] : NULL) < 0) return -1;
        } else if (!strcmp(a, "--journal") && i + 1 < argc) {
            c->journal = argv[++i];
        } else if (!strcmp(a, "--reconnect")) {
            const char *s = i + 1 < argc ? argv[i + 1] : "";
            char *end;
            double secs = strtod(s, &end);
            if (!*s || *end || !(secs >= 0) || secs > 86400) {
                fprintf(stderr, "weft %s: error: --reconnect takes seconds (0 to 86400), got '%s'\n", cmd, s);
                return -1;
            }
            c->reconnect = secs;
            i++;
        } else if (a[0] != '-' && !c->job) {
            c->job = a;
        } else {
            fprintf(stderr, "weft %s: error: unexpected argument '%s'\n", cmd, a);
            usage_cluster(stderr);
            return -1;
        }
    }
    return 0;
}

static void on_int(int sig) {
    (void)sig;
    wf_coord_interrupted = 1;
}

int cmd_coordinator(int argc, char **argv) {
    struct common c;
    int r = parse_common("coordinator", argc, argv, &c);
    if (r) return r < 0 ? 2 : 0;
    char *host;
    int port;
    if (wf_parse_hostport(c.listen ? c.listen : "127.0.0.1:7070", &host, &port) < 0) return wf_cli_fail("coordinator");
    struct wf_token tok;
    const char *tf = c.token_file ? c.token_file : "weft-token";
    char hex[129];
    if (getenv("WEFT_TOKEN")) {
        if (wf_token_load(&tok, NULL) < 0) return wf_cli_fail("coordinator");
    } else if (c.journal && access(tf, F_OK) == 0) { /* started again: its workers hold this token */
        if (wf_token_load(&tok, tf) < 0) return wf_cli_fail("coordinator");
    } else if (wf_token_generate(&tok, hex, tf) < 0) {
        return wf_cli_fail("coordinator");
    }
    int lfd, bound;
    if (wf_tcp_listen(host, port, &lfd, &bound) < 0) return wf_cli_fail("coordinator");
    printf("weft coordinator listening on %s:%d (token in %s)\n", host, bound,
           getenv("WEFT_TOKEN") ? "WEFT_TOKEN" : tf);
    fflush(stdout);
    wf_free(host);
    signal(SIGINT, on_int);
    signal(SIGTERM, on_int);
    if (c.journal) printf("journal: %s (a coordinator started again with it takes over a running job)\n", c.journal);
    fflush(stdout);
    struct wf_coord_opts co = {.listen_fd = lfd, .token = &tok, .journal = c.journal};
    int rc = wf_coordinator(&co);
    close(lfd);
    return rc < 0 ? wf_cli_fail("coordinator") : 0;
}

static int client_setup(const char *cmd, struct common *c, struct wf_token *tok, char **host, int *port) {
    if (!c->coord) {
        fprintf(stderr, "weft %s: error: --coordinator HOST:PORT is required\n", cmd);
        return -1;
    }
    if (wf_parse_hostport(c->coord, host, port) < 0 || wf_token_load(tok, c->token_file) < 0) {
        wf_cli_fail(cmd);
        return -1;
    }
    return 0;
}

/* weft worker / submit / status: processes that join a running coordinator. */
static int join_cmd(const char *cmd, int argc, char **argv) {
    struct common c;
    int r = parse_common(cmd, argc, argv, &c);
    if (r) return r < 0 ? 2 : 0;
    int submit = !strcmp(cmd, "submit");
    if (submit && !c.job) {
        usage_cluster(stderr);
        return 2;
    }
    struct wf_token tok;
    char *host;
    int port;
    if (client_setup(cmd, &c, &tok, &host, &port) < 0) return 1;
    c.o.job_path = c.job;
    double reconnect = c.reconnect >= 0 ? c.reconnect : c.once ? 0 : 60;
    int rc = !strcmp(cmd, "worker") ? wf_worker(host, port, &tok, c.once, reconnect)
             : submit               ? wf_submit(host, port, &tok, &c.o, c.reconnect >= 0 ? c.reconnect : 60)
                                    : wf_status(host, port, &tok);
    wf_free(host);
    return rc < 0 ? wf_cli_fail(cmd) : 0;
}

int cmd_worker(int argc, char **argv) { return join_cmd("worker", argc, argv); }
int cmd_submit(int argc, char **argv) { return join_cmd("submit", argc, argv); }
int cmd_status(int argc, char **argv) { return join_cmd("status", argc, argv); }
