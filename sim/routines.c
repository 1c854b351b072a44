/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The routines of §4: A101 smart code reset, A102 key registration, A103 undesignated key
 * erasure. Each start is a table of checks in the order ISO 14229-1 gives the NRCs:
 *
 *   step                                      NRC
 *   1 length of the option                    0x13 incorrectMessageLengthOrInvalidFormat
 *   2 option value                            0x31 requestOutOfRange
 *   3 extended session                        0x22 conditionsNotCorrect (§4 says so)
 *   4 security level(s) unlocked              0x33 securityAccessDenied
 *   5 stop/results of a routine never started 0x24 requestSequenceError
 *   6 vehicle conditions                      0x22 conditionsNotCorrect
 */
#include <stdio.h>

#include "ecu.h"
#include "event-util.h"
#include "log.h"
#include "uds.h"


static int arm(Ecu *ecu, sd_event_source **s, usec_t when, sd_event_time_handler_t h, const char *desc) {
        return event_timer_arm(ecu->event, s, when, USEC_PER_MSEC, h, ecu, desc);
}

static void disarm(sd_event_source *s) {
        if (s)
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
}

static usec_t remaining(Ecu *ecu, usec_t end) {
        usec_t now = ecu_now(ecu);
        return end > now ? end - now : 0;
}

/* --- A101 smart code reset --- */

uint8_t ecu_reset_progress(Ecu *ecu) {
        usec_t now = ecu_now(ecu), total;

        if (ecu->reset.status != RESET_RUNNING)
                return ecu->reset.final_progress;
        total = ecu->reset.end - ecu->reset.start;
        if (total == 0 || now >= ecu->reset.end)
                return 99;
        return (uint8_t) MIN((now - ecu->reset.start) * 100 / total, 99);
}

usec_t ecu_reset_remaining(Ecu *ecu) {
        return ecu->reset.status == RESET_RUNNING ? remaining(ecu, ecu->reset.end) : 0;
}

static void reset_end(Ecu *ecu, bool success, uint8_t reason) {
        disarm(ecu->reset_timer);
        if (success) {
                for (unsigned s = 1; s <= ecu->opt.max_slots; s++)
                        if (ecu->slot_used[s])
                                (void) ecu_erase_slot(ecu, s);
                /* Data3 changes even when no key was registered. */
                ecu->key_generation++;
                ecu->reset.status = RESET_SUCCEEDED;
                ecu->reset.final_progress = 100;
                ecu->reset.fail_reason = 0;
                log_info("Smart code reset succeeded: every key erased");
        } else {
                ecu->reset.final_progress = ecu_reset_progress(ecu);
                ecu->reset.status = RESET_FAILED;
                ecu->reset.fail_reason = reason;
                log_info("Smart code reset failed (reason %u): nothing erased", reason);
        }
        /* §4: the unlocked levels are lost when a reset ends, successful or not. */
        ecu->unlocked[LEVEL_IMMOBILIZER] = ecu->unlocked[LEVEL_SMART_CODE] = false;
        ecu->seed_pending[LEVEL_IMMOBILIZER] = ecu->seed_pending[LEVEL_SMART_CODE] = false;
        ecu->smart_after_immobilizer = false;
        ecu_save(ecu);
}

static int on_reset_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Ecu *ecu = userdata;

        if (ecu->reset.status != RESET_RUNNING)
                return 0;
        if (ecu->battery_mv < ECU_RESET_FAIL_MV)
                reset_end(ecu, false, 1);
        else
                reset_end(ecu, true, 0);
        return 0;
}

int ecu_reset_resume(Ecu *ecu, usec_t left) {
        usec_t now = ecu_now(ecu), total = ecu_scaled(ecu, ECU_RESET_SEC);

        left = MIN(left, total);
        ecu->reset.status = RESET_RUNNING;
        ecu->reset.started = true;
        ecu->reset.end = now + left;
        ecu->reset.start = ecu->reset.end - total;
        ecu->reset.fail_reason = 0;
        return arm(ecu, &ecu->reset_timer, ecu->reset.end, on_reset_timer, "ecu-reset");
}

void ecu_routines_battery_changed(Ecu *ecu) {
        if (ecu->reset.status == RESET_RUNNING && ecu->battery_mv < ECU_RESET_FAIL_MV)
                reset_end(ecu, false, 1);
}

static bool registration_active(Ecu *ecu) {
        return ecu->reg.status == REG_WAIT_REGISTERED || ecu->reg.status == REG_WAIT_NEW;
}

static void reset_routine(Ecu *ecu, uint8_t sub, const uint8_t *opt, size_t n, bool suppress) {
        uint8_t a[4 + 5] = { 0x71, sub, 0xA1, 0x01 };
        usec_t left;
        int r;

        if (n != 0)
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_INCORRECT_LENGTH);
        if (!ecu->extended)
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);

        switch (sub) {
        case 0x01:
                if (!ecu->unlocked[LEVEL_IMMOBILIZER] || !ecu->unlocked[LEVEL_SMART_CODE])
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_SECURITY_ACCESS_DENIED);
                if (!ecu->smart_after_immobilizer || ecu->reset.status == RESET_RUNNING ||
                    registration_active(ecu) || ecu->erase.status == ERASE_OPEN || !ecu->door_open ||
                    ecu->battery_mv < ECU_MIN_RESET_MV)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                ecu->reset.final_progress = 0;
                r = ecu_reset_resume(ecu, ecu_scaled(ecu, ECU_RESET_SEC));
                if (r < 0) {
                        log_error_errno(r, "Cannot arm the reset timer: %m");
                        ecu->reset.status = RESET_FAILED;
                        ecu->reset.fail_reason = 2;
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                }
                log_info("Smart code reset started (%llu ms)",
                         (unsigned long long) (ecu_scaled(ecu, ECU_RESET_SEC) / USEC_PER_MSEC));
                ecu_save(ecu);
                if (!suppress)
                        ecu_answer(ecu, a, 4);
                return;
        case 0x02:
                if (!ecu->unlocked[LEVEL_IMMOBILIZER] || !ecu->unlocked[LEVEL_SMART_CODE])
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_SECURITY_ACCESS_DENIED);
                if (ecu->reset.status != RESET_RUNNING)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_SEQUENCE_ERROR);
                /* §4: a running reset cannot be stopped. */
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
        default:
                if (!ecu->reset.started)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_SEQUENCE_ERROR);
                left = ecu_reset_remaining(ecu);
                a[4] = ecu->reset.status;
                a[5] = ecu_reset_progress(ecu);
                put_be16(a + 6, (uint16_t) MIN((left + USEC_PER_SEC - 1) / USEC_PER_SEC, 0xFFFFU));
                a[8] = ecu->reset.fail_reason;
                return ecu_answer(ecu, a, sizeof(a));
        }
}

/* --- A102 key registration --- */

static void registration_end(Ecu *ecu) {
        ecu->reg.status = REG_ENDED;
        disarm(ecu->reg_timer);
}

static int on_reg_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Ecu *ecu = userdata;

        if (!registration_active(ecu))
                return 0;
        log_info("Registration timed out");
        ecu->last_result = RESULT_TIMED_OUT;
        ecu_report_event(ecu, &ecu->reg.events, EVENT_TIMED_OUT, 0, 0);
        registration_end(ecu);
        return 0;
}

/* The idle timeout runs again from each touch. */
static void registration_kick(Ecu *ecu) {
        int r = arm(ecu, &ecu->reg_timer, ecu_now(ecu) + ecu_window_scaled(ecu, ECU_REG_IDLE_SEC), on_reg_timer,
                    "ecu-registration-idle");
        if (r < 0)
                log_error_errno(r, "Cannot arm the registration timer: %m");
}

static void registration_touch(Ecu *ecu, uint32_t key) {
        int slot = ecu_find_key(ecu, key);
        EventQueue *q = &ecu->reg.events;

        registration_kick(ecu);
        if (ecu_key_revoked(ecu, key)) {
                ecu->last_result = RESULT_ERASED;
                ecu_report_event(ecu, q, EVENT_REJECTED_ERASED, 0, key);
                return;
        }
        if (ecu->reg.status == REG_WAIT_REGISTERED) {
                if (slot == 0) {
                        ecu->last_result = RESULT_NO_REGISTERED_KEY;
                        ecu_report_event(ecu, q, EVENT_UNKNOWN_KEY, 0, key);
                        return;
                }
                ecu_report_event(ecu, q, EVENT_RECOGNISED, (uint8_t) slot, key);
                ecu_beep(ecu, 1);
                ecu->reg.status = REG_WAIT_NEW;
                return;
        }
        if (slot > 0) {
                ecu->last_result = RESULT_ALREADY;
                ecu_report_event(ecu, q, EVENT_REJECTED_ALREADY, (uint8_t) slot, key);
                return;
        }
        slot = ecu_add_key(ecu, key);
        if (slot < 0) {
                ecu->last_result = RESULT_SLOTS_FULL;
                ecu_report_event(ecu, q, EVENT_REJECTED_NO_SLOT, 0, key);
                if (ecu->reg.mode == 2)
                        registration_end(ecu);
                return;
        }
        ecu->last_result = RESULT_SUCCESS;
        ecu_report_event(ecu, q, EVENT_REGISTERED, (uint8_t) slot, key);
        /* Two beeps when adding; one after a reset (§4). */
        ecu_beep(ecu, ecu->reg.mode == 1 ? 2 : 1);
        ecu_save(ecu);
        if (ecu->reg.mode == 1 || ecu_n_registered(ecu) >= ecu->opt.max_slots)
                registration_end(ecu);
}

static void append_events(EventQueue *q, uint8_t *a, size_t *len) {
        /* Each event is reported once. */
        a[(*len)++] = (uint8_t) q->n;
        for (unsigned i = 0; i < q->n; i++) {
                a[(*len)++] = q->events[i].code;
                a[(*len)++] = q->events[i].slot;
                put_be32(a + *len, q->events[i].key);
                *len += 4;
        }
        q->n = 0;
}

static void registration_routine(Ecu *ecu, uint8_t sub, const uint8_t *opt, size_t n, bool suppress) {
        uint8_t a[16 + ECU_MAX_EVENTS * 6] = { 0x71, sub, 0xA1, 0x02 };
        size_t len = 4;

        if (n != (sub == 0x01 ? 1u : 0u))
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_INCORRECT_LENGTH);
        if (sub == 0x01 && opt[0] != 1 && opt[0] != 2)
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_OUT_OF_RANGE);
        if (!ecu->extended)
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);

        switch (sub) {
        case 0x01:
                if (!ecu->unlocked[LEVEL_SMART_CODE])
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_SECURITY_ACCESS_DENIED);
                if (ecu->speed_kmh > 0) {
                        ecu->last_result = RESULT_MOVING;
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                }
                if (ecu->reset.status == RESET_RUNNING || registration_active(ecu) ||
                    ecu->erase.status == ERASE_OPEN || (opt[0] == 1 && ecu_n_registered(ecu) == 0) ||
                    (opt[0] == 2 && ecu_n_registered(ecu) > 0))
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                ecu->reg.started = true;
                ecu->reg.mode = opt[0];
                ecu->reg.status = opt[0] == 1 ? REG_WAIT_REGISTERED : REG_WAIT_NEW;
                ecu->reg.events.n = 0;
                ecu->last_result = RESULT_NONE;
                registration_kick(ecu);
                log_info("Key registration started, mode %u", opt[0]);
                if (!suppress)
                        ecu_answer(ecu, a, 4);
                return;
        case 0x02:
                if (!ecu->unlocked[LEVEL_SMART_CODE])
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_SECURITY_ACCESS_DENIED);
                if (!registration_active(ecu))
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_SEQUENCE_ERROR);
                registration_end(ecu);
                log_info("Key registration stopped");
                if (!suppress)
                        ecu_answer(ecu, a, 4);
                return;
        default:
                if (!ecu->reg.started)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_SEQUENCE_ERROR);
                a[len++] = (uint8_t) ecu->reg.status;
                a[len++] = (uint8_t) ecu_n_registered(ecu);
                a[len++] = (uint8_t) (ecu->opt.max_slots - ecu_n_registered(ecu));
                append_events(&ecu->reg.events, a, &len);
                return ecu_answer(ecu, a, len);
        }
}

/* --- A103 undesignated key erasure --- */

static int on_erase_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Ecu *ecu = userdata;

        if (ecu->erase.status != ERASE_OPEN)
                return 0;
        log_info("Erasure window expired");
        ecu->erase.status = ERASE_EXPIRED;
        ecu_report_event(ecu, &ecu->erase.events, EVENT_TIMED_OUT, 0, 0);
        return 0;
}

static void erasure_touch(Ecu *ecu, uint32_t key) {
        int slot = ecu_find_key(ecu, key);

        if (ecu_key_revoked(ecu, key))
                return ecu_report_event(ecu, &ecu->erase.events, EVENT_REJECTED_ERASED, 0, key);
        if (slot == 0)
                return ecu_report_event(ecu, &ecu->erase.events, EVENT_UNKNOWN_KEY, 0, key);
        if (!ecu->erase.touched[slot]) {
                ecu->erase.touched[slot] = true;
                ecu->erase.n_touched++;
                ecu_report_event(ecu, &ecu->erase.events, EVENT_KEPT, (uint8_t) slot, key);
        }
        ecu_beep(ecu, 1);
}

static void erasure_routine(Ecu *ecu, uint8_t sub, const uint8_t *opt, size_t n, bool suppress) {
        uint8_t a[16 + ECU_MAX_EVENTS * 6] = { 0x71, sub, 0xA1, 0x03 };
        unsigned registered = ecu_n_registered(ecu), to_delete;
        size_t len = 4;
        int r;

        if (n != (sub == 0x03 ? 0u : 1u))
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_INCORRECT_LENGTH);
        if (sub == 0x01 && (opt[0] < 1 || opt[0] > registered))
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_OUT_OF_RANGE);
        if (!ecu->extended)
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
        if (sub != 0x03 && !ecu->unlocked[LEVEL_SMART_CODE])
                return ecu_answer_nrc(ecu, 0x31, UDS_NRC_SECURITY_ACCESS_DENIED);
        to_delete = registered - MIN(ecu->erase.n_touched, registered);

        switch (sub) {
        case 0x01:
                if (ecu->speed_kmh > 0 || ecu->reset.status == RESET_RUNNING || registration_active(ecu) ||
                    ecu->erase.status == ERASE_OPEN)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                ecu->erase.started = true;
                ecu->erase.status = ERASE_OPEN;
                ecu->erase.keep = opt[0];
                memset(ecu->erase.touched, 0, sizeof(ecu->erase.touched));
                ecu->erase.n_touched = 0;
                ecu->erase.events.n = 0;
                ecu->erase.end = ecu_now(ecu) + ecu_window_scaled(ecu, ECU_ERASE_WINDOW_SEC);
                r = arm(ecu, &ecu->erase_timer, ecu->erase.end, on_erase_timer, "ecu-erasure-window");
                if (r < 0) {
                        log_error_errno(r, "Cannot arm the erasure window: %m");
                        ecu->erase.status = ERASE_FAILED;
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                }
                log_info("Erasure window open, keeping at least %u keys", ecu->erase.keep);
                if (!suppress)
                        ecu_answer(ecu, a, 4);
                return;
        case 0x02:
                if (!ecu->erase.started)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_SEQUENCE_ERROR);
                if (ecu->speed_kmh > 0 || ecu->erase.status != ERASE_OPEN || opt[0] != to_delete ||
                    ecu->erase.n_touched < ecu->erase.keep)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_CONDITIONS_NOT_CORRECT);
                for (unsigned s = 1; s <= ecu->opt.max_slots; s++)
                        if (ecu->slot_used[s] && !ecu->erase.touched[s])
                                (void) ecu_erase_slot(ecu, s);
                ecu->erase.status = ERASE_DELETED;
                disarm(ecu->erase_timer);
                log_info("Erasure: %u keys deleted", to_delete);
                ecu_save(ecu);
                if (!suppress)
                        ecu_answer(ecu, a, 4);
                return;
        default:
                if (!ecu->erase.started)
                        return ecu_answer_nrc(ecu, 0x31, UDS_NRC_REQUEST_SEQUENCE_ERROR);
                a[len++] = (uint8_t) ecu->erase.status;
                a[len++] = (uint8_t) ecu->erase.n_touched;
                a[len++] = (uint8_t) (ecu->erase.status == ERASE_OPEN ? to_delete : 0);
                put_be16(a + len, (uint16_t) MIN(ecu->erase.status == ERASE_OPEN
                                                         ? remaining(ecu, ecu->erase.end) / USEC_PER_MSEC
                                                         : 0,
                                                 0xFFFFU));
                len += 2;
                append_events(&ecu->erase.events, a, &len);
                return ecu_answer(ecu, a, len);
        }
}

void ecu_routine_control(Ecu *ecu, const uint8_t *req, size_t n) {
        uint8_t sub;
        uint16_t rid;
        bool suppress;

        if (n < 2)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        sub = req[1] & 0x7f;
        suppress = req[1] & UDS_SPRMIB;
        if (sub < 0x01 || sub > 0x03)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_SUBFUNCTION_NOT_SUPPORTED);
        if (n < 4)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        rid = be16(req + 2);
        switch (rid) {
        case RID_SMART_CODE_RESET:
                return reset_routine(ecu, sub, req + 4, n - 4, suppress);
        case RID_KEY_REGISTRATION:
                return registration_routine(ecu, sub, req + 4, n - 4, suppress);
        case RID_KEY_ERASURE:
                return erasure_routine(ecu, sub, req + 4, n - 4, suppress);
        default:
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_REQUEST_OUT_OF_RANGE);
        }
}

void ecu_routines_touch(Ecu *ecu, uint32_t key) {
        if (registration_active(ecu))
                registration_touch(ecu, key);
        else if (ecu->erase.status == ERASE_OPEN)
                erasure_touch(ecu, key);
}

void ecu_routines_session_lost(Ecu *ecu) {
        if (registration_active(ecu)) {
                log_info("Registration ended: the session was lost");
                registration_end(ecu);
        }
        if (ecu->erase.status == ERASE_OPEN) {
                log_info("Erasure failed: the session was lost");
                ecu->erase.status = ERASE_FAILED;
                disarm(ecu->erase_timer);
        }
}

uint8_t ecu_immobilizer_state(Ecu *ecu) {
        if (ecu->reset.status == RESET_RUNNING)
                return 1;
        if (registration_active(ecu))
                return 3;
        if (ecu->erase.status == ERASE_OPEN)
                return 4;
        if (ecu->reset.status == RESET_FAILED)
                return 5;
        if (ecu->reset.status == RESET_SUCCEEDED && ecu_n_registered(ecu) == 0)
                return 2;
        return 0;
}

json_t *ecu_routines_json(Ecu *ecu) {
        usec_t erase_left = ecu->erase.status == ERASE_OPEN ? remaining(ecu, ecu->erase.end) : 0;

        return json_pack("{s:{s:i, s:i, s:I, s:i}, s:{s:i, s:i, s:i}, s:{s:i, s:i, s:i, s:I, s:i}}",
                         "reset", "status", (int) ecu->reset.status, "progress", (int) ecu_reset_progress(ecu),
                         "remaining_ms", (json_int_t) (ecu_reset_remaining(ecu) / USEC_PER_MSEC), "fail_reason",
                         (int) ecu->reset.fail_reason,
                         "registration", "status", (int) ecu->reg.status, "mode", (int) ecu->reg.mode,
                         "unreported_events", (int) ecu->reg.events.n,
                         "erasure", "status", (int) ecu->erase.status, "keep", (int) ecu->erase.keep, "touched",
                         (int) ecu->erase.n_touched, "remaining_ms", (json_int_t) (erase_left / USEC_PER_MSEC),
                         "unreported_events", (int) ecu->erase.events.n);
}

int ecu_routines_init(Ecu *ecu) {
        return 0;
}

void ecu_routines_done(Ecu *ecu) {
        ecu->reset_timer = sd_event_source_disable_unref(ecu->reset_timer);
        ecu->reg_timer = sd_event_source_disable_unref(ecu->reg_timer);
        ecu->erase_timer = sd_event_source_disable_unref(ecu->erase_timer);
}
