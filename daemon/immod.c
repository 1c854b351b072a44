/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <stdio.h>

#include "daemon.h"
#include "log.h"

static void help(void) {
        printf("immod [--config FILE] [--bus system|session|ADDRESS] [-v]\n\n"
               "The immobilizer service daemon: a D-Bus API (org.immod.Immod1) for the\n"
               "immobilizer reset, key registration and key erasure procedures.\n\n"
               "  --config FILE   the configuration (default " IMMOD_CONFIG_FILE ")\n"
               "  --bus BUS       system (default), session, or a D-Bus address such as\n"
               "                  unix:path=/run/test/bus\n"
               "  -v, --verbose   debug logging\n"
               "  -h, --help, --version\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "bus", required_argument, NULL, 'b' },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {},
        };
        _cleanup_(daemon_freep) Daemon *d = NULL;
        const char *config = NULL, *bus = "system";
        int c, r;

        log_set_ident("immod");
        while ((c = getopt_long(argc, argv, "vh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        if (!optarg[0] || strlen(optarg) >= 4096) {
                                log_error("--config needs a file name.");
                                return 2;
                        }
                        config = optarg;
                        break;
                case 'b':
                        if (!daemon_bus_spec_valid(optarg)) {
                                log_error("--bus takes system, session or a D-Bus address (e.g. unix:path=/run/bus).");
                                return 2;
                        }
                        bus = optarg;
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("immod %s\n", IMMOD_VERSION);
                        return 0;
                default:
                        return 2;
                }
        if (optind < argc) {
                log_error("Unexpected argument: %s", argv[optind]);
                return 2;
        }

        r = daemon_new(config, bus, &d);
        if (r < 0)
                return 1;
        r = daemon_run(d);
        return r < 0 ? 1 : 0;
}
