/*
 * cluster layer: the node controller of an elastic job (`--nodes MIN:MAX`).
 *
 * The coordinator sizes each node set from the idle registered workers and
 * numbers it (its version). When a member dies, hangs or a worker joins:
 *
 *   STOP      every member leaves the set: at once after a failure, at an
 *             agreed step boundary when workers joined. Survivor processes
 *             stay; each answers STOPPED with the snapshots it holds: its own
 *             stage's state at its last steps, and a copy of a neighbour
 *             stage's state every snapshot_every steps (relayed through here
 *             as SNAP while the set ran).
 *   SELECT    the latest step T whose state is whole somewhere: a snapshot of
 *             every stage at T among the survivors, the state kept from the
 *             last recovery, the checkpoint on disk, or the job's start.
 *   FETCH     one holder per stage sends its snapshot of T; the coordinator
 *             puts the whole model's state W together.
 *   PLAN      a layout for the workers there are (fewer replicas, or fewer
 *             stages whose split points are a subset of the job's), each
 *             member gets ASSIGN and RESTORE (its stage's slice of W), they
 *             compile, START, and train from step T. Steps T.. that were done
 *             before are done again; as every kernel, reduction and data
 *             order is deterministic, they give the same bytes (checked
 *             against each step's logged loss).
 *
 * Below MIN workers the job holds; a new worker must have been registered
 * for `settle` seconds before the set grows; more than max_rec failures in
 * an hour fail the job with its history.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft/core.h"

#include "coord_int.h"

const char *el_src_name(int src) {
    switch (src) {
    case SRC_DISK: return "the checkpoint on disk";
    case SRC_PEERS: return "peer copies";
    case SRC_RETAINED: return "the state kept from the last change";
    }
    return "the job's start";
}

static const char *src_key(int src) {
    static const char *k[] = {"start", "checkpoint", "peers", "kept"};
    return k[src];
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int el_setup(struct job *jb) {
    jb->ckpt_step = -1;
    jb->ch_open = -1;
    size_t steps = (size_t)jb->total + 1;
    jb->ids = wf_calloc(steps * (size_t)jb->job.batch, sizeof(uint32_t));
    jb->ids_set = wf_calloc(steps, sizeof(uint32_t));
    jb->loss_all = wf_calloc(steps, sizeof(double));
    jb->step_t = wf_calloc(2 * steps, sizeof(double));
    if (!jb->ids || !jb->ids_set || !jb->loss_all || !jb->step_t) return wf_error(WF_ERR_NOMEM, "out of memory");
    if (!jb->elastic) return WF_OK;
    const struct wf_graph *g = &jb->part.g; /* every plan has the same logical graph */
    jb->goff = wf_calloc((size_t)g->n_params + 1, sizeof(int64_t));
    jb->fetch_from = wf_calloc(MAX_NODES, sizeof(int));
    jb->fetch_got = wf_calloc(MAX_NODES, 1);
    if (!jb->goff || !jb->fetch_from || !jb->fetch_got) return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < g->n_params; i++) {
        jb->goff[i] = jb->gfloats;
        jb->gfloats += g->v[g->params[i]].numel;
    }
    jb->W = wf_malloc(sizeof(float) * (size_t)(jb->gfloats * (1 + jb->slots) + 1));
    if (!jb->W) return wf_error(WF_ERR_NOMEM, "out of memory for the model's state");
    return WF_OK;
}

void el_free(struct job *jb) {
    wf_free(jb->ids);
    wf_free(jb->ids_set);
    wf_free(jb->loss_all);
    wf_free(jb->step_t);
    wf_free(jb->goff);
    wf_free(jb->fetch_from);
    wf_free(jb->fetch_got);
    wf_free(jb->W);
    wf_free(jb->inv);
    wf_free(jb->resume0);
}

/* The layout for n workers: the most workers used, then the most stages
 * (at most the job's), with at most one replica per micro-batch. */
static int choose_layout(const struct job *jb, int n, int *S, int *D) {
    if (n > jb->nmax) n = jb->nmax;
    int best = 0;
    *S = *D = 0;
    for (int s = 1; s <= jb->S0 && s <= n; s++) {
        int d = WF_MIN(n / s, jb->K);
        if (d >= 1 && (s * d > best || (s * d == best && s > *S))) {
            best = s * d;
            *S = s;
            *D = d;
        }
    }
    return best;
}

static struct change *open_change(struct job *jb) {
    return jb->ch_open >= 0 ? &jb->ch[jb->ch_open % MAX_HISTORY] : NULL;
}

static void el_plan(struct coord *co, struct job *jb);
static void el_select(struct coord *co, struct job *jb);

/* Every member has left the set (or is gone). */
static void stopped_all(struct coord *co, struct job *jb) {
    if (jb->takeover) return; /* el_tick goes on once the workers are back */
    struct change *c = open_change(jb);
    if (c) c->high_water = jb->logged;
    el_select(co, jb);
}

static void inv_remove(struct job *jb, int ni) {
    int k = 0;
    for (int i = 0; i < jb->ninv; i++)
        if (jb->inv[i].ni != ni) jb->inv[k++] = jb->inv[i];
    jb->ninv = k;
}

/* The node set changes: a failure (stop now) or workers joining (stop after
 * step stop_at). */
static void el_begin(struct coord *co, struct job *jb, int failure, int64_t stop_at, const char *cause) {
    double now = wf_now();
    if (failure) {
        int k = 0;
        for (int i = 0; i < jb->nfail_times; i++)
            if (now - jb->fail_times[i] < 3600) jb->fail_times[k++] = jb->fail_times[i];
        jb->nfail_times = k;
        if (k >= jb->max_rec || k >= MAX_HISTORY) {
            char hist[8192];
            size_t h = 0;
            for (int i = WF_MAX(0, jb->nch - 8); i < jb->nch; i++)
                wf_appendf(hist, sizeof hist, &h, "; change %d: %s", i + 1, jb->ch[i % MAX_HISTORY].cause);
            co_job_fail(jb, 3, "%s, and that is failure %d within an hour (the cap is %d)%s", cause, k + 1, jb->max_rec,
                        h ? hist : "");
            return;
        }
        jb->fail_times[jb->nfail_times++] = now;
        jl_rec(co, 0, "failure %.3f", co_wall());
    }
    struct change *c = open_change(jb);
    if (c && !c->closed && jb->state != J_RUNNING) { /* during a change: one more cause for it */
        size_t k = strlen(c->cause);
        wf_appendf(c->cause, sizeof c->cause, &k, "; then %s", cause);
        c->failure |= failure;
    } else {
        jb->ch_open = jb->nch++;
        c = open_change(jb);
        memset(c, 0, sizeof *c);
        c->failure = failure;
        snprintf(c->cause, sizeof c->cause, "%s", cause);
        c->from_version = jb->version;
        c->t0 = now;
        c->wall0 = co_wall();
    }
    jl_change(co, jb, jb->ch_open);
    co_emit(co, jb, 0, "job %d: %s; %s", jb->id, cause,
            failure ? "the survivors stop and the node set is re-planned" : "the set grows at a step boundary");
    jb->fail_at = 0; /* what the survivors report about the lost peer is this failure, not another */
    jb->fail_prio = 0;
    jb->ninv = 0;
    memset(jb->stopping, 0, sizeof jb->stopping);
    int any = 0;
    for (int w = 0; w < jb->n; w++) {
        if (!co_member_ok(co, jb, w)) continue;
        int ni = jb->node[w];
        struct wf_msg m = {.type = WF_M_STOP, .version = jb->version, .step = stop_at};
        if (wf_msg_send(&co->nodes[ni].c, &m, 2.0) < 0) {
            co->nodes[ni].slot = -1;
            co_drop_node(co, ni);
            continue;
        }
        jb->stopping[ni] = 1;
        any = 1;
    }
    jb->state = J_RECOVERING;
    jb->rstate = R_STOPPING;
    if (!any) stopped_all(co, jb);
}

void el_member_lost(struct coord *co, struct job *jb, int ni, const char *cause) {
    if (!jb->elastic) return;
    int w = co->nodes[ni].slot;
    co->nodes[ni].slot = -1;
    inv_remove(jb, ni);
    if (w >= 0 && jb->state == J_RUNNING && jb->wstats[w].finished) return; /* done with the job: it may go */
    if (jb->state == J_RUNNING || jb->state == J_COMPILING) {
        if (w >= 0) el_begin(co, jb, 1, -1, cause);
        return;
    }
    if (jb->state != J_RECOVERING) return;
    if (jb->rstate == R_STOPPING && jb->stopping[ni]) {
        jb->stopping[ni] = 0;
        struct change *c = open_change(jb);
        if (c) {
            size_t k = strlen(c->cause);
            wf_appendf(c->cause, sizeof c->cause, &k, "; then %s", cause);
            c->failure = 1;
        }
        int left = 0;
        for (int i = 0; i < MAX_NODES; i++)
            left += jb->stopping[i];
        if (!left) stopped_all(co, jb);
    } else if (jb->rstate == R_FETCHING) {
        for (int s = 0; s < jb->S; s++)
            if (jb->fetch_from[s] == ni && !jb->fetch_got[s]) {
                el_select(co, jb); /* another holder, or another source */
                return;
            }
    }
}

void el_on_stopped(struct coord *co, struct job *jb, int ni, const struct wf_msg *m) {
    if (jb->state != J_RECOVERING || jb->rstate != R_STOPPING || !jb->stopping[ni]) return;
    jb->stopping[ni] = 0;
    co->nodes[ni].slot = -1;
    if (m->version == jb->version)
        for (uint32_t i = 0; i < m->n_inv; i++) {
            if (m->inv[2 * i] < 0 || m->inv[2 * i] >= jb->S) continue;
            if (jb->ninv == jb->invcap) {
                int cap = jb->invcap ? 2 * jb->invcap : 64;
                struct inv_ent *p = wf_realloc(jb->inv, sizeof *p * (size_t)cap);
                if (!p) break;
                jb->inv = p;
                jb->invcap = cap;
            }
            jb->inv[jb->ninv++] = (struct inv_ent){.ni = ni, .stage = (int)m->inv[2 * i], .step = m->inv[2 * i + 1]};
        }
    for (int i = 0; i < MAX_NODES; i++)
        if (jb->stopping[i]) return;
    stopped_all(co, jb);
}

/* The latest step, at most `limit`, at which a snapshot of every stage survives; or -1. */
static int64_t peers_step(const struct coord *co, const struct job *jb, int64_t limit) {
    int64_t best = -1;
    for (int i = 0; i < jb->ninv; i++) {
        int64_t t = jb->inv[i].step;
        if (t <= best || t > limit) continue;
        int whole = 1;
        for (int s = 0; s < jb->S && whole; s++) {
            int found = 0;
            for (int k = 0; k < jb->ninv && !found; k++)
                found = jb->inv[k].stage == s && jb->inv[k].step == t && co->nodes[jb->inv[k].ni].used;
            whole = found;
        }
        if (whole) best = t;
    }
    return best;
}

static void el_select(struct coord *co, struct job *jb) {
    for (;;) {
        /* Not past the last step whose every replica's loss (and sample ids) came in: a
         * step done by some replicas but reported by others only would be lost. */
        int64_t limit = jb->logged;
        int src = SRC_INITIAL;
        int64_t best = jb->start_step;
        if (jb->ckpt_step >= best && jb->ckpt_step <= limit) {
            src = SRC_DISK;
            best = jb->ckpt_step;
        }
        int64_t tp = peers_step(co, jb, limit);
        if (tp >= 0 && tp >= best) {
            src = SRC_PEERS;
            best = tp;
        }
        if (jb->have_W && jb->W_step >= best && jb->W_step <= limit) {
            src = SRC_RETAINED;
            best = jb->W_step;
        }
        jb->src = src;
        if (src != SRC_PEERS) {
            if (src == SRC_DISK || src == SRC_INITIAL) jb->have_W = 0;
            el_plan(co, jb);
            return;
        }
        /* fetch one snapshot of every stage at tp */
        jb->have_W = 0; /* W is being replaced */
        jb->fetch_step = tp;
        jb->rstate = R_FETCHING;
        int ok = 1;
        for (int s = 0; s < jb->S && ok; s++) {
            jb->fetch_got[s] = 0;
            jb->fetch_from[s] = -1;
            for (int k = 0; k < jb->ninv; k++)
                if (jb->inv[k].stage == s && jb->inv[k].step == tp && co->nodes[jb->inv[k].ni].used) {
                    jb->fetch_from[s] = jb->inv[k].ni;
                    break;
                }
            int ni = jb->fetch_from[s];
            struct wf_msg f = {.type = WF_M_FETCH, .version = jb->version, .stage = (uint32_t)s, .step = tp};
            if (wf_msg_send(&co->nodes[ni].c, &f, 2.0) < 0) {
                inv_remove(jb, ni);
                co_drop_node(co, ni);
                ok = 0;
            }
        }
        if (ok) return;
    }
}

void el_on_snap(struct coord *co, struct job *jb, int ni, const struct wf_msg *m) {
    if (!jb->elastic) return;
    if (m->link == 0) { /* a member's stage copy: to the same replica of the next stage, which keeps it */
        int w = co->nodes[ni].slot;
        if (w < 0 || jb->state != J_RUNNING || jb->S == 1 || m->version != jb->version) return;
        int s = w / jb->D, r = w % jb->D, w2 = ((s + 1) % jb->S) * jb->D + r;
        if (!co_member_ok(co, jb, w2)) return;
        int n2 = jb->node[w2];
        if (wf_now() - co->nodes[n2].last_seen > 4 * HEARTBEAT_EVERY) return; /* it looks hung: do not block on it */
        if (wf_msg_send(&co->nodes[n2].c, m, 2.0) < 0) {
            char d[160], cause[400];
            snprintf(cause, sizeof cause, "%s died (connection lost while it was sent a stage copy: %s)",
                     co_node_desc(co, jb, n2, d, sizeof d), wf_errmsg());
            el_member_lost(co, jb, n2, cause);
            co_drop_node(co, n2);
        }
        return;
    }
    if (jb->state != J_RECOVERING || jb->rstate != R_FETCHING) return;
    int s = (int)m->stage;
    if (s >= jb->S || jb->fetch_from[s] != ni || jb->fetch_got[s] || m->step != jb->fetch_step ||
        m->version != jb->version)
        return;
    size_t want = sizeof(float) * (size_t)jb->sfloats[s] * (size_t)(1 + jb->slots);
    if (m->nbytes != want) { /* no longer there, or not what the plan holds: another holder */
        for (int k = 0; k < jb->ninv; k++)
            if (jb->inv[k].ni == ni && jb->inv[k].stage == s && jb->inv[k].step == m->step) jb->inv[k].step = -1;
        el_select(co, jb);
        return;
    }
    const struct wf_graph *g = &jb->part.g;
    const float *src = m->data;
    int64_t n = jb->sfloats[s];
    for (int i = 0; i < g->n_params; i++) {
        if (jb->pstage[i] != s) continue;
        int64_t len = g->v[g->params[i]].numel;
        for (int k = 0; k <= jb->slots; k++)
            memcpy(jb->W + k * jb->gfloats + jb->goff[i], src + k * n + jb->poff[i], sizeof(float) * (size_t)len);
    }
    jb->fetch_got[s] = 1;
    for (int k = 0; k < jb->S; k++)
        if (!jb->fetch_got[k]) return;
    jb->have_W = 1;
    jb->W_step = jb->fetch_step;
    el_plan(co, jb);
}

static void log_set(struct job *jb, const struct setrec *sr) {
    fprintf(jb->metrics,
            "{\"event\":\"set\",\"version\":%u,\"stages\":%d,\"replicas\":%d,\"workers\":%d,\"step\":%lld,"
            "\"source\":\"%s\",\"unix\":%.3f,\"pids\":[",
            sr->version, sr->S, sr->D, sr->n, (long long)sr->step, src_key(jb->src), sr->wall);
    for (int i = 0; i < sr->n; i++)
        fprintf(jb->metrics, "%s%d", i ? "," : "", sr->pid[i]);
    fprintf(jb->metrics, "]}\n");
    fflush(jb->metrics);
}

/* A new set on the idle workers, or HOLD when there are too few. */
static void el_plan(struct coord *co, struct job *jb) {
    int idle[MAX_NODES];
    int n = co_pick_idle(co, MAX_NODES, idle);
    jb->rstate = R_NONE;
    if (n < jb->nmin) {
        if (jb->state != J_HOLD) {
            co_emit(co, jb, 0, "job %d holds: %d worker%s left, at least %d needed; waiting for workers to join",
                    jb->id, n, n == 1 ? "" : "s", jb->nmin);
            fprintf(jb->metrics, "{\"event\":\"hold\",\"workers\":%d,\"min\":%d,\"step\":%ld,\"unix\":%.3f}\n", n,
                    jb->nmin, jb->steps_done, co_wall());
            fflush(jb->metrics);
        }
        jb->state = J_HOLD;
        return;
    }
    int S, D;
    int used = choose_layout(jb, n, &S, &D);
    if (co_job_plan(jb, S, D) < 0) {
        co_job_fail(jb, 3, "re-planning for %d workers: %s", used, wf_errmsg());
        jb->state = J_COMPILING; /* so that the failure is reported */
        return;
    }
    jb->version++;
    int64_t t = jb->src == SRC_DISK                               ? jb->ckpt_step
                : jb->src == SRC_PEERS || jb->src == SRC_RETAINED ? jb->W_step
                                                                  : jb->start_step;
    jb->steps_done = t;
    jb->t_assign = wf_now();
    struct setrec *sr = &jb->sets[jb->nsets++ % MAX_HISTORY];
    *sr = (struct setrec){.version = jb->version, .S = jb->S, .D = D, .n = used, .step = t, .wall = co_wall()};
    for (int i = 0; i < used; i++)
        sr->pid[i] = co->nodes[idle[i]].pid;
    struct change *c = open_change(jb);
    if (c && !c->closed) {
        c->to_version = jb->version;
        c->restored = t;
        c->src = jb->src;
        c->replayed = c->high_water > t ? c->high_water - t : 0;
        co_emit(co, jb, 0, "job %d: node set %u: %d stage%s x %d replica%s on %d workers, from step %lld (%s)%s",
                jb->id, jb->version, jb->S, jb->S > 1 ? "s" : "", D, D > 1 ? "s" : "", used, (long long)t,
                el_src_name(jb->src), c->replayed ? "; steps after it are done again" : "");
        jl_change(co, jb, jb->ch_open);
    }
    log_set(jb, sr);
    char pids[MAX_NODES * 12];
    size_t pk = 0;
    pids[0] = 0;
    for (int i = 0; i < used; i++)
        wf_appendf(pids, sizeof pids, &pk, " %d", sr->pid[i]);
    jl_rec(co, 1, "set %u %d %d %d %lld %d %.3f%s", sr->version, sr->S, sr->D, sr->n, (long long)sr->step, jb->src,
           sr->wall, pids); /* before the ASSIGNs: a restarted coordinator knows the newest set */
    if (co_assign(co, jb, idle) < 0) co_job_fail(jb, 2, "%s", wf_errmsg());
}

/* How many workers of the last set have registered again. */
static int takeover_back(const struct coord *co, const struct job *jb) {
    if (jb->nsets == 0) return 0;
    const struct setrec *sr = &jb->sets[(jb->nsets - 1) % MAX_HISTORY];
    int back = 0;
    for (int p = 0; p < sr->n; p++)
        for (int i = 0; i < MAX_NODES; i++)
            if (co->nodes[i].used && co->nodes[i].pid == sr->pid[p]) {
                back++;
                break;
            }
    return back;
}

void el_takeover_begin(struct coord *co, struct job *jb, double wait_s, const char *journal) {
    char cause[512];
    snprintf(cause, sizeof cause, "the coordinator restarted (journal %s); the workers register again", journal);
    struct change *c = open_change(jb);
    if (c && !c->closed) { /* it went down during a change: that change goes on */
        size_t k = strlen(c->cause);
        wf_appendf(c->cause, sizeof c->cause, &k, "; then %s", cause);
        c->failure = c->takeover = 1;
    } else {
        jb->ch_open = jb->nch++;
        c = open_change(jb);
        memset(c, 0, sizeof *c);
        c->failure = c->takeover = 1;
        snprintf(c->cause, sizeof c->cause, "%s", cause);
        c->from_version = jb->version;
        c->t0 = wf_now();
        c->wall0 = co_wall();
    }
    jl_change(co, jb, jb->ch_open);
    jb->state = J_RECOVERING;
    jb->rstate = R_STOPPING;
    jb->takeover = 1;
    jb->takeover_until = wf_now() + wait_s;
    jb->ninv = 0;
    memset(jb->stopping, 0, sizeof jb->stopping);
    co_emit(co, jb, 0, "job %d: taken over at step %ld of %ld (node set %u); waiting up to %.0f s for its workers",
            jb->id, jb->logged, jb->total, jb->version, wait_s);
}

void el_rejoined(struct coord *co, struct job *jb, int ni) {
    if (!jb->takeover || jb->state != J_RECOVERING || jb->rstate != R_STOPPING) return;
    struct wf_msg m = {.type = WF_M_STOP, .version = jb->version, .step = -1}; /* its snapshots, please */
    if (wf_msg_send(&co->nodes[ni].c, &m, 2.0) < 0) {
        co_drop_node(co, ni);
        return;
    }
    jb->stopping[ni] = 1;
    char d[160];
    co_emit(co, jb, 0, "job %d: %s is back", jb->id, co_node_desc(co, jb, ni, d, sizeof d));
}

void el_tick(struct coord *co, struct job *jb, double now) {
    int idle = co_idle_nodes(co);
    double newest = 0;
    for (int i = 0; i < MAX_NODES; i++)
        if (co->nodes[i].used && co->nodes[i].slot < 0 && co->nodes[i].t_join > newest) newest = co->nodes[i].t_join;
    if (jb->takeover) { /* every worker of the last set back and answered, or the wait is over */
        int asked = 0;
        for (int i = 0; i < MAX_NODES; i++)
            asked += jb->stopping[i];
        const struct setrec *sr = jb->nsets ? &jb->sets[(jb->nsets - 1) % MAX_HISTORY] : NULL;
        int all = !sr || takeover_back(co, jb) == sr->n;
        if (asked || (!all && now < jb->takeover_until)) return;
        jb->takeover = 0;
        stopped_all(co, jb);
        return;
    }
    switch (jb->state) {
    case J_WAITING: {
        int want = WF_MIN(jb->n, jb->nmax);
        if (idle >= want || (idle >= jb->nmin && now - jb->t_submit > jb->settle && now - newest > jb->settle)) {
            jb->src = SRC_INITIAL;
            el_plan(co, jb);
        }
        break;
    }
    case J_HOLD:
        if (idle >= jb->nmin && now - newest >= jb->settle) el_plan(co, jb);
        break;
    case J_RUNNING: {
        struct change *c = open_change(jb);
        if ((c && !c->closed) || idle == 0 || jb->n >= jb->nmax) break;
        int S, D;
        if (choose_layout(jb, jb->n + idle, &S, &D) <= jb->n) break;
        if (now - newest < jb->settle || now - jb->t_set < jb->settle || jb->steps_done + 3 >= jb->total) break;
        char cause[200];
        snprintf(cause, sizeof cause, "%d worker%s joined", idle, idle == 1 ? "" : "s");
        el_begin(co, jb, 0, jb->steps_done + 3, cause);
        break;
    }
    default: break;
    }
}

void el_step_done(struct coord *co, struct job *jb, long done) {
    struct change *c = open_change(jb);
    if (!c || c->closed || jb->state != J_RUNNING || jb->version != c->to_version || done <= c->high_water) return;
    c->closed = 1;
    c->secs = wf_now() - c->t0;
    c->wall = co_wall();
    jl_change(co, jb, jb->ch_open);
    co_emit(co, jb, 0, "job %d: %s in %.2f s (node set %u -> %u, from step %lld, %ld step%s done again)", jb->id,
            c->takeover  ? "taken over"
            : c->failure ? "recovered"
                         : "grew",
            c->secs, c->from_version, c->to_version, (long long)c->restored, c->replayed, c->replayed == 1 ? "" : "s");
    fprintf(jb->metrics, "{\"event\":\"%s\",\"n\":%d,\"cause\":",
            c->takeover  ? "takeover"
            : c->failure ? "recovery"
                         : "scale_up",
            jb->ch_open + 1);
    json_str(jb->metrics, c->cause);
    fprintf(jb->metrics,
            ",\"from_version\":%u,\"to_version\":%u,\"restored_step\":%lld,\"source\":\"%s\",\"replayed_steps\":%ld,"
            "\"seconds\":%.4f,\"detected_unix\":%.4f,\"step_done_unix\":%.4f,\"step\":%ld}\n",
            c->from_version, c->to_version, (long long)c->restored, src_key(c->src), c->replayed, c->secs, c->wall0,
            c->wall, done);
    fflush(jb->metrics);
}

size_t el_status(const struct coord *co, const struct job *jb, char *buf, size_t n) {
    static const char *js[] = {"none",   "waiting for workers", "compiling", "running", "done",
                               "failed", "recovering",          "holding"};
    size_t k = 0;
    wf_appendf(buf, n, &k, "job %d: %s, %d stages x %d replicas", jb->id, js[jb->state], jb->S, jb->D);
    if (!jb->elastic) {
        wf_appendf(buf, n, &k, "\n");
        return k;
    }
    wf_appendf(buf, n, &k, ", node set version %u, %d workers (min %d, max %d), step %ld/%ld", jb->version, jb->n,
               jb->nmin, jb->nmax, jb->steps_done, jb->total);
    if (jb->state == J_HOLD) wf_appendf(buf, n, &k, ", below the minimum: waiting for workers to join");
    if (jb->takeover && jb->nsets > 0) {
        const struct setrec *sr = &jb->sets[(jb->nsets - 1) % MAX_HISTORY];
        wf_appendf(buf, n, &k, ", taken over by a restarted coordinator: %d of the %d workers of set %u back",
                   takeover_back(co, jb), sr->n, sr->version);
    }
    wf_appendf(buf, n, &k, "\n");
    if (jb->state == J_RUNNING || jb->state == J_COMPILING)
        for (int w = 0; w < jb->n; w++)
            if (co_member_ok(co, jb, w))
                wf_appendf(buf, n, &k, "  member rank %d: stage %d, replica %d, node %d, pid %d\n", w, w / jb->D,
                           w % jb->D, co->nodes[jb->node[w]].id, co->nodes[jb->node[w]].pid);
    for (int i = WF_MAX(0, jb->nsets - MAX_HISTORY); i < jb->nsets; i++) {
        const struct setrec *sr = &jb->sets[i % MAX_HISTORY];
        wf_appendf(buf, n, &k, "  set %u: %d stages x %d replicas on %d workers from step %lld, pids", sr->version,
                   sr->S, sr->D, sr->n, (long long)sr->step);
        for (int p = 0; p < sr->n; p++)
            wf_appendf(buf, n, &k, " %d", sr->pid[p]);
        wf_appendf(buf, n, &k, "\n");
    }
    for (int i = WF_MAX(0, jb->nch - MAX_HISTORY); i < jb->nch; i++) {
        const struct change *c = &jb->ch[i % MAX_HISTORY];
        wf_appendf(buf, n, &k, "  change %d (%s): %s; set %u -> ", i + 1,
                   c->takeover  ? "takeover"
                   : c->failure ? "recovery"
                                : "scale-up",
                   c->cause, c->from_version);
        if (c->to_version)
            wf_appendf(buf, n, &k, "%u, restored step %lld from %s, %ld steps done again", c->to_version,
                       (long long)c->restored, el_src_name(c->src), c->replayed);
        else
            wf_appendf(buf, n, &k, "(not yet)");
        if (c->closed)
            wf_appendf(buf, n, &k, ", took %.2f s\n", c->secs);
        else
            wf_appendf(buf, n, &k, ", in progress\n");
    }
    if (jb->replay_checked)
        wf_appendf(buf, n, &k, "  steps done again: %ld, with a loss different from the first time: %ld\n",
                   jb->replay_checked, jb->replay_mismatch);
    return k;
}

/* OUT/samples.jsonl: for each optimizer step, the node set that committed it
 * and the sample ids that went into it; and a summary per epoch in the
 * metrics. Written at the end (a temporary file, then renamed). */
void el_write_samples(struct job *jb) {
    if (!jb->ids || !jb->ids_set) return;
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/samples.jsonl", jb->job.out);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    long B = jb->job.batch, spe = jb->steps_per_epoch;
    uint8_t *seen = wf_calloc((size_t)jb->n_train + 1, 1);
    long epoch = -1, steps = 0, distinct = 0, repeated = 0;
    for (long t = jb->start_step; t <= jb->total; t++) {
        if (t == jb->total || t / spe != epoch) { /* the summary of the epoch before */
            if (epoch >= 0 && steps > 0)
                fprintf(jb->metrics,
                        "{\"event\":\"samples\",\"epoch\":%ld,\"steps\":%ld,\"samples\":%ld,\"distinct\":%ld,"
                        "\"repeated\":%ld,\"unused\":%ld}\n",
                        epoch + 1, steps, steps * B, distinct, repeated, jb->n_train - distinct);
            if (t == jb->total) break;
            epoch = t / spe;
            steps = distinct = repeated = 0;
            if (seen) memset(seen, 0, (size_t)jb->n_train);
        }
        if (!jb->ids_set[t]) continue;
        steps++;
        fprintf(f, "{\"step\":%ld,\"epoch\":%ld,\"set\":%u,\"ids\":[", t + 1, epoch + 1, jb->ids_set[t]);
        for (long i = 0; i < B; i++) {
            uint32_t id = jb->ids[t * B + i];
            fprintf(f, "%s%u", i ? "," : "", id);
            if (seen && id < (uint32_t)jb->n_train) {
                if (seen[id])
                    repeated++;
                else
                    distinct++;
                seen[id] = 1;
            }
        }
        fprintf(f, "]}\n");
    }
    wf_free(seen);
    fflush(jb->metrics);
    if (fclose(f) == 0) rename(tmp, path);
}
