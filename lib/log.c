/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "log.h"

static int max_level = LOG_INFO;
static const char *ident;

usec_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                abort(); /* only with an invalid clock id, a programming error */
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_ident(const char *i) {
        ident = i;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        int saved_errno = errno;
        char buf[2048];
        va_list ap;

        if (error < 0)
                error = -error;

        if (level <= max_level) {
                /* %m in the format means the error passed in, not whatever errno happens to be. */
                errno = error;
                va_start(ap, format);
                vsnprintf(buf, sizeof(buf), format, ap);
                va_end(ap);

                if (getenv("JOURNAL_STREAM"))
                        fprintf(stderr, "<%d>%s\n", level, buf);
                else if (ident)
                        fprintf(stderr, "%s: %s\n", ident, buf);
                else
                        fprintf(stderr, "%s\n", buf);
        }

        errno = saved_errno;
        return -error;
}
