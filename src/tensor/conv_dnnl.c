/*
 * tensor layer: the oneDNN backend of 2-D convolution (forward,
 * backward-data, backward-weights with bias), behind wf_conv2d_* in conv.c.
 *
 * The caller's tensors are plain NCHW / OIHW, or activations in nChw16c
 * (WF_LAYOUT_NCHW16C). oneDNN's direct convolutions run fastest on its
 * blocked layouts (nChw16c, OIhw16i16o, ...), so each op reorders the
 * inputs that are not in the layout it picked into the weft workspace,
 * runs, and reorders such outputs back, in chunks of at most DNNL_CHUNK
 * samples; each op has a variant per caller layout of src and dst, with
 * the same primitive, so the same bits, and fewer reorders. The workspace also
 * holds the primitives' scratchpad (scratchpad mode "user"). Per call, weft
 * allocates nothing and oneDNN no tensors or scratch, only the small
 * argument map of each dnnl_primitive_execute (5 mallocs, measured).
 *
 * Primitives depend on the thread count (oneDNN splits the work when it
 * creates them), so they are cached per (shape, threads): created on first
 * use, never again, kept until the process ends. Given the shape and the
 * thread count, every call runs the same primitives with the same split,
 * hence the same reductions in the same order. oneDNN promises run-to-run
 * bitwise reproducibility on a fixed platform, thread count and
 * environment for most primitives (dev_guide_attributes_deterministic; the
 * exceptions use atomics, and 2.6 has no attribute to exclude them); the
 * jit:avx512_core convolutions used here were checked: same bits across
 * calls and processes with 1 and 2 threads (tests/tensor/test_kernels_conv.c).
 * The backward-weights result differs between 1 and 2 threads (its batch
 * reduction is split per thread), as OpenBLAS's does.
 *
 * Loading: libdnnl.so.2 (Debian's libdnnl2, the 2.x C API) is opened with
 * dlopen on the first convolution, not linked. Debian builds it on OpenMP
 * (libgomp), whose idle threads by default spin for 300000 rounds (~5 ms
 * here, a pause each) at every barrier and after every parallel region: on
 * two cores shared with OpenBLAS's threads or other processes that made a
 * training step up to 5x slower than with one thread (measured). Not
 * spinning at all costs too: every primitive (a reorder, the convolution)
 * is a parallel region, and waking a sleeping thread for each made the
 * CNN's 2-thread step ~7% slower than a spin of 1000 rounds, ~20 us (21.0
 * against 19.6 ms, medians of 5 runs; 10000 rounds gave the same as 1000),
 * which bridges the gaps between the primitives of one convolution but not
 * the element-wise work between convolutions. libgomp reads its wait
 * policy only when it loads, so unless the user set OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT, or libgomp is already in the process, weft loads it with
 * GOMP_SPINCOUNT=1000 (and removes the variable again). Without the
 * library, convolution stays on BLAS.
 *
 * Threads: every call first sets OpenMP's thread count for the calling
 * thread to OpenBLAS's, so both libraries use the count
 * wf_blas_set_threads() chose.
 */
#include <dlfcn.h>
#include <dnnl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_int.h"
#include "weft/core.h"

/* the oneDNN calls used here, resolved by dlsym */
#define DNNL_FUNCS(X)                                                                                                  \
    X(dnnl_version)                                                                                                    \
    X(dnnl_engine_create)                                                                                              \
    X(dnnl_stream_create)                                                                                              \
    X(dnnl_stream_wait)                                                                                                \
    X(dnnl_primitive_attr_create)                                                                                      \
    X(dnnl_primitive_attr_set_scratchpad_mode)                                                                         \
    X(dnnl_memory_desc_init_by_tag)                                                                                    \
    X(dnnl_memory_desc_equal)                                                                                          \
    X(dnnl_memory_desc_get_size)                                                                                       \
    X(dnnl_memory_create)                                                                                              \
    X(dnnl_memory_destroy)                                                                                             \
    X(dnnl_memory_set_data_handle_v2)                                                                                  \
    X(dnnl_convolution_forward_desc_init)                                                                              \
    X(dnnl_convolution_backward_data_desc_init)                                                                        \
    X(dnnl_convolution_backward_weights_desc_init)                                                                     \
    X(dnnl_primitive_desc_create)                                                                                      \
    X(dnnl_primitive_desc_destroy)                                                                                     \
    X(dnnl_primitive_desc_query)                                                                                       \
    X(dnnl_primitive_desc_query_md)                                                                                    \
    X(dnnl_reorder_primitive_desc_create)                                                                              \
    X(dnnl_primitive_create)                                                                                           \
    X(dnnl_primitive_destroy)                                                                                          \
    X(dnnl_primitive_execute)

static struct {
#define DECLARE(f) __typeof__(f) *f;
    DNNL_FUNCS(DECLARE)
#undef DECLARE
    /* libgomp's, the OpenMP runtime libdnnl was built with */
    void (*omp_set_num_threads)(int);
    int (*omp_get_max_threads)(void);
    void (*omp_set_dynamic)(int);
    int (*omp_get_dynamic)(void);
} dl;

/* A batch runs in chunks of at most this many samples, so the workspace
 * (blocked copies of the activations) stays the size of a training batch's
 * however large the batch: a 1000-sample evaluation batch would otherwise
 * want ~100 MB for conv1. The chunk size is fixed, so results depend only
 * on the shape and thread count, as before. */
#ifndef DNNL_CHUNK
#define DNNL_CHUNK 64
#endif
#define ALIGN_FLOATS 16 /* 64 bytes */

enum { ARG_MAX = 4 };

/* One argument of a primitive: the caller's plain tensor and, when the
 * primitive wants another layout, a copy in the workspace and the reorder
 * between them (plain -> inner for inputs, inner -> plain for outputs). */
struct dnnl_arg {
    int id;              /* DNNL_ARG_* */
    int is_out;          /* written by the primitive */
    dnnl_memory_t user;  /* plain layout; data handle set per call */
    dnnl_memory_t inner; /* the primitive's layout, or NULL: it takes the plain one */
    dnnl_primitive_t reorder;
    long off; /* floats: inner's place in the work area */
};

struct dnnl_op {
    dnnl_primitive_t prim; /* NULL: not created */
    struct dnnl_arg a[ARG_MAX];
    int n;
    dnnl_memory_t scratch; /* the largest scratchpad of prim and its reorders, or NULL */
    long scratch_off;      /* floats */
    long need;             /* floats of work area this op uses */
    char impl[48];         /* oneDNN's implementation name */
};

/* The ops: the three base ops (WF_CONV_OP_* bits 0-2) in four variants
 * each, by the caller's layout of src (and diff_src) and of dst (and
 * diff_dst), NCHW or nChw16c (no reorder needed then): op OP_BASE * (src_blk
 * + 2 * dst_blk) + base, bit 1 << op in the entries' masks. A variant needs
 * no more work area than its NCHW op (fewer reorders, the same primitive),
 * so the workspace reported for the NCHW ops covers it; it is created on
 * first use. */
enum { OP_FWD, OP_BWD_DATA, OP_BWD_WEIGHTS, OP_BASE, OP_COUNT = 4 * OP_BASE };

struct dnnl_entry {
    struct wf_conv2d_shape s;
    int nthr;
    int ops;    /* ops created (WF_CONV_OP_* mask) */
    int failed; /* ops whose creation failed: those stay on BLAS */
    struct dnnl_op op[OP_COUNT];
};

/* cache_mu guards everything below, and is held through every call: the
 * memory objects of an entry are shared, so one call at a time. */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
/* Every (shape, threads) entry ever created, never evicted: falling back
 * to BLAS for a shape because others came first would make its results
 * depend on the history of the process. */
static struct dnnl_entry **cache;
static int cache_n, cache_cap;
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

#if defined(__SANITIZE_ADDRESS__)
#define WF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WF_ASAN 1
#endif
#endif
#ifdef WF_ASAN
/* Sanitizer builds only. LeakSanitizer (gcc 12's, glibc 2.36) crashes at
 * exit ("Tracer caught signal 11") reading the dynamic TLS of libgomp's
 * worker threads, which exist only because libdnnl is dlopen'ed; not
 * intercepting __tls_get_addr avoids it. Leaks are still checked. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "intercept_tls_get_addr=0"; }
#endif

static int threads_wanted(void) {
    int n = wf_blas_get_threads();
    return n > 0 ? n : 1;
}

static int dnnl_loaded; /* 1: dl is filled in; -1: it cannot be */

/* Opens libdnnl.so.2 and its libgomp (see the top of the file). Called with
 * cache_mu held; tried once. */
static int dnnl_load(void) {
    if (dnnl_loaded) return dnnl_loaded > 0 ? 0 : -1;
    dnnl_loaded = -1;
    void *gomp = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    int short_spin = !gomp && !getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT");
    if (gomp) dlclose(gomp);
    if (short_spin) setenv("GOMP_SPINCOUNT", "1000", 1);
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (short_spin) unsetenv("GOMP_SPINCOUNT");
    if (!h) {
        WF_LOGI("tensor", "onednn: %s; convolution runs on blas", dlerror());
        return -1;
    }
    int missing = 0;
#define RESOLVE(f) missing |= (*(void **)&dl.f = dlsym(h, #f)) == NULL;
    DNNL_FUNCS(RESOLVE)
#undef RESOLVE
    gomp = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (gomp) {
        *(void **)&dl.omp_set_num_threads = dlsym(gomp, "omp_set_num_threads");
        *(void **)&dl.omp_get_max_threads = dlsym(gomp, "omp_get_max_threads");
        *(void **)&dl.omp_set_dynamic = dlsym(gomp, "omp_set_dynamic");
        *(void **)&dl.omp_get_dynamic = dlsym(gomp, "omp_get_dynamic");
    }
    /* without libgomp's calls weft could not give oneDNN its thread count */
    if (missing || !dl.omp_set_num_threads || !dl.omp_get_max_threads || !dl.omp_set_dynamic || !dl.omp_get_dynamic) {
        WF_LOGW("tensor", "onednn: libdnnl.so.2 lacks a 2.x C API call or does not run on libgomp; "
                          "convolution runs on blas");
        return -1;
    }
    const dnnl_version_t *v = dl.dnnl_version();
    WF_LOGD("tensor", "onednn %d.%d.%d (%s) loaded, openmp wait policy %s", v->major, v->minor, v->patch, v->hash,
            short_spin ? "GOMP_SPINCOUNT=1000" : "as the environment says");
    dnnl_loaded = 1;
    return 0;
}

/* OpenMP's thread count is an ICV of the calling thread, so it is checked
 * on every call rather than only where it was set. Dynamic adjustment stays
 * off: the team size fixes the split, hence the order of the reductions. */
static int sync_threads(void) {
    int n = threads_wanted();
    if (dnnl_loaded <= 0) return n;
    if (dl.omp_get_dynamic()) dl.omp_set_dynamic(0);
    if (dl.omp_get_max_threads() != n) dl.omp_set_num_threads(n);
    return n;
}

void wf_conv_dnnl_set_threads(int n) {
    pthread_mutex_lock(&cache_mu);
    if (dnnl_loaded > 0) dl.omp_set_num_threads(n > 0 ? n : 1);
    pthread_mutex_unlock(&cache_mu);
}

int wf_conv_dnnl_available(void) {
    pthread_mutex_lock(&cache_mu);
    int ok = dnnl_load() == 0;
    pthread_mutex_unlock(&cache_mu);
    return ok;
}

static int shape_eq(const struct wf_conv2d_shape *a, const struct wf_conv2d_shape *b) {
    return a->N == b->N && a->C == b->C && a->H == b->H && a->W == b->W && a->OC == b->OC && a->KH == b->KH &&
           a->KW == b->KW && a->stride == b->stride && a->pad == b->pad;
}

static void op_release(struct dnnl_op *o) {
    for (int i = 0; i < o->n; i++) {
        struct dnnl_arg *a = &o->a[i];
        if (a->reorder) dl.dnnl_primitive_destroy(a->reorder);
        if (a->inner) dl.dnnl_memory_destroy(a->inner);
        if (a->user) dl.dnnl_memory_destroy(a->user);
    }
    if (o->scratch) dl.dnnl_memory_destroy(o->scratch);
    if (o->prim) dl.dnnl_primitive_destroy(o->prim);
    memset(o, 0, sizeof *o);
}

/* Adds argument id of pd to o, user_md being the caller's layout; grows
 * *scratch to the reorder's scratchpad. */
static dnnl_status_t arg_add(struct dnnl_op *o, const_dnnl_primitive_desc_t pd, int id,
                             const dnnl_memory_desc_t *user_md, int is_out, size_t *scratch) {
    struct dnnl_arg *a = &o->a[o->n++];
    a->id = id;
    a->is_out = is_out;
    dnnl_status_t st = dl.dnnl_memory_create(&a->user, user_md, engine, DNNL_MEMORY_NONE);
    if (st != dnnl_success) return st;
    const dnnl_memory_desc_t *md = dl.dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, id);
    if (!md) return dnnl_runtime_error;
    if (dl.dnnl_memory_desc_equal(md, user_md)) return dnnl_success;
    if ((st = dl.dnnl_memory_create(&a->inner, md, engine, DNNL_MEMORY_NONE)) != dnnl_success) return st;
    dnnl_primitive_desc_t rpd;
    st = is_out ? dl.dnnl_reorder_primitive_desc_create(&rpd, md, engine, user_md, engine, attr)
                : dl.dnnl_reorder_primitive_desc_create(&rpd, user_md, engine, md, engine, attr);
    if (st != dnnl_success) return st;
    const dnnl_memory_desc_t *smd = dl.dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
    size_t sb = smd ? dl.dnnl_memory_desc_get_size(smd) : 0;
    if (sb > *scratch) *scratch = sb;
    st = dl.dnnl_primitive_create(&a->reorder, rpd);
    dl.dnnl_primitive_desc_destroy(rpd);
    if (st != dnnl_success) return st;
    a->off = o->need;
    o->need += round_floats(dl.dnnl_memory_desc_get_size(md));
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
        dl.dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        snprintf(o->impl, sizeof o->impl, "%s", impl ? impl : "?");
        const dnnl_memory_desc_t *smd = dl.dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t sb = smd ? dl.dnnl_memory_desc_get_size(smd) : 0;
        if (sb > scratch) scratch = sb;
    }
    if (st == dnnl_success && scratch > 0) {
        /* the primitive and its reorders run one after another: one scratchpad serves them all */
        dnnl_memory_desc_t md;
        dnnl_dims_t dims = {(dnnl_dim_t)scratch};
        st = dl.dnnl_memory_desc_init_by_tag(&md, 1, dims, dnnl_u8, dnnl_x);
        if (st == dnnl_success) st = dl.dnnl_memory_create(&o->scratch, &md, engine, DNNL_MEMORY_NONE);
        o->scratch_off = o->need;
        o->need += round_floats(scratch);
    }
    if (st == dnnl_success) st = dl.dnnl_primitive_create(&o->prim, pd);
    dl.dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) op_release(o);
    return st;
}

/* Floats backward-weights keeps at the start of the work area: a dbias
 * nobody asked for, then a later chunk's dw and dbias, added in after. */
static long bwdw_extra(const struct wf_conv2d_shape *s) {
    const long nw = (long)s->OC * s->C * s->KH * s->KW;
    return 2 * round_floats(sizeof(float) * (size_t)s->OC) + round_floats(sizeof(float) * (size_t)nw);
}

/* Creates e->op[op]. Layouts are left to oneDNN (format "any"), which picks
 * its blocked ones for the direct convolution; the bias is always an
 * argument (zeros when the caller has none, a dbias nobody reads), so an op
 * has one primitive whatever the caller passes. */
static dnnl_status_t entry_create_op(struct dnnl_entry *e, int op_index) {
    const struct wf_conv2d_shape *s = &e->s;
    /* the base op, and the caller's layouts of src and dst */
    const int op = op_index % OP_BASE, src_blk = (op_index / OP_BASE) & 1, dst_blk = op_index / OP_BASE / 2;
    dnnl_memory_desc_t src, wei, bia, dst, src_any, wei_any, dst_any;
    dnnl_dims_t sd = {s->N, s->C, s->H, s->W}, wd = {s->OC, s->C, s->KH, s->KW}, bd = {s->OC},
                dd = {s->N, s->OC, s->OH, s->OW}, strides = {s->stride, s->stride}, pad_l = {s->pad, s->pad};
    /* how far the last window reaches past the input (negative when it stops short) */
    dnnl_dims_t pad_r = {(dnnl_dim_t)(s->OH - 1) * s->stride + s->KH - s->H - s->pad,
                         (dnnl_dim_t)(s->OW - 1) * s->stride + s->KW - s->W - s->pad};
    dnnl_status_t st;
    if ((st = dl.dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, src_blk ? dnnl_aBcd16b : dnnl_nchw)) !=
            dnnl_success ||
        (st = dl.dnnl_memory_desc_init_by_tag(&wei, 4, wd, dnnl_f32, dnnl_oihw)) != dnnl_success ||
        (st = dl.dnnl_memory_desc_init_by_tag(&bia, 1, bd, dnnl_f32, dnnl_x)) != dnnl_success ||
        (st = dl.dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dst_blk ? dnnl_aBcd16b : dnnl_nchw)) !=
            dnnl_success ||
        (st = dl.dnnl_memory_desc_init_by_tag(&src_any, 4, sd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
        (st = dl.dnnl_memory_desc_init_by_tag(&wei_any, 4, wd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success ||
        (st = dl.dnnl_memory_desc_init_by_tag(&dst_any, 4, dd, dnnl_f32, dnnl_format_tag_any)) != dnnl_success)
        return st;
    const long bias_floats = round_floats(sizeof(float) * (size_t)s->OC);
    dnnl_convolution_desc_t fd, bwd;
    dnnl_primitive_desc_t fpd, pd;
    if ((st = dl.dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &src_any,
                                                    &wei_any, &bia, &dst_any, strides, pad_l, pad_r)) != dnnl_success ||
        (st = dl.dnnl_primitive_desc_create(&fpd, &fd, attr, engine, NULL)) != dnnl_success)
        return st;
    if (op == OP_FWD) {
        const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
        const dnnl_memory_desc_t *mds[] = {&src, &wei, &bia, &dst};
        const int outs[] = {0, 0, 0, 1};
        return op_create(&e->op[op_index], fpd, ids, mds, outs, 4, bias_floats);
    }
    /* the backward ops take the forward's descriptor as a hint */
    if (op == OP_BWD_DATA)
        st = dl.dnnl_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any, &dst_any,
                                                         strides, pad_l, pad_r);
    else
        st = dl.dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any, &bia,
                                                            &dst_any, strides, pad_l, pad_r);
    if (st == dnnl_success) st = dl.dnnl_primitive_desc_create(&pd, &bwd, attr, engine, fpd);
    dl.dnnl_primitive_desc_destroy(fpd);
    if (st != dnnl_success) return st;
    if (op == OP_BWD_DATA) {
        const int ids[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
        const dnnl_memory_desc_t *mds[] = {&dst, &wei, &src};
        const int outs[] = {0, 0, 1};
        return op_create(&e->op[op_index], pd, ids, mds, outs, 3, 0);
    }
    const int ids[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS, DNNL_ARG_DIFF_BIAS};
    const dnnl_memory_desc_t *mds[] = {&src, &dst, &wei, &bia};
    const int outs[] = {0, 0, 1, 1};
    return op_create(&e->op[op_index], pd, ids, mds, outs, 4, bwdw_extra(s));
}

static int engine_init(void) {
    if (engine) return 0;
    if (engine_failed || dnnl_load() < 0) return -1;
    dnnl_status_t st = dl.dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (st == dnnl_success) st = dl.dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    if (st == dnnl_success) st = dl.dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success) st = dl.dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (st != dnnl_success) {
        WF_LOGW("tensor", "onednn: no cpu engine (status %d); convolution stays on blas", (int)st);
        engine_failed = 1;
        engine = NULL;
        return -1;
    }
    return 0;
}

/* The entry for s at the current thread count, with the ops in mask
 * created, or NULL. Called with cache_mu held. Creation is tried once per
 * op: a failure is remembered, so the op stays on BLAS for the life of the
 * process. */
static struct dnnl_entry *entry_get(const struct wf_conv2d_shape *s, int ops) {
    if (engine_init() < 0) return NULL;
    const int nthr = sync_threads();
    struct dnnl_entry *e = NULL;
    for (int i = 0; i < cache_n && !e; i++)
        if (cache[i]->nthr == nthr && shape_eq(&cache[i]->s, s)) e = cache[i];
    if (!e) {
        if (cache_n == cache_cap) {
            int cap = cache_cap ? 2 * cache_cap : 16;
            struct dnnl_entry **grown = wf_realloc(cache, sizeof *grown * (size_t)cap);
            if (!grown) return NULL;
            cache = grown;
            cache_cap = cap;
        }
        if (!(e = wf_calloc(1, sizeof *e))) return NULL;
        cache[cache_n++] = e;
        e->s = *s;
        e->nthr = nthr;
    }
    for (int op = 0; op < OP_COUNT; op++) {
        int bit = 1 << op;
        if (!(ops & bit) || ((e->ops | e->failed) & bit)) continue;
        dnnl_status_t st = entry_create_op(e, op);
        if (st == dnnl_success) {
            e->ops |= bit;
            WF_LOGD("tensor", "onednn: conv N%d C%d %dx%d OC%d k%dx%d s%d p%d, %d threads, op %d: %s, %ld floats", s->N,
                    s->C, s->H, s->W, s->OC, s->KH, s->KW, s->stride, s->pad, nthr, op, e->op[op].impl, e->op[op].need);
        } else {
            e->failed |= bit;
            WF_LOGW("tensor",
                    "onednn: conv N%d C%d %dx%d OC%d k%dx%d s%d p%d op %d not created (status %d); it runs on blas",
                    s->N, s->C, s->H, s->W, s->OC, s->KH, s->KW, s->stride, s->pad, op, (int)st);
        }
    }
    return e;
}

/* Workspace sizes returned per caller's shape (any thread count): a call
 * runs on oneDNN only if its primitives fit in what was returned for its
 * shape, so a thread count whose scratchpads are larger than those the
 * caller planned with falls back to BLAS instead of overrunning. */
struct reported {
    struct wf_conv2d_shape s;
    long floats;
};
static struct reported *reported;
static int reported_n, reported_cap;

static long reported_for(const struct wf_conv2d_shape *s) {
    for (int i = 0; i < reported_n; i++)
        if (shape_eq(&reported[i].s, s)) return reported[i].floats;
    return 0;
}

/* records floats for s; 0 if it cannot (out of memory) */
static long report(const struct wf_conv2d_shape *s, long floats) {
    for (int i = 0; i < reported_n; i++) {
        if (shape_eq(&reported[i].s, s)) {
            if (floats > reported[i].floats) reported[i].floats = floats;
            return floats;
        }
    }
    if (reported_n == reported_cap) {
        int cap = reported_cap ? 2 * reported_cap : 16;
        struct reported *grown = wf_realloc(reported, sizeof *grown * (size_t)cap);
        if (!grown) return 0;
        reported = grown;
        reported_cap = cap;
    }
    reported[reported_n].s = *s;
    reported[reported_n++].floats = floats;
    return floats;
}

/* The chunks of s: *full (DNNL_CHUNK samples, or all of them) and, when N
 * is not a multiple of it, *tail; returns 1 if there is a tail. */
static int chunk_shapes(const struct wf_conv2d_shape *s, struct wf_conv2d_shape *full, struct wf_conv2d_shape *tail) {
    *full = *s;
    *tail = *s;
    if (s->N <= DNNL_CHUNK) return 0;
    full->N = DNNL_CHUNK;
    tail->N = s->N % DNNL_CHUNK;
    return tail->N > 0;
}

/* Floats op needs in e, or -1 if e cannot run it. */
static long op_need(const struct dnnl_entry *e, int op) {
    return e && (e->ops & (1 << op)) ? e->op[op].need + ALIGN_FLOATS : -1;
}

long wf_conv_dnnl_workspace(const struct wf_conv2d_shape *s, int ops) {
    struct wf_conv2d_shape full, tail;
    const int has_tail = chunk_shapes(s, &full, &tail);
    long need = 0;
    pthread_mutex_lock(&cache_mu);
    struct dnnl_entry *ef = entry_get(&full, ops), *et = has_tail ? entry_get(&tail, ops) : NULL;
    for (int op = 0; op < OP_COUNT; op++) {
        if (!(ops & (1 << op))) continue;
        long nf = op_need(ef, op), nt = has_tail ? op_need(et, op) : 0;
        if (nf > need && nt >= 0) need = nf;
        if (nt > need && nf >= 0) need = nt;
    }
    if (need > 0) need = report(s, need);
    pthread_mutex_unlock(&cache_mu);
    return need;
}

const char *wf_conv_dnnl_impl(const struct wf_conv2d_shape *s, int opbit) {
    int op = 0;
    while (op + 1 < OP_COUNT && !(opbit & (1 << op)))
        op++;
    pthread_mutex_lock(&cache_mu);
    struct dnnl_entry *e = entry_get(s, 1 << op);
    const char *r = e && (e->ops & (1 << op)) ? e->op[op].impl : "";
    pthread_mutex_unlock(&cache_mu);
    return r;
}

static dnnl_status_t run_reorder(const struct dnnl_arg *a, dnnl_memory_t scratch) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, a->is_out ? a->inner : a->user},
                               {DNNL_ARG_TO, a->is_out ? a->user : a->inner},
                               {DNNL_ARG_SCRATCHPAD, scratch}};
    return dl.dnnl_primitive_execute(a->reorder, stream, scratch ? 3 : 2, args);
}

/* Runs o on the caller's tensors ptrs (in argument order) with the aligned
 * work area base: inputs reordered in, the primitive, outputs reordered out. */
static dnnl_status_t op_run(struct dnnl_op *o, void *const *ptrs, float *base) {
    dnnl_exec_arg_t args[ARG_MAX + 1];
    dnnl_status_t st = dnnl_success;
    if (o->scratch) st = dl.dnnl_memory_set_data_handle_v2(o->scratch, base + o->scratch_off, stream);
    for (int i = 0; i < o->n && st == dnnl_success; i++) {
        struct dnnl_arg *a = &o->a[i];
        st = dl.dnnl_memory_set_data_handle_v2(a->user, ptrs[i], stream);
        if (st == dnnl_success && a->inner) st = dl.dnnl_memory_set_data_handle_v2(a->inner, base + a->off, stream);
        if (st == dnnl_success && a->inner && !a->is_out) st = run_reorder(a, o->scratch);
        args[i].arg = a->id;
        args[i].memory = a->inner ? a->inner : a->user;
    }
    int nargs = o->n;
    if (o->scratch) {
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs++].memory = o->scratch;
    }
    if (st == dnnl_success) st = dl.dnnl_primitive_execute(o->prim, stream, nargs, args);
    for (int i = 0; i < o->n && st == dnnl_success; i++)
        if (o->a[i].inner && o->a[i].is_out) st = run_reorder(&o->a[i], o->scratch);
    if (st == dnnl_success) st = dl.dnnl_stream_wait(stream);
    return st;
}

/* Runs op over the batch of s in chunks, with the caller's tensors ptrs
 * for the whole batch (in argument order); step[i]: floats argument i
 * advances per sample (0: the same for every chunk). Backward-weights sums
 * the chunks' dw and dbias in chunk order. Returns 0, or -1 if oneDNN cannot
 * run it (nothing then is half-written that BLAS will not overwrite). */
static int dnnl_call(const struct wf_conv2d_shape *s, int op, void *const *ptrs, const long *step, float *work,
                     int zero_bias) {
    struct wf_conv2d_shape full, tail;
    const int has_tail = chunk_shapes(s, &full, &tail);
    int rc = -1;
    pthread_mutex_lock(&cache_mu);
    struct dnnl_entry *ef = entry_get(&full, 1 << op), *et = has_tail ? entry_get(&tail, 1 << op) : NULL;
    const long have = reported_for(s), nf = op_need(ef, op), nt = has_tail ? op_need(et, op) : 0;
    if (nf >= 0 && nt >= 0 && nf <= have && nt <= have) {
        float *base = align_work(work);
        const long bias_floats = round_floats(sizeof(float) * (size_t)s->OC);
        const long nw = (long)s->OC * s->C * s->KH * s->KW;
        if (zero_bias) memset(base, 0, sizeof(float) * (size_t)s->OC);
        dnnl_status_t st = dnnl_success;
        for (int n0 = 0; n0 < s->N && st == dnnl_success; n0 += full.N) {
            struct dnnl_op *o = n0 + full.N <= s->N ? &ef->op[op] : &et->op[op];
            void *p[ARG_MAX];
            for (int i = 0; i < o->n; i++)
                p[i] = (float *)ptrs[i] + n0 * step[i];
            float *dw_chunk = base + bias_floats, *db_chunk = dw_chunk + round_floats(sizeof(float) * (size_t)nw);
            if (op % OP_BASE == OP_BWD_WEIGHTS && n0 > 0) {
                p[2] = dw_chunk;
                p[3] = db_chunk;
            }
            st = op_run(o, p, base);
            if (st == dnnl_success && op % OP_BASE == OP_BWD_WEIGHTS && n0 > 0) {
                float *dw = ptrs[2], *db = ptrs[3];
                for (long i = 0; i < nw; i++)
                    dw[i] += dw_chunk[i];
                for (int i = 0; i < s->OC; i++)
                    db[i] += db_chunk[i];
            }
        }
        if (st == dnnl_success) {
            rc = 0;
        } else {
            static int warned;
            if (!warned++)
                WF_LOGW("tensor", "onednn: convolution op %d failed (status %d); it runs on blas", op, (int)st);
        }
    }
    pthread_mutex_unlock(&cache_mu);
    return rc;
}

/* src_blk, dst_blk: src / diff_src, dst / diff_dst in nChw16c (the caller
 * checked that C, OC are multiples of 16, so they are as large as NCHW and
 * a sample still advances C*H*W, OC*OH*OW). */
static int variant(int base, int src_blk, int dst_blk) { return base + OP_BASE * (src_blk + 2 * dst_blk); }

int wf_conv_dnnl_forward(float *out, const float *inp, const float *w, const float *bias,
                         const struct wf_conv2d_shape *s, float *work, int src_blk, int dst_blk) {
    /* bias NULL: zeros at the start of the work area */
    void *ptrs[] = {(void *)inp, (void *)w, bias ? (void *)bias : align_work(work), out};
    const long step[] = {(long)s->C * s->H * s->W, 0, 0, (long)s->OC * s->OH * s->OW};
    return dnnl_call(s, variant(OP_FWD, src_blk, dst_blk), ptrs, step, work, !bias);
}

int wf_conv_dnnl_backward_data(float *dinp, const float *dout, const float *w, const struct wf_conv2d_shape *s,
                               float *work, int src_blk, int dst_blk) {
    void *ptrs[] = {(void *)dout, (void *)w, dinp};
    const long step[] = {(long)s->OC * s->OH * s->OW, 0, (long)s->C * s->H * s->W};
    return dnnl_call(s, variant(OP_BWD_DATA, src_blk, dst_blk), ptrs, step, work, 0);
}

int wf_conv_dnnl_backward_weights(float *dw, float *dbias, const float *dout, const float *inp,
                                  const struct wf_conv2d_shape *s, float *work, int src_blk, int dst_blk) {
    /* dbias NULL: computed into the start of the work area and dropped */
    void *ptrs[] = {(void *)inp, (void *)dout, dw, dbias ? dbias : (void *)align_work(work)};
    const long step[] = {(long)s->C * s->H * s->W, (long)s->OC * s->OH * s->OW, 0, 0};
    return dnnl_call(s, variant(OP_BWD_WEIGHTS, src_blk, dst_blk), ptrs, step, work, 0);
}
