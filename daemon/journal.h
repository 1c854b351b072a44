/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The journal: the crash-safe record of a running procedure, one file per procedure
 * (state_dir/procedure-<id>.json), replaced atomically before every command that changes
 * the car. A record with a pending command ("sent") says that command may have reached
 * the ECU: after a restart immod follows it up by reading results and never sends it
 * again (README.md, safety rule 5). Passcodes are never journalled.
 */

#include "procedure-steps.h"
#include "util.h"

#define JOURNAL_VERSION 1
#define JOURNAL_MAX_FILES 64U          /* journal_load_all() loads at most this many */
#define JOURNAL_FILE_MAX (64U * 1024U) /* bytes per journal file */
#define JOURNAL_TEXT_MAX 128U          /* technician, repair order (bytes) */
#define JOURNAL_PROFILE_MAX 64U        /* as PROFILE_NAME_MAX */
#define JOURNAL_COMMAND_MAX_BYTES 64U  /* bytes of a pending command */
#define JOURNAL_ATTEMPTS_MAX 65535U
#define JOURNAL_BATTERY_MAX 100.0 /* volts; anything above is a broken reading */

/* The procedure's State, as the D-Bus property spells it. */
typedef enum JournalState {
        JOURNAL_STATE_RUNNING,
        JOURNAL_STATE_WAITING,
        JOURNAL_STATE_SUCCEEDED,
        JOURNAL_STATE_FAILED,
        JOURNAL_STATE_CANCELLED,
        _JOURNAL_STATE_MAX,
} JournalState;

typedef struct JournalRecord {
        uint64_t id; /* 1..INT64_MAX (JSON integers are signed 64-bit) */
        ProcedureKind kind;
        char *vin;                /* 17 characters, vin_check_syntax() */
        char *profile;            /* vehicle profile name, 1..JOURNAL_PROFILE_MAX bytes */
        uint32_t owner;           /* uid of the caller that started it, not (uid_t) -1 */
        char *technician;         /* may be "", never NULL; no control characters */
        char *repair_order;       /* may be "", never NULL; no control characters */
        char *customer_last_name; /* for FetchPasscode after a restart; NULL or "" when not
                                   * given (journals of earlier versions lack it) */
        usec_t created;           /* µs since the epoch, > 0 */
        const char *step;         /* a step id of `kind`; after loading it points into the
                                   * static step table */
        char *sent_command;       /* NULL, or the destructive command about to be sent, as
                                   * upper-case hex bytes separated by one space: "31 01 A1 01" */
        usec_t sent_at;           /* when it was (about to be) sent; > 0 with sent_command */
        int keys_before;          /* keys registered before the procedure; -1: unknown */
        double battery_min;       /* volts; NAN: unknown */
        unsigned passcode_attempts;
        JournalState state;
} JournalRecord;

const char *journal_state_to_string(JournalState s);
/* -EINVAL for an unknown state. */
int journal_state_from_string(const char *s, JournalState *ret);

/* true for at most `max` bytes of UTF-8 text without control characters. */
bool journal_text_valid(const char *s, size_t max);

/* Validates `r` (as loading does), then replaces state_dir/procedure-<id>.json atomically
 * and durably. -EINVAL for an invalid record, with the reason logged. */
int journal_write(const char *state_dir, const JournalRecord *r);

/* Loads every valid journal file of state_dir, ordered by id. Unreadable or invalid files
 * are logged with their name and what is wrong, skipped and left in place; temporary files
 * a crash left behind are removed. A missing state_dir is no journal (0 records). On
 * success *ret is NULL when there are no records; free with journal_records_free(). */
int journal_load_all(const char *state_dir, JournalRecord **ret, size_t *ret_n);

/* Removes state_dir/procedure-<id>.json durably; 0 when it does not exist. */
int journal_remove(const char *state_dir, uint64_t id);

/* Frees the strings of a record journal_load_all() returned (not `step`). */
void journal_record_done(JournalRecord *r);
void journal_records_free(JournalRecord *r, size_t n);
