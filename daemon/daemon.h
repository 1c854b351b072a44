/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The Daemon: what immod holds for its whole life. The configuration and the vehicle
 * profiles, the event loop, the UDS link to the immobilizer ECU, the bus connection and
 * the Manager object on it.
 */

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "passcode-client.h"
#include "profile.h"
#include "uds-link.h"

#include "immod-dbus.h"

typedef struct Manager Manager;

typedef struct Daemon {
        ImmodConfig config;
        bool config_loaded;
        ProfileSet *profiles;
        char link_uri[128];

        sd_event *event;
        UdsLink *link;
        sd_bus *bus;
        Manager *manager;
        PasscodeClient *passcode; /* NULL when no passcode service is configured */
} Daemon;

/*
 * Loads the configuration (config_path NULL: the installed one) and the profiles, then
 * sets up in this order: event loop, watchdog, exit on SIGTERM/SIGINT, the link, the bus
 * (bus: "system", "session" or a D-Bus address) with the Manager on it and its name.
 * Logs what failed.
 */
int daemon_new(const char *config_path, const char *bus, Daemon **ret);
Daemon *daemon_free(Daemon *d);
static inline void daemon_freep(Daemon **d) {
        daemon_free(*d);
}

/* Tells systemd we are ready, runs the loop until a signal ends it, then says goodbye. */
int daemon_run(Daemon *d);

/* STATUS= for systemctl status; best effort. */
void daemon_notify_status(Daemon *d, const char *status);

/* Whether the argument of --bus is one daemon_new() accepts. */
bool daemon_bus_spec_valid(const char *bus);
