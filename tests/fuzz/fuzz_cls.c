/*
 * fuzz: class files (data layer, docs/formats.md "Class labels") as the
 * token store reads them for labels = class. The input is a class file's
 * bytes, decoded by wf_cls_decode twice: on its own (only the file's
 * self-consistency) and against the seeds' dataset (12 sequences, 5
 * classes, the token digest of FUZZ_CLS_SHA_BYTE). Beyond "no crash": when it
 * accepts, the file is exactly the header and 4 bytes a sequence, every id
 * is below the class count, the encoder gives back the very bytes, and
 * the expectations it was given hold.
 * Seeds: tests/fuzz/corpus/fuzz_cls/ (make_corpus.c writes them).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"
#include "weft/loader.h"

/* the seeds' dataset; the token-file digest is bytes 0x00, 0x11, 0x22, ... */
#define FUZZ_CLS_SHA_BYTE(i) ((uint8_t)(0x11 * (i)))
#define FUZZ_CLS_N_SEQ 12
#define FUZZ_CLS_N_CLASSES 5

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint32_t c = 0;
    uint64_t n = 0;
    int32_t *ids = NULL;
    if (wf_cls_decode("fuzz.cls", data, size, NULL, &c, &n, &ids) == WF_OK) {
        if (c == 0 || n > (size - WF_CLS_HEADER_BYTES) / 4 || size != WF_CLS_HEADER_BYTES + 4 * n || !ids) abort();
        for (uint64_t k = 0; k < n; k++)
            if (ids[k] < 0 || (uint32_t)ids[k] >= c) abort();
        void *buf;
        size_t len;
        if (wf_cls_encode(data + 24, c, ids, n, &buf, &len) != WF_OK || len != size || memcmp(buf, data, size) != 0)
            abort();
        wf_free(buf);
        wf_free(ids);
    }
    wf_error_clear();
    uint8_t sha[32];
    for (int i = 0; i < 32; i++)
        sha[i] = FUZZ_CLS_SHA_BYTE(i);
    struct wf_cls_want want = {.n_seq = FUZZ_CLS_N_SEQ,
                               .tok_sha = sha,
                               .tok_path = "fuzz.tok",
                               .n_classes = FUZZ_CLS_N_CLASSES,
                               .classes_path = "classes.txt"};
    if (wf_cls_decode("fuzz.cls", data, size, &want, &c, &n, NULL) == WF_OK &&
        (c != FUZZ_CLS_N_CLASSES || n != FUZZ_CLS_N_SEQ || memcmp(data + 24, sha, 32) != 0))
        abort();
    wf_error_clear();
    return 0;
}
