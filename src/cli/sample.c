/*
 * cli layer: `weft sample`, text drawn from a trained token model, and the
 * sample line `weft train` prints at the end of each epoch on token data.
 *
 * The model runs at batch 1 for evaluation (train = 0) on the parameters by
 * name: a checkpoint's, or the trainer's own vector (the parameter layout
 * of a model does not depend on the batch, so an executor at batch 1 reads
 * the trainer's memory as it is). Its sample input holds the last T ids,
 * left-filled with the newline's id (the context a fortune starts after in
 * a corpus of concatenated texts) when fewer are known; the next id is
 * drawn from softmax(logits / temperature) over the ids the vocabulary
 * names, the pad excepted, with weft's counter-based generator keyed by
 * the seed alone, so a seed gives the same text on every run.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/checkpoint.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/graph.h"
#include "weft/lex.h"
#include "weft/loader.h"
#include "weft/safetensors.h"
#include "weft/train.h"

#include "cli_int.h"

#define SAMPLE_STREAM 0x53414D504C455458ull /* "SAMPLETX": the draws' stream of the seed */
#define SAMPLE_MAX_CHARS 1000000L           /* --n bound: output is held in memory */
#define EPOCH_SAMPLE_CHARS 64               /* characters on weft train's epoch-end line */
#define EPOCH_SAMPLE_TEMPERATURE 0.8

static void usage_sample(FILE *f) {
    fprintf(f, "usage: weft sample CHECKPOINT [--prompt TEXT] [--n N] [--temperature T] [--seed S] [--vocab FILE]\n\n"
               "Generates text with a model trained on a token dataset (weft tokenize): feeds it the last\n"
               "seq_len ids, draws the next from softmax(logits / T), and prints the prompt and the text.\n"
               "The same seed gives the same text.\n\n"
               "options:\n"
               "  --prompt TEXT     the text to continue (default: none, as at the start of a text)\n"
               "  --n N             characters to generate (default 200)\n"
               "  --temperature T   >= 0; lower is more conservative, 0 takes the most likely (default 0.8)\n"
               "  --seed S          the random seed, 0 .. 2^64-1 (default 0)\n"
               "  --vocab FILE      the vocabulary (default: vocab.txt of the checkpoint's data folder)\n"
               "  --help            this text\n\n"
               "Control characters other than newline and tab are shown as \\xHH.\n");
}

/* ---- the vocabulary file (docs/formats.md, "Token datasets") ---- */

struct vocab {
    int kind;       /* enum wf_vocab_kind */
    int n;          /* ids */
    int pad;        /* the pad id */
    uint32_t *code; /* n: the code point (chars) or byte (bytes) id k stands for */
    char path[4096];
};

static void vocab_free(struct vocab *v) {
    wf_free(v->code);
    v->code = NULL;
}

/* Reads every line's CODE; wf_vocab_read_header has checked the header,
 * the size bound and that the lines are ids 0 .. n-1 in order. */
static int vocab_load(struct vocab *v, const char *path) {
    memset(v, 0, sizeof *v);
    snprintf(v->path, sizeof v->path, "%s", path);
    int rc = wf_vocab_read_header(path, &v->kind, &v->n, &v->pad);
    if (rc < 0) return rc;
    char *text;
    size_t len;
    if ((rc = wf_read_file(path, &text, &len)) < 0) return rc;
    v->code = wf_calloc((size_t)v->n, sizeof *v->code);
    if (!v->code) {
        wf_free(text);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory for %d ids", path, v->n);
    }
    const char *p = memchr(text, '\n', len), *end = text + len;
    for (int k = 0; k < v->n && rc == WF_OK; k++) {
        p = p ? p + 1 : end;
        const char *sp = p < end ? memchr(p, ' ', (size_t)(end - p)) : NULL;
        char *e = NULL;
        unsigned long c = 0;
        int form = sp && sp + 3 < end && isxdigit((unsigned char)sp[3]) &&
                   (v->kind == WF_VOCAB_CHARS ? sp[1] == 'U' && sp[2] == '+' : sp[1] == '0' && sp[2] == 'x');
        if (form) c = strtoul(sp + 3, &e, 16);
        if (!e || e == sp + 3 || (*e != ' ' && *e != '\n') || c > (v->kind == WF_VOCAB_BYTES ? 0xffu : 0x10ffffu))
            rc = wf_error(WF_ERR_CORRUPT, "%s:%d: expected 'ID %s SHOWN'", path, k + 2,
                          v->kind == WF_VOCAB_CHARS ? "U+XXXX" : "0xHH");
        else
            v->code[k] = (uint32_t)c;
        p = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
    }
    wf_free(text);
    if (rc < 0) vocab_free(v);
    return rc;
}

/* The id of code c, or -1 (the pad stands for no character). */
static int vocab_find(const struct vocab *v, uint32_t c) {
    for (int k = 0; k < v->n; k++)
        if (k != v->pad && v->code[k] == c) return k;
    return -1;
}

/* Decodes one UTF-8 character at p (n bytes left) into *cp; returns its
 * length, 0 if the bytes are not valid UTF-8. */
static int utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
    if (p[0] < 0x80) return *cp = p[0], 1;
    int len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t c = p[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c < 0xe000))) || (len == 4 && (c < 0x10000 || c > 0x10ffff)))
        return 0;
    return *cp = c, len;
}

static size_t utf8_encode(uint32_t c, char *out) {
    if (c < 0x80) return out[0] = (char)c, 1;
    if (c < 0x800) {
        out[0] = (char)(0xc0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | c >> 12), out[1] = (char)(0x80 | (c >> 6 & 0x3f)), out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | c >> 18), out[1] = (char)(0x80 | (c >> 12 & 0x3f));
    out[2] = (char)(0x80 | (c >> 6 & 0x3f)), out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* Appends id's text to b: the character (UTF-8) or byte; a control
 * character other than newline and tab as \xHH; one_line: newline and tab
 * as \n and \t too. */
static void vocab_show(const struct vocab *v, int id, int one_line, struct wf_textbuf *b) {
    uint32_t c = v->code[id];
    if (c == '\n' && one_line)
        wf_textbuf_printf(b, "\\n");
    else if (c == '\t' && one_line)
        wf_textbuf_printf(b, "\\t");
    else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || (v->kind == WF_VOCAB_CHARS && c >= 0x80 && c < 0xa0))
        wf_textbuf_printf(b, "\\x%02" PRIX32, c);
    else if (v->kind == WF_VOCAB_BYTES)
        wf_textbuf_printf(b, "%c", (char)c);
    else {
        char u[5] = {0};
        utf8_encode(c, u);
        wf_textbuf_printf(b, "%s", u);
    }
}

/* The prompt's ids into ids[0..*n) (caller frees); a character the
 * vocabulary lacks is WF_ERR_NOTFOUND naming them (the first
 * PROMPT_MISSING_NAMED distinct ones). */
#define PROMPT_MISSING_NAMED 16
static int vocab_encode(const struct vocab *v, const char *text, int32_t **ids, long *n) {
    size_t len = strlen(text);
    *ids = wf_malloc((len + 1) * sizeof **ids);
    *n = 0;
    if (!*ids) return wf_error(WF_ERR_NOMEM, "out of memory for a prompt of %zu bytes", len);
    uint32_t missing[PROMPT_MISSING_NAMED];
    int n_missing = 0, more = 0;
    for (size_t i = 0; i < len;) {
        uint32_t c = (unsigned char)text[i];
        int step = 1;
        if (v->kind == WF_VOCAB_CHARS && !(step = utf8_decode((const unsigned char *)text + i, len - i, &c))) {
            wf_free(*ids);
            *ids = NULL;
            return wf_error(WF_ERR_INVALID, "the prompt is not valid UTF-8 (byte 0x%02x at offset %zu)",
                            (unsigned char)text[i], i);
        }
        i += (size_t)step;
        int id = vocab_find(v, c);
        if (id >= 0) {
            (*ids)[(*n)++] = id;
            continue;
        }
        int seen = 0; /* each missing character named once */
        for (int j = 0; j < n_missing && !seen; j++)
            seen = missing[j] == c;
        if (seen) continue;
        if (n_missing < PROMPT_MISSING_NAMED)
            missing[n_missing++] = c;
        else
            more = 1;
    }
    if (!n_missing) return WF_OK;
    wf_free(*ids);
    *ids = NULL;
    char names[1024];
    size_t k = 0;
    for (int j = 0; j < n_missing; j++) {
        uint32_t c = missing[j];
        char u[8] = {0};
        if (v->kind == WF_VOCAB_BYTES)
            wf_appendf(names, sizeof names, &k, "%s0x%02" PRIX32, j ? ", " : "", c);
        else if (c >= 0x20 && c != 0x7f && !(c >= 0x80 && c < 0xa0) && utf8_encode(c, u))
            wf_appendf(names, sizeof names, &k, "%s'%s' (U+%04" PRIX32 ")", j ? ", " : "", u, c);
        else
            wf_appendf(names, sizeof names, &k, "%sU+%04" PRIX32, j ? ", " : "", c);
    }
    return wf_error(WF_ERR_NOTFOUND, "the prompt has %s that %s (%d ids) does not hold: %s%s",
                    n_missing == 1 ? "a character" : "characters", v->path, v->n, names, more ? ", ..." : "");
}

/* ---- the model at batch 1 ---- */

struct gen {
    struct wf_exec e; /* train = 0, batch 1 */
    int x, y, len;    /* its data inputs (samples, labels, lengths); -1 where absent */
    int T;            /* ids a sample: the context */
    int V;            /* classes the logits score */
    int rows;         /* logits rows a sample: 1 (next-token labels) or T (shifted); the last is read */
    int n_draw;       /* ids drawn from: [0, n_draw), the pad excepted */
    int fill;         /* the id left-filling a short context */
    double *p;        /* n_draw: unnormalized probabilities */
};

static void gen_free(struct gen *s) {
    wf_exec_free(&s->e);
    wf_free(s->p);
    s->p = NULL;
}

/* Compiles m at batch 1 for evaluation on params (laid out by the plan;
 * NULL: set s->e.params before the first draw) and checks that it is a
 * token model whose scores the vocabulary can name. */
static int gen_init(struct gen *s, const struct wf_model *m, float *params, const struct vocab *v) {
    memset(s, 0, sizeof *s);
    s->x = s->y = s->len = -1;
    int rc = wf_exec_init(&s->e, m, 1, 0, params, NULL);
    if (rc < 0) return rc;
    const struct wf_graph *g = &s->e.prog.g;
    wf_graph_data_inputs(g, &s->x, &s->y);
    s->len = wf_graph_len_input(g);
    if (s->x < 0 || g->v[s->x].dtype != WF_I32 || g->logits < 0)
        return wf_error(WF_ERR_INVALID,
                        "%s: sampling needs a model of token ids: an i32 sample input and a cross_entropy loss whose "
                        "logits score the next token",
                        g->path);
    const struct wf_value *lg = &g->v[g->logits];
    s->T = (int)g->v[s->x].numel;
    s->V = lg->ndim ? (int)lg->shape[lg->ndim - 1] : 0;
    s->rows = s->V > 0 ? (int)(lg->numel / s->V) : 0;
    if (s->V <= 0 || (s->rows != 1 && s->rows != s->T))
        return wf_error(WF_ERR_INVALID, "%s: the logits '%s' hold %" PRId64 " values, not one or %d rows of scores",
                        g->path, lg->name, lg->numel, s->T);
    if (s->V < v->n)
        return wf_error(WF_ERR_INVALID,
                        "%s: the model scores %d classes, but %s has %d ids (was it trained on another dataset?)",
                        g->path, s->V, v->path, v->n);
    s->n_draw = v->n;
    s->fill = vocab_find(v, '\n');
    if (s->fill < 0) s->fill = v->pad;
    s->p = wf_malloc(sizeof *s->p * (size_t)s->n_draw);
    if (!s->p) return wf_error(WF_ERR_NOMEM, "out of memory for %d scores", s->n_draw);
    return WF_OK;
}

/* Draws the id after ctx[0..n) (its last T ids are the context). */
static int gen_next(struct gen *s, const int32_t *ctx, long n, double temperature, int pad, struct wf_rng *r,
                    int *out) {
    int32_t *x = wf_exec_ptr(&s->e, s->x);
    if (!x) return wf_error(WF_ERR_INVALID, "%s: the model does not read its sample input", s->e.prog.g.path);
    int32_t *y = s->y >= 0 ? wf_exec_ptr(&s->e, s->y) : NULL;
    int32_t *len = s->len >= 0 ? wf_exec_ptr(&s->e, s->len) : NULL;
    long have = WF_MIN(n, (long)s->T);
    for (int t = 0; t < s->T - have; t++)
        x[t] = s->fill;
    memcpy(x + (s->T - have), ctx + (n - have), sizeof *x * (size_t)have);
    if (y) memset(y, 0, sizeof *y * (size_t)s->e.prog.g.v[s->y].numel); /* any valid label: the loss is not read */
    if (len) len[0] = s->T;
    int rc = wf_exec_forward(&s->e);
    if (rc < 0) return rc;
    const float *lg = (const float *)wf_exec_ptr(&s->e, s->e.prog.g.logits) + (size_t)(s->rows - 1) * (size_t)s->V;
    int best = -1;
    for (int k = 0; k < s->n_draw; k++)
        if (k != pad && (best < 0 || lg[k] > lg[best])) best = k;
    if (best < 0) return wf_error(WF_ERR_INVALID, "the vocabulary holds no character to draw");
    if (temperature <= 0) {
        *out = best;
        return WF_OK;
    }
    double sum = 0;
    for (int k = 0; k < s->n_draw; k++) {
        s->p[k] = k == pad ? 0 : exp(((double)lg[k] - (double)lg[best]) / temperature);
        sum += s->p[k];
    }
    double u = (double)wf_rng_uniform(r) * sum, acc = 0;
    *out = best; /* rounding can leave u past the last sum */
    for (int k = 0; k < s->n_draw; k++) {
        acc += s->p[k];
        if (s->p[k] > 0 && u < acc) {
            *out = k;
            break;
        }
    }
    return WF_OK;
}

/* Appends n drawn ids to ctx (which holds *n_ctx ids and room for n more). */
static int gen_run(struct gen *s, int32_t *ctx, long *n_ctx, long n, double temperature, uint64_t seed, int pad) {
    struct wf_rng r;
    wf_rng_init(&r, seed, SAMPLE_STREAM);
    for (long i = 0; i < n; i++) {
        int id = 0;
        int rc = gen_next(s, ctx, *n_ctx, temperature, pad, &r, &id);
        if (rc < 0) return rc;
        ctx[(*n_ctx)++] = id;
    }
    return WF_OK;
}

/* ---- weft sample ---- */

static int parse_double(const char *opt, const char *s, double lo, double *out) {
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || *end || end == s || !isfinite(v) || v < lo) {
        fprintf(stderr, "weft sample: error: %s needs a number >= %g, got '%s'\n", opt, lo, s ? s : "");
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seed(const char *s, uint64_t *out) {
    char *end;
    if (s && s[0] >= '0' && s[0] <= '9') {
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (!*end && errno == 0) {
            *out = (uint64_t)v;
            return 0;
        }
    }
    fprintf(stderr, "weft sample: error: --seed needs an integer 0 .. 2^64-1, got '%s'\n", s ? s : "");
    return -1;
}

int cmd_sample(int argc, char **argv) {
    const char *ckpt = NULL, *prompt = "", *vocab_path = NULL;
    long n = 200;
    double temperature = 0.8;
    uint64_t seed = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage_sample(stdout);
            return 0;
        } else if (!strcmp(a, "--prompt") && val) {
            prompt = argv[++i];
        } else if (!strcmp(a, "--vocab") && val) {
            vocab_path = argv[++i];
        } else if (!strcmp(a, "--n")) {
            if (wf_cli_parse_long("sample", "--n", val, &n) < 0) return 2;
            i++;
            if (n > SAMPLE_MAX_CHARS) {
                fprintf(stderr, "weft sample: error: --n %ld, at most %ld\n", n, SAMPLE_MAX_CHARS);
                return 2;
            }
        } else if (!strcmp(a, "--temperature")) {
            if (parse_double("--temperature", val, 0, &temperature) < 0) return 2;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (parse_seed(val, &seed) < 0) return 2;
            i++;
        } else if (a[0] == '-' || ckpt) {
            fprintf(stderr, "weft sample: error: %s '%s'\n",
                    a[0] == '-' ? "unknown option or missing value" : "unexpected argument", a);
            usage_sample(stderr);
            return 2;
        } else {
            ckpt = a;
        }
    }
    if (!ckpt) {
        usage_sample(stderr);
        return 2;
    }

    struct wf_ckpt_eval ce;
    struct vocab v = {0};
    struct gen s;
    memset(&s, 0, sizeof s);
    float *params = NULL;
    int32_t *ids = NULL, *ctx = NULL;
    long n_ids = 0;
    int rc = wf_ckpt_eval_load(&ce, ckpt, 1);
    if (rc < 0) return wf_cli_fail("sample");
    if (ce.prog.g.v[ce.x_in].dtype != WF_I32) {
        rc = wf_error(WF_ERR_INVALID,
                      "%s: its model '%s' takes f32 samples; weft sample needs a model of token ids (i32), trained on "
                      "a token dataset",
                      ckpt, ce.m.name ? ce.m.name : "model");
        goto done;
    }
    const char *job = wf_st_meta(&ce.f, "weft.job");
    if (job && strstr(job, " labels=class ")) {
        rc = wf_error(WF_ERR_INVALID,
                      "%s: its model '%s' was trained with labels = class: it scores a sequence's class, not the next "
                      "token; weft sample needs a language model",
                      ckpt, ce.m.name ? ce.m.name : "model");
        goto done;
    }
    char path[4200];
    if (!vocab_path) {
        if (!ce.data) {
            rc = wf_error(WF_ERR_NOTFOUND, "%s: no data folder in its metadata ('weft.data'); give --vocab", ckpt);
            goto done;
        }
        snprintf(path, sizeof path, "%s/vocab.txt", ce.data);
        vocab_path = path;
    }
    if ((rc = vocab_load(&v, vocab_path)) < 0) goto done;
    if ((rc = vocab_encode(&v, prompt, &ids, &n_ids)) < 0) goto done;
    if ((rc = gen_init(&s, &ce.m, NULL, &v)) < 0) goto done;
    const struct wf_graph *g = &s.e.prog.g;
    params = wf_aalloc(sizeof(float) * (size_t)s.e.prog.n_param_floats);
    ctx = wf_malloc(sizeof *ctx * (size_t)(n_ids + n));
    if (!params || !ctx) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto done;
    }
    s.e.params = params;
    for (int i = 0; i < g->n_params && rc == WF_OK; i++)
        rc = wf_load_param(&ce.f, g->v[g->params[i]].name, &g->v[g->params[i]], params + s.e.prog.offset[g->params[i]]);
    if (rc < 0) goto done;
    memcpy(ctx, ids, sizeof *ctx * (size_t)n_ids);
    long n_ctx = n_ids;
    if ((rc = gen_run(&s, ctx, &n_ctx, n, temperature, seed, v.pad)) < 0) goto done;
    struct wf_textbuf b = {0};
    fputs(prompt, stdout); /* as given */
    for (long i = n_ids; i < n_ctx; i++)
        vocab_show(&v, ctx[i], 0, &b);
    char *text = NULL;
    size_t len = 0;
    if ((rc = wf_textbuf_take(&b, &text, &len)) < 0) goto done;
    fwrite(text, 1, len, stdout);
    if (!len || text[len - 1] != '\n') fputc('\n', stdout);
    wf_free(text);
done:
    if (rc < 0) wf_cli_fail("sample");
    wf_free(ctx);
    wf_free(ids);
    wf_afree(params);
    gen_free(&s);
    vocab_free(&v);
    wf_ckpt_eval_free(&ce);
    return rc < 0 ? 1 : 0;
}

/* ---- weft train's epoch-end sample ---- */

int wf_cli_epoch_sample(struct wf_trainer *t, char *buf, size_t cap) {
    buf[0] = 0;
    if (t->data.itrain->kind != WF_STORE_TOKENS) return WF_OK;
    char path[4200];
    snprintf(path, sizeof path, "%s/vocab.txt", t->job.data);
    struct vocab v;
    struct gen s;
    memset(&s, 0, sizeof s);
    int32_t ctx[EPOCH_SAMPLE_CHARS];
    long n_ctx = 0;
    int rc = vocab_load(&v, path);
    if (rc < 0) return rc;
    if ((rc = gen_init(&s, &t->model, t->params, &v)) == WF_OK)
        rc = gen_run(&s, ctx, &n_ctx, EPOCH_SAMPLE_CHARS, EPOCH_SAMPLE_TEMPERATURE, t->job.seed, v.pad);
    if (rc == WF_OK) {
        struct wf_textbuf b = {0};
        for (long i = 0; i < n_ctx; i++)
            vocab_show(&v, ctx[i], 1, &b);
        char *text = NULL;
        size_t len;
        if ((rc = wf_textbuf_take(&b, &text, &len)) == WF_OK) snprintf(buf, cap, "%s", text ? text : "");
        wf_free(text);
    }
    gen_free(&s);
    vocab_free(&v);
    return rc;
}
