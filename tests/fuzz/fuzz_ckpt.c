/*
 * fuzz: checkpoints as `weft eval` reads them (tensor and exec layers, and
 * the model text inside). The input is a checkpoint file's bytes, opened
 * with wf_ckpt_eval_init (checkpoint.h): safetensors header and offsets,
 * metadata, the embedded model compiled at a small batch, every parameter
 * checked against the model; no dataset. Beyond "no crash": when it
 * accepts, the parameters fit in the file (the tensors tile the data block,
 * so their floats cannot outnumber its bytes) and each loads.
 * Seeds: tests/fuzz/corpus/fuzz_ckpt/ (make_corpus.c writes them).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/checkpoint.h"
#include "weft/core.h"
#include "weft/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct wf_ckpt_eval ce;
    if (wf_ckpt_eval_init(&ce, "fuzz.safetensors", data, size, 2) == WF_OK) {
        const struct wf_program *p = &ce.prog;
        if (p->n_param_floats < 0 || (uint64_t)p->n_param_floats > size / sizeof(float)) abort();
        float *params = malloc(sizeof(float) * (size_t)p->n_param_floats + 1);
        if (!params) abort();
        for (int i = 0; i < p->g.n_params; i++) {
            const struct wf_value *v = &p->g.v[p->g.params[i]];
            if (wf_load_param(&ce.f, v->name, v, params + p->offset[p->g.params[i]]) != WF_OK) abort();
        }
        free(params);
        wf_ckpt_eval_free(&ce);
    }
    wf_error_clear();
    return 0;
}
