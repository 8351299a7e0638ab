/*
 * weft core layer: a small line-oriented lexer shared by the model and job
 * parsers, and a growable text buffer for their writers.
 *
 * Tokens:
 *   IDENT    [A-Za-z_][A-Za-z0-9_.]*   e.g. fc1.weight (at most 255 bytes)
 *   INT      [+-]digits                 e.g. 784, -1
 *   FLOAT    [+-](digits[.digits]|.digits)[(e|E)[+-]digits], inf, nan
 *   BOOL     true, false
 *   STRING   "..." with \" and \\ escapes, on one line
 *   PUNCT    = : , ( ) [ ], and { } when lx->braces = 1 (model files;
 *            elsewhere they stay unexpected characters)
 *   NEWLINE  ends a statement; `#` starts a comment up to the end of line
 *   EOF
 * The words true, false, inf and nan are reserved: they never lex as IDENT.
 *
 * Path mode (lx->path_words = 1, set by the caller before wf_lex_next) is for
 * values in job files: a word may also contain / - + and start with any of
 * those characters or a digit. A word that reads as a number is INT/FLOAT,
 * true/false is BOOL, anything else is IDENT (up to 4095 bytes).
 *
 * Every token carries its 1-based line and column (in bytes). Errors are
 * WF_ERR_PARSE with messages "path:line:col: expected X, got Y".
 *
 * Text is UTF-8: a byte sequence that is not (in a comment, a string or
 * between tokens) is "path:line:col: invalid UTF-8 (byte 0xNN)". The lexer
 * stops at the first NUL, so a file's bytes go through wf_text_check (or
 * wf_text_read) first: a NUL inside a file is an error there, never a
 * silent end of file.
 */
#ifndef WEFT_LEX_H
#define WEFT_LEX_H

#include <stddef.h>
#include <stdint.h>

#define WF_LEX_MAX_IDENT 255                /* bytes in an identifier */
#define WF_LEX_MAX_TEXT 4095                /* bytes in a string or path word */
#define WF_TEXT_MAX_FILE ((size_t)64 << 20) /* bytes in a model or job file */

enum wf_tok_kind {
    WF_TOK_EOF,
    WF_TOK_NEWLINE,
    WF_TOK_IDENT,
    WF_TOK_INT,
    WF_TOK_FLOAT,
    WF_TOK_BOOL,
    WF_TOK_STRING,
    WF_TOK_PUNCT,
};

struct wf_tok {
    int kind;                       /* enum wf_tok_kind */
    int line, col;                  /* 1-based position of the first byte */
    const char *src;                /* the token's bytes in the source text */
    size_t len;                     /* number of source bytes */
    char punct;                     /* PUNCT: the character */
    int64_t i;                      /* INT (when !big), BOOL (0/1) */
    uint64_t u;                     /* INT >= 0: the value, also above INT64_MAX */
    int big;                        /* INT: above INT64_MAX, only u is valid */
    double f;                       /* FLOAT; INT as a double */
    char text[WF_LEX_MAX_TEXT + 1]; /* IDENT, STRING (unescaped), numbers: the text */
};

struct wf_lex {
    const char *path;  /* for messages; not owned */
    const char *p;     /* next unread byte (NUL-terminated text) */
    int line, col;     /* position of p */
    int path_words;    /* 1: lex the next word in path mode */
    int braces;        /* 1: { and } are PUNCT (set by the caller after wf_lex_init) */
    struct wf_tok tok; /* the current token, valid after wf_lex_next */
};

/* Checks that text[0..len) is text the parsers may read: no NUL byte and
 * valid UTF-8 (no stray continuation byte, truncated or overlong sequence,
 * surrogate, or code point above U+10FFFF). Returns WF_OK, or WF_ERR_PARSE
 * at the first bad byte: "path:line:col: NUL byte in the text" or
 * "path:line:col: invalid UTF-8 (byte 0xNN)" (col in bytes). */
int wf_text_check(const char *path, const char *text, size_t len);
/* Reads a model or job file for a parser: at most WF_TEXT_MAX_FILE bytes,
 * checked with wf_text_check. *text is NUL-terminated, owned by the caller
 * (wf_free); len may be NULL. Returns WF_OK, or the error of the read
 * (WF_ERR_NOTFOUND, WF_ERR_IO, WF_ERR_NOMEM), WF_ERR_RANGE for a file over
 * the limit, or WF_ERR_PARSE from the check; *text is NULL on error. */
int wf_text_read(const char *path, char **text, size_t *len);

/* Starts lexing text (NUL-terminated, not owned). path may be NULL. */
void wf_lex_init(struct wf_lex *lx, const char *path, const char *text);
/* Reads the next token into lx->tok. Returns WF_OK, or WF_ERR_PARSE with a
 * message for a bad character, number, string or an over-long word. */
int wf_lex_next(struct wf_lex *lx);

/* 1 if t is the punctuation character c. */
int wf_tok_is(const struct wf_tok *t, char c);
/* 1 if t ends a statement (NEWLINE or EOF). */
int wf_tok_eol(const struct wf_tok *t);
/* 1 if t is IDENT with text equal to s. */
int wf_tok_word(const struct wf_tok *t, const char *s);
/* Writes a short description of t for messages: 'x', "str", end of line. */
const char *wf_tok_describe(const struct wf_tok *t, char *buf, size_t size);

/* Records "path:line:col: expected WHAT, got <t>" and returns WF_ERR_PARSE. */
int wf_lex_expected(const struct wf_lex *lx, const struct wf_tok *t, const char *what);
/* Records "path:line:col: <message>" and returns WF_ERR_PARSE. */
int wf_lex_error(const struct wf_lex *lx, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 1 if s lexes as exactly one IDENT in normal mode (so writers can print it). */
int wf_lex_is_ident(const char *s);
/* Shortest text that strtod reads back as exactly v, always looking like a
 * float ("1.0", "1e-08", "inf", "-nan"). buf needs 32 bytes. */
const char *wf_lex_format_double(double v, char *buf);

/* ---- a growable text buffer for writers; errors are sticky ---- */
struct wf_textbuf {
    char *p;    /* NUL-terminated text, owned; NULL until the first append */
    size_t len; /* bytes of text */
    size_t cap; /* bytes allocated */
    int err;    /* WF_OK, or WF_ERR_NOMEM after a failed append */
};

void wf_textbuf_printf(struct wf_textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the text to the caller (*text, *len; len may be NULL) or frees it on
 * error; returns the buffer's status. The buffer is empty afterwards. */
int wf_textbuf_take(struct wf_textbuf *b, char **text, size_t *len);

#endif
