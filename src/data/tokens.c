/*
 * data layer: token datasets (typed data, DESIGN.md §3a). The token file
 * format (docs/formats.md, "Token datasets"), its writer, the vocabulary
 * file, and the per-sample store that turns a split into window or
 * sequence samples by pread, every byte counted like the IDX store.
 *
 * A token file is validated whole at open, in one streaming pass that also
 * hashes it: every size in the header is checked against the file's length
 * with overflow-checked arithmetic before anything is allocated from it,
 * every offset and every id is checked. Samples are then read with one or
 * two preads each; ids are checked again as they are read (the file may
 * change under a long run). With labels = class the split's class file
 * (classes.c) is read and checked whole at open and held in memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokens_int.h"
#include "weft/core.h"
#include "weft/lex.h"
#include "weft/safetensors.h"

#define TOK_CHUNK ((size_t)1 << 20) /* streaming pass; a multiple of 8 so no entry straddles two chunks */
#define VOCAB_MAX_BYTES ((off_t)256 << 20)

/* Header fields, by offset (docs/formats.md). */
enum {
    H_MAGIC = 0,
    H_VERSION = 8,
    H_ID_BYTES = 12,
    H_VOCAB = 16,
    H_PAD = 20,
    H_N_SEQ = 24,
    H_N_TOK = 32,
    H_RESERVED = 40,
};

struct wf_tokstore {
    char *path;              /* DIR/<split>.tok */
    int fd;                  /* open on path, -1 when closed */
    struct wf_sample_opts o; /* stride resolved */
    int id_bytes;            /* 2 or 4 */
    uint32_t vocab, pad;     /* ids are < vocab */
    uint64_t n_seq, n_tok;   /* sequences, tokens */
    uint64_t ids_off;        /* file offset of token 0 */
    uint64_t *offsets;       /* WF_SAMPLE_SEQUENCE: n_seq + 1 token offsets; else NULL */
    char *cls_path;          /* WF_LABELS_CLASS: DIR/<split>.cls; else NULL */
    int32_t *cls;            /* WF_LABELS_CLASS: the class of each of the n_seq sequences; else NULL */
    uint32_t n;              /* samples */
    atomic_ullong nread;     /* bytes read by wf_tokstore_read */
};


/* ---- writer ---- */

int wf_tok_encode(uint32_t vocab, uint32_t pad_id, const uint64_t *offsets, uint64_t n_seq, const uint32_t *ids,
                  void **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    if (vocab == 0 || vocab > WF_TOK_MAX_VOCAB)
        return wf_error(WF_ERR_INVALID, "token file: vocab size %" PRIu32 ", expected 1..%d", vocab, WF_TOK_MAX_VOCAB);
    if (pad_id >= vocab)
        return wf_error(WF_ERR_INVALID, "token file: pad id %" PRIu32 " not below the vocab size %" PRIu32, pad_id,
                        vocab);
    if (offsets[0] != 0)
        return wf_error(WF_ERR_INVALID, "token file: offsets[0] is %" PRIu64 ", expected 0", offsets[0]);
    for (uint64_t k = 0; k < n_seq; k++)
        if (offsets[k + 1] < offsets[k])
            return wf_error(WF_ERR_INVALID,
                            "token file: sequence %" PRIu64 " ends (%" PRIu64 ") before it starts (%" PRIu64 ")", k,
                            offsets[k + 1], offsets[k]);
    uint64_t n_tok = offsets[n_seq];
    int b = vocab <= 65536 ? 2 : 4;
    for (uint64_t i = 0; i < n_tok; i++)
        if (ids[i] >= vocab)
            return wf_error(WF_ERR_INVALID,
                            "token file: token %" PRIu64 " is id %" PRIu32 ", not below the vocab size %" PRIu32, i,
                            ids[i], vocab);
    uint64_t table, idb, total;
    if (__builtin_add_overflow(n_seq, 1, &table) || __builtin_mul_overflow(table, 8, &table) ||
        __builtin_mul_overflow(n_tok, (uint64_t)b, &idb) || __builtin_add_overflow(table, idb, &total) ||
        __builtin_add_overflow(total, WF_TOK_HEADER_BYTES, &total) || total > SIZE_MAX)
        return wf_error(WF_ERR_RANGE, "token file: %" PRIu64 " sequences and %" PRIu64 " tokens overflow a size", n_seq,
                        n_tok);
    unsigned char *p = wf_malloc((size_t)total);
    if (!p) return wf_error(WF_ERR_NOMEM, "token file: out of memory for %" PRIu64 " bytes", total);
    memset(p, 0, WF_TOK_HEADER_BYTES);
    memcpy(p + H_MAGIC, WF_TOK_MAGIC, 8);
    put32(p + H_VERSION, WF_TOK_VERSION);
    put32(p + H_ID_BYTES, (uint32_t)b);
    put32(p + H_VOCAB, vocab);
    put32(p + H_PAD, pad_id);
    put64(p + H_N_SEQ, n_seq);
    put64(p + H_N_TOK, n_tok);
    unsigned char *q = p + WF_TOK_HEADER_BYTES;
    for (uint64_t k = 0; k <= n_seq; k++, q += 8)
        put64(q, offsets[k]);
    for (uint64_t i = 0; i < n_tok; i++, q += b) {
        q[0] = (unsigned char)ids[i];
        q[1] = (unsigned char)(ids[i] >> 8);
        if (b == 4) q[2] = (unsigned char)(ids[i] >> 16), q[3] = (unsigned char)(ids[i] >> 24);
    }
    *buf = p;
    *len = (size_t)total;
    return WF_OK;
}

int wf_tok_write(const char *path, uint32_t vocab, uint32_t pad_id, const uint64_t *offsets, uint64_t n_seq,
                 const uint32_t *ids) {
    void *buf;
    size_t len;
    int rc = wf_tok_encode(vocab, pad_id, offsets, n_seq, ids, &buf, &len);
    if (rc) return wf_error_prefix(rc, "%s", path);
    rc = wf_write_file_atomic(path, buf, len);
    wf_free(buf);
    return rc;
}

/* ---- vocabulary file ---- */

/* The shown form of a code: the character itself when printable, else an escape. */
static void vocab_shown(int kind, uint32_t c, int is_pad, char *out, size_t cap) {
    if (is_pad) {
        snprintf(out, cap, "<pad>");
    } else if (c == '\n') {
        snprintf(out, cap, "\\n");
    } else if (c == '\t') {
        snprintf(out, cap, "\\t");
    } else if (c == '\r') {
        snprintf(out, cap, "\\r");
    } else if (c == ' ') {
        snprintf(out, cap, "\\s");
    } else if (c == '\\') {
        snprintf(out, cap, "\\\\");
    } else if (c < 0x20 || c == 0x7f || (c >= 0x80 && (kind == WF_VOCAB_BYTES || c < 0xa0))) {
        snprintf(out, cap, "\\x%02" PRIX32, c);
    } else if (c < 0x80) {
        snprintf(out, cap, "%c", (char)c);
    } else { /* UTF-8 */
        unsigned char u[5] = {0};
        if (c < 0x800) {
            u[0] = (unsigned char)(0xc0 | c >> 6), u[1] = (unsigned char)(0x80 | (c & 0x3f));
        } else if (c < 0x10000) {
            u[0] = (unsigned char)(0xe0 | c >> 12), u[1] = (unsigned char)(0x80 | (c >> 6 & 0x3f));
            u[2] = (unsigned char)(0x80 | (c & 0x3f));
        } else {
            u[0] = (unsigned char)(0xf0 | c >> 18), u[1] = (unsigned char)(0x80 | (c >> 12 & 0x3f));
            u[2] = (unsigned char)(0x80 | (c >> 6 & 0x3f)), u[3] = (unsigned char)(0x80 | (c & 0x3f));
        }
        snprintf(out, cap, "%s", (char *)u);
    }
}

int wf_vocab_write(const char *path, int kind, const uint32_t *code, int n, int pad_id) {
    if (kind != WF_VOCAB_CHARS && kind != WF_VOCAB_BYTES)
        return wf_error(WF_ERR_INVALID, "%s: unknown vocabulary kind %d", path, kind);
    if (n <= 0 || pad_id < 0 || pad_id >= n)
        return wf_error(WF_ERR_INVALID, "%s: vocabulary of %d ids with pad id %d", path, n, pad_id);
    struct wf_textbuf b = {0};
    wf_textbuf_printf(&b, "weft-vocab 1 %s %d pad %d\n", kind == WF_VOCAB_CHARS ? "chars" : "bytes", n, pad_id);
    for (int k = 0; k < n; k++) {
        char shown[32];
        vocab_shown(kind, code[k], k == pad_id, shown, sizeof shown);
        if (kind == WF_VOCAB_CHARS)
            wf_textbuf_printf(&b, "%d U+%04" PRIX32 " %s\n", k, code[k], shown);
        else
            wf_textbuf_printf(&b, "%d 0x%02" PRIX32 " %s\n", k, code[k], shown);
    }
    char *text;
    size_t len;
    int rc = wf_textbuf_take(&b, &text, &len);
    if (rc) return wf_error_prefix(rc, "%s", path);
    rc = wf_write_file_atomic(path, text, len);
    wf_free(text);
    return rc;
}

int wf_vocab_read_header(const char *path, int *kind, int *n, int *pad_id) {
    struct stat st;
    if (stat(path, &st) != 0)
        return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (st.st_size > VOCAB_MAX_BYTES)
        return wf_error(WF_ERR_CORRUPT, "%s: %lld bytes, more than a vocabulary file may hold (%lld)", path,
                        (long long)st.st_size, (long long)VOCAB_MAX_BYTES);
    char *text;
    size_t len;
    int rc = wf_read_file(path, &text, &len);
    if (rc) return rc;
    char kw[16];
    int ver = 0, consumed = 0;
    if (sscanf(text, "weft-vocab %d %15s %d pad %d%n", &ver, kw, n, pad_id, &consumed) != 4 || ver != 1 ||
        (strcmp(kw, "chars") && strcmp(kw, "bytes")) || text[consumed] != '\n' || *n <= 0 || *pad_id < 0 ||
        *pad_id >= *n) {
        wf_free(text);
        return wf_error(WF_ERR_CORRUPT, "%s:1: expected 'weft-vocab 1 chars|bytes N pad P' with 0 <= P < N", path);
    }
    *kind = !strcmp(kw, "chars") ? WF_VOCAB_CHARS : WF_VOCAB_BYTES;
    if (*kind == WF_VOCAB_BYTES && *n != 256) {
        wf_free(text);
        return wf_error(WF_ERR_CORRUPT, "%s:1: a byte vocabulary has 256 ids, the header says %d", path, *n);
    }
    /* one line per id, "ID CODE SHOWN", ids in order */
    const char *p = text + consumed + 1, *end = text + len;
    for (long k = 0; k < *n; k++) {
        char *e;
        long id = p < end ? strtol(p, &e, 10) : -1;
        if (p >= end || e == p || id != k || *e != ' ') {
            wf_free(text);
            return wf_error(WF_ERR_CORRUPT, "%s:%ld: expected the line of id %ld (the header promises %d ids)", path,
                            k + 2, k, *n);
        }
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    if (p != end) {
        wf_free(text);
        return wf_error(WF_ERR_CORRUPT, "%s:%d: data after the %d ids the header promises", path, *n + 2, *n);
    }
    wf_free(text);
    return WF_OK;
}

/* ---- store ---- */

void wf_tokstore_free(struct wf_tokstore *t) {
    if (!t) return;
    if (t->fd >= 0) close(t->fd);
    wf_free(t->path);
    wf_free(t->offsets);
    wf_free(t->cls_path);
    wf_free(t->cls);
    wf_free(t);
}

uint64_t wf_tokstore_bytes_read(const struct wf_tokstore *t) { return atomic_load(&((struct wf_tokstore *)t)->nread); }

static int check_opts(const struct wf_sample_opts *o, struct wf_sample_opts *out) {
    if (!o || o->seq_len < 1 || o->seq_len > WF_SEQ_LEN_MAX)
        return wf_error(WF_ERR_INVALID, "token dataset: seq_len %d, expected 1..%d", o ? o->seq_len : 0,
                        WF_SEQ_LEN_MAX);
    if (o->sample != WF_SAMPLE_WINDOW && o->sample != WF_SAMPLE_SEQUENCE)
        return wf_error(WF_ERR_INVALID, "token dataset: unknown sample mode %d", o->sample);
    if (o->labels != WF_LABELS_NEXT && o->labels != WF_LABELS_SHIFTED && o->labels != WF_LABELS_CLASS)
        return wf_error(WF_ERR_INVALID, "token dataset: unknown label mode %d", o->labels);
    if (o->sample == WF_SAMPLE_SEQUENCE && o->labels == WF_LABELS_NEXT)
        return wf_error(WF_ERR_INVALID, "token dataset: sample = sequence takes labels = shifted or class");
    if (o->sample == WF_SAMPLE_WINDOW && o->labels == WF_LABELS_CLASS)
        return wf_error(WF_ERR_INVALID,
                        "token dataset: labels = class takes sample = sequence (a window has no class)");
    if (o->stride < 0 || (o->sample == WF_SAMPLE_SEQUENCE && o->stride > 1))
        return wf_error(WF_ERR_INVALID, "token dataset: stride %d (window samples only, >= 1)", o->stride);
    *out = *o;
    if (out->stride == 0) out->stride = 1;
    return WF_OK;
}

/* Validates the header against the file size (st_size); fills t. */
static int check_header(struct wf_tokstore *t, const unsigned char *h, uint64_t size) {
    const char *path = t->path;
    if (memcmp(h + H_MAGIC, WF_TOK_MAGIC, 8) != 0) {
        char hex[17];
        for (int i = 0; i < 8; i++)
            snprintf(hex + 2 * i, 3, "%02x", h[i]);
        return wf_error(WF_ERR_CORRUPT, "%s: bad magic %s at offset 0, expected \"%s\" (a weft token file)", path, hex,
                        WF_TOK_MAGIC);
    }
    uint32_t ver = le32(h + H_VERSION), b = le32(h + H_ID_BYTES), vocab = le32(h + H_VOCAB), pad = le32(h + H_PAD);
    if (ver != WF_TOK_VERSION)
        return wf_error(WF_ERR_CORRUPT, "%s: version %" PRIu32 " at offset %d, expected %d", path, ver, H_VERSION,
                        WF_TOK_VERSION);
    if (b != 2 && b != 4)
        return wf_error(WF_ERR_CORRUPT, "%s: %" PRIu32 " bytes per id at offset %d, expected 2 or 4", path, b,
                        H_ID_BYTES);
    uint32_t vmax = b == 2 ? 65536u : (uint32_t)WF_TOK_MAX_VOCAB;
    if (vocab == 0 || vocab > vmax)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: vocab size %" PRIu32 " at offset %d, expected 1..%" PRIu32 " for %" PRIu32 "-byte ids",
                        path, vocab, H_VOCAB, vmax, b);
    if (pad >= vocab)
        return wf_error(WF_ERR_CORRUPT, "%s: pad id %" PRIu32 " at offset %d is not below the vocab size %" PRIu32,
                        path, pad, H_PAD, vocab);
    uint64_t res = le64(h + H_RESERVED);
    if (res != 0)
        return wf_error(WF_ERR_CORRUPT, "%s: reserved field at offset %d is %" PRIu64 ", expected 0", path, H_RESERVED,
                        res);
    uint64_t n_seq = le64(h + H_N_SEQ), n_tok = le64(h + H_N_TOK), table, ids_off, idb, want;
    /* the offset table: 8 * (n_seq + 1) bytes after the header */
    if (__builtin_add_overflow(n_seq, 1, &table) || __builtin_mul_overflow(table, 8, &table) ||
        __builtin_add_overflow(table, WF_TOK_HEADER_BYTES, &ids_off) || ids_off > size)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: %" PRIu64 " sequences (the count at offset %d) need an offset table of "
                        "8 x %" PRIu64 " + 8 bytes at offset %d, the file has %" PRIu64 " bytes",
                        path, n_seq, H_N_SEQ, n_seq, WF_TOK_HEADER_BYTES, size);
    if (__builtin_mul_overflow(n_tok, (uint64_t)b, &idb) || __builtin_add_overflow(ids_off, idb, &want) ||
        want > size) {
        uint64_t k = (size - ids_off) / b;
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: %" PRIu64 " tokens (the count at offset %d) of %" PRIu32
                        " bytes from offset %" PRIu64 ", the file has %" PRIu64 " bytes; token %" PRIu64
                        " at offset %" PRIu64 " is the first missing",
                        path, n_tok, H_N_TOK, b, ids_off, size, k, ids_off + k * b);
    }
    if (size > want)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: %" PRIu64 " bytes of trailing data after the %" PRIu64 " bytes the header promises", path,
                        size - want, want);
    t->id_bytes = (int)b;
    t->vocab = vocab;
    t->pad = pad;
    t->n_seq = n_seq;
    t->n_tok = n_tok;
    t->ids_off = ids_off;
    return WF_OK;
}

/* The streaming pass: hashes the file, checks every offset and every id,
 * keeps the offsets when keep is set. */
static int check_body(struct wf_tokstore *t, uint8_t sha[32], uint64_t *nbytes, int keep) {
    const char *path = t->path;
    uint64_t total = t->ids_off + t->n_tok * (uint64_t)t->id_bytes, prev = 0;
    if (keep && !(t->offsets = wf_malloc((size_t)(t->n_seq + 1) * sizeof *t->offsets)))
        return wf_error(WF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " sequence offsets", path, t->n_seq + 1);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = wf_malloc(TOK_CHUNK);
    int rc = WF_OK;
    if (!md || !buf) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory hashing", path);
        goto out;
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    for (uint64_t pos = 0; pos < total;) {
        size_t want = (size_t)WF_MIN((uint64_t)TOK_CHUNK, total - pos), got;
        if ((rc = wf_store_pread(t->fd, path, buf, want, pos, &got))) goto out;
        if (got != want) {
            rc = wf_error(WF_ERR_CORRUPT, "%s: truncated while opening: expected %" PRIu64 " bytes, got %" PRIu64, path,
                          total, pos + got);
            goto out;
        }
        EVP_DigestUpdate(md, buf, got);
        uint64_t end = pos + got;
        /* offset table entries in this chunk */
        uint64_t a = WF_MAX(pos, (uint64_t)WF_TOK_HEADER_BYTES), z = WF_MIN(end, t->ids_off);
        for (uint64_t f = a; f < z; f += 8) {
            uint64_t k = (f - WF_TOK_HEADER_BYTES) / 8, v = le64(buf + (f - pos));
            if (k == 0 && v != 0) {
                rc =
                    wf_error(WF_ERR_CORRUPT,
                             "%s: offset table entry 0 (at offset %" PRIu64 ") is %" PRIu64 ", expected 0", path, f, v);
                goto out;
            }
            if (v < prev) {
                rc = wf_error(WF_ERR_CORRUPT,
                              "%s: sequence %" PRIu64 " ends at token %" PRIu64 " (offset table entry %" PRIu64
                              " at offset %" PRIu64 "), before it starts (%" PRIu64 ")",
                              path, k - 1, v, k, f, prev);
                goto out;
            }
            if (v > t->n_tok || (k == t->n_seq && v != t->n_tok)) {
                rc = wf_error(WF_ERR_CORRUPT,
                              "%s: offset table entry %" PRIu64 " (at offset %" PRIu64 ") is %" PRIu64 ", %s %" PRIu64
                              " (the token count at offset %d)",
                              path, k, f, v, k == t->n_seq ? "expected" : "past", t->n_tok, H_N_TOK);
                goto out;
            }
            prev = v;
            if (keep) t->offsets[k] = v;
        }
        /* ids in this chunk */
        a = WF_MAX(pos, t->ids_off);
        for (uint64_t f = a; f < end; f += (uint64_t)t->id_bytes) {
            const unsigned char *p = buf + (f - pos);
            uint32_t id = t->id_bytes == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : le32(p);
            if (id >= t->vocab) {
                rc = wf_error(WF_ERR_CORRUPT,
                              "%s: token %" PRIu64 " (at offset %" PRIu64 ") is id %" PRIu32
                              ", not below the vocab size %" PRIu32,
                              path, (f - t->ids_off) / (uint64_t)t->id_bytes, f, id, t->vocab);
                goto out;
            }
        }
        pos = end;
    }
    EVP_DigestFinal_ex(md, sha, NULL);
    *nbytes = total;
out:
    EVP_MD_CTX_free(md);
    wf_free(buf);
    return rc;
}

/* labels = class: DIR/classes.txt and DIR/<split>.cls, checked whole
 * against the token file (its sequence count and digest, tok_sha) and the
 * class list; keeps the class ids. *c = the class count; cls_sha = the
 * class file's SHA-256. */
static int open_classes(struct wf_tokstore *t, const char *dir, const char *split, const uint8_t tok_sha[32],
                        uint32_t *c, uint8_t cls_sha[32], uint64_t *nbytes) {
    char lpath[4096];
    if ((size_t)snprintf(lpath, sizeof lpath, "%s/classes.txt", dir) >= sizeof lpath)
        return wf_error(WF_ERR_INVALID, "%s: dataset path too long", dir);
    int n_classes, rc = wf_classes_read_header(lpath, &n_classes);
    if (rc) return rc;
    size_t cap = strlen(dir) + strlen(split) + 8;
    if (!(t->cls_path = wf_malloc(cap))) return wf_error(WF_ERR_NOMEM, "%s: out of memory", dir);
    snprintf(t->cls_path, cap, "%s/%s.cls", dir, split);
    const char *path = t->cls_path;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    unsigned char h[WF_CLS_HEADER_BYTES], *buf = NULL;
    size_t got;
    struct wf_cls_want want = {.n_seq = t->n_seq,
                               .tok_sha = tok_sha,
                               .tok_path = t->path,
                               .n_classes = (uint32_t)n_classes,
                               .classes_path = lpath};
    if (fstat(fd, &st) != 0) {
        rc = wf_error(WF_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    /* the header against the file's size first: the body is then exactly 4 bytes a sequence of the token file */
    if ((rc = wf_store_pread(fd, path, h, sizeof h, 0, &got))) goto out;
    if ((rc = wf_cls_check_header(path, h, got < sizeof h ? (uint64_t)got : (uint64_t)st.st_size, &want, NULL, NULL)))
        goto out;
    size_t size = (size_t)st.st_size;
    if (!(buf = wf_malloc(size))) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory for %zu bytes", path, size);
        goto out;
    }
    if ((rc = wf_store_pread(fd, path, buf, size, 0, &got))) goto out;
    if (got != size) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: truncated while opening: expected %zu bytes, got %zu", path, size, got);
        goto out;
    }
    if ((rc = wf_cls_decode(path, buf, size, &want, c, NULL, &t->cls))) goto out;
    wf_tok_digest(buf, size, cls_sha);
    *nbytes += size;
out:
    wf_free(buf);
    close(fd);
    return rc;
}

int wf_tokstore_open(struct wf_tokstore **out, const char *dir, const char *split, const struct wf_sample_opts *o,
                     struct wf_store_info *info) {
    *out = NULL;
    struct wf_sample_opts so;
    int rc = check_opts(o, &so);
    if (rc) return rc;
    if (strcmp(split, "train") && strcmp(split, "test"))
        return wf_error(WF_ERR_INVALID, "dataset split '%s': expected 'train' or 'test'", split);
    char vpath[4096];
    if ((size_t)snprintf(vpath, sizeof vpath, "%s/vocab.txt", dir) >= sizeof vpath)
        return wf_error(WF_ERR_INVALID, "%s: dataset path too long", dir);
    int vkind, vn, vpad;
    if ((rc = wf_vocab_read_header(vpath, &vkind, &vn, &vpad))) return rc;

    struct wf_tokstore *t = wf_calloc(1, sizeof *t);
    if (!t) return wf_error(WF_ERR_NOMEM, "%s: out of memory", dir);
    t->fd = -1;
    t->o = so;
    atomic_init(&t->nread, 0);
    size_t cap = strlen(dir) + strlen(split) + 8;
    if (!(t->path = wf_malloc(cap))) {
        wf_free(t);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory", dir);
    }
    snprintf(t->path, cap, "%s/%s.tok", dir, split);
    struct stat st;
    unsigned char h[WF_TOK_HEADER_BYTES];
    size_t got;
    uint8_t sha[32];
    uint64_t nb = 0;
    if ((t->fd = open(t->path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot open: %s", t->path, strerror(errno));
        goto fail;
    }
    if (fstat(t->fd, &st) != 0) {
        rc = wf_error(WF_ERR_IO, "%s: cannot stat: %s", t->path, strerror(errno));
        goto fail;
    }
    if ((rc = wf_store_pread(t->fd, t->path, h, sizeof h, 0, &got))) goto fail;
    if (got < sizeof h) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: truncated: expected a %d-byte header, the file has %zu bytes", t->path,
                      WF_TOK_HEADER_BYTES, got);
        goto fail;
    }
    if ((rc = check_header(t, h, (uint64_t)st.st_size))) goto fail;
    if (t->vocab != (uint32_t)vn || t->pad != (uint32_t)vpad) {
        rc = wf_error(WF_ERR_CORRUPT,
                      "%s: vocab size %" PRIu32 " and pad id %" PRIu32 " differ from %s's (%d ids, pad %d)", t->path,
                      t->vocab, t->pad, vpath, vn, vpad);
        goto fail;
    }
    if ((rc = check_body(t, sha, &nb, so.sample == WF_SAMPLE_SEQUENCE))) goto fail;
    uint32_t n_classes = 0;
    if (so.labels == WF_LABELS_CLASS) {
        /* the digest covers the labels too, as an IDX pair's: SHA-256 of (the .tok's, the .cls's) */
        uint8_t both[64];
        memcpy(both, sha, 32);
        if ((rc = open_classes(t, dir, split, sha, &n_classes, both + 32, &nb))) goto fail;
        wf_tok_digest(both, sizeof both, sha);
    }
    info->open_bytes += nb;

    uint64_t T = (uint64_t)so.seq_len, n;
    if (so.sample == WF_SAMPLE_WINDOW) {
        if (t->n_tok < T + 1) {
            rc = wf_error(WF_ERR_RANGE,
                          "%s: %" PRIu64 " tokens: a window of seq_len %d needs at least %" PRIu64
                          " (the window and the token after it)",
                          t->path, t->n_tok, so.seq_len, T + 1);
            goto fail;
        }
        n = (t->n_tok - T - 1) / (uint64_t)so.stride + 1;
    } else {
        n = t->n_seq;
    }
    if (n == 0 || n > INT_MAX) {
        rc = wf_error(WF_ERR_RANGE, "%s: %" PRIu64 " samples, expected 1..%d%s", t->path, n, INT_MAX,
                      n ? " (raise stride)" : "");
        goto fail;
    }
    t->n = (uint32_t)n;

    info->n = (int)n;
    info->c = 1;
    info->h = 1;
    info->w = so.seq_len;
    info->n_classes = so.labels == WF_LABELS_CLASS ? (int)n_classes : (int)t->vocab;
    memcpy(info->digest, sha, 32);
    for (int i = 0; i < 32; i++)
        snprintf(info->digest_hex + 2 * i, 3, "%02x", sha[i]);
    info->image_path = info->label_path = t->path;
    if (t->cls_path) info->label_path = t->cls_path;
    info->stage = WF_STAGE_NONE;
    info->kind = WF_STORE_TOKENS;
    info->x_dtype = WF_I32;
    info->x_per = so.seq_len;
    info->y_per = so.labels == WF_LABELS_SHIFTED ? so.seq_len : 1; /* next, class: one */
    info->has_len = so.sample == WF_SAMPLE_SEQUENCE;
    info->vocab = (int)t->vocab;
    info->pad_id = (int)t->pad;
    info->sample = so;
    info->id_bytes = t->id_bytes;
    info->n_seqs = (int64_t)t->n_seq;
    info->n_tokens = (int64_t)t->n_tok;
    *out = t;
    return WF_OK;
fail:
    wf_tokstore_free(t);
    return rc;
}

/* Reads k ids from token index `tok` into dst (int32), widening in place. */
static int read_ids(struct wf_tokstore *t, uint32_t sample, uint64_t tok, uint64_t k, int32_t *dst, uint64_t *nb) {
    if (k == 0) return WF_OK;
    size_t bytes = (size_t)k * (size_t)t->id_bytes, got;
    uint64_t off = t->ids_off + tok * (uint64_t)t->id_bytes;
    int rc = wf_store_pread(t->fd, t->path, dst, bytes, off, &got);
    atomic_fetch_add(&t->nread, got);
    *nb += got;
    if (rc) return wf_error_prefix(rc, "sample %" PRIu32, sample);
    if (got != bytes)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: sample %" PRIu32 " at offset %" PRIu64 " expects %zu bytes, read %zu", t->path,
                        sample, off, bytes, got);
    const unsigned char *p = (const unsigned char *)dst;
    /* from the back: id j's bytes sit at or before where int32 j goes */
    for (uint64_t j = k; j-- > 0;) {
        const unsigned char *q = p + j * (uint64_t)t->id_bytes;
        uint32_t v = t->id_bytes == 2 ? (uint32_t)q[0] | (uint32_t)q[1] << 8 : le32(q);
        if (v >= t->vocab)
            return wf_error(WF_ERR_CORRUPT,
                            "%s: sample %" PRIu32 ": token %" PRIu64 " (at offset %" PRIu64 ") is id %" PRIu32
                            ", not below the vocab size %" PRIu32 " (the file changed after open)",
                            t->path, sample, tok + j, off + j * (uint64_t)t->id_bytes, v, t->vocab);
        dst[j] = (int32_t)v;
    }
    return WF_OK;
}

int wf_tokstore_read(struct wf_tokstore *t, uint32_t id, int32_t *x, int32_t *y, int32_t *len, uint64_t *nbytes) {
    uint64_t nb_local, *nb = nbytes ? nbytes : &nb_local;
    *nb = 0;
    if (id >= t->n)
        return wf_error(WF_ERR_RANGE, "%s: sample id %" PRIu32 " out of range (%" PRIu32 " samples)", t->path, id,
                        t->n);
    int T = t->o.seq_len, rc;
    int32_t after; /* the token after the last one in x */
    if (t->o.sample == WF_SAMPLE_WINDOW) {
        uint64_t start = (uint64_t)id * (uint64_t)t->o.stride;
        if ((rc = read_ids(t, id, start, (uint64_t)T, x, nb)) ||
            (rc = read_ids(t, id, start + (uint64_t)T, 1, &after, nb)))
            return rc;
        if (t->o.labels == WF_LABELS_NEXT) {
            y[0] = after;
        } else {
            memcpy(y, x + 1, sizeof(int32_t) * (size_t)(T - 1));
            y[T - 1] = after;
        }
        if (len) *len = T;
        return WF_OK;
    }
    uint64_t lo = t->offsets[id], n = t->offsets[id + 1] - lo;
    int L = n < (uint64_t)T ? (int)n : T;
    if ((rc = read_ids(t, id, lo, (uint64_t)L, x, nb))) return rc;
    after = (int32_t)t->pad;
    if (n > (uint64_t)T && !t->cls && (rc = read_ids(t, id, lo + (uint64_t)T, 1, &after, nb))) return rc;
    for (int k = L; k < T; k++)
        x[k] = (int32_t)t->pad;
    if (len) *len = L;
    if (t->cls) { /* labels = class: checked below the class count at open, held in memory */
        y[0] = t->cls[id];
        return WF_OK;
    }
    if (L > 0) memcpy(y, x + 1, sizeof(int32_t) * (size_t)(L - 1));
    if (L > 0) y[L - 1] = after;
    for (int k = L; k < T; k++)
        y[k] = (int32_t)t->pad;
    return WF_OK;
}
