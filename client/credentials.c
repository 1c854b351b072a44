/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "credentials.h"
#include "fileio.h"
#include "log.h"

#define CREDENTIAL_MAX 256 /* the passcode service's own limit for user ids and passwords */

/* Reads one line from the person, blocking; echo off for a password. */
static int ask_line(Context *c, const char *question, bool secret, char *ret, size_t size) {
        bool echo_off = false;
        int r;

        if (c->no_ask || !isatty(c->input.fd)) {
                log_error("%s is needed, but there is no terminal to ask on (--no-ask, or input is not a "
                          "terminal): give --user and --password-file.",
                          secret ? "The passcode service password" : "The passcode service user");
                return IMMOCTL_EXIT_USAGE;
        }
        fprintf(stderr, "%s", question);
        fflush(stderr);
        if (secret)
                echo_off = input_set_echo(c->input.fd, false);
        for (;;) {
                r = input_take_line(&c->input, ret, size);
                if (r != 0)
                        break;
                struct pollfd p = { .fd = c->input.fd, .events = POLLIN };
                if (poll(&p, 1, -1) < 0) {
                        r = errno == EINTR ? -ECANCELED : -errno;
                        break;
                }
                r = input_fill(&c->input);
                if (r < 0)
                        break;
        }
        if (echo_off) {
                input_set_echo(c->input.fd, true);
                fputc('\n', stderr);
        }
        if (r == -E2BIG) {
                log_error("That was longer than %d characters.", CREDENTIAL_MAX);
                return IMMOCTL_EXIT_USAGE;
        }
        if (r == -EPIPE) {
                log_error("The input ended before an answer was given.");
                return IMMOCTL_EXIT_USAGE;
        }
        return r < 0 ? r : 0;
}

static int check_credential(const char *what, const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > CREDENTIAL_MAX) {
                log_error("The passcode service %s must be 1 to %d characters long.", what, CREDENTIAL_MAX);
                return IMMOCTL_EXIT_USAGE;
        }
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f) {
                        log_error("The passcode service %s contains a control character.", what);
                        return IMMOCTL_EXIT_USAGE;
                }
        return 0;
}

int credentials_get(Context *c) {
        char line[CREDENTIAL_MAX + 2];
        int r;

        if (!c->user) {
                r = ask_line(c, "Passcode service user: ", false, line, sizeof(line));
                if (r != 0)
                        return r;
                r = check_credential("user", line);
                if (r != 0)
                        return r;
                c->user_buf = strdup(line);
                if (!c->user_buf)
                        return log_oom();
                c->user = c->user_buf;
        }

        if (c->password)
                return 0;
        if (c->password_file) {
                _cleanup_free_ char *text = NULL;
                size_t size;

                r = read_file_bounded(c->password_file, CREDENTIAL_MAX + 1, &text, &size);
                if (r < 0) {
                        log_error_errno(r, "Cannot read the password file %s: %m", c->password_file);
                        return IMMOCTL_EXIT_USAGE;
                }
                /* one line; its newline is not part of the password */
                text[strcspn(text, "\r\n")] = 0;
                r = check_credential("password", text);
                if (r == 0)
                        c->password = strdup(text);
                explicit_bzero(text, size);
                if (r != 0)
                        return r;
        } else {
                char prompt[CREDENTIAL_MAX + 32];

                snprintf(prompt, sizeof(prompt), "Password of %s (not shown, not stored): ", c->user);
                r = ask_line(c, prompt, true, line, sizeof(line));
                if (r == 0)
                        r = check_credential("password", line);
                if (r == 0)
                        c->password = strdup(line);
                explicit_bzero(line, sizeof(line));
                if (r != 0)
                        return r;
        }
        return c->password ? 0 : log_oom();
}

void credentials_forget(Context *c) {
        erase_and_free(c->password);
        c->password = NULL;
        if (c->user_buf) { /* asked: ask again, it may have been the wrong one */
                free(c->user_buf);
                c->user_buf = NULL;
                c->user = NULL;
        }
}

int credentials_append(Context *c, sd_bus_message *m) {
        return sd_bus_message_append(m, "a{sv}", 2, "user", "s", c->user, "password", "s", c->password);
}
