/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "fileio.h"
#include "journal.h"
#include "log.h"
#include "vin.h"

#define JOURNAL_PREFIX "procedure-"
#define JOURNAL_SUFFIX ".json"


static const char *const journal_state_table[_JOURNAL_STATE_MAX] = {
        [JOURNAL_STATE_RUNNING] = "running",
        [JOURNAL_STATE_WAITING] = "waiting",
        [JOURNAL_STATE_SUCCEEDED] = "succeeded",
        [JOURNAL_STATE_FAILED] = "failed",
        [JOURNAL_STATE_CANCELLED] = "cancelled",
};

DEFINE_STRING_TABLE_LOOKUP(journal_state, JournalState, _JOURNAL_STATE_MAX)

/* Well-formed UTF-8 (no overlong forms, no surrogates) without C0 controls or DEL, so that
 * a name can never break a log line or a terminal. */
bool journal_text_valid(const char *s, size_t max) {
        const uint8_t *p = (const uint8_t *) s;
        size_t len;

        if (!s)
                return false;
        len = strlen(s);
        if (len > max)
                return false;

        for (size_t i = 0; i < len;) {
                uint8_t c = p[i];
                uint32_t cp;
                size_t n;

                if (c < 0x20 || c == 0x7f)
                        return false;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf) {
                        n = 1;
                        cp = c & 0x1f;
                } else if (c >= 0xe0 && c <= 0xef) {
                        n = 2;
                        cp = c & 0x0f;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        n = 3;
                        cp = c & 0x07;
                } else
                        return false;
                if (i + n >= len)
                        return false;
                for (size_t k = 1; k <= n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += n + 1;
        }
        return true;
}

/* "31 01 A1 01": upper-case hex bytes, one space between them. */
static bool command_valid(const char *s) {
        size_t len = strlen(s);

        if (len < 2 || len > JOURNAL_COMMAND_MAX_BYTES * 3 - 1 || len % 3 != 2)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (i % 3 == 2) {
                        if (c != ' ')
                                return false;
                } else if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
                        return false;
        }
        return true;
}

/* Every rule a record must satisfy, on the way to disk and back. */
static int record_check(const JournalRecord *r, char *reason, size_t reason_size) {
        const char *vin_reason = NULL;

#define INVALID(...)                                        \
        do {                                                \
                snprintf(reason, reason_size, __VA_ARGS__); \
                return -EINVAL;                             \
        } while (0)

        if (r->id == 0 || r->id > INT64_MAX)
                INVALID("id %" PRIu64 " out of range 1..%" PRId64, r->id, INT64_MAX);
        if (!procedure_kind_to_string(r->kind))
                INVALID("unknown kind %d", (int) r->kind);
        if (!r->vin)
                INVALID("vin missing");
        if (vin_check_syntax(r->vin, &vin_reason) < 0)
                INVALID("invalid vin: %s", vin_reason ?: "bad syntax");
        if (!r->profile || r->profile[0] == 0 || !journal_text_valid(r->profile, JOURNAL_PROFILE_MAX))
                INVALID("profile must be 1..%u bytes of text without control characters", JOURNAL_PROFILE_MAX);
        if (r->owner == UINT32_MAX)
                INVALID("owner uid %" PRIu32 " is not a valid uid", r->owner);
        if (!journal_text_valid(r->technician, JOURNAL_TEXT_MAX))
                INVALID("technician must be at most %u bytes of text without control characters",
                        JOURNAL_TEXT_MAX);
        if (!journal_text_valid(r->repair_order, JOURNAL_TEXT_MAX))
                INVALID("repair_order must be at most %u bytes of text without control characters",
                        JOURNAL_TEXT_MAX);
        if (r->customer_last_name && !journal_text_valid(r->customer_last_name, JOURNAL_TEXT_MAX))
                INVALID("customer_last_name must be at most %u bytes of text without control characters",
                        JOURNAL_TEXT_MAX);
        if (r->created == 0 || r->created > INT64_MAX)
                INVALID("created %" PRIu64 " out of range", r->created);
        if (!r->step)
                INVALID("step missing");
        if (procedure_step_index(r->kind, r->step) < 0)
                INVALID("step \"%.64s\" is not a step of %s", r->step, procedure_kind_to_string(r->kind));
        if (r->sent_command) {
                if (!command_valid(r->sent_command))
                        INVALID("sent command \"%.64s\" is not 1..%u upper-case hex bytes separated by spaces",
                                r->sent_command, JOURNAL_COMMAND_MAX_BYTES);
                if (r->sent_at == 0 || r->sent_at > INT64_MAX)
                        INVALID("sent at %" PRIu64 " out of range", r->sent_at);
        }
        if (r->keys_before < -1 || r->keys_before > 255)
                INVALID("keys_before %d out of range", r->keys_before);
        if (!isnan(r->battery_min) && !(r->battery_min >= 0.0 && r->battery_min <= JOURNAL_BATTERY_MAX))
                INVALID("battery_min %g out of range 0..%g V", r->battery_min, JOURNAL_BATTERY_MAX);
        if (r->passcode_attempts > JOURNAL_ATTEMPTS_MAX)
                INVALID("passcode_attempts %u out of range", r->passcode_attempts);
        if (!journal_state_to_string(r->state))
                INVALID("unknown state %d", (int) r->state);
#undef INVALID
        return 0;
}

static char *journal_path(const char *state_dir, uint64_t id) {
        char *p;

        if (asprintf(&p, "%s/" JOURNAL_PREFIX "%" PRIu64 JOURNAL_SUFFIX, state_dir, id) < 0)
                return NULL;
        return p;
}

/* "procedure-<id>.json" with a canonical decimal id (no sign, no leading zero). */
static bool journal_name_parse(const char *name, uint64_t *ret) {
        const char *p = startswith(name, JOURNAL_PREFIX);
        uint64_t id = 0;
        size_t n = 0;

        if (!p || *p < '1' || *p > '9')
                return false;
        for (; *p >= '0' && *p <= '9'; p++, n++) {
                if (n >= 19)
                        return false;
                id = id * 10 + (uint64_t) (*p - '0');
        }
        if (!streq(p, JOURNAL_SUFFIX) || id > INT64_MAX)
                return false;
        *ret = id;
        return true;
}

static bool journal_name_is_temporary(const char *name) {
        const char *p = startswith(name, JOURNAL_PREFIX);

        /* write_file_atomic() names its temporary file "<path>.tmpXXXXXX" */
        return p && strstr(p, JOURNAL_SUFFIX ".tmp");
}

int journal_write(const char *state_dir, const JournalRecord *r) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        json_t *root, *sent = NULL;
        json_error_t err;
        char reason[256];
        int k;

        k = record_check(r, reason, sizeof(reason));
        if (k < 0)
                return log_error_errno(k, "Refusing to journal procedure %" PRIu64 ": %s", r->id, reason);

        if (r->sent_command) {
                sent = json_pack_ex(&err, 0, "{s:s, s:I}", "command", r->sent_command, "at",
                                    (json_int_t) r->sent_at);
                if (!sent)
                        return log_error_errno(
                                EINVAL, "Failed to build journal record %" PRIu64 ": %s", r->id,
                                err.text);
        }
        root = json_pack_ex(
                &err, 0,
                "{s:i, s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:o?, s:o?, s:o?, s:I, s:s}",
                "version", JOURNAL_VERSION,
                "id", (json_int_t) r->id,
                "kind", procedure_kind_to_string(r->kind),
                "vin", r->vin,
                "profile", r->profile,
                "owner", (json_int_t) r->owner,
                "technician", r->technician,
                "repair_order", r->repair_order,
                "customer_last_name", r->customer_last_name ?: "",
                "created", (json_int_t) r->created,
                "step", r->step,
                "sent", sent,
                "keys_before", r->keys_before < 0 ? NULL : json_integer(r->keys_before),
                "battery_min", isnan(r->battery_min) ? NULL : json_real(r->battery_min),
                "passcode_attempts", (json_int_t) r->passcode_attempts,
                "state", journal_state_to_string(r->state));
        if (!root)
                return log_error_errno(EINVAL, "Failed to build journal record %" PRIu64 ": %s",
                                       r->id, err.text);

        text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_INDENT(2));
        json_decref(root);
        if (!text)
                return log_oom();

        path = journal_path(state_dir, r->id);
        if (!path)
                return log_oom();
        k = write_file_atomic(path, text, strlen(text), 0600);
        if (k < 0)
                return log_error_errno(k, "Failed to write journal %s: %m", path);
        return 0;
}

static int unpack_optional_uint(json_t *v, const char *key, int64_t max, int64_t *ret, char *reason,
                                size_t reason_size) {
        if (json_is_null(v)) {
                *ret = -1;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
                snprintf(reason, reason_size, "%s must be null or an integer 0..%" PRId64, key, max);
                return -EINVAL;
        }
        *ret = json_integer_value(v);
        return 0;
}

/* Checks the types of a parsed journal file and its contents; on success `ret` owns copies
 * of the strings. */
static int record_from_json(json_t *root, JournalRecord *ret, char *reason, size_t reason_size) {
        const char *kind, *vin, *profile, *technician, *repair_order, *step, *state, *command = NULL;
        const char *customer = "";
        json_int_t version, id, owner, created, attempts, sent_at = 0;
        json_t *sent, *keys_before, *battery_min;
        JournalRecord r = {};
        json_error_t err;
        size_t n_steps;
        int64_t kb;
        int k;

        if (json_unpack_ex(root, &err, 0, "{s:I}", "version", &version) < 0) {
                snprintf(reason, reason_size, "%s", err.text);
                return -EINVAL;
        }
        if (version != JOURNAL_VERSION) {
                snprintf(reason, reason_size, "unsupported version %" JSON_INTEGER_FORMAT ", expected %d",
                         version, JOURNAL_VERSION);
                return -EINVAL;
        }
        /* customer_last_name is optional: journals written before it was added lack it */
        if (json_unpack_ex(root, &err, JSON_STRICT,
                           "{s:I, s:I, s:s, s:s, s:s, s:I, s:s, s:s, s?s, s:I, s:s, s:o, s:o, s:o, s:I, s:s}",
                           "version", &version, "id", &id, "kind", &kind, "vin", &vin, "profile", &profile,
                           "owner", &owner, "technician", &technician, "repair_order", &repair_order,
                           "customer_last_name", &customer, "created", &created, "step", &step, "sent", &sent, "keys_before", &keys_before,
                           "battery_min", &battery_min, "passcode_attempts", &attempts, "state", &state) < 0) {
                snprintf(reason, reason_size, "%s", err.text);
                return -EINVAL;
        }
        if (!json_is_null(sent) &&
            json_unpack_ex(sent, &err, JSON_STRICT, "{s:s, s:I}", "command", &command, "at", &sent_at) < 0) {
                snprintf(reason, reason_size, "sent: %s", err.text);
                return -EINVAL;
        }

        if (id <= 0 || owner < 0 || owner > UINT32_MAX || created <= 0 || sent_at < 0 || attempts < 0 ||
            attempts > JOURNAL_ATTEMPTS_MAX) {
                snprintf(reason, reason_size, "id, owner, created, sent at or passcode_attempts out of range");
                return -EINVAL;
        }
        if (procedure_kind_from_string(kind, &r.kind) < 0) {
                snprintf(reason, reason_size, "unknown kind \"%.64s\"", kind);
                return -EINVAL;
        }
        if (journal_state_from_string(state, &r.state) < 0) {
                snprintf(reason, reason_size, "unknown state \"%.64s\"", state);
                return -EINVAL;
        }
        k = unpack_optional_uint(keys_before, "keys_before", 255, &kb, reason, reason_size);
        if (k < 0)
                return k;
        if (!json_is_null(battery_min) && !json_is_number(battery_min)) {
                snprintf(reason, reason_size, "battery_min must be null or a number");
                return -EINVAL;
        }

        r.id = (uint64_t) id;
        r.vin = (char *) vin;
        r.profile = (char *) profile;
        r.owner = (uint32_t) owner;
        r.technician = (char *) technician;
        r.repair_order = (char *) repair_order;
        r.customer_last_name = (char *) customer;
        r.created = (usec_t) created;
        r.step = step;
        r.sent_command = (char *) command;
        r.sent_at = (usec_t) sent_at;
        r.keys_before = (int) kb;
        r.battery_min = json_is_null(battery_min) ? NAN : json_number_value(battery_min);
        r.passcode_attempts = (unsigned) attempts;

        k = record_check(&r, reason, reason_size);
        if (k < 0)
                return k;

        /* the step id from the static table, so that the record needs not own it */
        r.step = procedure_steps(r.kind, &n_steps)[procedure_step_index(r.kind, step)].id;
        r.vin = strdup(vin);
        r.profile = strdup(profile);
        r.technician = strdup(technician);
        r.repair_order = strdup(repair_order);
        r.customer_last_name = strdup(customer);
        r.sent_command = command ? strdup(command) : NULL;
        if (!r.vin || !r.profile || !r.technician || !r.repair_order || !r.customer_last_name ||
            (command && !r.sent_command)) {
                journal_record_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

/* Loads one file; every reason for skipping it is logged here. */
static int journal_load_one(const char *state_dir, uint64_t id, JournalRecord *ret) {
        _cleanup_free_ char *path = journal_path(state_dir, id), *text = NULL;
        char reason[256];
        json_error_t err;
        size_t size;
        json_t *root;
        int k;

        if (!path)
                return log_oom();
        k = read_file_bounded(path, JOURNAL_FILE_MAX, &text, &size);
        if (k == -EFBIG)
                return log_warning_errno(k, "Skipping journal %s: larger than %u bytes", path, JOURNAL_FILE_MAX);
        if (k == -EBADF)
                return log_warning_errno(k, "Skipping journal %s: not a regular file", path);
        if (k < 0)
                return log_warning_errno(k, "Skipping journal %s: cannot read it: %m", path);

        root = json_loadb(text, size, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return log_warning_errno(EINVAL, "Skipping journal %s: line %d column %d: %s",
                                         path, err.line, err.column, err.text);
        k = record_from_json(root, ret, reason, sizeof(reason));
        json_decref(root);
        if (k == -ENOMEM)
                return log_oom();
        if (k < 0)
                return log_warning_errno(k, "Skipping journal %s: %s", path, reason);
        if (ret->id != id) {
                log_warning("Skipping journal %s: it holds procedure %" PRIu64, path, ret->id);
                journal_record_done(ret);
                return -EINVAL;
        }
        return 0;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

int journal_load_all(const char *state_dir, JournalRecord **ret, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = NULL;
        uint64_t ids[JOURNAL_MAX_FILES];
        JournalRecord *records = NULL;
        size_t n_ids = 0, n = 0;
        struct dirent *de;

        d = opendir(state_dir);
        if (!d) {
                if (errno == ENOENT) {
                        *ret = NULL;
                        *ret_n = 0;
                        return 0;
                }
                return log_error_errno(errno, "Failed to open state directory %s: %m", state_dir);
        }

        for (;;) {
                uint64_t id;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return log_error_errno(errno, "Failed to read state directory %s: %m",
                                                       state_dir);
                        break;
                }
                if (journal_name_parse(de->d_name, &id)) {
                        if (n_ids >= JOURNAL_MAX_FILES) {
                                log_error("Ignoring journal %s/%s: more than %u journal files", state_dir,
                                          de->d_name, JOURNAL_MAX_FILES);
                                continue;
                        }
                        ids[n_ids++] = id;
                } else if (journal_name_is_temporary(de->d_name)) {
                        /* a write that a crash interrupted; the journal it was to replace is intact */
                        if (unlinkat(dirfd(d), de->d_name, 0) < 0)
                                log_warning_errno(errno, "Failed to remove stale %s/%s: %m", state_dir,
                                                  de->d_name);
                        else
                                log_info("Removed %s/%s, left by an interrupted journal write", state_dir,
                                         de->d_name);
                } else if (startswith(de->d_name, JOURNAL_PREFIX))
                        log_warning("Skipping %s/%s: not a journal file name (procedure-<id>.json)", state_dir,
                                    de->d_name);
        }

        qsort(ids, n_ids, sizeof(ids[0]), cmp_u64);
        if (n_ids > 0) {
                records = calloc(n_ids, sizeof(JournalRecord));
                if (!records)
                        return log_oom();
        }
        for (size_t i = 0; i < n_ids; i++) {
                int k = journal_load_one(state_dir, ids[i], &records[n]);

                if (k == -ENOMEM) {
                        journal_records_free(records, n);
                        return k;
                }
                if (k >= 0)
                        n++;
        }
        if (n == 0) {
                free(records);
                records = NULL;
        }
        *ret = records;
        *ret_n = n;
        return 0;
}

int journal_remove(const char *state_dir, uint64_t id) {
        _cleanup_free_ char *path = journal_path(state_dir, id);
        int r;

        if (!path)
                return log_oom();
        r = unlink_synced(path);
        if (r < 0)
                return log_error_errno(r, "Failed to remove journal %s: %m", path);
        return 0;
}

void journal_record_done(JournalRecord *r) {
        if (!r)
                return;
        free(r->vin);
        free(r->profile);
        free(r->technician);
        free(r->repair_order);
        free(r->customer_last_name);
        free(r->sent_command);
        r->vin = r->profile = r->technician = r->repair_order = r->customer_last_name = r->sent_command = NULL;
        r->step = NULL;
}

void journal_records_free(JournalRecord *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                journal_record_done(&r[i]);
        free(r);
}
