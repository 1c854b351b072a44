/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _unused_ __attribute__((unused))

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

/* free() that returns NULL, for p = mfree(p). */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Secrets (tokens, passcodes, bodies that carry them): zeroed before free(); NULL is fine. */
static inline void wipe_free(void *p, size_t n) {
        if (!p)
                return;
        explicit_bzero(p, n);
        free(p);
}

static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

/* Closes fd when it is open; always -1, to assign back. */
static inline int safe_close(int fd) {
        if (fd >= 0)
                (void) close(fd);
        return -1;
}

/* Takes ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p)                        \
        ({                                 \
                __typeof__(p) _tmp_ = (p); \
                (p) = NULL;                \
                _tmp_;                     \
        })
#define TAKE_FD(fd)               \
        ({                        \
                int _tmp_ = (fd); \
                (fd) = -1;        \
                _tmp_;            \
        })

static inline bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

/* NAME_to_string() and NAME_from_string() over `static const char *const NAME_table[MAX]`,
 * a table of names indexed by an enum (as systemd's DEFINE_STRING_TABLE_LOOKUP): NULL for a
 * value out of range, -EINVAL for an unknown name, *ret untouched then. */
#define DEFINE_STRING_TABLE_TO_STRING(name, type, max)                           \
        const char *name##_to_string(type v) {                                   \
                return (unsigned) v < (unsigned) (max) ? name##_table[v] : NULL; \
        }
#define DEFINE_STRING_TABLE_FROM_STRING(name, type, max)              \
        int name##_from_string(const char *s, type *ret) {            \
                int i_ = string_table_lookup(name##_table, (max), s); \
                if (i_ < 0)                                           \
                        return i_;                                    \
                *ret = (type) i_;                                     \
                return 0;                                             \
        }
#define DEFINE_STRING_TABLE_LOOKUP(name, type, max)    \
        DEFINE_STRING_TABLE_TO_STRING(name, type, max) \
        DEFINE_STRING_TABLE_FROM_STRING(name, type, max)

/* Index of s in a table of names indexed by an enum (NULL entries allowed), or -EINVAL. */
static inline int string_table_lookup(const char *const *table, size_t n, const char *s) {
        for (size_t i = 0; s && i < n; i++)
                if (table[i] && strcmp(table[i], s) == 0)
                        return (int) i;
        return -EINVAL;
}

static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

/* Big-endian helpers: every multi-byte integer on the wire is big-endian. */
static inline uint16_t be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}
static inline uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}
static inline void put_be16(uint8_t *p, uint16_t v) {
        p[0] = v >> 8;
        p[1] = v & 0xff;
}
static inline void put_be32(uint8_t *p, uint32_t v) {
        p[0] = v >> 24;
        p[1] = (v >> 16) & 0xff;
        p[2] = (v >> 8) & 0xff;
        p[3] = v & 0xff;
}

/* Time, in microseconds, as sd-event counts it. */
typedef uint64_t usec_t;
#define USEC_INFINITY ((usec_t) UINT64_MAX)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define USEC_PER_SEC ((usec_t) 1000000ULL)

usec_t now_usec(clockid_t clock);
