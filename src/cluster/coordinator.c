/*
 * cluster layer: the coordinator. One thread, one poll loop over the
 * listening socket, the workers' control connections and the clients.
 *
 * A job goes WAITING (for enough idle workers) -> COMPILING (each worker
 * was sent its stage sub-graph and compiles it) -> RUNNING (every part
 * compiled: START) -> DONE or FAILED. The coordinator builds the logical
 * graph and cuts it, but compiles nothing; it assembles the losses the last
 * stages report, and checkpoints from the state the stages send, written
 * exactly as one process would write them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "weft/cluster.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/job.h"
#include "weft/model.h"
#include "weft/train.h"

#include "coord_int.h"

static long n_compiles; /* stays 0: the coordinator compiles nothing */
long wf_coordinator_compiles(void) { return n_compiles; }

volatile sig_atomic_t wf_coord_interrupted;

double co_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- output ---- */

void co_emit(struct coord *co, struct job *jb, int progress, const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (jb->client >= 0) {
        struct client *cl = &co->clients[jb->client];
        struct wf_msg m = {.type = WF_M_JOB_EVENT, .text = line};
        if (cl->used && wf_msg_send(&cl->c, &m, 5.0) < 0) {
            wf_conn_close(&cl->c);
            cl->used = 0;
            jb->client = -1;
        }
        return;
    }
    if (jb->quiet && progress) return;
    int tty = isatty(2);
    if (progress && tty) {
        fprintf(stderr, "\r%s\033[K", line);
    } else {
        if (tty) fputs("\r\033[K", stderr);
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

const char *co_node_desc(const struct coord *co, const struct job *jb, int ni, char *buf, size_t n) {
    const struct node *nd = &co->nodes[ni];
    if (nd->slot >= 0 && jb->S)
        snprintf(buf, n, "worker %d (stage %d, replica %d, pid %d)", nd->slot, nd->slot / jb->D, nd->slot % jb->D,
                 nd->pid);
    else
        snprintf(buf, n, "worker node %d (pid %d)", nd->id, nd->pid);
    return buf;
}

/* ---- failure ---- */

/* Records a failure; the one with the highest priority within a second
 * (a worker that died beats the peers that lost it) is reported. */
void co_job_fail(struct job *jb, int prio, const char *fmt, ...) {
    if (jb->state != J_COMPILING && jb->state != J_RUNNING && jb->state != J_WAITING) return;
    if (jb->fail_at == 0) jb->fail_at = wf_now();
    if (prio <= jb->fail_prio) return;
    jb->fail_prio = prio;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(jb->fail_msg, sizeof jb->fail_msg, fmt, ap);
    va_end(ap);
}

void co_drop_node(struct coord *co, int ni) {
    struct node *nd = &co->nodes[ni];
    wf_conn_close(&nd->c);
    nd->used = 0;
}

/* ---- job setup ---- */

/* What depends on the node set's layout. */
static void plan_free(struct job *jb) {
    for (int s = 0; jb->state_buf && s < jb->S; s++)
        wf_free(jb->state_buf[s]);
    wf_free(jb->state_buf);
    for (int w = 0; jb->tr && w < jb->n; w++)
        wf_free(jb->tr[w]);
    wf_free(jb->tr);
    wf_free(jb->ntr);
    wf_free(jb->wstats);
    wf_free(jb->pstage);
    wf_free(jb->poff);
    wf_free(jb->sfloats);
    wf_free(jb->pidx);
    wf_free(jb->sparams);
    wf_free(jb->clip_vals);
    wf_partition_free(&jb->part);
    jb->state_buf = NULL;
    jb->tr = NULL;
    jb->ntr = NULL;
    jb->wstats = NULL;
    jb->pstage = NULL;
    jb->poff = NULL;
    jb->sfloats = NULL;
    jb->pidx = NULL;
    jb->sparams = NULL;
    jb->clip_vals = NULL;
}

void co_job_free(struct job *jb) {
    wf_job_free(&jb->job);
    wf_free(jb->opts_path);
    wf_free(jb->opts_resume);
    wf_model_free(&jb->model);
    wf_free(jb->model_text);
    for (int i = 0; i < LOSS_RING; i++)
        wf_free(jb->loss[i].v);
    plan_free(jb);
    el_free(jb);
    if (jb->metrics) fclose(jb->metrics);
    wf_free(jb->ckpt_path);
    memset(jb, 0, sizeof *jb);
}

/* Absolute form of a path the workers will open (they may run elsewhere in the tree). */
static int absolutize(char **p) {
    if (!*p || (*p)[0] == '/') return WF_OK;
    char buf[PATH_MAX];
    if (!realpath(*p, buf)) return WF_OK; /* the check of files reports it */
    char *d = wf_strdup(buf);
    if (!d) return wf_error(WF_ERR_NOMEM, "out of memory");
    wf_free(*p);
    *p = d;
    return WF_OK;
}

int co_job_setup(struct job *jb, const struct wf_run_opts *o) {
    int rc;
    struct wf_job *j = &jb->job;
    jb->opts = *o; /* for the journal */
    jb->opts_path = wf_strdup(o->job_path);
    jb->opts_resume = o->resume ? wf_strdup(o->resume) : NULL;
    if (!jb->opts_path || (o->resume && !jb->opts_resume)) return wf_error(WF_ERR_NOMEM, "out of memory");
    jb->opts.job_path = jb->opts_path;
    jb->opts.resume = jb->opts_resume;
    jb->opts.trace = NULL;
    if ((rc = wf_job_load(j, o->job_path)) < 0) return rc;
    if ((rc = wf_job_check_files(j)) < 0) return rc;
    if (o->micro_batches > 0) j->micro_batches = o->micro_batches;
    if (o->threads > 0) j->threads = o->threads;
    if (j->batch % j->micro_batches)
        return wf_error(WF_ERR_INVALID, "%s: batch %d is not a multiple of %d micro-batches", j->path, j->batch,
                        j->micro_batches);
    if (o->resume) {
        wf_free(j->resume);
        if (!(j->resume = wf_strdup(o->resume))) return wf_error(WF_ERR_NOMEM, "out of memory");
    }
    if ((rc = absolutize(&j->model)) < 0 || (rc = absolutize(&j->data)) < 0 || (rc = absolutize(&j->init)) < 0 ||
        (rc = absolutize(&j->resume)) < 0)
        return rc;
    if ((rc = wf_mkdir_p(j->out)) < 0 || (rc = absolutize(&j->out)) < 0) return rc;
    if (wf_remove_stale_tmp(j->out, NULL) < 0) WF_LOGW("coord", "%s", wf_errmsg()); /* best effort */
    if ((rc = wf_model_load(&jb->model, j->model)) < 0) return rc;
    if ((rc = wf_model_write(&jb->model, &jb->model_text, NULL)) < 0) return rc;
    int pp = o->pp > 0 ? o->pp : (j->n_split ? j->n_split + 1 : j->pp);
    if (j->n_split && pp != j->n_split + 1)
        return wf_error(WF_ERR_INVALID, "%s: %d split points make %d stages, but --pp is %d", j->path, j->n_split,
                        j->n_split + 1, pp);
    int dp = o->dp > 0 ? o->dp : o->workers > 0 ? o->workers / pp : j->dp;
    if (dp < 1) dp = 1;
    if (o->workers > 0 && o->workers != pp * dp)
        return wf_error(WF_ERR_INVALID, "--workers %d does not match --pp %d x --dp %d = %d", o->workers, pp, dp,
                        pp * dp);
    if (pp * dp > MAX_NODES) return wf_error(WF_ERR_INVALID, "at most %d workers", MAX_NODES);
    if (j->micro_batches < dp)
        return wf_error(WF_ERR_INVALID,
                        "%d micro-batches cannot feed %d data-parallel replicas; use --micro-batches %d or more",
                        j->micro_batches, dp, dp);
    if (j->micro_batches > 256) return wf_error(WF_ERR_INVALID, "at most 256 micro-batches per step");
    if ((rc = co_job_plan(jb, pp, dp)) < 0) return wf_error_prefix(rc, "%s", j->path);
    jb->S0 = jb->S;
    jb->K = j->micro_batches;
    jb->sched = o->schedule >= 0 ? o->schedule : (j->pipeline && !strcmp(j->pipeline, "gpipe"));
    jb->threads = j->threads;
    jb->trace = o->trace != NULL;
    /* the store stages a .gz dataset once, before the workers open it */
    struct wf_store *train;
    char stage[4096];
    wf_data_stage_dir(j, stage, sizeof stage);
    struct wf_sample_opts so;
    wf_job_sample_opts(j, &so);
    if ((rc = wf_store_open_opts(&train, j->data, "train", stage, wf_store_dir_is_tokens(j->data) ? &so : NULL)) < 0)
        return wf_error_prefix(rc, "%s: data = %s", j->path ? j->path : "job", j->data);
    {
        /* the whole model's data inputs against the dataset's samples, before any worker reads them */
        int x, y;
        wf_graph_data_inputs(&jb->part.g, &x, &y);
        int len = wf_graph_len_input(&jb->part.g);
        rc = x < 0 ? wf_error(WF_ERR_INVALID, "%s: the model needs an input for the dataset's samples", jb->part.g.path)
                   : wf_check_data_inputs(&jb->part.g, wf_store_info(train), x, y, len);
        if (rc < 0) {
            wf_store_free(train);
            return rc;
        }
    }
    jb->n_train = wf_store_info(train)->n;
    jb->steps_per_epoch = jb->n_train / j->batch;
    wf_store_free(train);
    jb->total = jb->steps_per_epoch * j->epochs;
    if (j->max_steps > 0 && j->max_steps < jb->total) jb->total = j->max_steps;
    if (j->resume) { /* checked here against the whole model; each stage then loads its part */
        struct wf_ckpt_pos pos;
        if ((rc = wf_checkpoint_read(j->resume, j, jb->model_text, jb->steps_per_epoch, NULL, NULL, NULL, NULL, NULL,
                                     &pos)) < 0)
            return rc;
        jb->start_step = jb->steps_done = pos.step;
    }
    size_t n = strlen(j->out) + 64;
    jb->ckpt_path = wf_malloc(n);
    if (!jb->ckpt_path) return wf_error(WF_ERR_NOMEM, "out of memory");
    snprintf(jb->ckpt_path, n, "%s/checkpoint.safetensors", j->out);
    char mpath[4200];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", j->out);
    if (!(jb->metrics = fopen(mpath, j->resume || jb->takeover ? "a" : "w")))
        return wf_error(WF_ERR_IO, "%s: cannot open for writing", mpath);
    jb->state = J_WAITING;
    jb->state_step = -1;
    jb->logged = jb->steps_done;
    jb->evals_logged = (int)(jb->start_step / jb->steps_per_epoch);
    jb->t_submit = wf_now();
    if (o->nodes_max > 0) { /* elastic: the node controller sizes the sets */
        jb->elastic = 1;
        jb->nmin = o->nodes_min > 0 ? o->nodes_min : 1;
        jb->nmax = o->nodes_max;
        jb->settle = o->settle_s > 0 ? o->settle_s : 2.0;
        jb->max_rec = o->max_recoveries > 0 ? o->max_recoveries : 20;
        jb->snap_every = o->snapshot_every > 0 ? o->snapshot_every : 10;
        if (jb->nmin > jb->nmax || jb->nmax > MAX_NODES)
            return wf_error(WF_ERR_INVALID, "--nodes %d:%d: MIN must be at most MAX, and MAX at most %d", jb->nmin,
                            jb->nmax, MAX_NODES);
        if (j->resume && !(jb->resume0 = wf_strdup(j->resume))) return wf_error(WF_ERR_NOMEM, "out of memory");
    }
    if ((rc = el_setup(jb)) < 0) return rc;
    return WF_OK;
}

int co_pick_idle(const struct coord *co, int n, int *nodes) {
    int k = 0;
    for (int i = 0; i < MAX_NODES && k < n; i++)
        if (co->nodes[i].used && co->nodes[i].slot < 0) nodes[k++] = i;
    return k;
}

int co_idle_nodes(const struct coord *co) {
    int n = 0;
    for (int i = 0; i < MAX_NODES; i++)
        n += co->nodes[i].used && co->nodes[i].slot < 0;
    return n;
}

int co_job_plan(struct job *jb, int S, int D) {
    const struct wf_job *j = &jb->job;
    plan_free(jb);
    int rc;
    char **names = NULL, *sub[WF_MAX_WORKERS];
    int n_split = 0;
    char *const *split = NULL;
    if (j->n_split && S == j->n_split + 1) {
        n_split = j->n_split;
        split = j->split;
    } else if (j->n_split && S <= j->n_split) { /* fewer stages: merge neighbours, keeping some split points */
        for (int i = 0; i < S - 1; i++)
            sub[i] = j->split[((i + 1) * (j->n_split + 1)) / S - 1];
        n_split = S - 1;
        split = sub;
    } else if (S > 1) {
        if ((rc = wf_partition_auto(&jb->model, S, &names)) < 0) return rc;
        n_split = rc;
        split = names;
    }
    rc = wf_partition_build(&jb->part, &jb->model, n_split, split);
    if (names) {
        for (int i = 0; i < S; i++)
            wf_free(names[i]);
        wf_free(names);
    }
    if (rc < 0) return rc;
    jb->S = jb->part.n_stages;
    jb->D = D;
    jb->n = jb->S * jb->D;
    jb->slots = wf_opt_slots(j);
    /* where each parameter lives: its stage and offset there */
    const struct wf_graph *g = &jb->part.g;
    jb->pstage = wf_calloc((size_t)g->n_params + 1, sizeof(int));
    jb->poff = wf_calloc((size_t)g->n_params + 1, sizeof(int64_t));
    jb->sfloats = wf_calloc((size_t)jb->S, sizeof(int64_t));
    jb->pidx = wf_calloc((size_t)g->n_params + 1, sizeof(int));
    jb->sparams = wf_calloc((size_t)jb->S, sizeof(int));
    jb->clip_vals = wf_calloc((size_t)g->n_params + 1, sizeof(double));
    jb->state_buf = wf_calloc((size_t)jb->S, sizeof(float *));
    jb->tr = wf_calloc((size_t)jb->n, sizeof *jb->tr);
    jb->ntr = wf_calloc((size_t)jb->n, sizeof(long));
    jb->wstats = wf_calloc((size_t)jb->n, sizeof *jb->wstats);
    if (!jb->pstage || !jb->poff || !jb->sfloats || !jb->pidx || !jb->sparams || !jb->clip_vals || !jb->state_buf ||
        !jb->tr || !jb->ntr || !jb->wstats)
        return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_params; i++) {
        int pv = g->params[i];
        jb->pstage[i] = -1;
        for (int ni = 0; ni < g->n_fwd && jb->pstage[i] < 0; ni++)
            for (int a = 0; a < g->n[ni].n_in; a++)
                if (g->n[ni].in[a] == pv) jb->pstage[i] = jb->part.node_stage[ni];
        if (jb->pstage[i] < 0) jb->pstage[i] = 0;
        jb->pidx[i] = jb->sparams[jb->pstage[i]]++;
        jb->poff[i] = jb->sfloats[jb->pstage[i]];
        jb->sfloats[jb->pstage[i]] += g->v[pv].numel;
    }
    return WF_OK;
}

int co_member_ok(const struct coord *co, const struct job *jb, int w) {
    int ni = jb->node[w];
    return ni >= 0 && ni < MAX_NODES && co->nodes[ni].used && co->nodes[ni].slot == w;
}

/* The state of stage s of the current plan, cut from the whole-model vector W. */
static float *stage_slice(const struct job *jb, int s, size_t *bytes) {
    const struct wf_graph *g = &jb->part.g;
    int64_t n = jb->sfloats[s];
    *bytes = sizeof(float) * (size_t)n * (size_t)(1 + jb->slots);
    float *buf = wf_malloc(*bytes + 4);
    if (!buf) return NULL;
    for (int i = 0; i < g->n_params; i++) {
        if (jb->pstage[i] != s) continue;
        int64_t len = g->v[g->params[i]].numel;
        for (int k = 0; k <= jb->slots; k++)
            memcpy(buf + k * n + jb->poff[i], jb->W + k * jb->gfloats + jb->goff[i], sizeof(float) * (size_t)len);
    }
    return buf;
}

int co_assign(struct coord *co, struct job *jb, const int *nodes) {
    struct wf_job *j = &jb->job;
    /* the job text says which checkpoint the stages load, if any */
    char *keep = j->resume;
    const char *from = !jb->elastic             ? keep
                       : jb->src == SRC_DISK    ? jb->ckpt_path
                       : jb->src == SRC_INITIAL ? jb->resume0
                                                : NULL;
    j->resume = (char *)from;
    char *job_text = NULL;
    int rc = wf_job_write(j, &job_text, NULL);
    j->resume = keep;
    if (rc < 0) return rc;
    struct wf_peer_addr peers[MAX_NODES];
    int w;
    for (w = 0; w < jb->n; w++) {
        co->nodes[nodes[w]].slot = w;
        jb->node[w] = nodes[w];
    }
    jb->compiled = jb->done = 0;
    jb->state_got = 0;
    jb->state_step = -1;
    jb->clip_got = 0;
    for (int i = 0; i < LOSS_RING; i++)
        jb->loss[i].step = -1;
    for (w = 0; w < jb->n; w++) {
        const struct node *nd = &co->nodes[jb->node[w]];
        peers[w].host = (char *)nd->host;
        peers[w].port = (uint32_t)nd->port;
    }
    jb->t_assign = wf_now();
    for (w = 0; w < jb->n && rc == WF_OK; w++) {
        int s = w / jb->D;
        const struct wf_stage_spec *sp = &jb->part.st[s];
        struct wf_msg m = {.type = WF_M_ASSIGN,
                           .job_id = (uint64_t)jb->id << 32 | jb->version,
                           .version = jb->version,
                           .elastic = (uint32_t)jb->elastic,
                           .snapshot_every = (uint32_t)jb->snap_every,
                           .restore = (uint32_t)jb->elastic,
                           .worker = (uint32_t)w,
                           .stage = (uint32_t)s,
                           .n_stages = (uint32_t)jb->S,
                           .replica = (uint32_t)(w % jb->D),
                           .n_replicas = (uint32_t)jb->D,
                           .micro_batches = (uint32_t)jb->K,
                           .schedule = (uint32_t)jb->sched,
                           .threads = (uint32_t)jb->threads,
                           .trace = (uint32_t)jb->trace,
                           .in_grad = (uint32_t)sp->in_grad,
                           .out_grad = (uint32_t)sp->out_grad,
                           .job_text = job_text,
                           .model_text = sp->model_text,
                           .in = sp->in,
                           .out = sp->out,
                           .x_name = jb->part.x_name,
                           .y_name = jb->part.y_name,
                           .len_name = jb->part.len_name,
                           .n_peers = (uint32_t)jb->n,
                           .peers = peers};
        struct node *nd = &co->nodes[jb->node[w]];
        rc = wf_msg_send(&nd->c, &m, CTL_TIMEOUT);
        if (rc == WF_OK && jb->elastic) { /* the stage's state: from W, or (empty) load the checkpoint / start */
            size_t bytes = 0;
            float *buf = jb->src == SRC_PEERS || jb->src == SRC_RETAINED ? stage_slice(jb, s, &bytes) : NULL;
            if (bytes && !buf) rc = wf_error(WF_ERR_NOMEM, "out of memory");
            int64_t t = jb->src == SRC_PEERS || jb->src == SRC_RETAINED ? jb->W_step : 0;
            struct wf_msg r = {.type = WF_M_RESTORE,
                               .step = t,
                               .epoch = t / jb->steps_per_epoch,
                               .epoch_step = t % jb->steps_per_epoch,
                               .data = buf,
                               .nbytes = buf ? bytes : 0};
            if (rc == WF_OK) rc = wf_msg_send(&nd->c, &r, CTL_TIMEOUT);
            wf_free(buf);
        }
        if (rc < 0) {
            char d[160];
            co_job_fail(jb, 2, "%s: could not send its sub-graph: %s", co_node_desc(co, jb, jb->node[w], d, sizeof d),
                        wf_errmsg());
        }
        WF_LOGI("coord", "job %d: worker %d gets stage %d (%d layers, %lld parameters), replica %d", jb->id, w, s,
                sp->n_layers, (long long)sp->param_floats, w % jb->D);
    }
    wf_free(job_text);
    jb->state = J_COMPILING;
    co_emit(co, jb, 0, "job %d: %d stage%s x %d replica%s, %d micro-batches, %s; compiling on %d workers", jb->id,
            jb->S, jb->S > 1 ? "s" : "", jb->D, jb->D > 1 ? "s" : "", jb->K, jb->sched ? "gpipe" : "1f1b", jb->n);
    return WF_OK;
}

/* ---- results from the workers ---- */

void co_metrics_step(struct job *jb, int64_t step, double loss, double sps, double time_s) {
    double lr = wf_lr_at(&jb->job, (long)step, jb->steps_per_epoch * jb->job.epochs);
    fprintf(jb->metrics,
            "{\"step\":%lld,\"epoch\":%lld,\"loss\":%.9g,\"lr\":%.9g,\"samples_per_s\":%.1f,\"time_s\":%.4f}\n",
            (long long)step + 1, (long long)(step / jb->steps_per_epoch + 1), loss, lr, sps, time_s);
}

static void on_loss(struct coord *co, struct job *jb, const struct wf_msg *m) {
    int64_t step = m->step;
    if (step < 0 || m->first + m->n > (uint32_t)jb->K) {
        co_job_fail(jb, 1, "a worker reported losses of micro-batches %u..%u of %d", m->first, m->first + m->n, jb->K);
        return;
    }
    int i = (int)(step % LOSS_RING);
    if (!jb->loss[i].v && !(jb->loss[i].v = wf_calloc((size_t)jb->K, sizeof(double)))) return;
    if (jb->loss[i].step != step) {
        jb->loss[i].step = step;
        jb->loss[i].got = 0;
    }
    memcpy(jb->loss[i].v + m->first, m->vals, sizeof(double) * m->n);
    int mb = jb->job.batch / jb->K;
    if (jb->ids && step < jb->total && m->n_ids == m->n * (uint32_t)mb)
        memcpy(jb->ids + (size_t)step * (size_t)jb->job.batch + (size_t)m->first * (size_t)mb, m->ids,
               sizeof(uint32_t) * m->n_ids);
    if (++jb->loss[i].got < jb->D) return;
    double loss = 0; /* in micro-batch order, as one process adds them */
    for (int k = 0; k < jb->K; k++)
        loss += jb->loss[i].v[k];
    double now = wf_now();
    long done = step + 1;
    if (jb->ids_set && step < jb->total) jb->ids_set[step] = jb->version ? jb->version : 1;
    jb->steps_done = done;
    if (done <= jb->logged) { /* a step done again after a recovery: it must give the same loss */
        jl_step(co, jb, step);
        if (jb->loss_all && step < jb->total) {
            jb->replay_checked++;
            if (memcmp(&jb->loss_all[step], &loss, sizeof loss)) {
                jb->replay_mismatch++;
                co_emit(co, jb, 0, "warning: step %ld done again gave loss %.9g, first %.9g", done, loss,
                        jb->loss_all[step]);
            }
        }
        el_step_done(co, jb, done);
        return;
    }
    jb->logged = done;
    double sps = (double)(done - jb->start_step) * jb->job.batch / (now - jb->t_start + 1e-12);
    if (jb->loss_all && step < jb->total) {
        jb->loss_all[step] = loss;
        jb->step_t[2 * step] = now - jb->t_start;
        jb->step_t[2 * step + 1] = sps;
    }
    jl_step(co, jb, step); /* the journal first: a metrics line it lacks would be written twice */
    el_step_done(co, jb, done);
    jb->last_loss = loss;
    co_metrics_step(jb, step, loss, sps, now - jb->t_start);
    if (now - jb->last_print > 0.2 || done == jb->total) {
        fflush(jb->metrics);
        double eta = (double)(jb->total - done) * jb->job.batch / (sps > 0 ? sps : 1);
        co_emit(co, jb, 1, "epoch %ld/%d  step %ld/%ld  loss %.4f  %.0f samples/s  ETA %.0fs",
                step / jb->steps_per_epoch + 1, jb->job.epochs, done, jb->total, loss, sps, eta);
        jb->last_print = now;
    }
}

static void on_eval(struct coord *co, struct job *jb, const struct wf_msg *m) {
    if (m->count == 0) return;
    if (m->epoch < jb->evals_logged) return; /* evaluated again after a recovery */
    jb->evals_logged = (int)m->epoch + 1;
    jb->test_loss = m->loss_sum / (double)m->count;
    int64_t rps = wf_eval_rows_per_sample(&jb->part.g); /* rows a sample accuracy counts: 1, or T */
    jb->test_acc =
        m->correct == WF_EVAL_NO_ACC || rps <= 0 ? NAN : (double)m->correct / ((double)m->count * (double)rps);
    char acc[32] = "null", accs[48] = ""; /* a model without accuracy */
    if (jb->test_acc == jb->test_acc) {
        snprintf(acc, sizeof acc, "%.6f", jb->test_acc);
        snprintf(accs, sizeof accs, "  test accuracy %.2f%%", 100 * jb->test_acc);
    }
    jl_rec(co, 0, "eval %lld %ld %.17g %.17g %.17g", (long long)m->epoch, jb->steps_done, jb->last_loss, jb->test_loss,
           jb->test_acc);
    fprintf(jb->metrics,
            "{\"event\":\"epoch\",\"epoch\":%lld,\"step\":%ld,\"train_loss\":%.9g,\"test_loss\":%.9g,"
            "\"test_acc\":%s}\n",
            (long long)m->epoch + 1, jb->steps_done, jb->last_loss, jb->test_loss, acc);
    fflush(jb->metrics);
    co_emit(co, jb, 0, "epoch %lld/%d  train loss %.4f  test loss %.4f%s", (long long)m->epoch + 1, jb->job.epochs,
            jb->last_loss, jb->test_loss, accs);
}

static void on_state(struct coord *co, struct job *jb, int w, const struct wf_msg *m) {
    int s = w / jb->D;
    size_t want = sizeof(float) * (size_t)jb->sfloats[s] * (size_t)(1 + jb->slots);
    if (m->nbytes != want) {
        co_job_fail(jb, 1, "worker %d sent %llu bytes of state for stage %d, expected %zu", w,
                    (unsigned long long)m->nbytes, s, want);
        return;
    }
    if (m->step != jb->state_step) {
        jb->state_step = m->step;
        jb->state_got = 0;
    }
    if (!jb->state_buf[s] && !(jb->state_buf[s] = wf_malloc(want + 4))) {
        co_job_fail(jb, 1, "out of memory for a checkpoint");
        return;
    }
    memcpy(jb->state_buf[s], m->data, want);
    if (++jb->state_got < jb->S) return;
    /* every stage has sent this step's state: the checkpoint of one process */
    const struct wf_graph *g = &jb->part.g;
    const float *p[256], *a[256], *b[256];
    for (int i = 0; i < g->n_params; i++) {
        int st = jb->pstage[i];
        const float *base = jb->state_buf[st];
        p[i] = base + jb->poff[i];
        a[i] = base + jb->sfloats[st] + jb->poff[i];
        b[i] = base + 2 * jb->sfloats[st] + jb->poff[i];
    }
    struct wf_ckpt_state cs = {.job = &jb->job,
                               .model_text = jb->model_text,
                               .g = g,
                               .param = p,
                               .opt_a = jb->slots >= 1 ? a : NULL,
                               .opt_b = jb->slots >= 2 ? b : NULL,
                               .step = m->step,
                               .epoch = (int)m->epoch,
                               .epoch_step = m->epoch_step};
    if (wf_checkpoint_write(jb->ckpt_path, &cs) < 0)
        co_job_fail(jb, 1, "%s", wf_errmsg());
    else {
        jb->ckpt_step = m->step;
        jl_rec(co, 0, "ckpt %lld", (long long)m->step);
    }
}

/* A stage's sums of squared gradients; with every stage's in, the global
 * sum in parameter order (as one process adds it) goes to every worker. */
static void on_clip_part(struct coord *co, struct job *jb, const struct wf_msg *m) {
    int s = (int)m->first;
    if (s < 0 || s >= jb->S || (int)m->n != jb->sparams[s]) {
        co_job_fail(jb, 1, "a worker sent %u gradient norms for stage %d, which has %d parameters", m->n, s,
                    s >= 0 && s < jb->S ? jb->sparams[s] : -1);
        return;
    }
    if (m->step != jb->clip_step || jb->clip_got == 0) {
        jb->clip_step = m->step;
        jb->clip_got = 0;
    }
    const struct wf_graph *g = &jb->part.g;
    for (int i = 0; i < g->n_params; i++)
        if (jb->pstage[i] == s) jb->clip_vals[i] = m->vals[jb->pidx[i]];
    if (++jb->clip_got < jb->S) return;
    double ss = 0;
    for (int i = 0; i < g->n_params; i++)
        ss += jb->clip_vals[i];
    jb->clip_got = 0;
    struct wf_msg r = {.type = WF_M_CLIP, .step = m->step, .value = ss};
    for (int w = 0; w < jb->n; w++)
        if (co->nodes[jb->node[w]].used) wf_msg_send(&co->nodes[jb->node[w]].c, &r, CTL_TIMEOUT);
}

static void write_trace(struct coord *co, struct job *jb, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        co_emit(co, jb, 0, "cannot write the trace to %s", path);
        return;
    }
    static const char *names[TR_NKINDS] = {"F", "B", "send", "recv", "allreduce", "optimizer", "eval", "xmit"};
    fprintf(f, "{\"traceEvents\":[\n");
    int first = 1;
    double t0 = jb->t_start;
    for (int w = 0; w < jb->n; w++) {
        fprintf(f,
                "%s{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"worker %d: stage %d replica "
                "%d\"}}",
                first ? "" : ",\n", w, w, w / jb->D, w % jb->D);
        first = 0;
        for (long i = 0; i < jb->ntr[w]; i++) {
            const struct wf_trace_ev *e = &jb->tr[w][i];
            int k = e->kind < TR_NKINDS ? e->kind : TR_EVAL;
            char nm[64];
            if (e->mb >= 0)
                snprintf(nm, sizeof nm, "%s%d", names[k], e->mb);
            else
                snprintf(nm, sizeof nm, "%s", names[k]);
            fprintf(f,
                    ",\n{\"name\":\"%s\",\"cat\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                    "\"args\":{\"step\":%lld,\"mb\":%d}}",
                    nm, names[k], w,
                    k == TR_XMIT                   ? 2
                    : k == TR_SEND || k == TR_RECV ? 1
                                                   : 0,
                    (e->t0 - t0) * 1e6, (e->t1 - e->t0) * 1e6, (long long)e->step, e->mb);
        }
    }
    fprintf(f, "\n]}\n");
    fclose(f);
}

/* ---- the loop ---- */

static void handle(struct coord *co, int ni, struct wf_msg *m) {
    struct node *nd = &co->nodes[ni];
    struct job *jb = &co->job;
    nd->last_seen = wf_now();
    int w = nd->slot;
    char d[160];
    switch (m->type) {
    case WF_M_HEARTBEAT:
        nd->step = m->step;
        snprintf(nd->activity, sizeof nd->activity, "%s", m->text ? m->text : "");
        break;
    case WF_M_COMPILE_DONE:
        if (w < 0 || jb->state != J_COMPILING) break;
        WF_LOGI("coord", "%s compiled in %.3f s: %llu nodes, %.1f MiB planned", co_node_desc(co, jb, ni, d, sizeof d),
                m->seconds, (unsigned long long)m->nodes, (double)m->bytes / 1048576.0);
        co_emit(co, jb, 0, "  %s compiled its sub-graph in %.3f s (%llu nodes, %.1f MiB planned)",
                co_node_desc(co, jb, ni, d, sizeof d), m->seconds, (unsigned long long)m->nodes,
                (double)m->bytes / 1048576.0);
        if (++jb->compiled == jb->n) {
            struct wf_msg go = {.type = WF_M_START};
            for (int k = 0; k < jb->n; k++)
                wf_msg_send(&co->nodes[jb->node[k]].c, &go, CTL_TIMEOUT);
            jb->state = J_RUNNING;
            double now = wf_now();
            if (jb->t_start == 0) {
                jb->t_start = now;
                jl_rec(co, 0, "start %.3f", co_wall());
            }
            jb->t_set = now;
            if (jb->version > 1)
                co_emit(co, jb, 0, "job %d: node set %u compiled in %.2f s; training goes on from step %ld", jb->id,
                        jb->version, now - jb->t_assign, jb->steps_done);
            else
                co_emit(co, jb, 0, "job %d: every part compiled in %.2f s; training starts (coordinator compiles: %ld)",
                        jb->id, now - jb->t_assign, n_compiles);
        }
        break;
    case WF_M_COMPILE_FAIL:
        co_job_fail(jb, 2, "%s failed to compile its sub-graph: %s", co_node_desc(co, jb, ni, d, sizeof d),
                    m->text ? m->text : "");
        break;
    case WF_M_FAIL:
        if (w < 0) break; /* not in the running set: a failure of a set it has left */
        co_job_fail(jb, 1, "%s failed: %s", co_node_desc(co, jb, ni, d, sizeof d), m->text ? m->text : "");
        break;
    /* results of the set that is running, or stopping (a stopping set's steps are as good) */
    case WF_M_STEP_LOSS:
        if (w >= 0 && (jb->state == J_RUNNING || jb->state == J_RECOVERING)) on_loss(co, jb, m);
        break;
    case WF_M_EVAL:
        if (w >= 0 && (jb->state == J_RUNNING || jb->state == J_RECOVERING)) on_eval(co, jb, m);
        break;
    case WF_M_STATE:
        if (w >= 0 && (jb->state == J_RUNNING || jb->state == J_RECOVERING)) on_state(co, jb, w, m);
        break;
    case WF_M_CLIP_PART:
        if (w >= 0 && jb->state == J_RUNNING) on_clip_part(co, jb, m);
        break;
    case WF_M_STOPPED: el_on_stopped(co, jb, ni, m); break;
    case WF_M_SNAP: el_on_snap(co, jb, ni, m); break;
    case WF_M_TRACE:
        if (w >= 0 && !jb->tr[w] && m->nbytes % sizeof(struct wf_trace_ev) == 0) {
            jb->tr[w] = wf_malloc(m->nbytes + 1);
            if (jb->tr[w]) {
                memcpy(jb->tr[w], m->data, m->nbytes);
                jb->ntr[w] = (long)(m->nbytes / sizeof(struct wf_trace_ev));
            }
        }
        break;
    case WF_M_DONE:
        if (w < 0 || jb->state != J_RUNNING) break;
        jb->wstats[w].compute = m->compute_s;
        jb->wstats[w].comm = m->comm_s;
        jb->wstats[w].idle = m->idle_s;
        jb->wstats[w].live = (long)m->max_live;
        jb->wstats[w].steps = m->step;
        jb->wstats[w].finished = 1; /* it may exit now: that is not a failure */
        if (++jb->done == jb->n && jb->state == J_RUNNING) jb->state = J_DONE;
        break;
    default:
        WF_LOGW("coord", "%s sent an unexpected %s", co_node_desc(co, jb, ni, d, sizeof d), wf_msg_name(m->type));
        break;
    }
}

static void status_text(struct coord *co, char *buf, size_t n) {
    size_t k = 0;
    struct job *jb = &co->job;
    int used = 0;
    for (int i = 0; i < MAX_NODES; i++)
        used += co->nodes[i].used;
    wf_appendf(buf, n, &k, "coordinator: %d workers registered, %d idle\n", used, co_idle_nodes(co));
    for (int i = 0; i < MAX_NODES; i++) {
        const struct node *nd = &co->nodes[i];
        if (!nd->used) continue;
        wf_appendf(buf, n, &k, "  node %d  %s:%d pid %d  %d cores  %s  step %lld  %s\n", nd->id, nd->host, nd->port,
                   nd->pid, nd->cores, nd->slot >= 0 ? "busy" : "idle", (long long)nd->step, nd->activity);
    }
    const struct wf_gate_stats *gs = &co->gate.st;
    if (gs->refused + gs->expired + gs->evicted)
        wf_appendf(buf, n, &k,
                   "unauthenticated connections: %llu accepted, %llu refused, %llu timed out, %llu dropped as the "
                   "oldest waiting; %d waiting now\n  latest: %s\n",
                   (unsigned long long)gs->accepted, (unsigned long long)gs->refused, (unsigned long long)gs->expired,
                   (unsigned long long)gs->evicted, co->gate.n, co->gate.last_refusal);
    if (jb->state) el_status(co, jb, buf + k, n - k);
}

/* Connections the gate turned away, told at most every 10 s (a flood is one line, not thousands). */
static void gate_report(struct coord *co, double now) {
    const struct wf_gate_stats *gs = &co->gate.st;
    uint64_t away = gs->refused + gs->expired + gs->evicted;
    if (away == co->gate_told || now - co->gate_told_at < 10.0) return;
    fprintf(stderr, "weft coordinator: turned away %llu unauthenticated connection%s (latest: %s)\n",
            (unsigned long long)(away - co->gate_told), away - co->gate_told == 1 ? "" : "s", co->gate.last_refusal);
    co->gate_told = away;
    co->gate_told_at = now;
}

/* A connection that passed the gate: a worker registering or a client. */
static void on_peer(void *arg, struct wf_conn *cp, struct wf_msg *hp) {
    struct coord *co = arg;
    struct wf_conn c = *cp;
    struct wf_msg h = *hp;
    if (h.role == WF_ROLE_WORKER) {
        int i = 0;
        while (i < MAX_NODES && co->nodes[i].used)
            i++;
        if (i == MAX_NODES) {
            struct wf_msg no = {.type = WF_M_REFUSE, .text = (char *)"too many workers"};
            wf_msg_send(&c, &no, 1.0);
            wf_conn_close(&c);
            wf_msg_free(&h);
            return;
        }
        struct node *nd = &co->nodes[i];
        memset(nd, 0, sizeof *nd);
        nd->c = c;
        nd->used = 1;
        nd->id = co->next_id++;
        nd->slot = -1;
        nd->port = (int)h.port;
        nd->pid = (int)h.pid;
        nd->cores = (int)h.cores;
        nd->last_seen = nd->t_join = wf_now();
        snprintf(nd->activity, sizeof nd->activity, "idle");
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        snprintf(nd->host, sizeof nd->host, "127.0.0.1");
        if (getpeername(c.fd, (struct sockaddr *)&ss, &len) == 0) {
            void *a = ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                               : (void *)&((struct sockaddr_in *)&ss)->sin_addr;
            inet_ntop(ss.ss_family, a, nd->host, sizeof nd->host);
        }
        wf_conn_set_name(&nd->c, "worker node %d (pid %d)", nd->id, nd->pid);
        struct wf_msg wel = {.type = WF_M_WELCOME, .id = (uint64_t)nd->id};
        if (wf_msg_send(&nd->c, &wel, CTL_TIMEOUT) < 0) {
            co_drop_node(co, i);
        } else {
            WF_LOGI("coord", "worker node %d %s: %s pid %d, %d cores", nd->id,
                    h.link == 1 ? "registered again" : "registered", nd->host, nd->pid, nd->cores);
            if (h.link == 1 && co->job.takeover) el_rejoined(co, &co->job, i);
        }
    } else if (h.role == WF_ROLE_CLIENT) {
        int i = 0;
        while (i < MAX_CLIENTS && co->clients[i].used)
            i++;
        if (i == MAX_CLIENTS) {
            wf_conn_close(&c);
        } else {
            co->clients[i].c = c;
            co->clients[i].used = 1;
            wf_conn_set_name(&co->clients[i].c, "client %d", i);
            struct wf_msg wel = {.type = WF_M_WELCOME, .id = (uint64_t)i};
            wf_msg_send(&co->clients[i].c, &wel, CTL_TIMEOUT);
        }
    } else {
        wf_conn_close(&c);
    }
    wf_msg_free(&h);
}

static void client_msg(struct coord *co, int ci, struct wf_msg *m) {
    struct client *cl = &co->clients[ci];
    if (m->type == WF_M_STATUS) {
        static char buf[1 << 16];
        status_text(co, buf, sizeof buf);
        struct wf_msg r = {.type = WF_M_STATUS_REPLY, .text = buf};
        wf_msg_send(&cl->c, &r, 5.0);
    } else if (m->type == WF_M_SUBMIT && m->link == 1) { /* a client watching again, after losing the coordinator */
        struct job *jb = &co->job;
        int same = jb->state != J_NONE && jb->opts_path && m->text && !strcmp(jb->opts_path, m->text);
        if (!same) {
            char text[4300];
            snprintf(text, sizeof text, "the coordinator has no job %s", m->text ? m->text : "");
            struct wf_msg r = {.type = WF_M_JOB_END, .status = WF_ERR_NOTFOUND, .text = text};
            wf_msg_send(&cl->c, &r, 5.0);
        } else if (jb->state == J_DONE || jb->state == J_FAILED) {
            struct wf_msg r = {.type = WF_M_JOB_END,
                               .status = jb->state == J_DONE ? WF_OK : WF_ERR_PEER,
                               .text = jb->state == J_DONE ? (char *)"done" : jb->fail_msg};
            wf_msg_send(&cl->c, &r, 5.0);
        } else {
            jb->client = ci;
            co_emit(co, jb, 0, "job %d: watching again (step %ld/%ld)", jb->id, jb->steps_done, jb->total);
        }
    } else if (m->type == WF_M_SUBMIT) {
        struct job *jb = &co->job;
        if (jb->state == J_WAITING || jb->state == J_COMPILING || jb->state == J_RUNNING || jb->state == J_RECOVERING ||
            jb->state == J_HOLD) {
            struct wf_msg r = {
                .type = WF_M_JOB_END, .status = WF_ERR_INVALID, .text = (char *)"a job is already running"};
            wf_msg_send(&cl->c, &r, 5.0);
            return;
        }
        co_job_free(jb);
        struct wf_run_opts o = {.job_path = m->text,
                                .workers = (int)m->workers,
                                .pp = (int)m->pp,
                                .dp = (int)m->dp,
                                .micro_batches = (int)m->micro_batches,
                                .schedule = (int)m->schedule - 1,
                                .threads = (int)m->threads,
                                .nodes_min = (int)m->nodes_min,
                                .nodes_max = (int)m->nodes_max,
                                .max_recoveries = (int)m->max_recoveries,
                                .snapshot_every = (int)m->snapshot_every,
                                .settle_s = m->settle_s};
        if (m->hb_timeout_s > 0) co->hb_timeout = m->hb_timeout_s;
        jb->client = ci;
        jb->id = ++co->next_job;
        int rc = co_job_setup(jb, &o);
        if (rc < 0) {
            struct wf_msg r = {.type = WF_M_JOB_END, .status = rc, .text = (char *)wf_errmsg()};
            wf_msg_send(&cl->c, &r, 5.0);
            co_job_free(jb);
            return;
        }
        if ((rc = jl_begin(co, jb)) < 0) {
            struct wf_msg r = {.type = WF_M_JOB_END, .status = rc, .text = (char *)wf_errmsg()};
            wf_msg_send(&cl->c, &r, 5.0);
            co_job_free(jb);
            return;
        }
        co_emit(co, jb, 0, "job %d accepted: %s", jb->id, m->text);
    }
}

/* Ends the job: tells its workers, prints the summary. Returns its status. */
static int job_finish(struct coord *co, struct job *jb) {
    int ok = jb->state == J_DONE;
    for (int w = 0; w < jb->n; w++) {
        int ni = jb->node[w];
        if (!co_member_ok(co, jb, w)) continue;
        if (!ok) {
            struct wf_msg ab = {.type = WF_M_ABORT, .text = jb->fail_msg};
            wf_msg_send(&co->nodes[ni].c, &ab, 1.0);
            co_drop_node(co, ni); /* an aborted worker exits */
        } else {
            co->nodes[ni].slot = -1;
        }
    }
    int status = ok ? WF_OK : WF_ERR_PEER;
    if (jb->state != J_WAITING) el_write_samples(jb);
    jl_end(co, jb, ok);
    if (jb->elastic) { /* the history of node sets and recoveries, as weft status shows it */
        static char hist[1 << 16];
        el_status(co, jb, hist, sizeof hist);
        for (char *line = strtok(hist, "\n"); line; line = strtok(NULL, "\n"))
            if (strstr(line, "set ") || strstr(line, "change ")) co_emit(co, jb, 0, "%s", line);
    }
    if (ok) {
        double wall = wf_now() - jb->t_start;
        char accs[48] = "";
        if (jb->test_acc == jb->test_acc) snprintf(accs, sizeof accs, "; test accuracy %.2f%%", 100 * jb->test_acc);
        co_emit(co, jb, 0, "job %d done: %ld steps in %.1f s (%.0f samples/s)%s; checkpoint %s", jb->id, jb->total,
                wall, (double)jb->total * jb->job.batch / (wall > 0 ? wall : 1), accs, jb->ckpt_path);
        for (int w = 0; w < jb->n; w++) {
            double c = jb->wstats[w].compute, m = jb->wstats[w].comm, i = jb->wstats[w].idle;
            co_emit(co, jb, 0,
                    "  worker %d (stage %d, replica %d): compute %.2f s, communication %.2f s, waiting %.2f s, other "
                    "%.2f s; at most %ld micro-batches of activations alive",
                    w, w / jb->D, w % jb->D, c, m, i, wall - c - m - i > 0 ? wall - c - m - i : 0, jb->wstats[w].live);
        }
        if (co->o->run && co->o->run->trace) write_trace(co, jb, co->o->run->trace);
        fprintf(jb->metrics, "{\"event\":\"workers\",\"wall_s\":%.4f,\"workers\":[", wall);
        for (int w = 0; w < jb->n; w++)
            fprintf(jb->metrics,
                    "%s{\"worker\":%d,\"stage\":%d,\"replica\":%d,\"compute_s\":%.4f,\"comm_s\":%.4f,"
                    "\"wait_s\":%.4f,\"max_live\":%ld}",
                    w ? "," : "", w, w / jb->D, w % jb->D, jb->wstats[w].compute, jb->wstats[w].comm,
                    jb->wstats[w].idle, jb->wstats[w].live);
        fprintf(jb->metrics, "]}\n");
        fflush(jb->metrics);
    } else {
        wf_error(WF_ERR_PEER, "job %d failed: %s", jb->id, jb->fail_msg);
        co_emit(co, jb, 0, "job %d failed: %s", jb->id, jb->fail_msg);
    }
    if (jb->client >= 0 && co->clients[jb->client].used) {
        struct wf_msg r = {.type = WF_M_JOB_END, .status = status, .text = ok ? (char *)"done" : jb->fail_msg};
        wf_msg_send(&co->clients[jb->client].c, &r, 5.0);
    }
    jb->state = ok ? J_DONE : J_FAILED;
    return status;
}

/* weft run: OUT/coordinator (HOST:PORT) and OUT/weft-token (mode 0600), so
 * that `weft status` and more `weft worker`s can reach this run; removed at
 * the end. */
static void contact_files(struct coord *co, const struct job *jb, int remove) {
    char path[4200];
    snprintf(path, sizeof path, "%s/coordinator", jb->job.out);
    char tpath[4200];
    snprintf(tpath, sizeof tpath, "%s/weft-token", jb->job.out);
    if (remove) {
        unlink(path);
        unlink(tpath);
        return;
    }
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    if (getsockname(co->lfd, (struct sockaddr *)&sa, &len) < 0) return;
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "127.0.0.1:%d\n", ntohs(sa.sin_port));
        fclose(f);
    }
    int fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) return;
    char hex[2 * sizeof co->o->token->key + 2];
    for (size_t i = 0; i < co->o->token->len; i++)
        snprintf(hex + 2 * i, 3, "%02x", co->o->token->key[i]);
    size_t n = 2 * co->o->token->len;
    hex[n++] = '\n';
    if (write(fd, hex, n) != (ssize_t)n) WF_LOGW("coord", "%s: could not write the token", tpath);
    close(fd);
}

int wf_coordinator(const struct wf_coord_opts *o) {
    signal(SIGPIPE, SIG_IGN);
    struct coord *co = wf_calloc(1, sizeof *co);
    if (!co) return wf_error(WF_ERR_NOMEM, "out of memory");
    co->o = o;
    co->lfd = o->listen_fd;
    if (wf_gate_init(&co->gate, co->lfd, o->token, WF_GATE_CAP, 5.0) < 0) {
        wf_free(co);
        return WF_ERR_NOMEM;
    }
    co->hb_timeout = o->run && o->run->heartbeat_timeout_s > 0 ? o->run->heartbeat_timeout_s : 5.0;
    struct job *jb = &co->job;
    int rc = WF_OK, finished = 0;
    if (o->run) {
        jb->client = -1;
        jb->quiet = o->run->quiet;
        jb->id = ++co->next_job;
        if ((rc = co_job_setup(jb, o->run)) < 0) {
            co_job_free(jb);
            wf_gate_free(&co->gate);
            wf_free(co);
            return rc;
        }
        contact_files(co, jb, 0);
    } else if (o->journal && (rc = jl_takeover(co, o->journal)) < 0) {
        co_job_free(jb);
        wf_gate_free(&co->gate);
        wf_free(co);
        return rc;
    }
    rc = WF_OK;
    double wait_report = wf_now();
    while (!finished) {
        struct pollfd pf[1 + WF_GATE_CAP + MAX_NODES + MAX_CLIENTS];
        int who[1 + WF_GATE_CAP + MAX_NODES + MAX_CLIENTS];
        int ng = wf_gate_pollfds(&co->gate, pf), np = ng;
        for (int i = 0; i < MAX_NODES; i++)
            if (co->nodes[i].used) {
                pf[np] = (struct pollfd){.fd = co->nodes[i].c.fd, .events = POLLIN};
                who[np++] = i;
            }
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (co->clients[i].used) {
                pf[np] = (struct pollfd){.fd = co->clients[i].c.fd, .events = POLLIN};
                who[np++] = MAX_NODES + i;
            }
        int r = poll(pf, (nfds_t)np, 100);
        double t_loop = wf_now();
        if (r < 0 && errno != EINTR) {
            rc = wf_error(WF_ERR_IO, "poll: %s", strerror(errno));
            break;
        }
        /* authenticated traffic first; the gate's work never waits */
        for (int k = ng; r > 0 && k < np; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            struct wf_msg m;
            if (who[k] < MAX_NODES) {
                int ni = who[k];
                if (!co->nodes[ni].used) continue;
                /* a frame is read as far as it has come and finished at a later POLLIN: no worker holds the loop */
                int rrc = wf_msg_recv(&co->nodes[ni].c, &m, 0.0);
                if (rrc == WF_ERR_TIMEOUT && co->nodes[ni].c.fd >= 0) {
                    co->nodes[ni].last_seen = wf_now(); /* bytes came: alive */
                    continue;
                }
                if (rrc < 0) {
                    char d[160], cause[512];
                    int w = co->nodes[ni].slot;
                    snprintf(cause, sizeof cause, "%s died (connection lost) while %s at step %lld",
                             co_node_desc(co, jb, ni, d, sizeof d), co->nodes[ni].activity,
                             (long long)co->nodes[ni].step);
                    if (jb->elastic)
                        el_member_lost(co, jb, ni, cause);
                    else if (w >= 0 && !(jb->wstats && jb->wstats[w].finished))
                        co_job_fail(jb, 2, "%s", cause);
                    co_drop_node(co, ni);
                    continue;
                }
                handle(co, ni, &m);
                wf_msg_free(&m);
            } else {
                int ci = who[k] - MAX_NODES;
                int rrc = wf_msg_recv(&co->clients[ci].c, &m, 0.0);
                if (rrc == WF_ERR_TIMEOUT && co->clients[ci].c.fd >= 0) continue;
                if (rrc < 0) {
                    wf_conn_close(&co->clients[ci].c);
                    co->clients[ci].used = 0;
                    if (jb->client == ci) jb->client = -1;
                    continue;
                }
                client_msg(co, ci, &m);
                wf_msg_free(&m);
            }
        }
        double now = wf_now();
        wf_gate_service(&co->gate, pf, now, on_peer, co); /* new connections, handshakes, their deadlines */
        gate_report(co, now);
        /* heartbeats; not after an iteration that blocked (a slow send): what came meanwhile is unread */
        for (int i = 0; i < MAX_NODES && now - t_loop < 0.5; i++) {
            struct node *nd = &co->nodes[i];
            if (!nd->used || now - nd->last_seen < co->hb_timeout) continue;
            char d[160], cause[512];
            snprintf(cause, sizeof cause, "%s stopped answering (no heartbeat for %.1f s) while %s at step %lld",
                     co_node_desc(co, jb, i, d, sizeof d), now - nd->last_seen, nd->activity, (long long)nd->step);
            if (jb->elastic)
                el_member_lost(co, jb, i, cause);
            else if (nd->slot >= 0 && !jb->wstats[nd->slot].finished)
                co_job_fail(jb, 2, "%s", cause);
            WF_LOGW("coord", "dropping worker node %d: no heartbeat for %.1f s", nd->id, now - nd->last_seen);
            co_drop_node(co, i);
        }
        if (wf_coord_interrupted) co_job_fail(jb, 3, "interrupted");
        if (jb->elastic) {
            el_tick(co, jb, now);
        } else if (jb->state == J_WAITING) {
            int nodes[MAX_NODES];
            if (co_idle_nodes(co) >= jb->n) {
                co_pick_idle(co, jb->n, nodes);
                co_assign(co, jb, nodes);
            } else if (now - wait_report > 5.0) {
                co_emit(co, jb, 0, "job %d: waiting for workers (%d of %d registered)", jb->id, co_idle_nodes(co),
                        jb->n);
                wait_report = now;
            }
        }
        if (jb->fail_at > 0 && (now - jb->fail_at > 1.0 || jb->fail_prio >= 3)) {
            rc = job_finish(co, jb);
            if (o->run) finished = 1;
            jb->fail_at = 0;
        } else if (jb->state == J_DONE && jb->fail_at == 0 && !jb->reported) {
            rc = job_finish(co, jb);
            jb->reported = 1;
            if (o->run) finished = 1;
        }
        if (!o->run && wf_coord_interrupted) finished = 1;
        if (o->run && jb->state == J_FAILED) finished = 1;
    }
    /* tell every worker still connected to go */
    struct wf_msg bye = {.type = WF_M_SHUTDOWN};
    for (int i = 0; i < MAX_NODES; i++)
        if (co->nodes[i].used) {
            wf_msg_send(&co->nodes[i].c, &bye, 1.0);
            co_drop_node(co, i);
        }
    for (int i = 0; i < MAX_CLIENTS; i++)
        if (co->clients[i].used) wf_conn_close(&co->clients[i].c);
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", wf_errmsg());
    if (o->run) contact_files(co, jb, 1);
    if (co->journal) fclose(co->journal);
    wf_gate_free(&co->gate);
    wf_free(co->jl_buf);
    co_job_free(jb);
    wf_free(co);
    if (rc < 0) wf_error(rc, "%s", keep);
    return rc;
}
