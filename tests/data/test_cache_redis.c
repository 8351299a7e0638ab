/*
 * data layer test: the Redis cache against a real redis-server the test
 * starts on a free loopback port (killed by pid at the end, and by the
 * kernel if the test dies: PR_SET_PDEATHSIG). Hits and misses; keys as
 * documented; two jobs with the same pipeline share hits, a different
 * prefix gets none; server-side eviction under maxmemory; and the failures:
 * no server at start, the server SIGKILLed mid-epoch (between batches, and
 * from another thread at a random moment), the server stopped (SIGSTOP:
 * command timeout) — each epoch still delivers every id exactly once with
 * the right bytes, the loader reports the fallback, the message names
 * host:port, and reconnects happen at most once per retry interval.
 * A missing redis-server fails the test: it is a listed dependency.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <hiredis/hiredis.h>

#include "synth.h"

static char tmp[256];
static char redis_bin[1024];

struct server {
    pid_t pid;
    int port;
};

static int find_redis(void) {
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s:/usr/bin:/usr/sbin:/usr/local/bin", path ? path : "");
    for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        snprintf(redis_bin, sizeof redis_bin, "%s/redis-server", dir);
        if (access(redis_bin, X_OK) == 0) return 1;
    }
    return 0;
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = 0};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static int ping(int port) {
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

/* Starts redis-server on port (0: a free one) with maxmemory (e.g. "64mb"); waits for PING (5 s at most). */
static int server_start(struct server *s, int port, const char *maxmemory) {
    s->port = port ? port : free_port();
    char portstr[16], dir[512], log[600];
    snprintf(portstr, sizeof portstr, "%d", s->port);
    snprintf(dir, sizeof dir, "%s/redis-%d", tmp, s->port);
    mkdir(dir, 0755);
    snprintf(log, sizeof log, "%s/log", dir);
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(redis_bin, redis_bin, "--port", portstr, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--daemonize", "no", "--dir", dir, "--maxmemory", maxmemory, "--maxmemory-policy", "allkeys-lru",
              (char *)NULL);
        _exit(127);
    }
    if (s->pid < 0) return 0;
    for (double t0 = wf_now(); wf_now() - t0 < 5.0;) {
        if (ping(s->port)) return 1;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            fprintf(stderr, "test_cache_redis: redis-server exited at start (status %d); its log %s:\n", st, log);
            FILE *fp = fopen(log, "r");
            char line[256];
            while (fp && fgets(line, sizeof line, fp))
                fputs(line, stderr);
            if (fp) fclose(fp);
            s->pid = -1;
            return 0;
        }
        usleep(10000);
    }
    fprintf(stderr, "test_cache_redis: redis-server on port %d did not answer PING within 5 s\n", s->port);
    return 0;
}

static void server_kill(struct server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = -1;
}

static const char *chain = "normalize(mean=0.2860, std=0.3530), crop(pad=2), flip(p=0.5), noise(std=0.05)";
enum { N = 1200, H = 12, W = 12, B = 50, VSIZE = 4 + H * W * 4 };
static struct wf_dataset d;
static struct wf_store *store;

static const struct wf_redis_opts opts_slow_retry = {500, 500, 60.0};

static struct wf_cache *redis_cache(int port, const struct wf_redis_opts *o) {
    struct wf_cache *c = NULL;
    int rc = wf_cache_new_redis(&c, "127.0.0.1", port, o);
    CHECKF(rc == WF_OK && c, "%s", wf_errmsg());
    return c;
}

static void test_basic_and_sharing(void) {
    struct server srv;
    if (!server_start(&srv, 0, "256mb")) {
        CHECKF(0, "cannot start redis-server");
        return;
    }
    struct wf_cache *c = redis_cache(srv.port, &opts_slow_retry);
    char name[64];
    snprintf(name, sizeof name, "redis cache 127.0.0.1:%d", srv.port);
    CHECK(!strcmp(wf_cache_name(c), name));

    /* get/put with statistics, and the key layout. */
    uint32_t ids[3] = {5, 6, 7};
    char vals[3][8] = {"aaaaaaa", "bbbbbbb", "ccccccc"}, out[3][8];
    uint8_t hit[3];
    CHECK(wf_cache_put(c, 0xabcdef, ids, 2, 8, vals) == WF_OK);
    CHECK(wf_cache_get(c, 0xabcdef, ids, 3, 8, out, hit) == WF_OK);
    CHECK(hit[0] && hit[1] && !hit[2] && !memcmp(out[0], vals[0], 8) && !memcmp(out[1], vals[1], 8));
    CHECK(wf_cache_get(c, 0xabcdef, ids, 3, 7, out, hit) == WF_OK && !hit[0] && !hit[1]); /* wrong size: a miss */
    struct wf_cache_stats st;
    wf_cache_stats(c, &st);
    CHECKF(st.hits == 2 && st.misses == 4 && st.puts == 2 && st.errors == 2 && st.connects == 1 && st.bytes > 0,
           "hits %llu misses %llu puts %llu errors %llu", (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.puts, (unsigned long long)st.errors);
    struct timeval tv = {1, 0};
    redisContext *raw = redisConnectWithTimeout("127.0.0.1", srv.port, tv);
    CHECK(raw && !raw->err);
    if (raw && !raw->err) {
        redisReply *r = redisCommand(raw, "GET weft:0000000000abcdef:6");
        CHECK(r && r->type == REDIS_REPLY_STRING && r->len == 8 && !memcmp(r->str, "bbbbbbb", 8));
        if (r) freeReplyObject(r);
        r = redisCommand(raw, "FLUSHALL");
        if (r) freeReplyObject(r);
    }
    if (raw) redisFree(raw);
    wf_cache_free(c);

    /* Job A warms the cache; job B (its own connection) with the same prefix gets only hits; epoch 2 of A reads 0
     * bytes. */
    struct wf_cache *ca = redis_cache(srv.port, &opts_slow_retry), *cb = redis_cache(srv.port, &opts_slow_retry);
    struct wf_loader *la, *lb, *lc;
    struct wf_loader_stats sa, sb, sc;
    CHECK(wf_loader_new(&la, store, chain, 42, ca) == WF_OK);
    CHECK(wf_loader_new(&lb, store, "normalize(mean=0.286, std=0.353), flip(p=0.3)", 9, cb) == WF_OK);
    CHECK(synth_check_epoch(la, &d, 42, 0, B, NULL, NULL) == 0);
    wf_loader_stats(la, &sa);
    CHECK(sa.misses == N && sa.hits == 0 && sa.bytes_read == N * (H * W + 1));
    CHECK(synth_check_epoch(la, &d, 42, 1, B, NULL, NULL) == 0);
    wf_loader_stats(la, &sa);
    CHECK(sa.hits == N && sa.misses == N && sa.bytes_read == N * (H * W + 1) && sa.cache_errors == 0);
    CHECK(synth_check_epoch(lb, &d, 9, 0, B, NULL, NULL) == 0);
    wf_loader_stats(lb, &sb);
    CHECKF(sb.hits == N && sb.bytes_read == 0, "job B: %llu hits, %llu bytes read", (unsigned long long)sb.hits,
           (unsigned long long)sb.bytes_read);
    /* A different prefix: no hits from the others. */
    CHECK(wf_loader_new(&lc, store, "normalize(mean=0.5, std=0.25), crop(pad=2)", 42, cb) == WF_OK);
    CHECK(synth_check_epoch(lc, &d, 42, 0, B, NULL, NULL) == 0);
    wf_loader_stats(lc, &sc);
    CHECK(sc.hits == 0 && sc.misses == N);
    wf_loader_free(la);
    wf_loader_free(lb);
    wf_loader_free(lc);
    wf_cache_free(ca);
    wf_cache_free(cb);
    server_kill(&srv);
}

static void test_server_eviction(void) {
    struct server srv;
    if (!server_start(&srv, 0, "1mb")) { /* N values of 580 bytes do not fit */
        CHECKF(0, "cannot start redis-server");
        return;
    }
    struct wf_cache *c = redis_cache(srv.port, &opts_slow_retry);
    struct wf_loader *l;
    CHECK(wf_loader_new(&l, store, chain, 42, c) == WF_OK);
    for (uint64_t ep = 0; ep < 2; ep++)
        CHECK(synth_check_epoch(l, &d, 42, ep, B, NULL, NULL) == 0);
    struct wf_loader_stats ls;
    struct wf_cache_stats cs;
    wf_loader_stats(l, &ls);
    wf_cache_stats(c, &cs);
    fprintf(stderr, "test_cache_redis: maxmemory 1mb: %llu hits, %llu misses, %llu evictions, %llu bytes used\n",
            (unsigned long long)ls.hits, (unsigned long long)ls.misses, (unsigned long long)cs.evictions,
            (unsigned long long)cs.bytes);
    CHECK(cs.evictions > 0 && ls.hits < N && ls.hits + ls.misses == 2 * N && ls.cache_errors == 0);
    wf_loader_free(l);
    wf_cache_free(c);
    server_kill(&srv);
}

struct kill_at {
    int batch;
    struct server *srv;
    int signal;
};

static void kill_between(int batch, void *ctx) {
    struct kill_at *k = ctx;
    if (batch != k->batch) return;
    if (k->signal == SIGSTOP)
        kill(k->srv->pid, SIGSTOP);
    else
        server_kill(k->srv);
}

static void test_failures(void) {
    struct server srv;
    if (!server_start(&srv, 0, "256mb")) {
        CHECKF(0, "cannot start redis-server");
        return;
    }
    int port = srv.port;
    struct wf_redis_opts o = {500, 300, 0.5};
    struct wf_cache *c = redis_cache(port, &o);
    struct wf_loader *l;
    CHECK(wf_loader_new(&l, store, chain, 42, c) == WF_OK);
    CHECK(synth_check_epoch(l, &d, 42, 0, B, NULL, NULL) == 0); /* warm */

    /* SIGKILL after 10 of 24 batches: the epoch completes from the store, nothing lost or doubled. */
    struct wf_loader_stats s0, s1;
    struct wf_cache_stats cs0, cs1;
    wf_loader_stats(l, &s0);
    wf_cache_stats(c, &cs0);
    struct kill_at k = {10, &srv, SIGKILL};
    double t0 = wf_now();
    CHECK(synth_check_epoch(l, &d, 42, 1, B, kill_between, &k) == 0);
    double took = wf_now() - t0;
    wf_loader_stats(l, &s1);
    wf_cache_stats(c, &cs1);
    fprintf(stderr, "test_cache_redis: killed mid-epoch: %llu fallback batches, %llu hits, %.3f s\n",
            (unsigned long long)(s1.fallback_batches - s0.fallback_batches), (unsigned long long)(s1.hits - s0.hits),
            took);
    CHECK(s1.hits - s0.hits == 10 * B);
    CHECK(s1.fallback_batches - s0.fallback_batches >= 1 && s1.fallback_ids - s0.fallback_ids >= B);
    CHECK(s1.cache_errors > s0.cache_errors);
    /* Reconnects at most once per retry interval (0.5 s), not once per batch. */
    CHECKF(cs1.connects - cs0.connects <= 1 + (uint64_t)(took / 0.5), "%llu connection attempts in %.2f s",
           (unsigned long long)(cs1.connects - cs0.connects), took);
    char err[512], want[64];
    wf_cache_last_error(c, err, sizeof err);
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    CHECKF(strstr(err, want) != NULL, "last error '%s' does not name %s", err, want);

    /* The server comes back on the same port: after the retry interval the cache works again. */
    struct server again;
    CHECK(server_start(&again, port, "256mb"));
    usleep(600000);
    uint32_t ids[B];
    float x[B * H * W];
    int32_t y[B];
    for (int i = 0; i < B; i++)
        ids[i] = (uint32_t)i;
    wf_loader_stats(l, &s0);
    CHECK(wf_loader_fetch(l, ids, B, 3, x, y) == WF_OK);
    CHECK(wf_loader_fetch(l, ids, B, 3, x, y) == WF_OK);
    wf_loader_stats(l, &s1);
    CHECKF(s1.hits - s0.hits == B && s1.fallback_batches == s0.fallback_batches, "after restart: %llu hits",
           (unsigned long long)(s1.hits - s0.hits));

    /* SIGSTOP: a command times out (300 ms) instead of hanging; the epoch completes. */
    wf_loader_stats(l, &s0);
    k = (struct kill_at){5, &again, SIGSTOP};
    t0 = wf_now();
    CHECK(synth_check_epoch(l, &d, 42, 4, B, kill_between, &k) == 0);
    took = wf_now() - t0;
    wf_loader_stats(l, &s1);
    wf_cache_last_error(c, err, sizeof err);
    fprintf(stderr, "test_cache_redis: stopped server: epoch in %.3f s, last error: %s\n", took, err);
    CHECK(s1.fallback_batches > s0.fallback_batches);
    CHECKF(strstr(err, want) && strstr(err, "no answer within 300 ms"), "%s", err);
    CHECK(took < 5.0);
    server_kill(&again); /* SIGKILL ends a stopped process too */
    wf_loader_free(l);
    wf_cache_free(c);

    /* No server at all from the start: created, warns, every batch falls back, one connection attempt. */
    int dead = free_port();
    c = redis_cache(dead, &opts_slow_retry);
    CHECK(wf_loader_new(&l, store, chain, 42, c) == WF_OK);
    CHECK(synth_check_epoch(l, &d, 42, 0, B, NULL, NULL) == 0);
    wf_loader_stats(l, &s1);
    wf_cache_stats(c, &cs1);
    CHECK(s1.fallback_batches == N / B && s1.fallback_ids == N && s1.hits == 0);
    CHECK(cs1.connects == 1);
    wf_cache_last_error(c, err, sizeof err);
    snprintf(want, sizeof want, "127.0.0.1:%d: cannot connect", dead);
    CHECKF(strstr(err, want) != NULL, "%s", err);
    wf_loader_free(l);
    wf_cache_free(c);
}

/* SIGKILL from another thread at an arbitrary moment, possibly inside a batch. */
struct killer_arg {
    struct server *srv;
    struct wf_loader *l;
    atomic_int done;
};

/* Kills the server at a random moment once the loader has served half an
 * epoch through it (possibly in the middle of a batch). */
static void *killer(void *arg) {
    struct killer_arg *k = arg;
    struct wf_loader_stats ls;
    for (int i = 0; i < 20000; i++) { /* at most ~20 s */
        wf_loader_stats(k->l, &ls);
        if (ls.samples >= N / 2) break;
        usleep(1000);
    }
    usleep((useconds_t)(wf_mix64((uint64_t)(wf_now() * 1e9)) % 5000));
    server_kill(k->srv);
    atomic_store(&k->done, 1);
    return NULL;
}

static void test_kill_any_moment(void) {
    struct wf_redis_opts o = {500, 500, 60.0};
    for (int round = 0; round < 3; round++) {
        struct server srv;
        if (!server_start(&srv, 0, "256mb")) {
            CHECKF(0, "cannot start redis-server");
            return;
        }
        struct wf_cache *c = redis_cache(srv.port, &o);
        struct wf_loader *l;
        CHECK(wf_loader_new(&l, store, chain, 42, c) == WF_OK);
        struct killer_arg k = {.srv = &srv, .l = l};
        pthread_t th;
        pthread_create(&th, NULL, killer, &k);
        uint64_t ep = 0;
        for (; ep < 50; ep++) { /* until the kill has happened, and one whole epoch after it */
            int was_done = atomic_load(&k.done);
            CHECK(synth_check_epoch(l, &d, 42, ep, B, NULL, NULL) == 0);
            if (was_done) break;
        }
        pthread_join(th, NULL);
        struct wf_loader_stats ls;
        wf_loader_stats(l, &ls);
        CHECKF(ls.samples == (ep + 1) * N && ls.fallback_batches >= 1,
               "round %d: %llu samples in %llu epochs, %llu fallbacks", round, (unsigned long long)ls.samples,
               (unsigned long long)(ep + 1), (unsigned long long)ls.fallback_batches);
        wf_loader_free(l);
        wf_cache_free(c);
    }
}

int main(void) {
    if (!find_redis()) {
        fprintf(stderr, "test_cache_redis: FAIL: redis-server not found in PATH (install it: scripts/install-deps.sh "
                        "installs redis-server)\n");
        return 1;
    }
    if (!synth_mkdtemp(tmp, sizeof tmp, "redis")) return 1;
    synth_dataset(tmp, N, H, W, 21, 0);
    int rc = wf_dataset_load_idx(&d, tmp, "train");
    if (rc == WF_OK) rc = wf_store_open(&store, tmp, "train", NULL);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    if (rc == WF_OK) {
        double t0 = wf_now();
        test_basic_and_sharing();
        test_server_eviction();
        test_failures();
        test_kill_any_moment();
        fprintf(stderr, "test_cache_redis: %.2f s\n", wf_now() - t0);
    }
    wf_store_free(store);
    wf_dataset_free(&d);
    synth_rm_rf(tmp);
    return wf_test_done("test_cache_redis");
}
