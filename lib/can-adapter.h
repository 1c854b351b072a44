/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The CAN controller, through libsocketcan (netlink): error state, bitrate, restart after
 * bus-off. This is the one file that meets libsocketcan; its -1 returns become negative
 * errno here. Virtual interfaces (vcan) have no controller: those calls give -EOPNOTSUPP.
 */

#include "link.h"

int can_adapter_get_state(const char *ifname, LinkState *ret);
int can_adapter_get_bitrate(const char *ifname, uint32_t *ret);
int can_adapter_set_bitrate(const char *ifname, uint32_t bitrate);
/* Restarts a controller that is bus-off (needs CAP_NET_ADMIN). */
int can_adapter_restart(const char *ifname);
/* Whether the interface exists and is administratively up (works on vcan too). */
int can_adapter_is_up(const char *ifname, bool *ret);
