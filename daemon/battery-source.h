/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The battery watch: feeds the BatteryMonitor (battery.h) from the configured source.
 *   hwmon:PATH  the file is read every second, always;
 *   ecu         DID A010 is read through the daemon's UdsLink every 2 s, but only while
 *               a procedure runs (battery_watch_set_active()), plus once after a method
 *               call (battery_watch_kick()): polling a sleeping car on our own would keep
 *               it awake;
 *   none        nothing is read; BatteryState stays unknown.
 * It calls its owner for every good reading (for the procedure's trace) and when the bus
 * should hear about BatteryVoltage/BatteryState (rate-limited by the monitor, with a timer
 * for a change held back).
 */

#include <systemd/sd-event.h>

#include "battery.h"
#include "config.h"
#include "profile.h"
#include "uds-link.h"

#define BATTERY_WATCH_HWMON_INTERVAL_USEC USEC_PER_SEC
#define BATTERY_WATCH_ECU_INTERVAL_USEC (2 * USEC_PER_SEC)

typedef struct BatteryWatch BatteryWatch;

typedef struct BatteryWatchHandlers {
        /* a good reading */
        void (*sample)(BatteryWatch *w, double volts, usec_t now, void *userdata);
        /* emit BatteryVoltage/BatteryState now */
        void (*notify)(BatteryWatch *w, void *userdata);
} BatteryWatchHandlers;

/* reference: the profile for the DID before a vehicle is known. Logs what failed. */
int battery_watch_new(sd_event *e, UdsLink *link, const ImmodConfig *config, const VehicleProfile *reference,
                      BatteryWatch **ret);
BatteryWatch *battery_watch_free(BatteryWatch *w);

void battery_watch_set_handlers(BatteryWatch *w, const BatteryWatchHandlers *h, void *userdata);
/* The matched vehicle's rules; NULL: none known (every good reading is ok). */
void battery_watch_set_profile(BatteryWatch *w, const VehicleProfile *profile);
/* ecu: poll every 2 s while true. No effect for the other sources. */
void battery_watch_set_active(BatteryWatch *w, bool active);
/* ecu: one reading now, riding on traffic a method call has just caused. */
void battery_watch_kick(BatteryWatch *w);
/* hwmon: a reading now (e.g. right before a reset's check). */
void battery_watch_sample_now(BatteryWatch *w);
/* A reading that came some other way (a procedure's own A010 read). */
void battery_watch_feed(BatteryWatch *w, double volts);

/* false for `battery: {source: none}` */
bool battery_watch_enabled(const BatteryWatch *w);
BatteryMonitor *battery_watch_monitor(BatteryWatch *w);
