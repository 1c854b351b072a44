/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Manager object, /org/immod/Immod1, interface org.immod.Immod1.Manager
 * (dbus-api.md): the link and ECU state, the vehicle being worked on, and the methods
 * that identify it and read its keys.
 */

#include "daemon.h"

#define MANAGER_PATH IMMOD_MANAGER_PATH
#define MANAGER_INTERFACE IMMOD_MANAGER_INTERFACE

typedef enum EcuState {
        ECU_STATE_UNKNOWN,     /* not asked yet */
        ECU_STATE_AWAKE,       /* it answered the last request */
        ECU_STATE_ASLEEP,      /* no answer on a working link */
        ECU_STATE_UNREACHABLE, /* no answer and the link is down or failing */
        _ECU_STATE_MAX,
} EcuState;

const char *ecu_state_to_string(EcuState s);

typedef struct Procedure Procedure;
typedef struct BatteryWatch BatteryWatch;

/* Puts the object on d->bus; logs what failed. */
int manager_new(Daemon *d, Manager **ret);
Manager *manager_free(Manager *m);

/* Finds journals of procedures that were running when immod stopped and resumes them
 * (procedure_resume()); also picks the next procedure id. */
int manager_resume(Manager *m);

/* For the procedures. */
Daemon *manager_daemon(Manager *m);
void manager_set_ecu_state(Manager *m, EcuState s);
/* Root or the configured group, on the sender's real credentials; sets NotAuthorized. The
 * caller's uid in *ret_uid (may be NULL) when allowed. */
int manager_authorize(Manager *m, sd_bus_message *msg, uid_t *ret_uid, sd_bus_error *error);
Procedure *manager_find_procedure(Manager *m, uint64_t id);
size_t manager_n_procedures(Manager *m);
Procedure *manager_get_procedure(Manager *m, size_t i);
/* Reads the credentials argument (a{sv}: user s, password s) and checks it; the strings
 * point into msg. Sets InvalidArgs. */
int manager_read_credentials(sd_bus_message *msg, PasscodeCredentials *ret, sd_bus_error *error);
/* A procedure ended: ActiveProcedure and Problems follow. */
void manager_procedure_ended(Manager *m, Procedure *p);
/* The battery watch (battery-source.h); never NULL once manager_new() succeeded. */
BatteryWatch *manager_battery(Manager *m);
