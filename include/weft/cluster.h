/*
 * weft cluster layer: the coordinator, the worker agent and the messages
 * between them (docs/protocol.md has the byte layout of every message).
 *
 *     weft coordinator ──control──► weft worker ◄──data──► weft worker
 *
 * Control traffic (registration, sub-graphs, the compile barrier,
 * heartbeats, losses, checkpoint state) runs on one connection per worker
 * to the coordinator; activations, gradients and all-reduce run on direct
 * worker-to-worker connections. Every connection starts with a challenge:
 * the acceptor sends a random nonce, the connector answers with
 * HMAC-SHA256(cluster token, nonce), so a process without the token can
 * neither join nor submit, and the token never crosses the wire.
 */
#ifndef WEFT_CLUSTER_H
#define WEFT_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "weft/comm.h"

struct pollfd;

/* The largest frame a connection may send before it is authenticated (its
 * HELLO, which wf_msg_max_len caps lower still): the receive buffer every
 * connection has anyway, so a peer without the token costs one page. */
#define WF_AUTH_FRAME_MAX 4096u

/* EVAL.correct of a model that has no accuracy (an autoencoder): evaluation reports only the loss */
#define WF_EVAL_NO_ACC UINT64_MAX

enum wf_msg_type {
    WF_M_CHALLENGE = 100, /* acceptor -> connector: nonce */
    WF_M_HELLO,           /* connector -> acceptor: mac, role, resources */
    WF_M_WELCOME,         /* id */
    WF_M_REFUSE,          /* text; the connection is closed after it */
    WF_M_ASSIGN = 110,    /* coordinator -> worker: stage sub-graph and peers */
    WF_M_COMPILE_DONE,    /* seconds, bytes, nodes */
    WF_M_COMPILE_FAIL,    /* text */
    WF_M_START,           /* the compile barrier is passed */
    WF_M_HEARTBEAT,       /* step, text: what the worker is doing */
    WF_M_STEP_LOSS,       /* last stage: step, first micro-batch, losses */
    WF_M_EVAL,            /* last stage: epoch, loss sum, correct (WF_EVAL_NO_ACC: none), count */
    WF_M_STATE,           /* first replica of a stage: step, floats (params, optimizer slots) */
    WF_M_DONE,            /* worker finished the job: its statistics */
    WF_M_FAIL,            /* worker failed: text */
    WF_M_ABORT,           /* coordinator -> worker: text; the worker exits */
    WF_M_SHUTDOWN,        /* coordinator -> worker: exit now, nothing failed */
    WF_M_TRACE,           /* worker trace events, at the end */
    WF_M_CLIP_PART,       /* stage replica 0 -> coordinator: per-parameter sums of squared gradients */
    WF_M_CLIP,            /* coordinator -> worker: the step's global sum of squares */
    WF_M_STOP = 150,      /* coordinator -> worker: leave the node set at a step boundary (or now); stay registered */
    WF_M_STOPPED,         /* worker -> coordinator: left the set; the snapshots it holds */
    WF_M_SNAP,            /* a stage snapshot: worker -> coordinator -> the worker keeping the copy, or a FETCH reply */
    WF_M_FETCH,           /* coordinator -> worker: send back the snapshot of (stage, step) */
    WF_M_RESTORE,         /* coordinator -> worker, after ASSIGN: the state its stage starts from */
    WF_M_SUBMIT = 130,    /* client -> coordinator: a job */
    WF_M_JOB_EVENT,       /* coordinator -> client: one progress line */
    WF_M_JOB_END,         /* coordinator -> client: status, text */
    WF_M_STATUS,          /* client -> coordinator */
    WF_M_STATUS_REPLY,    /* text */
    WF_M_ACT = 140,       /* step, micro-batch, activation floats */
    WF_M_GRAD,            /* step, micro-batch, gradient floats */
};

enum wf_role { WF_ROLE_WORKER = 1, WF_ROLE_CLIENT = 2, WF_ROLE_PEER = 3 };
enum wf_link { WF_LINK_PIPE = 1, WF_LINK_DP = 2 };

#define WF_NONCE 32
#define WF_MAC 32
#define WF_MAX_WORKERS 256
#define WF_TEXT_MAX (64u << 20) /* longest string field: model texts */

struct wf_peer_addr {
    char *host;
    uint32_t port;
};

/* Every message decodes into this one struct (only the fields its type
 * uses are set); strings and arrays are heap copies freed by wf_msg_free,
 * except `data`, which points into the received payload. */
struct wf_msg {
    int type;
    uint8_t nonce[WF_NONCE], mac[WF_MAC];
    uint32_t role, cores, port, pid,
        link; /* link: HELLO of a peer: its link; of a worker: 1 registering again; SUBMIT: 1 attach */
    uint64_t mem, id, job_id;
    char *text, *name;
    /* ASSIGN */
    uint32_t worker, stage, n_stages, replica, n_replicas, micro_batches, schedule, threads, trace;
    uint32_t in_grad, out_grad;
    uint32_t version, elastic, snapshot_every,
        restore; /* ASSIGN: node-set version, ...; STOP, STOPPED, SNAP, FETCH: version */
    char *job_text, *model_text, *in, *out, *x_name, *y_name, *len_name;
    uint32_t n_peers;
    struct wf_peer_addr *peers;
    /* numbers of COMPILE_DONE, HEARTBEAT, STEP_LOSS, EVAL, STATE, DONE, SUBMIT, ACT, GRAD, JOB_END */
    int64_t step, epoch, epoch_step, status;
    uint32_t first, n, workers, pp, dp;
    double seconds, compute_s, comm_s, idle_s, loss_sum, value;
    uint64_t bytes, correct, count, nodes, max_live;
    double *vals;  /* STEP_LOSS: n losses */
    uint32_t *ids; /* STEP_LOSS: the sample ids of those micro-batches, in order */
    uint32_t n_ids;
    int64_t *inv; /* STOPPED: n_inv (stage, step) pairs */
    uint32_t n_inv;
    /* SUBMIT: elastic policies */
    uint32_t nodes_min, nodes_max, max_recoveries;
    double settle_s, hb_timeout_s;
    const void *data; /* STATE, ACT, GRAD, TRACE: bytes in the payload */
    uint64_t nbytes;
};

/* Encodes m (by m->type) into b. */
void wf_msg_encode(struct wf_wbuf *b, const struct wf_msg *m);
/* Decodes a payload of the given type; every length is checked against
 * the payload, so a hostile peer gets WF_ERR_PEER and nothing else. */
int wf_msg_decode(struct wf_msg *m, int type, const void *p, size_t len);
void wf_msg_free(struct wf_msg *m);
const char *wf_msg_name(int type);
/* The most payload bytes a message of `type` can have (the limits wf_msg_decode
 * puts on its fields; UINT32_MAX where only the connection's limit bounds it,
 * 0 for an unknown type); *name gets the type's name. Every connection the
 * cluster authenticates refuses a frame above this from its header
 * (wf_conn.type_max), so that no peer makes a process allocate more for a
 * message than that message can hold. */
uint32_t wf_msg_max_len(int type, const char **name);

/* Sends m on c (one frame). */
int wf_msg_send(struct wf_conn *c, const struct wf_msg *m, double timeout_s);
/* Receives one frame and decodes it; *m must be freed with wf_msg_free. */
int wf_msg_recv(struct wf_conn *c, struct wf_msg *m, double timeout_s);

/* ACT and GRAD carry a block: step (u64), micro-batch (u32), byte count
 * (u64), then the bytes. wf_msg_block_hdr writes those first 20 bytes, so a
 * sender can send the block from where it lies (wf_send2). */
#define WF_BLOCK_HDR 20
void wf_msg_block_hdr(uint8_t out[WF_BLOCK_HDR], int64_t step, uint32_t first, uint64_t nbytes);
/* Receives one frame; an ACT or GRAD whose block is n bytes lands straight
 * in dst (m->data = dst). Any other frame is decoded as by wf_msg_recv. */
int wf_msg_recv_block(struct wf_conn *c, struct wf_msg *m, void *dst, size_t n, double timeout_s);

/* ---- authentication (auth.c) ---- */
struct wf_token {
    uint8_t key[64];
    size_t len;
};
/* From WEFT_TOKEN, else the file (default "weft-token" in the working
 * directory); a missing token is an error naming where it looked. */
int wf_token_load(struct wf_token *t, const char *file);
/* A new random token, written to file with mode 0600 if file != NULL. */
int wf_token_generate(struct wf_token *t, char hex[129], const char *file);
int wf_token_from_hex(struct wf_token *t, const char *hex);
/* Acceptor side, waiting up to timeout_s: challenge, check the HELLO's mac;
 * *hello receives it. (A process that listens uses the gate below instead.) */
int wf_auth_accept(struct wf_conn *c, const struct wf_token *t, struct wf_msg *hello, double timeout_s);

/* The acceptor's side as a state machine that never waits: the challenge
 * goes out at once, and each wf_auth_step reads what has arrived. Until the
 * peer is authenticated its frames are capped at WF_AUTH_FRAME_MAX and by
 * type (wf_msg_max_len); a partial HELLO is kept across steps. */
struct wf_auth {
    struct wf_conn c;
    uint8_t nonce[WF_NONCE];
    double deadline, timeout_s;
    uint32_t max_len; /* the connection's own limit, restored once authenticated */
};
/* Takes c over (closing it on failure) and sends the challenge; the HELLO
 * is due within timeout_s. */
int wf_auth_begin(struct wf_auth *a, struct wf_conn *c, double timeout_s);
/* 0: the HELLO is not complete yet; 1: authenticated: *hello holds the
 * HELLO (free it) and a->c is the connection, with its own limit back; a
 * negative error (and the connection closed) when the peer sent anything
 * else, a wrong mac, closed, or let the deadline pass. */
int wf_auth_step(struct wf_auth *a, const struct wf_token *t, struct wf_msg *hello);

/* ---- the gate: a listening socket's connections until they authenticate (gate.c) ----
 * The owner's poll loop polls the gate's descriptors beside its own and
 * hands them back to wf_gate_service, which accepts, advances every
 * handshake that has bytes, drops those past their deadline and, when more
 * than `cap` are in progress, the oldest. Nothing in it waits, so no number
 * of idle, slow or oversized connections delays the owner's authenticated
 * traffic by more than the few system calls they cost. */
#define WF_GATE_CAP 128
#define WF_GATE_BURST 32 /* connections accepted per wf_gate_service */
struct wf_gate_stats {
    uint64_t accepted, authenticated;
    uint64_t refused; /* wrong token, malformed or oversized frames, closed half-way */
    uint64_t expired; /* no HELLO before the deadline */
    uint64_t evicted; /* dropped, oldest first, to make room for a newer connection */
};
struct wf_gate {
    int lfd;
    const struct wf_token *token;
    int cap;
    double timeout_s;
    struct wf_auth *pend; /* in arrival order */
    int n;
    struct wf_gate_stats st;
    char last_refusal[256]; /* why the latest connection was turned away */
};
/* cap <= 0: WF_GATE_CAP; timeout_s <= 0: 5 s. */
int wf_gate_init(struct wf_gate *g, int lfd, const struct wf_token *t, int cap, double timeout_s);
/* Closes every connection in progress (not the listening socket). */
void wf_gate_free(struct wf_gate *g);
/* Fills pf with the entries to poll: the listening socket, then each
 * handshake; returns how many (1 + g->n <= 1 + g->cap). */
int wf_gate_pollfds(const struct wf_gate *g, struct pollfd *pf);
/* After poll() on what wf_gate_pollfds filled (revents set): calls
 * on_peer(arg, c, hello) for each connection authenticated, which owns *c
 * (copy it) and hello (wf_msg_free it) from then on. */
typedef void (*wf_gate_peer_fn)(void *arg, struct wf_conn *c, struct wf_msg *hello);
void wf_gate_service(struct wf_gate *g, const struct pollfd *pf, double now, wf_gate_peer_fn on_peer, void *arg);
/* Connector side: waits for the challenge and sends hello with its mac. */
int wf_auth_connect(struct wf_conn *c, const struct wf_token *t, struct wf_msg *hello, double timeout_s);

/* ---- processes ---- */
struct wf_run_opts {
    const char *job_path;
    int workers, pp, dp, micro_batches, schedule, threads; /* 0: from the job / defaults */
    const char *trace;                                     /* Chrome trace output, or NULL */
    int quiet;
    double heartbeat_timeout_s; /* default 5 */
    const char *resume;         /* a checkpoint to continue from, or NULL */
    /* elastic training: on with nodes_max > 0 (--nodes MIN:MAX) */
    int nodes_min, nodes_max;
    double settle_s;    /* a joined worker waits this long before the job scales up (default 2) */
    int max_recoveries; /* failures recovered per hour before the job fails (default 20) */
    int snapshot_every; /* steps between the stage copies workers keep for each other (default 10) */
};

/* The coordinator's event loop on a listening socket. With `run` set it
 * runs that one job (waiting for its workers) and returns its status;
 * otherwise it serves submitted jobs until interrupted. */
struct wf_coord_opts {
    int listen_fd;
    const struct wf_token *token;
    const struct wf_run_opts *run; /* NULL: serve */
    const int *child_pids;         /* weft run: the workers it started (checked for exit) */
    int n_children;
    const char *journal; /* serve: the job and membership journal; a running job found there is taken over */
};
int wf_coordinator(const struct wf_coord_opts *o);
/* Compiles the coordinator has done (always 0: workers compile). */
long wf_coordinator_compiles(void);

/* The worker agent: registers with host:port and runs what it is given.
 * With reconnect_s > 0, a worker that loses the coordinator (a crash, not a
 * SHUTDOWN or ABORT) leaves its node set, keeps its stage snapshots and
 * tries to register again for up to reconnect_s seconds, so that a
 * restarted coordinator (--journal) takes it over; 0: it exits at once. */
int wf_worker(const char *host, int port, const struct wf_token *token, int once, double reconnect_s);

/* "host:port" into host (heap, wf_free) and port. */
int wf_parse_hostport(const char *s, char **host, int *port);

/* weft run: a coordinator and N workers on loopback. */
int wf_run_local(const struct wf_run_opts *o, const char *self_exe);
/* weft submit / weft status against a running coordinator. */
/* A submitter that loses the coordinator watches the job again for up to
 * reconnect_s seconds (a restarted coordinator with --journal has it). */
int wf_submit(const char *host, int port, const struct wf_token *t, const struct wf_run_opts *o, double reconnect_s);
int wf_status(const char *host, int port, const struct wf_token *t);

#endif
