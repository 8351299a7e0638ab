/*
 * comm: the frame header codec and the byte buffers. A header round-trips;
 * each corrupted field is rejected with a message naming it; the CRC covers
 * the header's first 12 bytes and the payload; the reader never reads past
 * its end and refuses bad strings; the writer survives failed allocations.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "testutil.h"
#include "weft/comm.h"

static int has(const char *needle) { return strstr(wf_errmsg(), needle) != NULL; }

static void test_round_trip(void) {
    static const size_t lens[] = {0, 1, 15, 16, 1000, 70000};
    uint8_t *payload = malloc(70000);
    for (size_t i = 0; i < 70000; i++)
        payload[i] = (uint8_t)(i * 131 + 7);
    for (size_t i = 0; i < WF_ARRAY_LEN(lens); i++) {
        uint8_t hdr[WF_FRAME_HDR];
        wf_frame_encode_hdr(hdr, 0x1234, payload, lens[i]);
        CHECK(memcmp(hdr, "WEFT", 4) == 0); /* the magic reads as text on the wire */
        struct wf_frame_hdr h;
        CHECKF(wf_frame_decode_hdr(hdr, WF_FRAME_MAX_DEFAULT, &h) == WF_OK, "%s", wf_errmsg());
        CHECK(h.version == WF_PROTO_VERSION && h.type == 0x1234 && h.len == lens[i]);
        CHECKF(wf_frame_check(hdr, &h, payload) == WF_OK, "len %zu: %s", lens[i], wf_errmsg());
        /* a limit equal to the length is allowed; one less is not */
        CHECK(wf_frame_decode_hdr(hdr, (uint32_t)lens[i], &h) == WF_OK);
        if (lens[i]) CHECK(wf_frame_decode_hdr(hdr, (uint32_t)lens[i] - 1, &h) == WF_ERR_CORRUPT);
    }
    /* the exact bytes: fields little-endian at the documented offsets */
    uint8_t hdr[WF_FRAME_HDR];
    wf_frame_encode_hdr(hdr, 0x0102, "abc", 3);
    static const uint8_t want[12] = {'W', 'E', 'F', 'T', WF_PROTO_VERSION, 0, 0x02, 0x01, 3, 0, 0, 0};
    CHECK(memcmp(hdr, want, 12) == 0);
    uint32_t crc = wf_crc32(wf_crc32(0, hdr, 12), "abc", 3);
    CHECK(hdr[12] == (crc & 0xff) && hdr[15] == crc >> 24);
    free(payload);
}

static void test_corrupt_fields(void) {
    uint8_t payload[64], hdr[WF_FRAME_HDR], bad[WF_FRAME_HDR];
    for (int i = 0; i < 64; i++)
        payload[i] = (uint8_t)i;
    wf_frame_encode_hdr(hdr, 7, payload, sizeof payload);
    struct wf_frame_hdr h;

    memcpy(bad, hdr, sizeof bad);
    bad[1] ^= 0x20;
    CHECK(wf_frame_decode_hdr(bad, 1000, &h) == WF_ERR_CORRUPT);
    CHECKF(has("magic"), "%s", wf_errmsg());

    memcpy(bad, hdr, sizeof bad);
    bad[4] = WF_PROTO_VERSION + 1;
    CHECK(wf_frame_decode_hdr(bad, 1000, &h) == WF_ERR_CORRUPT);
    char both[64];
    snprintf(both, sizeof both, "version %d, this build speaks version %d", WF_PROTO_VERSION + 1, WF_PROTO_VERSION);
    CHECKF(has(both), "%s", wf_errmsg());

    memcpy(bad, hdr, sizeof bad);
    bad[10] = 0x10; /* 1 MiB + 64 */
    CHECK(wf_frame_decode_hdr(bad, 1000, &h) == WF_ERR_CORRUPT);
    CHECKF(has("length 1048640") && has("limit of 1000"), "%s", wf_errmsg());

    /* the type and a shorter length pass the decoder but not the CRC */
    memcpy(bad, hdr, sizeof bad);
    bad[6] = 8;
    CHECK(wf_frame_decode_hdr(bad, 1000, &h) == WF_OK);
    CHECK(wf_frame_check(bad, &h, payload) == WF_ERR_CORRUPT);
    CHECKF(has("crc mismatch") && has("type 8"), "%s", wf_errmsg());

    memcpy(bad, hdr, sizeof bad);
    bad[8] = 63;
    CHECK(wf_frame_decode_hdr(bad, 1000, &h) == WF_OK);
    CHECK(wf_frame_check(bad, &h, payload) == WF_ERR_CORRUPT);
    CHECKF(has("crc"), "%s", wf_errmsg());

    memcpy(bad, hdr, sizeof bad);
    bad[13] ^= 1;
    CHECK(wf_frame_decode_hdr(bad, 1000, &h) == WF_OK);
    CHECK(wf_frame_check(bad, &h, payload) == WF_ERR_CORRUPT);

    /* one flipped payload bit */
    CHECK(wf_frame_decode_hdr(hdr, 1000, &h) == WF_OK);
    payload[40] ^= 4;
    CHECK(wf_frame_check(hdr, &h, payload) == WF_ERR_CORRUPT);
    CHECKF(has("crc mismatch"), "%s", wf_errmsg());
}

static void test_buffers(void) {
    struct wf_wbuf w;
    wf_wbuf_init(&w);
    wf_put_u8(&w, 0xab);
    wf_put_u32(&w, 0xdeadbeef);
    wf_put_u64(&w, 0x0102030405060708ull);
    wf_put_f64(&w, -1.5);
    wf_put_f64(&w, NAN);
    wf_put_str(&w, "hello");
    wf_put_str(&w, "");
    wf_put_bytes(&w, "xyz", 3);
    for (int i = 0; i < 1000; i++) /* growth */
        wf_put_u32(&w, (uint32_t)i);
    CHECK(!w.oom);
    CHECK(w.len == 1 + 4 + 8 + 8 + 8 + 9 + 4 + 3 + 4000);
    CHECK(w.p[1] == 0xef && w.p[4] == 0xde); /* little-endian */

    struct wf_rbuf r;
    wf_rbuf_init(&r, w.p, w.len);
    CHECK(wf_get_u8(&r) == 0xab);
    CHECK(wf_get_u32(&r) == 0xdeadbeef);
    CHECK(wf_get_u64(&r) == 0x0102030405060708ull);
    CHECK(wf_get_f64(&r) == -1.5);
    CHECK(isnan(wf_get_f64(&r)));
    char *s = wf_get_str(&r, 100);
    CHECK(s && strcmp(s, "hello") == 0);
    wf_free(s);
    s = wf_get_str(&r, 0);
    CHECK(s && s[0] == 0);
    wf_free(s);
    const char *b = wf_get_bytes(&r, 3);
    CHECK(b && memcmp(b, "xyz", 3) == 0);
    int ok = 1;
    for (int i = 0; i < 1000; i++)
        ok &= wf_get_u32(&r) == (uint32_t)i;
    CHECK(ok && !r.err && r.pos == r.len);
    /* past the end: zero, NULL, sticky error, position unchanged */
    CHECK(wf_get_u8(&r) == 0 && r.err);
    CHECK(wf_get_u64(&r) == 0 && wf_get_bytes(&r, 0) == NULL && r.pos == r.len);

    /* a huge length cannot wrap the bound check */
    wf_rbuf_init(&r, w.p, w.len);
    r.pos = 8;
    CHECK(wf_get_bytes(&r, SIZE_MAX) == NULL && r.err && r.pos == 8);
    wf_wbuf_free(&w);

    /* strings: too long, overrunning, with a NUL inside */
    uint8_t t[16] = {5, 0, 0, 0, 'a', 'b', 'c', 'd', 'e'};
    wf_rbuf_init(&r, t, 9);
    CHECK(wf_get_str(&r, 4) == NULL && r.err);
    wf_rbuf_init(&r, t, 8);
    CHECK(wf_get_str(&r, 100) == NULL && r.err);
    t[6] = 0;
    wf_rbuf_init(&r, t, 9);
    CHECK(wf_get_str(&r, 100) == NULL && r.err);
    t[0] = 0xff, t[1] = 0xff, t[2] = 0xff, t[3] = 0xff;
    wf_rbuf_init(&r, t, 16);
    CHECK(wf_get_str(&r, SIZE_MAX) == NULL && r.err);
}

/* Failing each allocation in turn: the writer turns sticky-oom and keeps
 * what it had; the string reader returns NULL with err set. */
static void test_alloc_failures(void) {
    for (long k = 1; k <= 4; k++) {
        struct wf_wbuf w;
        wf_wbuf_init(&w);
        wf_alloc_fail_at(k);
        for (int i = 0; i < 200; i++)
            wf_put_u64(&w, (uint64_t)i);
        wf_alloc_fail_at(0);
        CHECKF(w.oom, "allocation %ld failed but the writer did not notice", k);
        size_t len = w.len;
        wf_put_u32(&w, 1); /* sticky: nothing more is appended */
        CHECK(w.len == len && w.len <= w.cap);
        wf_wbuf_free(&w);
    }
    uint8_t t[8] = {3, 0, 0, 0, 'a', 'b', 'c'};
    struct wf_rbuf r;
    wf_rbuf_init(&r, t, 7);
    wf_alloc_fail_at(1);
    CHECK(wf_get_str(&r, 10) == NULL && r.err);
    wf_alloc_fail_at(0);
}

/* wf_crc32 may take a faster path than zlib's crc32 on long buffers: it
 * must give zlib's bits for every length, alignment, split and start value.
 * Run once per kernel (WEFT_CRC caps it), each in a child process because
 * the kernel is picked once per process. */
static void crc_matches_zlib(void) {
    size_t cap = 70000;
    uint8_t *b = malloc(cap + 16);
    for (size_t i = 0; i < cap + 16; i++)
        b[i] = (uint8_t)(wf_mix64(i) >> 17);
    int bad = 0;
    for (size_t n = 0; n < 1200; n++)
        for (size_t off = 0; off < 16; off += 5) {
            uint32_t start = (uint32_t)wf_mix64(n * 16 + off);
            uint32_t want = n ? (uint32_t)crc32_z(start, b + off, n) : start;
            bad += wf_crc32(start, b + off, n) != want;
        }
    static const size_t big[] = {4096, 65536, 65537, 69999, 70000};
    for (size_t k = 0; k < WF_ARRAY_LEN(big); k++) {
        uint32_t want = (uint32_t)crc32_z(0, b + 3, big[k]);
        bad += wf_crc32(0, b + 3, big[k]) != want;
        /* in two pieces, as wf_send2 and the header do it */
        bad += wf_crc32(wf_crc32(0, b + 3, 1000), b + 1003, big[k] - 1000) != want;
    }
    CHECKF(bad == 0, "%d crc values differ from zlib's", bad);
    CHECK(wf_crc32(0, "123456789", 9) == 0xcbf43926u); /* the standard check value */
    free(b);
}

static void test_crc_matches_zlib(void) {
    static const char *caps[] = {"zlib", "clmul", "any"};
    for (size_t i = 0; i < WF_ARRAY_LEN(caps); i++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("WEFT_CRC", caps[i], 1);
            crc_matches_zlib();
            _exit(wf_test_failures ? 1 : 0);
        }
        int ws = 0;
        CHECK(pid > 0 && waitpid(pid, &ws, 0) == pid);
        CHECKF(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "crc kernel %s differs from zlib", caps[i]);
    }
}

int main(void) {
    test_crc_matches_zlib();
    test_round_trip();
    test_corrupt_fields();
    test_buffers();
    test_alloc_failures();
    return wf_test_done("test_frame");
}
