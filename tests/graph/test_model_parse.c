/* graph: model file parser and writer — valid files, round trips, every
 * error with its line:col, and allocation failure at every allocation;
 * units (recurrent blocks) included. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/lex.h"
#include "weft/model.h"
#include "weft/safetensors.h"

static int same_double(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) && !signbit(a) == !signbit(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

/* Same statements, names, attributes and values, blocks' included;
 * positions are not compared. */
static int model_equal(const struct wf_model *a, const struct wf_model *b) {
    if (!same_str(a->name, b->name) || a->n != b->n) return 0;
    for (int k = 0; k < a->n; k++) {
        const struct wf_mstmt *s = &a->st[k], *t = &b->st[k];
        if (s->kind != t->kind || !same_str(s->name, t->name)) return 0;
        if (!s->body != !t->body || (s->body && !model_equal(s->body, t->body))) return 0;
        if (s->kind == WF_MS_INPUT || s->kind == WF_MS_PARAM || s->kind == WF_MS_STATE) {
            if (s->dtype != t->dtype || s->ndim != t->ndim) return 0;
            for (int d = 0; d < s->ndim; d++)
                if (s->dims[d] != t->dims[d]) return 0;
        }
        if (s->kind == WF_MS_LAYER && !same_str(s->op, t->op)) return 0;
        if (s->n_args != t->n_args || s->n_attrs != t->n_attrs) return 0;
        for (int j = 0; j < s->n_args; j++)
            if (!same_str(s->args[j], t->args[j])) return 0;
        for (int j = 0; j < s->n_attrs; j++) {
            const struct wf_mattr *x = &s->attrs[j], *y = &t->attrs[j];
            if (!same_str(x->key, y->key) || x->type != y->type) return 0;
            switch (x->type) {
            case WF_MV_INT:
            case WF_MV_BOOL:
                if (x->i != y->i) return 0;
                break;
            case WF_MV_FLOAT:
                if (!same_double(x->f, y->f)) return 0;
                break;
            case WF_MV_IDENT:
                if (!same_str(x->s, y->s)) return 0;
                break;
            case WF_MV_LIST:
                if (x->n != y->n) return 0;
                for (int i = 0; i < x->n; i++)
                    if (x->list[i] != y->list[i]) return 0;
                break;
            default: return 0;
            }
        }
    }
    return 1;
}

/* parse → write → parse is the same tree and write is a fixed point;
 * returns the canonical text (caller frees) or NULL. */
static char *check_round_trip(const char *what, const char *text) {
    struct wf_model m, m2;
    char *t1 = NULL, *t2 = NULL;
    size_t n1 = 0, n2 = 0;
    int rc = wf_model_parse(&m, what, text);
    CHECKF(rc == WF_OK, "%s: %s", what, wf_errmsg());
    if (rc) return NULL;
    rc = wf_model_write(&m, &t1, &n1);
    CHECKF(rc == WF_OK, "%s: write: %s", what, wf_errmsg());
    CHECK(!rc && strlen(t1) == n1);
    rc = wf_model_parse(&m2, what, t1);
    CHECKF(rc == WF_OK, "%s: reparse: %s\n%s", what, wf_errmsg(), t1);
    if (!rc) {
        CHECKF(model_equal(&m, &m2), "%s: parse(write(m)) != m\n%s", what, t1);
        rc = wf_model_write(&m2, &t2, &n2);
        CHECK(rc == WF_OK);
        CHECKF(!rc && n1 == n2 && memcmp(t1, t2, n1) == 0, "%s: write not a fixed point:\n%s---\n%s", what, t1,
               t2 ? t2 : "");
        wf_free(t2);
        wf_model_free(&m2);
    }
    wf_model_free(&m);
    return t1;
}

static const char *mlp_text = "# MLP for Fashion-MNIST\n"
                              "model mlp\n"
                              "input x : f32[B, 784]          # B is the (micro-)batch size\n"
                              "input y : i32[B]\n"
                              "param pos : f32[16, 64] init=normal std=0.02\n"
                              "fc1 = linear(x, out=256)       # creates parameters fc1.weight, fc1.bias\n"
                              "a1 = relu(fc1)\n"
                              "loss = cross_entropy(a1, y)\n"
                              "output loss\n";

static void test_mlp(void) {
    struct wf_model m;
    int rc = wf_model_parse(&m, "mlp.wf", mlp_text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(strcmp(m.path, "mlp.wf") == 0);
    CHECK(m.name && strcmp(m.name, "mlp") == 0);
    CHECK(m.n == 7);
    const struct wf_mstmt *s = &m.st[0];
    CHECK(s->kind == WF_MS_INPUT && strcmp(s->name, "x") == 0 && s->dtype == WF_F32 && s->ndim == 2);
    CHECK(s->dims[0] == WF_DIM_B && s->dims[1] == 784 && s->line == 3 && s->col == 1 && s->n_attrs == 0);
    s = &m.st[1];
    CHECK(s->kind == WF_MS_INPUT && s->dtype == WF_I32 && s->ndim == 1 && s->dims[0] == WF_DIM_B);
    s = &m.st[2];
    CHECK(s->kind == WF_MS_PARAM && strcmp(s->name, "pos") == 0 && s->ndim == 2 && s->dims[0] == 16);
    CHECK(s->n_attrs == 2);
    const struct wf_mattr *a = wf_mstmt_attr(s, "init");
    CHECK(a && a->type == WF_MV_IDENT && strcmp(a->s, "normal") == 0 && a->line == 5 && a->col == 25);
    a = wf_mstmt_attr(s, "std");
    CHECK(a && a->type == WF_MV_FLOAT && a->f == 0.02 && a->col == 37);
    CHECK(wf_mstmt_attr(s, "nope") == NULL);
    s = &m.st[3];
    CHECK(s->kind == WF_MS_LAYER && strcmp(s->name, "fc1") == 0 && strcmp(s->op, "linear") == 0);
    CHECK(s->line == 6 && s->col == 1 && s->op_line == 6 && s->op_col == 7);
    CHECK(s->n_args == 1 && strcmp(s->args[0], "x") == 0 && s->arg_line[0] == 6 && s->arg_col[0] == 14);
    a = wf_mstmt_attr(s, "out");
    CHECK(a && a->type == WF_MV_INT && a->i == 256 && a->line == 6 && a->col == 17);
    s = &m.st[6];
    CHECK(s->kind == WF_MS_OUTPUT && s->name == NULL && s->n_args == 1 && strcmp(s->args[0], "loss") == 0);
    CHECK(s->line == 9 && s->arg_col[0] == 8);

    char *text;
    size_t len;
    rc = wf_model_write(&m, &text, &len);
    CHECK(rc == WF_OK);
    if (!rc) {
        const char *want = "model mlp\n"
                           "input x : f32[B, 784]\n"
                           "input y : i32[B]\n"
                           "param pos : f32[16, 64] init=normal std=0.02\n"
                           "fc1 = linear(x, out=256)\n"
                           "a1 = relu(fc1)\n"
                           "loss = cross_entropy(a1, y)\n"
                           "output loss\n";
        CHECKF(strcmp(text, want) == 0 && len == strlen(want), "got:\n%s", text);
        wf_free(text);
    }
    wf_model_free(&m);
    wf_model_free(&m); /* a freed model is empty and may be freed again */
    wf_free(check_round_trip("mlp", mlp_text));
}

static void test_residual(void) {
    const char *text = "model resblock\n"
                       "input x : f32[B, 64]\n"
                       "input y : i32[B]\n"
                       "h1 = linear(x, out=64)\n"
                       "a1 = relu(h1)\n"
                       "h2 = linear(a1, out=64)\n"
                       "s = add(h2, x)                 # the skip connection\n"
                       "a2 = relu(s)\n"
                       "logits = linear(a2, out=10, bias=false)\n"
                       "loss = cross_entropy(logits, y)\n"
                       "output loss, logits\n";
    struct wf_model m;
    int rc = wf_model_parse(&m, "res.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(m.n == 10);
    const struct wf_mstmt *s = &m.st[5];
    CHECK(strcmp(s->name, "s") == 0 && strcmp(s->op, "add") == 0 && s->n_args == 2);
    CHECK(strcmp(s->args[0], "h2") == 0 && strcmp(s->args[1], "x") == 0);
    CHECK(s->arg_line[1] == 7 && s->arg_col[0] == 9 && s->arg_col[1] == 13);
    s = &m.st[7];
    const struct wf_mattr *a = wf_mstmt_attr(s, "bias");
    CHECK(a && a->type == WF_MV_BOOL && a->i == 0);
    s = &m.st[9];
    CHECK(s->kind == WF_MS_OUTPUT && s->n_args == 2 && strcmp(s->args[1], "logits") == 0 && s->arg_col[1] == 14);
    wf_model_free(&m);
    char *canon = check_round_trip("residual", text);
    CHECK(canon && strstr(canon, "\ns = add(h2, x)\n") && strstr(canon, "\noutput loss, logits\n"));
    wf_free(canon);
}

static void test_syntax_variants(void) {
    /* comments, blank lines, CRLF, tabs, no space, no final newline, keyword names */
    const char *text = "\n# header\n\n  # indented comment\r\n"
                       "input\tx:f32[ B ,3 ]\r\n"
                       "param w : f32[3, 4]   # no attributes\n"
                       "input = relu(x)   # a layer named input\n"
                       "model = f(input,w,k=1)\n"
                       "e = zeros()\n"
                       "g = g2(x, a=-7, b=1.5, c=-2e-3, d=1E+3, t=true, f=false, s=fc1.weight, "
                       "l=[B, 0, 3], z=[], p=+4, q=.5, i=inf, j=-inf, n=nan)\n"
                       "output g,model";
    struct wf_model m;
    int rc = wf_model_parse(&m, "v.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(m.name == NULL && m.n == 7);
    CHECK(m.st[0].line == 5 && m.st[0].ndim == 2 && m.st[0].dims[1] == 3);
    CHECK(m.st[2].kind == WF_MS_LAYER && strcmp(m.st[2].name, "input") == 0);
    CHECK(m.st[3].kind == WF_MS_LAYER && strcmp(m.st[3].name, "model") == 0 && m.st[3].n_args == 2);
    CHECK(m.st[4].n_args == 0 && m.st[4].n_attrs == 0);
    const struct wf_mstmt *g = &m.st[5];
    const struct wf_mattr *a;
    CHECK((a = wf_mstmt_attr(g, "a")) && a->type == WF_MV_INT && a->i == -7);
    CHECK((a = wf_mstmt_attr(g, "b")) && a->type == WF_MV_FLOAT && a->f == 1.5);
    CHECK((a = wf_mstmt_attr(g, "c")) && a->type == WF_MV_FLOAT && a->f == -2e-3);
    CHECK((a = wf_mstmt_attr(g, "d")) && a->type == WF_MV_FLOAT && a->f == 1000.0);
    CHECK((a = wf_mstmt_attr(g, "t")) && a->type == WF_MV_BOOL && a->i == 1);
    CHECK((a = wf_mstmt_attr(g, "f")) && a->type == WF_MV_BOOL && a->i == 0);
    CHECK((a = wf_mstmt_attr(g, "s")) && a->type == WF_MV_IDENT && strcmp(a->s, "fc1.weight") == 0);
    CHECK((a = wf_mstmt_attr(g, "l")) && a->type == WF_MV_LIST && a->n == 3 && a->list[0] == WF_DIM_B &&
          a->list[1] == 0 && a->list[2] == 3);
    CHECK((a = wf_mstmt_attr(g, "z")) && a->type == WF_MV_LIST && a->n == 0);
    CHECK((a = wf_mstmt_attr(g, "p")) && a->type == WF_MV_INT && a->i == 4);
    CHECK((a = wf_mstmt_attr(g, "q")) && a->type == WF_MV_FLOAT && a->f == 0.5);
    CHECK((a = wf_mstmt_attr(g, "i")) && a->type == WF_MV_FLOAT && isinf(a->f) && a->f > 0);
    CHECK((a = wf_mstmt_attr(g, "j")) && a->type == WF_MV_FLOAT && isinf(a->f) && a->f < 0);
    CHECK((a = wf_mstmt_attr(g, "n")) && a->type == WF_MV_FLOAT && isnan(a->f));
    CHECK(m.st[6].kind == WF_MS_OUTPUT && m.st[6].n_args == 2 && m.st[6].line == 11);
    wf_model_free(&m);

    char *canon = check_round_trip("variants", text);
    const char *want = "input x : f32[B, 3]\n"
                       "param w : f32[3, 4]\n"
                       "input = relu(x)\n"
                       "model = f(input, w, k=1)\n"
                       "e = zeros()\n"
                       "g = g2(x, a=-7, b=1.5, c=-0.002, d=1000.0, t=true, f=false, s=fc1.weight, l=[B, 0, 3], "
                       "z=[], p=4, q=0.5, i=inf, j=-inf, n=nan)\n"
                       "output g, model\n";
    CHECKF(canon && strcmp(canon, want) == 0, "got:\n%s", canon ? canon : "(null)");
    wf_free(canon);

    /* empty and comment-only files are empty models */
    CHECK(wf_model_parse(&m, NULL, "") == WF_OK && m.n == 0 && strcmp(m.path, "<memory>") == 0);
    wf_model_free(&m);
    CHECK(wf_model_parse(&m, "c.wf", "# nothing\n\n   \n# here") == WF_OK && m.n == 0);
    wf_model_free(&m);
}

/* Doubles survive write → parse bit for bit, and print as floats. */
static void test_floats(void) {
    const double vals[] = {
        0.0,     -0.0,          1.0,      -1.0,      0.1,  1.0 / 3.0,   2.0 / 3.0,          1e-300, 5e-324,
        DBL_MIN, DBL_MAX,       -DBL_MAX, 1e16,      1e21, 123456789.0, 9007199254740993.0, 0.02,   3.14159265358979312,
        1e-8,    6.02214076e23, INFINITY, -INFINITY, NAN};
    struct wf_mattr attrs[WF_ARRAY_LEN(vals)];
    char keys[WF_ARRAY_LEN(vals)][8];
    memset(attrs, 0, sizeof attrs);
    for (size_t k = 0; k < WF_ARRAY_LEN(vals); k++) {
        snprintf(keys[k], sizeof keys[k], "v%zu", k);
        attrs[k].key = keys[k];
        attrs[k].type = WF_MV_FLOAT;
        attrs[k].f = vals[k];
    }
    char *args[] = {"x"};
    struct wf_mstmt st[2];
    memset(st, 0, sizeof st);
    st[0].kind = WF_MS_INPUT;
    st[0].name = "x";
    st[0].dtype = WF_F32;
    st[0].ndim = 1;
    st[0].dims[0] = WF_DIM_B;
    st[1].kind = WF_MS_LAYER;
    st[1].name = "y";
    st[1].op = "consts";
    st[1].n_args = 1;
    st[1].args = args;
    st[1].n_attrs = (int)WF_ARRAY_LEN(vals);
    st[1].attrs = attrs;
    struct wf_model m = {.path = "<memory>", .name = "floats", .n = 2, .cap = 2, .st = st};
    char *text = NULL;
    int rc = wf_model_write(&m, &text, NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECKF(strstr(text, "v0=0.0,") && strstr(text, "v1=-0.0,") && strstr(text, "v2=1.0,") && strstr(text, "v4=0.1,") &&
               strstr(text, "v12=1e+16,") && strstr(text, "v14=123456789.0,") && strstr(text, "v16=0.02,") &&
               strstr(text, "v18=1e-08,") && strstr(text, "v20=inf,") && strstr(text, "v21=-inf,"),
           "%s", text);
    struct wf_model p;
    rc = wf_model_parse(&p, "floats", text);
    CHECKF(rc == WF_OK, "%s\n%s", wf_errmsg(), text);
    if (!rc) {
        CHECK(model_equal(&m, &p));
        for (size_t k = 0; k < WF_ARRAY_LEN(vals); k++)
            CHECKF(p.st[1].attrs[k].type == WF_MV_FLOAT && same_double(p.st[1].attrs[k].f, vals[k]), "v%zu", k);
        wf_model_free(&p);
    }
    wf_free(text);

    char buf[32];
    for (double v = 1e-7; v < 1e7; v *= 7.77) {
        wf_lex_format_double(v, buf);
        CHECKF(strtod(buf, NULL) == v, "%s", buf);
    }
}

static void test_copy(void) {
    struct wf_model m, c;
    CHECK(wf_model_parse(&m, "mlp.wf", mlp_text) == WF_OK);
    CHECK(wf_model_copy(&c, &m) == WF_OK);
    CHECK(model_equal(&m, &c) && strcmp(c.path, "mlp.wf") == 0);
    CHECK(c.st[3].arg_line[0] == 6 && c.st[3].arg_col[0] == 14 && c.st[2].attrs[1].col == 37);
    CHECK(c.st[3].args[0] != m.st[3].args[0] && c.st[2].attrs[0].s != m.st[2].attrs[0].s);
    wf_model_free(&m);
    char *t;
    CHECK(wf_model_write(&c, &t, NULL) == WF_OK && strstr(t, "fc1 = linear(x, out=256)\n"));
    wf_free(t);
    wf_model_free(&c);
    struct wf_model empty = {0};
    CHECK(wf_model_copy(&c, &empty) == WF_OK && c.n == 0);
    wf_model_free(&c);
}

static void test_load(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/test_model_parse.wf", WF_BINARY_DIR);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(mlp_text, f);
    fputs("bad line here\n", f);
    fclose(f);
    struct wf_model m;
    CHECK(wf_model_load(&m, path) == WF_ERR_PARSE);
    char want[4200];
    snprintf(want, sizeof want, "%s:10:1: expected statement", path);
    CHECKF(strstr(wf_errmsg(), want) != NULL, "%s", wf_errmsg());
    f = fopen(path, "wb");
    fputs(mlp_text, f);
    fclose(f);
    CHECK(wf_model_load(&m, path) == WF_OK && m.n == 7 && strcmp(m.path, path) == 0);
    wf_model_free(&m);
    remove(path);
    CHECK(wf_model_load(&m, path) == WF_ERR_NOTFOUND && m.n == 0);
}

static void expect_error(int line, const char *text, const char *want) {
    struct wf_model m;
    int rc = wf_model_parse(&m, "m.wf", text);
    wf_test_checks++;
    if (rc != WF_ERR_PARSE || !strstr(wf_errmsg(), want) || m.n != 0 || m.st != NULL || m.path != NULL) {
        wf_test_failures++;
        fprintf(stderr, "%s:%d: parse of\n%s\ngave rc %d '%s', want '%s'\n", __FILE__, line, text, rc, wf_errmsg(),
                want);
    }
    wf_model_free(&m);
}
#define EXPECT_ERROR(text, want) expect_error(__LINE__, text, want)

static void test_errors(void) {
    const char *head = "input x : f32[B, 4]\n"; /* line 1 */
    char text[1024];
#define WITH_HEAD(line) (snprintf(text, sizeof text, "%s%s", head, line), text)
    /* unknown statement, and a layer missing its '=' */
    EXPECT_ERROR(WITH_HEAD("inptu y : f32[3]\n"),
                 "m.wf:2:1: expected statement (model, input, param, output, unit or NAME = OP(...)), got 'inptu'");
    EXPECT_ERROR(WITH_HEAD("h1 relu(x)\n"), "m.wf:2:4: expected '=' after 'h1', got 'relu'");
    EXPECT_ERROR(WITH_HEAD("42 = relu(x)\n"), "m.wf:2:1: expected statement");
    EXPECT_ERROR(WITH_HEAD("= relu(x)\n"), "m.wf:2:1: expected statement");
    /* missing '(' and ')' */
    EXPECT_ERROR(WITH_HEAD("h = relu x\n"), "m.wf:2:10: expected '(' after op 'relu', got 'x'");
    EXPECT_ERROR(WITH_HEAD("h = relu(x\n"),
                 "m.wf:2:11: expected ',' or ')' to close the call opened at 2:9, got end of line");
    EXPECT_ERROR(WITH_HEAD("h = relu(x"),
                 "m.wf:2:11: expected ',' or ')' to close the call opened at 2:9, got end of file");
    EXPECT_ERROR(WITH_HEAD("h = relu(x y)\n"), "m.wf:2:12: expected ',' or ')'");
    EXPECT_ERROR(WITH_HEAD("h = (x)\n"), "m.wf:2:5: expected op name, got '('");
    EXPECT_ERROR(WITH_HEAD("h =\n"), "m.wf:2:4: expected op name, got end of line");
    EXPECT_ERROR(WITH_HEAD("h = relu(x,)\n"),
                 "m.wf:2:12: expected argument (tensor name, number or key=value), got ')'");
    /* a number is a constant (the graph builder checks what it is used for) */
    EXPECT_ERROR(WITH_HEAD("h = relu(\"3\")\n"),
                 "m.wf:2:10: expected argument (tensor name, number or key=value), got \"3\"");
    EXPECT_ERROR(WITH_HEAD("h = mul(x, 1e39)\n"), "m.wf:2:12: constant '1e39' is not a finite f32 number");
    EXPECT_ERROR(WITH_HEAD("h = mul(x, 3 4)\n"), "m.wf:2:14: expected ',' or ')' after a constant");
    /* positional after key=value */
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=3, y)\n"),
                 "m.wf:2:22: expected key=value (positional arguments come first), got 'y'");
    /* duplicate attribute keys */
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=3, out=4)\n"),
                 "m.wf:2:22: duplicate attribute 'out' (first at m.wf:2:15)");
    EXPECT_ERROR("param w : f32[3] init=zeros std=1 init=ones\n",
                 "m.wf:1:35: duplicate attribute 'init' (first at m.wf:1:18)");
    /* bad numbers */
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=12x)\n"), "m.wf:2:19: expected number, got '12x'");
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=1.2.3)\n"), "m.wf:2:19: expected number, got '1.2.3'");
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=1e)\n"), "m.wf:2:19: expected number, got '1e'");
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=-)\n"), "m.wf:2:19: unexpected character '-'");
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=99999999999999999999)\n"),
                 "m.wf:2:19: expected integer in 64-bit range, got '99999999999999999999'");
    EXPECT_ERROR(WITH_HEAD("h = linear(x, out=9223372036854775808)\n"), "m.wf:2:19: expected integer in 64-bit range");
    EXPECT_ERROR(WITH_HEAD("h = linear(x, s=1e999)\n"), "m.wf:2:17: expected number in the range of a double");
    EXPECT_ERROR("input x : f32[B, 4x]\n", "m.wf:1:18: expected number, got '4x'");
    /* shapes */
    EXPECT_ERROR("input x : f32[]\n", "m.wf:1:15: expected at least one dimension (positive integer or B), got ']'");
    EXPECT_ERROR("input x : f32[0]\n", "m.wf:1:15: expected dimension (positive integer or B), got '0'");
    EXPECT_ERROR("input x : f32[-3]\n", "m.wf:1:15: expected dimension (positive integer or B), got '-3'");
    EXPECT_ERROR("input x : f32[C]\n", "m.wf:1:15: expected dimension (positive integer or B), got 'C'");
    EXPECT_ERROR("input x : f32[1,2,3,4,5,6,7,8,9]\n", "m.wf:1:31: too many dimensions (at most 8)");
    EXPECT_ERROR("input x : f64[3]\n", "m.wf:1:11: expected type f32 or i32, got 'f64'");
    EXPECT_ERROR("input x f32[3]\n", "m.wf:1:9: expected ':' after the tensor name, got 'f32'");
    EXPECT_ERROR("input x : f32 3\n", "m.wf:1:15: expected '[' to start the shape, got '3'");
    EXPECT_ERROR("input : f32[3]\n", "m.wf:1:7: expected tensor name, got ':'");
    EXPECT_ERROR("input\n", "m.wf:1:6: expected tensor name, got end of line");
    /* unterminated lists */
    EXPECT_ERROR("input x : f32[B, 3\n",
                 "m.wf:1:19: expected ',' or ']' to close the shape opened at 1:14, got end of line");
    EXPECT_ERROR("input x : f32[B,\n", "m.wf:1:17: expected dimension (positive integer or B), got end of line");
    EXPECT_ERROR(WITH_HEAD("h = reshape(x, shape=[B, 2\n"),
                 "m.wf:2:27: expected ',' or ']' to close the list opened at 2:22, got end of line");
    EXPECT_ERROR(WITH_HEAD("h = reshape(x, shape=[B, 2)\n"), "m.wf:2:27: expected ',' or ']'");
    EXPECT_ERROR(WITH_HEAD("h = reshape(x, shape=[1,2,3,4,5,6,7,8,9])\n"),
                 "m.wf:2:39: list too long (at most 8 items)");
    EXPECT_ERROR(WITH_HEAD("h = reshape(x, shape=[B, -1])\n"),
                 "m.wf:2:26: expected list item (non-negative integer or B), got '-1'");
    EXPECT_ERROR(WITH_HEAD("h = reshape(x, shape=[1.5])\n"), "m.wf:2:23: expected list item");
    EXPECT_ERROR(WITH_HEAD("h = reshape(x, shape=)\n"),
                 "m.wf:2:22: expected value (number, true/false, name or [list]), got ')'");
    /* names defined twice, in one namespace */
    EXPECT_ERROR("input x : f32[B, 4]\n"
                 "input y : i32[B]\n"
                 "\n"
                 "h1 = linear(x, out=4)\n"
                 "a1 = relu(h1)\n"
                 "# comment\n"
                 "h1 = relu(a1)\n",
                 "m.wf:7:1: 'h1' already defined at m.wf:4:1");
    EXPECT_ERROR(WITH_HEAD("input x : f32[3]\n"), "m.wf:2:7: 'x' already defined at m.wf:1:1");
    EXPECT_ERROR(WITH_HEAD("param x : f32[3]\n"), "m.wf:2:7: 'x' already defined at m.wf:1:1");
    EXPECT_ERROR(WITH_HEAD("x = relu(x)\n"), "m.wf:2:1: 'x' already defined at m.wf:1:1");
    EXPECT_ERROR("model a\nmodel b\n", "m.wf:2:1: model name already given at m.wf:1:1");
    /* trailing tokens */
    EXPECT_ERROR(WITH_HEAD("h = relu(x) y\n"), "m.wf:2:13: expected end of line, got 'y'");
    EXPECT_ERROR(WITH_HEAD("h = relu(x))\n"), "m.wf:2:12: expected end of line, got ')'");
    EXPECT_ERROR("model m extra\n", "m.wf:1:9: expected end of line, got 'extra'");
    EXPECT_ERROR(WITH_HEAD("input z : f32[3] init=zeros\n"), "m.wf:2:18: expected end of line, got 'init'");
    EXPECT_ERROR(WITH_HEAD("output x y\n"), "m.wf:2:10: expected ',' or end of line, got 'y'");
    EXPECT_ERROR(WITH_HEAD("output\n"), "m.wf:2:7: expected tensor name, got end of line");
    EXPECT_ERROR(WITH_HEAD("output x,\n"), "m.wf:2:10: expected tensor name, got end of line");
    /* param attributes are space-separated key=value */
    EXPECT_ERROR("param w : f32[3] init=zeros, std=1\n",
                 "m.wf:1:28: expected attribute key=value or end of line, got ','");
    EXPECT_ERROR("param w : f32[3] init\n", "m.wf:1:22: expected '=' after attribute 'init', got end of line");
    EXPECT_ERROR("param w : f32[3] init=\n",
                 "m.wf:1:23: expected value (number, true/false, name or [list]), got end of line");
    /* the lexer */
    EXPECT_ERROR(WITH_HEAD("h = relu(x) @\n"), "m.wf:2:13: unexpected character '@'");
    EXPECT_ERROR(WITH_HEAD("h = relu(x, s=\"str\")\n"),
                 "m.wf:2:15: expected value (number, true/false, name or [list]), got \"str\"");
    EXPECT_ERROR(WITH_HEAD("h = relu(x, s=\"open)\n"), "m.wf:2:15: expected '\"' to close the string, got end of line");
    EXPECT_ERROR(WITH_HEAD("h = relu(x, s=\"a\\nb\")\n"),
                 "m.wf:2:17: expected \\\" or \\\\ after a backslash, got '\\n'");
    EXPECT_ERROR("model \x01\n", "m.wf:1:7: unexpected byte 0x01");
    EXPECT_ERROR("model true\n", "m.wf:1:7: expected model name, got 'true'");
    EXPECT_ERROR("nan = relu(x)\n", "m.wf:1:1: expected statement");
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = 0;
    snprintf(text, sizeof text, "input %s : f32[3]\n", longname);
    EXPECT_ERROR(text, "m.wf:1:7: identifier too long (more than 255 bytes)");
    longname[255] = 0;
    snprintf(text, sizeof text, "input %s : f32[3]\n", longname);
    struct wf_model m;
    CHECK(wf_model_parse(&m, "m.wf", text) == WF_OK && m.n == 1 && strlen(m.st[0].name) == 255);
    wf_model_free(&m);
    /* too many arguments */
    static char big[8192];
    size_t o = (size_t)snprintf(big, sizeof big, "y = concat(");
    for (int k = 0; k <= WF_MODEL_MAX_ARGS; k++)
        o += (size_t)snprintf(big + o, sizeof big - o, "%sx", k ? ", " : "");
    snprintf(big + o, sizeof big - o, ")\n");
    EXPECT_ERROR(big, "too many names (at most 256)");
#undef WITH_HEAD
}

/* ---- units ---- */

static const char *rnn2_text = "# two stacked lstm layers over an embedding\n"
                               "model rnn2\n"
                               "input tok : i32[B, 16]\n"
                               "input y : i32[B]\n"
                               "input len : i32[B]\n"
                               "emb = embedding(tok, vocab=64, dim=32)\n"
                               "unit l1(over=emb, length=len) {\n"
                               "    state s : f32[B, 256]          # lstm state [h | c], H = 128\n"
                               "    region {\n"
                               "        s1 = lstm(emb, s, hidden=128)\n"
                               "        h = slice(s1, axis=1, start=0, len=128)\n"
                               "    }\n"
                               "    next s = s1\n"
                               "    output h\n"
                               "}\n"
                               "unit l2(length=len, over=l1.h) {\n"
                               "    state s : f32[B, 256] from=l1.s\n"
                               "    s1 = lstm(l1.h, s, hidden=128)\n"
                               "    h = slice(s1, axis=1, start=0, len=128)\n"
                               "    next s = s1\n"
                               "    output h\n"
                               "}\n"
                               "last = slice(l2.s, axis=1, start=0, len=128)\n"
                               "logits = linear(last, out=10)\n"
                               "loss = cross_entropy(logits, y)\n"
                               "output loss\n";

static const char *rnn2_canon = "model rnn2\n"
                                "input tok : i32[B, 16]\n"
                                "input y : i32[B]\n"
                                "input len : i32[B]\n"
                                "emb = embedding(tok, vocab=64, dim=32)\n"
                                "unit l1(over=emb, length=len) {\n"
                                "    state s : f32[B, 256]\n"
                                "    region {\n"
                                "        s1 = lstm(emb, s, hidden=128)\n"
                                "        h = slice(s1, axis=1, start=0, len=128)\n"
                                "    }\n"
                                "    next s = s1\n"
                                "    output h\n"
                                "}\n"
                                "unit l2(length=len, over=l1.h) {\n"
                                "    state s : f32[B, 256] from=l1.s\n"
                                "    s1 = lstm(l1.h, s, hidden=128)\n"
                                "    h = slice(s1, axis=1, start=0, len=128)\n"
                                "    next s = s1\n"
                                "    output h\n"
                                "}\n"
                                "last = slice(l2.s, axis=1, start=0, len=128)\n"
                                "logits = linear(last, out=10)\n"
                                "loss = cross_entropy(logits, y)\n"
                                "output loss\n";

static void test_unit(void) {
    struct wf_model m;
    int rc = wf_model_parse(&m, "rnn2.wf", rnn2_text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(m.n == 10 && m.name && strcmp(m.name, "rnn2") == 0);
    for (int k = 0; k < m.n; k++)
        CHECK(!m.st[k].body == (m.st[k].kind != WF_MS_UNIT));
    const struct wf_mstmt *u = &m.st[4];
    CHECK(u->kind == WF_MS_UNIT && strcmp(u->name, "l1") == 0 && u->line == 7 && u->col == 1 && u->end_line == 15);
    CHECK(u->n_args == 0 && u->n_attrs == 2 && u->op == NULL);
    const struct wf_mattr *a = wf_mstmt_attr(u, "over");
    CHECK(a && a->type == WF_MV_IDENT && strcmp(a->s, "emb") == 0 && a->line == 7 && a->col == 9);
    a = wf_mstmt_attr(u, "length");
    CHECK(a && a->type == WF_MV_IDENT && strcmp(a->s, "len") == 0 && a->col == 19);
    CHECK(wf_mstmt_attr(u, "when") == NULL);
    const struct wf_model *b = u->body;
    CHECK(b->n == 4 && b->name == NULL && strcmp(b->path, "rnn2.wf") == 0);
    const struct wf_mstmt *s = &b->st[0];
    CHECK(s->kind == WF_MS_STATE && strcmp(s->name, "s") == 0 && s->line == 8 && s->col == 5);
    CHECK(s->dtype == WF_F32 && s->ndim == 2 && s->dims[0] == WF_DIM_B && s->dims[1] == 256 && s->n_attrs == 0);
    const struct wf_mstmt *r = &b->st[1];
    CHECK(r->kind == WF_MS_REGION && r->name == NULL && r->line == 9 && r->col == 5 && r->end_line == 12);
    CHECK(r->body && r->body->n == 2 && strcmp(r->body->path, "rnn2.wf") == 0);
    s = &r->body->st[0];
    CHECK(s->kind == WF_MS_LAYER && strcmp(s->name, "s1") == 0 && strcmp(s->op, "lstm") == 0 && s->line == 10);
    CHECK(s->col == 9 && s->op_col == 14 && s->n_args == 2 && s->arg_col[1] == 24 && s->body == NULL);
    CHECK(r->body->st[1].kind == WF_MS_LAYER && strcmp(r->body->st[1].name, "h") == 0);
    s = &b->st[2];
    CHECK(s->kind == WF_MS_NEXT && strcmp(s->name, "s") == 0 && s->n_args == 1 && strcmp(s->args[0], "s1") == 0);
    CHECK(s->line == 13 && s->col == 5 && s->arg_line[0] == 13 && s->arg_col[0] == 14);
    s = &b->st[3];
    CHECK(s->kind == WF_MS_OUTPUT && s->n_args == 1 && strcmp(s->args[0], "h") == 0 && s->arg_col[0] == 12);
    u = &m.st[5];
    CHECK(u->kind == WF_MS_UNIT && strcmp(u->name, "l2") == 0 && u->line == 16 && u->end_line == 22);
    CHECK(u->n_attrs == 2 && strcmp(u->attrs[0].key, "length") == 0 && strcmp(u->attrs[1].key, "over") == 0);
    CHECK(strcmp(u->attrs[1].s, "l1.h") == 0 && u->body->n == 5);
    s = &u->body->st[0];
    a = wf_mstmt_attr(s, "from");
    CHECK(s->kind == WF_MS_STATE && a && a->type == WF_MV_IDENT && strcmp(a->s, "l1.s") == 0 && a->col == 27);
    CHECK(u->body->st[1].kind == WF_MS_LAYER && strcmp(u->body->st[1].args[0], "l1.h") == 0);
    CHECK(m.st[6].kind == WF_MS_LAYER && strcmp(m.st[6].args[0], "l2.s") == 0 && m.st[6].line == 23);
    wf_model_free(&m);
    wf_model_free(&m);

    char *canon = check_round_trip("rnn2", rnn2_text);
    CHECKF(canon && strcmp(canon, rnn2_canon) == 0, "got:\n%s", canon ? canon : "(null)");
    wf_free(canon);
}

/* Layout is free around the braces' rules; keywords followed by '=' are
 * layers; body names are the unit's own. */
static void test_unit_variants(void) {
    const char *text = "input x : f32[B, 8, 4]\r\n"
                       "input n : i32[B]\n"
                       "h = relu(x)\n"
                       "unit  u ( length = n ,over=x , stride=2, tag=[B, 3] ){   # comment\r\n"
                       "\n"
                       "\tstate h:f32[B,4]\n"
                       "  # a comment\n"
                       "state = relu(x)\n"
                       "next = relu(state)\n"
                       "  region{\n"
                       "unit = add(next, h)\n"
                       "region = relu(unit)\n"
                       "output = relu(region)\n"
                       "}\n"
                       "  next h = output\n"
                       "  x = relu(h)\n"
                       "  output x, h\n"
                       "  output region\n"
                       "  }  # end of u\n"
                       "unit v(over=h) {\n"
                       "    output x\n"
                       "}\n"
                       "unit w(over=h) {\n"
                       "    state x : f32[B, 4]\n"
                       "    region {\n"
                       "    }\n"
                       "}\n"
                       "s = add(u.x, v.x)\n"
                       "output s";
    const char *want = "input x : f32[B, 8, 4]\n"
                       "input n : i32[B]\n"
                       "h = relu(x)\n"
                       "unit u(length=n, over=x, stride=2, tag=[B, 3]) {\n"
                       "    state h : f32[B, 4]\n"
                       "    state = relu(x)\n"
                       "    next = relu(state)\n"
                       "    region {\n"
                       "        unit = add(next, h)\n"
                       "        region = relu(unit)\n"
                       "        output = relu(region)\n"
                       "    }\n"
                       "    next h = output\n"
                       "    x = relu(h)\n"
                       "    output x, h\n"
                       "    output region\n"
                       "}\n"
                       "unit v(over=h) {\n"
                       "    output x\n"
                       "}\n"
                       "unit w(over=h) {\n"
                       "    state x : f32[B, 4]\n"
                       "    region {\n"
                       "    }\n"
                       "}\n"
                       "s = add(u.x, v.x)\n"
                       "output s\n";
    struct wf_model m;
    int rc = wf_model_parse(&m, "v.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    CHECK(m.n == 8 && m.st[3].kind == WF_MS_UNIT && m.st[3].col == 1 && m.st[3].end_line == 19);
    const struct wf_model *b = m.st[3].body;
    CHECK(b->n == 8 && b->st[0].kind == WF_MS_STATE && b->st[0].line == 6 && b->st[0].col == 2);
    CHECK(b->st[1].kind == WF_MS_LAYER && strcmp(b->st[1].name, "state") == 0);
    CHECK(b->st[2].kind == WF_MS_LAYER && strcmp(b->st[2].name, "next") == 0);
    CHECK(b->st[3].kind == WF_MS_REGION && b->st[3].end_line == 14 && b->st[3].body->n == 3);
    CHECK(b->st[3].body->st[0].kind == WF_MS_LAYER && strcmp(b->st[3].body->st[0].name, "unit") == 0);
    CHECK(b->st[4].kind == WF_MS_NEXT && strcmp(b->st[4].args[0], "output") == 0);
    const struct wf_mattr *a = wf_mstmt_attr(&m.st[3], "stride");
    CHECK(a && a->type == WF_MV_INT && a->i == 2 && m.st[3].n_attrs == 4);
    CHECK(m.st[5].body->st[1].kind == WF_MS_REGION && m.st[5].body->st[1].body->n == 0);
    wf_model_free(&m);
    char *canon = check_round_trip("unit variants", text);
    CHECKF(canon && strcmp(canon, want) == 0, "got:\n%s", canon ? canon : "(null)");
    wf_free(canon);
}

static void test_unit_copy(void) {
    struct wf_model m, c;
    CHECK(wf_model_parse(&m, "rnn2.wf", rnn2_text) == WF_OK);
    CHECK(wf_model_copy(&c, &m) == WF_OK);
    CHECK(model_equal(&m, &c) && strcmp(c.path, "rnn2.wf") == 0);
    const struct wf_mstmt *u = &c.st[4];
    CHECK(u->body && u->body != m.st[4].body && strcmp(u->body->path, "rnn2.wf") == 0);
    CHECK(u->body->path != m.st[4].body->path && u->end_line == 15);
    const struct wf_mstmt *r = &u->body->st[1];
    CHECK(r->body && r->body != m.st[4].body->st[1].body && r->end_line == 12);
    CHECK(r->body->st[0].name != m.st[4].body->st[1].body->st[0].name && r->body->st[0].arg_col[1] == 24);
    CHECK(c.st[5].attrs[1].s != m.st[5].attrs[1].s && c.st[5].body->st[0].attrs[0].col == 27);
    wf_model_free(&m);
    char *t;
    CHECK(wf_model_write(&c, &t, NULL) == WF_OK && strcmp(t, rnn2_canon) == 0);
    wf_free(t);
    wf_model_free(&c);
}

static void test_unit_errors(void) {
    char text[1024];
    /* lines 1 and 2; the unit opens on line 3 */
#define U(body) (snprintf(text, sizeof text, "input x : f32[B, 8, 4]\ninput n : i32[B]\n%s", body), text)
    /* braces out of place */
    EXPECT_ERROR(U("}\n"), "m.wf:3:1: '}' without an open block");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n}\n}\n"), "m.wf:6:1: '}' without an open block");
    EXPECT_ERROR(U("{\n"),
                 "m.wf:3:1: expected statement (model, input, param, output, unit or NAME = OP(...)), got '{'");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n}  x\n"), "m.wf:5:4: expected end of line after '}', got 'x'");
    EXPECT_ERROR(U("unit u(over=x) {\n    h = relu(x) }\n"), "m.wf:4:17: expected end of line, got '}'");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x }\n"), "m.wf:4:14: expected ',' or end of line, got '}'");
    /* unclosed blocks, named by where they opened */
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n"),
                 "m.wf:5:1: expected '}' to close unit 'u' opened at 3:1, got end of file");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]"),
                 "m.wf:4:24: expected '}' to close unit 'u' opened at 3:1, got end of file");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    region {\n        h = relu(x)\n"),
                 "m.wf:7:1: expected '}' to close the region opened at 5:5, got end of file");
    EXPECT_ERROR(U("unit u(over=x) {\n    region {\n    }\n"),
                 "m.wf:6:1: expected '}' to close unit 'u' opened at 3:1, got end of file");
    /* state, next and region only in a unit */
    EXPECT_ERROR(U("state s : f32[B, 4]\n"), "m.wf:3:1: 'state' outside a unit");
    EXPECT_ERROR(U("next s = x\n"), "m.wf:3:1: 'next' outside a unit");
    EXPECT_ERROR(U("region {\n"), "m.wf:3:1: 'region' outside a unit");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n}\nnext s = x\n"), "m.wf:6:1: 'next' outside a unit");
    /* nesting */
    EXPECT_ERROR(U("unit u(over=x) {\n    unit v(over=x) {\n"),
                 "m.wf:4:5: unit inside unit 'u' (opened at 3:1): units do not nest");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        unit v(over=x) {\n"),
                 "m.wf:6:9: unit inside unit 'u' (opened at 3:1): units do not nest");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        region {\n"),
                 "m.wf:6:9: region inside the region opened at 5:5: regions do not nest");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n    }\n    h = relu(x)\n    region {\n"),
                 "m.wf:8:5: second region in unit 'u' (the first at 5:5): at most one per unit");
    /* a region holds only layers; a unit no declarations */
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        state s : f32[B, 4]\n"),
                 "m.wf:6:9: 'state' inside the region opened at 5:5 (a region holds only layers)");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    region {\n        next s = x\n"),
                 "m.wf:6:9: 'next' inside the region opened at 5:5 (a region holds only layers)");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        output x\n"),
                 "m.wf:6:9: 'output' inside the region opened at 5:5 (a region holds only layers)");
    EXPECT_ERROR(U("unit u(over=x) {\n    input z : f32[B, 4]\n"),
                 "m.wf:4:5: 'input' inside unit 'u' (opened at 3:1): a unit holds state, region, layers, next and "
                 "output");
    EXPECT_ERROR(U("unit u(over=x) {\n    param p : f32[4]\n"), "m.wf:4:5: 'param' inside unit 'u' (opened at 3:1)");
    EXPECT_ERROR(U("unit u(over=x) {\n    model q\n"), "m.wf:4:5: 'model' inside unit 'u' (opened at 3:1)");
    EXPECT_ERROR(U("unit u(over=x) {\n    foo bar\n"),
                 "m.wf:4:5: expected statement (state, region, NAME = OP(...), next, output or '}'), got 'foo'");
    EXPECT_ERROR(U("unit u(over=x) {\n    h relu(x)\n"), "m.wf:4:7: expected '=' after 'h', got 'relu'");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        foo\n"),
                 "m.wf:6:9: expected layer (NAME = OP(...)) or '}', got 'foo'");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        3\n"),
                 "m.wf:6:9: expected layer (NAME = OP(...)) or '}', got '3'");
    /* a unit that computes nothing */
    EXPECT_ERROR(U("unit u(over=x) {\n    h = relu(x)\n}\n"), "m.wf:3:1: unit 'u' has neither state nor output");
    EXPECT_ERROR(U("unit u(over=x) {\n}\n"), "m.wf:3:1: unit 'u' has neither state nor output");
    /* names: the unit's in the file's namespace, the body's its own */
    EXPECT_ERROR(U("unit x(over=x) {\n"), "m.wf:3:6: 'x' already defined at m.wf:1:1");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n}\nu = relu(x)\n"), "m.wf:6:1: 'u' already defined at m.wf:3:1");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    s = relu(x)\n"),
                 "m.wf:5:5: 's' already defined at m.wf:4:5");
    EXPECT_ERROR(U("unit u(over=x) {\n    h = relu(x)\n    state h : f32[B, 4]\n"),
                 "m.wf:5:11: 'h' already defined at m.wf:4:5");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region {\n        h = relu(x)\n    }\n    h = relu(x)\n"),
                 "m.wf:8:5: 'h' already defined at m.wf:6:9");
    EXPECT_ERROR(U("unit u(over=x) {\n    h = relu(x)\n    region {\n        h = relu(x)\n"),
                 "m.wf:6:9: 'h' already defined at m.wf:4:5");
    /* next */
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    next q = s\n"),
                 "m.wf:5:10: expected a state of unit 'u' declared above, got 'q'");
    EXPECT_ERROR(U("unit u(over=x) {\n    h = relu(x)\n    next h = h\n"),
                 "m.wf:5:10: expected a state of unit 'u' declared above, got 'h'");
    EXPECT_ERROR(U("unit u(over=x) {\n    next s = x\n    state s : f32[B, 4]\n"),
                 "m.wf:4:10: expected a state of unit 'u' declared above, got 's'");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    next s = x\n    next s = x\n"),
                 "m.wf:6:10: second next for state 's' (the first at m.wf:5:5)");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    next s x\n"),
                 "m.wf:5:12: expected '=' after the state name, got 'x'");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    next s = 3\n"),
                 "m.wf:5:14: expected tensor name (the state's next value), got '3'");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    next s = x, y\n"),
                 "m.wf:5:15: expected end of line, got ','");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4]\n    next\n"),
                 "m.wf:5:9: expected state name, got end of line");
    /* the header */
    EXPECT_ERROR(U("unit (over=x) {\n"), "m.wf:3:6: expected unit name, got '('");
    EXPECT_ERROR(U("unit u over=x {\n"), "m.wf:3:8: expected '(' after unit 'u', got 'over'");
    EXPECT_ERROR(U("unit u() {\n"), "m.wf:3:8: expected over=SEQ (the sequence the unit steps over), got ')'");
    EXPECT_ERROR(U("unit u(length=n) {\n"), "m.wf:3:16: expected over=SEQ (the sequence the unit steps over), got ')'");
    EXPECT_ERROR(U("unit u(over=3) {\n"), "m.wf:3:13: expected tensor name after over=, got '3'");
    EXPECT_ERROR(U("unit u(over=x, length=[B]) {\n"), "m.wf:3:23: expected tensor name after length=, got '['");
    EXPECT_ERROR(U("unit u(over=x, when=true) {\n"), "m.wf:3:21: expected tensor name after when=, got 'true'");
    EXPECT_ERROR(U("unit u(x) {\n"), "m.wf:3:9: expected '=' after attribute 'x', got ')'");
    EXPECT_ERROR(U("unit u(over=x over=x) {\n"),
                 "m.wf:3:15: expected ',' or ')' to close the attributes opened at 3:7, got 'over'");
    EXPECT_ERROR(U("unit u(over=x, over=x) {\n"), "m.wf:3:16: duplicate attribute 'over' (first at m.wf:3:8)");
    EXPECT_ERROR(U("unit u(over=x, 3) {\n"), "m.wf:3:16: expected unit attribute key=value, got '3'");
    EXPECT_ERROR(U("unit u(over=x)\n{\n"), "m.wf:3:15: expected '{' to open the body of unit 'u', got end of line");
    EXPECT_ERROR(U("unit u(over=x) { output x\n"), "m.wf:3:18: expected end of line after '{', got 'output'");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region\n"),
                 "m.wf:5:11: expected '{' after 'region', got end of line");
    EXPECT_ERROR(U("unit u(over=x) {\n    output x\n    region { h = relu(x) }\n"),
                 "m.wf:5:14: expected end of line after '{', got 'h'");
    /* states are f32; from= names a tensor */
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : i32[B, 4]\n"),
                 "m.wf:4:15: expected type f32 (a state is f32), got 'i32'");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[B, 4] from=3\n"),
                 "m.wf:4:30: expected tensor name after from=, got '3'");
    EXPECT_ERROR(U("unit u(over=x) {\n    state s : f32[]\n"),
                 "m.wf:4:19: expected at least one dimension (positive integer or B), got ']'");
#undef U
}

/* The writer refuses a tree the parser could not have made: blocks out of
 * place, a next without its state, a unit without over= or purpose. */
static void test_unit_write_rejects(void) {
    struct wf_model m;
    CHECK(wf_model_parse(&m, "rnn2.wf", rnn2_text) == WF_OK);
    if (!m.n) return;
    struct wf_mstmt *l1 = &m.st[4];
    struct wf_model *b = l1->body;
    char *text = NULL;
#define REJECTS(want)                                                                                                  \
    do {                                                                                                               \
        int rc_ = wf_model_write(&m, &text, NULL);                                                                     \
        CHECKF(rc_ == WF_ERR_INVALID && text == NULL && strcmp(wf_errmsg(), want) == 0, "rc %d '%s'", rc_,             \
               wf_errmsg());                                                                                           \
    } while (0)
    /* statements numbered in written order: l1 is 5, its state 6, region 7, s1 8, h 9, next 10, output 11 */
    l1->kind = WF_MS_REGION;
    REJECTS("model write: statement 5: region outside a unit 'l1'");
    l1->kind = WF_MS_UNIT;
    m.st[3].kind = WF_MS_STATE;
    REJECTS("model write: statement 4: state outside a unit 'emb'");
    m.st[3].kind = WF_MS_NEXT;
    REJECTS("model write: statement 4: next outside a unit 'emb'");
    m.st[3].kind = WF_MS_LAYER;
    b->st[0].kind = WF_MS_INPUT;
    REJECTS("model write: statement 6: declaration inside a unit 's'");
    b->st[0].kind = WF_MS_STATE;
    b->st[3].kind = WF_MS_UNIT;
    REJECTS("model write: statement 11: unit inside a unit");
    b->st[3].kind = WF_MS_OUTPUT;
    b->st[1].body->st[0].kind = WF_MS_OUTPUT;
    REJECTS("model write: statement 8: output inside a region 's1'");
    b->st[1].body->st[0].kind = WF_MS_STATE;
    REJECTS("model write: statement 8: state or next inside a region 's1'");
    b->st[1].body->st[0].kind = WF_MS_REGION;
    REJECTS("model write: statement 8: region inside a region 's1'");
    b->st[1].body->st[0].kind = WF_MS_LAYER;
    b->st[0].dtype = WF_I32;
    REJECTS("model write: statement 6: dtype not f32 for state 's'");
    b->st[0].dtype = WF_F32;
    char *keep = b->st[2].name;
    b->st[2].name = "h";
    REJECTS("model write: statement 10: next for no state declared above: 'h'");
    b->st[2].name = keep;
    char *h = b->st[1].body->st[1].name;
    b->st[1].body->st[1].name = "s";
    REJECTS("model write: statement 9: name defined twice: 's'");
    b->st[1].body->st[1].name = h;
    CHECK(wf_model_write(&m, &text, NULL) == WF_OK && strcmp(text, rnn2_canon) == 0);
    wf_free(text);
    text = NULL;
    b->st[2].n_args = 0;
    REJECTS("model write: statement 10: next without exactly one value for 's'");
    b->st[2].n_args = 1;
    l1->attrs[0].type = WF_MV_INT;
    REJECTS("model write: statement 5: not a tensor name: 'over'");
    l1->attrs[0].type = WF_MV_IDENT;
    keep = l1->attrs[0].key;
    l1->attrs[0].key = "under";
    REJECTS("model write: statement 5: no over= for unit 'l1'");
    l1->attrs[0].key = keep;
    b->n = 1;
    b->st[0].kind = WF_MS_LAYER;
    b->st[0].op = "zeros";
    REJECTS("model write: statement 5: neither state nor output in unit 'l1'");
    b->st[0].kind = WF_MS_STATE;
    b->st[0].op = NULL;
    b->n = 4;
    l1->body = NULL;
    REJECTS("model write: statement 5: a unit or region without its block 'l1'");
    l1->body = b;
    m.st[3].body = b;
    REJECTS("model write: statement 4: a block on a statement that has none: 'emb'");
    m.st[3].body = NULL;
    /* the next becomes a second region */
    struct wf_mstmt next = b->st[2];
    b->st[2].kind = WF_MS_REGION;
    b->st[2].name = NULL;
    b->st[2].n_args = 0;
    b->st[2].body = b->st[1].body;
    REJECTS("model write: statement 10: second region in a unit");
    b->st[2] = next;
    CHECK(wf_model_write(&m, &text, NULL) == WF_OK && strcmp(text, rnn2_canon) == 0);
    wf_free(text);
#undef REJECTS
    wf_model_free(&m);
}

/* { and } are punctuation in model files only: the job-file lexer still
 * calls them unexpected characters. */
static void test_lex_braces(void) {
    struct wf_lex lx;
    wf_lex_init(&lx, "j.job", "a = {");
    CHECK(wf_lex_next(&lx) == WF_OK && wf_lex_next(&lx) == WF_OK);
    CHECK(wf_lex_next(&lx) == WF_ERR_PARSE && strcmp(wf_errmsg(), "j.job:1:5: unexpected character '{'") == 0);
    wf_lex_init(&lx, "m.wf", "{}");
    lx.braces = 1;
    CHECK(wf_lex_next(&lx) == WF_OK && wf_tok_is(&lx.tok, '{') && lx.tok.col == 1);
    CHECK(wf_lex_next(&lx) == WF_OK && wf_tok_is(&lx.tok, '}') && lx.tok.col == 2);
    CHECK(wf_lex_next(&lx) == WF_OK && lx.tok.kind == WF_TOK_EOF);
}

static void test_write_rejects(void) {
    char *args[] = {"a b"};
    struct wf_mstmt st = {.kind = WF_MS_OUTPUT, .n_args = 1, .args = args};
    struct wf_model m = {.n = 1, .cap = 1, .st = &st};
    char *text = (char *)1;
    CHECK(wf_model_write(&m, &text, NULL) == WF_ERR_INVALID && text == NULL);
    CHECKF(strstr(wf_errmsg(), "bad argument name 'a b'"), "%s", wf_errmsg());
    args[0] = "true";
    CHECK(wf_model_write(&m, &text, NULL) == WF_ERR_INVALID);
    args[0] = "ok";
    CHECK(wf_model_write(&m, &text, NULL) == WF_OK && strcmp(text, "output ok\n") == 0);
    wf_free(text);
    struct wf_mstmt two[2] = {{.kind = WF_MS_INPUT, .name = "x", .dtype = WF_F32, .ndim = 1, .dims = {3}},
                              {.kind = WF_MS_INPUT, .name = "x", .dtype = WF_F32, .ndim = 1, .dims = {3}}};
    m.st = two;
    m.n = 2;
    CHECK(wf_model_write(&m, &text, NULL) == WF_ERR_INVALID);
    two[1].name = "y";
    two[1].dims[0] = 0;
    CHECK(wf_model_write(&m, &text, NULL) == WF_ERR_INVALID);
    two[1].dims[0] = WF_DIM_B;
    two[1].dtype = WF_I32;
    CHECK(wf_model_write(&m, &text, NULL) == WF_OK && strcmp(text, "input x : f32[3]\ninput y : i32[B]\n") == 0);
    wf_free(text);
    struct wf_model empty = {0};
    CHECK(wf_model_write(&empty, &text, NULL) == WF_OK && text && text[0] == 0);
    wf_free(text);
}

/* Failing the k-th allocation for every k: a clean WF_ERR_NOMEM, never a
 * crash or a leak (ASan's leak check covers the latter). */
static void alloc_failures(const char *text) {
    int ok = 0, nomem = 0, other = 0;
    for (long k = 1; k < 10000 && !ok; k++) {
        struct wf_model m;
        wf_alloc_fail_at(k);
        int rc = wf_model_parse(&m, "af.wf", text);
        wf_alloc_fail_at(0);
        if (rc == WF_OK)
            ok = 1;
        else if (rc == WF_ERR_NOMEM)
            nomem++;
        else
            other++;
        CHECK(rc != WF_ERR_NOMEM || (m.n == 0 && m.st == NULL && m.path == NULL));
        wf_model_free(&m);
    }
    CHECK(ok && nomem > 20 && other == 0);

    struct wf_model m, c;
    CHECK(wf_model_parse(&m, "af.wf", text) == WF_OK);
    ok = nomem = other = 0;
    for (long k = 1; k < 10000 && !ok; k++) {
        wf_alloc_fail_at(k);
        int rc = wf_model_copy(&c, &m);
        wf_alloc_fail_at(0);
        if (rc == WF_OK) {
            ok = 1;
            CHECK(model_equal(&m, &c));
        } else if (rc == WF_ERR_NOMEM) {
            nomem++;
        } else {
            other++;
        }
        wf_model_free(&c);
    }
    CHECK(ok && nomem > 20 && other == 0);
    ok = nomem = other = 0;
    for (long k = 1; k < 10000 && !ok; k++) {
        char *out = NULL;
        wf_alloc_fail_at(k);
        int rc = wf_model_write(&m, &out, NULL);
        wf_alloc_fail_at(0);
        if (rc == WF_OK)
            ok = 1;
        else if (rc == WF_ERR_NOMEM) {
            nomem++;
            CHECK(out == NULL);
        } else
            other++;
        wf_free(out);
    }
    CHECK(ok && nomem >= 1 && other == 0);
    wf_model_free(&m);
}

static void test_alloc_failures(void) {
    alloc_failures("model res\n"
                   "input x : f32[B, 64]\n"
                   "param p : f32[4, 4] init=normal std=0.5 name=p0 dims=[B, 2]\n"
                   "h1 = linear(x, out=64)\n"
                   "s = add(h1, x, p, q, r, t, u, v, w, z, alpha=1.5, flag=true, kind=sum, shape=[B, 64])\n"
                   "output s, h1\n");
    alloc_failures(rnn2_text);
}

/* The writer refuses a tree the parser could not have made: a name defined twice (found by hash). */
static void test_write_duplicate(void) {
    struct wf_model m;
    CHECK(wf_model_parse(&m, "m.wf", "input x : f32[B, 4]\nh = relu(x)\ng = tanh(h)\noutput g\n") == WF_OK);
    char *keep = m.st[2].name, *text = NULL;
    m.st[2].name = m.st[1].name; /* g renamed h */
    int rc = wf_model_write(&m, &text, NULL);
    CHECKF(rc == WF_ERR_INVALID && !strcmp(wf_errmsg(), "model write: statement 3: name defined twice: 'h'"),
           "rc %d '%s'", rc, wf_errmsg());
    m.st[2].name = keep;
    CHECK(wf_model_write(&m, &text, NULL) == WF_OK);
    wf_free(text);
    wf_model_free(&m);
}

int main(void) {
    test_write_duplicate();
    test_mlp();
    test_residual();
    test_syntax_variants();
    test_floats();
    test_copy();
    test_load();
    test_errors();
    test_write_rejects();
    test_lex_braces();
    test_unit();
    test_unit_variants();
    test_unit_copy();
    test_unit_errors();
    test_unit_write_rejects();
    test_alloc_failures();
    return wf_test_done("test_model_parse");
}
