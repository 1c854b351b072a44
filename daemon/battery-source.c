/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <math.h>

#include "battery-source.h"
#include "log.h"
#include "uds.h"

struct BatteryWatch {
        sd_event *event;
        UdsLink *link;
        BatterySource source;
        const char *hwmon_path; /* the configuration's */
        const VehicleProfile *reference, *profile;

        BatteryMonitor monitor;
        sd_event_source *sample_timer, *notify_timer;
        bool active;
        bool reading;   /* an A010 request is out */
        bool kicked;    /* a caller wants a reading: the timer reads even while not active */
        int last_error; /* of the hwmon reader, so a broken file is logged once, not every second */

        BatteryWatchHandlers handlers;
        void *userdata;
};

static usec_t now_mono(void) {
        return now_usec(CLOCK_MONOTONIC);
}

static void watch_announce(BatteryWatch *w, usec_t now);

static int on_notify_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        watch_announce(userdata, now_mono());
        return 0;
}

/* Tells the owner when the monitor says so, else arms the timer for a held-back change. */
static void watch_announce(BatteryWatch *w, usec_t now) {
        if (battery_monitor_should_notify(&w->monitor, now) && w->handlers.notify)
                w->handlers.notify(w, w->userdata);

        usec_t next = battery_monitor_next_notify(&w->monitor);
        if (next == USEC_INFINITY) {
                if (w->notify_timer)
                        (void) sd_event_source_set_enabled(w->notify_timer, SD_EVENT_OFF);
                return;
        }
        if (!w->notify_timer) {
                int r = sd_event_add_time(w->event, &w->notify_timer, CLOCK_MONOTONIC, next, 0, on_notify_timer, w);
                if (r < 0) {
                        log_warning_errno(r, "Failed to arm the battery notification timer: %m");
                        return;
                }
                (void) sd_event_source_set_description(w->notify_timer, "battery-notify");
        } else
                (void) sd_event_source_set_time(w->notify_timer, next);
        (void) sd_event_source_set_enabled(w->notify_timer, SD_EVENT_ONESHOT);
}

static void watch_sample(BatteryWatch *w, double volts) {
        usec_t now = now_mono();
        BatteryState before = battery_monitor_state(&w->monitor);

        if (battery_monitor_sample(&w->monitor, volts, now) < 0) {
                log_warning("Battery: ignoring the reading %.3f V (not a battery voltage).", volts);
                (void) battery_monitor_tick(&w->monitor, now);
        } else if (w->handlers.sample)
                w->handlers.sample(w, volts, now, w->userdata);

        BatteryState after = battery_monitor_state(&w->monitor);
        if (after != before)
                log_info("Battery: %s -> %s (%.2f V).", battery_state_to_string(before),
                         battery_state_to_string(after), battery_monitor_voltage(&w->monitor));
        watch_announce(w, now);
}

static void watch_tick(BatteryWatch *w) {
        usec_t now = now_mono();
        if (battery_monitor_tick(&w->monitor, now))
                log_info("Battery: no good reading for %u s; the state is unknown.",
                         (unsigned) (BATTERY_STALE_USEC / USEC_PER_SEC));
        watch_announce(w, now);
}

static void read_hwmon(BatteryWatch *w) {
        double volts;
        int r;

        r = battery_read_hwmon(w->hwmon_path, &volts);
        if (r < 0) {
                if (r != w->last_error)
                        log_warning_errno(r, "Battery: cannot read a voltage from %s: %s (ignored; the state "
                                             "turns unknown after %u s without a good reading).",
                                          w->hwmon_path,
                                          r == -EINVAL ? "it does not hold a whole number of millivolts"
                                                       : strerror(-r),
                                          (unsigned) (BATTERY_STALE_USEC / USEC_PER_SEC));
                w->last_error = r;
                watch_tick(w);
                return;
        }
        if (w->last_error != 0)
                log_info("Battery: %s reads again.", w->hwmon_path);
        w->last_error = 0;
        watch_sample(w, volts);
}

static void on_a010(UdsClient *c, const UdsResponse *resp, void *userdata) {
        BatteryWatch *w = userdata;
        double volts;

        w->reading = false;
        if (resp->error == -ECANCELED)
                return; /* shutting down: w may be on its way out */
        if (resp->error < 0 || resp->nrc != 0 ||
            battery_parse_answer(w->profile ? w->profile->dids.battery : w->reference->dids.battery, resp->data,
                                 resp->size, &volts) < 0) {
                log_debug("Battery: no voltage from the ECU (error %d, NRC %02X).", resp->error, resp->nrc);
                watch_tick(w);
                return;
        }
        watch_sample(w, volts);
}

static void read_ecu(BatteryWatch *w) {
        uint8_t req[3] = { UDS_READ_DID };
        int r;

        if (w->reading)
                return;
        put_be16(req + 1, (w->profile ?: w->reference)->dids.battery);
        r = uds_link_request(w->link, req, sizeof(req), on_a010, w);
        if (r < 0) {
                log_debug_errno(r, "Battery: cannot queue the A010 read: %m");
                return;
        }
        w->reading = true;
}

static void watch_rearm(BatteryWatch *w);

static int on_sample_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        BatteryWatch *w = userdata;

        if (w->source == BATTERY_SOURCE_HWMON)
                read_hwmon(w);
        else if (w->source == BATTERY_SOURCE_ECU) {
                if (w->active || w->kicked)
                        read_ecu(w);
                else
                        watch_tick(w); /* only to let an old reading go stale */
                w->kicked = false;
        }
        watch_rearm(w);
        return 0;
}

/* hwmon: every second. ecu: every 2 s while active; else once, when the last reading goes
 * stale; a kick (battery_watch_kick()) brings the next one to the end of the last reading's
 * period. none: never. */
static void watch_rearm(BatteryWatch *w) {
        usec_t when = USEC_INFINITY;

        if (!w->sample_timer)
                return;
        if (w->source == BATTERY_SOURCE_HWMON)
                when = now_mono() + BATTERY_WATCH_HWMON_INTERVAL_USEC;
        else if (w->source == BATTERY_SOURCE_ECU && w->active)
                when = now_mono() + BATTERY_WATCH_ECU_INTERVAL_USEC;
        else if (w->source == BATTERY_SOURCE_ECU && w->monitor.sampled_at != USEC_INFINITY &&
                 battery_monitor_state(&w->monitor) != BATTERY_STATE_UNKNOWN)
                when = w->monitor.sampled_at + BATTERY_STALE_USEC + 1;
        if (w->source == BATTERY_SOURCE_ECU && w->kicked && w->monitor.sampled_at != USEC_INFINITY)
                when = MIN(when, w->monitor.sampled_at + BATTERY_WATCH_ECU_INTERVAL_USEC);
        if (when == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(w->sample_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(w->sample_timer, when);
        (void) sd_event_source_set_enabled(w->sample_timer, SD_EVENT_ONESHOT);
}

int battery_watch_new(sd_event *e, UdsLink *link, const ImmodConfig *config, const VehicleProfile *reference,
                      BatteryWatch **ret) {
        BatteryWatch *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return log_error_errno(-ENOMEM, "Out of memory.");
        w->event = sd_event_ref(e);
        w->link = link;
        w->source = config->battery_source;
        w->hwmon_path = config->battery_hwmon_path;
        w->reference = reference;
        (void) battery_monitor_init(&w->monitor, 0, 0);

        if (w->source == BATTERY_SOURCE_HWMON && !w->hwmon_path)
                w->source = BATTERY_SOURCE_NONE;
        if (w->source != BATTERY_SOURCE_NONE) {
                r = sd_event_add_time(e, &w->sample_timer, CLOCK_MONOTONIC, now_mono(), 0, on_sample_timer, w);
                if (r < 0) {
                        battery_watch_free(w);
                        return log_error_errno(r, "Failed to set up the battery timer: %m");
                }
                (void) sd_event_source_set_description(w->sample_timer, "battery-sample");
                /* hwmon: the first reading at once; ecu: nothing until there is traffic */
                if (w->source == BATTERY_SOURCE_ECU)
                        (void) sd_event_source_set_enabled(w->sample_timer, SD_EVENT_OFF);
        }
        if (w->source == BATTERY_SOURCE_HWMON)
                log_info("Battery: watching %s every second.", w->hwmon_path);
        else if (w->source == BATTERY_SOURCE_ECU)
                log_info("Battery: reading DID A010 from the ECU during procedures and method calls.");
        else
                log_info("Battery: not watched (battery: {source: none}).");
        *ret = w;
        return 0;
}

BatteryWatch *battery_watch_free(BatteryWatch *w) {
        if (!w)
                return NULL;
        /* a read still out is answered with -ECANCELED by uds_link_cancel_all() first */
        w->sample_timer = sd_event_source_disable_unref(w->sample_timer);
        w->notify_timer = sd_event_source_disable_unref(w->notify_timer);
        sd_event_unref(w->event);
        free(w);
        return NULL;
}

void battery_watch_set_handlers(BatteryWatch *w, const BatteryWatchHandlers *h, void *userdata) {
        w->handlers = h ? *h : (BatteryWatchHandlers) {};
        w->userdata = userdata;
}

void battery_watch_set_profile(BatteryWatch *w, const VehicleProfile *profile) {
        if (w->profile == profile)
                return;
        w->profile = profile;
        double start = profile ? profile->battery.start_min_v : 0, running = profile ? profile->battery.warn_below_v : 0;
        if (battery_monitor_set_rules(&w->monitor, start, running) < 0) {
                log_warning("Battery: the rules of %s (%.2f V, %.2f V) are invalid; using none.",
                            profile ? profile->name : "?", start, running);
                (void) battery_monitor_set_rules(&w->monitor, 0, 0);
        } else if (profile)
                log_info("Battery: rules of %s: low below %.2f V, critical below %.2f V.", profile->name, start,
                         running);
        watch_announce(w, now_mono());
}

void battery_watch_set_active(BatteryWatch *w, bool active) {
        if (w->active == active)
                return;
        w->active = active;
        if (w->source != BATTERY_SOURCE_ECU)
                return;
        if (active)
                read_ecu(w);
        watch_rearm(w);
}

void battery_watch_kick(BatteryWatch *w) {
        if (w->source != BATTERY_SOURCE_ECU)
                return;
        /* Shared with the schedule: a reading younger than its period is recent enough, and
         * the next one comes when that period ends, active or not (watch_rearm()). */
        if (w->monitor.sampled_at != USEC_INFINITY && now_mono() < w->monitor.sampled_at + BATTERY_WATCH_ECU_INTERVAL_USEC)
                w->kicked = true;
        else
                read_ecu(w);
        watch_rearm(w);
}

void battery_watch_sample_now(BatteryWatch *w) {
        if (w->source == BATTERY_SOURCE_HWMON)
                read_hwmon(w);
}

void battery_watch_feed(BatteryWatch *w, double volts) {
        if (w->source == BATTERY_SOURCE_NONE || isnan(volts))
                return;
        watch_sample(w, volts);
        watch_rearm(w);
}

bool battery_watch_enabled(const BatteryWatch *w) {
        return w && w->source != BATTERY_SOURCE_NONE;
}

BatteryMonitor *battery_watch_monitor(BatteryWatch *w) {
        return &w->monitor;
}
