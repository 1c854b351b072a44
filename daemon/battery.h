/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Battery monitoring (dbus-api.md BatteryVoltage/BatteryState/BatteryMinimum,
 * vehicle-protocol.md §2 and DID A010). The monitor and the trace are state machines
 * without I/O and without a clock of their own: the daemon feeds them readings and the
 * monotonic time, so the tests drive them with a fake clock. The two readers at the bottom
 * are the only I/O.
 */

#include "util.h"

#define BATTERY_VOLTS_MAX 40.0                             /* above: a bad reading, not a battery */
#define BATTERY_HYSTERESIS_V 0.1                           /* to leave low or critical again */
#define BATTERY_STALE_USEC (10 * USEC_PER_SEC)             /* no good reading for this long: unknown */
#define BATTERY_NOTIFY_INTERVAL_USEC (250 * USEC_PER_MSEC) /* voltage: at most 4 PropertiesChanged a second */
#define BATTERY_NOTIFY_MIN_DELTA_V 0.010                   /* smaller moves are not news */
#define BATTERY_TRACE_BUCKETS 1024U                        /* ~17 min of 1 s buckets: a whole reset */
#define BATTERY_TRACE_BUCKET_USEC USEC_PER_SEC
#define BATTERY_HWMON_FILE_MAX 64U

typedef enum BatteryState {
        BATTERY_STATE_UNKNOWN,
        BATTERY_STATE_OK,
        BATTERY_STATE_LOW,      /* below the profile's start minimum: no reset may start */
        BATTERY_STATE_CRITICAL, /* below the running minimum */
        _BATTERY_STATE_MAX,
} BatteryState;

/* "unknown", "ok", "low", "critical": the BatteryState values of dbus-api.md. */
const char *battery_state_to_string(BatteryState s);
/* "battery-low", "battery-critical" for the Problems property; NULL for unknown and ok. */
const char *battery_state_to_problem(BatteryState s);

/* Monitor */

typedef struct BatteryMonitor {
        double start_min_v;
        double running_min_v;

        double volts;      /* last good reading; NaN when none or stale */
        usec_t sampled_at; /* of that reading; USEC_INFINITY when none */
        BatteryState state;
        unsigned n_bad; /* rejected readings since init */

        double notified_volts; /* what the bus was last told */
        BatteryState notified_state;
        usec_t notified_at; /* USEC_INFINITY: never */

        char reason[192]; /* battery_allows_reset()'s sentence */
} BatteryMonitor;

/*
 * The profile's rules: low below start_min_v, critical below running_min_v
 * (VehicleProfile.battery.start_min_v and .warn_below_v). 0 and 0 make every good reading
 * "ok", for the time before a vehicle is known. -EINVAL unless
 * 0 <= running_min_v <= start_min_v <= BATTERY_VOLTS_MAX.
 */
int battery_monitor_init(BatteryMonitor *m, double start_min_v, double running_min_v);
/* Other rules (another vehicle): keeps the reading, classifies it afresh without hysteresis. */
int battery_monitor_set_rules(BatteryMonitor *m, double start_min_v, double running_min_v);

/*
 * A reading. -EINVAL for NaN, infinite, negative or above BATTERY_VOLTS_MAX: counted in
 * n_bad and otherwise ignored (a stale reading turns into unknown by itself).
 * Leaving low needs start_min_v + BATTERY_HYSTERESIS_V, leaving critical
 * running_min_v + BATTERY_HYSTERESIS_V; entering either takes the plain threshold.
 */
int battery_monitor_sample(BatteryMonitor *m, double volts, usec_t now);
/* Turns the state into unknown (and the voltage into NaN) once the last good reading is
 * older than BATTERY_STALE_USEC. Returns true when that happened now. */
bool battery_monitor_tick(BatteryMonitor *m, usec_t now);

static inline BatteryState battery_monitor_state(const BatteryMonitor *m) {
        return m->state;
}
/* Volts, NaN when unknown: BatteryVoltage as is. */
static inline double battery_monitor_voltage(const BatteryMonitor *m) {
        return m->volts;
}

/*
 * Whether to emit PropertiesChanged for BatteryVoltage/BatteryState now. True when the
 * state changed (at once, whatever the rate), or when the voltage moved by at least
 * BATTERY_NOTIFY_MIN_DELTA_V and the last notification is BATTERY_NOTIFY_INTERVAL_USEC
 * old. A true answer records the values as told: the caller must emit.
 */
bool battery_monitor_should_notify(BatteryMonitor *m, usec_t now);
/* When a change held back by the rate limit may be told: for a timer, so the last value
 * is not left untold when readings stop. USEC_INFINITY when nothing is pending. */
usec_t battery_monitor_next_notify(const BatteryMonitor *m);

/*
 * Whether an immobilizer reset may start: only when the state is ok. Otherwise false, and
 * *ret_reason (if not NULL) is a sentence for the technician for the BatteryLow error, e.g.
 * "the battery is at 12.40 V; a reset needs at least 13.0 V: connect a power supply
 * holding 13.5 V". The sentence lives in the monitor until the next call.
 * With `battery: {source: none}` the daemon has no readings and must not ask.
 */
bool battery_allows_reset(BatteryMonitor *m, const char **ret_reason);

/* Trace: one per procedure, for BatteryMinimum and the audit record */

typedef struct BatteryTraceBucket {
        usec_t start; /* of the first reading in it */
        double min, max, sum;
        unsigned n;
} BatteryTraceBucket;

typedef struct BatteryTrace {
        bool running;
        usec_t begun_at, ended_at;
        double minimum; /* NaN when none */
        usec_t minimum_at;
        uint64_t n_samples; /* all, also those that fell out of the ring */
        size_t first, n_buckets;
        BatteryTraceBucket buckets[BATTERY_TRACE_BUCKETS];
} BatteryTrace;

void battery_trace_begin(BatteryTrace *t, usec_t now);
/* 1 when kept, 0 when the trace is not running, -EINVAL for a bad reading. Readings go
 * into 1 s buckets; when BATTERY_TRACE_BUCKETS are full the oldest bucket goes, the
 * minimum stays. */
int battery_trace_add(BatteryTrace *t, double volts, usec_t now);
void battery_trace_end(BatteryTrace *t, usec_t now);
/* Lowest good reading since begin, NaN when none. */
double battery_trace_minimum(const BatteryTrace *t);
size_t battery_trace_n_buckets(const BatteryTrace *t);
/* Bucket i, oldest first. -ERANGE when i >= battery_trace_n_buckets(). */
int battery_trace_get(const BatteryTrace *t, size_t i, BatteryTraceBucket *ret);

/* Readers */

/* A hwmon input file (e.g. /sys/class/hwmon/hwmon0/in1_input): decimal millivolts with an
 * optional trailing newline. -EINVAL, logged with the file and its content, for anything
 * else; the open/read errors as they are. */
int battery_read_hwmon(const char *path, double *ret_volts);

/* A positive ReadDataByIdentifier answer "62 DID_HI DID_LO MV_HI MV_LO" (exactly five
 * bytes); -EBADMSG for anything else, a negative response included. */
int battery_parse_answer(uint16_t did, const uint8_t *answer, size_t n, double *ret_volts);
static inline int battery_parse_a010(const uint8_t *answer, size_t n, double *ret_volts) {
        return battery_parse_answer(0xA010, answer, n, ret_volts);
}
