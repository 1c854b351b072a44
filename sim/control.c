/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "control.h"
#include "hex.h"
#include "log.h"
#include "parse-util.h"

typedef struct Client {
        Control *control;
        int fd;
        sd_event_source *io;
        char in[CONTROL_LINE_MAX];
        size_t n_in;
        bool discarding; /* the rest of an overlong line, or of one with a NUL */
        bool had_nul;
        char *out;
        size_t n_out;
        bool follows_events;
        bool dead; /* dropped while another handler ran: freed by its own handler */
} Client;

struct Control {
        Ecu *ecu;
        char path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        int fd;
        sd_event_source *listen_io;
        Client *clients[CONTROL_MAX_CLIENTS];
};

static void client_free(Client *c) {
        Control *ctl = c->control;

        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
                if (ctl->clients[i] == c)
                        ctl->clients[i] = NULL;
        sd_event_source_disable_unref(c->io);
        close(c->fd);
        free(c->out);
        free(c);
}

static int client_flush(Client *c) {
        ssize_t n;

        while (c->n_out > 0) {
                n = send(c->fd, c->out, c->n_out, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -errno;
                }
                memmove(c->out, c->out + n, c->n_out - (size_t) n);
                c->n_out -= (size_t) n;
        }
        return sd_event_source_set_io_events(c->io, EPOLLIN | (c->n_out > 0 ? EPOLLOUT : 0));
}

/* Queues one line; a client that reads nothing for long is dropped (-ENOBUFS). */
static int client_write_line(Client *c, const char *line) {
        size_t len = strlen(line);
        char *n;

        if (c->n_out + len + 1 > CONTROL_OUT_MAX)
                return -ENOBUFS;
        n = realloc(c->out, c->n_out + len + 1);
        if (!n)
                return -ENOMEM;
        c->out = n;
        memcpy(c->out + c->n_out, line, len);
        c->out[c->n_out + len] = '\n';
        c->n_out += len + 1;
        return client_flush(c);
}

static int client_reply(Client *c, json_t *j) {
        _cleanup_free_ char *s = NULL;

        if (!j)
                return -ENOMEM;
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                return -ENOMEM;
        return client_write_line(c, s);
}

static int reply_error(Client *c, const char *fmt, ...) _printf_(2, 3);
static int reply_error(Client *c, const char *fmt, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        /* the message may echo what the client sent: JSON holds only UTF-8 text, so bytes
         * that are not printable ASCII are shown as '?' */
        for (char *p = buf; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                        *p = '?';
        return client_reply(c, json_pack("{s:b, s:s}", "ok", 0, "error", buf));
}

static int reply_ok(Client *c) {
        return client_reply(c, json_pack("{s:b}", "ok", 1));
}

/* A byte in hex, "22" or "0x22". */
static int parse_byte(const char *s, uint8_t *ret) {
        const char *p = startswith(s, "0x") ?: (startswith(s, "0X") ?: s);

        if (strlen(p) != 2)
                return -EINVAL;
        return hex_decode(p, ret, 1);
}

static int handle_fault(Client *c, char **arg, unsigned n) {
        Ecu *ecu = c->control->ecu;
        unsigned long a, b, w;
        uint8_t sid, nrc;
        int r;

        if (n < 2)
                return reply_error(c, "expected: fault pending N [REQ] | fault delay MS [REQ] | fault nrc SID NRC | "
                                      "fault drop N | fault fc BS STMIN WAITS | fault truncate [frame|answer]");
        if (streq(arg[1], "pending") || streq(arg[1], "delay")) {
                bool pending = streq(arg[1], "pending");
                uint8_t target[ECU_FAULT_TARGET_MAX];
                size_t size = 0;

                if ((n != 3 && n != 4) || parse_uint_range(arg[2], 1, pending ? 1000 : 60000, &a) < 0)
                        return reply_error(c, pending ? "expected: fault pending N [REQ], N a whole number 1..1000"
                                                      : "expected: fault delay MS [REQ], MS a whole number 1..60000");
                if (n == 4) {
                        /* the first bytes of the request whose answer it holds back */
                        size = strlen(arg[3]) / 2;
                        if (size < 1 || size > ECU_FAULT_TARGET_MAX || hex_decode(arg[3], target, size) < 0)
                                return reply_error(c, "expected REQ: the first 1..%u bytes of a request in hex, no "
                                                      "spaces, such as 27, 22A001 or 3101A102",
                                                   ECU_FAULT_TARGET_MAX);
                }
                if (size == 0) {
                        if (pending)
                                ecu->fault.pending = (unsigned) a;
                        else
                                ecu->fault.delay_ms = (unsigned) a;
                } else {
                        memcpy(ecu->fault.target, target, size);
                        ecu->fault.target_size = size;
                        ecu->fault.target_pending = pending ? (unsigned) a : 0;
                        ecu->fault.target_delay_ms = pending ? 0 : (unsigned) a;
                }
        } else if (streq(arg[1], "nrc")) {
                if (n != 4 || parse_byte(arg[2], &sid) < 0 || parse_byte(arg[3], &nrc) < 0 || nrc == 0)
                        return reply_error(c, "expected: fault nrc SID NRC, two hex bytes such as 22 31 or "
                                              "0x27 0x35 (NRC not 00)");
                ecu->fault.nrc_armed = true;
                ecu->fault.nrc_sid = sid;
                ecu->fault.nrc = nrc;
        } else if (streq(arg[1], "drop")) {
                if (n != 3 || parse_uint_range(arg[2], 1, 1000, &a) < 0)
                        return reply_error(c, "expected: fault drop N, N a whole number 1..1000");
                if (!ecu->transport)
                        return reply_error(c, "the ECU is asleep: its link is closed");
                if (!ecu->frame_faults)
                        return reply_error(c, "frame faults need our ISO-TP (vbus: or socketcan:), not the "
                                              "kernel's");
                ecu->fault.drop = (unsigned) a;
        } else if (streq(arg[1], "fc")) {
                if (n != 5 || parse_uint_range(arg[2], 0, 255, &a) < 0 || parse_uint_range(arg[3], 0, 255, &b) < 0 ||
                    parse_uint_range(arg[4], 0, 10, &w) < 0)
                        return reply_error(c, "expected: fault fc BS STMIN WAITS, BS 0..255, STMIN 0..127 or "
                                              "241..249 (ISO 15765-2 encoding), WAITS 0..10");
                if (!ecu->transport)
                        return reply_error(c, "the ECU is asleep: its link is closed");
                r = transport_set_flow_control(ecu->transport, (uint8_t) a, (uint8_t) b, (uint8_t) w);
                if (r == -EOPNOTSUPP)
                        return reply_error(c, "flow control faults need our ISO-TP (vbus: or socketcan:)");
                if (r < 0)
                        return reply_error(c, "expected: fault fc BS STMIN WAITS, STMIN 0..127 or 241..249");
                ecu->fault.fc_armed = true;
        } else if (streq(arg[1], "truncate")) {
                if (n == 2 || (n == 3 && streq(arg[2], "frame"))) {
                        if (!ecu->frame_faults)
                                return reply_error(c, "frame faults need our ISO-TP (vbus: or socketcan:); "
                                                      "use 'fault truncate answer'");
                        ecu->fault.truncate_frame = true;
                } else if (n == 3 && streq(arg[2], "answer"))
                        ecu->fault.truncate_answer = true;
                else
                        return reply_error(c, "expected: fault truncate [frame|answer]");
        } else
                return reply_error(c, "unknown fault '%s'; expected: pending, delay, nrc, drop, fc or truncate",
                                   arg[1]);
        return reply_ok(c);
}

static int handle_line(Client *c, char *line) {
        Ecu *ecu = c->control->ecu;
        char *arg[6], *save = NULL, *tok;
        unsigned n = 0;
        unsigned long v;
        unsigned mv;
        uint32_t key;

        for (tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
                if (n == ELEMENTSOF(arg))
                        return reply_error(c, "too many words; expected one command such as 'touch 1A2B3C4D'");
                arg[n++] = tok;
        }
        if (n == 0)
                return reply_error(c, "empty line; expected a command: touch ID | courtesy | door open|closed | "
                                      "ignition on|off | speed KMH | battery VOLTS | sleep | state | events | "
                                      "fault ...");

        if (streq(arg[0], "touch")) {
                if (n != 2 || parse_key_id(arg[1], &key) < 0)
                        return reply_error(c, "expected: touch ID, ID a key id of exactly 8 hex digits");
                (void) ecu_touch(ecu, key, NULL);
                return reply_ok(c);
        }
        if (streq(arg[0], "courtesy")) {
                if (n != 1)
                        return reply_error(c, "expected: courtesy (no argument)");
                ecu_courtesy(ecu);
                return reply_ok(c);
        }
        if (streq(arg[0], "door")) {
                if (n != 2 || (!streq(arg[1], "open") && !streq(arg[1], "closed")))
                        return reply_error(c, "expected: door open | door closed");
                ecu_set_door(ecu, streq(arg[1], "open"));
                return reply_ok(c);
        }
        if (streq(arg[0], "ignition")) {
                if (n != 2 || (!streq(arg[1], "on") && !streq(arg[1], "off")))
                        return reply_error(c, "expected: ignition on | ignition off");
                ecu_set_ignition(ecu, streq(arg[1], "on"));
                return reply_ok(c);
        }
        if (streq(arg[0], "speed")) {
                if (n != 2 || parse_uint_range(arg[1], 0, 400, &v) < 0)
                        return reply_error(c, "expected: speed KMH, a whole number 0..400");
                ecu_set_speed(ecu, (unsigned) v);
                return reply_ok(c);
        }
        if (streq(arg[0], "battery")) {
                if (n != 2 || parse_volts_mv(arg[1], 30.0, &mv) < 0)
                        return reply_error(c, "expected: battery VOLTS, a number 0..30 such as 12.6");
                ecu_set_battery(ecu, mv);
                return reply_ok(c);
        }
        if (streq(arg[0], "sleep")) {
                if (n != 1)
                        return reply_error(c, "expected: sleep (no argument)");
                ecu_sleep(ecu);
                return reply_ok(c);
        }
        if (streq(arg[0], "state")) {
                if (n != 1)
                        return reply_error(c, "expected: state (no argument)");
                return client_reply(c, ecu_state_json(ecu));
        }
        if (streq(arg[0], "events")) {
                if (n != 1)
                        return reply_error(c, "expected: events (no argument)");
                c->follows_events = true;
                return reply_ok(c);
        }
        if (streq(arg[0], "fault"))
                return handle_fault(c, arg, n);
        return reply_error(c, "unknown command '%.32s'; expected: touch ID | courtesy | door open|closed | "
                              "ignition on|off | speed KMH | battery VOLTS | sleep | state | events | fault ...",
                           arg[0]);
}

static int client_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *c = userdata;
        char buf[CONTROL_LINE_MAX];
        ssize_t n;
        int r = 0;

        if (c->dead)
                goto drop;
        if (revents & EPOLLOUT) {
                r = client_flush(c);
                if (r < 0)
                        goto drop;
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;

        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                r = -errno;
                goto drop;
        }
        if (n == 0)
                goto drop;

        for (ssize_t i = 0; i < n; i++) {
                char ch = buf[i];

                if (ch == '\n') {
                        if (c->discarding) {
                                if (c->had_nul)
                                        r = reply_error(c, "a NUL byte in a line: expected one command of text per line");
                                else
                                        r = reply_error(c, "line too long: expected one command of at most %d characters per line",
                                                        CONTROL_LINE_MAX - 1);
                                c->discarding = c->had_nul = false;
                        } else {
                                c->in[c->n_in] = 0;
                                r = handle_line(c, c->in);
                        }
                        c->n_in = 0;
                        if (r < 0 || c->dead)
                                goto drop;
                        continue;
                }
                if (c->discarding)
                        continue;
                if (ch == 0 || c->n_in >= CONTROL_LINE_MAX - 1) {
                        c->discarding = true;
                        c->had_nul = ch == 0;
                        continue;
                }
                c->in[c->n_in++] = ch;
        }
        return 0;
drop:
        if (r < 0 && r != -ECONNRESET && r != -EPIPE)
                log_info_errno(r, "Control client dropped: %m");
        client_free(c);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Control *ctl = userdata;
        _cleanup_close_ int cfd = -1;
        Client *c;
        unsigned slot = CONTROL_MAX_CLIENTS;
        int r;

        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
                if (!ctl->clients[i]) {
                        slot = i;
                        break;
                }
        if (slot == CONTROL_MAX_CLIENTS) {
                static const char busy[] = "{\"ok\": false, \"error\": \"too many control connections (at most 8)\"}\n";
                (void) send(cfd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                return 0;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return 0;
        c->control = ctl;
        c->fd = cfd;
        r = sd_event_add_io(sd_event_source_get_event(s), &c->io, cfd, EPOLLIN, client_on_io, c);
        if (r < 0) {
                free(c);
                return 0;
        }
        TAKE_FD(cfd);
        (void) sd_event_source_set_description(c->io, "control-client");
        ctl->clients[slot] = c;
        return 0;
}

void control_broadcast(Control *ctl, const char *line) {
        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
                Client *c = ctl->clients[i];

                if (c && c->follows_events && !c->dead && client_write_line(c, line) < 0) {
                        /* Freed by its own io handler, which the shutdown wakes: this may run
                         * inside another client's command. */
                        log_info("Control client dropped: it does not read its events");
                        c->dead = true;
                        (void) shutdown(c->fd, SHUT_RDWR);
                }
        }
}

int control_new(Ecu *ecu, const char *path, Control **ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        Control *ctl;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(-ENAMETOOLONG, "Control socket path too long (at most %zu bytes): %s",
                                       sizeof(sa.sun_path) - 1, path);
        strcpy(sa.sun_path, path);
        /* A socket left behind by a previous run; never remove anything else. */
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(-EEXIST, "%s exists and is not a socket", path);
                (void) unlink(path);
        }

        ctl = calloc(1, sizeof(*ctl));
        if (!ctl)
                return -ENOMEM;
        ctl->ecu = ecu;
        strcpy(ctl->path, path);
        ctl->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ctl->fd < 0) {
                r = log_error_errno(errno, "Cannot create the control socket: %m");
                free(ctl);
                return r;
        }
        if (bind(ctl->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(ctl->fd, 8) < 0) {
                r = log_error_errno(errno, "Cannot listen on the control socket %s: %m", path);
                close(ctl->fd);
                free(ctl);
                return r;
        }
        r = sd_event_add_io(ecu->event, &ctl->listen_io, ctl->fd, EPOLLIN, on_accept, ctl);
        if (r < 0) {
                close(ctl->fd);
                (void) unlink(path);
                free(ctl);
                return log_error_errno(r, "Cannot watch the control socket: %m");
        }
        (void) sd_event_source_set_description(ctl->listen_io, "control-listen");
        *ret = ctl;
        return 0;
}

Control *control_free(Control *ctl) {
        if (!ctl)
                return NULL;
        for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
                if (ctl->clients[i])
                        client_free(ctl->clients[i]);
        sd_event_source_disable_unref(ctl->listen_io);
        close(ctl->fd);
        (void) unlink(ctl->path);
        free(ctl);
        return NULL;
}
