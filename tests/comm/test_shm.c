/*
 * comm: shared memory under a connection (src/comm/shm.c). Over a socket
 * pair, with the peer in a child process (so the ring and its futex really
 * cross processes): frames of every size come back intact through
 * wf_recv and wf_recv_into, small and oversized ones on the socket and the
 * rest through a ring that wraps many times, in parts of WF_SHM_PART. In one process: a ring with no
 * room makes wf_send2_begin leave the frame to wf_send2_rest, which waits
 * for the reader, times out naming a peer that does not read, and stops at
 * once when the peer closes; a frame half announced when the wait times out
 * closes the connection, and so does another frame between two parts. A declined or unusable offer (another machine)
 * leaves both ends on the socket. Descriptors out of place are refused.
 * Nothing is left in /dev/shm.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/comm/comm_int.h" /* wf_shm_put, WF_MSG_SHM_BLOCK: a sender out of step */
#include "testutil.h"
#include "weft/comm.h"
#include "weft/core.h"

#define RING (1u << 20)

static int has(const char *needle) { return strstr(wf_errmsg(), needle) != NULL; }

/* Objects in /dev/shm named for this process. */
static int leftovers(void) {
    char pre[64];
    snprintf(pre, sizeof pre, "weft-%ld-", (long)getpid());
    DIR *d = opendir("/dev/shm");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strncmp(e->d_name, pre, strlen(pre)) == 0;
    if (d) closedir(d);
    return n;
}

static void pair(struct wf_conn *a, struct wf_conn *b) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(wf_conn_from_fd(a, sv[0], "end a") == WF_OK && wf_conn_from_fd(b, sv[1], "end b") == WF_OK);
}

/* a offers, b answers (allow), in one thread: the offer never waits. */
static int setup(struct wf_conn *a, struct wf_conn *b, int allow) {
    struct wf_shm *pending;
    CHECK(wf_shm_offer_send(a, RING, &pending, 5.0) == WF_OK);
    int rb = wf_shm_answer(b, allow, 5.0);
    int ra = wf_shm_offer_finish(a, pending, 5.0);
    CHECKF(ra == rb, "%d %d %s", ra, rb, wf_errmsg());
    return ra;
}

static void fill(uint8_t *p, size_t n, unsigned k) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 131 + k * 7 + (i >> 12));
}

/* The child: answers, then echoes every frame back with type + 1 until EOF. */
static void echo_child(int fd) {
    struct wf_conn c;
    if (wf_conn_from_fd(&c, fd, "parent") != WF_OK || wf_shm_answer(&c, 1, 5.0) != 1) _exit(2);
    for (;;) {
        int type;
        const void *p;
        size_t n;
        if (wf_recv(&c, &type, &p, &n, 10.0) != WF_OK) break;
        if (wf_send(&c, type + 1, p, n, 10.0) != WF_OK) _exit(3);
    }
    wf_conn_close(&c);
    _exit(0);
}

static void test_echo_across_processes(void) {
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        echo_child(sv[1]);
    }
    close(sv[1]);
    struct wf_conn c;
    CHECK(wf_conn_from_fd(&c, sv[0], "child") == WF_OK);
    struct wf_shm *pending;
    CHECK(wf_shm_offer_send(&c, RING, &pending, 5.0) == WF_OK);
    CHECK(wf_shm_offer_finish(&c, pending, 5.0) == 1 && c.shm != NULL);
    CHECK(leftovers() == 0); /* the name is gone once both ends have it */
    /* below the threshold, through the ring (wrapping: 2.6 frames per ring), over the ring */
    size_t sizes[] = {100,    WF_SHM_MIN - 21, WF_SHM_MIN, 40000, 400000,   400000,  400000,
                      400000, 400000,          77777,      RING,  RING + 1, 3u << 20};
    size_t max = 4u << 20;
    uint8_t *data = malloc(max), *back = malloc(max), head[20], head2[20];
    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < WF_ARRAY_LEN(sizes); k++) {
            size_t n = sizes[k] - WF_MIN(sizes[k], sizeof head);
            fill(head, sizeof head, (unsigned)k);
            fill(data, n, (unsigned)(k + 100 * round));
            int sst = wf_send2(&c, 40, head, sizeof head, data, n, 10.0);
            CHECKF(sst == WF_OK, "size %zu: %s", n, wf_errmsg());
            int type;
            const void *p;
            size_t len;
            if (k % 2) { /* straight into the caller's buffers */
                int st = wf_recv_into(&c, &type, head2, sizeof head2, back, n, &p, &len, 10.0);
                CHECKF(st == WF_OK && type == 41 && len == n + 20, "size %zu: %d %s", n, st, wf_errmsg());
                CHECK(memcmp(head, head2, 20) == 0 && memcmp(data, back, n) == 0);
            } else { /* another length expected: handed back whole */
                int st = wf_recv_into(&c, &type, head2, sizeof head2, back, n + 4, &p, &len, 10.0);
                CHECKF(st == 1 && type == 41 && len == n + 20, "size %zu: %d %s", n, st, wf_errmsg());
                CHECK(p && memcmp(p, head, 20) == 0 && memcmp((const uint8_t *)p + 20, data, n) == 0);
            }
        }
    free(data);
    free(back);
    wf_conn_close(&c);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_full_ring(void) {
    struct wf_conn a, b;
    pair(&a, &b);
    CHECK(setup(&a, &b, 1) == 1);
    size_t n = 240000; /* one part each (WF_SHM_PART): four fill the ring */
    uint8_t *x = malloc(3 * n), *y = malloc(3 * n), hd[20] = {1, 2, 3};
    fill(x, 3 * n, 1);
    struct wf_send_part p1, p2;
    for (int i = 0; i < 4; i++)
        CHECK(wf_send2_begin(&a, &p1, 7 + i, hd, sizeof hd, x, n) == 1); /* copied in, descriptor sent */
    CHECK(wf_send2_begin(&a, &p2, 11, hd, sizeof hd, x, n) == 0);        /* no room: nothing sent yet */
    CHECK(p2.done == 0 && p2.off == 0);
    double t0 = wf_now();
    int st = wf_send2_rest(&a, &p2, hd, sizeof hd, x, n, 0.3);
    CHECKF(st == WF_ERR_TIMEOUT && has("not reading") && has("end a"), "%d %s", st, wf_errmsg());
    CHECK(wf_now() - t0 < 2.0 * wf_test_slow() && a.fd >= 0); /* nothing of it announced: the connection goes on */
    /* the reader takes the first: room for the fifth */
    int type;
    const void *p;
    size_t len;
    uint8_t hd2[20];
    CHECK(wf_recv_into(&b, &type, hd2, sizeof hd2, y, n, &p, &len, 5.0) == WF_OK && type == 7);
    CHECK(memcmp(x, y, n) == 0 && memcmp(hd, hd2, 20) == 0);
    CHECK(wf_send2_rest(&a, &p2, hd, sizeof hd, x, n, 5.0) == WF_OK);
    for (int i = 1; i < 5; i++)
        CHECK(wf_recv_into(&b, &type, hd2, sizeof hd2, y, n, &p, &len, 5.0) == WF_OK && type == 7 + i &&
              memcmp(x, y, n) == 0);
    wf_conn_close(&a);
    wf_conn_close(&b);

    /* a frame of three parts with room for one, and nobody reading: the frame is half
     * announced when the wait times out, so the connection is closed */
    pair(&a, &b);
    CHECK(setup(&a, &b, 1) == 1);
    for (int i = 0; i < 3; i++)
        CHECK(wf_send2(&a, 20, hd, sizeof hd, x, n, 5.0) == WF_OK);
    st = wf_send2(&a, 21, hd, sizeof hd, x, 3 * n, 0.3);
    CHECKF(st == WF_ERR_TIMEOUT && a.fd < 0, "%d %s", st, wf_errmsg());
    wf_conn_close(&a);
    wf_conn_close(&b);

    /* the ring full and the reader gone: the wait ends at once, naming it */
    pair(&a, &b);
    CHECK(setup(&a, &b, 1) == 1);
    for (int i = 0; i < 4; i++)
        CHECK(wf_send2(&a, 9, hd, sizeof hd, x, n, 5.0) == WF_OK);
    wf_conn_close(&b);
    t0 = wf_now();
    st = wf_send2(&a, 10, hd, sizeof hd, x, n, 5.0);
    CHECKF(st == WF_ERR_PEER && has("end a"), "%d %s", st, wf_errmsg());
    CHECK(wf_now() - t0 < 1.0 * wf_test_slow());
    wf_conn_close(&a);
    free(x);
    free(y);
}

static void test_declined(void) {
    struct wf_conn a, b;
    pair(&a, &b);
    CHECK(setup(&a, &b, 0) == 0 && !a.shm && !b.shm);
    size_t n = 200000;
    uint8_t *x = malloc(n), *y = malloc(n), hd[20] = {0}, hd2[20];
    fill(x, n, 3);
    struct wf_send_part part;
    int st = wf_send2_begin(&a, &part, 5, hd, sizeof hd, x, n);
    CHECK(st >= 0 && part.shm == 0);
    struct wf_conn b2;
    CHECK(wf_conn_dup(&b2, &b) == WF_OK && b2.fd != b.fd && !b2.shm);
    /* the rest goes on the socket: read on the dup'ed end meanwhile (in the kernel's buffers) */
    if (st == 0) { /* does not fit the socket's buffer: read in a child */
        pid_t pid = fork();
        if (pid == 0) {
            int type;
            const void *p;
            size_t len;
            _exit(wf_recv_into(&b2, &type, hd2, sizeof hd2, y, n, &p, &len, 5.0) == WF_OK && memcmp(x, y, n) == 0 ? 0
                                                                                                                  : 1);
        }
        CHECK(wf_send2_rest(&a, &part, hd, sizeof hd, x, n, 5.0) == WF_OK);
        int status = -1;
        CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    } else {
        int type;
        const void *p;
        size_t len;
        CHECK(wf_recv_into(&b2, &type, hd2, sizeof hd2, y, n, &p, &len, 5.0) == WF_OK && memcmp(x, y, n) == 0);
    }
    wf_conn_close(&b2);
    wf_conn_close(&a);
    wf_conn_close(&b);

    /* nothing offered (R = 0): both ends stay on the socket */
    pair(&a, &b);
    struct wf_shm *pending;
    CHECK(wf_shm_offer_send(&a, 0, &pending, 5.0) == WF_OK && pending == NULL);
    CHECK(wf_shm_answer(&b, 1, 5.0) == 0 && wf_shm_offer_finish(&a, pending, 5.0) == 0);
    wf_conn_close(&a);
    wf_conn_close(&b);

    /* an offer of a segment this end cannot see (the peer is on another machine) */
    pair(&a, &b);
    struct wf_wbuf w;
    wf_wbuf_init(&w);
    wf_put_u64(&w, RING);
    wf_put_u32(&w, 16);
    wf_put_bytes(&w, "0123456789abcdef", 16);
    wf_put_str(&w, "/weft-1-not-here");
    CHECK(wf_send(&a, 0xFF05, w.p, w.len, 5.0) == WF_OK); /* WF_MSG_SHM_OFFER */
    wf_wbuf_free(&w);
    CHECK(wf_shm_answer(&b, 1, 5.0) == 0 && !b.shm);
    int type;
    const void *p;
    size_t len;
    CHECK(wf_recv(&a, &type, &p, &len, 5.0) == WF_OK && type == 0xFF06 && len > 1 && ((const uint8_t *)p)[0] == 0);
    wf_conn_close(&a);
    wf_conn_close(&b);
    free(x);
    free(y);
}

static void test_shared_by_dup(void) {
    struct wf_conn a, b, a2;
    pair(&a, &b);
    CHECK(setup(&a, &b, 1) == 1);
    CHECK(wf_conn_dup(&a2, &a) == WF_OK && a2.shm == a.shm);
    wf_conn_close(&a); /* the dup keeps the mapping */
    size_t n = 100000;
    uint8_t *x = malloc(n), *y = malloc(n);
    fill(x, n, 9);
    CHECK(wf_send(&a2, 11, x, n, 5.0) == WF_OK);
    int type;
    const void *p;
    size_t len;
    CHECK(wf_recv(&b, &type, &p, &len, 5.0) == WF_OK && type == 11 && len == n && memcmp(p, x, n) == 0);
    wf_conn_close(&a2);
    wf_conn_close(&b);
    free(x);
    free(y);
}

/* A peer that sends another frame between the parts of one: refused,
 * without reading the intruder's length out of the descriptor's buffer. */
static void test_parts_out_of_step(void) {
    struct wf_conn a, b;
    pair(&a, &b);
    CHECK(setup(&a, &b, 1) == 1);
    size_t n = WF_SHM_PART + 1000;
    uint8_t *x = malloc(n), *y = malloc(n), hd[20] = {0}, hd2[20], desc[WF_SHM_DESC];
    fill(x, n, 5);
    CHECK(wf_shm_put(&a, 7, hd, sizeof hd, x, n, 0, WF_SHM_PART, 0, 5.0, desc) == 1); /* the first part */
    CHECK(wf_send(&a, WF_MSG_SHM_BLOCK, desc, sizeof desc, 5.0) == WF_OK);
    CHECK(wf_send(&a, 7, x, 1000, 5.0) == WF_OK); /* not the next part: a socket frame longer than a descriptor */
    int type;
    const void *p;
    size_t len;
    int st = wf_recv_into(&b, &type, hd2, sizeof hd2, y, n, &p, &len, 5.0);
    CHECKF(st == WF_ERR_CORRUPT && has("in the middle of a frame") && has("end b") && b.fd < 0, "%d %s", st,
           wf_errmsg());
    wf_conn_close(&a);
    wf_conn_close(&b);
    free(x);
    free(y);
}

static void test_descriptors(void) {
    struct wf_shm_desc d = {.pos = 4096, .len = 1000, .crc = 0xdeadbeef, .type = 120, .total = 1000}, e;
    uint8_t b[WF_SHM_DESC];
    wf_shm_desc_encode(b, &d);
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 4096, 1u << 30, &e) == WF_OK);
    CHECK(e.pos == d.pos && e.len == d.len && e.crc == d.crc && e.type == d.type && e.total == 1000 && !e.more);
    CHECK(wf_shm_desc_decode(b, sizeof b - 1, RING, 4096, 1u << 30, &e) == WF_ERR_CORRUPT && has("descriptor"));
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 5000, 1u << 30, &e) == WF_ERR_CORRUPT && has("not next"));
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 100, 1u << 30, &e) == WF_ERR_CORRUPT); /* a gap, not a wrap */
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 4096, 999, &e) == WF_ERR_CORRUPT && has("limit 999"));
    CHECK(wf_shm_desc_decode(b, sizeof b, 0, 4096, 1u << 30, &e) == WF_ERR_CORRUPT);
    b[18] = 2; /* an undefined flag */
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 4096, 1u << 30, &e) == WF_ERR_CORRUPT && has("flags"));
    d.more = 1; /* the first part of a longer frame */
    d.total = 5000;
    wf_shm_desc_encode(b, &d);
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 4096, 1u << 30, &e) == WF_OK && e.more && e.total == 5000);
    d.total = 999; /* a part longer than its frame */
    wf_shm_desc_encode(b, &d);
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 4096, 1u << 30, &e) == WF_ERR_CORRUPT);
    d.more = 0;
    d.total = 1000;
    d.pos = RING; /* after skipping the ring's end: at its start */
    wf_shm_desc_encode(b, &d);
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, RING - 10, 1u << 30, &e) == WF_OK);
    d.pos = RING - 10; /* would run past the ring's end */
    wf_shm_desc_encode(b, &d);
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, RING - 10, 1u << 30, &e) == WF_ERR_CORRUPT);
    d.pos = 0;
    d.type = 0xFF01;
    wf_shm_desc_encode(b, &d);
    CHECK(wf_shm_desc_decode(b, sizeof b, RING, 0, 1u << 30, &e) == WF_ERR_CORRUPT && has("type"));
}

int main(void) {
    alarm((unsigned)(60 * wf_test_slow())); /* a hang fails the test instead of the whole suite */
    signal(SIGPIPE, SIG_IGN);
    test_echo_across_processes();
    test_full_ring();
    test_declined();
    test_shared_by_dup();
    test_parts_out_of_step();
    test_descriptors();
    CHECKF(leftovers() == 0, "%d objects left in /dev/shm", leftovers());
    return wf_test_done("test_shm");
}
