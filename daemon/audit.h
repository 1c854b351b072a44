/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The audit log: one JSON line per finished procedure in state_dir/audit.log, appended and
 * fsynced, never rewritten (README.md, safety rule 6). A log that reaches AUDIT_ROTATE_BYTES
 * becomes audit.log.N (N = 1, 2, ...) and a new one starts: nothing is ever deleted.
 * GetHistory reads them back, newest first.
 */

#include "journal.h"
#include "procedure-steps.h"
#include "util.h"

#define AUDIT_VERSION 1
#define AUDIT_FILE_NAME "audit.log"
#define AUDIT_FILE_MAX (16U * 1024U * 1024U) /* a larger log is refused with -EFBIG */
#define AUDIT_ROTATE_BYTES (1024U * 1024U)   /* about 3000 records a file */
#define AUDIT_ROTATED_MAX 100000U            /* audit.log.N, N below this */
#define AUDIT_HISTORY_MAX 10000U             /* records audit_read() returns at most */
#define AUDIT_ERROR_MAX 255U                 /* a D-Bus error name */
#define AUDIT_TRACE_MAX 240U                 /* points of the voltage trace kept with a record */

/* The battery voltage over a stretch of the procedure: lowest and highest reading. */
typedef struct AuditTracePoint {
        uint32_t offset_s; /* from the start of the trace (the procedure's, or its resume's) */
        double min_v, max_v;
} AuditTracePoint;

typedef enum AuditResult {
        AUDIT_SUCCEEDED,
        AUDIT_FAILED,
        AUDIT_CANCELLED,
        _AUDIT_RESULT_MAX,
} AuditResult;

typedef struct AuditRecord {
        uint64_t id;      /* the procedure's id, 1..INT64_MAX: a restart that finds a
                           * journal already audited only removes the journal */
        uint32_t uid;     /* who started it */
        char *technician; /* the name given, may be "" */
        usec_t time;      /* when it finished, µs since the epoch (also written as
                           * ISO 8601 UTC, "time") */
        usec_t created;   /* when it started */
        ProcedureKind kind;
        char *vin;
        char *profile;      /* vehicle profile name */
        char *repair_order; /* may be "" */
        AuditResult result;
        char *error;     /* D-Bus error name; NULL for succeeded, required for failed */
        int keys_before; /* keys registered before and after; -1: unknown */
        int keys_after;
        double battery_min; /* volts; NAN: unknown (JSON null) */
        unsigned passcode_attempts;
        AuditTracePoint *trace; /* the voltage trace, oldest first; NULL when none */
        size_t n_trace;         /* at most AUDIT_TRACE_MAX */
} AuditRecord;

const char *audit_result_to_string(AuditResult r);
int audit_result_from_string(const char *s, AuditResult *ret);

/* Validates `r` and appends it as one line to state_dir/audit.log, fsynced.
 * -EINVAL for an invalid record, with the reason logged. */
int audit_append(const char *state_dir, const AuditRecord *r);

/* The newest `limit` records (0 or more than AUDIT_HISTORY_MAX: AUDIT_HISTORY_MAX), newest
 * first, from audit.log and then the rotated logs. A missing log is no records (*ret is
 * NULL then). Lines that are not valid records, such as one a crash cut short, are skipped
 * with a warning naming the line. Free with audit_records_free(). */
int audit_read(const char *state_dir, unsigned limit, AuditRecord **ret, size_t *ret_n);

/* The records one at a time, newest first, each log read from its end (GetHistory runs one
 * on the event loop, a slice at a time). */
typedef struct AuditReader AuditReader;
int audit_reader_new(const char *state_dir, AuditReader **ret);
/* 1 and the next older record in *ret (audit_record_done() it); 0 when there is none left. */
int audit_reader_next(AuditReader *r, AuditRecord *ret);
AuditReader *audit_reader_free(AuditReader *r);

void audit_record_done(AuditRecord *r);
void audit_records_free(AuditRecord *r, size_t n);
