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
 * The same files in the same order give the same bytes; each output file
 * is written atomically (temp file, fsync, rename).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/loader.h"

#include "cli_int.h"

static void usage_tokenize(FILE *f) {
    fprintf(f, "usage: weft tokenize TEXT... --out DIR [--vocab chars|bytes] [--test-every N]\n\n"
               "Makes a token dataset of text files: DIR/train.tok, DIR/test.tok and DIR/vocab.txt\n"
               "(docs/formats.md), for jobs with seq_len, sample and labels (see include/weft/job.h).\n\n"
               "  A file with a line holding only '%%' is a fortune file: each fortune is a sequence;\n"
               "  any other file is one sequence. Empty or blank sequences are skipped.\n\n"
               "options:\n"
               "  --out DIR         the dataset folder (created if needed)\n"
               "  --vocab chars     one id per UTF-8 character of the input, id 0 the pad (default)\n"
               "  --vocab bytes     256 ids, one per byte value, id 0 the pad\n"
               "  --test-every N    every Nth sequence goes to the test split (default 10, N >= 2)\n"
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

/* One split: the sequences with (k + 1) % every == 0 (test) or not (train). */
static int write_split(const struct seqs *s, const char *path, int test, long every, uint32_t vocab, uint64_t *nseq,
                       uint64_t *ntok) {
    uint64_t n = 0, tok = 0;
    for (uint64_t k = 0; k < s->n; k++)
        if ((((k + 1) % (uint64_t)every) == 0) == test) n++, tok += s->start[k + 1] - s->start[k];
    uint64_t *off = wf_malloc((size_t)(n + 1) * sizeof *off);
    uint32_t *ids = wf_malloc((size_t)(tok ? tok : 1) * sizeof *ids);
    if (!off || !ids) {
        wf_free(off);
        wf_free(ids);
        return wf_error(WF_ERR_NOMEM, "tokenize: out of memory for %s", path);
    }
    uint64_t j = 0, t = 0;
    off[0] = 0;
    for (uint64_t k = 0; k < s->n; k++) {
        if ((((k + 1) % (uint64_t)every) == 0) != test) continue;
        uint64_t a = s->start[k], b = s->start[k + 1];
        memcpy(ids + t, s->ids + a, (size_t)(b - a) * sizeof *ids);
        t += b - a;
        off[++j] = t;
    }
    int rc = wf_tok_write(path, vocab, 0, off, n, ids);
    wf_free(off);
    wf_free(ids);
    *nseq = n;
    *ntok = tok;
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *out = NULL;
    int bytes = 0, n_in = 0;
    long every = 10;
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

    struct seqs s = {0};
    uint32_t *codes = NULL;
    uint64_t *lens = NULL;
    int rc = WF_OK, n_fortune = 0, vocab = 256;
    for (int f = 0; f < n_in && rc == WF_OK; f++) {
        int fortune;
        rc = read_input(&s, inputs[f], bytes, &fortune);
        n_fortune += fortune;
    }
    if (rc == WF_OK && s.n < (uint64_t)every)
        rc = wf_error(WF_ERR_INVALID,
                      "%llu sequences: the test split (every %ldth sequence) would be empty; give more text or a "
                      "smaller --test-every",
                      (unsigned long long)s.n, every);
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
    char path[3][4200];
    snprintf(path[0], sizeof path[0], "%s/train.tok", out);
    snprintf(path[1], sizeof path[1], "%s/test.tok", out);
    snprintf(path[2], sizeof path[2], "%s/vocab.txt", out);
    uint64_t nseq[2] = {0}, ntok[2] = {0};
    if (rc == WF_OK) rc = wf_mkdir_p(out);
    if (rc == WF_OK) rc = write_split(&s, path[0], 0, every, (uint32_t)vocab, &nseq[0], &ntok[0]);
    if (rc == WF_OK) rc = write_split(&s, path[1], 1, every, (uint32_t)vocab, &nseq[1], &ntok[1]);
    if (rc == WF_OK) rc = wf_vocab_write(path[2], bytes ? WF_VOCAB_BYTES : WF_VOCAB_CHARS, codes, vocab, 0);
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
        printf("wrote %s, %s, %s\n", path[0], path[1], path[2]);
    }
    wf_free(lens);
    wf_free(codes);
    wf_free(s.ids);
    wf_free(s.start);
    wf_free(inputs);
    return rc == WF_OK ? 0 : wf_cli_fail("tokenize");
}
