/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "credentials.h"
#include "guide.h"
#include "log.h"
#include "output.h"
#include "parse-util.h"
#include "passcode.h"

#define METHOD_TIMEOUT_USEC (120 * USEC_PER_SEC) /* FetchPasscode waits for the service, Erase for the ECU */
#define TICK_USEC (250 * USEC_PER_MSEC)          /* redraw of the progress bar and the countdown */
#define TEXT_WIDTH 78
#define ANSWER_MAX 256

typedef enum StepAction {
        ACTION_WAIT, /* immod, the ECU or the person at the car acts */
        ACTION_ACKNOWLEDGE,
        ACTION_PASSCODE,
        ACTION_KEY_COUNT, /* declare-keys */
        ACTION_ERASE,     /* touch-keys: Erase once every declared key was touched */
        ACTION_TOUCH_NEW, /* touch-new-keys: Finish when the new keys are registered (mode 2) */
} StepAction;

typedef enum Agreement {
        AGREEMENT_NONE,
        AGREEMENT_ERASE_ALL,  /* --agree-erase-all */
        AGREEMENT_ERASE_KEYS, /* --agree-erase-keys */
        AGREEMENT_COUNTS,     /* --keys-present */
} Agreement;

/* How immoctl meets each step of dbus-api.md: the bulletins' warnings need a typed
 * confirmation, and with --no-ask the option that stands for it. */
static const struct StepUi {
        const char *id;
        StepAction action;
        const char *confirmation; /* what a warning wants typed; NULL: Enter is enough */
        Agreement agreement;
} step_ui[] = {
        { "confirm-erase-all", ACTION_ACKNOWLEDGE, "I agree", AGREEMENT_ERASE_ALL },
        { "open-driver-door", ACTION_ACKNOWLEDGE, NULL, AGREEMENT_NONE },
        { "immobilizer-passcode", ACTION_PASSCODE, NULL, AGREEMENT_NONE },
        { "confirm-duration", ACTION_ACKNOWLEDGE, "I understand", AGREEMENT_ERASE_ALL },
        { "smart-code-passcode", ACTION_PASSCODE, NULL, AGREEMENT_NONE },
        { "resetting", ACTION_WAIT, NULL, AGREEMENT_NONE },
        { "confirm-instructions", ACTION_ACKNOWLEDGE, NULL, AGREEMENT_NONE },
        { "check-slots", ACTION_ACKNOWLEDGE, NULL, AGREEMENT_NONE },
        { "place-keys", ACTION_ACKNOWLEDGE, NULL, AGREEMENT_NONE },
        { "touch-registered-key", ACTION_WAIT, NULL, AGREEMENT_NONE },
        { "pre-start-check", ACTION_ACKNOWLEDGE, NULL, AGREEMENT_NONE },
        { "touch-new-keys", ACTION_TOUCH_NEW, NULL, AGREEMENT_NONE },
        { "function-check", ACTION_ACKNOWLEDGE, NULL, AGREEMENT_NONE },
        { "confirm-warning", ACTION_ACKNOWLEDGE, "I understand", AGREEMENT_ERASE_KEYS },
        { "declare-keys", ACTION_KEY_COUNT, NULL, AGREEMENT_NONE },
        { "confirm-counts", ACTION_ACKNOWLEDGE, "yes", AGREEMENT_COUNTS },
        { "confirm-agree", ACTION_ACKNOWLEDGE, "I agree", AGREEMENT_ERASE_KEYS },
        { "touch-keys", ACTION_ERASE, NULL, AGREEMENT_NONE },
};

static const struct StepUi *step_ui_find(const char *id) {
        for (size_t i = 0; id && i < ELEMENTSOF(step_ui); i++)
                if (streq(step_ui[i].id, id))
                        return step_ui + i;
        return NULL;
}

static const char *agreement_option(Agreement a) {
        switch (a) {
        case AGREEMENT_ERASE_ALL:
                return "--agree-erase-all";
        case AGREEMENT_ERASE_KEYS:
                return "--agree-erase-keys";
        case AGREEMENT_COUNTS:
                return "--keys-present";
        default:
                return NULL;
        }
}

typedef struct Guide {
        Context *c;
        sd_bus *bus;
        const char *path;
        FILE *out; /* text for people: stdout, or stderr when stdout carries --json */
        bool tty;  /* out is a terminal: a progress line redrawn in place */

        json_t *proc; /* the Procedure's properties, kept current from PropertiesChanged */
        json_t *mgr;  /* the Manager's, for the battery and the problems */
        bool refetch;
        bool immod_gone;
        bool immod_back;
        json_t *key_events; /* KeyEvent signals not shown yet: [event, slot, beeps, keys_seq, usec] */
        unsigned keys_seq;  /* counts the Keys updates, which immod sends after the KeyEvent */

        char *shown_step; /* the step whose screen was printed */
        char *shown_seed; /* the Seed printed with it, as JSON text */
        char *shown_prompt;
        char *shown_problems;
        char *answered_step; /* answered successfully: not again until the step changes */
        bool status_shown;   /* a progress line is on the screen's last line */
        unsigned said;       /* lines printed so far: a question interrupted by news is asked again */
        int last_percent;    /* the last progress printed (lines, JSON) */
        long long last_countdown;
        unsigned passcodes_used;
        bool fetch_failed; /* at this step: ask rather than fetch again */
        unsigned expected_delete;
        bool erase_sent, finish_sent;
        int fatal; /* the exit status behind -ENOTCONN */
} Guide;

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int sig) {
        stop_requested = sig;
}

static void guide_done(Guide *g) {
        json_decref(g->proc);
        json_decref(g->mgr);
        json_decref(g->key_events);
        free(g->shown_step);
        free(g->shown_seed);
        free(g->shown_prompt);
        free(g->shown_problems);
        free(g->answered_step);
}

static int set_string(char **s, const char *v) {
        char *n = v ? strdup(v) : NULL;
        if (v && !n)
                return -ENOMEM;
        free(*s);
        *s = n;
        return 0;
}

static bool streq_ptr(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

/* ---------------------------------------------------------------- output */

static void clear_status(Guide *g) {
        if (g->status_shown) {
                fputs("\r\033[K", g->out);
                g->status_shown = false;
        }
}

static void say(Guide *g, const char *format, ...) _printf_(2, 3);
static void say(Guide *g, const char *format, ...) {
        va_list ap;

        clear_status(g);
        g->said++;
        va_start(ap, format);
        vfprintf(g->out, format, ap);
        va_end(ap);
        fputc('\n', g->out);
        fflush(g->out);
}

/* Text for people, wrapped at TEXT_WIDTH with an indent. */
static void say_wrapped(Guide *g, unsigned indent, const char *text) {
        size_t col = 0;

        clear_status(g);
        g->said++;
        while (*text) {
                size_t word = strcspn(text, " \n");
                if (col > 0 && col + 1 + word > TEXT_WIDTH - indent) {
                        fputc('\n', g->out);
                        col = 0;
                }
                if (col == 0)
                        fprintf(g->out, "%*s", (int) indent, "");
                else
                        fputc(' ', g->out);
                fwrite(text, 1, word, g->out);
                col += word + (col > 0);
                text += word;
                if (*text == '\n') {
                        fputc('\n', g->out);
                        col = 0;
                }
                while (*text == ' ' || *text == '\n')
                        text++;
        }
        if (col > 0)
                fputc('\n', g->out);
        fflush(g->out);
}

static void emit_json(Guide *g, const char *event, json_t *fields) {
        if (!g->c->json) {
                json_decref(fields);
                return;
        }
        if (!fields)
                fields = json_object();
        if (!fields || json_object_set_new(fields, "event", json_string(event)) < 0 ||
            json_object_set_new(fields, "procedure", json_string(g->path)) < 0) {
                json_decref(fields);
                log_oom();
                return;
        }
        (void) output_json_line(fields);
        json_decref(fields);
}

static const char *pstr(Guide *g, const char *key) {
        return json_get_string(g->proc, key);
}

static unsigned puint(Guide *g, const char *key) {
        unsigned long long v = 0;
        (void) json_get_uint(g->proc, key, &v);
        return (unsigned) MIN(v, UINT32_MAX);
}

static unsigned key_count(Guide *g, const char *key) {
        unsigned long long v = 0;
        (void) json_get_uint(json_object_get(g->proc, "Keys"), key, &v);
        return (unsigned) MIN(v, UINT32_MAX);
}

static double battery_volts(Guide *g) {
        json_t *v = json_object_get(g->mgr, "BatteryVoltage");
        return json_is_number(v) ? json_number_value(v) : NAN;
}

static void format_duration(unsigned s, char *buf, size_t size) {
        if (s >= 60)
                snprintf(buf, size, "%u min %02u s", s / 60, s % 60);
        else
                snprintf(buf, size, "%u s", s);
}

/* Registration mode 1 (a key was registered before: one new key per procedure) or 2. */
static unsigned registration_mode(Guide *g) {
        return key_count(g, "registered") > key_count(g, "added") ? 1 : 2;
}

/* ---------------------------------------------------------------- the bus */

static int merge_properties(Guide *g, sd_bus_message *m, json_t *into, const char *interface) {
        _cleanup_(json_decrefp) json_t *changed = NULL, *invalidated = NULL;
        const char *iface;
        int r;

        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || !streq(iface, interface))
                return 0;
        r = bus_message_read_json(m, &changed);
        if (r >= 0)
                r = bus_message_read_json(m, &invalidated);
        if (json_object_get(changed, "Keys"))
                g->keys_seq++;
        if (r < 0 || json_object_update(into, changed) < 0) {
                g->refetch = true; /* read them all again rather than guess */
                return 0;
        }
        if (json_array_size(invalidated) > 0)
                g->refetch = true;
        return 0;
}

static int on_procedure_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Guide *g = userdata;

        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged"))
                return merge_properties(g, m, g->proc, IMMOD_PROCEDURE_INTERFACE);
        if (sd_bus_message_is_signal(m, IMMOD_PROCEDURE_INTERFACE, "KeyEvent")) {
                const char *event;
                uint32_t slot, beeps;

                if (sd_bus_message_read(m, "suu", &event, &slot, &beeps) >= 0)
                        (void) json_array_append_new(g->key_events,
                                                     json_pack("[s,I,I,I,I]", event, (json_int_t) slot,
                                                               (json_int_t) beeps, (json_int_t) g->keys_seq,
                                                               (json_int_t) now_usec(CLOCK_MONOTONIC)));
        } else if (sd_bus_message_is_signal(m, IMMOD_PROCEDURE_INTERFACE, "Finished"))
                g->refetch = true; /* State and Error are properties too: read them fresh */
        return 0;
}

static int on_manager_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Guide *g = userdata;
        return merge_properties(g, m, g->mgr, IMMOD_MANAGER_INTERFACE);
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Guide *g = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, IMMOD_BUS_NAME))
                return 0;
        if (*new_owner) {
                g->immod_back = true;
                g->refetch = true;
        } else
                g->immod_gone = true;
        return 0;
}

static int fetch_all(Guide *g) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_t *p = NULL, *m = NULL;
        int r;

        r = bus_get_all_properties(g->bus, g->path, IMMOD_PROCEDURE_INTERFACE, &error, &p);
        if (r < 0)
                return bus_log_error(&error, r, "read the procedure");
        json_decref(g->proc);
        g->proc = p;
        if (bus_get_all_properties(g->bus, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, NULL, &m) >= 0) {
                json_decref(g->mgr);
                g->mgr = m;
        }
        g->refetch = false;
        return 0;
}

/* Handles what the bus brought; returns 0, or an exit status > 0 when immod is gone for good. */
static int guide_sync(Guide *g) {
        int r;

        for (;;) {
                r = sd_bus_process(g->bus, NULL);
                if (r < 0) {
                        /* The link to the box dropped (SSH, a closed lid): immod goes on without us. */
                        bool remote = g->c->transport == BUS_TRANSPORT_REMOTE;

                        clear_status(g);
                        log_error_errno(r, "Lost the connection to immod: %m");
                        fprintf(stderr, "The procedure goes on at step %s: \"immoctl%s%s attach\" takes it up again.\n",
                                pstr(g, "Step") ?: "?", remote ? " -H " : "", remote ? g->c->bus_arg : "");
                        return IMMOCTL_EXIT_UNREACHABLE;
                }
                if (r == 0)
                        break;
        }
        if (g->immod_gone) {
                g->immod_gone = false;
                say(g, "immod stopped. Waiting for it to come back: it resumes the procedure from its journal.");
        }
        if (g->immod_back) {
                g->immod_back = false;
                say(g, "immod is back.");
        }
        if (g->refetch) {
                r = fetch_all(g);
                if (r != 0)
                        return r;
        }
        return 0;
}

/*
 * Waits up to timeout for the bus, and for a typed line when line is not NULL: 1 with a
 * line, 0 otherwise; -ECANCELED on Ctrl-C or a closed terminal, -EPIPE at the end of the
 * input, -E2BIG for an overlong line.
 */
static int guide_wait(Guide *g, usec_t timeout, char *line, size_t size) {
        Context *c = g->c;
        struct pollfd p[2];
        uint64_t until;
        int n = 1, r;

        if (line) {
                r = input_take_line(&c->input, line, size);
                if (r != 0)
                        return r;
        }
        if (stop_requested)
                return -ECANCELED;

        p[0] = (struct pollfd) { .fd = sd_bus_get_fd(g->bus), .events = (short) sd_bus_get_events(g->bus) };
        if (sd_bus_get_timeout(g->bus, &until) >= 0 && until != UINT64_MAX) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                timeout = MIN(timeout, until > now ? until - now : 0);
        }
        if (line && !c->input.eof)
                p[n++] = (struct pollfd) { .fd = c->input.fd, .events = POLLIN };

        r = poll(p, (nfds_t) n, (int) ((timeout + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
        if (r < 0)
                return errno == EINTR ? (stop_requested ? -ECANCELED : 0) : -errno;
        if (n == 2 && p[1].revents) {
                r = input_fill(&c->input);
                if (r < 0)
                        return r;
                return input_take_line(&c->input, line, size);
        }
        return 0;
}

/* ---------------------------------------------------------------- what happens */

static const char *key_event_text(const char *event, unsigned slot, Guide *g, char *buf, size_t size) {
        unsigned available = key_count(g, "available");

        if (streq(event, "key-registered"))
                snprintf(buf, size, "key registered in slot %u, %u slot%s left", slot, available,
                         available == 1 ? "" : "s");
        else if (streq(event, "registered-key-recognised"))
                snprintf(buf, size, "the registered key (slot %u) was recognised", slot);
        else if (streq(event, "key-kept"))
                snprintf(buf, size, "the key in slot %u will be kept (%u of %u touched)", slot, key_count(g, "touched"),
                         key_count(g, "declared_present"));
        else if (streq(event, "rejected-erased"))
                snprintf(buf, size, "refused: this key was erased before and can never be registered again");
        else if (streq(event, "rejected-no-slot"))
                snprintf(buf, size, "refused: no slot is free, the key was not registered");
        else if (streq(event, "rejected-already-registered"))
                snprintf(buf, size, "refused: this key is already registered (slot %u)", slot);
        else if (streq(event, "unknown-key"))
                snprintf(buf, size, "this key is not registered to this vehicle");
        else if (streq(event, "timed-out"))
                snprintf(buf, size, "the ECU ended registration mode (idle timeout)");
        else
                snprintf(buf, size, "%s (slot %u)", event, slot);
        return buf;
}

/* The key touches, each once the Keys it changed arrived (or after a moment), so that the
 * slots left are right. */
static void show_key_events(Guide *g) {
        size_t i, shown = 0;
        json_t *e;

        json_array_foreach(g->key_events, i, e) {
                unsigned seq = (unsigned) json_integer_value(json_array_get(e, 3));
                usec_t at = (usec_t) json_integer_value(json_array_get(e, 4));
                if (seq == g->keys_seq && now_usec(CLOCK_MONOTONIC) < at + 300 * USEC_PER_MSEC)
                        break;
                shown++;
                const char *event = json_string_value(json_array_get(e, 0)) ?: "?";
                unsigned slot = (unsigned) json_integer_value(json_array_get(e, 1));
                unsigned beeps = (unsigned) json_integer_value(json_array_get(e, 2));
                char text[160], sound[64] = "";

                if (g->c->json) {
                        emit_json(g, "key",
                                  json_pack("{s:s, s:I, s:I, s:O*}", "key_event", event, "slot", (json_int_t) slot,
                                            "beeps", (json_int_t) beeps, "keys", json_object_get(g->proc, "Keys")));
                        continue;
                }
                for (unsigned b = 0; b < MIN(beeps, 8U); b++)
                        strcat(sound, b == 0 ? "beep" : " beep");
                say(g, "  %s%s%s", sound, *sound ? ": " : "", key_event_text(event, slot, g, text, sizeof(text)));
        }
        for (; shown > 0; shown--)
                json_array_remove(g->key_events, 0);
}

/* The Manager's problems that matter while a procedure runs, as what to do. */
static void show_problems(Guide *g) {
        json_t *problems = json_object_get(g->mgr, "Problems"), *item;
        _cleanup_free_ char *text = json_dumps(problems ?: json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        bool was_asleep = g->shown_problems && strstr(g->shown_problems, "\"ecu-asleep\"");
        size_t i;

        if (!text || streq_ptr(text, g->shown_problems))
                return;
        emit_json(g, "problems", json_pack("{s:O*}", "problems", problems));
        if (!g->c->json) {
                bool asleep = false;
                json_array_foreach(problems, i, item) {
                        const char *id = json_string_value(item) ?: "?";
                        const char *advice = problem_advice(id);

                        if (streq(id, "procedure-running"))
                                continue;
                        if (streq(id, "ecu-asleep"))
                                asleep = true;
                        if (!g->shown_problems || !strstr(g->shown_problems, id))
                                say(g, "  ! %s", advice ?: id);
                }
                if (was_asleep && !asleep)
                        say(g, "  The ECU is awake again.");
        }
        (void) set_string(&g->shown_problems, text);
}

static void show_seed(Guide *g, json_t *seed) {
        const char *kind = json_get_string(seed, "kind");

        if (!kind)
                return;
        if (streq(kind, "immobilizer")) {
                const char *s = json_get_string(seed, "seed") ?: "";
                size_t n = strlen(s);

                say(g, "  Immobilizer seed (%zu digits), for the passcode service:", n);
                clear_status(g);
                /* groups of four, uppercase, as the service's form shows them */
                for (size_t i = 0; i < n; i += 4) {
                        if (i % 32 == 0)
                                fprintf(g->out, "      ");
                        for (size_t k = i; k < i + 4 && k < n; k++)
                                fputc(toupper((unsigned char) s[k]), g->out);
                        fputs((i + 4) % 32 == 0 || i + 4 >= n ? "\n" : " ", g->out);
                }
                fflush(g->out);
                return;
        }
        say(g, "  Smart code seed, for the passcode service (each value with its check character):");
        say(g, "      %-6s %-18s %s", "", "value", "CD");
        static const char *const rows[][3] = {
                { "VIN", "vin", "cd_vin" },
                { "Data1", "data1", "cd_data1" },
                { "Data2", "data2", "cd_data2" },
                { "Data3", "data3", "cd_data3" },
        };
        for (size_t i = 0; i < ELEMENTSOF(rows); i++)
                say(g, "      %-6s %-18s %s", rows[i][0], json_get_string(seed, rows[i][1]) ?: "?",
                    json_get_string(seed, rows[i][2]) ?: "?");
}

/* What a step adds to the bulletin's text: the counts it is about, the deadline. */
static void show_step_details(Guide *g, const char *step) {
        if (streq(step, "check-slots") || streq(step, "confirm-instructions"))
                say(g, "  Key slots: %u registered, %u free, %u in all.", key_count(g, "registered"),
                    key_count(g, "available"), key_count(g, "max"));
        else if (streq(step, "confirm-counts")) {
                unsigned registered = key_count(g, "registered"), present = key_count(g, "declared_present");
                g->expected_delete = registered > present ? registered - present : 0;
                say(g, "  Keys registered in the vehicle: %u", registered);
                say(g, "  Customer keys present, to keep: %u", present);
                say(g, "  Keys to delete for ever:        %u", g->expected_delete);
        } else if (streq(step, "resetting"))
                say(g, "  Closing this terminal does not stop the reset; \"immoctl attach\" shows it again.");
        else if (streq(step, "touch-new-keys") && registration_mode(g) == 1)
                say(g, "  One new key per procedure here (a key was registered before); start \"immoctl "
                       "add-key\" again for the next one.");
        else if (streq(step, "touch-new-keys")) {
                unsigned available = key_count(g, "available");
                if (g->c->have_new_keys)
                        say(g, "  Registering %u new key%s; %u slot%s free.", g->c->new_keys,
                            g->c->new_keys == 1 ? "" : "s", available, available == 1 ? "" : "s");
                else if (!g->c->no_ask)
                        say(g, "  Up to %u new key%s. Type \"done\" when every new key is registered.", available,
                            available == 1 ? "" : "s");
        }
}

static void show_step(Guide *g) {
        const char *step = pstr(g, "Step") ?: "?";
        json_t *seed = json_object_get(g->proc, "Seed");
        _cleanup_free_ char *seed_text = json_dumps(seed ?: json_null(), JSON_COMPACT | JSON_ENCODE_ANY);

        emit_json(g, "step",
                  json_pack("{s:s, s:I, s:I, s:s, s:s, s:O*, s:O*}", "step", step, "index",
                            (json_int_t) puint(g, "StepIndex"), "count", (json_int_t) puint(g, "StepCount"), "state",
                            pstr(g, "State") ?: "", "prompt", pstr(g, "Prompt") ?: "", "seed", seed, "keys",
                            json_object_get(g->proc, "Keys")));
        if (!g->c->json) {
                say(g, "%s", "");
                say(g, "%sStep %u of %u: %s%s", g->tty ? "\033[1m" : "", puint(g, "StepIndex"), puint(g, "StepCount"),
                    step, g->tty ? "\033[0m" : "");
                say_wrapped(g, 2, pstr(g, "Prompt") ?: "");
                if (json_object_size(seed) > 0)
                        show_seed(g, seed);
                show_step_details(g, step);
        }
        (void) set_string(&g->shown_step, step);
        (void) set_string(&g->shown_seed, seed_text);
        (void) set_string(&g->shown_prompt, pstr(g, "Prompt"));
        (void) set_string(&g->answered_step, NULL);
        g->fetch_failed = false;
        g->last_percent = -1;
        g->last_countdown = -1;
}

/* A fresh seed or a new prompt within the same step. */
static void show_step_news(Guide *g) {
        json_t *seed = json_object_get(g->proc, "Seed");
        _cleanup_free_ char *seed_text = json_dumps(seed ?: json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        const char *prompt = pstr(g, "Prompt");

        if (seed_text && !streq_ptr(seed_text, g->shown_seed)) {
                emit_json(g, "seed",
                          json_pack("{s:O*, s:I}", "seed", seed, "attempts_left",
                                    (json_int_t) puint(g, "PasscodeAttemptsLeft")));
                if (!g->c->json && json_object_size(seed) > 0) {
                        say(g, "  The ECU gave a fresh seed; a passcode is good for one seed only.");
                        show_seed(g, seed);
                }
                (void) set_string(&g->shown_seed, seed_text);
        }
        if (!streq_ptr(prompt, g->shown_prompt)) {
                emit_json(g, "prompt", json_pack("{s:s}", "prompt", prompt ?: ""));
                if (!g->c->json && prompt && *prompt)
                        say_wrapped(g, 2, prompt);
                (void) set_string(&g->shown_prompt, prompt);
        }
}

/* The progress line: the reset's bar, the erasure's countdown, a lockout. On a terminal it is
 * redrawn in place; otherwise a line now and then. */
static void show_progress(Guide *g) {
        const char *step = pstr(g, "Step") ?: "";
        int percent = (int) puint(g, "Percentage");
        unsigned lockout = puint(g, "LockoutSeconds");
        double volts = battery_volts(g);
        char line[192], left[64], battery[32] = "";
        unsigned long long deadline;
        bool plain_due = false;

        if (isfinite(volts))
                snprintf(battery, sizeof(battery), "  battery %.1f V", volts);

        if (percent != g->last_percent)
                emit_json(g, "progress",
                          json_pack("{s:i, s:I, s:o}", "percentage", percent, "remaining_seconds",
                                    (json_int_t) puint(g, "RemainingSeconds"), "battery_voltage",
                                    isfinite(volts) ? json_real(volts) : json_null()));

        if (lockout > 0) {
                format_duration(lockout, left, sizeof(left));
                snprintf(line, sizeof(line), "  The ECU is locked out after wrong passcodes: %s left.", left);
                plain_due = g->last_countdown < 0;
                g->last_countdown = lockout;
        } else if (streq(step, "resetting")) {
                char bar[31];
                int filled = percent * 30 / 100;
                for (int i = 0; i < 30; i++)
                        bar[i] = i < filled ? '#' : '.';
                bar[30] = 0;
                unsigned remaining = puint(g, "RemainingSeconds");
                if (remaining > 0) {
                        char d[32];
                        format_duration(remaining, d, sizeof(d));
                        snprintf(left, sizeof(left), "about %s left", d);
                } else
                        snprintf(left, sizeof(left), "%s", percent >= 100 ? "finishing" : "estimating the time left");
                if (g->tty)
                        snprintf(line, sizeof(line), "  [%s] %3d%%  %s%s", bar, percent, left, battery);
                else
                        snprintf(line, sizeof(line), "  resetting: %d%%, %s%s", percent, left, battery);
                plain_due = g->last_percent < 0 || percent / 10 != g->last_percent / 10;
        } else if (streq(step, "touch-keys") && json_get_uint(g->proc, "Deadline", &deadline) && deadline > 0) {
                long long s = ((long long) deadline - (long long) now_usec(CLOCK_REALTIME)) / (long long) USEC_PER_SEC;
                if (s < 0)
                        s = 0;
                snprintf(line, sizeof(line), "  %lld s left to touch the keys: %u of %u touched", s,
                         key_count(g, "touched"), key_count(g, "declared_present"));
                plain_due = g->last_countdown < 0 || s / 10 != g->last_countdown / 10;
                g->last_countdown = s;
        } else {
                g->last_percent = percent;
                return;
        }
        g->last_percent = percent;
        if (g->c->json)
                return;
        if (g->tty) {
                fprintf(g->out, "\r\033[K%s", line);
                fflush(g->out);
                g->status_shown = true;
        } else if (plain_due)
                say(g, "%s", line);
}

/* Prints what changed: a new step's screen, a fresh seed, key touches, problems. */
static void show_news(Guide *g) {
        if (!streq_ptr(pstr(g, "Step"), g->shown_step))
                show_step(g);
        else
                show_step_news(g);
        show_key_events(g);
        show_problems(g);
}

/* ---------------------------------------------------------------- answering */

/* Calls a method of the procedure: 0 when done (and the properties read again), an exit
 * status > 0 when refused (said why), a negative errno for a local failure. */
static int call_procedure(Guide *g, const char *method, const char *action, bool credentials, const char *types,
                          ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        r = sd_bus_message_new_method_call(g->bus, &m, IMMOD_BUS_NAME, g->path, IMMOD_PROCEDURE_INTERFACE, method);
        if (r < 0)
                return log_oom();
        if (credentials)
                r = credentials_append(g->c, m);
        else if (types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to build the %s() call: %m", method);

        r = sd_bus_call(g->bus, m, METHOD_TIMEOUT_USEC, &error, &reply);
        if (r < 0) {
                clear_status(g);
                int status = bus_log_error(&error, r, action);
                if (sd_bus_error_has_name(&error, IMMOD_ERROR_PREFIX "AuthenticationFailed"))
                        credentials_forget(g->c);
                /* whatever immod changed meanwhile (a fresh seed, attempts left) */
                (void) fetch_all(g);
                return status;
        }
        (void) set_string(&g->answered_step, pstr(g, "Step"));
        return fetch_all(g);
}

/*
 * Asks a question and reads the answer while following the procedure: 1 with the answer,
 * 0 when the step changed meanwhile (answered elsewhere, or the procedure ended),
 * -ECANCELED (Ctrl-C), -EPIPE (end of input) or -ENOTCONN (immod lost, g->fatal says why).
 */
static int guide_ask(Guide *g, const char *question, char *answer, size_t size) {
        _cleanup_free_ char *step = strdup(pstr(g, "Step") ?: ""), *state = strdup(pstr(g, "State") ?: "");
        int r;

        if (!step || !state)
                return -ENOMEM;
        clear_status(g);
        fprintf(g->out, "%s", question);
        fflush(g->out);
        for (;;) {
                r = guide_wait(g, USEC_PER_SEC, answer, size);
                if (r == -E2BIG) {
                        fprintf(g->out, "That was too long (at most %d characters).\n%s", INPUT_LINE_MAX - 1,
                                question);
                        fflush(g->out);
                        continue;
                }
                if (r != 0)
                        return r;
                r = guide_sync(g);
                if (r != 0) {
                        g->fatal = r;
                        return -ENOTCONN;
                }
                if (!streq_ptr(pstr(g, "Step"), step) || !streq_ptr(pstr(g, "State"), state)) {
                        fputc('\n', g->out);
                        return 0;
                }
                unsigned said = g->said;
                show_news(g);
                if (g->said != said) {
                        fprintf(g->out, "%s", question);
                        fflush(g->out);
                }
        }
}

static int answer_acknowledge(Guide *g, const struct StepUi *ui) {
        Context *c = g->c;
        const char *step = ui->id;
        char answer[ANSWER_MAX], question[128];
        int r;

        if (c->no_ask) {
                bool agreed = ui->agreement == AGREEMENT_NONE ||
                              (ui->agreement == AGREEMENT_ERASE_ALL && c->agree_erase_all) ||
                              (ui->agreement == AGREEMENT_ERASE_KEYS && c->agree_erase_keys) ||
                              (ui->agreement == AGREEMENT_COUNTS && c->have_keys_present);
                if (!agreed) {
                        log_error("Step %s is a warning that --no-ask answers only with %s.", step,
                                  agreement_option(ui->agreement));
                        return IMMOCTL_EXIT_USAGE;
                }
                if (ui->confirmation)
                        say(g, "  Confirmed with %s.", agreement_option(ui->agreement));
        } else {
                if (ui->confirmation)
                        snprintf(question, sizeof(question), "Type \"%s\" to confirm: ", ui->confirmation);
                else
                        snprintf(question, sizeof(question), "Press Enter when done: ");
                r = guide_ask(g, question, answer, sizeof(answer));
                if (r <= 0)
                        return r;
                if (ui->confirmation && !input_is_confirmation(answer, ui->confirmation)) {
                        say(g, "  Not confirmed: type exactly \"%s\" to go on; Ctrl-C stops here (the procedure "
                               "waits; \"immoctl cancel\" ends it).",
                            ui->confirmation);
                        return 0;
                }
        }
        r = call_procedure(g, "Acknowledge", "confirm the step", false, "s", step);
        if (r > 0 && !c->no_ask)
                return 0; /* said why; ask again */
        return r;
}

static int submit_typed(Guide *g, PasscodeKind kind, const char *typed, bool from_option) {
        char normalized[PASSCODE_SMART_CODE_LEN + 1];
        const char *reason = NULL;
        int r;

        if (passcode_normalize(kind, typed, normalized, sizeof(normalized), &reason) < 0) {
                /* passcode_normalize()'s reasons are clauses without a full stop */
                log_error("That passcode is malformed: %s. It was not sent and cost no attempt.",
                          reason ?: "wrong form");
                return g->c->no_ask || from_option ? IMMOCTL_EXIT_USAGE : 0;
        }
        r = call_procedure(g, "SubmitPasscode", "submit the passcode", false, "s", normalized);
        explicit_bzero(normalized, sizeof(normalized));
        if (r > 0 && !g->c->no_ask)
                return 0; /* a fresh seed is shown; ask */
        return r;
}

static int fetch_passcode(Guide *g) {
        Context *c = g->c;
        int r;

        r = credentials_get(c);
        if (r != 0)
                return r == -ECANCELED ? r : (c->no_ask ? r : (g->fetch_failed = true, 0));
        say(g, "  Asking the passcode service for the passcode ...");
        r = call_procedure(g, "FetchPasscode", "fetch the passcode", true, NULL);
        if (r == 0)
                say(g, "  The passcode service answered and the ECU accepted the passcode.");
        if (r <= 0)
                return r;
        if (c->no_ask || (c->password_file && !c->password))
                return r;
        g->fetch_failed = true; /* type it in, or "fetch" to try again */
        return 0;
}

static int answer_passcode(Guide *g) {
        Context *c = g->c;
        const char *kind_name = json_get_string(json_object_get(g->proc, "Seed"), "kind");
        PasscodeKind kind = kind_name && streq(kind_name, "immobilizer") ? PASSCODE_IMMOBILIZER : PASSCODE_SMART_CODE;
        char answer[ANSWER_MAX];
        int r;

        if (!kind_name)
                return 0; /* no seed yet: immod is asking the ECU */

        if (g->passcodes_used < c->n_passcodes) {
                r = submit_typed(g, kind, c->passcodes[g->passcodes_used++], true);
                /* a rejected --passcode cannot fit the fresh seed: stop or ask */
                return r;
        }
        if (c->fetch && !g->fetch_failed)
                return fetch_passcode(g);
        if (c->no_ask) {
                log_error("Step %s needs a passcode: give --passcode P or --fetch with --no-ask.", pstr(g, "Step"));
                return IMMOCTL_EXIT_USAGE;
        }

        r = guide_ask(g,
                      kind == PASSCODE_IMMOBILIZER
                              ? "Immobilizer passcode (6 digits; or \"fetch\" to ask the passcode service): "
                              : "Smart code passcode (12 characters; or \"fetch\" to ask the passcode service): ",
                      answer, sizeof(answer));
        if (r <= 0)
                return r;
        if (input_is_confirmation(answer, "fetch")) {
                g->fetch_failed = false;
                return fetch_passcode(g);
        }
        if (!*answer)
                return 0;
        r = submit_typed(g, kind, answer, false);
        explicit_bzero(answer, sizeof(answer));
        return r;
}

static int answer_key_count(Guide *g) {
        Context *c = g->c;
        unsigned registered = key_count(g, "registered"), n;
        char answer[ANSWER_MAX], question[128];
        int r;

        if (c->no_ask || c->have_keys_present) {
                if (!c->have_keys_present) {
                        log_error("Step declare-keys needs --keys-present N with --no-ask.");
                        return IMMOCTL_EXIT_USAGE;
                }
                n = c->keys_present;
                say(g, "  %u customer key%s present (--keys-present).", n, n == 1 ? "" : "s");
        } else {
                snprintf(question, sizeof(question), "How many of the customer's keys are here? (1 to %u): ",
                         registered);
                r = guide_ask(g, question, answer, sizeof(answer));
                if (r <= 0)
                        return r;
                if (parse_unsigned_range(answer, 1, MAX(registered, 1U), &n) < 0) {
                        say(g, "  Type a number from 1 to %u: the keys present, which will be kept.",
                            MAX(registered, 1U));
                        return 0;
                }
        }
        r = call_procedure(g, "SetKeyCount", "set the number of keys present", false, "u", (uint32_t) n);
        if (r > 0 && !c->no_ask && !c->have_keys_present)
                return 0;
        return r;
}

/* touch-keys: once every declared key was touched, delete the others (the count agreed). */
static int maybe_erase(Guide *g) {
        unsigned declared = key_count(g, "declared_present");

        if (g->erase_sent || declared == 0 || key_count(g, "touched") < declared)
                return 0;
        if (!g->expected_delete) {
                unsigned registered = key_count(g, "registered");
                g->expected_delete = registered > declared ? registered - declared : 0;
        }
        g->erase_sent = true;
        say(g, "  Every key present was touched (%u): deleting the %u key%s not touched ...", declared,
            g->expected_delete, g->expected_delete == 1 ? "" : "s");
        return call_procedure(g, "Erase", "erase the keys", false, "u", (uint32_t) g->expected_delete);
}

/* touch-new-keys in mode 2: Finish after --new-keys N keys, or when "done" is typed. */
static int maybe_finish(Guide *g, const char *typed) {
        Context *c = g->c;
        int r;

        if (g->finish_sent || registration_mode(g) != 2)
                return 0;
        if (typed && !input_is_confirmation(typed, "done")) {
                say(g, "  Touch each new key to the engine switch; type \"done\" when all are registered.");
                return 0;
        }
        if (!typed && !(c->have_new_keys && key_count(g, "added") >= c->new_keys))
                return 0;
        g->finish_sent = true;
        say(g, "  Ending registration mode (%u new key%s registered) ...", key_count(g, "added"),
            key_count(g, "added") == 1 ? "" : "s");
        r = call_procedure(g, "Finish", "end registration mode", false, NULL);
        if (r > 0 && !c->no_ask) {
                g->finish_sent = false;
                return 0;
        }
        return r;
}

/* ---------------------------------------------------------------- the end */

static int report(Guide *g) {
        const char *state = pstr(g, "State") ?: "?", *error = pstr(g, "Error"), *message = pstr(g, "ErrorMessage");
        json_t *min = json_object_get(g->proc, "BatteryMinimum");
        int status = IMMOCTL_EXIT_SUCCESS;

        if (!streq(state, "succeeded")) {
                sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(error && *error ? error : IMMOD_ERROR_PREFIX "Cancelled",
                                                         message);
                status = streq(state, "cancelled") ? IMMOCTL_EXIT_FAILURE : bus_error_exit_status(&e, -EIO);
        }
        emit_json(g, "finished",
                  json_pack("{s:s, s:s, s:s, s:O*, s:O*, s:i}", "state", state, "error", error ?: "", "message",
                            message ?: "", "keys", json_object_get(g->proc, "Keys"), "battery_minimum", min,
                            "exit_status", status));
        if (g->c->json)
                return status;

        say(g, "%s", "");
        if (streq(state, "succeeded")) {
                say(g, "%sDone.%s", g->tty ? "\033[1m" : "", g->tty ? "\033[0m" : "");
                say_wrapped(g, 2, pstr(g, "Prompt") ?: "");
        } else if (streq(state, "cancelled"))
                say(g, "The procedure was cancelled%s%s", message && *message ? ": " : ".", message ?: "");
        else
                say(g, "The procedure failed%s%s", message && *message ? ": " : ".", message ?: "");
        if (json_object_get(json_object_get(g->proc, "Keys"), "registered"))
                say(g, "  Keys: %u registered, %u free of %u slots.", key_count(g, "registered"),
                    key_count(g, "available"), key_count(g, "max"));
        else /* immod leaves the car's counts out until it read them */
                say(g, "  Keys: not read from the vehicle.");
        if (json_is_number(min) && isfinite(json_number_value(min)))
                say(g, "  Lowest battery voltage: %.1f V", json_number_value(min));
        if (streq(state, "succeeded") && streq_ptr(pstr(g, "Kind"), "immobilizer-reset"))
                say(g, "  Next: register the new keys with \"immoctl add-key\".");
        return status;
}

static bool is_final(const char *state) {
        return state && (streq(state, "succeeded") || streq(state, "failed") || streq(state, "cancelled"));
}

static int guide_loop(Guide *g) {
        char line[ANSWER_MAX];
        int r;

        for (;;) {
                r = guide_sync(g);
                if (r != 0)
                        return r;
                show_key_events(g);
                show_problems(g);
                if (is_final(pstr(g, "State")))
                        return report(g);
                show_news(g);

                const char *step = pstr(g, "Step");
                const struct StepUi *ui = step_ui_find(step);
                bool waiting = streq_ptr(pstr(g, "State"), "waiting") && !streq_ptr(step, g->answered_step);
                bool want_line = false;

                if (ui && waiting) {
                        r = 0;
                        switch (ui->action) {
                        case ACTION_ACKNOWLEDGE:
                                r = answer_acknowledge(g, ui);
                                break;
                        case ACTION_PASSCODE:
                                /* no seed yet (immod asks the ECU), or locked out: wait */
                                if (puint(g, "LockoutSeconds") > 0 || json_object_size(json_object_get(g->proc, "Seed")) == 0)
                                        ui = NULL;
                                else
                                        r = answer_passcode(g);
                                break;
                        case ACTION_KEY_COUNT:
                                r = answer_key_count(g);
                                break;
                        case ACTION_ERASE:
                                r = maybe_erase(g);
                                break;
                        case ACTION_TOUCH_NEW:
                                if (registration_mode(g) == 2 && !g->finish_sent && !g->c->have_new_keys) {
                                        if (g->c->no_ask) {
                                                log_error("With --no-ask, registration needs --new-keys N to know "
                                                          "when every new key is registered.");
                                                return IMMOCTL_EXIT_USAGE;
                                        }
                                        want_line = true;
                                }
                                r = maybe_finish(g, NULL);
                                break;
                        default:
                                r = 0;
                        }
                        if (r != 0)
                                return r;
                        if (ui && (ui->action == ACTION_ACKNOWLEDGE || ui->action == ACTION_PASSCODE ||
                                   ui->action == ACTION_KEY_COUNT))
                                continue; /* asked or answered: look again */
                }

                show_progress(g);
                r = guide_wait(g, TICK_USEC, want_line ? line : NULL, sizeof(line));
                if (r == 1) {
                        r = maybe_finish(g, line);
                        if (r != 0)
                                return r;
                } else if (r == -E2BIG)
                        say(g, "  That line was too long.");
                else if (r < 0)
                        return r;
        }
}

int guide_procedure(Context *c, const char *path) {
        _cleanup_(guide_done) Guide g = {
                .c = c,
                .path = path,
                .out = c->json ? stderr : stdout,
                .last_percent = -1,
                .last_countdown = -1,
        };
        struct sigaction sa = { .sa_handler = on_stop_signal }; /* no SA_RESTART: poll() returns */
        char match[512];
        int r;

        r = context_get_bus(c, &g.bus);
        if (r < 0)
                return r;
        g.tty = isatty(fileno(g.out));
        g.key_events = json_array();
        if (!g.key_events)
                return log_oom();

        /* The matches first, then the properties: nothing falls in between. */
        snprintf(match, sizeof(match), "type='signal',sender='%s',path='%s'", IMMOD_BUS_NAME, path);
        r = sd_bus_add_match(g.bus, NULL, match, on_procedure_signal, &g);
        if (r >= 0)
                r = sd_bus_add_match(g.bus, NULL,
                                     "type='signal',sender='" IMMOD_BUS_NAME "',path='" IMMOD_MANAGER_PATH "',"
                                     "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
                                     on_manager_signal, &g);
        if (r >= 0)
                r = sd_bus_add_match(g.bus, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" IMMOD_BUS_NAME "'",
                                     on_name_owner_changed, &g);
        if (r < 0)
                return log_error_errno(r, "Failed to subscribe to the procedure's signals: %m");
        r = fetch_all(&g);
        if (r != 0)
                return r;

        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);

        if (!c->json)
                say(&g, "Following the %s for VIN %s (%s). Ctrl-C stops following, not the procedure.",
                    pstr(&g, "Kind") ?: "procedure", pstr(&g, "Vin") ?: "?", path);
        r = guide_loop(&g);
        if (r == -ENOTCONN)
                r = g.fatal;
        if (r == -ECANCELED || r == -EPIPE) {
                clear_status(&g);
                if (r == -EPIPE)
                        log_error("The input ended while an answer was needed.");
                fprintf(stderr, "Stopped following. The procedure goes on at step %s: \"immoctl attach\" takes it "
                                "up again, \"immoctl cancel\" ends it where that is safe.\n",
                        pstr(&g, "Step") ?: "?");
                return IMMOCTL_EXIT_FAILURE;
        }
        clear_status(&g);
        if (r < 0)
                return log_error_errno(r, "Failed to follow the procedure: %m");
        return r;
}
