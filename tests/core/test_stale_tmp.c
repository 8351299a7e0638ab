/*
 * core: wf_remove_stale_tmp, the clean-up of temporaries a killed writer
 * (wf_write_file_atomic: PATH.tmp.PID) left behind. Only "<name>.tmp.<pid>"
 * regular files of a process that is gone are removed; a live pid's, this
 * process's own, other names, subfolders and the files inside them stay.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "weft/core.h"

static char dir[256];

static const char *in_dir(const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void touch(const char *name, size_t bytes) {
    FILE *f = fopen(in_dir(name), "wb");
    CHECKF(f != NULL, "%s: %s", name, strerror(errno));
    if (!f) return;
    for (size_t i = 0; i < bytes; i++)
        fputc('x', f);
    fclose(f);
}

static int exists(const char *name) {
    struct stat st;
    return lstat(in_dir(name), &st) == 0;
}

/* The pid of a child that has exited and been reaped: no such process. */
static long dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    CHECK(p > 0);
    int st;
    waitpid(p, &st, 0);
    return (long)p;
}

static void rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[2048];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/weft-test-stale-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    long dead = dead_pid(), dead2 = dead_pid(), self = (long)getpid(), parent = (long)getppid();
    char name[256];
    snprintf(name, sizeof name, "checkpoint.safetensors.tmp.%ld", dead);
    touch(name, 1000);
    char dead_meta[256];
    snprintf(dead_meta, sizeof dead_meta, "run.meta.tmp.%ld", dead2);
    touch(dead_meta, 0);
    char live[256], own[256], lead0[256], sub_tmp[256], subdir[256], link[256];
    snprintf(live, sizeof live, "checkpoint.safetensors.tmp.%ld", parent); /* the parent runs */
    touch(live, 10);
    snprintf(own, sizeof own, "metrics.jsonl.tmp.%ld", self);
    touch(own, 10);
    snprintf(lead0, sizeof lead0, "x.tmp.0%ld", dead);
    touch(lead0, 1);
    const char *keep[] = {"checkpoint.safetensors", "x.tmp.12abc", "x.tmp.", ".tmp.", "x.tmp.0", "x.tmp.-5",
                          "x.tmp.99999999999999999999", "x.tmp.1.2", "notes.txt",
                          "init.tmp.1" /* pid 1 lives; another user's process when we are not root (EPERM) */};
    char plain_tmp[256];
    snprintf(plain_tmp, sizeof plain_tmp, ".tmp.%ld", dead); /* no <something> */
    touch(plain_tmp, 1);
    for (size_t i = 0; i < WF_ARRAY_LEN(keep); i++)
        touch(keep[i], 3);
    /* A subfolder named like a temporary, and a dead pid's temporary inside one. */
    snprintf(subdir, sizeof subdir, "sub.tmp.%ld", dead);
    CHECK(mkdir(in_dir(subdir), 0755) == 0);
    snprintf(sub_tmp, sizeof sub_tmp, "%s/c.tmp.%ld", subdir, dead);
    touch(sub_tmp, 5);
    /* A symbolic link named like one: not a regular file, kept (and its target too). */
    snprintf(link, sizeof link, "l.tmp.%ld", dead);
    CHECK(symlink(in_dir("notes.txt"), in_dir(link)) == 0);

    int removed = -1;
    int rc = wf_remove_stale_tmp(dir, &removed);
    CHECKF(rc == WF_OK, "%s", wf_errmsg());
    CHECKF(removed == 2, "removed %d", removed);
    CHECK(!exists(name));
    CHECK(!exists(dead_meta));
    CHECK(exists(live));
    CHECK(exists(own));
    CHECK(exists(lead0));
    CHECK(exists(plain_tmp));
    for (size_t i = 0; i < WF_ARRAY_LEN(keep); i++)
        CHECKF(exists(keep[i]), "%s was removed", keep[i]);
    CHECK(exists(subdir) && exists(sub_tmp));
    CHECK(exists(link) && exists("notes.txt"));

    /* Again: nothing more to do; a NULL count is allowed. */
    CHECK(wf_remove_stale_tmp(dir, &removed) == WF_OK && removed == 0);
    CHECK(wf_remove_stale_tmp(dir, NULL) == WF_OK);

    /* A folder that is not there: an error naming it, count 0. */
    removed = -1;
    CHECK(wf_remove_stale_tmp(in_dir("missing"), &removed) == WF_ERR_NOTFOUND && removed == 0);
    CHECKF(strstr(wf_errmsg(), "missing") != NULL, "%s", wf_errmsg());

    rm_rf(dir);
    return wf_test_done("test_stale_tmp");
}
