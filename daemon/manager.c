/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>

#include "bus-error.h"
#include "fileio.h"
#include "parse-util.h"
#include "log.h"
#include "audit.h"
#include "battery-source.h"
#include "journal.h"
#include "manager.h"
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

typedef enum Problem {
        PROBLEM_LINK_DOWN = 1U << 0,
        PROBLEM_ECU_ASLEEP = 1U << 1,
        PROBLEM_ECU_UNREACHABLE = 1U << 2,
        PROBLEM_NO_VEHICLE = 1U << 3,
        PROBLEM_UNSUPPORTED_VEHICLE = 1U << 4,
        PROBLEM_PROCEDURE_RUNNING = 1U << 5,
        PROBLEM_SERVER_UNREACHABLE = 1U << 6,
        PROBLEM_BATTERY_LOW = 1U << 7,
        PROBLEM_BATTERY_CRITICAL = 1U << 8,
} Problem;

static const char *const problem_names[] = {
        "link-down", "ecu-asleep", "ecu-unreachable", "no-vehicle", "unsupported-vehicle", "procedure-running",
        "server-unreachable", "battery-low", "battery-critical",
};

typedef struct Vehicle {
        bool known;
        char vin[VIN_LEN + 1];
        bool vin_check_ok;
        const char *make; /* vin_make()'s static string; NULL when the WMI is unknown */
        char model[PROFILE_MODEL_NAME_MAX + 1];
        unsigned year;    /* 0 when unknown */
        const VehicleProfile *profile; /* NULL: no profile covers it */
        const char *source; /* "ecu" or "manual" */
} Vehicle;

struct Manager {
        Daemon *daemon;
        sd_bus_slot *slot;
        const VehicleProfile *reference; /* addressing and DIDs before a vehicle is known */

        LinkState link_state;
        EcuState ecu_state;
        Vehicle vehicle;
        unsigned problems;

        Procedure **procedures; /* oldest first */
        size_t n_procedures;
        Procedure *active;
        uint64_t next_id;
        sd_bus_slot *procedure_slot, *enumerator_slot;
        BatteryWatch *battery;
        sd_event_source *wake_timer;   /* armed while EcuState is asleep */
        struct WakeProbe *wake_probe;  /* the 3E 00 on its way, NULL when none */
};

/* Outlives the Manager when immod stops with a probe on its way. */
typedef struct WakeProbe {
        Manager *manager;
} WakeProbe;

/* One method call waiting for the ECU; answered from the UDS callback. */
typedef struct EcuCall {
        Manager *manager;
        sd_bus_message *message;
        uint16_t did;
        char vin[VIN_LEN + 1];
} EcuCall;

static const char *const ecu_state_table[_ECU_STATE_MAX] = {
        [ECU_STATE_UNKNOWN] = "unknown",
        [ECU_STATE_AWAKE] = "awake",
        [ECU_STATE_ASLEEP] = "asleep",
        [ECU_STATE_UNREACHABLE] = "unreachable",
};

DEFINE_STRING_TABLE_TO_STRING(ecu_state, EcuState, _ECU_STATE_MAX)

/* Printable ASCII of at most max characters: safe to quote in an error message. */
static bool string_is_plain(const char *s, size_t max) {
        size_t n = 0;
        for (; *s; s++, n++)
                if (n >= max || *s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

static bool link_is_down(LinkState s) {
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
static void manager_emit(Manager *m, const char *a, const char *b) {
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
        r = sd_event_source_set_time_relative(s, WAKE_PROBE_INTERVAL_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
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
        if (!m->wake_timer)
                r = sd_event_add_time_relative(m->daemon->event, &m->wake_timer, CLOCK_MONOTONIC,
                                               WAKE_PROBE_INTERVAL_USEC, 0, on_wake_timer, m);
        else {
                r = sd_event_source_set_time_relative(m->wake_timer, WAKE_PROBE_INTERVAL_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->wake_timer, SD_EVENT_ONESHOT);
        }
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

static bool vehicle_equal(const Vehicle *a, const Vehicle *b) {
        if (a->known != b->known)
                return false;
        if (!a->known)
                return true;
        return streq(a->vin, b->vin) && a->vin_check_ok == b->vin_check_ok && a->make == b->make &&
               streq(a->model, b->model) && a->year == b->year && a->profile == b->profile &&
               streq(a->source, b->source);
}

static void manager_set_vehicle(Manager *m, const Vehicle *v) {
        if (vehicle_equal(&m->vehicle, v))
                return;
        m->vehicle = *v;
        if (m->battery)
                battery_watch_set_profile(m->battery, v->known ? v->profile : NULL);
        log_info("Vehicle: VIN %s, %s %s %u, profile %s (%s).", v->vin, v->make ?: "unknown make", v->model,
                 v->year, v->profile ? v->profile->name : "none", v->source);
        manager_emit(m, "Vehicle", NULL);
}

/* Takes the transport's link state; announces only real changes. */
static void manager_update_link_state(Manager *m) {
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
static int uid_in_group(uid_t uid, const char *group) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ gid_t *groups = NULL;
        struct group grbuf, *gr = NULL;
        struct passwd pwbuf, *pw = NULL;
        size_t size = 4096;
        int r, n;

        if (uid == 0)
                return 1;

        for (;;) {
                free(buf);
                buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(group, &grbuf, buf, size, &gr);
                if (r != ERANGE)
                        break;
                if (size >= 1024 * 1024)
                        return -ERANGE;
                size *= 2;
        }
        if (r != 0)
                return -r;
        if (!gr)
                return 0; /* no such group: only root */
        gid_t gid = gr->gr_gid;

        for (;;) {
                free(buf);
                buf = malloc(size);
                if (!buf)
                        return -ENOMEM;
                r = getpwuid_r(uid, &pwbuf, buf, size, &pw);
                if (r != ERANGE)
                        break;
                if (size >= 1024 * 1024)
                        return -ERANGE;
                size *= 2;
        }
        if (r != 0)
                return -r;
        if (!pw)
                return 0;
        if (pw->pw_gid == gid)
                return 1;

        n = 64;
        for (;;) {
                int want = n;
                free(groups);
                groups = calloc((size_t) want, sizeof(gid_t));
                if (!groups)
                        return -ENOMEM;
                if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) >= 0)
                        break;
                if (n <= want) {
                        if (want >= 65536)
                                return -E2BIG;
                        n = want * 2;
                }
        }
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return 1;
        return 0;
}

/* Methods are for root and the configured group, judged on the sender's credentials as
 * the bus recorded them, never augmented from /proc (which a caller could race). */
int manager_authorize(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *group = m->daemon->config.group ?: CONFIG_DEFAULT_GROUP;
        const char *method = sd_bus_message_get_member(msg);
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0) {
                log_warning_errno(r, "Refused %s() from %s: cannot read the caller's credentials: %m", method,
                                  sd_bus_message_get_sender(msg) ?: "?");
                return sd_bus_error_setf(error, IMMOD_ERROR_NOT_AUTHORIZED,
                                         "The caller's credentials cannot be read.");
        }

        r = uid_in_group(uid, group);
        if (r > 0)
                return 0;
        if (r < 0)
                log_warning_errno(r, "Refused %s() from uid %u: cannot read the user database: %m", method,
                                  (unsigned) uid);
        else
                log_notice("Refused %s() from uid %u: neither root nor in group %s.", method, (unsigned) uid, group);
        return sd_bus_error_setf(error, IMMOD_ERROR_NOT_AUTHORIZED,
                                 "%s() needs root or membership of the group \"%s\".", method, group);
}

static EcuCall *ecu_call_free(EcuCall *c) {
        if (!c)
                return NULL;
        sd_bus_message_unref(c->message);
        free(c);
        return NULL;
}

static void ecu_call_freep(EcuCall **c) {
        ecu_call_free(*c);
}

static void ecu_call_reply_error(EcuCall *c, const char *name, const char *format, ...) _printf_(3, 4);
static void ecu_call_reply_error(EcuCall *c, const char *name, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = sd_bus_reply_method_errorfv(c->message, name, format, ap);
        va_end(ap);
        if (r < 0)
                log_debug_errno(r, "Failed to send the error %s: %m", name);
}

static int ecu_read_did(Manager *m, EcuCall *c, uint16_t did, UdsCallback cb) {
        uint8_t req[3] = { UDS_READ_DID };

        put_be16(req + 1, did);
        c->did = did;
        return uds_link_request(m->daemon->link, req, sizeof(req), cb, c);
}

/* Checks the answer to a DID read. 0 with the data after 62 DID; otherwise the call has
 * been answered with the mapped error and a negative errno is returned. EcuState follows
 * what the answer says about the ECU. */
static int ecu_call_check(EcuCall *c, const UdsResponse *resp, const uint8_t **ret_data, size_t *ret_size) {
        Manager *m = c->manager;
        char text[160];

        if (resp->error == -ECANCELED) {
                ecu_call_reply_error(c, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
                return resp->error;
        }
        if (resp->error == -ETIMEDOUT) {
                manager_update_link_state(m);
                if (link_is_down(m->link_state)) {
                        manager_set_ecu_state(m, ECU_STATE_UNREACHABLE);
                        ecu_call_reply_error(c, IMMOD_ERROR_LINK_DOWN, "The CAN link %s is %s.",
                                             m->daemon->link_uri, link_state_to_string(m->link_state));
                } else {
                        manager_set_ecu_state(m, ECU_STATE_ASLEEP);
                        ecu_call_reply_error(c, IMMOD_ERROR_ECU_ASLEEP,
                                             "The ECU does not answer (reading DID %04X); press the door courtesy "
                                             "switch to wake it and try again.",
                                             c->did);
                }
                return resp->error;
        }
        if (resp->error < 0) {
                log_info_errno(resp->error, "Reading DID %04X failed: %m", c->did);
                manager_set_ecu_state(m, ECU_STATE_UNREACHABLE);
                ecu_call_reply_error(c, IMMOD_ERROR_ECU_UNREACHABLE, "The link to the ECU failed: %s.",
                                     strerror(-resp->error));
                return resp->error;
        }

        /* Any answer, even a refusal, means the ECU is awake. */
        manager_set_ecu_state(m, ECU_STATE_AWAKE);

        if (resp->nrc != 0) {
                uds_nrc_describe(resp->sid, resp->nrc, text, sizeof(text));
                log_info("Reading DID %04X: %s", c->did, text);
                ecu_call_reply_error(c, IMMOD_ERROR_ECU_REFUSED, "Reading DID %04X: %s.", c->did, text);
                return -EREMOTEIO;
        }
        if (!resp->data || resp->size < 3 || be16(resp->data + 1) != c->did) {
                log_info("Reading DID %04X: malformed answer of %zu bytes.", c->did, resp->size);
                ecu_call_reply_error(c, SD_BUS_ERROR_IO_ERROR, "The ECU's answer to reading DID %04X is malformed.",
                                     c->did);
                return -EBADMSG;
        }

        *ret_data = resp->data + 3;
        *ret_size = resp->size - 3;
        return 0;
}

static int append_vehicle(sd_bus_message *reply, const Vehicle *v) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        if (v->known) {
                r = sd_bus_message_append(reply, "{sv}{sv}", "vin", "s", v->vin, "vin_check_ok", "b",
                                          (int) v->vin_check_ok);
                if (r >= 0 && v->make)
                        r = sd_bus_message_append(reply, "{sv}", "make", "s", v->make);
                if (r >= 0 && v->model[0])
                        r = sd_bus_message_append(reply, "{sv}", "model", "s", v->model);
                if (r >= 0 && v->year > 0)
                        r = sd_bus_message_append(reply, "{sv}", "year", "u", (uint32_t) v->year);
                if (r >= 0 && v->profile)
                        r = sd_bus_message_append(reply, "{sv}", "profile", "s", v->profile->name);
                if (r >= 0)
                        r = sd_bus_message_append(reply, "{sv}", "source", "s", v->source);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static void identify_on_model(UdsClient *client, const UdsResponse *resp, void *userdata) {
        _cleanup_(ecu_call_freep) EcuCall *c = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = c->manager;
        const uint8_t *data;
        size_t size;
        Vehicle v = {
                .known = true,
                .source = "ecu",
        };
        int r;

        if (ecu_call_check(c, resp, &data, &size) < 0)
                return;

        /* ASCII, possibly padded with NULs or spaces. */
        while (size > 0 && (data[size - 1] == 0 || data[size - 1] == ' '))
                size--;
        bool ok = size > 0 && size <= PROFILE_MODEL_NAME_MAX;
        for (size_t i = 0; ok && i < size; i++)
                ok = data[i] >= 0x20 && data[i] <= 0x7e;
        if (!ok) {
                log_info("The ECU reported a malformed model name (%zu bytes).", size);
                ecu_call_reply_error(c, SD_BUS_ERROR_IO_ERROR, "The ECU reported a malformed model name.");
                return;
        }

        memcpy(v.vin, c->vin, sizeof(v.vin));
        memcpy(v.model, data, size);
        v.model[size] = 0;
        v.vin_check_ok = vin_check_digit_ok(v.vin);
        v.make = vin_make(v.vin);
        if (vin_model_year(v.vin, &v.year) < 0)
                v.year = 0;
        if (v.make && v.year > 0)
                v.profile = profile_match(m->daemon->profiles, v.make, v.model, v.year);
        manager_set_vehicle(m, &v);

        if (!v.profile) {
                char year[16] = "unknown year";
                if (v.year > 0)
                        snprintf(year, sizeof(year), "%u", v.year);
                ecu_call_reply_error(c, IMMOD_ERROR_UNSUPPORTED_VEHICLE,
                                            "No vehicle profile covers %s %s, %s (VIN %s); SetVehicle sets the "
                                            "vehicle by hand.",
                                            v.make ?: "this make", v.model, year, v.vin);
                return;
        }

        r = sd_bus_message_new_method_return(c->message, &reply);
        if (r >= 0)
                r = append_vehicle(reply, &m->vehicle);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        if (r < 0)
                log_warning_errno(r, "Failed to send the reply to Identify(): %m");
}

static void identify_on_vin(UdsClient *client, const UdsResponse *resp, void *userdata) {
        _cleanup_(ecu_call_freep) EcuCall *c = userdata;
        Manager *m = c->manager;
        const char *reason;
        const uint8_t *data;
        size_t size;
        int r;

        if (ecu_call_check(c, resp, &data, &size) < 0)
                return;

        if (size != VIN_LEN || memchr(data, 0, size)) {
                log_info("The ECU reported a VIN of %zu bytes.", size);
                ecu_call_reply_error(c, IMMOD_ERROR_INVALID_VIN,
                                            "The ECU reported a malformed VIN (%zu bytes, %d expected).", size,
                                            VIN_LEN);
                return;
        }
        memcpy(c->vin, data, VIN_LEN);
        c->vin[VIN_LEN] = 0;
        if (vin_check_syntax(c->vin, &reason) < 0) {
                log_info("The ECU reported a malformed VIN: %s", reason);
                ecu_call_reply_error(c, IMMOD_ERROR_INVALID_VIN, "The ECU reported a malformed VIN: %s.",
                                            reason);
                return;
        }

        const VehicleProfile *p = m->vehicle.profile ?: m->reference;
        r = ecu_read_did(m, c, p->dids.model, identify_on_model);
        if (r < 0) {
                log_warning_errno(r, "Failed to queue the model read: %m");
                ecu_call_reply_error(c, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot send to the ECU: %s.",
                                            strerror(-r));
                return;
        }
        TAKE_PTR(c); /* identify_on_model() has it now */
}

/* Starts reading a DID for a method call; the callback answers it. */
static int manager_start_ecu_call(Manager *m, sd_bus_message *msg, uint16_t did, UdsCallback cb,
                                  sd_bus_error *error) {
        _cleanup_(ecu_call_freep) EcuCall *c = NULL;
        int r;

        manager_update_link_state(m);
        if (link_is_down(m->link_state))
                return sd_bus_error_setf(error, IMMOD_ERROR_LINK_DOWN, "The CAN link %s is %s.", m->daemon->link_uri,
                                         link_state_to_string(m->link_state));

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->manager = m;
        c->message = sd_bus_message_ref(msg);

        r = ecu_read_did(m, c, did, cb);
        if (r == -ENOBUFS)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "Too many requests to the ECU are waiting.");
        if (r < 0) {
                log_warning_errno(r, "Failed to queue a read of DID %04X: %m", did);
                return sd_bus_error_setf(error, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot send to the ECU: %s.",
                                         strerror(-r));
        }
        TAKE_PTR(c);
        /* ecu: the car is awake for this call anyway; read the battery with it */
        battery_watch_kick(m->battery);
        return 1; /* the reply comes later */
}

static const VehicleProfile *manager_profile(Manager *m) {
        return m->vehicle.profile ?: m->reference;
}

static int method_identify(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;

        return manager_start_ecu_call(m, msg, manager_profile(m)->dids.vin, identify_on_vin, error);
}

static void key_status_on_answer(UdsClient *client, const UdsResponse *resp, void *userdata) {
        _cleanup_(ecu_call_freep) EcuCall *c = userdata;
        const uint8_t *data;
        size_t size;
        int r;

        if (ecu_call_check(c, resp, &data, &size) < 0)
                return;
        if (size < 3) {
                log_info("The ECU's key status is %zu bytes long, 3 expected.", size);
                ecu_call_reply_error(c, SD_BUS_ERROR_IO_ERROR, "The ECU's key status is malformed.");
                return;
        }

        r = sd_bus_reply_method_return(c->message, "a{sv}", 3, "registered", "u", (uint32_t) data[0], "available",
                                       "u", (uint32_t) data[1], "max", "u", (uint32_t) data[2]);
        if (r < 0)
                log_warning_errno(r, "Failed to send the reply to ReadKeyStatus(): %m");
}

static int method_read_key_status(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;

        return manager_start_ecu_call(m, msg, manager_profile(m)->dids.key_status, key_status_on_answer, error);
}

/* Reads one option's variant, which must hold `type`. */
/* Reads an a{sv} argument, handing each entry's key to `reader`, which reads the variant
 * (or refuses the key with an InvalidArgs error). */
typedef int (*DictEntryReader)(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error);

static int read_dict(sd_bus_message *msg, DictEntryReader reader, void *userdata, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                r = reader(msg, key, userdata, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

static int read_option(sd_bus_message *msg, const char *key, const char *type, void *ret, sd_bus_error *error) {
        const char *contents;
        int r;

        r = sd_bus_message_peek_type(msg, NULL, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, type))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"%s\" must be of type %s.", key,
                                         type);
        return sd_bus_message_read(msg, "v", type, ret);
}

typedef struct VehicleOptions {
        const char *model;
        uint32_t year;
        int force;
        bool have_year, have_force;
} VehicleOptions;

static int read_vehicle_option(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error) {
        VehicleOptions *o = userdata;
        int r;

        if (streq(key, "model")) {
                if (o->model)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"model\" given twice.");
                return read_option(msg, key, "s", &o->model, error);
        }
        if (streq(key, "year")) {
                if (o->have_year)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"year\" given twice.");
                r = read_option(msg, key, "u", &o->year, error);
                o->have_year = true;
                return r;
        }
        if (streq(key, "force")) {
                if (o->have_force)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"force\" given twice.");
                r = read_option(msg, key, "b", &o->force, error);
                o->have_force = true;
                return r;
        }
        if (string_is_plain(key, STRING_ARG_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown option \"%s\"; SetVehicle() takes model s, year u and force b.", key);
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                 "Unknown option; SetVehicle() takes model s, year u and force b.");
}

static int method_set_vehicle(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        VehicleOptions o = {};
        const char *vin, *reason;
        int r;

        /* Read. */
        r = sd_bus_message_read(msg, "s", &vin);
        if (r < 0)
                return r;
        r = read_dict(msg, read_vehicle_option, &o, error);
        if (r < 0)
                return r;

        /* Validate. */
        if (strnlen(vin, STRING_ARG_MAX + 1) > STRING_ARG_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "The VIN is too long (%d characters expected).",
                                         VIN_LEN);
        if (!o.model)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"model\" (s) is required.");
        if (!o.have_year)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"year\" (u) is required.");
        if (!o.model[0] || !string_is_plain(o.model, PROFILE_MODEL_NAME_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Option \"model\" must be 1 to %u printable ASCII characters.",
                                         PROFILE_MODEL_NAME_MAX);
        if (o.year < PROFILE_YEAR_MIN || o.year > PROFILE_YEAR_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"year\" must be %u to %u.",
                                         PROFILE_YEAR_MIN, PROFILE_YEAR_MAX);
        if (vin_check_syntax(vin, &reason) < 0)
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_VIN, "Invalid VIN: %s.", reason);

        /* Authorize. */
        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;

        /* Act. */
        bool check_ok = vin_check_digit_ok(vin);
        if (!check_ok && !o.force)
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_VIN,
                                         "The VIN's check digit (9th character) is %c but %c was expected; set "
                                         "\"force\" to true if the VIN is right as written.",
                                         vin[8], vin_compute_check_digit(vin));

        const char *make = vin_make(vin);
        if (!make)
                return sd_bus_error_setf(error, IMMOD_ERROR_UNSUPPORTED_VEHICLE,
                                         "No vehicle profile covers the manufacturer code %.3s of this VIN.", vin);
        const VehicleProfile *p = profile_match(m->daemon->profiles, make, o.model, o.year);
        if (!p)
                return sd_bus_error_setf(error, IMMOD_ERROR_UNSUPPORTED_VEHICLE, "No vehicle profile covers %s %s, %u.",
                                         make, o.model, (unsigned) o.year);

        Vehicle v = {
                .known = true,
                .vin_check_ok = check_ok,
                .make = make,
                .year = o.year,
                .profile = p,
                .source = "manual",
        };
        memcpy(v.vin, vin, VIN_LEN + 1);
        strncpy(v.model, o.model, sizeof(v.model) - 1);
        if (!check_ok)
                log_notice("SetVehicle(): VIN %s accepted with a wrong check digit (force).", vin);

        /* Emit, reply. */
        manager_set_vehicle(m, &v);
        return sd_bus_reply_method_return(msg, NULL);
}

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
        return sd_bus_message_append(reply, "o", m->active ? m->active->path : "/");
}

/* Procedures */

Daemon *manager_daemon(Manager *m) {
        return m->daemon;
}

Procedure *manager_find_procedure(Manager *m, uint64_t id) {
        for (size_t i = 0; i < m->n_procedures; i++)
                if (m->procedures[i]->id == id)
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

/* Reads one string option. */
static int read_string_option(sd_bus_message *msg, const char *key, const char **ret, sd_bus_error *error) {
        int r;

        if (*ret)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option \"%s\" given twice.", key);
        r = read_option(msg, key, "s", ret, error);
        if (r < 0)
                return r;
        if (!journal_text_valid(*ret, JOURNAL_TEXT_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Option \"%s\" must be at most %u bytes of text without control characters.",
                                         key, JOURNAL_TEXT_MAX);
        return 0;
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
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
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

        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;
        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return r;

        if (m->active)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "Procedure %s is running; finish or cancel it first.",
                                         m->active->path);
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
        if (o.customer && !(p->customer_last_name = strdup(o.customer))) {
                procedure_free(p);
                return -ENOMEM;
        }
        r = manager_add_procedure(m, p);
        if (r < 0) {
                procedure_free(p);
                return r;
        }
        m->next_id++;
        log_info("Procedure %" PRIu64 " (%s) started by uid %u.", p->id, kind_name, (unsigned) uid);
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

        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "o");
        if (r < 0)
                return r;
        for (size_t i = m->n_procedures; i > 0; i--) {
                r = sd_bus_message_append(reply, "o", m->procedures[i - 1]->path);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int append_audit_record(sd_bus_message *reply, const AuditRecord *a) {
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                                  "id", "t", a->id,
                                  "uid", "u", a->uid,
                                  "technician", "s", a->technician ?: "",
                                  "time", "t", (uint64_t) a->time,
                                  "created", "t", (uint64_t) a->created,
                                  "kind", "s", procedure_kind_to_string(a->kind),
                                  "vin", "s", a->vin ?: "",
                                  "profile", "s", a->profile ?: "",
                                  "repair_order", "s", a->repair_order ?: "",
                                  "result", "s", audit_result_to_string(a->result),
                                  "error", "s", a->error ?: "",
                                  "keys_before", "i", (int32_t) a->keys_before,
                                  "keys_after", "i", (int32_t) a->keys_after,
                                  "battery_min", "d", a->battery_min,
                                  "passcode_attempts", "u", (uint32_t) a->passcode_attempts);
        /* the voltage over the procedure: (seconds from its start, lowest, highest) */
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "battery_trace");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a(udd)");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(udd)");
        for (size_t i = 0; r >= 0 && i < a->n_trace; i++)
                r = sd_bus_message_append(reply, "(udd)", a->trace[i].offset_s, a->trace[i].min_v, a->trace[i].max_v);
        for (unsigned i = 0; r >= 0 && i < 3; i++)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int method_get_history(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        AuditRecord *records = NULL;
        size_t n = 0;
        uint32_t limit;
        int r;

        r = sd_bus_message_read(msg, "u", &limit);
        if (r < 0)
                return r;
        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;
        r = audit_read(m->daemon->config.state_dir, limit, &records, &n);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_IO_ERROR, "Cannot read the audit log: %s.", strerror(-r));

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "a{sv}");
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = append_audit_record(reply, &records[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        audit_records_free(records, n);
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
                if (procedure_resume(m, j, profile, &p) < 0 || manager_add_procedure(m, p) < 0) {
                        log_error("Failed to resume procedure %" PRIu64 ".", j->id);
                        continue;
                }
                if (procedure_is_active(p) && !m->active) {
                        m->active = p;
                        battery_watch_set_active(m->battery, true);
                        manager_emit(m, "ActiveProcedure", NULL);
                }
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

/* The passcode service */

#define CREDENTIAL_USER_MAX 64U
#define CREDENTIAL_PASSWORD_MAX 256U
#define APPROVERS_MAX 16U
#define DEALER_CODE_MAX 32U

static int read_credential(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error) {
        PasscodeCredentials *c = userdata;
        const char **dest;

        if (streq(key, "user"))
                dest = &c->user;
        else if (streq(key, "password"))
                dest = &c->password;
        else
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown credential; \"user\" s and \"password\" s are expected.");
        if (*dest)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Credential \"%s\" given twice.", key);
        return read_option(msg, key, "s", dest, error);
}

int manager_read_credentials(sd_bus_message *msg, PasscodeCredentials *ret, sd_bus_error *error) {
        PasscodeCredentials c = {};
        int r;

        r = read_dict(msg, read_credential, &c, error);
        if (r < 0)
                return r;

        if (!c.user || !c.password)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The credentials need \"user\" s and \"password\" s.");
        if (!c.user[0] || !string_is_plain(c.user, CREDENTIAL_USER_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The user name must be 1 to %u printable ASCII characters.", CREDENTIAL_USER_MAX);
        size_t n = strnlen(c.password, CREDENTIAL_PASSWORD_MAX + 1);
        if (n == 0 || n > CREDENTIAL_PASSWORD_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "The password must be 1 to %u bytes.",
                                         CREDENTIAL_PASSWORD_MAX);
        *ret = c;
        return 0;
}

/* RequestApproval() or GetApproval() waiting for the service. */
typedef struct ApprovalCall {
        Manager *manager;
        sd_bus_message *message;
        bool get;
} ApprovalCall;

static const char *json_text(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key)) ?: "";
}

static void on_approval_answer(const PasscodeResult *res, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        ApprovalCall *a = userdata;
        char text[4][80];
        int r;

        if (res->error < 0) {
                r = sd_bus_reply_method_errorf(a->message, res->bus_error, "%s", res->message);
                goto done;
        }
        /* what the service sent goes out as plain text only */
        const char *keys[4] = { "status", "request_no", "approved_by", "valid_till" };
        for (size_t i = 0; i < 4; i++) {
                const char *v = json_text(res->json, keys[i]);
                size_t k = 0;
                for (; *v && k + 1 < sizeof(text[i]); v++)
                        text[i][k++] = *v >= 0x20 && *v <= 0x7e ? *v : '?';
                text[i][k] = 0;
        }
        if (a->get && !res->json)
                snprintf(text[0], sizeof(text[0]), "none");
        r = sd_bus_message_new_method_return(a->message, &reply);
        if (r >= 0 && a->get)
                r = sd_bus_message_append(reply, "a{sv}", 4, "status", "s", text[0], "request_no", "s", text[1],
                                          "approved_by", "s", text[2], "valid_till", "s", text[3]);
        else if (r >= 0)
                r = sd_bus_message_append(reply, "a{sv}", 2, "request_no", "s", text[1], "status", "s", text[0]);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        if (r >= 0)
                log_info("%s: %s %s.", a->get ? "GetApproval" : "RequestApproval", text[1], text[0]);
done:
        if (r < 0)
                log_warning_errno(r, "Failed to answer %s(): %m", a->get ? "GetApproval" : "RequestApproval");
        sd_bus_message_unref(a->message);
        free(a);
}

static int approval_call_start(Manager *m, sd_bus_message *msg, bool get, const PasscodeCredentials *cred,
                               const char *vin, json_t *body, sd_bus_error *error) {
        ApprovalCall *a;
        int r;

        if (!m->daemon->passcode) {
                json_decref(body);
                return sd_bus_error_setf(error, IMMOD_ERROR_SERVER_UNREACHABLE,
                                         "No passcode service is configured (server: in %s).",
                                         m->daemon->config.path ?: IMMOD_CONFIG_FILE);
        }
        a = calloc(1, sizeof(*a));
        if (!a) {
                json_decref(body);
                return -ENOMEM;
        }
        a->manager = m;
        a->get = get;
        a->message = sd_bus_message_ref(msg);
        if (get)
                r = passcode_client_get_approval(m->daemon->passcode, cred, vin, on_approval_answer, a, NULL);
        else
                r = passcode_client_request_approval(m->daemon->passcode, cred, body, on_approval_answer, a, NULL);
        if (r < 0) {
                sd_bus_message_unref(a->message);
                free(a);
                return sd_bus_error_setf(error, IMMOD_ERROR_SERVER_UNREACHABLE, "Cannot ask the passcode service: %s.",
                                         strerror(-r));
        }
        return 1; /* answered from on_approval_answer() */
}

static int read_strv_option(sd_bus_message *msg, const char *key, char ***ret, sd_bus_error *error) {
        int r;

        if (*ret)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "\"%s\" given twice.", key);
        r = sd_bus_message_enter_container(msg, 'v', "as");
        if (r == -ENXIO || r == -EINVAL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "\"%s\" must be of type as.", key);
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(msg, ret);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

static void strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

static int check_text(const char *key, const char *v, sd_bus_error *error) {
        if (!v || !v[0])
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "\"%s\" s is required.", key);
        return 0;
}

typedef struct ApprovalRequest {
        const char *vin, *ro, *customer, *technician, *dealer;
        char **approvers, **attestations;
} ApprovalRequest;

static void approval_request_done(ApprovalRequest *q) {
        strv_free(q->approvers);
        strv_free(q->attestations);
}

static int read_request_field(sd_bus_message *msg, const char *key, void *userdata, sd_bus_error *error) {
        ApprovalRequest *q = userdata;

        if (streq(key, "vin"))
                return read_string_option(msg, key, &q->vin, error);
        if (streq(key, "repair_order"))
                return read_string_option(msg, key, &q->ro, error);
        if (streq(key, "customer_last_name"))
                return read_string_option(msg, key, &q->customer, error);
        if (streq(key, "technician"))
                return read_string_option(msg, key, &q->technician, error);
        if (streq(key, "dealer_code"))
                return read_string_option(msg, key, &q->dealer, error);
        if (streq(key, "approvers"))
                return read_strv_option(msg, key, &q->approvers, error);
        if (streq(key, "attestations"))
                return read_strv_option(msg, key, &q->attestations, error);
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                 "Unknown field; the request takes vin, repair_order, "
                                 "customer_last_name, technician, dealer_code (s), approvers and "
                                 "attestations (as).");
}

static int method_request_approval(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        static const char *const attestation_names[] = { "customer_authority", "photo_id", "registration", "terms" };
        _cleanup_(approval_request_done) ApprovalRequest q = {};
        Manager *m = userdata;
        const char *reason = NULL;
        PasscodeCredentials cred;
        size_t n_approvers = 0;
        json_t *body, *list, *att;
        int r;

        r = read_dict(msg, read_request_field, &q, error);
        if (r < 0)
                return r;
        r = manager_read_credentials(msg, &cred, error);
        if (r < 0)
                return r;

        if (!q.vin)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "\"vin\" s is required.");
        if (vin_check_syntax(q.vin, &reason) < 0)
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_VIN, "%s", reason ?: "The VIN is malformed.");
        if ((r = check_text("repair_order", q.ro, error)) < 0 ||
            (r = check_text("customer_last_name", q.customer, error)) < 0)
                return r;
        q.technician = q.technician ?: cred.user;
        if (!q.technician[0] || !string_is_plain(q.technician, CREDENTIAL_USER_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "\"technician\" must be a user id of printable ASCII.");
        q.dealer = q.dealer ?: m->daemon->config.server.dealer_code;
        if (!q.dealer || !q.dealer[0] || !string_is_plain(q.dealer, DEALER_CODE_MAX))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "\"dealer_code\" s is needed (none is configured), at most %u characters.",
                                         DEALER_CODE_MAX);
        for (char **i = q.approvers; i && *i; i++, n_approvers++) {
                if (!(*i)[0] || !string_is_plain(*i, CREDENTIAL_USER_MAX) || n_approvers >= APPROVERS_MAX)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "\"approvers\" must be at most %u user ids.", APPROVERS_MAX);
                for (char **j = q.approvers; j < i; j++)
                        if (streq(*i, *j))
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "Approver %s is named twice.", *i);
        }
        if (n_approvers < 2)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Select at least two managers as \"approvers\".");
        for (char **i = q.attestations; i && *i; i++) {
                bool known = false;
                for (size_t k = 0; k < ELEMENTSOF(attestation_names); k++)
                        known = known || streq(*i, attestation_names[k]);
                if (!known)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown attestation; customer_authority, photo_id, registration and "
                                                 "terms are expected.");
        }
        for (size_t k = 0; k < ELEMENTSOF(attestation_names); k++) {
                bool given = false;
                for (char **i = q.attestations; i && *i; i++)
                        given = given || streq(*i, attestation_names[k]);
                if (!given)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "The attestation %s is missing: all four are needed.",
                                                 attestation_names[k]);
        }

        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;

        list = json_array();
        att = json_object();
        for (char **i = q.approvers; list && *i; i++)
                if (json_array_append_new(list, json_string(*i)) < 0)
                        json_decref(TAKE_PTR(list));
        for (size_t k = 0; att && k < ELEMENTSOF(attestation_names); k++)
                if (json_object_set_new(att, attestation_names[k], json_true()) < 0)
                        json_decref(TAKE_PTR(att));
        body = list && att ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "dealer_code", q.dealer, "technician",
                                       q.technician, "vin", q.vin, "repair_order", q.ro, "customer_last_name", q.customer,
                                       "attestations", att, "approvers", list)
                           : NULL;
        if (!body) {
                /* json_pack() takes "o" references even when it fails */
                if (!list || !att) {
                        json_decref(list);
                        json_decref(att);
                }
                return -ENOMEM;
        }
        log_info("RequestApproval for %s by %s.", q.vin, q.technician);
        return approval_call_start(m, msg, false, &cred, NULL, body, error);
}

static int method_get_approval(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *vin, *reason = NULL;
        PasscodeCredentials cred;
        int r;

        r = sd_bus_message_read(msg, "s", &vin);
        if (r < 0)
                return r;
        r = manager_read_credentials(msg, &cred, error);
        if (r < 0)
                return r;
        if (strnlen(vin, STRING_ARG_MAX + 1) > STRING_ARG_MAX || vin_check_syntax(vin, &reason) < 0)
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_VIN, "%s", reason ?: "The VIN is malformed.");
        r = manager_authorize(m, msg, error);
        if (r < 0)
                return r;
        return approval_call_start(m, msg, true, &cred, vin, NULL, error);
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
        m->battery = battery_watch_free(m->battery);
        m->wake_timer = sd_event_source_disable_unref(m->wake_timer);
        if (m->wake_probe)
                m->wake_probe->manager = NULL; /* its answer (ECANCELED) frees it */
        free(m);
        return NULL;
}
