/*
 * data layer: the per-sample store. Samples are read one at a time by id
 * with pread from an uncompressed IDX pair, every byte counted, so the
 * cache's effect on storage traffic is measured, not assumed.
 *
 * A .gz source is decompressed once into a staging folder and reused on
 * later opens; that one-time conversion is reported apart from the
 * per-sample reads. The staged copy sits beside a small text file:
 *
 *   LINE            MEANING
 *   weft-stage 1    format version
 *   source_size N   size of the .gz it came from, in bytes
 *   source_mtime S  its modification time, seconds.nanoseconds
 *   size N          size of the staged (uncompressed) file, in bytes
 *   sha256 HEX      SHA-256 of the staged file
 *
 * The staged copy is reused only when the source's size and mtime, the
 * staged size and its SHA-256 (recomputed) all match.
 *
 * Staging trusts nothing in the .gz: the IDX header is decompressed and
 * checked first, and exactly the size it implies is written, so a small
 * .gz that inflates to gigabytes (a gzip bomb) costs one header's worth of
 * disk before it is refused. A failed staging removes what it wrote.
 *
 * A folder holding train.tok is a token dataset: wf_store_open_opts hands
 * it to tokens.c, and the wf_store_* calls dispatch on s->tok.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "tokens_int.h"
#include "weft/core.h"
#include "weft/loader.h"
#include "weft/safetensors.h"

#define IDX_MAGIC_IMAGES 0x00000803u
#define IDX_MAGIC_LABELS 0x00000801u
#define IDX_MAX_N 100000000u
#define IDX_MAX_SIDE 4096u
#define IO_CHUNK ((size_t)1 << 20)
/* Deflate's best case: a 258-byte match in 2 bits. No gzip stream of S
 * bytes inflates to more than this many times S (stored or transparent
 * data: 1x). */
#define GZ_MAX_RATIO 1032u

struct store_file {
    char *path;      /* the uncompressed file read per sample */
    int fd;          /* open on path, -1 when closed */
    uint8_t sha[32]; /* SHA-256 of the whole file */
};

struct wf_store {
    struct wf_tokstore *tok; /* a token dataset, or NULL for IDX */
    struct store_file img, lbl;
    size_t sample_bytes; /* c*h*w */
    atomic_ullong nread; /* bytes read by wf_store_read */
    struct wf_store_info info;
};

static atomic_uint tmp_counter;

static int hex_of(const uint8_t *d, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[2 * n] = 0;
    return 0;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* pread until n bytes or end of file; *got is what arrived. */
int wf_store_pread(int fd, const char *path, void *buf, size_t n, uint64_t off, size_t *got) {
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, (off_t)(off + *got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return wf_error(WF_ERR_IO, "%s: read at offset %" PRIu64 " failed: %s", path, off + *got, strerror(errno));
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return WF_OK;
}

/* SHA-256 of the whole file at fd; *nbytes = its length. */
static int sha_file(int fd, const char *path, uint8_t sha[32], uint64_t *nbytes) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = wf_malloc(IO_CHUNK);
    int rc = WF_OK;
    if (!md || !buf) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory hashing", path);
        goto out;
    }
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        rc = wf_error(WF_ERR_INTERNAL, "%s: SHA-256 unavailable", path);
        goto out;
    }
    uint64_t off = 0;
    for (;;) {
        size_t got;
        if ((rc = wf_store_pread(fd, path, buf, IO_CHUNK, off, &got))) goto out;
        EVP_DigestUpdate(md, buf, got);
        off += got;
        if (got < IO_CHUNK) break;
    }
    EVP_DigestFinal_ex(md, sha, NULL);
    *nbytes = off;
out:
    EVP_MD_CTX_free(md);
    wf_free(buf);
    return rc;
}

struct stage_meta {
    unsigned long long source_size, size;
    long long mtime_s;
    long mtime_ns;
    char sha[65];
};

static int meta_read(const char *path, struct stage_meta *m) {
    char *text = NULL;
    size_t len;
    if (wf_read_file(path, &text, &len)) {
        wf_error_clear();
        return 0;
    }
    int ok = sscanf(text, "weft-stage 1\nsource_size %llu\nsource_mtime %lld.%ld\nsize %llu\nsha256 %64s",
                    &m->source_size, &m->mtime_s, &m->mtime_ns, &m->size, m->sha) == 5;
    wf_free(text);
    return ok && strlen(m->sha) == 64;
}

static size_t idx_header_size(uint32_t magic) { return magic == IDX_MAGIC_IMAGES ? 16 : 8; }
static int idx_header(const char *path, const unsigned char *h, size_t got, uint32_t magic, uint32_t *dims,
                      uint64_t *per, uint64_t *want);

/* gzread until n bytes or the end of the stream; *got is what arrived. */
static int gz_read_full(gzFile gz, const char *src, unsigned char *buf, size_t n, uint64_t at, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t ask = WF_MIN(n - *got, IO_CHUNK);
        int r = gzread(gz, buf + *got, (unsigned)ask);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(gz, &zerr);
            return wf_error(zerr == Z_ERRNO ? WF_ERR_IO : WF_ERR_CORRUPT,
                            "%s: corrupt gzip stream after %" PRIu64 " bytes: %s", src, at + *got,
                            zerr == Z_ERRNO ? strerror(errno) : m);
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return WF_OK;
}

static int write_full(int fd, const char *path, const unsigned char *p, size_t n) {
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return wf_error(WF_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        done += (size_t)w;
    }
    return WF_OK;
}

/* Decompresses the IDX file src (src_size bytes of gzip) into dst (temp
 * name, fsync, rename), hashing as it goes. The header comes first and sets
 * the size: a stream that is longer or shorter is refused, having written no
 * more than the header implies, and the temporary file is removed. */
static int stage_convert(const char *src, uint64_t src_size, uint32_t magic, const char *dst, uint8_t sha[32],
                         uint64_t *written) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", dst, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    int rc = WF_OK, fd = -1;
    gzFile gz = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = wf_malloc(IO_CHUNK);
    if (!md || !buf) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory staging", src);
        goto out;
    }
    errno = 0;
    if (!(gz = gzopen(src, "rb"))) {
        rc = wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot open: %s", src,
                      errno ? strerror(errno) : "out of memory");
        goto out;
    }
    /* The header, checked before anything is written. */
    size_t hdr = idx_header_size(magic), got;
    uint32_t dims[3];
    uint64_t per, want, bound;
    if ((rc = gz_read_full(gz, src, buf, hdr, 0, &got)) || (rc = idx_header(src, buf, got, magic, dims, &per, &want)))
        goto out;
    if (__builtin_mul_overflow(src_size, (uint64_t)GZ_MAX_RATIO, &bound)) bound = UINT64_MAX;
    if (want > bound) {
        rc = wf_error(WF_ERR_CORRUPT,
                      "%s: truncated: the header promises %" PRIu32 " samples (%" PRIu64 " bytes), more than %" PRIu64
                      " bytes of gzip can hold",
                      src, dims[0], want, src_size);
        goto out;
    }
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        rc = wf_error(WF_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, buf, hdr);
    if ((rc = write_full(fd, tmp, buf, hdr))) goto out;
    uint64_t total = hdr;
    while (total < want) {
        size_t ask = (size_t)WF_MIN(want - total, (uint64_t)IO_CHUNK);
        if ((rc = gz_read_full(gz, src, buf, ask, total, &got))) goto out;
        EVP_DigestUpdate(md, buf, got);
        if ((rc = write_full(fd, tmp, buf, got))) goto out;
        total += got;
        if (got < ask) {
            rc = wf_error(WF_ERR_CORRUPT,
                          "%s: truncated: the gzip stream ends after %" PRIu64 " bytes, the header promises %" PRIu32
                          " samples (%" PRIu64 " bytes)",
                          src, total, dims[0], want);
            goto out;
        }
    }
    /* One byte more: there must be none. Reading to the end also checks the
     * gzip trailer (CRC-32 and length). */
    if ((rc = gz_read_full(gz, src, buf, 1, total, &got))) goto out;
    if (got) {
        rc = wf_error(WF_ERR_CORRUPT,
                      "%s: the gzip stream holds more than its header's %" PRIu64 " bytes (%" PRIu32 " samples)", src,
                      want, dims[0]);
        goto out;
    }
    int zerr;
    gzerror(gz, &zerr);
    if (zerr == Z_BUF_ERROR) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: truncated: gzip stream ends early after %" PRIu64 " bytes", src, total);
        goto out;
    }
    if (fsync(fd) != 0) {
        rc = wf_error(WF_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
        goto out;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, dst) != 0) {
        rc = wf_error(WF_ERR_IO, "%s: rename failed: %s", dst, strerror(errno));
        goto out;
    }
    EVP_DigestFinal_ex(md, sha, NULL);
    *written = total;
out:
    if (fd >= 0) close(fd);
    if (rc) unlink(tmp);
    if (gz) gzclose(gz);
    EVP_MD_CTX_free(md);
    wf_free(buf);
    return rc;
}

/* Makes the uncompressed copy of the .gz `src` in stage_dir (or reuses it);
 * sets f->path and f->sha. */
static int stage(struct wf_store *s, struct store_file *f, const char *src, const char *base, const char *stage_dir,
                 uint32_t magic) {
    if (!stage_dir)
        return wf_error(WF_ERR_INVALID, "%s: a compressed dataset needs a staging folder to decompress into", src);
    struct stat sst;
    if (stat(src, &sst) != 0) return wf_error(WF_ERR_IO, "%s: cannot stat: %s", src, strerror(errno));
    char *abs = realpath(src, NULL);
    uint64_t h = wf_hash64(abs ? abs : src, strlen(abs ? abs : src), 0x5354414745ull);
    free(abs);
    int rc = wf_mkdir_p(stage_dir);
    if (rc) return wf_error_prefix(rc, "staging folder");
    size_t cap = strlen(stage_dir) + strlen(base) + 64;
    if (!(f->path = wf_malloc(cap))) return wf_error(WF_ERR_NOMEM, "%s: out of memory", src);
    snprintf(f->path, cap, "%s/%s-%016" PRIx64, stage_dir, base, h);
    char meta_path[4200];
    snprintf(meta_path, sizeof meta_path, "%s.meta", f->path);

    struct stage_meta m;
    struct stat st;
    if (meta_read(meta_path, &m) && m.source_size == (unsigned long long)sst.st_size &&
        m.mtime_s == (long long)sst.st_mtim.tv_sec && m.mtime_ns == sst.st_mtim.tv_nsec && stat(f->path, &st) == 0 &&
        (unsigned long long)st.st_size == m.size) {
        int fd = open(f->path, O_RDONLY | O_CLOEXEC);
        uint64_t nb = 0;
        char hex[65];
        if (fd >= 0 && sha_file(fd, f->path, f->sha, &nb) == WF_OK) {
            s->info.open_bytes += nb;
            hex_of(f->sha, 32, hex);
            if (!strcmp(hex, m.sha)) {
                close(fd);
                if (s->info.stage != WF_STAGE_CONVERTED) s->info.stage = WF_STAGE_REUSED;
                return WF_OK;
            }
            WF_LOGW("data", "%s: staged copy does not match its recorded sha256, staging again", f->path);
        }
        wf_error_clear();
        if (fd >= 0) close(fd);
    }
    double t0 = wf_now();
    uint64_t written = 0;
    if ((rc = stage_convert(src, (uint64_t)sst.st_size, magic, f->path, f->sha, &written))) return rc;
    s->info.stage_bytes += written;
    s->info.stage_s += wf_now() - t0;
    s->info.stage = WF_STAGE_CONVERTED;
    char text[512], hex[65];
    hex_of(f->sha, 32, hex);
    int len =
        snprintf(text, sizeof text, "weft-stage 1\nsource_size %llu\nsource_mtime %lld.%09ld\nsize %llu\nsha256 %s\n",
                 (unsigned long long)sst.st_size, (long long)sst.st_mtim.tv_sec, (long)sst.st_mtim.tv_nsec,
                 (unsigned long long)written, hex);
    if ((rc = wf_write_file_atomic(meta_path, text, (size_t)len))) unlink(f->path); /* no copy without its .meta */
    return rc;
}

/* Checks the got bytes of IDX header at h (magic, dimensions); sets dims
 * (n, and rows, cols for images), *per (bytes a sample) and *want (the file
 * size the header implies). path names the file in messages. */
static int idx_header(const char *path, const unsigned char *h, size_t got, uint32_t magic, uint32_t *dims,
                      uint64_t *per, uint64_t *want) {
    int ndim = magic == IDX_MAGIC_IMAGES ? 3 : 1;
    size_t hdr = idx_header_size(magic);
    const char *kind = ndim == 3 ? "IDX3 image" : "IDX1 label";
    if (got >= 4 && be32(h) != magic)
        return wf_error(WF_ERR_CORRUPT, "%s: bad magic 0x%08" PRIx32 ", expected 0x%08" PRIx32 " for an %s file", path,
                        be32(h), magic, kind);
    if (got < hdr)
        return wf_error(WF_ERR_CORRUPT, "%s: truncated: expected a %zu-byte %s header, got %zu bytes", path, hdr, kind,
                        got);
    for (int i = 0; i < ndim; i++)
        dims[i] = be32(h + 4 + 4 * i);
    if (dims[0] == 0 || dims[0] > IDX_MAX_N)
        return wf_error(WF_ERR_CORRUPT, "%s: %" PRIu32 " samples, expected 1..%u", path, dims[0], IDX_MAX_N);
    *per = 1;
    for (int i = 1; i < ndim; i++) {
        if (dims[i] == 0 || dims[i] > IDX_MAX_SIDE)
            return wf_error(WF_ERR_CORRUPT, "%s: image dimension %d is %" PRIu32 ", expected 1..%u", path, i, dims[i],
                            IDX_MAX_SIDE);
        *per *= dims[i];
    }
    /* The limits keep this below 2^52; checked anyway, should they grow. */
    if (__builtin_mul_overflow(*per, (uint64_t)dims[0], want) || __builtin_add_overflow(*want, hdr, want))
        return wf_error(WF_ERR_CORRUPT, "%s: the header's sizes overflow 64 bits", path);
    return WF_OK;
}

/* Checks magic, dimensions and that the file is exactly as long as its
 * header says. dims: n (and rows, cols for images). */
static int validate(struct store_file *f, uint32_t magic, uint32_t *dims) {
    size_t hdr = idx_header_size(magic), got;
    unsigned char h[16];
    struct stat st;
    if (fstat(f->fd, &st) != 0) return wf_error(WF_ERR_IO, "%s: cannot stat: %s", f->path, strerror(errno));
    int rc = wf_store_pread(f->fd, f->path, h, hdr, 0, &got);
    if (rc) return rc;
    uint64_t per, want;
    if ((rc = idx_header(f->path, h, got, magic, dims, &per, &want))) return rc;
    uint64_t have = (uint64_t)st.st_size;
    if (have < want) {
        uint64_t k = (have - hdr) / per, off = hdr + k * per;
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: the header promises %" PRIu32 " samples (%" PRIu64
                        " bytes), the file has %" PRIu64 " bytes; sample %" PRIu64 " at offset %" PRIu64
                        " expects %" PRIu64 " bytes, has %" PRIu64,
                        f->path, dims[0], want, have, k, off, per, have - off);
    }
    if (have > want)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: %" PRIu64 " bytes of trailing data after the %" PRIu64 " bytes the header promises",
                        f->path, have - want, want);
    return WF_OK;
}

/* Finds DIR/BASE (preferred) or DIR/BASE.gz, stages if needed, opens, validates and digests. */
static int open_file(struct wf_store *s, struct store_file *f, const char *dir, const char *base, const char *stage_dir,
                     uint32_t magic, uint32_t *dims) {
    char plain[4096], gz[4200];
    struct stat st;
    if ((size_t)snprintf(plain, sizeof plain, "%s/%s", dir, base) >= sizeof plain)
        return wf_error(WF_ERR_INVALID, "%s: dataset path too long", dir);
    snprintf(gz, sizeof gz, "%s.gz", plain);
    int rc, hashed = 0;
    if (stat(plain, &st) == 0) {
        if (!(f->path = wf_strdup(plain))) return wf_error(WF_ERR_NOMEM, "%s: out of memory", plain);
    } else if (stat(gz, &st) == 0) {
        if ((rc = stage(s, f, gz, base, stage_dir, magic))) return rc;
        hashed = 1;
    } else {
        return wf_error(WF_ERR_NOTFOUND, "%s: no such file (nor %s.gz)", plain, base);
    }
    if ((f->fd = open(f->path, O_RDONLY | O_CLOEXEC)) < 0)
        return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    if ((rc = validate(f, magic, dims))) {
        if (hashed) { /* useless to anyone: a copy staged by an older weft that did not check the header */
            char meta_path[4200];
            snprintf(meta_path, sizeof meta_path, "%s.meta", f->path);
            unlink(meta_path);
            unlink(f->path);
        }
        return rc;
    }
    if (!hashed) {
        uint64_t nb;
        if ((rc = sha_file(f->fd, f->path, f->sha, &nb))) return rc;
        s->info.open_bytes += nb;
    }
    return WF_OK;
}

void wf_store_free(struct wf_store *s) {
    if (!s) return;
    wf_tokstore_free(s->tok);
    struct store_file *fs[2] = {&s->img, &s->lbl};
    for (int i = 0; i < 2; i++) {
        if (fs[i]->fd >= 0) close(fs[i]->fd);
        wf_free(fs[i]->path);
    }
    wf_free(s);
}

int wf_store_open(struct wf_store **out, const char *dir, const char *split, const char *stage_dir) {
    *out = NULL;
    const char *prefix = !strcmp(split, "train") ? "train" : !strcmp(split, "test") ? "t10k" : NULL;
    if (!prefix) return wf_error(WF_ERR_INVALID, "dataset split '%s': expected 'train' or 'test'", split);
    double t0 = wf_now();
    struct wf_store *s = wf_calloc(1, sizeof *s);
    if (!s) return wf_error(WF_ERR_NOMEM, "%s: out of memory", dir);
    s->img.fd = s->lbl.fd = -1;
    atomic_init(&s->nread, 0);
    char base[64];
    uint32_t idim[3], ldim[1];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    int rc = open_file(s, &s->img, dir, base, stage_dir, IDX_MAGIC_IMAGES, idim);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    if (rc == WF_OK) rc = open_file(s, &s->lbl, dir, base, stage_dir, IDX_MAGIC_LABELS, ldim);
    if (rc == WF_OK && idim[0] != ldim[0])
        rc = wf_error(WF_ERR_CORRUPT, "%s: %" PRIu32 " images but %s has %" PRIu32 " labels", s->img.path, idim[0],
                      s->lbl.path, ldim[0]);
    /* Labels are small: one pass for the class count. */
    if (rc == WF_OK) {
        uint8_t *lb = wf_malloc(ldim[0]);
        size_t got = 0;
        if (!lb)
            rc = wf_error(WF_ERR_NOMEM, "%s: out of memory", s->lbl.path);
        else if ((rc = wf_store_pread(s->lbl.fd, s->lbl.path, lb, ldim[0], 8, &got)) == WF_OK && got != ldim[0])
            rc = wf_error(WF_ERR_CORRUPT, "%s: truncated while opening: expected %" PRIu32 " label bytes, got %zu",
                          s->lbl.path, ldim[0], got);
        int max = 0;
        for (size_t i = 0; rc == WF_OK && i < got; i++)
            max = WF_MAX(max, (int)lb[i]);
        s->info.open_bytes += got;
        s->info.n_classes = max + 1;
        wf_free(lb);
    }
    if (rc) {
        wf_store_free(s);
        return rc;
    }
    s->info.n = (int)idim[0];
    s->info.c = 1;
    s->info.h = (int)idim[1];
    s->info.w = (int)idim[2];
    s->sample_bytes = (size_t)idim[1] * idim[2];
    uint8_t both[64];
    memcpy(both, s->img.sha, 32);
    memcpy(both + 32, s->lbl.sha, 32);
    EVP_Digest(both, sizeof both, s->info.digest, NULL, EVP_sha256(), NULL);
    hex_of(s->info.digest, 32, s->info.digest_hex);
    s->info.image_path = s->img.path;
    s->info.label_path = s->lbl.path;
    s->info.kind = WF_STORE_IMAGES;
    s->info.x_dtype = WF_F32;
    s->info.x_per = (int64_t)s->sample_bytes;
    s->info.y_per = 1;
    s->info.open_s = wf_now() - t0;
    *out = s;
    return WF_OK;
}

int wf_store_dir_is_tokens(const char *dir) {
    char p[4096];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s/train.tok", dir) >= sizeof p) return 0;
    return stat(p, &st) == 0;
}

int wf_store_dir_has_classes(const char *dir) {
    char p[4096];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s/classes.txt", dir) >= sizeof p) return 0;
    return stat(p, &st) == 0;
}

int wf_store_open_opts(struct wf_store **out, const char *dir, const char *split, const char *stage_dir,
                       const struct wf_sample_opts *o) {
    *out = NULL;
    int given = o && o->seq_len != 0;
    if (!wf_store_dir_is_tokens(dir)) {
        if (given)
            return wf_error(WF_ERR_INVALID,
                            "%s: sample options (seq_len %d) given, but the folder holds no token dataset (train.tok)",
                            dir, o->seq_len);
        return wf_store_open(out, dir, split, stage_dir);
    }
    if (!given)
        return wf_error(WF_ERR_INVALID, "%s: a token dataset (train.tok) needs sample options: seq_len, sample, labels",
                        dir);
    double t0 = wf_now();
    struct wf_store *s = wf_calloc(1, sizeof *s);
    if (!s) return wf_error(WF_ERR_NOMEM, "%s: out of memory", dir);
    s->img.fd = s->lbl.fd = -1;
    atomic_init(&s->nread, 0);
    int rc = wf_tokstore_open(&s->tok, dir, split, o, &s->info);
    if (rc) {
        wf_store_free(s);
        return rc;
    }
    s->info.open_s = wf_now() - t0;
    *out = s;
    return WF_OK;
}

int wf_store_read_tokens_n(struct wf_store *s, uint32_t id, int32_t *x, int32_t *y, int32_t *len, uint64_t *nbytes) {
    if (!s->tok) return wf_error(WF_ERR_INVALID, "%s: an image dataset has no token samples", s->img.path);
    return wf_tokstore_read(s->tok, id, x, y, len, nbytes);
}

int wf_store_read_tokens(struct wf_store *s, uint32_t id, int32_t *x, int32_t *y, int32_t *len) {
    return wf_store_read_tokens_n(s, id, x, y, len, NULL);
}

const struct wf_store_info *wf_store_info(const struct wf_store *s) { return &s->info; }

uint64_t wf_store_bytes_read(const struct wf_store *s) {
    return atomic_load(&((struct wf_store *)s)->nread) + (s->tok ? wf_tokstore_bytes_read(s->tok) : 0);
}

int wf_store_read(struct wf_store *s, uint32_t id, uint8_t *pix, int32_t *label) {
    if (s->tok)
        return wf_error(WF_ERR_INVALID, "%s: a token dataset: read its samples with wf_store_read_tokens",
                        s->info.image_path);
    if (id >= (uint32_t)s->info.n)
        return wf_error(WF_ERR_RANGE, "%s: sample id %" PRIu32 " out of range (%d samples)", s->img.path, id,
                        s->info.n);
    size_t got;
    uint64_t off = 16 + (uint64_t)id * s->sample_bytes;
    int rc = wf_store_pread(s->img.fd, s->img.path, pix, s->sample_bytes, off, &got);
    atomic_fetch_add(&s->nread, got);
    if (rc) return wf_error_prefix(rc, "sample %" PRIu32, id);
    if (got != s->sample_bytes)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: sample %" PRIu32 " at offset %" PRIu64 " expects %zu bytes, read %zu",
                        s->img.path, id, off, s->sample_bytes, got);
    uint8_t l;
    off = 8 + (uint64_t)id;
    rc = wf_store_pread(s->lbl.fd, s->lbl.path, &l, 1, off, &got);
    atomic_fetch_add(&s->nread, got);
    if (rc) return wf_error_prefix(rc, "sample %" PRIu32, id);
    if (got != 1)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: truncated: label of sample %" PRIu32 " at offset %" PRIu64 " expects 1 byte, read 0",
                        s->lbl.path, id, off);
    *label = l;
    return WF_OK;
}
