/*
 * core: the line-oriented lexer behind model and job files, and the text
 * buffer their writers print into. Knows nothing about either format.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/lex.h"

static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) { return is_alpha(c) || is_digit(c) || c == '.'; }
static int is_path_char(int c) { return is_ident_char(c) || c == '/' || c == '-' || c == '+'; }
static int is_punct(const struct wf_lex *lx, int c) {
    return c && (strchr("=:,()[]", c) != NULL || (lx->braces && (c == '{' || c == '}')));
}

static int is_reserved(const char *s, size_t n) {
    static const char *const words[] = {"true", "false", "inf", "nan"};
    for (size_t k = 0; k < WF_ARRAY_LEN(words); k++)
        if (strlen(words[k]) == n && memcmp(words[k], s, n) == 0) return 1;
    return 0;
}

/* Length of the UTF-8 sequence at p[0..avail) (1 to 4), or 0 if it is not a
 * well-formed one (RFC 3629: no overlong forms, surrogates or code points
 * above U+10FFFF). Reads byte k only once bytes 1..k-1 continued the
 * sequence, so it never reads past a NUL. */
static size_t utf8_seq(const unsigned char *p, size_t avail) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    size_t n = (c >= 0xc2 && c <= 0xdf) ? 2 : (c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
    unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (c == 0xe0)
        lo = 0xa0; /* overlong */
    else if (c == 0xed)
        hi = 0x9f; /* surrogates */
    else if (c == 0xf0)
        lo = 0x90; /* overlong */
    else if (c == 0xf4)
        hi = 0x8f; /* above U+10FFFF */
    for (size_t k = 1; k < n; k++) {
        if (k >= avail || p[k] < lo || p[k] > hi) return 0;
        lo = 0x80;
        hi = 0xbf;
    }
    return n;
}

int wf_text_check(const char *path, const char *text, size_t len) {
    const unsigned char *p = (const unsigned char *)text;
    int line = 1;
    size_t col = 1;
    if (!path) path = "<memory>";
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        size_t n = c && c != '\n' ? utf8_seq(p + i, len - i) : 1;
        int icol = col < INT_MAX ? (int)col : INT_MAX;
        if (c == 0) return wf_error(WF_ERR_PARSE, "%s:%d:%d: NUL byte in the text", path, line, icol);
        if (n == 0) return wf_error(WF_ERR_PARSE, "%s:%d:%d: invalid UTF-8 (byte 0x%02x)", path, line, icol, c);
        if (c == '\n') {
            if (line < INT_MAX) line++;
            col = 1;
        } else {
            col += n;
        }
        i += n;
    }
    return WF_OK;
}

int wf_text_read(const char *path, char **text, size_t *len) {
    size_t n = 0;
    int rc = wf_read_file(path, text, &n);
    if (rc == WF_OK && n > WF_TEXT_MAX_FILE)
        rc = wf_error(WF_ERR_RANGE, "%s: %zu bytes, more than the %zu a model or job file may have", path, n,
                      WF_TEXT_MAX_FILE);
    if (rc == WF_OK) rc = wf_text_check(path, *text, n);
    if (rc != WF_OK) {
        wf_free(*text);
        *text = NULL;
        n = 0;
    }
    if (len) *len = n;
    return rc;
}

void wf_lex_init(struct wf_lex *lx, const char *path, const char *text) {
    memset(lx, 0, sizeof *lx);
    lx->path = path ? path : "<memory>";
    lx->p = text ? text : "";
    lx->line = 1;
    lx->col = 1;
    lx->tok.kind = WF_TOK_NEWLINE;
}

/* col + n, saturating: a column past INT_MAX reads as INT_MAX. */
static int col_plus(int col, size_t n) { return (size_t)(INT_MAX - col) > n ? col + (int)n : INT_MAX; }

static void advance(struct wf_lex *lx, size_t n) {
    lx->p += n;
    lx->col = col_plus(lx->col, n);
}

int wf_lex_error(const struct wf_lex *lx, int line, int col, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return wf_error(WF_ERR_PARSE, "%s:%d:%d: %s", lx->path, line, col, msg);
}

static int bad_utf8(const struct wf_lex *lx, int line, int col, const char *at) {
    return wf_lex_error(lx, line, col, "invalid UTF-8 (byte 0x%02x)", (unsigned char)*at);
}

/* Skips a comment up to the end of its line, checking that it is UTF-8. */
static int skip_comment(struct wf_lex *lx) {
    while (*lx->p && *lx->p != '\n') {
        size_t n = utf8_seq((const unsigned char *)lx->p, SIZE_MAX);
        if (!n) return bad_utf8(lx, lx->line, lx->col, lx->p);
        advance(lx, n);
    }
    return WF_OK;
}

const char *wf_tok_describe(const struct wf_tok *t, char *buf, size_t size) {
    if (t->kind == WF_TOK_EOF) {
        snprintf(buf, size, "end of file");
        return buf;
    }
    if (t->kind == WF_TOK_NEWLINE) {
        snprintf(buf, size, "end of line");
        return buf;
    }
    char q = t->kind == WF_TOK_STRING ? 0 : '\''; /* a string's source has its quotes */
    size_t n = t->len, max = 40, o = 0;
    if (size < 8) {
        if (size) buf[0] = 0;
        return buf;
    }
    if (q) buf[o++] = q;
    for (size_t k = 0; k < n && k < max && o + 5 < size; k++) {
        unsigned char c = (unsigned char)t->src[k];
        buf[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > max && o + 5 < size) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    if (q) buf[o++] = q;
    buf[o] = 0;
    return buf;
}

int wf_lex_expected(const struct wf_lex *lx, const struct wf_tok *t, const char *what) {
    char d[64];
    return wf_lex_error(lx, t->line, t->col, "expected %s, got %s", what, wf_tok_describe(t, d, sizeof d));
}

int wf_tok_is(const struct wf_tok *t, char c) { return t->kind == WF_TOK_PUNCT && t->punct == c; }
int wf_tok_eol(const struct wf_tok *t) { return t->kind == WF_TOK_NEWLINE || t->kind == WF_TOK_EOF; }
int wf_tok_word(const struct wf_tok *t, const char *s) { return t->kind == WF_TOK_IDENT && strcmp(t->text, s) == 0; }

/* Classifies s[0..n) as a number: 0 not a number, 1 INT, 2 FLOAT. */
static int number_shape(const char *s, size_t n) {
    size_t k = 0;
    if (k < n && (s[k] == '+' || s[k] == '-')) k++;
    if (n - k == 3 && (memcmp(s + k, "inf", 3) == 0 || memcmp(s + k, "nan", 3) == 0)) return 2;
    size_t digits = 0;
    int fl = 0;
    while (k < n && is_digit(s[k]))
        k++, digits++;
    if (k < n && s[k] == '.') {
        fl = 1;
        k++;
        while (k < n && is_digit(s[k]))
            k++, digits++;
    }
    if (!digits) return 0;
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        fl = 1;
        k++;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        size_t ed = 0;
        while (k < n && is_digit(s[k]))
            k++, ed++;
        if (!ed) return 0;
    }
    return k == n ? 1 + fl : 0;
}

/* Converts the number in t->text (shape already checked) into t. */
static int convert_number(struct wf_lex *lx, struct wf_tok *t, int shape) {
    const char *s = t->text;
    if (shape == 2) {
        errno = 0;
        double v = strtod(s, NULL);
        if (errno == ERANGE && isinf(v)) return wf_lex_expected(lx, t, "number in the range of a double");
        t->kind = WF_TOK_FLOAT;
        t->f = v;
        return WF_OK;
    }
    int neg = s[0] == '-';
    if (s[0] == '-' || s[0] == '+') s++;
    uint64_t mag = 0;
    for (; *s; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (mag > (UINT64_MAX - d) / 10) return wf_lex_expected(lx, t, "integer in 64-bit range");
        mag = mag * 10 + d;
    }
    t->kind = WF_TOK_INT;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return wf_lex_expected(lx, t, "integer in 64-bit range");
        t->i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
        t->f = (double)t->i;
    } else {
        t->u = mag;
        t->big = mag > (uint64_t)INT64_MAX;
        t->i = t->big ? 0 : (int64_t)mag;
        t->f = (double)mag;
    }
    return WF_OK;
}

static int copy_text(struct wf_lex *lx, struct wf_tok *t, size_t max, const char *what) {
    if (t->len > max) {
        char d[64];
        t->kind = WF_TOK_IDENT; /* described as a word, not as the previous token's kind */
        return wf_lex_error(lx, t->line, t->col, "%s too long (more than %zu bytes): %s", what, max,
                            wf_tok_describe(t, d, sizeof d));
    }
    memcpy(t->text, t->src, t->len);
    t->text[t->len] = 0;
    return WF_OK;
}

static int lex_string(struct wf_lex *lx, struct wf_tok *t) {
    const char *s = lx->p + 1;
    size_t o = 0;
    for (;;) {
        char c = *s;
        if (c == 0 || c == '\n') {
            t->len = (size_t)(s - t->src);
            return wf_lex_error(lx, t->line, t->col, "expected '\"' to close the string, got %s",
                                c ? "end of line" : "end of file");
        }
        if (c == '"') break;
        if ((unsigned char)c >= 0x80) { /* a whole UTF-8 sequence, copied as it is */
            size_t k = utf8_seq((const unsigned char *)s, SIZE_MAX);
            if (!k) return bad_utf8(lx, t->line, col_plus(t->col, (size_t)(s - t->src)), s);
            if (o + k > WF_LEX_MAX_TEXT)
                return wf_lex_error(lx, t->line, t->col, "string too long (more than %d bytes)", WF_LEX_MAX_TEXT);
            memcpy(t->text + o, s, k);
            o += k;
            s += k;
            continue;
        }
        if (c == '\\') {
            if (s[1] != '"' && s[1] != '\\') {
                int col = col_plus(t->col, (size_t)(s - t->src));
                return wf_lex_error(lx, t->line, col, "expected \\\" or \\\\ after a backslash, got '\\%c'",
                                    (s[1] >= 0x20 && s[1] < 0x7f) ? s[1] : '?');
            }
            c = s[1];
            s++;
        }
        if (o >= WF_LEX_MAX_TEXT)
            return wf_lex_error(lx, t->line, t->col, "string too long (more than %d bytes)", WF_LEX_MAX_TEXT);
        t->text[o++] = c;
        s++;
    }
    t->text[o] = 0;
    t->len = (size_t)(s + 1 - t->src);
    t->kind = WF_TOK_STRING;
    advance(lx, t->len);
    return WF_OK;
}

/* A word in path mode: path, enum value, number or boolean. */
static int lex_path_word(struct wf_lex *lx, struct wf_tok *t) {
    size_t n = 0;
    while (is_path_char((unsigned char)lx->p[n]))
        n++;
    t->len = n;
    advance(lx, n);
    int rc = copy_text(lx, t, WF_LEX_MAX_TEXT, "word");
    if (rc) return rc;
    if (strcmp(t->text, "true") == 0 || strcmp(t->text, "false") == 0) {
        t->kind = WF_TOK_BOOL;
        t->i = t->text[0] == 't';
        return WF_OK;
    }
    int shape = number_shape(t->text, n);
    if (shape) return convert_number(lx, t, shape);
    t->kind = WF_TOK_IDENT;
    return WF_OK;
}

static int lex_ident(struct wf_lex *lx, struct wf_tok *t) {
    size_t n = 0;
    while (is_ident_char((unsigned char)lx->p[n]))
        n++;
    t->len = n;
    advance(lx, n);
    int rc = copy_text(lx, t, WF_LEX_MAX_IDENT, "identifier");
    if (rc) return rc;
    if (strcmp(t->text, "true") == 0 || strcmp(t->text, "false") == 0) {
        t->kind = WF_TOK_BOOL;
        t->i = t->text[0] == 't';
        return WF_OK;
    }
    if (strcmp(t->text, "inf") == 0 || strcmp(t->text, "nan") == 0) return convert_number(lx, t, 2);
    t->kind = WF_TOK_IDENT;
    return WF_OK;
}

/* Anything that starts like a number: scanned greedily, then checked whole,
 * so "12x" and "1.2.3" are one bad number rather than two tokens. */
static int lex_number(struct wf_lex *lx, struct wf_tok *t) {
    const char *s = lx->p;
    size_t n = 0;
    if (s[0] == '+' || s[0] == '-') n++;
    while (is_ident_char((unsigned char)s[n]) ||
           ((s[n] == '+' || s[n] == '-') && n > 0 && (s[n - 1] == 'e' || s[n - 1] == 'E')))
        n++;
    t->len = n;
    advance(lx, n);
    int rc = copy_text(lx, t, WF_LEX_MAX_TEXT, "number");
    if (rc) return rc;
    int shape = number_shape(t->text, n);
    if (!shape) return wf_lex_expected(lx, t, "number");
    return convert_number(lx, t, shape);
}

int wf_lex_next(struct wf_lex *lx) {
    struct wf_tok *t = &lx->tok;
    for (;;) {
        char c = *lx->p;
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            advance(lx, 1);
        } else if (c == '#') {
            int rc = skip_comment(lx);
            if (rc) return rc;
        } else {
            break;
        }
    }
    t->line = lx->line;
    t->col = lx->col;
    t->src = lx->p;
    t->len = 0;
    t->punct = 0;
    t->i = 0;
    t->u = 0;
    t->big = 0;
    t->f = 0;
    t->text[0] = 0;
    unsigned char c = (unsigned char)*lx->p;
    if (c == 0) {
        t->kind = WF_TOK_EOF;
        return WF_OK;
    }
    if (c == '\n') {
        t->kind = WF_TOK_NEWLINE;
        t->len = 1;
        lx->p++;
        if (lx->line < INT_MAX) lx->line++;
        lx->col = 1;
        return WF_OK;
    }
    if (is_punct(lx, c)) {
        t->kind = WF_TOK_PUNCT;
        t->punct = (char)c;
        t->len = 1;
        t->text[0] = (char)c;
        t->text[1] = 0;
        advance(lx, 1);
        return WF_OK;
    }
    if (c == '"') return lex_string(lx, t);
    if (lx->path_words) {
        if (is_path_char(c)) return lex_path_word(lx, t);
    } else {
        if (is_alpha(c)) return lex_ident(lx, t);
        unsigned char c1 = (unsigned char)lx->p[1];
        if (is_digit(c) || (c == '.' && is_digit(c1)) ||
            ((c == '+' || c == '-') && (is_digit(c1) || c1 == '.' || c1 == 'i' || c1 == 'n')))
            return lex_number(lx, t);
    }
    t->len = 1;
    if (c >= 0x20 && c < 0x7f) return wf_lex_error(lx, t->line, t->col, "unexpected character '%c'", c);
    if (c >= 0x80) {
        size_t n = utf8_seq((const unsigned char *)lx->p, SIZE_MAX);
        if (!n) return bad_utf8(lx, t->line, t->col, lx->p);
        return wf_lex_error(lx, t->line, t->col, "unexpected character '%.*s'", (int)n, lx->p);
    }
    return wf_lex_error(lx, t->line, t->col, "unexpected byte 0x%02x", c);
}

int wf_lex_is_ident(const char *s) {
    if (!s || !is_alpha((unsigned char)s[0])) return 0;
    size_t n = 0;
    while (s[n]) {
        if (!is_ident_char((unsigned char)s[n])) return 0;
        n++;
    }
    return n <= WF_LEX_MAX_IDENT && !is_reserved(s, n);
}

const char *wf_lex_format_double(double v, char *buf) {
    if (isnan(v)) return strcpy(buf, signbit(v) ? "-nan" : "nan");
    if (isinf(v)) return strcpy(buf, v < 0 ? "-inf" : "inf");
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* the shortest form of 1000 is 1e+03: print moderate numbers plainly */
    const char *e = strchr(buf, 'e');
    int x = e ? atoi(e + 1) : -1;
    if (x >= 0 && x < 16) {
        char plain[32];
        snprintf(plain, sizeof plain, "%.*g", x + 1, v);
        if (strtod(plain, NULL) == v) strcpy(buf, plain);
    }
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");
    return buf;
}

void wf_textbuf_printf(struct wf_textbuf *b, const char *fmt, ...) {
    if (b->err) return;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->err = WF_ERR_INTERNAL;
        va_end(ap2);
        return;
    }
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = wf_realloc(b->p, cap);
        if (!p) {
            b->err = WF_ERR_NOMEM;
            va_end(ap2);
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

int wf_textbuf_take(struct wf_textbuf *b, char **text, size_t *len) {
    int rc = b->err;
    if (!rc && !b->p) {
        b->p = wf_malloc(1);
        if (!b->p)
            rc = WF_ERR_NOMEM;
        else
            b->p[0] = 0;
    }
    if (rc) {
        wf_free(b->p);
        *text = NULL;
        if (len) *len = 0;
        if (rc == WF_ERR_NOMEM)
            wf_error(rc, "out of memory");
        else
            wf_error(rc, "text formatting failed");
    } else {
        *text = b->p;
        if (len) *len = b->len;
    }
    memset(b, 0, sizeof *b);
    return rc;
}
