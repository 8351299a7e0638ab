/*
 * cluster: the challenge a connection starts with. A peer that has not
 * proved it holds the cluster token gets nothing allocated for it: a first
 * frame above WF_AUTH_FRAME_MAX (a HELLO announcing 1 GiB) is refused from
 * its header alone, before any of its payload is read; the limit is back to
 * the connection's own once the peer is authenticated; a wrong token is
 * refused. The acceptor's side is a state machine: a HELLO that arrives a
 * byte at a time is assembled across steps, and a listening socket's gate
 * (wf_gate_*) serves a real peer at once while idle, slow, oversized and
 * wrong-token connections are dropped by deadline, cap (oldest first) or
 * refusal, counted. Authenticated connections refuse any frame above what its
 * type can hold, from the header. (issue: hostile peers)
 */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/cluster.h"
#include "weft/comm.h"
#include "weft/core.h"

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A HELLO header announcing `len` payload bytes, with no payload behind it. */
static void oversize_hello(int fd, uint32_t len) {
    uint8_t h[WF_FRAME_HDR] = {0};
    put_le(h, WF_FRAME_MAGIC, 4);
    put_le(h + 4, WF_PROTO_VERSION, 2);
    put_le(h + 6, WF_M_HELLO, 2);
    put_le(h + 8, len, 4);
    CHECK(write(fd, h, sizeof h) == (ssize_t)sizeof h);
}

static void test_oversize_hello(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, sv[0], "peer 127.0.0.1:9") == WF_OK);
    struct wf_token t;
    CHECK(wf_token_from_hex(&t, "00112233445566778899aabbccddeeff") == WF_OK);
    oversize_hello(sv[1], 1u << 30);
    long allocs = wf_alloc_count();
    struct wf_msg hello;
    int rc = wf_auth_accept(&c, &t, &hello, 2.0);
    CHECKF(rc == WF_ERR_CORRUPT, "rc %d: %s", rc, wf_errmsg());
    CHECKF(strstr(wf_errmsg(), "1073741824") && strstr(wf_errmsg(), "4096"), "message: %s", wf_errmsg());
    CHECKF(wf_alloc_count() - allocs < 8, "%ld allocations for a refused peer", wf_alloc_count() - allocs);
    CHECKF(c.max_len == WF_FRAME_MAX_DEFAULT, "the connection's limit is %u after the handshake", c.max_len);
    wf_conn_close(&c);
    close(sv[1]);
}

static void test_wrong_token(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn a, b;
    CHECK(wf_conn_from_fd(&a, sv[0], "acceptor") == WF_OK);
    CHECK(wf_conn_from_fd(&b, sv[1], "connector") == WF_OK);
    struct wf_token good, bad;
    CHECK(wf_token_from_hex(&good, "00112233445566778899aabbccddeeff") == WF_OK);
    CHECK(wf_token_from_hex(&bad, "ffeeddccbbaa99887766554433221100") == WF_OK);
    /* the challenge is small and the HELLO too: both fit the socket buffers, so one thread can play both sides
     * once the challenge is out; the connector answers first from a child */
    pid_t pid = fork();
    if (pid == 0) {
        struct wf_msg h = {.role = 1};
        _exit(wf_auth_connect(&b, &bad, &h, 5.0) == WF_OK ? 0 : 1);
    }
    struct wf_msg hello;
    int rc = wf_auth_accept(&a, &good, &hello, 5.0);
    CHECKF(rc == WF_ERR_AUTH && strstr(wf_errmsg(), "does not have the cluster token"), "rc %d: %s", rc, wf_errmsg());
    int st;
    waitpid(pid, &st, 0);
    wf_conn_close(&a);
    wf_conn_close(&b);
}

static const char *TOKEN = "00112233445566778899aabbccddeeff";

/* The HELLO a connector with `tok` would send for this challenge, as frame bytes. */
static size_t hello_frame(int fd_from, const struct wf_token *tok, uint8_t *out, size_t cap) {
    /* read the challenge the acceptor sent, answer it through a connection on a pipe pair */
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, fd_from, "acceptor") == WF_OK);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_msg ch;
    CHECK(wf_msg_recv(&c, &ch, 5.0) == WF_OK && ch.type == WF_M_CHALLENGE);
    struct wf_conn w;
    CHECK(wf_conn_from_fd(&w, sv[0], "copy") == WF_OK);
    /* wf_auth_connect wants the challenge on its own connection: replay it there */
    struct wf_conn r;
    CHECK(wf_conn_from_fd(&r, sv[1], "replay") == WF_OK);
    CHECK(wf_msg_send(&r, &ch, 5.0) == WF_OK);
    struct wf_msg h = {.role = WF_ROLE_CLIENT};
    CHECK(wf_auth_connect(&w, tok, &h, 5.0) == WF_OK);
    ssize_t n = read(sv[1], out, cap);
    CHECK(n > WF_FRAME_HDR);
    wf_msg_free(&ch);
    c.fd = -1; /* fd_from stays open: the caller's */
    wf_conn_close(&c);
    wf_conn_close(&w);
    wf_conn_close(&r);
    return n > 0 ? (size_t)n : 0;
}

/* A HELLO written one byte per step is assembled across steps; the peer is authenticated after the last. */
static void test_hello_byte_by_byte(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, sv[0], "slow peer") == WF_OK);
    struct wf_token t;
    CHECK(wf_token_from_hex(&t, TOKEN) == WF_OK);
    struct wf_auth a;
    CHECK(wf_auth_begin(&a, &c, 30.0) == WF_OK);
    uint8_t frame[1024];
    size_t n = hello_frame(sv[1], &t, frame, sizeof frame);
    struct wf_msg hello;
    int rc = 0, steps = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(wf_auth_step(&a, &t, &hello) == 0); /* nothing complete yet: never waits */
        CHECK(write(sv[1], frame + i, 1) == 1);
        steps++;
    }
    rc = wf_auth_step(&a, &t, &hello);
    CHECKF(rc == 1, "rc %d after %d single bytes: %s", rc, steps, wf_errmsg());
    CHECK(rc != 1 || (hello.type == WF_M_HELLO && hello.role == WF_ROLE_CLIENT));
    CHECK(a.c.max_len == WF_FRAME_MAX_DEFAULT && a.c.type_max == wf_msg_max_len);
    if (rc == 1) wf_msg_free(&hello);
    wf_conn_close(&a.c);
    close(sv[1]);
}

/* A handshake whose HELLO does not come before its deadline ends with a timeout naming the peer. */
static void test_deadline(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, sv[0], "idle peer") == WF_OK);
    struct wf_token t;
    CHECK(wf_token_from_hex(&t, TOKEN) == WF_OK);
    struct wf_auth a;
    CHECK(wf_auth_begin(&a, &c, 0.05) == WF_OK);
    CHECK(write(sv[1], "WEFT", 4) == 4); /* a partial header, then nothing */
    struct wf_msg hello;
    int rc = 0;
    double t0 = wf_now();
    while (rc == 0 && wf_now() - t0 < 10)
        rc = wf_auth_step(&a, &t, &hello);
    CHECKF(rc == WF_ERR_TIMEOUT && strstr(wf_errmsg(), "idle peer"), "rc %d: %s", rc, wf_errmsg());
    CHECK(a.c.fd < 0);
    close(sv[1]);
}

/* An authenticated connection refuses, from the header, a frame longer than its type can hold. */
static void test_type_caps(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, sv[0], "worker 3") == WF_OK);
    c.type_max = wf_msg_max_len;
    uint8_t h[WF_FRAME_HDR] = {0};
    put_le(h, WF_FRAME_MAGIC, 4);
    put_le(h + 4, WF_PROTO_VERSION, 2);
    put_le(h + 6, WF_M_HEARTBEAT, 2);
    put_le(h + 8, 100u << 20, 4);
    CHECK(write(sv[1], h, sizeof h) == (ssize_t)sizeof h);
    long allocs = wf_alloc_count();
    struct wf_msg m;
    int rc = wf_msg_recv(&c, &m, 2.0);
    CHECKF(rc == WF_ERR_CORRUPT && strstr(wf_errmsg(), "HEARTBEAT") && strstr(wf_errmsg(), "worker 3") &&
               strstr(wf_errmsg(), "104857600"),
           "rc %d: %s", rc, wf_errmsg());
    CHECK(wf_alloc_count() - allocs < 4);
    wf_conn_close(&c);
    close(sv[1]);
    /* every type the decoder knows has a limit; an unknown one has none */
    const char *name;
    CHECK(wf_msg_max_len(WF_M_STATUS, &name) == 0 && !strcmp(name, "STATUS"));
    CHECK(wf_msg_max_len(WF_M_STATE, &name) == UINT32_MAX);
    CHECK(wf_msg_max_len(9999, &name) == 0);
}

struct gate_seen {
    int peers;
    uint32_t role;
};
static void on_peer(void *arg, struct wf_conn *c, struct wf_msg *hello) {
    struct gate_seen *s = arg;
    s->peers++;
    s->role = hello->role;
    wf_msg_free(hello);
    wf_conn_close(c);
}

/* Connects to port and sends `what` bytes, returning the socket (left open). */
static int raw_connect(int port, const void *what, size_t n) {
    struct wf_conn c;
    CHECK(wf_tcp_connect(&c, "127.0.0.1", port, "attacker", 5.0) == WF_OK);
    if (n) CHECK(write(c.fd, what, n) == (ssize_t)n);
    int fd = c.fd;
    c.fd = -1;
    wf_conn_close(&c);
    return fd;
}

/* The gate serves a real client at once while it holds more idle, slow-loris,
 * oversize and wrong-token connections than its cap: the oldest are dropped,
 * the rest expire at their deadline, every one is counted. */
static void test_gate(void) {
    int lfd, port;
    CHECK(wf_tcp_listen("127.0.0.1", 0, &lfd, &port) == WF_OK);
    struct wf_token t, bad;
    CHECK(wf_token_from_hex(&t, TOKEN) == WF_OK);
    CHECK(wf_token_from_hex(&bad, "ffeeddccbbaa99887766554433221100") == WF_OK);
    struct wf_gate g;
    const int cap = 8;
    CHECK(wf_gate_init(&g, lfd, &t, cap, 1.0) == WF_OK);
    struct gate_seen seen = {0};
    struct pollfd pf[64];
    int fds[64], nf = 0;
    uint8_t big[WF_FRAME_HDR] = {0};
    put_le(big, WF_FRAME_MAGIC, 4);
    put_le(big + 4, WF_PROTO_VERSION, 2);
    put_le(big + 6, WF_M_HELLO, 2);
    put_le(big + 8, 1u << 30, 4);
    for (int i = 0; i < 12; i++)
        fds[nf++] = raw_connect(port, NULL, 0); /* idle */
    for (int i = 0; i < 6; i++)
        fds[nf++] = raw_connect(port, "WEFT\4", 5); /* a partial header: slow loris */
    for (int i = 0; i < 3; i++)
        fds[nf++] = raw_connect(port, big, sizeof big); /* a HELLO announcing 1 GiB */
    /* a client with a wrong token, then one with the right one, from child processes */
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            struct wf_conn c;
            if (wf_tcp_connect(&c, "127.0.0.1", port, "gate", 5.0) < 0) _exit(2);
            struct wf_msg h = {.role = WF_ROLE_CLIENT};
            int rc = wf_auth_connect(&c, k ? &t : &bad, &h, 5.0);
            struct wf_msg w;
            if (rc == WF_OK) rc = wf_msg_recv(&c, &w, 10.0); /* REFUSE, or the connection closed by the test */
            _exit(0);
        }
    }
    double t0 = wf_now();
    while (wf_now() - t0 < 20 && (seen.peers == 0 || g.n > 0)) {
        int np = wf_gate_pollfds(&g, pf);
        CHECK(np <= 1 + cap);
        poll(pf, (nfds_t)np, 50);
        double now = wf_now();
        double s0 = now;
        wf_gate_service(&g, pf, now, on_peer, &seen);
        CHECKF(wf_now() - s0 < 0.5, "one service took %.3f s", wf_now() - s0);
    }
    CHECKF(seen.peers == 1 && seen.role == WF_ROLE_CLIENT, "%d peers authenticated", seen.peers);
    CHECK(g.st.authenticated == 1);
    CHECKF(g.st.accepted == (uint64_t)nf + 2, "accepted %llu of %d", (unsigned long long)g.st.accepted, nf + 2);
    uint64_t away = g.st.refused + g.st.expired + g.st.evicted;
    CHECKF(away == (uint64_t)nf + 1, "%llu turned away (refused %llu, expired %llu, evicted %llu) of %d",
           (unsigned long long)away, (unsigned long long)g.st.refused, (unsigned long long)g.st.expired,
           (unsigned long long)g.st.evicted, nf + 1);
    CHECK(g.st.evicted >= (uint64_t)(nf - cap)); /* the attackers were all queued before the first accept */
    CHECK(g.st.refused >= 1); /* the wrong token at least (the oversize ones may have been evicted first) */
    for (int k = 0; k < 2; k++) {
        int st;
        waitpid(kids[k], &st, 0);
    }
    for (int i = 0; i < nf; i++)
        close(fds[i]);
    wf_gate_free(&g);
    close(lfd);
}

int main(void) {
    test_oversize_hello();
    test_wrong_token();
    test_hello_byte_by_byte();
    test_deadline();
    test_type_caps();
    test_gate();
    return wf_test_done("test_auth");
}
