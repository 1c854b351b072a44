/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <libsocketcan.h>
#include <linux/can/netlink.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "can-adapter.h"
#include "log.h"

/* libsocketcan answers -1 and leaves errno as the failing call set it, or not at all. */
static int socketcan_error(int saved_errno) {
        return saved_errno > 0 ? -saved_errno : -EIO;
}

/* vcan and vxcan have no controller; libsocketcan would print to stderr about them. */
static bool has_controller(const char *ifname) {
        struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
        struct ifreq ifr = { .ifr_data = (void *) &info };
        _cleanup_close_ int fd = -1;

        if (strlen(ifname) >= sizeof(ifr.ifr_name))
                return false;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return true;
        strcpy(ifr.ifr_name, ifname);
        if (ioctl(fd, SIOCETHTOOL, &ifr) < 0)
                return true; /* cannot tell: let libsocketcan try */
        return !streq(info.driver, "vcan") && !streq(info.driver, "vxcan");
}

int can_adapter_get_state(const char *ifname, LinkState *ret) {
        int state, r;

        if (!has_controller(ifname))
                return -EOPNOTSUPP;
        errno = 0;
        r = can_get_state(ifname, &state);
        if (r < 0) {
                r = socketcan_error(errno);
                return log_debug_errno(r, "%s: cannot read the CAN controller state: %m", ifname);
        }

        switch (state) {
        case CAN_STATE_ERROR_ACTIVE:
                *ret = LINK_STATE_UP;
                break;
        case CAN_STATE_ERROR_WARNING:
                *ret = LINK_STATE_ERROR_WARNING;
                break;
        case CAN_STATE_ERROR_PASSIVE:
                *ret = LINK_STATE_ERROR_PASSIVE;
                break;
        case CAN_STATE_BUS_OFF:
                *ret = LINK_STATE_BUS_OFF;
                break;
        case CAN_STATE_STOPPED:
        case CAN_STATE_SLEEPING:
                *ret = LINK_STATE_DOWN;
                break;
        default:
                *ret = LINK_STATE_UNKNOWN;
        }
        return 0;
}

int can_adapter_get_bitrate(const char *ifname, uint32_t *ret) {
        struct can_bittiming bt = {};
        int r;

        if (!has_controller(ifname))
                return -EOPNOTSUPP;
        errno = 0;
        r = can_get_bittiming(ifname, &bt);
        if (r < 0) {
                r = socketcan_error(errno);
                return log_debug_errno(r, "%s: cannot read the CAN bitrate: %m", ifname);
        }
        *ret = bt.bitrate;
        return 0;
}

int can_adapter_set_bitrate(const char *ifname, uint32_t bitrate) {
        int r;

        errno = 0;
        r = can_set_bitrate(ifname, bitrate);
        if (r < 0) {
                r = socketcan_error(errno);
                return log_error_errno(r, "%s: cannot set the CAN bitrate to %u bit/s: %m", ifname, bitrate);
        }
        return 0;
}

int can_adapter_restart(const char *ifname) {
        int r;

        errno = 0;
        r = can_do_restart(ifname);
        if (r < 0) {
                r = socketcan_error(errno);
                return log_error_errno(r, "%s: cannot restart the CAN controller after bus-off: %m", ifname);
        }
        log_notice("%s: CAN controller restarted after bus-off", ifname);
        return 0;
}

int can_adapter_is_up(const char *ifname, bool *ret) {
        _cleanup_close_ int fd = -1;
        struct ifreq ifr = {};

        if (strlen(ifname) >= sizeof(ifr.ifr_name))
                return -EINVAL;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        strcpy(ifr.ifr_name, ifname);
        if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
                return -errno;
        *ret = ifr.ifr_flags & IFF_UP;
        return 0;
}
