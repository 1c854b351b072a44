/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "frame-link-internal.h"
#include "log.h"

void frame_link_init(FrameLink *l, const FrameLinkOps *ops, sd_event *e, const char *description) {
        l->ops = ops;
        l->event = sd_event_ref(e);
        snprintf(l->description, sizeof(l->description), "%s", description);
        l->state = LINK_STATE_UNKNOWN;
}

int frame_link_open(sd_event *e, const LinkUri *uri, FrameLink **ret) {
        switch (uri->kind) {
        case LINK_VBUS:
                return vbus_client_open(e, uri->name, ret);
        case LINK_SOCKETCAN:
                return socketcan_raw_open(e, uri->name, ret);
        default:
                return -EPROTONOSUPPORT;
        }
}

FrameLink *frame_link_free(FrameLink *l) {
        sd_event *e;

        if (!l)
                return NULL;
        e = l->event;
        l->ops->free(l);
        sd_event_unref(e);
        return NULL;
}

void frame_link_set_handlers(FrameLink *l, const FrameLinkHandlers *h, void *userdata) {
        l->handlers = *h;
        l->userdata = userdata;
}

int frame_link_set_filter(FrameLink *l, const canid_t *ids, size_t n) {
        if (n > FRAME_LINK_MAX_FILTERS)
                return -E2BIG;
        memcpy(l->filter, ids, n * sizeof(canid_t));
        l->n_filter = n;
        l->accept_all = false;
        return l->ops->apply_filter ? l->ops->apply_filter(l) : 0;
}

int frame_link_accept_all(FrameLink *l) {
        l->n_filter = 0;
        l->accept_all = true;
        return l->ops->apply_filter ? l->ops->apply_filter(l) : 0;
}

bool frame_link_wants(FrameLink *l, canid_t id) {
        if (l->accept_all)
                return true;
        for (size_t i = 0; i < l->n_filter; i++)
                if (l->filter[i] == id)
                        return true;
        return false;
}

int frame_link_send(FrameLink *l, const struct can_frame *frame) {
        if (frame->len > CAN_MAX_DLEN)
                return -EINVAL;
        return l->ops->send(l, frame);
}

int frame_link_send_batch(FrameLink *l, const struct can_frame *frames, size_t n) {
        size_t i;
        int r;

        if (n == 0)
                return -EINVAL;
        for (i = 0; i < n; i++)
                if (frames[i].len > CAN_MAX_DLEN)
                        return -EINVAL;
        if (l->ops->send_batch)
                return l->ops->send_batch(l, frames, n);
        for (i = 0; i < n; i++) {
                r = l->ops->send(l, &frames[i]);
                if (r < 0)
                        return i > 0 ? (int) i : r;
        }
        return (int) n;
}

LinkState frame_link_get_state(FrameLink *l) {
        return l->state;
}

sd_event *frame_link_get_event(FrameLink *l) {
        return l->event;
}

const char *frame_link_describe(FrameLink *l) {
        return l->description;
}

void frame_link_deliver(FrameLink *l, const struct can_frame *frame) {
        if (!frame_link_wants(l, frame->can_id))
                return;
        if (l->handlers.frame)
                l->handlers.frame(l, frame, l->userdata);
}

void frame_link_set_state(FrameLink *l, LinkState state) {
        if (l->state == state)
                return;
        log_debug("%s: link %s", l->description, link_state_to_string(state));
        l->state = state;
        if (l->handlers.state)
                l->handlers.state(l, state, l->userdata);
}
