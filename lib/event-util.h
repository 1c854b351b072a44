/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A one-shot CLOCK_MONOTONIC timer that follows a moving deadline: the glue between the
 * I/O-free state machines (ISO-TP, UDS), which say when they next need to run, and
 * sd-event.
 */

#include <systemd/sd-event.h>

#include "util.h"

typedef struct DeadlineTimer {
        sd_event_source *source;
} DeadlineTimer;

/* Creates the (disabled) timer; description names it in sd-event's debug output. */
int deadline_timer_init(DeadlineTimer *t, sd_event *e, const char *description, sd_event_time_handler_t handler,
                        void *userdata);
/* Arms the timer for `when` (CLOCK_MONOTONIC µs), or disables it for USEC_INFINITY. */
int deadline_timer_set(DeadlineTimer *t, usec_t when);
void deadline_timer_done(DeadlineTimer *t);

/* Arms the one-shot CLOCK_MONOTONIC timer *s for `when`, made (and named) the first time:
 * the one re-arm helper for timers that fire now and then. */
int event_timer_arm(sd_event *e, sd_event_source **s, usec_t when, usec_t accuracy, sd_event_time_handler_t handler,
                    void *userdata, const char *description);

/* The loop's idea of now (CLOCK_MONOTONIC µs), stable within one iteration. */
usec_t event_now(sd_event *e);
