/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* RequestApproval and GetApproval: the reset approval at the passcode service, before the
 * vehicle is there. */
#include <stdio.h>

#include "bus-args.h"
#include "bus-error.h"
#include "log.h"
#include "manager-internal.h"

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

int method_request_approval(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
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

        r = manager_authorize(m, msg, NULL, error);
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

int method_get_approval(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
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
        r = manager_authorize(m, msg, NULL, error);
        if (r < 0)
                return r;
        return approval_call_start(m, msg, true, &cred, vin, NULL, error);
}
