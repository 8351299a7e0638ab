/*
 * fuzz: the acceptor's handshake state machine (cluster layer, auth.c) on a
 * real socket pair, fed by a peer that writes the input in pieces between
 * steps. Byte 0 holds the flags:
 *
 *     bit 0  answer the challenge with a valid HELLO first, so that the rest
 *            of the input is an authenticated peer's traffic (per-type caps,
 *            the message decoders)
 *     bit 1  close the peer's end after the last piece
 *     bit 2  a deadline already passed
 *
 * byte 1 seeds the piece sizes (1 to 64 bytes). Beyond "no crash, no
 * sanitizer report": a step never waits, an unauthenticated connection never
 * buffers more than WF_AUTH_FRAME_MAX, a refused connection is closed, and
 * one that authenticates has its own limit back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft/cluster.h"
#include "weft/comm.h"
#include "weft/core.h"

static const char hs_token_hex[] = "00112233445566778899aabbccddeeff";

/* Writes the HELLO a connector holding the token would answer the challenge on fd with. */
static int hs_answer(int fd, const struct wf_token *t) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return -1;
    struct wf_conn in, mid, out;
    wf_conn_from_fd(&in, dup(fd), "acceptor");
    wf_conn_from_fd(&mid, sv[0], "replay");
    wf_conn_from_fd(&out, sv[1], "connector");
    struct wf_msg ch, h = {.role = WF_ROLE_WORKER};
    int ok = wf_msg_recv(&in, &ch, 1.0) == WF_OK;
    if (ok) {
        ok = wf_msg_send(&mid, &ch, 1.0) == WF_OK && wf_auth_connect(&out, t, &h, 1.0) == WF_OK;
        wf_msg_free(&ch);
    }
    uint8_t buf[1024];
    ssize_t n = ok ? read(sv[0], buf, sizeof buf) : -1;
    ok = n > 0 && write(fd, buf, (size_t)n) == n;
    wf_conn_close(&in);
    wf_conn_close(&mid);
    wf_conn_close(&out);
    return ok ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2 || size > 65536) return 0;
    int flags = data[0];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;
    struct wf_token t;
    if (wf_token_from_hex(&t, hs_token_hex) < 0) abort();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) return 0;
    struct wf_conn c;
    if (wf_conn_from_fd(&c, sv[0], "fuzzed peer") < 0) {
        close(sv[1]);
        return 0;
    }
    struct wf_auth a;
    if (wf_auth_begin(&a, &c, (flags & 4) ? 0.0 : 60.0) < 0) abort(); /* a fresh socket takes the challenge */
    if ((flags & 1) && hs_answer(sv[1], &t) < 0) abort();
    int state = 0; /* 0: handshaking, 1: authenticated, -1: refused */
    size_t off = 0;
    struct wf_msg m;
    for (int round = 0; state >= 0; round++) {
        if (off < size) {
            seed = seed * 1103515245u + 12345u;
            size_t piece = 1 + (seed >> 16) % 64;
            if (piece > size - off) piece = size - off;
            if (write(sv[1], data + off, piece) != (ssize_t)piece) abort();
            off += piece;
        } else if ((flags & 2) && sv[1] >= 0) {
            close(sv[1]);
            sv[1] = -1;
        }
        double t0 = wf_now();
        if (state == 0) {
            int rc = wf_auth_step(&a, &t, &m);
            if (rc < 0) {
                if (a.c.fd >= 0) abort(); /* a refused peer is closed */
                state = -1;
            } else if (rc == 1) {
                if (a.c.max_len != WF_FRAME_MAX_DEFAULT || a.c.type_max != wf_msg_max_len) abort();
                if (m.type != WF_M_HELLO) abort();
                wf_msg_free(&m);
                state = 1;
            } else if (a.c.rcap > WF_FRAME_HDR + WF_AUTH_FRAME_MAX) {
                abort(); /* more buffered for a stranger than its first frame may hold */
            }
        } else {
            uint64_t before = a.c.bytes_recv;
            int rc = wf_msg_recv(&a.c, &m, 0.0);
            if (rc == WF_OK) {
                const char *name;
                if (a.c.bytes_recv - before - WF_FRAME_HDR > wf_msg_max_len(m.type, &name))
                    abort(); /* a message longer than its type's cap got through */
                wf_msg_free(&m);
            } else if (rc != WF_ERR_TIMEOUT || a.c.fd < 0) {
                state = -1;
            }
        }
        if (wf_now() - t0 > 5.0) abort(); /* a step waited */
        if (off >= size && (sv[1] < 0 || !(flags & 2)) && round > (int)size + 4) break;
    }
    wf_conn_close(&a.c);
    if (sv[1] >= 0) close(sv[1]);
    return 0;
}
