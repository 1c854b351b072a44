/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "bus-error.h"
#include "daemon.h"
#include "log.h"
#include "manager.h"

#define BUS_ADDRESS_MAX 1024U

bool daemon_bus_spec_valid(const char *bus) {
        if (!bus)
                return false;
        if (streq(bus, "system") || streq(bus, "session"))
                return true;
        /* A D-Bus address: TRANSPORT:KEY=VALUE,...; sd-bus checks the rest on connect. */
        size_t n = strnlen(bus, BUS_ADDRESS_MAX + 1);
        return n > 0 && n <= BUS_ADDRESS_MAX && strchr(bus, ':') && strchr(bus, '=');
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_info("Received SIG%s, exiting.", sigabbrev_np((int) si->ssi_signo) ?: "?");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int load_profiles(Daemon *d) {
        char errbuf[512] = "";
        const char *dir = d->config.profiles_dir ?: IMMOD_PROFILES_DIR;
        int r;

        r = profile_load_dir_full(dir, &d->profiles, errbuf, sizeof(errbuf));
        if (r == -ENOENT)
                return log_error_errno(r, "No vehicle profiles in %s.", dir);
        if (r < 0)
                /* profile.c has logged the file, line and key. */
                return r;
        log_info("Loaded %zu vehicle profiles from %s.", profile_set_size(d->profiles), dir);
        return 0;
}

static int open_link(Daemon *d) {
        const VehicleProfile *ref = profile_set_get(d->profiles, 0);
        _cleanup_(transport_freep) Transport *t = NULL;
        IsoTpConfig isotp;
        UdsClientConfig uds;
        int r;

        /* One link for all vehicles: the shipped profiles share the reference protocol's
         * addressing. A profile that differs would need the link reopened per vehicle. */
        for (size_t i = 1; i < profile_set_size(d->profiles); i++) {
                const VehicleProfile *p = profile_set_get(d->profiles, i);
                if (p->link.tx_id != ref->link.tx_id || p->link.rx_id != ref->link.rx_id ||
                    p->link.extended != ref->link.extended || p->link.ext_address != ref->link.ext_address)
                        log_warning("Vehicle profile %s uses other CAN addressing than %s; immod talks with %s's.",
                                    p->name, ref->name, ref->name);
        }

        profile_isotp_config(ref, &isotp);
        profile_uds_client_config(ref, &uds);
        link_uri_format(&d->config.link, d->link_uri, sizeof(d->link_uri));

        r = transport_open(d->event, d->link_uri, &isotp, &t);
        if (r < 0)
                return log_error_errno(r, "Failed to open the link %s: %m", d->link_uri);
        r = uds_link_new(t, &uds, &d->link);
        if (r < 0)
                return log_error_errno(r, "Failed to set up UDS on %s: %m", d->link_uri);
        TAKE_PTR(t); /* the UdsLink owns it now */
        return 0;
}

static int open_bus(Daemon *d, const char *bus) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *b = NULL;
        int r;

        if (streq(bus, "system"))
                r = sd_bus_open_system_with_description(&b, "immod");
        else if (streq(bus, "session"))
                r = sd_bus_open_user_with_description(&b, "immod");
        else {
                r = sd_bus_new(&b);
                if (r >= 0)
                        r = sd_bus_set_address(b, bus);
                if (r >= 0)
                        r = sd_bus_set_bus_client(b, true);
                if (r >= 0)
                        r = sd_bus_set_description(b, "immod");
                if (r >= 0)
                        r = sd_bus_start(b);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus: %m", bus);

        r = sd_bus_attach_event(b, d->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");

        d->bus = TAKE_PTR(b);
        return 0;
}

int daemon_new(const char *config_path, const char *bus, Daemon **ret) {
        _cleanup_(daemon_freep) Daemon *d = NULL;
        char errbuf[512] = "";
        int r;

        d = calloc(1, sizeof(*d));
        if (!d)
                return log_error_errno(-ENOMEM, "Out of memory.");

        r = config_load_full(config_path, &d->config, errbuf, sizeof(errbuf));
        if (r < 0 && errbuf[0])
                return r; /* config.c has logged the file, line and key */
        if (r < 0)
                return log_error_errno(r, "Failed to load the configuration %s: %m", config_path ?: IMMOD_CONFIG_FILE);
        d->config_loaded = true;

        r = load_profiles(d);
        if (r < 0)
                return r;

        r = bus_error_register();
        if (r < 0)
                return log_error_errno(r, "Failed to register the bus error names: %m");

        r = sd_event_default(&d->event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");

        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return log_error_errno(r, "Failed to enable the watchdog: %m");

        /* SIGCHLD too: sd-event reaps the HTTPS helper immod-fetch (fetch-glue.c), whose pipe
         * must not kill us with SIGPIPE either when it dies early. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block SIGTERM, SIGINT and SIGCHLD: %m");
        if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
                return log_error_errno(errno, "Failed to ignore SIGPIPE: %m");
        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGINT, on_exit_signal, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGTERM and SIGINT: %m");

        r = open_link(d);
        if (r < 0)
                return r;

        if (d->config.server.url) {
                r = passcode_client_new(d->event, &d->config.server, &d->passcode);
                if (r < 0)
                        return log_error_errno(r, "Failed to set up the passcode service client for %s: %m",
                                               d->config.server.url);
                log_info("Passcode service: %s.", d->config.server.url);
        }

        r = open_bus(d, bus);
        if (r < 0)
                return r;

        r = manager_new(d, &d->manager);
        if (r < 0)
                return r;

        r = sd_bus_request_name(d->bus, IMMOD_BUS_NAME, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to acquire the bus name %s: %m", IMMOD_BUS_NAME);

        /* Once the name is ours, so that the clients that follow it see the resumed procedures
         * announced; before the event loop runs, so that no call finds one missing. */
        r = manager_resume(d->manager);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(d);
        return 0;
}

Daemon *daemon_free(Daemon *d) {
        if (!d)
                return NULL;

        /* Requests still out end now, so that their callers get an answer and the
         * requests' state is freed, while the bus is still there. */
        if (d->link)
                uds_link_cancel_all(d->link, -ECANCELED);
        /* likewise the passcode service's calls, while the procedures waiting for them exist */
        d->passcode = passcode_client_free(d->passcode);
        d->manager = manager_free(d->manager);
        d->link = uds_link_free(d->link);
        d->bus = sd_bus_flush_close_unref(d->bus);
        d->event = sd_event_unref(d->event);
        d->profiles = profile_set_free(d->profiles);
        if (d->config_loaded)
                config_done(&d->config);
        free(d);
        return NULL;
}

void daemon_notify_status(Daemon *d, const char *status) {
        (void) sd_notifyf(false, "STATUS=%s", status);
}

int daemon_run(Daemon *d) {
        int r;

        (void) sd_notifyf(false, "READY=1\nSTATUS=Ready on %s.", d->link_uri);
        log_info("immod %s ready on %s.", IMMOD_VERSION, d->link_uri);

        /* What start-up read and freed (the audit log's end, the profiles) goes back to the
         * system before the long idle, rather than staying in the heap as anonymous memory. */
        (void) malloc_trim(0);
        r = sd_event_loop(d->event);
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down.");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}
