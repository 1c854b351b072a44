/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * --state FILE: the simulated car across runs, as JSON. Written atomically (a temporary
 * file in the same folder, fsync, rename, fsync of the folder) so that a crash leaves the
 * old state or the new one, never half of one. Everything read is validated: a damaged
 * file is refused with a message, never half applied.
 */
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>

#include "ecu.h"
#include "hex.h"
#include "fileio.h"
#include "log.h"

#define STATE_VERSION 1
#define STATE_FILE_MAX (1024 * 1024)

static int bad(const char *path, const char *what) {
        log_error("State file %s: %s", path, what);
        return -EBADMSG;
}

static int get_uint(json_t *o, const char *key, json_int_t max, json_int_t *ret) {
        json_t *v = json_object_get(o, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
                return -EINVAL;
        *ret = json_integer_value(v);
        return 0;
}

int ecu_state_load(Ecu *ecu, bool *ret_found) {
        const char *path = ecu->opt.state_file;
        json_t *root, *slots, *revoked, *v, *reset;
        json_error_t error;
        struct stat st;
        json_int_t i, version, generation;
        uint32_t slot_ids[ECU_MAX_SLOTS + 1] = {};
        bool used[ECU_MAX_SLOTS + 1] = {};
        uint64_t data1 = 0;
        uint8_t d1[6];
        char d1hex[13];
        size_t idx;
        int r = 0;

        if (stat(path, &st) < 0) {
                if (errno == ENOENT) {
                        *ret_found = false;
                        return 0;
                }
                return log_error_errno(errno, "Cannot read the state file %s: %m", path);
        }
        if (st.st_size > STATE_FILE_MAX)
                return bad(path, "larger than 1 MiB");

        root = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
        if (!root) {
                log_error("State file %s, line %d: %s", path, error.line, error.text);
                return -EBADMSG;
        }
        if (!json_is_object(root)) {
                r = bad(path, "not a JSON object");
                goto out;
        }
        if (get_uint(root, "version", 1000, &version) < 0 || version != STATE_VERSION) {
                r = bad(path, "\"version\" must be 1");
                goto out;
        }
        v = json_object_get(root, "vin");
        if (!json_is_string(v) || !streq(json_string_value(v), ecu->opt.vin)) {
                r = bad(path, "it belongs to another VIN than --vin");
                goto out;
        }
        v = json_object_get(root, "data1");
        if (!json_is_string(v) || strlen(json_string_value(v)) != PASSCODE_DATA1_LEN) {
                r = bad(path, "\"data1\" must be 11 hex digits");
                goto out;
        }
        snprintf(d1hex, sizeof(d1hex), "0%s", json_string_value(v));
        if (hex_decode(d1hex, d1, sizeof(d1)) < 0) {
                r = bad(path, "\"data1\" must be 11 hex digits");
                goto out;
        }
        for (unsigned k = 0; k < 6; k++)
                data1 = data1 << 8 | d1[k];

        slots = json_object_get(root, "slots");
        if (!json_is_array(slots) || json_array_size(slots) > ECU_MAX_SLOTS) {
                r = bad(path, "\"slots\" must be an array of at most 7 entries");
                goto out;
        }
        json_array_foreach(slots, idx, v) {
                if (json_is_null(v))
                        continue;
                if (!json_is_string(v) || parse_key_id(json_string_value(v), &slot_ids[idx + 1]) < 0) {
                        r = bad(path, "each slot must be null or a key id of 8 hex digits");
                        goto out;
                }
                if (idx + 1 > ecu->opt.max_slots) {
                        r = bad(path, "a key sits in a slot above --max-slots");
                        goto out;
                }
                used[idx + 1] = true;
        }
        if (get_uint(root, "key_generation", UINT32_MAX, &generation) < 0) {
                r = bad(path, "\"key_generation\" must be an unsigned 32-bit integer");
                goto out;
        }

        revoked = json_object_get(root, "revoked");
        if (!json_is_array(revoked) || json_array_size(revoked) > ECU_MAX_REVOKED) {
                r = bad(path, "\"revoked\" must be an array of key ids");
                goto out;
        }
        json_array_foreach(revoked, idx, v) {
                uint32_t id;
                if (!json_is_string(v) || parse_key_id(json_string_value(v), &id) < 0) {
                        r = bad(path, "\"revoked\" must hold key ids of 8 hex digits");
                        goto out;
                }
                r = ecu_remember_revoked(ecu, id);
                if (r < 0)
                        goto out;
        }

        for (Level l = 0; l < _LEVEL_MAX; l++) {
                const char *names[] = { "immobilizer", "smart_code" };
                json_t *lv = json_object_get(json_object_get(root, "security"), names[l]);
                json_int_t failed, lock_ms;

                if (!json_is_object(lv) || get_uint(lv, "failed", ECU_MAX_ATTEMPTS, &failed) < 0 ||
                    get_uint(lv, "lockout_remaining_ms", (json_int_t) ECU_LOCKOUT_SEC * 1000, &lock_ms) < 0) {
                        r = bad(path, "\"security\" must hold failed (0..3) and lockout_remaining_ms per level");
                        goto out;
                }
                ecu->failed[l] = (unsigned) failed;
                ecu->lockout_until[l] = lock_ms > 0 ? ecu_now(ecu) + (usec_t) lock_ms * USEC_PER_MSEC : 0;
        }

        reset = json_object_get(root, "reset");
        if (!json_is_object(reset) || get_uint(reset, "status", RESET_FAILED, &i) < 0) {
                r = bad(path, "\"reset\" must hold a status 0..3");
                goto out;
        }
        if (i == RESET_RUNNING) {
                json_int_t left;
                if (get_uint(reset, "remaining_ms", (json_int_t) ECU_RESET_SEC * 1000, &left) < 0) {
                        r = bad(path, "a running reset needs remaining_ms");
                        goto out;
                }
                r = ecu_reset_resume(ecu, (usec_t) left * USEC_PER_MSEC);
                if (r < 0)
                        goto out;
                log_info("Resuming the smart code reset, %lld ms left", (long long) left);
        } else {
                json_int_t reason = 0, progress = 0;
                (void) get_uint(reset, "fail_reason", 2, &reason);
                (void) get_uint(reset, "progress", 100, &progress);
                ecu->reset.status = (ResetStatus) i;
                ecu->reset.started = i != RESET_IDLE;
                ecu->reset.fail_reason = (uint8_t) reason;
                ecu->reset.final_progress = (uint8_t) progress;
        }

        ecu->data1 = data1;
        memcpy(ecu->slot, slot_ids, sizeof(slot_ids));
        memcpy(ecu->slot_used, used, sizeof(used));
        ecu->key_generation = (uint32_t) generation;
        *ret_found = true;
        log_info("State loaded from %s", path);
        r = 0;
out:
        json_decref(root);
        return r;
}

static json_t *state_json(Ecu *ecu) {
        char data1[PASSCODE_DATA1_LEN + 1], id[9];
        json_t *slots = json_array(), *revoked = json_array(), *sec = json_object();
        usec_t rem;

        ecu_data1_hex(ecu, data1);
        for (unsigned s = 1; s <= ecu->opt.max_slots; s++) {
                snprintf(id, sizeof(id), "%08X", ecu->slot[s]);
                json_array_append_new(slots, ecu->slot_used[s] ? json_string(id) : json_null());
        }
        for (size_t i = 0; i < ecu->n_revoked; i++) {
                snprintf(id, sizeof(id), "%08X", ecu->revoked[i]);
                json_array_append_new(revoked, json_string(id));
        }
        for (Level l = 0; l < _LEVEL_MAX; l++) {
                (void) ecu_level_locked_out(ecu, l, &rem);
                json_object_set_new(sec, l == LEVEL_IMMOBILIZER ? "immobilizer" : "smart_code",
                                    json_pack("{s:i, s:I}", "failed", (int) MIN(ecu->failed[l], ECU_MAX_ATTEMPTS),
                                              "lockout_remaining_ms", (json_int_t) (rem / USEC_PER_MSEC)));
        }
        return json_pack("{s:i, s:s, s:s, s:o, s:I, s:o, s:o, s:{s:i, s:i, s:I, s:i}}",
                         "version", STATE_VERSION,
                         "vin", ecu->opt.vin,
                         "data1", data1,
                         "slots", slots,
                         "key_generation", (json_int_t) ecu->key_generation,
                         "revoked", revoked,
                         "security", sec,
                         "reset", "status", (int) ecu->reset.status, "progress", (int) ecu_reset_progress(ecu),
                         "remaining_ms", (json_int_t) (ecu_reset_remaining(ecu) / USEC_PER_MSEC), "fail_reason",
                         (int) ecu->reset.fail_reason);
}

int ecu_state_save(Ecu *ecu) {
        _cleanup_free_ char *text = NULL;
        json_t *j;

        j = state_json(ecu);
        if (!j)
                return -ENOMEM;
        text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(j);
        if (!text)
                return -ENOMEM;
        return write_file_atomic(ecu->opt.state_file, text, strlen(text), 0644);
}
