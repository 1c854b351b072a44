/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A source and sink of classic CAN frames, driven by sd-event: a CAN_RAW socket, a peer of
 * the local virtual bus, or the local participant of a vbus hub. Sending never blocks:
 * -EAGAIN means "the bus is busy, try again shortly".
 */

#include <linux/can.h>
#include <systemd/sd-event.h>

#include "link.h"

typedef struct FrameLink FrameLink;

typedef struct FrameLinkHandlers {
        /* A frame from the bus that passed the filter (error frames never come here). */
        void (*frame)(FrameLink *l, const struct can_frame *frame, void *userdata);
        /* The link went up or down, or the CAN controller changed its error state. */
        void (*state)(FrameLink *l, LinkState state, void *userdata);
} FrameLinkHandlers;

/* Opens a vbus: or socketcan: link (not socketcan-isotp: that is a message transport). */
int frame_link_open(sd_event *e, const LinkUri *uri, FrameLink **ret);
FrameLink *frame_link_free(FrameLink *l);
static inline void frame_link_freep(FrameLink **l) {
        frame_link_free(*l);
}

void frame_link_set_handlers(FrameLink *l, const FrameLinkHandlers *h, void *userdata);
/* Accepts only these CAN ids (exact match, EFF flag included); n = 0 accepts no data
 * frames. A sniffer calls frame_link_accept_all() instead. */
int frame_link_set_filter(FrameLink *l, const canid_t *ids, size_t n);
int frame_link_accept_all(FrameLink *l);

int frame_link_send(FrameLink *l, const struct can_frame *frame);
/* Sends frames in order, in one system call where the link can: returns how many went out
 * (1..n), or as frame_link_send() when none did. */
int frame_link_send_batch(FrameLink *l, const struct can_frame *frames, size_t n);
LinkState frame_link_get_state(FrameLink *l);
sd_event *frame_link_get_event(FrameLink *l);
const char *frame_link_describe(FrameLink *l);
