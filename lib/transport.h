/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A message transport: whole ISO-TP messages to and from one peer, driven by sd-event.
 * Opened from a link URI: "vbus:" and "socketcan:" run our ISO-TP engine over frames,
 * "socketcan-isotp:" uses the kernel's CAN_ISOTP socket. Both behave the same to callers.
 */

#include <systemd/sd-event.h>

#include "isotp.h"
#include "link.h"

typedef struct Transport Transport;

typedef struct TransportHandlers {
        void (*received)(Transport *t, const uint8_t *data, size_t size, void *userdata);
        /* The message handed to transport_send() left completely (0) or failed. */
        void (*sent)(Transport *t, int error, void *userdata);
        /* A message being received was lost; cause says why, for people. */
        void (*receive_failed)(Transport *t, int error, const char *cause, void *userdata);
        void (*link_state)(Transport *t, LinkState state, void *userdata);
} TransportHandlers;

int transport_open(sd_event *e, const char *uri, const IsoTpConfig *config, Transport **ret);
/* Our ISO-TP over an already open frame link (e.g. the simulator's vbus hub). The
 * transport does not own the frame link. */
typedef struct FrameLink FrameLink;
int transport_open_on_frames(FrameLink *link, const IsoTpConfig *config, Transport **ret);

Transport *transport_free(Transport *t);
static inline void transport_freep(Transport **t) {
        transport_free(*t);
}

void transport_set_handlers(Transport *t, const TransportHandlers *h, void *userdata);
/* -EBUSY while the previous message is still being sent. */
int transport_send(Transport *t, const uint8_t *data, size_t size);
LinkState transport_get_link_state(Transport *t);
const char *transport_describe(Transport *t);
sd_event *transport_get_event(Transport *t);
/* Fault injection of the receiver's flow control (our ISO-TP only; -EOPNOTSUPP otherwise). */
int transport_set_flow_control(Transport *t, uint8_t block_size, uint8_t st_min, uint8_t wait_frames);
/* Fault injection on the frames we send (our ISO-TP only; -EOPNOTSUPP otherwise): the filter
 * sees each outgoing frame before it goes on the bus and may change it, or return 1 to drop
 * it (the engine then believes it was sent). NULL removes the filter. */
typedef int (*TransportFrameFilter)(void *userdata, struct can_frame *frame);
int transport_set_frame_filter(Transport *t, TransportFrameFilter filter, void *userdata);
