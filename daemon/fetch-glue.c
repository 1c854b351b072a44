/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "fetch-glue.h"
#include "log.h"

#define FETCH_HELPER_NAME "immod-fetch"
/* How long the helper may outlive curl's own total timeout before it is killed: its
 * start, curl's clean-up, and a loaded machine. */
#define FETCH_HELPER_GRACE_USEC (5U * USEC_PER_SEC)
/* The whole answer as the helper writes it, with the NUL immod adds. */
#define FETCH_ANSWER_MAX (sizeof(FetchAnswerHeader) + FETCH_BODY_MAX)

_Static_assert(CONFIG_SERVER_TIMEOUT_S_MAX <= FETCH_TIMEOUT_S_MAX, "a configured timeout must fit in a request");

extern char **environ;

struct FetchRequest {
        FetchGlue *glue;
        FetchRequest *prev, *next;
        pid_t pid;
        sd_event_source *child;  /* the helper's exit */
        sd_event_source *input;  /* writes the request to the helper's stdin */
        sd_event_source *output; /* reads the answer from its stdout */
        sd_event_source *guard;  /* kills a helper that outlives curl's own timeout */
        sd_event_source *failed; /* the helper could not be started: the callback from the loop */
        int start_error;
        char *request; /* holds the body and the token: wiped */
        size_t request_size, request_sent;
        char *answer; /* may hold a token or a passcode: wiped */
        size_t answer_size, answer_allocated;
        bool output_done, exited, timed_out;
        bool answer_invalid; /* too long, or unreadable: logged when seen */
        siginfo_t exit_info;
        FetchRequestCallback cb; /* NULL once cancelled */
        void *userdata;
};

struct FetchGlue {
        sd_event *event;
        const ServerConfig *server;
        char *helper;    /* the helper's path */
        bool allow_http; /* the configuration names a loopback http:// URL */
        FetchRequest *requests;
};

/* The pipes and the timer, and what was sent and received; not the helper itself. */
static void request_stop_io(FetchRequest *r) {
        r->input = sd_event_source_disable_unref(r->input); /* each closes its fd */
        r->output = sd_event_source_disable_unref(r->output);
        r->guard = sd_event_source_disable_unref(r->guard);
        r->failed = sd_event_source_disable_unref(r->failed);
        wipe_free(r->request, r->request_size);
        r->request = NULL;
        wipe_free(r->answer, r->answer_allocated);
        r->answer = NULL;
        r->answer_size = r->answer_allocated = 0;
}

static void request_free(FetchRequest *r) {
        if (!r)
                return;
        if (r->prev)
                r->prev->next = r->next;
        else if (r->glue->requests == r)
                r->glue->requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        request_stop_io(r);
        if (r->child && !r->exited)
                /* at shutdown only: sd-event kills the helper and waits for it */
                (void) sd_event_source_set_child_process_own(r->child, true);
        sd_event_source_disable_unref(r->child);
        free(r);
}

void fetch_request_cancel(FetchRequest *r) {
        if (!r)
                return;
        r->cb = NULL;
        request_stop_io(r);
        r->output_done = true;
        if (r->exited) {
                request_free(r);
                return;
        }
        /* reaped by on_child_exit(), which then frees it: the loop never waits for it */
        (void) sd_event_source_send_child_signal(r->child, SIGKILL, NULL, 0);
}

static void describe_exit(const siginfo_t *si, char *buf, size_t n) {
        if (si->si_code == CLD_EXITED)
                snprintf(buf, n, "exited with status %d", si->si_status);
        else
                snprintf(buf, n, "was killed by signal %s", sigabbrev_np(si->si_status) ?: "?");
}

/* The helper's answer as the callback wants it: error, status and body; logs what was wrong. */
static int answer_parse(FetchRequest *r, long *ret_status, const char **ret_body, size_t *ret_size) {
        const char *helper = r->glue->helper, *why;
        FetchAnswerHeader h;
        char how[64];

        if (r->start_error < 0)
                return r->start_error;
        describe_exit(&r->exit_info, how, sizeof(how));
        if (r->timed_out) {
                log_warning("%s (%s) did not finish within the request's timeout and was killed.", FETCH_HELPER_NAME,
                            helper);
                return -ETIMEDOUT;
        }
        if (r->answer_invalid)
                return -EIO;
        if (r->answer_size < sizeof(h)) {
                log_error("%s (%s) %s without an answer (%zu bytes of one); the HTTPS request failed.",
                          FETCH_HELPER_NAME, helper, how, r->answer_size);
                return -EIO;
        }
        memcpy(&h, r->answer, sizeof(h));
        if (fetch_answer_header_check(&h, &why) < 0) {
                log_error("The answer of %s (%s) is not valid: %s.", FETCH_HELPER_NAME, helper, why);
                return -EIO;
        }
        if (r->answer_size != sizeof(h) + h.body_size) {
                log_error("The answer of %s (%s) has a body of %zu bytes; its header said %" PRIu32 ".",
                          FETCH_HELPER_NAME, helper, r->answer_size - sizeof(h), h.body_size);
                return -EIO;
        }
        if (r->exit_info.si_code != CLD_EXITED || r->exit_info.si_status != 0)
                log_warning("%s (%s) %s after a complete answer; the answer is used.", FETCH_HELPER_NAME, helper,
                            how);
        *ret_status = h.status;
        *ret_body = r->answer + sizeof(h);
        *ret_size = h.body_size;
        return h.error;
}

/* Once the helper has exited and its output is read: the callback, then the end. */
static void request_maybe_complete(FetchRequest *r) {
        const char *body = "";
        size_t size = 0;
        long status = 0;
        int error;

        if (!r->exited || !r->output_done)
                return;
        if (r->cb) {
                error = answer_parse(r, &status, &body, &size);
                if (error < 0) {
                        status = 0;
                        body = "";
                        size = 0;
                }
                r->cb(error, status, body, size, r->userdata);
        }
        request_free(r);
}

static int on_child_exit(sd_event_source *s, const siginfo_t *si, void *userdata) {
        FetchRequest *r = userdata;
        siginfo_t reaped = {};

        r->exited = true;
        r->exit_info = *si;
        /* reaped now rather than after this returns, so that no zombie outlives the callback */
        (void) waitid(P_PID, r->pid, &reaped, WEXITED | WNOHANG);
        request_maybe_complete(r);
        return 0;
}

static int on_start_failed(sd_event_source *s, void *userdata) {
        FetchRequest *r = userdata;

        request_maybe_complete(r);
        return 0;
}

static int on_guard(sd_event_source *s, uint64_t usec, void *userdata) {
        FetchRequest *r = userdata;

        r->timed_out = true;
        (void) sd_event_source_send_child_signal(r->child, SIGKILL, NULL, 0);
        return 0;
}

static int on_input_ready(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FetchRequest *r = userdata;

        while (r->request_sent < r->request_size) {
                ssize_t n = write(fd, r->request + r->request_sent, r->request_size - r->request_sent);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        /* the helper is gone (EPIPE) or broken: its exit says the rest */
                        log_debug_errno(errno, "Cannot write the request to %s: %m", FETCH_HELPER_NAME);
                        break;
                }
                r->request_sent += (size_t) n;
        }
        /* all sent, or never will be: the end of input, and the secrets wiped */
        r->input = sd_event_source_disable_unref(r->input);
        wipe_free(r->request, r->request_size);
        r->request = NULL;
        return 0;
}

static int on_output_ready(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        FetchRequest *r = userdata;

        for (;;) {
                /* one byte kept free for the NUL after the body */
                if (r->answer_size + 1 >= r->answer_allocated) {
                        /* room for one byte beyond the limit: reading it means the answer is too long */
                        size_t a = MIN(MAX(r->answer_allocated * 2, (size_t) 4096), FETCH_ANSWER_MAX + 2);
                        char *p;

                        if (a <= r->answer_allocated) {
                                log_error("%s (%s) sent more than an answer may hold (%zu bytes).", FETCH_HELPER_NAME,
                                          r->glue->helper, FETCH_ANSWER_MAX);
                                r->answer_invalid = true;
                                break;
                        }
                        p = malloc(a);
                        if (!p) {
                                log_oom();
                                r->answer_invalid = true;
                                break;
                        }
                        if (r->answer) {
                                memcpy(p, r->answer, r->answer_size);
                                wipe_free(r->answer, r->answer_allocated);
                        }
                        r->answer = p;
                        r->answer_allocated = a;
                }
                ssize_t n = read(fd, r->answer + r->answer_size, r->answer_allocated - r->answer_size - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        log_error_errno(errno, "Cannot read the answer of %s: %m", FETCH_HELPER_NAME);
                        r->answer_invalid = true;
                        break;
                }
                if (n == 0)
                        break;
                r->answer_size += (size_t) n;
                r->answer[r->answer_size] = 0;
        }
        r->output = sd_event_source_disable_unref(r->output);
        r->output_done = true;
        request_maybe_complete(r);
        return 0;
}

static void request_append(FetchRequest *r, const void *data, size_t size) {
        memcpy(r->request + r->request_size, data, size);
        r->request_size += size;
}

/* The request as fetch-frame.h has it, each field checked as the helper will check it. */
static int request_build(FetchGlue *g, FetchRequest *r, const char *const fields[static _FETCH_FIELD_MAX]) {
        const ServerConfig *s = g->server;
        FetchRequestHeader h = {
                .magic = FETCH_REQUEST_MAGIC,
                .timeout_s = MIN(s->timeout_s ?: CONFIG_DEFAULT_SERVER_TIMEOUT_S, FETCH_TIMEOUT_S_MAX),
                .flags = g->allow_http ? FETCH_FLAG_ALLOW_HTTP : 0,
        };
        size_t sizes[_FETCH_FIELD_MAX], total = sizeof(h);
        const char *why;

        for (FetchField f = 0; f < _FETCH_FIELD_MAX; f++) {
                sizes[f] = fields[f] ? strlen(fields[f]) : 0;
                if (fetch_field_check(f, fields[f] ?: "", sizes[f], &why) < 0)
                        return log_error_errno(EINVAL, "Cannot make an HTTPS request: its %s %s.",
                                               fetch_field_to_string(f), why);
                total += sizeof(uint32_t) + sizes[f];
        }
        r->request = malloc(total);
        if (!r->request)
                return -ENOMEM;
        request_append(r, &h, sizeof(h));
        for (FetchField f = 0; f < _FETCH_FIELD_MAX; f++) {
                uint32_t n = (uint32_t) sizes[f];

                request_append(r, &n, sizeof(n));
                if (n > 0)
                        request_append(r, fields[f], n);
        }
        return 0;
}

/* The helper with its stdin and stdout on the pipes, no other fd of ours, default signals. */
static int helper_spawn(FetchGlue *g, int stdin_fd, int stdout_fd, pid_t *ret) {
        char *argv[] = { (char *) FETCH_HELPER_NAME, NULL };
        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int k;

        sigemptyset(&none);
        sigfillset(&all);
        k = posix_spawn_file_actions_init(&actions);
        if (k != 0)
                return -k;
        k = posix_spawnattr_init(&attr);
        if (k != 0) {
                posix_spawn_file_actions_destroy(&actions);
                return -k;
        }
        /* immod blocks SIGTERM, SIGINT and SIGCHLD for sd-event: the helper must not */
        if (k == 0)
                k = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (k == 0)
                k = posix_spawnattr_setsigmask(&attr, &none);
        if (k == 0)
                k = posix_spawnattr_setsigdefault(&attr, &all);
        if (k == 0)
                k = posix_spawn_file_actions_adddup2(&actions, stdin_fd, STDIN_FILENO);
        if (k == 0)
                k = posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
        /* stderr stays immod's, for the helper's messages; nothing else: not the D-Bus
         * connection, not the CAN sockets */
        if (k == 0)
                k = posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
        if (k == 0)
                k = posix_spawn(ret, g->helper, &actions, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&actions);
        return -k;
}

static int request_start(FetchGlue *g, FetchRequest *r) {
        _cleanup_close_ int in_read = -1, in_write = -1, out_read = -1, out_write = -1;
        unsigned timeout_s = MIN(g->server->timeout_s ?: CONFIG_DEFAULT_SERVER_TIMEOUT_S, FETCH_TIMEOUT_S_MAX);
        int fds[2], k;

        if (pipe2(fds, O_CLOEXEC) < 0)
                return log_error_errno(errno, "Cannot make a pipe for %s: %m", FETCH_HELPER_NAME);
        in_read = fds[0];
        in_write = fds[1];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return log_error_errno(errno, "Cannot make a pipe for %s: %m", FETCH_HELPER_NAME);
        out_read = fds[0];
        out_write = fds[1];
        /* our ends only: the helper reads and writes blocking */
        if (fcntl(in_write, F_SETFL, O_NONBLOCK) < 0 || fcntl(out_read, F_SETFL, O_NONBLOCK) < 0)
                return log_error_errno(errno, "Cannot make the pipes of %s non-blocking: %m", FETCH_HELPER_NAME);

        k = helper_spawn(g, in_read, out_write, &r->pid);
        if (k < 0) {
                log_error_errno(k, "Cannot start the HTTPS helper %s (%s): %m; passcodes and approvals cannot be "
                                   "fetched.",
                                FETCH_HELPER_NAME, g->helper);
                /* a failed request like any other, answered from the loop */
                r->start_error = -ENOEXEC;
                r->exited = r->output_done = true;
                k = sd_event_add_defer(g->event, &r->failed, on_start_failed, r);
                if (k < 0)
                        return log_error_errno(k, "Cannot schedule the answer of a failed request: %m");
                (void) sd_event_source_set_description(r->failed, "fetch-failed");
                return 0;
        }
        in_read = safe_close(in_read);
        out_write = safe_close(out_write);

        /* From here on the helper runs: on failure, request_free() kills and reaps it. */
        k = sd_event_add_child(g->event, &r->child, r->pid, WEXITED, on_child_exit, r);
        if (k < 0) {
                (void) kill(r->pid, SIGKILL);
                (void) waitpid(r->pid, NULL, 0);
                return log_error_errno(k, "Cannot watch %s: %m", FETCH_HELPER_NAME);
        }
        (void) sd_event_source_set_description(r->child, "fetch-child");
        k = sd_event_add_io(g->event, &r->input, in_write, EPOLLOUT, on_input_ready, r);
        if (k < 0)
                return log_error_errno(k, "Cannot watch the pipe to %s: %m", FETCH_HELPER_NAME);
        (void) sd_event_source_set_io_fd_own(r->input, true);
        TAKE_FD(in_write);
        (void) sd_event_source_set_description(r->input, "fetch-input");
        k = sd_event_add_io(g->event, &r->output, out_read, EPOLLIN, on_output_ready, r);
        if (k < 0)
                return log_error_errno(k, "Cannot watch the pipe from %s: %m", FETCH_HELPER_NAME);
        (void) sd_event_source_set_io_fd_own(r->output, true);
        TAKE_FD(out_read);
        (void) sd_event_source_set_description(r->output, "fetch-output");
        k = sd_event_add_time_relative(g->event, &r->guard, CLOCK_MONOTONIC,
                                       timeout_s * USEC_PER_SEC + FETCH_HELPER_GRACE_USEC, USEC_PER_SEC, on_guard, r);
        if (k < 0)
                return log_error_errno(k, "Cannot arm the timer of %s: %m", FETCH_HELPER_NAME);
        (void) sd_event_source_set_description(r->guard, "fetch-guard");
        return 0;
}

int fetch_glue_request(FetchGlue *g, const char *method, const char *url, const char *json_body, const char *bearer,
                       const char *header, FetchRequestCallback cb, void *userdata, FetchRequest **ret) {
        const ServerConfig *s = g->server;
        const char *fields[_FETCH_FIELD_MAX] = {
                [FETCH_FIELD_METHOD] = method,
                [FETCH_FIELD_URL] = url,
                [FETCH_FIELD_BODY] = json_body,
                [FETCH_FIELD_BEARER] = bearer,
                [FETCH_FIELD_HEADER] = header,
                [FETCH_FIELD_CA_FILE] = s->ca_file,
                [FETCH_FIELD_CLIENT_CERT] = s->client_cert,
                [FETCH_FIELD_CLIENT_KEY] = s->client_cert ? s->client_key : NULL,
        };
        FetchRequest *r;
        int k;

        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->glue = g;
        r->cb = cb;
        r->userdata = userdata;
        r->next = g->requests;
        if (g->requests)
                g->requests->prev = r;
        g->requests = r;

        k = request_build(g, r, fields);
        if (k >= 0)
                k = request_start(g, r);
        if (k < 0) {
                r->cb = NULL;
                request_free(r);
                return k;
        }
        if (ret)
                *ret = r;
        return 0;
}

/* immod-fetch beside immod's own executable (the build tree), else the installed one. */
static int helper_find(char **ret) {
        char self[PATH_MAX], *slash, *p;
        ssize_t n;

        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = 0;
                slash = strrchr(self, '/');
                if (slash && (size_t) (slash - self) + 1 + strlen(FETCH_HELPER_NAME) < sizeof(self)) {
                        strcpy(slash + 1, FETCH_HELPER_NAME);
                        if (access(self, F_OK) >= 0) {
                                p = strdup(self);
                                goto done;
                        }
                }
        }
        p = strdup(FETCH_HELPER_PATH);
done:
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int fetch_glue_new(sd_event *e, const ServerConfig *server, FetchGlue **ret) {
        FetchGlue *g;
        int r;

        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        r = helper_find(&g->helper);
        if (r < 0) {
                free(g);
                return r;
        }
        g->event = sd_event_ref(e);
        g->server = server;
        g->allow_http = server->url && startswith(server->url, "http://");
        log_debug("HTTPS requests go through %s.", g->helper);
        *ret = g;
        return 0;
}

FetchGlue *fetch_glue_free(FetchGlue *g) {
        if (!g)
                return NULL;
        while (g->requests) {
                g->requests->cb = NULL;
                request_free(g->requests);
        }
        sd_event_unref(g->event);
        free(g->helper);
        free(g);
        return NULL;
}
