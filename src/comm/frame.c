/*
 * comm: the frame header codec and the byte buffers messages are built
 * from. Everything here is pure (no I/O) and bounded: a decoder never reads
 * past the length it is given, so it can be fed anything (tests/fuzz).
 */
#include <limits.h>
#include <string.h>

#include "comm_int.h"

static void encode_fields(uint8_t out[WF_FRAME_HDR], int type, size_t len) {
    wf_le32(out, WF_FRAME_MAGIC);
    wf_le16(out + 4, WF_PROTO_VERSION);
    wf_le16(out + 6, (uint16_t)type);
    wf_le32(out + 8, (uint32_t)len);
}

void wf_frame_encode_hdr(uint8_t out[WF_FRAME_HDR], int type, const void *payload, size_t len) {
    encode_fields(out, type, len);
    wf_le32(out + 12, wf_crc32(wf_crc32(0, out, 12), payload, len));
}

void wf_frame_encode_hdr_iov(uint8_t out[WF_FRAME_HDR], int type, const struct iovec *iov, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    encode_fields(out, type, len);
    uint32_t crc = wf_crc32(0, out, 12);
    for (int i = 0; i < n; i++)
        crc = wf_crc32(crc, iov[i].iov_base, iov[i].iov_len);
    wf_le32(out + 12, crc);
}

int wf_frame_decode_hdr(const uint8_t in[WF_FRAME_HDR], uint32_t max_len, struct wf_frame_hdr *h) {
    uint32_t magic = wf_rd32(in);
    if (magic != WF_FRAME_MAGIC)
        return wf_error(WF_ERR_CORRUPT, "frame: bad magic 0x%08x (expected 0x%08x \"WEFT\"): not a weft peer?", magic,
                        WF_FRAME_MAGIC);
    h->version = wf_rd16(in + 4);
    if (h->version != WF_PROTO_VERSION)
        return wf_error(WF_ERR_CORRUPT, "frame: protocol version %u, this build speaks version %d", h->version,
                        WF_PROTO_VERSION);
    h->type = wf_rd16(in + 6);
    h->len = wf_rd32(in + 8);
    if (h->len > max_len)
        return wf_error(WF_ERR_CORRUPT, "frame: payload length %u exceeds the limit of %u bytes (type %u)", h->len,
                        max_len, h->type);
    h->crc = wf_rd32(in + 12);
    return WF_OK;
}

int wf_frame_check(const uint8_t in[WF_FRAME_HDR], const struct wf_frame_hdr *h, const void *payload) {
    uint32_t crc = wf_crc32(wf_crc32(0, in, 12), payload, h->len);
    if (crc != h->crc)
        return wf_error(WF_ERR_CORRUPT,
                        "frame: crc mismatch on a type %u frame of %u bytes (header 0x%08x, data 0x%08x)", h->type,
                        h->len, h->crc, crc);
    return WF_OK;
}

/* ---- writer ---- */

void wf_wbuf_init(struct wf_wbuf *b) { memset(b, 0, sizeof *b); }

void wf_wbuf_free(struct wf_wbuf *b) {
    if (!b) return;
    wf_free(b->p);
    memset(b, 0, sizeof *b);
}

/* Room for n more bytes; on failure the buffer keeps what it had and turns
 * sticky-oom, so a message is built with unchecked puts and checked once. */
static uint8_t *wbuf_room(struct wf_wbuf *b, size_t n) {
    if (b->oom || n == 0) return NULL; /* p may still be NULL: no pointer arithmetic on it */
    if (n > SIZE_MAX - b->len) {
        b->oom = 1;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
        uint8_t *p = wf_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    uint8_t *at = b->p + b->len;
    b->len += n;
    return at;
}

void wf_put_bytes(struct wf_wbuf *b, const void *p, size_t n) {
    uint8_t *at = wbuf_room(b, n);
    if (at && n) memcpy(at, p, n);
}

void wf_put_u8(struct wf_wbuf *b, uint8_t v) { wf_put_bytes(b, &v, 1); }

void wf_put_u32(struct wf_wbuf *b, uint32_t v) {
    uint8_t t[4];
    wf_le32(t, v);
    wf_put_bytes(b, t, 4);
}

void wf_put_u64(struct wf_wbuf *b, uint64_t v) {
    wf_put_u32(b, (uint32_t)v);
    wf_put_u32(b, (uint32_t)(v >> 32));
}

void wf_put_f64(struct wf_wbuf *b, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    wf_put_u64(b, u);
}

void wf_put_str(struct wf_wbuf *b, const char *s) {
    size_t n = strlen(s);
    if (n > UINT32_MAX) {
        b->oom = 1;
        return;
    }
    wf_put_u32(b, (uint32_t)n);
    wf_put_bytes(b, s, n);
}

/* ---- reader ---- */

void wf_rbuf_init(struct wf_rbuf *r, const void *p, size_t len) {
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->err = 0;
}

const void *wf_get_bytes(struct wf_rbuf *r, size_t n) {
    /* compare against what is left, never pos + n: that could wrap */
    if (r->err || n > r->len - r->pos) {
        r->err = 1;
        return NULL;
    }
    const void *at = r->p + r->pos;
    r->pos += n;
    return at;
}

uint8_t wf_get_u8(struct wf_rbuf *r) {
    const uint8_t *p = wf_get_bytes(r, 1);
    return p ? p[0] : 0;
}

uint32_t wf_get_u32(struct wf_rbuf *r) {
    const uint8_t *p = wf_get_bytes(r, 4);
    return p ? wf_rd32(p) : 0;
}

uint64_t wf_get_u64(struct wf_rbuf *r) {
    const uint8_t *p = wf_get_bytes(r, 8);
    return p ? (uint64_t)wf_rd32(p) | (uint64_t)wf_rd32(p + 4) << 32 : 0;
}

double wf_get_f64(struct wf_rbuf *r) {
    uint64_t u = wf_get_u64(r);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

char *wf_get_str(struct wf_rbuf *r, size_t max_len) {
    uint32_t n = wf_get_u32(r);
    if (r->err) return NULL;
    if (n > max_len) {
        r->err = 1;
        return NULL;
    }
    const char *s = wf_get_bytes(r, n);
    if (!s || memchr(s, 0, n)) {
        r->err = 1;
        return NULL;
    }
    char *out = wf_malloc((size_t)n + 1);
    if (!out) {
        r->err = 1;
        return NULL;
    }
    memcpy(out, s, n);
    out[n] = 0;
    return out;
}
