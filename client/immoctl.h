/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the verbs of immoctl share: the exit statuses, the parsed command line, the bus. */

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "util.h"

/* The exit statuses, as --help and immoctl(1) list them. A verb returns one of these,
 * or a negative errno, which main() turns into IMMOCTL_EXIT_FAILURE. */
enum {
        IMMOCTL_EXIT_SUCCESS = 0,
        IMMOCTL_EXIT_FAILURE = 1,     /* anything else that went wrong */
        IMMOCTL_EXIT_USAGE = 2,       /* unknown verb, bad option, bad VIN or passcode format */
        IMMOCTL_EXIT_REFUSED = 3,     /* refused by the car or by immod or the passcode service */
        IMMOCTL_EXIT_UNREACHABLE = 4, /* the ECU, the CAN link or the passcode service did not answer */
};

typedef enum BusTransport {
        BUS_TRANSPORT_SYSTEM,
        BUS_TRANSPORT_SESSION,
        BUS_TRANSPORT_ADDRESS, /* --bus=ADDRESS */
        BUS_TRANSPORT_REMOTE,  /* -H [user@]host: the system bus over SSH */
} BusTransport;

typedef struct Context {
        BusTransport transport;
        const char *bus_arg; /* the address or the host */

        bool json;
        bool no_ask;
        bool no_pager;

        /* vehicle set */
        const char *model;
        unsigned year;
        bool force;

        /* history */
        unsigned limit;

        sd_bus *bus; /* connected on first use, so that usage errors need no bus */
} Context;

/* Connects on the first call; later calls return the same bus. Logs on failure. */
int context_get_bus(Context *c, sd_bus **ret);

/* The verbs: argv[0] is the verb's first word. */
int verb_status(Context *c, int argc, char **argv);
int verb_identify(Context *c, int argc, char **argv);
int verb_vehicle_set(Context *c, int argc, char **argv);
int verb_vehicle_show(Context *c, int argc, char **argv);
int verb_keys(Context *c, int argc, char **argv);
int verb_history(Context *c, int argc, char **argv);
int verb_monitor(Context *c, int argc, char **argv);
