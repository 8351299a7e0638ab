/*
 * comm: the frame engine under the collectives. A struct wf_io is one frame
 * moving on one connection; wf_io_step moves what the socket takes without
 * blocking, wf_io_wait polls every unfinished io at once. Driving sends and
 * receives from one loop is what makes a ring deadlock-free: nobody blocks
 * in a send while its neighbour blocks in a send to it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>

#include "comm_int.h"

#define SPIN_S 30e-6 /* how long wf_io_wait polls without sleeping */

void wf_io_send(struct wf_io *io, struct wf_conn *c, int type, const void *p, size_t len) {
    memset(io, 0, sizeof *io);
    io->c = c;
    io->type = type;
    io->len = len;
    io->iov[0] = (struct iovec){io->hdr, WF_FRAME_HDR};
    io->iov[1] = (struct iovec){(void *)p, len};
    wf_frame_encode_hdr_iov(io->hdr, type, io->iov + 1, 1);
    io->left = WF_FRAME_HDR + len;
}

void wf_io_recv(struct wf_io *io, struct wf_conn *c, int type, void *dst, size_t len) {
    memset(io, 0, sizeof *io);
    io->c = c;
    io->rx = 1;
    io->type = type;
    io->len = len;
    io->iov[0] = (struct iovec){io->hdr, WF_FRAME_HDR};
    io->iov[1] = (struct iovec){dst, len};
    io->left = WF_FRAME_HDR + len;
}

static void advance(struct wf_io *io, size_t k) {
    io->left -= k;
    while (k > 0) {
        struct iovec *v = &io->iov[io->iov_i];
        size_t t = WF_MIN(k, v->iov_len);
        v->iov_base = (uint8_t *)v->iov_base + t;
        v->iov_len -= t;
        k -= t;
        if (v->iov_len == 0 && io->iov_i < 1) io->iov_i++;
    }
}

/* The header of a collective's frame is checked as soon as it is in, so a
 * peer that is out of step is named before its payload is trusted. */
static int check_hdr(struct wf_io *io, const char *what) {
    struct wf_frame_hdr h;
    int st = wf_frame_decode_hdr(io->hdr, UINT32_MAX, &h);
    if (st) {
        wf_conn_break(io->c);
        return wf_error_prefix(st, "%s: from %s", what, io->c->name);
    }
    if (h.type != io->type || h.len != io->len) {
        wf_conn_break(io->c);
        return wf_error(WF_ERR_PEER,
                        "%s: %s sent a type 0x%x frame of %u bytes where type 0x%x of %zu bytes was due "
                        "(ranks calling collectives in different orders or sizes?)",
                        what, io->c->name, h.type, h.len, io->type, io->len);
    }
    io->hdr_ok = 1;
    return WF_OK;
}

static int finish_rx(struct wf_io *io, const char *what) {
    struct wf_frame_hdr h = {.version = WF_PROTO_VERSION, .type = (uint16_t)io->type, .len = (uint32_t)io->len};
    h.crc = wf_rd32(io->hdr + 12);
    const uint8_t *payload = (const uint8_t *)io->iov[1].iov_base - io->len; /* advanced to its end */
    int st = wf_frame_check(io->hdr, &h, payload);
    if (st) {
        wf_conn_break(io->c);
        return wf_error_prefix(st, "%s: from %s", what, io->c->name);
    }
    io->c->bytes_recv += WF_FRAME_HDR + io->len;
    return 1;
}

static int io_error(struct wf_io *io, int e, const char *what) {
    wf_conn_break(io->c);
    if (io->rx && e == 0) return wf_error(WF_ERR_PEER, "%s: %s closed the connection", what, io->c->name);
    return wf_error(WF_ERR_PEER, "%s: connection to %s lost while %s: %s", what, io->c->name,
                    io->rx ? "receiving" : "sending", strerror(e));
}

int wf_io_step(struct wf_io *io, const char *what) {
    if (io->left == 0) return 1;
    if (io->c->fd < 0)
        return wf_error(WF_ERR_PEER, "%s: connection to %s is closed (after an earlier error)", what, io->c->name);
    while (io->left > 0) {
        struct msghdr m = {.msg_iov = io->iov + io->iov_i, .msg_iovlen = (size_t)(2 - io->iov_i)};
        ssize_t k = io->rx ? recvmsg(io->c->fd, &m, 0) : sendmsg(io->c->fd, &m, MSG_NOSIGNAL);
        if (k > 0) {
            advance(io, (size_t)k);
            if (io->rx && !io->hdr_ok && io->left <= io->len) {
                int st = check_hdr(io, what);
                if (st) return st;
            }
            continue;
        }
        if (k == 0) return io_error(io, 0, what); /* only recvmsg returns 0 here: end of stream */
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        return io_error(io, errno, what);
    }
    if (io->rx) return finish_rx(io, what);
    io->c->bytes_sent += WF_FRAME_HDR + io->len;
    return 1;
}

int wf_io_wait(struct wf_io **ios, int n, double timeout_s, const char *what) {
    struct pollfd stack_pfd[8], *pfd = stack_pfd;
    struct wf_io *stack_who[8], **who = stack_who;
    if (n > (int)WF_ARRAY_LEN(stack_pfd)) {
        pfd = wf_malloc(sizeof *pfd * (size_t)n);
        who = wf_malloc(sizeof *who * (size_t)n);
        if (!pfd || !who) {
            wf_free(pfd);
            wf_free(who);
            return wf_error(WF_ERR_NOMEM, "%s: out of memory polling %d connections", what, n);
        }
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!ios[i] || ios[i]->left == 0) continue;
        /* two entries for one fd (send and receive to the same neighbour) are fine for poll */
        pfd[m] = (struct pollfd){.fd = ios[i]->c->fd, .events = ios[i]->rx ? POLLIN : POLLOUT};
        who[m++] = ios[i];
    }
    int st = WF_OK;
    int k = 0;
    /* The next bytes are usually microseconds away: look again a few times,
     * yielding the core to whoever will produce them, before going to sleep
     * (a sleep and wake-up cost more than the wait, measured on loopback). */
    double spin_end = wf_now() + SPIN_S;
    while (m && (k = poll(pfd, (nfds_t)m, 0)) == 0 && wf_now() < spin_end)
        sched_yield();
    if (k == 0) k = m ? wf_poll_until(pfd, (nfds_t)m, wf_deadline(timeout_s)) : 1;
    if (k < 0) st = wf_error(WF_ERR_IO, "%s: poll: %s", what, strerror(-k));
    if (k == 0) {
        /* name the peer we wait for data from: a peer not reading is only a symptom */
        struct wf_io *w = who[0];
        for (int i = 0; i < m; i++)
            if (who[i]->rx) {
                w = who[i];
                break;
            }
        st = wf_error(WF_ERR_TIMEOUT, "%s: timed out after %.1f s %s %s", what, timeout_s,
                      w->rx ? "waiting for data from" : "waiting to send to", w->c->name);
    }
    if (pfd != stack_pfd) {
        wf_free(pfd);
        wf_free(who);
    }
    return st;
}
