/*
 * cluster layer, private: a worker's control thread and the stage
 * snapshots it holds (control.c), used by the worker agent (worker.c).
 */
#ifndef WEFT_CONTROL_H
#define WEFT_CONTROL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/cluster.h"

#define NSNAP 6 /* two recent own snapshots, two at multiples of snapshot_every, two copies of a peer's */

/* A stage's state (parameters, then each optimizer slot) at a step
 * boundary: this worker's own, or a peer's copy relayed by the coordinator.
 * Kinds: 0 recent own, 1 own at a multiple of snapshot_every, 2 a peer's. */
struct snap {
    int used, kind, stage;
    uint32_t version;
    int64_t step;
    float *data;
    size_t n, cap; /* floats */
};

struct control {
    struct wf_conn *c;
    pthread_mutex_t send_mu, mu;
    pthread_cond_t cv;
    struct wf_msg q[16];
    int qh, qn;
    int64_t step;
    char activity[200];
    int stop;
    pthread_t th;
    /* elastic (mu): a STOP, and the peer connections a STOP "now" shuts down */
    int stop_req, stop_now;
    int64_t stop_at, begun; /* stop when this many steps are done; the step the stage last began */
    uint32_t stop_version, answered;
    int fds[2 * WF_MAX_WORKERS + 4], nfds;
    /* snapshots (snap_mu), of node-set version `version` */
    pthread_mutex_t snap_mu;
    uint32_t version;
    struct snap snaps[NSNAP];
};

/* Starts the control thread on the coordinator connection c; NULL if out of memory. */
struct control *ctl_start(struct wf_conn *c);
/* Stops it and frees everything. */
void ctl_end(struct control *ct);
/* Sends m to the coordinator (any thread). */
int ctl_send(struct control *ct, const struct wf_msg *m);
/* What the worker is doing, for its heartbeats. */
void ctl_doing(struct control *ct, int64_t step, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Next message from the coordinator (not a heartbeat, SNAP or FETCH); waits forever. */
void ctl_next(struct control *ct, struct wf_msg *m);
/* A peer connection a STOP "now" shuts down; all forgotten (before they close). */
void ct_track(struct control *ct, int fd);
void ct_untrack_all(struct control *ct);
/* 1 once a STOP "now" came. */
int ct_stopping(struct control *ct);
/* At a step boundary with `done` steps done: 1 to leave the set here; else
 * records that the stage begins the next step. */
int stop_check(struct control *ct, int64_t done);
/* snap_mu held: the slot for a new snapshot of `kind` (a free one, else the
 * older), filled in for n floats. */
struct snap *snap_slot(struct control *ct, int kind);
int snap_fill(struct snap *p, int kind, uint32_t version, int stage, int64_t step, size_t n);
/* STOPPED: the snapshots this worker holds; answers the STOP of stop_version. */
void send_stopped(struct control *ct, uint32_t stop_version);

#endif
