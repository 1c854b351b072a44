/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "link.h"

static bool ifname_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= IFNAMSIZ || streq(s, ".") || streq(s, ".."))
                return false;
        for (const char *p = s; *p; p++)
                if (*p <= ' ' || *p >= 127 || *p == '/' || *p == ':')
                        return false;
        return true;
}

int link_uri_parse(const char *uri, LinkUri *ret, const char **ret_reason) {
        static const char *const expected =
                "a link is vbus:/PATH, socketcan:IFNAME or socketcan-isotp:IFNAME (e.g. socketcan:can0)";
        LinkUri u = {};
        const char *rest, *reason = NULL;

        if (!uri)
                reason = expected;
        else if ((rest = startswith(uri, "vbus:"))) {
                u.kind = LINK_VBUS;
                if (rest[0] != '/')
                        reason = "a vbus link needs an absolute socket path, e.g. vbus:/run/immod/vbus.sock";
                else if (strlen(rest) >= sizeof(u.name))
                        reason = "the vbus socket path is too long (at most 107 characters)";
                else
                        strcpy(u.name, rest);
        } else if ((rest = startswith(uri, "socketcan-isotp:")) || (rest = startswith(uri, "socketcan:"))) {
                u.kind = startswith(uri, "socketcan-isotp:") ? LINK_SOCKETCAN_ISOTP : LINK_SOCKETCAN;
                if (!ifname_valid(rest))
                        reason = "a CAN interface name has 1 to 15 characters without spaces, '/' or ':', "
                                 "e.g. can0 or vcan0";
                else
                        strcpy(u.name, rest);
        } else
                reason = expected;

        if (reason) {
                if (ret_reason)
                        *ret_reason = reason;
                return -EINVAL;
        }
        *ret = u;
        return 0;
}

void link_uri_format(const LinkUri *u, char *buf, size_t n) {
        static const char *const prefix[] = {
                [LINK_VBUS] = "vbus",
                [LINK_SOCKETCAN] = "socketcan",
                [LINK_SOCKETCAN_ISOTP] = "socketcan-isotp",
        };

        snprintf(buf, n, "%s:%s", prefix[u->kind], u->name);
}

const char *link_state_to_string(LinkState s) {
        static const char *const names[_LINK_STATE_MAX] = {
                [LINK_STATE_UNKNOWN] = "unknown",
                [LINK_STATE_DOWN] = "down",
                [LINK_STATE_UP] = "up",
                [LINK_STATE_ERROR_WARNING] = "error-warning",
                [LINK_STATE_ERROR_PASSIVE] = "error-passive",
                [LINK_STATE_BUS_OFF] = "bus-off",
        };

        if (s < 0 || s >= _LINK_STATE_MAX)
                return "unknown";
        return names[s];
}
