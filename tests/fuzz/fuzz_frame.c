/*
 * fuzz: the frame header decoder, the CRC check and the bounded reader
 * (comm layer). Built with libFuzzer by `make fuzz`; replayed over the seed
 * corpus by tests/fuzz/fuzz_main.c (any compiler) and by
 * tests/fuzz/test_fuzz_corpus.c (in the unit tests).
 *
 * Input layout:
 *   byte 0           K, the number of op bytes
 *   bytes 1..K       ops for the reader (see run_reader)
 *   bytes K+1..end   the buffer the reader reads
 * The whole input is also decoded as a frame (header + payload), and its
 * first 24 bytes as a shared-memory block descriptor against a ring whose
 * size and consumer position come from the next 16.
 *
 * Beyond "no crash, no sanitizer report" it checks invariants: the reader
 * never moves past its end, a failed read leaves it failed, and what it read
 * successfully, written back with the matching wf_put_*, reproduces the
 * bytes it consumed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/comm.h"

#define FUZZ_REQUIRE(cond)                                                                                             \
    do {                                                                                                               \
        if (!(cond)) abort();                                                                                          \
    } while (0)

static void fuzz_frame_decode(const uint8_t *data, size_t size) {
    if (size < WF_FRAME_HDR) return;
    /* a limit taken from the input too, so both sides of the length check are reached */
    uint32_t limit = size > WF_FRAME_HDR ? (uint32_t)data[size - 1] << 8 : WF_FRAME_MAX_DEFAULT;
    struct wf_frame_hdr h;
    if (wf_frame_decode_hdr(data, limit, &h) != WF_OK) return;
    FUZZ_REQUIRE(h.len <= limit && h.version == WF_PROTO_VERSION);
    if (h.len <= size - WF_FRAME_HDR) (void)wf_frame_check(data, &h, data + WF_FRAME_HDR);

    /* encoding any payload gives a header that decodes and checks */
    uint8_t hdr[WF_FRAME_HDR];
    size_t n = size - WF_FRAME_HDR;
    wf_frame_encode_hdr(hdr, h.type, data + WF_FRAME_HDR, n);
    struct wf_frame_hdr h2;
    FUZZ_REQUIRE(wf_frame_decode_hdr(hdr, (uint32_t)n, &h2) == WF_OK);
    FUZZ_REQUIRE(h2.type == h.type && h2.len == n);
    FUZZ_REQUIRE(wf_frame_check(hdr, &h2, data + WF_FRAME_HDR) == WF_OK);
}

static void fuzz_frame_reader(const uint8_t *ops, size_t nops, const uint8_t *buf, size_t len) {
    struct wf_rbuf r;
    struct wf_wbuf w;
    wf_rbuf_init(&r, buf, len);
    wf_wbuf_init(&w);
    for (size_t i = 0; i < nops && !r.err; i++) {
        size_t arg = i + 1 < nops ? ops[i + 1] : 0;
        switch (ops[i] % 7) {
        case 0: wf_put_u8(&w, wf_get_u8(&r)); break;
        case 1: wf_put_u32(&w, wf_get_u32(&r)); break;
        case 2: wf_put_u64(&w, wf_get_u64(&r)); break;
        case 3: wf_put_f64(&w, wf_get_f64(&r)); break;
        case 4: {
            const uint8_t *p = wf_get_bytes(&r, arg);
            FUZZ_REQUIRE(!p == !!r.err);
            if (p) {
                FUZZ_REQUIRE(p >= buf && p + arg <= buf + len);
                wf_put_bytes(&w, p, arg);
            }
            i++;
            break;
        }
        case 5: {
            char *s = wf_get_str(&r, arg * 4);
            FUZZ_REQUIRE(!s == !!r.err);
            if (s) {
                FUZZ_REQUIRE(strlen(s) <= arg * 4);
                wf_put_str(&w, s);
                wf_free(s);
            }
            i++;
            break;
        }
        case 6: { /* a length that would wrap pos + n */
            size_t huge = r.pos ? SIZE_MAX - r.pos + 1 : SIZE_MAX;
            FUZZ_REQUIRE(wf_get_bytes(&r, huge) == NULL && r.err);
            break;
        }
        }
        FUZZ_REQUIRE(r.pos <= r.len);
        if (!r.err) FUZZ_REQUIRE(!w.oom && w.len == r.pos && (r.pos == 0 || memcmp(w.p, buf, r.pos) == 0));
    }
    if (r.err) { /* sticky */
        size_t pos = r.pos;
        FUZZ_REQUIRE(wf_get_u64(&r) == 0 && wf_get_bytes(&r, 0) == NULL && r.pos == pos);
    }
    wf_wbuf_free(&w);
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A descriptor that decodes is a part of its frame, lies inside the ring,
 * starts at or after the consumer, and encodes back to the same bytes. */
static void fuzz_shm_desc(const uint8_t *data, size_t size) {
    if (size < WF_SHM_DESC + 16) return;
    uint64_t ring = rd64(data + WF_SHM_DESC) % (1ull << 34), expect = rd64(data + WF_SHM_DESC + 8);
    if (data[0] & 1) expect %= 4 * ring + 1; /* near the descriptor's own range half of the time */
    struct wf_shm_desc d;
    if (wf_shm_desc_decode(data, WF_SHM_DESC, ring, expect, WF_FRAME_MAX_DEFAULT, &d) != WF_OK) return;
    FUZZ_REQUIRE(ring > 0 && d.len > 0 && d.len <= ring && d.len <= d.total && d.pos >= expect &&
                 d.pos - expect < ring);
    FUZZ_REQUIRE(d.pos % ring + d.len <= ring && d.type < WF_MSG_COMM_FIRST && d.more <= 1);
    uint8_t back[WF_SHM_DESC];
    wf_shm_desc_encode(back, &d);
    FUZZ_REQUIRE(memcmp(back, data, 20) == 0 && memcmp(back + 20, data + 20, 4) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_frame_decode(data, size);
    fuzz_shm_desc(data, size);
    if (size == 0) return 0;
    size_t nops = WF_MIN((size_t)data[0], size - 1);
    fuzz_frame_reader(data + 1, nops, data + 1 + nops, size - 1 - nops);
    return 0;
}
