/*
 * comm: collectives over a full mesh of connections (struct wf_group).
 *
 * All-reduce of int64 is an exact, order-free sum (wrap-around addition is
 * associative and commutative), so every algorithm gives every rank the same
 * bits, and the choice between them is purely about speed:
 *
 * - direct: in round t = 1..p-1 each rank sends its buffer to rank r+t and
 *   receives from rank r-t. Every round pairs senders and receivers
 *   exactly, so one send and one receive in flight never deadlock. p-1
 *   copies of the data per rank, but the fewest message latencies.
 * - ring: reduce-scatter then all-gather around the ring, 2(p-1) steps of
 *   n/p elements, each split into chunks. The whole thing is one stream of
 *   chunk frames: the chunk sent at step s+1 is the one received (and added)
 *   at step s, and it goes out as soon as it is in, so the steps overlap.
 *   A rank sends to next and receives from prev in the same poll loop,
 *   which is what keeps p = 2 (next == prev) and every other size moving.
 *
 * Scratch memory lives on the stack (a chunk or two), so a collective does
 * not allocate: the training step's no-allocation rule holds with it.
 */
#include <stdio.h>
#include <string.h>

#include "comm_int.h"

/* Chunk of a ring step, and of one direct round (elements of int64). On
 * loopback 48 KiB beat both 32 and 64-256 KiB in CPU time and bandwidth
 * (bench/allreduce.sh): a frame then fits one 64 KiB loopback segment, so
 * it arrives with one wake-up, and it stays in L1/L2 between the receive,
 * the CRC and the add. It is also small enough for the stack. */
#define RING_CHUNK (48 * 1024 / 8)
#define DIRECT_CHUNK (48 * 1024 / 8)
/* The direct exchange wins up to one chunk per rank: with 2 and 4 ranks on
 * loopback it beat the ring from 4 to 48 KiB (by 2x at 4 ranks), and from
 * 64 KiB on the ring was as fast or faster (bench/ALLREDUCE.md). */
#define DIRECT_MAX_BYTES (48 * 1024)
/* Broadcast: the root sends to everyone below this, a pipelined chain above. */
#define BCAST_DIRECT_MAX (64 * 1024)
#define BCAST_CHUNK (48 * 1024)

static int check_group(const struct wf_group *g, const char *what) {
    if (!g || g->size < 1 || g->rank < 0 || g->rank >= g->size || (g->size > 1 && !g->peers))
        return wf_error(WF_ERR_INVALID, "%s: bad group (rank %d of %d)", what, g ? g->rank : -1, g ? g->size : 0);
    for (int i = 0; i < g->size; i++) {
        const struct wf_conn *c = g->peers ? g->peers[i] : NULL;
        if (i == g->rank) continue;
        if (!c) return wf_error(WF_ERR_INVALID, "%s: rank %d has no connection to rank %d", what, g->rank, i);
        if (c->fd < 0)
            return wf_error(WF_ERR_PEER, "%s: connection to %s is closed (after an earlier error)", what, c->name);
        if (c->rgot)
            return wf_error(WF_ERR_INVALID, "%s: %s has a partly received frame (a wf_recv timed out on it)", what,
                            c->name);
    }
    return WF_OK;
}

static void add_i64(int64_t *dst, const int64_t *src, size_t n) {
    /* unsigned: signed overflow is undefined, wrap-around is what we want */
    for (size_t i = 0; i < n; i++)
        dst[i] = (int64_t)((uint64_t)dst[i] + (uint64_t)src[i]);
}

/* Drives a sender and a receiver (either may be idle, both may use one
 * connection) until one of them completes. Returns bit 1 if tx finished,
 * bit 2 if rx finished, or a negative status. */
static int drive(struct wf_io *tx, int tx_on, struct wf_io *rx, int rx_on, double timeout_s, const char *what) {
    for (;;) {
        int done = 0, st, tst = 0;
        char tx_err[512] = "";
        if (tx_on && (tst = wf_io_step(tx, what)) > 0) done |= 1;
        if (tst < 0) snprintf(tx_err, sizeof tx_err, "%s", wf_errmsg());
        /* a failed send is reported after the receive is tried: when a rank dies, its downstream neighbour's
         * send may fail too (reset by a rank that gave up on it) while the dead rank's end of stream already
         * waits here; the receive names the rank that died */
        if (rx_on) {
            if ((st = wf_io_step(rx, what)) < 0) return st;
            if (st) done |= 2;
        }
        if (tst < 0) return wf_error(tst, "%s", tx_err);
        if (done) return done;
        struct wf_io *w[2] = {tx_on ? tx : NULL, rx_on ? rx : NULL};
        if ((st = wf_io_wait(w, 2, timeout_s, what))) return st;
    }
}

/* ---- direct exchange ---- */

struct fold {
    void (*fn)(struct fold *f, const void *data);
    int64_t *acc;
    size_t n;
};

static void fold_add(struct fold *f, const void *data) { add_i64(f->acc, data, f->n); }

/* Sends src[0..len) to every other rank and receives len bytes from every
 * other rank into scratch, folding each in as it arrives (f may be NULL). */
static int exchange_all(struct wf_group *g, int type, const char *what, const void *src, size_t len, void *scratch,
                        struct fold *f) {
    int p = g->size, r = g->rank;
    int ts = 1, rs = 1; /* next round to send in / receive in */
    int tx_on = 0, rx_on = 0;
    struct wf_io tx, rx;
    while (ts < p || rs < p || tx_on || rx_on) {
        if (!tx_on && ts < p) {
            wf_io_send(&tx, g->peers[(r + ts) % p], type, src, len);
            tx_on = 1;
        }
        if (!rx_on && rs < p) {
            wf_io_recv(&rx, g->peers[(r - rs + p) % p], type, scratch, len);
            rx_on = 1;
        }
        int st = drive(&tx, tx_on, &rx, rx_on, g->timeout_s, what);
        if (st < 0) return st;
        if (st & 1) {
            tx_on = 0;
            ts++;
            g->bytes += len;
        }
        if (st & 2) {
            rx_on = 0;
            rs++;
            if (f) f->fn(f, scratch);
        }
    }
    return WF_OK;
}

static int allreduce_direct(struct wf_group *g, int64_t *buf, size_t n) {
    int64_t scratch[DIRECT_CHUNK], acc[DIRECT_CHUNK];
    for (size_t b = 0; b < n; b += DIRECT_CHUNK) {
        size_t m = WF_MIN((size_t)DIRECT_CHUNK, n - b);
        /* buf is being sent while others' data arrive: sum into acc, copy back after */
        memcpy(acc, buf + b, m * 8);
        struct fold f = {fold_add, acc, m};
        int st = exchange_all(g, WF_MSG_ALLREDUCE, "allreduce (direct)", buf + b, m * 8, scratch, &f);
        if (st) return st;
        memcpy(buf + b, acc, m * 8);
    }
    return WF_OK;
}

/* ---- ring ---- */

struct ring {
    int p, r;
    size_t n, chunks; /* elements; chunks per segment */
};

/* Elements [*b, *e) of chunk k of segment s (segments differ by at most one). */
static void ring_chunk(const struct ring *R, int s, size_t k, size_t *b, size_t *e) {
    size_t sb = R->n * (size_t)s / (size_t)R->p, se = R->n * (size_t)(s + 1) / (size_t)R->p;
    size_t L = se - sb;
    *b = sb + L * k / R->chunks;
    *e = sb + L * (k + 1) / R->chunks;
}

/* Item i of the stream is chunk i % C of step i / C; at step s a rank sends
 * segment r - s and receives segment r - s - 1 (mod p). Steps 0..p-2 are
 * the reduce-scatter, p-1..2p-3 the all-gather. */
static void ring_item(const struct ring *R, size_t i, int rx, size_t *b, size_t *e) {
    int s = (int)(i / R->chunks);
    int seg = ((R->r - s - rx) % R->p + R->p) % R->p;
    ring_chunk(R, seg, i % R->chunks, b, e);
}

static int allreduce_ring(struct wf_group *g, int64_t *buf, size_t n) {
    static const char what[] = "allreduce (ring)";
    int p = g->size, r = g->rank;
    struct wf_conn *next = g->peers[(r + 1) % p], *prev = g->peers[(r + p - 1) % p];
    size_t seg_max = (n + (size_t)p - 1) / (size_t)p;
    struct ring R = {p, r, n, WF_MAX((size_t)1, (seg_max + RING_CHUNK - 1) / RING_CHUNK)};
    size_t total = 2 * (size_t)(p - 1) * R.chunks, reduce_items = (size_t)(p - 1) * R.chunks;
    size_t ti = 0, ri = 0; /* items sent / received so far */
    size_t rb = 0, re = 0; /* range of the receive in flight */
    int tx_on = 0, rx_on = 0;
    struct wf_io tx, rx;
    int64_t scratch[RING_CHUNK];
    while (ti < total || ri < total) {
        /* a chunk goes out once the previous step's copy of it is in (and added) */
        if (!tx_on && ti < total && (ti < R.chunks || ri + R.chunks > ti)) {
            size_t b, e;
            ring_item(&R, ti, 0, &b, &e);
            if (b == e) { /* n < p: empty chunks are skipped by both ends alike */
                ti++;
                continue;
            }
            wf_io_send(&tx, next, WF_MSG_ALLREDUCE, buf + b, (e - b) * 8);
            tx_on = 1;
        }
        if (!rx_on && ri < total) {
            ring_item(&R, ri, 1, &rb, &re);
            if (rb == re) {
                ri++;
                continue;
            }
            wf_io_recv(&rx, prev, WF_MSG_ALLREDUCE, ri < reduce_items ? scratch : buf + rb, (re - rb) * 8);
            rx_on = 1;
        }
        int st = drive(&tx, tx_on, &rx, rx_on, g->timeout_s, what);
        if (st < 0) return st;
        if (st & 1) {
            tx_on = 0;
            ti++;
            g->bytes += tx.len;
        }
        if (st & 2) {
            if (ri < reduce_items) add_i64(buf + rb, scratch, re - rb);
            rx_on = 0;
            ri++;
        }
    }
    return WF_OK;
}

int wf_allreduce_i64_algo(struct wf_group *g, int64_t *buf, size_t n, int algo) {
    int st = check_group(g, "allreduce");
    if (st) return st;
    if (g->size == 1 || n == 0) return WF_OK;
    if (algo == 0) algo = n * 8 <= DIRECT_MAX_BYTES || n < (size_t)g->size ? 1 : 2;
    if (algo == 1) return allreduce_direct(g, buf, n);
    if (algo == 2) return allreduce_ring(g, buf, n);
    return wf_error(WF_ERR_INVALID, "allreduce: unknown algorithm %d (0 auto, 1 direct, 2 ring)", algo);
}

int wf_allreduce_i64(struct wf_group *g, int64_t *buf, size_t n) { return wf_allreduce_i64_algo(g, buf, n, 0); }

/* ---- broadcast ---- */

static int bcast_direct(struct wf_group *g, int root, uint8_t *buf, size_t n) {
    static const char what[] = "broadcast";
    int p = g->size;
    struct wf_io io;
    if (g->rank != root) {
        wf_io_recv(&io, g->peers[root], WF_MSG_BCAST, buf, n);
        int st = drive(NULL, 0, &io, 1, g->timeout_s, what);
        return st < 0 ? st : WF_OK;
    }
    for (int t = 1; t < p; t++) {
        wf_io_send(&io, g->peers[(root + t) % p], WF_MSG_BCAST, buf, n);
        int st = drive(&io, 1, NULL, 0, g->timeout_s, what);
        if (st < 0) return st;
        g->bytes += n;
    }
    return WF_OK;
}

/* A chain root -> root+1 -> ... in chunks: each rank forwards a chunk as
 * soon as it has it, so the time is about one copy of n plus p hops. */
static int bcast_chain(struct wf_group *g, int root, uint8_t *buf, size_t n) {
    static const char what[] = "broadcast (chain)";
    int p = g->size, q = (g->rank - root + p) % p; /* position in the chain */
    struct wf_conn *prev = q > 0 ? g->peers[(g->rank + p - 1) % p] : NULL;
    struct wf_conn *next = q < p - 1 ? g->peers[(g->rank + 1) % p] : NULL;
    size_t C = (n + BCAST_CHUNK - 1) / BCAST_CHUNK;
    size_t ti = next ? 0 : C, ri = prev ? 0 : C;
    int tx_on = 0, rx_on = 0;
    struct wf_io tx, rx;
    while (ti < C || ri < C) {
        if (!tx_on && ti < C && ri > ti) {
            size_t b = ti * BCAST_CHUNK;
            wf_io_send(&tx, next, WF_MSG_BCAST, buf + b, WF_MIN((size_t)BCAST_CHUNK, n - b));
            tx_on = 1;
        }
        if (!rx_on && ri < C) {
            size_t b = ri * BCAST_CHUNK;
            wf_io_recv(&rx, prev, WF_MSG_BCAST, buf + b, WF_MIN((size_t)BCAST_CHUNK, n - b));
            rx_on = 1;
        }
        int st = drive(&tx, tx_on, &rx, rx_on, g->timeout_s, what);
        if (st < 0) return st;
        if (st & 1) {
            tx_on = 0;
            ti++;
            g->bytes += tx.len;
        }
        if (st & 2) {
            rx_on = 0;
            ri++;
        }
    }
    return WF_OK;
}

int wf_broadcast(struct wf_group *g, int root, void *buf, size_t n) {
    int st = check_group(g, "broadcast");
    if (st) return st;
    if (root < 0 || root >= g->size)
        return wf_error(WF_ERR_INVALID, "broadcast: root %d is not a rank of a group of %d", root, g->size);
    if (g->size == 1 || n == 0) return WF_OK;
    if (n <= BCAST_DIRECT_MAX) return bcast_direct(g, root, buf, n);
    return bcast_chain(g, root, buf, n);
}

/* Nobody returns before it has heard from everyone, and everyone sends only
 * once it has arrived. */
int wf_barrier(struct wf_group *g) {
    int st = check_group(g, "barrier");
    if (st || g->size == 1) return st;
    uint8_t none[1];
    return exchange_all(g, WF_MSG_BARRIER, "barrier", none, 0, none, NULL);
}
