/*
 * weft core layer: status codes and error messages, logging, the allocation
 * seam, a counter-based random generator, hashing and time.
 *
 * Every layer above uses these; this layer uses only libc.
 *
 * Errors: functions return an int status (WF_OK or a negative WF_ERR_*).
 * The place that detects an error records a message once with wf_error();
 * callers read it with wf_errmsg() and may prefix context with
 * wf_error_prefix(). Messages are per thread.
 */
#ifndef WEFT_CORE_H
#define WEFT_CORE_H

#include <stddef.h>
#include <stdint.h>

enum wf_status {
    WF_OK = 0,
    WF_ERR_NOMEM = -1,    /* allocation failed */
    WF_ERR_IO = -2,       /* open/read/write/fsync/rename failed */
    WF_ERR_PARSE = -3,    /* malformed text (model, job) */
    WF_ERR_SHAPE = -4,    /* shape mismatch */
    WF_ERR_INVALID = -5,  /* invalid argument or configuration */
    WF_ERR_CORRUPT = -6,  /* malformed or truncated binary file */
    WF_ERR_NOTFOUND = -7, /* missing file, tensor or name */
    WF_ERR_RANGE = -8,    /* value out of range (label, index, overflow) */
    WF_ERR_INTERNAL = -9, /* broken invariant: a bug in weft */
    WF_ERR_TIMEOUT = -10, /* a peer did not answer in time */
    WF_ERR_PEER = -11,    /* a peer closed the connection, failed or broke the protocol */
    WF_ERR_AUTH = -12,    /* a peer without the cluster token */
};

const char *wf_status_str(int status);

/* Records a formatted message for this thread and returns status. */
int wf_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message; returns status. */
int wf_error_prefix(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *wf_errmsg(void);
void wf_error_clear(void);

/* ---- logging: WEFT_LOG=error|warn|info|debug (default warn) ---- */
enum wf_log_level { WF_LOG_ERROR = 0, WF_LOG_WARN, WF_LOG_INFO, WF_LOG_DEBUG };
void wf_log(int level, const char *subsys, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int wf_log_enabled(int level);
#define WF_LOGE(sub, ...) wf_log(WF_LOG_ERROR, sub, __VA_ARGS__)
#define WF_LOGW(sub, ...) wf_log(WF_LOG_WARN, sub, __VA_ARGS__)
#define WF_LOGI(sub, ...) wf_log(WF_LOG_INFO, sub, __VA_ARGS__)
#define WF_LOGD(sub, ...) wf_log(WF_LOG_DEBUG, sub, __VA_ARGS__)

/* ---- allocation seam: every allocation in weft goes through these ---- */
void *wf_malloc(size_t size);
void *wf_calloc(size_t n, size_t size);
void *wf_realloc(void *p, size_t size);
void wf_free(void *p);
char *wf_strdup(const char *s);
/* printf at buf + *k, never past buf[n - 1]; *k stays <= n - 1 (the text is cut). */
void wf_appendf(char *buf, size_t n, size_t *k, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 64-byte aligned, zero-filled; free with wf_afree. */
void *wf_aalloc(size_t size);
void wf_afree(void *p);
/* ---- the memory bound: models too large are refused before allocating ----
 * The bound is the machine's physical memory, or the override set by
 * wf_mem_set_limit in its place (higher or lower); an address-space limit
 * (RLIMIT_AS, `ulimit -v`) below either wins. */

/* Refuses (WF_ERR_NOMEM, naming `who`, `what`, both sizes and which bound)
 * a request of `bytes` beyond the bound. Called before large allocations
 * sized by a model file, so that nothing is zero-filled for minutes first.
 * Messages: "WHO: WHAT need 25.1 GB, more than this machine's physical
 * memory of 8.35 GB" (or "... address-space limit (ulimit -v) of ..."), in
 * decimal units; "WHO: WHAT need 1.05 MiB, more than the --max-memory of
 * 1 KiB" in binary units when the override is the bound. */
int wf_mem_check(const char *who, const char *what, size_t bytes);
/* A tensor a refusal names: "fc1.weight f32[256, 784] 784 KiB". */
struct wf_mem_item {
    const char *name;  /* e.g. a value's name */
    const char *shape; /* e.g. "f32[256, 784]"; NULL: none */
    size_t bytes;      /* its size */
};
/* wf_mem_check, and a refusal ends with the n_items given (the caller picks
 * and orders them): "...; largest ITEMS_WHAT: a f32[4] 16 bytes, b ...". */
int wf_mem_check_items(const char *who, const char *what, size_t bytes, const char *items_what,
                       const struct wf_mem_item *items, int n_items);
/* Sets the process-wide override (bytes; 0: none, the machine's bounds
 * apply). `origin` names it in messages ("--max-memory"; NULL: that). Not
 * thread-safe: set it before threads start (the CLI does, from its options
 * and WEFT_MAX_MEMORY). */
void wf_mem_set_limit(uint64_t bytes, const char *origin);
uint64_t wf_mem_limit(void); /* the override, 0 if none */
/* Parses a size: decimal digits, optionally followed by K, M, G or T (either
 * case; powers of 1024: "2G" is 2 GiB), nothing else ("0" is 0). Errors
 * (WF_ERR_INVALID, WF_ERR_RANGE past 2^64 - 1) name `name` (the option or
 * variable) and the text. */
int wf_mem_parse_size(const char *name, const char *text, uint64_t *bytes);
/* "1.5 GiB" (binary) or "1.61 GB" (decimal), "512 bytes" below one unit. */
void wf_fmt_bytes(char *buf, size_t n, double bytes, int binary);
/* Test hook: the n-th allocation from now fails (n >= 1); n = 0 disables. */
void wf_alloc_fail_at(long n);
/* Allocations made through the seam so far (tests check that a training
 * step makes none). */
long wf_alloc_count(void);

/* ---- counter-based random numbers (Philox4x32-10) ----
 * A stream is a pure function of (key, stream id); position i of a stream
 * is computable directly, so any worker reproduces any draw. */
void wf_philox(uint64_t key, uint64_t ctr_hi, uint64_t ctr_lo, uint32_t out[4]);

struct wf_rng {
    uint64_t key;     /* derived from the seed */
    uint64_t stream;  /* e.g. hash of (step, micro-batch, op) */
    uint64_t counter; /* blocks of 4 draws consumed */
    uint32_t buf[4];
    int idx; /* next unused word in buf, 4 = empty */
};
void wf_rng_init(struct wf_rng *r, uint64_t seed, uint64_t stream);
uint32_t wf_rng_u32(struct wf_rng *r);
float wf_rng_uniform(struct wf_rng *r);              /* [0, 1) with 24 random bits */
float wf_rng_normal(struct wf_rng *r);               /* standard normal, Box-Muller */
uint32_t wf_rng_below(struct wf_rng *r, uint32_t n); /* unbiased in [0, n) */
/* uniform in [0,1) for element i of stream (key, stream): no state */
float wf_rng_uniform_at(uint64_t key, uint64_t stream, uint64_t i);

/* ---- hashing ---- */
uint64_t wf_mix64(uint64_t x);                                 /* splitmix64 finalizer */
uint64_t wf_hash64(const void *data, size_t n, uint64_t seed); /* FNV-1a 64 + mix */
uint64_t wf_hash_combine(uint64_t h, uint64_t v);

/* ---- time ---- */
double wf_now(void);      /* monotonic seconds */
double wf_cpu_time(void); /* process CPU seconds */
long wf_peak_rss_kb(void);

/* ---- threads: a fork-join pool for data-parallel loops ----
 * fn(ctx, begin, end) runs on contiguous chunks of [0, n), one per thread,
 * each at least min_chunk long; the caller runs the first chunk and returns
 * when all are done. Not reentrant: call it from one thread at a time. */
int wf_pool_set_threads(int n); /* total threads including the caller */
int wf_pool_threads(void);
void wf_parallel_for(long n, long min_chunk, void (*fn)(void *ctx, long begin, long end), void *ctx);

/* ---- misc ---- */
#define WF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define WF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define WF_MAX(a, b) ((a) > (b) ? (a) : (b))
/* Reads a whole file into a NUL-terminated heap buffer. */
int wf_read_file(const char *path, char **data, size_t *len);
/* Writes a file atomically: path.tmp, fsync, rename, fsync dir. */
int wf_write_file_atomic(const char *path, const void *data, size_t len);
int wf_mkdir_p(const char *path);
/* Removes the temporaries a killed writer left in dir (not recursive): the
 * regular files named "<something>.tmp.<pid>" whose process pid is gone
 * (kill(pid, 0) fails with ESRCH); a live pid's, even another user's, and
 * this process's own are kept. Logs each removal (warn, "core") and sets
 * *removed (may be NULL) to their count. Pids are this host's: a folder
 * written from several hosts at once is not for this call. Returns WF_OK,
 * or WF_ERR_IO / WF_ERR_NOTFOUND when dir cannot be listed or a file cannot
 * be removed (the others are still removed). */
int wf_remove_stale_tmp(const char *dir, int *removed);

/* ---- a map from strings to ints: open addressing, linear probing ----
 * Keys are borrowed: the caller keeps each key's bytes alive and unchanged
 * while it is in the map (e.g. the names of a graph's values). Lookups and
 * insertions take O(1) expected time; the table doubles at 1/2 full. */
struct wf_hmap_slot {
    const char *key; /* NULL: empty */
    uint64_t hash;   /* wf_hash64 of the key */
    int val;
};
struct wf_hmap {
    struct wf_hmap_slot *slot; /* cap slots, NULL until the first insertion */
    size_t cap;                /* a power of two, or 0 */
    size_t n;                  /* keys held */
};
void wf_hmap_init(struct wf_hmap *h);
void wf_hmap_free(struct wf_hmap *h); /* accepts NULL; leaves h empty and usable */
/* The value of key, or -1 if it is not in the map. */
int wf_hmap_get(const struct wf_hmap *h, const char *key);
/* Adds key -> val unless key is there already (the first value stays).
 * Returns 1 if added, 0 if key was there, WF_ERR_NOMEM (nothing changed). */
int wf_hmap_put(struct wf_hmap *h, const char *key, int val);

#endif
