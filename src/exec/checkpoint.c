/*
 * exec layer: checkpoints. A checkpoint is a safetensors file holding the
 * parameters under their model names, the optimizer state under
 * "optim.<name>.<slot>", and in its metadata the step, the data position,
 * the random-stream position, the canonical model text and the job settings
 * that must not change across a resume. Equal states give equal bytes.
 *
 * Reading trusts nothing in the file: sizes and offsets are the safetensors
 * reader's checks, counts in the metadata are plain decimal without
 * overflow, the model text goes through the parser and graph builder, and
 * every tensor is checked against the shape the model gives it before a
 * byte is copied. `weft eval` checks the checkpoint without a dataset first
 * (wf_ckpt_eval_init, checkpoint.h), then the model's inputs against the
 * dataset's sample shape.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/checkpoint.h"
#include "weft/core.h"
#include "weft/safetensors.h"
#include "weft/train.h"

#include "train_int.h"

static const char *slot_name(const struct wf_job *j, int slot) {
    if (j->optimizer == WF_OPT_SGD) return "momentum_buffer";
    return slot == 0 ? "exp_avg" : "exp_avg_sq";
}

/* The job settings a resumed run must share with the run that wrote it. */
static void job_signature(const struct wf_job *j, char *buf, size_t n) {
    static const char *opt[] = {"sgd", "adam", "adamw"};
    static const char *sch[] = {"constant", "step", "cosine"};
    snprintf(buf, n,
             "seed=%llu batch=%d micro_batches=%d epochs=%d optimizer=%s lr=%.17g momentum=%.17g nesterov=%d "
             "weight_decay=%.17g beta1=%.17g beta2=%.17g eps=%.17g clip_norm=%.17g lr_schedule=%s warmup=%ld "
             "step_size=%ld gamma=%.17g min_lr=%.17g threads=%d",
             (unsigned long long)j->seed, j->batch, j->micro_batches, j->epochs, opt[j->optimizer], j->lr, j->momentum,
             j->nesterov, j->weight_decay, j->beta1, j->beta2, j->eps, j->clip_norm, sch[j->lr_schedule], j->warmup,
             j->step_size, j->gamma, j->min_lr, j->threads);
    /* token data: how samples are cut (absent for images, as before token data existed) */
    if (j->seq_len > 0 && strlen(buf) + 1 < n)
        snprintf(buf + strlen(buf), n - strlen(buf), " seq_len=%d sample=%s labels=%s stride=%d", j->seq_len,
                 j->sample == WF_SAMPLE_SEQUENCE ? "sequence" : "window",
                 j->labels == WF_LABELS_CLASS     ? "class"
                 : j->labels == WF_LABELS_SHIFTED ? "shifted"
                                                  : "next",
                 j->stride > 0 ? j->stride : 1);
    /* the samples a step sees depend on the transforms (absent when there are none, as before they existed) */
    if (j->transforms && j->transforms[0] && strlen(buf) + 1 < n) {
        struct wf_xf_chain ch;
        char text[2048];
        if (wf_xf_parse(&ch, j->transforms) == WF_OK) {
            wf_xf_text(&ch, 0, ch.n, text, sizeof text);
            snprintf(buf + strlen(buf), n - strlen(buf), " transforms=%s", text);
        }
    }
}

int wf_checkpoint_write(const char *path, const struct wf_ckpt_state *cs) {
    const struct wf_graph *g = cs->g;
    const struct wf_job *j = cs->job;
    struct wf_st_writer w;
    wf_st_writer_init(&w);
    int rc = WF_OK;
    for (int i = 0; i < g->n_params && rc == WF_OK; i++) {
        const struct wf_value *v = &g->v[g->params[i]];
        rc = wf_st_writer_add(&w, v->name, WF_F32, v->ndim, v->shape, cs->param[i]);
        const float *const *slots[2] = {cs->opt_a, cs->opt_b};
        for (int s = 0; s < 2 && rc == WF_OK; s++) {
            if (!slots[s]) continue;
            char name[300];
            snprintf(name, sizeof name, "optim.%s.%s", v->name, slot_name(j, s));
            rc = wf_st_writer_add(&w, name, WF_F32, v->ndim, v->shape, slots[s][i]);
        }
    }
    char buf[64], sig[4096];
    job_signature(j, sig, sizeof sig);
#define META(k, fmt, val)                                                                                              \
    do {                                                                                                               \
        snprintf(buf, sizeof buf, fmt, val);                                                                           \
        if (rc == WF_OK) rc = wf_st_writer_meta(&w, k, buf);                                                           \
    } while (0)
    META("weft.format", "%d", 1);
    META("weft.step", "%ld", cs->step);
    META("weft.epoch", "%d", cs->epoch);
    META("weft.epoch_step", "%ld", cs->epoch_step);
    META("weft.rng", "philox4x32-10 seed=%llu", (unsigned long long)j->seed);
#undef META
    if (rc == WF_OK) rc = wf_st_writer_meta(&w, "weft.job", sig);
    if (rc == WF_OK) rc = wf_st_writer_meta(&w, "weft.model", cs->model_text);
    /* the data folder in absolute form, as weft run's coordinator gives it: the same bytes either way */
    char data_abs[PATH_MAX];
    if (rc == WF_OK)
        rc = wf_st_writer_meta(&w, "weft.data", j->data[0] != '/' && realpath(j->data, data_abs) ? data_abs : j->data);
    if (rc == WF_OK && j->transforms && j->transforms[0]) rc = wf_st_writer_meta(&w, "weft.transforms", j->transforms);
    if (rc == WF_OK) rc = wf_st_writer_save(&w, path);
    wf_st_writer_free(&w);
    return rc;
}

int wf_trainer_save(struct wf_trainer *t, const char *path) {
    const struct wf_graph *g = &t->ex.prog.g;
    const float *p[256], *a[256], *b[256];
    for (int i = 0; i < g->n_params; i++) {
        int64_t off = t->ex.prog.offset[g->params[i]];
        p[i] = t->params + off;
        a[i] = t->opt_a ? t->opt_a + off : NULL;
        b[i] = t->opt_b ? t->opt_b + off : NULL;
    }
    struct wf_ckpt_state cs = {.job = &t->job,
                               .model_text = t->model_text,
                               .g = g,
                               .param = p,
                               .opt_a = t->opt_a ? a : NULL,
                               .opt_b = t->opt_b ? b : NULL,
                               .step = t->step,
                               .epoch = t->epoch,
                               .epoch_step = t->epoch_step};
    return wf_checkpoint_write(path, &cs);
}

/* The first "key=value" word in which two signatures differ. */
static void first_difference(const char *x, const char *y, char *a, char *b, size_t n) {
    for (;;) {
        size_t lx = strcspn(x, " "), ly = strcspn(y, " ");
        if (lx != ly || strncmp(x, y, lx) || !x[lx] || !y[ly]) {
            snprintf(a, n, "%.*s", (int)lx, x);
            snprintf(b, n, "%.*s", (int)ly, y);
            return;
        }
        x += lx + 1;
        y += ly + 1;
    }
}

/* A count in plain decimal (no sign, space or overflow) into *out. */
static int parse_count(const char *s, size_t n, long *out) {
    long v = 0;
    if (n == 0 || n > 18) return 0; /* 18 digits fit a 64-bit long */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v > LONG_MAX / 2) return 0; /* leaves room for sums of two counts */
    *out = v;
    return 1;
}

static int meta_long(const struct wf_st_file *f, const char *key, long *out) {
    const char *s = wf_st_meta(f, key);
    if (!s) return wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no '%s' in its metadata)", f->path, key);
    if (!parse_count(s, strlen(s), out))
        return wf_error(WF_ERR_CORRUPT, "%s: metadata '%s' is '%.40s', expected a count", f->path, key, s);
    return WF_OK;
}

static int check_format(const struct wf_st_file *f) {
    const char *s = wf_st_meta(f, "weft.format");
    if (!s) return wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no 'weft.format' in its metadata)", f->path);
    if (strcmp(s, "1"))
        return wf_error(WF_ERR_CORRUPT, "%s: checkpoint format '%.40s', this weft reads format 1", f->path, s);
    return WF_OK;
}

int wf_checkpoint_read(const char *path, const struct wf_job *j, const char *model_text, long steps_per_epoch,
                       const struct wf_graph *g, const int64_t *offset, float *params, float *opt_a, float *opt_b,
                       struct wf_ckpt_pos *pos) {
    struct wf_st_file f;
    int rc = wf_st_load(&f, path);
    if (rc < 0) return rc;
    long step = 0, epoch = 0, epoch_step = 0;
    if ((rc = check_format(&f)) < 0 || (rc = meta_long(&f, "weft.step", &step)) < 0 ||
        (rc = meta_long(&f, "weft.epoch", &epoch)) < 0 || (rc = meta_long(&f, "weft.epoch_step", &epoch_step)) < 0)
        goto done;
    const char *model = wf_st_meta(&f, "weft.model"), *job = wf_st_meta(&f, "weft.job");
    char sig[4096];
    job_signature(j, sig, sizeof sig);
    if (model_text && (!model || strcmp(model, model_text))) {
        rc = wf_error(WF_ERR_INVALID, "%s: was written for a different model than %s", path, j->model);
        goto done;
    }
    if (!job || strcmp(job, sig)) {
        char a[128] = "(none)", b[128] = "";
        first_difference(job ? job : "", sig, a, b, sizeof a);
        rc = wf_error(WF_ERR_INVALID,
                      "%s: was written with different job settings than %s: checkpoint has %s, job has %s", path,
                      j->path, a, b);
        goto done;
    }
    if (epoch_step >= steps_per_epoch || epoch > j->epochs || step != epoch * steps_per_epoch + epoch_step) {
        rc = wf_error(WF_ERR_CORRUPT,
                      "%s: data position step %ld (epoch %ld, step %ld of it) does not fit this job's %ld steps an "
                      "epoch (was the dataset changed?)",
                      path, step, epoch, epoch_step, steps_per_epoch);
        goto done;
    }
    for (int i = 0; g && i < g->n_params && rc == WF_OK; i++) {
        const struct wf_value *v = &g->v[g->params[i]];
        int64_t off = offset[g->params[i]];
        rc = wf_load_param(&f, v->name, v, params + off);
        float *slots[2] = {opt_a, opt_b};
        for (int s = 0; s < 2 && rc == WF_OK; s++) {
            if (!slots[s]) continue;
            char name[300];
            snprintf(name, sizeof name, "optim.%s.%s", v->name, slot_name(j, s));
            rc = wf_load_param(&f, name, v, slots[s] + off);
        }
    }
    if (rc == WF_OK) *pos = (struct wf_ckpt_pos){.step = step, .epoch = (int)epoch, .epoch_step = epoch_step};
done:
    wf_st_free(&f);
    return rc;
}

int wf_trainer_restore(struct wf_trainer *t, const char *path) {
    struct wf_ckpt_pos pos;
    int rc = wf_checkpoint_read(path, &t->job, t->model_text, t->steps_per_epoch, &t->ex.prog.g, t->ex.prog.offset,
                                t->params, t->opt_a, t->opt_b, &pos);
    if (rc < 0) return rc;
    t->step = pos.step;
    t->epoch = pos.epoch;
    t->epoch_step = pos.epoch_step;
    return wf_trainer_feed_from(t, pos.step);
}

/* ---- evaluation ---- */

#define JOB_SIG_MAX 4095 /* bytes of weft.job as the writer makes it (job_signature's buffer) */

/* weft.job: space-separated key=value words, each key once, the ones every
 * weft writes present; its values are compared only on a resume. */
static int check_job_meta(const struct wf_st_file *f) {
    static const char *const need[] = {"seed", "batch", "optimizer"};
    const char *s = wf_st_meta(f, "weft.job");
    if (!s) return wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no 'weft.job' in its metadata)", f->path);
    size_t len = strlen(s);
    if (len > JOB_SIG_MAX)
        return wf_error(WF_ERR_CORRUPT, "%s: metadata 'weft.job' is %zu bytes, more than the %d weft writes", f->path,
                        len, JOB_SIG_MAX);
    const char *key[JOB_SIG_MAX / 2 + 1];
    size_t klen[JOB_SIG_MAX / 2 + 1];
    int n = 0;
    for (const char *p = s; *p;) {
        size_t w = strcspn(p, " ");
        if (w == 0)
            return wf_error(WF_ERR_CORRUPT, "%s: metadata 'weft.job': empty setting at byte %td", f->path, p - s);
        const char *eq = memchr(p, '=', w);
        size_t k = eq ? (size_t)(eq - p) : 0;
        int ok = k > 0;
        for (size_t i = 0; i < k && ok; i++)
            ok = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_';
        if (!ok)
            return wf_error(WF_ERR_CORRUPT, "%s: metadata 'weft.job': '%.*s' is not a key=value setting", f->path,
                            (int)WF_MIN(w, 40), p);
        for (int i = 0; i < n; i++)
            if (klen[i] == k && !memcmp(key[i], p, k))
                return wf_error(WF_ERR_CORRUPT, "%s: metadata 'weft.job': setting '%.*s' given twice", f->path, (int)k,
                                p);
        key[n] = p;
        klen[n++] = k;
        p += w;
        if (*p) p++; /* the space; a second one makes an empty word, refused above */
    }
    for (size_t r = 0; r < WF_ARRAY_LEN(need); r++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++)
            found = klen[i] == strlen(need[r]) && !memcmp(key[i], need[r], klen[i]);
        if (!found) return wf_error(WF_ERR_CORRUPT, "%s: metadata 'weft.job' has no '%s' setting", f->path, need[r]);
    }
    return WF_OK;
}

/* The checks of wf_load_param, without the copy: tensor `name` exists, is
 * F32 and has v's shape (so its bytes are v->numel floats). */
static int check_param(const struct wf_st_file *f, const char *name, const struct wf_value *v) {
    const struct wf_st_tensor *t = wf_st_find(f, name);
    char want[96];
    if (!t)
        return wf_error(WF_ERR_NOTFOUND, "%s: no tensor '%s' (the model needs %s)", f->path, name,
                        wf_shape_str(v, want, sizeof want));
    int ok = t->dtype == WF_F32 && t->ndim == v->ndim && t->nbytes == (size_t)v->numel * sizeof(float);
    for (int i = 0; ok && i < v->ndim; i++)
        ok = t->shape[i] == v->shape[i];
    if (ok) return WF_OK;
    char got[160];
    size_t k = 0;
    wf_appendf(got, sizeof got, &k, "%s[", wf_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim; i++)
        wf_appendf(got, sizeof got, &k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    wf_appendf(got, sizeof got, &k, "]");
    return wf_error(WF_ERR_SHAPE, "%s: tensor '%s' is %s, the model needs %s", f->path, name, got,
                    wf_shape_str(v, want, sizeof want));
}

/* Everything after the safetensors parse: ce->f is loaded. */
static int eval_setup(struct wf_ckpt_eval *ce, int batch) {
    const struct wf_st_file *f = &ce->f;
    const char *path = f->path;
    int rc;
    long epoch, epoch_step;
    if (batch <= 0) return wf_error(WF_ERR_INVALID, "%s: evaluation batch %d, must be positive", path, batch);
    if ((rc = check_format(f)) < 0 || (rc = meta_long(f, "weft.step", &ce->step)) < 0 ||
        (rc = meta_long(f, "weft.epoch", &epoch)) < 0 || (rc = meta_long(f, "weft.epoch_step", &epoch_step)) < 0 ||
        (rc = check_job_meta(f)) < 0)
        return rc;
    const char *text = wf_st_meta(f, "weft.model");
    if (!text) return wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no 'weft.model' in its metadata)", path);
    ce->data = wf_st_meta(f, "weft.data");
    char where[4200];
    snprintf(where, sizeof where, "%s:weft.model", path);
    if ((rc = wf_model_parse(&ce->m, where, text)) < 0) return rc;
    /* the test split goes through the deterministic part of the job's transforms */
    const char *xf = wf_st_meta(f, "weft.transforms");
    if (xf) {
        struct wf_xf_chain ch;
        if ((rc = wf_xf_parse(&ch, xf)) < 0) return wf_error_prefix(rc, "%s: metadata 'weft.transforms'", path);
        wf_xf_text(&ch, 0, ch.n_prefix, ce->prefix, sizeof ce->prefix);
    }
    if ((rc = wf_program_compile(&ce->prog, &ce->m, batch, 0)) < 0) return rc;
    const struct wf_graph *g = &ce->prog.g;
    wf_graph_data_inputs(g, &ce->x_in, &ce->y_in);
    if (ce->x_in < 0 || g->loss < 0)
        return wf_error(WF_ERR_INVALID, "%s: evaluation needs an input for the samples and a scalar f32 loss output",
                        where);
    ce->n_classes = 0; /* no classification loss: no label range to check */
    if (g->logits >= 0) {
        const struct wf_value *lg = &g->v[g->logits];
        if (lg->ndim < 1 || lg->shape[lg->ndim - 1] <= 0 || lg->shape[lg->ndim - 1] > INT_MAX)
            return wf_error(WF_ERR_INVALID, "%s: the logits '%s' have no class dimension", where, lg->name);
        ce->n_classes = (int)lg->shape[lg->ndim - 1];
    }
    for (int i = 0; i < g->n_params; i++)
        if ((rc = check_param(f, g->v[g->params[i]].name, &g->v[g->params[i]])) < 0) return rc;
    return WF_OK;
}

void wf_ckpt_eval_free(struct wf_ckpt_eval *ce) {
    if (!ce) return;
    wf_program_free(&ce->prog);
    wf_model_free(&ce->m);
    wf_st_free(&ce->f);
    memset(ce, 0, sizeof *ce);
}

int wf_ckpt_eval_init(struct wf_ckpt_eval *ce, const char *path, const void *bytes, size_t len, int batch) {
    memset(ce, 0, sizeof *ce);
    int rc = wf_st_parse(&ce->f, path, bytes, len);
    if (rc == WF_OK) rc = eval_setup(ce, batch);
    if (rc) wf_ckpt_eval_free(ce);
    return rc;
}

int wf_ckpt_eval_load(struct wf_ckpt_eval *ce, const char *path, int batch) {
    memset(ce, 0, sizeof *ce);
    int rc = wf_st_load(&ce->f, path);
    if (rc == WF_OK) rc = eval_setup(ce, batch);
    if (rc) wf_ckpt_eval_free(ce);
    return rc;
}

/* An input's shape as the model declares it: "f32[B, 784]". */
static const char *decl_shape(const struct wf_model *m, const struct wf_value *v, char *buf, size_t n) {
    size_t k = 0;
    for (int i = 0; i < m->n; i++) {
        const struct wf_mstmt *s = &m->st[i];
        if (s->kind != WF_MS_INPUT || strcmp(s->name, v->name)) continue;
        wf_appendf(buf, n, &k, "%s[", s->dtype == WF_I32 ? "i32" : "f32");
        for (int d = 0; d < s->ndim; d++)
            if (s->dims[d] == WF_DIM_B)
                wf_appendf(buf, n, &k, "%sB", d ? ", " : "");
            else
                wf_appendf(buf, n, &k, "%s%" PRId64, d ? ", " : "", s->dims[d]);
        wf_appendf(buf, n, &k, "]");
        return buf;
    }
    return wf_shape_str(v, buf, (int)n);
}

/* The dataset's samples must be what the model's inputs hold: the loader
 * writes c*h*w floats and one label per sample into them. */
static int check_inputs(const struct wf_ckpt_eval *ce, const struct wf_graph *g, const struct wf_store_info *in,
                        const char *data) {
    int xi, yi;
    wf_graph_data_inputs(g, &xi, &yi);
    if (xi != ce->x_in || yi != ce->y_in || g->batch <= 0)
        return wf_error(WF_ERR_INTERNAL, "%s: the model's inputs moved between compiles", ce->f.path);
    if (in->kind == WF_STORE_TOKENS || yi < 0 || wf_graph_len_input(g) >= 0) {
        int rc = wf_check_data_inputs(g, in, xi, yi, wf_graph_len_input(g));
        if (rc == WF_OK && yi >= 0 && ce->n_classes > 0 && in->n_classes > ce->n_classes)
            rc = wf_error(WF_ERR_SHAPE, "%s: the model scores %d classes, but %s has ids up to %d", ce->m.path,
                          ce->n_classes, data, in->n_classes - 1);
        return rc;
    }
    const struct wf_value *x = &g->v[xi], *y = &g->v[yi];
    int64_t want = (int64_t)in->c * in->h * in->w;
    char xs[96], ys[96];
    if (x->numel % g->batch || x->numel / g->batch != want || x->shape[0] != g->batch)
        return wf_error(WF_ERR_SHAPE,
                        "%s:%d:%d: input '%s' is %s: %" PRId64 " values per sample, but %s has %d x %d x %d = %" PRId64
                        " per sample",
                        ce->m.path, x->line, x->col, x->name, decl_shape(&ce->m, x, xs, sizeof xs), x->numel / g->batch,
                        in->image_path ? in->image_path : data, in->c, in->h, in->w, want);
    if (y->numel != g->batch || y->shape[0] != g->batch)
        return wf_error(WF_ERR_SHAPE, "%s:%d:%d: input '%s' is %s, but %s has one label per sample (i32[B])",
                        ce->m.path, y->line, y->col, y->name, decl_shape(&ce->m, y, ys, sizeof ys),
                        in->label_path ? in->label_path : data);
    if (ce->n_classes > 0 && in->n_classes > ce->n_classes)
        return wf_error(WF_ERR_SHAPE, "%s: the model scores %d classes, but %s has labels up to %d", ce->m.path,
                        ce->n_classes, in->label_path ? in->label_path : data, in->n_classes - 1);
    return WF_OK;
}

/* How a token checkpoint's samples were cut: seq_len, sample, labels, stride of its 'weft.job'. */
static int token_opts(const struct wf_st_file *f, struct wf_sample_opts *o) {
    const char *s = wf_st_meta(f, "weft.job");
    const char *p = s ? strstr(s, " seq_len=") : NULL;
    char sample[16] = "", labels[16] = "";
    int seq = 0, stride = 0;
    if (!p || sscanf(p, " seq_len=%d sample=%15s labels=%15s stride=%d", &seq, sample, labels, &stride) != 4 ||
        seq < 1 || seq > WF_SEQ_LEN_MAX || stride < 1 || (strcmp(sample, "window") && strcmp(sample, "sequence")) ||
        (strcmp(labels, "next") && strcmp(labels, "shifted") && strcmp(labels, "class")))
        return wf_error(WF_ERR_CORRUPT,
                        "%s: metadata 'weft.job' does not say how token samples are cut "
                        "(seq_len, sample, labels, stride)",
                        f->path);
    *o = (struct wf_sample_opts){.seq_len = seq,
                                 .sample = strcmp(sample, "window") ? WF_SAMPLE_SEQUENCE : WF_SAMPLE_WINDOW,
                                 .labels = !strcmp(labels, "class")     ? WF_LABELS_CLASS
                                           : !strcmp(labels, "shifted") ? WF_LABELS_SHIFTED
                                                                        : WF_LABELS_NEXT,
                                 .stride = stride};
    return WF_OK;
}

int wf_checkpoint_evaluate(const char *ckpt, const char *data_dir, int batch, double *loss, double *acc, long *step,
                           char **model_name) {
    struct wf_ckpt_eval ce;
    struct wf_store *store = NULL;
    struct wf_loader *l = NULL;
    struct wf_exec e, rest;
    float *params = NULL;
    memset(&e, 0, sizeof e);
    memset(&rest, 0, sizeof rest);
    if (batch <= 0) return wf_error(WF_ERR_INVALID, "%s: evaluation batch %d, must be positive", ckpt, batch);
    int rc = wf_ckpt_eval_load(&ce, ckpt, 1); /* everything that needs no data, checked at batch 1 */
    if (rc < 0) return rc;
    const char *data = data_dir ? data_dir : ce.data;
    if (!data) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no 'weft.data' in its metadata); give --data", ckpt);
        goto done;
    }
    *step = ce.step;
    struct wf_job nojob = {0};
    char stage[4096];
    wf_data_stage_dir(&nojob, stage, sizeof stage);
    struct wf_sample_opts so = {0};
    int tokens = wf_store_dir_is_tokens(data);
    if (tokens && (rc = token_opts(&ce.f, &so)) < 0) goto done;
    if ((rc = wf_store_open_opts(&store, data, "test", stage, tokens ? &so : NULL)) < 0) goto done;
    const struct wf_store_info *info = wf_store_info(store);
    int n = info->n;
    if (n <= 0) {
        rc = wf_error(WF_ERR_INVALID, "%s: the test split has no samples", data);
        goto done;
    }
    /* before any memory is sized by the batch, and again below at the batches that run */
    if ((rc = check_inputs(&ce, &ce.prog.g, info, data)) < 0) goto done;
    if ((rc = wf_loader_new(&l, store, ce.prefix, 0, NULL)) < 0) goto done;
    int B = WF_MIN(batch, n);
    if ((rc = wf_exec_init(&e, &ce.m, B, 0, NULL, NULL)) < 0 || (rc = check_inputs(&ce, &e.prog.g, info, data)) < 0)
        goto done;
    params = wf_aalloc(sizeof(float) * (size_t)e.prog.n_param_floats);
    if (!params) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto done;
    }
    e.params = params;
    if (n % B && ((rc = wf_exec_init(&rest, &ce.m, n % B, 0, params, NULL)) < 0 ||
                  (rc = check_inputs(&ce, &rest.prog.g, info, data)) < 0))
        goto done;
    const struct wf_graph *g = &e.prog.g;
    for (int i = 0; i < g->n_params && rc == WF_OK; i++)
        rc = wf_load_param(&ce.f, g->v[g->params[i]].name, &g->v[g->params[i]], params + e.prog.offset[g->params[i]]);
    if (rc == WF_OK) rc = wf_evaluate_split(&e, n % B ? &rest : NULL, l, n, loss, acc);
    if (rc == WF_OK && model_name) *model_name = wf_strdup(ce.m.name ? ce.m.name : "model");
done:
    wf_exec_free(&e);
    wf_exec_free(&rest);
    wf_afree(params);
    wf_loader_free(l);
    wf_store_free(store);
    wf_ckpt_eval_free(&ce);
    return rc;
}
