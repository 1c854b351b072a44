/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "fileio.h"

#define LINE_MAX_SIZE (64 * 1024)

int write_all(int fd, const void *data, size_t size) {
        const uint8_t *p = data;

        while (size > 0) {
                ssize_t n = write(fd, p, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                size -= n;
        }
        return 0;
}

int read_exact(int fd, void *buf, size_t size) {
        uint8_t *p = buf;

        while (size > 0) {
                ssize_t n = read(fd, p, size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EPIPE;
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

int fsync_parent(const char *path) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int fd = -1;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (asprintf(&tmp, "%s.tmpXXXXXX", path) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;

        r = write_all(fd, data, size);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        /* the rename itself is only durable once the folder is on disk */
        return fsync_parent(path);
}

int append_line_synced(const char *path, const char *line, mode_t mode) {
        _cleanup_close_ int fd = -1;
        size_t n = strlen(line);
        struct stat st;
        int r;

        if (n == 0 || n > LINE_MAX_SIZE)
                return -EINVAL;
        fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        /* other writers (a second simulator, a restarted daemon) append whole lines too */
        if (flock(fd, LOCK_EX) < 0)
                return -errno;

        /* a crash may have left half a line: never glue this one onto it */
        if (fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size > 0) {
                char last;
                if (pread(fd, &last, 1, st.st_size - 1) != 1)
                        return errno > 0 ? -errno : -EIO;
                if (last != '\n') {
                        r = write_all(fd, "\n", 1);
                        if (r < 0)
                                return r;
                }
        }

        r = write_all(fd, line, n);
        if (r >= 0 && line[n - 1] != '\n')
                r = write_all(fd, "\n", 1);
        if (r < 0)
                return r;
        return fsync(fd) < 0 ? -errno : 0;
}

int unlink_synced(const char *path) {
        if (unlink(path) < 0)
                return errno == ENOENT ? 0 : -errno;
        /* a removal that is not on disk would bring the file back after a power loss */
        return fsync_parent(path);
}

int read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t size = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;

        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        /* read up to one byte more than allowed, rather than trust st_size */
        for (;;) {
                ssize_t n = read(fd, buf + size, max + 1 - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += n;
                if (size > max)
                        return -EFBIG;
        }
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}
