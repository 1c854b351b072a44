/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "audit.h"
#include "battery-source.h"
#include "bus-error.h"
#include "checkchar.h"
#include "hex.h"
#include "log.h"
#include "manager.h"
#include "procedure.h"
#include "uds-link.h"

#define POLL_INTERVAL_USEC (250 * USEC_PER_MSEC) /* also bounds progress to 4 changes a second */
#define PROBE_INTERVAL_USEC (1000 * USEC_PER_MSEC)

static const char *const event_names[] = {
        [1] = "registered-key-recognised", [2] = "key-registered", [3] = "rejected-erased",
        [4] = "rejected-no-slot",          [5] = "rejected-already-registered", [6] = "timed-out",
        [7] = "key-kept",                  [8] = "unknown-key",
};

static const char *const fail_reasons[] = { "none", "the battery voltage fell too low", "an internal ECU error" };

static void enter_step(Procedure *p, size_t idx);
static void wake_up(Procedure *p);
static void finish(Procedure *p, JournalState state, const char *error, const char *fmt, ...) _printf_(4, 5);

const char *procedure_step_id(const Procedure *p) {
        return p->steps[p->step].id;
}

bool procedure_is_active(const Procedure *p) {
        return p->state == JOURNAL_STATE_RUNNING || p->state == JOURNAL_STATE_WAITING;
}

static bool at_step(const Procedure *p, const char *id) {
        return procedure_is_active(p) && streq(procedure_step_id(p), id);
}

static void set_prompt(Procedure *p, const char *fmt, ...) _printf_(2, 3);
static void set_prompt(Procedure *p, const char *fmt, ...) {
        char buf[sizeof(p->prompt)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        if (streq(buf, p->prompt))
                return;
        memcpy(p->prompt, buf, sizeof(buf));
        p->dirty |= PROP_PROMPT;
}

static void set_uint(Procedure *p, unsigned *field, unsigned v, unsigned prop) {
        if (*field == v)
                return;
        *field = v;
        p->dirty |= prop;
}

static void set_state(Procedure *p, JournalState s) {
        if (p->state == s)
                return;
        p->state = s;
        p->dirty |= PROP_STATE;
}

static void clear_seed(Procedure *p) {
        if (!p->have_seed)
                return;
        p->have_seed = false;
        p->dirty |= PROP_SEED;
}

static void note_battery(Procedure *p, double v) {
        if (isnan(v))
                return;
        if (isnan(p->battery_min) || v < p->battery_min) {
                p->battery_min = v;
                p->dirty |= PROP_BATTERY_MIN;
        }
}

void procedure_battery_sample(Procedure *p, double volts, usec_t now) {
        if (!procedure_is_active(p))
                return;
        if (p->battery_trace)
                (void) battery_trace_add(p->battery_trace, volts, now);
        note_battery(p, volts);
        if ((p->dirty & PROP_BATTERY_MIN) &&
            (p->battery_emit_at == 0 || now >= p->battery_emit_at + BATTERY_NOTIFY_INTERVAL_USEC)) {
                p->battery_emit_at = now;
                procedure_bus_emit(p);
        }
        /* else the next emit (a step, the poll) carries it */
}

void procedure_battery_state(Procedure *p, BatteryState s) {
        BatteryState before = p->battery_state;

        p->battery_state = s;
        if (s == before || !procedure_is_active(p))
                return;
        bool resetting = p->kind == PROCEDURE_IMMOBILIZER_RESET && streq(procedure_step_id(p), "resetting");
        if (s != BATTERY_STATE_CRITICAL) {
                /* recovered: the reset's own prompt again */
                if (resetting && before == BATTERY_STATE_CRITICAL) {
                        set_prompt(p, "%s", p->steps[p->step].prompt);
                        procedure_bus_emit(p);
                }
                return;
        }
        if (resetting) {
                /* The reset is never aborted: stopping it is refused by the ECU and would leave the
                 * car half reset. The person at the car must bring the voltage up (bulletins:
                 * "attaching a battery charger may be necessary"). */
                log_warning("Procedure %" PRIu64 ": the battery is critical (%.2f V, below %.2f V) during the "
                            "reset; the ECU fails the reset below 9 V.",
                            p->id, battery_monitor_voltage(battery_watch_monitor(manager_battery(p->manager))),
                            p->profile->battery.warn_below_v);
                set_prompt(p, "The battery is critically low during the reset: connect a battery charger (or the "
                              "power supply, holding 13.5 V) now. The reset goes on: do not switch anything off "
                              "or disconnect; the ECU fails the reset below 9 V.");
                procedure_bus_emit(p);
        } else
                log_warning("Procedure %" PRIu64 ": the battery is critical (below %.2f V).", p->id,
                            p->profile->battery.warn_below_v);
}

/* Journal */

static int journal(Procedure *p, const char *sent_command) {
        JournalRecord rec = {
                .id = p->id,
                .kind = p->kind,
                .vin = p->vin,
                .profile = p->profile->name,
                .owner = p->owner,
                .technician = p->technician,
                .repair_order = p->repair_order,
                .customer_last_name = p->customer_last_name,
                .created = p->created,
                .step = procedure_step_id(p),
                .sent_command = (char *) sent_command,
                .sent_at = sent_command ? now_usec(CLOCK_REALTIME) : 0,
                .keys_before = p->keys_before,
                .battery_min = p->battery_min,
                .passcode_attempts = MIN(p->passcode_attempts, JOURNAL_ATTEMPTS_MAX),
                .state = p->state,
        };
        int r;

        r = journal_write(p->daemon->config.state_dir, &rec);
        if (r < 0)
                log_error_errno(r, "Procedure %" PRIu64 ": failed to write the journal: %m", p->id);
        return r;
}

/* Method replies */

static void reply_ok(Procedure *p) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(p->pending);
        int r;

        procedure_bus_emit(p);
        if (!m)
                return;
        r = sd_bus_reply_method_return(m, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to reply: %m");
}

static void reply_error(Procedure *p, const char *name, const char *fmt, ...) _printf_(3, 4);
static void reply_error(Procedure *p, const char *name, const char *fmt, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(p->pending);
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        va_list ap;
        int r;

        procedure_bus_emit(p);
        if (!m)
                return;
        va_start(ap, fmt);
        (void) sd_bus_error_setfv(&e, name, fmt, ap);
        va_end(ap);
        r = sd_bus_reply_method_error(m, &e);
        if (r < 0)
                log_debug_errno(r, "Failed to reply with %s: %m", name);
}

/* ECU requests: one at a time; the continuation runs only for an answer. */

static void handle_answer(Procedure *p, const UdsResponse *resp) {
        ProcedureCont cont = p->cont;

        p->busy = false;
        p->cont = NULL;

        if (resp->error == -ECANCELED) {
                reply_error(p, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
                return;
        }
        if (resp->error == -ETIMEDOUT) {
                if (!p->asleep) {
                        p->asleep = true;
                        manager_set_ecu_state(p->manager, ECU_STATE_ASLEEP);
                        set_prompt(p, "The ECU does not answer: it is asleep. Press the driver's door courtesy "
                                      "switch to wake it. Do NOT cycle the engine switch.");
                }
                reply_error(p, IMMOD_ERROR_ECU_ASLEEP,
                            "The ECU does not answer; press the driver's door courtesy switch to wake it (do not "
                            "cycle the engine switch) and try again.");
                return;
        }
        if (resp->error < 0) {
                manager_set_ecu_state(p->manager, ECU_STATE_UNREACHABLE);
                reply_error(p, IMMOD_ERROR_ECU_UNREACHABLE, "The link to the ECU failed: %s.", strerror(-resp->error));
                return;
        }
        manager_set_ecu_state(p->manager, ECU_STATE_AWAKE);
        if (p->asleep) {
                /* It woke in the default session, locked: whatever this answer says is
                 * stale. Re-enter the session first. */
                p->asleep = false;
                reply_error(p, IMMOD_ERROR_ECU_ASLEEP,
                            "The ECU was asleep and has just woken up; immod re-entered the session. Try again.");
                wake_up(p);
                return;
        }
        if (cont)
                cont(p, resp);
}

static void on_answer(UdsClient *c, const UdsResponse *resp, void *userdata) {
        Procedure *p = userdata;

        handle_answer(p, resp);
        /* the ECU is free again, unless the continuation asked it something more */
        if (!p->busy)
                procedure_bus_run_deferred(p);
}

static int request(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont) {
        int r;

        if (p->busy)
                return -EBUSY;
        r = uds_link_request(p->daemon->link, data, n, on_answer, p);
        if (r < 0)
                return r;
        p->busy = true;
        p->cont = cont;
        return 0;
}

/* Sends, or answers the pending call with the failure. */
static void send_or_fail(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont) {
        int r = request(p, data, n, cont);
        if (r < 0)
                reply_error(p, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot send to the ECU: %s.", strerror(-r));
}

static void read_did(Procedure *p, uint16_t did, ProcedureCont cont) {
        uint8_t req[3] = { UDS_READ_DID };
        put_be16(req + 1, did);
        send_or_fail(p, req, sizeof(req), cont);
}

static void routine(Procedure *p, uint8_t sub, uint16_t rid, int option, ProcedureCont cont) {
        uint8_t req[5] = { UDS_ROUTINE_CONTROL, sub };
        put_be16(req + 2, rid);
        req[4] = (uint8_t) option;
        send_or_fail(p, req, option >= 0 ? 5 : 4, cont);
}

static void routine_command_text(uint8_t sub, uint16_t rid, int option, char *buf, size_t n) {
        if (option >= 0)
                snprintf(buf, n, "31 %02X %02X %02X %02X", sub, rid >> 8, rid & 0xff, (unsigned) option);
        else
                snprintf(buf, n, "31 %02X %02X %02X", sub, rid >> 8, rid & 0xff);
}

/* A command that changes the car: journalled first, never sent without the journal. */
static void routine_journalled(Procedure *p, uint8_t sub, uint16_t rid, int option, ProcedureCont cont) {
        char cmd[JOURNAL_COMMAND_MAX_BYTES];

        routine_command_text(sub, rid, option, cmd, sizeof(cmd));
        if (journal(p, cmd) < 0) {
                reply_error(p, SD_BUS_ERROR_IO_ERROR, "The journal cannot be written; nothing was sent to the car.");
                return;
        }
        routine(p, sub, rid, option, cont);
}

/* Checks a positive answer of at least `min` bytes; otherwise answers the pending call
 * with EcuRefused and returns false. */
static bool answer_ok(Procedure *p, const UdsResponse *r, size_t min, const char *what) {
        char text[160];

        if (r->nrc != 0) {
                uds_nrc_describe(r->sid, r->nrc, text, sizeof(text));
                log_info("Procedure %" PRIu64 ": %s: %s", p->id, what, text);
                reply_error(p, IMMOD_ERROR_ECU_REFUSED, "%s: %s.", what, text);
                return false;
        }
        if (!r->data || r->size < min) {
                reply_error(p, SD_BUS_ERROR_IO_ERROR, "%s: the ECU's answer is malformed.", what);
                return false;
        }
        return true;
}

/* Key status (A001) */

static void keys_from_a001(Procedure *p, const uint8_t *d) {
        set_uint(p, &p->registered, d[0], PROP_KEYS);
        set_uint(p, &p->available, d[1], PROP_KEYS);
        set_uint(p, &p->max, d[2], PROP_KEYS);
        if (p->declared > 0)
                set_uint(p, &p->to_delete, p->registered >= p->declared ? p->registered - p->declared : 0, PROP_KEYS);
}

/* Seeds */

static void on_a004(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 7, "Reading the security attempts (DID A004)"))
                return;
        const uint8_t *d = r->data + 3;
        set_uint(p, &p->attempts_left, p->seed_kind == PASSCODE_IMMOBILIZER ? d[0] : d[1], PROP_ATTEMPTS);
        set_uint(p, &p->lockout_s, be16(d + 2), PROP_LOCKOUT);
        if (!p->have_seed && p->lockout_s > 0) {
                /* The ECU refused the seed: still locked out. The poll watches the lockout and
                 * asks for a seed once it is over. */
                set_prompt(p, "Too many wrong passcodes: the ECU is locked out for %u more seconds. immod asks "
                              "for a new seed when the lockout is over.",
                           p->lockout_s);
                if (p->pending && sd_bus_message_is_method_call(p->pending, NULL, "SubmitPasscode")) {
                        p->rejected = false;
                        reply_error(p, IMMOD_ERROR_LOCKED_OUT,
                                    "The ECU is locked out for %u more seconds after too many wrong passcodes; "
                                    "the passcode was not sent. A new seed is shown when the lockout is over.",
                                    p->lockout_s);
                        return;
                }
        }
        if (p->rejected) {
                p->rejected = false;
                reply_error(p, IMMOD_ERROR_PASSCODE_REJECTED,
                            "The ECU rejected the passcode; %u attempt(s) left before it locks out. A new seed is "
                            "shown: get the passcode for it.",
                            p->attempts_left);
                return;
        }
        reply_ok(p);
}

static void on_seed(Procedure *p, const UdsResponse *r) {
        if (r->nrc == UDS_NRC_TIME_DELAY_NOT_EXPIRED || r->nrc == UDS_NRC_EXCEEDED_ATTEMPTS) {
                read_did(p, p->profile->dids.security_attempts, on_a004);
                /* the A004 answer sets LockoutSeconds; the caller learns it from there */
                return;
        }
        if (p->seed_kind == PASSCODE_IMMOBILIZER) {
                if (!answer_ok(p, r, 2 + PASSCODE_SEED_SIZE, "Requesting the immobilizer seed"))
                        return;
                memcpy(p->imm_seed, r->data + 2, PASSCODE_SEED_SIZE);
        } else {
                char hex[13];
                if (!answer_ok(p, r, 2 + 17 + 6 + 6 + 4, "Requesting the smart code seed"))
                        return;
                const uint8_t *d = r->data + 2;
                memcpy(p->sc_vin, d, 17);
                p->sc_vin[17] = 0;
                hex_encode(d + 17, 6, true, hex);
                memcpy(p->data1, hex + 1, PASSCODE_DATA1_LEN + 1); /* the top 4 bits are zero */
                hex_encode(d + 23, 6, true, p->data2);
                hex_encode(d + 29, 4, true, p->data3);
        }
        p->have_seed = true;
        p->dirty |= PROP_SEED;
        read_did(p, p->profile->dids.security_attempts, on_a004);
}

static void request_seed(Procedure *p) {
        uint8_t req[2] = { UDS_SECURITY_ACCESS, p->seed_kind == PASSCODE_IMMOBILIZER ? 0x01 : 0x03 };
        clear_seed(p);
        send_or_fail(p, req, sizeof(req), on_seed);
}

/* While the ECU is locked out at a passcode step: LockoutSeconds counts down, and a fresh
 * seed is shown as soon as the lockout is over, without another call. */
static void on_lockout_poll(Procedure *p, const UdsResponse *r) {
        /* a Cancel may have come while the answer was on its way */
        if (!procedure_is_active(p) || r->nrc != 0 || !r->data || r->size < 7 || p->have_seed)
                return;
        const uint8_t *d = r->data + 3;
        set_uint(p, &p->attempts_left, p->seed_kind == PASSCODE_IMMOBILIZER ? d[0] : d[1], PROP_ATTEMPTS);
        set_uint(p, &p->lockout_s, be16(d + 2), PROP_LOCKOUT);
        if (p->lockout_s == 0) {
                log_info("Procedure %" PRIu64 ": the ECU's lockout is over; asking for a new seed.", p->id);
                set_prompt(p, "The lockout is over. %s", p->steps[p->step].prompt);
                request_seed(p);
        }
        procedure_bus_emit(p);
}

/* Polling of routine results */

static void handle_events(Procedure *p, const uint8_t *ev, size_t n_events) {
        for (size_t i = 0; i < n_events; i++, ev += 6) {
                uint8_t e = ev[0], slot = ev[1];
                unsigned beeps = 0;

                if (e == 1 || e == 7)
                        beeps = 1;
                else if (e == 2)
                        beeps = p->reg_mode == 2 ? 1 : 2;
                if (e == 2)
                        set_uint(p, &p->added, p->added + 1, PROP_KEYS);
                if (e == 7)
                        set_uint(p, &p->touched, p->touched + 1, PROP_KEYS);
                procedure_bus_emit_key_event(p, e < ELEMENTSOF(event_names) && event_names[e] ? event_names[e] : "unknown-key",
                                             slot, beeps);
                if (e == 1 && at_step(p, "touch-registered-key"))
                        enter_step(p, p->step + 1);
        }
}

static void on_final_keys(Procedure *p, const UdsResponse *r) {
        if (r->nrc == 0 && r->size >= 6)
                keys_from_a001(p, r->data + 3);
        finish(p, JOURNAL_STATE_SUCCEEDED, NULL, NULL);
}

static void read_keys_then_done(Procedure *p) {
        read_did(p, p->profile->dids.key_status, on_final_keys);
}

static void on_a101_results(Procedure *p, const UdsResponse *r) {
        if (r->nrc != 0 || r->size < 9)
                return; /* polled again */
        const uint8_t *d = r->data + 4;
        unsigned status = d[0], progress = MIN(d[1], 100U), remaining = be16(d + 2), reason = d[4];

        set_uint(p, &p->percentage, procedure_percentage(p->kind, p->step, progress * 10), PROP_PERCENTAGE);
        set_uint(p, &p->remaining_s, remaining, PROP_REMAINING);
        if (status == 2) {
                set_uint(p, &p->remaining_s, 0, PROP_REMAINING);
                read_keys_then_done(p);
        } else if (status == 3)
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "The ECU reports the reset failed: %s. Nothing was erased.",
                       reason < ELEMENTSOF(fail_reasons) ? fail_reasons[reason] : "an unknown reason");
        else if (status == 0 && p->resumed)
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "After immod restarted, the ECU reports no reset running or finished; it was not started "
                       "again. Read the key status before trying again.");
        procedure_bus_emit(p);
}

static void on_a102_started(Procedure *p, const UdsResponse *r);

static void on_a102_results(Procedure *p, const UdsResponse *r) {
        if (r->nrc != 0 || r->size < 8)
                return;
        const uint8_t *d = r->data + 4;
        unsigned status = d[0], n = d[3];

        set_uint(p, &p->registered, d[1], PROP_KEYS);
        set_uint(p, &p->available, d[2], PROP_KEYS);
        if (r->size < 8 + 6 * (size_t) n)
                n = (unsigned) ((r->size - 8) / 6);
        handle_events(p, d + 4, n);

        if (at_step(p, "touch-new-keys")) {
                bool one_done = p->reg_mode == 1 && p->added > 0;
                bool full = p->reg_mode == 2 && p->available == 0;
                /* In mode 2 only Finish or full slots end the step: an idle timeout after some
                 * keys restarts registration mode like any other (dbus-api.md). */
                if (one_done || full) {
                        enter_step(p, p->step + 1);
                        procedure_bus_emit(p);
                        return;
                }
        }
        if (status == 3 && procedure_is_active(p) && p->reg_mode > 0) {
                unsigned timeout_s = p->profile->durations.registration_timeout_s;

                log_info("Procedure %" PRIu64 ": registration mode ended by the ECU's idle timeout; restarting it.",
                         p->id);
                if (p->reg_mode == 1) {
                        /* Mode 1 starts again by waiting for a registered key: back to that step,
                         * which starts the mode again. */
                        enter_step(p, (size_t) procedure_step_index(p->kind, "touch-registered-key"));
                        set_prompt(p, "Registration mode ended after %u seconds without a touch; immod started it "
                                      "again. Touch the engine switch with the registered key first.",
                                   timeout_s);
                } else {
                        set_prompt(p, "Registration mode ended after %u seconds without a touch; immod started it "
                                      "again. %s",
                                   timeout_s, p->steps[p->step].prompt);
                        routine_journalled(p, 0x01, p->profile->rids.key_registration, p->reg_mode,
                                           on_a102_started);
                }
        }
        procedure_bus_emit(p);
}

static void on_a103_results(Procedure *p, const UdsResponse *r) {
        if (r->nrc != 0 || r->size < 10)
                return;
        const uint8_t *d = r->data + 4;
        unsigned status = d[0], n = d[5];

        set_uint(p, &p->to_delete, d[2], PROP_KEYS);
        set_uint(p, &p->remaining_s, (be16(d + 3) + 999) / 1000, PROP_REMAINING);
        if (status == 1) {
                /* the ECU's own clock (scaled in the simulator) decides when the window ends */
                usec_t end = now_usec(CLOCK_REALTIME) + (usec_t) be16(d + 3) * USEC_PER_MSEC;
                if (end > p->deadline + 500 * USEC_PER_MSEC || end + 500 * USEC_PER_MSEC < p->deadline) {
                        p->deadline = end;
                        p->dirty |= PROP_DEADLINE;
                }
        }
        if (r->size < 10 + 6 * (size_t) n)
                n = (unsigned) ((r->size - 10) / 6);
        handle_events(p, d + 6, n);
        set_uint(p, &p->touched, d[1], PROP_KEYS);
        if (status == 3)
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_TIMEOUT,
                       "The erasure window closed before Erase; nothing was deleted.");
        else if (status == 4)
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED, "The ECU reports the erasure failed.");
        procedure_bus_emit(p);
}

static int on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Procedure *p = userdata;

        (void) sd_event_source_set_time(s, usec + POLL_INTERVAL_USEC);
        if (!procedure_is_active(p) || p->busy || p->pending)
                return 0;

        if (at_step(p, "resetting"))
                routine(p, 0x03, p->profile->rids.smart_code_reset, -1, on_a101_results);
        else if (p->reg_mode > 0 &&
                 (at_step(p, "touch-registered-key") || at_step(p, "pre-start-check") || at_step(p, "touch-new-keys")))
                routine(p, 0x03, p->profile->rids.key_registration, -1, on_a102_results);
        else if (at_step(p, "touch-keys"))
                routine(p, 0x03, p->profile->rids.key_erasure, -1, on_a103_results);
        else if (p->steps[p->step].end == STEP_END_PASSCODE && !p->have_seed && p->lockout_s > 0 &&
                 usec >= p->last_probe + PROBE_INTERVAL_USEC) {
                p->last_probe = usec;
                read_did(p, p->profile->dids.security_attempts, on_lockout_poll);
        } else if (p->asleep || usec >= p->last_probe + PROBE_INTERVAL_USEC) {
                /* 3E 80 has no answer: ask with 3E 00 now and then whether the ECU is still there */
                uint8_t tp[2] = { UDS_TESTER_PRESENT, 0x00 };
                p->last_probe = usec;
                (void) request(p, tp, sizeof(tp), NULL);
        }
        return 0;
}

/* Step actions on entering */

static void on_a102_started(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Starting registration mode"))
                return;
        reply_ok(p);
}

static void on_a103_started(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Opening the erasure window")) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED, "The ECU refused to open the erasure window.");
                return;
        }
        p->deadline = now_usec(CLOCK_REALTIME) +
                      (usec_t) p->profile->durations.erasure_window_s * USEC_PER_SEC;
        p->dirty |= PROP_DEADLINE;
        reply_ok(p);
}

static void on_a001_slots(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 6, "Reading the key status (DID A001)"))
                return;
        keys_from_a001(p, r->data + 3);
        set_prompt(p, "%u keys are registered and %u of %u slots are free. %s", p->registered, p->available, p->max,
                   p->available == 0 ? "No slot is free: no key can be added." : "Confirm to continue.");
        reply_ok(p);
}

static void enter_step(Procedure *p, size_t idx) {
        const StepInfo *s;

        /* touch-registered-key is skipped when no key is registered (mode 2). */
        if (p->kind == PROCEDURE_KEY_REGISTRATION && idx < p->n_steps && streq(p->steps[idx].id, "touch-registered-key") &&
            p->registered == 0)
                idx++;
        s = &p->steps[idx];

        p->step = idx;
        p->dirty |= PROP_STEP;
        clear_seed(p);
        if (p->deadline) {
                p->deadline = 0;
                p->dirty |= PROP_DEADLINE;
        }
        set_uint(p, &p->remaining_s, 0, PROP_REMAINING);
        set_uint(p, &p->percentage, procedure_percentage(p->kind, idx, 0), PROP_PERCENTAGE);
        set_state(p, s->waiting ? JOURNAL_STATE_WAITING : JOURNAL_STATE_RUNNING);
        set_prompt(p, "%s", s->prompt);
        (void) journal(p, NULL);
        procedure_bus_emit(p);
        procedure_bus_emit_step(p);

        if (streq(s->id, "immobilizer-passcode")) {
                p->seed_kind = PASSCODE_IMMOBILIZER;
                request_seed(p);
        } else if (streq(s->id, "smart-code-passcode")) {
                p->seed_kind = PASSCODE_SMART_CODE;
                request_seed(p);
        } else if (streq(s->id, "check-slots"))
                read_did(p, p->profile->dids.key_status, on_a001_slots);
        else if (streq(s->id, "touch-registered-key")) {
                p->reg_mode = 1;
                routine_journalled(p, 0x01, p->profile->rids.key_registration, 1, on_a102_started);
        } else if (streq(s->id, "touch-new-keys") && p->reg_mode == 0) {
                p->reg_mode = 2;
                routine_journalled(p, 0x01, p->profile->rids.key_registration, 2, on_a102_started);
        } else if (streq(s->id, "touch-keys"))
                routine_journalled(p, 0x01, p->profile->rids.key_erasure, (int) p->declared, on_a103_started);
        else if (streq(s->id, "done"))
                read_keys_then_done(p);
        else
                reply_ok(p);
}

/* The end */

static void finish(Procedure *p, JournalState state, const char *error, const char *fmt, ...) {
        char msg[512] = "";
        va_list ap;
        int r;

        if (!procedure_is_active(p))
                return;
        if (p->battery_trace)
                battery_trace_end(p->battery_trace, now_usec(CLOCK_MONOTONIC));
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(msg, sizeof(msg), fmt, ap);
                va_end(ap);
        }
        if (state == JOURNAL_STATE_SUCCEEDED) {
                p->step = p->n_steps - 1;
                p->dirty |= PROP_STEP;
                set_uint(p, &p->percentage, 100, PROP_PERCENTAGE);
                set_prompt(p, "%s", p->steps[p->step].prompt);
        } else {
                free(p->error);
                free(p->error_message);
                p->error = strdup(error ?: IMMOD_ERROR_CANCELLED);
                p->error_message = strdup(msg);
                p->dirty |= PROP_ERROR;
                set_prompt(p, "%s", msg);
        }
        clear_seed(p);
        set_uint(p, &p->remaining_s, 0, PROP_REMAINING);
        if (p->deadline) {
                p->deadline = 0;
                p->dirty |= PROP_DEADLINE;
        }
        set_state(p, state);
        p->poll = sd_event_source_disable_unref(p->poll);
        uds_link_set_tester_present(p->daemon->link, 0);
        log_info("Procedure %" PRIu64 " (%s) %s%s%s", p->id, procedure_kind_to_string(p->kind),
                 journal_state_to_string(state), msg[0] ? ": " : ".", msg);

        AuditRecord a = {
                .id = p->id,
                .uid = p->owner,
                .technician = p->technician,
                .time = now_usec(CLOCK_REALTIME),
                .created = p->created,
                .kind = p->kind,
                .vin = p->vin,
                .profile = (char *) p->profile->name,
                .repair_order = p->repair_order,
                .result = state == JOURNAL_STATE_SUCCEEDED ? AUDIT_SUCCEEDED :
                          state == JOURNAL_STATE_CANCELLED ? AUDIT_CANCELLED : AUDIT_FAILED,
                .error = state == JOURNAL_STATE_SUCCEEDED ? NULL : p->error,
                .keys_before = p->keys_before,
                .keys_after = p->max > 0 || p->registered > 0 ? (int) p->registered : -1,
                .battery_min = p->battery_min,
                .passcode_attempts = p->passcode_attempts,
        };
        r = audit_append(p->daemon->config.state_dir, &a);
        if (r < 0)
                log_error_errno(r, "Procedure %" PRIu64 ": failed to append the audit record: %m", p->id);
        else {
                r = journal_remove(p->daemon->config.state_dir, p->id);
                if (r < 0)
                        log_warning_errno(r, "Procedure %" PRIu64 ": failed to remove the journal: %m", p->id);
        }

        if (state == JOURNAL_STATE_SUCCEEDED)
                reply_ok(p);
        else
                reply_error(p, p->error, "%s", msg);
        procedure_bus_emit(p);
        if (state == JOURNAL_STATE_SUCCEEDED)
                procedure_bus_emit_step(p);
        procedure_bus_emit_finished(p);
        manager_procedure_ended(p->manager, p);
}

/* Creation */

static int procedure_alloc(Manager *m, uint64_t id, ProcedureKind kind, const char *vin, const VehicleProfile *profile,
                           uint32_t owner, const char *technician, const char *repair_order, Procedure **ret) {
        Procedure *p;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->manager = m;
        p->daemon = manager_daemon(m);
        p->id = id;
        snprintf(p->path, sizeof(p->path), PROCEDURE_PATH_PREFIX "/%" PRIu64, id);
        p->kind = kind;
        p->steps = procedure_steps(kind, &p->n_steps);
        snprintf(p->vin, sizeof(p->vin), "%s", vin);
        p->profile = profile;
        p->owner = owner;
        p->created = now_usec(CLOCK_REALTIME);
        p->technician = strdup(technician ?: "");
        p->repair_order = strdup(repair_order ?: "");
        p->keys_before = -1;
        p->battery_min = NAN;
        p->state = JOURNAL_STATE_RUNNING;
        p->battery_trace = malloc(sizeof(BatteryTrace));
        if (p->battery_trace)
                battery_trace_begin(p->battery_trace, now_usec(CLOCK_MONOTONIC));
        p->battery_state = battery_monitor_state(battery_watch_monitor(manager_battery(m)));
        if (!p->technician || !p->repair_order || !p->battery_trace) {
                procedure_free(p);
                return -ENOMEM;
        }

        r = sd_event_add_time_relative(p->daemon->event, &p->poll, CLOCK_MONOTONIC, POLL_INTERVAL_USEC, 0, on_poll, p);
        if (r < 0) {
                procedure_free(p);
                return r;
        }
        (void) sd_event_source_set_enabled(p->poll, SD_EVENT_ON);
        (void) sd_event_source_set_description(p->poll, "procedure-poll");
        *ret = p;
        return 0;
}

static void hold_session(Procedure *p) {
        unsigned ms = p->daemon->config.tester_present_ms ?: p->profile->timing.tester_present_ms;
        uds_link_set_tester_present(p->daemon->link, (usec_t) ms * USEC_PER_MSEC);
}

static void request_seed(Procedure *p);

static void on_resume_keys(Procedure *p, const UdsResponse *r);

static void on_wake_session(Procedure *p, const UdsResponse *r) {
        const char *step = procedure_step_id(p);

        if (r->nrc != 0) {
                set_prompt(p, "The ECU woke up but refused the extended session; immod keeps trying.");
                return;
        }
        hold_session(p);
        if (p->resuming) {
                read_did(p, p->profile->dids.key_status, on_resume_keys);
                return;
        }
        set_prompt(p, "%s", p->steps[p->step].prompt);
        procedure_bus_emit(p);

        /* Sleep re-locks security: a seed shown is void, and in a reset the immobilizer
         * level unlocked before it is lost (both must be unlocked in one session). */
        if (p->kind == PROCEDURE_IMMOBILIZER_RESET &&
            (streq(step, "confirm-duration") || streq(step, "smart-code-passcode"))) {
                enter_step(p, (size_t) procedure_step_index(p->kind, "immobilizer-passcode"));
                set_prompt(p, "The ECU fell asleep and forgot the immobilizer passcode: both passcodes must be "
                              "entered in one session. Get the immobilizer passcode for the new seed shown.");
                procedure_bus_emit(p);
        } else if (p->steps[p->step].end == STEP_END_PASSCODE) {
                request_seed(p);
                set_prompt(p, "The ECU fell asleep and the seed shown before is no longer valid: get the passcode "
                              "for the new seed shown.");
                procedure_bus_emit(p);
        } else if (p->reg_mode > 0 || streq(step, "touch-keys"))
                /* A session drop ended registration or erasure in the ECU. */
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_ASLEEP,
                       "The ECU fell asleep, which ended %s; nothing more was changed. Start the procedure again.",
                       p->reg_mode > 0 ? "registration mode" : "the erasure window");
}

static void wake_up(Procedure *p) {
        static const uint8_t extended[2] = { UDS_SESSION_CONTROL, 0x03 };
        log_info("Procedure %" PRIu64 ": the ECU is awake again; re-entering the extended session.", p->id);
        (void) request(p, extended, sizeof(extended), on_wake_session);
}

static void on_start_keys(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 6, "Reading the key status (DID A001)")) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED, "The ECU did not give its key status.");
                return;
        }
        keys_from_a001(p, r->data + 3);
        p->keys_before = (int) p->registered;
        /* answers StartProcedure with the path */
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(p->pending);
        enter_step(p, 0);
        if (m)
                (void) sd_bus_reply_method_return(m, "o", p->path);
}

static void on_start_session(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 2, "Entering the extended session")) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED, "The ECU refused the extended session.");
                return;
        }
        hold_session(p);
        read_did(p, p->profile->dids.key_status, on_start_keys);
}

int procedure_start(Manager *m, uint64_t id, ProcedureKind kind, const char *vin, const VehicleProfile *profile,
                    uint32_t owner, const char *technician, const char *repair_order, sd_bus_message *msg,
                    Procedure **ret) {
        static const uint8_t extended[2] = { UDS_SESSION_CONTROL, 0x03 };
        Procedure *p;
        int r;

        r = procedure_alloc(m, id, kind, vin, profile, owner, technician, repair_order, &p);
        if (r < 0)
                return r;
        p->pending = sd_bus_message_ref(msg);
        r = request(p, extended, sizeof(extended), on_start_session);
        if (r < 0) {
                p->pending = sd_bus_message_unref(p->pending);
                procedure_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

static void on_resume_session(Procedure *p, const UdsResponse *r) {
        if (r->nrc == 0)
                hold_session(p);
        /* the poll timer reads A101's results from here on */
}

/*
 * A registration or an erasure after a restart. immod's new session (10 03, a session change
 * even if the old one was still open) re-locked security and ended any registration mode or
 * erasure window in the ECU (vehicle-protocol.md §4), so nothing can go on where it stopped.
 * A technician expects the procedure to pick up where it can safely be repeated, rather than
 * to start over with a new one: the same procedure object, one audit record in the end.
 *   key-registration: confirm-instructions stays; any later step goes back to
 *     smart-code-passcode (a new seed). Keys registered so far stay registered; nothing that
 *     registration sends can harm the car when sent again.
 *   key-erasure: confirm-warning stays; any later step goes back to declare-keys: the declared
 *     count and its confirmations are not journalled and are asked again. An open window
 *     deleted nothing.
 *   an Erase being sent (journalled "31 02 A1 03 ..") may have deleted keys: it is never sent
 *     again; the procedure ends as failed with the key status read now in its audit record.
 */
static size_t resume_step(ProcedureKind kind, const char *step) {
        int i = procedure_step_index(kind, step);
        int safe = procedure_step_index(kind, kind == PROCEDURE_KEY_REGISTRATION ? "smart-code-passcode" : "declare-keys");

        if (i < 0)
                return 0;
        if (streq(step, "done")) /* it ended; only its record was not written */
                return (size_t) i;
        return (size_t) MIN(i, safe);
}

static void on_resume_keys(Procedure *p, const UdsResponse *r) {
        const char *stopped_at = p->stopped_at ?: procedure_step_id(p);

        if (!procedure_is_active(p)) /* cancelled meanwhile */
                return;
        if (!answer_ok(p, r, 6, "Reading the key status (DID A001)")) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "After immod restarted, the ECU did not give its key status; the procedure ended. Start it "
                       "again.");
                return;
        }
        keys_from_a001(p, r->data + 3);
        p->resuming = false;
        if (p->erase_sent) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_CANCELLED,
                       "immod stopped while the Erase command was sent: it may have reached the car and is never "
                       "sent again. %u key(s) are registered now, %d before. Check the keys before starting again.",
                       p->registered, p->keys_before);
                return;
        }
        enter_step(p, p->step);
        if (p->kind == PROCEDURE_KEY_REGISTRATION && streq(procedure_step_id(p), "smart-code-passcode") &&
            streq(stopped_at, "smart-code-passcode"))
                set_prompt(p, "immod restarted; the seed shown before is no longer valid. Get the smart code "
                              "passcode for the new seed shown and enter it.");
        else if (p->kind == PROCEDURE_KEY_REGISTRATION && streq(procedure_step_id(p), "smart-code-passcode"))
                set_prompt(p, "immod restarted during step %s: the ECU forgot the passcode and ended registration "
                              "mode. Keys registered so far stay registered (%u now). Get the smart code passcode "
                              "for the new seed shown and enter it.",
                           stopped_at, p->registered);
        else if (p->kind == PROCEDURE_KEY_ERASURE && streq(procedure_step_id(p), "declare-keys"))
                set_prompt(p, "immod restarted during step %s; nothing was deleted. Enter the number of customer "
                              "keys that are present again.",
                           stopped_at);
        else
                set_prompt(p, "immod restarted; continue with this step. %s", p->steps[p->step].prompt);
        procedure_bus_emit(p);
}

static void on_resume_safe_session(Procedure *p, const UdsResponse *r) {
        if (!procedure_is_active(p))
                return;
        if (r->nrc != 0) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED,
                       "After immod restarted, the ECU refused the extended session; the procedure ended. Start it "
                       "again.");
                return;
        }
        hold_session(p);
        read_did(p, p->profile->dids.key_status, on_resume_keys);
}

int procedure_resume(Manager *m, const JournalRecord *j, const VehicleProfile *profile, Procedure **ret) {
        static const uint8_t extended[2] = { UDS_SESSION_CONTROL, 0x03 };
        Procedure *p;
        int r;

        r = procedure_alloc(m, j->id, j->kind, j->vin, profile, j->owner, j->technician, j->repair_order, &p);
        if (r < 0)
                return r;
        p->created = j->created;
        p->keys_before = j->keys_before;
        p->battery_min = j->battery_min;
        p->passcode_attempts = j->passcode_attempts;
        p->resumed = true;
        if (j->customer_last_name && j->customer_last_name[0] &&
            !(p->customer_last_name = strdup(j->customer_last_name))) {
                procedure_free(p);
                return -ENOMEM;
        }
        r = procedure_step_index(j->kind, j->step);
        p->step = r >= 0 ? (size_t) r : 0;
        p->state = j->state;

        bool reset_sent = j->kind == PROCEDURE_IMMOBILIZER_RESET &&
                          (streq(j->step, "resetting") || (j->sent_command && startswith(j->sent_command, "31 01 A1 01")));
        if (reset_sent) {
                p->step = (size_t) procedure_step_index(j->kind, "resetting");
                p->state = JOURNAL_STATE_RUNNING;
                set_prompt(p, "%s", p->steps[p->step].prompt);
                log_info("Procedure %" PRIu64 ": a reset was running when immod stopped; following it to its end.",
                         p->id);
                (void) request(p, extended, sizeof(extended), on_resume_session);
        } else if (j->kind != PROCEDURE_IMMOBILIZER_RESET) {
                char erase[JOURNAL_COMMAND_MAX_BYTES];

                routine_command_text(0x02, profile->rids.key_erasure, -1, erase, sizeof(erase));
                p->erase_sent = j->kind == PROCEDURE_KEY_ERASURE && j->sent_command && startswith(j->sent_command, erase);
                p->resuming = true;
                p->stopped_at = j->step;
                p->step = resume_step(j->kind, j->step);
                p->state = JOURNAL_STATE_RUNNING;
                set_prompt(p, "immod restarted; reading the vehicle's key status.");
                log_info("Procedure %" PRIu64 ": immod stopped during step %s; going on from step %s.", p->id, j->step,
                         procedure_step_id(p));
                r = request(p, extended, sizeof(extended), on_resume_safe_session);
                if (r < 0)
                        finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_UNREACHABLE,
                               "After immod restarted, the ECU cannot be reached: %s. Start the procedure again.",
                               strerror(-r));
        } else {
                set_prompt(p, "%s", p->steps[p->step].prompt);
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_CANCELLED,
                       "immod stopped during step %s; the procedure ended there%s. Start it again.", j->step,
                       j->sent_command ? " (the last command may have reached the car)" : "");
        }
        *ret = p;
        return 0;
}

Procedure *procedure_free(Procedure *p) {
        if (!p)
                return NULL;
        procedure_bus_abort_fetch(p);
        if (p->deferred) {
                (void) sd_bus_reply_method_errorf(p->deferred, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
                p->deferred = sd_bus_message_unref(p->deferred);
        }
        p->poll = sd_event_source_disable_unref(p->poll);
        p->pending = sd_bus_message_unref(p->pending);
        free(p->customer_last_name);
        free(p->technician);
        free(p->repair_order);
        free(p->error);
        free(p->error_message);
        free(p->battery_trace);
        free(p);
        return NULL;
}

/* Methods */

static int check_idle(Procedure *p, sd_bus_error *error) {
        if (p->busy || p->pending)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "The procedure is talking to the ECU; try again.");
        return 0;
}

static int wrong_step(Procedure *p, const char *method, sd_bus_error *error) {
        if (!procedure_is_active(p))
                return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "The procedure has ended (%s).",
                                         journal_state_to_string(p->state));
        return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "%s() does not end the current step %s.", method,
                                 procedure_step_id(p));
}

static void on_door(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Reading the vehicle status (DID A003)"))
                return;
        if (!(r->data[3] & 0x01)) {
                reply_error(p, IMMOD_ERROR_ECU_REFUSED,
                            "The driver's door is closed (DID A003): open it and leave it open, then confirm again.");
                return;
        }
        enter_step(p, p->step + 1);
}

int procedure_acknowledge(Procedure *p, sd_bus_message *msg, const char *step, sd_bus_error *error) {
        int r;

        if (!procedure_is_active(p) || p->steps[p->step].end != STEP_END_ACKNOWLEDGE || !streq(step, procedure_step_id(p)))
                return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "The current step is %s, not %s.",
                                         procedure_is_active(p) ? procedure_step_id(p) : journal_state_to_string(p->state),
                                         step);
        r = check_idle(p, error);
        if (r < 0)
                return r;

        if (streq(step, "check-slots") && p->available == 0)
                return sd_bus_error_setf(error, IMMOD_ERROR_ECU_REFUSED,
                                         "No key slot is free (%u of %u used): no key can be added.", p->registered,
                                         p->max);
        p->pending = sd_bus_message_ref(msg);
        if (streq(step, "open-driver-door"))
                read_did(p, p->profile->dids.vehicle_status, on_door);
        else
                enter_step(p, p->step + 1);
        return 1;
}

static void on_reset_started(Procedure *p, const UdsResponse *r) {
        if (!answer_ok(p, r, 4, "Starting the smart code reset")) {
                /* NRC: the reset did not start; the passcode is spent. */
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_ECU_REFUSED, "The ECU refused to start the reset.");
                return;
        }
        enter_step(p, p->step + 1);
}

static void start_reset(Procedure *p) {
        routine_journalled(p, 0x01, p->profile->rids.smart_code_reset, -1, on_reset_started);
}

static void on_battery(Procedure *p, const UdsResponse *r);

static void on_passcode_refused_attempts(Procedure *p, const UdsResponse *r) {
        if (r->nrc == 0 && r->size >= 7) {
                const uint8_t *d = r->data + 3;
                set_uint(p, &p->attempts_left, p->seed_kind == PASSCODE_IMMOBILIZER ? d[0] : d[1], PROP_ATTEMPTS);
                set_uint(p, &p->lockout_s, be16(d + 2), PROP_LOCKOUT);
        }
        if (p->lockout_s > 0) {
                clear_seed(p);
                reply_error(p, IMMOD_ERROR_LOCKED_OUT,
                            "Too many wrong passcodes: the ECU is locked for %u seconds. Wait, then submit again for a "
                            "new seed.",
                            p->lockout_s);
                return;
        }
        /* a fresh seed, then the error: the caller sees the new Seed at once */
        p->rejected = true;
        request_seed(p);
}

static void on_passcode(Procedure *p, const UdsResponse *r) {
        if (r->nrc == UDS_NRC_INVALID_KEY || r->nrc == UDS_NRC_EXCEEDED_ATTEMPTS ||
            r->nrc == UDS_NRC_REQUEST_SEQUENCE_ERROR || r->nrc == UDS_NRC_TIME_DELAY_NOT_EXPIRED) {
                read_did(p, p->profile->dids.security_attempts, on_passcode_refused_attempts);
                return;
        }
        if (!answer_ok(p, r, 2, "Sending the passcode"))
                return;
        set_uint(p, &p->lockout_s, 0, PROP_LOCKOUT);
        clear_seed(p);
        if (p->kind == PROCEDURE_IMMOBILIZER_RESET && streq(procedure_step_id(p), "smart-code-passcode"))
                start_reset(p);
        else
                enter_step(p, p->step + 1);
}

static char normalized_passcode[PASSCODE_SMART_CODE_LEN + 1];

static void send_passcode(Procedure *p) {
        uint8_t req[2 + PASSCODE_SMART_CODE_LEN / 2] = { UDS_SECURITY_ACCESS };
        size_t n;

        if (p->seed_kind == PASSCODE_IMMOBILIZER) {
                req[1] = 0x02;
                memcpy(req + 2, normalized_passcode, PASSCODE_IMMOBILIZER_LEN);
                n = 2 + PASSCODE_IMMOBILIZER_LEN;
        } else {
                req[1] = 0x04;
                (void) hex_decode(normalized_passcode, req + 2, PASSCODE_SMART_CODE_LEN / 2);
                n = 2 + PASSCODE_SMART_CODE_LEN / 2;
        }
        explicit_bzero(normalized_passcode, sizeof(normalized_passcode));
        p->passcode_attempts++;
        send_or_fail(p, req, n, on_passcode);
        explicit_bzero(req, sizeof(req));
}

/* The watch's monitor, with this vehicle's rules (the Manager's vehicle may differ from the
 * procedure's only if SetVehicle was called while it ran; then the procedure's own rules win). */
static bool check_battery(Procedure *p, const char **reason) {
        BatteryMonitor *wm = battery_watch_monitor(manager_battery(p->manager)), bm = *wm;

        if (bm.start_min_v != p->profile->battery.start_min_v || bm.running_min_v != p->profile->battery.warn_below_v)
                (void) battery_monitor_set_rules(&bm, p->profile->battery.start_min_v, p->profile->battery.warn_below_v);
        bool ok = battery_allows_reset(&bm, reason);
        memcpy(wm->reason, bm.reason, sizeof(wm->reason)); /* *reason must outlive bm */
        if (*reason)
                *reason = wm->reason;
        return ok;
}

static void on_battery(Procedure *p, const UdsResponse *r) {
        const char *reason = NULL;
        double volts = NAN;

        if (r->nrc == 0)
                (void) battery_parse_answer(p->profile->dids.battery, r->data, r->size, &volts);
        /* the watch's sample handler adds it to this procedure's trace and minimum */
        battery_watch_feed(manager_battery(p->manager), volts);
        if (!check_battery(p, &reason)) {
                explicit_bzero(normalized_passcode, sizeof(normalized_passcode));
                reply_error(p, IMMOD_ERROR_BATTERY_LOW, "%s", reason ?: "The battery voltage is unknown.");
                return;
        }
        send_passcode(p);
}

int procedure_submit_passcode(Procedure *p, sd_bus_message *msg, const char *passcode, sd_bus_error *error) {
        const char *reason = NULL;
        int r;

        if (!procedure_is_active(p) || p->steps[p->step].end != STEP_END_PASSCODE)
                return wrong_step(p, "SubmitPasscode", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;

        if (!p->have_seed) {
                /* after a lockout or a lost session: a new seed first */
                p->pending = sd_bus_message_ref(msg);
                request_seed(p);
                return 1;
        }
        r = passcode_normalize(p->seed_kind, passcode, normalized_passcode, sizeof(normalized_passcode), &reason);
        if (r < 0)
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_PASSCODE_FORMAT, "%s",
                                         reason ?: "The passcode is malformed.");

        p->pending = sd_bus_message_ref(msg);
        if (p->kind == PROCEDURE_IMMOBILIZER_RESET && p->seed_kind == PASSCODE_SMART_CODE) {
                BatteryWatch *w = manager_battery(p->manager);
                if (p->daemon->config.battery_source == BATTERY_SOURCE_ECU) {
                        read_did(p, p->profile->dids.battery, on_battery);
                        return 1;
                }
                if (!battery_watch_enabled(w))
                        log_info("Procedure %" PRIu64 ": the battery is not watched (battery: {source: none}); "
                                 "skipping the reset's battery check.",
                                 p->id);
                else {
                        battery_watch_sample_now(w);
                        if (!check_battery(p, &reason)) {
                                explicit_bzero(normalized_passcode, sizeof(normalized_passcode));
                                reply_error(p, IMMOD_ERROR_BATTERY_LOW, "%s",
                                            reason ?: "The battery voltage is unknown.");
                                return 1;
                        }
                }
        }
        send_passcode(p);
        return 1;
}

int procedure_set_key_count(Procedure *p, sd_bus_message *msg, uint32_t present, sd_bus_error *error) {
        if (!procedure_is_active(p) || p->steps[p->step].end != STEP_END_KEY_COUNT)
                return wrong_step(p, "SetKeyCount", error);
        if (present == 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "At least one key must be present; with no key left, run an immobilizer reset.");
        if (present > p->registered)
                return sd_bus_error_setf(error, IMMOD_ERROR_COUNT_MISMATCH,
                                         "%u keys declared present, but only %u are registered.", present, p->registered);
        p->declared = present;
        p->to_delete = p->registered - present;
        p->dirty |= PROP_KEYS;
        enter_step(p, p->step + 1);
        set_prompt(p, "Keep %u key(s) and permanently delete %u key(s). Confirm the counts.", p->declared, p->to_delete);
        procedure_bus_emit(p);
        return sd_bus_reply_method_return(msg, NULL);
}

static void on_erased_keys(Procedure *p, const UdsResponse *r) {
        if (r->nrc == 0 && r->size >= 6)
                keys_from_a001(p, r->data + 3);
        enter_step(p, p->step + 1);
}

static void on_erase(Procedure *p, const UdsResponse *r) {
        if (r->nrc == UDS_NRC_CONDITIONS_NOT_CORRECT && now_usec(CLOCK_REALTIME) >= p->deadline) {
                reply_error(p, IMMOD_ERROR_TIMEOUT, "The erasure window closed; nothing was deleted.");
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_TIMEOUT, "The erasure window closed before Erase; nothing was deleted.");
                return;
        }
        if (!answer_ok(p, r, 4, "Erasing the keys"))
                return;
        p->deadline = 0;
        p->dirty |= PROP_DEADLINE;
        read_did(p, p->profile->dids.key_status, on_erased_keys);
}

int procedure_erase(Procedure *p, sd_bus_message *msg, uint32_t expected, sd_bus_error *error) {
        int r;

        if (!procedure_is_active(p) || p->steps[p->step].end != STEP_END_ERASE)
                return wrong_step(p, "Erase", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;
        if (p->deadline > 0 && now_usec(CLOCK_REALTIME) >= p->deadline) {
                finish(p, JOURNAL_STATE_FAILED, IMMOD_ERROR_TIMEOUT, "The erasure window closed before Erase; nothing was deleted.");
                return sd_bus_error_setf(error, IMMOD_ERROR_TIMEOUT, "The erasure window closed; nothing was deleted.");
        }
        if (p->touched != p->declared || p->registered < p->touched || expected != p->registered - p->touched)
                return sd_bus_error_setf(error, IMMOD_ERROR_COUNT_MISMATCH,
                                         "%u of %u declared keys were touched and %u would be deleted, not %u; nothing "
                                         "was deleted.",
                                         p->touched, p->declared, p->registered - MIN(p->touched, p->registered), expected);
        p->pending = sd_bus_message_ref(msg);
        routine_journalled(p, 0x02, p->profile->rids.key_erasure, (int) expected, on_erase);
        return 1;
}

static void on_registration_stopped(Procedure *p, const UdsResponse *r) {
        /* NRC 0x22 here: registration mode had already ended */
        enter_step(p, p->step + 1);
}

int procedure_finish_registration(Procedure *p, sd_bus_message *msg, sd_bus_error *error) {
        int r;

        if (!at_step(p, "touch-new-keys") || p->reg_mode != 2)
                return wrong_step(p, "Finish", error);
        r = check_idle(p, error);
        if (r < 0)
                return r;
        p->pending = sd_bus_message_ref(msg);
        routine(p, 0x02, p->profile->rids.key_registration, -1, on_registration_stopped);
        return 1;
}

static void ignore_answer(UdsClient *c, const UdsResponse *r, void *userdata) {
}

int procedure_cancel(Procedure *p, sd_bus_message *msg, sd_bus_error *error) {
        if (!procedure_is_active(p))
                return wrong_step(p, "Cancel", error);
        if (!p->steps[p->step].cancellable)
                return sd_bus_error_setf(error, IMMOD_ERROR_NOT_CANCELLABLE,
                                         "The ECU reset is running and must not be interrupted; wait for it to end.");
        if (p->reg_mode > 0 && !p->busy) {
                /* leave registration mode; the answer does not matter */
                uint8_t req[4] = { UDS_ROUTINE_CONTROL, 0x02 };
                put_be16(req + 2, p->profile->rids.key_registration);
                (void) uds_link_request(p->daemon->link, req, sizeof(req), ignore_answer, NULL);
        }
        /* An open erasure window is left to expire: stopping it would delete keys. */
        if (p->pending)
                reply_error(p, IMMOD_ERROR_CANCELLED, "The procedure was cancelled.");
        finish(p, JOURNAL_STATE_CANCELLED, IMMOD_ERROR_CANCELLED, "The procedure was cancelled.");
        return sd_bus_reply_method_return(msg, NULL);
}
