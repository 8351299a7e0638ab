/*
 * exec layer: checkpoints. A checkpoint is a safetensors file holding the
 * parameters under their model names, the optimizer state under
 * "optim.<name>.<slot>", and in its metadata the step, the data position,
 * the random-stream position, the canonical model text and the job settings
 * that must not change across a resume. Equal states give equal bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (rc == WF_OK) rc = wf_st_writer_meta(&w, "weft.data", j->data);
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

static int meta_long(const struct wf_st_file *f, const char *key, long *out) {
    const char *s = wf_st_meta(f, key);
    char *end;
    if (!s) return wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no '%s' in its metadata)", f->path, key);
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < 0)
        return wf_error(WF_ERR_CORRUPT, "%s: metadata '%s' is '%s', expected a count", f->path, key, s);
    *out = v;
    return WF_OK;
}

int wf_checkpoint_read(const char *path, const struct wf_job *j, const char *model_text, long steps_per_epoch,
                       const struct wf_graph *g, const int64_t *offset, float *params, float *opt_a, float *opt_b,
                       struct wf_ckpt_pos *pos) {
    struct wf_st_file f;
    int rc = wf_st_load(&f, path);
    if (rc < 0) return rc;
    long step = 0, epoch = 0, epoch_step = 0;
    if ((rc = meta_long(&f, "weft.step", &step)) < 0 || (rc = meta_long(&f, "weft.epoch", &epoch)) < 0 ||
        (rc = meta_long(&f, "weft.epoch_step", &epoch_step)) < 0)
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

int wf_checkpoint_evaluate(const char *ckpt, const char *data_dir, int batch, double *loss, double *acc, long *step,
                           char **model_name) {
    struct wf_st_file f;
    struct wf_model m;
    struct wf_store *store = NULL;
    struct wf_loader *l = NULL;
    struct wf_exec e, rest;
    float *params = NULL;
    memset(&m, 0, sizeof m);
    memset(&e, 0, sizeof e);
    memset(&rest, 0, sizeof rest);
    int rc = wf_st_load(&f, ckpt);
    if (rc < 0) return rc;
    const char *text = wf_st_meta(&f, "weft.model");
    const char *data = data_dir ? data_dir : wf_st_meta(&f, "weft.data");
    if (!text || !data) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: not a weft checkpoint (no model or data in its metadata)", ckpt);
        goto done;
    }
    if ((rc = meta_long(&f, "weft.step", step)) < 0) goto done;
    char where[4200];
    snprintf(where, sizeof where, "%s:weft.model", ckpt);
    if ((rc = wf_model_parse(&m, where, text)) < 0) goto done;
    /* the test split through the deterministic part of the job's transforms */
    struct wf_job nojob = {0};
    char stage[4096], prefix[2048] = "";
    wf_data_stage_dir(&nojob, stage, sizeof stage);
    const char *xf = wf_st_meta(&f, "weft.transforms");
    if (xf) {
        struct wf_xf_chain ch;
        if ((rc = wf_xf_parse(&ch, xf)) < 0) goto done;
        wf_xf_text(&ch, 0, ch.n_prefix, prefix, sizeof prefix);
    }
    if ((rc = wf_store_open(&store, data, "test", stage)) < 0 || (rc = wf_loader_new(&l, store, prefix, 0, NULL)) < 0)
        goto done;
    int n = wf_store_info(store)->n;
    int B = WF_MIN(batch, n);
    if ((rc = wf_exec_init(&e, &m, B, 0, NULL, NULL)) < 0) goto done;
    params = wf_aalloc(sizeof(float) * (size_t)e.prog.n_param_floats);
    if (!params) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto done;
    }
    e.params = params;
    if (n % B && (rc = wf_exec_init(&rest, &m, n % B, 0, params, NULL)) < 0) goto done;
    const struct wf_graph *g = &e.prog.g;
    for (int i = 0; i < g->n_params && rc == WF_OK; i++)
        rc = wf_load_param(&f, g->v[g->params[i]].name, &g->v[g->params[i]], params + e.prog.offset[g->params[i]]);
    if (rc == WF_OK) rc = wf_evaluate_split(&e, n % B ? &rest : NULL, l, n, loss, acc);
    if (rc == WF_OK && model_name) *model_name = wf_strdup(m.name ? m.name : "model");
done:
    wf_exec_free(&e);
    wf_exec_free(&rest);
    wf_afree(params);
    wf_loader_free(l);
    wf_store_free(store);
    wf_model_free(&m);
    wf_st_free(&f);
    return rc;
}
