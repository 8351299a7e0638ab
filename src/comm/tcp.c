/*
 * comm: TCP connections carrying frames. Sockets are non-blocking and every
 * wait is a poll() bounded by the caller's timeout, so a silent peer costs
 * at most the timeout and never hangs a process. Sends use MSG_NOSIGNAL: a
 * peer that went away is an error to report, not a SIGPIPE to die of.
 *
 * wf_recv reads exactly one frame and nothing beyond it (the kernel's socket
 * buffer is the only read-ahead), so no whole frame ever waits in rbuf and
 * wf_poll_readable can rely on poll() alone. A wf_recv that times out in the
 * middle of a frame keeps what it has (rgot) and the next call resumes; a
 * send that times out half-way, or a malformed frame, closes the socket,
 * because the byte stream cannot be resynchronized.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "comm_int.h"

#define RBUF_MIN 4096

/* ---- time ---- */

double wf_deadline(double timeout_s) { return timeout_s < 0 ? -1.0 : wf_now() + timeout_s; }

int wf_ms_left(double deadline) {
    if (deadline < 0) return -1;
    double ms = (deadline - wf_now()) * 1000.0;
    if (ms <= 0) return 0;
    if (ms >= INT_MAX) return INT_MAX;
    return (int)ms + 1; /* round up: waking early would spin on a 0 ms poll */
}

int wf_poll_until(struct pollfd *fds, nfds_t n, double deadline) {
    for (;;) {
        int ms = wf_ms_left(deadline);
        int k = poll(fds, n, ms);
        if (k >= 0) {
            /* poll's own clock may wake us a hair before ours says the deadline passed */
            if (k == 0 && deadline >= 0 && wf_now() < deadline) continue;
            return k;
        }
        if (errno != EINTR) return -errno;
    }
}

/* ---- setup ---- */

static int set_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
}

static void conn_init(struct wf_conn *c, int fd) {
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->max_len = WF_FRAME_MAX_DEFAULT;
}

void wf_conn_set_name(struct wf_conn *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->name, sizeof c->name, fmt, ap);
    va_end(ap);
}

/* Small frames (barriers, control messages) must not wait for Nagle. */
static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on AF_UNIX: harmless */
}

int wf_conn_from_fd(struct wf_conn *c, int fd, const char *name) {
    conn_init(c, fd);
    wf_conn_set_name(c, "%s", name ? name : "peer");
    if (set_nonblock(fd) < 0) {
        int e = errno;
        wf_conn_break(c);
        return wf_error(WF_ERR_IO, "%s: cannot make the socket non-blocking: %s", c->name, strerror(e));
    }
    set_nodelay(fd);
    return WF_OK;
}

int wf_conn_dup(struct wf_conn *dst, const struct wf_conn *c) {
    int fd = c->fd < 0 ? -1 : fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        conn_init(dst, -1);
        return wf_error(WF_ERR_IO, "%s: cannot duplicate the socket: %s", c->name,
                        c->fd < 0 ? "it is closed" : strerror(errno));
    }
    int rc = wf_conn_from_fd(dst, fd, c->name);
    if (rc == WF_OK) {
        dst->shm = wf_shm_retain(c->shm);
        dst->type_max = c->type_max;
    }
    return rc;
}

void wf_conn_break(struct wf_conn *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

void wf_conn_close(struct wf_conn *c) {
    if (!c) return;
    wf_conn_break(c);
    wf_shm_release(c->shm);
    c->shm = NULL;
    wf_free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
    c->rgot = 0;
}

static int resolve(const char *host, int port, int passive, struct addrinfo **res) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0};
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int e = getaddrinfo(host, ps, &hints, res);
    if (e) return wf_error(WF_ERR_INVALID, "%s:%d: cannot resolve: %s", host ? host : "*", port, gai_strerror(e));
    return WF_OK;
}

static void addr_str(const struct sockaddr *sa, char *out, size_t n, int *port) {
    char ip[INET6_ADDRSTRLEN] = "?";
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        *port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        *port = ntohs(a->sin6_port);
    }
    snprintf(out, n, "%s", ip);
}

int wf_tcp_listen(const char *host, int port, int *fd_out, int *port_out) {
    *fd_out = -1;
    struct addrinfo *res;
    int st = resolve(host, port, 1, &res);
    if (st) return st;
    int fd = -1, e = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one); /* restart without waiting out TIME_WAIT */
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0 && set_nonblock(fd) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) return wf_error(WF_ERR_IO, "listen on %s:%d: %s", host ? host : "*", port, strerror(e));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        e = errno;
        close(fd);
        return wf_error(WF_ERR_IO, "listen on %s:%d: getsockname: %s", host ? host : "*", port, strerror(e));
    }
    char ip[INET6_ADDRSTRLEN];
    int p;
    addr_str((struct sockaddr *)&ss, ip, sizeof ip, &p);
    *fd_out = fd;
    if (port_out) *port_out = p;
    return WF_OK;
}

int wf_tcp_accept(int lfd, struct wf_conn *c, const char *name, double timeout_s) {
    conn_init(c, -1);
    wf_conn_set_name(c, "%s", name ? name : "peer");
    double deadline = wf_deadline(timeout_s);
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept(lfd, (struct sockaddr *)&ss, &sl);
        if (fd >= 0) {
            char ip[INET6_ADDRSTRLEN];
            int port;
            addr_str((struct sockaddr *)&ss, ip, sizeof ip, &port);
            wf_conn_set_name(c, "%s (%s:%d)", name ? name : "peer", ip, port);
            if (set_nonblock(fd) < 0) {
                int e = errno;
                close(fd);
                return wf_error(WF_ERR_IO, "accepting %s: %s", c->name, strerror(e));
            }
            set_nodelay(fd);
            c->fd = fd;
            return WF_OK;
        }
        /* a connection reset before we took it is not our caller's problem */
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return wf_error(WF_ERR_IO, "accepting %s: %s", c->name, strerror(errno));
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        int k = wf_poll_until(&pfd, 1, deadline);
        if (k == 0)
            return wf_error(WF_ERR_TIMEOUT, "timed out after %.1f s waiting for %s to connect", timeout_s, c->name);
        if (k < 0) return wf_error(WF_ERR_IO, "accepting %s: poll: %s", c->name, strerror(-k));
    }
}

/* One non-blocking connect attempt, waited out until deadline. Returns 0 or
 * an errno (ETIMEDOUT when the deadline passed). */
static int connect_once(const struct addrinfo *a, double deadline, int *fd_out) {
    int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) return errno;
    if (set_nonblock(fd) < 0) {
        int e = errno;
        close(fd);
        return e;
    }
    int e = 0;
    if (connect(fd, a->ai_addr, a->ai_addrlen) < 0) {
        e = errno;
        if (e == EINPROGRESS || e == EINTR) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int k = wf_poll_until(&pfd, 1, deadline);
            socklen_t el = sizeof e;
            if (k == 0)
                e = ETIMEDOUT;
            else if (k < 0)
                e = -k;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
                e = errno;
        }
    }
    if (e) {
        close(fd);
        return e;
    }
    *fd_out = fd;
    return 0;
}

int wf_tcp_connect(struct wf_conn *c, const char *host, int port, const char *name, double timeout_s) {
    conn_init(c, -1);
    wf_conn_set_name(c, "%s (%s:%d)", name ? name : "peer", host, port);
    struct addrinfo *res;
    int st = resolve(host, port, 0, &res);
    if (st) return wf_error_prefix(st, "connecting to %s", c->name);
    double deadline = wf_deadline(timeout_s);
    double backoff = 0.005;
    int e = 0, fd = -1;
    for (;;) {
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next)
            e = connect_once(a, deadline, &fd);
        /* the peer may simply not be listening yet: retry refusals until the deadline */
        if (fd >= 0 || (e != ECONNREFUSED && e != ETIMEDOUT) || wf_ms_left(deadline) == 0) break;
        double sleep_s = WF_MIN(backoff, (deadline < 0 ? backoff : deadline - wf_now()));
        if (sleep_s > 0) poll(NULL, 0, (int)(sleep_s * 1000) + 1);
        backoff = WF_MIN(backoff * 2, 0.1);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (e == ECONNREFUSED || e == ETIMEDOUT)
            return wf_error(WF_ERR_TIMEOUT, "timed out after %.1f s connecting to %s (%s)", timeout_s, c->name,
                            strerror(e));
        return wf_error(WF_ERR_PEER, "connecting to %s: %s", c->name, strerror(e));
    }
    set_nodelay(fd);
    c->fd = fd;
    return WF_OK;
}

/* ---- send ---- */

static void iov_advance(struct iovec *iov, int *i, int n, size_t k) {
    while (k > 0 && *i < n) {
        size_t t = WF_MIN(k, iov[*i].iov_len);
        iov[*i].iov_base = (uint8_t *)iov[*i].iov_base + t;
        iov[*i].iov_len -= t;
        k -= t;
        if (iov[*i].iov_len == 0) ++*i;
    }
    while (*i < n && iov[*i].iov_len == 0)
        ++*i;
}

static int closed_error(const struct wf_conn *c) {
    return wf_error(WF_ERR_PEER, "%s: connection is closed (after an earlier error)", c->name);
}

/* Sends iov[0..n) from byte *done on, polling for room until deadline; with
 * nowait, only what the socket takes at once (returns WF_OK, *done < total
 * when some is left). */
static int send_iov(struct wf_conn *c, struct iovec *iov, int n, size_t total, size_t *done, int type, int nowait,
                    double timeout_s) {
    if (c->fd < 0) return closed_error(c);
    double deadline = wf_deadline(timeout_s);
    int i = 0;
    iov_advance(iov, &i, n, *done);
    while (*done < total) {
        struct msghdr m = {.msg_iov = iov + i, .msg_iovlen = (size_t)(n - i)};
        ssize_t k = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (k > 0) {
            *done += (size_t)k;
            iov_advance(iov, &i, n, (size_t)k);
            continue;
        }
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            int e = errno;
            wf_conn_break(c);
            return wf_error(WF_ERR_PEER, "connection to %s lost while sending a type %d frame: %s", c->name, type,
                            strerror(e));
        }
        if (nowait) return WF_OK;
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        int r = wf_poll_until(&pfd, 1, deadline);
        if (r > 0) continue;
        if (r < 0) return wf_error(WF_ERR_IO, "sending to %s: poll: %s", c->name, strerror(-r));
        if (*done == 0)
            return wf_error(WF_ERR_TIMEOUT, "timed out after %.1f s sending to %s: it is not reading", timeout_s,
                            c->name);
        wf_conn_break(c);
        return wf_error(WF_ERR_TIMEOUT,
                        "timed out after %.1f s sending a %zu-byte frame to %s (%zu bytes sent; connection closed)",
                        timeout_s, total, c->name, *done);
    }
    return WF_OK;
}

static double time_left(double deadline) { return deadline < 0 ? -1.0 : WF_MAX(0.0, deadline - wf_now()); }

/* Through shared memory: copies the next part in and sends its descriptor,
 * part after part. 1 when all is sent, 0 when (nowait) the ring or socket
 * has no room for the next step. */
static int send_parts(struct wf_conn *c, struct wf_send_part *p, const void *a, size_t alen, const void *b, size_t blen,
                      int nowait, double timeout_s) {
    double deadline = wf_deadline(timeout_s);
    for (;;) {
        if (p->shm == 2) {
            struct iovec iov[2] = {{p->hdr, WF_FRAME_HDR}, {p->desc, WF_SHM_DESC}};
            int rc = send_iov(c, iov, 2, p->total, &p->done, p->type, nowait, time_left(deadline));
            if (rc < 0) {
                wf_conn_break(c); /* the part is in the ring: no later frame can be in step */
                return rc;
            }
            if (p->done < p->total) return 0;
            if (p->off == p->len) {
                c->bytes_sent += WF_FRAME_HDR + p->len; /* the frame, not its descriptors */
                return 1;
            }
            p->shm = 1;
        }
        size_t k = WF_MIN((size_t)WF_SHM_PART, p->len - p->off);
        int rc = wf_shm_put(c, p->type, a, alen, b, blen, p->off, k, nowait, time_left(deadline), p->desc);
        if (rc < 0 && p->off > 0) wf_conn_break(c); /* the frame is half announced */
        if (rc <= 0) return rc;
        wf_frame_encode_hdr(p->hdr, WF_MSG_SHM_BLOCK, p->desc, WF_SHM_DESC);
        p->off += k;
        p->done = 0;
        p->total = WF_FRAME_HDR + WF_SHM_DESC;
        p->shm = 2;
    }
}

/* Sends what the socket (or shared memory) is still owed. 1 when done. */
static int send_part(struct wf_conn *c, struct wf_send_part *p, const void *a, size_t alen, const void *b, size_t blen,
                     int nowait, double timeout_s) {
    if (p->len != alen + blen)
        return wf_error(WF_ERR_INTERNAL, "sending to %s: the rest of a frame given with another length", c->name);
    if (p->shm) return send_parts(c, p, a, alen, b, blen, nowait, timeout_s);
    struct iovec iov[3] = {{p->hdr, WF_FRAME_HDR}, {(void *)a, alen}, {(void *)b, blen}};
    int rc = send_iov(c, iov, 3, p->total, &p->done, p->type, nowait, timeout_s);
    if (rc < 0 || p->done < p->total) return rc;
    c->bytes_sent += p->total;
    return 1;
}

int wf_send2_begin(struct wf_conn *c, struct wf_send_part *p, int type, const void *a, size_t alen, const void *b,
                   size_t blen) {
    if (alen > UINT32_MAX || blen > UINT32_MAX - alen)
        return wf_error(WF_ERR_INVALID, "sending to %s: a %zu-byte frame is over the 4 GiB frame limit", c->name,
                        alen + blen);
    if (type < 0 || type > 0xFFFF) return wf_error(WF_ERR_INVALID, "sending to %s: bad frame type %d", c->name, type);
    p->type = type;
    p->done = 0;
    p->len = alen + blen;
    p->off = 0;
    p->shm = type < WF_MSG_COMM_FIRST && wf_shm_fits(c->shm, p->len);
    if (p->shm) {
        p->total = 0;
    } else {
        struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
        wf_frame_encode_hdr_iov(p->hdr, type, iov, 2);
        p->total = WF_FRAME_HDR + alen + blen;
    }
    return send_part(c, p, a, alen, b, blen, 1, 0);
}

int wf_send2_rest(struct wf_conn *c, struct wf_send_part *p, const void *a, size_t alen, const void *b, size_t blen,
                  double timeout_s) {
    int rc = send_part(c, p, a, alen, b, blen, 0, timeout_s);
    return rc < 0 ? rc : WF_OK;
}

int wf_send2(struct wf_conn *c, int type, const void *a, size_t alen, const void *b, size_t blen, double timeout_s) {
    struct wf_send_part p;
    int rc = wf_send2_begin(c, &p, type, a, alen, b, blen);
    if (rc == 0) rc = wf_send2_rest(c, &p, a, alen, b, blen, timeout_s);
    return rc < 0 ? rc : WF_OK;
}

int wf_send(struct wf_conn *c, int type, const void *payload, size_t len, double timeout_s) {
    return wf_send2(c, type, payload, len, NULL, 0, timeout_s);
}

/* ---- receive ---- */

/* After a recv/recvmsg that returned k <= 0: WF_OK when the read may be
 * retried (interrupted, or data arrived within the deadline), 1 when the
 * deadline passed, or the error (peer closed, connection lost). */
static int recv_stalled(struct wf_conn *c, ssize_t k, int mid_frame, double deadline) {
    if (k == 0) {
        wf_conn_break(c);
        return wf_error(WF_ERR_PEER, "%s closed the connection%s", c->name,
                        mid_frame ? " in the middle of a frame" : "");
    }
    if (errno == EINTR) return WF_OK;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
        int e = errno;
        wf_conn_break(c);
        return wf_error(WF_ERR_PEER, "connection to %s lost while receiving: %s", c->name, strerror(e));
    }
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int r = wf_poll_until(&pfd, 1, deadline);
    if (r < 0) return wf_error(WF_ERR_IO, "receiving from %s: poll: %s", c->name, strerror(-r));
    return r == 0;
}

/* Reads until rgot reaches want, polling until deadline. */
static int recv_until(struct wf_conn *c, size_t want, double deadline, double timeout_s) {
    while (c->rgot < want) {
        ssize_t k = recv(c->fd, c->rbuf + c->rgot, want - c->rgot, 0);
        if (k > 0) {
            c->rgot += (size_t)k;
            continue;
        }
        int st = recv_stalled(c, k, c->rgot > 0, deadline);
        if (st == 1)
            return wf_error(WF_ERR_TIMEOUT, "timed out after %.1f s waiting for a frame from %s", timeout_s, c->name);
        if (st < 0) return st;
    }
    return WF_OK;
}

static int rbuf_reserve(struct wf_conn *c, size_t need) {
    if (need <= c->rcap) return WF_OK;
    size_t cap = WF_MAX(need, WF_MIN(c->rcap * 2, (size_t)WF_FRAME_HDR + c->max_len));
    uint8_t *p = wf_realloc(c->rbuf, cap);
    if (!p) return wf_error(WF_ERR_NOMEM, "out of memory for a %zu-byte frame from %s", need, c->name);
    c->rbuf = p;
    c->rcap = cap;
    return WF_OK;
}

/* The most payload bytes a frame of `type` may carry on c: the comm layer's
 * own small frames have fixed limits, the rest what the owner's type_max says. */
static uint32_t type_limit(const struct wf_conn *c, int type, const char **name) {
    switch (type) {
    case WF_MSG_SHM_BLOCK: *name = "shared-memory descriptor"; return WF_SHM_DESC;
    case WF_MSG_SHM_OFFER: *name = "shared-memory offer"; return 1024;   /* u64, u32, 16 bytes, a name <= 255 */
    case WF_MSG_SHM_ANSWER: *name = "shared-memory answer"; return 1024; /* u8, a reason < 400 bytes */
    default: break;
    }
    if (type >= WF_MSG_COMM_FIRST || !c->type_max) return UINT32_MAX;
    return c->type_max(type, name);
}

/* Reads the header of the next frame into rbuf and checks it. */
static int recv_hdr(struct wf_conn *c, struct wf_frame_hdr *h, double deadline, double timeout_s) {
    if (c->fd < 0) return closed_error(c);
    int st = rbuf_reserve(c, RBUF_MIN);
    if (st) return st;
    if ((st = recv_until(c, WF_FRAME_HDR, deadline, timeout_s))) return st;
    /* checked before anything is allocated for the payload */
    if ((st = wf_frame_decode_hdr(c->rbuf, c->max_len, h))) {
        wf_conn_break(c);
        return wf_error_prefix(st, "from %s", c->name);
    }
    const char *tname = NULL;
    uint32_t most = type_limit(c, h->type, &tname);
    if (h->len > most) {
        wf_conn_break(c);
        if (tname)
            return wf_error(WF_ERR_CORRUPT, "from %s: a %s frame of %u bytes; such a frame holds at most %u", c->name,
                            tname, h->len, most);
        return wf_error(WF_ERR_CORRUPT, "from %s: a type %u frame of %u bytes; such a frame holds at most %u", c->name,
                        h->type, h->len, most);
    }
    return WF_OK;
}

/* Reads the payload of the frame whose header is in rbuf into rbuf. */
static int recv_payload(struct wf_conn *c, const struct wf_frame_hdr *h, int *type, const void **payload, size_t *len,
                        double deadline, double timeout_s) {
    int st = rbuf_reserve(c, WF_FRAME_HDR + (size_t)h->len);
    if (st) return st;
    if ((st = recv_until(c, WF_FRAME_HDR + (size_t)h->len, deadline, timeout_s))) return st;
    if ((st = wf_frame_check(c->rbuf, h, c->rbuf + WF_FRAME_HDR))) {
        wf_conn_break(c);
        return wf_error_prefix(st, "from %s", c->name);
    }
    c->rgot = 0;
    c->bytes_recv += WF_FRAME_HDR + (size_t)h->len;
    *type = h->type;
    *payload = c->rbuf + WF_FRAME_HDR;
    *len = h->len;
    return WF_OK;
}

static int recv_shm(struct wf_conn *c, const void *dp, size_t dn, void *head, size_t hlen, void *dst, size_t dlen,
                    int *type, const void **payload, size_t *len, double deadline, double timeout_s);

int wf_recv(struct wf_conn *c, int *type, const void **payload, size_t *len, double timeout_s) {
    double deadline = wf_deadline(timeout_s);
    struct wf_frame_hdr h;
    int st = recv_hdr(c, &h, deadline, timeout_s);
    if (!st) st = recv_payload(c, &h, type, payload, len, deadline, timeout_s);
    if (st || *type != WF_MSG_SHM_BLOCK) return st;
    st = recv_shm(c, *payload, *len, NULL, 0, NULL, 0, type, payload, len, deadline, timeout_s);
    return st < 0 ? st : WF_OK;
}

/* Reads iov[0..n) whole (total bytes), polling until deadline, and folds
 * each piece into *crc as it lands (while it is still in cache). A frame cut
 * short here cannot be resumed: the connection is closed on a timeout. */
static int recv_iov_all(struct wf_conn *c, struct iovec *iov, int n, size_t total, uint32_t *crc, double deadline,
                        double timeout_s) {
    size_t done = 0;
    int i = 0;
    iov_advance(iov, &i, n, 0);
    while (done < total) {
        struct msghdr m = {.msg_iov = iov + i, .msg_iovlen = (size_t)(n - i)};
        ssize_t k = recvmsg(c->fd, &m, 0);
        if (k > 0) {
            for (size_t left = (size_t)k; left > 0;) { /* iov[i] is where this read began */
                size_t t = WF_MIN(left, iov[i].iov_len);
                *crc = wf_crc32(*crc, iov[i].iov_base, t);
                left -= t;
                iov_advance(iov, &i, n, t);
            }
            done += (size_t)k;
            continue;
        }
        int st = recv_stalled(c, k, 1, deadline);
        if (st < 0) wf_conn_break(c); /* part of the frame is gone: the stream cannot be resumed */
        if (st == 1) {
            wf_conn_break(c);
            return wf_error(WF_ERR_TIMEOUT,
                            "timed out after %.1f s in the middle of a %zu-byte frame from %s (%zu bytes in; "
                            "connection closed)",
                            timeout_s, total, c->name, done);
        }
        if (st < 0) return st;
    }
    return WF_OK;
}

/* The next part's descriptor of a frame coming through shared memory, read
 * outside rbuf (which may be holding the frame). */
static int recv_next_desc(struct wf_conn *c, uint8_t desc[WF_SHM_DESC], double deadline, double timeout_s) {
    uint8_t hdr[WF_FRAME_HDR];
    struct iovec iov[2] = {{hdr, WF_FRAME_HDR}, {desc, WF_SHM_DESC}};
    uint32_t crc = 0;
    int st = recv_iov_all(c, iov, 2, WF_FRAME_HDR + WF_SHM_DESC, &crc, deadline, timeout_s);
    if (st) return st;
    struct wf_frame_hdr h;
    if ((st = wf_frame_decode_hdr(hdr, c->max_len, &h))) {
        wf_conn_break(c);
        return wf_error_prefix(st, "from %s", c->name);
    }
    /* checked before the CRC, which reads h.len bytes from desc */
    if (h.type != WF_MSG_SHM_BLOCK || h.len != WF_SHM_DESC) {
        wf_conn_break(c);
        return wf_error(WF_ERR_CORRUPT, "%s sent a type %u frame of %u bytes in the middle of a frame in shared memory",
                        c->name, h.type, h.len);
    }
    if ((st = wf_frame_check(hdr, &h, desc))) {
        wf_conn_break(c);
        return wf_error_prefix(st, "from %s", c->name);
    }
    return WF_OK;
}

/* A frame coming through shared memory, whose first descriptor is dp: its
 * parts copied into head|dst when hlen + dlen is its length (WF_OK), else
 * into rbuf (1, *payload pointing there). */
static int recv_shm(struct wf_conn *c, const void *dp, size_t dn, void *head, size_t hlen, void *dst, size_t dlen,
                    int *type, const void **payload, size_t *len, double deadline, double timeout_s) {
    struct wf_shm_desc d;
    uint8_t next[WF_SHM_DESC];
    int st = wf_shm_next(c, dp, dn, &d);
    if (st) return st;
    uint32_t total = d.total;
    uint16_t t = d.type;
    int whole = (size_t)total != hlen + dlen;
    if (whole) {
        if ((st = rbuf_reserve(c, WF_FRAME_HDR + (size_t)total))) {
            wf_conn_break(c); /* the parts stay in the ring: the stream cannot go on */
            return st;
        }
        head = c->rbuf + WF_FRAME_HDR;
        hlen = total;
        dst = NULL;
    }
    c->bytes_recv -= WF_FRAME_HDR + WF_SHM_DESC; /* counted below as the frame's own length */
    for (size_t off = 0;;) {
        if (d.type != t || d.total != total || off + d.len > total || (!d.more && off + d.len != total)) {
            wf_conn_break(c);
            return wf_error(WF_ERR_CORRUPT,
                            "%s: shared-memory parts out of step (a %u-byte part at %zu of a %u-byte frame)", c->name,
                            d.len, off, total);
        }
        if ((st = wf_shm_take(c, &d, head, hlen, dst, off))) return st;
        off += d.len;
        if (!d.more) break;
        if ((st = recv_next_desc(c, next, deadline, timeout_s)) || (st = wf_shm_next(c, next, sizeof next, &d)))
            return st;
    }
    c->bytes_recv += WF_FRAME_HDR + (size_t)total;
    *type = t;
    *payload = whole ? c->rbuf + WF_FRAME_HDR : NULL;
    *len = total;
    return whole;
}

int wf_recv_into(struct wf_conn *c, int *type, void *head, size_t hlen, void *dst, size_t dlen, const void **payload,
                 size_t *len, double timeout_s) {
    double deadline = wf_deadline(timeout_s);
    struct wf_frame_hdr h;
    int st = recv_hdr(c, &h, deadline, timeout_s);
    if (st) return st;
    if (h.type == WF_MSG_SHM_BLOCK) {
        if ((st = recv_payload(c, &h, type, payload, len, deadline, timeout_s))) return st;
        return recv_shm(c, *payload, *len, head, hlen, dst, dlen, type, payload, len, deadline, timeout_s);
    }
    if ((size_t)h.len != hlen + dlen || c->rgot > WF_FRAME_HDR) {
        /* not the frame expected (the caller names it), or one whose payload an earlier
         * timed-out wf_recv began: take it whole through the connection's buffer */
        st = recv_payload(c, &h, type, payload, len, deadline, timeout_s);
        if (st) return st;
        if ((size_t)h.len != hlen + dlen) return 1;
        memcpy(head, *payload, hlen);
        memcpy(dst, (const uint8_t *)*payload + hlen, dlen);
        *payload = NULL;
        return WF_OK;
    }
    struct iovec iov[2] = {{head, hlen}, {dst, dlen}};
    uint32_t crc = wf_crc32(0, c->rbuf, 12);
    if ((st = recv_iov_all(c, iov, 2, hlen + dlen, &crc, deadline, timeout_s))) return st;
    c->rgot = 0;
    if (crc != h.crc) {
        wf_conn_break(c);
        return wf_error(WF_ERR_CORRUPT,
                        "frame: crc mismatch on a type %u frame of %u bytes (header 0x%08x, data 0x%08x) from %s",
                        h.type, h.len, h.crc, crc, c->name);
    }
    c->bytes_recv += WF_FRAME_HDR + (size_t)h.len;
    *type = h.type;
    *payload = NULL;
    *len = h.len;
    return WF_OK;
}

int wf_poll_readable(struct wf_conn **conns, int n, int extra_fd, double timeout_s) {
    struct pollfd stack[64], *pfd = stack;
    if (n + 1 > (int)WF_ARRAY_LEN(stack)) {
        pfd = wf_malloc(sizeof *pfd * ((size_t)n + 1));
        if (!pfd) return wf_error(WF_ERR_NOMEM, "poll over %d connections: out of memory", n);
    }
    /* closed connections are skipped like NULL ones: their error was reported when they closed */
    for (int i = 0; i < n; i++)
        pfd[i] = (struct pollfd){.fd = conns[i] ? conns[i]->fd : -1, .events = POLLIN};
    pfd[n] = (struct pollfd){.fd = extra_fd, .events = POLLIN};
    int k = wf_poll_until(pfd, (nfds_t)n + 1, wf_deadline(timeout_s));
    int ret = WF_ERR_TIMEOUT;
    if (k < 0)
        ret = wf_error(WF_ERR_IO, "poll: %s", strerror(-k));
    else if (k == 0)
        ret = wf_error(WF_ERR_TIMEOUT, "timed out after %.1f s: none of %d connections sent anything", timeout_s, n);
    else
        for (int i = 0; i <= n; i++)
            if (pfd[i].fd >= 0 && pfd[i].revents) {
                ret = i;
                break;
            }
    if (pfd != stack) wf_free(pfd);
    return ret;
}
