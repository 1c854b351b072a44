/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Identify, SetVehicle and ReadKeyStatus: the vehicle being worked on, read from the ECU or
 * given by hand. */
#include <stdio.h>

#include "bus-args.h"
#include "bus-error.h"
#include "log.h"
#include "manager-internal.h"

static bool vehicle_equal(const Vehicle *a, const Vehicle *b) {
        if (a->known != b->known)
                return false;
        if (!a->known)
                return true;
        return streq(a->vin, b->vin) && a->vin_check_ok == b->vin_check_ok && a->make == b->make &&
               streq(a->model, b->model) && a->year == b->year && a->profile == b->profile &&
               streq(a->source, b->source);
}

void manager_set_vehicle(Manager *m, const Vehicle *v) {
        if (vehicle_equal(&m->vehicle, v))
                return;
        m->vehicle = *v;
        if (m->battery)
                battery_watch_set_profile(m->battery, v->known ? v->profile : NULL);
        log_info("Vehicle: VIN %s, %s %s %u, profile %s (%s).", v->vin, v->make ?: "unknown make", v->model,
                 v->year, v->profile ? v->profile->name : "none", v->source);
        manager_emit(m, "Vehicle", NULL);
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

/* Queues a DID read for a method call; when it cannot be queued, error says why. */
static int ecu_read_did(Manager *m, EcuCall *c, uint16_t did, UdsCallback cb, sd_bus_error *error) {
        uint8_t req[3] = { UDS_READ_DID };
        int r;

        put_be16(req + 1, did);
        c->did = did;
        r = uds_link_request(m->daemon->link, req, sizeof(req), cb, c);
        if (r == -ENOBUFS)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY, "Too many requests to the ECU are waiting.");
        if (r < 0) {
                log_warning_errno(r, "Failed to queue a read of DID %04X: %m", did);
                return sd_bus_error_setf(error, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot send to the ECU: %s.",
                                         strerror(-r));
        }
        return 0;
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

int append_vehicle(sd_bus_message *reply, const Vehicle *v) {
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
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        r = ecu_read_did(m, c, p->dids.model, identify_on_model, &error);
        if (r < 0) {
                r = sd_bus_reply_method_error(c->message, &error);
                if (r < 0)
                        log_debug_errno(r, "Failed to send the error %s: %m", error.name);
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

        r = ecu_read_did(m, c, did, cb, error);
        if (r < 0)
                return r;
        TAKE_PTR(c);
        /* ecu: the car is awake for this call anyway; read the battery with it */
        battery_watch_kick(m->battery);
        return 1; /* the reply comes later */
}

static const VehicleProfile *manager_profile(Manager *m) {
        return m->vehicle.profile ?: m->reference;
}

int method_identify(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = manager_authorize(m, msg, NULL, error);
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

int method_read_key_status(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = manager_authorize(m, msg, NULL, error);
        if (r < 0)
                return r;

        return manager_start_ecu_call(m, msg, manager_profile(m)->dids.key_status, key_status_on_answer, error);
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

int method_set_vehicle(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
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
        r = manager_authorize(m, msg, NULL, error);
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
