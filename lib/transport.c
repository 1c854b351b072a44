/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "log.h"
#include "transport-internal.h"

void transport_init(Transport *t, const TransportOps *ops, sd_event *e, const char *description) {
        t->ops = ops;
        t->event = sd_event_ref(e);
        snprintf(t->description, sizeof(t->description), "%s", description);
        t->state = LINK_STATE_UNKNOWN;
}

int transport_open(sd_event *e, const char *uri, const IsoTpConfig *config, Transport **ret) {
        const char *reason;
        LinkUri u;
        int r;

        r = link_uri_parse(uri, &u, &reason);
        if (r < 0)
                return log_error_errno(r, "Invalid link '%s': %s", uri ?: "", reason);
        r = isotp_config_validate(config, &reason);
        if (r < 0)
                return log_error_errno(r, "Invalid ISO-TP settings for %s: %s", uri, reason);

        if (u.kind == LINK_SOCKETCAN_ISOTP)
                return kernel_isotp_open(e, u.name, config, ret);
        return isotp_transport_open(e, &u, config, ret);
}

Transport *transport_free(Transport *t) {
        sd_event *e;

        if (!t)
                return NULL;
        e = t->event;
        t->ops->free(t);
        sd_event_unref(e);
        return NULL;
}

void transport_set_handlers(Transport *t, const TransportHandlers *h, void *userdata) {
        t->handlers = *h;
        t->userdata = userdata;
}

int transport_send(Transport *t, const uint8_t *data, size_t size) {
        if (size == 0)
                return -EINVAL;
        if (size > ISOTP_MAX_MESSAGE)
                return -EMSGSIZE;
        return t->ops->send(t, data, size);
}

int transport_set_flow_control(Transport *t, uint8_t block_size, uint8_t st_min, uint8_t wait_frames) {
        if (!t->ops->set_flow_control)
                return -EOPNOTSUPP;
        return t->ops->set_flow_control(t, block_size, st_min, wait_frames);
}

int transport_set_frame_filter(Transport *t, TransportFrameFilter filter, void *userdata) {
        if (!t->ops->set_frame_filter)
                return -EOPNOTSUPP;
        return t->ops->set_frame_filter(t, filter, userdata);
}

LinkState transport_get_link_state(Transport *t) {
        return t->state;
}

sd_event *transport_get_event(Transport *t) {
        return t->event;
}

const char *transport_describe(Transport *t) {
        return t->description;
}

void transport_report_received(Transport *t, const uint8_t *data, size_t size) {
        if (t->handlers.received)
                t->handlers.received(t, data, size, t->userdata);
}

void transport_report_sent(Transport *t, int error) {
        if (t->handlers.sent)
                t->handlers.sent(t, error, t->userdata);
}

void transport_report_receive_failed(Transport *t, int error, const char *cause) {
        log_debug("%s: a message was lost: %s", t->description, cause);
        if (t->handlers.receive_failed)
                t->handlers.receive_failed(t, error, cause, t->userdata);
}

void transport_report_link_state(Transport *t, LinkState state) {
        if (t->state == state)
                return;
        t->state = state;
        if (t->handlers.link_state)
                t->handlers.link_state(t, state, t->userdata);
}
