/*
 * data layer: preprocessing transforms. A chain is parsed from text such as
 *   normalize(mean=0.2860, std=0.3530), crop(pad=4), flip(p=0.5), noise(std=0.05)
 * The leading deterministic ops form the cached prefix (their output can be
 * stored under the pipeline's cache id); everything from the first random
 * op on runs after the cache. A random op draws from the counter-based
 * generator keyed by (seed, epoch, sample id, op position) only, so a sample
 * comes out byte-identical whichever thread, process or placement computes
 * it (DESIGN.md §4 rule 4).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/lex.h"
#include "weft/loader.h"

/* Stream tag of the augmentation generator: "AUGMENT!" in ASCII. */
#define AUG_TAG 0x4155474D454E5421ull
#define CHAIN_TAG 0x5846434841494Eull   /* "XFCHAIN" */
#define CACHE_TAG 0x5745465443414348ull /* "WEFTCACH" */
#define MAX_PAD 64
#define MAX_REPEAT 100000

static const char *const kind_name[] = {"normalize", "crop", "flip", "noise"};

static int is_random(int kind) { return kind != WF_XF_NORMALIZE; }

struct param {
    const char *name;
    int required, integer;
    double lo, hi; /* allowed range, inclusive */
    double def;
};

/* Parameters of each op, in canonical order. */
static const struct param params[][2] = {
    [WF_XF_NORMALIZE] = {{"mean", 1, 0, -1e30, 1e30, 0}, {"std", 1, 0, 1e-30, 1e30, 1}},
    [WF_XF_CROP] = {{"pad", 1, 1, 0, MAX_PAD, 0}, {NULL, 0, 0, 0, 0, 0}},
    [WF_XF_FLIP] = {{"p", 0, 0, 0, 1, 0.5}, {NULL, 0, 0, 0, 0, 0}},
    [WF_XF_NOISE] = {{"std", 1, 0, 0, 1e30, 0}, {"repeat", 0, 1, 1, MAX_REPEAT, 1}},
};

static void set_param(struct wf_xf *op, int k, double v) {
    switch (op->kind) {
    case WF_XF_NORMALIZE: *(k == 0 ? &op->mean : &op->std) = (float)v; break;
    case WF_XF_CROP: op->pad = (int)v; break;
    case WF_XF_FLIP: op->p = (float)v; break;
    case WF_XF_NOISE:
        if (k == 0)
            op->std = (float)v;
        else
            op->repeat = (int)v;
        break;
    }
}

static double get_param(const struct wf_xf *op, int k) {
    switch (op->kind) {
    case WF_XF_NORMALIZE: return k == 0 ? op->mean : op->std;
    case WF_XF_CROP: return op->pad;
    case WF_XF_FLIP: return op->p;
    case WF_XF_NOISE: return k == 0 ? op->std : op->repeat;
    }
    return 0;
}

static int next(struct wf_lex *lx) {
    int rc;
    do
        rc = wf_lex_next(lx);
    while (rc == WF_OK && lx->tok.kind == WF_TOK_NEWLINE);
    return rc;
}

/* op := IDENT ['(' [IDENT '=' number {',' IDENT '=' number}] ')'] ; the lexer is on IDENT. */
static int parse_op(struct wf_lex *lx, struct wf_xf *op) {
    struct wf_tok *t = &lx->tok;
    int kind = -1;
    for (int k = 0; k < (int)WF_ARRAY_LEN(kind_name); k++)
        if (wf_tok_word(t, kind_name[k])) kind = k;
    if (kind < 0)
        return wf_lex_error(lx, t->line, t->col, "unknown transform '%s' (expected normalize, crop, flip or noise)",
                            t->text);
    int op_line = t->line, op_col = t->col;
    memset(op, 0, sizeof *op);
    op->kind = kind;
    const struct param *ps = params[kind];
    int seen[2] = {0, 0};
    int rc = next(lx);
    if (rc) return rc;
    int bare = !wf_tok_is(t, '('); /* "flip": every parameter at its default */
    if (bare && t->kind != WF_TOK_EOF && !wf_tok_is(t, ','))
        return wf_lex_expected(lx, t, "'(' after the transform name");
    if (!bare && (rc = next(lx))) return rc;
    while (!bare && !wf_tok_is(t, ')')) {
        if (t->kind != WF_TOK_IDENT) return wf_lex_expected(lx, t, "a parameter name or ')'");
        int k = -1;
        for (int j = 0; j < 2; j++)
            if (ps[j].name && wf_tok_word(t, ps[j].name)) k = j;
        if (k < 0) {
            char allowed[64];
            snprintf(allowed, sizeof allowed, "%s%s%s", ps[0].name, ps[1].name ? " or " : "",
                     ps[1].name ? ps[1].name : "");
            return wf_lex_error(lx, t->line, t->col, "unknown parameter '%s' of %s (expected %s)", t->text,
                                kind_name[kind], allowed);
        }
        if (seen[k]) return wf_lex_error(lx, t->line, t->col, "parameter '%s' given twice", ps[k].name);
        seen[k] = 1;
        if ((rc = next(lx))) return rc;
        if (!wf_tok_is(t, '=')) return wf_lex_expected(lx, t, "'='");
        if ((rc = next(lx))) return rc;
        if (t->kind != WF_TOK_INT && t->kind != WF_TOK_FLOAT) return wf_lex_expected(lx, t, "a number");
        if (ps[k].integer && t->kind != WF_TOK_INT)
            return wf_lex_error(lx, t->line, t->col, "%s of %s must be an integer, got '%s'", ps[k].name,
                                kind_name[kind], t->text);
        double v = t->f;
        if (!(v >= ps[k].lo && v <= ps[k].hi))
            return wf_lex_error(lx, t->line, t->col, "%s=%s of %s out of range [%g, %g]", ps[k].name, t->text,
                                kind_name[kind], ps[k].lo, ps[k].hi);
        set_param(op, k, v);
        if ((rc = next(lx))) return rc;
        if (wf_tok_is(t, ',')) {
            if ((rc = next(lx))) return rc;
        } else if (!wf_tok_is(t, ')')) {
            return wf_lex_expected(lx, t, "',' or ')'");
        }
    }
    for (int k = 0; k < 2; k++) {
        if (!ps[k].name || seen[k]) continue;
        if (ps[k].required)
            return wf_lex_error(lx, op_line, op_col, "%s needs parameter '%s'", kind_name[kind], ps[k].name);
        set_param(op, k, ps[k].def);
    }
    return bare ? WF_OK : next(lx);
}

/* Shortest %g text that reads back as exactly the float v. */
static void format_float(float v, char *buf, size_t cap) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
}

void wf_xf_text(const struct wf_xf_chain *ch, int from, int to, char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = 0;
    for (int i = from; i < to && len < cap; i++) {
        const struct wf_xf *op = &ch->op[i];
        const struct param *ps = params[op->kind];
        len += (size_t)snprintf(buf + len, cap - len, "%s%s(", i > from ? "," : "", kind_name[op->kind]);
        for (int k = 0; k < 2 && ps[k].name && len < cap; k++) {
            char num[32];
            double v = get_param(op, k);
            if (ps[k].integer)
                snprintf(num, sizeof num, "%d", (int)v);
            else
                format_float((float)v, num, sizeof num);
            len += (size_t)snprintf(buf + len, cap - len, "%s%s=%s", k ? "," : "", ps[k].name, num);
        }
        if (len < cap) len += (size_t)snprintf(buf + len, cap - len, ")");
    }
}

int wf_xf_parse(struct wf_xf_chain *ch, const char *text) {
    memset(ch, 0, sizeof *ch);
    struct wf_lex lx;
    wf_lex_init(&lx, "transforms", text ? text : "");
    int rc = next(&lx);
    if (rc) return rc;
    if (lx.tok.kind != WF_TOK_EOF) {
        for (;;) {
            if (lx.tok.kind != WF_TOK_IDENT) return wf_lex_expected(&lx, &lx.tok, "a transform name");
            if (ch->n == WF_XF_MAX)
                return wf_lex_error(&lx, lx.tok.line, lx.tok.col, "more than %d transforms", WF_XF_MAX);
            if ((rc = parse_op(&lx, &ch->op[ch->n]))) return rc;
            ch->n++;
            if (lx.tok.kind == WF_TOK_EOF) break;
            if (!wf_tok_is(&lx.tok, ',')) return wf_lex_expected(&lx, &lx.tok, "',' or the end");
            if ((rc = next(&lx))) return rc;
        }
    }
    while (ch->n_prefix < ch->n && !is_random(ch->op[ch->n_prefix].kind))
        ch->n_prefix++;
    char buf[2048];
    wf_xf_text(ch, 0, ch->n, buf, sizeof buf);
    ch->digest = wf_hash64(buf, strlen(buf), CHAIN_TAG);
    wf_xf_text(ch, 0, ch->n_prefix, buf, sizeof buf);
    ch->prefix_digest = wf_hash64(buf, strlen(buf), CHAIN_TAG);
    return WF_OK;
}

static void normalize(const struct wf_xf *op, float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        x[i] = (x[i] - op->mean) / op->std;
}

void wf_xf_prefix(const struct wf_xf_chain *ch, const uint8_t *pix, int c, int h, int w, float *out) {
    size_t n = (size_t)c * (size_t)h * (size_t)w;
    for (size_t i = 0; i < n; i++)
        out[i] = (float)pix[i] / 255.0f; /* as wf_dataset_gather */
    for (int k = 0; k < ch->n_prefix; k++)
        normalize(&ch->op[k], out, n);
}

/* x (c,h,w): shift by (dy, dx) with zeros where the padded border shows. */
static void crop(float *x, float *tmp, int c, int h, int w, int dy, int dx) {
    size_t n = (size_t)c * (size_t)h * (size_t)w;
    memcpy(tmp, x, n * sizeof *x);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++) {
            float *row = x + ((size_t)ch * h + y) * w;
            int sy = y + dy;
            if (sy < 0 || sy >= h) {
                memset(row, 0, (size_t)w * sizeof *row);
                continue;
            }
            const float *src = tmp + ((size_t)ch * h + sy) * w;
            for (int xx = 0; xx < w; xx++) {
                int sx = xx + dx;
                row[xx] = sx >= 0 && sx < w ? src[sx] : 0.0f;
            }
        }
}

static void flip(float *x, int c, int h, int w) {
    for (size_t r = 0; r < (size_t)c * h; r++) {
        float *row = x + r * w;
        for (int i = 0, j = w - 1; i < j; i++, j--) {
            float t = row[i];
            row[i] = row[j];
            row[j] = t;
        }
    }
}

/* Two standard normals from two draws (Box-Muller, in double for stable bits). */
static void normal_pair(struct wf_rng *r, float z[2]) {
    double u1 = ((double)(wf_rng_u32(r) >> 8) + 1.0) / 16777217.0; /* (0, 1] */
    double u2 = (double)(wf_rng_u32(r) >> 8) / 16777216.0;
    double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
    z[0] = (float)(rad * cos(th));
    z[1] = (float)(rad * sin(th));
}

void wf_xf_random(const struct wf_xf_chain *ch, uint64_t seed, uint64_t epoch, uint32_t id, int c, int h, int w,
                  float *x, float *scratch) {
    size_t n = (size_t)c * (size_t)h * (size_t)w;
    uint64_t stream = wf_hash_combine(wf_hash_combine(AUG_TAG, epoch), id);
    for (int k = ch->n_prefix; k < ch->n; k++) {
        const struct wf_xf *op = &ch->op[k];
        struct wf_rng r;
        wf_rng_init(&r, seed, wf_hash_combine(stream, (uint64_t)k));
        switch (op->kind) {
        case WF_XF_NORMALIZE: normalize(op, x, n); break;
        case WF_XF_CROP: {
            uint32_t span = 2u * (uint32_t)op->pad + 1u;
            int dy = (int)wf_rng_below(&r, span) - op->pad;
            int dx = (int)wf_rng_below(&r, span) - op->pad;
            if (dy || dx) crop(x, scratch, c, h, w, dy, dx);
            break;
        }
        case WF_XF_FLIP:
            if (wf_rng_uniform(&r) < op->p) flip(x, c, h, w);
            break;
        case WF_XF_NOISE: {
            float scale = op->repeat == 1 ? op->std : op->std / sqrtf((float)op->repeat);
            for (size_t i = 0; i < n; i += 2) {
                float s0 = 0.0f, s1 = 0.0f;
                for (int j = 0; j < op->repeat; j++) {
                    float z[2];
                    normal_pair(&r, z);
                    s0 += z[0];
                    s1 += z[1];
                }
                x[i] += scale * s0;
                if (i + 1 < n) x[i + 1] += scale * s1;
            }
            break;
        }
        }
    }
}

uint64_t wf_xf_cache_id(const struct wf_xf_chain *ch, const struct wf_store_info *info) {
    char buf[2048];
    wf_xf_text(ch, 0, ch->n_prefix, buf, sizeof buf);
    uint64_t h = wf_hash64(info->digest, sizeof info->digest, CACHE_TAG);
    h = wf_hash_combine(h, (uint64_t)info->c << 32 | (uint64_t)info->h << 16 | (uint64_t)info->w);
    h = wf_hash_combine(h, 1); /* value format: int32 label, then c*h*w float32 */
    return wf_hash_combine(h, wf_hash64(buf, strlen(buf), CHAIN_TAG));
}
