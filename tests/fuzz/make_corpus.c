/*
 * fuzz: writes the version-dependent seeds of the fuzz corpus from the
 * current encoders, so they follow WF_PROTO_VERSION and the message layouts.
 * Regenerate after changing either (or fuzz_types.h):
 *
 *     make -C build make_corpus && build/make_corpus tests/fuzz/corpus
 *
 * Writes DIR/fuzz_msg/<type>: byte 0 = the type's index in fuzz_types.h,
 * then the wf_msg_encode payload of a realistic message with every field
 * set (one seed per type, plus `unknown`), each checked to decode and
 * re-encode to the same bytes as fuzz_msg.c requires; and DIR/fuzz_frame/
 * frames of the current version (valid ones, and ones fuzz_frame.c's paths
 * reject: bad CRC, short payload, over the limit), each checked to take the
 * path it is named for, and shared-memory block descriptors (shm_*), valid
 * and not; and DIR/fuzz_ckpt/ hostile checkpoints (ckpt_seeds.h), each
 * checked to give wf_ckpt_eval_init the message it is listed with; and
 * DIR/fuzz_cls/ class files, valid and not, each checked to take the path
 * it is named for.
 * Hand-made seeds (bad_magic, bad_version, empty, reader_*, and all of
 * fuzz_model/) are left as they are. Exits non-zero, naming the seed, if a
 * check fails.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/cluster.h"
#include "weft/comm.h"
#include "weft/core.h"
#include "weft/loader.h"

#include "ckpt_seeds.h"
#include "fuzz_types.h"

/* the dataset fuzz_cls.c checks class files against (the same values as there) */
#define FUZZ_CLS_SHA_BYTE(i) ((uint8_t)(0x11 * (i)))
#define FUZZ_CLS_N_SEQ 12
#define FUZZ_CLS_N_CLASSES 5

static const char *out_dir;

static void die(const char *seed, const char *why) {
    fprintf(stderr, "make_corpus: %s: %s\n", seed, why);
    exit(1);
}

static void write_seed(const char *harness, const char *name, const void *p, size_t n) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", out_dir, harness);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (wf_mkdir_p(dir) < 0 || wf_write_file_atomic(path, p, n) < 0) die(path, wf_errmsg());
}

/* ---- fuzz_msg ---- */

static void put_f32(struct wf_wbuf *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    wf_put_u32(b, u);
}

/* n f32 values, as a stage's parameters or a split tensor are sent */
static void put_floats(struct wf_wbuf *b, int n, float scale) {
    for (int i = 0; i < n; i++)
        put_f32(b, scale * (float)(i % 7 - 3) / 8.0f);
}

static const char job_text[] = "model = /srv/weft/examples/mlp.wf\n"
                               "data = /usr/share/datasets/fashion-mnist\n"
                               "out = /srv/weft/runs/mlp\n"
                               "epochs = 10\nbatch = 64\nmicro_batches = 4\nseed = 1\nthreads = 2\n"
                               "max_steps = 0\noptimizer = sgd\nlr = 0.05\nmomentum = 0.9\n"
                               "lr_schedule = cosine\nsplit = [h1, h2]\npp = 3\ndp = 2\npipeline = 1f1b\n";

static const char stage_model[] = "model mlp\n"
                                  "input h1 : f32[B, 256]\n"
                                  "fc2 = linear(h1, out=256)\n"
                                  "h2 = relu(fc2)\n"
                                  "output h2\n";

/* A realistic message of type t with every field its layout has set; data
 * blocks are built in blk. Returns 0 for a type without a seed here. */
static int fill(struct wf_msg *m, int t, struct wf_wbuf *blk, struct wf_peer_addr *peers, double *vals, uint32_t *ids,
                int64_t *inv) {
    memset(m, 0, sizeof *m);
    m->type = t;
    switch (t) {
    case WF_M_CHALLENGE:
        for (int i = 0; i < WF_NONCE; i++)
            m->nonce[i] = (uint8_t)(0x9e ^ (i * 37));
        return 1;
    case WF_M_HELLO:
        for (int i = 0; i < WF_MAC; i++)
            m->mac[i] = (uint8_t)(0x5c ^ (i * 53));
        m->role = WF_ROLE_PEER;
        m->cores = 16;
        m->mem = 64ull << 30;
        m->port = 40211;
        m->pid = 31337;
        m->name = "node-2.cluster.example";
        m->job_id = (3ull << 32) | 2; /* job 3, node-set version 2 */
        m->id = 3;
        m->link = WF_LINK_DP;
        return 1;
    case WF_M_WELCOME: m->id = 5; return 1;
    case WF_M_REFUSE: m->text = "bad MAC from 10.0.0.7:51234: wrong cluster token?"; return 1;
    case WF_M_COMPILE_FAIL: m->text = "stage 1: fc2: linear: input h1 has shape [B, 128], expected [B, 256]"; return 1;
    case WF_M_FAIL: m->text = "worker 3: recv from worker 1 (10.0.0.5:40211): timed out after 30 s"; return 1;
    case WF_M_ABORT: m->text = "job 3 failed: worker 3: out of memory planning stage 1"; return 1;
    case WF_M_JOB_EVENT: m->text = "step 120/9370 loss 0.6132 (2 stages x 2 replicas, 1843 samples/s)"; return 1;
    case WF_M_STATUS_REPLY:
        m->text = "job 3 /srv/weft/examples/mlp.job: running, step 120/9370, node set 2 (6 workers)\n"
                  "worker 0 10.0.0.4:40211 stage 0 replica 0 step 120\n";
        return 1;
    case WF_M_ASSIGN: { /* stage 1 of 3 (in and out both set), replica 1 of 2 */
        static char *hosts[] = {"10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "node-8.cluster.example", "10.0.0.9"};
        m->job_id = (3ull << 32) | 2;
        m->n_stages = 3;
        m->n_replicas = 2;
        m->stage = 1;
        m->replica = 1;
        m->worker = m->stage * m->n_replicas + m->replica;
        m->micro_batches = 4;
        m->schedule = 1;
        m->threads = 2;
        m->trace = 1;
        m->in_grad = 1;
        m->out_grad = 1;
        m->version = 2;
        m->elastic = 1;
        m->snapshot_every = 10;
        m->restore = 1;
        m->job_text = (char *)job_text;
        m->model_text = (char *)stage_model;
        m->in = "h1";
        m->out = "h2";
        m->x_name = "x";
        m->y_name = "y";
        m->n_peers = 6;
        for (uint32_t i = 0; i < m->n_peers; i++)
            peers[i] = (struct wf_peer_addr){hosts[i], 40211 + i};
        m->peers = peers;
        return 1;
    }
    case WF_M_COMPILE_DONE:
        m->seconds = 0.734;
        m->bytes = 12u << 20;
        m->nodes = 57;
        return 1;
    case WF_M_START:
    case WF_M_SHUTDOWN:
    case WF_M_STATUS: return 1; /* empty payloads */
    case WF_M_HEARTBEAT:
        m->step = 42;
        m->text = "backward of micro-batch 3";
        return 1;
    case WF_M_STEP_LOSS: /* 4 micro-batches of 2 samples */
        m->step = 42;
        m->first = 168;
        m->n = 4;
        m->n_ids = 8;
        for (uint32_t i = 0; i < m->n; i++)
            vals[i] = 0.6132 - 0.011 * i;
        for (uint32_t i = 0; i < m->n_ids; i++)
            ids[i] = 59999 - 7919 * i % 60000;
        m->vals = vals;
        m->ids = ids;
        return 1;
    case WF_M_CLIP_PART: /* the stage's parameters: fc2.weight, fc2.bias */
        m->step = 42;
        m->first = 1;
        m->n = 2;
        vals[0] = 3.25;
        vals[1] = 0.0078125;
        m->vals = vals;
        return 1;
    case WF_M_CLIP:
        m->step = 42;
        m->value = 17.390625;
        return 1;
    case WF_M_EVAL:
        m->epoch = 2;
        m->loss_sum = 4432.5;
        m->correct = 8713;
        m->count = 10000;
        return 1;
    case WF_M_STATE:
    case WF_M_RESTORE:
    case WF_M_SNAP:
        m->step = 120;
        m->epoch = 0;
        m->epoch_step = 120;
        m->version = 2;
        m->stage = 1;
        m->link = 1;                   /* SNAP: a FETCH reply */
        put_floats(blk, 3 * 10, 0.5f); /* parameters, then optimizer slots 1 and 2 */
        m->data = blk->p;
        m->nbytes = blk->len;
        return 1;
    case WF_M_DONE:
        m->step = 9370;
        m->compute_s = 812.25;
        m->comm_s = 95.5;
        m->idle_s = 40.125;
        m->max_live = 3;
        m->bytes = 7516192768ull;
        return 1;
    case WF_M_TRACE: /* two 32-byte events: u8 kind, 3 pad, i32 micro-batch, i64 step, f64 start, f64 end */
        for (int e = 0; e < 2; e++) {
            wf_put_u8(blk, (uint8_t)(1 + e));
            wf_put_bytes(blk, "\0\0\0", 3);
            wf_put_u32(blk, 168 + (uint32_t)e);
            wf_put_u64(blk, 42);
            wf_put_f64(blk, 1523.0625 + e * 0.004);
            wf_put_f64(blk, 1523.0655 + e * 0.004);
        }
        m->data = blk->p;
        m->nbytes = blk->len;
        return 1;
    case WF_M_SUBMIT: /* an elastic job, a client attaching again */
        m->text = "/srv/weft/examples/mlp.job";
        m->name = "client";
        m->workers = 6;
        m->pp = 3;
        m->dp = 2;
        m->micro_batches = 4;
        m->schedule = 2;
        m->threads = 2;
        m->nodes_min = 3;
        m->nodes_max = 6;
        m->max_recoveries = 20;
        m->snapshot_every = 10;
        m->settle_s = 2.5;
        m->hb_timeout_s = 15;
        m->link = 1;
        return 1;
    case WF_M_JOB_END:
        m->status = -5;
        m->text = "job 3 failed: worker 3 lost and no recovery left";
        return 1;
    case WF_M_ACT:
    case WF_M_GRAD:
        m->step = 42;
        m->first = 169;
        put_floats(blk, 2 * 16, t == WF_M_ACT ? 1.0f : 0.01f); /* f32[2, 16] */
        m->data = blk->p;
        m->nbytes = blk->len;
        return 1;
    case WF_M_STOP:
        m->version = 2;
        m->step = 123; /* leave when 123 steps are done */
        return 1;
    case WF_M_STOPPED: { /* its own stage's snapshots and a peer's copies */
        static const int64_t pairs[] = {1, 120, 1, 110, 0, 120, 0, 110};
        m->version = 2;
        m->step = 121;
        m->n_inv = 4;
        memcpy(inv, pairs, sizeof pairs);
        m->inv = inv;
        return 1;
    }
    case WF_M_FETCH:
        m->version = 2;
        m->stage = 0;
        m->step = 120;
        return 1;
    }
    return 0;
}

static void msg_seeds(void) {
    for (size_t k = 0; k < FUZZ_MSG_NTYPES; k++) {
        int t = fuzz_msg_types[k];
        char name[64];
        snprintf(name, sizeof name, "%s", t == FUZZ_MSG_UNKNOWN ? "unknown" : wf_msg_name(t));
        for (char *c = name; *c; c++)
            if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
        for (size_t j = 0; j < k; j++)
            if (fuzz_msg_types[j] == t) die(name, "listed twice in fuzz_types.h");
        struct wf_wbuf seed, blk;
        wf_wbuf_init(&seed);
        wf_wbuf_init(&blk);
        wf_put_u8(&seed, (uint8_t)k);
        if (t == FUZZ_MSG_UNKNOWN) { /* the decoder's default: any payload is refused */
            wf_put_u64(&seed, 42);
            struct wf_msg m;
            if (wf_msg_decode(&m, t, seed.p + 1, seed.len - 1) == WF_OK) die(name, "an unknown type decoded");
        } else {
            struct wf_peer_addr peers[8];
            double vals[8];
            uint32_t ids[8];
            int64_t inv[8];
            struct wf_msg m, d;
            if (!fill(&m, t, &blk, peers, vals, ids, inv)) die(name, "no seed for this type: add it to fill()");
            wf_msg_encode(&seed, &m);
            if (seed.oom || blk.oom) die(name, "out of memory");
            if (strcmp(wf_msg_name(t), "unknown") == 0) die(name, "wf_msg_name does not know this type");
            /* what fuzz_msg.c checks: the payload decodes and re-encodes to the same bytes */
            if (wf_msg_decode(&d, t, seed.p + 1, seed.len - 1) != WF_OK) die(name, wf_errmsg());
            struct wf_wbuf again;
            wf_wbuf_init(&again);
            wf_msg_encode(&again, &d);
            if (again.oom || again.len != seed.len - 1 || (again.len && memcmp(again.p, seed.p + 1, again.len)))
                die(name, "decode -> encode does not give the same bytes");
            wf_wbuf_free(&again);
            wf_msg_free(&d);
        }
        write_seed("fuzz_msg", name, seed.p, seed.len);
        printf("fuzz_msg/%-16s type %3d, %4zu bytes, %s\n", name, t, seed.len,
               t == FUZZ_MSG_UNKNOWN ? "refused" : "round trip ok");
        wf_wbuf_free(&seed);
        wf_wbuf_free(&blk);
    }
}

/* ---- fuzz_frame ---- */

enum expect { VALID, BAD_CRC, SHORT, REJECT };

/* Checks the frame takes the path fuzz_frame.c's decode part is meant to
 * take with it (the length limit comes from the input's last byte there). */
static void check_frame(const char *name, const uint8_t *p, size_t n, enum expect e) {
    if (n < WF_FRAME_HDR) die(name, "shorter than a header");
    uint32_t limit = n > WF_FRAME_HDR ? (uint32_t)p[n - 1] << 8 : WF_FRAME_MAX_DEFAULT;
    struct wf_frame_hdr h;
    int rc = wf_frame_decode_hdr(p, limit, &h);
    int got;
    if (rc != WF_OK)
        got = REJECT;
    else if (h.len > n - WF_FRAME_HDR)
        got = SHORT;
    else
        got = wf_frame_check(p, &h, p + WF_FRAME_HDR) == WF_OK ? VALID : BAD_CRC;
    if (got != (int)e) die(name, rc != WF_OK ? wf_errmsg() : "the frame does not take the path it is named for");
}

static void frame_seed(const char *name, int type, const void *payload, size_t len, size_t trail, enum expect e,
                       void (*edit)(uint8_t *frame, size_t n)) {
    struct wf_wbuf b;
    wf_wbuf_init(&b);
    uint8_t hdr[WF_FRAME_HDR];
    wf_frame_encode_hdr(hdr, type, payload, len);
    wf_put_bytes(&b, hdr, sizeof hdr);
    wf_put_bytes(&b, payload, len);
    for (size_t i = 0; i < trail; i++)
        wf_put_u8(&b, (uint8_t)("trailing~"[i % 9]));
    if (b.oom) die(name, "out of memory");
    if (edit) edit(b.p, b.len);
    check_frame(name, b.p, b.len, e);
    write_seed("fuzz_frame", name, b.p, b.len);
    printf("fuzz_frame/%-16s type 0x%04x, %4zu bytes\n", name, (unsigned)type, b.len);
    wf_wbuf_free(&b);
}

static void set_len(uint8_t *f, uint32_t len) {
    for (int i = 0; i < 4; i++)
        f[8 + i] = (uint8_t)(len >> (8 * i));
    uint32_t crc = wf_crc32(0, f, 12); /* the header's CRC as a sender would have written it */
    for (int i = 0; i < 4; i++)
        f[12 + i] = (uint8_t)(crc >> (8 * i));
}
static void flip_payload(uint8_t *f, size_t n) { f[WF_FRAME_HDR + 1] ^= 0x20; }
static void len_64(uint8_t *f, size_t n) { set_len(f, 64); }
static void len_1m(uint8_t *f, size_t n) { set_len(f, 1u << 20); }
static void len_huge(uint8_t *f, size_t n) { set_len(f, 0xFFFFFFFFu); }

static void frame_seeds(void) {
    static const char hello[] = "hello";
    frame_seed("valid_empty", WF_MSG_COMM_FIRST + 3, NULL, 0, 0, VALID, NULL); /* barrier */
    frame_seed("valid_hello", 7, hello, 5, 0, VALID, NULL);
    frame_seed("valid_trailing", 7, hello, 5, 9, VALID, NULL); /* bytes after the frame */

    struct wf_wbuf b;
    wf_wbuf_init(&b);
    const int64_t sums[] = {1234567, -89, 0, 1ll << 40, -3}; /* all-reduce chunk; last byte 0xff: limit 0xff00 */
    for (size_t i = 0; i < WF_ARRAY_LEN(sums); i++)
        wf_put_u64(&b, (uint64_t)sums[i]);
    frame_seed("valid_allreduce", WF_MSG_COMM_FIRST + 1, b.p, b.len, 0, VALID, NULL);
    frame_seed("valid_broadcast", WF_MSG_COMM_FIRST + 2, "\x00\x01\x02\x03weights\x7f", 12, 0, VALID, NULL);
    wf_wbuf_free(&b);

    /* cluster messages whose payload ends in text (the last byte sets the limit) */
    const struct wf_msg msgs[] = {
        {.type = WF_M_HEARTBEAT, .step = 42, .text = "backward of micro-batch 3"},
        {.type = WF_M_JOB_EVENT, .text = "step 120/9370 loss 0.6132"},
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(msgs); i++) {
        wf_wbuf_init(&b);
        wf_msg_encode(&b, &msgs[i]);
        char name[64];
        snprintf(name, sizeof name, "valid_%s", msgs[i].type == WF_M_HEARTBEAT ? "heartbeat" : "job_event");
        frame_seed(name, msgs[i].type, b.p, b.len, 0, VALID, NULL);
        wf_wbuf_free(&b);
    }

    frame_seed("bad_crc", 7, hello, 5, 0, BAD_CRC, flip_payload);
    frame_seed("short_payload", 7, hello, 5, 0, SHORT, len_64); /* 64 bytes announced, 5 there */
    frame_seed("over_limit", 7, hello, 5, 0, REJECT, len_1m);   /* 1 MiB > the limit 'o' << 8 */
    frame_seed("huge_len", 7, NULL, 0, 0, REJECT, len_huge);    /* header only: the 1 GiB default limit */
}

/* Inputs whose first 24 bytes are a shared-memory block descriptor and the
 * next 16 the ring size and the consumer's position (fuzz_shm_desc), checked
 * to decode or not as named; and the descriptor as a frame (WF_MSG_SHM_BLOCK). */
static void shm_seed(const char *name, uint64_t pos, uint32_t len, uint64_t ring, uint64_t expect, int ok) {
    struct wf_shm_desc d = {.pos = pos, .len = len, .crc = 0x1234abcd, .type = 120, .more = 1, .total = 3 * len}, e;
    uint8_t in[WF_SHM_DESC + 16];
    wf_shm_desc_encode(in, &d);
    for (int i = 0; i < 8; i++) {
        in[WF_SHM_DESC + i] = (uint8_t)(ring >> (8 * i));
        in[WF_SHM_DESC + 8 + i] = (uint8_t)(expect >> (8 * i));
    }
    if ((in[0] & 1) || (wf_shm_desc_decode(in, WF_SHM_DESC, ring, expect, WF_FRAME_MAX_DEFAULT, &e) == WF_OK) != ok)
        die(name, "the descriptor does not take the path it is named for");
    write_seed("fuzz_frame", name, in, sizeof in);
    printf("fuzz_frame/%-16s shared-memory descriptor, %s\n", name, ok ? "valid" : "rejected");
}

static void shm_seeds(void) {
    shm_seed("shm_next", 4096, 1000, 1u << 20, 4096, 1);
    shm_seed("shm_wrapped", 1u << 20, 1000, 1u << 20, (1u << 20) - 8, 1); /* the ring's end skipped */
    shm_seed("shm_gap", 8192, 1000, 1u << 20, 4096, 0);
    shm_seed("shm_past_end", (1u << 20) - 8, 1000, 1u << 20, (1u << 20) - 8, 0);
    uint8_t desc[WF_SHM_DESC];
    wf_shm_desc_encode(desc, &(struct wf_shm_desc){.pos = 0, .len = 65536, .crc = 7, .type = 121, .total = 65536});
    frame_seed("valid_shm_block", WF_MSG_COMM_FIRST + 4, desc, sizeof desc, 1, VALID, NULL); /* limit: the trail */
}

/* ---- fuzz_ckpt ---- */

static void ckpt_seeds(void) {
    struct ck base;
    unsigned char *valid;
    size_t valid_len;
    if (ck_valid(&base, &valid, &valid_len) < 0) die("fuzz_ckpt/valid", wf_errmsg());
    wf_free(valid);
    int bad = 0;
    for (size_t i = 0; i < WF_ARRAY_LEN(ck_seeds); i++) {
        const struct ck_seed *s = &ck_seeds[i];
        struct ck c;
        ck_copy(&c, &base);
        s->edit(&c);
        unsigned char *b;
        size_t n;
        ck_bytes(&c, &b, &n);
        struct wf_ckpt_eval ce;
        int rc = wf_ckpt_eval_init(&ce, CK_PATH, b, n, 2);
        if (rc == WF_OK) wf_ckpt_eval_free(&ce);
        if (!s->msg ? rc != WF_OK : rc == WF_OK || !ck_msg_ok(s, wf_errmsg())) {
            fprintf(stderr,
                    "make_corpus: fuzz_ckpt/%s: the checkpoint does not take the path it is named for: got %s\n",
                    s->name, rc ? wf_errmsg() : "success");
            bad++;
        }
        write_seed("fuzz_ckpt", s->name, b, n);
        printf("fuzz_ckpt/%-20s %4zu bytes, %s\n", s->name, n, rc ? wf_errmsg() : "valid");
        free(b);
        ck_free(&c);
    }
    ck_free(&base);
    if (bad) exit(1);
}

/* ---- fuzz_cls ---- */

/* A class file of fuzz_cls.c's dataset (12 sequences, 5 classes), changed
 * by `edit` at byte `at` (value v, width w bytes; w = 0: none), then cut or
 * grown to `len` bytes (0: as encoded); checked to give wf_cls_decode the
 * status `want` against that dataset. */
static void cls_seed(const char *name, size_t at, uint64_t v, int w, size_t len, int want) {
    uint8_t sha[32];
    for (int i = 0; i < 32; i++)
        sha[i] = FUZZ_CLS_SHA_BYTE(i);
    int32_t cls[FUZZ_CLS_N_SEQ];
    for (int k = 0; k < FUZZ_CLS_N_SEQ; k++)
        cls[k] = k * 3 % FUZZ_CLS_N_CLASSES;
    void *buf;
    size_t n;
    if (wf_cls_encode(sha, FUZZ_CLS_N_CLASSES, cls, FUZZ_CLS_N_SEQ, &buf, &n) < 0) die(name, wf_errmsg());
    uint8_t b[256] = {0};
    memcpy(b, buf, n);
    wf_free(buf);
    for (int i = 0; i < w; i++)
        b[at + (size_t)i] = (uint8_t)(v >> (8 * i));
    if (len) n = len;
    struct wf_cls_want want_ = {.n_seq = FUZZ_CLS_N_SEQ, .tok_sha = sha, .n_classes = FUZZ_CLS_N_CLASSES};
    int rc = wf_cls_decode("seed.cls", b, n, &want_, NULL, NULL, NULL);
    if (rc != want) die(name, rc ? wf_errmsg() : "accepted");
    write_seed("fuzz_cls", name, b, n);
    printf("fuzz_cls/%-20s %4zu bytes, %s\n", name, n, rc ? wf_errmsg() : "valid");
}

static void cls_seeds(void) {
    const int C = WF_ERR_CORRUPT;
    const size_t full = WF_CLS_HEADER_BYTES + 4 * FUZZ_CLS_N_SEQ;
    cls_seed("valid", 0, 0, 0, 0, WF_OK);
    cls_seed("bad_magic", 0, 'X', 1, 0, C);
    cls_seed("version_2", 8, 2, 4, 0, C);
    cls_seed("classes_0", 12, 0, 4, 0, C);
    cls_seed("classes_huge", 12, 0xFFFFFFFFu, 4, 0, C);
    cls_seed("classes_other", 12, 6, 4, 0, C);
    cls_seed("n_seq_other", 16, 11, 8, 0, C);
    cls_seed("n_seq_huge", 16, UINT64_MAX / 4 + 1, 8, 0, C);
    cls_seed("digest_other", 24, 0xEE, 1, 0, C);
    cls_seed("reserved", 56, 1, 8, 0, C);
    cls_seed("header_short", 0, 0, 0, 20, C);
    cls_seed("truncated", 0, 0, 0, full - 3, C);
    cls_seed("trailing", 0, 0, 0, full + 4, C);
    cls_seed("id_too_big", WF_CLS_HEADER_BYTES + 4 * 7, FUZZ_CLS_N_CLASSES, 4, 0, C);
    cls_seed("id_negative", WF_CLS_HEADER_BYTES, 0xFFFFFFFFu, 4, 0, C);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR (e.g. tests/fuzz/corpus)\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    msg_seeds();
    frame_seeds();
    shm_seeds();
    ckpt_seeds();
    cls_seeds();
    return 0;
}
