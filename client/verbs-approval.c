/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* approval request / approval status: the reset's pre-approval on the passcode service,
 * before the vehicle is there. */
#include <stdio.h>
#include <unistd.h>

#include "bus.h"
#include "credentials.h"
#include "immoctl.h"
#include "log.h"
#include "output.h"
#include "vin.h"

#define APPROVAL_TIMEOUT_USEC (120 * USEC_PER_SEC) /* the service, with its retries */

static const struct {
        const char *id;
        const char *question;
} attestations[] = {
        { "customer_authority", "The customer is the owner or has the owner's written authority" },
        { "photo_id", "You checked the customer's photo ID against the registration" },
        { "registration", "You checked the vehicle registration against the VIN" },
        { "terms", "The customer accepted the terms of the immobilizer reset" },
};

static int check_vin_argument(const char *vin) {
        const char *reason;

        if (vin_check_syntax(vin, &reason) < 0) {
                log_error("Invalid VIN \"%s\": %s", vin, reason);
                return IMMOCTL_EXIT_USAGE;
        }
        return 0;
}

/* Whether id is in the comma-separated list ("all" names every one). */
static bool list_has(const char *list, const char *id) {
        size_t n = strlen(id);

        if (!list)
                return false;
        if (streq(list, "all"))
                return true;
        for (const char *p = list; *p;) {
                size_t len = strcspn(p, ",");
                if (len == n && strncmp(p, id, n) == 0)
                        return true;
                p += len;
                if (*p == ',')
                        p++;
        }
        return false;
}

static int check_attestation_list(const char *list) {
        if (!list || streq(list, "all"))
                return 0;
        for (const char *p = list; *p;) {
                size_t len = strcspn(p, ",");
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(attestations); i++)
                        known = known || (strlen(attestations[i].id) == len && strncmp(p, attestations[i].id, len) == 0);
                if (!known) {
                        log_error("--attest takes customer_authority, photo_id, registration and terms "
                                  "(comma-separated) or \"all\", not \"%.*s\".",
                                  (int) len, p);
                        return IMMOCTL_EXIT_USAGE;
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        return 0;
}

/* Asks for a typed "yes" (blocking: nothing to follow meanwhile). */
static int ask_yes(Context *c, const char *question, bool *ret) {
        char answer[64];
        int r;

        printf("%s? Type \"yes\" to attest: ", question);
        fflush(stdout);
        for (;;) {
                r = input_take_line(&c->input, answer, sizeof(answer));
                if (r == 1)
                        break;
                if (r < 0 && r != -E2BIG) {
                        log_error("The input ended before an answer was given.");
                        return IMMOCTL_EXIT_USAGE;
                }
                r = input_fill(&c->input);
                if (r < 0)
                        return log_error_errno(r, "Failed to read the answer: %m");
        }
        *ret = input_is_confirmation(answer, "yes");
        return 0;
}

/* A new call of a Manager method that talks to the passcode service, after the login is
 * known. 0, or an exit status. */
static int approval_message(Context *c, const char *method, sd_bus_message **ret) {
        sd_bus *bus;
        int r;

        r = credentials_get(c);
        if (r != 0)
                return r < 0 ? IMMOCTL_EXIT_FAILURE : r;
        r = context_get_bus(c, &bus);
        if (r < 0)
                return IMMOCTL_EXIT_FAILURE;
        r = sd_bus_message_new_method_call(bus, ret, IMMOD_BUS_NAME, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE,
                                           method);
        return r < 0 ? log_oom() : 0;
}

/* Appends the credentials, calls, and reads the answer dictionary. 0, or an exit status. */
static int approval_call(Context *c, sd_bus_message *m, const char *action, json_t **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = credentials_append(c, m);
        if (r < 0)
                return log_error_errno(r, "Failed to build the %s() call: %m", sd_bus_message_get_member(m));
        r = sd_bus_call(c->bus, m, APPROVAL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return bus_log_error(&error, r, action);
        r = bus_message_read_json(reply, ret);
        if (r < 0)
                return log_error_errno(r, "Failed to read immod's answer to %s(): %m", sd_bus_message_get_member(m));
        return 0;
}

int verb_approval_request(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(json_decrefp) json_t *result = NULL;
        const char *vin = argv[2];
        bool attested[ELEMENTSOF(attestations)];
        int r;

        r = check_vin_argument(vin);
        if (r != 0)
                return r;
        r = check_attestation_list(c->attestations);
        if (r != 0)
                return r;
        if (!c->repair_order || !c->customer) {
                log_error("\"approval request\" needs --repair-order and --customer (the customer's last name).");
                return IMMOCTL_EXIT_USAGE;
        }
        if (c->n_approvers < 2) {
                log_error("\"approval request\" needs two managers who may approve: --approver ID twice.");
                return IMMOCTL_EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(attestations); i++) {
                attested[i] = list_has(c->attestations, attestations[i].id);
                if (attested[i])
                        continue;
                if (c->no_ask || !isatty(c->input.fd)) {
                        log_error("The attestation %s is missing: give --attest all (or the list) once it is true.",
                                  attestations[i].id);
                        return IMMOCTL_EXIT_USAGE;
                }
                r = ask_yes(c, attestations[i].question, &attested[i]);
                if (r != 0)
                        return r;
                if (!attested[i]) {
                        log_error("Not attested: %s. The service needs all four attestations.",
                                  attestations[i].question);
                        return IMMOCTL_EXIT_REFUSED;
                }
        }
        r = approval_message(c, "RequestApproval", &m);
        if (r != 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}{sv}", "vin", "s", vin, "repair_order", "s", c->repair_order,
                                          "customer_last_name", "s", c->customer);
        if (r >= 0 && c->technician)
                r = sd_bus_message_append(m, "{sv}", "technician", "s", c->technician);
        if (r >= 0 && c->dealer_code)
                r = sd_bus_message_append(m, "{sv}", "dealer_code", "s", c->dealer_code);
        if (r >= 0) {
                /* the two string arrays go in as strv */
                char *approvers[ELEMENTSOF(c->approvers) + 1] = {};
                char *ids[ELEMENTSOF(attestations) + 1] = {};
                for (unsigned i = 0; i < c->n_approvers; i++)
                        approvers[i] = (char *) c->approvers[i];
                for (size_t i = 0; i < ELEMENTSOF(attestations); i++)
                        ids[i] = (char *) attestations[i].id;
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "approvers");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, approvers);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "attestations");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, ids);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0)
                return log_error_errno(r, "Failed to build the RequestApproval() call: %m");
        r = approval_call(c, m, "request the approval", &result);
        if (r != 0)
                return r;
        if (c->json)
                return output_json_line(result);
        output_field("Request", "%s", json_get_string(result, "request_no") ?: "?");
        output_field("Status", "%s", json_get_string(result, "status") ?: "?");
        output_continuation("The managers named approve it on the passcode service; \"immoctl approval "
                            "status %s\" tells when.",
                            vin);
        return 0;
}

int verb_approval_status(Context *c, int argc, char **argv) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_(json_decrefp) json_t *result = NULL;
        const char *vin = argv[2];
        int r;

        r = check_vin_argument(vin);
        if (r != 0)
                return r;
        r = approval_message(c, "GetApproval", &m);
        if (r != 0)
                return r;
        r = sd_bus_message_append(m, "s", vin);
        if (r < 0)
                return log_error_errno(r, "Failed to build the GetApproval() call: %m");
        r = approval_call(c, m, "read the approval", &result);
        if (r != 0)
                return r;
        if (c->json)
                return output_json_line(result);

        const char *status = json_get_string(result, "status") ?: "?";
        output_field("VIN", "%s", vin);
        output_field("Status", "%s", streq(status, "none") ? "none (no reset request for this VIN)" : status);
        const char *v = json_get_string(result, "request_no");
        if (v && *v)
                output_field("Request", "%s", v);
        v = json_get_string(result, "approved_by");
        if (v && *v)
                output_field("Approved by", "%s", v);
        v = json_get_string(result, "valid_till");
        if (v && *v)
                output_field("Valid till", "%s", v);
        return 0;
}
