/*
 * graph: model files — the canonical writer.
 *
 * The model is checked first against everything the parser enforces, so
 * that whatever is written parses back to the same tree.
 */
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/lex.h"
#include "weft/model.h"
#include "weft/safetensors.h"

/* a constant argument: a finite number in full (graph.c makes it a scalar) */
static int is_number(const char *a) {
    char *end;
    if (!a || !*a || strlen(a) > 40) return 0;
    double x = strtod(a, &end);
    return !*end && x == x && x <= 3.4028235e38 && x >= -3.4028235e38;
}

static int bad(int k, const char *what, const char *name) {
    return wf_error(WF_ERR_INVALID, "model write: statement %d: %s%s%s%s", k + 1, what, name ? " '" : "",
                    name ? name : "", name ? "'" : "");
}

static int check_attr(int k, const struct wf_mstmt *s, int a) {
    const struct wf_mattr *at = &s->attrs[a];
    if (!wf_lex_is_ident(at->key)) return bad(k, "bad attribute key", at->key);
    for (int b = 0; b < a; b++)
        if (strcmp(s->attrs[b].key, at->key) == 0) return bad(k, "duplicate attribute", at->key);
    switch (at->type) {
    case WF_MV_INT:
    case WF_MV_FLOAT: return WF_OK;
    case WF_MV_BOOL: return at->i == 0 || at->i == 1 ? WF_OK : bad(k, "boolean not 0 or 1 in", at->key);
    case WF_MV_IDENT: return wf_lex_is_ident(at->s) ? WF_OK : bad(k, "bad identifier value in", at->key);
    case WF_MV_LIST:
        if (at->n < 0 || at->n > WF_MODEL_MAX_DIMS) return bad(k, "bad list length in", at->key);
        for (int j = 0; j < at->n; j++)
            if (at->list[j] < 0 && at->list[j] != WF_DIM_B) return bad(k, "negative list item in", at->key);
        return WF_OK;
    }
    return bad(k, "bad value type in", at->key);
}

/* names: the statements' names seen so far (a hash, so that writing a model is linear) */
static int check_stmt(const struct wf_model *m, int k, struct wf_hmap *names) {
    const struct wf_mstmt *s = &m->st[k];
    int named = s->kind == WF_MS_INPUT || s->kind == WF_MS_PARAM || s->kind == WF_MS_LAYER;
    if (!named && s->kind != WF_MS_OUTPUT) return bad(k, "bad statement kind", NULL);
    if (named) {
        if (!wf_lex_is_ident(s->name)) return bad(k, "bad name", s->name);
        int rc = wf_hmap_put(names, s->name, k);
        if (rc < 0) return wf_error(rc, "model write: out of memory");
        if (rc == 0) return bad(k, "name defined twice:", s->name);
    }
    if (s->kind == WF_MS_INPUT || s->kind == WF_MS_PARAM) {
        if (s->dtype != WF_F32 && s->dtype != WF_I32) return bad(k, "dtype not f32 or i32 for", s->name);
        if (s->ndim < 1 || s->ndim > WF_MODEL_MAX_DIMS) return bad(k, "bad rank for", s->name);
        for (int j = 0; j < s->ndim; j++)
            if (s->dims[j] <= 0 && s->dims[j] != WF_DIM_B) return bad(k, "bad dimension in", s->name);
        if (s->n_args != 0) return bad(k, "arguments on a declaration", s->name);
    }
    if (s->kind == WF_MS_LAYER && !wf_lex_is_ident(s->op)) return bad(k, "bad op", s->op);
    if (s->kind == WF_MS_OUTPUT && s->n_args < 1) return bad(k, "output without names", NULL);
    if (s->n_args < 0 || s->n_args > WF_MODEL_MAX_ARGS) return bad(k, "bad argument count", s->name);
    for (int j = 0; j < s->n_args; j++)
        if (!wf_lex_is_ident(s->args[j]) && !(s->kind == WF_MS_LAYER && is_number(s->args[j])))
            return bad(k, "bad argument name", s->args[j]);
    if (s->n_attrs < 0 || s->n_attrs > WF_MODEL_MAX_ATTRS) return bad(k, "bad attribute count", s->name);
    if (s->n_attrs && (s->kind == WF_MS_INPUT || s->kind == WF_MS_OUTPUT))
        return bad(k, "attributes on an input or output", s->name);
    for (int a = 0; a < s->n_attrs; a++) {
        int rc = check_attr(k, s, a);
        if (rc) return rc;
    }
    return WF_OK;
}

static void write_value(struct wf_textbuf *b, const struct wf_mattr *a) {
    char f[32];
    switch (a->type) {
    case WF_MV_INT: wf_textbuf_printf(b, "%lld", (long long)a->i); break;
    case WF_MV_FLOAT: wf_textbuf_printf(b, "%s", wf_lex_format_double(a->f, f)); break;
    case WF_MV_BOOL: wf_textbuf_printf(b, "%s", a->i ? "true" : "false"); break;
    case WF_MV_IDENT: wf_textbuf_printf(b, "%s", a->s); break;
    case WF_MV_LIST:
        wf_textbuf_printf(b, "[");
        for (int j = 0; j < a->n; j++) {
            if (a->list[j] == WF_DIM_B)
                wf_textbuf_printf(b, "%sB", j ? ", " : "");
            else
                wf_textbuf_printf(b, "%s%lld", j ? ", " : "", (long long)a->list[j]);
        }
        wf_textbuf_printf(b, "]");
        break;
    }
}

static void write_stmt(struct wf_textbuf *b, const struct wf_mstmt *s) {
    switch (s->kind) {
    case WF_MS_INPUT:
    case WF_MS_PARAM:
        wf_textbuf_printf(b, "%s %s : %s[", s->kind == WF_MS_INPUT ? "input" : "param", s->name,
                          s->dtype == WF_F32 ? "f32" : "i32");
        for (int j = 0; j < s->ndim; j++) {
            if (s->dims[j] == WF_DIM_B)
                wf_textbuf_printf(b, "%sB", j ? ", " : "");
            else
                wf_textbuf_printf(b, "%s%lld", j ? ", " : "", (long long)s->dims[j]);
        }
        wf_textbuf_printf(b, "]");
        for (int a = 0; a < s->n_attrs; a++) {
            wf_textbuf_printf(b, " %s=", s->attrs[a].key);
            write_value(b, &s->attrs[a]);
        }
        break;
    case WF_MS_LAYER:
        wf_textbuf_printf(b, "%s = %s(", s->name, s->op);
        for (int j = 0; j < s->n_args; j++)
            wf_textbuf_printf(b, "%s%s", j ? ", " : "", s->args[j]);
        for (int a = 0; a < s->n_attrs; a++) {
            wf_textbuf_printf(b, "%s%s=", a || s->n_args ? ", " : "", s->attrs[a].key);
            write_value(b, &s->attrs[a]);
        }
        wf_textbuf_printf(b, ")");
        break;
    case WF_MS_OUTPUT:
        wf_textbuf_printf(b, "output");
        for (int j = 0; j < s->n_args; j++)
            wf_textbuf_printf(b, "%s %s", j ? "," : "", s->args[j]);
        break;
    }
    wf_textbuf_printf(b, "\n");
}

int wf_model_write(const struct wf_model *m, char **text, size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    if (m->name && !wf_lex_is_ident(m->name))
        return wf_error(WF_ERR_INVALID, "model write: bad model name '%s'", m->name);
    if (m->n < 0 || (m->n > 0 && !m->st)) return wf_error(WF_ERR_INVALID, "model write: bad statement count");
    struct wf_hmap names;
    wf_hmap_init(&names);
    for (int k = 0; k < m->n; k++) {
        int rc = check_stmt(m, k, &names);
        if (rc) {
            wf_hmap_free(&names);
            return rc;
        }
    }
    wf_hmap_free(&names);
    struct wf_textbuf b = {0};
    if (m->name) wf_textbuf_printf(&b, "model %s\n", m->name);
    for (int k = 0; k < m->n; k++)
        write_stmt(&b, &m->st[k]);
    return wf_textbuf_take(&b, text, len);
}
