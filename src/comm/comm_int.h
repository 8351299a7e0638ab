/*
 * comm layer, private: deadlines, little-endian helpers, socket waits and
 * the non-blocking frame engine the collectives are built on. Not for use
 * outside src/comm.
 */
#ifndef WEFT_COMM_INT_H
#define WEFT_COMM_INT_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "weft/comm.h"

/* Frame types the comm layer sends itself (inside WF_MSG_COMM_FIRST..). */
#define WF_MSG_ALLREDUCE 0xFF01
#define WF_MSG_BCAST 0xFF02
#define WF_MSG_BARRIER 0xFF03
#define WF_MSG_SHM_BLOCK 0xFF04  /* a frame whose payload is in shared memory: its descriptor */
#define WF_MSG_SHM_OFFER 0xFF05  /* u64 ring bytes (0: none), u32 16 + nonce, str name (or why none) */
#define WF_MSG_SHM_ANSWER 0xFF06 /* u8 yes, str why not */

/* ---- little-endian ---- */
static inline void wf_le16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void wf_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t wf_rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t wf_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- time ---- */
/* A deadline timeout_s from now; a negative timeout never passes. */
double wf_deadline(double timeout_s);
/* Milliseconds left until deadline for poll(): rounded up, -1 if none. */
int wf_ms_left(double deadline);
/* poll() until deadline, restarting on EINTR with the time left.
 * Returns the number of ready entries, 0 on timeout, -errno on failure. */
int wf_poll_until(struct pollfd *fds, nfds_t n, double deadline);

/* Header for a payload given as iovecs (wf_send2 and the engine). */
void wf_frame_encode_hdr_iov(uint8_t out[WF_FRAME_HDR], int type, const struct iovec *iov, int n);

/* Closes the socket but keeps the name and buffer: after a half-sent or
 * malformed frame the byte stream cannot be resynchronized. */
void wf_conn_break(struct wf_conn *c);

/* ---- shared memory (shm.c) ---- */
struct wf_shm *wf_shm_retain(struct wf_shm *s);
void wf_shm_release(struct wf_shm *s);
/* Whether a payload of n bytes goes through c's shared memory. */
int wf_shm_fits(const struct wf_shm *s, size_t n);
/* Copies bytes [off, off + n) of the concatenation a|b into the ring as one
 * part of a frame and writes its descriptor: 1, or 0 with nowait when the
 * ring has no room yet; otherwise waits for room until timeout_s (the peer
 * closing ends the wait). */
int wf_shm_put(struct wf_conn *c, int type, const void *a, size_t alen, const void *b, size_t blen, size_t off,
               size_t n, int nowait, double timeout_s, uint8_t desc[WF_SHM_DESC]);
/* Checks the descriptor payload of a WF_MSG_SHM_BLOCK frame (breaks c if bad). */
int wf_shm_next(struct wf_conn *c, const void *dp, size_t dn, struct wf_shm_desc *d);
/* Copies a part out to bytes [off, off + d->len) of head|dst (head hlen
 * bytes, dst the rest of the frame), frees its room, checks its CRC. */
int wf_shm_take(struct wf_conn *c, const struct wf_shm_desc *d, void *head, size_t hlen, void *dst, size_t off);

/* ---- the frame engine: one frame moving on one connection ----
 * Collectives keep one or a few of these in flight and make progress on all
 * of them from one loop with poll(), so sending to one peer and receiving
 * from another (or the same) never waits on each other. A received payload
 * lands directly in the caller's memory; its length and type are known in
 * advance, so one recvmsg can take header and payload together. */
struct wf_io {
    struct wf_conn *c;
    int rx;                    /* 1: receiving, 0: sending */
    int type;                  /* frame type sent, or expected */
    uint8_t hdr[WF_FRAME_HDR]; /* header sent, or received */
    struct iovec iov[2];       /* what is left to move: header, payload */
    int iov_i;                 /* first iovec not yet finished */
    size_t left;               /* bytes of header + payload still to move */
    size_t len;                /* payload bytes */
    int hdr_ok;                /* rx: the header has been checked */
};

/* Starts sending a frame of type with payload p[0..len) (CRC computed now). */
void wf_io_send(struct wf_io *io, struct wf_conn *c, int type, const void *p, size_t len);
/* Starts receiving a frame that must have this type and exactly len bytes, into dst. */
void wf_io_recv(struct wf_io *io, struct wf_conn *c, int type, void *dst, size_t len);
/* Moves bytes until the frame is done (1) or the socket would block (0);
 * negative status on a closed or broken connection or a bad frame (the
 * message names the peer and what the collective `what` expected). */
int wf_io_step(struct wf_io *io, const char *what);
/* Waits until one of the unfinished ios (NULL entries skipped) can move,
 * at most timeout_s. WF_ERR_TIMEOUT names the peer waited for. */
int wf_io_wait(struct wf_io **ios, int n, double timeout_s, const char *what);

#endif
