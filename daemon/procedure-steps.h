/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The three procedures of the bulletins as tables of steps: the step ids of the D-Bus
 * contract (dbus-api.md), in order, each with its behaviour: what immod does on entering
 * it, what it checks before a person's acknowledgement ends it, what it polls while it
 * lasts (and so what it holds open in the ECU), how it ends, what a passcode accepted there
 * leads to, and where a procedure interrupted there resumes after a restart. The procedure
 * engine (procedure.c) runs these tables and compares no step id; a reader finds the whole
 * flow of each procedure here, top to bottom.
 */

#include "util.h"

typedef enum ProcedureKind {
        PROCEDURE_IMMOBILIZER_RESET,
        PROCEDURE_KEY_REGISTRATION,
        PROCEDURE_KEY_ERASURE,
        _PROCEDURE_KIND_MAX,
} ProcedureKind;

typedef enum StepEnd {
        STEP_END_ACKNOWLEDGE, /* Acknowledge(step) */
        STEP_END_PASSCODE,    /* SubmitPasscode or FetchPasscode */
        STEP_END_KEY_COUNT,   /* SetKeyCount */
        STEP_END_ERASE,       /* Erase */
        STEP_END_ECU_EVENT,   /* a key event from the ECU */
        STEP_END_FINISH,      /* Finish, or full slots */
        STEP_END_BY_ITSELF,   /* immod or the ECU finishes it */
        STEP_END_NONE,        /* "done": the end */
} StepEnd;

/* What immod does on entering a step. */
typedef enum StepEnter {
        ENTER_NOTHING,
        ENTER_IMMOBILIZER_SEED,    /* 27 01: the seed to show (Seed) */
        ENTER_SMART_CODE_SEED,     /* 27 03: VIN, Data1, Data2, Data3 to show */
        ENTER_READ_SLOTS,          /* A001: registered keys and free slots */
        ENTER_REGISTRATION_MODE_1, /* 31 01 A102 01: a registered key first, then one new key */
        ENTER_REGISTRATION_MODE_2, /* 31 01 A102 02, unless mode 1 already runs */
        ENTER_ERASURE_WINDOW,      /* 31 01 A103 <keys present>: the 30 s window */
        ENTER_FINAL_KEYS,          /* A001 for the record, then the procedure has succeeded */
} StepEnter;

/* What Acknowledge checks on the car before it ends the step. */
typedef enum StepCheck {
        CHECK_NOTHING,
        CHECK_DOOR_OPEN, /* A003 bit 0 */
        CHECK_FREE_SLOT, /* a slot is free (read on entering) */
} StepCheck;

/* What immod reads while the step lasts: the routine it holds open in the ECU. */
typedef enum StepPoll {
        POLL_NOTHING,
        POLL_RESET,        /* 31 03 A101: progress, the end of the reset */
        POLL_REGISTRATION, /* 31 03 A102: key events; registration mode is open */
        POLL_ERASURE,      /* 31 03 A103: key events; the erasure window is open */
} StepPoll;

/* What an accepted passcode leads to. */
typedef enum StepPasscode {
        PASSCODE_NEXT_STEP,   /* the next step */
        PASSCODE_START_RESET, /* the battery check, then 31 01 A101: the reset starts */
} StepPasscode;

typedef struct StepInfo {
        const char *id;
        StepEnd end;
        bool waiting;      /* State is "waiting" (a person acts) rather than "running" */
        bool cancellable;  /* Cancel may interrupt it (false only while the ECU resets) */
        unsigned weight_s; /* expected duration, for Percentage */
        StepEnter enter;
        StepCheck check;
        StepPoll poll;
        StepPasscode passcode;
        bool needs_key;        /* skipped when no key is registered */
        const char *resume_at; /* after a restart: the step that is safe to repeat */
        const char *prompt;
} StepInfo;

const char *procedure_kind_to_string(ProcedureKind k);
/* -EINVAL for an unknown kind. */
int procedure_kind_from_string(const char *s, ProcedureKind *ret);

const StepInfo *procedure_steps(ProcedureKind k, size_t *ret_n);
/* The step where a procedure interrupted at `index` goes on after a restart. */
size_t procedure_resume_index(ProcedureKind k, size_t index);
/* The first step of a kind whose entering does `enter`, or -ENOENT. */
int procedure_step_entering(ProcedureKind k, StepEnter enter);
/* 0-based index of a step id in its kind's table, or -ENOENT. */
int procedure_step_index(ProcedureKind k, const char *id);
/* 0..100 over the whole procedure: the steps before `index` in full, plus `fraction`
 * (0..1000 per mille) of the step at `index`, each weighted by its duration. */
unsigned procedure_percentage(ProcedureKind k, size_t index, unsigned fraction_permille);
