/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "event-util.h"

int deadline_timer_init(DeadlineTimer *t, sd_event *e, const char *description, sd_event_time_handler_t handler,
                        void *userdata) {
        int r;

        /* Accuracy 1 µs: sd-event's default slack (250 ms) would ruin STmin pacing and P2. */
        r = sd_event_add_time(e, &t->source, CLOCK_MONOTONIC, USEC_INFINITY, 1, handler, userdata);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(t->source, description);
        return sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
}

int deadline_timer_set(DeadlineTimer *t, usec_t when) {
        int r;

        if (!t->source)
                return -ESTALE;
        if (when == USEC_INFINITY)
                return sd_event_source_set_enabled(t->source, SD_EVENT_OFF);
        r = sd_event_source_set_time(t->source, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(t->source, SD_EVENT_ONESHOT);
}

void deadline_timer_done(DeadlineTimer *t) {
        t->source = sd_event_source_disable_unref(t->source);
}

int event_timer_arm(sd_event *e, sd_event_source **s, usec_t when, usec_t accuracy, sd_event_time_handler_t handler,
                    void *userdata, const char *description) {
        int r;

        if (!*s) {
                r = sd_event_add_time(e, s, CLOCK_MONOTONIC, when, accuracy, handler, userdata);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(*s, description);
                return 0;
        }
        r = sd_event_source_set_time(*s, when);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(*s, SD_EVENT_ONESHOT);
}

usec_t event_now(sd_event *e) {
        uint64_t now;

        if (sd_event_now(e, CLOCK_MONOTONIC, &now) < 0)
                return now_usec(CLOCK_MONOTONIC);
        return now;
}
