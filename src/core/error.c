/* core: status strings and the per-thread last error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "weft/core.h"

static _Thread_local char errbuf[2048];

const char *wf_status_str(int s) {
    switch (s) {
    case WF_OK: return "ok";
    case WF_ERR_NOMEM: return "out of memory";
    case WF_ERR_IO: return "i/o error";
    case WF_ERR_PARSE: return "parse error";
    case WF_ERR_SHAPE: return "shape error";
    case WF_ERR_INVALID: return "invalid argument";
    case WF_ERR_CORRUPT: return "corrupt file";
    case WF_ERR_NOTFOUND: return "not found";
    case WF_ERR_RANGE: return "out of range";
    case WF_ERR_INTERNAL: return "internal error";
    case WF_ERR_TIMEOUT: return "timed out";
    case WF_ERR_PEER: return "peer failed";
    case WF_ERR_AUTH: return "not authorized";
    }
    return "unknown status";
}

int wf_error(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    return status;
}

int wf_error_prefix(int status, const char *fmt, ...) {
    char pre[512], old[sizeof errbuf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, errbuf, sizeof old);
    snprintf(errbuf, sizeof errbuf, "%s: %s", pre, old[0] ? old : wf_status_str(status));
    return status;
}

const char *wf_errmsg(void) { return errbuf[0] ? errbuf : "no error message"; }
void wf_error_clear(void) { errbuf[0] = 0; }
