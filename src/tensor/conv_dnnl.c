/*
 * tensor layer: the oneDNN backend of 2-D convolution (forward,
 * backward-data, backward-weights with bias), behind wf_conv2d_* in conv.c.
 *
 * The caller's tensors are plain NCHW / OIHW. oneDNN's direct convolutions
 * run fastest on its blocked layouts (nChw16c, OIhw16i16o, ...), so each op
 * reorders its inputs into the weft workspace, runs, and reorders its
 * outputs back; the workspace also holds the primitives' scratchpad
 * (scratchpad mode "user"), so oneDNN allocates nothing of its own per call.
 *
 * Primitives depend on the thread count (oneDNN splits the work when it
 * creates them), so they are cached per (shape, threads): created on first
 * use, never again, kept until the process ends. Given the shape and the
 * thread count, every call runs the same primitives with the same split,
 * hence the same reductions in the same order: results are bitwise
 * reproducible run to run (checked by tests/tensor/test_kernels_conv.c).
 *
 * Threads: Debian's libdnnl runs on OpenMP (libgomp). Every call first sets
 * OpenMP's thread count for the calling thread to OpenBLAS's, so both
 * libraries use the count wf_blas_set_threads() chose.
 */
#include <dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "conv_int.h"
#include "weft/core.h"

/* (shape, threads) pairs a process can hold; a graph has a handful */
#define DNNL_CACHE_MAX 32
#define ALIGN_FLOATS 16 /* 64 bytes */

enum { ARG_MAX = 4 };

/* One argument of a primitive: the caller's plain tensor and, when the
 * primitive wants another layout, a copy in the workspace and the reorder
 * between them (plain -> inner for inputs, inner -> plain for outputs). */
struct dnnl_arg {
    int id;                  /* DNNL_ARG_* */
    int is_out;              /* written by the primitive */
    dnnl_memory_t user;      /* plain layout; data handle set per call */
    dnnl_memory_t inner;     /* the primitive's layout, or NULL: it takes the plain one */
    dnnl_primitive_t reorder;
    long off;                /* floats: inner's place in the work area */
};

struct dnnl_op {
    dnnl_primitive_t prim;   /* NULL: not created */
    struct dnnl_arg a[ARG_MAX];
    int n;
    dnnl_memory_t scratch;   /* the largest scratchpad of prim and its reorders, or NULL */
    long scratch_off;        /* floats */
    long need;               /* floats of work area this op uses */
    char impl[48];           /* oneDNN's implementation name */
};

enum { OP_FWD, OP_BWD_DATA, OP_BWD_WEIGHTS, OP_COUNT };

struct dnnl_entry {
    struct wf_conv2d_shape s;
    int nthr;
    int ops;                 /* ops created (WF_CONV_OP_* mask) */
    int failed;              /* ops whose creation failed: those stay on BLAS */
    long reported;           /* largest workspace (floats) returned for this entry */
    struct dnnl_op op[OP_COUNT];
    pthread_mutex_t mu;      /* one call at a time: the memory objects are shared */
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct dnnl_entry cache[DNNL_CACHE_MAX];
static int cache_n;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static dnnl_primitive_attr_t attr; /* scratchpad mode user */
static int engine_failed;

static long round_floats(size_t bytes) {
    long f = (long)((bytes + sizeof(float) - 1) / sizeof(float));
    return (f + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

static float *align_work(float *work) {
    uintptr_t p = (uintptr_t)work;
    return (float *)((p + 63) & ~(uintptr_t)63);
}

static int threads_wanted(void) {
    int n = wf_blas_get_threads();
    return n > 0 ? n : 1;
}

/* OpenMP's thread count is per thread (an ICV of the calling thread), so it
 * is checked on every call rather than only where it was set. */
static int sync_threads(void) {
    int n = threads_wanted();
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
    return n;
}

void wf_conv_dnnl_set_threads(int n) {
    omp_set_dynamic(0); /* the team size must not vary: it fixes the reduction order */
    omp_set_num_threads(n > 0 ? n : 1);
}

static int shape_eq(const struct wf_conv2d_shape *a, const struct wf_conv2d_shape *b) {
    return a->N == b->N && a->C == b->C && a->H == b->H && a->W == b->W && a->OC == b->OC && a->KH == b->KH &&
           a->KW == b->KW && a->stride == b->stride && a->pad == b->pad;
}

static void op_release(struct dnnl_op *o) {
    for (int i = 0; i < o->n; i++) {
        struct dnnl_arg *a = &o->a[i];
        if (a->reorder) dnnl_primitive_destroy(a->reorder);
        if (a->inner) dnnl_memory_destroy(a->inner);
        if (a->user) dnnl_memory_destroy(a->user);
    }
    if (o->scratch) dnnl_memory_destroy(o->scratch);
    if (o->prim) dnnl_primitive_destroy(o->prim);
    memset(o, 0, sizeof *o);
}

/* Adds argument id of pd to o, user_md being the caller's layout; grows
 * *scratch to the reorder's scratchpad. */
static dnnl_status_t arg_add(struct dnnl_op *o, const_dnnl_primitive_desc_t pd, int id, const dnnl_memory_desc_t *user_md,
                             int is_out, size_t *scratch) {
    struct dnnl_arg *a = &o->a[o->n++];
    a->id = id;
    a->is_out = is_out;
    dnnl_status_t st = dnnl_memory_create(&a->user, user_md, engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success) return st;
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, id);
    if (!md) return dnnl_runtime_error;
    if (dnnl_memory_desc_equal(md, user_md)) return dnnl_success;
    if ((st = dnnl_memory_create(&a->inner, md, engine, DNNL_MEMORY_NONE)) != dnnl_success) return st;
    dnnl_primitive_desc_t rpd;
    st = is_out ? dnnl_reorder_primitive_desc_create(&rpd, md, engine, user_md, engine, attr)
                : dnnl_reorder_primitive_desc_create(&rpd, user_md, engine, md, engine, attr);
    if (st != dnnl_success) return st;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
    size_t sb = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (sb > *scratch) *scratch = sb;
    st = dnnl_primitive_create(&a->reorder, rpd);
    dnnl_primitive_desc_destroy(rpd);
    if (st != dnnl_success) return st;
    a->off = o->need;
    o->need += round_floats(dnnl_memory_desc_get_size(md));
    return dnnl_success;
}

/* Creates o from pd, which it destroys: the primitive, its arguments and
 * their reorders, and one scratchpad after them in the work area. extra:
 * floats the caller keeps at the start of the work area (a zero bias or a
 * dbias nobody reads). */
static dnnl_status_t op_create(struct dnnl_op *o, dnnl_primitive_desc_t pd, const int *ids,
                               const dnnl_memory_desc_t *const *user_mds, const int *outs, int n, long extra) {
    dnnl_status_t st = dnnl_success;
    size_t scratch = 0;
    o->need = extra;
    for (int i = 0; i < n && st == dnnl_success; i++)
        st = arg_add(o, pd, ids[i], user_mds[i], outs[i], &scratch);
    if (st == dnnl_success) {
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        snprintf(o->impl, sizeof o->impl, "%s", impl ? impl : "?");
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t sb = smd ? dnnl_memory_desc_get_size(smd) : 0;
        if (sb > scratch) scratch = sb;
    }
    if (st == dnnl_success && scratch > 0) {
        /* the primitive and its reorders run one after another: one scratchpad serves them all */
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = {(dnnl_dim_t)scratch};
        st = dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_u8, dnnl_x);
        if (st == dnnl_success) st = dnnl_memory_create(&o->scratch, &md, engine, DNNL_MEMORY_NONE);
        o->scratch_off = o->need;
        o->need += round_floats(scratch);
    }
    if (st == dnnl_success) st = dnnl_primitive_create(&o->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) op_release(o);
    return st;
}

/* Creates e->op[op]. Layouts are left to oneDNN (format "any"), which picks
 * its blocked ones for the direct convolution; the bias is always an
 * argument (zeros when the caller has none, a dbias nobody reads), so an op
 * has one primitive whatever the caller passes. */
static dnnl_status_t entry_create_op(struct dnnl_entry *e, int op) {
    const struct wf_conv2d_shape *s = &e->s;
    dnnl_memory_desc_t src, wei, bia, dst, src_any, wei_any, dst_any;
    dnnl_dims_t sd = {s->N, s->C, s->H, s->W}, wd = {s->OC, s->C, s->KH, s->KW}, bd = {s->OC},
                dd = {s->N, s->OC, s->OH, s->OW}, strides = {s->stride, s->stride}, pad_l = {s->pad, s->pad};
    /* how far the last window reaches past the input (negative when it stops short) */
    dnnl_dims_t pad_r = {(dnnl_dim_t)(s->OH - 1) * s->stride + s->KH - s->H - s->pad,
                         (dnnl_dim_t)(s->OW - 1) * s->stride + s->KW - s->W - s->pad};
    dnnl_status_t st;
    if ((st = dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_nchw)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&wei, 4, wd, dnnl_f32, dnnl_oihw)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&bia, 1, bd, dnnl_f32, dnnl_x)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nchw)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&src_any, 4, sd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&wei_any, 4, wd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
        (st = dnnl_memory_desc_init_by_tag(&dst_any, 4, dd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success)
        return st;
    const long bias_floats = round_floats(sizeof(float) * (size_t)s->OC);
    dnnl_convolution_desc_t fd, bwd;
    dnnl_primitive_desc_t fpd, pd;
    if ((st = dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src_any,
                                                 &wei_any, &bia, &dst_any, strides, pad_l, pad_r)) != dnnl_success ||
        (st = dnnl_primitive_desc_create(&fpd, &fd, attr, engine, NULL)) != dnnl_success)
        return st;
    if (op == OP_FWD) {
        const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[] = {&src, &wei, &bia, &dst};
        const int outs[] = {0, 0, 0, 1};
        return op_create(&e->op[op], fpd, ids, mds, outs, 4, bias_floats);
    }
    /* the backward ops take the forward's descriptor as a hint */
    if (op == OP_BWD_DATA)
        st = dnnl_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any, &dst_any,
                                                      strides, pad_l, pad_r);
    else
        st = dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any, &bia,
                                                         &dst_any, strides, pad_l, pad_r);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bwd, attr, engine, fpd);
    dnnl_primitive_desc_destroy(fpd);
    if (st != dnnl_success) return st;
    if (op == OP_BWD_DATA) {
        const int ids[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
        const dnnl_memory_desc_t *mds[] = {&dst, &wei, &src};
        const int outs[] = {0, 0, 1};
        return op_create(&e->op[op], pd, ids, mds, outs, 3, 0);
    }
    const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    const dnnl_memory_desc_t *mds[] = {&src, &dst, &wei, &bia};
    const int outs[] = {0, 0, 1, 1};
    return op_create(&e->op[op], pd, ids, mds, outs, 4, bias_floats);
}

static int engine_init(void) {
    if (engine) return 0;
    if (engine_failed) return -1;
    dnnl_status_t st = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (st == dnnl_success) st = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    if (st == dnnl_success) st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st != dnnl_success) {
        WF_LOGW("tensor", "onednn: no cpu engine (status %d); convolution stays on blas", (int)st);
        engine_failed = 1;
        engine = NULL;
        return -1;
    }
    return 0;
}

/* The entry for (s, nthr) with the ops in mask created, or NULL. Called
 * with cache_mu held. Creation is tried once per op: a failure is
 * remembered, so the op stays on BLAS for the life of the process. */
static struct dnnl_entry *entry_get(const struct wf_conv2d_shape *s, int nthr, int ops) {
    if (engine_init() < 0) return NULL;
    struct dnnl_entry *e = NULL;
    for (int i = 0; i < cache_n && !e; i++)
        if (cache[i].nthr == nthr && shape_eq(&cache[i].s, s)) e = &cache[i];
    if (!e) {
        if (cache_n == DNNL_CACHE_MAX) {
            static int warned;
            if (!warned++) WF_LOGW("tensor", "onednn: more than %d convolution shapes; the rest run on blas",
                                   DNNL_CACHE_MAX);
            return NULL;
        }
        e = &cache[cache_n++];
        memset(e, 0, sizeof *e);
        e->s = *s;
        e->nthr = nthr;
    }
    for (int op = 0; op < OP_COUNT; op++) {
        int bit = 1 << op;
        if (!(ops & bit) || ((e->ops | e->failed) & bit)) continue;
        dnnl_status_t st = entry_create_op(e, op);
        if (st == dnnl_success) {
            e->ops |= bit;
            WF_LOGD("tensor", "onednn: conv N%d C%d %dx%d OC%d k%dx%d s%d p%d, %d threads, op %d: %s, %ld floats",
                    s->N, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->stride, s->pad, nthr, op, e->op[op].impl,
                    e->op[op].need);
        } else {
            e->failed |= bit;
            WF_LOGW("tensor", "onednn: conv N%d C%d %dx%d OC%d k%dx%d s%d p%d op %d not created (status %d); it runs on blas",
                    s->N, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->stride, s->pad, op, (int)st);
        }
    }
    return e;
}

/* largest workspace wf_conv_dnnl_workspace has returned for this shape, at any thread count */
static long reported_for(const struct wf_conv2d_shape *s) {
    long r = 0;
    for (int i = 0; i < cache_n; i++)
        if (shape_eq(&cache[i].s, s) && cache[i].reported > r) r = cache[i].reported;
    return r;
}

long wf_conv_dnnl_workspace(const struct wf_conv2d_shape *s, int ops) {
    int nthr = sync_threads();
    long need = 0;
    pthread_mutex_lock(&cache_mu);
    struct dnnl_entry *e = entry_get(s, nthr, ops);
    if (e) {
        for (int op = 0; op < OP_COUNT; op++)
            if ((ops & e->ops & (1 << op)) && e->op[op].need > need) need = e->op[op].need;
        if (need > 0) need += ALIGN_FLOATS; /* for align_work */
        if (need > e->reported) e->reported = need;
    }
    pthread_mutex_unlock(&cache_mu);
    return need;
}

const char *wf_conv_dnnl_impl(const struct wf_conv2d_shape *s, int opbit) {
    int nthr = sync_threads(), op = opbit == WF_CONV_OP_FWD ? OP_FWD : opbit == WF_CONV_OP_BWD_DATA ? OP_BWD_DATA
                                                                                                  : OP_BWD_WEIGHTS;
    pthread_mutex_lock(&cache_mu);
    struct dnnl_entry *e = entry_get(s, nthr, 1 << op);
    const char *r = e && (e->ops & (1 << op)) ? e->op[op].impl : "";
    pthread_mutex_unlock(&cache_mu);
    return r;
}

static dnnl_status_t run_reorder(const struct dnnl_arg *a, dnnl_memory_t scratch) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, a->is_out ? a->inner : a->user},
                               {DNNL_ARG_TO, a->is_out ? a->user : a->inner},
                               {DNNL_ARG_SCRATCHPAD, scratch}};
    return dnnl_primitive_execute(a->reorder, stream, scratch ? 3 : 2, args);
}

/* Runs o on the caller's tensors ptrs (in argument order) with the aligned
 * work area base: inputs reordered in, the primitive, outputs reordered out. */
static dnnl_status_t op_run(struct dnnl_op *o, void *const *ptrs, float *base) {
    dnnl_exec_arg_t args[ARG_MAX + 1];
    dnnl_status_t st = dnnl_success;
    if (o->scratch) st = dnnl_memory_set_data_handle_v2(o->scratch, base + o->scratch_off, stream);
    for (int i = 0; i < o->n && st == dnnl_success; i++) {
        struct dnnl_arg *a = &o->a[i];
        st = dnnl_memory_set_data_handle_v2(a->user, ptrs[i], stream);
        if (st == dnnl_success && a->inner) st = dnnl_memory_set_data_handle_v2(a->inner, base + a->off, stream);
        if (st == dnnl_success && a->inner && !a->is_out) st = run_reorder(a, o->scratch);
        args[i].arg = a->id;
        args[i].memory = a->inner ? a->inner : a->user;
    }
    int nargs = o->n;
    if (o->scratch) {
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs++].memory = o->scratch;
    }
    if (st == dnnl_success) st = dnnl_primitive_execute(o->prim, stream, nargs, args);
    for (int i = 0; i < o->n && st == dnnl_success; i++)
        if (o->a[i].inner && o->a[i].is_out) st = run_reorder(&o->a[i], o->scratch);
    if (st == dnnl_success) st = dnnl_stream_wait(stream);
    return st;
}

/* Looks up op for s at the current thread count and runs it; -1 if it cannot. */
static int dnnl_call(const struct wf_conv2d_shape *s, int op, void *const *ptrs, float *work, float *zero_bias) {
    int nthr = sync_threads(), rc = -1;
    pthread_mutex_lock(&cache_mu);
    struct dnnl_entry *e = entry_get(s, nthr, 1 << op);
    if (e && (e->ops & (1 << op)) && e->op[op].need + ALIGN_FLOATS <= reported_for(s)) {
        float *base = align_work(work);
        if (zero_bias) memset(base, 0, sizeof(float) * (size_t)s->OC);
        dnnl_status_t st = op_run(&e->op[op], ptrs, base);
        if (st == dnnl_success) {
            rc = 0;
        } else {
            static int warned;
            if (!warned++) WF_LOGW("tensor", "onednn: convolution op %d failed (status %d); it runs on blas", op, (int)st);
        }
    }
    pthread_mutex_unlock(&cache_mu);
    return rc;
}

int wf_conv_dnnl_forward(float *out, const float *inp, const float *w, const float *bias,
                         const struct wf_conv2d_shape *s, float *work) {
    /* bias NULL: zeros at the start of the work area (dnnl_call fills them) */
    void *ptrs[] = {(void *)inp, (void *)w, bias ? (void *)bias : align_work(work), out};
    return dnnl_call(s, OP_FWD, ptrs, work, bias ? NULL : align_work(work));
}

int wf_conv_dnnl_backward_data(float *dinp, const float *dout, const float *w, const struct wf_conv2d_shape *s,
                               float *work) {
    void *ptrs[] = {(void *)dout, (void *)w, dinp};
    return dnnl_call(s, OP_BWD_DATA, ptrs, work, NULL);
}

int wf_conv_dnnl_backward_weights(float *dw, float *dbias, const float *dout, const float *inp,
                                  const struct wf_conv2d_shape *s, float *work) {
    /* dbias NULL: computed into the start of the work area and dropped */
    void *ptrs[] = {(void *)inp, (void *)dout, dw, dbias ? dbias : (void *)align_work(work)};
    return dnnl_call(s, OP_BWD_WEIGHTS, ptrs, work, NULL);
}
