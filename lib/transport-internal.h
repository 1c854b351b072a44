/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* For the backends of Transport only. */

#include "transport.h"

typedef struct TransportOps {
        int (*send)(Transport *t, const uint8_t *data, size_t size);
        int (*set_flow_control)(Transport *t, uint8_t block_size, uint8_t st_min, uint8_t wait_frames);
        int (*set_frame_filter)(Transport *t, TransportFrameFilter filter, void *userdata);
        void (*free)(Transport *t);
} TransportOps;

struct Transport {
        const TransportOps *ops;
        sd_event *event;
        char description[160];
        TransportHandlers handlers;
        void *userdata;
        LinkState state;
};

void transport_init(Transport *t, const TransportOps *ops, sd_event *e, const char *description);
void transport_report_received(Transport *t, const uint8_t *data, size_t size);
void transport_report_sent(Transport *t, int error);
void transport_report_receive_failed(Transport *t, int error, const char *cause);
void transport_report_link_state(Transport *t, LinkState state);

int isotp_transport_open(sd_event *e, const LinkUri *uri, const IsoTpConfig *config, Transport **ret);
int kernel_isotp_open(sd_event *e, const char *ifname, const IsoTpConfig *config, Transport **ret);
