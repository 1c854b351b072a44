/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* For the backends of FrameLink only. */

#include "frame-link.h"

#define FRAME_LINK_MAX_FILTERS 16

typedef struct FrameLinkOps {
        int (*send)(FrameLink *l, const struct can_frame *frame);
        /* Optional: several frames in one go; returns how many went out, or as send(). */
        int (*send_batch)(FrameLink *l, const struct can_frame *frames, size_t n);
        /* Optional: called after the filter changed, to push it into the kernel. */
        int (*apply_filter)(FrameLink *l);
        void (*free)(FrameLink *l);
} FrameLinkOps;

struct FrameLink {
        const FrameLinkOps *ops;
        sd_event *event;
        char description[128];
        FrameLinkHandlers handlers;
        void *userdata;
        LinkState state;

        bool accept_all;
        canid_t filter[FRAME_LINK_MAX_FILTERS];
        size_t n_filter;
};

void frame_link_init(FrameLink *l, const FrameLinkOps *ops, sd_event *e, const char *description);
/* Backends call these to report what happened. */
void frame_link_deliver(FrameLink *l, const struct can_frame *frame);
void frame_link_set_state(FrameLink *l, LinkState state);
bool frame_link_wants(FrameLink *l, canid_t id);

int socketcan_raw_open(sd_event *e, const char *ifname, FrameLink **ret);
int vbus_client_open(sd_event *e, const char *path, FrameLink **ret);
