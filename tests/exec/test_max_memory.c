/*
 * core + exec: the memory bound (issue 18, "limits that fail early and
 * clearly"). A model of 314 GB of parameters is refused from its plan in
 * well under a second, naming the size and its largest parameters; the
 * override (--max-memory, WEFT_MAX_MEMORY: wf_mem_set_limit) replaces
 * physical memory as the bound and is named in the refusal, with the
 * largest planned values or parameters; a lower ulimit -v still wins;
 * malformed sizes are refused naming the option and the text.
 */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/model.h"

#define WHAT "the parameters, their gradients and optimizer state"

/* the machine's memory as wf_mem_check sees it without an override: physical memory, or a lower ulimit -v */
static double machine_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    double limit = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (limit == 0 || (double)rl.rlim_cur < limit))
        limit = (double)rl.rlim_cur;
    return limit;
}

static void contains(const char *what, const char *msg, const char *part) {
    CHECKF(strstr(msg, part) != NULL, "%s: '%s' is not in '%s'", what, part, msg);
}

/* 36 linear layers of 2^31 - 2^16 weights each (8.59 GB) and a head: 314 GB of
 * parameters. Compiling the program and refusing the
 * parameters (with their gradients and Adam's two slots, 1.26 TB) touches
 * none of it. */
static void model_of_314_gb(void) {
    enum { LAYERS = 36 };
    static char text[LAYERS * 64 + 256];
    size_t k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 65536]\nl0 = linear(x, out=32767)\n");
    for (int i = 1; i < LAYERS; i++)
        wf_appendf(text, sizeof text, &k, "l%d = linear(l%d, out=%d)\n", i, i - 1, i % 2 ? 65535 : 32767);
    wf_appendf(text, sizeof text, &k, "head = linear(l%d, out=18700)\nloss = mean(head)\noutput loss\n", LAYERS - 1);
    struct wf_model m;
    int rc = wf_model_parse(&m, "big.wf", text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    wf_mem_set_limit(0, NULL);
    long rss0 = wf_peak_rss_kb();
    double t0 = wf_now();
    struct wf_exec e;
    rc = wf_exec_init(&e, &m, 2, 1, NULL, NULL);
    CHECKF(rc == WF_OK, "the activations are small: %s", wf_errmsg());
    if (rc) {
        wf_model_free(&m);
        return;
    }
    double pbytes = 4.0 * (double)e.prog.n_param_floats;
    CHECKF(pbytes > 313e9 && pbytes < 315e9, "%.4g bytes of parameters", pbytes);
    size_t bytes = (size_t)e.prog.n_param_floats * sizeof(float) * 4;
    rc = wf_mem_check_params(&e.prog, "big.wf", WHAT, bytes);
    double dt = wf_now() - t0;
    long rss1 = wf_peak_rss_kb();
    if ((double)bytes <= machine_bytes()) {
        printf("skipped: this machine holds %.3g bytes\n", machine_bytes());
    } else {
        char need[32], want[256];
        wf_fmt_bytes(need, sizeof need, (double)bytes, 0);
        snprintf(want, sizeof want, "big.wf: " WHAT " need %s, more than this machine's ", need);
        CHECKF(rc == WF_ERR_NOMEM, "got %d '%s'", rc, rc < 0 ? wf_errmsg() : "(accepted)");
        contains("the size", wf_errmsg(), want);
        contains("the largest parameters", wf_errmsg(),
                 "; largest parameters: l0.weight f32[32767, 65536] 8.59 GB, l1.weight f32[65535, 32767] 8.59 GB, "
                 "l2.weight f32[32767, 65535] 8.59 GB");
        CHECKF(dt < 5.0, "compiled and refused after %.2f s", dt);
        CHECKF(rss1 - rss0 < 256 * 1024, "peak RSS grew %ld kB before the refusal", rss1 - rss0);
        printf("314 GB model compiled and refused in %.3f s: %s\n", dt, wf_errmsg());
    }
    wf_exec_free(&e);
    wf_model_free(&m);
}

#define SMALL                                                                                                          \
    "input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=256)\nh1 = relu(fc1)\nfc2 = linear(h1, out=10)\n"    \
    "loss = cross_entropy(fc2, y)\noutput loss\n"

/* The override is the bound, lower than any machine: the activations, then the parameters, are
 * refused naming it (as the command line names it) and the largest tensors, in binary units. */
static void override_refuses_a_small_model(void) {
    struct wf_model m;
    int rc = wf_model_parse(&m, "small.wf", SMALL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    struct wf_program p;
    rc = wf_program_compile(&p, &m, 32, 1);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) {
        wf_model_free(&m);
        return;
    }
    char need[32], want[1024];
    wf_fmt_bytes(need, sizeof need, (double)p.arena_bytes, 1);
    wf_program_free(&p);

    wf_mem_set_limit(1024, "--max-memory");
    CHECK(wf_mem_limit() == 1024);
    snprintf(
        want, sizeof want,
        "small.wf: activations need %s, more than the --max-memory of 1 KiB; largest values: x f32[32, 784] 98 KiB, "
        "fc1 f32[32, 256] 32 KiB, h1 f32[32, 256] 32 KiB",
        need);
    struct wf_exec e;
    double t0 = wf_now();
    rc = wf_exec_init(&e, &m, 32, 1, NULL, NULL);
    CHECKF(rc == WF_ERR_NOMEM && !strcmp(wf_errmsg(), want), "\n  want '%s'\n  got  %d '%s'", want, rc,
           rc < 0 ? wf_errmsg() : "(accepted)");
    CHECKF(wf_now() - t0 < 5.0, "refused after %.2f s", wf_now() - t0);
    if (rc == WF_OK) wf_exec_free(&e);

    /* 1 MiB holds the activations, not the parameters with their gradients and one slot */
    wf_mem_set_limit(1 << 20, "--max-memory (WEFT_MAX_MEMORY)");
    rc = wf_exec_init(&e, &m, 32, 1, NULL, NULL);
    CHECKF(rc == WF_OK, "1 MiB holds the activations: %s", wf_errmsg());
    if (rc == WF_OK) {
        size_t bytes = (size_t)e.prog.n_param_floats * sizeof(float) * 3;
        wf_fmt_bytes(need, sizeof need, (double)bytes, 1);
        snprintf(want, sizeof want,
                 "small.wf: " WHAT " need %s, more than the --max-memory (WEFT_MAX_MEMORY) of 1 MiB; largest "
                 "parameters: fc1.weight f32[256, 784] 784 KiB, fc2.weight f32[10, 256] 10 KiB, fc1.bias f32[256] "
                 "1 KiB",
                 need);
        rc = wf_mem_check_params(&e.prog, "small.wf", WHAT, bytes);
        CHECKF(rc == WF_ERR_NOMEM && !strcmp(wf_errmsg(), want), "\n  want '%s'\n  got  %d '%s'", want, rc,
               rc < 0 ? wf_errmsg() : "(accepted)");
        printf("refused: %s\n", wf_errmsg());
        /* the override can be higher than physical memory (it replaces it), and 0 removes it */
        wf_mem_set_limit(bytes, NULL);
        CHECKF(wf_mem_check_params(&e.prog, "small.wf", WHAT, bytes) == WF_OK, "exactly the limit fits: %s",
               wf_errmsg());
        wf_mem_set_limit(0, NULL);
        CHECKF(wf_mem_check_params(&e.prog, "small.wf", WHAT, bytes) == WF_OK, "no override: %s", wf_errmsg());
        wf_exec_free(&e);
    }
    wf_model_free(&m);
}

/* An address-space limit below the override wins, and is named; one above it does not. In a child:
 * the limit stays there. */
static void ulimit_below_the_override_wins(void) {
    pid_t pid = fork();
    if (pid == 0) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_AS, &rl) < 0) _exit(2);
        /* 1.1 TB, or twice what the process maps already (a sanitizer's shadow memory) */
        rlim_t cap = (rlim_t)1 << 40;
        unsigned long long vsz_pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
            if (fscanf(f, "%llu", &vsz_pages) != 1) vsz_pages = 0;
            fclose(f);
        }
        if ((rlim_t)vsz_pages * (rlim_t)sysconf(_SC_PAGESIZE) * 2 > cap)
            cap = (rlim_t)vsz_pages * (rlim_t)sysconf(_SC_PAGESIZE) * 2;
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < cap) cap = rl.rlim_max;
        rl.rlim_cur = cap;
        if (setrlimit(RLIMIT_AS, &rl) < 0) _exit(2);
        char have[32], want[256];
        wf_fmt_bytes(have, sizeof have, (double)cap, 0);
        snprintf(want, sizeof want, "w: x need 2.25 PB, more than this machine's address-space limit (ulimit -v) of %s",
                 have);
        wf_mem_set_limit((uint64_t)1 << 52, NULL); /* 4 PiB */
        int bad = wf_mem_check("w", "x", (size_t)1 << 51) != WF_ERR_NOMEM || strcmp(wf_errmsg(), want);
        if (bad) fprintf(stderr, "want '%s'\ngot  '%s'\n", want, wf_errmsg());
        wf_mem_set_limit(1024, NULL);
        bad |= wf_mem_check("w", "x", 2048) != WF_ERR_NOMEM ||
               strcmp(wf_errmsg(), "w: x need 2 KiB, more than the --max-memory of 1 KiB");
        if (bad) fprintf(stderr, "got  '%s'\n", wf_errmsg());
        _exit(bad);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's checks failed (status %d)", st);
}

static void sizes(void) {
    static const struct {
        const char *text;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"1", 1},
        {"1048576", 1048576},
        {"1K", 1024},
        {"1k", 1024},
        {"512M", 512ull << 20},
        {"2G", 2ull << 30},
        {"2g", 2ull << 30},
        {"3T", 3ull << 40},
        {"16777215T", 16777215ull << 40},
        {"18446744073709551615", 18446744073709551615ull},
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(good); i++) {
        uint64_t b = 7;
        int rc = wf_mem_parse_size("--max-memory", good[i].text, &b);
        CHECKF(rc == WF_OK && b == good[i].bytes, "'%s': %d %llu (%s)", good[i].text, rc, (unsigned long long)b,
               rc < 0 ? wf_errmsg() : "");
    }
    static const char *const bad[] = {"", "G", "2X", "-1", "+1", " 1", "1 ", "1.5G", "2GB", "2GiB", "1KK", "0x10"};
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        uint64_t b = 7;
        char want[256];
        snprintf(want, sizeof want,
                 "WEFT_MAX_MEMORY: '%s' is not a size: want a number of bytes, optionally followed by K, M, G or T "
                 "(powers of 1024), e.g. 512M or 2G",
                 bad[i]);
        int rc = wf_mem_parse_size("WEFT_MAX_MEMORY", bad[i], &b);
        CHECKF(rc == WF_ERR_INVALID && b == 7 && !strcmp(wf_errmsg(), want), "'%s': %d '%s'", bad[i], rc, wf_errmsg());
    }
    static const char *const big[] = {"16777216T", "18446744073709551616", "99999999999999999999999G"};
    for (size_t i = 0; i < WF_ARRAY_LEN(big); i++) {
        uint64_t b = 7;
        char want[256];
        snprintf(want, sizeof want, "--max-memory: '%s' is too large: at most 2^64 - 1 bytes", big[i]);
        int rc = wf_mem_parse_size("--max-memory", big[i], &b);
        CHECKF(rc == WF_ERR_RANGE && b == 7 && !strcmp(wf_errmsg(), want), "'%s': %d '%s'", big[i], rc, wf_errmsg());
    }
    static const struct {
        double bytes;
        int binary;
        const char *text;
    } fmt[] = {
        {0, 1, "0 bytes"},     {1000, 1, "1000 bytes"},    {1024, 1, "1 KiB"},    {1536, 1, "1.5 KiB"},
        {1048575, 1, "1 MiB"}, {2147483648.0, 1, "2 GiB"}, {999, 0, "999 bytes"}, {8.59e9, 0, "8.59 GB"},
        {999999, 0, "1 MB"},   {1.26e12, 0, "1.26 TB"},
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(fmt); i++) {
        char buf[32];
        wf_fmt_bytes(buf, sizeof buf, fmt[i].bytes, fmt[i].binary);
        CHECKF(!strcmp(buf, fmt[i].text), "%.17g: want '%s', got '%s'", fmt[i].bytes, fmt[i].text, buf);
    }
}

int main(void) {
    sizes();
    model_of_314_gb();
    override_refuses_a_small_model();
    ulimit_below_the_override_wins();
    return wf_test_done("test_max_memory");
}
