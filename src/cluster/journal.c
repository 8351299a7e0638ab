/*
 * cluster layer: the coordinator's journal (`weft coordinator --journal
 * FILE`), so that a coordinator started again with the same file takes over
 * the job that was running when the last one died.
 *
 * One record per line: a 64-bit checksum of the rest of the line (16 hex
 * digits), a space, the record. The file is appended to and flushed after
 * every record, and synced after the ones a takeover cannot do without (the
 * job, each node set, the end); a torn last line is cut off when the file
 * is read. docs/formats.md lists the records:
 *
 *   weft-journal 1 PID            the coordinator that started the file
 *   job ID HASH OPTIONS...        the submitted job, its options
 *   start UNIX                    the first node set started training
 *   set V S D N STEP SRC UNIX PIDS   a node set (written before its ASSIGNs)
 *   step T SET LOSS TIME SPS IDS  step T committed by set SET: its loss (bits), sample ids
 *   eval E STEP TRAIN TEST ACC    the evaluation after epoch E
 *   ckpt T                        a checkpoint of step T was written
 *   failure UNIX                  a failure recovered (for the cap per hour)
 *   change K ...                  change K of the node set, as it stands
 *   end done|failed               the job ended: nothing to take over
 *
 * Taking over: the job is set up again from its options (the job file and
 * model must hash as they did), the records restore what the old
 * coordinator knew (the steps logged, their sample ids and losses, node
 * sets, changes, checkpoints), missing metrics lines are written again from
 * the step records, and the job waits for the last set's workers to
 * register again. They left the set when they lost the coordinator and kept
 * their stage snapshots; from there it is an elastic recovery (elastic.c).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft/core.h"
#include "weft/train.h"

#include "coord_int.h"

static int jl_warned;

/* One record: its checksum, the record, a newline; flushed (and synced). */
static void jl_put(struct coord *co, int sync, const char *body, size_t n) {
    fprintf(co->journal, "%016llx %s\n", (unsigned long long)wf_hash64(body, n, 0), body);
    int bad = fflush(co->journal) != 0 || (sync && fsync(fileno(co->journal)) != 0);
    if (bad && !jl_warned) {
        jl_warned = 1;
        fprintf(stderr,
                "weft coordinator: warning: cannot write the journal %s: %s; a restarted coordinator could "
                "not take this job over\n",
                co->o->journal, strerror(errno));
    }
}

void jl_rec(struct coord *co, int sync, const char *fmt, ...) {
    if (!co->journal) return;
    char small[1024], *body = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof small) { /* a job record's paths, a set of many workers */
        if (!(body = wf_malloc((size_t)n + 1))) return;
        va_start(ap, fmt);
        vsnprintf(body, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    jl_put(co, sync, body, (size_t)n);
    if (body != small) wf_free(body);
}

static void hex_str(char *out, size_t n, const char *s) {
    size_t k = 0;
    for (; s && *s && k + 3 < n; s++, k += 2)
        snprintf(out + k, 3, "%02x", (unsigned char)*s);
    if (k == 0 && n > 1) out[k++] = '-'; /* empty */
    out[k] = 0;
}

static int unhex_str(const char *h, char *out, size_t n) {
    size_t k = 0;
    if (!strcmp(h, "-")) h = "";
    for (; h[0] && h[1] && k + 1 < n; h += 2) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1) return -1;
        out[k++] = (char)v;
    }
    out[k] = 0;
    return h[0] ? -1 : 0;
}

/* The job file and model as set up: a takeover needs them unchanged. */
static uint64_t job_hash(const struct job *jb) {
    char *t = NULL;
    if (wf_job_write(&jb->job, &t, NULL) < 0) return 0;
    uint64_t h = wf_hash64(t, strlen(t), 1);
    wf_free(t);
    return wf_hash_combine(h, wf_hash64(jb->model_text, strlen(jb->model_text), 2));
}

int jl_begin(struct coord *co, struct job *jb) {
    const char *path = co->o->journal;
    if (!path) return WF_OK;
    if (co->journal) fclose(co->journal);
    co->journal = NULL;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(co->journal = fopen(tmp, "w"))) return wf_error(WF_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    const struct wf_run_opts *o = &jb->opts;
    char hp[8300], hr[8300];
    hex_str(hp, sizeof hp, o->job_path);
    hex_str(hr, sizeof hr, o->resume);
    jl_rec(co, 0, "weft-journal 1 %d", (int)getpid());
    jl_rec(co, 1, "job %d %016llx %d %d %d %d %d %d %d %d %d %d %.17g %.17g %s %s", jb->id,
           (unsigned long long)job_hash(jb), o->workers, o->pp, o->dp, o->micro_batches, o->schedule, o->threads,
           o->nodes_min, o->nodes_max, o->max_recoveries, o->snapshot_every, o->settle_s, co->hb_timeout, hp, hr);
    int bad = ferror(co->journal);
    fclose(co->journal);
    co->journal = NULL;
    if (bad || rename(tmp, path) < 0) return wf_error(WF_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    if (!(co->journal = fopen(path, "a"))) return wf_error(WF_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    jl_warned = 0;
    return WF_OK;
}

void jl_step(struct coord *co, struct job *jb, int64_t step) {
    if (!co->journal || !jb->elastic || step < 0 || step >= jb->total) return;
    long B = jb->job.batch;
    size_t need = (size_t)B * 11 + 128;
    if (co->jl_cap < need) { /* once: the record's buffer lives with the coordinator */
        char *p = wf_realloc(co->jl_buf, need);
        if (!p) return;
        co->jl_buf = p;
        co->jl_cap = need;
    }
    uint64_t bits;
    memcpy(&bits, &jb->loss_all[step], sizeof bits);
    size_t k = 0;
    wf_appendf(co->jl_buf, co->jl_cap, &k, "step %lld %u %016llx %.6f %.3f", (long long)step, jb->ids_set[step],
               (unsigned long long)bits, jb->step_t[2 * step], jb->step_t[2 * step + 1]);
    for (long i = 0; i < B; i++)
        wf_appendf(co->jl_buf, co->jl_cap, &k, " %u", jb->ids[step * B + i]);
    jl_put(co, 0, co->jl_buf, k);
}

void jl_change(struct coord *co, struct job *jb, int k) {
    if (!co->journal || k < 0) return;
    const struct change *c = &jb->ch[k % MAX_HISTORY];
    char cause[2 * sizeof c->cause + 2];
    hex_str(cause, sizeof cause, c->cause);
    jl_rec(co, 0, "change %d %d %d %u %u %lld %d %ld %ld %d %.4f %.4f %.4f %s", k + 1, c->failure, c->takeover,
           c->from_version, c->to_version, (long long)c->restored, c->src, c->replayed, c->high_water, c->closed,
           c->secs, c->wall0, c->wall, cause);
}

void jl_end(struct coord *co, struct job *jb, int ok) {
    (void)jb;
    jl_rec(co, 1, "end %s", ok ? "done" : "failed");
}

/* ---- taking over ---- */

struct rec {
    const char *s; /* the record, without its checksum */
    int len;
};

/* The records of a journal's text; *good: bytes of whole, intact lines. */
static int parse_lines(char *text, size_t len, struct rec **out, size_t *good) {
    int n = 0, cap = 0;
    struct rec *r = NULL;
    size_t off = 0;
    while (off < len) {
        char *nl = memchr(text + off, '\n', len - off);
        if (!nl) break; /* torn */
        char *line = text + off;
        size_t ll = (size_t)(nl - line);
        unsigned long long sum;
        if (ll < 18 || line[16] != ' ' || sscanf(line, "%16llx", &sum) != 1 || sum != wf_hash64(line + 17, ll - 17, 0))
            break; /* corrupt: nothing after it is trusted */
        *nl = 0;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            struct rec *p = wf_realloc(r, sizeof *r * (size_t)cap);
            if (!p) {
                wf_free(r);
                return wf_error(WF_ERR_NOMEM, "out of memory");
            }
            r = p;
        }
        r[n++] = (struct rec){line + 17, (int)(ll - 17)};
        off += ll + 1;
    }
    *out = r;
    *good = off;
    return n;
}

/* OUT/metrics.jsonl as the journal has it: a torn last line cut off, and the
 * lines of steps the journal has but the file lost written again. */
static void fix_metrics(struct coord *co, struct job *jb) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", jb->job.out);
    char *text = NULL;
    size_t len = 0;
    if (wf_read_file(path, &text, &len) < 0) return;
    size_t keep = len;
    while (keep > 0 && text[keep - 1] != '\n')
        keep--;
    long have = 0;
    for (size_t off = 0; off < keep;) {
        char *nl = memchr(text + off, '\n', keep - off);
        long s;
        if (sscanf(text + off, "{\"step\":%ld,", &s) == 1 && s > have) have = s;
        off = (size_t)(nl - text) + 1;
    }
    wf_free(text);
    if (keep < len && truncate(path, (off_t)keep) < 0) return;
    if (have < jb->start_step) have = jb->start_step;
    long redone = 0;
    for (long t = have; t < jb->logged; t++, redone++)
        co_metrics_step(jb, t, jb->loss_all[t], jb->step_t[2 * t + 1], jb->step_t[2 * t]);
    fflush(jb->metrics);
    if (keep < len || redone)
        co_emit(co, jb, 0, "journal: %s: %s%ld step line%s written again", path,
                keep < len ? "a torn last line cut off; " : "", redone, redone == 1 ? "" : "s");
}

static int apply(struct coord *co, struct job *jb, const struct rec *r, int n) {
    double wall_now = co_wall(), now = wf_now();
    long B = jb->job.batch;
    for (int i = 0; i < n; i++) {
        const char *s = r[i].s;
        long long a;
        unsigned long long b;
        unsigned u;
        int x, off = 0;
        if (sscanf(s, "step %lld %u %llx %n", &a, &u, &b, &off) == 3 && a >= 0 && a < jb->total) {
            double tm, sps;
            int o2 = 0;
            if (sscanf(s + off, "%lf %lf%n", &tm, &sps, &o2) != 2) continue;
            const char *p = s + off + o2;
            for (long k = 0; k < B; k++) {
                char *end;
                unsigned long id = strtoul(p, &end, 10);
                if (end == p) break;
                jb->ids[a * B + k] = (uint32_t)id;
                p = end;
            }
            jb->ids_set[a] = u;
            if (a + 1 > jb->logged) {
                uint64_t bits = (uint64_t)b;
                memcpy(&jb->loss_all[a], &bits, sizeof bits);
                jb->step_t[2 * a] = tm;
                jb->step_t[2 * a + 1] = sps;
                jb->logged = (long)a + 1;
                jb->last_loss = jb->loss_all[a];
            }
        } else if (!strncmp(s, "set ", 4)) {
            struct setrec sr = {0};
            double wall;
            if (sscanf(s, "set %u %d %d %d %lld %d %lf%n", &sr.version, &sr.S, &sr.D, &sr.n, &a, &x, &wall, &off) !=
                    7 ||
                sr.n < 1 || sr.n > MAX_NODES || sr.S < 1 || sr.D < 1)
                return wf_error(WF_ERR_CORRUPT, "record %d: a bad set record", i + 1);
            sr.step = a;
            sr.wall = wall;
            const char *p = s + off;
            for (int k = 0; k < sr.n; k++) {
                char *end;
                sr.pid[k] = (int)strtol(p, &end, 10);
                p = end;
            }
            jb->sets[jb->nsets++ % MAX_HISTORY] = sr;
            jb->version = sr.version;
            jb->src = x;
        } else if (!strncmp(s, "change ", 7)) {
            struct change c = {0};
            char cause[2 * sizeof c.cause + 2];
            if (sscanf(s, "change %d %d %d %u %u %lld %d %ld %ld %d %lf %lf %lf %600s", &x, &c.failure, &c.takeover,
                       &c.from_version, &c.to_version, &a, &c.src, &c.replayed, &c.high_water, &c.closed, &c.secs,
                       &c.wall0, &c.wall, cause) != 14 ||
                x < 1 || unhex_str(cause, c.cause, sizeof c.cause) < 0)
                return wf_error(WF_ERR_CORRUPT, "record %d: a bad change record", i + 1);
            c.restored = a;
            c.t0 = now - (wall_now - c.wall0);
            jb->ch[(x - 1) % MAX_HISTORY] = c;
            if (x > jb->nch) jb->nch = x;
        } else if (sscanf(s, "eval %d %lld %n", &x, &a, &off) == 2) {
            double tl, te, ta;
            if (sscanf(s + off, "%lf %lf %lf", &tl, &te, &ta) == 3 && x + 1 > jb->evals_logged) {
                jb->evals_logged = x + 1;
                jb->test_loss = te;
                jb->test_acc = ta;
            }
        } else if (sscanf(s, "ckpt %lld", &a) == 1) {
            jb->ckpt_step = a;
        } else if (!strncmp(s, "failure ", 8)) {
            double fu = atof(s + 8);
            if (jb->nfail_times < MAX_HISTORY) jb->fail_times[jb->nfail_times++] = now - (wall_now - fu);
        } else if (!strncmp(s, "start ", 6)) {
            jb->t_start = now - (wall_now - atof(s + 6));
        }
    }
    jb->steps_done = jb->logged;
    jb->ch_open = jb->nch > 0 && !jb->ch[(jb->nch - 1) % MAX_HISTORY].closed ? jb->nch - 1 : -1;
    return WF_OK;
}

/* The checkpoint on disk is what a worker would load: its own step counts,
 * not the last record (the file may be newer than its record). */
static void check_ckpt(struct job *jb) {
    struct wf_ckpt_pos pos;
    jb->ckpt_step = -1;
    if (access(jb->ckpt_path, F_OK) != 0) return;
    if (wf_checkpoint_read(jb->ckpt_path, &jb->job, jb->model_text, jb->steps_per_epoch, NULL, NULL, NULL, NULL, NULL,
                           &pos) == WF_OK)
        jb->ckpt_step = pos.step;
    wf_error_clear();
}

int jl_takeover(struct coord *co, const char *path) {
    struct job *jb = &co->job;
    char *text = NULL;
    size_t len = 0;
    if (access(path, F_OK) != 0) return 0; /* a new journal: the first job starts it */
    int rc = wf_read_file(path, &text, &len);
    if (rc < 0) return rc;
    struct rec *r = NULL;
    size_t good = 0;
    int n = parse_lines(text, len, &r, &good);
    if (n < 0) {
        wf_free(text);
        return n;
    }
    if (good < len) {
        fprintf(stderr, "weft coordinator: journal %s: %zu bytes after record %d are torn or corrupt; cut off\n", path,
                len - good, n);
        if (truncate(path, (off_t)good) < 0) {
            rc = wf_error(WF_ERR_IO, "%s: cannot cut off the torn end: %s", path, strerror(errno));
            goto done;
        }
    }
    int ver = 0, id = 0, ended = 0, job_rec = -1;
    if (n == 0 || sscanf(r[0].s, "weft-journal %d", &ver) != 1 || ver != 1) {
        rc = n == 0 ? 0
                    : wf_error(WF_ERR_CORRUPT, "%s: not a weft journal of version 1 (it starts '%.40s')", path, r[0].s);
        goto done;
    }
    for (int i = 1; i < n; i++) {
        if (!strncmp(r[i].s, "job ", 4)) job_rec = i;
        if (!strncmp(r[i].s, "end ", 4)) ended = 1;
    }
    if (job_rec < 0 || ended) {
        rc = 0;
        goto done;
    }
    /* the job, set up again from its options */
    struct wf_run_opts o = {0};
    unsigned long long hash;
    char hp[8300], hr[8300], jp[4200], rp[4200];
    if (sscanf(r[job_rec].s, "job %d %llx %d %d %d %d %d %d %d %d %d %d %lf %lf %8299s %8299s", &id, &hash, &o.workers,
               &o.pp, &o.dp, &o.micro_batches, &o.schedule, &o.threads, &o.nodes_min, &o.nodes_max, &o.max_recoveries,
               &o.snapshot_every, &o.settle_s, &o.heartbeat_timeout_s, hp, hr) != 16 ||
        unhex_str(hp, jp, sizeof jp) < 0 || unhex_str(hr, rp, sizeof rp) < 0) {
        rc = wf_error(WF_ERR_CORRUPT, "%s: record %d: a bad job record", path, job_rec + 1);
        goto done;
    }
    o.job_path = jp;
    o.resume = rp[0] ? rp : NULL;
    co_job_free(jb);
    jb->client = -1;
    jb->id = id;
    co->next_job = id;
    jb->takeover = 1; /* the metrics file is appended to */
    if (o.heartbeat_timeout_s > 0) co->hb_timeout = o.heartbeat_timeout_s;
    if (!(co->journal = fopen(path, "a"))) {
        rc = wf_error(WF_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
        goto done;
    }
    if ((rc = co_job_setup(jb, &o)) < 0 || job_hash(jb) != hash) {
        char why[1200];
        snprintf(why, sizeof why, "%s", rc < 0 ? wf_errmsg() : "the job file or its model changed since it started");
        fprintf(stderr, "weft coordinator: journal %s: job %d (%s) cannot be taken over: %s\n", path, id, jp, why);
        jl_end(co, jb, 0);
        co_job_free(jb);
        rc = 0;
        goto done;
    }
    if (!jb->elastic) {
        fprintf(stderr,
                "weft coordinator: journal %s: job %d (%s) was running without --nodes, so its workers did not wait "
                "for a coordinator; resume it from %s (weft run --resume)\n",
                path, id, jp, jb->ckpt_path);
        jl_end(co, jb, 0);
        co_job_free(jb);
        rc = 0;
        goto done;
    }
    if ((rc = apply(co, jb, r, n)) < 0) {
        wf_error_prefix(rc, "%s", path);
        goto done;
    }
    if (jb->nsets > 0) { /* the plan of the last set: what its snapshots hold */
        const struct setrec *sr = &jb->sets[(jb->nsets - 1) % MAX_HISTORY];
        if ((sr->S != jb->S || sr->D != jb->D) && (rc = co_job_plan(jb, sr->S, sr->D)) < 0) goto done;
    }
    for (int w = 0; w < MAX_NODES; w++)
        jb->node[w] = -1;
    check_ckpt(jb);
    fix_metrics(co, jb);
    double wait = WF_MAX(5.0, 2 * co->hb_timeout);
    fprintf(stderr, "weft coordinator: journal %s: taking over job %d (%s) at step %ld of %ld\n", path, id, jp,
            jb->logged, jb->total);
    el_takeover_begin(co, jb, wait, path);
    rc = 1;
done:
    wf_free(r);
    wf_free(text);
    return rc;
}
