/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the passcode server's request handling: a request built from the input goes
 * through api_handle(), the router and handlers a real request meets after http.c, on a
 * SQLite database in a temporary folder. At start the harness writes a configuration with
 * two dealers and their users, and logs each user in once; the input then picks one of
 * those tokens (or none, or a wrong one), since a fuzzer cannot find a session token.
 *
 * The input: METHOD PATH TOKEN FLAGS, then a segment (1 length byte + text) used in the
 * path, an Idempotency-Key (1 length byte + text), and the rest is the JSON body (none
 * when empty; a "request_no" of "@last" is replaced by the last request number an answer
 * gave). What http.c refuses before the handler (a body that is not a JSON object,
 * a bad Idempotency-Key) is skipped here, as http.c answers it. The query string (vin,
 * dealer, month) comes from the input too: the target is linked with
 * --wrap=MHD_lookup_connection_value, so http_request_query() reads it from here.
 *
 * What is checked (promised by http.h and passcode-service.md): every request gets a
 * status from 200 to 599; an error (>= 400) is a JSON object with the strings "error" and
 * "message"; a success is a JSON object or a text (a CSV report). Leaks are ASan's.
 * FUZZ_SERVER_API_TRACE=1 prints every reply.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "config.h"
#include "db.h"
#include "fuzz.h"
#include "log.h"

#include <microhttpd.h>

static const char *const users[] = { "tech1", "mgr1", "mgr2", "tech9", "mgr9" };

static Api *api;
static ServerConfig *config;
static char tokens[ELEMENTSOF(users)][HTTP_BEARER_MAX + 1];
static char last_request_no[64] = "0";

/* The query string of the request being handled: "vin", "dealer", "month" or NULL each. */
static struct FuzzQuery {
        const char *vin, *dealer, *month;
} query;

const char *__real_MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind,
                                               const char *key);
const char *__wrap_MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind,
                                               const char *key);
const char *__wrap_MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind,
                                               const char *key) {
        if (c != (struct MHD_Connection *) &query)
                return __real_MHD_lookup_connection_value(c, kind, key);
        if (kind != MHD_GET_ARGUMENT_KIND)
                return NULL;
        if (streq(key, "vin"))
                return query.vin;
        if (streq(key, "dealer"))
                return query.dealer;
        if (streq(key, "month"))
                return query.month;
        return NULL;
}

static void check_reply(const HttpReply *reply) {
        if (getenv("FUZZ_SERVER_API_TRACE")) {
                char *j = reply->json ? json_dumps(reply->json, JSON_COMPACT) : NULL;

                fprintf(stderr, "status %u: %s\n", reply->status, j ?: (reply->text ?: ""));
                free(j);
        }
        FUZZ_CHECK(reply->status >= 200 && reply->status <= 599);
        if (reply->status >= 400) {
                FUZZ_CHECK(json_is_object(reply->json));
                FUZZ_CHECK(json_is_string(json_object_get(reply->json, "error")));
                FUZZ_CHECK(json_is_string(json_object_get(reply->json, "message")));
                FUZZ_CHECK(!reply->text);
        } else if (!reply->text)
                FUZZ_CHECK(!reply->json || json_is_object(reply->json)); /* none is sent as {} */
}

static void handle(const HttpRequest *req, HttpReply *reply) {
        const char *no;

        *reply = (HttpReply) { .status = 200 }; /* as http.c starts it */
        api_handle(api, req, reply);
        check_reply(reply);
        /* a new request's number, so that later inputs can decide on it */
        no = json_string_value(json_object_get(reply->json, "request_no"));
        if (no && strlen(no) < sizeof(last_request_no))
                snprintf(last_request_no, sizeof(last_request_no), "%s", no);
}

static void reply_done(HttpReply *reply) {
        json_decref(reply->json);
        free(reply->text);
}

static char dir[] = "/tmp/fuzz-server-api-XXXXXX";

/* The temporary folder goes when the process ends: the database is in use until then. */
static void remove_dir(void) {
        DIR *d = opendir(dir);
        struct dirent *de;
        char path[sizeof(dir) + 300];

        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                        (void) unlink(path);
                }
        closedir(d);
        (void) rmdir(dir);
}

/* The server's configuration: two dealers, D100 with two approvers; %s is the folder. */
#define CONFIG_FORMAT                                                                                        \
        "listen: {address: 127.0.0.1, port: 8443}\n"                                                         \
        "tls: {certificate: c.pem, key: c.key}\n"                                                            \
        "database: %s/passcodes.sqlite\n"                                                                    \
        "master_key_file: master.key\n"                                                                      \
        "dealers:\n"                                                                                         \
        "  - {code: D100, name: Dealer One}\n"                                                               \
        "  - {code: D200, name: Dealer Two}\n"                                                               \
        "users:\n"                                                                                           \
        "  - {id: tech1, name: Tom Tech, dealer: D100, role: technician, title: Technician, password: pw}\n" \
        "  - {id: mgr1, name: Mia M, dealer: D100, role: manager, title: Service Manager, password: pw}\n"   \
        "  - {id: mgr2, name: Max M, dealer: D100, role: manager, title: General Manager, password: pw}\n"   \
        "  - {id: tech9, name: Ted T, dealer: D200, role: technician, title: Technician, password: pw}\n"    \
        "  - {id: mgr9, name: Meg M, dealer: D200, role: manager, title: Dealer Principal, password: pw}\n"

static void setup(void) {
        uint8_t master[32];
        char text[2048];
        Db *db = NULL;

        log_set_max_level(LOG_CRIT);
        FUZZ_CHECK(mkdtemp(dir));
        atexit(remove_dir);
        snprintf(text, sizeof(text), CONFIG_FORMAT, dir);
        FUZZ_CHECK(server_config_parse("fuzz.yaml", dir, text, strlen(text), &config) == 0);
        FUZZ_CHECK(db_open(config->database, &db) == 0);
        FUZZ_CHECK(api_sync_users(config, db) == 0);
        db_close(db);
        fuzz_pattern(master, sizeof(master), 1);
        FUZZ_CHECK(api_new(config, master, &api) == 0);

        for (size_t i = 0; i < ELEMENTSOF(users); i++) {
                HttpRequest req = { .method = "POST", .path = "/api/v1/login" };
                HttpReply reply;
                const char *t;

                req.body = json_pack("{s:s, s:s}", "user", users[i], "password", "pw");
                handle(&req, &reply);
                t = json_string_value(json_object_get(reply.json, "token"));
                FUZZ_CHECK(reply.status == 200 && t && strlen(t) <= HTTP_BEARER_MAX);
                snprintf(tokens[i], sizeof(tokens[i]), "%s", t);
                json_decref(req.body);
                reply_done(&reply);
        }
}

/* 1 length byte, then that many bytes (fewer at the end), as a NUL-terminated string cut at
 * a NUL inside */
static void fuzz_string(FuzzInput *in, char *buf, size_t size) {
        size_t n = fuzz_u8(in);

        n = MIN(n, size - 1);

        fuzz_bytes(in, (uint8_t *) buf, n);
        buf[n] = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const methods[] = { "GET", "POST", "PUT", "DELETE", "get", "" };
        FuzzInput in = { data, size };
        HttpRequest req = {};
        HttpReply reply;
        char segment[256], key[256], path[512], month[8];
        uint8_t m, p, t, flags;
        time_t now = time(NULL);
        struct tm tm;

        if (!api)
                setup();
        if (size > HTTP_BODY_MAX)
                return 0;

        m = fuzz_u8(&in);
        p = fuzz_u8(&in);
        t = fuzz_u8(&in);
        flags = fuzz_u8(&in);
        fuzz_string(&in, segment, sizeof(segment));
        fuzz_string(&in, key, sizeof(key));

        req.method = methods[m % ELEMENTSOF(methods)];
        switch (p % 11) {
        case 0: snprintf(path, sizeof(path), "/api/v1/login"); break;
        case 1: snprintf(path, sizeof(path), "/api/v1/dealers/D100/approvers"); break;
        case 2: snprintf(path, sizeof(path), "/api/v1/dealers/%s/approvers", segment); break;
        case 3: snprintf(path, sizeof(path), "/api/v1/reset-requests"); break;
        case 4: snprintf(path, sizeof(path), "/api/v1/reset-requests/%s/decision", last_request_no); break;
        case 5: snprintf(path, sizeof(path), "/api/v1/reset-requests/%s/complete", last_request_no); break;
        case 6: snprintf(path, sizeof(path), "/api/v1/passcodes"); break;
        case 7: snprintf(path, sizeof(path), "/api/v1/transactions"); break;
        case 8: snprintf(path, sizeof(path), "/api/v1/reset-requests/%s/decision", segment); break;
        case 9: snprintf(path, sizeof(path), "/api/v1/%s", segment); break;
        default: snprintf(path, sizeof(path), "%s", segment); break;
        }
        req.path = path;

        if (t % 8 == 1)
                req.bearer = "not-a-token";
        else if (t % 8 >= 2 && t % 8 < 2 + ELEMENTSOF(users))
                req.bearer = tokens[t % 8 - 2];
        req.wants_csv = flags & 1;
        /* the query: bit 2 a VIN (the segment, or the known one), bit 3 a dealer and month
         * (the segment as the dealer, or D100 and this month) */
        req.connection = &query;
        query = (struct FuzzQuery) {};
        if (flags & 4)
                query.vin = flags & 16 ? segment : "58ADZ1B16MU000123";
        if (flags & 8) {
                gmtime_r(&now, &tm);
                strftime(month, sizeof(month), "%Y-%m", &tm);
                query.dealer = flags & 16 ? segment : "D100";
                query.month = flags & 32 ? key : month;
        }
        if (flags & 2) {
                /* as http.c takes it: 1 to 128 printable characters without spaces */
                if (!key[0] || strlen(key) > HTTP_IDEMPOTENCY_KEY_MAX)
                        return 0;
                for (const char *k = key; *k; k++)
                        if (*k <= ' ' || *k >= 127)
                                return 0;
                req.idempotency_key = key;
        }

        if (in.n > 0) {
                /* as http.c parses it; anything but an object is its own 400 */
                req.body = json_loadb((const char *) in.p, in.n, JSON_REJECT_DUPLICATES, NULL);
                if (!json_is_object(req.body)) {
                        json_decref(req.body);
                        return 0;
                }
                /* "request_no": "@last" stands for the last request made */
                const char *no = json_string_value(json_object_get(req.body, "request_no"));
                if (no && streq(no, "@last"))
                        json_object_set_new(req.body, "request_no", json_string(last_request_no));
        }

        handle(&req, &reply);
        reply_done(&reply);
        json_decref(req.body);
        return 0;
}
