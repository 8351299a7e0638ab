/* core: time, resource usage and whole-file I/O with atomic replacement. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "weft/core.h"

double wf_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double wf_cpu_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long wf_peak_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int wf_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = wf_malloc(cap);
    if (!buf) {
        fclose(f);
        return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = wf_realloc(buf, cap * 2);
            if (!nb) {
                wf_free(buf);
                fclose(f);
                return wf_error(WF_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? errno : 0; /* e.g. EISDIR: fopen opens a directory, reading it fails */
    fclose(f);
    if (err) {
        wf_free(buf);
        return wf_error(WF_ERR_IO, "%s: read failed: %s", path, strerror(err));
    }
    buf[n] = 0;
    *data = buf;
    if (len) *len = n;
    return WF_OK;
}

static int fsync_dir_of(const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    int fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return WF_OK; /* best effort */
    fsync(fd);
    close(fd);
    return WF_OK;
}

int wf_write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return wf_error(WF_ERR_INVALID, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return wf_error(WF_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return wf_error(WF_ERR_IO, "%s: write failed: %s", tmp, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return wf_error(WF_ERR_IO, "%s: fsync failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return wf_error(WF_ERR_IO, "%s: rename failed: %s", path, strerror(e));
    }
    return fsync_dir_of(path);
}

int wf_mkdir_p(const char *path) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return wf_error(WF_ERR_INVALID, "bad directory path '%s'", path);
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return wf_error(WF_ERR_IO, "%s: cannot create directory: %s", tmp, strerror(errno));
            tmp[i] = c;
        }
    }
    return WF_OK;
}

/* The pid in NAME = "<something>.tmp.<pid>" (the names wf_write_file_atomic
 * and the safetensors writer use), or 0 when the name is not of that form:
 * an empty <something>, an empty pid, a sign, a leading zero, anything after
 * the digits, or a pid beyond pid_t. */
static long tmp_name_pid(const char *name) {
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp."))
        t = p;
    if (!t || t == name) return 0;
    const char *d = t + 5;
    if (*d < '1' || *d > '9') return 0;
    long pid = 0;
    for (; *d; d++) {
        if (*d < '0' || *d > '9') return 0;
        pid = pid * 10 + (*d - '0');
        if (pid > INT_MAX) return 0;
    }
    return pid;
}

int wf_remove_stale_tmp(const char *dir, int *removed) {
    if (removed) *removed = 0;
    DIR *d = opendir(dir);
    if (!d)
        return wf_error(errno == ENOENT ? WF_ERR_NOTFOUND : WF_ERR_IO, "%s: cannot list folder: %s", dir,
                        strerror(errno));
    long self = (long)getpid();
    int n = 0, rc = WF_OK;
    struct dirent *e;
    for (errno = 0; (e = readdir(d)); errno = 0) {
        long pid = tmp_name_pid(e->d_name);
        /* Only a writer that is gone: kill(pid, 0) fails with EPERM for
         * another user's live process, which is kept. */
        if (pid == 0 || pid == self || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
            if (errno != ENOENT && rc == WF_OK)
                rc = wf_error(WF_ERR_IO, "%s/%s: cannot remove stale temporary file: %s", dir, e->d_name,
                              strerror(errno));
            continue;
        }
        WF_LOGW("core", "%s/%s: removed a stale temporary file (%" PRIu64 " bytes) left by process %ld, which is gone",
                dir, e->d_name, (uint64_t)st.st_size, pid);
        n++;
    }
    if (!e && errno != 0 && rc == WF_OK) rc = wf_error(WF_ERR_IO, "%s: cannot list folder: %s", dir, strerror(errno));
    closedir(d);
    if (removed) *removed = n;
    return rc;
}
