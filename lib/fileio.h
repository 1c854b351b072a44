/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Files that must survive a crash: the simulator's car, immod's journal and audit log,
 * the server's configuration. A crash or power loss leaves either the old or the new
 * content of a replaced file, and never a half line in an appended one.
 */

#include <sys/types.h>

#include "util.h"

/* Writes `data` to a temporary file next to `path`, fsyncs it, renames it over `path`
 * and fsyncs the folder. */
int write_file_atomic(const char *path, const void *data, size_t size, mode_t mode);

/* Appends one line (a '\n' is added when missing) under an exclusive flock, then fsyncs.
 * The file is created with `mode` when missing. Lines are at most 64 KiB. When a crash cut
 * the last line short, the new line starts on a line of its own. */
int append_line_synced(const char *path, const char *line, mode_t mode);

/* fsyncs the folder that holds `path`, so that a rename or a new file in it survives a
 * power loss. */
int fsync_parent(const char *path);

/* Removes a file and fsyncs its folder, so the removal survives a power loss.
 * 0 when the file was already gone. */
int unlink_synced(const char *path);

/* Reads a whole regular file of at most `max` bytes, NUL-terminated.
 * -EFBIG when larger, -EBADF when not a regular file. */
int read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_size);

/* write() until everything is written or an error comes. */
int write_all(int fd, const void *data, size_t size);
/* Reads exactly size bytes: 0, -EPIPE when the input ends first, or another -errno. */
int read_exact(int fd, void *buf, size_t size);
