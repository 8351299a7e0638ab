/*
 * weft data layer: the data service core (DESIGN.md C12, issue 5).
 *
 *   store      one sample at a time from an uncompressed IDX pair (pread),
 *              every byte counted; a .gz source is staged once
 *   transforms a chain "normalize(...), crop(...), flip(...), noise(...)":
 *              the leading deterministic ops are the cached prefix, the rest
 *              run after the cache with randomness keyed by
 *              (seed, epoch, sample id) only
 *   cache      batch get/put of prefix outputs keyed by (cache id, sample id);
 *              in-process (bounded, CLOCK eviction) or Redis (hiredis)
 *   loader     fetch(ids, epoch) -> x, y: cache hits, store reads for misses,
 *              fallback to the store when the cache fails
 *
 * Example:
 *
 *   struct wf_store *s;   wf_store_open(&s, "/usr/share/datasets/fashion-mnist", "train", "out/data-stage");
 *   struct wf_cache *c;   wf_cache_new_mem(&c, 256 << 20);
 *   struct wf_loader *l;  wf_loader_new(&l, s, "normalize(mean=0.286, std=0.353), flip(p=0.5)", 42, c);
 *   wf_loader_fetch(l, ids, 64, epoch, x, y);   // x (64, 1*28*28) float32 CHW, y (64)
 *   wf_loader_free(l); wf_cache_free(c); wf_store_free(s);
 *
 * The loader borrows the store and the cache (several loaders may share
 * one cache); free the loaders first. All objects here are safe to use from
 * several threads at once.
 *
 * Typed data (DESIGN.md §3a): a folder holding train.tok, test.tok and
 * vocab.txt (docs/formats.md, "Token datasets") is a token dataset. Opened
 * with wf_store_open_opts and sample options, its samples are int32 token
 * windows or sequences with int32 labels (one per sample or one per token;
 * with train.cls, test.cls and classes.txt, a sequence's class) and, for
 * sequences, a length; they pass untransformed through the same
 * cache, loader and feeder, with the same rules (epoch order, exactly once,
 * the same bytes whoever prepares them):
 *
 *   struct wf_sample_opts so = {.seq_len = 64, .sample = WF_SAMPLE_WINDOW, .labels = WF_LABELS_NEXT};
 *   wf_store_open_opts(&s, "data/fortunes", "train", NULL, &so);
 *   wf_loader_new(&l, s, "", 42, c);                 // transforms must be ""
 *   wf_loader_fetch_any(l, ids, 64, epoch, x, y, NULL); // x (64, 64) int32, y (64) int32
 */
#ifndef WEFT_LOADER_H
#define WEFT_LOADER_H

#include <stddef.h>
#include <stdint.h>

/* ---- store ---- */

struct wf_store;

enum wf_stage_state {
    WF_STAGE_NONE = 0,      /* the source files are uncompressed: read in place */
    WF_STAGE_CONVERTED = 1, /* a .gz source was decompressed into the staging folder by this open */
    WF_STAGE_REUSED = 2,    /* a staged copy from an earlier open matched and was reused */
};

/* How a token dataset becomes samples (job keys seq_len, sample, labels, stride). */
enum wf_sample_mode {
    WF_SAMPLE_WINDOW = 0,   /* the split's sequences as one stream; sample i = tokens [i*stride, i*stride + T) */
    WF_SAMPLE_SEQUENCE = 1, /* sample i = sequence i, cut to T tokens, padded with the pad id */
};
enum wf_label_mode {
    WF_LABELS_NEXT = 0,    /* window only: one label, the token after the window */
    WF_LABELS_SHIFTED = 1, /* T labels: the token after each position (the pad id past a sequence's end) */
    WF_LABELS_CLASS = 2,   /* sequence only: one label, the sequence's class (<split>.cls, classes.txt) */
};

struct wf_sample_opts {
    int seq_len; /* T, tokens a sample (1 .. WF_SEQ_LEN_MAX); 0: no options (an image dataset) */
    int sample;  /* enum wf_sample_mode */
    int labels;  /* enum wf_label_mode; window: NEXT or SHIFTED; sequence: SHIFTED or CLASS */
    int stride;  /* window: tokens between the starts of samples i and i+1; 0 means 1 */
};
#define WF_SEQ_LEN_MAX (1 << 20)

enum wf_store_kind { WF_STORE_IMAGES = 0, WF_STORE_TOKENS = 1 };

struct wf_store_info {
    int n;                  /* samples */
    int c, h, w;            /* image shape, c = 1 for IDX; tokens: 1, 1, T (so c*h*w = x_per) */
    int n_classes;          /* 1 + max label; tokens: the vocab size, or C (labels = class) */
    uint8_t digest[32];     /* SHA-256 of (SHA-256 of image data file, SHA-256 of label data file); tokens:
                               SHA-256 of the .tok file, or (labels = class) of (its SHA-256, the .cls's) */
    char digest_hex[65];    /* the same, lowercase hex */
    const char *image_path; /* the uncompressed file samples are read from */
    const char *label_path; /* idem, labels (tokens: the .tok file, or the .cls file for labels = class) */
    int stage;              /* enum wf_stage_state: CONVERTED if either file was converted */
    uint64_t stage_bytes;   /* bytes written into the staging folder by this open (0 when reused) */
    double stage_s;         /* seconds spent decompressing by this open */
    uint64_t open_bytes;    /* bytes read to digest and validate the files at open (not per-sample reads) */
    double open_s;          /* seconds wf_store_open took */
    /* typed data: what a sample is (images fill these too) */
    int kind;                     /* enum wf_store_kind */
    int x_dtype;                  /* WF_F32 (images, after the transforms) or WF_I32 (token ids), weft/safetensors.h */
    int64_t x_per;                /* values a sample: c*h*w, or T */
    int64_t y_per;                /* labels a sample: 1 (next, class, images), or T (WF_LABELS_SHIFTED) */
    int has_len;                  /* 1: each sample has a length (WF_SAMPLE_SEQUENCE) */
    int vocab;                    /* tokens: ids are 0 .. vocab-1; images: 0 */
    int pad_id;                   /* tokens: the id padding a short sequence and labelling past its end */
    struct wf_sample_opts sample; /* tokens: the options in force (stride resolved); images: all 0 */
    int id_bytes;                 /* tokens: bytes per id in the file, 2 or 4 */
    int64_t n_seqs;               /* tokens: sequences in the file */
    int64_t n_tokens;             /* tokens: ids in the file */
};

/* Opens DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (split "train"
 * or "test"; a plain file is preferred over .gz when both exist). A .gz file
 * is decompressed once into STAGE_DIR (created if needed; temp name, then an
 * atomic rename) and reused on later opens when its recorded size and
 * SHA-256 still match; STAGE_DIR may be NULL only for uncompressed sources.
 * Validates magic, dimensions and that each file is exactly as long as its
 * header says: a truncated file is WF_ERR_CORRUPT naming the file, the
 * first incomplete sample, its offset and the expected and actual sizes.
 * Returns WF_OK or a negative status (message in wf_errmsg()). */
int wf_store_open(struct wf_store **out, const char *dir, const char *split, const char *stage_dir);
/* Opens split "train" or "test" of DIR, picking the format from the
 * folder's files: DIR/<split>.tok makes it a token dataset, sampled as `o`
 * says (o must be non-NULL with seq_len >= 1; vocab.txt must be there and
 * agree with the file's header); anything else is an IDX dataset, opened as
 * wf_store_open does (o then NULL or seq_len 0). A token file is validated
 * whole at open (header, every offset, every id; docs/formats.md): a
 * truncated or hostile file is WF_ERR_CORRUPT naming the file, the field
 * and its offset; a split too short for one sample, or with more than
 * INT_MAX samples, is WF_ERR_RANGE. With labels = WF_LABELS_CLASS the
 * split's class file DIR/<split>.cls and DIR/classes.txt are read and
 * checked whole too (missing: WF_ERR_NOTFOUND; any disagreement with the
 * token file or the class list: WF_ERR_CORRUPT naming the file, the field
 * and its offset). */
int wf_store_open_opts(struct wf_store **out, const char *dir, const char *split, const char *stage_dir,
                       const struct wf_sample_opts *o);
/* 1 if DIR holds a token dataset (DIR/train.tok exists), else 0. */
int wf_store_dir_is_tokens(const char *dir);
/* 1 if DIR's token dataset has class labels (DIR/classes.txt exists), else 0. */
int wf_store_dir_has_classes(const char *dir);
void wf_store_free(struct wf_store *s);
const struct wf_store_info *wf_store_info(const struct wf_store *s);

/* Reads sample `id`: c*h*w pixel bytes into pix and its label into *label,
 * with two preads. A short read (the file shrank after open) is
 * WF_ERR_CORRUPT naming the file, the id, the offset and the expected and
 * actual sizes; an id >= n is WF_ERR_RANGE. Thread-safe. */
int wf_store_read(struct wf_store *s, uint32_t id, uint8_t *pix, int32_t *label);
/* Token stores: sample `id` into x (x_per int32 ids), y (y_per int32
 * labels) and *len (its length: min(sequence length, T), or T for a
 * window); len may be NULL. One or two preads. A short read or an id not
 * below the vocab size (the file changed after open) is WF_ERR_CORRUPT
 * naming the file, the id and the offset; an id >= n is WF_ERR_RANGE; an
 * image store is WF_ERR_INVALID (and wf_store_read on a token store too).
 * Thread-safe. */
int wf_store_read_tokens(struct wf_store *s, uint32_t id, int32_t *x, int32_t *y, int32_t *len);
/* Bytes read by wf_store_read so far (pixels and labels). */
uint64_t wf_store_bytes_read(const struct wf_store *s);

/* ---- token files (docs/formats.md, "Token datasets") ---- */

#define WF_TOK_MAGIC "WFTOKENS" /* 8 bytes at offset 0 */
#define WF_TOK_VERSION 1
#define WF_TOK_HEADER_BYTES 48
#define WF_TOK_MAX_VOCAB 0x7fffffff

enum wf_vocab_kind { WF_VOCAB_CHARS = 0, WF_VOCAB_BYTES = 1 };

/* Encodes a token file into a new buffer (*buf, freed with wf_free):
 * n_seq sequences, sequence k being ids[offsets[k] .. offsets[k+1]) with
 * offsets[0] = 0 and offsets nondecreasing; ids are 2 bytes when vocab <=
 * 65536, else 4. Every id must be below vocab and pad_id too
 * (WF_ERR_INVALID otherwise). Equal input gives equal bytes. */
int wf_tok_encode(uint32_t vocab, uint32_t pad_id, const uint64_t *offsets, uint64_t n_seq, const uint32_t *ids,
                  void **buf, size_t *len);
/* wf_tok_encode, then written atomically to path (temp file, fsync, rename). */
int wf_tok_write(const char *path, uint32_t vocab, uint32_t pad_id, const uint64_t *offsets, uint64_t n_seq,
                 const uint32_t *ids);
/* Writes the vocabulary file atomically: id k stands for code[k] (a Unicode
 * code point for WF_VOCAB_CHARS, a byte value for WF_VOCAB_BYTES); n ids,
 * pad_id < n. */
int wf_vocab_write(const char *path, int kind, const uint32_t *code, int n, int pad_id);
/* Reads the header line of a vocabulary file: its kind, size and pad id.
 * A malformed file is WF_ERR_CORRUPT naming it. */
int wf_vocab_read_header(const char *path, int *kind, int *n, int *pad_id);
/* The SHA-256 of a token file's bytes: its content digest, which a class
 * file records to name the token file it labels. */
void wf_tok_digest(const void *buf, size_t len, uint8_t sha[32]);

/* ---- class files: one class per sequence (docs/formats.md, "Class labels") ---- */

#define WF_CLS_MAGIC "WFTOKCLS" /* 8 bytes at offset 0 */
#define WF_CLS_VERSION 1
#define WF_CLS_HEADER_BYTES 64
#define WF_CLS_MAX_CLASSES 0x7fffffff

/* Encodes a class file into a new buffer (*buf, freed with wf_free): the
 * class ids cls[0..n) of the n sequences of the token file whose SHA-256 is
 * tok_sha, each in 0..n_classes-1 (WF_ERR_INVALID otherwise). Equal input
 * gives equal bytes. */
int wf_cls_encode(const uint8_t tok_sha[32], uint32_t n_classes, const int32_t *cls, uint64_t n, void **buf,
                  size_t *len);
/* wf_cls_encode, then written atomically to path (temp file, fsync, rename). */
int wf_cls_write(const char *path, const uint8_t tok_sha[32], uint32_t n_classes, const int32_t *cls, uint64_t n);

/* What a class file must agree with; each field unset (0, NULL) checks nothing. */
struct wf_cls_want {
    uint64_t n_seq;           /* the token file's sequence count (UINT64_MAX: any) */
    const uint8_t *tok_sha;   /* the token file's SHA-256, or NULL */
    const char *tok_path;     /* the token file, for messages */
    uint32_t n_classes;       /* the class count of classes.txt, or 0 */
    const char *classes_path; /* classes.txt, for messages */
};
/* Checks a class file's header (the first WF_CLS_HEADER_BYTES of it)
 * against the file's size and `want` (may be NULL): the magic, the version,
 * the class count, the sequence count, the token file's digest, the
 * reserved field, truncation and trailing bytes. Every failure is
 * WF_ERR_CORRUPT naming path, the field and its offset. On success *n_classes
 * and *n are the header's counts (either may be NULL). */
int wf_cls_check_header(const char *path, const unsigned char *h, uint64_t size, const struct wf_cls_want *want,
                        uint32_t *n_classes, uint64_t *n);
/* Decodes a whole class file held in buf[0..len): wf_cls_check_header,
 * then every id below the class count (WF_ERR_CORRUPT naming the sequence,
 * its offset and the id). On success *ids (may be NULL: check only) is a
 * new array of *n int32 class ids, freed with wf_free. */
int wf_cls_decode(const char *path, const void *buf, size_t len, const struct wf_cls_want *want, uint32_t *n_classes,
                  uint64_t *n, int32_t **ids);

/* Writes the class list atomically: "weft-classes 1 files C", then one line
 * "ID NAME" per class in id order. A name must be non-empty and hold no
 * control character (WF_ERR_INVALID naming it). */
int wf_classes_write(const char *path, const char *const *names, int n);
/* Reads and checks a class list: its header, then one line per class with
 * the ids in order and a name each. *n = C. A malformed file is
 * WF_ERR_CORRUPT naming it and the line. */
int wf_classes_read_header(const char *path, int *n);

/* ---- transforms ---- */

enum wf_xf_kind {
    WF_XF_NORMALIZE, /* x = (x - mean) / std; deterministic */
    WF_XF_CROP,      /* random crop: zero-pad by `pad` on every side, cut h x w at a random offset */
    WF_XF_FLIP,      /* horizontal flip with probability p */
    WF_XF_NOISE,     /* x += std * N(0,1); repeat = k draws k normals per pixel and adds
                        their sum * std/sqrt(k): same distribution, k times the work (the
                        knob for input-bound benchmarks) */
};

struct wf_xf {
    int kind;        /* enum wf_xf_kind */
    float mean, std; /* normalize: mean, std; noise: std */
    int pad;         /* crop */
    float p;         /* flip */
    int repeat;      /* noise, >= 1 */
};

#define WF_XF_MAX 16

struct wf_xf_chain {
    int n;        /* ops */
    int n_prefix; /* ops [0, n_prefix) are deterministic: the cached prefix */
    struct wf_xf op[WF_XF_MAX];
    uint64_t digest;        /* hash of the canonical text of the whole chain */
    uint64_t prefix_digest; /* hash of the canonical text of the prefix */
};

/* Parses "op(k=v, ...), op(...)" ("" is the empty chain). Ops: normalize(mean,
 * std), crop(pad), flip(p=0.5), noise(std, repeat=1). An error is
 * WF_ERR_PARSE naming the column and the bad word. */
int wf_xf_parse(struct wf_xf_chain *ch, const char *text);
/* Canonical text of ops [from, to): "normalize(mean=0.286,std=0.353),flip(p=0.5)". */
void wf_xf_text(const struct wf_xf_chain *ch, int from, int to, char *buf, size_t cap);
/* The cached prefix: pix (c,h,w) bytes -> out (c,h,w) float = pix/255, then ops [0, n_prefix). */
void wf_xf_prefix(const struct wf_xf_chain *ch, const uint8_t *pix, int c, int h, int w, float *out);
/* The random ops [n_prefix, n) on x (c,h,w) in place; randomness keyed by
 * (seed, epoch, id) and the op's position only. scratch holds c*h*w floats. */
void wf_xf_random(const struct wf_xf_chain *ch, uint64_t seed, uint64_t epoch, uint32_t id, int c, int h, int w,
                  float *x, float *scratch);
/* The cache id of a pipeline: hash of the dataset digest, the sample shape
 * and the prefix's canonical text. */
uint64_t wf_xf_cache_id(const struct wf_xf_chain *ch, const struct wf_store_info *info);

/* ---- cache ---- */

struct wf_cache;

struct wf_cache_stats {
    uint64_t hits;      /* ids found by get */
    uint64_t misses;    /* ids not found (or found with a wrong size) */
    uint64_t puts;      /* values stored */
    uint64_t evictions; /* in-process: values evicted; Redis: the server's evicted_keys */
    uint64_t bytes;     /* in-process: value bytes held; Redis: the server's used_memory */
    uint64_t errors;    /* failed get/put calls (and values of a wrong size) */
    uint64_t connects;  /* Redis: connection attempts */
};

/* In-process cache holding at most max_bytes of values (CLOCK eviction). */
int wf_cache_new_mem(struct wf_cache **out, size_t max_bytes);

struct wf_redis_opts {
    int connect_timeout_ms; /* default 1000 */
    int command_timeout_ms; /* default 2000 */
    double retry_s;         /* after a failure, no reconnect before this many seconds; default 5 */
};

/* Redis cache at host:port, keys "weft:<cache id hex>:<id>". Connects now;
 * when that fails it logs a warning and returns WF_OK with the cache down
 * (get/put fail fast until the next retry). opts may be NULL. */
int wf_cache_new_redis(struct wf_cache **out, const char *host, int port, const struct wf_redis_opts *opts);
void wf_cache_free(struct wf_cache *c);

/* Looks up ids[0..n) under cache id `cid`. hit[i] = 1 and vals[i*size ..)
 * filled for each value of exactly `size` bytes, else hit[i] = 0. Returns
 * WF_OK, or an error when the cache failed (hit[] is then all 0 and the
 * message names the server). */
int wf_cache_get(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, void *vals, uint8_t *hit);
/* Stores vals[i*size ..) for ids[0..n). Returns WF_OK or an error. */
int wf_cache_put(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, const void *vals);
void wf_cache_stats(struct wf_cache *c, struct wf_cache_stats *st);
/* "memory" or "redis cache 127.0.0.1:6379". */
const char *wf_cache_name(const struct wf_cache *c);
/* The last error this cache hit ("" if none); copied into buf. */
void wf_cache_last_error(struct wf_cache *c, char *buf, size_t cap);

/* ---- loader: synchronous batch fetch ---- */

struct wf_loader;

struct wf_loader_stats {
    uint64_t samples;          /* ids delivered */
    uint64_t bytes_read;       /* bytes this loader read from the store */
    uint64_t hits, misses;     /* cache lookups (misses include ids of failed lookups) */
    uint64_t fallback_batches; /* fetches in which the cache failed and the store served instead */
    uint64_t fallback_ids;     /* ids served from the store because the cache failed */
    uint64_t cache_errors;     /* failed cache calls (get or put) */
};

/* A loader over `store` with the transform chain `transforms` and `seed`;
 * cache may be NULL (every id read from the store). Borrows store and cache.
 * A token store takes no transforms: a non-empty chain is WF_ERR_INVALID
 * naming the key `transforms`. */
int wf_loader_new(struct wf_loader **out, struct wf_store *store, const char *transforms, uint64_t seed,
                  struct wf_cache *cache);
void wf_loader_free(struct wf_loader *l);

/* Fills x (n, c*h*w) float32 CHW and y (n) with samples ids[0..n) of epoch
 * `epoch`, slot i for ids[i]. Cache hits go to the random transforms;
 * misses are read from the store, run through the prefix, written back and
 * then transformed. When the cache fails, every id not yet served comes
 * from the store: each id is delivered exactly once whatever happens to the
 * cache. x may be NULL: labels only (a pipeline's last stage), the cache
 * and the store used as for a full fetch but no random op run.
 * Returns WF_OK, WF_ERR_RANGE for an id >= n, or the store's error. */
int wf_loader_fetch(struct wf_loader *l, const uint32_t *ids, int n, uint64_t epoch, float *x, int32_t *y);
/* Any store: x (n, x_per) of the store's x_dtype (float32 for images, int32
 * token ids), y (n, y_per) int32, len (n) int32 lengths for token samples
 * (T for windows; left untouched for images); x and len may be NULL. The
 * same cache, fallback and exactly-once rules as wf_loader_fetch, which it
 * is for images. For tokens a cached value holds the sample as read
 * (docs/formats.md); nothing is transformed. wf_loader_fetch on a token
 * loader is WF_ERR_INVALID (its y would be too short). */
int wf_loader_fetch_any(struct wf_loader *l, const uint32_t *ids, int n, uint64_t epoch, void *x, int32_t *y,
                        int32_t *len);
void wf_loader_stats(const struct wf_loader *l, struct wf_loader_stats *st);
uint64_t wf_loader_cache_id(const struct wf_loader *l);
const struct wf_xf_chain *wf_loader_chain(const struct wf_loader *l);
/* The store the loader reads (borrowed at wf_loader_new). */
struct wf_store *wf_loader_store(const struct wf_loader *l);

#endif
