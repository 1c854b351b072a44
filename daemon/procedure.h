/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The procedure engine: one Procedure per run of a bulletin procedure. It walks its kind's
 * step table (procedure-steps.h); each step's action is a small function that talks to the
 * ECU through the daemon's UdsLink. The D-Bus face is in procedure-bus.c.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "battery.h"
#include "ecu-gate.h"
#include "daemon.h"
#include "journal.h"
#include "passcode.h"
#include "procedure-steps.h"
#include "profile.h"
#include "uds.h"

#define PROCEDURE_PATH_PREFIX IMMOD_PROCEDURE_PATH_PREFIX
#define PROCEDURE_INTERFACE IMMOD_PROCEDURE_INTERFACE

typedef struct Procedure Procedure;
typedef void (*ProcedureCont)(Procedure *p, const UdsResponse *r);

/* What the procedure has opened in the ECU, as far as immod knows: Cancel and the end of a
 * procedure close it, a restart reads it back (DID A002). */
typedef enum EcuOpen {
        ECU_OPEN_NOTHING,
        ECU_OPEN_REGISTRATION, /* A102 runs: a key touched now would be registered */
        ECU_OPEN_ERASURE,      /* A103's window: Erase would delete the untouched keys */
        ECU_OPEN_RESET,        /* A101 runs: it must not be interrupted */
} EcuOpen;

/* Why the car is read back (DID A002, the routine results, DID A001). */
typedef enum Readback {
        READBACK_NONE,
        READBACK_RESUME, /* after a restart, a wake-up or a lost answer: go on from what the car shows */
        READBACK_CANCEL, /* Cancel: end what is open, then record what the car shows */
} Readback;

/* Properties, as bits of Procedure.dirty. */
enum {
        PROP_STATE = 1U << 0,
        PROP_STEP = 1U << 1,
        PROP_PROMPT = 1U << 2,
        PROP_SEED = 1U << 3,
        PROP_ATTEMPTS = 1U << 4,
        PROP_LOCKOUT = 1U << 5,
        PROP_PERCENTAGE = 1U << 6,
        PROP_REMAINING = 1U << 7,
        PROP_DEADLINE = 1U << 8,
        PROP_KEYS = 1U << 9,
        PROP_BATTERY_MIN = 1U << 10,
        PROP_ERROR = 1U << 11,
};

/*
 * What the Procedure object shows and what its D-Bus side keeps: procedure.c writes the
 * first part, procedure-bus.c reads it (plain values by offset, the others through getters)
 * and announces the properties named in `dirty`. The engine's own state is private to
 * procedure.c. A Procedure starts with its view, so the bus's object pointer is both.
 */
typedef struct ProcedureView {
        uint64_t id;
        char path[80];
        ProcedureKind kind;
        const StepInfo *steps;
        size_t n_steps;
        size_t step;
        char vin[18];
        uint32_t owner;
        usec_t created;
        char *technician;
        char *repair_order;
        char *customer_last_name; /* for a smart code from the passcode service; NULL when not given */

        JournalState state;
        char *error;
        char *error_message;
        char prompt[512];

        /* the seed shown at a passcode step */
        bool have_seed;
        PasscodeKind seed_kind;
        uint8_t imm_seed[PASSCODE_SEED_SIZE];
        char sc_vin[18], data1[PASSCODE_DATA1_LEN + 1], data2[PASSCODE_DATA2_LEN + 1], data3[PASSCODE_DATA3_LEN + 1];

        uint32_t attempts_left, lockout_s;
        uint32_t percentage, remaining_s;
        usec_t deadline;
        uint32_t registered, available, max, declared, touched, to_delete, added;
        /* registered, available, max (and to_delete, added, which follow from them) are the
         * car's: until its key status was read (A001, A102's results) since this start or
         * restart, Keys leaves them out rather than show zeros that are not the car's. */
        bool keys_read;
        double battery_min;
        unsigned dirty; /* PROP_* to announce */

        /* kept by the D-Bus side */
        void *fetch; /* FetchPasscode() under way (procedure-fetch.c) */
        /* A call that came while a background poll (tester present, routine results) was on
         * its way to the ECU: it runs once the answer is in, rather than failing with Busy
         * (procedure-bus.c). At most one; a second call gets Busy. */
        sd_bus_message *deferred;
        sd_bus_message_handler_t deferred_handler;
} ProcedureView;


/* Creates a procedure for the vehicle and starts it (extended session, key status);
 * `msg` (StartProcedure) is answered with the object path or an error. */
int procedure_start(Manager *m, uint64_t id, ProcedureKind kind, const char *vin, const VehicleProfile *profile,
                    uint32_t owner, const char *technician, const char *repair_order, sd_bus_message *msg,
                    Procedure **ret);
/* From a journal record found at start-up: a running reset is followed to its end, a reset
 * not started yet ends as failed, a registration or an erasure goes on from its last step
 * that is safe to repeat (procedure.c says which). */
int procedure_resume(Manager *m, const JournalRecord *r, const VehicleProfile *profile, Procedure **ret);
/* Starts reading the vehicle back for a procedure procedure_resume() made, once it is on the
 * bus (manager_add_procedure()): the readback announces its properties as it goes. */
void procedure_resume_begin(Procedure *p);
Procedure *procedure_free(Procedure *p);
bool procedure_is_active(const Procedure *p);

static inline ProcedureView *procedure_view(Procedure *p) {
        return (ProcedureView *) p; /* its first member */
}
Daemon *procedure_daemon(const Procedure *p);
Manager *procedure_manager(const Procedure *p);
const VehicleProfile *procedure_profile(const Procedure *p);
/* A method call may be served now: no Cancel, readback or answer under way. */
bool procedure_can_serve(const Procedure *p);
/* Only a background poll holds the ECU: a method call that comes now may wait for it. */
bool procedure_polling(const Procedure *p);

const char *procedure_step_id(const Procedure *p);

/* Methods (procedure-bus.c calls these after authorizing; they reply to msg). */
int procedure_acknowledge(Procedure *p, sd_bus_message *msg, const char *step, sd_bus_error *error);
int procedure_submit_passcode(Procedure *p, sd_bus_message *msg, const char *passcode, sd_bus_error *error);
int procedure_set_key_count(Procedure *p, sd_bus_message *msg, uint32_t present, sd_bus_error *error);
int procedure_erase(Procedure *p, sd_bus_message *msg, uint32_t expected, sd_bus_error *error);
int procedure_finish_registration(Procedure *p, sd_bus_message *msg, sd_bus_error *error);
int procedure_cancel(Procedure *p, sd_bus_message *msg, sd_bus_error *error);

/* The battery watch's readings (manager.c forwards them to the active procedure). */
void procedure_battery_sample(Procedure *p, double volts, usec_t now);
void procedure_battery_state(Procedure *p, BatteryState s);

/* procedure-bus.c */
int procedure_bus_register(Manager *m, sd_bus *bus, sd_bus_slot **ret_vtable, sd_bus_slot **ret_enum);
void procedure_bus_emit(Procedure *p);
void procedure_bus_emit_step(Procedure *p);
void procedure_bus_emit_key_event(Procedure *p, const char *event, unsigned slot, unsigned beeps);
void procedure_bus_emit_finished(Procedure *p);
/* One request to the ECU on behalf of the procedure (FetchPasscode's software version);
 * -EBUSY while another is in flight. */
int procedure_send(Procedure *p, const uint8_t *data, size_t n, ProcedureCont cont);
bool procedure_busy(const Procedure *p);
/* An answer that matched no request: maybe the late answer to a request that timed out. */
void procedure_late_answer(Procedure *p, const uint8_t *data, size_t size);
/* procedure-fetch.c: FetchPasscode() after authorization (answers msg when done); the end of
 * one under way (Cancelled, for Cancel and procedure_free()); and the passcode that came
 * while a poll held the ECU, sent once it is free. */
int procedure_fetch_passcode(Procedure *p, sd_bus_message *msg, const PasscodeCredentials *cred,
                             sd_bus_error *error);
void procedure_fetch_abort(Procedure *p);
void procedure_fetch_ready(Procedure *p);
/* Runs the deferred call, if any; called when the ECU's answer is in. */
void procedure_bus_run_deferred(Procedure *p);
