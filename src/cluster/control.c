/*
 * cluster layer: a worker's control thread. It owns reading the
 * coordinator connection: heartbeats out every 0.5 s, ABORT handled at once,
 * STOP noted (and, "now", the stage's peer connections shut down so every
 * blocked send or receive returns), SNAP copies kept and FETCH answered from
 * the snapshots; anything else is queued for the main thread (ctl_next).
 *
 * Losing the coordinator (the connection fails: a crash, or it dropped this
 * worker) ends the process, unless the worker is to register again
 * (reconnect_s > 0): then the stage leaves its node set as on a STOP "now",
 * sends wait, and the control thread connects again every 0.5 s until a
 * coordinator on the same address welcomes it or reconnect_s has passed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft/core.h"

#include "cluster_int.h"
#include "control.h"

void ct_track(struct control *ct, int fd) {
    pthread_mutex_lock(&ct->mu);
    if (fd >= 0 && ct->nfds < (int)WF_ARRAY_LEN(ct->fds)) ct->fds[ct->nfds++] = fd;
    if (ct->stop_now && fd >= 0) shutdown(fd, SHUT_RDWR);
    pthread_mutex_unlock(&ct->mu);
}

void ct_untrack_all(struct control *ct) {
    pthread_mutex_lock(&ct->mu);
    ct->nfds = 0;
    pthread_mutex_unlock(&ct->mu);
}

/* mu held: every blocked send or receive on a peer connection returns now */
static void stop_now_locked(struct control *ct) {
    ct->stop_now = 1;
    for (int i = 0; i < ct->nfds; i++)
        shutdown(ct->fds[i], SHUT_RDWR);
}

int ct_stopping(struct control *ct) {
    pthread_mutex_lock(&ct->mu);
    int r = ct->stop_req && ct->stop_now;
    pthread_mutex_unlock(&ct->mu);
    return r;
}

/* At a step boundary with `done` steps done: 1 to leave the set here; else
 * records that the stage begins the next step. */
int stop_check(struct control *ct, int64_t done) {
    pthread_mutex_lock(&ct->mu);
    int r = ct->stop_req && (ct->stop_now || done >= ct->stop_at);
    if (!r) ct->begun = done;
    pthread_mutex_unlock(&ct->mu);
    return r;
}

/* The slot for a new snapshot of `kind`: a free one, else the older. */
struct snap *snap_slot(struct control *ct, int kind) {
    struct snap *best = NULL;
    for (int i = 0; i < NSNAP; i++) {
        struct snap *p = &ct->snaps[i];
        if (i / 2 != kind) continue;
        if (!p->used) return p;
        if (!best || p->step < best->step) best = p;
    }
    return best;
}

/* snap_mu held */
int snap_fill(struct snap *p, int kind, uint32_t version, int stage, int64_t step, size_t n) {
    if (p->cap < n) {
        wf_afree(p->data);
        p->data = wf_aalloc(sizeof(float) * (n + 1));
        p->cap = p->data ? n : 0;
        if (!p->data) {
            p->used = 0;
            return wf_error(WF_ERR_NOMEM, "out of memory for a snapshot of %zu floats", n);
        }
    }
    *p = (struct snap){.used = 1,
                       .kind = kind,
                       .stage = stage,
                       .version = version,
                       .step = step,
                       .data = p->data,
                       .n = n,
                       .cap = p->cap};
    return WF_OK;
}

/* A peer's stage copy relayed by the coordinator (control thread). */
static void snap_keep_copy(struct control *ct, const struct wf_msg *m) {
    pthread_mutex_lock(&ct->snap_mu);
    if (m->version == ct->version && m->nbytes % sizeof(float) == 0) {
        struct snap *p = snap_slot(ct, 2);
        size_t n = m->nbytes / sizeof(float);
        if (snap_fill(p, 2, m->version, (int)m->stage, m->step, n) == WF_OK) memcpy(p->data, m->data, m->nbytes);
    }
    pthread_mutex_unlock(&ct->snap_mu);
}

/* The control thread's own sends: on the connection as it is. */
static int send_now(struct control *ct, const struct wf_msg *m) {
    pthread_mutex_lock(&ct->send_mu);
    int rc = wf_msg_send(ct->c, m, CTL_TIMEOUT);
    pthread_mutex_unlock(&ct->send_mu);
    return rc;
}

/* FETCH: the snapshot of (stage, step) back to the coordinator; an empty
 * block if this worker no longer has it. */
static void snap_reply(struct control *ct, const struct wf_msg *f) {
    pthread_mutex_lock(&ct->snap_mu);
    struct wf_msg r = {.type = WF_M_SNAP, .version = f->version, .stage = f->stage, .step = f->step, .link = 1};
    for (int i = 0; i < NSNAP; i++) {
        const struct snap *p = &ct->snaps[i];
        if (p->used && p->version == f->version && p->stage == (int)f->stage && p->step == f->step) {
            r.data = p->data;
            r.nbytes = p->n * sizeof(float);
            break;
        }
    }
    send_now(ct, &r);
    pthread_mutex_unlock(&ct->snap_mu);
}

/* ctl_send; with `only` set, only while the coordinator has been lost `losses` times */
static int send_wait(struct control *ct, const struct wf_msg *m, int only, uint32_t losses_then) {
    for (;;) {
        pthread_mutex_lock(&ct->mu);
        while (ct->lost)
            pthread_cond_wait(&ct->cv, &ct->mu);
        pthread_mutex_unlock(&ct->mu);
        pthread_mutex_lock(&ct->send_mu);
        pthread_mutex_lock(&ct->mu);
        int lost = ct->lost;
        uint32_t losses = ct->losses;
        pthread_mutex_unlock(&ct->mu);
        if (lost) { /* lost in between: never a send on the dead connection */
            pthread_mutex_unlock(&ct->send_mu);
            continue;
        }
        if (only && losses != losses_then) {
            pthread_mutex_unlock(&ct->send_mu);
            return wf_error(WF_ERR_PEER, "%s was lost: %s not sent", ct->c->name, wf_msg_name(m->type));
        }
        int rc = wf_msg_send(ct->c, m, CTL_TIMEOUT);
        int broke = (rc == WF_ERR_PEER || rc == WF_ERR_TIMEOUT) && ct->link.reconnect_s > 0;
        if (broke && ct->c->fd >= 0) shutdown(ct->c->fd, SHUT_RDWR); /* its reads see it; else its next heartbeat */
        pthread_mutex_unlock(&ct->send_mu);
        if (broke) { /* the error comes back once the loss is in force (a STOP for the stage) */
            pthread_mutex_lock(&ct->mu);
            while (ct->losses == losses && !ct->exited)
                pthread_cond_wait(&ct->cv, &ct->mu);
            pthread_mutex_unlock(&ct->mu);
        }
        return rc;
    }
}

int ctl_send(struct control *ct, const struct wf_msg *m) { return send_wait(ct, m, 0, 0); }

int ctl_send_since(struct control *ct, const struct wf_msg *m, uint32_t losses) { return send_wait(ct, m, 1, losses); }

void ctl_doing(struct control *ct, int64_t step, const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&ct->mu);
    ct->step = step;
    va_start(ap, fmt);
    vsnprintf(ct->activity, sizeof ct->activity, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&ct->mu);
}

/* mu held: m to the main thread */
static void queue_locked(struct control *ct, struct wf_msg *m) {
    if (ct->qn < (int)WF_ARRAY_LEN(ct->q)) {
        ct->q[(ct->qh + ct->qn) % WF_ARRAY_LEN(ct->q)] = *m;
        ct->qn++;
    } else {
        wf_msg_free(m);
    }
    pthread_cond_broadcast(&ct->cv);
}

int ctl_register(struct wf_conn *c, const struct wf_token *tok, struct wf_msg *h, double timeout_s, uint64_t *id) {
    struct wf_msg w;
    int rc = wf_auth_connect(c, tok, h, timeout_s);
    if (rc == WF_OK) rc = wf_msg_recv(c, &w, timeout_s);
    if (rc < 0) return rc;
    if (w.type != WF_M_WELCOME)
        rc = wf_error(WF_ERR_AUTH, "%s refused this worker: %s", c->name, w.text ? w.text : wf_msg_name(w.type));
    *id = w.id;
    wf_msg_free(&w);
    return rc;
}

/* One try at registering again: a new connection in *nc. */
static int register_again(struct control *ct, struct wf_conn *nc, uint64_t *id, double left) {
    const struct ctl_link *l = &ct->link;
    char name[300];
    snprintf(name, sizeof name, "coordinator %s:%d", l->host, l->port);
    int rc = wf_tcp_connect(nc, l->host, l->port, name, WF_MIN(2.0, WF_MAX(left, 0.1)));
    if (rc < 0) return rc;
    struct wf_msg h = {.role = WF_ROLE_WORKER,
                       .cores = l->cores,
                       .mem = l->mem,
                       .port = l->data_port,
                       .pid = l->pid,
                       .name = (char *)l->name,
                       .job_id = ct->job_id,
                       .link = 1}; /* registering again after losing the coordinator */
    if ((rc = ctl_register(nc, l->tok, &h, WF_MIN(5.0, WF_MAX(left, 1.0)), id)) < 0) wf_conn_close(nc);
    return rc;
}

/* The coordinator connection failed (err). Without reconnect_s the worker
 * exits. Else the stage leaves its node set as on a STOP "now" (and a STOP
 * of the control thread's own, link = 1, wakes a main thread waiting for a
 * message), and the worker registers again: 1 once it has, 0 if ctl_end
 * asked the thread to return meanwhile; it exits when reconnect_s passes. */
static int lose(struct control *ct, const char *err) {
    double secs = ct->link.reconnect_s;
    if (secs <= 0) {
        fprintf(stderr, "weft worker: lost the coordinator: %s\n", err);
        _exit(3);
    }
    fprintf(stderr, "weft worker: lost the coordinator (%s); trying to register again for up to %g s\n", err, secs);
    double deadline = wf_now() + secs;
    pthread_mutex_lock(&ct->snap_mu);
    uint32_t v = ct->version;
    pthread_mutex_unlock(&ct->snap_mu);
    pthread_mutex_lock(&ct->send_mu); /* a send under way ends first; none starts after */
    pthread_mutex_lock(&ct->mu);
    ct->lost = ct->stop_lost = 1;
    ct->losses++;
    ct->stop_req = 1;
    ct->stop_version = v;
    ct->stop_at = -1;
    stop_now_locked(ct);
    queue_locked(ct, &(struct wf_msg){.type = WF_M_STOP, .version = v, .step = -1, .link = 1});
    pthread_mutex_unlock(&ct->mu);
    pthread_mutex_unlock(&ct->send_mu);
    for (;;) {
        pthread_mutex_lock(&ct->mu);
        int stop = ct->stop;
        pthread_mutex_unlock(&ct->mu);
        if (stop) return 0;
        double t0 = wf_now();
        struct wf_conn nc;
        uint64_t id = 0;
        int rc = register_again(ct, &nc, &id, deadline - t0);
        struct wf_conn rd;
        if (rc == WF_OK && (rc = wf_conn_from_fd(&rd, dup(nc.fd), nc.name)) < 0) wf_conn_close(&nc);
        if (rc == WF_OK) {
            wf_conn_close(&ct->rd);
            ct->rd = rd;
            pthread_mutex_lock(&ct->send_mu);
            wf_conn_close(ct->c);
            *ct->c = nc;
            pthread_mutex_unlock(&ct->send_mu);
            pthread_mutex_lock(&ct->mu);
            ct->lost = 0;
            ct->answered = 0; /* the new coordinator's STOP is answered, whatever this worker answered before */
            pthread_cond_broadcast(&ct->cv);
            pthread_mutex_unlock(&ct->mu);
            fprintf(stderr, "weft worker: registered again with %s as node %llu\n", ct->c->name,
                    (unsigned long long)id);
            return 1;
        }
        if (rc == WF_ERR_AUTH && strstr(wf_errmsg(), "token")) { /* can never succeed */
            fprintf(stderr, "weft worker: %s\n", wf_errmsg());
            _exit(3);
        }
        double now = wf_now();
        if (now >= deadline) {
            fprintf(stderr, "weft worker: the coordinator did not come back within %g s; exiting\n", secs);
            _exit(3);
        }
        double nap = WF_MIN(t0 + 0.5, deadline) - now;
        if (nap > 0) usleep((useconds_t)(nap * 1e6));
    }
}

static void control_loop(struct control *ct) {
    double last = 0;
    char err[1024];
    for (;;) {
        pthread_mutex_lock(&ct->mu);
        int stop = ct->stop;
        pthread_mutex_unlock(&ct->mu);
        if (stop) return;
        double now = wf_now();
        if (now - last >= HEARTBEAT_EVERY) {
            struct wf_msg hb = {.type = WF_M_HEARTBEAT};
            char act[200];
            pthread_mutex_lock(&ct->mu);
            hb.step = ct->step;
            snprintf(act, sizeof act, "%s", ct->activity);
            pthread_mutex_unlock(&ct->mu);
            hb.text = act;
            if (send_now(ct, &hb) < 0) {
                snprintf(err, sizeof err, "%s", wf_errmsg());
                if (!lose(ct, err)) return;
                last = 0; /* a heartbeat on the new connection at once */
                continue;
            }
            last = now;
        }
        struct wf_conn *rd = &ct->rd;
        int r = wf_poll_readable(&rd, 1, -1, HEARTBEAT_EVERY / 2);
        if (r == WF_ERR_TIMEOUT) continue;
        struct wf_msg m;
        int rc = r < 0 ? r : wf_msg_recv(rd, &m, CTL_TIMEOUT);
        if (rc < 0) {
            snprintf(err, sizeof err, "%s", wf_errmsg());
            if (!lose(ct, err)) return;
            last = 0;
            continue;
        }
        if (m.type == WF_M_ABORT) {
            fprintf(stderr, "weft worker: job aborted by the coordinator: %s\n", m.text ? m.text : "");
            _exit(3);
        }
        if (m.type == WF_M_SNAP || m.type == WF_M_FETCH) {
            if (m.type == WF_M_SNAP)
                snap_keep_copy(ct, &m);
            else
                snap_reply(ct, &m);
            wf_msg_free(&m);
            continue;
        }
        if (m.type == WF_M_ASSIGN) { /* a new node set: no STOP yet, and the old set's snapshots go */
            ct->job_id = m.job_id;
            pthread_mutex_lock(&ct->mu);
            ct->stop_req = ct->stop_now = ct->stop_lost = 0;
            ct->stop_at = ct->begun = -1;
            pthread_mutex_unlock(&ct->mu);
            pthread_mutex_lock(&ct->snap_mu);
            ct->version = m.version;
            for (int i = 0; i < NSNAP; i++)
                ct->snaps[i].used = 0;
            pthread_mutex_unlock(&ct->snap_mu);
        }
        if (m.type == WF_M_STOP) { /* now, or once the stage is at the step boundary m.step */
            pthread_mutex_lock(&ct->mu);
            ct->stop_req = 1;
            ct->stop_lost = 0;
            ct->stop_version = m.version;
            ct->stop_at = m.step;
            if (m.step < 0 || ct->begun >= m.step) stop_now_locked(ct);
            pthread_mutex_unlock(&ct->mu);
        }
        int bye = m.type == WF_M_SHUTDOWN;
        pthread_mutex_lock(&ct->mu);
        queue_locked(ct, &m);
        pthread_mutex_unlock(&ct->mu);
        if (bye) return; /* the coordinator closes the connection next: not a failure */
    }
}

static void *control_main(void *arg) {
    struct control *ct = arg;
    control_loop(ct);
    pthread_mutex_lock(&ct->mu);
    ct->exited = 1;
    pthread_cond_broadcast(&ct->cv);
    pthread_mutex_unlock(&ct->mu);
    return NULL;
}

/* Next message from the coordinator (not a heartbeat); waits forever. */
void ctl_next(struct control *ct, struct wf_msg *m) {
    pthread_mutex_lock(&ct->mu);
    while (ct->qn == 0)
        pthread_cond_wait(&ct->cv, &ct->mu);
    *m = ct->q[ct->qh];
    ct->qh = (ct->qh + 1) % (int)WF_ARRAY_LEN(ct->q);
    ct->qn--;
    pthread_mutex_unlock(&ct->mu);
}

/* STOPPED: the snapshots this worker holds, of the node set it was last given. */
void send_stopped(struct control *ct, uint32_t stop_version) {
    int64_t inv[2 * NSNAP];
    uint32_t n = 0;
    pthread_mutex_lock(&ct->snap_mu);
    for (int i = 0; i < NSNAP; i++)
        if (ct->snaps[i].used) {
            inv[2 * n] = ct->snaps[i].stage;
            inv[2 * n + 1] = ct->snaps[i].step;
            n++;
        }
    struct wf_msg m = {.type = WF_M_STOPPED, .version = ct->version, .step = ct->step, .inv = inv, .n_inv = n};
    pthread_mutex_unlock(&ct->snap_mu);
    pthread_mutex_lock(&ct->mu);
    ct->answered = stop_version;
    pthread_mutex_unlock(&ct->mu);
    ctl_doing(ct, 0, "idle (out of the node set)");
    ctl_send(ct, &m);
}

int ct_stopped_by_loss(struct control *ct, uint32_t *version) {
    pthread_mutex_lock(&ct->mu);
    int r = ct->stop_lost;
    *version = ct->stop_version;
    pthread_mutex_unlock(&ct->mu);
    return r;
}

uint32_t ct_losses(struct control *ct) {
    pthread_mutex_lock(&ct->mu);
    uint32_t n = ct->losses;
    pthread_mutex_unlock(&ct->mu);
    return n;
}

struct control *ctl_start(struct wf_conn *c, const struct ctl_link *l) {
    struct control *ct = wf_calloc(1, sizeof *ct);
    if (!ct) return NULL;
    ct->c = c;
    ct->link = *l;
    if (wf_conn_from_fd(&ct->rd, dup(c->fd), c->name) < 0) {
        wf_free(ct);
        return NULL;
    }
    pthread_mutex_init(&ct->mu, NULL);
    pthread_mutex_init(&ct->send_mu, NULL);
    pthread_mutex_init(&ct->snap_mu, NULL);
    pthread_cond_init(&ct->cv, NULL);
    ct->stop_at = ct->begun = -1;
    snprintf(ct->activity, sizeof ct->activity, "idle");
    pthread_create(&ct->th, NULL, control_main, ct);
    return ct;
}

void ctl_end(struct control *ct) {
    pthread_mutex_lock(&ct->mu);
    ct->stop = 1;
    pthread_mutex_unlock(&ct->mu);
    pthread_join(ct->th, NULL);
    wf_conn_close(&ct->rd);
    for (int i = 0; i < ct->qn; i++)
        wf_msg_free(&ct->q[(ct->qh + i) % WF_ARRAY_LEN(ct->q)]);
    for (int i = 0; i < NSNAP; i++)
        wf_afree(ct->snaps[i].data);
    wf_free(ct);
}
