/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * FetchPasscode(): the ECU's software version (DID F195) through the procedure's gate, then
 * the passcode service for the Seed shown, then the passcode goes the way of
 * SubmitPasscode(). The password is used for that one call and never kept.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "bus-error.h"
#include "checkchar.h"
#include "hex.h"
#include "log.h"
#include "manager.h"
#include "procedure.h"

#define PASSCODE_ARG_MAX 256U
#define SOFTWARE_VERSION_MAX 64U

typedef struct PasscodeFetch {
        Procedure *procedure; /* NULL once the procedure is gone */
        sd_bus_message *message;
        PasscodeCredentials cred; /* point into message */
        PasscodeCall *call;
        bool reading_version;
        bool ready; /* the passcode came while a poll held the ECU: submitted after its answer */
        char passcode[PASSCODE_ARG_MAX + 1];
        /* the Seed the passcode is asked for */
        PasscodeKind kind;
        uint8_t imm_seed[PASSCODE_SEED_SIZE];
        char sc[4][PASSCODE_DATA2_LEN + 18];
} PasscodeFetch;

static void fetch_free(PasscodeFetch *f) {
        if (!f)
                return;
        if (f->procedure && procedure_view(f->procedure)->fetch == f)
                procedure_view(f->procedure)->fetch = NULL;
        passcode_call_cancel(f->call);
        sd_bus_message_unref(f->message);
        explicit_bzero(&f->cred, sizeof(f->cred));
        explicit_bzero(f->passcode, sizeof(f->passcode));
        free(f);
}

static void fetch_reply_error(PasscodeFetch *f, const char *name, const char *format, ...) _printf_(3, 4);
static void fetch_reply_error(PasscodeFetch *f, const char *name, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = sd_bus_reply_method_errorfv(f->message, name, format, ap);
        va_end(ap);
        if (r < 0)
                log_debug_errno(r, "Failed to answer FetchPasscode(): %m");
        fetch_free(f);
}

static bool fetch_seed_current(const PasscodeFetch *f, const ProcedureView *v) {
        if (!v->have_seed || v->seed_kind != f->kind)
                return false;
        if (f->kind == PASSCODE_IMMOBILIZER)
                return memcmp(v->imm_seed, f->imm_seed, sizeof(f->imm_seed)) == 0;
        return streq(v->sc_vin, f->sc[0]) && streq(v->data1, f->sc[1]) && streq(v->data2, f->sc[2]) &&
               streq(v->data3, f->sc[3]);
}

/* The passcode from the service, to the ECU exactly as SubmitPasscode() sends it. */
static void fetch_submit(PasscodeFetch *f) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        Procedure *p = f->procedure;
        int r;

        procedure_view(p)->fetch = NULL;
        if (!procedure_is_active(p) || procedure_view(p)->steps[procedure_view(p)->step].end != STEP_END_PASSCODE || !fetch_seed_current(f, procedure_view(p)))
                return fetch_reply_error(f, IMMOD_ERROR_WRONG_STEP,
                                         "The procedure moved on while the passcode was fetched (now at %s, %s); "
                                         "the passcode was not sent.",
                                         procedure_step_id(p), journal_state_to_string(procedure_view(p)->state));
        /* From here the procedure answers the call. */
        r = procedure_submit_passcode(p, f->message, f->passcode, &e);
        if (r < 0) {
                r = sd_bus_reply_method_error(f->message, &e);
                if (r < 0)
                        log_debug_errno(r, "Failed to answer FetchPasscode(): %m");
        }
        fetch_free(f);
}

static void on_fetched(const PasscodeResult *res, void *userdata) {
        PasscodeFetch *f = userdata;
        Procedure *p = f->procedure;

        f->call = NULL;
        if (res->error < 0)
                return fetch_reply_error(f, res->bus_error, "%s", res->message);
        if (!p)
                return fetch_reply_error(f, IMMOD_ERROR_CANCELLED, "The procedure is gone.");

        snprintf(f->passcode, sizeof(f->passcode), "%s",
                 json_string_value(json_object_get(res->json, "passcode")) ?: "");
        log_info("Procedure %" PRIu64 ": passcode fetched from the passcode service (transaction %.40s).", procedure_view(p)->id,
                 json_string_value(json_object_get(res->json, "transaction_id")) ?: "?");
        if (procedure_polling(p)) {
                f->ready = true; /* a poll holds the ECU: procedure_bus_run_deferred() sends it */
                log_debug("Procedure %" PRIu64 ": the fetched passcode waits for the answer to a poll.", procedure_view(p)->id);
                return;
        }
        fetch_submit(f);
}

static json_t *fetch_body(PasscodeFetch *f, const ProcedureView *v, const char *software_version) {
        if (f->kind == PASSCODE_IMMOBILIZER) {
                char hex[PASSCODE_SEED_SIZE * 2 + 1];

                hex_encode(f->imm_seed, PASSCODE_SEED_SIZE, false, hex);
                return json_pack("{s:s, s:s, s:s, s:s}", "kind", "immobilizer", "vin", v->vin, "software_version",
                                 software_version, "seed", hex);
        }

        char cd[4][2] = {};
        if (checkchar_compute(f->sc[0], CHECKCHAR_BASE36, &cd[0][0]) < 0 ||
            checkchar_compute(f->sc[1], CHECKCHAR_HEX, &cd[1][0]) < 0 ||
            checkchar_compute(f->sc[2], CHECKCHAR_HEX, &cd[2][0]) < 0 ||
            checkchar_compute(f->sc[3], CHECKCHAR_HEX, &cd[3][0]) < 0)
                return NULL;
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "kind", "smart-code",
                         "vin", f->sc[0], "software_version", software_version, "repair_order", v->repair_order,
                         "customer_last_name", v->customer_last_name, "data1", f->sc[1], "data2", f->sc[2], "data3",
                         f->sc[3], "cd", "vin", cd[0], "data1", cd[1], "data2", cd[2], "data3", cd[3]);
}

/* Through the procedure's gate: not called once the procedure dropped the request (Cancel,
 * its end), which procedure_fetch_abort() answers. */
static void on_software_version(Procedure *p, const UdsResponse *resp) {
        PasscodeFetch *f = procedure_view(p)->fetch;
        char sw[SOFTWARE_VERSION_MAX + 1] = "unknown";
        json_t *body;
        int r;

        if (!f)
                return;
        f->reading_version = false;
        if (resp->error == -ECANCELED)
                return fetch_reply_error(f, IMMOD_ERROR_CANCELLED, "immod is shutting down.");
        /* The version is only recorded in the service's transaction: without it, ask anyway. */
        if (resp->error >= 0 && resp->nrc == 0 && resp->data && resp->size > 3) {
                size_t k = 0;
                for (size_t i = 3; i < resp->size && k < SOFTWARE_VERSION_MAX; i++)
                        if (resp->data[i] >= 0x20 && resp->data[i] <= 0x7e)
                                sw[k++] = (char) resp->data[i];
                sw[k] = 0;
                if (k == 0)
                        snprintf(sw, sizeof(sw), "unknown");
        } else
                log_info("Procedure %" PRIu64 ": the ECU's software version (DID F195) is unknown; asking anyway.",
                         procedure_view(p)->id);

        body = fetch_body(f, procedure_view(p), sw);
        if (!body)
                return fetch_reply_error(f, SD_BUS_ERROR_IO_ERROR, "The ECU's seed is malformed.");
        r = passcode_client_fetch(procedure_daemon(p)->passcode, &f->cred, body, on_fetched, f, &f->call);
        if (r < 0)
                return fetch_reply_error(f, IMMOD_ERROR_SERVER_UNREACHABLE, "Cannot ask the passcode service: %s.",
                                         strerror(-r));
}

void procedure_fetch_abort(Procedure *p) {
        PasscodeFetch *f = procedure_view(p)->fetch;

        if (!f)
                return;
        procedure_view(p)->fetch = NULL;
        f->procedure = NULL;
        fetch_reply_error(f, IMMOD_ERROR_CANCELLED,
                          procedure_is_active(p) ? "The procedure is being cancelled." : "The procedure is gone.");
}

void procedure_fetch_ready(Procedure *p) {
        PasscodeFetch *f = procedure_view(p)->fetch;

        if (f && f->ready && !procedure_busy(p))
                fetch_submit(f);
}

int procedure_fetch_passcode(Procedure *p, sd_bus_message *msg, const PasscodeCredentials *cred, sd_bus_error *error) {
        PasscodeFetch *f;
        uint8_t req[3] = { UDS_READ_DID };
        int r;

        if (!procedure_is_active(p) || procedure_view(p)->steps[procedure_view(p)->step].end != STEP_END_PASSCODE)
                return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP, "FetchPasscode() does not end the current step.");
        if (procedure_view(p)->fetch || !procedure_can_serve(p))
                return sd_bus_error_setf(error, IMMOD_ERROR_BUSY,
                                         "A passcode for this step is being fetched or checked already.");
        if (!procedure_daemon(p)->passcode)
                return sd_bus_error_setf(error, IMMOD_ERROR_SERVER_UNREACHABLE,
                                         "No passcode service is configured; enter the passcode with SubmitPasscode.");
        if (!procedure_view(p)->have_seed)
                return sd_bus_error_setf(error, IMMOD_ERROR_WRONG_STEP,
                                         "No seed is shown now (after a lockout); submit a passcode with "
                                         "SubmitPasscode to get a fresh seed first.");
        if (procedure_view(p)->seed_kind == PASSCODE_SMART_CODE && (!procedure_view(p)->repair_order || !procedure_view(p)->customer_last_name))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "The passcode service needs the repair order and the customer's last name: "
                                         "start the procedure with the repair_order and customer_last_name options, "
                                         "or enter the passcode with SubmitPasscode.");

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->procedure = p;
        f->message = sd_bus_message_ref(msg);
        f->cred = *cred;
        f->kind = procedure_view(p)->seed_kind;
        memcpy(f->imm_seed, procedure_view(p)->imm_seed, sizeof(f->imm_seed));
        snprintf(f->sc[0], sizeof(f->sc[0]), "%s", procedure_view(p)->sc_vin);
        snprintf(f->sc[1], sizeof(f->sc[1]), "%s", procedure_view(p)->data1);
        snprintf(f->sc[2], sizeof(f->sc[2]), "%s", procedure_view(p)->data2);
        snprintf(f->sc[3], sizeof(f->sc[3]), "%s", procedure_view(p)->data3);

        put_be16(req + 1, procedure_profile(p)->dids.software_version);
        procedure_view(p)->fetch = f;
        r = procedure_send(p, req, sizeof(req), on_software_version);
        if (r < 0) {
                procedure_view(p)->fetch = NULL;
                fetch_free(f);
                return sd_bus_error_setf(error, IMMOD_ERROR_ECU_UNREACHABLE, "Cannot ask the ECU: %s.", strerror(-r));
        }
        f->reading_version = true;
        log_info("Procedure %" PRIu64 ": fetching the %s passcode from the passcode service for user %s.", procedure_view(p)->id,
                 procedure_view(p)->seed_kind == PASSCODE_IMMOBILIZER ? "immobilizer" : "smart code", cred->user);
        return 1; /* answered when the service and the ECU have */
}
