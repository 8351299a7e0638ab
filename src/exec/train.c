/*
 * exec layer: the training loop of one process — data order, micro-batches,
 * exact gradient sums, clipping, optimizer, schedule, evaluation, metrics.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/safetensors.h"
#include "weft/step.h"
#include "weft/train.h"

#include "train_int.h"

double wf_lr_at(const struct wf_job *j, long step, long total) {
    double base = j->lr;
    if (j->warmup > 0 && step < j->warmup) return base * (double)(step + 1) / (double)j->warmup;
    switch (j->lr_schedule) {
    case WF_LR_STEP: return base * pow(j->gamma, (double)(step / (j->step_size > 0 ? j->step_size : 1)));
    case WF_LR_COSINE: {
        long T = total - j->warmup, t = step - j->warmup;
        if (T <= 0) return base;
        return j->min_lr + 0.5 * (base - j->min_lr) * (1.0 + cos(M_PI * (double)t / (double)T));
    }
    default: return base;
    }
}

/* ---- parameters ---- */

void wf_init_param(const struct wf_value *v, float *p, uint64_t seed) {
    struct wf_rng r;
    wf_rng_init(&r, seed, wf_hash64(v->name, strlen(v->name), 0x494E4954));
    long n = (long)v->numel;
    switch (v->init) {
    case WF_INIT_FANIN_UNIFORM: {
        float b = (float)(1.0 / sqrt(v->init_arg > 0 ? v->init_arg : 1.0));
        for (long i = 0; i < n; i++)
            p[i] = (2.0f * wf_rng_uniform(&r) - 1.0f) * b;
        break;
    }
    case WF_INIT_NORMAL:
        for (long i = 0; i < n; i++)
            p[i] = wf_rng_normal(&r) * (float)v->init_arg;
        break;
    case WF_INIT_ONES:
        for (long i = 0; i < n; i++)
            p[i] = 1.0f;
        break;
    default: memset(p, 0, sizeof(float) * (size_t)n); break;
    }
}

/* Copies tensor `name` of file f into dst after checking dtype and shape. */
int wf_load_param(const struct wf_st_file *f, const char *name, const struct wf_value *v, float *dst) {
    const struct wf_st_tensor *t = wf_st_find(f, name);
    char s[96];
    if (!t)
        return wf_error(WF_ERR_NOTFOUND, "%s: no tensor '%s' (the model needs %s)", f->path, name,
                        wf_shape_str(v, s, sizeof s));
    int ok = t->dtype == WF_F32 && t->ndim == v->ndim;
    for (int i = 0; ok && i < v->ndim; i++)
        ok = t->shape[i] == v->shape[i];
    if (!ok) {
        char got[128];
        int k = snprintf(got, sizeof got, "%s[", wf_dtype_name(t->dtype));
        for (int i = 0; i < t->ndim && k < (int)sizeof got; i++)
            k += snprintf(got + k, sizeof got - (size_t)k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (k < (int)sizeof got) snprintf(got + k, sizeof got - (size_t)k, "]");
        return wf_error(WF_ERR_SHAPE, "%s: tensor '%s' is %s, the model needs %s", f->path, name, got,
                        wf_shape_str(v, s, sizeof s));
    }
    memcpy(dst, t->data, t->nbytes);
    return WF_OK;
}

int wf_check_data_inputs(const struct wf_graph *g, const struct wf_store_info *in, int x, int y, int len) {
    char s[96];
    const char *what = in->kind == WF_STORE_TOKENS ? "token ids" : "images";
    const struct wf_value *v = x >= 0 ? &g->v[x] : NULL; /* a pipeline stage may have no sample input */
    long per = v ? (long)(v->numel / g->batch) : 0;
    if (v && (v->dtype != in->x_dtype || per != in->x_per || v->ndim < 1 || v->shape[0] != g->batch))
        return wf_error(WF_ERR_SHAPE,
                        "%s:%d:%d: input '%s' is %s, but the samples of %s are %s: %s[B, ...] with %lld values each",
                        g->path, v->line, v->col, v->name, wf_shape_str(v, s, sizeof s), in->image_path, what,
                        in->x_dtype == WF_I32 ? "i32" : "f32", (long long)in->x_per);
    if (y >= 0) {
        const struct wf_value *w = &g->v[y];
        if (w->dtype != WF_I32 || w->numel != (int64_t)g->batch * in->y_per || w->shape[0] != g->batch)
            return wf_error(WF_ERR_SHAPE, "%s:%d:%d: input '%s' is %s, but the dataset has %lld i32 label%s a sample",
                            g->path, w->line, w->col, w->name, wf_shape_str(w, s, sizeof s), (long long)in->y_per,
                            in->y_per == 1 ? "" : "s");
    }
    if (len >= 0) {
        const struct wf_value *w = &g->v[len];
        if (!in->has_len)
            return wf_error(WF_ERR_INVALID,
                            "%s:%d:%d: input '%s' would take sequence lengths, but the dataset gives none "
                            "(sample = sequence)",
                            g->path, w->line, w->col, w->name);
        if (w->dtype != WF_I32 || w->numel != g->batch)
            return wf_error(WF_ERR_SHAPE, "%s:%d:%d: input '%s' is %s; sequence lengths are i32[B]", g->path, w->line,
                            w->col, w->name, wf_shape_str(w, s, sizeof s));
    }
    return WF_OK;
}

static int find_inputs(struct wf_trainer *t) {
    const struct wf_graph *g = &t->ex.prog.g;
    wf_graph_data_inputs(g, &t->x_in, &t->y_in);
    t->len_in = wf_graph_len_input(g);
    if (t->x_in < 0) return wf_error(WF_ERR_INVALID, "%s: the model needs an input for the dataset's samples", g->path);
    int rc = wf_check_data_inputs(g, t->data.itrain, t->x_in, t->y_in, t->len_in);
    if (rc < 0) return rc;
    if (g->loss < 0) return wf_error(WF_ERR_INVALID, "%s: the model has no scalar loss output", g->path);
    return WF_OK;
}

int wf_opt_slots(const struct wf_job *j) {
    if (j->optimizer == WF_OPT_SGD) return j->momentum > 0 ? 1 : 0;
    return 2;
}

int wf_trainer_init(struct wf_trainer *t, const char *job_path, const char *resume) {
    memset(t, 0, sizeof *t);
    int rc;
    if ((rc = wf_job_load(&t->job, job_path)) < 0) return rc;
    const struct wf_job *j = &t->job;
    if ((rc = wf_job_check_files(j)) < 0) goto fail;
    if ((rc = wf_model_load(&t->model, j->model)) < 0) goto fail;
    size_t len;
    if ((rc = wf_model_write(&t->model, &t->model_text, &len)) < 0) goto fail;
    if ((rc = wf_data_open(&t->data, j)) < 0) goto fail;
    int n_train = t->data.itrain->n, n_test = t->data.itest->n;
    wf_blas_set_threads(j->threads);

    int K = j->micro_batches, mb = j->batch / K;
    /* the plan sizes the parameter vectors; they are bound before any run */
    if ((rc = wf_exec_init(&t->ex, &t->model, mb, 1, NULL, NULL)) < 0) goto fail;
    t->n_params = t->ex.prog.n_param_floats;
    size_t pbytes = sizeof(float) * (size_t)t->n_params;
    if ((rc = wf_mem_check_params(&t->ex.prog, t->model.path, "the parameters, their gradients and optimizer state",
                                  pbytes * (size_t)(2 + wf_opt_slots(j)) + (K > 1 ? 2 * pbytes : 0))) < 0)
        goto fail;
    t->params = wf_aalloc(pbytes);
    t->grads = wf_aalloc(pbytes);
    if (wf_opt_slots(j) >= 1) t->opt_a = wf_aalloc(pbytes);
    if (wf_opt_slots(j) >= 2) t->opt_b = wf_aalloc(pbytes);
    if (K > 1) t->acc = wf_aalloc(sizeof(int64_t) * (size_t)t->n_params);
    if (!t->params || !t->grads || (wf_opt_slots(j) >= 1 && !t->opt_a) || (wf_opt_slots(j) >= 2 && !t->opt_b) ||
        (K > 1 && !t->acc)) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory for %lld parameters", (long long)t->n_params);
        goto fail;
    }
    t->ex.params = t->params;
    t->ex.grads = t->grads;
    if ((rc = find_inputs(t)) < 0) goto fail;
    /* the step: one stage, one replica, no links */
    t->st = (struct wf_step){.ex = &t->ex,
                             .job = j,
                             .params = t->params,
                             .grads = t->grads,
                             .opt_a = t->opt_a,
                             .opt_b = t->opt_b,
                             .acc = t->acc,
                             .n_params = t->n_params,
                             .S = 1,
                             .K = K,
                             .nk = K,
                             .sched = WF_SCHED_1F1B,
                             .train_bwd = 1,
                             .in_v = -1,
                             .out_v = -1,
                             .x_in = t->x_in,
                             .y_in = t->y_in,
                             .len_in = t->len_in};
    if ((rc = wf_step_init(&t->st)) < 0) goto fail;
    int eb = WF_MIN(j->eval_batch, n_test);
    if ((rc = wf_exec_init(&t->eval, &t->model, eb, 0, t->params, NULL)) < 0) goto fail;
    if (n_test % eb) {
        if ((rc = wf_exec_init(&t->eval_rest, &t->model, n_test % eb, 0, t->params, NULL)) < 0) goto fail;
        t->has_eval_rest = 1;
    }
    /* every program that is fed checks its inputs: a dimension fixed to the train batch fails here */
    for (int k = 0; k < 1 + t->has_eval_rest; k++) {
        const struct wf_graph *eg = k ? &t->eval_rest.prog.g : &t->eval.prog.g;
        int ex_, ey_;
        wf_graph_data_inputs(eg, &ex_, &ey_);
        if ((rc = wf_check_data_inputs(eg, t->data.itest, ex_, ey_, wf_graph_len_input(eg))) < 0) goto fail;
    }
    t->steps_per_epoch = n_train / j->batch;
    if (t->steps_per_epoch < 1) {
        rc =
            wf_error(WF_ERR_INVALID, "%s: batch %d is larger than the %d training samples", j->path, j->batch, n_train);
        goto fail;
    }
    const struct wf_graph *g = &t->ex.prog.g;
    for (int i = 0; i < g->n_params; i++) {
        const struct wf_value *v = &g->v[g->params[i]];
        wf_init_param(v, t->params + t->ex.prog.offset[g->params[i]], j->seed);
    }
    if (j->init) {
        struct wf_st_file f;
        if ((rc = wf_st_load(&f, j->init)) < 0) goto fail;
        for (int i = 0; i < g->n_params && rc == WF_OK; i++) {
            const struct wf_value *v = &g->v[g->params[i]];
            rc = wf_load_param(&f, v->name, v, t->params + t->ex.prog.offset[g->params[i]]);
        }
        wf_st_free(&f);
        if (rc < 0) goto fail;
    }
    if ((rc = wf_mkdir_p(j->out)) < 0) goto fail;
    if (wf_remove_stale_tmp(j->out, NULL) < 0) WF_LOGW("train", "%s", wf_errmsg()); /* best effort */
    size_t n = strlen(j->out) + 64;
    t->ckpt_path = wf_malloc(n);
    if (!t->ckpt_path) {
        rc = wf_error(WF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    snprintf(t->ckpt_path, n, "%s/checkpoint.safetensors", j->out);
    if (!resume) resume = j->resume; /* a job may name its checkpoint (weft run --resume writes it there) */
    if (resume && (rc = wf_trainer_restore(t, resume)) < 0) goto fail;
    if (!t->feed && (rc = wf_trainer_feed_from(t, t->step)) < 0) goto fail;
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", j->out);
    t->metrics = fopen(mpath, resume ? "a" : "w");
    if (!t->metrics) {
        rc = wf_error(WF_ERR_IO, "%s: cannot open for writing", mpath);
        goto fail;
    }
    return WF_OK;
fail:
    wf_trainer_free(t);
    return rc;
}

void wf_trainer_free(struct wf_trainer *t) {
    if (!t) return;
    if (t->metrics) fclose(t->metrics);
    wf_step_free(&t->st);
    wf_exec_free(&t->ex);
    wf_exec_free(&t->eval);
    wf_exec_free(&t->eval_rest);
    wf_afree(t->params);
    wf_afree(t->grads);
    wf_afree(t->opt_a);
    wf_afree(t->opt_b);
    wf_afree(t->acc);
    wf_feeder_free(t->feed);
    wf_free(t->ckpt_path);
    wf_free(t->model_text);
    wf_data_close(&t->data);
    wf_model_free(&t->model);
    wf_job_free(&t->job);
    memset(t, 0, sizeof *t);
}

/* ---- one step ---- */

int wf_trainer_feed_from(struct wf_trainer *t, long step) {
    wf_feeder_free(t->feed);
    t->feed = NULL;
    return wf_data_feeder(&t->data, &t->job, step, 0, t->job.batch, 0, &t->feed);
}

void wf_feed_micro_batch(struct wf_exec *e, const struct wf_feed_batch *b, int x, int y, int len, int k, int mb) {
    size_t xs = (size_t)b->x_per * 4, ys = (size_t)b->y_per * 4; /* f32 and i32 are 4 bytes */
    size_t at = (size_t)k * (size_t)mb;
    if (x >= 0 && b->xv) memcpy(wf_exec_ptr(e, x), (const char *)b->xv + at * xs, xs * (size_t)mb);
    if (y >= 0 && b->y) memcpy(wf_exec_ptr(e, y), (const char *)b->y + at * ys, ys * (size_t)mb);
    if (len >= 0 && b->len) memcpy(wf_exec_ptr(e, len), b->len + at, sizeof(int32_t) * (size_t)mb);
}

int wf_fixed_add(int64_t *acc, const float *g, int64_t n, int K, int first, int64_t base) {
    const double scale = (double)(1ull << WF_GRAD_FIXED_SHIFT);
    /* K sums of values below lim stay below 2^62 */
    const double lim = 4.6e18 / K;
    int bad = 0;
    /* one branch-free pass (it vectorizes); the rare bad element is found afterwards */
    if (first)
        for (int64_t i = 0; i < n; i++) {
            double x = (double)g[i] * scale;
            bad |= !(fabs(x) < lim);
            acc[i] = (int64_t)x;
        }
    else
        for (int64_t i = 0; i < n; i++) {
            double x = (double)g[i] * scale;
            bad |= !(fabs(x) < lim);
            acc[i] += (int64_t)x;
        }
    if (bad)
        for (int64_t i = 0; i < n; i++)
            if (!(fabs((double)g[i] * scale) < lim))
                return wf_error(WF_ERR_RANGE, "gradient element %lld is %g: non-finite or too large to sum exactly",
                                (long long)(base + i), (double)g[i]);
    return WF_OK;
}

void wf_fixed_to_float(float *g, const int64_t *acc, int64_t n) {
    const double inv = 1.0 / (double)(1ull << WF_GRAD_FIXED_SHIFT);
    for (int64_t i = 0; i < n; i++)
        g[i] = (float)((double)acc[i] * inv);
}

void wf_update_param(const struct wf_job *j, float *p, const float *g, float *a, float *b, long n, double lr,
                     long step) {
    if (j->optimizer == WF_OPT_SGD)
        wf_sgd_update(p, g, a, n, (float)lr, (float)j->momentum, (float)j->weight_decay, j->nesterov, step);
    else
        wf_adam_update(p, g, a, b, n, (float)lr, (float)j->beta1, (float)j->beta2, (float)j->eps,
                       (float)j->weight_decay, j->optimizer == WF_OPT_ADAMW, step);
}

int wf_trainer_step(struct wf_trainer *t, double *loss_out) {
    const struct wf_job *j = &t->job;
    struct wf_feed_batch b;
    int rc = wf_feeder_next(t->feed, &b);
    if (rc < 0) return rc;
    if (b.n != j->batch || b.step != t->step)
        return wf_error(WF_ERR_INTERNAL, "the feeder handed step %ld (%d samples) for step %ld", b.step, b.n, t->step);
    t->data_wait_s += b.wait_s;
    t->last_wait_s = b.wait_s;
    t->step_lr = wf_lr_at(j, t->step, t->steps_per_epoch * j->epochs);
    double loss = 0;
    if ((rc = wf_step_run(&t->st, t->step, t->step_lr, &b, &loss)) < 0) return rc;
    if (!isfinite(loss))
        return wf_error(WF_ERR_RANGE, "the loss became %g at step %ld (epoch %d); try a lower learning rate", loss,
                        t->step + 1, t->epoch + 1);
    t->step++;
    t->epoch_step++;
    *loss_out = loss;
    return WF_OK;
}

/* ---- evaluation ---- */

/* The value whose rows accuracy counts and how it counts them: a metric output (`acc = accuracy(logits,
 * y)`, `output loss, acc`), else the classification loss's logits; -1 when the model has no accuracy. */
static int acc_source(const struct wf_graph *g, int *metric, int64_t *rows) {
    *metric = -1;
    for (int i = 0; i < g->n_outputs; i++) {
        int v = g->outputs[i];
        if (v == g->loss || g->v[v].producer < 0) continue;
        const struct wf_node *n = &g->n[g->v[v].producer];
        if (!(wf_op_get(n->op)->flags & WF_OPF_METRIC) || n->n_in < 1) continue;
        const struct wf_value *lg = &g->v[n->in[0]];
        *metric = v;
        *rows = lg->numel / (lg->ndim ? lg->shape[lg->ndim - 1] : 1);
        return n->in[0];
    }
    if (g->logits >= 0 && g->labels >= 0) {
        const struct wf_value *lg = &g->v[g->logits];
        *rows = lg->numel / (lg->ndim ? lg->shape[lg->ndim - 1] : 1);
        return g->logits;
    }
    return -1;
}

int64_t wf_eval_rows_per_sample(const struct wf_graph *g) {
    int metric;
    int64_t rows = 0;
    return acc_source(g, &metric, &rows) >= 0 && g->batch > 0 ? rows / g->batch : 0;
}

int wf_eval_tally(const struct wf_exec *e, int B, double *loss_sum, long *correct, int *has_acc) {
    const struct wf_graph *g = &e->prog.g;
    if (g->loss < 0) return wf_error(WF_ERR_INVALID, "%s: evaluation needs a scalar loss output", g->path);
    *loss_sum += (double)*(const float *)wf_exec_ptr(e, g->loss) * B;
    int metric;
    int64_t rows = 0;
    int lg = acc_source(g, &metric, &rows);
    if (lg < 0) return WF_OK;
    if (metric >= 0) { /* the share right times the rows is the count, exactly (rows < 2^24 of a float) */
        *correct += (long)llround((double)*(const float *)wf_exec_ptr(e, metric) * (double)rows);
    } else {
        if (!wf_exec_ptr(e, g->labels)) return WF_OK;
        const struct wf_value *v = &g->v[lg];
        int V = (int)v->shape[v->ndim - 1];
        *correct += wf_argmax_correct(wf_exec_ptr(e, lg), wf_exec_ptr(e, g->labels), (int)rows, V);
    }
    *has_acc = 1;
    return WF_OK;
}

static int eval_chunk(struct wf_exec *e, struct wf_loader *l, const uint32_t *ids, int B, double *loss, long *correct,
                      int *has_acc) {
    const struct wf_graph *g = &e->prog.g;
    int xi, yi, li = wf_graph_len_input(g);
    wf_graph_data_inputs(g, &xi, &yi);
    if (xi < 0) return wf_error(WF_ERR_INVALID, "%s: evaluation needs the model's sample input", g->path);
    int rc = wf_eval_fetch(l, ids, B, wf_exec_ptr(e, xi), yi >= 0 ? wf_exec_ptr(e, yi) : NULL,
                           li >= 0 ? wf_exec_ptr(e, li) : NULL);
    if (rc < 0) return rc;
    if ((rc = wf_exec_forward(e)) < 0) return rc;
    return wf_eval_tally(e, B, loss, correct, has_acc);
}

int wf_eval_fetch(struct wf_loader *l, const uint32_t *ids, int B, void *x, int32_t *y, int32_t *len) {
    const struct wf_store_info *in = wf_store_info(wf_loader_store(l));
    int32_t *ys = y, *ls = len;
    if (!ys) ys = wf_malloc(sizeof(int32_t) * (size_t)B * (size_t)in->y_per); /* labels the model does not read */
    if (!ls && in->has_len) ls = wf_malloc(sizeof(int32_t) * (size_t)B);
    int rc = !ys || (in->has_len && !ls) ? wf_error(WF_ERR_NOMEM, "out of memory")
                                         : wf_loader_fetch_any(l, ids, B, 0, x, ys, ls);
    if (ys != y) wf_free(ys);
    if (ls != len) wf_free(ls);
    return rc;
}

int wf_evaluate_split(struct wf_exec *e, struct wf_exec *rest, struct wf_loader *l, int n, double *loss, double *acc) {
    uint32_t *ids = wf_malloc(sizeof(uint32_t) * (size_t)n);
    if (!ids) return wf_error(WF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        ids[i] = (uint32_t)i;
    int B = e->prog.g.batch, i = 0, rc = WF_OK;
    double sum = 0;
    long correct = 0;
    int has_acc = 0;
    for (; rc == WF_OK && i + B <= n; i += B)
        rc = eval_chunk(e, l, ids + i, B, &sum, &correct, &has_acc);
    if (rc == WF_OK && i < n) {
        if (!rest || rest->prog.g.batch != n - i)
            rc = wf_error(WF_ERR_INTERNAL, "no executor for the last %d samples", n - i);
        else
            rc = eval_chunk(rest, l, ids + i, n - i, &sum, &correct, &has_acc);
    }
    wf_free(ids);
    if (rc < 0) return rc;
    *loss = sum / n;
    int64_t rps = wf_eval_rows_per_sample(&e->prog.g); /* rows a sample: 1, or T per-token labels */
    *acc = has_acc && rps > 0 ? (double)correct / ((double)n * (double)rps) : NAN;
    return WF_OK;
}

int wf_trainer_evaluate(struct wf_trainer *t, double *loss, double *acc) {
    return wf_evaluate_split(&t->eval, t->has_eval_rest ? &t->eval_rest : NULL, t->data.ltest, t->data.itest->n, loss,
                             acc);
}

/* ---- the loop ---- */

/* ,"units":[...]: each unit's skip-region counters so far (live, computed and all (t, sample) pairs), or "" */
static const char *units_json(const struct wf_exec *e, char *buf, size_t n) {
    struct wf_unit_counts uc[16];
    int nu = wf_exec_unit_counts(e, uc, 16);
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < nu && i < 16; i++) {
        if (!uc[i].total) continue;
        wf_appendf(buf, n, &k, "%s{\"unit\":\"%s\",\"live\":%llu,\"computed\":%llu,\"skipped\":%llu,\"pairs\":%llu}",
                   k ? "," : ",\"units\":[", uc[i].name, (unsigned long long)uc[i].live,
                   (unsigned long long)uc[i].computed, (unsigned long long)(uc[i].total - uc[i].computed),
                   (unsigned long long)uc[i].total);
    }
    if (k) wf_appendf(buf, n, &k, "]");
    return buf;
}

int wf_trainer_run(struct wf_trainer *t, long stop_after, wf_progress_fn fn, void *ud) {
    const struct wf_job *j = &t->job;
    long total = t->steps_per_epoch * j->epochs;
    if (j->max_steps > 0 && j->max_steps < total) total = j->max_steps;
    long stop_at = stop_after > 0 ? WF_MIN(total, t->step + stop_after) : total;
    double t0 = wf_now(), last_report = 0, last_flush = t0;
    long steps0 = t->step;
    /* the data side over a sliding window: wait share and cache hit rate */
    double win_t = t0, win_wait = t->data_wait_s, wait_frac = 0;
    struct wf_feeder_stats fst;
    char data_json[1024], units_buf[2048];
    int rc = WF_OK;
    while (t->step < stop_at) {
        double loss = 0;
        if ((rc = wf_trainer_step(t, &loss)) < 0) break;
        t->last_loss = loss;
        double now = wf_now();
        double sps = (double)(t->step - steps0) * j->batch / (now - t0 + 1e-12);
        if (now - win_t > 1.0) {
            wait_frac = (t->data_wait_s - win_wait) / (now - win_t);
            win_t = now;
            win_wait = t->data_wait_s;
        }
        wf_feeder_stats(t->feed, &fst);
        struct wf_loader_stats ls;
        wf_loader_stats(t->data.ltrain, &ls);
        double hit_rate = ls.hits + ls.misses ? (double)ls.hits / (double)(ls.hits + ls.misses) : 0;
        fprintf(t->metrics,
                "{\"step\":%ld,\"epoch\":%d,\"loss\":%.9g,\"lr\":%.9g,\"samples_per_s\":%.1f,\"time_s\":%.4f,"
                "\"data_wait_s\":%.6f,\"placement\":\"%s\",\"cache_hit_rate\":%.4f,\"queue_occupancy\":%.3f,"
                "\"device_util\":%.3f}\n",
                t->step, t->epoch + 1, loss, wf_lr_at(j, t->step - 1, t->steps_per_epoch * j->epochs), sps, now - t0,
                t->last_wait_s, wf_place_name(fst.placement), hit_rate, fst.occupancy, fst.device_util);
        int epoch_end = t->epoch_step == t->steps_per_epoch;
        struct wf_progress p = {.epoch = t->epoch,
                                .epochs = j->epochs,
                                .step = t->step,
                                .steps_total = total,
                                .epoch_step = t->epoch_step,
                                .epoch_steps = t->steps_per_epoch,
                                .loss = loss,
                                .samples_per_s = sps,
                                .eta_s = (double)(total - t->step) * j->batch / (sps > 0 ? sps : 1),
                                .lr = wf_lr_at(j, t->step - 1, t->steps_per_epoch * j->epochs),
                                .data_wait_frac = wait_frac,
                                .hit_rate = hit_rate,
                                .placement = wf_place_name(fst.placement)};
        if (epoch_end) {
            double el, ea;
            if ((rc = wf_trainer_evaluate(t, &el, &ea)) < 0) break;
            p.epoch_done = 1;
            p.test_loss = el;
            p.test_acc = ea;
            wf_data_stats_json(&t->data, t->feed, data_json, sizeof data_json);
            char acc[32] = "null"; /* a model without accuracy */
            if (ea == ea) snprintf(acc, sizeof acc, "%.6f", ea);
            fprintf(t->metrics,
                    "{\"event\":\"epoch\",\"epoch\":%d,\"step\":%ld,\"train_loss\":%.9g,\"test_loss\":%.9g,"
                    "\"test_acc\":%s,\"samples_per_s\":%.1f,\"peak_rss_kb\":%ld,%s%s}\n",
                    t->epoch + 1, t->step, loss, el, acc, sps, wf_peak_rss_kb(), data_json,
                    units_json(&t->ex, units_buf, sizeof units_buf));
            t->epoch++;
            t->epoch_step = 0;
        }
        if (epoch_end || now - last_flush > 1.0) { /* metrics are visible within a second */
            fflush(t->metrics);
            last_flush = now;
        }
        int ckpt = epoch_end && j->checkpoint_every == 0;
        if (j->checkpoint_every > 0 && t->step % j->checkpoint_every == 0) ckpt = 1;
        if (ckpt && t->step < stop_at && (rc = wf_trainer_save(t, t->ckpt_path)) < 0) break;
        if (fn && (epoch_end || now - last_report > 0.1 || t->step == stop_at)) {
            fn(ud, &p);
            last_report = now;
        }
    }
    if (units_json(&t->ex, units_buf, sizeof units_buf)[0]) /* the skip regions' counters of the whole run */
        fprintf(t->metrics, "{\"event\":\"units\",\"step\":%ld%s}\n", t->step, units_buf);
    fflush(t->metrics);
    if (rc == WF_OK) rc = wf_trainer_save(t, t->ckpt_path);
    return rc;
}
