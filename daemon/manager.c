/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>

#include "bus-error.h"
#include "event-util.h"
#include "fileio.h"
#include "parse-util.h"
#include "log.h"
#include "audit.h"
#include "battery-source.h"
#include "journal.h"
#include "manager-internal.h"
#include "bus-args.h"
#include "procedure.h"
#include "vin.h"

/* How often the link state is looked at: the UdsLink keeps the transport's link state
 * handler for itself, so the Manager reads the state rather than being told. */
/* Bound on strings from callers (VIN, option values), before any closer check. */
#define STRING_ARG_MAX 64U
/* While the ECU sleeps and no procedure runs, how often 3E 00 asks whether it woke (the
 * person at the car pressed the courtesy switch). A sleeping ECU ignores the frames, so
 * this does not keep it awake; once it answers, immod goes quiet again. */
#define WAKE_PROBE_INTERVAL_USEC (2 * USEC_PER_SEC)

static const char *const problem_names[] = {
        "link-down", "ecu-asleep", "ecu-unreachable", "no-vehicle", "unsupported-vehicle", "procedure-running",
        "server-unreachable", "battery-low", "battery-critical"
};

static const char *const ecu_state_table[_ECU_STATE_MAX] = {
        [ECU_STATE_UNKNOWN] = "unknown",
        [ECU_STATE_AWAKE] = "awake",
        [ECU_STATE_ASLEEP] = "asleep",
        [ECU_STATE_UNREACHABLE] = "unreachable",
};

DEFINE_STRING_TABLE_TO_STRING(ecu_state, EcuState, _ECU_STATE_MAX)

bool link_is_down(LinkState s) {
        return s == LINK_STATE_DOWN || s == LINK_STATE_BUS_OFF;
}

static unsigned manager_compute_problems(const Manager *m) {
        unsigned p = 0;

        if (link_is_down(m->link_state))
                p |= PROBLEM_LINK_DOWN;
        if (m->ecu_state == ECU_STATE_ASLEEP)
                p |= PROBLEM_ECU_ASLEEP;
        if (m->ecu_state == ECU_STATE_UNREACHABLE)
                p |= PROBLEM_ECU_UNREACHABLE;
        if (!m->vehicle.known)
                p |= PROBLEM_NO_VEHICLE;
        else if (!m->vehicle.profile)
                p |= PROBLEM_UNSUPPORTED_VEHICLE;
        if (m->active)
                p |= PROBLEM_PROCEDURE_RUNNING;
        /* A problem for fetching passcodes only: typing them in still works. */
        if (passcode_client_state(m->daemon->passcode) == SERVER_STATE_UNREACHABLE)
                p |= PROBLEM_SERVER_UNREACHABLE;
        if (m->battery) {
                BatteryState b = battery_monitor_state(battery_watch_monitor(m->battery));
                if (b == BATTERY_STATE_LOW)
                        p |= PROBLEM_BATTERY_LOW;
                else if (b == BATTERY_STATE_CRITICAL)
                        p |= PROBLEM_BATTERY_CRITICAL;
        }
        return p;
}

/* Announces the named properties (NULL-terminated, at most 4) and Problems if it changed. */
void manager_emit(Manager *m, const char *a, const char *b) {
        const char *names[4] = {};
        size_t n = 0;
        unsigned problems = manager_compute_problems(m);
        int r;

        if (a)
                names[n++] = a;
        if (b)
                names[n++] = b;
        if (problems != m->problems) {
                m->problems = problems;
                names[n++] = "Problems";
        }
        if (n == 0)
                return;

        r = sd_bus_emit_properties_changed_strv(m->daemon->bus, MANAGER_PATH, MANAGER_INTERFACE, (char **) names);
        if (r < 0)
                log_warning_errno(r, "Failed to announce changed properties: %m");
}

static void on_wake_probe_answer(UdsClient *c, const UdsResponse *resp, void *userdata) {
        WakeProbe *w = userdata;
        Manager *m = w->manager;

        free(w);
        if (!m)
                return;
        m->wake_probe = NULL;
        /* any answer, even a refusal, means it woke; no answer: still asleep */
        if (resp->error == 0 && m->ecu_state == ECU_STATE_ASLEEP && !m->active)
                manager_set_ecu_state(m, ECU_STATE_AWAKE);
}

static int on_wake_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        static const uint8_t probe[2] = { UDS_TESTER_PRESENT, 0x00 };
        Manager *m = userdata;
        int r;

        if (m->ecu_state != ECU_STATE_ASLEEP)
                return 0;
        /* a running procedure probes by itself */
        if (!m->active && !m->wake_probe && !link_is_down(m->link_state)) {
                WakeProbe *w = calloc(1, sizeof(*w));
                if (w) {
                        w->manager = m;
                        r = uds_link_request(m->daemon->link, probe, sizeof(probe), on_wake_probe_answer, w);
                        if (r < 0) {
                                log_debug_errno(r, "Cannot send the wake probe: %m");
                                free(w);
                        } else
                                m->wake_probe = w;
                }
        }
        r = event_timer_arm(m->daemon->event, &m->wake_timer, usec + WAKE_PROBE_INTERVAL_USEC, 0, on_wake_timer, m,
                            "ecu-wake-probe");
        if (r < 0)
                log_warning_errno(r, "Cannot re-arm the wake probe: %m");
        return 0;
}

/* Asleep: ask now and then whether the ECU woke, so that EcuState and Problems follow the
 * courtesy switch without waiting for the next method call. */
static void manager_arm_wake_probe(Manager *m, bool on) {
        int r;

        if (!on) {
                (void) sd_event_source_set_enabled(m->wake_timer, SD_EVENT_OFF);
                return;
        }
        r = event_timer_arm(m->daemon->event, &m->wake_timer, event_now(m->daemon->event) + WAKE_PROBE_INTERVAL_USEC,
                            0, on_wake_timer, m, "ecu-wake-probe");
        if (r < 0)
                log_warning_errno(r, "Cannot arm the wake probe: %m");
}

void manager_set_ecu_state(Manager *m, EcuState s) {
        if (m->ecu_state == s)
                return;
        log_info("ECU: %s -> %s.", ecu_state_to_string(m->ecu_state), ecu_state_to_string(s));
        m->ecu_state = s;
        manager_arm_wake_probe(m, s == ECU_STATE_ASLEEP);
        manager_emit(m, "EcuState", NULL);
}

/* Takes the transport's link state; announces only real changes. */
void manager_update_link_state(Manager *m) {
        LinkState s = transport_get_link_state(uds_link_transport(m->daemon->link));
        char status[256];

        if (s == m->link_state)
                return;
        log_info("Link %s: %s -> %s.", m->daemon->link_uri, link_state_to_string(m->link_state),
                 link_state_to_string(s));
        bool was_down = link_is_down(m->link_state);
        m->link_state = s;

        /* Without a link nobody can reach the ECU; once it is back, what the ECU does is
         * unknown until it answers. */
        EcuState e = m->ecu_state;
        if (link_is_down(s))
                e = ECU_STATE_UNREACHABLE;
        else if (was_down && e == ECU_STATE_UNREACHABLE)
                e = ECU_STATE_UNKNOWN;
        if (e != m->ecu_state) {
                m->ecu_state = e;
                manager_emit(m, "LinkState", "EcuState");
        } else
                manager_emit(m, "LinkState", NULL);

        snprintf(status, sizeof(status), "Link %s is %s.", m->daemon->link_uri, link_state_to_string(s));
        daemon_notify_status(m->daemon, status);
}

static void on_link_state(UdsLink *l, LinkState state, void *userdata) {
        manager_update_link_state(userdata);
}

/* 1 when uid is root or in the group (primary or supplementary, from the user database),
 * 0 when not, negative errno when the database could not be read. */
static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", IMMOD_VERSION);
}

static int property_get_link(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->daemon->link_uri);
}

static int property_get_link_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", link_state_to_string(m->link_state));
}

static int property_get_ecu_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", ecu_state_to_string(m->ecu_state));
}

static int property_get_battery_voltage(sd_bus *bus, const char *path, const char *interface, const char *property,
                                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "d", battery_monitor_voltage(battery_watch_monitor(m->battery)));
}

static int property_get_battery_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(
                reply, "s", battery_state_to_string(battery_monitor_state(battery_watch_monitor(m->battery))));
}

static int property_get_vehicle(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return append_vehicle(reply, &m->vehicle);
}

static int property_get_problems(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        unsigned p = manager_compute_problems(m);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(problem_names); i++)
                if (p & (1U << i)) {
                        r = sd_bus_message_append(reply, "s", problem_names[i]);
                        if (r < 0)
                                return r;
                }
        return sd_bus_message_close_container(reply);
}

static int property_get_active_procedure(sd_bus *bus, const char *path, const char *interface, const char *property,
                                         sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "o", m->active ? procedure_view(m->active)->path : "/");
}

/* Procedures */

Daemon *manager_daemon(Manager *m) {
        return m->daemon;
}

Procedure *manager_find_procedure(Manager *m, uint64_t id) {
        for (size_t i = 0; i < m->n_procedures; i++)
                if (procedure_view(m->procedures[i])->id == id)
                        return m->procedures[i];
        return NULL;
}

size_t manager_n_procedures(Manager *m) {
        return m->n_procedures;
}

Procedure *manager_get_procedure(Manager *m, size_t i) {
        return i < m->n_procedures ? m->procedures[i] : NULL;
}

/* Ended procedures stay on the bus for the front ends that follow them, up to a bound: the
 * oldest ended one goes first (its audit record stays). */
#define PROCEDURES_KEPT 32U

static int manager_add_procedure(Manager *m, Procedure *p) {
        Procedure **l;

        for (size_t i = 0; m->n_procedures >= PROCEDURES_KEPT && i < m->n_procedures;)
                if (m->procedures[i] != m->active && !procedure_is_active(m->procedures[i])) {
                        procedure_free(m->procedures[i]);
                        memmove(m->procedures + i, m->procedures + i + 1,
                                (m->n_procedures - i - 1) * sizeof(Procedure *));
                        m->n_procedures--;
                } else
                        i++;
        l = reallocarray(m->procedures, m->n_procedures + 1, sizeof(Procedure *));
        if (!l)
                return -ENOMEM;
        m->procedures = l;
        m->procedures[m->n_procedures++] = p;
        return 0;
}

/* The last procedure id given out, kept in state_dir/last-id so that ids never collide,
 * whatever became of the audit log and the journals. */
#define LAST_ID_FILE "last-id"

static int read_last_id(const char *dir, uint64_t *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size;
        int r;

        if (asprintf(&path, "%s/" LAST_ID_FILE, dir) < 0)
                return -ENOMEM;
        r = read_file_bounded(path, 32, &text, &size);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        if (r < 0)
                return r;
        unsigned long id;
        text[strcspn(text, "\n")] = 0;
        r = parse_uint_range(text, 1, INT64_MAX, &id);
        if (r < 0) {
                log_warning("%s: not a procedure id (\"%.20s\"); ignored.", path, text);
                return r;
        }
        *ret = id;
        return 0;
}

static int write_last_id(const char *dir, uint64_t id) {
        _cleanup_free_ char *path = NULL;
        char text[32];

        if (asprintf(&path, "%s/" LAST_ID_FILE, dir) < 0)
                return -ENOMEM;
        snprintf(text, sizeof(text), "%" PRIu64 "\n", id);
        return write_file_atomic(path, text, strlen(text), 0644);
}

/* A late answer belongs to the running procedure, if to anyone. */
static void on_unexpected_answer(UdsLink *l, const uint8_t *data, size_t size, void *userdata) {
        Manager *m = userdata;

        if (m->active)
                procedure_late_answer(m->active, data, size);
}

void manager_procedure_ended(Manager *m, Procedure *p) {
        if (m->active != p)
                return;
        m->active = NULL;
        battery_watch_set_active(m->battery, false);
        manager_emit(m, "ActiveProcedure", NULL);
}

typedef struct ProcedureOptions {
        const char *repair_order, *customer, *technician;
} ProcedureOptions;

static int read_procedure_option(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error) {
        ProcedureOptions *o = userdata;

        if (streq(key, "repair_order"))
                return read_string_option(msg, key, &o->repair_order, error);
        if (streq(key, "customer_last_name"))
                return read_string_option(msg, key, &o->customer, error);
        if (streq(key, "technician"))
                return read_string_option(msg, key, &o->technician, error);
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                 "Unknown option; StartProcedure() takes repair_order, "
                                 "customer_last_name and technician (all s).");
}

static int method_start_procedure(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        ProcedureOptions o = {};
        const char *kind_name;
        ProcedureKind kind;
        Procedure *p;
        uid_t uid = 0;
        int r;

        r = sd_bus_message_read(msg, "s", &kind_name);
        if (r < 0)
                return r;
        r = read_dict(msg, read_procedure_option, &o, error);
        if (r < 0)
                return r;

        if (procedure_kind_from_string(kind_name, &kind) < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown procedure kind; immobilizer-reset, key-registration or key-erasure "
                                         "expected.");

        /* the uid the authorization judged is the Owner: the bus is asked once */
        r = manager_authorize(m, msg, &uid, error);
        if (r < 0)
                return r;

        if (m->active)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "Procedure %s is running; finish or cancel it first.",
                                         procedure_view(m->active)->path);
        if (!m->vehicle.known)
                return sd_bus_error_setf(error, IMMOD_ERROR_NO_VEHICLE,
                                         "No vehicle is identified; call Identify or SetVehicle first.");
        if (!m->vehicle.profile)
                return sd_bus_error_setf(error, IMMOD_ERROR_UNSUPPORTED_VEHICLE,
                                         "No vehicle profile covers this vehicle.");
        manager_update_link_state(m);
        if (link_is_down(m->link_state))
                return sd_bus_error_setf(error, IMMOD_ERROR_LINK_DOWN, "The CAN link %s is %s.", m->daemon->link_uri,
                                         link_state_to_string(m->link_state));

        r = write_last_id(m->daemon->config.state_dir, m->next_id);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_IO_ERROR,
                                         "Cannot record the procedure id in %s: %s; nothing was started.",
                                         m->daemon->config.state_dir, strerror(-r));
        r = procedure_start(m, m->next_id, kind, m->vehicle.vin, m->vehicle.profile, (uint32_t) uid, o.technician,
                            o.repair_order, msg, &p);
        if (r < 0)
                return sd_bus_error_setf(error, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot start the procedure: %s.",
                                         strerror(-r));
        if (o.customer && !(procedure_view(p)->customer_last_name = strdup(o.customer))) {
                procedure_free(p);
                return -ENOMEM;
        }
        r = manager_add_procedure(m, p);
        if (r < 0) {
                procedure_free(p);
                return r;
        }
        m->next_id++;
        log_info("Procedure %" PRIu64 " (%s) started by uid %u.", procedure_view(p)->id, kind_name, (unsigned) uid);
        if (procedure_is_active(p)) {
                m->active = p;
                battery_watch_set_active(m->battery, true);
                manager_emit(m, "ActiveProcedure", NULL);
        }
        return 1; /* answered when the ECU has */
}

static int method_list_procedures(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = manager_authorize(m, msg, NULL, error);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "o");
        if (r < 0)
                return r;
        for (size_t i = m->n_procedures; i > 0; i--) {
                r = sd_bus_message_append(reply, "o", procedure_view(m->procedures[i - 1])->path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

#define RESUME_AUDIT_RECORDS 64U

int manager_resume(Manager *m) {
        const char *dir = m->daemon->config.state_dir;
        JournalRecord *records = NULL;
        AuditRecord *audit = NULL;
        size_t n = 0, n_audit = 0;
        uint64_t max_id = 0, last_id = 0;
        int r;

        /* a journal whose procedure was audited is among the newest records */
        r = audit_read(dir, RESUME_AUDIT_RECORDS, &audit, &n_audit);
        if (r < 0)
                log_warning_errno(r, "Failed to read the audit log: %m");
        for (size_t i = 0; i < n_audit; i++)
                max_id = MAX(max_id, audit[i].id);
        r = read_last_id(dir, &last_id);
        if (r < 0)
                log_warning_errno(r, "Failed to read the last procedure id: %m");
        max_id = MAX(max_id, last_id);

        r = journal_load_all(dir, &records, &n);
        if (r < 0) {
                audit_records_free(audit, n_audit);
                return log_error_errno(r, "Failed to load the journal from %s: %m", dir);
        }
        for (size_t i = 0; i < n; i++) {
                JournalRecord *j = &records[i];
                bool audited = false;
                Procedure *p;

                max_id = MAX(max_id, j->id);
                for (size_t k = 0; k < n_audit; k++)
                        if (audit[k].id == j->id)
                                audited = true;
                if (audited || (j->state != JOURNAL_STATE_RUNNING && j->state != JOURNAL_STATE_WAITING)) {
                        log_info("Journal of procedure %" PRIu64 " is already audited; removing it.", j->id);
                        (void) journal_remove(dir, j->id);
                        continue;
                }
                const VehicleProfile *profile = profile_set_find(m->daemon->profiles, j->profile);
                if (!profile) {
                        log_error("Journal of procedure %" PRIu64 " names the unknown profile %s; left in place.", j->id,
                                  j->profile);
                        continue;
                }
                r = procedure_resume(m, j, profile, &p);
                if (r >= 0) {
                        r = manager_add_procedure(m, p);
                        if (r < 0)
                                procedure_free(p);
                }
                if (r < 0) {
                        log_error_errno(r, "Failed to resume procedure %" PRIu64 ": %m", j->id);
                        continue;
                }
                /* on the bus first, then announced, then what it reads back changes it */
                if (procedure_is_active(p) && !m->active) {
                        m->active = p;
                        battery_watch_set_active(m->battery, true);
                        manager_emit(m, "ActiveProcedure", NULL);
                }
                procedure_resume_begin(p);
        }
        m->next_id = max_id + 1;
        journal_records_free(records, n);
        audit_records_free(audit, n_audit);
        return 0;
}

static int property_get_server(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", server_state_to_string(passcode_client_state(m->daemon->passcode)));
}

static void on_server_state(PasscodeClient *c, ServerState s, void *userdata) {
        manager_emit(userdata, "Server", NULL);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),

        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Link", "s", property_get_link, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LinkState", "s", property_get_link_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("EcuState", "s", property_get_ecu_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BatteryVoltage", "d", property_get_battery_voltage, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BatteryState", "s", property_get_battery_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Vehicle", "a{sv}", property_get_vehicle, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Problems", "as", property_get_problems, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ActiveProcedure", "o", property_get_active_procedure, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Server", "s", property_get_server, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),

        SD_BUS_METHOD_WITH_ARGS("Identify",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a{sv}", vehicle),
                                method_identify,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetVehicle",
                                SD_BUS_ARGS("s", vin, "a{sv}", options),
                                SD_BUS_NO_RESULT,
                                method_set_vehicle,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReadKeyStatus",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a{sv}", status),
                                method_read_key_status,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("StartProcedure",
                                SD_BUS_ARGS("s", kind, "a{sv}", options),
                                SD_BUS_RESULT("o", procedure),
                                method_start_procedure,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListProcedures",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("ao", procedures),
                                method_list_procedures,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetHistory",
                                SD_BUS_ARGS("u", limit),
                                SD_BUS_RESULT("aa{sv}", records),
                                method_get_history,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RequestApproval",
                                SD_BUS_ARGS("a{sv}", request, "a{sv}", credentials),
                                SD_BUS_RESULT("a{sv}", result),
                                method_request_approval,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("GetApproval",
                                SD_BUS_ARGS("s", vin, "a{sv}", credentials),
                                SD_BUS_RESULT("a{sv}", result),
                                method_get_approval,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),

        SD_BUS_VTABLE_END,
};

BatteryWatch *manager_battery(Manager *m) {
        return m->battery;
}

static void on_battery_sample(BatteryWatch *w, double volts, usec_t now, void *userdata) {
        Manager *m = userdata;
        if (m->active)
                procedure_battery_sample(m->active, volts, now);
}

static void on_battery_notify(BatteryWatch *w, void *userdata) {
        Manager *m = userdata;
        if (m->active)
                procedure_battery_state(m->active, battery_monitor_state(battery_watch_monitor(w)));
        manager_emit(m, "BatteryVoltage", "BatteryState");
}

int manager_new(Daemon *d, Manager **ret) {
        Manager *m;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return log_error_errno(-ENOMEM, "Out of memory.");
        m->daemon = d;
        m->reference = profile_set_get(d->profiles, 0);
        m->link_state = transport_get_link_state(uds_link_transport(d->link));
        r = battery_watch_new(d->event, d->link, &d->config, m->reference, &m->battery);
        if (r < 0) {
                free(m);
                return r;
        }
        battery_watch_set_handlers(m->battery,
                                   &(BatteryWatchHandlers) { .sample = on_battery_sample, .notify = on_battery_notify },
                                   m);
        m->problems = manager_compute_problems(m);

        /* the transport tells when the link changes: nothing to poll */
        uds_link_set_link_state_handler(d->link, on_link_state, m);
        uds_link_set_unexpected_handler(d->link, on_unexpected_answer, m);
        if (d->passcode)
                passcode_client_set_state_handler(d->passcode, on_server_state, m);

        r = sd_bus_add_object_vtable(d->bus, &m->slot, MANAGER_PATH, MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0) {
                log_error_errno(r, "Failed to add the Manager object: %m");
                goto fail;
        }
        r = procedure_bus_register(m, d->bus, &m->procedure_slot, &m->enumerator_slot);
        if (r < 0)
                goto fail;
        m->next_id = 1;

        *ret = m;
        return 0;
fail:
        manager_free(m);
        return r;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        uds_link_set_link_state_handler(m->daemon->link, NULL, NULL);
        uds_link_set_unexpected_handler(m->daemon->link, NULL, NULL);
        if (m->daemon->passcode)
                passcode_client_set_state_handler(m->daemon->passcode, NULL, NULL);
        sd_bus_slot_unref(m->slot);
        sd_bus_slot_unref(m->procedure_slot);
        sd_bus_slot_unref(m->enumerator_slot);
        for (size_t i = 0; i < m->n_procedures; i++)
                procedure_free(m->procedures[i]);
        free(m->procedures);
        manager_history_reads_free(m);
        m->battery = battery_watch_free(m->battery);
        m->wake_timer = sd_event_source_disable_unref(m->wake_timer);
        if (m->wake_probe)
                m->wake_probe->manager = NULL; /* its answer (ECANCELED) frees it */
        free(m);
        return NULL;
}
