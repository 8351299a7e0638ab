/*
 * graph: model files — parsing into struct wf_model, lookup, copy and free.
 *
 * Syntax only: ops, attribute meanings and whether arguments name defined
 * tensors are the graph builder's business. The writer is model_write.c.
 *
 * A unit's block is parsed in place: the `unit` statement is pushed with
 * an empty body as soon as its header is read, and the statements that
 * follow go into that body (or its region's) until the closing `}`. So the
 * tree owns everything at every moment, and an error anywhere frees it all.
 */
#include <stdio.h>
#include <string.h>

#include "weft/core.h"
#include "weft/lex.h"
#include "weft/model.h"
#include "weft/safetensors.h"

struct parser {
    struct wf_lex lx;
    struct wf_model *m;
    int model_line, model_col; /* of the `model NAME` statement, 0 if none yet */
    int args_cap, attrs_cap;   /* capacity of the statement being built */
    struct wf_hmap defined;    /* name -> index in m->st of the statement defining it */
    long n_stmts;              /* statements in the tree, blocks' included (WF_MODEL_MAX_STMTS) */
    /* the open unit: its index in m->st, or -1; its region: index in the
     * unit's body, or -1 if it has none (yet); in_region: that region is open */
    int unit, region, in_region;
    struct wf_hmap body_defined; /* the unit's names -> index in its block << 1 | 1 if in the region */
    struct wf_hmap nexts;        /* the unit's states given a `next` -> index in its body */
};

static int nomem(struct parser *ps) { return wf_error(WF_ERR_NOMEM, "%s: out of memory", ps->lx.path); }
static int next(struct parser *ps) { return wf_lex_next(&ps->lx); }
static struct wf_tok *tok(struct parser *ps) { return &ps->lx.tok; }
static int expected(struct parser *ps, const char *what) { return wf_lex_expected(&ps->lx, &ps->lx.tok, what); }

static void attr_clear(struct wf_mattr *a) {
    wf_free(a->key);
    wf_free(a->s);
}

static void stmt_clear(struct wf_mstmt *s) {
    if (s->body) {
        wf_model_free(s->body);
        wf_free(s->body);
    }
    wf_free(s->name);
    wf_free(s->op);
    for (int k = 0; k < s->n_args; k++)
        wf_free(s->args[k]);
    wf_free(s->args);
    wf_free(s->arg_line);
    wf_free(s->arg_col);
    for (int k = 0; k < s->n_attrs; k++)
        attr_clear(&s->attrs[k]);
    wf_free(s->attrs);
    memset(s, 0, sizeof *s);
}

void wf_model_free(struct wf_model *m) {
    if (!m) return;
    for (int k = 0; k < m->n; k++)
        stmt_clear(&m->st[k]);
    wf_free(m->st);
    wf_free(m->path);
    wf_free(m->name);
    memset(m, 0, sizeof *m);
}

const struct wf_mattr *wf_mstmt_attr(const struct wf_mstmt *s, const char *key) {
    for (int k = 0; k < s->n_attrs; k++)
        if (strcmp(s->attrs[k].key, key) == 0) return &s->attrs[k];
    return NULL;
}

static struct wf_mstmt *open_unit(const struct parser *ps) { return ps->unit >= 0 ? &ps->m->st[ps->unit] : NULL; }
static struct wf_mstmt *open_region(const struct parser *ps) {
    return ps->in_region ? &open_unit(ps)->body->st[ps->region] : NULL;
}
/* The block new statements go into: the file, the open unit's body or its region's. */
static struct wf_model *cur_block(const struct parser *ps) {
    const struct wf_mstmt *u = open_unit(ps), *r = open_region(ps);
    return r ? r->body : u ? u->body : ps->m;
}

/* The statement defining name in the current namespace (the file's, or the
 * open unit's: its body and region share one), or NULL. */
static const struct wf_mstmt *find_def(const struct parser *ps, const char *name) {
    const struct wf_mstmt *u = open_unit(ps);
    if (!u) {
        int k = wf_hmap_get(&ps->defined, name);
        return k >= 0 ? &ps->m->st[k] : NULL;
    }
    int v = wf_hmap_get(&ps->body_defined, name);
    if (v < 0) return NULL;
    const struct wf_model *b = (v & 1) ? u->body->st[ps->region].body : u->body;
    return &b->st[v >> 1];
}

static int already_defined(struct parser *ps, const char *name, int line, int col) {
    const struct wf_mstmt *prev = find_def(ps, name);
    if (!prev) return WF_OK;
    return wf_lex_error(&ps->lx, line, col, "'%s' already defined at %s:%d:%d", name, ps->lx.path, prev->line,
                        prev->col);
}

/* The current token is the name being defined. */
static int check_new_name(struct parser *ps) {
    const struct wf_tok *t = tok(ps);
    return already_defined(ps, t->text, t->line, t->col);
}

static int add_arg(struct parser *ps, struct wf_mstmt *s, const char *name, int line, int col) {
    if (s->n_args >= WF_MODEL_MAX_ARGS)
        return wf_lex_error(&ps->lx, line, col, "too many names (at most %d)", WF_MODEL_MAX_ARGS);
    if (s->n_args == ps->args_cap) {
        int cap = ps->args_cap ? ps->args_cap * 2 : 4;
        char **a = wf_realloc(s->args, (size_t)cap * sizeof *a);
        if (!a) return nomem(ps);
        s->args = a;
        int *l = wf_realloc(s->arg_line, (size_t)cap * sizeof *l);
        if (!l) return nomem(ps);
        s->arg_line = l;
        int *c = wf_realloc(s->arg_col, (size_t)cap * sizeof *c);
        if (!c) return nomem(ps);
        s->arg_col = c;
        ps->args_cap = cap;
    }
    char *d = wf_strdup(name);
    if (!d) return nomem(ps);
    s->args[s->n_args] = d;
    s->arg_line[s->n_args] = line;
    s->arg_col[s->n_args] = col;
    s->n_args++;
    return WF_OK;
}

/* Parses the value after `key=`; the current token is its first token, and
 * on return the token after it. */
static int parse_value(struct parser *ps, struct wf_mattr *a) {
    struct wf_tok *t = tok(ps);
    switch (t->kind) {
    case WF_TOK_INT:
        if (t->big) return expected(ps, "integer in 64-bit range");
        a->type = WF_MV_INT;
        a->i = t->i;
        return next(ps);
    case WF_TOK_FLOAT:
        a->type = WF_MV_FLOAT;
        a->f = t->f;
        return next(ps);
    case WF_TOK_BOOL:
        a->type = WF_MV_BOOL;
        a->i = t->i;
        return next(ps);
    case WF_TOK_IDENT:
        a->type = WF_MV_IDENT;
        a->s = wf_strdup(t->text);
        if (!a->s) return nomem(ps);
        return next(ps);
    default: break;
    }
    if (!wf_tok_is(t, '[')) return expected(ps, "value (number, true/false, name or [list])");
    int open_line = t->line, open_col = t->col;
    a->type = WF_MV_LIST;
    a->n = 0;
    int rc = next(ps);
    if (rc) return rc;
    if (wf_tok_is(t, ']')) return next(ps);
    for (;;) {
        int64_t v;
        if (t->kind == WF_TOK_INT && !t->big && t->i >= 0)
            v = t->i;
        else if (wf_tok_word(t, "B"))
            v = WF_DIM_B;
        else
            return expected(ps, "list item (non-negative integer or B)");
        if (a->n >= WF_MODEL_MAX_DIMS)
            return wf_lex_error(&ps->lx, t->line, t->col, "list too long (at most %d items)", WF_MODEL_MAX_DIMS);
        a->list[a->n++] = v;
        if ((rc = next(ps))) return rc;
        if (wf_tok_is(t, ']')) return next(ps);
        if (!wf_tok_is(t, ',')) {
            char what[96];
            snprintf(what, sizeof what, "',' or ']' to close the list opened at %d:%d", open_line, open_col);
            return expected(ps, what);
        }
        if ((rc = next(ps))) return rc;
    }
}

/* Adds attribute key (at line:col) with no value yet; the current token is
 * the '=' after the key, and on return the token after it. */
static int add_attr_key(struct parser *ps, struct wf_mstmt *s, const char *key, int line, int col) {
    for (int k = 0; k < s->n_attrs; k++)
        if (strcmp(s->attrs[k].key, key) == 0)
            return wf_lex_error(&ps->lx, line, col, "duplicate attribute '%s' (first at %s:%d:%d)", key, ps->lx.path,
                                s->attrs[k].line, s->attrs[k].col);
    if (s->n_attrs >= WF_MODEL_MAX_ATTRS)
        return wf_lex_error(&ps->lx, line, col, "too many attributes (at most %d)", WF_MODEL_MAX_ATTRS);
    if (s->n_attrs == ps->attrs_cap) {
        int cap = ps->attrs_cap ? ps->attrs_cap * 2 : 4;
        struct wf_mattr *a = wf_realloc(s->attrs, (size_t)cap * sizeof *a);
        if (!a) return nomem(ps);
        s->attrs = a;
        ps->attrs_cap = cap;
    }
    struct wf_mattr *a = &s->attrs[s->n_attrs];
    memset(a, 0, sizeof *a);
    a->line = line;
    a->col = col;
    a->key = wf_strdup(key);
    if (!a->key) return nomem(ps);
    s->n_attrs++; /* counted now so that stmt_clear frees a partial value */
    return next(ps);
}

/* The current token is the '=' after key (at line:col). */
static int add_attr(struct parser *ps, struct wf_mstmt *s, const char *key, int line, int col) {
    int rc = add_attr_key(ps, s, key, line, col);
    if (rc) return rc;
    return parse_value(ps, &s->attrs[s->n_attrs - 1]);
}

/* Attributes whose value names a tensor: a unit's over=, length=, when=
 * and a state's from=. */
static int names_tensor(int kind, const char *key) {
    if (kind == WF_MS_UNIT) return !strcmp(key, "over") || !strcmp(key, "length") || !strcmp(key, "when");
    return kind == WF_MS_STATE && !strcmp(key, "from");
}

/* Like add_attr, but the value of an attribute that names a tensor must be
 * a name. */
static int add_attr_checked(struct parser *ps, struct wf_mstmt *s, const char *key, int line, int col) {
    int rc = add_attr_key(ps, s, key, line, col);
    if (rc) return rc;
    if (names_tensor(s->kind, key) && tok(ps)->kind != WF_TOK_IDENT) {
        char what[WF_LEX_MAX_IDENT + 32];
        snprintf(what, sizeof what, "tensor name after %s=", key);
        return expected(ps, what);
    }
    return parse_value(ps, &s->attrs[s->n_attrs - 1]);
}

/* KEY '=' VALUE at the current token, added to s; `what` names what was expected when it is not a key. */
static int key_value(struct parser *ps, struct wf_mstmt *s, const char *what) {
    struct wf_tok *t = tok(ps);
    if (t->kind != WF_TOK_IDENT) return expected(ps, what);
    char key[WF_LEX_MAX_IDENT + 1];
    int line = t->line, col = t->col, rc;
    strcpy(key, t->text);
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, '=')) {
        char w[WF_LEX_MAX_IDENT + 32];
        snprintf(w, sizeof w, "'=' after attribute '%s'", key);
        return expected(ps, w);
    }
    return add_attr_checked(ps, s, key, line, col);
}

static int expect_eol(struct parser *ps) { return wf_tok_eol(tok(ps)) ? WF_OK : expected(ps, "end of line"); }

/* `input NAME : f32[dims]`, `param NAME : f32[dims] key=value ...` and, in
 * a unit, `state NAME : f32[dims] key=value ...`; the current token is the
 * name. */
static int parse_decl(struct parser *ps, struct wf_mstmt *s) {
    struct wf_tok *t = tok(ps);
    int rc;
    if (t->kind != WF_TOK_IDENT) return expected(ps, "tensor name");
    if ((rc = check_new_name(ps))) return rc;
    if (!(s->name = wf_strdup(t->text))) return nomem(ps);
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, ':')) return expected(ps, "':' after the tensor name");
    if ((rc = next(ps))) return rc;
    if (wf_tok_word(t, "f32"))
        s->dtype = WF_F32;
    else if (s->kind == WF_MS_STATE)
        return expected(ps, "type f32 (a state is f32)");
    else if (wf_tok_word(t, "i32"))
        s->dtype = WF_I32;
    else
        return expected(ps, "type f32 or i32");
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, '[')) return expected(ps, "'[' to start the shape");
    int open_line = t->line, open_col = t->col;
    if ((rc = next(ps))) return rc;
    if (wf_tok_is(t, ']')) return expected(ps, "at least one dimension (positive integer or B)");
    for (;;) {
        int64_t d;
        if (t->kind == WF_TOK_INT && !t->big && t->i > 0)
            d = t->i;
        else if (wf_tok_word(t, "B"))
            d = WF_DIM_B;
        else
            return expected(ps, "dimension (positive integer or B)");
        if (s->ndim >= WF_MODEL_MAX_DIMS)
            return wf_lex_error(&ps->lx, t->line, t->col, "too many dimensions (at most %d)", WF_MODEL_MAX_DIMS);
        s->dims[s->ndim++] = d;
        if ((rc = next(ps))) return rc;
        if (wf_tok_is(t, ']')) break;
        if (!wf_tok_is(t, ',')) {
            char what[96];
            snprintf(what, sizeof what, "',' or ']' to close the shape opened at %d:%d", open_line, open_col);
            return expected(ps, what);
        }
        if ((rc = next(ps))) return rc;
    }
    if ((rc = next(ps))) return rc;
    if (s->kind == WF_MS_INPUT) return expect_eol(ps);
    while (!wf_tok_eol(t)) {
        if ((rc = key_value(ps, s, "attribute key=value or end of line"))) return rc;
    }
    return WF_OK;
}

/* `NAME = OP(args, key=value, ...)`; the current token is the op. */
static int parse_layer(struct parser *ps, struct wf_mstmt *s) {
    struct wf_tok *t = tok(ps);
    int rc;
    if (t->kind != WF_TOK_IDENT) return expected(ps, "op name");
    s->op_line = t->line;
    s->op_col = t->col;
    if (!(s->op = wf_strdup(t->text))) return nomem(ps);
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, '(')) {
        char what[WF_LEX_MAX_IDENT + 32];
        snprintf(what, sizeof what, "'(' after op '%s'", s->op);
        return expected(ps, what);
    }
    int open_line = t->line, open_col = t->col;
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, ')')) {
        for (;;) {
            if ((t->kind == WF_TOK_INT || t->kind == WF_TOK_FLOAT) && s->n_attrs == 0) {
                /* a number is a scalar constant, kept in its canonical text (graph.c) */
                char num[64];
                if (t->kind == WF_TOK_INT && (t->big || t->i > (1ll << 53) || t->i < -(1ll << 53)))
                    return wf_lex_error(&ps->lx, t->line, t->col, "constant '%s' is too large", t->text);
                double x = t->kind == WF_TOK_INT ? (double)t->i : t->f;
                if (!(x == x) || x > 3.4028235e38 || x < -3.4028235e38)
                    return wf_lex_error(&ps->lx, t->line, t->col, "constant '%s' is not a finite f32 number", t->text);
                snprintf(num, sizeof num, "%.9g", x);
                if ((rc = add_arg(ps, s, num, t->line, t->col))) return rc;
                if ((rc = next(ps))) return rc;
                if (wf_tok_is(t, ')')) break;
                if (!wf_tok_is(t, ',')) return expected(ps, "',' or ')' after a constant");
                if ((rc = next(ps))) return rc;
                continue;
            }
            if (t->kind != WF_TOK_IDENT) return expected(ps, "argument (tensor name, number or key=value)");
            char name[WF_LEX_MAX_IDENT + 1];
            int line = t->line, col = t->col;
            strcpy(name, t->text);
            if ((rc = next(ps))) return rc;
            if (wf_tok_is(t, '=')) {
                if ((rc = add_attr(ps, s, name, line, col))) return rc;
            } else if (s->n_attrs > 0) {
                return wf_lex_error(&ps->lx, line, col,
                                    "expected key=value (positional arguments come first), got '%s'", name);
            } else if ((rc = add_arg(ps, s, name, line, col))) {
                return rc;
            }
            if (wf_tok_is(t, ')')) break;
            if (!wf_tok_is(t, ',')) {
                char what[96];
                snprintf(what, sizeof what, "',' or ')' to close the call opened at %d:%d", open_line, open_col);
                return expected(ps, what);
            }
            if ((rc = next(ps))) return rc;
        }
    }
    if ((rc = next(ps))) return rc;
    return expect_eol(ps);
}

/* `output NAME, ...`; the current token is the first name. */
static int parse_output(struct parser *ps, struct wf_mstmt *s) {
    struct wf_tok *t = tok(ps);
    int rc;
    for (;;) {
        if (t->kind != WF_TOK_IDENT) return expected(ps, "tensor name");
        if ((rc = add_arg(ps, s, t->text, t->line, t->col))) return rc;
        if ((rc = next(ps))) return rc;
        if (wf_tok_eol(t)) return WF_OK;
        if (!wf_tok_is(t, ',')) return expected(ps, "',' or end of line");
        if ((rc = next(ps))) return rc;
    }
}

static int parse_model_name(struct parser *ps, int line, int col) {
    struct wf_tok *t = tok(ps);
    int rc;
    if (t->kind != WF_TOK_IDENT) return expected(ps, "model name");
    if (ps->model_line)
        return wf_lex_error(&ps->lx, line, col, "model name already given at %s:%d:%d", ps->lx.path, ps->model_line,
                            ps->model_col);
    if (!(ps->m->name = wf_strdup(t->text))) return nomem(ps);
    ps->model_line = line;
    ps->model_col = col;
    if ((rc = next(ps))) return rc;
    return expect_eol(ps);
}

/* Moves *s into the current block and defines its name there (a `next`
 * names a state, it defines nothing). */
static int push_stmt(struct parser *ps, struct wf_mstmt *s) {
    struct wf_model *m = cur_block(ps);
    if (ps->n_stmts >= WF_MODEL_MAX_STMTS)
        return wf_lex_error(&ps->lx, s->line, s->col, "too many statements (at most %d)", WF_MODEL_MAX_STMTS);
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 16;
        struct wf_mstmt *st = wf_realloc(m->st, (size_t)cap * sizeof *st);
        if (!st) return nomem(ps);
        m->st = st;
        m->cap = cap;
    }
    if (s->name && s->kind != WF_MS_NEXT) {
        int rc = ps->unit < 0 ? wf_hmap_put(&ps->defined, s->name, m->n)
                              : wf_hmap_put(&ps->body_defined, s->name, m->n << 1 | ps->in_region);
        if (rc < 0) return nomem(ps);
    }
    m->st[m->n++] = *s;
    memset(s, 0, sizeof *s);
    ps->n_stmts++;
    return WF_OK;
}

/* A new block for a unit or a region. */
static int new_body(struct parser *ps, struct wf_mstmt *s) {
    if (!(s->body = wf_calloc(1, sizeof *s->body))) return nomem(ps);
    if (!(s->body->path = wf_strdup(ps->lx.path))) return nomem(ps);
    return WF_OK;
}

/* `unit NAME(key=value, ...) {`; the current token is the name. */
static int parse_unit_header(struct parser *ps, struct wf_mstmt *s) {
    struct wf_tok *t = tok(ps);
    int rc;
    if (t->kind != WF_TOK_IDENT) return expected(ps, "unit name");
    if ((rc = check_new_name(ps))) return rc;
    if (!(s->name = wf_strdup(t->text))) return nomem(ps);
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, '(')) {
        char what[WF_LEX_MAX_IDENT + 32];
        snprintf(what, sizeof what, "'(' after unit '%s'", s->name);
        return expected(ps, what);
    }
    int open_line = t->line, open_col = t->col;
    if ((rc = next(ps))) return rc;
    while (!wf_tok_is(t, ')')) {
        if ((rc = key_value(ps, s, "unit attribute key=value"))) return rc;
        if (wf_tok_is(t, ')')) break;
        if (!wf_tok_is(t, ',')) {
            char what[96];
            snprintf(what, sizeof what, "',' or ')' to close the attributes opened at %d:%d", open_line, open_col);
            return expected(ps, what);
        }
        if ((rc = next(ps))) return rc;
    }
    if (!wf_mstmt_attr(s, "over")) return expected(ps, "over=SEQ (the sequence the unit steps over)");
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, '{')) {
        char what[WF_LEX_MAX_IDENT + 40];
        snprintf(what, sizeof what, "'{' to open the body of unit '%s'", s->name);
        return expected(ps, what);
    }
    if ((rc = next(ps))) return rc;
    if (!wf_tok_eol(t)) return expected(ps, "end of line after '{'");
    return new_body(ps, s);
}

/* `region {`; the current token is the one after `region`. */
static int parse_region_header(struct parser *ps, struct wf_mstmt *s) {
    int rc;
    if (!wf_tok_is(tok(ps), '{')) return expected(ps, "'{' after 'region'");
    if ((rc = next(ps))) return rc;
    if (!wf_tok_eol(tok(ps))) return expected(ps, "end of line after '{'");
    return new_body(ps, s);
}

/* `next STATE = NAME`; the current token is the state's name. */
static int parse_next(struct parser *ps, struct wf_mstmt *s) {
    struct wf_tok *t = tok(ps);
    const struct wf_mstmt *u = open_unit(ps);
    int rc;
    if (t->kind != WF_TOK_IDENT) return expected(ps, "state name");
    const struct wf_mstmt *st = find_def(ps, t->text);
    if (!st || st->kind != WF_MS_STATE) {
        char what[WF_LEX_MAX_IDENT + 48];
        snprintf(what, sizeof what, "a state of unit '%s' declared above", u->name);
        return expected(ps, what);
    }
    int k = wf_hmap_get(&ps->nexts, t->text);
    if (k >= 0)
        return wf_lex_error(&ps->lx, t->line, t->col, "second next for state '%s' (the first at %s:%d:%d)", t->text,
                            ps->lx.path, u->body->st[k].line, u->body->st[k].col);
    if (!(s->name = wf_strdup(t->text))) return nomem(ps);
    if ((rc = next(ps))) return rc;
    if (!wf_tok_is(t, '=')) return expected(ps, "'=' after the state name");
    if ((rc = next(ps))) return rc;
    if (t->kind != WF_TOK_IDENT) return expected(ps, "tensor name (the state's next value)");
    if ((rc = add_arg(ps, s, t->text, t->line, t->col))) return rc;
    if ((rc = next(ps))) return rc;
    return expect_eol(ps);
}

/* Refuses keyword kw (at line:col) where the open block does not allow it. */
static int check_place(struct parser *ps, const char *kw, int line, int col) {
    const struct wf_mstmt *u = open_unit(ps), *r = open_region(ps);
    int body_kw = !strcmp(kw, "state") || !strcmp(kw, "next") || !strcmp(kw, "region");
    if (!u) return body_kw ? wf_lex_error(&ps->lx, line, col, "'%s' outside a unit", kw) : WF_OK;
    if (!strcmp(kw, "unit"))
        return wf_lex_error(&ps->lx, line, col, "unit inside unit '%s' (opened at %d:%d): units do not nest", u->name,
                            u->line, u->col);
    if (r && !strcmp(kw, "region"))
        return wf_lex_error(&ps->lx, line, col, "region inside the region opened at %d:%d: regions do not nest",
                            r->line, r->col);
    if (r)
        return wf_lex_error(&ps->lx, line, col, "'%s' inside the region opened at %d:%d (a region holds only layers)",
                            kw, r->line, r->col);
    if (!strcmp(kw, "region") && ps->region >= 0) {
        const struct wf_mstmt *first = &u->body->st[ps->region];
        return wf_lex_error(&ps->lx, line, col, "second region in unit '%s' (the first at %d:%d): at most one per unit",
                            u->name, first->line, first->col);
    }
    if (!body_kw && strcmp(kw, "output"))
        return wf_lex_error(&ps->lx, line, col,
                            "'%s' inside unit '%s' (opened at %d:%d): a unit holds state, region, layers, next and "
                            "output",
                            kw, u->name, u->line, u->col);
    return WF_OK;
}

/* A `}` that starts a statement: closes the open region or unit. */
static int parse_close(struct parser *ps) {
    struct wf_tok *t = tok(ps);
    int line = t->line, col = t->col, rc;
    struct wf_mstmt *u = open_unit(ps), *r = open_region(ps);
    if (!u) return wf_lex_error(&ps->lx, line, col, "'}' without an open block");
    if ((rc = next(ps))) return rc;
    if (!wf_tok_eol(t)) return expected(ps, "end of line after '}'");
    if (r) {
        r->end_line = line;
        ps->in_region = 0;
        return WF_OK;
    }
    int useful = 0;
    for (int k = 0; k < u->body->n && !useful; k++)
        useful = u->body->st[k].kind == WF_MS_STATE || u->body->st[k].kind == WF_MS_OUTPUT;
    if (!useful) return wf_lex_error(&ps->lx, u->line, u->col, "unit '%s' has neither state nor output", u->name);
    u->end_line = line;
    ps->unit = ps->region = -1;
    wf_hmap_free(&ps->body_defined);
    wf_hmap_free(&ps->nexts);
    return WF_OK;
}

/* Tells a mistyped keyword from a layer missing its '=': `h1 relu(x)`. */
static int looks_like_call(struct parser *ps) {
    if (tok(ps)->kind != WF_TOK_IDENT) return 0;
    struct wf_lex save = ps->lx;
    int call = next(ps) == WF_OK && wf_tok_is(tok(ps), '(');
    ps->lx = save;
    wf_error_clear();
    return call;
}

static int is_keyword(const char *w) {
    static const char *const kw[] = {"model", "input", "param", "output", "unit", "state", "next", "region"};
    for (size_t k = 0; k < WF_ARRAY_LEN(kw); k++)
        if (!strcmp(w, kw[k])) return 1;
    return 0;
}

/* The current token starts a statement; on success it is the NEWLINE/EOF
 * that ends it. */
static int parse_stmt(struct parser *ps) {
    struct wf_tok *t = tok(ps);
    const char *stmt_what = ps->in_region   ? "layer (NAME = OP(...)) or '}'"
                            : ps->unit >= 0 ? "statement (state, region, NAME = OP(...), next, output or '}')"
                                            : "statement (model, input, param, output, unit or NAME = OP(...))";
    if (wf_tok_is(t, '}')) return parse_close(ps);
    if (t->kind != WF_TOK_IDENT) return expected(ps, stmt_what);
    char first[WF_LEX_MAX_IDENT + 1];
    strcpy(first, t->text);
    struct wf_mstmt s;
    memset(&s, 0, sizeof s);
    s.line = t->line;
    s.col = t->col;
    ps->args_cap = ps->attrs_cap = 0;
    int rc = next(ps);
    if (rc) return rc;
    if (wf_tok_is(t, '=')) {
        if ((rc = already_defined(ps, first, s.line, s.col))) return rc;
        s.kind = WF_MS_LAYER;
        if (!(s.name = wf_strdup(first))) return nomem(ps);
        rc = next(ps);
        if (!rc) rc = parse_layer(ps, &s);
    } else if (is_keyword(first) && (rc = check_place(ps, first, s.line, s.col))) {
        return rc;
    } else if (strcmp(first, "model") == 0) {
        return parse_model_name(ps, s.line, s.col);
    } else if (strcmp(first, "input") == 0 || strcmp(first, "param") == 0 || strcmp(first, "state") == 0) {
        s.kind = first[0] == 'i' ? WF_MS_INPUT : first[0] == 'p' ? WF_MS_PARAM : WF_MS_STATE;
        rc = parse_decl(ps, &s);
    } else if (strcmp(first, "output") == 0) {
        s.kind = WF_MS_OUTPUT;
        rc = parse_output(ps, &s);
    } else if (strcmp(first, "unit") == 0) {
        s.kind = WF_MS_UNIT;
        rc = parse_unit_header(ps, &s);
    } else if (strcmp(first, "region") == 0) {
        s.kind = WF_MS_REGION;
        rc = parse_region_header(ps, &s);
    } else if (strcmp(first, "next") == 0) {
        s.kind = WF_MS_NEXT;
        rc = parse_next(ps, &s);
    } else if (looks_like_call(ps)) {
        char what[WF_LEX_MAX_IDENT + 32];
        snprintf(what, sizeof what, "'=' after '%s'", first);
        return expected(ps, what);
    } else {
        return wf_lex_error(&ps->lx, s.line, s.col, "expected %s, got '%s'", stmt_what, first);
    }
    if (!rc) rc = push_stmt(ps, &s);
    stmt_clear(&s);
    if (rc) return rc;
    struct wf_model *b = cur_block(ps);
    struct wf_mstmt *pushed = &b->st[b->n - 1];
    if (pushed->kind == WF_MS_UNIT) {
        ps->unit = b->n - 1;
        ps->region = -1;
    } else if (pushed->kind == WF_MS_REGION) {
        ps->region = b->n - 1;
        ps->in_region = 1;
    } else if (pushed->kind == WF_MS_NEXT && wf_hmap_put(&ps->nexts, pushed->name, b->n - 1) < 0) {
        return nomem(ps);
    }
    return WF_OK;
}

int wf_model_parse(struct wf_model *m, const char *path, const char *text) {
    memset(m, 0, sizeof *m);
    if (!path) path = "<memory>";
    if (!(m->path = wf_strdup(path))) return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
    struct parser *ps = wf_malloc(sizeof *ps); /* the lexer holds a 4 KiB token */
    if (!ps) {
        wf_model_free(m);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
    }
    memset(ps, 0, sizeof *ps);
    ps->m = m;
    ps->unit = ps->region = -1;
    wf_lex_init(&ps->lx, m->path, text);
    ps->lx.braces = 1;
    int rc = next(ps);
    while (!rc && tok(ps)->kind != WF_TOK_EOF) {
        if (tok(ps)->kind == WF_TOK_NEWLINE)
            rc = next(ps);
        else
            rc = parse_stmt(ps);
    }
    const struct wf_mstmt *u = open_unit(ps), *r = open_region(ps);
    if (!rc && u) {
        char what[WF_LEX_MAX_IDENT + 64];
        if (r)
            snprintf(what, sizeof what, "'}' to close the region opened at %d:%d", r->line, r->col);
        else
            snprintf(what, sizeof what, "'}' to close unit '%s' opened at %d:%d", u->name, u->line, u->col);
        rc = expected(ps, what);
    }
    wf_hmap_free(&ps->defined);
    wf_hmap_free(&ps->body_defined);
    wf_hmap_free(&ps->nexts);
    wf_free(ps);
    if (rc) wf_model_free(m);
    return rc;
}

int wf_model_load(struct wf_model *m, const char *path) {
    memset(m, 0, sizeof *m);
    char *text;
    int rc = wf_text_read(path, &text, NULL); /* a NUL or bad UTF-8 is an error at its line:col */
    if (rc) return rc;
    rc = wf_model_parse(m, path, text);
    wf_free(text);
    return rc;
}

static char *dup_or_null(const char *s, int *rc) {
    if (!s) return NULL;
    char *d = wf_strdup(s);
    if (!d) *rc = WF_ERR_NOMEM;
    return d;
}

static int copy_model(struct wf_model *dst, const struct wf_model *src);

static int copy_stmt(struct wf_mstmt *d, const struct wf_mstmt *s) {
    int rc = WF_OK;
    *d = *s;
    d->name = d->op = NULL;
    d->args = NULL;
    d->arg_line = d->arg_col = NULL;
    d->attrs = NULL;
    d->n_args = d->n_attrs = 0;
    d->body = NULL;
    d->name = dup_or_null(s->name, &rc);
    d->op = dup_or_null(s->op, &rc);
    if (rc) return rc;
    if (s->n_args > 0) {
        size_t n = (size_t)s->n_args;
        d->args = wf_calloc(n, sizeof *d->args);
        d->arg_line = wf_malloc(n * sizeof *d->arg_line);
        d->arg_col = wf_malloc(n * sizeof *d->arg_col);
        if (!d->args || !d->arg_line || !d->arg_col) return WF_ERR_NOMEM;
        d->n_args = s->n_args; /* the calloc'd slots are freeable */
        for (int k = 0; k < s->n_args; k++) {
            d->args[k] = dup_or_null(s->args[k], &rc);
            d->arg_line[k] = s->arg_line ? s->arg_line[k] : 0;
            d->arg_col[k] = s->arg_col ? s->arg_col[k] : 0;
        }
        if (rc) return rc;
    }
    if (s->n_attrs > 0) {
        d->attrs = wf_calloc((size_t)s->n_attrs, sizeof *d->attrs);
        if (!d->attrs) return WF_ERR_NOMEM;
        for (int k = 0; k < s->n_attrs; k++) {
            struct wf_mattr *a = &d->attrs[k];
            *a = s->attrs[k];
            a->key = dup_or_null(s->attrs[k].key, &rc);
            a->s = dup_or_null(s->attrs[k].s, &rc);
            d->n_attrs = k + 1;
            if (rc) return rc;
        }
    }
    if (s->body) {
        if (!(d->body = wf_calloc(1, sizeof *d->body))) return WF_ERR_NOMEM;
        return copy_model(d->body, s->body);
    }
    return WF_OK;
}

/* *dst is empty; on error it holds what was copied (freeable). */
static int copy_model(struct wf_model *dst, const struct wf_model *src) {
    int rc = WF_OK;
    dst->path = dup_or_null(src->path, &rc);
    dst->name = dup_or_null(src->name, &rc);
    if (!rc && src->n > 0) {
        dst->st = wf_calloc((size_t)src->n, sizeof *dst->st);
        if (!dst->st)
            rc = WF_ERR_NOMEM;
        else
            dst->cap = src->n;
        for (int k = 0; !rc && k < src->n; k++) {
            rc = copy_stmt(&dst->st[k], &src->st[k]);
            dst->n = k + 1; /* a partial statement is freeable */
        }
    }
    return rc;
}

int wf_model_copy(struct wf_model *dst, const struct wf_model *src) {
    memset(dst, 0, sizeof *dst);
    int rc = copy_model(dst, src);
    if (rc) {
        wf_model_free(dst);
        return wf_error(rc, "model copy: out of memory");
    }
    return WF_OK;
}
