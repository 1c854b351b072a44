/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The local virtual bus (vehicle-protocol.md §8): a SOCK_SEQPACKET Unix socket on which every
 * packet is one struct can_frame (16 bytes). The hub forwards every frame from one peer to
 * all others, like a bus, so a sniffer can attach too. Peers are FrameLinks opened with a
 * "vbus:PATH" URI; the program hosting the hub takes part through vbus_hub_local_link().
 */

#include "frame-link.h"

#define VBUS_MAX_PEERS 16
#define VBUS_PEER_QUEUE 4096 /* frames buffered for a peer that reads slowly */

typedef struct VbusHub VbusHub;

int vbus_hub_new(sd_event *e, const char *path, VbusHub **ret);
VbusHub *vbus_hub_free(VbusHub *h);
static inline void vbus_hub_freep(VbusHub **h) {
        vbus_hub_free(*h);
}

/* The hub owner's own place on the bus; owned by the hub. */
FrameLink *vbus_hub_local_link(VbusHub *h);
size_t vbus_hub_n_peers(VbusHub *h);
