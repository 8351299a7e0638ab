/* core: levelled logging to stderr, selected by WEFT_LOG. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/core.h"

static int log_level = -1;

static int level_from_env(void) {
    const char *e = getenv("WEFT_LOG");
    if (!e) return WF_LOG_WARN;
    if (!strcmp(e, "error")) return WF_LOG_ERROR;
    if (!strcmp(e, "info")) return WF_LOG_INFO;
    if (!strcmp(e, "debug")) return WF_LOG_DEBUG;
    return WF_LOG_WARN;
}

int wf_log_enabled(int level) {
    if (log_level < 0) log_level = level_from_env();
    return level <= log_level;
}

void wf_log(int level, const char *subsys, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!wf_log_enabled(level)) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "weft %s [%s] %s\n", names[level], subsys, msg);
}
