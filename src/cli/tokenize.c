/*
 * cli layer: `weft tokenize`, which turns text files into a token dataset
 * (train.tok, test.tok, vocab.txt; docs/formats.md, "Token datasets").
 *
 * Sequences: a file with a line holding only "%" is a fortune file and
 * each "%"-separated fortune is one sequence (its lines with their
 * newlines); any other file is one sequence. Sequences that are empty or
 * only whitespace are skipped. Sequence i (0-based, in argument order, then
 * file order) goes to the test split when (i + 1) % N == 0, else to train.
 *
 * Vocabularies: chars (default), id 0 the pad (U+0000), then every
 * distinct character of all the input (train and test), by code point;
 * bytes, 256 ids, id b the byte b, pad 0. Input with a NUL byte, or (chars)
 * invalid UTF-8, is refused naming the file and the offset.
 *
 * Classes (--classes file): each distinct input file is a class, in
 * argument order; every sequence of a file gets its class, written per
 * split to train.cls / test.cls beside the token files, and the classes'
 * names (the files' base names) to classes.txt. --top K keeps the K largest
 * classes, renumbered by size (ties by name), and drops the other classes'
 * sequences before the split. Without --classes, class files an earlier
 * run left in the folder are removed: they would label other sequences.
 *
 * The same files in the same order give the same bytes; each output file
 * is written atomically (temp file, fsync, rename).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft/core.h"
#include "weft/loader.h"

#include "cli_int.h"

static void usage_tokenize(FILE *f) {
    fprintf(
        f,
        "usage: weft tokenize TEXT... --out DIR [--vocab chars|bytes] [--test-every N] [--classes file [--top K]]\n\n"
        "Makes a token dataset of text files: DIR/train.tok, DIR/test.tok and DIR/vocab.txt\n"
        "(docs/formats.md), for jobs with seq_len, sample and labels (see include/weft/job.h).\n\n"
        "  A file with a line holding only '%%' is a fortune file: each fortune is a sequence;\n"
        "  any other file is one sequence. Empty or blank sequences are skipped.\n\n"
        "options:\n"
        "  --out DIR         the dataset folder (created if needed)\n"
        "  --vocab chars     one id per UTF-8 character of the input, id 0 the pad (default)\n"
        "  --vocab bytes     256 ids, one per byte value, id 0 the pad\n"
        "  --test-every N    every Nth sequence goes to the test split (default 10, N >= 2)\n"
        "  --classes file    label each sequence with its file: each distinct input file is a class\n"
        "                    (0, 1, ... in argument order), written to DIR/train.cls, DIR/test.cls and\n"
        "                    DIR/classes.txt, for jobs with sample = sequence and labels = class; prints\n"
        "                    each class's sequences and the majority-class baseline accuracy\n"
        "  --top K           with --classes: keep the K largest classes, renumbered by size (ties by\n"
        "                    name); the other classes' sequences are left out of the dataset\n"
        "  --help            this text\n");
}

struct seqs {
    uint32_t *ids; /* code points (chars) or bytes, then vocab ids */
    uint64_t n_ids, cap_ids;
    uint64_t *start; /* sequence k is ids[start[k] .. start[k+1]) */
    uint64_t n, cap;
};

static int push_id(struct seqs *s, uint32_t v) {
    if (s->n_ids == s->cap_ids) {
        uint64_t cap = s->cap_ids ? 2 * s->cap_ids : 1 << 16;
        uint32_t *p = wf_realloc(s->ids, (size_t)cap * sizeof *p);
        if (!p) return wf_error(WF_ERR_NOMEM, "tokenize: out of memory for %llu tokens", (unsigned long long)cap);
        s->ids = p;
        s->cap_ids = cap;
    }
    s->ids[s->n_ids++] = v;
    return WF_OK;
}

/* Closes the sequence that started at ids[from]: kept unless blank. */
static int end_seq(struct seqs *s, uint64_t from) {
    int blank = 1;
    for (uint64_t i = from; i < s->n_ids && blank; i++)
        blank = s->ids[i] == ' ' || s->ids[i] == '\t' || s->ids[i] == '\n' || s->ids[i] == '\r' || s->ids[i] == '\f' ||
                s->ids[i] == '\v';
    if (blank) {
        s->n_ids = from;
        return WF_OK;
    }
    if (s->n + 2 > s->cap) {
        uint64_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *p = wf_realloc(s->start, (size_t)cap * sizeof *p);
        if (!p) return wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
        s->start = p;
        s->cap = cap;
    }
    s->start[s->n++] = from;
    s->start[s->n] = s->n_ids;
    return WF_OK;
}

/* Decodes one UTF-8 character at p (n bytes left); 0 if invalid. */
static int utf8_next(const unsigned char *p, size_t n, uint32_t *cp) {
    unsigned c = p[0];
    int k;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        k = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        k = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        k = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)k > n) return 0;
    for (int i = 1; i < k; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return k;
}

/* Appends the units (code points or bytes) of text[a, b) to the open sequence. */
static int push_text(struct seqs *s, const char *path, const unsigned char *text, size_t a, size_t b, int bytes) {
    for (size_t i = a; i < b;) {
        uint32_t v;
        int k = 1;
        if (text[i] == 0) return wf_error(WF_ERR_INVALID, "%s: byte 0 at offset %zu: not a text file", path, i);
        if (bytes)
            v = text[i];
        else if (!(k = utf8_next(text + i, b - i, &v)))
            return wf_error(WF_ERR_INVALID, "%s: invalid UTF-8 at offset %zu (byte 0x%02x; try --vocab bytes)", path, i,
                            text[i]);
        int rc = push_id(s, v);
        if (rc) return rc;
        i += (size_t)k;
    }
    return WF_OK;
}

static int is_sep_line(const unsigned char *t, size_t i, size_t len) {
    return t[i] == '%' && (i + 1 == len || t[i + 1] == '\n') && (i == 0 || t[i - 1] == '\n');
}

/* Reads one input file into sequences; *fortune = 1 if it was a fortune file. */
static int read_input(struct seqs *s, const char *path, int bytes, int *fortune) {
    char *raw;
    size_t len;
    int rc = wf_read_file(path, &raw, &len);
    if (rc) return rc;
    const unsigned char *t = (const unsigned char *)raw;
    *fortune = 0;
    for (size_t i = 0; i < len && !*fortune; i++)
        *fortune = is_sep_line(t, i, len);
    size_t from = 0;
    for (size_t i = 0; i <= len && rc == WF_OK; i++) {
        if (i < len && !(*fortune && is_sep_line(t, i, len))) continue;
        uint64_t at = s->n_ids;
        rc = push_text(s, path, t, from, i, bytes);
        if (rc == WF_OK) rc = end_seq(s, at);
        from = i + 2; /* past "%\n" */
        if (i < len) i++;
    }
    wf_free(raw);
    return rc;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The id of code point c in the sorted vocabulary codes[1..n). */
static uint32_t vocab_id(const uint32_t *codes, int n, uint32_t c) {
    int lo = 1, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (codes[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (uint32_t)lo;
}

/* Nearest-rank percentile of sorted v[0..n). */
static uint64_t pct(const uint64_t *v, uint64_t n, int p) {
    uint64_t r = (n * (uint64_t)p + 99) / 100;
    return v[r ? r - 1 : 0];
}

/* ---- class labels (--classes file) ---- */

/* Class k is the k-th distinct input file (by device and inode, in argument order). */
struct classes {
    int n;             /* classes */
    int n_all;         /* classes before --top */
    const char **name; /* class k's name: its file's base name (borrowed from argv) */
    uint64_t *count;   /* sequences of each class */
    int32_t *seq;      /* the class of each sequence */
    uint64_t dropped;  /* sequences of the classes --top left out */
};

static void classes_free(struct classes *c) {
    wf_free(c->name);
    wf_free(c->count);
    wf_free(c->seq);
}

static const char *base_name(const char *path) {
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* Labels sequences [from, s->n), read from `path`, with its file's class:
 * the class of an earlier argument naming the same file, else a new one.
 * dev[k] and ino[k] identify class k's file. */
static int label_input(struct classes *c, const struct seqs *s, uint64_t from, const char *path, dev_t *dev,
                       ino_t *ino) {
    struct stat st;
    if (stat(path, &st) != 0) return wf_error(WF_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    const char *name = base_name(path);
    int k = 0;
    while (k < c->n && !(dev[k] == st.st_dev && ino[k] == st.st_ino))
        k++;
    if (k == c->n) {
        for (const char *p = name; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return wf_error(WF_ERR_INVALID, "%s: a file name with a control character cannot name a class", path);
        if (!*name) return wf_error(WF_ERR_INVALID, "%s: no file name to name a class", path);
        dev[k] = st.st_dev;
        ino[k] = st.st_ino;
        c->name[k] = name;
        c->count[k] = 0;
        c->n++;
    }
    int32_t *p = wf_realloc(c->seq, (size_t)(s->n ? s->n : 1) * sizeof *p);
    if (!p) return wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
    c->seq = p;
    for (uint64_t q = from; q < s->n; q++)
        c->seq[q] = k;
    c->count[k] += s->n - from;
    return WF_OK;
}

struct rank {
    uint64_t count;
    const char *name;
    int id;
};

/* Larger classes first, then by name (bytes), then by the first argument. */
static int cmp_rank(const void *a, const void *b) {
    const struct rank *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->id > y->id) - (x->id < y->id);
}

/* --top K: keeps the K largest non-empty classes, renumbered by rank, and
 * only their sequences. */
static int keep_top(struct seqs *s, struct classes *c, long top) {
    struct rank *r = wf_malloc((size_t)c->n * sizeof *r);
    int *to = wf_malloc((size_t)c->n * sizeof *to);
    if (!r || !to) {
        wf_free(r);
        wf_free(to);
        return wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
    }
    for (int k = 0; k < c->n; k++)
        r[k] = (struct rank){c->count[k], c->name[k], k};
    qsort(r, (size_t)c->n, sizeof *r, cmp_rank);
    int kept = 0;
    for (int k = 0; k < c->n; k++)
        to[k] = -1;
    for (int k = 0; k < c->n && kept < top && r[k].count > 0; k++)
        to[r[k].id] = kept++;
    for (int k = 0; k < kept; k++) {
        c->name[k] = r[k].name;
        c->count[k] = r[k].count;
    }
    /* compact the sequences in place: ids, starts and classes */
    uint64_t j = 0, t = 0;
    for (uint64_t q = 0; q < s->n; q++) {
        int k = to[c->seq[q]];
        if (k < 0) {
            c->dropped++;
            continue;
        }
        uint64_t a = s->start[q], b = s->start[q + 1];
        memmove(s->ids + t, s->ids + a, (size_t)(b - a) * sizeof *s->ids);
        s->start[j] = t;
        c->seq[j++] = k;
        t += b - a;
    }
    s->start[j] = t;
    s->n = j;
    s->n_ids = t;
    c->n_all = c->n;
    c->n = kept;
    wf_free(r);
    wf_free(to);
    return WF_OK;
}

/* One split: the sequences with (k + 1) % every == 0 (test) or not (train),
 * into tok_path and, with classes, their class ids into cls_path (naming
 * the token file by its digest); per_class (C entries) counts them. */
static int write_split(const struct seqs *s, const struct classes *c, const char *tok_path, const char *cls_path,
                       int test, long every, uint32_t vocab, uint64_t *nseq, uint64_t *ntok, uint64_t *per_class) {
    uint64_t n = 0, tok = 0;
    for (uint64_t k = 0; k < s->n; k++)
        if ((((k + 1) % (uint64_t)every) == 0) == test) n++, tok += s->start[k + 1] - s->start[k];
    uint64_t *off = wf_malloc((size_t)(n + 1) * sizeof *off);
    uint32_t *ids = wf_malloc((size_t)(tok ? tok : 1) * sizeof *ids);
    int32_t *cls = c ? wf_malloc((size_t)(n ? n : 1) * sizeof *cls) : NULL;
    if (!off || !ids || (c && !cls)) {
        wf_free(off);
        wf_free(ids);
        wf_free(cls);
        return wf_error(WF_ERR_NOMEM, "tokenize: out of memory for %s", tok_path);
    }
    uint64_t j = 0, t = 0;
    off[0] = 0;
    for (uint64_t k = 0; k < s->n; k++) {
        if ((((k + 1) % (uint64_t)every) == 0) != test) continue;
        uint64_t a = s->start[k], b = s->start[k + 1];
        memcpy(ids + t, s->ids + a, (size_t)(b - a) * sizeof *ids);
        t += b - a;
        if (c) {
            cls[j] = c->seq[k];
            per_class[c->seq[k]]++;
        }
        off[++j] = t;
    }
    void *buf = NULL;
    size_t len;
    int rc = wf_tok_encode(vocab, 0, off, n, ids, &buf, &len);
    if (rc) rc = wf_error_prefix(rc, "%s", tok_path);
    if (rc == WF_OK) rc = wf_write_file_atomic(tok_path, buf, len);
    if (rc == WF_OK && c) {
        uint8_t sha[32];
        wf_tok_digest(buf, len, sha);
        rc = wf_cls_write(cls_path, sha, (uint32_t)c->n, cls, n);
    }
    wf_free(buf);
    wf_free(off);
    wf_free(ids);
    wf_free(cls);
    *nseq = n;
    *ntok = tok;
    return rc;
}

/* Without --classes: class files an earlier run left would label other sequences. */
static int remove_stale(char path[][4200], int n) {
    for (int k = 0; k < n; k++)
        if (unlink(path[k]) != 0 && errno != ENOENT)
            return wf_error(WF_ERR_IO, "%s: cannot remove a class file of an earlier run: %s", path[k],
                            strerror(errno));
    return WF_OK;
}

/* The class table and the majority-class baseline of the summary. */
static void print_classes(const struct classes *c, long top, uint64_t *per[2], uint64_t nseq[2]) {
    if (top > 0)
        printf("classes: %d (by file; the %d largest of %d, %llu sequences of the others left out)\n", c->n, c->n,
               c->n_all, (unsigned long long)c->dropped);
    else
        printf("classes: %d (by file)\n", c->n);
    printf("  %5s %8s %8s  %s\n", "class", "train", "test", "name");
    int maj = 0; /* the class a majority-class predictor picks: the largest on train, ties to the lower id */
    for (int k = 0; k < c->n; k++) {
        printf("  %5d %8llu %8llu  %s\n", k, (unsigned long long)per[0][k], (unsigned long long)per[1][k], c->name[k]);
        if (per[0][k] > per[0][maj]) maj = k;
    }
    printf("majority-class baseline: class %d (%s) is %llu of %llu test sequences = %.2f%% (train %.2f%%)\n", maj,
           c->name[maj], (unsigned long long)per[1][maj], (unsigned long long)nseq[1],
           nseq[1] ? 100.0 * (double)per[1][maj] / (double)nseq[1] : 0.0,
           nseq[0] ? 100.0 * (double)per[0][maj] / (double)nseq[0] : 0.0);
}

/* A bad command line: the message and the usage on stderr; exit status 2. */
static int usage_error(const char **inputs, const char *msg) {
    fprintf(stderr, "weft tokenize: error: %s\n", msg);
    usage_tokenize(stderr);
    wf_free(inputs);
    return 2;
}

int cmd_tokenize(int argc, char **argv) {
    const char *out = NULL;
    int bytes = 0, n_in = 0, by_file = 0;
    long every = 10, top = 0;
    const char **inputs = wf_calloc((size_t)argc + 1, sizeof *inputs);
    if (!inputs) return wf_cli_fail("tokenize");
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage_tokenize(stdout);
            wf_free(inputs);
            return 0;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--vocab") && i + 1 < argc &&
                   (!strcmp(argv[i + 1], "chars") || !strcmp(argv[i + 1], "bytes"))) {
            bytes = !strcmp(argv[++i], "bytes");
        } else if (!strcmp(argv[i], "--classes")) {
            if (i + 1 >= argc || strcmp(argv[i + 1], "file")) {
                char msg[300];
                snprintf(msg, sizeof msg, "--classes takes 'file' (each input file is a class), got '%.200s'",
                         i + 1 < argc ? argv[i + 1] : "");
                return usage_error(inputs, msg);
            }
            by_file = 1;
            i++;
        } else if (!strcmp(argv[i], "--top")) {
            if (wf_cli_parse_long("tokenize", "--top", i + 1 < argc ? argv[++i] : NULL, &top) < 0) {
                wf_free(inputs);
                return 2;
            }
        } else if (!strcmp(argv[i], "--test-every")) {
            if (wf_cli_parse_long("tokenize", "--test-every", i + 1 < argc ? argv[++i] : NULL, &every) < 0) {
                wf_free(inputs);
                return 2;
            }
            if (every < 2) {
                fprintf(stderr, "weft tokenize: error: --test-every needs N >= 2 (N = 1 leaves no training data)\n");
                wf_free(inputs);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "weft tokenize: error: bad option '%s'%s\n", argv[i],
                    !strcmp(argv[i], "--vocab") ? " (expected --vocab chars or --vocab bytes)" : "");
            usage_tokenize(stderr);
            wf_free(inputs);
            return 2;
        } else {
            inputs[n_in++] = argv[i];
        }
    }
    if (!out || n_in == 0) {
        fprintf(stderr, "weft tokenize: error: %s\n", !out ? "--out DIR is required" : "no text files given");
        usage_tokenize(stderr);
        wf_free(inputs);
        return 2;
    }
    if (top > 0 && !by_file) return usage_error(inputs, "--top K keeps the largest classes: give --classes file too");

    struct seqs s = {0};
    struct classes c = {0};
    uint32_t *codes = NULL;
    uint64_t *lens = NULL, *per[2] = {NULL, NULL};
    dev_t *dev = NULL;
    ino_t *ino = NULL;
    int rc = WF_OK, n_fortune = 0, vocab = 256;
    if (by_file) {
        c.name = wf_calloc((size_t)n_in, sizeof *c.name);
        c.count = wf_calloc((size_t)n_in, sizeof *c.count);
        dev = wf_calloc((size_t)n_in, sizeof *dev);
        ino = wf_calloc((size_t)n_in, sizeof *ino);
        if (!c.name || !c.count || !dev || !ino) rc = wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
    }
    for (int f = 0; f < n_in && rc == WF_OK; f++) {
        int fortune = 0;
        uint64_t from = s.n;
        rc = read_input(&s, inputs[f], bytes, &fortune);
        n_fortune += fortune;
        if (rc == WF_OK && by_file) rc = label_input(&c, &s, from, inputs[f], dev, ino);
    }
    c.n_all = c.n;
    if (rc == WF_OK && by_file && top > 0) rc = keep_top(&s, &c, top);
    if (rc == WF_OK && s.n < (uint64_t)every)
        rc = wf_error(WF_ERR_INVALID,
                      "%llu sequences%s: the test split (every %ldth sequence) would be empty; give more text or a "
                      "smaller --test-every",
                      (unsigned long long)s.n, top > 0 ? " of the classes kept" : "", every);
    if (rc == WF_OK && !bytes) { /* the vocabulary: pad, then the distinct code points in order */
        codes = wf_malloc((size_t)(s.n_ids + 1) * sizeof *codes);
        if (!codes) rc = wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
        if (codes) {
            memcpy(codes + 1, s.ids, (size_t)s.n_ids * sizeof *codes);
            qsort(codes + 1, (size_t)s.n_ids, sizeof *codes, cmp_u32);
            codes[0] = 0;
            uint64_t u = 1;
            for (uint64_t i = 1; i <= s.n_ids; i++)
                if (codes[i] != codes[u - 1]) codes[u++] = codes[i];
            vocab = (int)u;
            for (uint64_t i = 0; i < s.n_ids; i++)
                s.ids[i] = vocab_id(codes, vocab, s.ids[i]);
        }
    } else if (rc == WF_OK) {
        if (!(codes = wf_malloc(256 * sizeof *codes))) rc = wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
        for (int k = 0; codes && k < 256; k++)
            codes[k] = (uint32_t)k;
    }
    char path[6][4200];
    static const char *const names[6] = {"train.tok", "test.tok", "vocab.txt", "train.cls", "test.cls", "classes.txt"};
    for (int k = 0; k < 6; k++)
        snprintf(path[k], sizeof path[k], "%s/%s", out, names[k]);
    uint64_t nseq[2] = {0}, ntok[2] = {0};
    if (rc == WF_OK && by_file) {
        per[0] = wf_calloc((size_t)(c.n ? c.n : 1), sizeof *per[0]);
        per[1] = wf_calloc((size_t)(c.n ? c.n : 1), sizeof *per[1]);
        if (!per[0] || !per[1]) rc = wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
    }
    const struct classes *cp = by_file ? &c : NULL;
    if (rc == WF_OK) rc = wf_mkdir_p(out);
    if (rc == WF_OK) rc = write_split(&s, cp, path[0], path[3], 0, every, (uint32_t)vocab, &nseq[0], &ntok[0], per[0]);
    if (rc == WF_OK) rc = write_split(&s, cp, path[1], path[4], 1, every, (uint32_t)vocab, &nseq[1], &ntok[1], per[1]);
    if (rc == WF_OK) rc = wf_vocab_write(path[2], bytes ? WF_VOCAB_BYTES : WF_VOCAB_CHARS, codes, vocab, 0);
    if (rc == WF_OK) rc = by_file ? wf_classes_write(path[5], c.name, c.n) : remove_stale(path + 3, 3);
    if (rc == WF_OK && !(lens = wf_malloc((size_t)s.n * sizeof *lens)))
        rc = wf_error(WF_ERR_NOMEM, "tokenize: out of memory");
    if (rc == WF_OK) {
        for (uint64_t k = 0; k < s.n; k++)
            lens[k] = s.start[k + 1] - s.start[k];
        qsort(lens, (size_t)s.n, sizeof *lens, cmp_u64);
        printf("tokenize: %d file%s (%d fortune), %llu sequences (train %llu, test %llu), %llu tokens (train %llu, "
               "test %llu)\n",
               n_in, n_in == 1 ? "" : "s", n_fortune, (unsigned long long)s.n, (unsigned long long)nseq[0],
               (unsigned long long)nseq[1], (unsigned long long)s.n_ids, (unsigned long long)ntok[0],
               (unsigned long long)ntok[1]);
        printf("vocab: %d %s, pad id 0, %d bytes per id\n", vocab, bytes ? "bytes" : "chars", vocab <= 65536 ? 2 : 4);
        printf("sequence length (tokens): median %llu, p90 %llu, max %llu\n", (unsigned long long)pct(lens, s.n, 50),
               (unsigned long long)pct(lens, s.n, 90), (unsigned long long)lens[s.n - 1]);
        if (by_file) {
            print_classes(&c, top, per, nseq);
            printf("wrote %s, %s, %s, %s, %s, %s\n", path[0], path[1], path[2], path[3], path[4], path[5]);
        } else {
            printf("wrote %s, %s, %s\n", path[0], path[1], path[2]);
        }
    }
    wf_free(lens);
    wf_free(codes);
    wf_free(s.ids);
    wf_free(s.start);
    wf_free(per[0]);
    wf_free(per[1]);
    wf_free(dev);
    wf_free(ino);
    classes_free(&c);
    wf_free(inputs);
    return rc == WF_OK ? 0 : wf_cli_fail("tokenize");
}
