/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the verbs of immoctl share: the exit statuses, the parsed command line, the bus. */

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "input.h"
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

        /* guided procedures: the answers --no-ask needs, and what goes into the records */
        const char *repair_order, *customer, *technician;
        bool agree_erase_all;  /* the reset's warnings */
        bool agree_erase_keys; /* the erasure's warnings */
        bool have_keys_present;
        unsigned keys_present;
        bool have_new_keys;
        unsigned new_keys;
        const char *passcodes[2]; /* --passcode, used in order */
        unsigned n_passcodes;
        bool fetch;

        /* approval request */
        const char *approvers[8];
        unsigned n_approvers;
        const char *attestations; /* comma-separated, or "all" */
        const char *dealer_code;

        /* the passcode service login: the password is held in memory only, for this run */
        const char *user;
        char *user_buf;
        const char *password_file;
        char *password;

        Input input; /* stdin, for answers typed while a procedure is followed */

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
int verb_reset(Context *c, int argc, char **argv);
int verb_add_key(Context *c, int argc, char **argv);
int verb_erase_keys(Context *c, int argc, char **argv);
int verb_attach(Context *c, int argc, char **argv);
int verb_cancel(Context *c, int argc, char **argv);
int verb_approval_request(Context *c, int argc, char **argv);
int verb_approval_status(Context *c, int argc, char **argv);
