/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "api.h"
#include "checkchar.h"
#include "hex.h"
#include "log.h"
#include "passcode.h"
#include "password.h"
#include "report.h"
#include "vin.h"

/* The instance keeps nothing that another instance would need: sessions, the login rate
 * limit, requests and retries live in the database. Each HTTP worker thread has its own
 * database connection, opened at its first request and closed when the thread ends. */
struct Api {
        const ServerConfig *config;
        pthread_key_t conn_key;
        uint8_t master_key[PASSCODE_KEY_SIZE];
};

/* The calling thread's connection, set by api_handle() for the request it handles. */
static __thread Db *thread_db;
#define DB(a) (thread_db)

static void db_key_destroy(void *p) {
        db_close(p);
}

/* What a handler knows about the caller once authenticated. */
typedef struct Caller {
        DbUser user;
} Caller;

int api_new(const ServerConfig *c, const uint8_t master_key[32], Api **ret) {
        Api *a = calloc(1, sizeof *a);

        if (!a)
                return -ENOMEM;
        a->config = c;
        if (pthread_key_create(&a->conn_key, db_key_destroy) != 0) {
                free(a);
                return -EAGAIN;
        }
        memcpy(a->master_key, master_key, PASSCODE_KEY_SIZE);
        *ret = a;
        return 0;
}

Api *api_free(Api *a) {
        if (a) {
                explicit_bzero(a->master_key, sizeof a->master_key);
                pthread_key_delete(a->conn_key); /* the workers closed their connections as they ended */
                free(a);
        }
        return NULL;
}

int api_sync_users(const ServerConfig *c, Db *db) {
        int r;

        for (size_t i = 0; i < c->n_users; i++) {
                const ConfigUser *cu = &c->users[i];
                DbUser u = { .role = cu->role };

                snprintf(u.id, sizeof u.id, "%s", cu->id);
                snprintf(u.name, sizeof u.name, "%s", cu->name);
                snprintf(u.dealer, sizeof u.dealer, "%s", cu->dealer);
                snprintf(u.title, sizeof u.title, "%s", cu->title);
                snprintf(u.password_hash, sizeof u.password_hash, "%s", cu->password_hash);
                r = db_user_put(db, &u, false);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int64_t now_sec(void) {
        return (int64_t) time(NULL);
}

static void random_id(const char *prefix, size_t nbytes, char *buf, size_t size) {
        uint8_t b[12];
        char h[25];

        nbytes = MIN(nbytes, sizeof b);
        if (random_bytes(b, nbytes) < 0)
                abort(); /* getrandom() does not fail once the pool is ready */
        hex_encode(b, nbytes, true, h);
        snprintf(buf, size, "%s%s", prefix, h);
}

static void sha256_hex(const void *data, size_t size, char ret[65]) {
        uint8_t d[32];

        if (sha256(data, size, d) < 0)
                memset(d, 0, sizeof d);
        hex_encode(d, sizeof d, false, ret);
}

static void reply_internal(HttpReply *reply, int r) {
        log_error_errno(r, "Request failed: %m");
        http_reply_error(reply, 500, "internal-error", "The service could not complete the request; try again.");
}

/* Body fields */

/* A string field of 1..max bytes without control characters; replies and returns < 0 otherwise. */
static int body_text(const HttpRequest *req, HttpReply *reply, const char *key, size_t max, const char **ret) {
        json_t *v = json_object_get(req->body, key);
        const char *s;

        if (!v) {
                http_reply_error(reply, 400, "invalid-request", "The field \"%s\" is missing.", key);
                return -EINVAL;
        }
        s = json_string_value(v);
        if (!s || !text_valid(s, max)) {
                http_reply_error(reply, 400, "invalid-request",
                                 "The field \"%s\" must be a string of 1 to %zu characters without control characters.", key, max);
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

static int body_vin(const HttpRequest *req, HttpReply *reply, const char **ret) {
        json_t *v = json_object_get(req->body, "vin");
        const char *s = json_string_value(v), *reason = NULL;

        if (!s || strlen(s) > 32 || vin_check_syntax(s, &reason) < 0) {
                http_reply_error(reply, 400, "invalid-vin", "%s", reason ? reason : "The field \"vin\" must be a VIN of 17 characters.");
                return -EINVAL;
        }
        *ret = s;
        return 0;
}

/* All the named attestations must be true. */
static int body_attestations(const HttpRequest *req, HttpReply *reply, const char *const *names) {
        json_t *a = json_object_get(req->body, "attestations");
        char missing[256] = "";

        for (size_t i = 0; names[i]; i++)
                if (!json_is_true(json_object_get(a, names[i])))
                        snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s",
                                 missing[0] ? ", " : "", names[i]);
        if (missing[0]) {
                http_reply_error(reply, 400, "attestation-missing", "These attestations must be given (true): %s.", missing);
                return -EINVAL;
        }
        return 0;
}

/* Authentication and dealers */

static int authenticate(Api *a, const HttpRequest *req, HttpReply *reply, Caller *ret) {
        char digest[65], user[CONFIG_ID_MAX + 1];
        int r;

        if (!req->bearer) {
                http_reply_error(reply, 401, "unauthenticated", "Log in first and send the token as \"Authorization: Bearer\".");
                return -EACCES;
        }
        sha256_hex(req->bearer, strlen(req->bearer), digest);
        r = db_session_get(DB(a), digest, now_sec(), user);
        if (r >= 0)
                r = db_user_get(DB(a), user, &ret->user);
        if (r == -ENOENT || (r >= 0 && ret->user.removed)) {
                http_reply_error(reply, 401, "unauthenticated", "The token is unknown or expired; log in again.");
                return -EACCES;
        }
        if (r < 0) {
                reply_internal(reply, r);
                return r;
        }
        return 0;
}

static bool is_approver(const DbUser *u) {
        return !u->removed && u->role == USER_MANAGER && title_is_approving(u->title);
}

/* The enrolled approving managers of a dealer; -ENOENT with a reply when the dealer is unknown. */
static int dealer_approvers(Api *a, const char *dealer, DbUser **ret, size_t *ret_n) {
        _cleanup_free_ DbUser *users = NULL;
        size_t n = 0, k = 0;
        int r;

        r = db_users_list(DB(a), dealer, &users, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (is_approver(&users[i]))
                        users[k++] = users[i];
        *ret = TAKE_PTR(users);
        *ret_n = k;
        return 0;
}

/* Rule 1: a dealer needs two enrolled approving managers before anything is issued. */
static int check_dealer_two_approvers(Api *a, const char *dealer, HttpReply *reply) {
        _cleanup_free_ DbUser *approvers = NULL;
        size_t n;
        int r;

        r = dealer_approvers(a, dealer, &approvers, &n);
        if (r < 0) {
                reply_internal(reply, r);
                return r;
        }
        if (n < 2) {
                http_reply_error(reply, 409, "dealer-needs-two-approvers",
                                 "Dealer %s has %zu enrolled approving manager%s; at least two are needed.", dealer, n,
                                 n == 1 ? "" : "s");
                return -EPERM;
        }
        return 0;
}

/* pending, approved, denied, completed, or expired once an approval's time is over. */
static const char *request_status(const DbRequest *q, int64_t now) {
        if (streq(q->status, "approved") && now >= q->valid_till)
                return "expired";
        return q->status;
}

/* The request as the API shows it; the technician's name too, for the pages. */
static json_t *request_to_json(Api *a, const DbRequest *q) {
        json_t *approvers = json_array();
        char approved_at[32], valid_till[32], created_at[32];
        DbUser tech;

        if (db_user_get(DB(a), q->technician, &tech) < 0)
                snprintf(tech.name, sizeof tech.name, "%s", q->technician);

        for (size_t i = 0; i < q->n_approvers; i++)
                json_array_append_new(approvers, json_string(q->approvers[i]));
        format_time(q->approved_at, approved_at);
        format_time(q->valid_till, valid_till);
        format_time(q->created_at, created_at);
        /* approved_by names an approval only; decided_by the manager who approved or denied */
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s?, s:s?, s:s?, s:s?}",
                         "request_no", q->request_no,
                         "dealer_code", q->dealer,
                         "vin", q->vin,
                         "status", request_status(q, now_sec()),
                         "technician", q->technician,
                         "technician_name", tech.name,
                         "repair_order", q->repair_order,
                         "customer_last_name", q->customer,
                         "created_at", created_at,
                         "approvers", approvers,
                         "approved_by", q->approved_by[0] && q->approved_at ? q->approved_by : NULL,
                         "decided_by", q->approved_by[0] ? q->approved_by : NULL,
                         "approved_at", streq(q->status, "denied") || !q->approved_at ? NULL : approved_at,
                         "valid_till", q->valid_till ? valid_till : NULL);
}

/* Endpoints */

static void handle_login(Api *a, const HttpRequest *req, HttpReply *reply) {
        const char *user, *password;
        char token[65], digest[65], expires[32];
        uint8_t raw[32];
        int64_t now = now_sec(), expires_at, since;
        unsigned failures;
        DbUser u;
        int r;

        if (body_text(req, reply, "user", CONFIG_ID_MAX, &user) < 0)
                return;
        password = json_string_value(json_object_get(req->body, "password"));
        if (!password || strlen(password) > PASSWORD_MAX) {
                http_reply_error(reply, 400, "invalid-request", "The field \"password\" must be a string.");
                return;
        }
        r = db_login_failures_get(DB(a), user, now, API_LOGIN_WINDOW_SEC, &failures, &since);
        if (r < 0)
                return reply_internal(reply, r);
        if (failures >= API_LOGIN_FAILURES_MAX) {
                http_reply_error(reply, 429, "rate-limited", "Too many failed logins for %s; try again in %lld minutes.",
                                 user, (long long) (API_LOGIN_WINDOW_SEC - (now - since) + 59) / 60);
                return;
        }
        r = db_user_get(DB(a), user, &u);
        if (r < 0 && r != -ENOENT)
                return reply_internal(reply, r);
        if (r == -ENOENT || u.removed || password_verify(password, u.password_hash) <= 0) {
                r = db_login_failure_add(DB(a), user, now, API_LOGIN_WINDOW_SEC);
                if (r < 0)
                        return reply_internal(reply, r);
                http_reply_error(reply, 401, "unauthenticated", "Unknown user or wrong password.");
                return;
        }
        if (failures > 0) {
                r = db_login_failures_clear(DB(a), user);
                if (r < 0)
                        return reply_internal(reply, r);
        }

        if (random_bytes(raw, sizeof raw) < 0)
                return reply_internal(reply, -EIO);
        hex_encode(raw, sizeof raw, false, token);
        sha256_hex(token, strlen(token), digest);
        expires_at = now + (int64_t) a->config->session_hours * 3600;
        r = db_session_add(DB(a), digest, u.id, expires_at);
        if (r < 0)
                return reply_internal(reply, r);
        format_time(expires_at, expires);
        reply->json = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "token", token, "expires_at", expires, "user", u.id,
                                "dealer", u.dealer, "role", user_role_to_string(u.role), "name", u.name);
}

static void handle_approvers(Api *a, const Caller *caller, const char *dealer, HttpReply *reply) {
        _cleanup_free_ DbUser *approvers = NULL;
        json_t *list;
        size_t n;
        int r;

        if (!server_config_find_dealer(a->config, dealer))
                return http_reply_error(reply, 404, "not-found", "There is no dealer %.32s.", dealer);
        if (!streq(caller->user.dealer, dealer))
                return http_reply_error(reply, 403, "forbidden", "%s is not enrolled at dealer %s.", caller->user.id, dealer);
        r = dealer_approvers(a, dealer, &approvers, &n);
        if (r < 0)
                return reply_internal(reply, r);
        list = json_array();
        for (size_t i = 0; i < n; i++)
                if (!streq(approvers[i].id, caller->user.id)) /* nobody approves his own request */
                        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "id", approvers[i].id, "name",
                                                              approvers[i].name, "title", approvers[i].title));
        reply->json = json_pack("{s:o}", "approvers", list);
}

static void handle_request_create(Api *a, const Caller *caller, const HttpRequest *req, HttpReply *reply) {
        static const char *const attestations[] = { "customer_authority", "photo_id", "registration", "terms", NULL };
        _cleanup_free_ DbUser *approvers = NULL;
        _cleanup_free_ char *text = NULL;
        const char *dealer, *technician, *vin, *ro, *customer;
        char approver_list[DB_APPROVERS_MAX * (CONFIG_ID_MAX + 1) + 1] = "";
        DbRequest q = {}, old;
        size_t n_approvers;
        json_t *list, *v;
        size_t i;
        int r;

        if (body_text(req, reply, "dealer_code", CONFIG_DEALER_MAX, &dealer) < 0)
                return;
        if (!server_config_find_dealer(a->config, dealer))
                return http_reply_error(reply, 404, "not-found", "There is no dealer %s.", dealer);
        if (!streq(caller->user.dealer, dealer))
                return http_reply_error(reply, 403, "forbidden", "%s is not enrolled at dealer %s.", caller->user.id, dealer);
        if (body_text(req, reply, "technician", CONFIG_ID_MAX, &technician) < 0)
                return;
        if (!streq(technician, caller->user.id))
                return http_reply_error(reply, 403, "forbidden", "A request is made by the logged-in user (%s), not by %s.",
                                        caller->user.id, technician);
        if (body_vin(req, reply, &vin) < 0 || body_text(req, reply, "repair_order", DB_TEXT_MAX, &ro) < 0 ||
            body_text(req, reply, "customer_last_name", DB_TEXT_MAX, &customer) < 0)
                return;
        if (body_attestations(req, reply, attestations) < 0)
                return;
        if (check_dealer_two_approvers(a, dealer, reply) < 0)
                return;

        list = json_object_get(req->body, "approvers");
        if (!json_is_array(list) || json_array_size(list) > DB_APPROVERS_MAX)
                return http_reply_error(reply, 400, "invalid-request",
                                        "The field \"approvers\" must be a list of at most %d user ids.", DB_APPROVERS_MAX);
        r = dealer_approvers(a, dealer, &approvers, &n_approvers);
        if (r < 0)
                return reply_internal(reply, r);
        json_array_foreach(list, i, v) {
                const char *id = json_string_value(v);
                bool ok = false, dup = false;

                if (!id || !user_id_valid(id))
                        return http_reply_error(reply, 400, "invalid-request", "The approvers must be user ids.");
                if (streq(id, caller->user.id))
                        return http_reply_error(reply, 403, "self-approval",
                                                "The requester cannot be one of the selected managers.");
                for (size_t j = 0; j < n_approvers; j++)
                        if (streq(approvers[j].id, id))
                                ok = true;
                if (!ok)
                        return http_reply_error(reply, 400, "invalid-approver",
                                                "%s is not an enrolled approving manager of dealer %s.", id, dealer);
                for (size_t j = 0; j < q.n_approvers; j++)
                        if (streq(q.approvers[j], id))
                                dup = true;
                if (!dup)
                        snprintf(q.approvers[q.n_approvers++], sizeof q.approvers[0], "%s", id);
        }
        if (q.n_approvers < 2)
                return http_reply_error(reply, 400, "too-few-approvers-selected",
                                        "Select at least two managers (other than the requester); %zu selected.", q.n_approvers);

        random_id("RR-", 6, q.request_no, sizeof q.request_no);
        snprintf(q.dealer, sizeof q.dealer, "%s", dealer);
        snprintf(q.technician, sizeof q.technician, "%s", caller->user.id);
        snprintf(q.vin, sizeof q.vin, "%s", vin);
        snprintf(q.repair_order, sizeof q.repair_order, "%s", ro);
        snprintf(q.customer, sizeof q.customer, "%s", customer);
        snprintf(q.status, sizeof q.status, "pending");
        q.created_at = now_sec();

        /* A retry after a lost answer (the same Idempotency-Key, or without one the same
         * request within API_RETRY_WINDOW_SEC while it is open) gets the first request back. */
        for (size_t j = 0; j < q.n_approvers; j++)
                snprintf(approver_list + strlen(approver_list), sizeof approver_list - strlen(approver_list), "%s\n",
                         q.approvers[j]);
        if (asprintf(&text, "reset-request\n%s\n%s\n%s\n%s\n%s\n%s", dealer, caller->user.id, vin, ro, customer,
                     approver_list) < 0)
                return reply_internal(reply, -ENOMEM);
        sha256_hex(text, strlen(text), q.request_digest);
        if (req->idempotency_key)
                snprintf(q.idempotency_key, sizeof q.idempotency_key, "%s", req->idempotency_key);
        r = db_request_add_once(DB(a), &q, q.created_at - API_RETRY_WINDOW_SEC, &old);
        if (r == -EILSEQ)
                return http_reply_error(reply, 422, "idempotency-key-reused",
                                        "The Idempotency-Key was used for a different reset request.");
        if (r < 0)
                return reply_internal(reply, r);
        if (r > 0) {
                log_info("Reset request retried: %s answered again.", old.request_no);
                q = old;
        } else
                log_info("Reset request %s for %s by %s at %s.", q.request_no, q.vin, q.technician, q.dealer);
        reply->status = 201;
        reply->json = json_pack("{s:s, s:s}", "request_no", q.request_no, "status", request_status(&q, now_sec()));
}

static void handle_request_list(Api *a, const Caller *caller, const HttpRequest *req, HttpReply *reply) {
        _cleanup_free_ DbRequest *q = NULL;
        const char *vin = http_request_query(req, "vin"), *reason = NULL;
        json_t *list;
        size_t n;
        int r;

        if (vin && vin_check_syntax(vin, &reason) < 0)
                return http_reply_error(reply, 400, "invalid-vin", "%s", reason);
        r = db_requests_list(DB(a), caller->user.dealer, vin, 200, &q, &n);
        if (r < 0)
                return reply_internal(reply, r);
        list = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(list, request_to_json(a, &q[i]));
        reply->json = json_pack("{s:o}", "requests", list);
}

/* The request of the caller's dealer, or a 404 reply. */
static int find_request(Api *a, const Caller *caller, const char *no, HttpReply *reply, DbRequest *ret) {
        int r = strlen(no) < sizeof ret->request_no ? db_request_get(DB(a), no, ret) : -ENOENT;

        if (r == -ENOENT || (r >= 0 && !streq(ret->dealer, caller->user.dealer))) {
                http_reply_error(reply, 404, "not-found", "There is no reset request %.32s at dealer %s.", no,
                                 caller->user.dealer);
                return -ENOENT;
        }
        if (r < 0) {
                reply_internal(reply, r);
                return r;
        }
        return 0;
}

static void handle_request_get(Api *a, const Caller *caller, const char *no, HttpReply *reply) {
        DbRequest q;

        if (find_request(a, caller, no, reply, &q) < 0)
                return;
        reply->json = request_to_json(a, &q);
}

static void handle_decision(Api *a, const Caller *caller, const char *no, const HttpRequest *req, HttpReply *reply) {
        static const char *const attestations[] = { "details_verified", "nicb_notice", "terms", NULL };
        const char *decision;
        char valid_till[32];
        bool selected = false;
        DbRequest q;
        int r;

        if (find_request(a, caller, no, reply, &q) < 0)
                return;
        if (streq(q.technician, caller->user.id))
                return http_reply_error(reply, 403, "self-approval", "Nobody can decide his own reset request.");
        for (size_t i = 0; i < q.n_approvers; i++)
                if (streq(q.approvers[i], caller->user.id))
                        selected = true;
        if (!selected || !is_approver(&caller->user))
                return http_reply_error(reply, 403, "forbidden", "Only a manager selected in request %s can decide it.",
                                        q.request_no);
        if (body_text(req, reply, "decision", 16, &decision) < 0)
                return;
        if (!streq(decision, "approve") && !streq(decision, "deny"))
                return http_reply_error(reply, 400, "invalid-request", "The decision must be \"approve\" or \"deny\".");
        if (!streq(q.status, "pending"))
                return http_reply_error(reply, 409, "already-decided", "Request %s is %s, not pending.", q.request_no,
                                        request_status(&q, now_sec()));
        if (streq(decision, "approve")) {
                if (body_attestations(req, reply, attestations) < 0)
                        return;
                snprintf(q.status, sizeof q.status, "approved");
                q.approved_at = now_sec();
                q.valid_till = q.approved_at + (int64_t) a->config->approval_validity_hours * 3600;
        } else {
                snprintf(q.status, sizeof q.status, "denied");
                q.approved_at = 0;
                q.valid_till = 0;
        }
        snprintf(q.approved_by, sizeof q.approved_by, "%s", caller->user.id);
        r = db_request_update(DB(a), &q, "pending");
        if (r == -ESTALE)
                return http_reply_error(reply, 409, "already-decided", "Request %s was decided meanwhile.", q.request_no);
        if (r < 0)
                return reply_internal(reply, r);
        log_info("Reset request %s %s by %s.", q.request_no, q.status, caller->user.id);
        format_time(q.valid_till, valid_till);
        reply->json = json_pack("{s:s, s:s?}", "status", q.status, "valid_till", q.valid_till ? valid_till : NULL);
}

static void handle_complete(Api *a, const Caller *caller, const char *no, HttpReply *reply) {
        char before[16];
        DbRequest q;
        int r;

        if (find_request(a, caller, no, reply, &q) < 0)
                return;
        if (streq(q.status, "denied"))
                return http_reply_error(reply, 409, "approval-denied", "Request %s was denied.", q.request_no);
        if (!streq(q.status, "completed")) {
                snprintf(before, sizeof before, "%s", q.status);
                snprintf(q.status, sizeof q.status, "completed");
                q.completed_at = now_sec();
                r = db_request_update(DB(a), &q, before);
                if (r == -ESTALE)
                        return http_reply_error(reply, 409, "conflict", "Request %s changed meanwhile; try again.", q.request_no);
                if (r < 0)
                        return reply_internal(reply, r);
                log_info("Reset request %s completed by %s.", q.request_no, caller->user.id);
        }
        reply->json = json_pack("{s:s}", "status", "completed");
}

/* Issues (or, for a retry, finds again) the passcode of a transaction filled in but for
 * its passcode, ids and time. */
static void issue(Api *a, DbTransaction *t, const char *request_text, const char *passcode, HttpReply *reply) {
        DbTransaction old;
        int64_t now = now_sec();
        int r;

        sha256_hex(request_text, strlen(request_text), t->request_digest);
        random_id("T-", 8, t->transaction_id, sizeof t->transaction_id);
        t->created_at = now;
        snprintf(t->passcode, sizeof t->passcode, "%s", passcode);
        /* committed before anyone sees the passcode; a retry (on any instance) finds it */
        r = db_transaction_issue(DB(a), t, now - API_RETRY_WINDOW_SEC, &old);
        if (r < 0)
                return reply_internal(reply, r);
        if (r > 0) {
                log_info("Passcode request retried: transaction %s answered again.", old.transaction_id);
                reply->json = json_pack("{s:s, s:s}", "passcode", old.passcode, "transaction_id", old.transaction_id);
                return;
        }
        log_info("Transaction %s: %s passcode for %s by %s at %s.", t->transaction_id, t->kind, t->vin, t->user, t->dealer);
        reply->json = json_pack("{s:s, s:s}", "passcode", passcode, "transaction_id", t->transaction_id);
}

static void handle_immobilizer(Api *a, const Caller *caller, const HttpRequest *req, HttpReply *reply) {
        const char *vin, *sw, *no, *seed_hex, *status;
        uint8_t seed[PASSCODE_SEED_SIZE], kvin[PASSCODE_KEY_SIZE];
        char passcode[PASSCODE_IMMOBILIZER_LEN + 1], seed_lower[2 * PASSCODE_SEED_SIZE + 1], *text = NULL;
        DbTransaction t = {};
        DbRequest q;
        int r;

        if (body_vin(req, reply, &vin) < 0 || body_text(req, reply, "software_version", DB_TEXT_MAX, &sw) < 0 ||
            body_text(req, reply, "request_no", 32, &no) < 0)
                return;
        seed_hex = json_string_value(json_object_get(req->body, "seed"));
        if (!seed_hex || strlen(seed_hex) != 2 * PASSCODE_SEED_SIZE || hex_decode(seed_hex, seed, sizeof seed) < 0)
                return http_reply_error(reply, 400, "bad-seed", "The immobilizer seed must be %d hex digits.",
                                        2 * PASSCODE_SEED_SIZE);
        if (check_dealer_two_approvers(a, caller->user.dealer, reply) < 0)
                return;
        r = db_request_get(DB(a), no, &q);
        if (r < 0 && r != -ENOENT)
                return reply_internal(reply, r);
        if (r == -ENOENT || !streq(q.dealer, caller->user.dealer) || !streq(q.vin, vin))
                return http_reply_error(reply, 409, "approval-required",
                                        "No reset request %s for %s at dealer %s; ask for an approval first.", no, vin,
                                        caller->user.dealer);
        status = request_status(&q, now_sec());
        if (streq(status, "pending"))
                return http_reply_error(reply, 409, "approval-pending", "Request %s waits for a manager's approval.", no);
        if (streq(status, "denied"))
                return http_reply_error(reply, 409, "approval-denied", "Request %s was denied.", no);
        if (!streq(status, "approved"))
                return http_reply_error(reply, 409, "approval-expired",
                                        "The approval of request %s no longer holds (%s); ask for a new one.", no, status);

        r = passcode_vin_key(a->master_key, vin, kvin);
        if (r >= 0)
                r = passcode_immobilizer(kvin, seed, passcode);
        explicit_bzero(kvin, sizeof kvin);
        if (r < 0)
                return reply_internal(reply, r);

        hex_encode(seed, sizeof seed, false, seed_lower);
        sha256_hex(seed, sizeof seed, t.seed_digest);
        snprintf(t.user, sizeof t.user, "%s", caller->user.id);
        snprintf(t.dealer, sizeof t.dealer, "%s", q.dealer);
        snprintf(t.vin, sizeof t.vin, "%s", q.vin);
        snprintf(t.repair_order, sizeof t.repair_order, "%s", q.repair_order);
        snprintf(t.customer, sizeof t.customer, "%s", q.customer);
        snprintf(t.kind, sizeof t.kind, "immobilizer");
        snprintf(t.request_no, sizeof t.request_no, "%s", q.request_no);
        if (asprintf(&text, "immobilizer\n%s\n%s\n%s\n%s", vin, sw, no, seed_lower) < 0)
                return reply_internal(reply, -ENOMEM);
        issue(a, &t, text, passcode, reply);
        free(text);
}

static void handle_smart_code(Api *a, const Caller *caller, const HttpRequest *req, HttpReply *reply) {
        static const struct {
                const char *name;
                size_t len;
        } fields[] = {
                { "data1", PASSCODE_DATA1_LEN },
                { "data2", PASSCODE_DATA2_LEN },
                { "data3", PASSCODE_DATA3_LEN },
        };
        const char *vin, *sw, *ro, *customer, *data[3];
        char up[3][PASSCODE_DATA2_LEN + 1], passcode[PASSCODE_SMART_CODE_LEN + 1], digest_text[64], *text = NULL;
        uint8_t kvin[PASSCODE_KEY_SIZE];
        DbTransaction t = {};
        json_t *cd;
        int r;

        if (body_vin(req, reply, &vin) < 0 || body_text(req, reply, "software_version", DB_TEXT_MAX, &sw) < 0 ||
            body_text(req, reply, "repair_order", DB_TEXT_MAX, &ro) < 0 ||
            body_text(req, reply, "customer_last_name", DB_TEXT_MAX, &customer) < 0)
                return;
        for (size_t i = 0; i < 3; i++) {
                data[i] = json_string_value(json_object_get(req->body, fields[i].name));
                if (!data[i] || strlen(data[i]) != fields[i].len || !is_hex_string(data[i])) {
                        http_reply_error(reply, 400, "bad-seed", "The field \"%s\" must be %zu hex digits.", fields[i].name,
                                         fields[i].len);
                        json_object_set_new(reply->json, "field", json_string(fields[i].name));
                        return;
                }
                for (size_t j = 0; j <= fields[i].len; j++)
                        up[i][j] = (char) (data[i][j] >= 'a' && data[i][j] <= 'f' ? data[i][j] - 32 : data[i][j]);
        }
        cd = json_object_get(req->body, "cd");
        for (size_t i = 0; i < 4; i++) {
                const char *name = i == 0 ? "vin" : fields[i - 1].name;
                const char *c = json_string_value(json_object_get(cd, name));

                if (!c || strlen(c) != 1)
                        return http_reply_error(reply, 400, "invalid-request",
                                                "The field \"cd.%s\" must be the field's one check character.", name);
                r = checkchar_verify(i == 0 ? vin : up[i - 1], i == 0 ? CHECKCHAR_BASE36 : CHECKCHAR_HEX, c[0]);
                if (r < 0) {
                        http_reply_error(reply, 400, "check-character-mismatch",
                                         "The check character of %s does not match: the field was mistyped.", name);
                        json_object_set_new(reply->json, "field", json_string(name));
                        return;
                }
        }
        if (check_dealer_two_approvers(a, caller->user.dealer, reply) < 0)
                return;

        r = passcode_vin_key(a->master_key, vin, kvin);
        if (r >= 0)
                r = passcode_smart_code(kvin, vin, up[0], up[1], up[2], passcode);
        explicit_bzero(kvin, sizeof kvin);
        if (r < 0)
                return reply_internal(reply, r);

        snprintf(digest_text, sizeof digest_text, "%s:%s:%s:%s", vin, up[0], up[1], up[2]);
        sha256_hex(digest_text, strlen(digest_text), t.seed_digest);
        snprintf(t.user, sizeof t.user, "%s", caller->user.id);
        snprintf(t.dealer, sizeof t.dealer, "%s", caller->user.dealer);
        snprintf(t.vin, sizeof t.vin, "%s", vin);
        snprintf(t.repair_order, sizeof t.repair_order, "%s", ro);
        snprintf(t.customer, sizeof t.customer, "%s", customer);
        snprintf(t.kind, sizeof t.kind, "smart-code");
        if (asprintf(&text, "smart-code\n%s\n%s\n%s\n%s\n%s\n%s\n%s", vin, sw, ro, customer, up[0], up[1], up[2]) < 0)
                return reply_internal(reply, -ENOMEM);
        issue(a, &t, text, passcode, reply);
        free(text);
}

static void handle_passcode(Api *a, const Caller *caller, const HttpRequest *req, HttpReply *reply) {
        const char *kind;

        if (body_text(req, reply, "kind", 32, &kind) < 0)
                return;
        if (streq(kind, "immobilizer"))
                handle_immobilizer(a, caller, req, reply);
        else if (streq(kind, "smart-code"))
                handle_smart_code(a, caller, req, reply);
        else
                http_reply_error(reply, 400, "invalid-request", "The kind must be \"immobilizer\" or \"smart-code\".");
}

static void handle_transactions(Api *a, const Caller *caller, const HttpRequest *req, HttpReply *reply) {
        const char *dealer = http_request_query(req, "dealer"), *month = http_request_query(req, "month");
        int64_t from, to;
        int r;

        if (!dealer || !month || !dealer_code_valid(dealer) || month_parse(month, &from, &to) < 0)
                return http_reply_error(reply, 400, "invalid-request", "Give dealer=CODE and month=YYYY-MM.");
        if (caller->user.role != USER_MANAGER || !streq(caller->user.dealer, dealer))
                return http_reply_error(reply, 403, "forbidden", "Only a manager of dealer %s sees its report.", dealer);
        if (req->wants_csv) {
                r = report_build(DB(a), a->config, dealer, month, NULL, &reply->text);
                reply->content_type = "text/csv; charset=utf-8";
        } else
                r = report_build(DB(a), a->config, dealer, month, &reply->json, NULL);
        if (r < 0)
                return reply_internal(reply, r);
}

/* Routing */

static bool method_is(const HttpRequest *req, const char *m, HttpReply *reply) {
        if (streq(req->method, m))
                return true;
        http_reply_error(reply, 405, "method-not-allowed", "Use %s here.", m);
        return false;
}

/* "{segment}/rest": the segment into buf (at most size-1 bytes); NULL when too long or empty. */
static const char *path_segment(const char *p, char *buf, size_t size) {
        size_t l = strcspn(p, "/");

        if (l == 0 || l >= size)
                return NULL;
        memcpy(buf, p, l);
        buf[l] = 0;
        return p + l;
}

void api_handle(void *userdata, const HttpRequest *req, HttpReply *reply) {
        Api *a = userdata;
        const char *p = startswith(req->path, "/api/v1/"), *rest;
        char seg[64];
        Caller caller;
        int r;

        thread_db = pthread_getspecific(a->conn_key);
        if (!thread_db) {
                r = db_open(a->config->database, &thread_db);
                if (r < 0) {
                        thread_db = NULL;
                        return http_reply_error(reply, 503, "database-unavailable",
                                                "The service cannot reach its database; try again.");
                }
                if (pthread_setspecific(a->conn_key, thread_db) != 0) {
                        thread_db = db_close(thread_db);
                        return reply_internal(reply, -ENOMEM);
                }
        }

        if (!p)
                return http_reply_error(reply, 404, "not-found", "Unknown path; the API lives under /api/v1/.");
        if (streq(p, "login")) {
                if (method_is(req, "POST", reply))
                        handle_login(a, req, reply);
                return;
        }
        if (!startswith(p, "dealers/") && !startswith(p, "reset-requests") && !streq(p, "passcodes") &&
            !streq(p, "transactions"))
                return http_reply_error(reply, 404, "not-found", "Unknown path.");
        if (authenticate(a, req, reply, &caller) < 0)
                return;

        if ((rest = startswith(p, "dealers/"))) {
                rest = path_segment(rest, seg, CONFIG_DEALER_MAX + 1);
                if (!rest || !streq(rest, "/approvers"))
                        return http_reply_error(reply, 404, "not-found", "Unknown path.");
                if (method_is(req, "GET", reply))
                        handle_approvers(a, &caller, seg, reply);
        } else if (streq(p, "reset-requests")) {
                if (streq(req->method, "POST")) {
                        if (!req->body)
                                return http_reply_error(reply, 400, "invalid-request", "A JSON body is needed.");
                        handle_request_create(a, &caller, req, reply);
                } else if (method_is(req, "GET", reply))
                        handle_request_list(a, &caller, req, reply);
        } else if ((rest = startswith(p, "reset-requests/"))) {
                rest = path_segment(rest, seg, 33);
                if (rest && *rest == 0) {
                        if (method_is(req, "GET", reply))
                                handle_request_get(a, &caller, seg, reply);
                } else if (rest && streq(rest, "/decision")) {
                        if (!method_is(req, "POST", reply))
                                return;
                        if (!req->body)
                                return http_reply_error(reply, 400, "invalid-request", "A JSON body is needed.");
                        handle_decision(a, &caller, seg, req, reply);
                } else if (rest && streq(rest, "/complete")) {
                        if (method_is(req, "POST", reply))
                                handle_complete(a, &caller, seg, reply);
                } else
                        http_reply_error(reply, 404, "not-found", "Unknown path.");
        } else if (streq(p, "passcodes")) {
                if (!method_is(req, "POST", reply))
                        return;
                if (!req->body)
                        return http_reply_error(reply, 400, "invalid-request", "A JSON body is needed.");
                handle_passcode(a, &caller, req, reply);
        } else if (method_is(req, "GET", reply))
                handle_transactions(a, &caller, req, reply);
}
