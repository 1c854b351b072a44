/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>

#include "fileio.h"

static char dir[] = "/tmp/test-fileio-XXXXXX";
static char path[256];

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/file", dir);
        return 0;
}

static int teardown(void **state) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static unsigned entries_in_dir(void) {
        DIR *d = opendir(dir);
        struct dirent *e;
        unsigned n = 0;

        assert_non_null(d);
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n;
}

static void test_atomic_replace(void **state) {
        _cleanup_free_ char *text = NULL;
        struct stat st;
        size_t size;

        unlink(path);
        assert_int_equal(write_file_atomic(path, "first\n", 6, 0600), 0);
        assert_int_equal(read_file_bounded(path, 100, &text, &size), 0);
        assert_string_equal(text, "first\n");
        assert_int_equal(size, 6);
        free(TAKE_PTR(text));

        assert_int_equal(write_file_atomic(path, "second, longer\n", 15, 0640), 0);
        assert_int_equal(read_file_bounded(path, 100, &text, NULL), 0);
        assert_string_equal(text, "second, longer\n");
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0640);
        /* no temporary file left behind */
        assert_int_equal(entries_in_dir(), 1);
}

static void test_atomic_failure_leaves_nothing(void **state) {
        char bad[300];

        snprintf(bad, sizeof(bad), "%s/missing-folder/file", dir);
        assert_int_equal(write_file_atomic(bad, "x", 1, 0600), -ENOENT);
}

static void test_append_lines(void **state) {
        _cleanup_free_ char *text = NULL;
        char big[70 * 1024];

        unlink(path);
        assert_int_equal(append_line_synced(path, "{\"a\":1}", 0600), 0);
        assert_int_equal(append_line_synced(path, "{\"b\":2}\n", 0600), 0);
        assert_int_equal(read_file_bounded(path, 100, &text, NULL), 0);
        assert_string_equal(text, "{\"a\":1}\n{\"b\":2}\n");

        /* a crash cut the last line short: the next record starts on a line of its own */
        {
                FILE *f = fopen(path, "a");
                assert_non_null(f);
                fputs("{\"c\":", f);
                fclose(f);
        }
        assert_int_equal(append_line_synced(path, "{\"d\":4}", 0600), 0);
        free(TAKE_PTR(text));
        assert_int_equal(read_file_bounded(path, 100, &text, NULL), 0);
        assert_string_equal(text, "{\"a\":1}\n{\"b\":2}\n{\"c\":\n{\"d\":4}\n");

        assert_int_equal(append_line_synced(path, "", 0600), -EINVAL);
        memset(big, 'x', sizeof(big));
        big[sizeof(big) - 1] = 0;
        assert_int_equal(append_line_synced(path, big, 0600), -EINVAL);
}

static void test_read_bounds(void **state) {
        _cleanup_free_ char *text = NULL;
        size_t size = 12345;

        assert_int_equal(write_file_atomic(path, "0123456789", 10, 0600), 0);
        assert_int_equal(read_file_bounded(path, 10, &text, &size), 0);
        assert_int_equal(size, 10);
        free(TAKE_PTR(text));
        assert_int_equal(read_file_bounded(path, 9, &text, &size), -EFBIG);
        assert_null(text);
        assert_int_equal(read_file_bounded(dir, 100, &text, NULL), -EBADF);
        assert_int_equal(read_file_bounded("/nonexistent/file", 100, &text, NULL), -ENOENT);

        assert_int_equal(write_file_atomic(path, "", 0, 0600), 0);
        assert_int_equal(read_file_bounded(path, 10, &text, &size), 0);
        assert_int_equal(size, 0);
        assert_string_equal(text, "");
}

static void test_unlink_synced(void **state) {
        assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
        assert_int_equal(unlink_synced(path), 0);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(unlink_synced(path), 0); /* already gone */
        assert_int_equal(unlink_synced(dir), -EISDIR);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_atomic_replace),
                cmocka_unit_test(test_atomic_failure_leaves_nothing),
                cmocka_unit_test(test_append_lines),
                cmocka_unit_test(test_read_bounds),
                cmocka_unit_test(test_unlink_synced),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
