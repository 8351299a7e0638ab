/*
 * data layer: the Redis cache backend (hiredis), for jobs that span
 * machines and for sharing preprocessed samples between jobs.
 *
 *   key    weft:<cache id, 16 hex digits>:<sample id, decimal>
 *   value  the prefix output of one sample, exactly `size` bytes
 *
 * A batch is one MGET, or a pipeline of SETs read back together. Connect
 * and command timeouts bound every call. When the server is unreachable,
 * times out or drops the connection, the call fails with a message naming
 * host:port and the cache stays down for retry_s seconds: calls in that
 * window fail at once, without touching the network, so a dead server
 * costs one timeout per retry_s, not one per batch. Evictions and memory
 * are the server's (INFO: evicted_keys, used_memory), counted over all keys.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cache_int.h"
#include "weft/core.h"

#define KEY_CAP 48 /* "weft:" + 16 hex + ":" + 10 digits + NUL */

struct redis_cache {
    struct wf_cache base;
    char host[64];
    int port;
    struct wf_redis_opts o;
    redisContext *ctx; /* NULL while down */
    double next_retry; /* wf_now() before which no reconnect is tried */
};

/* hiredis writes with write(2): a peer that went away would raise SIGPIPE.
 * Block it on this thread around network calls and swallow any it raised. */
struct pipe_guard {
    sigset_t old;
    int was_pending;
};

static void pipe_block(struct pipe_guard *g) {
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    g->was_pending = sigismember(&pend, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void pipe_unblock(struct pipe_guard *g) {
    sigset_t set, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    sigpending(&pend);
    if (!g->was_pending && sigismember(&pend, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

static struct timeval tv_ms(int ms) {
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

static void go_down(struct redis_cache *r) {
    if (r->ctx) redisFree(r->ctx);
    r->ctx = NULL;
    r->next_retry = wf_now() + r->o.retry_s;
}

/* Connects when down and the retry interval has passed. */
static int ensure(struct redis_cache *r) {
    if (r->ctx) return WF_OK;
    double now = wf_now();
    if (now < r->next_retry)
        return wf_error(WF_ERR_PEER, "%s: unavailable (%s); next connection attempt in %.1f s", r->base.name,
                        r->base.last_error[0] ? r->base.last_error : "down", r->next_retry - now);
    r->base.st.connects++;
    redisContext *ctx = redisConnectWithTimeout(r->host, r->port, tv_ms(r->o.connect_timeout_ms));
    if (!ctx || ctx->err) {
        int rc = wf_cache_fail(&r->base, WF_ERR_PEER, "%s: cannot connect: %s", r->base.name,
                               ctx ? ctx->errstr : "out of memory");
        if (ctx) redisFree(ctx);
        r->next_retry = now + r->o.retry_s;
        return rc;
    }
    if (redisSetTimeout(ctx, tv_ms(r->o.command_timeout_ms)) != REDIS_OK) {
        int rc =
            wf_cache_fail(&r->base, WF_ERR_PEER, "%s: cannot set the command timeout: %s", r->base.name, ctx->errstr);
        redisFree(ctx);
        r->next_retry = now + r->o.retry_s;
        return rc;
    }
    redisEnableKeepAlive(ctx);
    r->ctx = ctx;
    WF_LOGI("data", "%s: connected", r->base.name);
    return WF_OK;
}

/* An I/O failure on the connection: report it, drop the connection. */
static int io_fail(struct redis_cache *r, const char *what) {
    const char *why = r->ctx && r->ctx->err ? r->ctx->errstr : "no reply";
    int rc;
    if (r->ctx && r->ctx->err == REDIS_ERR_IO && strstr(why, "temporarily unavailable")) /* SO_RCVTIMEO ran out */
        rc = wf_cache_fail(&r->base, WF_ERR_TIMEOUT, "%s: %s failed: no answer within %d ms", r->base.name, what,
                           r->o.command_timeout_ms);
    else
        rc = wf_cache_fail(&r->base, WF_ERR_PEER, "%s: %s failed: %s", r->base.name, what, why);
    WF_LOGW("data", "%s; falling back to the dataset, next connection attempt in %.1f s", r->base.last_error,
            r->o.retry_s);
    go_down(r);
    return rc;
}

static void make_key(char *key, uint64_t cid, uint32_t id) {
    snprintf(key, KEY_CAP, "weft:%016" PRIx64 ":%" PRIu32, cid, id);
}

static int redis_get(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, void *vals,
                     uint8_t *hit) {
    struct redis_cache *r = (struct redis_cache *)c;
    int rc = ensure(r);
    if (rc) return rc;
    const char **argv = wf_malloc((size_t)(n + 1) * sizeof *argv);
    size_t *argl = wf_malloc((size_t)(n + 1) * sizeof *argl);
    char *keys = wf_malloc((size_t)n * KEY_CAP);
    if (!argv || !argl || !keys) {
        rc = wf_cache_fail(c, WF_ERR_NOMEM, "%s: out of memory for a batch of %d", c->name, n);
        goto out;
    }
    argv[0] = "MGET";
    argl[0] = 4;
    for (int i = 0; i < n; i++) {
        char *k = keys + (size_t)i * KEY_CAP;
        make_key(k, cid, ids[i]);
        argv[i + 1] = k;
        argl[i + 1] = strlen(k);
    }
    struct pipe_guard g;
    pipe_block(&g);
    redisReply *rep = NULL;
    if (redisAppendCommandArgv(r->ctx, n + 1, argv, argl) != REDIS_OK ||
        redisGetReply(r->ctx, (void **)&rep) != REDIS_OK || !rep) {
        pipe_unblock(&g);
        if (rep) freeReplyObject(rep);
        rc = io_fail(r, "MGET");
        goto out;
    }
    pipe_unblock(&g);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != (size_t)n) {
        rc = wf_cache_fail(c, WF_ERR_PEER, "%s: MGET of %d keys: unexpected reply (%s)", c->name, n,
                           rep->type == REDIS_REPLY_ERROR ? rep->str : "not an array of that length");
        freeReplyObject(rep);
        goto out;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        redisReply *e = rep->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == size) {
            memcpy((char *)vals + (size_t)i * size, e->str, size);
            hit[i] = 1;
        } else if (e->type != REDIS_REPLY_NIL) {
            bad++;
        }
    }
    freeReplyObject(rep);
    if (bad) {
        c->st.errors += (uint64_t)bad;
        snprintf(c->last_error, sizeof c->last_error, "%s: %d values of a wrong size or type, taken as misses", c->name,
                 bad);
    }
out:
    wf_free(argv);
    wf_free(argl);
    wf_free(keys);
    return rc;
}

static int redis_put(struct wf_cache *c, uint64_t cid, const uint32_t *ids, int n, size_t size, const void *vals) {
    struct redis_cache *r = (struct redis_cache *)c;
    int rc = ensure(r);
    if (rc) return rc;
    struct pipe_guard g;
    pipe_block(&g);
    for (int i = 0; i < n; i++) {
        char key[KEY_CAP];
        make_key(key, cid, ids[i]);
        const char *argv[3] = {"SET", key, (const char *)vals + (size_t)i * size};
        size_t argl[3] = {3, strlen(key), size};
        if (redisAppendCommandArgv(r->ctx, 3, argv, argl) != REDIS_OK) {
            pipe_unblock(&g);
            return io_fail(r, "SET");
        }
    }
    int refused = 0;
    char first[160] = "";
    for (int i = 0; i < n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(r->ctx, (void **)&rep) != REDIS_OK || !rep) {
            pipe_unblock(&g);
            if (rep) freeReplyObject(rep);
            return io_fail(r, "SET");
        }
        if (rep->type == REDIS_REPLY_ERROR) {
            if (!refused++) snprintf(first, sizeof first, "%s", rep->str);
        } else {
            c->st.puts++;
        }
        freeReplyObject(rep);
    }
    pipe_unblock(&g);
    if (refused)
        return wf_cache_fail(c, WF_ERR_PEER, "%s: the server refused %d of %d SETs: %s", c->name, refused, n, first);
    return WF_OK;
}

static uint64_t info_field(const char *text, const char *field) {
    const char *p = strstr(text, field);
    return p ? strtoull(p + strlen(field), NULL, 10) : 0;
}

static void redis_stats(struct wf_cache *c, struct wf_cache_stats *st) {
    struct redis_cache *r = (struct redis_cache *)c;
    if (!r->ctx) return; /* down: keep the last values */
    static const char *const sections[2] = {"stats", "memory"};
    for (int s = 0; s < 2; s++) {
        struct pipe_guard g;
        pipe_block(&g);
        redisReply *rep = redisCommand(r->ctx, "INFO %s", sections[s]);
        pipe_unblock(&g);
        if (!rep) {
            io_fail(r, "INFO");
            return;
        }
        if (rep->type == REDIS_REPLY_STRING) {
            if (s == 0)
                st->evictions = info_field(rep->str, "\nevicted_keys:");
            else
                st->bytes = info_field(rep->str, "\nused_memory:");
        }
        freeReplyObject(rep);
    }
}

static void redis_free(struct wf_cache *c) {
    struct redis_cache *r = (struct redis_cache *)c;
    if (r->ctx) redisFree(r->ctx);
    wf_free(r);
}

static const struct cache_ops redis_ops = {redis_get, redis_put, redis_stats, redis_free};

int wf_cache_new_redis(struct wf_cache **out, const char *host, int port, const struct wf_redis_opts *opts) {
    *out = NULL;
    if (!host || strlen(host) >= sizeof((struct redis_cache *)0)->host || port <= 0 || port > 65535)
        return wf_error(WF_ERR_INVALID, "redis cache: bad address %s:%d", host ? host : "(null)", port);
    struct redis_cache *r = wf_calloc(1, sizeof *r);
    if (!r) return wf_error(WF_ERR_NOMEM, "redis cache: out of memory");
    snprintf(r->host, sizeof r->host, "%s", host);
    r->port = port;
    r->o.connect_timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 1000;
    r->o.command_timeout_ms = opts && opts->command_timeout_ms > 0 ? opts->command_timeout_ms : 2000;
    r->o.retry_s = opts && opts->retry_s > 0 ? opts->retry_s : 5.0;
    int rc = wf_cache_base_init(&r->base);
    if (rc) {
        wf_free(r);
        return rc;
    }
    r->base.ops = &redis_ops;
    snprintf(r->base.name, sizeof r->base.name, "redis cache %s:%d", host, port);
    if (ensure(r) != WF_OK) {
        WF_LOGW("data", "%s; reading from the dataset until it answers", r->base.last_error);
        wf_error_clear();
    }
    *out = &r->base;
    return WF_OK;
}
