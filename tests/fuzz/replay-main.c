/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Stands in for libFuzzer in a normal build: runs LLVMFuzzerTestOneInput() once on every
 * file named on the command line, or in a directory named there (the seed corpus and the
 * crashers kept with it), so every test run replays them. A crasher aborts; the file
 * being run is printed first, so the log names it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
        FILE *f;
        uint8_t *buf = NULL;
        size_t size = 0, cap = 0, n;

        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return -1;
        }
        for (;;) {
                if (size == cap) {
                        uint8_t *p;
                        cap = cap ? 2 * cap : 4096;
                        p = realloc(buf, cap);
                        if (!p) {
                                fprintf(stderr, "%s: out of memory\n", path);
                                free(buf);
                                fclose(f);
                                return -1;
                        }
                        buf = p;
                }
                n = fread(buf + size, 1, cap - size, f);
                if (n == 0)
                        break;
                size += n;
        }
        if (ferror(f)) {
                fprintf(stderr, "%s: read error\n", path);
                free(buf);
                fclose(f);
                return -1;
        }
        fclose(f);

        fprintf(stderr, "Running %s (%zu bytes)\n", path, size);
        /* a copy of exactly the input's size, as libFuzzer hands it */
        uint8_t *copy = malloc(size ? size : 1);
        if (!copy) {
                free(buf);
                return -1;
        }
        if (size)
                memcpy(copy, buf, size);
        free(buf);
        (void) LLVMFuzzerTestOneInput(copy, size);
        free(copy);
        return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_dir(const char *dir, unsigned *count) {
        struct dirent **names;
        int n, ret = 0;

        n = scandir(dir, &names, NULL, by_name);
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        for (int i = 0; i < n; i++) {
                char path[4096];
                struct stat st;

                if (names[i]->d_name[0] != '.' &&
                    (size_t) snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) < sizeof(path) &&
                    stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        if (run_file(path) < 0)
                                ret = -1;
                        else
                                (*count)++;
                }
                free(names[i]);
        }
        free(names);
        return ret;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;
        int ret = 0;

        if (argc < 2) {
                fprintf(stderr, "Usage: %s FILE|DIRECTORY...\n", argv[0]);
                return 2;
        }

        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        ret = 1;
                } else if (S_ISDIR(st.st_mode)) {
                        if (run_dir(argv[i], &count) < 0)
                                ret = 1;
                } else if (run_file(argv[i]) < 0)
                        ret = 1;
                else
                        count++;
        }

        fprintf(stderr, "%u inputs run%s\n", count, ret ? ", some could not be read" : "");
        return ret;
}
