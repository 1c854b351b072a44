/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The passcode service's API (passcode-service.md) on top of fetch-glue: every call logs in
 * with the technician's credentials (the password goes into one login body, which is wiped
 * once sent; it is never stored or logged), then makes the call with the token. Connection
 * failures and 5xx answers are retried a bounded number of times with a backoff; 4xx never.
 * Each outcome is mapped to a D-Bus error name of bus-error.h and a sentence for the
 * technician.
 */

#include <jansson.h>
#include <systemd/sd-event.h>

#include "config.h"

typedef enum ServerState {
        SERVER_STATE_UNCONFIGURED,
        SERVER_STATE_UNKNOWN,     /* not asked yet */
        SERVER_STATE_REACHABLE,   /* the last call got an answer from the service */
        SERVER_STATE_UNREACHABLE, /* the last call did not (connection, TLS, timeout, 5xx, garbage) */
        _SERVER_STATE_MAX,
} ServerState;

const char *server_state_to_string(ServerState s);

typedef struct PasscodeClient PasscodeClient;
typedef struct PasscodeCall PasscodeCall;

typedef struct PasscodeCredentials {
        const char *user;
        const char *password;
} PasscodeCredentials;

/*
 * error 0: json is the answer (borrowed for the callback): RequestApproval's {request_no,
 * status}, GetApproval's newest request of the VIN (NULL when there is none), a passcode
 * call's {passcode, transaction_id}. Otherwise bus_error and message say what went wrong.
 */
typedef struct PasscodeResult {
        int error;
        const char *bus_error;
        const char *message;
        json_t *json;
} PasscodeResult;

typedef void (*PasscodeCallback)(const PasscodeResult *result, void *userdata);
typedef void (*ServerStateHandler)(PasscodeClient *c, ServerState s, void *userdata);

int passcode_client_new(sd_event *e, const ServerConfig *server, PasscodeClient **ret);
/* Calls still out end with IMMOD_ERROR_CANCELLED through their callbacks. */
PasscodeClient *passcode_client_free(PasscodeClient *c);

ServerState passcode_client_state(const PasscodeClient *c);
void passcode_client_set_state_handler(PasscodeClient *c, ServerStateHandler h, void *userdata);

/* body: the reset request as passcode-service.md has it; the call takes it over. */
int passcode_client_request_approval(PasscodeClient *c, const PasscodeCredentials *cred, json_t *body,
                                     PasscodeCallback cb, void *userdata, PasscodeCall **ret);
int passcode_client_get_approval(PasscodeClient *c, const PasscodeCredentials *cred, const char *vin,
                                 PasscodeCallback cb, void *userdata, PasscodeCall **ret);
/*
 * body: POST /api/v1/passcodes's, taken over. For kind immobilizer the request_no is looked
 * up first: the approved request of the VIN, else the newest (whose state the service then
 * explains); none at all is ApprovalRequired.
 */
int passcode_client_fetch(PasscodeClient *c, const PasscodeCredentials *cred, json_t *body, PasscodeCallback cb,
                          void *userdata, PasscodeCall **ret);
/* Drops a call without calling its callback. */
void passcode_call_cancel(PasscodeCall *call);
