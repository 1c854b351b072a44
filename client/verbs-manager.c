/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The verbs that read or set the Manager: status, identify, vehicle, keys, history. */
#include <math.h>
#include <stdio.h>
#include <time.h>

#include "bus.h"
#include "immoctl.h"
#include "log.h"
#include "output.h"
#include "vin.h"

/* A human line for the Vehicle dictionary: "Lexus ES 350 2020". */
static void print_vehicle(json_t *v) {
        const char *vin = json_get_string(v, "vin");
        unsigned long long year;
        json_t *check = json_object_get(v, "vin_check_ok");

        if (!vin) {
                output_field("Vehicle", "unknown");
                return;
        }
        output_field("VIN", "%s%s", vin, json_is_false(check) ? " (the check digit is wrong)" : "");
        output_field("Make", "%s", json_get_string(v, "make") ?: "unknown");
        output_field("Model", "%s", json_get_string(v, "model") ?: "unknown");
        if (json_get_uint(v, "year", &year))
                output_field("Year", "%llu", year);
        else
                output_field("Year", "unknown");
        output_field("Profile", "%s", json_get_string(v, "profile") ?: "none (this vehicle is not supported)");
        const char *source = json_get_string(v, "source");
        if (source)
                output_field("Source", "%s",
                             streq(source, "ecu")      ? "read from the ECU"
                             : streq(source, "manual") ? "set by hand"
                                                       : source);
}

static int print_vehicle_json_or_text(Context *c, json_t *v) {
        if (c->json)
                return output_json_line(v);
        print_vehicle(v);
        return 0;
}

static void print_status_procedure(sd_bus *bus, const char *path, json_t *status) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        json_t *p = NULL;
        unsigned long long index = 0, count = 0, percentage;
        int r;

        r = bus_get_all_properties(bus, path, IMMOD_PROCEDURE_INTERFACE, &error, &p);
        if (r < 0) {
                output_field("Procedure", "%s (cannot be read: %s)", path,
                             sd_bus_error_is_set(&error) ? error.message : strerror(-r));
                return;
        }
        if (json_object_set_new(status, "Procedure", p) < 0) {
                json_decref(p);
                return;
        }

        (void) json_get_uint(p, "StepIndex", &index);
        (void) json_get_uint(p, "StepCount", &count);
        output_field("Procedure", "%s, %s, step %llu of %llu (%s)", json_get_string(p, "Kind") ?: "?",
                     json_get_string(p, "State") ?: "?", index, count, json_get_string(p, "Step") ?: "?");
        if (json_get_uint(p, "Percentage", &percentage))
                output_continuation("%llu%% done", percentage);
        const char *prompt = json_get_string(p, "Prompt");
        if (prompt && *prompt)
                output_continuation("%s", prompt);
        output_continuation("\"immoctl attach\" follows it.");
}

int verb_status(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_decrefp) json_t *m = NULL;
        sd_bus *bus;
        int r;

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;
        r = bus_get_all_properties(bus, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, &error, &m);
        if (r < 0)
                return bus_log_error(&error, r, "read immod's status");

        if (c->json) {
                const char *active = json_get_string(m, "ActiveProcedure");
                if (active && !streq(active, "/")) {
                        json_t *p = NULL;
                        if (bus_get_all_properties(bus, active, IMMOD_PROCEDURE_INTERFACE, NULL, &p) >= 0 &&
                            json_object_set_new(m, "Procedure", p) < 0)
                                json_decref(p);
                }
                return output_json_line(m);
        }

        const char *link = json_get_string(m, "Link"), *link_state = json_get_string(m, "LinkState");
        output_field("Link", "%s (%s)", link && *link ? link : "none", link_state ?: "unknown");
        output_field("ECU", "%s", json_get_string(m, "EcuState") ?: "unknown");

        json_t *volts = json_object_get(m, "BatteryVoltage");
        const char *battery_state = json_get_string(m, "BatteryState") ?: "unknown";
        if (json_is_number(volts))
                output_field("Battery", "%.1f V (%s)", json_number_value(volts), battery_state);
        else
                output_field("Battery", "voltage unknown (%s)", battery_state);

        json_t *v = json_object_get(m, "Vehicle");
        const char *vin = json_get_string(v, "vin");
        if (vin) {
                unsigned long long year = 0;
                (void) json_get_uint(v, "year", &year);
                output_field("Vehicle", "%s %s %llu, VIN %s%s", json_get_string(v, "make") ?: "unknown make",
                             json_get_string(v, "model") ?: "unknown model", year, vin,
                             json_is_false(json_object_get(v, "vin_check_ok")) ? " (wrong check digit)" : "");
                const char *source = json_get_string(v, "source");
                output_continuation("profile %s, %s", json_get_string(v, "profile") ?: "none",
                                    source && streq(source, "manual") ? "set by hand" : "read from the ECU");
        } else
                output_field("Vehicle", "unknown");

        json_t *problems = json_object_get(m, "Problems"), *item;
        size_t i;
        if (json_array_size(problems) == 0)
                output_field("Problems", "none");
        json_array_foreach(problems, i, item) {
                const char *id = json_string_value(item) ?: "?";
                const char *advice = problem_advice(id);
                if (i == 0)
                        output_field("Problems", "%s", advice ?: id);
                else
                        output_continuation("%s", advice ?: id);
        }

        const char *active = json_get_string(m, "ActiveProcedure");
        if (active && !streq(active, "/"))
                print_status_procedure(bus, active, m);
        else
                output_field("Procedure", "none");

        const char *server = json_get_string(m, "Server");
        if (server)
                output_field("Server", "%s", server);
        output_field("Version", "immod %s", json_get_string(m, "Version") ?: "?");
        return 0;
}

int verb_identify(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_decrefp) json_t *v = NULL;
        sd_bus *bus;
        int r;

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;

        r = sd_bus_call_method(bus, IMMOD_BUS_NAME, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, "Identify", &error,
                               &reply, NULL);
        if (r < 0) {
                int status = bus_log_error(&error, r, "identify the vehicle");

                /* Without a profile the VIN was still read: show it, it helps "vehicle set". */
                if (sd_bus_error_has_name(&error, IMMOD_ERROR_PREFIX "UnsupportedVehicle") && !c->json) {
                        _cleanup_(json_decrefp) json_t *m = NULL;
                        if (bus_get_all_properties(bus, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, NULL, &m) >=
                                    0 &&
                            json_get_string(json_object_get(m, "Vehicle"), "vin"))
                                print_vehicle(json_object_get(m, "Vehicle"));
                }
                return status;
        }

        r = bus_message_read_json(reply, &v);
        if (r < 0)
                return log_error_errno(r, "Failed to read immod's answer to Identify(): %m");
        return print_vehicle_json_or_text(c, v);
}

int verb_vehicle_show(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_decrefp) json_t *m = NULL;
        sd_bus *bus;
        int r;

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;
        r = bus_get_all_properties(bus, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, &error, &m);
        if (r < 0)
                return bus_log_error(&error, r, "read the vehicle");
        return print_vehicle_json_or_text(c, json_object_get(m, "Vehicle"));
}

int verb_vehicle_set(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *vin = argv[2], *reason;
        unsigned vin_year;
        sd_bus *bus;
        int r;

        /* Say what is wrong before anything goes on the bus. */
        if (vin_check_syntax(vin, &reason) < 0) {
                log_error("Invalid VIN \"%s\": %s", vin, reason);
                return IMMOCTL_EXIT_USAGE;
        }
        if (!vin_check_digit_ok(vin)) {
                if (!c->force) {
                        log_error("The VIN %s has a wrong check digit: position 9 holds '%c', but the other "
                                  "characters give '%c'.",
                                  vin, vin[8], vin_compute_check_digit(vin));
                        log_error("Check the VIN on the car again; use --force only for a VIN that has no check "
                                  "digit.");
                        return IMMOCTL_EXIT_USAGE;
                }
                log_warning("The VIN's check digit is wrong ('%c' expected); --force sets it anyway.",
                            vin_compute_check_digit(vin));
        }
        if (!c->model || c->year == 0) {
                log_error("\"vehicle set\" needs --model and --year (the model year).");
                return IMMOCTL_EXIT_USAGE;
        }
        if (vin_model_year(vin, &vin_year) >= 0 && vin_year != c->year)
                log_warning("The VIN codes the model year %u, not %u.", vin_year, c->year);

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;
        r = bus_call_manager(bus, "SetVehicle", "set the vehicle", &reply, "sa{sv}", vin, 3, "model", "s",
                             c->model, "year", "u", (uint32_t) c->year, "force", "b", (int) c->force);
        if (r != 0)
                return r;

        if (!c->json)
                printf("Vehicle set:\n");
        return verb_vehicle_show(c, argc, argv);
}

int verb_keys(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(json_decrefp) json_t *k = NULL;
        unsigned long long registered = 0, available = 0, max = 0;
        sd_bus *bus;
        int r;

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;
        r = bus_call_manager(bus, "ReadKeyStatus", "read the key slots", &reply, NULL);
        if (r != 0)
                return r;
        r = bus_message_read_json(reply, &k);
        if (r < 0)
                return log_error_errno(r, "Failed to read immod's answer to ReadKeyStatus(): %m");
        if (c->json)
                return output_json_line(k);

        (void) json_get_uint(k, "registered", &registered);
        (void) json_get_uint(k, "available", &available);
        (void) json_get_uint(k, "max", &max);
        output_field("Registered", "%llu key%s", registered, registered == 1 ? "" : "s");
        output_field("Available", "%llu free slot%s", available, available == 1 ? "" : "s");
        output_field("Max", "%llu slots", max);
        return 0;
}

/* The voltage trace of a record in a few words: its range and how long it runs. */
static void print_battery_trace(json_t *trace) {
        double lo = INFINITY, hi = -INFINITY;
        json_int_t last = 0;
        size_t i;
        json_t *p;

        if (!json_is_array(trace) || json_array_size(trace) == 0)
                return;
        json_array_foreach(trace, i, p) {
                json_t *t = json_array_get(p, 0), *a = json_array_get(p, 1), *b = json_array_get(p, 2);
                if (!json_is_integer(t) || !json_is_number(a) || !json_is_number(b))
                        return;
                last = MAX(last, json_integer_value(t));
                lo = MIN(lo, json_number_value(a));
                hi = MAX(hi, json_number_value(b));
        }
        printf(" battery %.2f-%.2f V over %lld s (%zu point%s)", lo, hi, (long long) last, json_array_size(trace),
               json_array_size(trace) == 1 ? "" : "s");
}

/* One audit record on one line: the known keys in a fixed order, then the others. */
static void print_history_record(json_t *rec) {
        static const char *const known[] = { "time", "kind", "vin", "result", "error",
                                             "uid", "technician", "repair_order", "keys_before", "keys_after",
                                             "usec", "created", "id", "version",
                                             "battery_trace" };
        const char *time = json_get_string(rec, "time"), *error = json_get_string(rec, "error");
        unsigned long long usec, before, after, uid;
        char buf[64] = "";

        /* GetHistory gives "time" in µs since the epoch (t) */
        if (!time && (json_get_uint(rec, "time", &usec) || json_get_uint(rec, "usec", &usec))) {
                time_t t = (time_t) (usec / USEC_PER_SEC);
                struct tm tm;
                if (localtime_r(&t, &tm))
                        strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
                time = buf;
        }
        printf("%s %s %s %s", time ?: "-", json_get_string(rec, "kind") ?: "-", json_get_string(rec, "vin") ?: "-",
               json_get_string(rec, "result") ?: "-");
        if (error && *error)
                printf(" (%s)", error);
        if (json_get_uint(rec, "keys_before", &before) && json_get_uint(rec, "keys_after", &after))
                printf(" keys %llu->%llu", before, after);
        const char *tech = json_get_string(rec, "technician");
        if (tech && *tech)
                printf(" by %s", tech);
        if (json_get_uint(rec, "uid", &uid))
                printf(" (uid %llu)", uid);
        const char *ro = json_get_string(rec, "repair_order");
        if (ro && *ro)
                printf(" RO %s", ro);
        print_battery_trace(json_object_get(rec, "battery_trace"));

        const char *key;
        json_t *value;
        json_object_foreach(rec, key, value) {
                bool skip = false;
                for (size_t i = 0; i < ELEMENTSOF(known); i++)
                        if (streq(known[i], key))
                                skip = true;
                if (skip)
                        continue;
                _cleanup_free_ char *text = output_value_to_text(value);
                printf(" %s=%s", key, text ?: "?");
        }
        fputc('\n', stdout);
}

int verb_history(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(json_decrefp) json_t *records = NULL;
        json_t *rec;
        size_t i;
        sd_bus *bus;
        int r;

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;
        r = sd_bus_call_method(bus, IMMOD_BUS_NAME, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, "GetHistory",
                               &error, &reply, "u", (uint32_t) c->limit);
        if (r < 0) {
                if (sd_bus_error_has_name(&error, SD_BUS_ERROR_UNKNOWN_METHOD)) {
                        log_error("Cannot read the history: this immod does not support history yet.");
                        return IMMOCTL_EXIT_FAILURE;
                }
                return bus_log_error(&error, r, "read the history");
        }
        r = bus_message_read_json(reply, &records);
        if (r < 0)
                return log_error_errno(r, "Failed to read immod's answer to GetHistory(): %m");

        if (!c->json && json_array_size(records) == 0)
                printf("No procedure has ended yet.\n");
        json_array_foreach(records, i, rec) {
                if (c->json) {
                        r = output_json_line(rec);
                        if (r < 0)
                                return r;
                } else
                        print_history_record(rec);
        }
        return 0;
}
