/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* monitor: immod's PropertiesChanged and signals, a line per event, until Ctrl-C. */
#include <signal.h>
#include <stdio.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "bus.h"
#include "immoctl.h"
#include "log.h"
#include "output.h"

typedef struct Monitor {
        Context *context;
        char *owner; /* immod's unique name: only its signals count */
} Monitor;

static void monitor_done(Monitor *mon) {
        free(mon->owner);
        mon->owner = NULL;
}

/* The argument names of the API's signals, so that a line says what each value is. */
static const struct {
        const char *member;
        const char *args[3];
} signal_args[] = {
        { "StepChanged", { "step", "index", "prompt" } },
        { "KeyEvent", { "event", "slot", "beeps" } },
        { "Finished", { "state", "error" } },
};

static const char *const *signal_arg_names(const char *member) {
        for (size_t i = 0; i < ELEMENTSOF(signal_args); i++)
                if (streq(signal_args[i].member, member))
                        return signal_args[i].args;
        return NULL;
}

/* "manager", "procedure 3", or the path as it is. */
static const char *object_name(const char *path, char *buf, size_t size) {
        const char *n;

        if (streq(path, IMMOD_MANAGER_PATH))
                return "manager";
        n = startswith(path, IMMOD_MANAGER_PATH "/procedure/");
        if (n) {
                snprintf(buf, size, "procedure %s", n);
                return buf;
        }
        return path;
}

static void print_time(usec_t t) {
        time_t s = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        char buf[32] = "";

        if (localtime_r(&s, &tm))
                strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
        printf("%s.%03u ", buf, (unsigned) (t % USEC_PER_SEC / USEC_PER_MSEC));
}

/* A value on a monitor line: JSON text, so that strings are quoted and lists bracketed. */
static void print_value(const char *name, json_t *value) {
        _cleanup_free_ char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        printf(" %s=%s", name, text ?: "?");
}

static int emit(Monitor *mon, const char *path, const char *interface, const char *member, json_t *event) {
        usec_t t = now_usec(CLOCK_REALTIME);
        char buf[64];
        const char *key;
        json_t *value;

        if (mon->context->json) {
                if (json_object_set_new(event, "timestamp", json_integer((json_int_t) t)) < 0 ||
                    json_object_set_new(event, "path", json_string(path)) < 0 ||
                    json_object_set_new(event, "interface", json_string(interface)) < 0 ||
                    json_object_set_new(event, "event", json_string(member)) < 0)
                        return log_oom();
                return output_json_line(event);
        }

        print_time(t);
        printf("%s %s", object_name(path, buf, sizeof(buf)), member);
        json_object_foreach(event, key, value) {
                if (json_is_object(value)) { /* "changed": one name=value each */
                        const char *k;
                        json_t *v;
                        json_object_foreach(value, k, v)
                                print_value(k, v);
                } else if (streq(key, "invalidated")) {
                        size_t i;
                        json_t *v;
                        json_array_foreach(value, i, v)
                                printf(" %s=?", json_string_value(v) ?: "?");
                } else
                        print_value(key, value);
        }
        fputc('\n', stdout);
        return fflush(stdout) == 0 ? 0 : -errno;
}

static int on_properties_changed(Monitor *mon, sd_bus_message *m) {
        _cleanup_(json_decrefp) json_t *event = json_object(), *changed = NULL, *invalidated = NULL;
        const char *interface;
        int r;

        if (!event)
                return log_oom();
        r = sd_bus_message_read(m, "s", &interface);
        if (r < 0)
                return r;
        if (!startswith(interface, IMMOD_INTERFACE_PREFIX))
                return 0;
        r = bus_message_read_json(m, &changed);
        if (r < 0)
                return r;
        r = bus_message_read_json(m, &invalidated);
        if (r < 0)
                return r;
        if (json_object_set_new(event, "changed", TAKE_PTR(changed)) < 0)
                return log_oom();
        if (json_array_size(invalidated) > 0 || mon->context->json)
                if (json_object_set_new(event, "invalidated", TAKE_PTR(invalidated)) < 0)
                        return log_oom();
        return emit(mon, sd_bus_message_get_path(m), interface, "PropertiesChanged", event);
}

static int on_immod_signal(Monitor *mon, sd_bus_message *m) {
        _cleanup_(json_decrefp) json_t *event = json_object(), *args = NULL;
        const char *member = sd_bus_message_get_member(m);
        const char *const *names = signal_arg_names(member);
        size_t n = 0;
        int r;

        if (!event)
                return log_oom();
        if (!mon->context->json || !names) {
                args = json_array();
                if (!args)
                        return log_oom();
        }
        while ((r = sd_bus_message_at_end(m, true)) == 0) {
                json_t *v;
                r = bus_message_read_json(m, &v);
                if (r < 0)
                        return r;
                if (names && n < ELEMENTSOF(signal_args[0].args) && names[n])
                        r = json_object_set_new(event, names[n], v);
                else
                        r = json_array_append_new(args ?: (args = json_array()), v);
                if (r < 0)
                        return log_oom();
                n++;
        }
        if (r < 0)
                return r;
        if (json_array_size(args) > 0 && json_object_set_new(event, "args", TAKE_PTR(args)) < 0)
                return log_oom();
        return emit(mon, sd_bus_message_get_path(m), sd_bus_message_get_interface(m), member, event);
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Monitor *mon = userdata;
        const char *sender = sd_bus_message_get_sender(m);
        int r;

        if (!mon->owner || !sender || !streq(sender, mon->owner))
                return 0;

        if (sd_bus_message_is_signal(m, "org.freedesktop.DBus.Properties", "PropertiesChanged"))
                r = on_properties_changed(mon, m);
        else if (startswith(sd_bus_message_get_interface(m) ?: "", IMMOD_INTERFACE_PREFIX))
                r = on_immod_signal(mon, m);
        else
                return 0;
        if (r < 0)
                log_warning_errno(r, "Failed to show a %s signal: %m", sd_bus_message_get_member(m));
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Monitor *mon = userdata;
        _cleanup_(json_decrefp) json_t *event = NULL;
        const char *name, *old_owner, *new_owner;
        int r;

        r = sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner);
        if (r < 0 || !streq(name, IMMOD_BUS_NAME))
                return 0;

        free(mon->owner);
        mon->owner = *new_owner ? strdup(new_owner) : NULL;

        event = json_object();
        if (!event)
                return 0;
        (void) emit(mon, IMMOD_MANAGER_PATH, IMMOD_MANAGER_INTERFACE, *new_owner ? "ImmodStarted" : "ImmodStopped",
                    event);
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

int verb_monitor(Context *c, int argc, char **argv) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(monitor_done) Monitor mon = { .context = c };
        const char *owner;
        sigset_t mask;
        sd_bus *bus;
        int r;

        r = context_get_bus(c, &bus);
        if (r < 0)
                return r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block SIGINT and SIGTERM: %m");

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate the event loop: %m");
        r = sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGINT and SIGTERM: %m");

        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the bus to the event loop: %m");
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0)
                return log_error_errno(r, "Failed to set exit on disconnect: %m");

        /* The matches first, then the owner: a restart in between is not missed. */
        r = sd_bus_add_match(bus, NULL,
                             "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                             "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" IMMOD_BUS_NAME "'",
                             on_name_owner_changed, &mon);
        if (r >= 0)
                r = sd_bus_add_match(bus, NULL, "type='signal',path_namespace='" IMMOD_MANAGER_PATH "'", on_signal,
                                     &mon);
        if (r < 0)
                return log_error_errno(r, "Failed to subscribe to immod's signals: %m");

        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetNameOwner", &error, &reply, "s", IMMOD_BUS_NAME);
        if (r < 0 && !sd_bus_error_has_name(&error, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return bus_log_error(&error, r, "find immod on the bus");
        if (r < 0)
                log_warning("immod is not running; waiting for it to start.");
        else if (!mon.owner) { /* unless NameOwnerChanged already said */
                r = sd_bus_message_read(reply, "s", &owner);
                if (r < 0)
                        return log_error_errno(r, "Failed to read immod's unique name: %m");
                mon.owner = strdup(owner);
                if (!mon.owner)
                        return log_oom();
        }

        /* On stderr, so that --json output stays pure; tests wait for this line. */
        fprintf(stderr, "Following immod's properties and signals; press Ctrl-C to stop.\n");

        r = sd_event_loop(event);
        if (r < 0)
                return log_error_errno(r, "The event loop failed: %m");
        return 0;
}
