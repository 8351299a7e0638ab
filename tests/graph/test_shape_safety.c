/*
 * graph + compile + exec: hostile model files. One case per class of
 * attack on sizes and shapes — byte sizes and element counts that wrap,
 * parameters too large to index, ops given tensors of the wrong rank or
 * dtype, dimensions and slices out of range, attributes and constants out
 * of range or not finite, a plan larger than the machine, a fan-out past
 * the autodiff's limit. Each must be refused with its exact message (file,
 * line, column, and the layer where there is one), never crash; CI runs
 * this under ASan and UBSan.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/compile.h"
#include "weft/core.h"
#include "weft/exec.h"
#include "weft/model.h"

#define PATH "hostile.wf"
#define BATCH 4

/* Parses text, builds its graph (B = BATCH) and compiles its training
 * program, stopping at the first error; returns that status (WF_OK if all
 * three accepted the model). */
static int first_error(const char *text) {
    struct wf_model m;
    wf_error_clear();
    int rc = wf_model_parse(&m, PATH, text);
    if (rc < 0) return rc;
    struct wf_graph g;
    rc = wf_graph_build(&g, &m, BATCH);
    if (rc == WF_OK) {
        wf_graph_free(&g);
        struct wf_program p;
        rc = wf_program_compile(&p, &m, BATCH, 1);
        if (rc == WF_OK) wf_program_free(&p);
    }
    wf_model_free(&m);
    return rc;
}

/* refused with status and exactly msg */
static void refused(const char *what, const char *text, int status, const char *msg) {
    int rc = first_error(text);
    CHECKF(rc == status && !strcmp(wf_errmsg(), msg), "%s:\n  want %d '%s'\n  got  %d '%s'", what, status, msg, rc,
           rc < 0 ? wf_errmsg() : "(accepted)");
}

/* refused with status and a message starting with prefix (where the rest of it is not yet right: see the note) */
static void refused_prefix(const char *what, const char *text, int status, const char *prefix) {
    int rc = first_error(text);
    CHECKF(rc == status && !strncmp(wf_errmsg(), prefix, strlen(prefix)), "%s:\n  want %d '%s...'\n  got  %d '%s'",
           what, status, prefix, rc, rc < 0 ? wf_errmsg() : "(accepted)");
}

#define SHAPE WF_ERR_SHAPE
#define PARSE WF_ERR_PARSE

static void sizes_that_wrap(void) {
    /* 2^62 * 4 elements: 2^66 bytes, which wraps a size_t to 0 */
    refused("param bytes wrap", "input x : f32[B, 4]\nparam p : f32[4611686018427387904, 4]\noutput x\n", SHAPE,
            PATH ":2:1: 'p' is too large: at most 2147483647 elements per tensor");
    /* 3037000500^2 > 2^63: the element count itself wraps an int64 */
    refused("param elements wrap", "input x : f32[B, 4]\nparam p : f32[3037000500, 3037000500]\noutput x\n", SHAPE,
            PATH ":2:1: 'p' is too large: at most 2147483647 elements per tensor");
    refused("param of 2^31 elements", "input x : f32[B, 4]\nparam p : f32[2, 1073741824]\noutput x\n", SHAPE,
            PATH ":2:1: 'p' is too large: at most 2147483647 elements per tensor");
    refused("param of 2^63-1 elements", "input x : f32[B, 4]\nparam p : f32[9223372036854775807]\noutput x\n", SHAPE,
            PATH ":2:1: 'p' is too large: at most 2147483647 elements per tensor");
    refused("dimension past int64", "input x : f32[B, 4]\nparam p : f32[9223372036854775808]\noutput x\n", PARSE,
            PATH ":2:15: expected dimension (positive integer or B), got '9223372036854775808'");
    /* the batch makes it too large: 4 * 2^29 * 2 > 2^31 - 1 */
    refused("input too large once B is bound", "input x : f32[B, 536870912, 2]\noutput x\n", SHAPE,
            PATH ":1:1: 'x' is too large: at most 2147483647 elements per tensor");
    refused("7 dimensions", "input x : f32[B, 1, 1, 1, 1, 1, 1]\noutput x\n", PARSE,
            PATH ":1:1: 'x' has 7 dimensions, at most 6 are supported");
}

static void parameters_too_large(void) {
    refused("linear weight too large", "input x : f32[B, 4096]\nfc = linear(x, out=2147483647)\noutput fc\n", SHAPE,
            PATH ":2:1: layer 'fc' (linear): fc.weight would be [2147483647, 4096]: dimensions must be positive and "
                 "hold at most 2147483647 elements");
    refused("linear output too large", "input x : f32[B, 3]\nfc = linear(x, out=600000000)\noutput fc\n", SHAPE,
            PATH ":2:1: layer 'fc' (linear): the output would be [4, 600000000]: dimensions must be positive and hold "
                 "at most 2147483647 elements");
    refused("conv2d weight too large", "input x : f32[B, 1, 4, 4]\nc = conv2d(x, out=2147483647, kernel=3)\noutput c\n",
            SHAPE,
            PATH ":2:1: layer 'c' (conv2d): c.weight would be [2147483647, 1, 3, 3]: dimensions must be positive and "
                 "hold at most 2147483647 elements");
    refused("conv2d padding makes the output too large",
            "input x : f32[B, 1, 4, 4]\nc = conv2d(x, out=2, kernel=3, pad=2147483647)\noutput c\n", SHAPE,
            PATH ":2:1: layer 'c' (conv2d): the padded input must fit 2^31 (pad 2147483647)");
    /* found by review: stride and pad such that the kernels' int arithmetic would overflow */
    refused("conv2d padding overflows the kernels' int sizes",
            "input x : f32[B, 1, 2, 2]\nc = conv2d(x, out=1, kernel=1, stride=2147483647, pad=1073741824)\noutput c\n",
            SHAPE, PATH ":2:1: layer 'c' (conv2d): the padded input must fit 2^31 (pad 1073741824)");
    refused("maxpool2d padding overflows the kernels' int sizes",
            "input x : f32[B, 1, 2, 2]\nc = maxpool2d(x, kernel=2147483647, stride=1, pad=1073741823)\noutput c\n",
            SHAPE, PATH ":2:1: layer 'c' (maxpool2d): the padded input must fit 2^31 (pad 1073741823)");
    refused("embedding table too large", "input i : i32[B, 4]\ne = embedding(i, vocab=2147483647, dim=2)\noutput e\n",
            SHAPE,
            PATH ":2:1: layer 'e' (embedding): e.weight would be [2147483647, 2]: dimensions must be positive and hold "
                 "at most 2147483647 elements");
}

static void wrong_ranks_and_dtypes(void) {
    refused("conv2d of a 2-d tensor", "input x : f32[B, 3]\nc = conv2d(x, out=2, kernel=3)\noutput c\n", SHAPE,
            PATH ":2:1: layer 'c' (conv2d): argument 1 'x' must have 4 dimensions, got f32[4, 3]");
    refused("maxpool2d of a 3-d tensor", "input x : f32[B, 3, 3]\np = maxpool2d(x, kernel=2)\noutput p\n", SHAPE,
            PATH ":2:1: layer 'p' (maxpool2d): argument 1 'x' must have 4 dimensions, got f32[4, 3, 3]");
    refused("softmax of a scalar", "input x : f32[B, 3]\ns = sum(x)\np = softmax(s)\noutput p\n", SHAPE,
            PATH ":3:1: layer 'p' (softmax): argument 1 's' must have 1 to 6 dimensions, got f32[]");
    refused("log_softmax of a scalar", "input x : f32[B, 3]\ns = sum(x)\np = log_softmax(s)\noutput p\n", SHAPE,
            PATH ":3:1: layer 'p' (log_softmax): argument 1 's' must have 1 to 6 dimensions, got f32[]");
    refused("matmul of a 1-d tensor", "input v : f32[3]\ninput w : f32[3, 2]\nm = matmul(v, w)\noutput m\n", SHAPE,
            PATH ":3:1: layer 'm' (matmul): argument 1 'v' must have 2 to 6 dimensions, got f32[3]");
    refused("matmul by a 1-d tensor", "input x : f32[B, 3]\ninput w : f32[3]\nm = matmul(x, w)\noutput m\n", SHAPE,
            PATH ":3:1: layer 'm' (matmul): argument 2 'w' must have 2 to 6 dimensions, got f32[3]");
    refused("transpose of a 1-d tensor", "input v : f32[3]\nt = transpose(v, dim0=0, dim1=0)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (transpose): argument 1 'v' must have 2 to 6 dimensions, got f32[3]");
    refused("slice of a scalar", "input x : f32[B, 3]\ns = sum(x)\nt = slice(s, axis=0, start=0, len=1)\noutput t\n",
            SHAPE, PATH ":3:1: layer 't' (slice): argument 1 's' must have 1 to 6 dimensions, got f32[]");
    refused("concat of scalars", "input x : f32[B, 3]\ns = sum(x)\nt = concat(s, s, axis=0)\noutput t\n", SHAPE,
            PATH ":3:1: layer 't' (concat): argument 1 's' must have 1 to 6 dimensions, got f32[]");
    refused("layernorm of a scalar", "input x : f32[B, 3]\ns = sum(x)\nl = layernorm(s)\noutput l\n", SHAPE,
            PATH ":3:1: layer 'l' (layernorm): argument 1 's' must have 1 to 6 dimensions, got f32[]");
    refused("embedding of f32 ids", "input x : f32[B, 3]\ne = embedding(x, vocab=10, dim=3)\noutput e\n", SHAPE,
            PATH ":2:1: layer 'e' (embedding): argument 1 'x' must be i32, got f32[4, 3]");
    refused("cross_entropy with f32 labels",
            "input x : f32[B, 3]\ninput y : f32[B]\nl = cross_entropy(x, y)\noutput l\n", SHAPE,
            PATH ":3:1: layer 'l' (cross_entropy): argument 2 'y' must be i32, got f32[4]");
    refused("cross_entropy with a label per column",
            "input x : f32[B, 3]\ninput y : i32[B, 2]\nl = cross_entropy(x, y)\noutput l\n", SHAPE,
            PATH ":3:1: layer 'l' (cross_entropy): labels i32[4, 2] do not match logits f32[4, 3] (want one label per "
                 "row)");
    refused("accuracy with f32 labels", "input x : f32[B, 3]\ninput y : f32[B]\na = accuracy(x, y)\noutput a\n", SHAPE,
            PATH ":3:1: layer 'a' (accuracy): argument 2 'y' must be i32, got f32[4]");
    refused("mse of different shapes", "input x : f32[B, 3]\ninput t : f32[B, 5]\nm = mse(x, t)\noutput m\n", SHAPE,
            PATH ":3:1: layer 'm' (mse): arguments must have the same shape, got f32[4, 3] and f32[4, 5]");
    refused("relu of i32", "input y : i32[B]\nr = relu(y)\noutput r\n", SHAPE,
            PATH ":2:1: layer 'r' (relu): argument 1 'y' must be f32, got i32[4]");
    refused("add of a tensor to a scalar", "input x : f32[B, 3]\ns = sum(x)\na = add(s, x)\noutput a\n", SHAPE,
            PATH ":3:1: layer 'a' (add): second argument f32[4, 3] must match the trailing dimensions of f32[]");
}

static void dimensions_out_of_range(void) {
    refused("transpose of a dim with itself", "input x : f32[B, 3]\nt = transpose(x, dim0=1, dim1=1)\noutput t\n",
            SHAPE, PATH ":2:1: layer 't' (transpose): dim0 and dim1 are the same dimension (1) of f32[4, 3]");
    refused("transpose of a dim with itself, counted from the end",
            "input x : f32[B, 3]\nt = transpose(x, dim0=1, dim1=-1)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (transpose): dim0 and dim1 are the same dimension (1) of f32[4, 3]");
    refused("transpose of dims out of range",
            "input x : f32[B, 3]\nt = transpose(x, dim0=2147483647, dim1=-2147483647)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (transpose): dims 2147483647, -2147483647 out of range for f32[4, 3]");
    refused("slice whose start + len overflows",
            "input x : f32[B, 3]\nt = slice(x, axis=1, start=2147483647, len=2147483647)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (slice): slice [2147483647, 4294967294) outside axis 1 of f32[4, 3]");
    refused("slice past the end", "input x : f32[B, 3]\nt = slice(x, axis=1, start=2, len=2)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (slice): slice [2, 4) outside axis 1 of f32[4, 3]");
    refused("slice before the start", "input x : f32[B, 3]\nt = slice(x, axis=1, start=-1, len=1)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (slice): slice [-1, 0) outside axis 1 of f32[4, 3]");
    refused("slice of every element and more",
            "input x : f32[B, 3]\nt = slice(x, axis=1, start=0, len=2147483647)\noutput t\n", SHAPE,
            PATH ":2:1: layer 't' (slice): slice [0, 2147483647) outside axis 1 of f32[4, 3]");
    refused("slice on an axis out of range", "input x : f32[B, 3]\nt = slice(x, axis=5, start=0, len=1)\noutput t\n",
            SHAPE, PATH ":2:1: layer 't' (slice): axis 5 out of range");
    refused("sum on an axis out of range", "input x : f32[B, 3]\ns = sum(x, axis=-2147483647)\noutput s\n", SHAPE,
            PATH ":2:1: layer 's' (sum): axis -2147483647 out of range");
    refused("concat on an axis out of range", "input x : f32[B, 3]\nc = concat(x, x, axis=2)\noutput c\n", SHAPE,
            PATH ":2:1: layer 'c' (concat): axis 2 out of range");
    refused("reshape to a product past int64",
            "input x : f32[B, 3]\nr = reshape(x, shape=[2147483647, 2147483647, 2147483647])\noutput r\n", SHAPE,
            PATH ":2:1: layer 'r' (reshape): cannot reshape f32[4, 3] (12 elements) to more than 9223372036854775807 "
                 "elements");
    refused("reshape to another count", "input x : f32[B, 3]\nr = reshape(x, shape=[B, 4])\noutput r\n", SHAPE,
            PATH ":2:1: layer 'r' (reshape): cannot reshape f32[4, 3] (12 elements) to 16 elements");
    refused("reshape to a zero dimension", "input x : f32[B, 3]\nr = reshape(x, shape=[0, 12])\noutput r\n", PARSE,
            PATH ":2:16: attribute 'shape': dimension 1 must be in [1, 2147483647]");
    refused("reshape to 7 dimensions", "input x : f32[B, 3]\nr = reshape(x, shape=[B, 3, 1, 1, 1, 1, 1])\noutput r\n",
            PARSE, PATH ":2:16: attribute 'shape' expects a list of 1 to 6 dimensions");
    refused("conv2d kernel larger than its input",
            "input x : f32[B, 1, 4, 4]\nc = conv2d(x, out=2, kernel=9)\noutput c\n", SHAPE,
            PATH ":2:1: layer 'c' (conv2d): kernel 9 does not fit input f32[4, 1, 4, 4] with pad 0");
    refused("conv2d stride 0", "input x : f32[B, 1, 4, 4]\nc = conv2d(x, out=2, kernel=3, stride=0)\noutput c\n", SHAPE,
            PATH ":2:1: layer 'c' (conv2d): out, kernel, stride must be > 0, pad >= 0");
    refused("maxpool2d kernel 0", "input x : f32[B, 1, 4, 4]\np = maxpool2d(x, kernel=0)\noutput p\n", SHAPE,
            PATH ":2:1: layer 'p' (maxpool2d): need kernel, stride > 0 and 0 <= pad <= kernel/2");
}

static void attributes_out_of_range(void) {
    refused("int attribute 2^31", "input x : f32[B, 3]\nfc = linear(x, out=2147483648)\noutput fc\n", PARSE,
            PATH ":2:16: attribute 'out' = 2147483648 is out of range (|value| <= 2147483647)");
    refused("int attribute -2^63", "input x : f32[B, 3]\nfc = linear(x, out=-9223372036854775808)\noutput fc\n", PARSE,
            PATH ":2:16: attribute 'out' = -9223372036854775808 is out of range (|value| <= 2147483647)");
    refused("int attribute -2^31", "input x : f32[B, 3]\nt = slice(x, axis=1, start=-2147483648, len=1)\noutput t\n",
            PARSE, PATH ":2:22: attribute 'start' = -2147483648 is out of range (|value| <= 2147483647)");
    refused("int attribute past int64", "input x : f32[B, 3]\nfc = linear(x, out=99999999999999999999)\noutput fc\n",
            PARSE, PATH ":2:20: expected integer in 64-bit range, got '99999999999999999999'");
    refused("negative linear width", "input x : f32[B, 3]\nfc = linear(x, out=-1)\noutput fc\n", SHAPE,
            PATH ":2:1: layer 'fc' (linear): out must be positive, got -1");
    refused("dropout p = nan", "input x : f32[B, 3]\nd = dropout(x, p=nan)\noutput d\n", PARSE,
            PATH ":2:16: attribute 'p' must be finite");
    refused("dropout p = inf", "input x : f32[B, 3]\nd = dropout(x, p=inf)\noutput d\n", PARSE,
            PATH ":2:16: attribute 'p' must be finite");
    refused("dropout p = -inf", "input x : f32[B, 3]\nd = dropout(x, p=-inf)\noutput d\n", PARSE,
            PATH ":2:16: attribute 'p' must be finite");
    refused("dropout p = 1e308", "input x : f32[B, 3]\nd = dropout(x, p=1e308)\noutput d\n", SHAPE,
            PATH ":2:1: layer 'd' (dropout): p must be in [0, 1), got 1e+308");
    refused("layernorm eps = nan", "input x : f32[B, 3]\nl = layernorm(x, eps=nan)\noutput l\n", PARSE,
            PATH ":2:18: attribute 'eps' must be finite");
    refused("embedding vocab 0", "input i : i32[B, 4]\ne = embedding(i, vocab=0, dim=2)\noutput e\n", SHAPE,
            PATH ":2:1: layer 'e' (embedding): vocab and dim must be positive");
}

static void constants_out_of_range(void) {
    refused("constant 1e39", "input x : f32[B, 3]\nm = mul(x, 1e39)\noutput m\n", PARSE,
            PATH ":2:12: constant '1e39' is not a finite f32 number");
    refused("constant -3.5e38", "input x : f32[B, 3]\nm = mul(x, -3.5e38)\noutput m\n", PARSE,
            PATH ":2:12: constant '-3.5e38' is not a finite f32 number");
    refused("constant nan", "input x : f32[B, 3]\nm = mul(x, nan)\noutput m\n", PARSE,
            PATH ":2:12: constant 'nan' is not a finite f32 number");
    refused("constant inf", "input x : f32[B, 3]\nm = mul(x, inf)\noutput m\n", PARSE,
            PATH ":2:12: constant 'inf' is not a finite f32 number");
    refused("constant 1e400", "input x : f32[B, 3]\nm = mul(x, 1e400)\noutput m\n", PARSE,
            PATH ":2:12: expected number in the range of a double, got '1e400'");
    refused("integer constant past int64", "input x : f32[B, 3]\nm = mul(x, 99999999999999999999999)\noutput m\n",
            PARSE, PATH ":2:12: expected integer in 64-bit range, got '99999999999999999999999'");
}

/* the machine's memory as wf_mem_check sees it (core.h) without an override: physical memory, or a lower ulimit -v */
static double machine_bytes(const char **kind) {
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    double limit = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
    *kind = "physical memory";
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (limit == 0 || (double)rl.rlim_cur < limit)) {
        limit = (double)rl.rlim_cur;
        *kind = "address-space limit (ulimit -v)";
    }
    return limit;
}

/* 1000 tanh layers of 2 x 10^9 floats, each kept for the backward: eight
 * terabytes of activations, far past any machine. wf_exec_init refuses them
 * from the plan, before it allocates or touches anything. */
static void plan_larger_than_memory(void) {
    enum { LAYERS = 1000 };
    static char text[LAYERS * 32 + 256];
    size_t k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 1000000000, 1]\nparam s : f32[1]\nt0 = mul(x, s)\n");
    for (int i = 1; i <= LAYERS; i++)
        wf_appendf(text, sizeof text, &k, "t%d = tanh(t%d)\n", i, i - 1);
    wf_appendf(text, sizeof text, &k, "loss = sum(t%d)\noutput loss\n", LAYERS);
    struct wf_model m;
    int rc = wf_model_parse(&m, PATH, text);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc) return;
    struct wf_program p;
    rc = wf_program_compile(&p, &m, 2, 1);
    CHECKF(rc == WF_OK, "the plan itself is fine: %s", wf_errmsg());
    if (rc) {
        wf_model_free(&m);
        return;
    }
    size_t arena = p.arena_bytes;
    wf_program_free(&p);
    CHECKF(arena > (size_t)4e12, "planned %zu bytes", arena);
    const char *kind;
    double limit = machine_bytes(&kind);
    /* the refusal names the size, the bound, and the largest planned values (ties: the first) */
    char want[512], need[32], have[32];
    wf_fmt_bytes(need, sizeof need, (double)arena, 0);
    wf_fmt_bytes(have, sizeof have, limit, 0);
    snprintf(want, sizeof want, "%s: activations need %s, more than this machine's %s of %s; largest values: %s", PATH,
             need, kind, have,
             "x f32[2, 1000000000, 1] 8 GB, t0 f32[2, 1000000000, 1] 8 GB, t1 f32[2, 1000000000, 1] 8 GB");
    long rss0 = wf_peak_rss_kb();
    double t0 = wf_now();
    struct wf_exec e;
    float param = 1;
    rc = wf_exec_init(&e, &m, 2, 1, &param, &param);
    double dt = wf_now() - t0;
    long rss1 = wf_peak_rss_kb();
    CHECKF(rc == WF_ERR_NOMEM && !strcmp(wf_errmsg(), want), "want '%s', got %d '%s'", want, rc,
           rc < 0 ? wf_errmsg() : "(accepted)");
    CHECKF(strstr(wf_errmsg(), " TB,") != NULL, "the message names no TB: %s", wf_errmsg());
    CHECKF(dt < 5.0, "refused after %.2f s", dt);
    CHECKF(rss1 - rss0 < 256 * 1024, "peak RSS grew %ld kB before the refusal", rss1 - rss0);
    printf("refused in %.3f s: %s\n", dt, wf_errmsg());
    if (rc == WF_OK) wf_exec_free(&e);
    wf_model_free(&m);
}

/* n readers of h, summed into the loss (each reader uses h `uses` times) */
static void fan_out_model(char *text, size_t cap, int n, const char *reader) {
    size_t k = 0;
    wf_appendf(text, cap, &k, "input x : f32[B, 3]\nh = linear(x, out=3)\n");
    for (int i = 0; i < n; i++)
        wf_appendf(text, cap, &k, "a%d = %s\n", i, reader);
    wf_appendf(text, cap, &k, "s1 = add(a0, a1)\n");
    for (int i = 2; i < n; i++)
        wf_appendf(text, cap, &k, "s%d = add(s%d, a%d)\n", i, i - 1, i);
    wf_appendf(text, cap, &k, "loss = sum(s%d)\noutput loss\n", n - 1);
}

static void fan_out(void) {
    char text[4096];
    fan_out_model(text, sizeof text, 16, "relu(h)");
    CHECKF(first_error(text) == WF_OK, "16 readers: %s", wf_errmsg());
    fan_out_model(text, sizeof text, 17, "relu(h)");
    refused("17 readers of a layer", text, WF_ERR_INVALID, PATH ":2:1: 'h' is used by more than 16 layers");
    /* 9 layers that read h twice each: 18 gradient contributions. The message
     * counts them as layers (listed in the report), so only its start is checked. */
    fan_out_model(text, sizeof text, 9, "mul(h, h)");
    refused_prefix("9 readers of a layer, twice each", text, WF_ERR_INVALID, PATH ":2:1: 'h' is used by more than 16");
    /* a parameter read by 17 layers */
    size_t k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 3]\nparam p : f32[3]\n");
    for (int i = 0; i < 17; i++)
        wf_appendf(text, sizeof text, &k, "a%d = mul(x, p)\n", i);
    wf_appendf(text, sizeof text, &k, "s1 = add(a0, a1)\n");
    for (int i = 2; i < 17; i++)
        wf_appendf(text, sizeof text, &k, "s%d = add(s%d, a%d)\n", i, i - 1, i);
    wf_appendf(text, sizeof text, &k, "loss = sum(s16)\noutput loss\n");
    refused("17 readers of a parameter", text, WF_ERR_INVALID, PATH ":2:1: 'p' is used by more than 16 layers");
}

static void too_many(void) {
    static char text[16384];
    size_t k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 3]\n");
    for (int i = 0; i < 130; i++)
        wf_appendf(text, sizeof text, &k, "l%d = linear(x, out=1)\n", i);
    wf_appendf(text, sizeof text, &k, "output l0\n");
    refused("258 parameters made by layers", text, SHAPE,
            PATH ":130:1: layer 'l128' (linear): too many parameters (at most 256)");
    k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 3]\n");
    for (int i = 0; i < 257; i++)
        wf_appendf(text, sizeof text, &k, "param p%d : f32[1]\n", i);
    wf_appendf(text, sizeof text, &k, "output x\n");
    /* the message names neither the parameter nor the limit (listed in the report) */
    refused_prefix("257 declared parameters", text, WF_ERR_INVALID, PATH ":258:1: too many parameters");
    k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 3]\noutput x");
    for (int i = 0; i < 16; i++)
        wf_appendf(text, sizeof text, &k, ", x");
    wf_appendf(text, sizeof text, &k, "\n");
    refused("17 outputs", text, PARSE, PATH ":2:1: too many outputs (at most 16)");
    k = 0;
    wf_appendf(text, sizeof text, &k, "input x : f32[B, 3]\nc = concat(x");
    for (int i = 0; i < 16; i++)
        wf_appendf(text, sizeof text, &k, ", x");
    wf_appendf(text, sizeof text, &k, ", axis=1)\noutput c\n");
    refused("concat of 17 tensors", text, PARSE, PATH ":2:5: concat takes 2 to 8 tensor arguments, got 17");
}

int main(void) {
    sizes_that_wrap();
    parameters_too_large();
    wrong_ranks_and_dtypes();
    dimensions_out_of_range();
    attributes_out_of_range();
    constants_out_of_range();
    plan_larger_than_memory();
    fan_out();
    too_many();
    return wf_test_done("test_shape_safety");
}
