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

/* What the control thread needs to register again after losing the
 * coordinator. Strings and token: the caller's, kept until ctl_end. */
struct ctl_link {
    const char *host;
    int port;
    const struct wf_token *tok;
    uint32_t cores, data_port, pid;
    uint64_t mem;
    const char *name;   /* this host's */
    double reconnect_s; /* <= 0: on losing the coordinator the worker exits at once */
};

/* Locks: snap_mu before send_mu before mu, where more than one is held. */
struct control {
    struct wf_conn *c; /* sends (send_mu): the caller's; *c is replaced when the worker registers again */
    struct wf_conn rd; /* control thread only: reads, on a dup of c's socket (a failed read closes only it) */
    pthread_mutex_t send_mu, mu;
    pthread_cond_t cv;
    struct wf_msg q[16];
    int qh, qn;
    int64_t step;
    char activity[200];
    int stop, exited; /* ctl_end asks the thread to return; it has returned (SHUTDOWN) */
    pthread_t th;
    /* losing the coordinator (mu): lost while registering again, no sends
     * meanwhile; losses counts them; stop_lost: the STOP in force is the
     * loss's, not the coordinator's */
    int lost, stop_lost;
    uint32_t losses;
    struct ctl_link link; /* set before the thread starts */
    uint64_t job_id;      /* control thread only: of the last ASSIGN */
    /* elastic (mu): a STOP, and the peer connections a STOP "now" shuts down */
    int stop_req, stop_now;
    int64_t stop_at, begun;          /* stop when this many steps are done; the step the stage last began */
    uint32_t stop_version, answered; /* answered: the STOP last answered (send_stopped) */
    int fds[2 * WF_MAX_WORKERS + 4], nfds;
    /* snapshots (snap_mu), of node-set version `version` */
    pthread_mutex_t snap_mu;
    uint32_t version;
    struct snap snaps[NSNAP];
};

/* Starts the control thread on the coordinator connection c (owned by the
 * caller, and closed by it after ctl_end); NULL if out of memory or descriptors. */
struct control *ctl_start(struct wf_conn *c, const struct ctl_link *l);
/* Registers on the connected c: the challenge, HELLO h, and WELCOME, whose
 * id goes to *id. A REFUSE is WF_ERR_AUTH. */
int ctl_register(struct wf_conn *c, const struct wf_token *tok, struct wf_msg *h, double timeout_s, uint64_t *id);
/* Stops it and frees everything. */
void ctl_end(struct control *ct);
/* Sends m to the coordinator (any thread but the control thread). While the
 * worker registers again after losing the coordinator it waits, then sends
 * on the new connection. */
int ctl_send(struct control *ct, const struct wf_msg *m);
/* ctl_send, but not to a coordinator registered with again since it had been
 * lost `losses` times (ct_losses): a failure of the lost one's job. */
int ctl_send_since(struct control *ct, const struct wf_msg *m, uint32_t losses);
/* What the worker is doing, for its heartbeats. */
void ctl_doing(struct control *ct, int64_t step, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Next message from the coordinator (not a heartbeat, SNAP or FETCH); waits
 * forever. A STOP with link = 1 is the control thread's own, made on losing
 * the coordinator (STOP has no link on the wire). */
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
/* The STOP in force (its version into *version) is the one the control
 * thread made on losing the coordinator: 1, and the restarted coordinator
 * sends its own STOP, which is the one to answer. */
int ct_stopped_by_loss(struct control *ct, uint32_t *version);
/* How many times the coordinator was lost so far. */
uint32_t ct_losses(struct control *ct);

#endif
