/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* immod's D-Bus API as immoctl meets it: connecting, calling, turning errors into
 * sentences and exit statuses, and reading any D-Bus value as JSON. */

#include <jansson.h>
#include <systemd/sd-bus.h>

#include "immoctl.h"

#include "immod-dbus.h"

/* --bus=system|session|user|ADDRESS. -EINVAL for anything else. */
int bus_parse_transport(const char *s, BusTransport *ret_transport, const char **ret_address);

int bus_connect(BusTransport transport, const char *arg, sd_bus **ret);

/* The exit status that a failed call means (IMMOCTL_EXIT_*). */
int bus_error_exit_status(const sd_bus_error *error, int r);

/*
 * Prints "Cannot ACTION: what went wrong: immod's message" and, where there is one, what
 * to do about it; returns the exit status. action is a phrase such as "identify the
 * vehicle".
 */
int bus_log_error(const sd_bus_error *error, int r, const char *action);

/* Calls a Manager method; on failure logs as bus_log_error() does and returns the exit
 * status (> 0), with *ret_reply untouched. */
int bus_call_manager(sd_bus *bus, const char *method, const char *action, sd_bus_message **ret_reply,
                     const char *types, ...);

/* Reads the next complete value of m (a variant, an array, a dictionary ...) as JSON:
 * dictionaries with string keys become objects, NaN becomes null. */
int bus_message_read_json(sd_bus_message *m, json_t **ret);

/* All properties of one interface of an object, as a JSON object. */
int bus_get_all_properties(sd_bus *bus, const char *path, const char *interface, sd_bus_error *error,
                           json_t **ret);
