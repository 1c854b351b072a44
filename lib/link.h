/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Link URIs ("vbus:PATH", "socketcan:IF", "socketcan-isotp:IF") and the state of a link. */

#include <net/if.h>
#include <sys/un.h>

#include "util.h"

typedef enum LinkKind {
        LINK_VBUS,            /* the local virtual bus: frames over a SOCK_SEQPACKET Unix socket */
        LINK_SOCKETCAN,       /* CAN_RAW frames; our own ISO-TP */
        LINK_SOCKETCAN_ISOTP, /* the kernel's ISO-TP socket */
} LinkKind;

typedef struct LinkUri {
        LinkKind kind;
        char name[sizeof(((struct sockaddr_un *) 0)->sun_path)]; /* interface or socket path */
} LinkUri;

/* Parses and validates a link URI. -EINVAL with a sentence naming the expected form. */
int link_uri_parse(const char *uri, LinkUri *ret, const char **ret_reason);
/* Writes the URI back, e.g. "socketcan:can0". */
void link_uri_format(const LinkUri *u, char *buf, size_t n);

typedef enum LinkState {
        LINK_STATE_UNKNOWN,
        LINK_STATE_DOWN,
        LINK_STATE_UP,
        LINK_STATE_ERROR_WARNING,
        LINK_STATE_ERROR_PASSIVE,
        LINK_STATE_BUS_OFF,
        _LINK_STATE_MAX,
} LinkState;

/* The D-Bus names: "unknown", "down", "up", "error-warning", "error-passive", "bus-off". */
const char *link_state_to_string(LinkState s);
