/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The three procedures of the bulletins as tables of steps: the step ids of the D-Bus
 * contract (dbus-api.md), in order, with how each step ends, whether a person must act,
 * whether Cancel is safe there, its expected duration (which weights Percentage) and the
 * prompt for the person at the car. The procedure engine walks these tables; a reader
 * finds the whole flow of each procedure here.
 */

#include "util.h"

typedef enum ProcedureKind {
        PROCEDURE_IMMOBILIZER_RESET,
        PROCEDURE_KEY_REGISTRATION,
        PROCEDURE_KEY_ERASURE,
        _PROCEDURE_KIND_MAX,
} ProcedureKind;

typedef enum StepEnd {
        STEP_END_ACKNOWLEDGE,  /* Acknowledge(step) */
        STEP_END_PASSCODE,     /* SubmitPasscode or FetchPasscode */
        STEP_END_KEY_COUNT,    /* SetKeyCount */
        STEP_END_ERASE,        /* Erase */
        STEP_END_ECU_EVENT,    /* a key event from the ECU */
        STEP_END_FINISH,       /* Finish, or full slots */
        STEP_END_BY_ITSELF,    /* immod or the ECU finishes it */
        STEP_END_NONE,         /* "done": the end */
} StepEnd;

typedef struct StepInfo {
        const char *id;
        StepEnd end;
        bool waiting;      /* State is "waiting" (a person acts) rather than "running" */
        bool cancellable;  /* Cancel is safe here */
        unsigned weight_s; /* expected duration, for Percentage */
        const char *prompt;
} StepInfo;

const char *procedure_kind_to_string(ProcedureKind k);
/* -EINVAL for an unknown kind. */
int procedure_kind_from_string(const char *s, ProcedureKind *ret);

const StepInfo *procedure_steps(ProcedureKind k, size_t *ret_n);
/* 0-based index of a step id in its kind's table, or -ENOENT. */
int procedure_step_index(ProcedureKind k, const char *id);
/* 0..100 over the whole procedure: the steps before `index` in full, plus `fraction`
 * (0..1000 per mille) of the step at `index`, each weighted by its duration. */
unsigned procedure_percentage(ProcedureKind k, size_t index, unsigned fraction_permille);
