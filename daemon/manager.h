/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Manager object, /org/immod/Immod1, interface org.immod.Immod1.Manager
 * (dbus-api.md): the link and ECU state, the vehicle being worked on, and the methods
 * that identify it and read its keys.
 */

#include "daemon.h"

#define MANAGER_PATH "/org/immod/Immod1"
#define MANAGER_INTERFACE "org.immod.Immod1.Manager"

typedef enum EcuState {
        ECU_STATE_UNKNOWN,     /* not asked yet */
        ECU_STATE_AWAKE,       /* it answered the last request */
        ECU_STATE_ASLEEP,      /* no answer on a working link */
        ECU_STATE_UNREACHABLE, /* no answer and the link is down or failing */
        _ECU_STATE_MAX,
} EcuState;

const char *ecu_state_to_string(EcuState s);

/* Puts the object on d->bus; logs what failed. */
int manager_new(Daemon *d, Manager **ret);
Manager *manager_free(Manager *m);
