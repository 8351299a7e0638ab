/*
 * core layer: hostile text. A NUL byte or invalid UTF-8 in a model or job
 * file is an error at its line and column (wf_text_check, wf_text_read, and
 * the lexer for text that never was a file), never a silent end of file;
 * a file over the size limit is refused; valid UTF-8 passes. Checked
 * through wf_model_load too, which reads model files this way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/core.h"
#include "weft/lex.h"
#include "weft/model.h"

static void check_text(const char *text, size_t len, int want_rc, const char *want_msg) {
    wf_error_clear();
    int rc = wf_text_check("m.wf", text, len);
    CHECKF(rc == want_rc, "rc %d, want %d (%s)", rc, want_rc, wf_errmsg());
    if (want_msg) CHECKF(!strcmp(wf_errmsg(), want_msg), "got '%s', want '%s'", wf_errmsg(), want_msg);
}

static void test_check(void) {
    check_text("", 0, WF_OK, NULL);
    static const char utf8[] = "model m\n# caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\n";
    check_text(utf8, sizeof utf8 - 1, WF_OK, NULL);
    check_text("model m\ninput\0 x", 16, WF_ERR_PARSE, "m.wf:2:6: NUL byte in the text");
    check_text("\0", 1, WF_ERR_PARSE, "m.wf:1:1: NUL byte in the text");
    check_text("ab\n\xc3\xa9\0", 6, WF_ERR_PARSE, "m.wf:2:3: NUL byte in the text"); /* columns in bytes */
    check_text("a\n\nb \xff", 6, WF_ERR_PARSE, "m.wf:3:3: invalid UTF-8 (byte 0xff)");
    check_text("\x80", 1, WF_ERR_PARSE, "m.wf:1:1: invalid UTF-8 (byte 0x80)");             /* stray continuation */
    check_text("\xc0\xaf", 2, WF_ERR_PARSE, "m.wf:1:1: invalid UTF-8 (byte 0xc0)");         /* overlong '/' */
    check_text("\xe0\x80\xaf", 3, WF_ERR_PARSE, "m.wf:1:1: invalid UTF-8 (byte 0xe0)");     /* overlong */
    check_text("x\xed\xa0\x80", 4, WF_ERR_PARSE, "m.wf:1:2: invalid UTF-8 (byte 0xed)");    /* surrogate */
    check_text("\xf4\x90\x80\x80", 4, WF_ERR_PARSE, "m.wf:1:1: invalid UTF-8 (byte 0xf4)"); /* above U+10FFFF */
    check_text("\xf5\x80\x80\x80", 4, WF_ERR_PARSE, "m.wf:1:1: invalid UTF-8 (byte 0xf5)");
    check_text("ok \xe2\x82", 5, WF_ERR_PARSE, "m.wf:1:4: invalid UTF-8 (byte 0xe2)");  /* cut at the end */
    check_text("\xe2\x82\xac", 2, WF_ERR_PARSE, "m.wf:1:1: invalid UTF-8 (byte 0xe2)"); /* len cuts it */
    wf_error_clear();
    CHECK(wf_text_check(NULL, "\0", 1) == WF_ERR_PARSE && !strcmp(wf_errmsg(), "<memory>:1:1: NUL byte in the text"));
}

/* The lexer checks UTF-8 itself, for texts that did not come from a file
 * (a checkpoint's model, a job sent over the wire). */
static void check_parse(const char *text, const char *want_msg) {
    struct wf_model m;
    wf_error_clear();
    int rc = wf_model_parse(&m, "m.wf", text);
    if (!want_msg) {
        CHECKF(rc == WF_OK, "%s", wf_errmsg());
        wf_model_free(&m);
        return;
    }
    CHECKF(rc == WF_ERR_PARSE && !strcmp(wf_errmsg(), want_msg), "got '%s', want '%s'", wf_errmsg(), want_msg);
}

static void test_lexer(void) {
    check_parse("# caf\xc3\xa9\ninput x : f32[B, 4] # \xe2\x82\xac\noutput x\n", NULL);
    check_parse("# caf\xe9\ninput x : f32[B, 4]\n", "m.wf:1:6: invalid UTF-8 (byte 0xe9)");
    check_parse("input x : f32[B, 4] # \xc3\xa9 \xc3\n", "m.wf:1:26: invalid UTF-8 (byte 0xc3)");
    check_parse("input x\xc3\xa9 : f32[B, 4]\n", "m.wf:1:8: unexpected character '\xc3\xa9'");
    check_parse("input x : f32[B, 4]\n\xff", "m.wf:2:1: invalid UTF-8 (byte 0xff)");
    check_parse("input x : f32[B, 4]\nh = relu(x, s=\"ab\xc3(\")\n", "m.wf:2:18: invalid UTF-8 (byte 0xc3)");
    check_parse("input x : f32[B, 4]\x01\n", "m.wf:1:20: unexpected byte 0x01");
    /* a string keeps its UTF-8 as it is */
    struct wf_lex lx;
    wf_lex_init(&lx, "j.job", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    CHECKF(wf_lex_next(&lx) == WF_OK, "%s", wf_errmsg());
    CHECK(lx.tok.kind == WF_TOK_STRING && !strcmp(lx.tok.text, "caf\xc3\xa9 \xf0\x9f\x98\x80"));
    wf_lex_init(&lx, "j.job", "data = \"caf\xc3\xa9\xc3\"");
    lx.path_words = 1;
    int rc = WF_OK;
    for (int k = 0; k < 3 && rc == WF_OK; k++)
        rc = wf_lex_next(&lx);
    CHECKF(rc == WF_ERR_PARSE && !strcmp(wf_errmsg(), "j.job:1:14: invalid UTF-8 (byte 0xc3)"), "got '%s'",
           wf_errmsg());
}

static char tmpdir[256];

static const char *write_tmp(const char *name, const void *p, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(p, 1, n, f) == n);
        fclose(f);
    }
    return path;
}

static void test_files(void) {
    char want[1024];
    struct wf_model m;
    /* a NUL once silently ended the file here: the rest was never read */
    static const char nul[] = "model m\ninput x : f32[B, 4]\n\0input y : i32[B]\n";
    const char *p = write_tmp("nul.wf", nul, sizeof nul - 1);
    int rc = wf_model_load(&m, p);
    snprintf(want, sizeof want, "%s:3:1: NUL byte in the text", p);
    CHECKF(rc == WF_ERR_PARSE && !strcmp(wf_errmsg(), want), "got '%s'", wf_errmsg());

    static const char bad[] = "model m\ninput x : f32[B, 4]\nh = relu(x) # na\xefve\noutput h\n";
    p = write_tmp("utf8.wf", bad, sizeof bad - 1);
    rc = wf_model_load(&m, p);
    snprintf(want, sizeof want, "%s:3:17: invalid UTF-8 (byte 0xef)", p);
    CHECKF(rc == WF_ERR_PARSE && !strcmp(wf_errmsg(), want), "got '%s'", wf_errmsg());

    static const char good[] = "model m # caf\xc3\xa9\ninput x : f32[B, 4]\nh = relu(x)\noutput h\n";
    p = write_tmp("good.wf", good, sizeof good - 1);
    rc = wf_model_load(&m, p);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        CHECK(m.n == 3 && m.name && !strcmp(m.name, "m"));
        wf_model_free(&m);
    }

    char *text = (char *)1;
    size_t len = 1;
    p = write_tmp("nul.job", "model = m.wf\0", 13);
    rc = wf_text_read(p, &text, &len);
    snprintf(want, sizeof want, "%s:1:13: NUL byte in the text", p);
    CHECKF(rc == WF_ERR_PARSE && !strcmp(wf_errmsg(), want), "got '%s'", wf_errmsg());
    CHECK(text == NULL && len == 0);

    /* over the size limit: refused by size, whatever it holds (a sparse file) */
    p = write_tmp("huge.wf", "", 0);
    CHECK(truncate(p, (off_t)WF_TEXT_MAX_FILE + 1) == 0);
    rc = wf_text_read(p, &text, NULL);
    snprintf(want, sizeof want, "%s: %zu bytes, more than the %zu a model or job file may have", p,
             WF_TEXT_MAX_FILE + 1, WF_TEXT_MAX_FILE);
    CHECKF(rc == WF_ERR_RANGE && !strcmp(wf_errmsg(), want), "got '%s'", wf_errmsg());
    CHECK(text == NULL);

    snprintf(want, sizeof want, "%s/nothere.wf", tmpdir);
    CHECK(wf_text_read(want, &text, NULL) == WF_ERR_NOTFOUND && text == NULL);
}

/* A line longer than INT_MAX columns cannot be written here; a long one
 * keeps exact columns and the lexer's limits give the message. */
static void test_long(void) {
    size_t n = 1 << 20;
    char *t = malloc(n + 64);
    memset(t, ' ', n);
    strcpy(t + n, "\xff");
    char want[128];
    snprintf(want, sizeof want, "m.wf:1:%zu: invalid UTF-8 (byte 0xff)", n + 1);
    check_text(t, n + 1, WF_ERR_PARSE, want);
    check_parse(t, want);
    memset(t, 'a', 300);
    strcpy(t + 300, " = relu(x)\n");
    check_parse(t,
                "m.wf:1:1: identifier too long (more than 255 bytes): 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
    free(t);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/weft-test-hostile-text-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    test_check();
    test_lexer();
    test_files();
    test_long();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    CHECK(system(cmd) == 0);
    return wf_test_done("test_hostile_text");
}
