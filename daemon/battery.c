/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <math.h>
#include <stdio.h>

#include "battery.h"
#include "fileio.h"
#include "log.h"

static const char *const battery_state_table[_BATTERY_STATE_MAX] = {
        [BATTERY_STATE_UNKNOWN] = "unknown",
        [BATTERY_STATE_OK] = "ok",
        [BATTERY_STATE_LOW] = "low",
        [BATTERY_STATE_CRITICAL] = "critical",
};

DEFINE_STRING_TABLE_TO_STRING(battery_state, BatteryState, _BATTERY_STATE_MAX)

const char *battery_state_to_problem(BatteryState s) {
        switch (s) {
        case BATTERY_STATE_LOW:
                return "battery-low";
        case BATTERY_STATE_CRITICAL:
                return "battery-critical";
        default:
                return NULL;
        }
}

static bool volts_valid(double v) {
        return isfinite(v) && v >= 0.0 && v <= BATTERY_VOLTS_MAX;
}

static bool rules_valid(double start_min_v, double running_min_v) {
        return volts_valid(start_min_v) && volts_valid(running_min_v) && running_min_v <= start_min_v;
}

/* Entering low or critical takes the plain threshold; leaving it needs the threshold plus
 * the hysteresis, so a voltage hovering at a threshold does not flap. */
static BatteryState classify(const BatteryMonitor *m, double v, BatteryState current) {
        if (current == BATTERY_STATE_CRITICAL && v < m->running_min_v + BATTERY_HYSTERESIS_V)
                return BATTERY_STATE_CRITICAL;
        if (v < m->running_min_v)
                return BATTERY_STATE_CRITICAL;
        if ((current == BATTERY_STATE_LOW || current == BATTERY_STATE_CRITICAL) && v < m->start_min_v + BATTERY_HYSTERESIS_V)
                return BATTERY_STATE_LOW;
        if (v < m->start_min_v)
                return BATTERY_STATE_LOW;
        return BATTERY_STATE_OK;
}

int battery_monitor_init(BatteryMonitor *m, double start_min_v, double running_min_v) {
        if (!rules_valid(start_min_v, running_min_v))
                return -EINVAL;

        *m = (BatteryMonitor) {
                .start_min_v = start_min_v,
                .running_min_v = running_min_v,
                .volts = NAN,
                .sampled_at = USEC_INFINITY,
                .state = BATTERY_STATE_UNKNOWN,
                .notified_volts = NAN,
                .notified_state = BATTERY_STATE_UNKNOWN,
                .notified_at = USEC_INFINITY,
        };
        return 0;
}

int battery_monitor_set_rules(BatteryMonitor *m, double start_min_v, double running_min_v) {
        if (!rules_valid(start_min_v, running_min_v))
                return -EINVAL;

        m->start_min_v = start_min_v;
        m->running_min_v = running_min_v;
        if (m->state != BATTERY_STATE_UNKNOWN)
                m->state = classify(m, m->volts, BATTERY_STATE_UNKNOWN);
        return 0;
}

int battery_monitor_sample(BatteryMonitor *m, double volts, usec_t now) {
        if (!volts_valid(volts)) {
                m->n_bad++;
                return -EINVAL;
        }

        m->state = classify(m, volts, m->state);
        m->volts = volts;
        m->sampled_at = now;
        return 0;
}

bool battery_monitor_tick(BatteryMonitor *m, usec_t now) {
        if (m->state == BATTERY_STATE_UNKNOWN || m->sampled_at == USEC_INFINITY)
                return false;
        if (now < m->sampled_at || now - m->sampled_at <= BATTERY_STALE_USEC)
                return false;

        m->state = BATTERY_STATE_UNKNOWN;
        m->volts = NAN;
        return true;
}

static bool volts_changed(double a, double b) {
        if (isnan(a) || isnan(b))
                return isnan(a) != isnan(b);
        /* a small allowance: 12.41 - 12.40 is a hair below 0.01 in binary */
        return fabs(a - b) >= BATTERY_NOTIFY_MIN_DELTA_V - 1e-9;
}

static bool rate_limited(const BatteryMonitor *m, usec_t now) {
        return m->notified_at != USEC_INFINITY && now < m->notified_at + BATTERY_NOTIFY_INTERVAL_USEC;
}

bool battery_monitor_should_notify(BatteryMonitor *m, usec_t now) {
        bool state_changed = m->state != m->notified_state;

        if (!state_changed) {
                if (!volts_changed(m->volts, m->notified_volts))
                        return false;
                if (rate_limited(m, now))
                        return false;
        }

        m->notified_state = m->state;
        m->notified_volts = m->volts;
        m->notified_at = now;
        return true;
}

usec_t battery_monitor_next_notify(const BatteryMonitor *m) {
        if (m->state != m->notified_state)
                return 0;
        if (!volts_changed(m->volts, m->notified_volts))
                return USEC_INFINITY;
        if (m->notified_at == USEC_INFINITY)
                return 0;
        return m->notified_at + BATTERY_NOTIFY_INTERVAL_USEC;
}

/* "13.0" for figures of the profiles, "13.05" when that is what the profile says. */
static void format_rule(char *buf, size_t size, double v) {
        if (fabs(v * 10.0 - round(v * 10.0)) < 1e-6)
                snprintf(buf, size, "%.1f", v);
        else
                snprintf(buf, size, "%.2f", v);
}

bool battery_allows_reset(BatteryMonitor *m, const char **ret_reason) {
        char need[16], supply[16];
        double need_v;

        switch (m->state) {
        case BATTERY_STATE_OK:
                if (ret_reason)
                        *ret_reason = NULL;
                return true;

        case BATTERY_STATE_UNKNOWN:
                snprintf(m->reason, sizeof m->reason,
                         "the battery voltage is not known (no good reading in the last %u s); "
                         "a reset needs at least %.1f V: check the battery source in the "
                         "configuration and the connection to the vehicle",
                         (unsigned) (BATTERY_STALE_USEC / USEC_PER_SEC), m->start_min_v);
                break;

        default:
                /* Just risen above the start minimum, still low by the hysteresis: name the
                 * figure that gets out of low rather than one the voltage already passes. */
                need_v = m->volts >= m->start_min_v ? m->start_min_v + BATTERY_HYSTERESIS_V : m->start_min_v;
                format_rule(need, sizeof need, need_v);
                format_rule(supply, sizeof supply, m->start_min_v + 0.5);
                /* rounded down, so a reading just below the threshold never shows as it */
                snprintf(m->reason, sizeof m->reason,
                         "the battery is at %.2f V; a reset needs at least %s V: "
                         "connect a power supply holding %s V",
                         floor(m->volts * 100.0) / 100.0, need, supply);
                break;
        }

        if (ret_reason)
                *ret_reason = m->reason;
        return false;
}

void battery_trace_begin(BatteryTrace *t, usec_t now) {
        t->running = true;
        t->begun_at = now;
        t->ended_at = USEC_INFINITY;
        t->minimum = NAN;
        t->minimum_at = USEC_INFINITY;
        t->n_samples = 0;
        t->first = 0;
        t->n_buckets = 0;
}

int battery_trace_add(BatteryTrace *t, double volts, usec_t now) {
        BatteryTraceBucket *b = NULL;

        if (!volts_valid(volts))
                return -EINVAL;
        if (!t->running)
                return 0;

        if (t->n_buckets > 0) {
                b = &t->buckets[(t->first + t->n_buckets - 1) % BATTERY_TRACE_BUCKETS];
                if (now < b->start || now - b->start >= BATTERY_TRACE_BUCKET_USEC)
                        b = NULL;
        }
        if (!b) {
                if (t->n_buckets == BATTERY_TRACE_BUCKETS) {
                        t->first = (t->first + 1) % BATTERY_TRACE_BUCKETS;
                        t->n_buckets--;
                }
                b = &t->buckets[(t->first + t->n_buckets) % BATTERY_TRACE_BUCKETS];
                t->n_buckets++;
                *b = (BatteryTraceBucket) { .start = now, .min = volts, .max = volts };
        }

        b->min = MIN(b->min, volts);
        b->max = MAX(b->max, volts);
        b->sum += volts;
        b->n++;

        if (isnan(t->minimum) || volts < t->minimum) {
                t->minimum = volts;
                t->minimum_at = now;
        }
        t->n_samples++;
        return 1;
}

void battery_trace_end(BatteryTrace *t, usec_t now) {
        if (!t->running)
                return;
        t->running = false;
        t->ended_at = now;
}

double battery_trace_minimum(const BatteryTrace *t) {
        return t->minimum;
}

size_t battery_trace_n_buckets(const BatteryTrace *t) {
        return t->n_buckets;
}

int battery_trace_get(const BatteryTrace *t, size_t i, BatteryTraceBucket *ret) {
        if (i >= t->n_buckets)
                return -ERANGE;
        *ret = t->buckets[(t->first + i) % BATTERY_TRACE_BUCKETS];
        return 0;
}

/* The file's bytes as a C-ish string for a message: printable ASCII as is, the rest escaped. */
static void escape_content(const char *s, size_t n, char *buf, size_t size) {
        size_t k = 0;

        for (size_t i = 0; i < n && k + 5 < size; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c == '\n')
                        k += snprintf(buf + k, size - k, "\\n");
                else if (c == '"' || c == '\\')
                        k += snprintf(buf + k, size - k, "\\%c", c);
                else if (c >= 0x20 && c < 0x7f)
                        buf[k++] = (char) c;
                else
                        k += snprintf(buf + k, size - k, "\\x%02x", c);
        }
        buf[k] = 0;
}

int battery_read_hwmon(const char *path, double *ret_volts) {
        _cleanup_free_ char *buf = NULL;
        char shown[BATTERY_HWMON_FILE_MAX * 4 + 1];
        uint64_t mv = 0;
        size_t size = 0, n;
        int r;

        r = read_file_bounded(path, BATTERY_HWMON_FILE_MAX, &buf, &size);
        if (r == -EFBIG)
                return log_debug_errno(EINVAL, "%s: more than %u bytes, not a millivolt reading",
                                       path, BATTERY_HWMON_FILE_MAX);
        if (r < 0)
                return r;

        n = size;
        if (n > 0 && buf[n - 1] == '\n')
                n--;
        /* up to 9 digits: no overflow, and far beyond any battery */
        bool ok = n > 0 && n <= 9;
        for (size_t i = 0; ok && i < n; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                        ok = false;
                else
                        mv = mv * 10 + (uint64_t) (buf[i] - '0');
        }
        if (!ok) {
                escape_content(buf, size, shown, sizeof shown);
                return log_debug_errno(EINVAL, "%s: \"%s\" is not a millivolt reading", path, shown);
        }

        *ret_volts = (double) mv / 1000.0;
        return 0;
}

int battery_parse_answer(uint16_t did, const uint8_t *answer, size_t n, double *ret_volts) {
        if (!answer || n != 5 || answer[0] != 0x62 || be16(answer + 1) != did)
                return -EBADMSG;

        *ret_volts = (double) be16(answer + 3) / 1000.0;
        return 0;
}
