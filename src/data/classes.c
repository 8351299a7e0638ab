/*
 * data layer: class labels of a token dataset (docs/formats.md, "Class
 * labels"): the class file <split>.cls, one class id per sequence of the
 * split's token file, and the class list classes.txt. The token store
 * (tokens.c) reads them for labels = class.
 *
 * A class file names the token file it labels by its SHA-256 and carries
 * its sequence count, so a class file left over from another tokenization
 * is refused rather than read as labels of the wrong sequences. Everything
 * is checked against the file's length before anything is allocated.
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "weft/core.h"
#include "weft/lex.h"
#include "weft/loader.h"

#include "tokens_int.h"

#define CLASSES_MAX_BYTES ((off_t)64 << 20)

/* Header fields, by offset (docs/formats.md). */
enum {
    H_MAGIC = 0,
    H_VERSION = 8,
    H_CLASSES = 12,
    H_N_SEQ = 16,
    H_TOK_SHA = 24,
    H_RESERVED = 56,
};

static void hex(const unsigned char *p, int n, char *out) {
    for (int i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", p[i]);
}

void wf_tok_digest(const void *buf, size_t len, uint8_t sha[32]) {
    EVP_Digest(buf, len, sha, NULL, EVP_sha256(), NULL);
}

/* ---- class file ---- */

int wf_cls_encode(const uint8_t tok_sha[32], uint32_t n_classes, const int32_t *cls, uint64_t n, void **buf,
                  size_t *len) {
    *buf = NULL;
    *len = 0;
    if (n_classes == 0 || n_classes > WF_CLS_MAX_CLASSES)
        return wf_error(WF_ERR_INVALID, "class file: %" PRIu32 " classes, expected 1..%d", n_classes,
                        WF_CLS_MAX_CLASSES);
    for (uint64_t k = 0; k < n; k++)
        if (cls[k] < 0 || (uint32_t)cls[k] >= n_classes)
            return wf_error(WF_ERR_INVALID,
                            "class file: sequence %" PRIu64 " has class %" PRId32 ", expected 0..%" PRIu32, k, cls[k],
                            n_classes - 1);
    uint64_t total;
    if (__builtin_mul_overflow(n, 4, &total) || __builtin_add_overflow(total, WF_CLS_HEADER_BYTES, &total) ||
        total > SIZE_MAX)
        return wf_error(WF_ERR_RANGE, "class file: %" PRIu64 " sequences overflow a size", n);
    unsigned char *p = wf_malloc((size_t)total);
    if (!p) return wf_error(WF_ERR_NOMEM, "class file: out of memory for %" PRIu64 " bytes", total);
    memset(p, 0, WF_CLS_HEADER_BYTES);
    memcpy(p + H_MAGIC, WF_CLS_MAGIC, 8);
    put32(p + H_VERSION, WF_CLS_VERSION);
    put32(p + H_CLASSES, n_classes);
    put64(p + H_N_SEQ, n);
    memcpy(p + H_TOK_SHA, tok_sha, 32);
    for (uint64_t k = 0; k < n; k++)
        put32(p + WF_CLS_HEADER_BYTES + 4 * k, (uint32_t)cls[k]);
    *buf = p;
    *len = (size_t)total;
    return WF_OK;
}

int wf_cls_write(const char *path, const uint8_t tok_sha[32], uint32_t n_classes, const int32_t *cls, uint64_t n) {
    void *buf;
    size_t len;
    int rc = wf_cls_encode(tok_sha, n_classes, cls, n, &buf, &len);
    if (rc) return wf_error_prefix(rc, "%s", path);
    rc = wf_write_file_atomic(path, buf, len);
    wf_free(buf);
    return rc;
}

int wf_cls_check_header(const char *path, const unsigned char *h, uint64_t size, const struct wf_cls_want *want,
                        uint32_t *n_classes, uint64_t *n) {
    static const struct wf_cls_want none = {.n_seq = UINT64_MAX};
    const struct wf_cls_want *w = want ? want : &none;
    if (size < WF_CLS_HEADER_BYTES)
        return wf_error(WF_ERR_CORRUPT, "%s: truncated: expected a %d-byte header, the file has %" PRIu64 " bytes",
                        path, WF_CLS_HEADER_BYTES, size);
    if (memcmp(h + H_MAGIC, WF_CLS_MAGIC, 8) != 0) {
        char m[17];
        hex(h, 8, m);
        return wf_error(WF_ERR_CORRUPT, "%s: bad magic %s at offset 0, expected \"%s\" (a weft class file)", path, m,
                        WF_CLS_MAGIC);
    }
    uint32_t ver = le32(h + H_VERSION), c = le32(h + H_CLASSES);
    if (ver != WF_CLS_VERSION)
        return wf_error(WF_ERR_CORRUPT, "%s: version %" PRIu32 " at offset %d, expected %d", path, ver, H_VERSION,
                        WF_CLS_VERSION);
    if (c == 0 || c > WF_CLS_MAX_CLASSES)
        return wf_error(WF_ERR_CORRUPT, "%s: class count %" PRIu32 " at offset %d, expected 1..%d", path, c, H_CLASSES,
                        WF_CLS_MAX_CLASSES);
    if (w->n_classes && c != w->n_classes)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: class count %" PRIu32 " at offset %d differs from %s's (%" PRIu32 " classes)", path, c,
                        H_CLASSES, w->classes_path ? w->classes_path : "the class list", w->n_classes);
    uint64_t ns = le64(h + H_N_SEQ);
    if (w->n_seq != UINT64_MAX && ns != w->n_seq)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: sequence count %" PRIu64 " at offset %d differs from %s's (%" PRIu64 " sequences)", path,
                        ns, H_N_SEQ, w->tok_path ? w->tok_path : "the token file", w->n_seq);
    if (w->tok_sha && memcmp(h + H_TOK_SHA, w->tok_sha, 32) != 0) {
        char got[65], exp[65];
        hex(h + H_TOK_SHA, 32, got);
        hex(w->tok_sha, 32, exp);
        return wf_error(WF_ERR_CORRUPT,
                        "%s: token file digest %s at offset %d is not %s's (%s): these labels are another "
                        "tokenization's",
                        path, got, H_TOK_SHA, w->tok_path ? w->tok_path : "the token file", exp);
    }
    uint64_t res = le64(h + H_RESERVED);
    if (res != 0)
        return wf_error(WF_ERR_CORRUPT, "%s: reserved field at offset %d is %" PRIu64 ", expected 0", path, H_RESERVED,
                        res);
    uint64_t want_size;
    if (__builtin_mul_overflow(ns, 4, &want_size) ||
        __builtin_add_overflow(want_size, WF_CLS_HEADER_BYTES, &want_size) || want_size > size) {
        uint64_t k = (size - WF_CLS_HEADER_BYTES) / 4;
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: %" PRIu64 " class ids (the count at offset %d) of 4 bytes from offset %d, the "
                        "file has %" PRIu64 " bytes; id %" PRIu64 " at offset %" PRIu64 " is the first missing",
                        path, ns, H_N_SEQ, WF_CLS_HEADER_BYTES, size, k, WF_CLS_HEADER_BYTES + 4 * k);
    }
    if (size > want_size)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: %" PRIu64 " bytes of trailing data after the %" PRIu64 " bytes the header promises", path,
                        size - want_size, want_size);
    if (n_classes) *n_classes = c;
    if (n) *n = ns;
    return WF_OK;
}

int wf_cls_decode(const char *path, const void *buf, size_t len, const struct wf_cls_want *want, uint32_t *n_classes,
                  uint64_t *n, int32_t **ids) {
    if (ids) *ids = NULL;
    const unsigned char *p = buf;
    uint32_t c;
    uint64_t ns;
    int rc = wf_cls_check_header(path, p, len, want, &c, &ns);
    if (rc) return rc;
    /* the header check made len = header + 4 * ns: the array is backed by the buffer */
    int32_t *out = NULL;
    if (ids && !(out = wf_malloc((size_t)(ns ? ns : 1) * sizeof *out)))
        return wf_error(WF_ERR_NOMEM, "%s: out of memory for %" PRIu64 " class ids", path, ns);
    for (uint64_t k = 0; k < ns; k++) {
        uint64_t off = WF_CLS_HEADER_BYTES + 4 * k;
        uint32_t v = le32(p + off);
        if (v >= c) {
            wf_free(out);
            return wf_error(WF_ERR_CORRUPT,
                            "%s: sequence %" PRIu64 " (at offset %" PRIu64 ") has class id %" PRIu32
                            ", not below the class count %" PRIu32,
                            path, k, off, v, c);
        }
        if (out) out[k] = (int32_t)v;
    }
    if (n_classes) *n_classes = c;
    if (n) *n = ns;
    if (ids) *ids = out;
    return WF_OK;
}

/* ---- class list ---- */

static int name_ok(const char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

int wf_classes_write(const char *path, const char *const *names, int n) {
    if (n <= 0) return wf_error(WF_ERR_INVALID, "%s: %d classes, expected at least 1", path, n);
    struct wf_textbuf b = {0};
    wf_textbuf_printf(&b, "weft-classes 1 files %d\n", n);
    for (int k = 0; k < n; k++) {
        if (!name_ok(names[k], strlen(names[k]))) {
            wf_free(b.p);
            return wf_error(WF_ERR_INVALID, "%s: class %d's name '%s' is empty or holds a control character", path, k,
                            names[k]);
        }
        wf_textbuf_printf(&b, "%d %s\n", k, names[k]);
    }
    char *text;
    size_t len;
    int rc = wf_textbuf_take(&b, &text, &len);
    if (rc) return wf_error_prefix(rc, "%s", path);
    rc = wf_write_file_atomic(path, text, len);
    wf_free(text);
    return rc;
}

int wf_classes_read_header(const char *path, int *n) {
    struct stat st;
    if (stat(path, &st) != 0)
        return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (st.st_size > CLASSES_MAX_BYTES)
        return wf_error(WF_ERR_CORRUPT, "%s: %lld bytes, more than a class list may hold (%lld)", path,
                        (long long)st.st_size, (long long)CLASSES_MAX_BYTES);
    char *text;
    size_t len;
    int rc = wf_read_file(path, &text, &len);
    if (rc) return rc;
    int consumed = 0;
    char kw[16];
    int ver = 0;
    if (sscanf(text, "weft-classes %d %15s %d%n", &ver, kw, n, &consumed) != 3 || ver != 1 || strcmp(kw, "files") ||
        text[consumed] != '\n' || *n <= 0) {
        wf_free(text);
        return wf_error(WF_ERR_CORRUPT, "%s:1: expected 'weft-classes 1 files C' with C >= 1", path);
    }
    /* one line per class, "ID NAME", ids in order */
    const char *p = text + consumed + 1, *end = text + len;
    for (long k = 0; k < *n; k++) {
        char *e;
        long id = p < end && *p >= '0' && *p <= '9' ? strtol(p, &e, 10) : -1;
        const char *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        if (id != k || *e != ' ' || !nl || !name_ok(e + 1, (size_t)(nl - (e + 1)))) {
            wf_free(text);
            return wf_error(WF_ERR_CORRUPT,
                            "%s:%ld: expected the line 'ID NAME' of class %ld (the header promises %d classes)", path,
                            k + 2, k, *n);
        }
        p = nl + 1;
    }
    if (p != end) {
        wf_free(text);
        return wf_error(WF_ERR_CORRUPT, "%s:%d: data after the %d classes the header promises", path, *n + 2, *n);
    }
    wf_free(text);
    return WF_OK;
}
