/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/random.h>

#include "bus-error.h"
#include "fetch-glue.h"
#include "hex.h"
#include "log.h"
#include "passcode-client.h"

#define PASSCODE_RETRIES_MAX 2U
#define PASSCODE_RETRY_FIRST_USEC (500U * USEC_PER_MSEC)
#define SERVER_TEXT_MAX 300U
#define URL_MAX 2048U

typedef enum CallKind {
        CALL_REQUEST_APPROVAL,
        CALL_GET_APPROVAL,
        CALL_FETCH,
} CallKind;

typedef enum CallStage {
        STAGE_LOGIN,
        STAGE_LOOKUP, /* GET /api/v1/reset-requests?vin= */
        STAGE_MAIN,
} CallStage;

struct PasscodeCall {
        PasscodeClient *client;
        PasscodeCall *prev, *next;
        CallKind kind;
        CallStage stage;
        char *login_body; /* holds the password: wiped as soon as the login is done */
        char *token;      /* wiped */
        char vin[18];
        /* "Idempotency-Key: ..." of a reset request: its retries are the same request at the
         * service, never a second one */
        char idempotency[64];
        json_t *body;
        unsigned attempt;
        FetchRequest *request;
        sd_event_source *retry;
        PasscodeCallback cb;
        void *userdata;
};

struct PasscodeClient {
        sd_event *event;
        const ServerConfig *server;
        char base[URL_MAX]; /* the configured URL without a trailing slash */
        FetchGlue *glue;
        ServerState state;
        ServerStateHandler state_handler;
        void *state_userdata;
        PasscodeCall *calls;
};

static const char *const server_state_table[_SERVER_STATE_MAX] = {
        [SERVER_STATE_UNCONFIGURED] = "unconfigured",
        [SERVER_STATE_UNKNOWN] = "unknown",
        [SERVER_STATE_REACHABLE] = "reachable",
        [SERVER_STATE_UNREACHABLE] = "unreachable",
};

DEFINE_STRING_TABLE_TO_STRING(server_state, ServerState, _SERVER_STATE_MAX)

static void wipe_free_string(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

static void client_set_state(PasscodeClient *c, ServerState s) {
        if (c->state == s)
                return;
        log_info("Passcode service %s: %s -> %s.", c->base, server_state_to_string(c->state), server_state_to_string(s));
        c->state = s;
        if (c->state_handler)
                c->state_handler(c, s, c->state_userdata);
}

/* Text from the server goes into D-Bus messages and logs: printable ASCII only, bounded. */
static void sanitize(const char *in, char *out, size_t n) {
        size_t i = 0;

        for (; in && *in && i + 1 < n; in++)
                out[i++] = *in >= 0x20 && *in <= 0x7e ? *in : '?';
        out[i] = 0;
}

/* A JSON string literal of s, appended at *p (the caller sized the buffer: 6 bytes per input byte + 2). */
static char *json_quote(char *p, const char *s) {
        *p++ = '"';
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if (*c == '"' || *c == '\\') {
                        *p++ = '\\';
                        *p++ = (char) *c;
                } else if (*c < 0x20) {
                        p += sprintf(p, "\\u%04x", *c);
                } else
                        *p++ = (char) *c;
        }
        *p++ = '"';
        return p;
}

/* {"user": ..., "password": ...} in memory of our own, so that it can be wiped. */
static char *login_body_new(const PasscodeCredentials *cred) {
        size_t n = 32 + 6 * (strlen(cred->user) + strlen(cred->password));
        char *b = malloc(n), *p;

        if (!b)
                return NULL;
        p = stpcpy(b, "{\"user\":");
        p = json_quote(p, cred->user);
        p = stpcpy(p, ",\"password\":");
        p = json_quote(p, cred->password);
        p = stpcpy(p, "}");
        return b;
}

static PasscodeCall *call_free(PasscodeCall *call) {
        if (!call)
                return NULL;
        if (call->prev)
                call->prev->next = call->next;
        else if (call->client->calls == call)
                call->client->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        fetch_request_cancel(call->request);
        sd_event_source_disable_unref(call->retry);
        wipe_free_string(call->login_body);
        wipe_free_string(call->token);
        json_decref(call->body);
        free(call);
        return NULL;
}

void passcode_call_cancel(PasscodeCall *call) {
        call_free(call);
}

static void call_finish(PasscodeCall *call, int error, const char *bus_error, json_t *json, const char *format, ...)
        _printf_(5, 6);
static void call_finish(PasscodeCall *call, int error, const char *bus_error, json_t *json, const char *format, ...) {
        char message[768] = "";
        PasscodeResult res = { .error = error, .bus_error = bus_error, .json = json };
        va_list ap;

        if (format) {
                va_start(ap, format);
                vsnprintf(message, sizeof(message), format, ap);
                va_end(ap);
        }
        res.message = message;
        if (error < 0)
                log_info("Passcode service call failed: %s: %s", bus_error, message);
        /* detach first: the callback may start other calls */
        PasscodeCallback cb = call->cb;
        void *userdata = call->userdata;
        call->cb = NULL;
        if (cb)
                cb(&res, userdata);
        call_free(call);
}

static const char *errno_describe(PasscodeClient *c, int error, char *buf, size_t n) {
        switch (error) {
        case -ECONNREFUSED:
                snprintf(buf, n, "nothing answers at %.*s (connection refused)", (int) 200, c->base);
                break;
        case -EHOSTUNREACH:
        case -ENETUNREACH:
                snprintf(buf, n, "the host of %.*s cannot be reached", (int) 200, c->base);
                break;
        case -ETIMEDOUT:
                snprintf(buf, n, "%.*s did not answer within %u seconds", 200, c->base,
                         c->server->timeout_s ?: CONFIG_DEFAULT_SERVER_TIMEOUT_S);
                break;
        case -EKEYREJECTED:
                snprintf(buf, n,
                         "TLS: the server's certificate is not trusted (not signed by the configured CA %.*s, or "
                         "issued for another host)",
                         (int) 200, c->server->ca_file ?: "of the system");
                break;
        case -EPROTO:
                snprintf(buf, n, "the TLS handshake or the HTTPS exchange with %.*s failed", (int) 200, c->base);
                break;
        case -ENOKEY:
                snprintf(buf, n, "TLS: the CA file or the client certificate of the configuration cannot be used");
                break;
        case -EFBIG:
                snprintf(buf, n, "its answer is larger than %u KiB", FETCH_BODY_MAX / 1024U);
                break;
        case -ECONNRESET:
                snprintf(buf, n, "the connection to %.*s was lost", (int) 200, c->base);
                break;
        case -EPROTONOSUPPORT:
                snprintf(buf, n, "the URL %.*s is not one this box may use (https only)", (int) 200, c->base);
                break;
        case -EBADMSG:
                snprintf(buf, n, "its answer is not the JSON the API describes");
                break;
        case -ENOEXEC:
        case -EIO:
                snprintf(buf, n, "immod's HTTPS helper %s (immod's log says why)",
                         error == -ENOEXEC ? "cannot be started" : "failed");
                break;
        default:
                snprintf(buf, n, "%s", strerror(-error));
        }
        return buf;
}

static void call_unreachable(PasscodeCall *call, int error) {
        char what[512];

        client_set_state(call->client, SERVER_STATE_UNREACHABLE);
        call_finish(call, error, IMMOD_ERROR_SERVER_UNREACHABLE, NULL,
                    "The passcode service cannot be used: %s. A passcode can still be entered by hand (SubmitPasscode).",
                    errno_describe(call->client, error, what, sizeof(what)));
}

/* A 4xx answer: the service said no, and why. */
static void call_refused(PasscodeCall *call, long status, json_t *json) {
        const char *id = json_string_value(json_object_get(json, "error"));
        char msg[SERVER_TEXT_MAX + 1], field[33], eid[65];

        sanitize(json_string_value(json_object_get(json, "message")), msg, sizeof(msg));
        sanitize(json_string_value(json_object_get(json, "field")), field, sizeof(field));
        sanitize(id, eid, sizeof(eid));
        if (!id)
                return call_finish(call, -EREMOTEIO, IMMOD_ERROR_SERVER_REFUSED, NULL,
                                   "The passcode service refused the request (HTTP %ld).", status);
        if (streq(id, "unauthenticated"))
                return call_finish(call, -EACCES, IMMOD_ERROR_AUTHENTICATION_FAILED, NULL,
                                   "The passcode service did not accept the user name and password: %s", msg);
        if (streq(id, "approval-required"))
                return call_finish(call, -ENOENT, IMMOD_ERROR_APPROVAL_REQUIRED, NULL,
                                   "No approved reset request holds for this vehicle; ask for one (RequestApproval) "
                                   "and have a manager approve it. The service says: %s",
                                   msg);
        if (streq(id, "approval-pending"))
                return call_finish(call, -EAGAIN, IMMOD_ERROR_APPROVAL_PENDING,
                                   NULL, "The reset request waits for a manager's approval. The service says: %s", msg);
        /* No approval holds any more: a new request is the way out, as for approval-required. */
        if (streq(id, "approval-denied"))
                return call_finish(call, -ENOENT, IMMOD_ERROR_APPROVAL_REQUIRED, NULL,
                                   "A manager denied the reset request for this vehicle; a new request is needed "
                                   "(RequestApproval). The service says: %s",
                                   msg);
        if (streq(id, "approval-expired"))
                return call_finish(call, -ENOENT, IMMOD_ERROR_APPROVAL_REQUIRED, NULL,
                                   "The reset approval for this vehicle no longer holds (it expired, or the repair "
                                   "was completed); ask for a new one (RequestApproval). The service says: %s",
                                   msg);
        if (streq(id, "check-character-mismatch"))
                return call_finish(call, -EREMOTEIO, IMMOD_ERROR_SERVER_REFUSED, NULL,
                                   "The passcode service found a wrong check character in field %s: %s",
                                   field[0] ? field : "?", msg);
        return call_finish(call, -EREMOTEIO, IMMOD_ERROR_SERVER_REFUSED, NULL,
                           "The passcode service refused (%s): %s", eid, msg);
}

static int call_send(PasscodeCall *call);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        PasscodeCall *call = userdata;

        int r;

        call->retry = sd_event_source_disable_unref(call->retry);
        r = call_send(call);
        if (r < 0)
                call_unreachable(call, r);
        return 0;
}

/* 1 when a retry is under way. */
static int call_maybe_retry(PasscodeCall *call, const char *why) {
        usec_t delay = PASSCODE_RETRY_FIRST_USEC;
        int r;

        if (call->attempt >= PASSCODE_RETRIES_MAX)
                return 0;
        for (unsigned i = 0; i < call->attempt; i++)
                delay *= 3;
        call->attempt++;
        r = sd_event_add_time_relative(call->client->event, &call->retry, CLOCK_MONOTONIC, delay, USEC_PER_MSEC,
                                       on_retry, call);
        if (r < 0)
                return 0;
        (void) sd_event_source_set_description(call->retry, "passcode-retry");
        log_info("Passcode service: %s; retry %u of %u in %llu ms.", why, call->attempt, PASSCODE_RETRIES_MAX,
                 (unsigned long long) (delay / USEC_PER_MSEC));
        return 1;
}

static bool error_is_transient(int error) {
        /* Connecting failed or the connection broke: worth another try. A timeout is not
         * retried (it already took the configured time), nor TLS trouble nor oversize. */
        return error == -ECONNREFUSED || error == -ECONNRESET || error == -EHOSTUNREACH || error == -ENETUNREACH;
}

static void call_next_stage(PasscodeCall *call, json_t *answer);

static void on_response(int error, long status, const char *body, size_t size, void *userdata) {
        PasscodeCall *call = userdata;
        char why[64];
        json_t *json;

        call->request = NULL; /* fetch-glue frees it after this returns */
        if (error < 0) {
                if (error_is_transient(error) && call_maybe_retry(call, strerror(-error)) > 0)
                        return;
                return call_unreachable(call, error);
        }
        if (status >= 500) {
                snprintf(why, sizeof(why), "HTTP %ld", status);
                if (call_maybe_retry(call, why) > 0)
                        return;
                client_set_state(call->client, SERVER_STATE_UNREACHABLE);
                json = json_loadb(body, size, 0, NULL);
                char msg[SERVER_TEXT_MAX + 1];
                sanitize(json_string_value(json_object_get(json, "message")), msg, sizeof(msg));
                json_decref(json);
                return call_finish(call, -EREMOTEIO, IMMOD_ERROR_SERVER_UNREACHABLE, NULL,
                                   "The passcode service failed (HTTP %ld%s%s). A passcode can still be entered by "
                                   "hand (SubmitPasscode).",
                                   status, msg[0] ? ": " : "", msg);
        }

        call->attempt = 0;
        json = json_loadb(body, size, JSON_REJECT_DUPLICATES, NULL);
        if (status >= 400) {
                client_set_state(call->client, SERVER_STATE_REACHABLE);
                call_refused(call, status, json);
                json_decref(json);
                return;
        }
        if (status < 200 || status > 299 || !json_is_object(json)) {
                json_decref(json);
                return call_unreachable(call, -EBADMSG);
        }
        client_set_state(call->client, SERVER_STATE_REACHABLE);
        call_next_stage(call, json);
        json_decref(json);
}

/* Starts the HTTP request of the current stage; the call's callback is not called here. */
static int call_send(PasscodeCall *call) {
        PasscodeClient *c = call->client;
        _cleanup_free_ char *dump = NULL;
        char url[URL_MAX + 128];
        const char *method = "POST", *body = NULL;

        switch (call->stage) {
        case STAGE_LOGIN:
                snprintf(url, sizeof(url), "%s/api/v1/login", c->base);
                body = call->login_body;
                break;
        case STAGE_LOOKUP:
                /* the VIN was checked: letters and digits only, nothing to escape */
                snprintf(url, sizeof(url), "%s/api/v1/reset-requests?vin=%s", c->base, call->vin);
                method = "GET";
                break;
        case STAGE_MAIN:
                snprintf(url, sizeof(url), "%s/api/v1/%s", c->base,
                         call->kind == CALL_REQUEST_APPROVAL ? "reset-requests" : "passcodes");
                dump = json_dumps(call->body, JSON_COMPACT);
                if (!dump)
                        return -ENOMEM;
                body = dump;
                break;
        }
        return fetch_glue_request(c->glue, method, url, body, call->token,
                                  call->stage == STAGE_MAIN && call->idempotency[0] ? call->idempotency : NULL,
                                  on_response, call, &call->request);
}

static void call_send_or_fail(PasscodeCall *call) {
        int r = call_send(call);
        if (r < 0)
                call_unreachable(call, r);
}

/* The newest request of the VIN that is approved, else the newest; NULL when none. */
static json_t *pick_request(json_t *list, bool approved_only) {
        size_t i;
        json_t *v;

        json_array_foreach(list, i, v) {
                if (!json_is_object(v) || !json_is_string(json_object_get(v, "request_no")))
                        continue;
                if (!approved_only || streq(json_string_value(json_object_get(v, "status")) ?: "", "approved"))
                        return v;
        }
        return NULL;
}

static void call_next_stage(PasscodeCall *call, json_t *answer) {
        json_t *list, *q;
        const char *token;

        switch (call->stage) {
        case STAGE_LOGIN:
                wipe_free_string(call->login_body);
                call->login_body = NULL;
                token = json_string_value(json_object_get(answer, "token"));
                if (!token || !*token)
                        return call_unreachable(call, -EBADMSG);
                call->token = strdup(token);
                if (!call->token)
                        return call_finish(call, -ENOMEM, SD_BUS_ERROR_NO_MEMORY, NULL, "Out of memory.");
                call->stage = call->kind == CALL_REQUEST_APPROVAL ? STAGE_MAIN : STAGE_LOOKUP;
                if (call->kind == CALL_FETCH && !call->vin[0])
                        call->stage = STAGE_MAIN;
                return call_send_or_fail(call);

        case STAGE_LOOKUP:
                list = json_object_get(answer, "requests");
                if (!json_is_array(list))
                        return call_unreachable(call, -EBADMSG);
                if (call->kind == CALL_GET_APPROVAL)
                        return call_finish(call, 0, NULL, pick_request(list, false), NULL);
                q = pick_request(list, true) ?: pick_request(list, false);
                if (!q)
                        return call_finish(call, -ENOENT, IMMOD_ERROR_APPROVAL_REQUIRED, NULL,
                                           "There is no reset request for %s at the passcode service; ask for one "
                                           "(RequestApproval) and have a manager approve it.",
                                           call->vin);
                if (json_object_set(call->body, "request_no", json_object_get(q, "request_no")) < 0)
                        return call_finish(call, -ENOMEM, SD_BUS_ERROR_NO_MEMORY, NULL, "Out of memory.");
                call->stage = STAGE_MAIN;
                return call_send_or_fail(call);

        case STAGE_MAIN:
                if (call->kind == CALL_REQUEST_APPROVAL) {
                        if (!json_is_string(json_object_get(answer, "request_no")))
                                return call_unreachable(call, -EBADMSG);
                } else if (!json_is_string(json_object_get(answer, "passcode")))
                        return call_unreachable(call, -EBADMSG);
                return call_finish(call, 0, NULL, answer, NULL);
        }
}

static int call_start(PasscodeClient *c, CallKind kind, const PasscodeCredentials *cred, const char *vin, json_t *body,
                      PasscodeCallback cb, void *userdata, PasscodeCall **ret) {
        PasscodeCall *call;
        int r;

        call = calloc(1, sizeof(*call));
        if (!call) {
                json_decref(body);
                return -ENOMEM;
        }
        call->client = c;
        call->kind = kind;
        call->body = body;
        call->cb = cb;
        call->userdata = userdata;
        if (vin)
                snprintf(call->vin, sizeof(call->vin), "%s", vin);
        if (kind == CALL_REQUEST_APPROVAL) {
                uint8_t key[16];
                char hex[sizeof(key) * 2 + 1];
                if (getrandom(key, sizeof(key), 0) == (ssize_t) sizeof(key)) {
                        hex_encode(key, sizeof(key), false, hex);
                        snprintf(call->idempotency, sizeof(call->idempotency), "Idempotency-Key: %s", hex);
                }
        }
        call->login_body = login_body_new(cred);
        if (!call->login_body) {
                call_free(call);
                return -ENOMEM;
        }
        call->next = c->calls;
        if (c->calls)
                c->calls->prev = call;
        c->calls = call;
        call->stage = STAGE_LOGIN;
        r = call_send(call);
        if (r < 0) {
                call_free(call);
                return r;
        }
        if (ret)
                *ret = call;
        return 0;
}

int passcode_client_request_approval(PasscodeClient *c, const PasscodeCredentials *cred, json_t *body,
                                     PasscodeCallback cb, void *userdata, PasscodeCall **ret) {
        return call_start(c, CALL_REQUEST_APPROVAL, cred, NULL, body, cb, userdata, ret);
}

int passcode_client_get_approval(PasscodeClient *c, const PasscodeCredentials *cred, const char *vin,
                                 PasscodeCallback cb, void *userdata, PasscodeCall **ret) {
        return call_start(c, CALL_GET_APPROVAL, cred, vin, NULL, cb, userdata, ret);
}

int passcode_client_fetch(PasscodeClient *c, const PasscodeCredentials *cred, json_t *body, PasscodeCallback cb,
                          void *userdata, PasscodeCall **ret) {
        const char *kind = json_string_value(json_object_get(body, "kind"));
        const char *vin = NULL;

        if (kind && streq(kind, "immobilizer"))
                vin = json_string_value(json_object_get(body, "vin"));
        return call_start(c, CALL_FETCH, cred, vin, body, cb, userdata, ret);
}

int passcode_client_new(sd_event *e, const ServerConfig *server, PasscodeClient **ret) {
        PasscodeClient *c;
        size_t n;
        int r;

        if (!server->url)
                return -EINVAL;
        n = strlen(server->url);
        while (n > 0 && server->url[n - 1] == '/')
                n--;
        if (n == 0 || n >= URL_MAX)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->server = server;
        memcpy(c->base, server->url, n);
        c->state = SERVER_STATE_UNKNOWN;
        r = fetch_glue_new(e, server, &c->glue);
        if (r < 0) {
                passcode_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

PasscodeClient *passcode_client_free(PasscodeClient *c) {
        if (!c)
                return NULL;
        c->state_handler = NULL;
        while (c->calls)
                call_finish(c->calls, -ECANCELED, IMMOD_ERROR_CANCELLED, NULL, "immod is shutting down.");
        c->glue = fetch_glue_free(c->glue);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

ServerState passcode_client_state(const PasscodeClient *c) {
        return c ? c->state : SERVER_STATE_UNCONFIGURED;
}

void passcode_client_set_state_handler(PasscodeClient *c, ServerStateHandler h, void *userdata) {
        c->state_handler = h;
        c->state_userdata = userdata;
}
