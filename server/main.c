/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* immo-passcode-server: the reference passcode service (passcode-service.md). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>

#include "api.h"
#include "config.h"
#include "db.h"
#include "fileio.h"
#include "http.h"
#include "log.h"
#include "passcode.h"
#include "web-pages.h"

#define PEM_MAX (64U * 1024U)

typedef struct Service {
        Api *api;
        WebPages *pages;
} Service;

/* The API under /api/, the service's own pages everywhere else (the same TLS, the same
 * process; the pages call the API). */
static void service_handle(void *userdata, const HttpRequest *req, HttpReply *reply) {
        Service *s = userdata;

        if (startswith(req->path, "/api/"))
                api_handle(s->api, req, reply);
        else
                web_pages_handle(s->pages, req, reply);
}

static int run(const char *config_path) {
        _cleanup_(server_config_freep) ServerConfig *c = NULL;
        _cleanup_(db_closep) Db *db = NULL;
        _cleanup_free_ char *cert = NULL, *key = NULL;
        uint8_t master[PASSCODE_KEY_SIZE];
        HttpServer *http = NULL;
        Service service = {};
        sigset_t ss;
        int r, sig;

        r = server_config_load(config_path, &c);
        if (r < 0)
                return r;
        r = passcode_read_master_key(c->master_key_file, master);
        if (r < 0)
                return r;
        r = read_file_bounded(c->tls_certificate, PEM_MAX, &cert, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", c->tls_certificate);
        r = read_file_bounded(c->tls_key, PEM_MAX, &key, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to read %s: %m", c->tls_key);
        /* the schema made or brought forward, and the configured users stored, before
         * anything is served; the workers open their own connections */
        r = db_open(c->database, &db);
        if (r < 0)
                return r;
        r = api_sync_users(c, db);
        if (r < 0)
                return log_error_errno(r, "Failed to store the configured users: %m");
        log_info("Database: %s, schema version %d.", db_backend_name(db), DB_SCHEMA_VERSION);
        db = db_close(db);
        r = api_new(c, master, &service.api);
        memset(master, 0, sizeof master);
        if (r < 0)
                return log_oom();
        r = web_pages_load(c->web_root, &service.pages);
        if (r < 0) {
                api_free(service.api);
                return r;
        }

        /* block the signals before libmicrohttpd's thread starts, so they come to sigwait() */
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &ss, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = http_server_start(c->listen_address, c->port, c->workers, cert, key, service_handle, &service, &http);
        if (r < 0) {
                api_free(service.api);
                web_pages_free(service.pages);
                return r;
        }
        log_info("Listening on https://%s:%u/ (pages) and /api/v1/ with %u workers.", c->listen_address, c->port,
                 c->workers);
        do {
                if (sigwait(&ss, &sig) != 0)
                        sig = SIGTERM;
        } while (sig == SIGHUP);
        log_info("Stopping on signal %d.", sig);
        http_server_stop(http);
        api_free(service.api);
        web_pages_free(service.pages);
        return 0;
}

static void help(void) {
        printf("immo-passcode-server --config FILE\n\n"
               "The reference passcode service: reset approvals, passcodes and the transaction log\n"
               "over HTTPS (API version 1).\n\n"
               "  -c --config FILE   the YAML configuration\n"
               "  -v --verbose       log debug messages\n"
               "  -h --help          show this help\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *config = NULL;
        int c;

        log_set_ident("immo-passcode-server");
        while ((c = getopt_long(argc, argv, "c:vh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        config = optarg;
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (!config || optind < argc) {
                fprintf(stderr, "Usage: immo-passcode-server --config FILE\n");
                return EXIT_FAILURE;
        }
        return run(config) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
