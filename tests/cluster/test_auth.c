/*
 * cluster: the challenge a connection starts with. A peer that has not
 * proved it holds the cluster token gets nothing allocated for it: a first
 * frame above WF_AUTH_FRAME_MAX (a HELLO announcing 1 GiB) is refused from
 * its header alone, before any of its payload is read; the limit is back to
 * the connection's own once the peer is authenticated; a wrong token is
 * refused. (issue: hostile peers)
 */
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
    CHECKF(strstr(wf_errmsg(), "1073741824") && strstr(wf_errmsg(), "65536"), "message: %s", wf_errmsg());
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

int main(void) {
    test_oversize_hello();
    test_wrong_token();
    return wf_test_done("test_auth");
}
