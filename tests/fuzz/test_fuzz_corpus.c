/*
 * fuzz: the harnesses as unit tests, so every build (gcc, ASan/UBSan)
 * replays them without libFuzzer: each harness runs on its seed corpus
 * (tests/fuzz/corpus/<harness>/) and on deterministic mutations of it
 * (byte flips, truncations, splices). A harness that finds a bug aborts,
 * which fails this test. To add a harness: include it below under its own
 * name and add a row to `harnesses`.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "weft/core.h"

#define LLVMFuzzerTestOneInput fuzz_frame_one
#include "fuzz_frame.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_msg_one
#include "fuzz_msg.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_model_one
#include "fuzz_model.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_ckpt_one
#include "fuzz_ckpt.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_handshake_one
#include "fuzz_handshake.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_cls_one
#include "fuzz_cls.c"
#undef LLVMFuzzerTestOneInput

static const struct {
    const char *name;
    int (*run)(const uint8_t *data, size_t size);
} harnesses[] = {
    {"fuzz_frame", fuzz_frame_one},         {"fuzz_msg", fuzz_msg_one},
    {"fuzz_model", fuzz_model_one},         {"fuzz_ckpt", fuzz_ckpt_one},
    {"fuzz_handshake", fuzz_handshake_one}, {"fuzz_cls", fuzz_cls_one},
};

#define MAX_SEEDS 256

static int load_seeds(const char *name, uint8_t **seed, size_t *len) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", wf_test_src("tests/fuzz/corpus/"));
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < MAX_SEEDS) {
        if (e->d_name[0] == '.') continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *data;
        if (wf_read_file(path, &data, &len[n]) != WF_OK) continue;
        seed[n++] = (uint8_t *)data;
    }
    closedir(d);
    return n;
}

/* Runs the harness on an exact-size heap copy, so ASan sees overreads. */
static void run_exact(int (*run)(const uint8_t *, size_t), const uint8_t *p, size_t n) {
    uint8_t *c = malloc(n ? n : 1);
    if (n) memcpy(c, p, n);
    run(c, n);
    free(c);
}

static void replay(int (*run)(const uint8_t *, size_t), const char *name) {
    uint8_t *seed[MAX_SEEDS];
    size_t len[MAX_SEEDS];
    int n = load_seeds(name, seed, len);
    CHECKF(n > 0, "%s: no seed corpus in tests/fuzz/corpus/%s", name, name);
    struct wf_rng rng;
    wf_rng_init(&rng, 42, wf_hash64(name, strlen(name), 0));
    uint8_t buf[4096];
    long runs = 0;
    for (int i = 0; i < n; i++, runs++)
        run_exact(run, seed[i], len[i]);
    for (int k = 0; k < 20000; k++, runs++) {
        int i = (int)wf_rng_below(&rng, (uint32_t)n), j = (int)wf_rng_below(&rng, (uint32_t)n);
        size_t m = WF_MIN(len[i], sizeof buf);
        memcpy(buf, seed[i], m);
        switch (wf_rng_below(&rng, 3)) {
        case 0: /* flip a few bytes */
            for (uint32_t f = 0; f < 1 + wf_rng_below(&rng, 4) && m; f++)
                buf[wf_rng_below(&rng, (uint32_t)m)] ^= (uint8_t)(1 + wf_rng_below(&rng, 255));
            break;
        case 1: /* truncate */ m = m ? wf_rng_below(&rng, (uint32_t)m + 1) : 0; break;
        case 2: { /* splice the tail of another seed */
            size_t at = m ? wf_rng_below(&rng, (uint32_t)m + 1) : 0;
            size_t t = WF_MIN(len[j], sizeof buf - at);
            memcpy(buf + at, seed[j], t);
            m = at + t;
            break;
        }
        }
        run_exact(run, buf, m);
    }
    printf("%s: %d seeds, %ld inputs\n", name, n, runs);
    for (int i = 0; i < n; i++)
        wf_free(seed[i]);
}

int main(void) {
    setenv("WEFT_LOG", "error", 0); /* the harnesses' inputs are meant to make weft warn */
    for (size_t h = 0; h < WF_ARRAY_LEN(harnesses); h++)
        replay(harnesses[h].run, harnesses[h].name);
    return wf_test_done("test_fuzz_corpus");
}
