/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "audit.h"
#include "fileio.h"
#include "log.h"
#include "vin.h"


/* Every record starts with this: it finds the next record after a line a crash cut short
 * (JSON escapes the quotes, so no string value can contain it). */
#define AUDIT_RECORD_START "{\"version\":"

static const char *const audit_result_table[_AUDIT_RESULT_MAX] = {
        [AUDIT_SUCCEEDED] = "succeeded",
        [AUDIT_FAILED] = "failed",
        [AUDIT_CANCELLED] = "cancelled",
};

DEFINE_STRING_TABLE_LOOKUP(audit_result, AuditResult, _AUDIT_RESULT_MAX)

static bool error_name_valid(const char *s) {
        size_t len = strlen(s);

        if (len == 0 || len > AUDIT_ERROR_MAX || s[0] == '.')
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '.'))
                        return false;
        }
        return true;
}

static int format_iso8601(usec_t t, char *buf, size_t size) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return -EINVAL;
        return 0;
}

static int record_check(const AuditRecord *r, char *reason, size_t reason_size) {
        const char *vin_reason = NULL;

#define INVALID(...)                                        \
        do {                                                \
                snprintf(reason, reason_size, __VA_ARGS__); \
                return -EINVAL;                             \
        } while (0)

        if (r->id == 0 || r->id > INT64_MAX)
                INVALID("id %" PRIu64 " out of range 1..%" PRId64, r->id, INT64_MAX);
        if (r->uid == UINT32_MAX)
                INVALID("uid %" PRIu32 " is not a valid uid", r->uid);
        if (!journal_text_valid(r->technician, JOURNAL_TEXT_MAX))
                INVALID("technician must be at most %u bytes of text without control characters",
                        JOURNAL_TEXT_MAX);
        if (r->time == 0 || r->time > INT64_MAX || r->created == 0 || r->created > INT64_MAX)
                INVALID("time or created out of range");
        if (!procedure_kind_to_string(r->kind))
                INVALID("unknown kind %d", (int) r->kind);
        if (!r->vin)
                INVALID("vin missing");
        if (vin_check_syntax(r->vin, &vin_reason) < 0)
                INVALID("invalid vin: %s", vin_reason ?: "bad syntax");
        if (!r->profile || !journal_text_valid(r->profile, JOURNAL_PROFILE_MAX))
                INVALID("profile must be at most %u bytes of text without control characters",
                        JOURNAL_PROFILE_MAX);
        if (!journal_text_valid(r->repair_order, JOURNAL_TEXT_MAX))
                INVALID("repair_order must be at most %u bytes of text without control characters",
                        JOURNAL_TEXT_MAX);
        if (!audit_result_to_string(r->result))
                INVALID("unknown result %d", (int) r->result);
        if (r->error && !error_name_valid(r->error))
                INVALID("error \"%.64s\" is not a D-Bus error name", r->error);
        if (r->result == AUDIT_SUCCEEDED && r->error)
                INVALID("a procedure that succeeded has no error");
        if (r->result == AUDIT_FAILED && !r->error)
                INVALID("a procedure that failed needs its error");
        if (r->keys_before < -1 || r->keys_before > 255 || r->keys_after < -1 || r->keys_after > 255)
                INVALID("keys_before or keys_after out of range");
        if (!isnan(r->battery_min) && !(r->battery_min >= 0.0 && r->battery_min <= JOURNAL_BATTERY_MAX))
                INVALID("battery_min %g out of range 0..%g V", r->battery_min, JOURNAL_BATTERY_MAX);
        if (r->passcode_attempts > JOURNAL_ATTEMPTS_MAX)
                INVALID("passcode_attempts %u out of range", r->passcode_attempts);
        if (r->n_trace > AUDIT_TRACE_MAX || (r->n_trace > 0 && !r->trace))
                INVALID("a trace of %zu points, at most %u", r->n_trace, AUDIT_TRACE_MAX);
        for (size_t i = 0; i < r->n_trace; i++)
                if (!(r->trace[i].min_v >= 0.0 && r->trace[i].min_v <= r->trace[i].max_v &&
                      r->trace[i].max_v <= JOURNAL_BATTERY_MAX))
                        INVALID("trace point %zu out of range", i);
#undef INVALID
        return 0;
}

static char *audit_path(const char *state_dir) {
        char *p;

        if (asprintf(&p, "%s/" AUDIT_FILE_NAME, state_dir) < 0)
                return NULL;
        return p;
}

/* The highest N of the rotated logs audit.log.N of state_dir, 0 when there is none. */
static int rotated_max(const char *state_dir, unsigned *ret) {
        DIR *d = opendir(state_dir);
        unsigned max = 0;
        struct dirent *de;

        if (!d)
                return errno == ENOENT ? (*ret = 0, 0) : -errno;
        while ((de = readdir(d))) {
                const char *suffix = startswith(de->d_name, AUDIT_FILE_NAME ".");
                char *end;
                unsigned long n;

                if (!suffix || suffix[0] < '1' || suffix[0] > '9')
                        continue;
                errno = 0;
                n = strtoul(suffix, &end, 10);
                if (errno == 0 && *end == 0 && n < AUDIT_ROTATED_MAX)
                        max = MAX(max, (unsigned) n);
        }
        closedir(d);
        *ret = max;
        return 0;
}

/* A full log becomes audit.log.N (the next N) and a new one starts: nothing is deleted, and
 * each file stays small enough to read whole. */
static int audit_rotate_if_full(const char *state_dir, const char *path, size_t adding) {
        _cleanup_free_ char *to = NULL;
        struct stat st;
        unsigned n;
        int k;

        if (stat(path, &st) < 0)
                return errno == ENOENT ? 0 : log_error_errno(errno, "Cannot stat %s: %m", path);
        if (st.st_size == 0 || (uint64_t) st.st_size + adding <= AUDIT_ROTATE_BYTES)
                return 0;
        k = rotated_max(state_dir, &n);
        if (k < 0)
                return log_error_errno(k, "Cannot list %s: %m", state_dir);
        if (n + 1 >= AUDIT_ROTATED_MAX)
                return log_error_errno(ENOSPC, "%s: %u rotated audit logs already; move the oldest away.", state_dir,
                                       n);
        if (asprintf(&to, "%s.%u", path, n + 1) < 0)
                return log_oom();
        if (rename(path, to) < 0)
                return log_error_errno(errno, "Cannot rotate %s to %s: %m", path, to);
        (void) fsync_parent(path);
        log_info("Audit log rotated to %s.", to);
        return 0;
}

/* [[offset_s, min_v, max_v], ...], volts to the millivolt; NULL for none. */
static json_t *trace_to_json(const AuditRecord *r) {
        json_t *a;

        if (r->n_trace == 0)
                return NULL;
        a = json_array();
        for (size_t i = 0; a && i < r->n_trace; i++) {
                const AuditTracePoint *t = &r->trace[i];
                if (json_array_append_new(a, json_pack("[I, f, f]", (json_int_t) t->offset_s,
                                                       round(t->min_v * 1000) / 1000, round(t->max_v * 1000) / 1000)) < 0)
                        a = (json_decref(a), NULL);
        }
        return a;
}

static int trace_from_json(json_t *v, AuditRecord *r) {
        size_t i;
        json_t *p;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_array(v) || json_array_size(v) > AUDIT_TRACE_MAX)
                return -EINVAL;
        if (json_array_size(v) == 0)
                return 0;
        r->trace = calloc(json_array_size(v), sizeof(AuditTracePoint));
        if (!r->trace)
                return -ENOMEM;
        json_array_foreach(v, i, p) {
                json_int_t offset;
                double lo, hi;
                if (json_unpack(p, "[I, F, F]", &offset, &lo, &hi) < 0 || offset < 0 || offset > UINT32_MAX ||
                    !(lo >= 0.0 && lo <= hi && hi <= JOURNAL_BATTERY_MAX))
                        return -EINVAL;
                r->trace[i] = (AuditTracePoint) { .offset_s = (uint32_t) offset, .min_v = lo, .max_v = hi };
                r->n_trace = i + 1;
        }
        return 0;
}

int audit_append(const char *state_dir, const AuditRecord *r) {
        _cleanup_free_ char *path = NULL, *text = NULL, *line = NULL;
        char reason[256], when[64];
        json_error_t err;
        json_t *root, *trace;
        int k;

        k = record_check(r, reason, sizeof(reason));
        if (k >= 0 && format_iso8601(r->time, when, sizeof(when)) < 0) {
                snprintf(reason, sizeof(reason), "time %" PRIu64 " cannot be written as a date", r->time);
                k = -EINVAL;
        }
        if (k < 0)
                return log_error_errno(k, "Refusing to audit procedure %" PRIu64 ": %s", r->id, reason);

        trace = trace_to_json(r);
        if (r->n_trace > 0 && !trace)
                return log_oom();
        /* "version" first: AUDIT_RECORD_START depends on it */
        root = json_pack_ex(
                &err, 0,
                "{s:i, s:I, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:o?, s:o?, s:o?, s:I, s:o?}",
                "version", AUDIT_VERSION,
                "id", (json_int_t) r->id,
                "time", when,
                "usec", (json_int_t) r->time,
                "created", (json_int_t) r->created,
                "uid", (json_int_t) r->uid,
                "technician", r->technician,
                "vin", r->vin,
                "profile", r->profile,
                "repair_order", r->repair_order,
                "kind", procedure_kind_to_string(r->kind),
                "result", audit_result_to_string(r->result),
                "error", r->error,
                "keys_before", r->keys_before < 0 ? NULL : json_integer(r->keys_before),
                "keys_after", r->keys_after < 0 ? NULL : json_integer(r->keys_after),
                "battery_min", isnan(r->battery_min) ? NULL : json_real(r->battery_min),
                "passcode_attempts", (json_int_t) r->passcode_attempts,
                "trace", trace);
        if (!root)
                return log_error_errno(EINVAL, "Failed to build audit record %" PRIu64 ": %s", r->id, err.text);
        text = json_dumps(root, JSON_PRESERVE_ORDER | JSON_COMPACT);
        json_decref(root);
        if (!text)
                return log_oom();
        /* one write of the whole line, newline included */
        if (asprintf(&line, "%s\n", text) < 0)
                return log_oom();

        path = audit_path(state_dir);
        if (!path)
                return log_oom();
        k = audit_rotate_if_full(state_dir, path, strlen(line));
        if (k < 0)
                return k;
        k = append_line_synced(path, line, 0600);
        if (k < 0)
                return log_error_errno(k, "Failed to append to audit log %s: %m", path);
        return 0;
}

static int optional_count(json_t *v, int *ret) {
        if (json_is_null(v)) {
                *ret = -1;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 255)
                return -EINVAL;
        *ret = (int) json_integer_value(v);
        return 0;
}

static int record_from_json(json_t *root, AuditRecord *ret, char *reason, size_t reason_size) {
        const char *when, *technician, *vin, *profile, *repair_order, *kind, *result, *error = NULL;
        json_int_t version, id, usec, created, uid, attempts;
        json_t *error_json, *keys_before, *keys_after, *battery_min, *trace = NULL;
        AuditRecord r = {};
        json_error_t err;
        char want[64];
        int k;

        if (json_unpack_ex(root, &err, 0, "{s:I}", "version", &version) < 0) {
                snprintf(reason, reason_size, "%s", err.text);
                return -EINVAL;
        }
        if (version != AUDIT_VERSION) {
                snprintf(reason, reason_size, "unsupported version %" JSON_INTEGER_FORMAT, version);
                return -EINVAL;
        }
        if (json_unpack_ex(root, &err, JSON_STRICT,
                           "{s:I, s:I, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:I, s?o}",
                           "version", &version, "id", &id, "time", &when, "usec", &usec, "created", &created,
                           "uid", &uid, "technician", &technician, "vin", &vin, "profile", &profile,
                           "repair_order", &repair_order, "kind", &kind, "result", &result, "error", &error_json,
                           "keys_before", &keys_before, "keys_after", &keys_after, "battery_min",
                           &battery_min, "passcode_attempts", &attempts, "trace", &trace) < 0) {
                snprintf(reason, reason_size, "%s", err.text);
                return -EINVAL;
        }
        if (json_is_string(error_json))
                error = json_string_value(error_json);
        else if (!json_is_null(error_json)) {
                snprintf(reason, reason_size, "error must be null or a string");
                return -EINVAL;
        }
        if (id <= 0 || usec <= 0 || created <= 0 || uid < 0 || uid > UINT32_MAX || attempts < 0 ||
            attempts > JOURNAL_ATTEMPTS_MAX) {
                snprintf(reason, reason_size, "id, usec, created, uid or passcode_attempts out of range");
                return -EINVAL;
        }
        if (format_iso8601((usec_t) usec, want, sizeof(want)) < 0 || !streq(want, when)) {
                snprintf(reason, reason_size, "time \"%.64s\" does not match usec", when);
                return -EINVAL;
        }
        if (procedure_kind_from_string(kind, &r.kind) < 0) {
                snprintf(reason, reason_size, "unknown kind \"%.64s\"", kind);
                return -EINVAL;
        }
        if (audit_result_from_string(result, &r.result) < 0) {
                snprintf(reason, reason_size, "unknown result \"%.64s\"", result);
                return -EINVAL;
        }
        if (optional_count(keys_before, &r.keys_before) < 0 || optional_count(keys_after, &r.keys_after) < 0) {
                snprintf(reason, reason_size, "keys_before and keys_after must be null or 0..255");
                return -EINVAL;
        }
        if (!json_is_null(battery_min) && !json_is_number(battery_min)) {
                snprintf(reason, reason_size, "battery_min must be null or a number");
                return -EINVAL;
        }

        r.id = (uint64_t) id;
        r.uid = (uint32_t) uid;
        r.technician = (char *) technician;
        r.time = (usec_t) usec;
        r.created = (usec_t) created;
        r.vin = (char *) vin;
        r.profile = (char *) profile;
        r.repair_order = (char *) repair_order;
        r.error = (char *) error;
        r.battery_min = json_is_null(battery_min) ? NAN : json_number_value(battery_min);
        r.passcode_attempts = (unsigned) attempts;
        k = trace_from_json(trace, &r);
        if (k < 0) {
                free(r.trace);
                if (k == -ENOMEM)
                        return k;
                snprintf(reason, reason_size, "trace must be null or at most %u [offset_s, min_v, max_v]",
                         AUDIT_TRACE_MAX);
                return -EINVAL;
        }
        k = record_check(&r, reason, reason_size);
        if (k < 0) {
                free(r.trace);
                return k;
        }

        r.technician = strdup(technician);
        r.vin = strdup(vin);
        r.profile = strdup(profile);
        r.repair_order = strdup(repair_order);
        r.error = error ? strdup(error) : NULL;
        if (!r.technician || !r.vin || !r.profile || !r.repair_order || (error && !r.error)) {
                audit_record_done(&r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

typedef struct RecordList {
        AuditRecord *records;
        size_t n, allocated;
} RecordList;

static int record_list_push(RecordList *l, const AuditRecord *r) {
        if (l->n == l->allocated) {
                size_t a = MAX(l->allocated * 2, (size_t) 16);
                AuditRecord *p = reallocarray(l->records, a, sizeof(AuditRecord));

                if (!p)
                        return -ENOMEM;
                l->records = p;
                l->allocated = a;
        }
        l->records[l->n++] = *r;
        return 0;
}

/* The records of one line, in the order written. Normally one; after a crash cut a line
 * short, the next append continues that line, so what follows a broken part is searched
 * for the start of a record. */
static int parse_line(const char *path, uint64_t offset, const char *line, size_t len, RecordList *out) {
        size_t pos = 0;

        while (pos < len) {
                AuditRecord r;
                json_error_t err;
                char reason[256];
                json_t *root;
                const char *next;
                int k;

                if (line[pos] == ' ' || line[pos] == '\t' || line[pos] == '\r') {
                        pos++;
                        continue;
                }
                root = json_loadb(line + pos, len - pos, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &err);
                if (root) {
                        k = record_from_json(root, &r, reason, sizeof(reason));
                        json_decref(root);
                        if (k == -ENOMEM)
                                return k;
                        if (k < 0)
                                log_warning("%s: line at byte %" PRIu64 ": skipping an invalid audit record: %s", path, offset, reason);
                        else if (record_list_push(out, &r) < 0) {
                                audit_record_done(&r);
                                return -ENOMEM;
                        }
                        pos += (size_t) err.position;
                        continue;
                }

                log_warning("%s: line at byte %" PRIu64 ": skipping an unreadable audit record (cut short by a "
                            "crash?): column %d: %s",
                            path, offset, err.column, err.text);
                next = memmem(line + pos + 1, len - pos - 1, AUDIT_RECORD_START, strlen(AUDIT_RECORD_START));
                if (!next)
                        break;
                pos = (size_t) (next - line);
        }
        return 0;
}

/* Reading the logs from their ends, newest record first: a reader pays for the records it
 * takes, whatever the size of the history. */

#define TAIL_CHUNK (64U * 1024U)

struct AuditReader {
        char *path;                  /* audit.log; the rotated logs are path.N */
        unsigned next_rotated;       /* the next older log to open, 0 when none is left; UINT_MAX:
                                      * audit.log itself */
        unsigned next_rotated_first; /* the newest rotated log */
        int fd;                      /* the log being read, -1 before the first and after the last */
        char *log_name;              /* its path, for warnings */
        uint64_t off;                /* the file offset of buf[0]: what is left to read lies before */
        char *buf;                   /* the part of the file not handed out yet, [off, off + len) */
        size_t len;
        RecordList line; /* the records of the line read last, oldest first */
};

/* The previous line of the log (without its newline) into *ret, *ret_len, its offset into
 * *ret_off; 0 at the start of the file. The line stays valid until the next call. */
static int tail_prev_line(AuditReader *r, const char **ret, size_t *ret_len, uint64_t *ret_off) {
        for (;;) {
                size_t end = r->len > 0 && r->buf[r->len - 1] == '\n' ? r->len - 1 : r->len;
                const char *nl = end > 0 ? memrchr(r->buf, '\n', end) : NULL;

                if (nl || r->off == 0) {
                        size_t start = nl ? (size_t) (nl - r->buf) + 1 : 0;

                        if (!nl && end == 0)
                                return 0;
                        *ret = r->buf + start;
                        *ret_len = end - start;
                        *ret_off = r->off + start;
                        r->len = start; /* keeps the newline ending the line before */
                        return 1;
                }

                /* no line start in what was read: read the chunk before it */
                size_t chunk = (size_t) MIN(r->off, (uint64_t) TAIL_CHUNK);
                char *b = malloc(chunk + r->len);
                ssize_t n;

                if (!b)
                        return -ENOMEM;
                n = pread(r->fd, b, chunk, (off_t) (r->off - chunk));
                if (n != (ssize_t) chunk) {
                        free(b);
                        return n < 0 ? log_error_errno(errno, "Failed to read audit log %s: %m", r->log_name)
                                     : log_error_errno(EIO, "Audit log %s shrank while it was read", r->log_name);
                }
                if (r->len > 0) /* buf is NULL before the first chunk */
                        memcpy(b + chunk, r->buf, r->len);
                free(r->buf);
                r->buf = b;
                r->len += chunk;
                r->off -= chunk;
        }
}

/* Opens the next older log; 0 when there is none left. */
static int reader_open_next(AuditReader *r) {
        struct stat st;

        for (;;) {
                r->fd = safe_close(r->fd);
                r->log_name = mfree(r->log_name);
                r->buf = mfree(r->buf);
                r->len = 0;
                if (r->next_rotated == UINT_MAX) /* audit.log itself comes first */
                        r->log_name = strdup(r->path);
                else if (r->next_rotated == 0)
                        return 0;
                else if (asprintf(&r->log_name, "%s.%u", r->path, r->next_rotated) < 0)
                        r->log_name = NULL;
                if (!r->log_name)
                        return -ENOMEM;
                r->next_rotated = r->next_rotated == UINT_MAX ? r->next_rotated_first : r->next_rotated - 1;

                r->fd = open(r->log_name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (r->fd < 0 && errno == ENOENT)
                        continue;
                if (r->fd < 0 || fstat(r->fd, &st) < 0)
                        return log_error_errno(errno, "Failed to open audit log %s: %m", r->log_name);
                if ((uint64_t) st.st_size > AUDIT_FILE_MAX)
                        return log_error_errno(EFBIG, "Audit log %s is larger than %u bytes", r->log_name,
                                               AUDIT_FILE_MAX);
                r->off = (uint64_t) st.st_size;
                return 1;
        }
}

int audit_reader_new(const char *state_dir, AuditReader **ret) {
        AuditReader *r;
        int k;

        r = calloc(1, sizeof(AuditReader));
        if (!r)
                return -ENOMEM;
        r->fd = -1;
        r->next_rotated = UINT_MAX;
        r->path = audit_path(state_dir);
        if (!r->path) {
                free(r);
                return -ENOMEM;
        }
        /* the rotated logs as they are now: a rotation while reading renames audit.log,
         * which stays open, to the one after these */
        k = rotated_max(state_dir, &r->next_rotated_first);
        if (k < 0) {
                audit_reader_free(r);
                return log_error_errno(k, "Cannot list %s: %m", state_dir);
        }
        *ret = r;
        return 0;
}

int audit_reader_next(AuditReader *r, AuditRecord *ret) {
        int k;

        while (r->line.n == 0) {
                const char *line = NULL;
                size_t len = 0;
                uint64_t off = 0;

                if (r->fd < 0) {
                        k = reader_open_next(r);
                        if (k <= 0)
                                return k;
                }
                k = tail_prev_line(r, &line, &len, &off);
                if (k < 0)
                        return k;
                if (k == 0) {
                        r->fd = safe_close(r->fd);
                        if (r->next_rotated == 0)
                                return 0;
                        continue;
                }
                k = parse_line(r->log_name, off, line, len, &r->line);
                if (k < 0)
                        return k;
        }
        *ret = r->line.records[--r->line.n];
        return 1;
}

AuditReader *audit_reader_free(AuditReader *r) {
        if (!r)
                return NULL;
        audit_records_free(r->line.records, r->line.n);
        safe_close(r->fd);
        free(r->log_name);
        free(r->buf);
        free(r->path);
        return mfree(r);
}

int audit_read(const char *state_dir, unsigned limit, AuditRecord **ret, size_t *ret_n) {
        AuditReader *reader = NULL;
        RecordList all = {};
        AuditRecord rec;
        int k;

        if (limit == 0 || limit > AUDIT_HISTORY_MAX)
                limit = AUDIT_HISTORY_MAX;
        k = audit_reader_new(state_dir, &reader);
        while (k >= 0 && all.n < limit) {
                k = audit_reader_next(reader, &rec);
                if (k <= 0)
                        break;
                k = record_list_push(&all, &rec);
                if (k < 0)
                        audit_record_done(&rec);
        }
        audit_reader_free(reader);
        if (k < 0) {
                audit_records_free(all.records, all.n);
                return k == -ENOMEM ? log_oom() : k;
        }
        if (all.n == 0)
                all.records = mfree(all.records);
        *ret = all.records;
        *ret_n = all.n;
        return 0;
}

void audit_record_done(AuditRecord *r) {
        if (!r)
                return;
        free(r->technician);
        free(r->vin);
        free(r->profile);
        free(r->repair_order);
        free(r->error);
        free(r->trace);
        r->technician = r->vin = r->profile = r->repair_order = r->error = NULL;
        r->trace = NULL;
        r->n_trace = 0;
}

void audit_records_free(AuditRecord *r, size_t n) {
        for (size_t i = 0; i < n; i++)
                audit_record_done(&r[i]);
        free(r);
}
