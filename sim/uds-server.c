/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The diagnostic services of §4, checked in the order of ISO 14229-1's general NRC handling
 * (figure 5 and 6): service supported (0x11), service supported in the active session
 * (0x7F), minimum length (0x13), sub-function supported (0x12), then the exact length
 * (0x13), then the service's own checks: request out of range (0x31), security (0x33),
 * sequence (0x24), conditions (0x22).
 */
#include <stdio.h>
#include <sys/random.h>

#include "ecu.h"
#include "log.h"
#include "uds.h"


/* A lockout ends by itself: the counter starts again at ECU_MAX_ATTEMPTS. */
bool ecu_level_locked_out(Ecu *ecu, Level l, usec_t *ret_remaining) {
        usec_t now = ecu_now(ecu);

        if (ecu->lockout_until[l] == 0) {
                if (ret_remaining)
                        *ret_remaining = 0;
                return false;
        }
        if (now >= ecu->lockout_until[l]) {
                ecu->lockout_until[l] = 0;
                ecu->failed[l] = 0;
                log_info("Security level %s: the lockout ended", l == LEVEL_IMMOBILIZER ? "01" : "03");
                ecu_save(ecu);
                if (ret_remaining)
                        *ret_remaining = 0;
                return false;
        }
        if (ret_remaining)
                *ret_remaining = ecu->lockout_until[l] - now;
        return true;
}

uint8_t ecu_attempts_left(Ecu *ecu, Level l) {
        if (ecu_level_locked_out(ecu, l, NULL))
                return 0;
        return ecu->failed[l] >= ECU_MAX_ATTEMPTS ? 0 : (uint8_t) (ECU_MAX_ATTEMPTS - ecu->failed[l]);
}

static void answer_positive(Ecu *ecu, bool suppress, const uint8_t *data, size_t size) {
        if (!suppress)
                ecu_answer(ecu, data, size);
}

static void session_control(Ecu *ecu, const uint8_t *req, size_t n) {
        uint8_t sub;

        if (n < 2)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        sub = req[1] & 0x7f;
        if (sub != 0x01 && sub != 0x03)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_SUBFUNCTION_NOT_SUPPORTED);
        if (n != 2)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);

        /* Every 10 xx is a session change, also to the same session (ISO 14229-1): it
         * relocks security. Whether a repeated 10 03 also ends an open registration mode or
         * erasure window differs between ECUs (vehicle-protocol.md §4): --session-repeat. */
        if (sub == 0x03 && ecu->extended && ecu->opt.session_repeat_keep) {
                log_info("Session change to extended (repeated): security locked, registration / erasure kept");
                ecu_relock(ecu);
        } else {
                log_info("Session change to %s", sub == 0x03 ? "extended" : "default");
                ecu_drop_security(ecu);
        }
        ecu->extended = sub == 0x03;
        answer_positive(ecu, req[1] & UDS_SPRMIB, (const uint8_t[]) { 0x50, sub, 0x00, 0x32, 0x01, 0xF4 }, 6);
}

static void tester_present(Ecu *ecu, const uint8_t *req, size_t n) {
        if (n < 2)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        if ((req[1] & 0x7f) != 0x00)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_SUBFUNCTION_NOT_SUPPORTED);
        if (n != 2)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        answer_positive(ecu, req[1] & UDS_SPRMIB, (const uint8_t[]) { 0x7E, 0x00 }, 2);
}

static void read_did(Ecu *ecu, const uint8_t *req, size_t n) {
        uint8_t a[3 + 64] = { 0x62 };
        size_t len = 3;
        uint16_t did;
        usec_t rem[_LEVEL_MAX];

        /* One DID per request (§4): two or more are a wrong length here. */
        if (n != 3)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        did = be16(req + 1);
        put_be16(a + 1, did);

        switch (did) {
        case DID_VIN:
                memcpy(a + 3, ecu->opt.vin, VIN_LEN);
                len += VIN_LEN;
                break;
        case DID_SOFTWARE_VERSION: {
                int k = snprintf((char *) a + 3, sizeof(a) - 3, "immo-ecusim %s", IMMOD_VERSION);
                len += (size_t) MIN(k, (int) sizeof(a) - 4);
                break;
        }
        case DID_MODEL:
                memcpy(a + 3, ecu->opt.model, strlen(ecu->opt.model));
                len += strlen(ecu->opt.model);
                break;
        case DID_KEY_STATUS:
                a[3] = (uint8_t) ecu_n_registered(ecu);
                a[4] = (uint8_t) (ecu->opt.max_slots - ecu_n_registered(ecu));
                a[5] = (uint8_t) ecu->opt.max_slots;
                len += 3;
                break;
        case DID_IMMOBILIZER_STATE:
                a[3] = ecu_immobilizer_state(ecu);
                a[4] = ecu_reset_progress(ecu);
                len += 2;
                break;
        case DID_VEHICLE_STATUS:
                a[3] = (ecu->door_open ? 0x01 : 0) | (ecu->ignition ? 0x02 : 0) |
                       (ecu->speed_kmh > 0 ? 0x04 : 0) | (ecu->speed_kmh > 0 ? 0x08 : 0) |
                       (ecu->key_in_cabin ? 0x10 : 0);
                len += 1;
                break;
        case DID_SECURITY_ATTEMPTS:
                for (Level l = 0; l < _LEVEL_MAX; l++) {
                        (void) ecu_level_locked_out(ecu, l, &rem[l]);
                        a[3 + l] = ecu_attempts_left(ecu, l);
                }
                /* whole seconds, rounded up, so a running lockout never reads 0 */
                put_be16(a + 5, (uint16_t) MIN((MAX(rem[0], rem[1]) + USEC_PER_SEC - 1) / USEC_PER_SEC, 0xFFFFU));
                len += 4;
                break;
        case DID_BATTERY:
                put_be16(a + 3, (uint16_t) MIN(ecu->battery_mv, 0xFFFFU));
                len += 2;
                break;
        case DID_REGISTRATION_RESULT:
                a[3] = (uint8_t) ecu->last_result;
                len += 1;
                break;
        default:
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_REQUEST_OUT_OF_RANGE);
        }
        ecu_answer(ecu, a, len);
}

static void request_seed(Ecu *ecu, Level l, uint8_t sub, bool suppress) {
        uint8_t a[2 + PASSCODE_SEED_SIZE] = { 0x67, sub };
        char data1[PASSCODE_DATA1_LEN + 1];
        uint8_t d2[6];
        uint32_t d3;
        size_t len;

        if (ecu_level_locked_out(ecu, l, NULL))
                return ecu_answer_nrc(ecu, 0x27, UDS_NRC_TIME_DELAY_NOT_EXPIRED);

        len = 2 + (l == LEVEL_IMMOBILIZER ? PASSCODE_SEED_SIZE : VIN_LEN + 6 + 6 + 4);
        /* A fresh seed every time, also for a level already unlocked: vehicle-protocol.md §4
         * says so, rather than ISO 14229-1's seed of zeros. It replaces the previous one. */
        if (l == LEVEL_IMMOBILIZER) {
                if (getrandom(ecu->seed, sizeof(ecu->seed), 0) != (ssize_t) sizeof(ecu->seed))
                        return ecu_answer_nrc(ecu, 0x27, UDS_NRC_CONDITIONS_NOT_CORRECT);
                memcpy(a + 2, ecu->seed, sizeof(ecu->seed));
        } else {
                if (getrandom(d2, sizeof(d2), 0) != (ssize_t) sizeof(d2))
                        return ecu_answer_nrc(ecu, 0x27, UDS_NRC_CONDITIONS_NOT_CORRECT);
                d3 = ecu_data3(ecu);
                ecu_data1_hex(ecu, data1);
                snprintf(ecu->seed_data2, sizeof(ecu->seed_data2), "%02X%02X%02X%02X%02X%02X", d2[0], d2[1], d2[2],
                         d2[3], d2[4], d2[5]);
                snprintf(ecu->seed_data3, sizeof(ecu->seed_data3), "%08X", d3);
                memcpy(a + 2, ecu->opt.vin, VIN_LEN);
                for (unsigned i = 0; i < 6; i++)
                        a[2 + VIN_LEN + i] = (uint8_t) (ecu->data1 >> (8 * (5 - i)));
                memcpy(a + 2 + VIN_LEN + 6, d2, 6);
                put_be32(a + 2 + VIN_LEN + 12, d3);
        }
        ecu->seed_pending[l] = true;
        answer_positive(ecu, suppress, a, len);
}

static bool key_matches(Ecu *ecu, Level l, const uint8_t *key) {
        char expected[PASSCODE_SMART_CODE_LEN + 1], got[PASSCODE_SMART_CODE_LEN + 1];
        char data1[PASSCODE_DATA1_LEN + 1];
        int r;

        if (l == LEVEL_IMMOBILIZER) {
                r = passcode_immobilizer(ecu->kvin, ecu->seed, expected);
                if (r < 0)
                        return false;
                return memcmp(expected, key, PASSCODE_IMMOBILIZER_LEN) == 0;
        }
        ecu_data1_hex(ecu, data1);
        r = passcode_smart_code(ecu->kvin, ecu->opt.vin, data1, ecu->seed_data2, ecu->seed_data3, expected);
        if (r < 0)
                return false;
        snprintf(got, sizeof(got), "%02X%02X%02X%02X%02X%02X", key[0], key[1], key[2], key[3], key[4], key[5]);
        return streq(expected, got);
}

static void send_key(Ecu *ecu, Level l, uint8_t sub, bool suppress, const uint8_t *key) {
        /* A seed accepts one attempt; a lockout took the seed away too. */
        if (!ecu->seed_pending[l])
                return ecu_answer_nrc(ecu, 0x27, UDS_NRC_REQUEST_SEQUENCE_ERROR);
        ecu->seed_pending[l] = false;

        if (!key_matches(ecu, l, key)) {
                ecu->failed[l]++;
                log_info("Security level %02X: wrong key, %u in a row", sub - 1, ecu->failed[l]);
                if (ecu->failed[l] >= ECU_MAX_ATTEMPTS) {
                        ecu->lockout_until[l] = ecu_now(ecu) + ecu_scaled(ecu, ECU_LOCKOUT_SEC);
                        ecu_save(ecu);
                        return ecu_answer_nrc(ecu, 0x27, UDS_NRC_EXCEEDED_ATTEMPTS);
                }
                ecu_save(ecu);
                return ecu_answer_nrc(ecu, 0x27, UDS_NRC_INVALID_KEY);
        }

        if (l == LEVEL_SMART_CODE)
                ecu->smart_after_immobilizer = ecu->unlocked[LEVEL_IMMOBILIZER];
        ecu->unlocked[l] = true;
        if (ecu->failed[l] != 0) {
                ecu->failed[l] = 0;
                ecu_save(ecu);
        }
        log_info("Security level %02X unlocked", sub - 1);
        answer_positive(ecu, suppress, (const uint8_t[]) { 0x67, sub }, 2);
}

static void security_access(Ecu *ecu, const uint8_t *req, size_t n) {
        uint8_t sub;
        Level l;

        /* Not in the default session: the whole service is unsupported there (ISO 14229-1
         * table 22 lets 27 run in non-default sessions only). */
        if (!ecu->extended)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_SERVICE_NOT_IN_SESSION);
        if (n < 2)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        sub = req[1] & 0x7f;
        if (sub < 0x01 || sub > 0x04)
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_SUBFUNCTION_NOT_SUPPORTED);
        l = sub <= 0x02 ? LEVEL_IMMOBILIZER : LEVEL_SMART_CODE;

        if (sub & 1) {
                if (n != 2)
                        return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
                return request_seed(ecu, l, sub, req[1] & UDS_SPRMIB);
        }
        if (n != 2 + (l == LEVEL_IMMOBILIZER ? PASSCODE_IMMOBILIZER_LEN : PASSCODE_SMART_CODE_LEN / 2))
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_INCORRECT_LENGTH);
        send_key(ecu, l, sub, req[1] & UDS_SPRMIB, req + 2);
}

static void dispatch(Ecu *ecu, const uint8_t *req, size_t n) {
        if (ecu->fault.nrc_armed && req[0] == ecu->fault.nrc_sid) {
                ecu->fault.nrc_armed = false;
                log_info("Fault: answering service 0x%02X with NRC 0x%02X", req[0], ecu->fault.nrc);
                return ecu_answer_nrc(ecu, req[0], ecu->fault.nrc);
        }

        switch (req[0]) {
        case UDS_SESSION_CONTROL:
                return session_control(ecu, req, n);
        case UDS_TESTER_PRESENT:
                return tester_present(ecu, req, n);
        case UDS_READ_DID:
                return read_did(ecu, req, n);
        case UDS_SECURITY_ACCESS:
                return security_access(ecu, req, n);
        case UDS_ROUTINE_CONTROL:
                return ecu_routine_control(ecu, req, n);
        default:
                /* ISO 14229-1: a negative response never answers a negative response. */
                if (req[0] == UDS_NEGATIVE_RESPONSE)
                        return;
                return ecu_answer_nrc(ecu, req[0], UDS_NRC_SERVICE_NOT_SUPPORTED);
        }
}

void ecu_handle_request(Ecu *ecu, const uint8_t *req, size_t n) {
        if (n == 0)
                return;

        bool aimed = ecu->fault.target_size > 0 && n >= ecu->fault.target_size &&
                     memcmp(req, ecu->fault.target, ecu->fault.target_size) == 0;

        if (aimed) {
                /* the fault aimed at this request: its answer is held back */
                ecu->fault.pending = ecu->fault.target_pending;
                ecu->fault.delay_ms = ecu->fault.target_delay_ms;
                ecu->fault.target_size = 0;
                log_info("Fault: holding back the answer to this request (%u x 0x78, %u ms)", ecu->fault.pending,
                         ecu->fault.delay_ms);
        }
        dispatch(ecu, req, n);
        if (aimed && (ecu->fault.pending > 0 || ecu->fault.delay_ms > 0)) {
                /* Every answer is sent while the request is handled: none came (a suppressed
                 * positive answer), so the fault is dropped rather than hold back another's. */
                log_info("Fault: the request aimed at got no answer; the fault is dropped");
                ecu->fault.pending = 0;
                ecu->fault.delay_ms = 0;
        }
}
