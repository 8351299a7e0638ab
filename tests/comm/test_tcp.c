/*
 * comm: framed TCP connections over 127.0.0.1 on ephemeral ports, with a
 * scripted peer on a second thread. Frames of every size arrive intact; a
 * connect to a port that starts listening late succeeds; a silent peer, a
 * peer that stops mid-frame, a peer that does not read, and a port nobody
 * listens on each give WF_ERR_TIMEOUT within bounds; a closed peer gives
 * WF_ERR_PEER naming it (and no SIGPIPE); an oversized or foreign frame is
 * refused before anything is allocated for it. wf_recv_into lands a frame
 * of the expected length straight in the caller's buffers (checksum folded
 * in as it arrives: a flipped byte is caught), and hands any other frame
 * back whole. A frame sent in two goes (wf_send2_begin without waiting,
 * wf_send2_rest) arrives whole and intact.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/comm.h"

enum mode { ECHO, SILENT, CLOSE, SLOW_FRAME, OVERSIZED, GARBAGE, SECOND_TALKS };

struct server {
    int lfd, port;
    enum mode mode;
    int release[2]; /* the test writes a byte when the server may close */
    int talk[2];    /* SECOND_TALKS: the test writes a byte when the second connection may talk */
    pthread_t tid;
    int failures;
};

static void wait_release(struct server *s) {
    char b;
    while (read(s->release[0], &b, 1) < 0) {
    }
}

/* Writes raw bytes on a non-blocking socket (small: they fit the buffer). */
static void raw_write(int fd, const void *p, size_t n) {
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) {
            usleep(1000);
            continue;
        }
        p = (const char *)p + k;
        n -= (size_t)k;
    }
}

static void *serve(void *arg) {
    struct server *s = arg;
    struct wf_conn c, c2 = {.fd = -1};
    if (wf_tcp_accept(s->lfd, &c, "client", 5.0) != WF_OK) {
        fprintf(stderr, "server: %s\n", wf_errmsg());
        s->failures++;
        return NULL;
    }
    uint8_t hdr[WF_FRAME_HDR];
    switch (s->mode) {
    case ECHO:
        for (;;) {
            int type;
            const void *p;
            size_t n;
            if (wf_recv(&c, &type, &p, &n, 10.0) != WF_OK) break; /* the client closed */
            if (wf_send(&c, type + 1, p, n, 10.0) != WF_OK) s->failures++;
        }
        break;
    case CLOSE: wf_conn_close(&c); break;
    case SLOW_FRAME:
        wf_frame_encode_hdr(hdr, 9, "payload!", 8);
        raw_write(c.fd, hdr, 10);
        usleep(400 * 1000);
        raw_write(c.fd, hdr + 10, 6);
        raw_write(c.fd, "payload!", 8);
        break;
    case OVERSIZED: /* a header announcing 16 MiB; no payload follows */
        wf_frame_encode_hdr(hdr, 3, NULL, 0);
        hdr[11] = 1;
        raw_write(c.fd, hdr, sizeof hdr);
        break;
    case GARBAGE: raw_write(c.fd, "GET / HTTP/1.1\r\n\r\n", 18); break;
    case SECOND_TALKS:
        if (wf_tcp_accept(s->lfd, &c2, "second", 5.0) != WF_OK) {
            s->failures++;
            break;
        }
        char go; /* once the test has seen that nothing is readable yet, however slow this machine */
        if (read(s->talk[0], &go, 1) != 1 || wf_send(&c2, 5, "hi", 2, 1.0) != WF_OK) s->failures++;
        break;
    case SILENT: break;
    }
    wait_release(s);
    wf_conn_close(&c);
    if (s->mode == SECOND_TALKS) wf_conn_close(&c2);
    return NULL;
}

static void start(struct server *s, enum mode mode) {
    memset(s, 0, sizeof *s);
    s->mode = mode;
    CHECK(wf_tcp_listen("127.0.0.1", 0, &s->lfd, &s->port) == WF_OK && s->port > 0);
    CHECK(pipe(s->release) == 0 && pipe(s->talk) == 0);
    CHECK(pthread_create(&s->tid, NULL, serve, s) == 0);
}

static void stop(struct server *s) {
    CHECK(write(s->release[1], "x", 1) == 1);
    pthread_join(s->tid, NULL);
    CHECK(s->failures == 0);
    close(s->release[0]);
    close(s->release[1]);
    close(s->talk[0]);
    close(s->talk[1]);
    close(s->lfd);
}

static int connect_to(struct server *s, struct wf_conn *c) {
    int st = wf_tcp_connect(c, "127.0.0.1", s->port, "server", 5.0);
    CHECKF(st == WF_OK, "%s", wf_errmsg());
    return st;
}

static int has(const char *needle) { return strstr(wf_errmsg(), needle) != NULL; }

static void test_echo(void) {
    struct server s;
    start(&s, ECHO);
    struct wf_conn c;
    if (connect_to(&s, &c)) return;
    CHECK(strstr(c.name, "server (127.0.0.1:") != NULL);
    static const size_t sizes[] = {0, 1, 16, 1000, 65536, 3 << 20};
    uint8_t *body = malloc(3 << 20);
    for (size_t i = 0; i < (size_t)(3 << 20); i++)
        body[i] = (uint8_t)(i * 2654435761u >> 13);
    for (size_t i = 0; i < WF_ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i], a = WF_MIN(n, (size_t)12);
        /* header piece and body piece, sent as one frame without copying */
        CHECKF(wf_send2(&c, 100, body, a, body + a, n - a, 5.0) == WF_OK, "%s", wf_errmsg());
        int type = 0;
        const void *p = NULL;
        size_t got = 1;
        CHECKF(wf_recv(&c, &type, &p, &got, 5.0) == WF_OK, "%s", wf_errmsg());
        CHECKF(type == 101 && got == n && (n == 0 || memcmp(p, body, n) == 0), "size %zu came back wrong", n);
    }
    CHECK(c.bytes_sent == c.bytes_recv && c.bytes_sent > (size_t)(3 << 20));
    wf_conn_close(&c);
    wf_conn_close(&c); /* idempotent */
    stop(&s);
    free(body);
}

struct late {
    int port;
    int ok;
};

static void *listen_late(void *arg) {
    struct late *l = arg;
    usleep(300 * 1000);
    int lfd, port;
    if (wf_tcp_listen("127.0.0.1", l->port, &lfd, &port) != WF_OK) return NULL;
    struct wf_conn c;
    l->ok = wf_tcp_accept(lfd, &c, "client", 5.0) == WF_OK;
    wf_conn_close(&c);
    close(lfd);
    return NULL;
}

static int free_port(void) {
    int lfd, port;
    CHECK(wf_tcp_listen("127.0.0.1", 0, &lfd, &port) == WF_OK);
    close(lfd);
    return port;
}

static void test_connect(void) {
    /* refused connections are retried until the peer listens */
    struct late l = {free_port(), 0};
    pthread_t t;
    pthread_create(&t, NULL, listen_late, &l);
    struct wf_conn c;
    double t0 = wf_now();
    int st = wf_tcp_connect(&c, "127.0.0.1", l.port, "late peer", 5.0);
    CHECKF(st == WF_OK, "%s", wf_errmsg());
    CHECK(wf_now() - t0 > 0.2);
    wf_conn_close(&c);
    pthread_join(t, NULL);
    CHECK(l.ok);

    /* ... and until the timeout when it never does */
    int port = free_port();
    t0 = wf_now();
    st = wf_tcp_connect(&c, "127.0.0.1", port, "nobody", 0.3);
    double dt = wf_now() - t0;
    CHECKF(st == WF_ERR_TIMEOUT && has("nobody (127.0.0.1:"), "%d %s", st, wf_errmsg());
    CHECKF(dt >= 0.29 && dt < 1.5 * wf_test_slow(), "connect gave up after %.3f s", dt);
    wf_conn_close(&c);

    CHECK(wf_tcp_connect(&c, "no.such.host.invalid", 1, "x", 0.3) != WF_OK);
}

static void test_silent_peer(void) {
    struct server s;
    start(&s, SILENT);
    struct wf_conn c;
    if (connect_to(&s, &c)) return;
    int type;
    const void *p;
    size_t n;
    double t0 = wf_now();
    int st = wf_recv(&c, &type, &p, &n, 0.3);
    double dt = wf_now() - t0;
    CHECKF(st == WF_ERR_TIMEOUT && has("server (127.0.0.1:"), "%d %s", st, wf_errmsg());
    CHECKF(dt >= 0.29 && dt < 1.5 * wf_test_slow(), "recv gave up after %.3f s", dt);
    CHECK(c.fd >= 0); /* a timeout between frames leaves the connection usable */

    /* a peer that does not read: a 64 MiB send times out half-way and closes the stream */
    size_t big = 64u << 20;
    uint8_t *body = calloc(1, big);
    t0 = wf_now();
    st = wf_send(&c, 1, body, big, 0.3);
    dt = wf_now() - t0;
    CHECKF(st == WF_ERR_TIMEOUT && has("connection closed"), "%d %s", st, wf_errmsg());
    /* the time includes the frame's checksum of the 64 MiB (0.2 s of CPU), longer on a busy machine */
    CHECKF(dt >= 0.29 && dt < 1.5 * wf_test_slow(), "send gave up after %.3f s", dt);
    CHECK(c.fd < 0);
    CHECK(wf_send(&c, 1, "x", 1, 0.3) == WF_ERR_PEER && has("closed"));
    free(body);
    wf_conn_close(&c);
    stop(&s);
}

static void test_slow_frame(void) {
    struct server s;
    start(&s, SLOW_FRAME);
    struct wf_conn c;
    if (connect_to(&s, &c)) return;
    int type;
    const void *p;
    size_t n;
    /* times out with 10 of 24 bytes in hand, then resumes where it stopped */
    CHECK(wf_recv(&c, &type, &p, &n, 0.15) == WF_ERR_TIMEOUT);
    CHECKF(wf_recv(&c, &type, &p, &n, 5.0) == WF_OK, "%s", wf_errmsg());
    CHECK(type == 9 && n == 8 && memcmp(p, "payload!", 8) == 0);
    wf_conn_close(&c);
    stop(&s);
}

static void test_closed_peer(void) {
    struct server s;
    start(&s, CLOSE);
    struct wf_conn c;
    if (connect_to(&s, &c)) return;
    int type;
    const void *p;
    size_t n;
    int st = wf_recv(&c, &type, &p, &n, 5.0);
    CHECKF(st == WF_ERR_PEER && has("server (127.0.0.1:") && has("closed the connection"), "%d %s", st, wf_errmsg());
    wf_conn_close(&c);
    stop(&s);

    /* sending into a closed socket reports the peer; SIGPIPE would kill this test */
    start(&s, CLOSE);
    if (connect_to(&s, &c)) return;
    usleep(100 * 1000);
    static uint8_t chunk[1 << 16];
    st = WF_OK;
    for (int i = 0; i < 200 && st == WF_OK; i++)
        st = wf_send(&c, 1, chunk, sizeof chunk, 1.0);
    CHECKF(st == WF_ERR_PEER && has("server"), "%d %s", st, wf_errmsg());
    wf_conn_close(&c);
    stop(&s);
}

static void test_bad_frames(void) {
    struct server s;
    start(&s, OVERSIZED);
    struct wf_conn c;
    if (connect_to(&s, &c)) return;
    c.max_len = 100000;
    int type;
    const void *p;
    size_t n;
    int st = wf_recv(&c, &type, &p, &n, 5.0);
    CHECKF(st == WF_ERR_CORRUPT && has("limit of 100000") && has("server"), "%d %s", st, wf_errmsg());
    CHECK(c.rcap < 100000); /* refused before allocating */
    CHECK(c.fd < 0);
    wf_conn_close(&c);
    stop(&s);

    start(&s, GARBAGE);
    if (connect_to(&s, &c)) return;
    st = wf_recv(&c, &type, &p, &n, 5.0);
    CHECKF(st == WF_ERR_CORRUPT && has("magic"), "%d %s", st, wf_errmsg());
    wf_conn_close(&c);
    stop(&s);
}

static void test_poll(void) {
    struct server s;
    start(&s, SECOND_TALKS);
    struct wf_conn a, b;
    if (connect_to(&s, &a) || connect_to(&s, &b)) return;
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    struct wf_conn *set[3] = {&a, NULL, &b};
    CHECK(wf_poll_readable(set, 3, pfd[0], 0.05) == WF_ERR_TIMEOUT);
    CHECK(write(s.talk[1], "g", 1) == 1); /* the second connection talks now */
    int k = wf_poll_readable(set, 3, pfd[0], 5.0);
    CHECKF(k == 2, "%d %s", k, wf_errmsg());
    int type;
    const void *p;
    size_t n;
    CHECK(wf_recv(&b, &type, &p, &n, 1.0) == WF_OK && type == 5 && n == 2);
    CHECK(write(pfd[1], "x", 1) == 1);
    CHECK(wf_poll_readable(set, 3, pfd[0], 5.0) == 3);
    CHECK(wf_poll_readable(set, 3, -1, 0.05) == WF_ERR_TIMEOUT);
    close(pfd[0]);
    close(pfd[1]);
    wf_conn_close(&a);
    wf_conn_close(&b);
    stop(&s);
}

static void test_recv_into(void) {
    struct server s;
    start(&s, ECHO);
    struct wf_conn c;
    if (connect_to(&s, &c)) return;
    size_t sizes[] = {0, 1, 4093, 1 << 20, (6u << 20) + 12};
    for (size_t k = 0; k < WF_ARRAY_LEN(sizes); k++) {
        size_t n = sizes[k];
        uint8_t head[20], head2[20];
        uint8_t *data = malloc(n + 1), *back = malloc(n + 1);
        for (size_t i = 0; i < sizeof head; i++)
            head[i] = (uint8_t)(i * 7 + k);
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)(i * 131 + k);
        CHECK(wf_send2(&c, 40, head, sizeof head, data, n, 10.0) == WF_OK);
        int type;
        const void *p = &type;
        size_t len;
        int st = wf_recv_into(&c, &type, head2, sizeof head2, back, n, &p, &len, 10.0);
        CHECKF(st == WF_OK && type == 41 && len == n + 20 && p == NULL, "size %zu: %d %s", n, st, wf_errmsg());
        CHECK(memcmp(head, head2, sizeof head) == 0 && memcmp(data, back, n) == 0);
        /* a frame of another length comes back whole, in the connection's buffer */
        CHECK(wf_send2(&c, 50, head, sizeof head, data, n, 10.0) == WF_OK);
        st = wf_recv_into(&c, &type, head2, sizeof head2, back, n + 1, &p, &len, 10.0);
        CHECKF(st == 1 && type == 51 && len == n + 20 && p != NULL, "size %zu: %d %s", n, st, wf_errmsg());
        CHECK(memcmp(p, head, 20) == 0 && memcmp((const uint8_t *)p + 20, data, n) == 0);
        free(data);
        free(back);
    }
    wf_conn_close(&c);
    stop(&s);

    /* a byte flipped on the wire: the in-place receive reports the checksum */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn r;
    CHECK(wf_conn_from_fd(&r, sv[0], "flipper") == WF_OK);
    uint8_t payload[64], hdr[WF_FRAME_HDR], head[8], dst[56];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    wf_frame_encode_hdr(hdr, 7, payload, sizeof payload);
    payload[30] ^= 4;
    raw_write(sv[1], hdr, sizeof hdr);
    raw_write(sv[1], payload, sizeof payload);
    int type;
    const void *p;
    size_t len;
    int st = wf_recv_into(&r, &type, head, sizeof head, dst, sizeof dst, &p, &len, 5.0);
    CHECKF(st == WF_ERR_CORRUPT && has("crc mismatch") && has("flipper"), "%d %s", st, wf_errmsg());
    CHECK(r.fd < 0);
    wf_conn_close(&r);
    close(sv[1]);
}

struct reader {
    struct wf_conn *c;
    uint8_t *head, *dst;
    size_t n;
    int st, type;
};

static void *read_one(void *arg) {
    struct reader *r = arg;
    const void *p;
    size_t len;
    r->st = wf_recv_into(r->c, &r->type, r->head, 20, r->dst, r->n, &p, &len, 10.0);
    return NULL;
}

static void test_send_in_parts(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn a, b;
    CHECK(wf_conn_from_fd(&a, sv[0], "sender") == WF_OK && wf_conn_from_fd(&b, sv[1], "receiver") == WF_OK);
    uint8_t head[20], head2[20];
    for (size_t i = 0; i < sizeof head; i++)
        head[i] = (uint8_t)(3 * i + 1);
    /* small: all of it at once */
    struct wf_send_part part;
    CHECK(wf_send2_begin(&a, &part, 12, head, sizeof head, "abc", 3) == 1 && part.done == part.total);
    uint8_t small[3];
    struct reader r = {.c = &b, .head = head2, .dst = small, .n = 3};
    read_one(&r);
    CHECK(r.st == WF_OK && r.type == 12 && memcmp(small, "abc", 3) == 0 && memcmp(head, head2, 20) == 0);
    /* larger than the socket's buffers: a part now, the rest while the peer reads */
    size_t n = 8u << 20;
    uint8_t *data = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 29 + 5);
    int st = wf_send2_begin(&a, &part, 13, head, sizeof head, data, n);
    CHECKF(st == 0 && part.done > 0 && part.done < part.total, "%d: %zu of %zu", st, part.done, part.total);
    /* the rest must come with the same lengths */
    CHECK(wf_send2_rest(&a, &part, head, sizeof head, data, n - 1, 1.0) == WF_ERR_INTERNAL);
    r = (struct reader){.c = &b, .head = head2, .dst = back, .n = n};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, read_one, &r) == 0);
    st = wf_send2_rest(&a, &part, head, sizeof head, data, n, 10.0);
    pthread_join(t, NULL);
    CHECKF(st == WF_OK && r.st == WF_OK && r.type == 13, "%d %d %s", st, r.st, wf_errmsg());
    CHECK(memcmp(data, back, n) == 0 && memcmp(head, head2, 20) == 0);
    CHECK(a.bytes_sent == 2 * (size_t)WF_FRAME_HDR + 40 + 3 + n);
    free(data);
    free(back);
    wf_conn_close(&a);
    wf_conn_close(&b);
}

int main(void) {
    alarm((unsigned)(60 * wf_test_slow())); /* a hang fails the test instead of the whole suite */
    test_echo();
    test_connect();
    test_silent_peer();
    test_slow_frame();
    test_closed_peer();
    test_bad_frames();
    test_poll();
    test_recv_into();
    test_send_in_parts();
    return wf_test_done("test_tcp");
}
