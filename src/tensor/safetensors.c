/*
 * tensor layer: the safetensors file format (docs/formats.md).
 *
 * The reader takes nothing in the file on trust: the header length is capped,
 * every number in the JSON header is checked to be a non-negative integer,
 * every tensor's byte range must match its shape and lie in the data block,
 * and the ranges must tile the data block exactly (no overlap, no gap), as the
 * format requires. Errors name the file and the exact problem.
 *
 * The writer is deterministic: tensors sorted by name (byte order), data
 * packed in that order, "__metadata__" first with its keys sorted, no
 * whitespace, header padded with spaces to a multiple of 8 bytes.
 *
 * cJSON is pointed at the allocation seam (once, process-wide) through
 * wrappers that remember, per thread, that an allocation failed, so an out
 * of memory inside the JSON parser is reported as WF_ERR_NOMEM and not as a
 * corrupt header.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/safetensors.h"

#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* bytes, as the reference implementation */
#define ST_MAX_INT ((uint64_t)1 << 53)              /* largest integer a JSON double holds exactly */
#define ST_META "__metadata__"
#define ST_MAX_DEPTH 8 /* JSON nesting; the format itself needs 3 (header, entry, shape) */

static const char *const dtype_names[] = {"F32", "I32", "I64", "U8", "F64"};
static const int dtype_sizes[] = {4, 4, 8, 1, 8};

const char *wf_dtype_name(int dtype) {
    if (dtype < 0 || dtype >= (int)WF_ARRAY_LEN(dtype_names)) return "?";
    return dtype_names[dtype];
}

int wf_dtype_size(int dtype) {
    if (dtype < 0 || dtype >= (int)WF_ARRAY_LEN(dtype_sizes)) return 0;
    return dtype_sizes[dtype];
}

static int dtype_from_name(const char *s) {
    for (int i = 0; i < (int)WF_ARRAY_LEN(dtype_names); i++)
        if (!strcmp(s, dtype_names[i])) return i;
    return -1;
}

/* ---- cJSON through the allocation seam ---- */

static _Thread_local int json_oom; /* set when a cJSON allocation failed */
static pthread_once_t json_once = PTHREAD_ONCE_INIT;

static void *json_malloc(size_t n) {
    void *p = wf_malloc(n);
    if (!p) json_oom = 1;
    return p;
}

static void json_hooks_install(void) {
    cJSON_Hooks h = {json_malloc, wf_free};
    cJSON_InitHooks(&h);
}

/* ---- reader ---- */

struct kv {
    const char *k, *v;
};

static int kv_cmp(const void *a, const void *b) { return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k); }

void wf_st_free(struct wf_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++)
        wf_free(f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        wf_free(f->meta_key[i]);
        wf_free(f->meta_val[i]);
    }
    wf_free(f->t);
    wf_free(f->meta_key);
    wf_free(f->meta_val);
    wf_free(f->buf);
    wf_free(f->path);
    memset(f, 0, sizeof *f);
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is an integer in [0, 2^53): from 2^53 on, a double
 * no longer holds every integer, so the text may have said another one. */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d < (double)ST_MAX_INT)) return 0;
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;
    *out = u;
    return 1;
}

/* Formats a shape as "[2, 3]" into buf. */
static const char *shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Byte ranges of the tensors, for the tiling check. */
struct st_range {
    uint64_t begin, end; /* bytes, relative to the data block */
    int tensor;          /* index into f->t */
};

static int range_cmp(const void *a, const void *b) {
    const struct st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int tensor_cmp(const void *a, const void *b) {
    return strcmp(((const struct wf_st_tensor *)a)->name, ((const struct wf_st_tensor *)b)->name);
}

/* Parses "__metadata__": an object of string values. */
static int parse_meta(struct wf_st_file *f, const cJSON *m) {
    const char *path = f->path;
    if (!cJSON_IsObject(m)) return wf_error(WF_ERR_CORRUPT, "%s: header: \"%s\" is not an object", path, ST_META);
    int n = cJSON_GetArraySize(m);
    f->meta_key = wf_calloc((size_t)n, sizeof *f->meta_key);
    f->meta_val = wf_calloc((size_t)n, sizeof *f->meta_val);
    if (!f->meta_key || !f->meta_val) return wf_error(WF_ERR_NOMEM, "%s: out of memory reading the header", path);
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return wf_error(WF_ERR_CORRUPT, "%s: header: metadata value of '%s' is not a string", path, e->string);
        int i = f->n_meta;
        f->meta_key[i] = wf_strdup(e->string);
        f->meta_val[i] = wf_strdup(e->valuestring);
        if (f->meta_key[i] || f->meta_val[i]) f->n_meta++; /* freed by wf_st_free */
        if (!f->meta_key[i] || !f->meta_val[i])
            return wf_error(WF_ERR_NOMEM, "%s: out of memory reading the header", path);
    }
    /* duplicate keys: sorted, so that a header of a million keys is not a million squared compares */
    struct kv *s = wf_calloc((size_t)f->n_meta, sizeof *s);
    if (!s) return wf_error(WF_ERR_NOMEM, "%s: out of memory reading the header", path);
    for (int i = 0; i < f->n_meta; i++)
        s[i] = (struct kv){f->meta_key[i], f->meta_val[i]};
    qsort(s, (size_t)f->n_meta, sizeof *s, kv_cmp);
    int rc = WF_OK;
    for (int i = 1; i < f->n_meta && rc == WF_OK; i++)
        if (!strcmp(s[i - 1].k, s[i].k))
            rc = wf_error(WF_ERR_CORRUPT, "%s: header: duplicate metadata key '%s'", path, s[i].k);
    wf_free(s);
    return rc;
}

/* Parses one tensor entry into t (name already set); data_size is the size of
 * the data block. Returns the byte range in *r. */
static int parse_tensor(const char *path, const cJSON *e, struct wf_st_tensor *t, uint64_t data_size,
                        struct st_range *r) {
    const char *name = t->name;
    if (!cJSON_IsObject(e)) return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': entry is not an object", path, name);
    const cJSON *dt = NULL, *sh = NULL, *off = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        const cJSON **slot = !strcmp(k->string, "dtype")          ? &dt
                             : !strcmp(k->string, "shape")        ? &sh
                             : !strcmp(k->string, "data_offsets") ? &off
                                                                  : NULL;
        if (!slot) return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': unknown field '%s'", path, name, k->string);
        if (*slot) return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': duplicate field '%s'", path, name, k->string);
        *slot = k;
    }
    if (!dt || !sh || !off)
        return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': missing field '%s'", path, name,
                        !dt   ? "dtype"
                        : !sh ? "shape"
                              : "data_offsets");

    if (!cJSON_IsString(dt)) return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': dtype is not a string", path, name);
    t->dtype = dtype_from_name(dt->valuestring);
    if (t->dtype < 0)
        return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': unsupported dtype '%s' (weft reads F32, I32, I64, U8, F64)",
                        path, name, dt->valuestring);

    if (!cJSON_IsArray(sh)) return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': shape is not an array", path, name);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > WF_ST_MAX_DIMS)
        return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': %d dimensions, at most %d supported", path, name, ndim,
                        WF_ST_MAX_DIMS);
    /* Element count; "big" once it exceeds the data size, so it cannot overflow. */
    uint64_t count = 1;
    int zero = 0, big = 0;
    t->ndim = 0;
    for (const cJSON *d = sh->child; d; d = d->next) {
        uint64_t v;
        if (!json_u64(d, &v))
            return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name,
                            t->ndim);
        t->shape[t->ndim++] = (int64_t)v;
        if (v == 0)
            zero = 1;
        else if (!big && count > data_size / v)
            big = 1;
        else if (!big)
            count *= v;
    }
    if (zero) {
        count = 0;
        big = 0;
    }

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': data_offsets is not an array of two integers", path, name);
    uint64_t begin, end;
    if (!json_u64(off->child, &begin) || !json_u64(off->child->next, &end))
        return wf_error(WF_ERR_CORRUPT, "%s: tensor '%s': data_offsets are not non-negative integers", path, name);
    if (end < begin)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") end before they begin", path, name,
                        begin, end);
    if (end > data_size)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") exceed the data block of %" PRIu64
                        " bytes (file truncated?)",
                        path, name, begin, end, data_size);
    uint64_t esize = (uint64_t)wf_dtype_size(t->dtype);
    char sbuf[256];
    if (big || count > data_size / esize)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: tensor '%s': shape %s of %s is larger than the data block of %" PRIu64 " bytes", path,
                        name, shape_str(sbuf, sizeof sbuf, t->shape, t->ndim), dt->valuestring, data_size);
    if (count * esize != end - begin)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: tensor '%s': shape %s of %s is %" PRIu64 " bytes but data_offsets [%" PRIu64 ", %" PRIu64
                        ") span %" PRIu64,
                        path, name, shape_str(sbuf, sizeof sbuf, t->shape, t->ndim), dt->valuestring, count * esize,
                        begin, end, end - begin);
    t->nbytes = (size_t)(end - begin);
    r->begin = begin;
    r->end = end;
    return WF_OK;
}

/* Checks that the byte ranges tile [0, data_size) exactly. */
static int check_tiling(const struct wf_st_file *f, struct st_range *r, uint64_t data_size) {
    qsort(r, (size_t)f->n, sizeof *r, range_cmp);
    uint64_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (r[i].begin < at)
            return wf_error(WF_ERR_CORRUPT,
                            "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                            ") overlap in the data block",
                            f->path, f->t[r[i - 1].tensor].name, r[i - 1].begin, r[i - 1].end, f->t[r[i].tensor].name,
                            r[i].begin, r[i].end);
        if (r[i].begin > at)
            return wf_error(WF_ERR_CORRUPT,
                            "%s: bytes [%" PRIu64 ", %" PRIu64 ") of the data block belong to no tensor (before '%s')",
                            f->path, at, r[i].begin, f->t[r[i].tensor].name);
        at = r[i].end;
    }
    if (at != data_size)
        return wf_error(WF_ERR_CORRUPT,
                        "%s: data block is %" PRIu64 " bytes but the tensors cover only %" PRIu64
                        " (trailing bytes after the last tensor)",
                        f->path, data_size, at);
    return WF_OK;
}

/* Parses and validates the header; fills f->t, f->meta_*. */
static int parse_header(struct wf_st_file *f, const cJSON *root, const unsigned char *data, uint64_t data_size) {
    const char *path = f->path;
    if (!cJSON_IsObject(root)) return wf_error(WF_ERR_CORRUPT, "%s: header is not a JSON object", path);
    int n = 0;
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, ST_META) != 0)
            n++;
        else if (meta)
            return wf_error(WF_ERR_CORRUPT, "%s: header: duplicate \"%s\"", path, ST_META);
        else
            meta = e;
    }
    if (meta) {
        int rc = parse_meta(f, meta);
        if (rc) return rc;
    }
    f->t = wf_calloc((size_t)n, sizeof *f->t);
    struct st_range *r = wf_calloc((size_t)n, sizeof *r);
    if (!f->t || !r) {
        wf_free(r);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory reading the header", path);
    }
    int rc = WF_OK;
    for (const cJSON *e = root->child; e && rc == WF_OK; e = e->next) {
        if (e == meta) continue;
        struct wf_st_tensor *t = &f->t[f->n];
        if (!(t->name = wf_strdup(e->string))) {
            rc = wf_error(WF_ERR_NOMEM, "%s: out of memory reading the header", path);
            break;
        }
        f->n++;
        r[f->n - 1].tensor = f->n - 1;
        rc = parse_tensor(path, e, t, data_size, &r[f->n - 1]);
    }
    if (rc == WF_OK) rc = check_tiling(f, r, data_size);
    if (rc == WF_OK) {
        for (int i = 0; i < f->n; i++)
            f->t[r[i].tensor].data = data + r[i].begin;
        qsort(f->t, (size_t)f->n, sizeof *f->t, tensor_cmp);
        for (int i = 1; i < f->n && rc == WF_OK; i++)
            if (!strcmp(f->t[i - 1].name, f->t[i].name))
                rc = wf_error(WF_ERR_CORRUPT, "%s: header: duplicate tensor name '%s'", path, f->t[i].name);
    }
    wf_free(r);
    return rc;
}

/* Checks what the JSON parser would take on trust: nesting depth (it
 * recurses), and \u0000 in a string (it would cut a name or the model text
 * short, silently). hdr is hlen bytes; the parser reports other errors. */
static int scan_header(const char *path, const char *hdr, size_t hlen) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < hlen; i++) {
        char c = hdr[i];
        if (in_str) {
            if (c == '"') {
                in_str = 0;
            } else if (c == '\\' && i + 1 < hlen) {
                if (hdr[i + 1] == 'u' && i + 5 < hlen && !memcmp(hdr + i + 2, "0000", 4))
                    return wf_error(WF_ERR_CORRUPT, "%s: header has a NUL character (\\u0000) in a string at byte %zu",
                                    path, i + 8);
                i++;
            }
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > ST_MAX_DEPTH)
                return wf_error(WF_ERR_CORRUPT, "%s: header nests deeper than %d levels at byte %zu", path,
                                ST_MAX_DEPTH, i + 8);
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return WF_OK;
}

/* Parses and validates f->buf (f->len bytes, owned by f); on error frees f. */
static int st_parse(struct wf_st_file *f) {
    const char *path = f->path;
    size_t len = f->len;
    int rc = WF_OK;
    char *hdr = NULL;
    cJSON *root = NULL;
    pthread_once(&json_once, json_hooks_install);
    if (len < 8) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)",
                      path, len);
        goto out;
    }
    uint64_t hlen = le64(f->buf);
    if (hlen > ST_MAX_HEADER) {
        rc = wf_error(WF_ERR_CORRUPT,
                      "%s: header length %" PRIu64 " exceeds the %" PRIu64 "-byte limit (not a safetensors file?)",
                      path, hlen, ST_MAX_HEADER);
        goto out;
    }
    if (hlen > len - 8) {
        rc = wf_error(WF_ERR_CORRUPT,
                      "%s: header length %" PRIu64 " exceeds the %zu bytes after the length field (file truncated?)",
                      path, hlen, len - 8);
        goto out;
    }
    if (hlen < 2 || f->buf[8] != '{') {
        rc = wf_error(WF_ERR_CORRUPT, "%s: header does not start with '{' (not a safetensors file?)", path);
        goto out;
    }
    /* Parse a NUL-terminated copy so the parser cannot stray into the data. */
    if (!(hdr = wf_malloc((size_t)hlen + 1))) {
        rc = wf_error(WF_ERR_NOMEM, "%s: out of memory reading the header", path);
        goto out;
    }
    memcpy(hdr, f->buf + 8, (size_t)hlen);
    hdr[hlen] = 0;
    if ((rc = scan_header(path, hdr, (size_t)hlen))) goto out;
    const char *end = NULL;
    json_oom = 0;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) {
        if (json_oom)
            rc = wf_error(WF_ERR_NOMEM, "%s: out of memory parsing the header", path);
        else
            rc = wf_error(WF_ERR_CORRUPT,
                          "%s: header is not valid JSON (error at byte %td; the header is bytes [8, %" PRIu64 "))",
                          path, (end ? end - hdr : 0) + 8, 8 + hlen);
        goto out;
    }
    for (const char *p = end; p < hdr + hlen; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = wf_error(WF_ERR_CORRUPT, "%s: unexpected bytes after the header JSON at byte %td", path, p - hdr + 8);
            goto out;
        }
    }
    rc = parse_header(f, root, f->buf + 8 + hlen, (uint64_t)(len - 8 - hlen));
out:
    cJSON_Delete(root);
    wf_free(hdr);
    if (rc) wf_st_free(f);
    return rc;
}

int wf_st_load(struct wf_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    if (!(f->path = wf_strdup(path))) return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
    char *buf = NULL;
    size_t len = 0;
    int rc = wf_read_file(path, &buf, &len);
    if (rc) {
        wf_st_free(f);
        return rc;
    }
    f->buf = (unsigned char *)buf;
    f->len = len;
    return st_parse(f);
}

int wf_st_parse(struct wf_st_file *f, const char *path, const void *data, size_t len) {
    memset(f, 0, sizeof *f);
    if (!path) path = "<memory>";
    if (!(f->path = wf_strdup(path)) || !(f->buf = wf_malloc(len))) {
        wf_st_free(f);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
    }
    if (len) memcpy(f->buf, data, len);
    f->len = len;
    return st_parse(f);
}

const struct wf_st_tensor *wf_st_find(const struct wf_st_file *f, const char *name) {
    int lo = 0, hi = f->n; /* f->t is sorted by name */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[mid].name, name);
        if (c == 0) return &f->t[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *wf_st_meta(const struct wf_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

/* ---- writer ---- */

void wf_st_writer_init(struct wf_st_writer *w) { memset(w, 0, sizeof *w); }

void wf_st_writer_free(struct wf_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++)
        wf_free(w->t[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        wf_free(w->meta_key[i]);
        wf_free(w->meta_val[i]);
    }
    wf_free(w->t);
    wf_free(w->meta_key);
    wf_free(w->meta_val);
    memset(w, 0, sizeof *w);
}

int wf_st_writer_add(struct wf_st_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                     const void *data) {
    if (!name || !name[0] || !strcmp(name, ST_META))
        return wf_error(WF_ERR_INVALID, "safetensors: invalid tensor name '%s'", name ? name : "(null)");
    if (wf_dtype_size(dtype) == 0)
        return wf_error(WF_ERR_INVALID, "safetensors: tensor '%s': bad dtype %d", name, dtype);
    if (ndim < 0 || ndim > WF_ST_MAX_DIMS)
        return wf_error(WF_ERR_INVALID, "safetensors: tensor '%s': %d dimensions, at most %d supported", name, ndim,
                        WF_ST_MAX_DIMS);
    uint64_t nbytes = (uint64_t)wf_dtype_size(dtype);
    int zero = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return wf_error(WF_ERR_INVALID, "safetensors: tensor '%s': negative dimension %" PRId64, name, shape[i]);
        if (shape[i] == 0) zero = 1;
    }
    for (int i = 0; i < ndim && !zero; i++) {
        if ((uint64_t)shape[i] > ST_MAX_INT / nbytes)
            return wf_error(WF_ERR_RANGE, "safetensors: tensor '%s': size overflows", name);
        nbytes *= (uint64_t)shape[i];
    }
    if (zero) nbytes = 0;
    if (nbytes > SIZE_MAX) return wf_error(WF_ERR_RANGE, "safetensors: tensor '%s': size overflows", name);
    if (nbytes > 0 && !data) return wf_error(WF_ERR_INVALID, "safetensors: tensor '%s': no data", name);
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return wf_error(WF_ERR_INVALID, "safetensors: duplicate tensor name '%s'", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        struct wf_st_tensor *t = wf_realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return wf_error(WF_ERR_NOMEM, "safetensors: out of memory adding tensor '%s'", name);
        w->t = t;
        w->cap = cap;
    }
    struct wf_st_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = wf_strdup(name)))
        return wf_error(WF_ERR_NOMEM, "safetensors: out of memory adding tensor '%s'", name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = (size_t)nbytes;
    w->n++;
    return WF_OK;
}

int wf_st_writer_meta(struct wf_st_writer *w, const char *key, const char *val) {
    if (!key || !val) return wf_error(WF_ERR_INVALID, "safetensors: metadata key or value is NULL");
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_key[i], key))
            return wf_error(WF_ERR_INVALID, "safetensors: duplicate metadata key '%s'", key);
    if (w->n_meta == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 8;
        char **k = wf_realloc(w->meta_key, (size_t)cap * sizeof *k);
        if (!k) return wf_error(WF_ERR_NOMEM, "safetensors: out of memory adding metadata '%s'", key);
        w->meta_key = k;
        char **v = wf_realloc(w->meta_val, (size_t)cap * sizeof *v);
        if (!v) return wf_error(WF_ERR_NOMEM, "safetensors: out of memory adding metadata '%s'", key);
        w->meta_val = v;
        w->meta_cap = cap;
    }
    char *k = wf_strdup(key), *v = wf_strdup(val);
    if (!k || !v) {
        wf_free(k);
        wf_free(v);
        return wf_error(WF_ERR_NOMEM, "safetensors: out of memory adding metadata '%s'", key);
    }
    w->meta_key[w->n_meta] = k;
    w->meta_val[w->n_meta] = v;
    w->n_meta++;
    return WF_OK;
}

/* A growable string; an allocation failure sets oom and stops appending. */
struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_put(struct sbuf *s, const char *str, size_t n) {
    if (s->oom) return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (s->n + n + 1 > cap)
            cap *= 2;
        char *p = wf_realloc(s->p, cap);
        if (!p) {
            s->oom = 1;
            return;
        }
        s->p = p;
        s->cap = cap;
    }
    memcpy(s->p + s->n, str, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void sb_str(struct sbuf *s, const char *str) { sb_put(s, str, strlen(str)); }

static void sb_u64(struct sbuf *s, uint64_t v) {
    char b[32];
    sb_put(s, b, (size_t)snprintf(b, sizeof b, "%" PRIu64, v));
}

/* A JSON string literal: quotes, backslashes and control bytes escaped;
 * other bytes (UTF-8) copied as they are. */
static void sb_json_str(struct sbuf *s, const char *str) {
    sb_put(s, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        char b[8];
        if (*p == '"' || *p == '\\') {
            b[0] = '\\';
            b[1] = (char)*p;
            sb_put(s, b, 2);
        } else if (*p < 0x20) {
            sb_put(s, b, (size_t)snprintf(b, sizeof b, "\\u%04x", *p));
        } else {
            sb_put(s, (const char *)p, 1);
        }
    }
    sb_put(s, "\"", 1);
}

static int tensor_ptr_cmp(const void *a, const void *b) {
    return strcmp((*(const struct wf_st_tensor *const *)a)->name, (*(const struct wf_st_tensor *const *)b)->name);
}

int wf_st_writer_serialize(const struct wf_st_writer *w, unsigned char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    const struct wf_st_tensor **order = wf_calloc((size_t)w->n, sizeof *order);
    struct kv *meta = wf_calloc((size_t)w->n_meta, sizeof *meta);
    struct sbuf s = {0};
    int rc = WF_OK;
    if (!order || !meta) {
        rc = wf_error(WF_ERR_NOMEM, "safetensors: out of memory serializing");
        goto out;
    }
    for (int i = 0; i < w->n; i++)
        order[i] = &w->t[i];
    for (int i = 0; i < w->n_meta; i++)
        meta[i] = (struct kv){w->meta_key[i], w->meta_val[i]};
    qsort(order, (size_t)w->n, sizeof *order, tensor_ptr_cmp);
    qsort(meta, (size_t)w->n_meta, sizeof *meta, kv_cmp);

    sb_str(&s, "{");
    if (w->n_meta > 0) {
        sb_json_str(&s, ST_META);
        sb_str(&s, ":{");
        for (int i = 0; i < w->n_meta; i++) {
            if (i) sb_str(&s, ",");
            sb_json_str(&s, meta[i].k);
            sb_str(&s, ":");
            sb_json_str(&s, meta[i].v);
        }
        sb_str(&s, "}");
    }
    uint64_t at = 0;
    for (int i = 0; i < w->n; i++) {
        const struct wf_st_tensor *t = order[i];
        if (i || w->n_meta > 0) sb_str(&s, ",");
        sb_json_str(&s, t->name);
        sb_str(&s, ":{\"dtype\":");
        sb_json_str(&s, wf_dtype_name(t->dtype));
        sb_str(&s, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) sb_str(&s, ",");
            sb_u64(&s, (uint64_t)t->shape[d]);
        }
        sb_str(&s, "],\"data_offsets\":[");
        sb_u64(&s, at);
        sb_str(&s, ",");
        if (t->nbytes > ST_MAX_INT - at) {
            rc = wf_error(WF_ERR_RANGE, "safetensors: total tensor size overflows");
            goto out;
        }
        at += t->nbytes;
        sb_u64(&s, at);
        sb_str(&s, "]}");
    }
    sb_str(&s, "}");
    sb_put(&s, "       ", (8 - s.n % 8) % 8); /* pad with spaces to a multiple of 8 */
    if (s.oom) {
        rc = wf_error(WF_ERR_NOMEM, "safetensors: out of memory serializing the header");
        goto out;
    }
    if (at > SIZE_MAX - 8 - s.n) {
        rc = wf_error(WF_ERR_RANGE, "safetensors: file size overflows");
        goto out;
    }
    size_t total = 8 + s.n + (size_t)at;
    unsigned char *buf = wf_malloc(total);
    if (!buf) {
        rc = wf_error(WF_ERR_NOMEM, "safetensors: out of memory serializing %zu bytes", total);
        goto out;
    }
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)s.n >> (8 * i));
    memcpy(buf + 8, s.p, s.n);
    unsigned char *p = buf + 8 + s.n;
    for (int i = 0; i < w->n; i++) {
        if (order[i]->nbytes) memcpy(p, order[i]->data, order[i]->nbytes);
        p += order[i]->nbytes;
    }
    *out = buf;
    *len = total;
out:
    wf_free(s.p);
    wf_free(meta);
    wf_free(order);
    return rc;
}

int wf_st_writer_save(const struct wf_st_writer *w, const char *path) {
    unsigned char *buf;
    size_t len;
    int rc = wf_st_writer_serialize(w, &buf, &len);
    if (rc) return wf_error_prefix(rc, "%s", path);
    rc = wf_write_file_atomic(path, buf, len);
    wf_free(buf);
    return rc;
}
