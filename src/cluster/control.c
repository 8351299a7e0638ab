/*
 * cluster layer: a worker's control thread. It owns reading the
 * coordinator connection: heartbeats out every 0.5 s, ABORT handled at once,
 * STOP noted (and, "now", the stage's peer connections shut down so every
 * blocked send or receive returns), SNAP copies kept and FETCH answered from
 * the snapshots; anything else is queued for the main thread (ctl_next).
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
    ctl_send(ct, &r);
    pthread_mutex_unlock(&ct->snap_mu);
}

int ctl_send(struct control *ct, const struct wf_msg *m) {
    pthread_mutex_lock(&ct->send_mu);
    int rc = wf_msg_send(ct->c, m, CTL_TIMEOUT);
    pthread_mutex_unlock(&ct->send_mu);
    return rc;
}

void ctl_doing(struct control *ct, int64_t step, const char *fmt, ...) {
    va_list ap;
    pthread_mutex_lock(&ct->mu);
    ct->step = step;
    va_start(ap, fmt);
    vsnprintf(ct->activity, sizeof ct->activity, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&ct->mu);
}

static void *control_main(void *arg) {
    struct control *ct = arg;
    double last = 0;
    for (;;) {
        pthread_mutex_lock(&ct->mu);
        int stop = ct->stop;
        pthread_mutex_unlock(&ct->mu);
        if (stop) return NULL;
        double now = wf_now();
        if (now - last >= HEARTBEAT_EVERY) {
            struct wf_msg hb = {.type = WF_M_HEARTBEAT};
            char act[200];
            pthread_mutex_lock(&ct->mu);
            hb.step = ct->step;
            snprintf(act, sizeof act, "%s", ct->activity);
            pthread_mutex_unlock(&ct->mu);
            hb.text = act;
            if (ctl_send(ct, &hb) < 0) {
                fprintf(stderr, "weft worker: lost the coordinator: %s\n", wf_errmsg());
                _exit(3);
            }
            last = now;
        }
        int r = wf_poll_readable(&ct->c, 1, -1, HEARTBEAT_EVERY / 2);
        if (r == WF_ERR_TIMEOUT) continue;
        struct wf_msg m;
        int rc = r < 0 ? r : wf_msg_recv(ct->c, &m, CTL_TIMEOUT);
        if (rc < 0) {
            fprintf(stderr, "weft worker: lost the coordinator: %s\n", wf_errmsg());
            _exit(3);
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
            pthread_mutex_lock(&ct->mu);
            ct->stop_req = ct->stop_now = 0;
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
            ct->stop_version = m.version;
            ct->stop_at = m.step;
            if (m.step < 0 || ct->begun >= m.step) stop_now_locked(ct);
            pthread_mutex_unlock(&ct->mu);
        }
        int bye = m.type == WF_M_SHUTDOWN;
        pthread_mutex_lock(&ct->mu);
        if (ct->qn < (int)WF_ARRAY_LEN(ct->q)) {
            ct->q[(ct->qh + ct->qn) % WF_ARRAY_LEN(ct->q)] = m;
            ct->qn++;
        } else {
            wf_msg_free(&m);
        }
        pthread_cond_broadcast(&ct->cv);
        pthread_mutex_unlock(&ct->mu);
        if (bye) return NULL; /* the coordinator closes the connection next: not a failure */
    }
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
    ct->answered = stop_version;
    ctl_doing(ct, 0, "idle (out of the node set)");
    ctl_send(ct, &m);
}

struct control *ctl_start(struct wf_conn *c) {
    struct control *ct = wf_calloc(1, sizeof *ct);
    if (!ct) return NULL;
    ct->c = c;
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
    for (int i = 0; i < ct->qn; i++)
        wf_msg_free(&ct->q[(ct->qh + i) % WF_ARRAY_LEN(ct->q)]);
    for (int i = 0; i < NSNAP; i++)
        wf_afree(ct->snaps[i].data);
    wf_free(ct);
}
