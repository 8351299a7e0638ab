/*
 * weft comm layer: framed messages over TCP, bounded waits, byte buffers
 * with bounded decoding, and collectives over a group of connections.
 * Uses only the core layer.
 *
 * A frame is a 16-byte header and a payload (docs/protocol.md):
 *
 *     OFFSET SIZE MEANING
 *     0      4    magic "WEFT" (0x54464557 little-endian)
 *     4      2    protocol version (WF_PROTO_VERSION)
 *     6      2    message type
 *     8      4    payload length in bytes (<= the receiver's limit)
 *     12     4    CRC-32 (zlib polynomial) of header bytes 0..11 and the payload
 *
 * All integers are little-endian. Every function that waits takes a timeout
 * in seconds and fails with WF_ERR_TIMEOUT naming the peer when it passes;
 * a closed or reset connection fails with WF_ERR_PEER naming the peer.
 *
 *     struct wf_conn c;
 *     wf_tcp_connect(&c, "127.0.0.1", port, "coordinator", 5.0);
 *     wf_send(&c, MSG_HELLO, buf, len, 5.0);
 *     int type; const void *p; size_t n;
 *     wf_recv(&c, &type, &p, &n, 5.0);   // p is valid until the next wf_recv on c
 */
#ifndef WEFT_COMM_H
#define WEFT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "weft/core.h"

#define WF_FRAME_MAGIC 0x54464557u /* "WEFT" */
#define WF_SHM_DESC 24             /* bytes of a shared-memory block descriptor (below) */
/* 2: elastic jobs (ASSIGN, STEP_LOSS and SUBMIT grew); 3: SUBMIT attach; 4: shared memory; 5: ASSIGN names the
 * lengths input */
#define WF_PROTO_VERSION 5
#define WF_FRAME_HDR 16
#define WF_FRAME_MAX_DEFAULT (1u << 30) /* default payload limit: 1 GiB */
/* Message types from here to 0xFFFF are the comm layer's own (collectives). */
#define WF_MSG_COMM_FIRST 0xFF00

/* ---- frame header codec (pure; fuzzed) ---- */
struct wf_frame_hdr {
    uint16_t version, type;
    uint32_t len, crc;
};
void wf_frame_encode_hdr(uint8_t out[WF_FRAME_HDR], int type, const void *payload, size_t len);
/* Checks magic, version and len <= max_len; fills h. WF_ERR_CORRUPT with a
 * message saying which field is wrong. */
int wf_frame_decode_hdr(const uint8_t in[WF_FRAME_HDR], uint32_t max_len, struct wf_frame_hdr *h);
/* Checks the CRC of a decoded header against its payload. */
int wf_frame_check(const uint8_t in[WF_FRAME_HDR], const struct wf_frame_hdr *h, const void *payload);
uint32_t wf_crc32(uint32_t crc, const void *data, size_t n);

/* ---- connections ---- */
struct wf_conn {
    int fd;           /* non-blocking socket, -1 when closed */
    char name[96];    /* "worker 2 (127.0.0.1:40211)": used in every message about it */
    uint32_t max_len; /* payload limit for wf_recv (default WF_FRAME_MAX_DEFAULT) */
    uint8_t *rbuf;    /* receive buffer (owned, grows to the largest frame) */
    size_t rcap;
    uint64_t bytes_sent, bytes_recv;
    size_t rgot;        /* bytes of the frame in progress already in rbuf: a timed-out wf_recv resumes there */
    struct wf_shm *shm; /* same-machine peer: large frames go through shared memory (wf_shm_offer_send) */
    /* Optional per-type payload limit under max_len, checked from the header before anything is
     * allocated for the payload: returns the most bytes a frame of `type` can hold and sets *name
     * to the type's name for the error (NULL: max_len for every type). The comm layer's own types
     * (>= WF_MSG_COMM_FIRST) have limits of their own whatever this says. Copied by wf_conn_dup. */
    uint32_t (*type_max)(int type, const char **name);
};

/* Listens on host:port (port 0 = any free port); *port_out gets the port. */
int wf_tcp_listen(const char *host, int port, int *fd_out, int *port_out);
/* Waits up to timeout_s for a connection on a listening socket. */
int wf_tcp_accept(int lfd, struct wf_conn *c, const char *name, double timeout_s);
/* Connects, retrying refused connections until timeout_s passes. */
int wf_tcp_connect(struct wf_conn *c, const char *host, int port, const char *name, double timeout_s);
/* Wraps a connected stream socket (e.g. one end of socketpair()); makes it
 * non-blocking. c owns fd from then on, also on failure. */
int wf_conn_from_fd(struct wf_conn *c, int fd, const char *name);
void wf_conn_close(struct wf_conn *c);
/* A second connection on c's socket (dup) and shared memory, for another
 * thread to send on while one receives; closed on its own. */
int wf_conn_dup(struct wf_conn *dst, const struct wf_conn *c);
void wf_conn_set_name(struct wf_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int wf_send(struct wf_conn *c, int type, const void *payload, size_t len, double timeout_s);
/* One frame from two pieces (a small header and a large body) without copying. */
int wf_send2(struct wf_conn *c, int type, const void *a, size_t alen, const void *b, size_t blen, double timeout_s);
/* A frame sent in two goes, so that a thread that must not wait hands the
 * kernel what it takes now and leaves the rest to another: wf_send2_begin
 * sends the header and as much of a and b as the socket takes at once,
 * without waiting, and returns 1 when that was all, 0 when some is left, or
 * a negative error; wf_send2_rest sends the rest, given the same a and b (or
 * byte-identical copies), and returns WF_OK. Nothing else may be sent on c
 * in between, and the rest must come from another thread or before this
 * end waits to receive: the peer may need it (a frame through shared memory
 * goes in parts) before it sends anything. */
struct wf_send_part {
    uint8_t hdr[WF_FRAME_HDR];
    uint8_t desc[WF_SHM_DESC]; /* the socket's payload when the frame's goes through shared memory */
    size_t done, total;        /* bytes on the socket of the frame (or of its part's descriptor), header included */
    size_t len;                /* the frame's payload bytes */
    size_t off;                /* through shared memory: payload bytes in the ring so far */
    int type;
    int shm; /* 0: all on the socket; 1: through shared memory, next part to copy in; 2: its descriptor to send */
};
int wf_send2_begin(struct wf_conn *c, struct wf_send_part *p, int type, const void *a, size_t alen, const void *b,
                   size_t blen);
int wf_send2_rest(struct wf_conn *c, struct wf_send_part *p, const void *a, size_t alen, const void *b, size_t blen,
                  double timeout_s);
/* Receives one whole frame; *payload points into c's buffer until the next wf_recv. */
int wf_recv(struct wf_conn *c, int *type, const void **payload, size_t *len, double timeout_s);
/* Receives one frame whose payload is expected to be hlen bytes then dlen
 * bytes, reading them straight into head and dst (no copy through c's
 * buffer); returns WF_OK. A frame of any other length is read whole into c's
 * buffer instead, *payload and *len point to it and 1 is returned, so that the
 * caller can decode and name what came. The checksum is verified either way;
 * a timeout in the middle of the payload closes the connection. */
int wf_recv_into(struct wf_conn *c, int *type, void *head, size_t hlen, void *dst, size_t dlen, const void **payload,
                 size_t *len, double timeout_s);
/* Waits until one of conns (NULL entries skipped) or extra fd is readable;
 * returns its index (n for extra_fd) or WF_ERR_TIMEOUT. A frame already
 * buffered counts as readable. */
int wf_poll_readable(struct wf_conn **conns, int n, int extra_fd, double timeout_s);

/* ---- shared memory between two processes on one machine (src/comm/shm.c) ----
 * Once set up on a connection, frames of WF_SHM_MIN bytes or more that fit
 * its ring travel through shared memory and only a descriptor through the
 * socket; wf_send*, wf_recv and wf_recv_into do this by themselves. Set-up,
 * at the same point of both ends' protocol:
 *
 *     offering end                              answering end
 *     wf_shm_offer_send(c, R, &pending, t)
 *                                               wf_shm_answer(c, allow, t)
 *     wf_shm_offer_finish(c, pending, t)
 *
 * (The offer is small and never waits for the peer, so two ends may each
 * offer on one connection before answering on another.) R = 0 offers
 * nothing; allow = 0 declines. wf_shm_offer_send returns WF_OK or an error;
 * the other two return 1 when the connection now uses shared memory, 0 when
 * it stays on the socket alone (another machine, no /dev/shm room: logged
 * at debug level), or a negative error. Frame types of the comm layer's own
 * (>= WF_MSG_COMM_FIRST) never go through shared memory. */
#define WF_SHM_MIN (32u << 10)
struct wf_shm;
int wf_shm_offer_send(struct wf_conn *c, uint64_t ring_bytes, struct wf_shm **pending, double timeout_s);
int wf_shm_answer(struct wf_conn *c, int allow, double timeout_s);
int wf_shm_offer_finish(struct wf_conn *c, struct wf_shm *pending, double timeout_s);
/* Drops an offer that will not be finished (an error in between). */
void wf_shm_cancel(struct wf_shm *pending);
/* The descriptor of a block (payload of a WF_MSG_SHM_BLOCK frame, 24
 * bytes). A frame goes in parts of at most WF_SHM_PART bytes, each
 * announced as soon as it is in the ring, so that the receiver copies one
 * part out while the sender copies the next in. A descriptor gives where
 * the part starts in the ring (bytes since the ring's start, never
 * wrapping), its length and CRC-32, the frame's type and whole length, and
 * whether more parts follow. Decoding checks it against the ring (pure;
 * fuzzed). */
#define WF_SHM_PART (256u << 10)
struct wf_shm_desc {
    uint64_t pos;
    uint32_t len, crc, total;
    uint16_t type;
    uint8_t more;
};
void wf_shm_desc_encode(uint8_t out[WF_SHM_DESC], const struct wf_shm_desc *d);
int wf_shm_desc_decode(const uint8_t *p, size_t n, uint64_t ring_bytes, uint64_t expect, uint32_t max_len,
                       struct wf_shm_desc *d);

/* ---- byte buffers: little-endian writer and bounded reader ---- */
struct wf_wbuf {
    uint8_t *p;
    size_t len, cap;
    int oom; /* sticky: an allocation failed */
};
void wf_wbuf_init(struct wf_wbuf *b);
void wf_wbuf_free(struct wf_wbuf *b);
void wf_put_u8(struct wf_wbuf *b, uint8_t v);
void wf_put_u32(struct wf_wbuf *b, uint32_t v);
void wf_put_u64(struct wf_wbuf *b, uint64_t v);
void wf_put_f64(struct wf_wbuf *b, double v);
void wf_put_bytes(struct wf_wbuf *b, const void *p, size_t n);
void wf_put_str(struct wf_wbuf *b, const char *s); /* u32 length + bytes */

struct wf_rbuf {
    const uint8_t *p;
    size_t len, pos;
    int err; /* sticky: read past the end or bad string */
};
void wf_rbuf_init(struct wf_rbuf *r, const void *p, size_t len);
uint8_t wf_get_u8(struct wf_rbuf *r);
uint32_t wf_get_u32(struct wf_rbuf *r);
uint64_t wf_get_u64(struct wf_rbuf *r);
double wf_get_f64(struct wf_rbuf *r);
const void *wf_get_bytes(struct wf_rbuf *r, size_t n); /* NULL and err on overrun */
/* Heap copy (wf_free) of a string of at most max_len bytes without NUL
 * inside; NULL and err otherwise. */
char *wf_get_str(struct wf_rbuf *r, size_t max_len);

/* ---- collectives over a group ----
 * peers[i] is the connection to rank i (NULL for self); every pair of ranks
 * of the group is connected. All ranks call collectives in the same order.
 * Sums of int64 are exact and associative, so every algorithm gives the
 * same bits on every rank (DESIGN.md §4 rule 3). */
struct wf_group {
    int rank, size;
    struct wf_conn **peers;
    double timeout_s; /* per wait */
    uint64_t bytes;   /* payload bytes sent by this rank */
};
/* In-place sum over the group; picks the algorithm by size (small: direct
 * exchange / recursive doubling; large: ring reduce-scatter + all-gather). */
int wf_allreduce_i64(struct wf_group *g, int64_t *buf, size_t n);
/* Same with the algorithm forced: 0 auto, 1 direct, 2 ring (benchmarks, tests). */
int wf_allreduce_i64_algo(struct wf_group *g, int64_t *buf, size_t n, int algo);
/* Every rank gets root's buffer. */
int wf_broadcast(struct wf_group *g, int root, void *buf, size_t n);
/* Blocks until every rank has arrived. */
int wf_barrier(struct wf_group *g);

/* Background reducer: overlaps all-reduce of finished gradient buckets with
 * the rest of the backward pass. Buckets must be submitted in the same order
 * on every rank; the reducer thread owns the group's connections between
 * wf_reducer_begin and wf_reducer_wait. */
struct wf_reducer;
int wf_reducer_create(struct wf_reducer **r, struct wf_group *g);
void wf_reducer_destroy(struct wf_reducer *r);
void wf_reducer_begin(struct wf_reducer *r);
/* Queues buf[0..n) for an in-place sum. */
int wf_reducer_submit(struct wf_reducer *r, int64_t *buf, size_t n);
/* Waits for every queued bucket; returns the first error. */
int wf_reducer_wait(struct wf_reducer *r);
/* Seconds the reducer spent communicating since create. */
double wf_reducer_busy_seconds(const struct wf_reducer *r);

#endif
