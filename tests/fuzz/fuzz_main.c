/*
 * fuzz: a main() for builds without libFuzzer (gcc, or clang without
 * -fsanitize=fuzzer): runs a harness's LLVMFuzzerTestOneInput once on every
 * file given, or on every file in every folder given, e.g. to replay a
 * corpus or a crash under gcc's sanitizers:
 *
 *     cc -fsanitize=address,undefined -Iinclude tests/fuzz/fuzz_frame.c tests/fuzz/fuzz_main.c \
 *        build/libweft_comm.a build/libweft_core.a -lz -lm -lpthread -o /tmp/replay
 *     /tmp/replay tests/fuzz/corpus/fuzz_frame build-fuzz/corpus/fuzz_frame crash-1234
 *
 * Prints the number of inputs run; a harness that finds a bug aborts.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (n == cap) buf = realloc(buf, cap *= 2);
        size_t k = fread(buf + n, 1, cap - n, f);
        if (k == 0) break;
        n += k;
    }
    fclose(f);
    /* an exact-size copy, so ASan sees a read past the input's end */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 1;
}

static int run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return -1;
    }
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (stat(sub, &st) == 0 && S_ISREG(st.st_mode)) {
            int k = run_file(sub);
            if (k < 0) {
                closedir(d);
                return -1;
            }
            count += k;
        }
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    int total = 0;
    for (int i = 1; i < argc; i++) {
        int k = run_path(argv[i]);
        if (k < 0) return 1;
        total += k;
    }
    printf("%s: %d inputs ran\n", argv[0], total);
    return 0;
}
