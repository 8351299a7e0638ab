/*
 * comm: shared memory under a connection between two processes on one
 * machine. Over TCP loopback a 1.6 MB activation costs ~0.5-0.8 ms of
 * kernel copying and protocol work on each hand-off; through a shared ring
 * it is one memcpy in (~0.1 ms) and one out.
 *
 * The connection keeps its socket: every frame still goes through it in
 * order, but a large one (>= WF_SHM_MIN bytes) travels as a 24-byte block
 * descriptor (WF_MSG_SHM_BLOCK) while its payload sits in the segment. So
 * ordering, timeouts, a peer's death (the socket closes) and a STOP that
 * shuts the socket down work as before, and a frame that does not fit the
 * ring simply goes through the socket.
 *
 * The segment is a POSIX shared-memory object with one ring per direction:
 *
 *   [0, 4096)            header: magic, ring size R, the offer's nonce, and
 *                        per ring the consumer's tail (u64) and a futex word
 *   [4096, 4096 + R)     ring 0: offering end -> answering end
 *   [4096 + R, 4096+2R)  ring 1: answering end -> offering end
 *
 * A producer keeps its head to itself: it places a payload contiguously
 * (skipping the ring's end when the payload would wrap), copies it in, then
 * sends the descriptor {position, length, CRC-32 of the payload, type}. The
 * consumer, which meets descriptors in socket order, copies the payload out,
 * checks the CRC, and moves the tail past it (then wakes a producer that
 * waits for room on the futex word, in slices of 50 ms that also check the
 * socket for a closed peer).
 *
 * Set-up (wf_shm_offer_send, wf_shm_answer, wf_shm_offer_finish): the
 * offering end creates "/weft-<pid>-<n>-<random>" (mode 0600, posix_fallocate'd
 * so that a full /dev/shm is an error now and not a SIGBUS later), writes a
 * random nonce into it and sends the name and nonce (WF_MSG_SHM_OFFER). The
 * answering end opens and maps it and unlinks the name; finding the nonce
 * there proves that both ends see the same memory, i.e. the same machine.
 * It replies yes or no (WF_MSG_SHM_ANSWER), and the offering end unlinks the
 * name whatever the answer. Objects left by a process that died between the
 * two steps are swept at a later offer on the machine (once 10 minutes old).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "comm_int.h"
#include "weft/core.h"

#define SEG_HDR 4096
#define SEG_MAGIC "weftshm1"
#define WAIT_SLICE_MS 50
#define SWEEP_AGE_S 600 /* left-over objects of dead processes are removed once this old */

struct ring_ctl {          /* in the segment; each on its own cache line */
    _Atomic uint64_t tail; /* bytes the consumer is done with, counted from the start */
    _Atomic uint32_t seq;  /* futex word: bumped after every move of tail */
    uint8_t pad[64 - 12];
};

struct seg_hdr {
    char magic[8];
    uint64_t ring_bytes;
    uint8_t nonce[16];
    uint8_t pad[64 - 32];
    struct ring_ctl ring[2];
};

struct wf_shm {
    _Atomic int refs; /* connections sharing it (wf_conn_dup) */
    uint8_t *base;    /* the mapping */
    size_t map_bytes;
    uint64_t ring_bytes; /* R */
    int out, in;         /* rings this end sends on and receives from */
    uint64_t head;       /* producer: bytes placed on ring out so far (only this end knows it) */
    uint64_t expect;     /* consumer: where the next block on ring in can start at the earliest */
    char name[64];       /* offering end, until the answer: the name to unlink */
};

static struct seg_hdr *seg(const struct wf_shm *s) { return (struct seg_hdr *)(void *)s->base; }
static uint8_t *ring_data(const struct wf_shm *s, int r) { return s->base + SEG_HDR + (size_t)r * s->ring_bytes; }

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, (uint32_t *)(void *)w, op, val, ts, NULL, 0);
}

static void shm_unmap(struct wf_shm *s) {
    if (!s) return;
    if (s->base) munmap(s->base, s->map_bytes);
    wf_free(s);
}

void wf_shm_release(struct wf_shm *s) {
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) shm_unmap(s);
}

struct wf_shm *wf_shm_retain(struct wf_shm *s) {
    if (s) atomic_fetch_add(&s->refs, 1);
    return s;
}

int wf_shm_fits(const struct wf_shm *s, size_t n) { return s && n >= WF_SHM_MIN && n <= s->ring_bytes; }

/* Copies n bytes and folds them into crc, a piece at a time so that the
 * checksum reads each piece while it is still in L1 (one pass over memory
 * instead of two: 0.27 -> 0.18 ms for 1.6 MB into a cold ring, measured). */
static uint32_t copy_crc(uint8_t *dst, const uint8_t *src, size_t n, uint32_t crc) {
    enum { PIECE = 16 << 10 };
    for (size_t o = 0; o < n; o += PIECE) {
        size_t k = WF_MIN((size_t)PIECE, n - o);
        memcpy(dst + o, src + o, k);
        crc = wf_crc32(crc, dst + o, k);
    }
    return crc;
}

/* ---- descriptors ---- */

void wf_shm_desc_encode(uint8_t out[WF_SHM_DESC], const struct wf_shm_desc *d) {
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(d->pos >> (8 * i));
    wf_le32(out + 8, d->len);
    wf_le32(out + 12, d->crc);
    wf_le16(out + 16, d->type);
    out[18] = d->more ? 1 : 0;
    out[19] = 0;
    wf_le32(out + 20, d->total);
}

int wf_shm_desc_decode(const uint8_t *p, size_t n, uint64_t ring_bytes, uint64_t expect, uint32_t max_len,
                       struct wf_shm_desc *d) {
    if (n != WF_SHM_DESC)
        return wf_error(WF_ERR_CORRUPT, "shared-memory block: descriptor of %zu bytes (expected %d)", n, WF_SHM_DESC);
    if (ring_bytes == 0) return wf_error(WF_ERR_CORRUPT, "shared-memory block without a ring");
    d->pos = 0;
    for (int i = 0; i < 8; i++)
        d->pos |= (uint64_t)p[i] << (8 * i);
    d->len = wf_rd32(p + 8);
    d->crc = wf_rd32(p + 12);
    d->type = wf_rd16(p + 16);
    d->more = p[18];
    d->total = wf_rd32(p + 20);
    if (d->type >= WF_MSG_COMM_FIRST)
        return wf_error(WF_ERR_CORRUPT, "shared-memory block: type 0x%04x is not a message type", d->type);
    if (d->more > 1 || p[19])
        return wf_error(WF_ERR_CORRUPT, "shared-memory block: flags 0x%02x%02x are not defined", p[19], p[18]);
    if (d->total > max_len || d->len > d->total || d->len == 0 || d->len > ring_bytes)
        return wf_error(WF_ERR_CORRUPT,
                        "shared-memory block: a part of %u bytes of a %u-byte frame (limit %u, ring %llu bytes)",
                        d->len, d->total, max_len, (unsigned long long)ring_bytes);
    /* it starts where the last one ended, or at the ring's start after skipping its end */
    if (d->pos < expect || d->pos - expect >= ring_bytes || d->pos % ring_bytes + d->len > ring_bytes ||
        (d->pos != expect && d->pos % ring_bytes != 0))
        return wf_error(WF_ERR_CORRUPT, "shared-memory block: position %llu (length %u) is not next in the ring",
                        (unsigned long long)d->pos, d->len);
    return WF_OK;
}

/* Of bytes [off, off + n) of the concatenation a|b, how many lie in a. */
static size_t in_a(size_t alen, size_t off, size_t n) { return off < alen ? WF_MIN(n, alen - off) : 0; }

/* Copies bytes [off, off + n) of a|b to ring, folding them into a CRC. */
static uint32_t copy_in(uint8_t *ring, const uint8_t *a, size_t alen, const uint8_t *b, size_t off, size_t n) {
    size_t ka = in_a(alen, off, n);
    uint32_t crc = ka ? copy_crc(ring, a + off, ka, 0) : 0;
    return n > ka ? copy_crc(ring + ka, b + (off + ka - alen), n - ka, crc) : crc;
}

/* Copies n bytes from ring to bytes [off, off + n) of a|b, folding them into a CRC. */
static uint32_t copy_out(const uint8_t *ring, uint8_t *a, size_t alen, uint8_t *b, size_t off, size_t n) {
    size_t ka = in_a(alen, off, n);
    uint32_t crc = ka ? copy_crc(a + off, ring, ka, 0) : 0;
    return n > ka ? copy_crc(b + (off + ka - alen), ring + ka, n - ka, crc) : crc;
}

/* ---- producer ---- */

/* Peer gone or socket shut down (by this process, on a STOP)? */
static int socket_closed(const struct wf_conn *c) {
    if (c->fd < 0) return 1;
    struct pollfd pfd = {.fd = c->fd, .events = POLLRDHUP};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

int wf_shm_put(struct wf_conn *c, int type, const void *a, size_t alen, const void *b, size_t blen, size_t off,
               size_t n, int nowait, double timeout_s, uint8_t desc[WF_SHM_DESC]) {
    struct wf_shm *s = c->shm;
    if (c->fd < 0) return wf_error(WF_ERR_PEER, "%s: connection is closed (after an earlier error)", c->name);
    uint64_t R = s->ring_bytes;
    uint64_t at = s->head % R, pos = s->head + (at + n > R ? R - at : 0);
    struct ring_ctl *rc = &seg(s)->ring[s->out];
    double deadline = wf_deadline(timeout_s);
    for (;;) {
        uint32_t seq = atomic_load_explicit(&rc->seq, memory_order_acquire);
        uint64_t tail = WF_MIN(atomic_load_explicit(&rc->tail, memory_order_acquire), s->head); /* trust no more */
        if (tail == s->head || pos + n - tail <= R) break; /* empty, or no overlap with [tail, head) */
        if (nowait) return 0;
        if (socket_closed(c)) {
            wf_conn_break(c);
            return wf_error(WF_ERR_PEER,
                            "the connection to %s closed (the peer gone, or this worker stopping) while waiting for "
                            "room in its shared-memory ring",
                            c->name);
        }
        int ms = wf_ms_left(deadline);
        if (ms == 0)
            return wf_error(
                WF_ERR_TIMEOUT,
                "timed out after %.1f s sending to %s: its shared-memory ring stays full (it is not reading)",
                timeout_s, c->name);
        if (ms < 0 || ms > WAIT_SLICE_MS) ms = WAIT_SLICE_MS;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
        futex(&rc->seq, FUTEX_WAIT, seq, &ts);
    }
    uint8_t *dst = ring_data(s, s->out) + pos % R;
    uint32_t crc = copy_in(dst, a, alen, b, off, n);
    struct wf_shm_desc d = {.pos = pos,
                            .len = (uint32_t)n,
                            .crc = crc,
                            .type = (uint16_t)type,
                            .more = off + n < alen + blen,
                            .total = (uint32_t)(alen + blen)};
    s->head = pos + n;
    wf_shm_desc_encode(desc, &d);
    return 1;
}

/* ---- consumer ---- */

int wf_shm_next(struct wf_conn *c, const void *dp, size_t dn, struct wf_shm_desc *d) {
    int st = c->shm ? wf_shm_desc_decode(dp, dn, c->shm->ring_bytes, c->shm->expect, c->max_len, d)
                    : wf_error(WF_ERR_CORRUPT, "a shared-memory block on a connection without shared memory");
    if (st) {
        wf_conn_break(c);
        return wf_error_prefix(st, "from %s", c->name);
    }
    return WF_OK;
}

int wf_shm_take(struct wf_conn *c, const struct wf_shm_desc *d, void *head, size_t hlen, void *dst, size_t off) {
    struct wf_shm *s = c->shm;
    const uint8_t *src = ring_data(s, s->in) + d->pos % s->ring_bytes;
    uint32_t crc = copy_out(src, head, hlen, dst, off, d->len);
    struct ring_ctl *rc = &seg(s)->ring[s->in];
    s->expect = d->pos + d->len;
    atomic_store_explicit(&rc->tail, s->expect, memory_order_release);
    atomic_fetch_add_explicit(&rc->seq, 1, memory_order_release);
    futex(&rc->seq, FUTEX_WAKE, INT_MAX, NULL);
    if (crc != d->crc) {
        wf_conn_break(c);
        return wf_error(WF_ERR_CORRUPT,
                        "shared-memory block: crc mismatch on a type %u block of %u bytes (descriptor 0x%08x, data "
                        "0x%08x) from %s",
                        d->type, d->len, d->crc, crc, c->name);
    }
    return WF_OK;
}

/* ---- set-up ---- */

/* Unlinks weft objects of processes that no longer exist (killed between
 * creating one and the peer's answer). */
static void sweep(void) {
    DIR *dir = opendir("/dev/shm");
    if (!dir) return;
    struct dirent *e;
    while ((e = readdir(dir))) {
        long pid;
        char rest[32];
        if (sscanf(e->d_name, "weft-%ld-%31s", &pid, rest) != 2 || pid <= 0 || pid > INT_MAX) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        /* a pid from another pid namespace sharing this /dev/shm may look dead: only old objects go */
        struct stat sb;
        if (fstatat(dirfd(dir), e->d_name, &sb, 0) < 0 || time(NULL) - sb.st_mtime < SWEEP_AGE_S) continue;
        char name[300];
        snprintf(name, sizeof name, "/%s", e->d_name);
        shm_unlink(name);
    }
    closedir(dir);
}

static struct wf_shm *shm_new(void) {
    struct wf_shm *s = wf_calloc(1, sizeof *s);
    if (s) atomic_init(&s->refs, 1);
    return s;
}

static uint8_t *map_fd(int fd, size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Creates the offering end's segment; NULL (with the reason in *why) when
 * shared memory cannot be had here. */
static struct wf_shm *create_segment(uint64_t ring_bytes, char *why, size_t nwhy) {
    static _Atomic unsigned counter;
    sweep();
    struct wf_shm *s = shm_new();
    if (!s) {
        snprintf(why, nwhy, "out of memory");
        return NULL;
    }
    uint8_t rnd[8] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) memset(rnd, 0, sizeof rnd);
    snprintf(s->name, sizeof s->name, "/weft-%ld-%u-%02x%02x%02x%02x%02x%02x", (long)getpid(),
             atomic_fetch_add(&counter, 1), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    s->ring_bytes = ring_bytes;
    s->map_bytes = SEG_HDR + 2 * ring_bytes;
    s->out = 0;
    s->in = 1;
    int fd = shm_open(s->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        snprintf(why, nwhy, "shm_open %s: %s", s->name, strerror(errno));
        wf_free(s);
        return NULL;
    }
    int e = posix_fallocate(fd, 0, (off_t)s->map_bytes);
    if (e == 0 && !(s->base = map_fd(fd, s->map_bytes))) e = errno;
    close(fd);
    if (e) {
        snprintf(why, nwhy, "%zu bytes of shared memory (%s): %s", s->map_bytes, s->name, strerror(e));
        shm_unlink(s->name);
        shm_unmap(s);
        return NULL;
    }
    struct seg_hdr *h = seg(s);
    memcpy(h->magic, SEG_MAGIC, 8);
    h->ring_bytes = ring_bytes;
    if (getrandom(h->nonce, sizeof h->nonce, 0) != (ssize_t)sizeof h->nonce) {
        snprintf(why, nwhy, "getrandom: %s", strerror(errno));
        shm_unlink(s->name);
        shm_unmap(s);
        return NULL;
    }
    return s;
}

int wf_shm_offer_send(struct wf_conn *c, uint64_t ring_bytes, struct wf_shm **pending, double timeout_s) {
    *pending = NULL;
    char why[300] = "not offered";
    ring_bytes = (ring_bytes + 4095) & ~(uint64_t)4095;
    struct wf_shm *s = ring_bytes ? create_segment(ring_bytes, why, sizeof why) : NULL;
    struct wf_wbuf w;
    wf_wbuf_init(&w);
    wf_put_u64(&w, s ? ring_bytes : 0);
    wf_put_u32(&w, s ? 16 : 0);
    if (s) wf_put_bytes(&w, seg(s)->nonce, 16);
    wf_put_str(&w, s ? s->name : why);
    int rc = w.oom ? wf_error(WF_ERR_NOMEM, "out of memory offering shared memory to %s", c->name)
                   : wf_send(c, WF_MSG_SHM_OFFER, w.p, w.len, timeout_s);
    wf_wbuf_free(&w);
    if (rc < 0 && s) {
        shm_unlink(s->name);
        shm_unmap(s);
        return rc;
    }
    if (!s) WF_LOGD("comm", "%s: no shared memory offered: %s", c->name, why);
    *pending = s;
    return rc;
}

/* Maps the offered segment; NULL and why when it cannot be used here. */
static struct wf_shm *open_segment(uint64_t ring_bytes, const uint8_t *nonce, const char *name, char *why,
                                   size_t nwhy) {
    if (strncmp(name, "/weft-", 6) || strchr(name + 1, '/') || ring_bytes == 0 || ring_bytes > (1ull << 40)) {
        snprintf(why, nwhy, "a malformed offer (%s, %llu bytes)", name, (unsigned long long)ring_bytes);
        return NULL;
    }
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) {
        snprintf(why, nwhy, "%s: %s (another machine?)", name, strerror(errno));
        return NULL;
    }
    shm_unlink(name); /* mapped below or not used: either way nobody else needs the name */
    struct stat sb;
    struct wf_shm *s = shm_new();
    if (!s || fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != SEG_HDR + 2 * ring_bytes) {
        snprintf(why, nwhy, "%s: not the size offered", name);
        close(fd);
        wf_free(s);
        return NULL;
    }
    s->ring_bytes = ring_bytes;
    s->map_bytes = SEG_HDR + 2 * ring_bytes;
    s->out = 1;
    s->in = 0;
    s->base = map_fd(fd, s->map_bytes);
    close(fd);
    if (!s->base || memcmp(seg(s)->magic, SEG_MAGIC, 8) || seg(s)->ring_bytes != ring_bytes ||
        memcmp(seg(s)->nonce, nonce, 16)) {
        snprintf(why, nwhy, "%s: %s", name, s->base ? "not the segment offered" : strerror(errno));
        shm_unmap(s);
        return NULL;
    }
    return s;
}

int wf_shm_answer(struct wf_conn *c, int allow, double timeout_s) {
    int type;
    const void *p;
    size_t n;
    int rc = wf_recv(c, &type, &p, &n, timeout_s);
    if (rc < 0) return rc;
    if (type != WF_MSG_SHM_OFFER)
        return wf_error(WF_ERR_PEER, "%s sent a type %d frame where its shared-memory offer was due", c->name, type);
    struct wf_rbuf r;
    wf_rbuf_init(&r, p, n);
    uint64_t ring_bytes = wf_get_u64(&r);
    uint8_t nonce[16] = {0};
    uint32_t nn = wf_get_u32(&r);
    const void *np = nn == 16 ? wf_get_bytes(&r, 16) : NULL;
    char *name = wf_get_str(&r, 255);
    if (r.err || nn != (ring_bytes ? 16u : 0u)) {
        wf_free(name);
        return wf_error(WF_ERR_CORRUPT, "%s sent a malformed shared-memory offer", c->name);
    }
    if (np) memcpy(nonce, np, 16);
    char why[400] = "not wanted here";
    struct wf_shm *s = NULL;
    if (!ring_bytes)
        snprintf(why, sizeof why, "none offered: %s", name);
    else if (allow)
        s = open_segment(ring_bytes, nonce, name, why, sizeof why);
    struct wf_wbuf w;
    wf_wbuf_init(&w);
    wf_put_u8(&w, s != NULL);
    wf_put_str(&w, s ? "" : why);
    rc = w.oom ? wf_error(WF_ERR_NOMEM, "out of memory answering %s", c->name)
               : wf_send(c, WF_MSG_SHM_ANSWER, w.p, w.len, timeout_s);
    wf_wbuf_free(&w);
    wf_free(name);
    if (rc < 0) {
        shm_unmap(s);
        return rc;
    }
    if (!s) {
        WF_LOGD("comm", "%s: socket only: %s", c->name, why);
        return 0;
    }
    c->shm = s;
    return 1;
}

void wf_shm_cancel(struct wf_shm *pending) {
    if (!pending) return;
    shm_unlink(pending->name);
    shm_unmap(pending);
}

int wf_shm_offer_finish(struct wf_conn *c, struct wf_shm *pending, double timeout_s) {
    int type;
    const void *p;
    size_t n;
    int rc = wf_recv(c, &type, &p, &n, timeout_s);
    if (pending) shm_unlink(pending->name); /* the peer has it mapped, or never will */
    if (rc < 0) {
        shm_unmap(pending);
        return rc;
    }
    struct wf_rbuf r;
    wf_rbuf_init(&r, p, n);
    int yes = wf_get_u8(&r);
    char *why = wf_get_str(&r, 1024);
    if (type != WF_MSG_SHM_ANSWER || r.err) {
        wf_free(why);
        shm_unmap(pending);
        return wf_error(WF_ERR_PEER, "%s sent a type %d frame where its shared-memory answer was due", c->name, type);
    }
    if (!yes || !pending) {
        if (pending) WF_LOGD("comm", "%s: socket only: %s", c->name, why);
        wf_free(why);
        shm_unmap(pending);
        return 0;
    }
    wf_free(why);
    c->shm = pending;
    return 1;
}
