/*
 * exec layer: the training step of a pipeline stage, which `weft train`
 * runs as the one-stage, one-replica case (include/weft/step.h).
 */
#include <math.h>
#include <string.h>

#include "weft/core.h"
#include "weft/kernels.h"
#include "weft/step.h"
#include "weft/train.h"

#define MAX_K 256 /* micro-batches a step (the coordinator refuses more) */

int wf_step_init(struct wf_step *st) {
    const struct wf_graph *g = &st->ex->prog.g;
    if (st->K < 1 || st->K > MAX_K || st->nk < 1 || st->nk > st->K || st->k0 < 0 || st->k0 + st->nk > st->K)
        return wf_error(WF_ERR_INVALID, "%s: a step of %d micro-batches cannot run micro-batches %d..%d", g->path,
                        st->K, st->k0, st->k0 + st->nk - 1);
    if (st->K > 1 && !st->acc)
        return wf_error(WF_ERR_INTERNAL, "%s: %d micro-batches need the exact sums", g->path, st->K);
    st->ready = wf_calloc((size_t)g->n_params + 1, 1);
    st->clip_part = wf_calloc((size_t)g->n_params + 1, sizeof(double));
    st->losses = wf_calloc((size_t)st->nk + 1, sizeof(double));
    if (!st->ready || !st->clip_part || !st->losses) {
        wf_step_free(st);
        return wf_error(WF_ERR_NOMEM, "out of memory");
    }
    /* With one micro-batch, no clipping and no replicas a parameter's update needs only its own
     * gradient: it is applied as soon as the node producing that gradient ran, while it is still
     * in cache. Nothing later in the step reads the parameter (all its uses are done when its
     * final gradient exists), so the result is bit-identical. */
    st->fused = st->K == 1 && !(st->job->clip_norm > 0) && !st->links.reduce_submit && st->train_bwd;
    return WF_OK;
}

void wf_step_free(struct wf_step *st) {
    if (!st) return;
    wf_free(st->ready);
    wf_free(st->clip_part);
    wf_free(st->losses);
    st->ready = NULL;
    st->clip_part = NULL;
    st->losses = NULL;
}

static void update_param(struct wf_step *st, int i, double lr, long step) {
    const struct wf_graph *g = &st->ex->prog.g;
    const struct wf_value *v = &g->v[g->params[i]];
    if (v->grad < 0) return;
    int64_t off = st->ex->prog.offset[g->params[i]];
    wf_update_param(st->job, st->params + off, st->grads + off, st->opt_a ? st->opt_a + off : NULL,
                    st->opt_b ? st->opt_b + off : NULL, (long)v->numel, lr, step);
}

/* After each node of a backward: a parameter gradient it finished is applied at once (fused) or
 * added to the exact sum while it is still in cache. On the last micro-batch of a data-parallel
 * step, finished tails of the flat vector go to the reduction while the backward goes on. */
static void on_node(void *ud, int node) {
    struct wf_step *st = ud;
    const struct wf_graph *g = &st->ex->prog.g;
    int any = 0;
    for (int i = 0; i < g->n_params; i++) {
        int gv = g->v[g->params[i]].grad;
        if (gv < 0 || g->v[gv].producer != node) continue;
        if (st->fused) {
            update_param(st, i, st->cur_lr, st->cur_step + 1);
            continue;
        }
        int64_t off = st->ex->prog.offset[g->params[i]];
        int rc =
            wf_fixed_add(st->acc + off, st->grads + off, (int64_t)g->v[g->params[i]].numel, st->K, st->acc_first, off);
        if (rc < 0 && !st->reduce_rc) st->reduce_rc = rc;
        st->ready[i] = 1;
        any = 1;
    }
    if (!any || !st->links.reduce_submit || !st->acc_last) return;
    int lo = st->submitted_hi;
    while (lo > 0 && (st->ready[lo - 1] || g->v[g->params[lo - 1]].grad < 0))
        lo--;
    int64_t from = lo < g->n_params ? st->ex->prog.offset[g->params[lo]] : st->n_params;
    int64_t to = st->submitted_hi < g->n_params ? st->ex->prog.offset[g->params[st->submitted_hi]] : st->n_params;
    if ((to - from) * 8 >= (256 << 10) || (lo == 0 && to > from)) {
        int rc = st->links.reduce_submit(st->links.ud, st->acc + from, (size_t)(to - from));
        if (rc < 0 && !st->reduce_rc) st->reduce_rc = rc;
        st->submitted_hi = lo;
    }
}

/* Gradient clipping by the global norm. Its sum of squares is formed parameter by parameter in
 * the whole model's parameter order, as one process forms it: a single stage sums its own parts;
 * with several stages the link adds every stage's parts in that order. */
static int clip(struct wf_step *st, long step) {
    const struct wf_graph *g = &st->ex->prog.g;
    double *part = st->clip_part, ss = 0;
    for (int i = 0; i < g->n_params; i++)
        part[i] = wf_sumsq(st->grads + st->ex->prog.offset[g->params[i]], (long)g->v[g->params[i]].numel);
    if (st->links.global_sumsq) {
        double t0 = wf_now();
        int rc = st->links.global_sumsq(st->links.ud, step, part, g->n_params, &ss);
        st->t_comm += wf_now() - t0;
        if (rc < 0) return rc;
    } else {
        for (int i = 0; i < g->n_params; i++)
            ss += part[i];
    }
    double coef = st->job->clip_norm / (sqrt(ss) + 1e-6);
    if (coef < 1.0) wf_scale(st->grads, (long)st->n_params, (float)coef);
    return WF_OK;
}

static void span(struct wf_step *st, int kind, int mb, double t0, double t1) {
    st->t_compute += t1 - t0;
    if (st->links.span) st->links.span(st->links.ud, kind, mb, t0, t1);
}

int wf_step_run(struct wf_step *st, long step, double lr, const struct wf_feed_batch *b, double *loss_out) {
    struct wf_exec *ex = st->ex;
    const struct wf_links *L = &st->links;
    const struct wf_job *j = st->job;
    const struct wf_graph *g = &ex->prog.g;
    const int mb = j->batch / st->K, quant = st->K > 1;
    const float seed = 1.0f / (float)st->K; /* the step's loss is the mean of its micro-batches' */
    struct wf_sched_ev ev[2 * MAX_K + 2];
    int nev = wf_schedule(st->sched, st->S, st->s, st->nk, ev);
    int live = 0, rc = WF_OK;
    unsigned char *own = ex->arena;
    st->reduce_rc = 0;
    st->cur_step = step;
    st->cur_lr = lr;
    if (L->reduce_begin) {
        L->reduce_begin(L->ud);
        st->submitted_hi = g->n_params;
    }
    for (int e = 0; e < nev && rc == WF_OK; e++) {
        int jm = ev[e].mb, kg = st->k0 + jm;
        if (st->arenas) ex->arena = st->arenas[jm % st->nslots];
        if (ev[e].kind == WF_EV_F) {
            if (L->doing) L->doing(L->ud, step, "forward", kg);
            if (++live > st->max_live) st->max_live = live;
            if (b) wf_feed_micro_batch(ex, b, st->x_in, st->y_in, st->len_in, jm, mb);
            if (L->recv_act && st->in_v >= 0 &&
                (rc = L->recv_act(L->ud, step, kg, wf_exec_ptr(ex, st->in_v), (size_t)g->v[st->in_v].numel)) < 0)
                break;
            wf_exec_set_rng(ex, j->seed, (uint64_t)step, (uint64_t)kg);
            double t0 = wf_now();
            if ((rc = wf_exec_forward(ex)) < 0) break;
            span(st, WF_SPAN_F, kg, t0, wf_now());
            if (L->send_act && st->out_v >= 0) {
                /* Sent from the arena, no copy, when this stage waits for the gradient of
                 * micro-batch kg before the slot is used again: the next stage sends that
                 * gradient only after it has received this whole activation. */
                int copy = !(st->train_bwd && g->seed_grad >= 0);
                rc = L->send_act(L->ud, step, kg, wf_exec_ptr(ex, st->out_v), (size_t)g->v[st->out_v].numel, copy);
            } else if (g->loss >= 0) {
                st->losses[jm] = (double)*(const float *)wf_exec_ptr(ex, g->loss) * (double)seed;
            }
        } else {
            if (L->doing) L->doing(L->ud, step, "backward", kg);
            memset(st->ready, 0, (size_t)g->n_params);
            live--;
            if (!st->train_bwd) continue;
            if (L->recv_grad && g->seed_grad >= 0 &&
                (rc = L->recv_grad(L->ud, step, kg, wf_exec_ptr(ex, g->seed_grad), (size_t)g->v[g->seed_grad].numel)) <
                    0)
                break;
            if (g->loss_grad >= 0 && (rc = wf_exec_seed(ex, seed)) < 0) break;
            st->acc_first = jm == 0;
            st->acc_last = jm == st->nk - 1;
            ex->node_done = quant || st->fused ? on_node : NULL;
            ex->node_done_ud = st;
            double t0 = wf_now();
            rc = wf_exec_backward(ex);
            ex->node_done = NULL;
            if (rc < 0) break;
            span(st, WF_SPAN_B, kg, t0, wf_now());
            if (L->send_grad && g->n_diff_in > 0 && g->in_grad[0] >= 0 &&
                (rc = L->send_grad(L->ud, step, kg, wf_exec_ptr(ex, g->in_grad[0]),
                                   (size_t)g->v[g->in_grad[0]].numel)) < 0)
                break;
            if (st->reduce_rc) rc = st->reduce_rc;
        }
    }
    ex->node_done = NULL;
    ex->arena = own;
    if (rc < 0) return rc;
    if (L->reduce_wait) {
        double t0 = wf_now();
        rc = L->reduce_wait(L->ud);
        if (rc == WF_OK) rc = st->reduce_rc;
        double t1 = wf_now();
        st->t_comm += t1 - t0;
        if (L->span) L->span(L->ud, WF_SPAN_REDUCE, -1, t0, t1);
        if (rc < 0) return rc;
    }
    double t0 = wf_now();
    if (quant) wf_fixed_to_float(st->grads, st->acc, st->n_params);
    if (j->clip_norm > 0 && (rc = clip(st, step)) < 0) return rc; /* every stage takes part in the global sum */
    if (st->train_bwd && !st->fused)
        for (int i = 0; i < g->n_params; i++)
            update_param(st, i, lr, step + 1);
    span(st, WF_SPAN_OPT, -1, t0, wf_now());
    double loss = 0;
    for (int k = 0; k < st->nk; k++) /* in micro-batch order, as the coordinator adds them */
        loss += st->losses[k];
    *loss_out = loss;
    return WF_OK;
}
