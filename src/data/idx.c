/*
 * data layer: the IDX file format of MNIST and Fashion-MNIST (docs/formats.md),
 * plain or gzip-compressed (zlib reads both). The header is validated and the
 * file must hold exactly the bytes it promises; buffers grow with the data
 * actually read, so a header that lies about its size cannot make us
 * allocate more than the file holds (plus one growth step).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <zlib.h>

#include "weft/core.h"
#include "weft/data.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned bytes, 1 dimension */
#define IDX_MAX_N 100000000u         /* samples */
#define IDX_MAX_SIDE 4096u           /* rows, cols */
#define IDX_CHUNK ((size_t)1 << 20)  /* first allocation and largest single read */

struct idx_file {
    const char *path;
    gzFile gz;
};

/* The message of the last zlib error, without the "path: " prefix zlib adds. */
static const char *gz_msg(struct idx_file *f, int *zerr) {
    const char *m = gzerror(f->gz, zerr);
    size_t n = strlen(f->path);
    if (m && !strncmp(m, f->path, n) && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
    return m ? m : "";
}

static int idx_open(struct idx_file *f, const char *path) {
    f->path = path;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz) {
        if (errno == ENOENT) return wf_error(WF_ERR_NOTFOUND, "%s: no such file", path);
        if (errno == ENOMEM || errno == 0) return wf_error(WF_ERR_NOMEM, "%s: out of memory opening", path);
        return wf_error(WF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    gzbuffer(f->gz, 1 << 17);
    return WF_OK;
}

/* Reads up to n bytes; *got is how many arrived. Returns an error only for a
 * failed read or a corrupt stream: a short count at end of file is left to
 * the caller, who knows what was expected. */
static int idx_read(struct idx_file *f, void *buf, size_t n, size_t *got) {
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = WF_MIN(n - *got, IDX_CHUNK);
        int r = gzread(f->gz, p + *got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *m = gz_msg(f, &zerr);
            if (zerr == Z_ERRNO) return wf_error(WF_ERR_IO, "%s: read failed: %s", f->path, strerror(errno));
            if (zerr == Z_MEM_ERROR) return wf_error(WF_ERR_NOMEM, "%s: out of memory decompressing", f->path);
            return wf_error(WF_ERR_CORRUPT, "%s: corrupt gzip stream: %s", f->path, m);
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    if (*got < n) {
        int zerr;
        gz_msg(f, &zerr);
        if (zerr != Z_OK && zerr != Z_BUF_ERROR) /* Z_BUF_ERROR: stream cut short, reported by the caller */
            return wf_error(WF_ERR_CORRUPT, "%s: corrupt gzip stream: %s", f->path, gz_msg(f, &zerr));
    }
    return WF_OK;
}

/* Note appended to a "truncated" message when the gzip stream itself ended early. */
static const char *gz_cut_note(struct idx_file *f) {
    int zerr;
    gz_msg(f, &zerr);
    return zerr == Z_BUF_ERROR ? " (gzip stream ends early)" : "";
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads the magic and the dimensions of an IDX file of `ndim` dimensions. */
static int idx_header(struct idx_file *f, uint32_t magic, int ndim, uint32_t *dims) {
    unsigned char h[16];
    size_t need = 4 + 4 * (size_t)ndim, got;
    int rc = idx_read(f, h, need, &got);
    if (rc) return rc;
    const char *kind = magic == IDX_MAGIC_IMAGES ? "IDX3 image" : "IDX1 label";
    if (got >= 4 && be32(h) != magic) {
        uint32_t m = be32(h);
        const char *hint = m == IDX_MAGIC_IMAGES   ? " (this is an image file)"
                           : m == IDX_MAGIC_LABELS ? " (this is a label file)"
                                                   : "";
        return wf_error(WF_ERR_CORRUPT, "%s: bad magic 0x%08" PRIx32 ", expected 0x%08" PRIx32 " for an %s file%s",
                        f->path, m, magic, kind, hint);
    }
    if (got < need)
        return wf_error(WF_ERR_CORRUPT, "%s: truncated: expected a %zu-byte %s header, got %zu bytes%s", f->path, need,
                        kind, got, gz_cut_note(f));
    for (int i = 0; i < ndim; i++)
        dims[i] = be32(h + 4 + 4 * i);
    if (dims[0] > IDX_MAX_N)
        return wf_error(WF_ERR_CORRUPT, "%s: %" PRIu32 " samples exceeds the limit of %u", f->path, dims[0], IDX_MAX_N);
    for (int i = 1; i < ndim; i++)
        if (dims[i] == 0 || dims[i] > IDX_MAX_SIDE)
            return wf_error(WF_ERR_CORRUPT, "%s: image dimension %d is %" PRIu32 ", expected 1..%u", f->path, i,
                            dims[i], IDX_MAX_SIDE);
    return WF_OK;
}

/* Reads exactly `size` bytes of payload into a new buffer and checks that the
 * file ends there. The buffer grows as data arrives. */
static int idx_payload(struct idx_file *f, size_t size, const char *what, uint8_t **out) {
    *out = NULL;
    size_t cap = WF_MIN(size, IDX_CHUNK), have = 0;
    uint8_t *buf = wf_malloc(cap);
    if (!buf) return wf_error(WF_ERR_NOMEM, "%s: out of memory", f->path);
    for (;;) {
        size_t got;
        int rc = idx_read(f, buf + have, cap - have, &got);
        if (rc) {
            wf_free(buf);
            return rc;
        }
        have += got;
        if (have < cap) {
            rc = wf_error(WF_ERR_CORRUPT, "%s: truncated: expected %zu bytes of %s, got %zu%s", f->path, size, what,
                          have, gz_cut_note(f));
            wf_free(buf);
            return rc;
        }
        if (have == size) break;
        size_t ncap = cap > size / 2 ? size : 2 * cap;
        uint8_t *nb = wf_realloc(buf, ncap);
        if (!nb) {
            wf_free(buf);
            return wf_error(WF_ERR_NOMEM, "%s: out of memory (%zu bytes of %s)", f->path, size, what);
        }
        buf = nb;
        cap = ncap;
    }
    unsigned char extra[64];
    size_t got;
    int rc = idx_read(f, extra, sizeof extra, &got);
    if (rc == WF_OK && got > 0)
        rc = wf_error(WF_ERR_CORRUPT, "%s: trailing data after the %zu bytes of %s the header promises", f->path, size,
                      what);
    if (rc == WF_OK && gz_cut_note(f)[0]) /* all data there, but the gzip trailer (CRC, length) is missing */
        rc = wf_error(WF_ERR_CORRUPT, "%s: truncated: gzip stream ends early after the %zu bytes of %s", f->path, size,
                      what);
    if (rc) {
        wf_free(buf);
        return rc;
    }
    *out = buf;
    return WF_OK;
}

int wf_idx_read_images(const char *path, uint8_t **data, int *n, int *rows, int *cols) {
    *data = NULL;
    *n = *rows = *cols = 0;
    struct idx_file f;
    int rc = idx_open(&f, path);
    if (rc) return rc;
    uint32_t dims[3] = {0, 0, 0};
    rc = idx_header(&f, IDX_MAGIC_IMAGES, 3, dims);
    if (rc == WF_OK) {
        uint64_t size = (uint64_t)dims[0] * dims[1] * dims[2]; /* <= 1e8 * 4096^2 < 2^51 */
        if (size > SIZE_MAX)
            rc = wf_error(WF_ERR_RANGE, "%s: %" PRIu64 " bytes of image data", path, size);
        else
            rc = idx_payload(&f, (size_t)size, "image data", data);
    }
    gzclose(f.gz);
    if (rc) return rc;
    *n = (int)dims[0];
    *rows = (int)dims[1];
    *cols = (int)dims[2];
    return WF_OK;
}

int wf_idx_read_labels(const char *path, uint8_t **labels, int *n) {
    *labels = NULL;
    *n = 0;
    struct idx_file f;
    int rc = idx_open(&f, path);
    if (rc) return rc;
    uint32_t dims[1] = {0};
    rc = idx_header(&f, IDX_MAGIC_LABELS, 1, dims);
    if (rc == WF_OK) rc = idx_payload(&f, dims[0], "label data", labels);
    gzclose(f.gz);
    if (rc) return rc;
    *n = (int)dims[0];
    return WF_OK;
}
