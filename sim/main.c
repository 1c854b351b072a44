/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* immo-ecusim: the simulated immobilizer / smart key ECU (vehicle-protocol.md §3-§8). */
#include <signal.h>

#include "ecu.h"
#include "log.h"
#include "options.h"

static int run(int argc, char *argv[]) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(ecu_freep) Ecu *ecu = NULL;
        EcuOptions opt;
        bool verbose;
        int r;

        log_set_ident("immo-ecusim");
        r = parse_argv(argc, argv, &opt, &verbose);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        if (verbose)
                log_set_max_level(LOG_DEBUG);

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to get the event loop: %m"), 1;
        /* SIGTERM/SIGINT end the loop; the state is saved on the way out. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m"), 1;
        r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGTERM/SIGINT: %m"), 1;
        (void) sd_event_set_watchdog(event, true);

        r = ecu_new(event, &opt, &ecu);
        if (r < 0)
                return 1;
        r = ecu_start(ecu);
        if (r < 0)
                return log_error_errno(r, "Failed to start the ECU on %s: %m", opt.link), 1;

        r = sd_event_loop(event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), 1;
        ecu_save(ecu);
        log_info("Stopped");
        return 0;
}

int main(int argc, char *argv[]) {
        return run(argc, argv);
}
