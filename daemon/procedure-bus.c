/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>

#include "bus-error.h"
#include "checkchar.h"
#include "hex.h"
#include "log.h"
#include "manager.h"
#include "procedure.h"

#define PASSCODE_ARG_MAX 256U

static Procedure *procedure_from_path(Manager *m, const char *path) {
        _cleanup_free_ char *name = NULL;
        uint64_t id = 0;

        if (sd_bus_path_decode(path, PROCEDURE_PATH_PREFIX, &name) <= 0 || !name || !name[0])
                return NULL;
        for (const char *c = name; *c; c++) {
                if (*c < '0' || *c > '9' || id > UINT64_MAX / 10 - 10)
                        return NULL;
                id = id * 10 + (uint64_t) (*c - '0');
        }
        return manager_find_procedure(m, id);
}

static int procedure_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                          sd_bus_error *error) {
        Procedure *p = procedure_from_path(userdata, path);
        if (!p)
                return 0;
        *found = p;
        return 1;
}

static int procedure_enumerate(sd_bus *bus, const char *prefix, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = manager_n_procedures(m);
        char **l = calloc(n + 1, sizeof(char *));

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                l[i] = strdup(procedure_view(manager_get_procedure(m, i))->path);
                if (!l[i]) {
                        for (size_t j = 0; j < i; j++)
                                free(l[j]);
                        free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

/* Properties */

#define GETTER(name)                                                                                \
        static int name(sd_bus *bus, const char *path, const char *interface, const char *property, \
                        sd_bus_message *reply, void *userdata, sd_bus_error *error)

GETTER(get_kind) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", procedure_kind_to_string(p->kind));
}
GETTER(get_vin) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", p->vin);
}
GETTER(get_state) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", journal_state_to_string(p->state));
}
GETTER(get_step) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", p->steps[p->step].id);
}
GETTER(get_step_index) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) p->step + 1);
}
GETTER(get_step_count) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) p->n_steps);
}
GETTER(get_prompt) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", p->prompt);
}
GETTER(get_seed) {
        ProcedureView *p = userdata;
        int r;

        if (!p->have_seed)
                return sd_bus_message_append(reply, "a{sv}", 0);
        if (p->seed_kind == PASSCODE_IMMOBILIZER) {
                char hex[PASSCODE_SEED_SIZE * 2 + 1];
                hex_encode(p->imm_seed, PASSCODE_SEED_SIZE, false, hex);
                return sd_bus_message_append(reply, "a{sv}", 2, "kind", "s", "immobilizer", "seed", "s", hex);
        }
        char cd[4][2] = {};
        r = checkchar_compute(p->sc_vin, CHECKCHAR_BASE36, &cd[0][0]);
        if (r >= 0)
                r = checkchar_compute(p->data1, CHECKCHAR_HEX, &cd[1][0]);
        if (r >= 0)
                r = checkchar_compute(p->data2, CHECKCHAR_HEX, &cd[2][0]);
        if (r >= 0)
                r = checkchar_compute(p->data3, CHECKCHAR_HEX, &cd[3][0]);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_IO_ERROR, "The ECU's seed is malformed.");
        return sd_bus_message_append(reply, "a{sv}", 9, "kind", "s", "smart-code", "vin", "s", p->sc_vin, "data1", "s",
                                     p->data1, "data2", "s", p->data2, "data3", "s", p->data3, "cd_vin", "s", cd[0],
                                     "cd_data1", "s", cd[1], "cd_data2", "s", cd[2], "cd_data3", "s", cd[3]);
}
GETTER(get_keys) {
        ProcedureView *p = userdata;
        if (!p->keys_read)
                return sd_bus_message_append(reply, "a{sv}", 2, "declared_present", "u", p->declared, "touched", "u",
                                             p->touched);
        return sd_bus_message_append(reply, "a{sv}", 7, "registered", "u", p->registered, "available", "u",
                                     p->available, "max", "u", p->max, "declared_present", "u", p->declared, "touched",
                                     "u", p->touched, "to_delete", "u", p->to_delete, "added", "u", p->added);
}
GETTER(get_error) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", p->error ?: "");
}
GETTER(get_error_message) {
        ProcedureView *p = userdata;
        return sd_bus_message_append(reply, "s", p->error_message ?: "");
}

/* Signals */

void procedure_bus_emit(Procedure *p) {
        static const struct {
                unsigned bit;
                const char *names[3];
        } map[] = {
                { PROP_STATE, { "State" } },
                { PROP_STEP, { "Step", "StepIndex" } },
                { PROP_PROMPT, { "Prompt" } },
                { PROP_SEED, { "Seed" } },
                { PROP_ATTEMPTS, { "PasscodeAttemptsLeft" } },
                { PROP_LOCKOUT, { "LockoutSeconds" } },
                { PROP_PERCENTAGE, { "Percentage" } },
                { PROP_REMAINING, { "RemainingSeconds" } },
                { PROP_DEADLINE, { "Deadline" } },
                { PROP_KEYS, { "Keys" } },
                { PROP_BATTERY_MIN, { "BatteryMinimum" } },
                { PROP_ERROR, { "Error", "ErrorMessage" } },
        };
        const char *names[32];
        size_t n = 0;
        sd_bus *bus = procedure_daemon(p)->bus;
        int r;

        if (!procedure_view(p)->dirty || !bus)
                return;
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (procedure_view(p)->dirty & map[i].bit)
                        for (size_t j = 0; j < 3 && map[i].names[j]; j++)
                                names[n++] = map[i].names[j];
        names[n] = NULL;
        procedure_view(p)->dirty = 0;
        r = sd_bus_emit_properties_changed_strv(bus, procedure_view(p)->path, PROCEDURE_INTERFACE, (char **) names);
        if (r < 0)
                log_debug_errno(r, "Failed to announce changed properties of %s: %m", procedure_view(p)->path);
}

void procedure_bus_emit_step(Procedure *p) {
        int r = sd_bus_emit_signal(procedure_daemon(p)->bus, procedure_view(p)->path, PROCEDURE_INTERFACE, "StepChanged", "sus",
                                   procedure_step_id(p), (uint32_t) procedure_view(p)->step + 1, procedure_view(p)->prompt);
        if (r < 0)
                log_debug_errno(r, "Failed to emit StepChanged: %m");
}

void procedure_bus_emit_key_event(Procedure *p, const char *event, unsigned slot, unsigned beeps) {
        int r = sd_bus_emit_signal(procedure_daemon(p)->bus, procedure_view(p)->path, PROCEDURE_INTERFACE, "KeyEvent", "suu", event,
                                   (uint32_t) slot, (uint32_t) beeps);
        if (r < 0)
                log_debug_errno(r, "Failed to emit KeyEvent: %m");
}

void procedure_bus_emit_finished(Procedure *p) {
        int r = sd_bus_emit_signal(procedure_daemon(p)->bus, procedure_view(p)->path, PROCEDURE_INTERFACE, "Finished", "ss",
                                   journal_state_to_string(procedure_view(p)->state), procedure_view(p)->error ?: "");
        if (r < 0)
                log_debug_errno(r, "Failed to emit Finished: %m");
}

/* Methods: read, validate, authorize, act */

/* The caller must be allowed (< 0 otherwise). A background poll holds the ECU for one round
 * trip: a call that comes meanwhile waits for its answer (procedure_bus_run_deferred())
 * instead of failing with Busy, which a client could not have foreseen. 1 when deferred; 0
 * to go on now. */
static int authorize_or_defer(Procedure *p, sd_bus_message *msg, sd_bus_message_handler_t handler,
                              sd_bus_error *error) {
        int r;

        r = manager_authorize(procedure_manager(p), msg, NULL, error);
        if (r < 0)
                return r;
        if (!procedure_polling(p) || procedure_view(p)->deferred)
                return 0;
        procedure_view(p)->deferred = sd_bus_message_ref(msg);
        procedure_view(p)->deferred_handler = handler;
        log_debug("Procedure %" PRIu64 ": %s() waits for the answer to a poll.", procedure_view(p)->id, sd_bus_message_get_member(msg));
        return 1;
}


static int method_acknowledge(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        const char *step;
        int r;

        r = sd_bus_message_read(msg, "s", &step);
        if (r < 0)
                return r;
        if (strnlen(step, 65) > 64)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "The step id is too long.");
        r = authorize_or_defer(p, msg, method_acknowledge, error);
        if (r != 0)
                return r;
        return procedure_acknowledge(p, msg, step, error);
}

static int method_submit_passcode(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        const char *passcode;
        int r;

        r = sd_bus_message_read(msg, "s", &passcode);
        if (r < 0)
                return r;
        if (strnlen(passcode, PASSCODE_ARG_MAX + 1) > PASSCODE_ARG_MAX)
                return sd_bus_error_setf(error, IMMOD_ERROR_INVALID_PASSCODE_FORMAT, "The passcode is too long.");
        r = authorize_or_defer(p, msg, method_submit_passcode, error);
        if (r != 0)
                return r;
        if (procedure_view(p)->fetch)
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY,
                                         "A passcode for this step is being fetched from the passcode service.");
        return procedure_submit_passcode(p, msg, passcode, error);
}

void procedure_bus_run_deferred(Procedure *p) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = TAKE_PTR(procedure_view(p)->deferred);
        sd_bus_message_handler_t handler = procedure_view(p)->deferred_handler;
        int r;

        procedure_fetch_ready(p);
        if (!m)
                return;
        procedure_view(p)->deferred_handler = NULL;
        /* from the start: the handler reads its arguments again */
        r = sd_bus_message_rewind(m, true);
        if (r >= 0)
                r = handler(m, p, &e);
        if (r >= 0 && !sd_bus_error_is_set(&e))
                return; /* answered, or answered when its chain ends */
        if (!sd_bus_error_is_set(&e))
                sd_bus_error_set_errno(&e, r);
        r = sd_bus_reply_method_error(m, &e);
        if (r < 0)
                log_debug_errno(r, "Failed to answer a deferred %s(): %m", sd_bus_message_get_member(m));
}

static int method_fetch_passcode(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        PasscodeCredentials cred;
        int r;

        r = manager_read_credentials(msg, &cred, error);
        if (r < 0)
                return r;
        r = authorize_or_defer(p, msg, method_fetch_passcode, error);
        if (r != 0)
                return r;
        return procedure_fetch_passcode(p, msg, &cred, error);
}

static int method_set_key_count(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        uint32_t n;
        int r;

        r = sd_bus_message_read(msg, "u", &n);
        if (r < 0)
                return r;
        r = authorize_or_defer(p, msg, method_set_key_count, error);
        if (r != 0)
                return r;
        return procedure_set_key_count(p, msg, n, error);
}

static int method_erase(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        uint32_t n;
        int r;

        r = sd_bus_message_read(msg, "u", &n);
        if (r < 0)
                return r;
        r = authorize_or_defer(p, msg, method_erase, error);
        if (r != 0)
                return r;
        return procedure_erase(p, msg, n, error);
}

static int method_finish(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        int r = authorize_or_defer(p, msg, method_finish, error);
        if (r != 0)
                return r;
        return procedure_finish_registration(p, msg, error);
}

static int method_cancel(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Procedure *p = userdata;
        int r = manager_authorize(procedure_manager(p), msg, NULL, error);
        if (r < 0)
                return r;
        return procedure_cancel(p, msg, error);
}

#define P_CHANGE SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE
#define P_CONST SD_BUS_VTABLE_PROPERTY_CONST

static const sd_bus_vtable procedure_vtable[] = {
        SD_BUS_VTABLE_START(0),

        SD_BUS_PROPERTY("Kind", "s", get_kind, 0, P_CONST),
        SD_BUS_PROPERTY("Vin", "s", get_vin, 0, P_CONST),
        SD_BUS_PROPERTY("Owner", "u", NULL, offsetof(ProcedureView, owner), P_CONST),
        SD_BUS_PROPERTY("Created", "t", NULL, offsetof(ProcedureView, created), P_CONST),
        SD_BUS_PROPERTY("State", "s", get_state, 0, P_CHANGE),
        SD_BUS_PROPERTY("Step", "s", get_step, 0, P_CHANGE),
        SD_BUS_PROPERTY("StepIndex", "u", get_step_index, 0, P_CHANGE),
        SD_BUS_PROPERTY("StepCount", "u", get_step_count, 0, P_CONST),
        SD_BUS_PROPERTY("Prompt", "s", get_prompt, 0, P_CHANGE),
        SD_BUS_PROPERTY("Seed", "a{sv}", get_seed, 0, P_CHANGE),
        SD_BUS_PROPERTY("PasscodeAttemptsLeft", "u", NULL, offsetof(ProcedureView, attempts_left), P_CHANGE),
        SD_BUS_PROPERTY("LockoutSeconds", "u", NULL, offsetof(ProcedureView, lockout_s), P_CHANGE),
        SD_BUS_PROPERTY("Percentage", "u", NULL, offsetof(ProcedureView, percentage), P_CHANGE),
        SD_BUS_PROPERTY("RemainingSeconds", "u", NULL, offsetof(ProcedureView, remaining_s), P_CHANGE),
        SD_BUS_PROPERTY("Deadline", "t", NULL, offsetof(ProcedureView, deadline), P_CHANGE),
        SD_BUS_PROPERTY("Keys", "a{sv}", get_keys, 0, P_CHANGE),
        SD_BUS_PROPERTY("BatteryMinimum", "d", NULL, offsetof(ProcedureView, battery_min), P_CHANGE),
        SD_BUS_PROPERTY("Error", "s", get_error, 0, P_CHANGE),
        SD_BUS_PROPERTY("ErrorMessage", "s", get_error_message, 0, P_CHANGE),

        SD_BUS_METHOD_WITH_ARGS("Acknowledge", SD_BUS_ARGS("s", step), SD_BUS_NO_RESULT, method_acknowledge,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SubmitPasscode", SD_BUS_ARGS("s", passcode), SD_BUS_NO_RESULT,
                                method_submit_passcode, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("FetchPasscode", SD_BUS_ARGS("a{sv}", credentials), SD_BUS_NO_RESULT,
                                method_fetch_passcode, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("SetKeyCount", SD_BUS_ARGS("u", present), SD_BUS_NO_RESULT, method_set_key_count,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Erase", SD_BUS_ARGS("u", expected_delete), SD_BUS_NO_RESULT, method_erase,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Finish", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_finish, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Cancel", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_cancel, SD_BUS_VTABLE_UNPRIVILEGED),

        SD_BUS_SIGNAL_WITH_ARGS("StepChanged", SD_BUS_ARGS("s", step, "u", index, "s", prompt), 0),
        SD_BUS_SIGNAL_WITH_ARGS("KeyEvent", SD_BUS_ARGS("s", event, "u", slot, "u", beeps), 0),
        SD_BUS_SIGNAL_WITH_ARGS("Finished", SD_BUS_ARGS("s", state, "s", error), 0),

        SD_BUS_VTABLE_END,
};

int procedure_bus_register(Manager *m, sd_bus *bus, sd_bus_slot **ret_vtable, sd_bus_slot **ret_enum) {
        int r;

        r = sd_bus_add_fallback_vtable(bus, ret_vtable, PROCEDURE_PATH_PREFIX, PROCEDURE_INTERFACE, procedure_vtable,
                                       procedure_find, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add the Procedure objects: %m");
        r = sd_bus_add_node_enumerator(bus, ret_enum, PROCEDURE_PATH_PREFIX, procedure_enumerate, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add the Procedure enumerator: %m");
        return 0;
}
