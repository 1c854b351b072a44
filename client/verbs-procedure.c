/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The guided procedures (reset, add-key, erase-keys) and the verbs that take one up again
 * (attach) or end it (cancel). */
#include <stdio.h>
#include <unistd.h>

#include "bus.h"
#include "guide.h"
#include "immoctl.h"
#include "log.h"
#include "output.h"
#include "parse-util.h"

#define PROCEDURE_PATH_PREFIX IMMOD_MANAGER_PATH "/procedure/"
#define RECORD_TEXT_MAX 128 /* repair order, customer name, technician: immod's own limit */

static void print_vehicle_line(json_t *v) {
        unsigned long long year = 0;

        (void) json_get_uint(v, "year", &year);
        printf("Vehicle: %s %s %llu, VIN %s\n", json_get_string(v, "make") ?: "?", json_get_string(v, "model") ?: "?",
               year, json_get_string(v, "vin") ?: "?");
}

/* The vehicle immod works on; an Identify when none is known yet. */
static int ensure_vehicle(Context *c, sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *m = NULL, *v = NULL;
        int r;

        r = bus_get_all_properties(bus, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, &error, &m);
        if (r < 0)
                return bus_log_error(&error, r, "read immod's status");
        json_t *vehicle = json_object_get(m, "Vehicle");
        if (json_get_string(vehicle, "vin")) {
                if (!c->json)
                        print_vehicle_line(vehicle);
                return 0;
        }

        if (!c->json)
                printf("Reading the VIN from the ECU ...\n");
        r = bus_call_manager(bus, "Identify", "identify the vehicle", &reply, NULL);
        if (r != 0)
                return r;
        r = bus_message_read_json(reply, &v);
        if (r < 0)
                return log_error_errno(r, "Failed to read immod's answer to Identify(): %m");
        if (!c->json)
                print_vehicle_line(v);
        return 0;
}

/* Asks for a record field that was not given as an option (nothing with --no-ask). */
static int ask_record_field(Context *c, const char *question, const char **field, char *buf, size_t size) {
        int r;

        if (*field || c->no_ask || !isatty(c->input.fd))
                return 0;
        printf("%s", question);
        fflush(stdout);
        for (;;) {
                r = input_take_line(&c->input, buf, size);
                if (r == 1)
                        break;
                if (r == -E2BIG) {
                        log_error("That is longer than %d characters.", RECORD_TEXT_MAX);
                        return IMMOCTL_EXIT_USAGE;
                }
                if (r < 0)
                        return IMMOCTL_EXIT_USAGE;
                r = input_fill(&c->input);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the answer: %m");
                if (c->input.eof && c->input.len == 0)
                        return 0;
        }
        if (strlen(buf) > RECORD_TEXT_MAX) {
                log_error("That is longer than %d characters.", RECORD_TEXT_MAX);
                return IMMOCTL_EXIT_USAGE;
        }
        if (*buf)
                *field = buf;
        return 0;
}

static int start_and_guide(Context *c, const char *kind) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        char ro[RECORD_TEXT_MAX + 2], customer[RECORD_TEXT_MAX + 2];
        const char *path;
        sd_bus *bus;
        int r;

        if (c->fetch && c->no_ask && (!c->repair_order || !c->customer)) {
                log_error("With --no-ask, --fetch needs --repair-order and --customer: the passcode service records them "
                          "with every passcode.");
                return IMMOCTL_EXIT_USAGE;
        }

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;
        r = ensure_vehicle(c, bus);
        if (r != 0)
                return r;

        /* For the audit record and the passcode service. */
        r = ask_record_field(c, "Repair order (Enter for none): ", &c->repair_order, ro, sizeof(ro));
        if (r == 0)
                r = ask_record_field(c, "Customer's last name (Enter for none): ", &c->customer, customer,
                                     sizeof(customer));
        if (r != 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &m, IMMOD_BUS_NAME, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE,
                                           "StartProcedure");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", kind);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && c->repair_order)
                r = sd_bus_message_append(m, "{sv}", "repair_order", "s", c->repair_order);
        if (r >= 0 && c->customer)
                r = sd_bus_message_append(m, "{sv}", "customer_last_name", "s", c->customer);
        if (r >= 0 && c->technician)
                r = sd_bus_message_append(m, "{sv}", "technician", "s", c->technician);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return log_error_errno(r, "Failed to build the StartProcedure() call: %m");

        r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r < 0)
                return bus_log_error(&error, r, "start the procedure");
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return log_error_errno(r, "Failed to read immod's answer to StartProcedure(): %m");
        return guide_procedure(c, path);
}

int verb_reset(Context *c, int argc, char **argv) {
        return start_and_guide(c, "immobilizer-reset");
}

int verb_add_key(Context *c, int argc, char **argv) {
        return start_and_guide(c, "key-registration");
}

int verb_erase_keys(Context *c, int argc, char **argv) {
        return start_and_guide(c, "key-erasure");
}

/*
 * The procedure the verb's argument names: a number ("3"), a path, or nothing for the
 * active one. Returns 0 with the bus and *ret (a new string), or an exit status.
 */
static int resolve_procedure(Context *c, int argc, char **argv, sd_bus **ret_bus, char **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *path, *arg = argc > 1 ? argv[1] : NULL;
        _cleanup_free_ char *p = NULL;
        unsigned n;
        int r;

        /* A usage error is said before anything goes on the bus. */
        if (arg && parse_unsigned_range(arg, 1, UINT32_MAX, &n) >= 0) {
                if (asprintf(&p, PROCEDURE_PATH_PREFIX "%u", n) < 0)
                        return log_oom();
        } else if (arg) {
                const char *tail = startswith(arg, PROCEDURE_PATH_PREFIX);
                if (!tail || parse_unsigned_range(tail, 1, UINT32_MAX, &n) < 0) {
                        log_error("\"%s\" names no procedure: give its number (as \"immoctl status\" shows) or "
                                  "its path, " PROCEDURE_PATH_PREFIX "N.",
                                  arg);
                        return IMMOCTL_EXIT_USAGE;
                }
                p = strdup(arg);
                if (!p)
                        return log_oom();
        }

        r = context_get_bus(c, ret_bus);
        if (r < 0)
                return IMMOCTL_EXIT_FAILURE;
        if (!p) {
                r = sd_bus_get_property(*ret_bus, IMMOD_BUS_NAME, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE,
                                        "ActiveProcedure", &error, &reply, "o");
                if (r < 0)
                        return bus_log_error(&error, r, "find the running procedure");
                r = sd_bus_message_read(reply, "o", &path); /* positioned inside the variant */
                if (r < 0)
                        return log_error_errno(r, "Failed to read ActiveProcedure: %m");
                if (streq(path, "/")) {
                        log_error("No procedure is running. \"immoctl history\" lists the ones that ended.");
                        return IMMOCTL_EXIT_FAILURE;
                }
                p = strdup(path);
                if (!p)
                        return log_oom();
        }
        *ret = TAKE_PTR(p);
        return 0;
}

int verb_attach(Context *c, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;
        sd_bus *bus;
        int r;

        r = resolve_procedure(c, argc, argv, &bus, &path);
        if (r != 0)
                return r;
        return guide_procedure(c, path);
}

int verb_cancel(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        sd_bus *bus;
        int r;

        r = resolve_procedure(c, argc, argv, &bus, &path);
        if (r != 0)
                return r;
        r = sd_bus_call_method(bus, IMMOD_BUS_NAME, path, IMMOD_PROCEDURE_INTERFACE, "Cancel", &error, NULL, NULL);
        if (r < 0)
                return bus_log_error(&error, r, "cancel the procedure");
        if (c->json) {
                _cleanup_(json_decrefp) json_t *j = json_pack("{s:s, s:s}", "procedure", path, "state", "cancelled");
                return j ? output_json_line(j) : log_oom();
        }
        printf("Cancelled %s.\n", path);
        return 0;
}
