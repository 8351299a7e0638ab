/*
 * data layer test: token datasets (typed data). The token file round trip
 * (2- and 4-byte ids), every class of corrupt header or body refused with
 * its exact message, window samples (next and shifted labels, stride) and
 * sequence samples (truncation, padding, lengths, shifted labels) against a
 * reference built from the sequences in memory, the vocabulary file, the
 * sample options, and the loader + cache + feeder path: the same bytes with
 * and without the cache, on every placement, each id exactly once an epoch;
 * a cache id apart from an image pipeline's; failed allocations at open.
 * Class labels (labels = class): the class file and class list round trip,
 * every corrupt class file refused with its exact message, class samples
 * against the reference through the store, the loader, the cache and the
 * feeder, a cache id apart from the shifted labels' of the same sequences.
 */
#include <inttypes.h>

#include "synth.h"
#include "weft/feeder.h"
#include "weft/safetensors.h"

static char tmp[256];

enum { NSEQ = 300, VOCAB = 97, PAD = 0, T = 12, NCLS = 7 };

/* The reference corpus: sequence k has k*37 % 41 tokens (some empty, many
 * longer than T), ids in 1..VOCAB-1 so the pad (0) never occurs in the data. */
static uint64_t ref_off[NSEQ + 1];
static uint32_t *ref_ids;
static int32_t ref_cls[NSEQ]; /* the class of sequence k: k*5 % NCLS, every class used */

static void make_corpus(void) {
    ref_off[0] = 0;
    for (int k = 0; k < NSEQ; k++)
        ref_off[k + 1] = ref_off[k] + (uint64_t)(k * 37 % 41);
    ref_ids = malloc(ref_off[NSEQ] * sizeof *ref_ids);
    for (uint64_t i = 0; i < ref_off[NSEQ]; i++)
        ref_ids[i] = 1 + (uint32_t)(wf_mix64(i * 0x9e37u + 5) % (VOCAB - 1));
    for (int k = 0; k < NSEQ; k++)
        ref_cls[k] = k * 5 % NCLS;
}

static const char *dpath(const char *sub, const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s/%s", tmp, sub, name);
    return p;
}

/* Writes DIR=tmp/sub with train.tok = test.tok = the corpus and a matching vocab.txt. */
static void make_dataset(const char *sub, uint32_t vocab) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", tmp, sub);
    CHECK(wf_mkdir_p(dir) == WF_OK);
    CHECKF(wf_tok_write(dpath(sub, "train.tok"), vocab, PAD, ref_off, NSEQ, ref_ids) == WF_OK, "%s", wf_errmsg());
    CHECKF(wf_tok_write(dpath(sub, "test.tok"), vocab, PAD, ref_off, NSEQ, ref_ids) == WF_OK, "%s", wf_errmsg());
    uint32_t *codes = malloc(vocab * sizeof *codes);
    for (uint32_t k = 0; k < vocab; k++)
        codes[k] = k == 0 ? 0 : 0x20 + k;
    CHECKF(wf_vocab_write(dpath(sub, "vocab.txt"), WF_VOCAB_CHARS, codes, (int)vocab, PAD) == WF_OK, "%s", wf_errmsg());
    free(codes);
}

static struct wf_sample_opts opts(int sample, int labels, int stride) {
    return (struct wf_sample_opts){.seq_len = T, .sample = sample, .labels = labels, .stride = stride};
}

/* The reference sample `id` under o: x[T], y[y_per], len. */
static void ref_sample(const struct wf_sample_opts *o, uint32_t id, int32_t *x, int32_t *y, int32_t *len) {
    int s = o->stride ? o->stride : 1;
    if (o->sample == WF_SAMPLE_WINDOW) {
        uint64_t a = (uint64_t)id * (uint64_t)s;
        for (int t = 0; t < T; t++)
            x[t] = (int32_t)ref_ids[a + (uint64_t)t];
        if (o->labels == WF_LABELS_NEXT)
            y[0] = (int32_t)ref_ids[a + T];
        else
            for (int t = 0; t < T; t++)
                y[t] = (int32_t)ref_ids[a + (uint64_t)t + 1];
        *len = T;
        return;
    }
    uint64_t a = ref_off[id], n = ref_off[id + 1] - a;
    for (int t = 0; t < T; t++) {
        x[t] = (uint64_t)t < n ? (int32_t)ref_ids[a + (uint64_t)t] : PAD;
        if (o->labels == WF_LABELS_SHIFTED) y[t] = (uint64_t)t + 1 < n ? (int32_t)ref_ids[a + (uint64_t)t + 1] : PAD;
    }
    if (o->labels == WF_LABELS_CLASS) y[0] = ref_cls[id];
    *len = n < T ? (int32_t)n : T;
}

static uint32_t ref_n(const struct wf_sample_opts *o) {
    if (o->sample == WF_SAMPLE_SEQUENCE) return NSEQ;
    return (uint32_t)((ref_off[NSEQ] - T - 1) / (uint64_t)(o->stride ? o->stride : 1) + 1);
}

/* Every sample read straight from the store equals the reference. */
static void check_store_samples(const char *sub, struct wf_sample_opts o) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", tmp, sub);
    struct wf_store *s;
    int rc = wf_store_open_opts(&s, dir, "train", NULL, &o);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    const struct wf_store_info *in = wf_store_info(s);
    int yp = o.labels == WF_LABELS_SHIFTED ? T : 1;
    CHECK(in->kind == WF_STORE_TOKENS && in->x_dtype == WF_I32 && in->x_per == T && in->y_per == yp);
    CHECK(in->has_len == (o.sample == WF_SAMPLE_SEQUENCE) && in->pad_id == PAD);
    CHECK(in->c == 1 && in->h == 1 && in->w == T);
    CHECK(in->n_classes == (o.labels == WF_LABELS_CLASS ? NCLS : in->vocab));
    CHECK(in->n_seqs == NSEQ && in->n_tokens == (int64_t)ref_off[NSEQ]);
    CHECKF(in->n == (int)ref_n(&o), "n %d, expected %u", in->n, ref_n(&o));
    int bad = 0;
    int32_t x[T], y[T], len, rx[T], ry[T], rlen;
    for (uint32_t id = 0; id < (uint32_t)in->n; id++) {
        memset(x, 0x7f, sizeof x);
        rc = wf_store_read_tokens(s, id, x, y, &len);
        ref_sample(&o, id, rx, ry, &rlen);
        bad += rc != WF_OK || memcmp(x, rx, sizeof x) || memcmp(y, ry, sizeof(int32_t) * (size_t)yp) || len != rlen;
    }
    CHECKF(bad == 0, "%s: %d samples differ from the reference", sub, bad);
    CHECK(wf_store_read_tokens(s, (uint32_t)in->n, x, y, &len) == WF_ERR_RANGE);
    uint8_t pix[4];
    int32_t lab;
    CHECK(wf_store_read(s, 0, pix, &lab) == WF_ERR_INVALID);
    CHECK(wf_store_bytes_read(s) > 0);
    wf_store_free(s);
}

static void test_round_trip(void) {
    make_dataset("good", VOCAB);
    /* the bytes: header, offsets, 2-byte ids */
    void *buf;
    size_t len;
    CHECK(wf_tok_encode(VOCAB, PAD, ref_off, NSEQ, ref_ids, &buf, &len) == WF_OK);
    CHECK(len == WF_TOK_HEADER_BYTES + 8 * (NSEQ + 1) + 2 * ref_off[NSEQ]);
    const unsigned char *p = buf;
    CHECK(!memcmp(p, "WFTOKENS", 8) && p[8] == 1 && p[12] == 2 && p[16] == VOCAB && p[20] == PAD);
    char *file;
    size_t flen;
    CHECK(wf_read_file(dpath("good", "train.tok"), &file, &flen) == WF_OK);
    CHECK(flen == len && !memcmp(file, buf, len)); /* the writer is the encoder, atomically */
    wf_free(file);
    void *buf2;
    size_t len2;
    CHECK(wf_tok_encode(VOCAB, PAD, ref_off, NSEQ, ref_ids, &buf2, &len2) == WF_OK);
    CHECK(len2 == len && !memcmp(buf, buf2, len)); /* deterministic */
    wf_free(buf);
    wf_free(buf2);

    check_store_samples("good", opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0));
    check_store_samples("good", opts(WF_SAMPLE_WINDOW, WF_LABELS_NEXT, 0));
    check_store_samples("good", opts(WF_SAMPLE_WINDOW, WF_LABELS_SHIFTED, 1));
    check_store_samples("good", opts(WF_SAMPLE_WINDOW, WF_LABELS_NEXT, 5));
    check_store_samples("good", opts(WF_SAMPLE_WINDOW, WF_LABELS_SHIFTED, T));

    /* 4-byte ids: a vocabulary over 65536 */
    make_dataset("wide", 70000);
    CHECK(wf_tok_encode(70000, PAD, ref_off, NSEQ, ref_ids, &buf, &len) == WF_OK);
    CHECK(((unsigned char *)buf)[12] == 4 && len == WF_TOK_HEADER_BYTES + 8 * (NSEQ + 1) + 4 * ref_off[NSEQ]);
    wf_free(buf);
    check_store_samples("wide", opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0));
    check_store_samples("wide", opts(WF_SAMPLE_WINDOW, WF_LABELS_SHIFTED, 3));

    /* the vocabulary file */
    int kind, n, pad;
    CHECKF(wf_vocab_read_header(dpath("good", "vocab.txt"), &kind, &n, &pad) == WF_OK, "%s", wf_errmsg());
    CHECK(kind == WF_VOCAB_CHARS && n == VOCAB && pad == PAD);
    char *vt;
    CHECK(wf_read_file(dpath("good", "vocab.txt"), &vt, NULL) == WF_OK);
    CHECK(!strncmp(vt, "weft-vocab 1 chars 97 pad 0\n0 U+0000 <pad>\n1 U+0021 !\n", 54));
    wf_free(vt);
    uint32_t bytes[256];
    for (int k = 0; k < 256; k++)
        bytes[k] = (uint32_t)k;
    CHECK(wf_vocab_write(dpath("good", "bytes.txt"), WF_VOCAB_BYTES, bytes, 256, 0) == WF_OK);
    CHECK(wf_vocab_read_header(dpath("good", "bytes.txt"), &kind, &n, &pad) == WF_OK);
    CHECK(kind == WF_VOCAB_BYTES && n == 256 && pad == 0);
    CHECK(wf_read_file(dpath("good", "bytes.txt"), &vt, NULL) == WF_OK);
    CHECK(strstr(vt, "\n10 0x0A \\n\n") && strstr(vt, "\n32 0x20 \\s\n") && strstr(vt, "\n65 0x41 A\n") &&
          strstr(vt, "\n255 0xFF \\xFF\n"));
    wf_free(vt);

    /* the encoder refuses what it cannot write */
    uint32_t bad_ids[2] = {1, VOCAB};
    uint64_t bad_off[2] = {0, 2};
    CHECK(wf_tok_encode(VOCAB, PAD, bad_off, 1, bad_ids, &buf, &len) == WF_ERR_INVALID);
    CHECK(!strcmp(wf_errmsg(), "token file: token 1 is id 97, not below the vocab size 97"));
    CHECK(wf_tok_encode(VOCAB, VOCAB, bad_off, 1, bad_ids, &buf, &len) == WF_ERR_INVALID);
    CHECK(wf_tok_encode(0, 0, bad_off, 1, bad_ids, &buf, &len) == WF_ERR_INVALID);
}

/* ---- corrupt files ---- */

static void put_le(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A folder "bad" whose train.tok is the good file changed by fn; opens it
 * as sequences and checks the status and the exact message (with %s = the
 * file's path). */
static void expect_corrupt(int line, void (*fn)(unsigned char *b, size_t *len), int want_rc, const char *want_fmt) {
    void *buf;
    size_t len;
    CHECK(wf_tok_encode(VOCAB, PAD, ref_off, NSEQ, ref_ids, &buf, &len) == WF_OK);
    unsigned char *b = malloc(len + 64);
    memcpy(b, buf, len);
    memset(b + len, 0, 64);
    wf_free(buf);
    fn(b, &len);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/bad", tmp);
    wf_mkdir_p(dir);
    synth_write(dpath("bad", "train.tok"), 0, b, len);
    free(b);
    struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0);
    struct wf_store *s = NULL;
    int rc = wf_store_open_opts(&s, dir, "train", NULL, &o);
    char want[1024];
    snprintf(want, sizeof want, want_fmt, dpath("bad", "train.tok"));
    CHECKF(rc == want_rc && !strcmp(wf_errmsg(), want) && !s, "line %d: rc %d, message\n  got  %s\n  want %s", line, rc,
           wf_errmsg(), want);
    wf_store_free(s);
}
#define EXPECT_CORRUPT(fn, msg) expect_corrupt(__LINE__, fn, WF_ERR_CORRUPT, msg)

#define TABLE_END (WF_TOK_HEADER_BYTES + 8 * (NSEQ + 1)) /* 2456 */
static void c_short(unsigned char *b, size_t *len) { (void)b, *len = 20; }
static void c_magic(unsigned char *b, size_t *len) { (void)len, b[0] = 'X'; }
static void c_version(unsigned char *b, size_t *len) { (void)len, put_le(b + 8, 2, 4); }
static void c_id_bytes(unsigned char *b, size_t *len) { (void)len, put_le(b + 12, 3, 4); }
static void c_vocab0(unsigned char *b, size_t *len) { (void)len, put_le(b + 16, 0, 4); }
static void c_vocab_wide(unsigned char *b, size_t *len) { (void)len, put_le(b + 16, 65537, 4); }
static void c_pad(unsigned char *b, size_t *len) { (void)len, put_le(b + 20, VOCAB, 4); }
static void c_n_seq_big(unsigned char *b, size_t *len) { (void)len, put_le(b + 24, 1000000, 8); }
static void c_n_seq_wrap(unsigned char *b, size_t *len) { (void)len, put_le(b + 24, UINT64_MAX / 8, 8); }
static void c_n_tok_big(unsigned char *b, size_t *len) { (void)len, put_le(b + 32, ref_off[NSEQ] + 10, 8); }
static void c_n_tok_wrap(unsigned char *b, size_t *len) { (void)len, put_le(b + 32, UINT64_MAX / 2 + 1, 8); }
static void c_reserved(unsigned char *b, size_t *len) { (void)len, b[44] = 1; }
static void c_trailing(unsigned char *b, size_t *len) { (void)b, *len += 3; }
static void c_truncated(unsigned char *b, size_t *len) { (void)b, *len -= 3; }
static void c_off0(unsigned char *b, size_t *len) { (void)len, put_le(b + 48, 1, 8); }
static void c_off_down(unsigned char *b, size_t *len) { (void)len, put_le(b + 48 + 8 * 5, 0, 8); }
static void c_off_past(unsigned char *b, size_t *len) { (void)len, put_le(b + 48 + 8 * 5, ref_off[NSEQ] + 1, 8); }
static void c_off_last(unsigned char *b, size_t *len) { (void)len, put_le(b + 48 + 8 * NSEQ, ref_off[NSEQ] - 1, 8); }
static void c_id(unsigned char *b, size_t *len) { (void)len, put_le(b + TABLE_END + 2 * 7, VOCAB + 3, 2); }

static void test_corrupt(void) {
    make_dataset("bad", VOCAB); /* vocab.txt and test.tok; train.tok is replaced by every case */
    uint64_t L = ref_off[NSEQ];
    char m[1024];
    EXPECT_CORRUPT(c_short, "%s: truncated: expected a 48-byte header, the file has 20 bytes");
    EXPECT_CORRUPT(c_magic, "%s: bad magic 5846544f4b454e53 at offset 0, expected \"WFTOKENS\" (a weft token file)");
    EXPECT_CORRUPT(c_version, "%s: version 2 at offset 8, expected 1");
    EXPECT_CORRUPT(c_id_bytes, "%s: 3 bytes per id at offset 12, expected 2 or 4");
    EXPECT_CORRUPT(c_vocab0, "%s: vocab size 0 at offset 16, expected 1..65536 for 2-byte ids");
    EXPECT_CORRUPT(c_vocab_wide, "%s: vocab size 65537 at offset 16, expected 1..65536 for 2-byte ids");
    EXPECT_CORRUPT(c_pad, "%s: pad id 97 at offset 20 is not below the vocab size 97");
    EXPECT_CORRUPT(c_reserved, "%s: reserved field at offset 40 is 4294967296, expected 0");
    size_t size = TABLE_END + 2 * L;
    snprintf(m, sizeof m,
             "%%s: truncated: 1000000 sequences (the count at offset 24) need an offset table of 8 x 1000000 + 8 "
             "bytes at offset 48, the file has %zu bytes",
             size);
    EXPECT_CORRUPT(c_n_seq_big, m);
    snprintf(m, sizeof m,
             "%%s: truncated: %" PRIu64 " sequences (the count at offset 24) need an offset table of 8 x %" PRIu64
             " + 8 bytes at offset 48, the file has %zu bytes",
             UINT64_MAX / 8, UINT64_MAX / 8, size);
    EXPECT_CORRUPT(c_n_seq_wrap, m);
    snprintf(m, sizeof m,
             "%%s: truncated: %" PRIu64 " tokens (the count at offset 32) of 2 bytes from offset %d, the file has %zu "
             "bytes; token %" PRIu64 " at offset %zu is the first missing",
             L + 10, TABLE_END, size, L, size);
    EXPECT_CORRUPT(c_n_tok_big, m);
    snprintf(m, sizeof m,
             "%%s: truncated: %" PRIu64 " tokens (the count at offset 32) of 2 bytes from offset %d, the file has %zu "
             "bytes; token %" PRIu64 " at offset %zu is the first missing",
             UINT64_MAX / 2 + 1, TABLE_END, size, L, size);
    EXPECT_CORRUPT(c_n_tok_wrap, m);
    snprintf(m, sizeof m,
             "%%s: truncated: %" PRIu64 " tokens (the count at offset 32) of 2 bytes from offset %d, the file has %zu "
             "bytes; token %" PRIu64 " at offset %zu is the first missing",
             L, TABLE_END, size - 3, L - 2, size - 4);
    EXPECT_CORRUPT(c_truncated, m);
    snprintf(m, sizeof m, "%%s: 3 bytes of trailing data after the %zu bytes the header promises", size);
    EXPECT_CORRUPT(c_trailing, m);
    EXPECT_CORRUPT(c_off0, "%s: offset table entry 0 (at offset 48) is 1, expected 0");
    snprintf(m, sizeof m,
             "%%s: sequence 4 ends at token 0 (offset table entry 5 at offset 88), before it starts (%" PRIu64 ")",
             ref_off[4]);
    EXPECT_CORRUPT(c_off_down, m);
    snprintf(m, sizeof m,
             "%%s: offset table entry 5 (at offset 88) is %" PRIu64 ", past %" PRIu64 " (the token count at offset 32)",
             L + 1, L);
    EXPECT_CORRUPT(c_off_past, m);
    snprintf(m, sizeof m,
             "%%s: offset table entry %d (at offset %d) is %" PRIu64 ", expected %" PRIu64
             " (the token count at offset 32)",
             NSEQ, 48 + 8 * NSEQ, L - 1, L);
    EXPECT_CORRUPT(c_off_last, m);
    snprintf(m, sizeof m, "%%s: token 7 (at offset %d) is id 100, not below the vocab size 97", TABLE_END + 14);
    EXPECT_CORRUPT(c_id, m);

    /* the vocabulary file: missing, malformed, disagreeing */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/good", tmp);
    struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0);
    struct wf_store *s = NULL;
    make_dataset("voc", VOCAB);
    snprintf(dir, sizeof dir, "%s/voc", tmp);
    synth_write(dpath("voc", "vocab.txt"), 0, (const unsigned char *)"weft-vocab 1 chars 3 pad 0\n0 U+0000 <pad>\n",
                42);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_CORRUPT);
    snprintf(m, sizeof m, "%s:3: expected the line of id 1 (the header promises 3 ids)", dpath("voc", "vocab.txt"));
    CHECKF(!strcmp(wf_errmsg(), m), "%s", wf_errmsg());
    synth_write(dpath("voc", "vocab.txt"), 0, (const unsigned char *)"weft-vocab 1 words 3 pad 0\n", 27);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_CORRUPT);
    snprintf(m, sizeof m, "%s:1: expected 'weft-vocab 1 chars|bytes N pad P' with 0 <= P < N",
             dpath("voc", "vocab.txt"));
    CHECKF(!strcmp(wf_errmsg(), m), "%s", wf_errmsg());
    uint32_t codes[5] = {0, 'a', 'b', 'c', 'd'};
    CHECK(wf_vocab_write(dpath("voc", "vocab.txt"), WF_VOCAB_CHARS, codes, 5, 0) == WF_OK);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_CORRUPT);
    snprintf(m, sizeof m, "%s: vocab size 97 and pad id 0 differ from %s's (5 ids, pad 0)", dpath("voc", "train.tok"),
             dpath("voc", "vocab.txt"));
    CHECKF(!strcmp(wf_errmsg(), m), "%s", wf_errmsg());
    unlink(dpath("voc", "vocab.txt"));
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_NOTFOUND);
    CHECK(strstr(wf_errmsg(), "vocab.txt: cannot open") != NULL);
    CHECK(!s);
}

/* ---- class labels ---- */

static const char *const cls_names[NCLS] = {"art", "cookie", "goedel", "people", "riddles", "science", "zippy"};

/* The SHA-256 of the token file make_dataset writes for `vocab`. */
static void tok_sha(uint32_t vocab, uint8_t sha[32]) {
    void *buf;
    size_t len;
    CHECK(wf_tok_encode(vocab, PAD, ref_off, NSEQ, ref_ids, &buf, &len) == WF_OK);
    wf_tok_digest(buf, len, sha);
    wf_free(buf);
}

/* Adds train.cls and test.cls (the reference classes) and classes.txt to tmp/sub. */
static void add_classes(const char *sub, uint32_t vocab) {
    uint8_t sha[32];
    tok_sha(vocab, sha);
    CHECKF(wf_cls_write(dpath(sub, "train.cls"), sha, NCLS, ref_cls, NSEQ) == WF_OK, "%s", wf_errmsg());
    CHECKF(wf_cls_write(dpath(sub, "test.cls"), sha, NCLS, ref_cls, NSEQ) == WF_OK, "%s", wf_errmsg());
    CHECKF(wf_classes_write(dpath(sub, "classes.txt"), cls_names, NCLS) == WF_OK, "%s", wf_errmsg());
}

static void test_classes_round_trip(void) {
    make_dataset("cls", VOCAB);
    add_classes("cls", VOCAB);
    /* the bytes: header (magic, version, C, S, the token file's digest, reserved), then S ids */
    uint8_t sha[32];
    tok_sha(VOCAB, sha);
    void *buf, *buf2;
    size_t len, len2;
    CHECK(wf_cls_encode(sha, NCLS, ref_cls, NSEQ, &buf, &len) == WF_OK);
    CHECK(len == WF_CLS_HEADER_BYTES + 4 * NSEQ && WF_CLS_HEADER_BYTES == 64);
    const unsigned char *p = buf;
    static const unsigned char zero[8];
    CHECK(!memcmp(p, "WFTOKCLS", 8) && p[8] == 1 && p[12] == NCLS && p[16] == (NSEQ & 0xff) && p[17] == NSEQ >> 8);
    CHECK(!memcmp(p + 24, sha, 32) && !memcmp(p + 56, zero, 8));
    int bad = 0;
    for (int k = 0; k < NSEQ; k++)
        bad += p[64 + 4 * k] != ref_cls[k] || p[65 + 4 * k] || p[66 + 4 * k] || p[67 + 4 * k];
    CHECK(bad == 0);
    char *file;
    size_t flen;
    CHECK(wf_read_file(dpath("cls", "train.cls"), &file, &flen) == WF_OK);
    CHECK(flen == len && !memcmp(file, buf, len)); /* the writer is the encoder, atomically */
    wf_free(file);
    CHECK(wf_cls_encode(sha, NCLS, ref_cls, NSEQ, &buf2, &len2) == WF_OK);
    CHECK(len2 == len && !memcmp(buf, buf2, len)); /* deterministic */
    wf_free(buf2);
    /* decoded back, with and without expectations */
    int32_t *ids = NULL;
    uint32_t c = 0;
    uint64_t n = 0;
    struct wf_cls_want want = {.n_seq = NSEQ, .tok_sha = sha, .n_classes = NCLS};
    CHECKF(wf_cls_decode("x.cls", buf, len, &want, &c, &n, &ids) == WF_OK, "%s", wf_errmsg());
    CHECK(c == NCLS && n == NSEQ && ids && !memcmp(ids, ref_cls, sizeof ref_cls));
    wf_free(ids);
    CHECK(wf_cls_decode("x.cls", buf, len, NULL, &c, &n, NULL) == WF_OK && c == NCLS && n == NSEQ);
    wf_free(buf);
    /* no sequence at all is a valid (empty) class file */
    CHECK(wf_cls_encode(sha, 1, NULL, 0, &buf, &len) == WF_OK && len == WF_CLS_HEADER_BYTES);
    CHECK(wf_cls_decode("x.cls", buf, len, NULL, &c, &n, &ids) == WF_OK && c == 1 && n == 0 && ids);
    wf_free(ids);
    wf_free(buf);
    /* the encoder refuses what it cannot write */
    int32_t bad_cls[3] = {0, NCLS, 1};
    CHECK(wf_cls_encode(sha, NCLS, bad_cls, 3, &buf, &len) == WF_ERR_INVALID && !buf);
    CHECKF(!strcmp(wf_errmsg(), "class file: sequence 1 has class 7, expected 0..6"), "%s", wf_errmsg());
    bad_cls[1] = -1;
    CHECK(wf_cls_encode(sha, NCLS, bad_cls, 3, &buf, &len) == WF_ERR_INVALID);
    CHECK(wf_cls_encode(sha, 0, bad_cls, 0, &buf, &len) == WF_ERR_INVALID);

    /* the class list */
    char *t;
    CHECK(wf_read_file(dpath("cls", "classes.txt"), &t, NULL) == WF_OK);
    CHECKF(!strcmp(t, "weft-classes 1 files 7\n0 art\n1 cookie\n2 goedel\n3 people\n4 riddles\n5 science\n6 zippy\n"),
           "%s", t);
    wf_free(t);
    int nc = 0;
    CHECKF(wf_classes_read_header(dpath("cls", "classes.txt"), &nc) == WF_OK && nc == NCLS, "%s", wf_errmsg());
    const char *spaced[2] = {"a b", "c"}, *empty[2] = {"a", ""}, *ctl[1] = {"a\nb"};
    CHECK(wf_classes_write(dpath("cls", "spaced.txt"), spaced, 2) == WF_OK); /* a name may hold spaces */
    CHECK(wf_classes_read_header(dpath("cls", "spaced.txt"), &nc) == WF_OK && nc == 2);
    CHECK(wf_classes_write(dpath("cls", "x.txt"), empty, 2) == WF_ERR_INVALID);
    CHECK(wf_classes_write(dpath("cls", "x.txt"), ctl, 1) == WF_ERR_INVALID);
    CHECK(wf_classes_write(dpath("cls", "x.txt"), ctl, 0) == WF_ERR_INVALID);

    /* class samples: the sequence, its length, its class */
    check_store_samples("cls", opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0));
    make_dataset("clswide", 70000);
    add_classes("clswide", 70000);
    check_store_samples("clswide", opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0));
    /* the same folder without labels = class reads no class file; with it, the digest covers the labels */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/cls", tmp);
    struct wf_store *sc, *ss, *st;
    struct wf_sample_opts oc = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0),
                          os = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0);
    CHECK(wf_store_open_opts(&sc, dir, "train", NULL, &oc) == WF_OK);
    CHECK(wf_store_open_opts(&ss, dir, "train", NULL, &os) == WF_OK);
    CHECKF(wf_store_open_opts(&st, dir, "test", NULL, &oc) == WF_OK, "%s", wf_errmsg());
    const struct wf_store_info *ic = wf_store_info(sc), *is = wf_store_info(ss);
    CHECK(!memcmp(is->digest, sha, 32) && memcmp(ic->digest, sha, 32) != 0);
    CHECK(!strcmp(ic->label_path, dpath("cls", "train.cls")) && !strcmp(is->label_path, dpath("cls", "train.tok")));
    CHECK(ic->y_per == 1 && ic->has_len && ic->n_classes == NCLS && ic->sample.labels == WF_LABELS_CLASS);
    CHECK(ic->open_bytes == is->open_bytes + len2 && wf_store_dir_has_classes(dir) == 1);
    wf_store_free(sc);
    wf_store_free(ss);
    wf_store_free(st);
    snprintf(dir, sizeof dir, "%s/good", tmp);
    CHECK(wf_store_dir_has_classes(dir) == 0);
}

/* A folder "clsbad" (the corpus, its class list) whose train.cls is the
 * good class file changed by fn; opens it with labels = class and checks
 * the status and the exact message (with %s = the class file's path). */
static void expect_cls_corrupt(int line, void (*fn)(unsigned char *b, size_t *len), int want_rc, const char *want_fmt) {
    uint8_t sha[32];
    tok_sha(VOCAB, sha);
    void *buf;
    size_t len;
    CHECK(wf_cls_encode(sha, NCLS, ref_cls, NSEQ, &buf, &len) == WF_OK);
    unsigned char *b = malloc(len + 64);
    memcpy(b, buf, len);
    memset(b + len, 0, 64);
    wf_free(buf);
    fn(b, &len);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/clsbad", tmp);
    synth_write(dpath("clsbad", "train.cls"), 0, b, len);
    /* the decoder on the same bytes says the same as the store (no expectations: only self-consistency) */
    struct wf_cls_want want = {.n_seq = NSEQ,
                               .tok_sha = sha,
                               .tok_path = dpath("clsbad", "train.tok"),
                               .n_classes = NCLS,
                               .classes_path = dpath("clsbad", "classes.txt")};
    int drc = wf_cls_decode(dpath("clsbad", "train.cls"), b, len, &want, NULL, NULL, NULL);
    char dmsg[1024];
    snprintf(dmsg, sizeof dmsg, "%s", wf_errmsg());
    free(b);
    struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0);
    struct wf_store *s = NULL;
    int rc = wf_store_open_opts(&s, dir, "train", NULL, &o);
    char want_msg[2048];
    snprintf(want_msg, sizeof want_msg, want_fmt, dpath("clsbad", "train.cls"));
    int ok = want_rc == WF_OK ? rc == WF_OK && s : rc == want_rc && !strcmp(wf_errmsg(), want_msg) && !s;
    CHECKF(ok, "line %d: rc %d, message\n  got  %s\n  want %s", line, rc, wf_errmsg(), want_msg);
    CHECKF(drc == want_rc && (want_rc == WF_OK || !strcmp(dmsg, want_msg)), "line %d: the decoder: rc %d, %s", line,
           drc, dmsg);
    wf_store_free(s);
}
#define EXPECT_CLS_CORRUPT(fn, msg) expect_cls_corrupt(__LINE__, fn, WF_ERR_CORRUPT, msg)

static void k_short(unsigned char *b, size_t *len) { (void)b, *len = 20; }
static void k_magic(unsigned char *b, size_t *len) { (void)len, b[0] = 'X'; }
static void k_version(unsigned char *b, size_t *len) { (void)len, put_le(b + 8, 2, 4); }
static void k_classes0(unsigned char *b, size_t *len) { (void)len, put_le(b + 12, 0, 4); }
static void k_classes_big(unsigned char *b, size_t *len) { (void)len, put_le(b + 12, 0x80000000u, 4); }
static void k_classes_more(unsigned char *b, size_t *len) { (void)len, put_le(b + 12, NCLS + 1, 4); }
static void k_n_seq(unsigned char *b, size_t *len) { (void)len, put_le(b + 16, NSEQ - 1, 8); }
static void k_n_seq_wrap(unsigned char *b, size_t *len) { (void)len, put_le(b + 16, UINT64_MAX / 2, 8); }
static void k_digest(unsigned char *b, size_t *len) { (void)len, b[24 + 31] ^= 1; }
static void k_reserved(unsigned char *b, size_t *len) { (void)len, b[60] = 1; }
static void k_truncated(unsigned char *b, size_t *len) { (void)b, *len -= 3; }
static void k_trailing(unsigned char *b, size_t *len) { (void)b, *len += 3; }
static void k_id(unsigned char *b, size_t *len) { (void)len, put_le(b + 64 + 4 * 9, NCLS, 4); }
static void k_id_negative(unsigned char *b, size_t *len) { (void)len, put_le(b + 64 + 4 * (NSEQ - 1), UINT32_MAX, 4); }
static void k_good(unsigned char *b, size_t *len) { (void)b, (void)len; }

static void test_classes_corrupt(void) {
    make_dataset("clsbad", VOCAB);
    add_classes("clsbad", VOCAB);
    char m[2048];
    EXPECT_CLS_CORRUPT(k_short, "%s: truncated: expected a 64-byte header, the file has 20 bytes");
    EXPECT_CLS_CORRUPT(k_magic,
                       "%s: bad magic 5846544f4b434c53 at offset 0, expected \"WFTOKCLS\" (a weft class file)");
    EXPECT_CLS_CORRUPT(k_version, "%s: version 2 at offset 8, expected 1");
    EXPECT_CLS_CORRUPT(k_classes0, "%s: class count 0 at offset 12, expected 1..2147483647");
    EXPECT_CLS_CORRUPT(k_classes_big, "%s: class count 2147483648 at offset 12, expected 1..2147483647");
    snprintf(m, sizeof m, "%%s: class count 8 at offset 12 differs from %s's (7 classes)",
             dpath("clsbad", "classes.txt"));
    EXPECT_CLS_CORRUPT(k_classes_more, m);
    snprintf(m, sizeof m, "%%s: sequence count 299 at offset 16 differs from %s's (300 sequences)",
             dpath("clsbad", "train.tok"));
    EXPECT_CLS_CORRUPT(k_n_seq, m);
    snprintf(m, sizeof m, "%%s: sequence count %" PRIu64 " at offset 16 differs from %s's (300 sequences)",
             UINT64_MAX / 2, dpath("clsbad", "train.tok"));
    EXPECT_CLS_CORRUPT(k_n_seq_wrap, m);
    uint8_t sha[32];
    tok_sha(VOCAB, sha);
    char exp[65], got[65];
    for (int i = 0; i < 32; i++)
        snprintf(exp + 2 * i, 3, "%02x", sha[i]);
    sha[31] ^= 1;
    for (int i = 0; i < 32; i++)
        snprintf(got + 2 * i, 3, "%02x", sha[i]);
    snprintf(m, sizeof m,
             "%%s: token file digest %s at offset 24 is not %s's (%s): these labels are another tokenization's", got,
             dpath("clsbad", "train.tok"), exp);
    EXPECT_CLS_CORRUPT(k_digest, m);
    EXPECT_CLS_CORRUPT(k_reserved, "%s: reserved field at offset 56 is 4294967296, expected 0");
    EXPECT_CLS_CORRUPT(k_truncated, "%s: truncated: 300 class ids (the count at offset 16) of 4 bytes from offset 64, "
                                    "the file has 1261 bytes; id 299 at offset 1260 is the first missing");
    EXPECT_CLS_CORRUPT(k_trailing, "%s: 3 bytes of trailing data after the 1264 bytes the header promises");
    EXPECT_CLS_CORRUPT(k_id, "%s: sequence 9 (at offset 100) has class id 7, not below the class count 7");
    EXPECT_CLS_CORRUPT(k_id_negative,
                       "%s: sequence 299 (at offset 1260) has class id 4294967295, not below the class count 7");
    expect_cls_corrupt(__LINE__, k_good, WF_OK, "");
    /* the token file it labels changed: another digest (the class file is as written) */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/clsbad", tmp);
    struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0);
    struct wf_store *s = NULL;
    uint32_t ids2[1] = {5};
    uint64_t off2[3] = {0, 1, 1};
    ref_ids[0] ^= 3; /* same sequence count, other ids */
    CHECK(wf_tok_write(dpath("clsbad", "train.tok"), VOCAB, PAD, ref_off, NSEQ, ref_ids) == WF_OK);
    ref_ids[0] ^= 3;
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_CORRUPT && !s);
    CHECKF(strstr(wf_errmsg(), "train.cls: token file digest ") && strstr(wf_errmsg(), "another tokenization's"), "%s",
           wf_errmsg());
    /* fewer sequences: the count says so before the digest */
    CHECK(wf_tok_write(dpath("clsbad", "train.tok"), VOCAB, PAD, off2, 2, ids2) == WF_OK);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_CORRUPT && !s);
    snprintf(m, sizeof m, "%s: sequence count 300 at offset 16 differs from %s's (2 sequences)",
             dpath("clsbad", "train.cls"), dpath("clsbad", "train.tok"));
    CHECKF(!strcmp(wf_errmsg(), m), "%s", wf_errmsg());
    CHECK(wf_tok_write(dpath("clsbad", "train.tok"), VOCAB, PAD, ref_off, NSEQ, ref_ids) == WF_OK);
    add_classes("clsbad", VOCAB);

    /* the class list: malformed, disagreeing, missing; a missing class file */
    static const struct {
        const char *text, *msg; /* msg: after "PATH:" */
    } lists[] = {
        {"weft-classes 1 files 7\n", "2: expected the line 'ID NAME' of class 0 (the header promises 7 classes)"},
        {"weft-classes 2 files 1\n0 a\n", "1: expected 'weft-classes 1 files C' with C >= 1"},
        {"weft-classes 1 dirs 1\n0 a\n", "1: expected 'weft-classes 1 files C' with C >= 1"},
        {"weft-classes 1 files 0\n", "1: expected 'weft-classes 1 files C' with C >= 1"},
        {"weft-classes 1 files 1 \n0 a\n", "1: expected 'weft-classes 1 files C' with C >= 1"},
        {"weft-classes 1 files 2\n0 a\n2 b\n",
         "3: expected the line 'ID NAME' of class 1 (the header promises 2 classes)"},
        {"weft-classes 1 files 2\n0 a\n1 \n",
         "3: expected the line 'ID NAME' of class 1 (the header promises 2 classes)"},
        {"weft-classes 1 files 2\n0 a\n1 b\tc\n",
         "3: expected the line 'ID NAME' of class 1 (the header promises 2 classes)"},
        {"weft-classes 1 files 2\n0 a\n1 b",
         "3: expected the line 'ID NAME' of class 1 (the header promises 2 classes)"},
        {"weft-classes 1 files 1\n0 a\n1 b\n", "3: data after the 1 classes the header promises"},
    };
    for (size_t k = 0; k < WF_ARRAY_LEN(lists); k++) {
        synth_write(dpath("clsbad", "classes.txt"), 0, (const unsigned char *)lists[k].text, strlen(lists[k].text));
        int rc = wf_store_open_opts(&s, dir, "train", NULL, &o);
        snprintf(m, sizeof m, "%s:%s", dpath("clsbad", "classes.txt"), lists[k].msg);
        CHECKF(rc == WF_ERR_CORRUPT && !strcmp(wf_errmsg(), m) && !s, "list %zu: rc %d: %s", k, rc, wf_errmsg());
    }
    const char *six[6] = {"a", "b", "c", "d", "e", "f"};
    CHECK(wf_classes_write(dpath("clsbad", "classes.txt"), six, 6) == WF_OK);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_CORRUPT && !s);
    snprintf(m, sizeof m, "%s: class count 7 at offset 12 differs from %s's (6 classes)", dpath("clsbad", "train.cls"),
             dpath("clsbad", "classes.txt"));
    CHECKF(!strcmp(wf_errmsg(), m), "%s", wf_errmsg());
    unlink(dpath("clsbad", "classes.txt"));
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_NOTFOUND && !s);
    CHECK(strstr(wf_errmsg(), "classes.txt: cannot open") != NULL);
    add_classes("clsbad", VOCAB);
    unlink(dpath("clsbad", "test.cls"));
    CHECK(wf_store_open_opts(&s, dir, "test", NULL, &o) == WF_ERR_NOTFOUND && !s);
    CHECK(strstr(wf_errmsg(), "test.cls: cannot open") != NULL);
    CHECKF(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_OK, "%s", wf_errmsg()); /* train's is there */
    wf_store_free(s);
}

/* labels = class through the loader: the same bytes with and without the
 * cache, never a shifted-label value of the same sequences from it. */
static void test_classes_loader(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/cls", tmp);
    struct wf_sample_opts oc = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0),
                          os = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0);
    struct wf_store *sc, *ss;
    struct wf_cache *c;
    struct wf_loader *lc, *ls, *ln;
    CHECK(wf_store_open_opts(&sc, dir, "train", NULL, &oc) == WF_OK);
    CHECK(wf_store_open_opts(&ss, dir, "train", NULL, &os) == WF_OK);
    CHECK(wf_cache_new_mem(&c, 64 << 20) == WF_OK);
    CHECK(wf_loader_new(&lc, sc, "", 1, c) == WF_OK);
    CHECK(wf_loader_new(&ls, ss, "", 1, c) == WF_OK);
    CHECK(wf_loader_new(&ln, sc, "", 1, NULL) == WF_OK);
    CHECK(wf_loader_cache_id(lc) != wf_loader_cache_id(ls));

    enum { B = 50 };
    uint32_t perm[NSEQ];
    int32_t x[B * T], y[B * T], len[B], x2[B * T], y2[B], len2[B], rx[T], ry[T], rl;
    wf_epoch_order(perm, NSEQ, 9, 0);
    int bad = 0;
    for (int at = 0; at < NSEQ; at += B) /* the shifted loader fills the shared cache first */
        CHECK(wf_loader_fetch_any(ls, perm + at, B, 0, x, y, len) == WF_OK);
    for (int pass = 0; pass < 2; pass++) {
        for (int at = 0; at < NSEQ; at += B) {
            CHECK(wf_loader_fetch_any(lc, perm + at, B, 0, x, y, len) == WF_OK);
            CHECK(wf_loader_fetch_any(ln, perm + at, B, 0, x2, y2, len2) == WF_OK);
            bad += memcmp(x, x2, sizeof x) || memcmp(y, y2, sizeof y2) || memcmp(len, len2, sizeof len);
            for (int i = 0; i < B; i++) {
                ref_sample(&oc, perm[at + i], rx, ry, &rl);
                bad += memcmp(x + i * T, rx, sizeof rx) || y[i] != ref_cls[perm[at + i]] || len[i] != rl;
            }
        }
    }
    CHECKF(bad == 0, "%d batches or samples differ", bad);
    struct wf_loader_stats st;
    wf_loader_stats(lc, &st);
    CHECKF(st.hits == NSEQ && st.misses == NSEQ, "hits %llu misses %llu: the shifted values were taken",
           (unsigned long long)st.hits, (unsigned long long)st.misses);
    wf_loader_free(lc);
    wf_loader_free(ls);
    wf_loader_free(ln);
    wf_cache_free(c);
    wf_store_free(sc);
    wf_store_free(ss);
}

/* ---- options ---- */

static void test_options(void) {
    char dir[1024], idx[1024];
    snprintf(dir, sizeof dir, "%s/good", tmp);
    struct wf_store *s = NULL;
    struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_NEXT, 0);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_INVALID);
    CHECK(!strcmp(wf_errmsg(), "token dataset: sample = sequence takes labels = shifted or class"));
    o = opts(WF_SAMPLE_WINDOW, WF_LABELS_CLASS, 0);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_INVALID);
    CHECK(!strcmp(wf_errmsg(), "token dataset: labels = class takes sample = sequence (a window has no class)"));
    o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS + 1, 0);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_INVALID);
    o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0); /* a folder without class files */
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_NOTFOUND && !s);
    CHECK(strstr(wf_errmsg(), "/good/classes.txt: cannot open") != NULL);
    o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 4);
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_INVALID);
    o.stride = 0;
    o.seq_len = WF_SEQ_LEN_MAX + 1;
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_INVALID);
    CHECK(!strcmp(wf_errmsg(), "token dataset: seq_len 1048577, expected 1..1048576"));
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, NULL) == WF_ERR_INVALID);
    snprintf(idx, sizeof idx, "%s: a token dataset (train.tok) needs sample options: seq_len, sample, labels", dir);
    CHECKF(!strcmp(wf_errmsg(), idx), "%s", wf_errmsg());
    CHECK(wf_store_open_opts(&s, dir, "valid", NULL, &(struct wf_sample_opts){.seq_len = 4}) == WF_ERR_INVALID);
    /* a window longer than the split */
    o = opts(WF_SAMPLE_WINDOW, WF_LABELS_NEXT, 0);
    o.seq_len = (int)ref_off[NSEQ];
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_ERR_RANGE);
    char m[1024];
    snprintf(m, sizeof m,
             "%s/train.tok: %" PRIu64 " tokens: a window of seq_len %d needs at least %" PRIu64
             " (the window and the token after it)",
             dir, ref_off[NSEQ], o.seq_len, ref_off[NSEQ] + 1);
    CHECKF(!strcmp(wf_errmsg(), m), "%s", wf_errmsg());
    o.seq_len--; /* exactly one window */
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_OK && wf_store_info(s)->n == 1);
    wf_store_free(s);
    s = NULL;
    /* an IDX folder: no options, or none set */
    snprintf(idx, sizeof idx, "%s/idx", tmp);
    wf_mkdir_p(idx);
    synth_dataset(idx, 40, 4, 4, 1, 0);
    CHECK(wf_store_dir_is_tokens(idx) == 0 && wf_store_dir_is_tokens(dir) == 1);
    o = opts(WF_SAMPLE_WINDOW, WF_LABELS_NEXT, 0);
    CHECK(wf_store_open_opts(&s, idx, "train", NULL, &o) == WF_ERR_INVALID);
    CHECK(strstr(wf_errmsg(), "sample options (seq_len 12) given, but the folder holds no token dataset") != NULL);
    CHECKF(wf_store_open_opts(&s, idx, "train", NULL, &(struct wf_sample_opts){0}) == WF_OK, "%s", wf_errmsg());
    const struct wf_store_info *in = wf_store_info(s);
    CHECK(in->kind == WF_STORE_IMAGES && in->x_dtype == WF_F32 && in->x_per == 16 && in->y_per == 1 && !in->has_len);
    int32_t x[T], y[T];
    CHECK(wf_store_read_tokens(s, 0, x, y, NULL) == WF_ERR_INVALID);
    wf_store_free(s);
}

/* ---- loader, cache, feeder ---- */

static void test_loader(void) {
    char dir[1024], idx[1024];
    snprintf(dir, sizeof dir, "%s/good", tmp);
    snprintf(idx, sizeof idx, "%s/idx", tmp);
    struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0);
    struct wf_store *s, *si;
    struct wf_cache *c;
    struct wf_loader *l, *ln, *li, *lw;
    CHECK(wf_store_open_opts(&s, dir, "train", NULL, &o) == WF_OK);
    CHECK(wf_store_open(&si, idx, "train", NULL) == WF_OK);
    CHECK(wf_cache_new_mem(&c, 64 << 20) == WF_OK);
    CHECK(wf_loader_new(&l, s, "flip(p=0.5)", 1, c) == WF_ERR_INVALID);
    CHECKF(!strcmp(wf_errmsg(),
                   "transforms = \"flip(p=0.5)\": a token dataset takes no transforms (its ids pass untransformed)"),
           "%s", wf_errmsg());
    CHECK(wf_loader_new(&l, s, "", 1, c) == WF_OK);
    CHECK(wf_loader_new(&ln, s, "", 1, NULL) == WF_OK);
    CHECK(wf_loader_new(&li, si, "", 1, c) == WF_OK);
    struct wf_store *sw;
    struct wf_sample_opts ow = opts(WF_SAMPLE_WINDOW, WF_LABELS_SHIFTED, 0);
    CHECK(wf_store_open_opts(&sw, dir, "train", NULL, &ow) == WF_OK);
    CHECK(wf_loader_new(&lw, sw, "", 1, c) == WF_OK);
    CHECK(wf_loader_cache_id(l) != wf_loader_cache_id(li) && wf_loader_cache_id(l) != wf_loader_cache_id(lw));

    enum { B = 30 };
    uint32_t perm[NSEQ];
    int32_t x[B * T], y[B * T], len[B], x2[B * T], y2[B * T], len2[B], rx[T], ry[T], rl;
    float fx[B * T];
    wf_epoch_order(perm, NSEQ, 3, 0);
    CHECK(wf_loader_fetch(l, perm, B, 0, fx, y) == WF_ERR_INVALID);
    int bad = 0;
    for (int pass = 0; pass < 2; pass++) { /* first pass fills the cache, the second hits it */
        for (int at = 0; at < NSEQ; at += B) {
            CHECK(wf_loader_fetch_any(l, perm + at, B, 0, x, y, len) == WF_OK);
            CHECK(wf_loader_fetch_any(ln, perm + at, B, 0, x2, y2, len2) == WF_OK);
            bad += memcmp(x, x2, sizeof x) || memcmp(y, y2, sizeof y) || memcmp(len, len2, sizeof len);
            for (int i = 0; i < B; i++) {
                ref_sample(&o, perm[at + i], rx, ry, &rl);
                bad += memcmp(x + i * T, rx, sizeof rx) || memcmp(y + i * T, ry, sizeof ry) || len[i] != rl;
            }
        }
    }
    CHECKF(bad == 0, "%d batches or samples differ", bad);
    struct wf_loader_stats st;
    wf_loader_stats(l, &st);
    CHECKF(st.hits == NSEQ && st.misses == NSEQ && st.samples == 2 * NSEQ, "hits %llu misses %llu",
           (unsigned long long)st.hits, (unsigned long long)st.misses);
    wf_loader_stats(ln, &st);
    CHECK(st.bytes_read > 0 && st.hits == 0);
    /* labels only, and no length wanted */
    memset(y2, 0, sizeof y2);
    CHECK(wf_loader_fetch_any(l, perm, B, 0, NULL, y2, NULL) == WF_OK);
    CHECK(wf_loader_fetch_any(ln, perm, B, 0, x, y, len) == WF_OK && !memcmp(y, y2, sizeof y));
    CHECK(wf_loader_fetch_any(l, (uint32_t[]){NSEQ}, 1, 0, x, y, len) == WF_ERR_RANGE);
    /* images through fetch_any: the float path, same as wf_loader_fetch */
    uint32_t ii[4] = {3, 1, 4, 1};
    float a[4 * 16], b[4 * 16];
    int32_t ya[4], yb[4];
    CHECK(wf_loader_fetch_any(li, ii, 4, 0, a, ya, NULL) == WF_OK && wf_loader_fetch(li, ii, 4, 0, b, yb) == WF_OK);
    CHECK(!memcmp(a, b, sizeof a) && !memcmp(ya, yb, sizeof ya));

    wf_loader_free(l);
    wf_loader_free(ln);
    wf_loader_free(li);
    wf_loader_free(lw);
    wf_cache_free(c);
    wf_store_free(s);
    wf_store_free(si);
    wf_store_free(sw);
}

/* Runs a feeder over `steps` steps and hashes everything it served; checks
 * exactly-once per epoch and the bytes against the reference. */
static uint64_t feed_all(struct wf_loader *l, const struct wf_sample_opts *o, int placement, int workers,
                         int labels_only, int batch, long spe, long steps, int *bad) {
    struct wf_feeder *f;
    struct wf_feeder_opts fo = {.batch = batch,
                                .seed = 11,
                                .steps_per_epoch = spe,
                                .end_step = steps,
                                .placement = placement,
                                .workers = workers,
                                .window = 2,
                                .labels_only = labels_only};
    int rc = wf_feeder_new(&f, l, &fo);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return 0;
    uint32_t n = ref_n(o), *perm = malloc(n * sizeof *perm);
    int *seen = calloc(n, sizeof *seen);
    int yp = o->labels == WF_LABELS_SHIFTED ? T : 1;
    int32_t rx[T], ry[T], rl;
    uint64_t h = 1;
    long epoch = -1;
    for (long t = 0;; t++) {
        struct wf_feed_batch b;
        rc = wf_feeder_next(f, &b);
        CHECKF(rc == WF_OK, "%s", wf_errmsg());
        if (rc || b.n == 0) break;
        if (b.epoch != epoch) {
            for (uint32_t i = 0; epoch >= 0 && i < n; i++)
                *bad += seen[i] > 1;
            memset(seen, 0, n * sizeof *seen);
            wf_epoch_order(perm, n, 11, (uint64_t)b.epoch);
            epoch = b.epoch;
        }
        *bad += b.x != NULL || b.x_dtype != WF_I32 || b.x_per != T || b.y_per != yp || (labels_only != !b.xv) ||
                (o->sample == WF_SAMPLE_SEQUENCE) != (b.len != NULL);
        for (int i = 0; i < b.n; i++) {
            uint32_t id = b.ids[i];
            *bad += id != perm[b.epoch_step * batch + i];
            seen[id]++;
            ref_sample(o, id, rx, ry, &rl);
            const int32_t *xv = b.xv;
            if (xv) *bad += memcmp(xv + (size_t)i * T, rx, sizeof rx) != 0;
            *bad += memcmp(b.y + (size_t)i * yp, ry, sizeof(int32_t) * (size_t)yp) != 0;
            if (b.len) *bad += b.len[i] != rl;
        }
        h = wf_hash_combine(h, wf_hash64(b.ids, sizeof(uint32_t) * (size_t)b.n, 1));
        if (b.xv) h = wf_hash_combine(h, wf_hash64(b.xv, sizeof(int32_t) * (size_t)b.n * T, 2));
        h = wf_hash_combine(h, wf_hash64(b.y, sizeof(int32_t) * (size_t)b.n * (size_t)yp, 3));
        if (b.len) h = wf_hash_combine(h, wf_hash64(b.len, sizeof(int32_t) * (size_t)b.n, 4));
    }
    for (uint32_t i = 0; i < n; i++)
        *bad += seen[i] > 1;
    wf_feeder_free(f);
    free(perm);
    free(seen);
    return h;
}

static void test_feeder(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/good", tmp);
    struct wf_sample_opts os[3] = {opts(WF_SAMPLE_SEQUENCE, WF_LABELS_SHIFTED, 0),
                                   opts(WF_SAMPLE_WINDOW, WF_LABELS_NEXT, 3),
                                   opts(WF_SAMPLE_SEQUENCE, WF_LABELS_CLASS, 0)};
    for (int k = 0; k < 3; k++) {
        const struct wf_sample_opts *o = &os[k];
        snprintf(dir, sizeof dir, "%s/%s", tmp, o->labels == WF_LABELS_CLASS ? "cls" : "good");
        struct wf_store *s;
        struct wf_cache *c;
        struct wf_loader *lc, *ln;
        CHECK(wf_store_open_opts(&s, dir, "train", NULL, o) == WF_OK);
        CHECK(wf_cache_new_mem(&c, 64 << 20) == WF_OK);
        CHECK(wf_loader_new(&lc, s, "", 5, c) == WF_OK);
        CHECK(wf_loader_new(&ln, s, "", 5, NULL) == WF_OK);
        int batch = 25;
        long spe = (long)ref_n(o) / batch, steps = 3 * spe + 2;
        int bad = 0;
        uint64_t h0 = feed_all(ln, o, WF_PLACE_CPU, 1, 0, batch, spe, steps, &bad);
        uint64_t h[] = {
            feed_all(lc, o, WF_PLACE_CPU, 1, 0, batch, spe, steps, &bad), /* fills the cache */
            feed_all(lc, o, WF_PLACE_CPU, 3, 0, batch, spe, steps, &bad), /* hits it */
            feed_all(lc, o, WF_PLACE_DEVICE, 1, 0, batch, spe, steps, &bad),
            feed_all(ln, o, WF_PLACE_DEVICE, 1, 0, batch, spe, steps, &bad),
            feed_all(lc, o, WF_PLACE_AUTO, 2, 0, batch, spe, steps, &bad),
            feed_all(ln, o, WF_PLACE_AUTO, 1, 0, batch, spe, steps, &bad),
        };
        for (size_t i = 0; i < WF_ARRAY_LEN(h); i++)
            CHECKF(h[i] == h0, "sample mode %d: run %zu served other bytes", o->sample, i);
        CHECKF(bad == 0, "sample mode %d: %d mismatches (order, exactly-once, bytes)", o->sample, bad);
        bad = 0;
        uint64_t l0 = feed_all(ln, o, WF_PLACE_CPU, 1, 1, batch, spe, steps, &bad);
        uint64_t l1 = feed_all(lc, o, WF_PLACE_DEVICE, 1, 1, batch, spe, steps, &bad);
        CHECKF(l0 == l1 && bad == 0, "labels only: %d mismatches", bad);
        struct wf_loader_stats st;
        wf_loader_stats(lc, &st);
        CHECK(st.hits > 0 && st.misses <= ref_n(o)); /* an id misses once, then hits */
        wf_loader_free(lc);
        wf_loader_free(ln);
        wf_cache_free(c);
        wf_store_free(s);
    }
}

/* Every allocation of an open, failed in turn, is an error, never a crash. */
static void test_alloc_failures(void) {
    for (int cls = 0; cls < 2; cls++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", tmp, cls ? "cls" : "good");
        struct wf_sample_opts o = opts(WF_SAMPLE_SEQUENCE, cls ? WF_LABELS_CLASS : WF_LABELS_SHIFTED, 0);
        int failed = 0, ok = 0;
        for (long n = 1; n < 200 && !ok; n++) {
            struct wf_store *s = NULL;
            wf_alloc_fail_at(n);
            int rc = wf_store_open_opts(&s, dir, "train", NULL, &o);
            wf_alloc_fail_at(0);
            if (rc == WF_OK) {
                ok = 1;
            } else {
                failed++;
                CHECKF(rc == WF_ERR_NOMEM && !s, "labels %d, allocation %ld: rc %d: %s", o.labels, n, rc, wf_errmsg());
            }
            wf_store_free(s);
        }
        CHECK(ok && failed >= (cls ? 6 : 3));
    }
}

int main(void) {
    if (!synth_mkdtemp(tmp, sizeof tmp, "tokens")) return 1;
    make_corpus();
    test_round_trip();
    test_corrupt();
    test_classes_round_trip();
    test_classes_corrupt();
    test_options();
    test_loader();
    test_classes_loader();
    test_feeder();
    test_alloc_failures();
    free(ref_ids);
    synth_rm_rf(tmp);
    return wf_test_done("test_tokens");
}
