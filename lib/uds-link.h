/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The UDS client on a message transport and sd-event: what immod and the tests talk
 * through. The link owns the transport. */

#include "transport.h"
#include "uds.h"

typedef struct UdsLink UdsLink;

int uds_link_new(Transport *transport, const UdsClientConfig *config, UdsLink **ret);
UdsLink *uds_link_free(UdsLink *l);
static inline void uds_link_freep(UdsLink **l) {
        uds_link_free(*l);
}

int uds_link_request(UdsLink *l, const uint8_t *data, size_t size, UdsCallback cb, void *userdata);
void uds_link_set_tester_present(UdsLink *l, usec_t interval);
void uds_link_cancel_all(UdsLink *l, int error);

/* Told when the link goes up or down or the CAN controller changes its error state. */
typedef void (*UdsLinkStateHandler)(UdsLink *l, LinkState state, void *userdata);
void uds_link_set_link_state_handler(UdsLink *l, UdsLinkStateHandler handler, void *userdata);

/* Told about answers that matched no request: a late answer to one that timed out. */
typedef void (*UdsLinkUnexpectedHandler)(UdsLink *l, const uint8_t *data, size_t size, void *userdata);
void uds_link_set_unexpected_handler(UdsLink *l, UdsLinkUnexpectedHandler handler, void *userdata);

UdsClient *uds_link_client(UdsLink *l);
Transport *uds_link_transport(UdsLink *l);
