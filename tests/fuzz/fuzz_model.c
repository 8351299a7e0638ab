/*
 * fuzz: model files (core lexer, graph and compile layers). The input is a
 * model file's bytes, as wf_model_load would read them: checked as text
 * (a NUL or bad UTF-8 is an error, not an end of file), parsed, built into
 * a graph and compiled for training at a small batch; nothing runs. Beyond
 * "no crash, no sanitizer report": a model that parses writes canonical
 * text that parses back to the same text (model.h: write is a fixed point).
 * Seeds: tests/fuzz/corpus/fuzz_model/ (one per class of hostile model,
 * and a copy of every model in examples/ and bench/models/).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/compile.h"
#include "weft/core.h"
#include "weft/graph.h"
#include "weft/lex.h"
#include "weft/model.h"

/* Longer models add nothing a shorter one cannot reach. */
#define FUZZ_MODEL_MAX_BYTES (256 * 1024)

static void fuzz_model_roundtrip(const struct wf_model *m) {
    char *a = NULL, *b = NULL;
    if (wf_model_write(m, &a, NULL) != WF_OK) return; /* out of memory */
    struct wf_model m2;
    if (wf_model_parse(&m2, "fuzz.wf:canonical", a) != WF_OK) abort(); /* the writer printed what the parser refuses */
    if (wf_model_write(&m2, &b, NULL) == WF_OK && strcmp(a, b) != 0) abort(); /* not a fixed point */
    wf_free(b);
    wf_model_free(&m2);
    wf_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int quiet;
    if (!quiet) { /* the graph builder's warnings ("does not affect the loss") would drown the fuzzer's output */
        setenv("WEFT_LOG", "error", 0);
        quiet = 1;
    }
    if (size > FUZZ_MODEL_MAX_BYTES) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    if (size) memcpy(text, data, size);
    text[size] = 0;
    struct wf_model m;
    if (wf_text_check("fuzz.wf", text, size) == WF_OK && wf_model_parse(&m, "fuzz.wf", text) == WF_OK) {
        fuzz_model_roundtrip(&m);
        struct wf_graph g;
        if (wf_graph_build(&g, &m, 1) == WF_OK) wf_graph_free(&g);
        struct wf_program p;
        if (wf_program_compile(&p, &m, 3, 1) == WF_OK) wf_program_free(&p);
        wf_model_free(&m);
    }
    free(text);
    wf_error_clear();
    return 0;
}
