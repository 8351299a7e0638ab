/*
 * cluster layer, private: the coordinator's state, shared by its event
 * loop (coordinator.c) and its node controller for elastic jobs (elastic.c).
 */
#ifndef WEFT_COORD_INT_H
#define WEFT_COORD_INT_H

#include <stdint.h>
#include <stdio.h>

#include "weft/cluster.h"
#include "weft/compile.h"
#include "weft/job.h"
#include "weft/model.h"

#include "cluster_int.h"

#define MAX_NODES WF_MAX_WORKERS
#define MAX_CLIENTS 16
#define LOSS_RING 64

struct node {
    struct wf_conn c;
    int used, id;
    char host[64];
    int port, pid, cores;
    double last_seen;
    int64_t step;
    char activity[200];
    int slot;      /* worker index in the running job, -1 idle */
    double t_join; /* when it registered */
};

struct client {
    struct wf_conn c;
    int used, watching;
};

enum { J_NONE, J_WAITING, J_COMPILING, J_RUNNING, J_DONE, J_FAILED, J_RECOVERING, J_HOLD };
enum { R_NONE, R_STOPPING, R_FETCHING };                 /* a recovery's phase */
enum { SRC_INITIAL, SRC_DISK, SRC_PEERS, SRC_RETAINED }; /* where a new node set's state comes from */
#define MAX_HISTORY 64

/* One change of the node set: a failure recovered, workers joining, or a
 * restarted coordinator taking the job over. */
struct change {
    int failure;  /* restores from snapshots (a failure or a takeover); else workers joined */
    int takeover; /* a restarted coordinator took the job over */
    char cause[256];
    uint32_t from_version, to_version;
    int64_t restored; /* the step the new set started from */
    int src;
    long replayed;      /* steps done again */
    long high_water;    /* steps done when the old set stopped */
    double t0, secs;    /* detected (monotonic); detection -> first new step */
    double wall0, wall; /* the same, as Unix times */
    int closed;
};

/* A node set: its version, layout and members (node pids by rank). */
struct setrec {
    uint32_t version;
    int S, D, n;
    int64_t step;
    int pid[MAX_NODES];
    double wall;
};

/* A snapshot a stopped worker holds: (stage, step) of the last set. */
struct inv_ent {
    int ni, stage;
    int64_t step;
};

struct job {
    int state, id;
    struct wf_job job;
    struct wf_model model;
    char *model_text;
    struct wf_partition part;
    int S, D, K, sched, threads, trace, n;
    int node[MAX_NODES]; /* node index per worker slot */
    int compiled, done;
    double t_assign, t_start;
    long steps_per_epoch, total, n_train;
    struct {
        int64_t step;
        int got;
        double *v;
    } loss[LOSS_RING];
    int *pstage;      /* per parameter of part.g: its stage */
    int64_t *poff;    /* per parameter: offset in its stage's flat vector */
    int64_t *sfloats; /* per stage: floats in its flat vector */
    int64_t state_step;
    int state_got;
    int slots; /* optimizer slots */
    FILE *metrics;
    char *ckpt_path;
    int client; /* watching client, -1: print here */
    double last_print;
    long steps_seen;
    double last_loss, test_acc, test_loss;
    int fail_prio;
    double fail_at;
    char fail_msg[1024];
    float **state_buf; /* per stage: the last STATE received */
    struct wf_trace_ev **tr;
    long *ntr;
    struct {
        double compute, comm, idle;
        long live, steps;
        int finished;
    } * wstats;
    int quiet;
    int *pidx;         /* per parameter: its index within its stage */
    int *sparams;      /* per stage: parameters */
    double *clip_vals; /* per parameter: this step's sum of squared gradients */
    int64_t clip_step;
    int clip_got;
    int reported;    /* job_finish has run */
    long steps_done; /* steps whose loss is in */
    long start_step; /* the step the job started from (a resumed job's checkpoint) */
    /* elastic: the node controller (elastic.c) */
    int elastic, nmin, nmax, max_rec, snap_every;
    double settle, t_submit;
    uint32_t version; /* the node set's version: 1 for the first set, +1 for each new one */
    int S0;           /* the stages the job asked for: a new set has at most as many */
    char *resume0;    /* the job's own resume checkpoint, or NULL */
    int rstate;
    char stopping[MAX_NODES]; /* per node: its STOPPED is awaited */
    struct inv_ent *inv;
    int ninv, invcap;
    int64_t *goff;   /* per parameter of part.g: offset in the whole-model vector */
    int64_t gfloats; /* floats in the whole-model vector */
    float *W;        /* whole-model state (parameters, then each slot) at W_step */
    int have_W;
    int64_t W_step, fetch_step;
    int *fetch_from; /* per stage: the node asked for its snapshot */
    char *fetch_got;
    int src;           /* where the next set's state comes from */
    int64_t ckpt_step; /* the step of the last checkpoint written, -1 none */
    long logged;       /* steps with a metrics line */
    int evals_logged;  /* epochs whose evaluation is logged */
    double t_set;      /* when the current set started */
    struct change ch[MAX_HISTORY];
    int nch, ch_open; /* ch_open: index of the change not yet closed, -1 */
    struct setrec sets[MAX_HISTORY];
    int nsets;
    double fail_times[MAX_HISTORY]; /* failures recovered, for the cap per hour */
    int nfail_times;
    uint32_t *ids;     /* per step: the batch's sample ids, as reported by the last stage */
    uint32_t *ids_set; /* per step: the node-set version that committed it (0: not yet) */
    double *loss_all;  /* per step: its loss, to check a replayed step against */
    double *step_t;    /* per step: time_s and samples_per_s of its metrics line (2 each) */
    long replay_checked, replay_mismatch;
    /* a restarted coordinator taking the job over (journal.c) */
    int takeover;          /* waiting for the last set's workers to register again */
    double takeover_until; /* ... at most until then */
    struct wf_run_opts opts;
    char *opts_path, *opts_resume; /* what opts points to */
};

struct coord {
    const struct wf_coord_opts *o;
    int lfd;
    struct wf_gate gate; /* new connections until they authenticate */
    uint64_t gate_told;  /* turned-away connections already reported */
    double gate_told_at;
    struct node nodes[MAX_NODES];
    int next_id;
    struct client clients[MAX_CLIENTS];
    struct job job;
    int next_job;
    double hb_timeout;
    FILE *journal; /* --journal: the job's records, one line each */
    char *jl_buf;  /* a step record being written */
    size_t jl_cap;
};

/* coordinator.c */
void co_emit(struct coord *co, struct job *jb, int progress, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void co_job_fail(struct job *jb, int prio, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *co_node_desc(const struct coord *co, const struct job *jb, int ni, char *buf, size_t n);
void co_drop_node(struct coord *co, int ni);
int co_idle_nodes(const struct coord *co);
/* The first n idle workers (by node index) into nodes; returns how many. */
int co_pick_idle(const struct coord *co, int n, int *nodes);
/* Builds the partition for S stages (a subset of the job's split points, or
 * balanced ones) and where each parameter lives; sizes the per-worker
 * tables for D replicas. */
int co_job_plan(struct job *jb, int S, int D);
/* Sends each chosen node its ASSIGN (and, elastic, its RESTORE). */
int co_assign(struct coord *co, struct job *jb, const int *nodes);
/* 1 if rank w of the current set is still connected as that rank. */
int co_member_ok(const struct coord *co, const struct job *jb, int w);

double co_wall(void); /* Unix time */
/* A step's line in the metrics file. */
void co_metrics_step(struct job *jb, int64_t step, double loss, double sps, double time_s);
/* Sets up a job from its options (job file, layout, policies). */
int co_job_setup(struct job *jb, const struct wf_run_opts *o);
void co_job_free(struct job *jb);

/* journal.c: --journal FILE, so that a restarted coordinator takes over the
 * running job. One record per line, each with a checksum; docs/formats.md. */
int jl_begin(struct coord *co, struct job *jb); /* a new job: the file starts again */
void jl_rec(struct coord *co, int sync, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void jl_step(struct coord *co, struct job *jb, int64_t step);
void jl_change(struct coord *co, struct job *jb, int k);
void jl_end(struct coord *co, struct job *jb, int ok);
/* At start: a job the journal holds that had not ended is taken over
 * (elastic), or reported as lost (not elastic). Returns 1 if taken over. */
int jl_takeover(struct coord *co, const char *path);

/* elastic.c: the node controller */
int el_setup(struct job *jb);
void el_free(struct job *jb);
void el_member_lost(struct coord *co, struct job *jb, int ni, const char *cause);
void el_on_stopped(struct coord *co, struct job *jb, int ni, const struct wf_msg *m);
void el_on_snap(struct coord *co, struct job *jb, int ni, const struct wf_msg *m);
void el_tick(struct coord *co, struct job *jb, double now);
void el_step_done(struct coord *co, struct job *jb, long done);
size_t el_status(const struct coord *co, const struct job *jb, char *buf, size_t n);
void el_write_samples(struct job *jb);
const char *el_src_name(int src);
/* A restarted coordinator: the job waits for its workers to register again. */
void el_takeover_begin(struct coord *co, struct job *jb, double wait_s, const char *journal);
/* A worker registered again (HELLO link 1) while the job is taken over. */
void el_rejoined(struct coord *co, struct job *jb, int ni);

#endif
