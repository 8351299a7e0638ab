/*
 * exec: job files — parsing, validation, path resolution and the canonical
 * writer. The key table below is the single list of keys, their types and
 * their ranges; job.h documents the same list for users.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "weft/core.h"
#include "weft/job.h"
#include "weft/lex.h"
#include "weft/loader.h"

#define WF_JOB_MAX_SPLIT 64

enum key_type { KT_PATH, KT_INT, KT_LONG, KT_U64, KT_DOUBLE, KT_BOOL, KT_ENUM, KT_LIST, KT_STR };

enum key_id {
    K_MODEL,
    K_DATA,
    K_OUT,
    K_INIT,
    K_EPOCHS,
    K_BATCH,
    K_MICRO_BATCHES,
    K_SEED,
    K_THREADS,
    K_MAX_STEPS,
    K_OPTIMIZER,
    K_LR,
    K_MOMENTUM,
    K_NESTEROV,
    K_WEIGHT_DECAY,
    K_BETA1,
    K_BETA2,
    K_EPS,
    K_CLIP_NORM,
    K_LR_SCHEDULE,
    K_WARMUP,
    K_STEP_SIZE,
    K_GAMMA,
    K_MIN_LR,
    K_CHECKPOINT_EVERY,
    K_EVAL_BATCH,
    K_SPLIT,
    K_PP,
    K_DP,
    K_PIPELINE,
    K_TRANSFORMS,
    K_CACHE,
    K_CACHE_MB,
    K_PLACEMENT,
    K_LOADER_WORKERS,
    K_PREFETCH,
    K_DATA_STAGE,
    K_RESUME,
    K_SEQ_LEN,
    K_SAMPLE,
    K_LABELS,
    K_STRIDE,
    K_COUNT
};

static const char *const opt_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const lr_names[] = {"constant", "step", "cosine", NULL};
static const char *const pipe_names[] = {"1f1b", "gpipe", NULL};
static const char *const place_names[] = {"auto", "cpu", "device", NULL};
static const char *const sample_names[] = {"window", "sequence", NULL};       /* enum wf_sample_mode */
static const char *const labels_names[] = {"next", "shifted", "class", NULL}; /* enum wf_label_mode */

/* Integers: lo..hi. Doubles: lo < or <= x < or <= hi (hi = 0: unbounded). */
struct key_def {
    const char *name;
    int type;                 /* enum key_type */
    double lo, hi;            /* range */
    int lo_open, hi_open;     /* doubles: 1 if the bound is excluded */
    const char *range;        /* the range in words, for messages */
    const char *const *names; /* enum values */
};

static const struct key_def keys[K_COUNT] = {
    [K_MODEL] = {"model", KT_PATH, 0, 0, 0, 0, NULL, NULL},
    [K_DATA] = {"data", KT_PATH, 0, 0, 0, 0, NULL, NULL},
    [K_OUT] = {"out", KT_PATH, 0, 0, 0, 0, NULL, NULL},
    [K_INIT] = {"init", KT_PATH, 0, 0, 0, 0, NULL, NULL},
    [K_EPOCHS] = {"epochs", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
    [K_BATCH] = {"batch", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
    [K_MICRO_BATCHES] = {"micro_batches", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
    [K_SEED] = {"seed", KT_U64, 0, 0, 0, 0, ">= 0", NULL},
    [K_THREADS] = {"threads", KT_INT, 1, 256, 0, 0, "in 1..256", NULL},
    [K_MAX_STEPS] = {"max_steps", KT_LONG, 0, (double)LONG_MAX, 0, 0, ">= 0", NULL},
    [K_OPTIMIZER] = {"optimizer", KT_ENUM, 0, 0, 0, 0, "sgd, adam or adamw", opt_names},
    [K_LR] = {"lr", KT_DOUBLE, 0, 0, 1, 0, "> 0", NULL},
    [K_MOMENTUM] = {"momentum", KT_DOUBLE, 0, 1, 0, 1, "in [0, 1)", NULL},
    [K_NESTEROV] = {"nesterov", KT_BOOL, 0, 0, 0, 0, NULL, NULL},
    [K_WEIGHT_DECAY] = {"weight_decay", KT_DOUBLE, 0, 0, 0, 0, ">= 0", NULL},
    [K_BETA1] = {"beta1", KT_DOUBLE, 0, 1, 0, 1, "in [0, 1)", NULL},
    [K_BETA2] = {"beta2", KT_DOUBLE, 0, 1, 0, 1, "in [0, 1)", NULL},
    [K_EPS] = {"eps", KT_DOUBLE, 0, 0, 1, 0, "> 0", NULL},
    [K_CLIP_NORM] = {"clip_norm", KT_DOUBLE, 0, 0, 0, 0, ">= 0", NULL},
    [K_LR_SCHEDULE] = {"lr_schedule", KT_ENUM, 0, 0, 0, 0, "constant, step or cosine", lr_names},
    [K_WARMUP] = {"warmup", KT_LONG, 0, (double)LONG_MAX, 0, 0, ">= 0", NULL},
    [K_STEP_SIZE] = {"step_size", KT_LONG, 1, (double)LONG_MAX, 0, 0, ">= 1", NULL},
    [K_GAMMA] = {"gamma", KT_DOUBLE, 0, 0, 1, 0, "> 0", NULL},
    [K_MIN_LR] = {"min_lr", KT_DOUBLE, 0, 0, 0, 0, ">= 0", NULL},
    [K_CHECKPOINT_EVERY] = {"checkpoint_every", KT_LONG, 0, (double)LONG_MAX, 0, 0, ">= 0", NULL},
    [K_EVAL_BATCH] = {"eval_batch", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
    [K_SPLIT] = {"split", KT_LIST, 0, 0, 0, 0, NULL, NULL},
    [K_PP] = {"pp", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
    [K_DP] = {"dp", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
    [K_PIPELINE] = {"pipeline", KT_ENUM, 0, 0, 0, 0, "1f1b or gpipe", pipe_names},
    [K_TRANSFORMS] = {"transforms", KT_STR, 0, 0, 0, 0, NULL, NULL},
    [K_CACHE] = {"cache", KT_STR, 0, 0, 0, 0, NULL, NULL},
    [K_CACHE_MB] = {"cache_mb", KT_INT, 0, 1 << 24, 0, 0, "in 0..16777216", NULL},
    [K_PLACEMENT] = {"placement", KT_ENUM, 0, 0, 0, 0, "auto, cpu or device", place_names},
    [K_LOADER_WORKERS] = {"loader_workers", KT_INT, 1, 64, 0, 0, "in 1..64", NULL},
    [K_PREFETCH] = {"prefetch", KT_INT, 1, 64, 0, 0, "in 1..64", NULL},
    [K_DATA_STAGE] = {"data_stage", KT_PATH, 0, 0, 0, 0, NULL, NULL},
    [K_RESUME] = {"resume", KT_PATH, 0, 0, 0, 0, NULL, NULL},
    [K_SEQ_LEN] = {"seq_len", KT_INT, 1, WF_SEQ_LEN_MAX, 0, 0, "in 1..1048576", NULL},
    [K_SAMPLE] = {"sample", KT_ENUM, 0, 0, 0, 0, "window or sequence", sample_names},
    [K_LABELS] = {"labels", KT_ENUM, 0, 0, 0, 0, "next, shifted or class", labels_names},
    [K_STRIDE] = {"stride", KT_INT, 1, INT_MAX, 0, 0, ">= 1", NULL},
};

struct seen {
    int line, col;   /* of the key; 0 if not given */
    int vline, vcol; /* of the value */
};

struct parser {
    struct wf_lex lx;
    struct wf_job *j;
    const char *dir; /* the job file's folder, "" for the current one */
    struct seen at[K_COUNT];
};

static int nomem(struct parser *ps) { return wf_error(WF_ERR_NOMEM, "%s: out of memory", ps->lx.path); }
static struct wf_tok *tok(struct parser *ps) { return &ps->lx.tok; }

void wf_job_free(struct wf_job *j) {
    if (!j) return;
    wf_free(j->path);
    wf_free(j->model);
    wf_free(j->data);
    wf_free(j->out);
    wf_free(j->init);
    for (int k = 0; k < j->n_split; k++)
        wf_free(j->split[k]);
    wf_free(j->split);
    wf_free(j->pipeline);
    wf_free(j->transforms);
    wf_free(j->cache);
    wf_free(j->data_stage);
    wf_free(j->resume);
    memset(j, 0, sizeof *j);
}

/* dir + "/" + v, or v itself when absolute or dir is empty. */
static char *resolve(const char *dir, const char *v) {
    if (v[0] == '/' || !dir[0]) return wf_strdup(v);
    size_t nd = strlen(dir), nv = strlen(v);
    int slash = dir[nd - 1] != '/';
    char *p = wf_malloc(nd + (size_t)slash + nv + 1);
    if (!p) return NULL;
    memcpy(p, dir, nd);
    if (slash) p[nd] = '/';
    memcpy(p + nd + (size_t)slash, v, nv + 1);
    return p;
}

/* "runs/<stem>" where stem is the job file's name without its extension. */
static char *default_out(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) n = (size_t)(dot - base);
    if (n == 0 || strcmp(path, "<memory>") == 0) {
        base = "job";
        n = 3;
    }
    char *p = wf_malloc(5 + n + 1);
    if (!p) return NULL;
    memcpy(p, "runs/", 5);
    memcpy(p + 5, base, n);
    p[5 + n] = 0;
    return p;
}

static int type_error(struct parser *ps, const char *what, int key) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s for %s", what, keys[key].name);
    return wf_lex_expected(&ps->lx, tok(ps), buf);
}

static int range_error(struct parser *ps, int key) {
    char buf[96];
    snprintf(buf, sizeof buf, "%s %s", keys[key].name, keys[key].range);
    return wf_lex_expected(&ps->lx, tok(ps), buf);
}

static int parse_split(struct parser *ps) {
    struct wf_job *j = ps->j;
    struct wf_tok *t = tok(ps);
    int rc, open_line = t->line, open_col = t->col;
    if (!wf_tok_is(t, '[')) return type_error(ps, "[name, ...]", K_SPLIT);
    if ((rc = wf_lex_next(&ps->lx))) return rc;
    if (wf_tok_is(t, ']')) return WF_OK;
    for (;;) {
        if (t->kind != WF_TOK_IDENT || !wf_lex_is_ident(t->text)) return wf_lex_expected(&ps->lx, t, "tensor name");
        for (int k = 0; k < j->n_split; k++)
            if (strcmp(j->split[k], t->text) == 0)
                return wf_lex_error(&ps->lx, t->line, t->col, "'%s' listed twice in split", t->text);
        if (j->n_split >= WF_JOB_MAX_SPLIT)
            return wf_lex_error(&ps->lx, t->line, t->col, "split too long (at most %d names)", WF_JOB_MAX_SPLIT);
        if (!j->split) {
            j->split = wf_calloc(WF_JOB_MAX_SPLIT, sizeof *j->split);
            if (!j->split) return nomem(ps);
        }
        if (!(j->split[j->n_split] = wf_strdup(t->text))) return nomem(ps);
        j->n_split++;
        if ((rc = wf_lex_next(&ps->lx))) return rc;
        if (wf_tok_is(t, ']')) return WF_OK;
        if (!wf_tok_is(t, ',')) {
            char what[96];
            snprintf(what, sizeof what, "',' or ']' to close the list opened at %d:%d", open_line, open_col);
            return wf_lex_expected(&ps->lx, t, what);
        }
        if ((rc = wf_lex_next(&ps->lx))) return rc;
    }
}

static int set_path(struct parser *ps, int key) {
    struct wf_tok *t = tok(ps);
    struct wf_job *j = ps->j;
    if (t->kind == WF_TOK_EOF || t->kind == WF_TOK_NEWLINE || t->kind == WF_TOK_PUNCT)
        return type_error(ps, "path", key);
    if (!t->text[0]) return type_error(ps, "non-empty path", key);
    char *p = resolve(ps->dir, t->text);
    if (!p) return nomem(ps);
    char **dst = key == K_MODEL    ? &j->model
                 : key == K_DATA   ? &j->data
                 : key == K_OUT    ? &j->out
                 : key == K_INIT   ? &j->init
                 : key == K_RESUME ? &j->resume
                                   : &j->data_stage;
    struct wf_job_loc *loc = key == K_MODEL    ? &j->model_at
                             : key == K_DATA   ? &j->data_at
                             : key == K_OUT    ? &j->out_at
                             : key == K_INIT   ? &j->init_at
                             : key == K_RESUME ? &j->resume_at
                                               : &j->data_stage_at;
    wf_free(*dst);
    *dst = p;
    loc->line = t->line;
    loc->col = t->col;
    return WF_OK;
}

/* The current token is the value's first token. */
static int set_value(struct parser *ps, int key) {
    const struct key_def *d = &keys[key];
    struct wf_tok *t = tok(ps);
    struct wf_job *j = ps->j;
    switch (d->type) {
    case KT_PATH: return set_path(ps, key);
    case KT_LIST: return parse_split(ps);
    case KT_STR: {
        if (t->kind != WF_TOK_STRING && t->kind != WF_TOK_IDENT) return type_error(ps, "quoted string", key);
        if (key == K_CACHE && strcmp(t->text, "memory") && strcmp(t->text, "none")) {
            char host[64]; /* the Redis cache takes host names of up to 63 bytes */
            int port;
            if (wf_job_cache_redis(t->text, host, sizeof host, &port) < 0)
                return wf_lex_error(&ps->lx, t->line, t->col,
                                    "expected cache = memory, none or \"redis://HOST:PORT\", got '%s'", t->text);
        }
        if (key == K_TRANSFORMS) { /* refused here, with the job file's position, not later on every worker */
            struct wf_xf_chain ch;
            if (wf_xf_parse(&ch, t->text) < 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", wf_errmsg());
                return wf_lex_error(&ps->lx, t->line, t->col, "bad transforms (%s)", msg);
            }
        }
        char *p = wf_strdup(t->text);
        if (!p) return nomem(ps);
        char **dst = key == K_TRANSFORMS ? &j->transforms : &j->cache;
        wf_free(*dst);
        *dst = p;
        return WF_OK;
    }
    case KT_BOOL:
        if (t->kind != WF_TOK_BOOL) return type_error(ps, "true or false", key);
        j->nesterov = (int)t->i;
        return WF_OK;
    case KT_ENUM: {
        int v = -1;
        for (int k = 0; t->kind == WF_TOK_IDENT && d->names[k]; k++)
            if (strcmp(t->text, d->names[k]) == 0) v = k;
        if (v < 0) return range_error(ps, key);
        if (key == K_OPTIMIZER)
            j->optimizer = v;
        else if (key == K_LR_SCHEDULE)
            j->lr_schedule = v;
        else if (key == K_PLACEMENT)
            j->placement = v;
        else if (key == K_SAMPLE)
            j->sample = v;
        else if (key == K_LABELS) {
            j->labels = v;
            j->labels_at.line = ps->at[K_LABELS].line;
            j->labels_at.col = ps->at[K_LABELS].col;
        } else {
            char *p = wf_strdup(d->names[v]);
            if (!p) return nomem(ps);
            wf_free(j->pipeline);
            j->pipeline = p;
        }
        return WF_OK;
    }
    case KT_U64:
        if (t->kind != WF_TOK_INT) return type_error(ps, "integer", key);
        if (!t->big && t->i < 0) return range_error(ps, key);
        j->seed = t->u;
        return WF_OK;
    case KT_INT:
    case KT_LONG: {
        if (t->kind != WF_TOK_INT) return type_error(ps, "integer", key);
        if (t->big || (double)t->i < d->lo || (double)t->i > d->hi) return range_error(ps, key);
        int64_t v = t->i;
        switch (key) {
        case K_EPOCHS: j->epochs = (int)v; break;
        case K_BATCH: j->batch = (int)v; break;
        case K_MICRO_BATCHES: j->micro_batches = (int)v; break;
        case K_THREADS: j->threads = (int)v; break;
        case K_MAX_STEPS: j->max_steps = (long)v; break;
        case K_WARMUP: j->warmup = (long)v; break;
        case K_STEP_SIZE: j->step_size = (long)v; break;
        case K_CHECKPOINT_EVERY: j->checkpoint_every = (long)v; break;
        case K_EVAL_BATCH: j->eval_batch = (int)v; break;
        case K_PP: j->pp = (int)v; break;
        case K_DP: j->dp = (int)v; break;
        case K_CACHE_MB: j->cache_mb = (int)v; break;
        case K_LOADER_WORKERS: j->loader_workers = (int)v; break;
        case K_PREFETCH: j->prefetch = (int)v; break;
        case K_SEQ_LEN:
            j->seq_len = (int)v;
            j->seq_len_at.line = t->line;
            j->seq_len_at.col = t->col;
            break;
        case K_STRIDE: j->stride = (int)v; break;
        }
        return WF_OK;
    }
    case KT_DOUBLE: {
        if (t->kind != WF_TOK_INT && t->kind != WF_TOK_FLOAT) return type_error(ps, "number", key);
        double v = t->f;
        int ok = isfinite(v) && (d->lo_open ? v > d->lo : v >= d->lo);
        if (d->hi != 0) ok = ok && (d->hi_open ? v < d->hi : v <= d->hi);
        if (!ok) return range_error(ps, key);
        switch (key) {
        case K_LR: j->lr = v; break;
        case K_MOMENTUM: j->momentum = v; break;
        case K_WEIGHT_DECAY: j->weight_decay = v; break;
        case K_BETA1: j->beta1 = v; break;
        case K_BETA2: j->beta2 = v; break;
        case K_EPS: j->eps = v; break;
        case K_CLIP_NORM: j->clip_norm = v; break;
        case K_GAMMA: j->gamma = v; break;
        case K_MIN_LR: j->min_lr = v; break;
        }
        return WF_OK;
    }
    }
    return wf_error(WF_ERR_INTERNAL, "job: bad key type");
}

static int unknown_key(struct parser *ps) {
    char list[512];
    size_t o = 0;
    list[0] = 0;
    for (int k = 0; k < K_COUNT && o < sizeof list; k++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", k ? ", " : "", keys[k].name);
    const struct wf_tok *t = tok(ps);
    return wf_lex_error(&ps->lx, t->line, t->col, "unknown key '%s' (valid keys: %s)", t->text, list);
}

/* One `key = value` line; the current token is the key. */
static int parse_line(struct parser *ps) {
    struct wf_tok *t = tok(ps);
    int rc, key = -1;
    if (t->kind != WF_TOK_IDENT) return wf_lex_expected(&ps->lx, t, "key");
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(t->text, keys[k].name) == 0) key = k;
    if (key < 0) return unknown_key(ps);
    struct seen *s = &ps->at[key];
    if (s->line)
        return wf_lex_error(&ps->lx, t->line, t->col, "duplicate key '%s' (first at %s:%d:%d)", t->text, ps->lx.path,
                            s->line, s->col);
    s->line = t->line;
    s->col = t->col;
    if ((rc = wf_lex_next(&ps->lx))) return rc;
    if (!wf_tok_is(t, '=')) {
        char what[64];
        snprintf(what, sizeof what, "'=' after '%s'", keys[key].name);
        return wf_lex_expected(&ps->lx, t, what);
    }
    ps->lx.path_words = 1;
    rc = wf_lex_next(&ps->lx);
    if (!rc) {
        s->vline = t->line;
        s->vcol = t->col;
        if (wf_tok_eol(t))
            rc = wf_lex_expected(&ps->lx, t, "value");
        else
            rc = set_value(ps, key);
    }
    ps->lx.path_words = 0;
    if (!rc) rc = wf_lex_next(&ps->lx);
    if (!rc && !wf_tok_eol(t))
        rc = wf_lex_expected(&ps->lx, t,
                             keys[key].type == KT_PATH ? "end of line (quote a path with spaces)" : "end of line");
    return rc;
}

/* The token-data keys against each other and against transforms. */
static int check_tokens(struct parser *ps) {
    struct wf_job *j = ps->j;
    static const int only_tokens[] = {K_SAMPLE, K_LABELS, K_STRIDE};
    for (size_t k = 0; k < WF_ARRAY_LEN(only_tokens); k++) {
        const struct seen *s = &ps->at[only_tokens[k]];
        if (s->line && !j->seq_len)
            return wf_lex_error(&ps->lx, s->line, s->col, "'%s' applies to token data only: set seq_len too",
                                keys[only_tokens[k]].name);
    }
    if (!ps->at[K_LABELS].line) j->labels = j->sample == WF_SAMPLE_SEQUENCE ? WF_LABELS_SHIFTED : WF_LABELS_NEXT;
    if (j->sample == WF_SAMPLE_SEQUENCE && j->labels == WF_LABELS_NEXT) {
        const struct seen *s = &ps->at[K_LABELS];
        return wf_lex_error(&ps->lx, s->vline, s->vcol,
                            "labels = next needs sample = window (a sequence is labelled per token, labels = shifted, "
                            "or by its class, labels = class)");
    }
    if (j->sample == WF_SAMPLE_WINDOW && j->labels == WF_LABELS_CLASS) {
        const struct seen *s = &ps->at[K_LABELS];
        return wf_lex_error(&ps->lx, s->vline, s->vcol,
                            "labels = class needs sample = sequence (each sequence has a class, a window none)");
    }
    if (j->sample == WF_SAMPLE_SEQUENCE && ps->at[K_STRIDE].line) {
        const struct seen *s = &ps->at[K_STRIDE];
        return wf_lex_error(&ps->lx, s->line, s->col, "stride applies to sample = window only");
    }
    const struct seen *tr = &ps->at[K_TRANSFORMS];
    if (j->seq_len && tr->line && j->transforms) {
        struct wf_xf_chain ch;
        if (wf_xf_parse(&ch, j->transforms) == WF_OK && ch.n > 0)
            return wf_lex_error(&ps->lx, tr->line, tr->col,
                                "transforms do not apply to token data (seq_len is set): token ids pass untransformed");
        wf_error_clear();
    }
    return WF_OK;
}

void wf_job_sample_opts(const struct wf_job *j, struct wf_sample_opts *o) {
    *o = (struct wf_sample_opts){.seq_len = j->seq_len, .sample = j->sample, .labels = j->labels, .stride = j->stride};
}

/* Checks that need the whole file. */
static int check_job(struct parser *ps) {
    struct wf_job *j = ps->j;
    if (!ps->at[K_MODEL].line) return wf_error(WF_ERR_PARSE, "%s: missing required key 'model'", ps->lx.path);
    if (!ps->at[K_DATA].line) return wf_error(WF_ERR_PARSE, "%s: missing required key 'data'", ps->lx.path);
    if (j->batch % j->micro_batches != 0) {
        const struct seen *s = &ps->at[K_MICRO_BATCHES];
        return wf_lex_error(&ps->lx, s->vline, s->vcol, "expected micro_batches dividing batch (%d), got %d", j->batch,
                            j->micro_batches);
    }
    if (j->lr_schedule == WF_LR_STEP && !ps->at[K_STEP_SIZE].line) {
        const struct seen *s = &ps->at[K_LR_SCHEDULE];
        return wf_lex_error(&ps->lx, s->vline, s->vcol, "lr_schedule step requires key 'step_size'");
    }
    return check_tokens(ps);
}

static int set_defaults(struct wf_job *j, const char *path) {
    j->epochs = 1;
    j->batch = 64;
    j->micro_batches = 1;
    j->threads = 1;
    j->optimizer = WF_OPT_SGD;
    j->lr = 0.01;
    j->beta1 = 0.9;
    j->beta2 = 0.999;
    j->eps = 1e-8;
    j->lr_schedule = WF_LR_CONSTANT;
    j->gamma = 0.1;
    j->eval_batch = 1000;
    j->pp = 1;
    j->dp = 1;
    j->path = wf_strdup(path);
    j->pipeline = wf_strdup("1f1b");
    j->transforms = wf_strdup("");
    j->cache = wf_strdup("memory");
    j->cache_mb = 1024;
    j->loader_workers = 1;
    j->prefetch = 3;
    j->sample = WF_SAMPLE_WINDOW;
    j->labels = WF_LABELS_NEXT;
    j->stride = 1;
    j->out = default_out(path);
    return j->path && j->pipeline && j->transforms && j->cache && j->out
               ? WF_OK
               : wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
}

int wf_job_parse(struct wf_job *j, const char *path, const char *text) {
    memset(j, 0, sizeof *j);
    if (!path) path = "<memory>";
    int rc = set_defaults(j, path);
    if (rc) {
        wf_job_free(j);
        return rc;
    }
    /* the folder of the job file: "" when it has none */
    const char *slash = strcmp(path, "<memory>") ? strrchr(path, '/') : NULL;
    size_t nd = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 0;
    char *dir = wf_malloc(nd + 1);
    struct parser *ps = wf_calloc(1, sizeof *ps); /* the lexer holds a 4 KiB token */
    if (!dir || !ps) {
        wf_free(dir);
        wf_free(ps);
        wf_job_free(j);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(dir, path, nd);
    dir[nd] = 0;
    ps->j = j;
    ps->dir = dir;
    wf_lex_init(&ps->lx, j->path, text);
    rc = wf_lex_next(&ps->lx);
    while (!rc && tok(ps)->kind != WF_TOK_EOF) {
        if (tok(ps)->kind == WF_TOK_NEWLINE)
            rc = wf_lex_next(&ps->lx);
        else
            rc = parse_line(ps);
    }
    if (!rc) rc = check_job(ps);
    wf_free(ps);
    wf_free(dir);
    if (rc) wf_job_free(j);
    return rc;
}

int wf_job_load(struct wf_job *j, const char *path) {
    memset(j, 0, sizeof *j);
    char *text;
    int rc = wf_text_read(path, &text, NULL); /* a NUL or bad UTF-8 is an error at its line:col */
    if (rc) return rc;
    rc = wf_job_parse(j, path, text);
    wf_free(text);
    return rc;
}

static int needs_quotes(const char *s) {
    if (!s[0]) return 1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("_./-+", c);
        if (!word) return 1;
    }
    return 0;
}

static int write_path(struct wf_textbuf *b, const char *key, const char *v) {
    if (!v) return WF_OK;
    for (const char *s = v; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return wf_error(WF_ERR_INVALID, "job write: control character in %s path", key);
    if (strlen(v) > WF_LEX_MAX_TEXT) return wf_error(WF_ERR_INVALID, "job write: %s path too long", key);
    if (!needs_quotes(v)) {
        wf_textbuf_printf(b, "%s = %s\n", key, v);
        return WF_OK;
    }
    wf_textbuf_printf(b, "%s = \"", key);
    for (const char *s = v; *s; s++)
        wf_textbuf_printf(b, "%s%c", *s == '"' || *s == '\\' ? "\\" : "", *s);
    wf_textbuf_printf(b, "\"\n");
    return WF_OK;
}

static const char *enum_name(const char *const *names, int n, int v) { return v >= 0 && v < n ? names[v] : "?"; }

int wf_job_write(const struct wf_job *j, char **text, size_t *len) {
    struct wf_textbuf b = {0};
    char f[32];
    int rc;
    *text = NULL;
    if (len) *len = 0;
    if ((rc = write_path(&b, "model", j->model)) || (rc = write_path(&b, "data", j->data)) ||
        (rc = write_path(&b, "out", j->out)) || (rc = write_path(&b, "init", j->init)) ||
        (rc = write_path(&b, "data_stage", j->data_stage)) || (rc = write_path(&b, "resume", j->resume))) {
        wf_free(b.p);
        return rc;
    }
    wf_textbuf_printf(&b, "epochs = %d\n", j->epochs);
    wf_textbuf_printf(&b, "batch = %d\n", j->batch);
    wf_textbuf_printf(&b, "micro_batches = %d\n", j->micro_batches);
    wf_textbuf_printf(&b, "seed = %llu\n", (unsigned long long)j->seed);
    wf_textbuf_printf(&b, "threads = %d\n", j->threads);
    wf_textbuf_printf(&b, "max_steps = %ld\n", j->max_steps);
    wf_textbuf_printf(&b, "optimizer = %s\n", enum_name(opt_names, 3, j->optimizer));
    wf_textbuf_printf(&b, "lr = %s\n", wf_lex_format_double(j->lr, f));
    wf_textbuf_printf(&b, "momentum = %s\n", wf_lex_format_double(j->momentum, f));
    wf_textbuf_printf(&b, "nesterov = %s\n", j->nesterov ? "true" : "false");
    wf_textbuf_printf(&b, "weight_decay = %s\n", wf_lex_format_double(j->weight_decay, f));
    wf_textbuf_printf(&b, "beta1 = %s\n", wf_lex_format_double(j->beta1, f));
    wf_textbuf_printf(&b, "beta2 = %s\n", wf_lex_format_double(j->beta2, f));
    wf_textbuf_printf(&b, "eps = %s\n", wf_lex_format_double(j->eps, f));
    wf_textbuf_printf(&b, "clip_norm = %s\n", wf_lex_format_double(j->clip_norm, f));
    wf_textbuf_printf(&b, "lr_schedule = %s\n", enum_name(lr_names, 3, j->lr_schedule));
    wf_textbuf_printf(&b, "warmup = %ld\n", j->warmup);
    if (j->step_size > 0) wf_textbuf_printf(&b, "step_size = %ld\n", j->step_size);
    wf_textbuf_printf(&b, "gamma = %s\n", wf_lex_format_double(j->gamma, f));
    wf_textbuf_printf(&b, "min_lr = %s\n", wf_lex_format_double(j->min_lr, f));
    wf_textbuf_printf(&b, "checkpoint_every = %ld\n", j->checkpoint_every);
    wf_textbuf_printf(&b, "eval_batch = %d\n", j->eval_batch);
    wf_textbuf_printf(&b, "split = [");
    for (int k = 0; k < j->n_split; k++)
        wf_textbuf_printf(&b, "%s%s", k ? ", " : "", j->split[k]);
    wf_textbuf_printf(&b, "]\n");
    wf_textbuf_printf(&b, "pp = %d\n", j->pp);
    wf_textbuf_printf(&b, "dp = %d\n", j->dp);
    wf_textbuf_printf(&b, "pipeline = %s\n", j->pipeline ? j->pipeline : "1f1b");
    if ((rc = write_path(&b, "transforms", j->transforms ? j->transforms : "")) ||
        (rc = write_path(&b, "cache", j->cache ? j->cache : "memory"))) {
        wf_free(b.p);
        return rc;
    }
    wf_textbuf_printf(&b, "cache_mb = %d\n", j->cache_mb);
    wf_textbuf_printf(&b, "placement = %s\n", enum_name(place_names, 3, j->placement));
    wf_textbuf_printf(&b, "loader_workers = %d\n", j->loader_workers);
    wf_textbuf_printf(&b, "prefetch = %d\n", j->prefetch);
    if (j->seq_len > 0) { /* image jobs keep their canonical text as it was */
        wf_textbuf_printf(&b, "seq_len = %d\n", j->seq_len);
        wf_textbuf_printf(&b, "sample = %s\n", enum_name(sample_names, 2, j->sample));
        wf_textbuf_printf(&b, "labels = %s\n", enum_name(labels_names, 3, j->labels));
        if (j->sample == WF_SAMPLE_WINDOW) wf_textbuf_printf(&b, "stride = %d\n", j->stride);
    }
    return wf_textbuf_take(&b, text, len);
}

static int check_one(const struct wf_job *j, const char *what, const char *p, const struct wf_job_loc *at, int dir) {
    struct stat st;
    char where[64] = "";
    if (at->line) snprintf(where, sizeof where, ":%d:%d", at->line, at->col);
    const char *job = j->path ? j->path : "<memory>";
    if (!p) return wf_error(WF_ERR_INVALID, "%s: no %s given", job, what);
    if (stat(p, &st) != 0)
        return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s%s: %s '%s' not found: %s", job, where, what,
                        p, strerror(errno));
    if (dir && !S_ISDIR(st.st_mode))
        return wf_error(WF_ERR_INVALID, "%s%s: %s '%s' is not a directory", job, where, what, p);
    if (!dir && !S_ISREG(st.st_mode))
        return wf_error(WF_ERR_INVALID, "%s%s: %s '%s' is not a regular file", job, where, what, p);
    return WF_OK;
}

int wf_job_check_files(const struct wf_job *j) {
    int rc = check_one(j, "model file", j->model, &j->model_at, 0);
    if (!rc) rc = check_one(j, "data folder", j->data, &j->data_at, 1);
    if (!rc && j->init) rc = check_one(j, "init file", j->init, &j->init_at, 0);
    return rc;
}

int wf_job_cache_redis(const char *spec, char *host, size_t cap, int *port) {
    const char *p = strncmp(spec, "redis://", 8) ? NULL : spec + 8;
    const char *colon = p ? strrchr(p, ':') : NULL;
    if (!colon || colon == p || (size_t)(colon - p) >= cap) return WF_ERR_INVALID;
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || v < 1 || v > 65535) return WF_ERR_INVALID;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = 0;
    *port = (int)v;
    return WF_OK;
}
