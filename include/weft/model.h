/*
 * weft graph layer: model files — the syntax tree, parser and serializer.
 *
 * A model file is human-written text describing a DAG of named tensors:
 *
 *     # MLP for Fashion-MNIST
 *     model mlp
 *     input x : f32[B, 784]          # B is the (micro-)batch size
 *     input y : i32[B]
 *     param pos : f32[16, 64] init=normal std=0.02
 *     fc1 = linear(x, out=256)       # creates parameters fc1.weight, fc1.bias
 *     a1 = relu(fc1)
 *     loss = cross_entropy(a1, y)
 *     output loss
 *
 * Statements are one per line; `#` starts a comment:
 *
 *     model NAME                               at most once
 *     input NAME : f32[DIM, ...]               or i32; DIM is a positive
 *                                              integer or B; 1 to 8 dims
 *     param NAME : f32[DIM, ...] KEY=VALUE ... attributes space-separated
 *     NAME = OP(ARG, ..., KEY=VALUE, ...)      comma-separated
 *     output NAME, NAME, ...
 *     unit NAME(over=SEQ, length=LEN, when=MASK) {    a recurrent unit (below)
 *         state NAME : f32[B, N]  [from=TENSOR]
 *         region {                                    at most one, optional
 *             NAME = OP(...)                          layers
 *         }
 *         NAME = OP(...)
 *         next STATE = NAME
 *         output NAME, ...
 *     }
 *
 * A unit repeats its body over axis 1 (time) of SEQ, a [B, T, ...] tensor
 * defined before it: inside the body, SEQ names step t's slice [B, ...];
 * each `state` is carried from step to step (zeros at t = 0, or TENSOR, a
 * [B, N] value defined before the unit), and `next STATE = NAME` gives its
 * value for step t + 1. Outside, after the block, `NAME.V` is the per-step
 * output V stacked to [B, T, ...] and `NAME.S` the state S after the last
 * step. The body reads only SEQ, its states, its own layers and numbers;
 * its names are its own (parameters are named NAME.LAYER.weight...). A
 * `region { }` is a skip region: for a (t, sample) where the condition
 * fails — t >= LEN[sample] (length=, an i32[B] input) or MASK[sample, t] is
 * 0 (when=, an i32[B, T] input) — its layers do no work, a state's next
 * value defined in the region is the state unchanged and any other value
 * of the region read after it is 0. Only inside a unit may `state`, `next`
 * and `region` appear; units do not nest; `{` ends the header line and `}`
 * stands on a line of its own.
 *
 * In a layer, positional arguments are tensor names and come before the
 * key=value attributes. Values are integers, floats (1.5, -2e-3, inf, nan),
 * true/false, identifiers, or lists `[..]` of up to 8 non-negative integers
 * and the symbol B (`[]` is allowed). Names are [A-Za-z_][A-Za-z0-9_.]*, at
 * most 255 bytes; true, false, inf and nan are reserved. Input, param and
 * layer names share one namespace; a name may not be defined twice, and an
 * attribute key may not repeat within a statement. A statement keyword
 * followed by `=` starts a layer (`input = relu(x)` defines "input").
 *
 * This layer parses the syntax only; the graph builder (graph.h) checks ops,
 * attributes and shapes. The serializer prints the canonical text: parse →
 * write → parse gives the same tree, and write is a fixed point. The same
 * text is the wire format for sub-graphs.
 */
#ifndef WEFT_MODEL_H
#define WEFT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define WF_DIM_B (-1)         /* the symbolic batch dimension in a declared shape */
#define WF_MODEL_MAX_DIMS 8   /* dims of a shape, items of a list attribute */
#define WF_MODEL_MAX_ARGS 256 /* positional arguments of a layer, names of an output */
#define WF_MODEL_MAX_ATTRS 64 /* attributes of one statement */
#define WF_MODEL_MAX_STMTS 1000000

enum wf_mval_type { WF_MV_INT, WF_MV_FLOAT, WF_MV_BOOL, WF_MV_IDENT, WF_MV_LIST };

struct wf_mattr {
    char *key;
    int type;                        /* enum wf_mval_type */
    int64_t i;                       /* INT, BOOL (0/1) */
    double f;                        /* FLOAT */
    char *s;                         /* IDENT */
    int n;                           /* LIST length */
    int64_t list[WF_MODEL_MAX_DIMS]; /* LIST items; WF_DIM_B for B */
    int line, col;                   /* of the key */
};

enum wf_mstmt_kind {
    WF_MS_INPUT,
    WF_MS_PARAM,
    WF_MS_LAYER,
    WF_MS_OUTPUT,
    WF_MS_UNIT,   /* name, attrs (over=, length=, when=: identifiers), body */
    WF_MS_STATE,  /* in a unit: name, dtype, ndim, dims, attrs (from=: an identifier) */
    WF_MS_REGION, /* in a unit: body (layers only); name NULL */
    WF_MS_NEXT,   /* in a unit: name = the state, args[0] = its next value */
};

struct wf_mstmt {
    int kind;      /* enum wf_mstmt_kind */
    char *name;    /* input/param/layer name; NULL for output */
    int line, col; /* of the statement's first token */
    /* input/param: declared type and shape */
    int dtype; /* WF_F32 or WF_I32 (safetensors.h) */
    int ndim;
    int64_t dims[WF_MODEL_MAX_DIMS]; /* WF_DIM_B for B */
    /* layer: op and positional tensor arguments; output: the names listed */
    char *op;
    int op_line, op_col;
    int n_args;
    char **args;
    int *arg_line, *arg_col;
    /* layer, param, unit, state: key=value attributes, in source order */
    int n_attrs;
    struct wf_mattr *attrs;
    /* unit and region: the statements of the block (body->path is the file's), else NULL */
    struct wf_model *body;
    int end_line; /* unit and region: the line of the closing `}` */
};

struct wf_model {
    char *path; /* for messages; "<memory>" if none */
    char *name; /* from `model NAME`, may be NULL */
    int n, cap;
    struct wf_mstmt *st;
};

/* Parses text into *m (overwritten; path may be NULL). Errors are
 * WF_ERR_PARSE with "path:line:col: expected X, got Y", or WF_ERR_NOMEM; on
 * error *m is left empty. Layer, op and argument positions are recorded so
 * the graph builder can point at them. */
int wf_model_parse(struct wf_model *m, const char *path, const char *text);
int wf_model_load(struct wf_model *m, const char *path);
/* Canonical text: `model NAME` first if set, then the statements in order,
 * one per line, single spaces, attributes in stored order, floats in the
 * shortest form that reads back as the same double. Caller frees *text with
 * wf_free; len may be NULL. WF_ERR_INVALID if m holds something the syntax
 * cannot express (a bad name, a repeated name or key, a bad shape). */
int wf_model_write(const struct wf_model *m, char **text, size_t *len);
void wf_model_free(struct wf_model *m);
/* Finds an attribute of a statement by key, or NULL. */
const struct wf_mattr *wf_mstmt_attr(const struct wf_mstmt *s, const char *key);
/* Deep copy (used to carve sub-graphs); *dst is overwritten, empty on error. */
int wf_model_copy(struct wf_model *dst, const struct wf_model *src);

#endif
