/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "event-util.h"
#include "frame-link.h"
#include "log.h"
#include "transport-internal.h"

/* Our ISO-TP engine over a frame link (CAN_RAW or the virtual bus), on sd-event. */
typedef struct IsoTpTransport {
        Transport transport;
        FrameLink *link;
        bool owns_link;
        IsoTp *engine;
        DeadlineTimer timer;
        usec_t armed; /* the timer's deadline; USEC_INFINITY when off */
        TransportFrameFilter filter;
        void *filter_userdata;
} IsoTpTransport;

/* A later deadline, or none, leaves the timer where it is: it then fires early once, the
 * tick finds nothing due and arms it anew (or not at all). The N_Cr deadline moves on with
 * every consecutive frame, and each multi-frame message starts and ends a wait for flow
 * control; moving the timer each time costs a timerfd_settime() (one per frame, or several
 * per message), leaving it costs one wakeup per N_Bs/N_Cr at most, none while idle. */
static void rearm(IsoTpTransport *t) {
        usec_t next = isotp_next_deadline(t->engine);
        int r;

        if (next == USEC_INFINITY || next >= t->armed)
                return;
        r = deadline_timer_set(&t->timer, next);
        if (r < 0) {
                log_error_errno(r, "%s: cannot arm the ISO-TP timer: %m", t->transport.description);
                return;
        }
        t->armed = next;
}

static int on_send_frame(void *userdata, const struct can_frame *f) {
        IsoTpTransport *t = userdata;
        struct can_frame copy;

        if (!t->filter)
                return frame_link_send(t->link, f);
        /* Fault injection: a dropped frame looks sent to the engine, as on a real bus. */
        copy = *f;
        if (t->filter(t->filter_userdata, &copy) > 0)
                return 0;
        if (copy.len > CAN_MAX_DLEN)
                copy.len = CAN_MAX_DLEN;
        return frame_link_send(t->link, &copy);
}

static int on_send_frames(void *userdata, const struct can_frame *frames, size_t n) {
        IsoTpTransport *t = userdata;
        int r;

        if (!t->filter)
                return frame_link_send_batch(t->link, frames, n);
        /* With fault injection, one by one through the filter. */
        for (size_t i = 0; i < n; i++) {
                r = on_send_frame(t, &frames[i]);
                if (r < 0)
                        return i > 0 ? (int) i : r;
        }
        return (int) n;
}

static void on_received(void *userdata, const uint8_t *data, size_t size) {
        IsoTpTransport *t = userdata;
        transport_report_received(&t->transport, data, size);
}

static void on_sent(void *userdata, IsoTpResult result) {
        IsoTpTransport *t = userdata;

        if (result != ISOTP_N_OK)
                log_debug("%s: sending failed: %s", t->transport.description, isotp_result_to_string(result));
        transport_report_sent(&t->transport, isotp_result_to_errno(result));
}

static void on_receive_failed(void *userdata, IsoTpResult result) {
        IsoTpTransport *t = userdata;
        transport_report_receive_failed(&t->transport, isotp_result_to_errno(result), isotp_result_to_string(result));
}

static const IsoTpCallbacks engine_callbacks = {
        .send_frame = on_send_frame,
        .send_frames = on_send_frames,
        .received = on_received,
        .sent = on_sent,
        .receive_failed = on_receive_failed,
};

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        IsoTpTransport *t = userdata;

        t->armed = USEC_INFINITY; /* a one-shot timer is off once it fired */
        isotp_tick(t->engine, event_now(t->transport.event));
        rearm(t);
        return 0;
}

static void on_frame(FrameLink *l, const struct can_frame *f, void *userdata) {
        IsoTpTransport *t = userdata;

        isotp_handle_frame(t->engine, f, event_now(t->transport.event));
        rearm(t);
}

static void on_link_state(FrameLink *l, LinkState state, void *userdata) {
        IsoTpTransport *t = userdata;
        transport_report_link_state(&t->transport, state);
}

static int isotp_transport_send(Transport *tr, const uint8_t *data, size_t size) {
        IsoTpTransport *t = (IsoTpTransport *) tr;
        int r;

        r = isotp_send(t->engine, data, size, event_now(tr->event));
        rearm(t);
        return r;
}

static int isotp_transport_set_flow_control(Transport *tr, uint8_t block_size, uint8_t st_min, uint8_t wait_frames) {
        IsoTpTransport *t = (IsoTpTransport *) tr;
        IsoTpConfig c = *isotp_get_config(t->engine);

        c.block_size = block_size;
        c.st_min = st_min;
        if (isotp_config_validate(&c, NULL) < 0)
                return -EINVAL;
        isotp_set_flow_control(t->engine, block_size, st_min, wait_frames);
        return 0;
}

static int isotp_transport_set_frame_filter(Transport *tr, TransportFrameFilter filter, void *userdata) {
        IsoTpTransport *t = (IsoTpTransport *) tr;

        t->filter = filter;
        t->filter_userdata = filter ? userdata : NULL;
        return 0;
}

static void isotp_transport_free(Transport *tr) {
        IsoTpTransport *t = (IsoTpTransport *) tr;

        deadline_timer_done(&t->timer);
        if (t->link) {
                frame_link_set_handlers(t->link, &(FrameLinkHandlers) {}, NULL);
                if (t->owns_link)
                        frame_link_free(t->link);
        }
        isotp_free(t->engine);
        free(t);
}

static const TransportOps isotp_transport_ops = {
        .send = isotp_transport_send,
        .set_flow_control = isotp_transport_set_flow_control,
        .set_frame_filter = isotp_transport_set_frame_filter,
        .free = isotp_transport_free,
};

static int isotp_transport_new(FrameLink *link, bool owns_link, const IsoTpConfig *config, Transport **ret) {
        const char *reason;
        IsoTpTransport *t;
        char desc[160];
        int r;

        r = isotp_config_validate(config, &reason);
        if (r < 0)
                return log_error_errno(r, "Invalid ISO-TP settings: %s", reason);

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        snprintf(desc, sizeof(desc), "%s tx 0x%X rx 0x%X%s", frame_link_describe(link), config->tx_id,
                 config->rx_id, config->extended ? " extended addressing" : "");
        transport_init(&t->transport, &isotp_transport_ops, frame_link_get_event(link), desc);
        t->armed = USEC_INFINITY;

        r = isotp_new(config, &engine_callbacks, t, &t->engine);
        if (r < 0)
                goto fail;
        r = deadline_timer_init(&t->timer, t->transport.event, "isotp-timer", on_timer, t);
        if (r < 0)
                goto fail;
        r = frame_link_set_filter(link, &config->rx_id, 1);
        if (r < 0)
                goto fail;

        t->link = link;
        t->owns_link = owns_link;
        frame_link_set_handlers(link, &(FrameLinkHandlers) { .frame = on_frame, .state = on_link_state }, t);
        t->transport.state = frame_link_get_state(link);
        *ret = &t->transport;
        return 0;
fail:
        transport_free(&t->transport);
        return r;
}

int isotp_transport_open(sd_event *e, const LinkUri *uri, const IsoTpConfig *config, Transport **ret) {
        _cleanup_(frame_link_freep) FrameLink *link = NULL;
        int r;

        r = frame_link_open(e, uri, &link);
        if (r < 0)
                return r;
        r = isotp_transport_new(link, true, config, ret);
        if (r < 0)
                return r;
        TAKE_PTR(link);
        return 0;
}

int transport_open_on_frames(FrameLink *link, const IsoTpConfig *config, Transport **ret) {
        return isotp_transport_new(link, false, config, ret);
}
