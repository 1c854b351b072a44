/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "input.h"
#include "util.h"

static void strip_trailing_blanks(char *s) {
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                s[--n] = 0;
}

int input_take_line(Input *in, char *ret, size_t size) {
        char *nl = memchr(in->buf, '\n', in->len);

        if (!nl) {
                if (in->len == INPUT_LINE_MAX) { /* full without a newline: drop it */
                        in->len = 0;
                        in->overlong = true;
                        return -E2BIG;
                }
                if (in->eof) {
                        if (in->len == 0 || in->overlong)
                                return -EPIPE;
                        nl = in->buf + in->len; /* a last line without its newline */
                } else
                        return 0;
        }

        size_t n = (size_t) (nl - in->buf);
        bool was_overlong = in->overlong;
        in->overlong = false;
        if (!was_overlong) {
                if (n + 1 > size)
                        n = size - 1;
                memcpy(ret, in->buf, n);
                ret[n] = 0;
                strip_trailing_blanks(ret);
        }
        size_t used = MIN((size_t) (nl - in->buf) + 1, in->len);
        memmove(in->buf, in->buf + used, in->len - used);
        in->len -= used;
        return was_overlong ? -E2BIG : 1;
}

int input_fill(Input *in) {
        ssize_t n;

        if (in->eof || in->len >= INPUT_LINE_MAX)
                return 0;
        n = read(in->fd, in->buf + in->len, INPUT_LINE_MAX - in->len);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0)
                in->eof = true;
        in->len += (size_t) n;
        return 0;
}

bool input_set_echo(int fd, bool on) {
        struct termios t;

        if (!isatty(fd) || tcgetattr(fd, &t) < 0)
                return false;
        if (on)
                t.c_lflag |= ECHO;
        else
                t.c_lflag &= ~(tcflag_t) ECHO;
        return tcsetattr(fd, TCSANOW, &t) == 0;
}

bool input_is_confirmation(const char *line, const char *wanted) {
        while (isspace((unsigned char) *line))
                line++;
        size_t n = strlen(wanted);
        if (strncasecmp(line, wanted, n) != 0)
                return false;
        for (line += n; *line; line++)
                if (!isspace((unsigned char) *line))
                        return false;
        return true;
}

void erase_and_free(char *secret) {
        if (!secret)
                return;
        explicit_bzero(secret, strlen(secret));
        free(secret);
}
