/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <linux/can/error.h>
#include <linux/can/raw.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "can-adapter.h"
#include "frame-link-internal.h"
#include "log.h"

#define FRAMES_PER_WAKEUP 64
/* Frames per sendmmsg(); a caller with more gets told how many went and offers the rest. */
#define FRAMES_PER_SEND 64
/* A 4095-byte message sent at BS 0 / STmin 0 is 586 frames in one burst; the default
 * receive buffer (rmem_default, about 200 KiB) holds only 200-290 of them, and the kernel
 * drops the rest without a word. 2 MiB holds several such messages. */
#define RX_BUFFER_BYTES (2 * 1024 * 1024)

/* CAN_RAW: nonblocking, close-on-exec, kernel-side receive filters, error frames for the
 * controller state (the can-utils recipe). */
typedef struct SocketCanRaw {
        FrameLink link;
        char ifname[IFNAMSIZ];
        int fd;
        sd_event_source *io;
        uint32_t dropped; /* the kernel's count of frames dropped on a full buffer (SO_RXQ_OVFL) */

        /* recvmmsg()'s vectors, set up once: per wakeup only the control lengths are reset */
        struct can_frame rx_frames[FRAMES_PER_WAKEUP];
        struct iovec rx_iov[FRAMES_PER_WAKEUP];
        union {
                struct cmsghdr align;
                uint8_t buf[CMSG_SPACE(sizeof(uint32_t))];
        } rx_control[FRAMES_PER_WAKEUP];
        struct mmsghdr rx_msgs[FRAMES_PER_WAKEUP];
} SocketCanRaw;

static LinkState state_from_error_frame(const struct can_frame *f, LinkState current) {
        if (f->can_id & CAN_ERR_BUSOFF)
                return LINK_STATE_BUS_OFF;
        if (f->can_id & CAN_ERR_RESTARTED)
                return LINK_STATE_UP;
        if (f->can_id & CAN_ERR_CRTL) {
                uint8_t c = f->data[1];
                if (c & (CAN_ERR_CRTL_RX_PASSIVE | CAN_ERR_CRTL_TX_PASSIVE))
                        return LINK_STATE_ERROR_PASSIVE;
                if (c & (CAN_ERR_CRTL_RX_WARNING | CAN_ERR_CRTL_TX_WARNING))
                        return LINK_STATE_ERROR_WARNING;
                if (c & CAN_ERR_CRTL_ACTIVE)
                        return LINK_STATE_UP;
        }
        return current;
}

/* Says once per overflow how many frames the kernel dropped since the last one. */
static void check_dropped(SocketCanRaw *c, struct msghdr *msg) {
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
                uint32_t total;

                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SO_RXQ_OVFL ||
                    cm->cmsg_len < CMSG_LEN(sizeof(total)))
                        continue;
                memcpy(&total, CMSG_DATA(cm), sizeof(total));
                if (total != c->dropped)
                        log_warning("%s: the receive buffer overflowed: the kernel dropped %" PRIu32
                                    " frame(s); a message in transfer will time out.",
                                    c->link.description, total - c->dropped);
                c->dropped = total;
        }
}

static void raw_handle_frame(SocketCanRaw *c, const struct can_frame *f, size_t n) {
        if (n != sizeof(*f) || f->len > CAN_MAX_DLEN)
                return; /* CAN FD or a short read: not ours */
        if (f->can_id & CAN_ERR_FLAG) {
                frame_link_set_state(&c->link, state_from_error_frame(f, c->link.state));
                return;
        }
        if (c->link.state == LINK_STATE_DOWN || c->link.state == LINK_STATE_UNKNOWN)
                frame_link_set_state(&c->link, LINK_STATE_UP);
        frame_link_deliver(&c->link, f);
}

static void raw_rx_init(SocketCanRaw *c) {
        for (unsigned i = 0; i < FRAMES_PER_WAKEUP; i++) {
                c->rx_iov[i] = (struct iovec) { .iov_base = &c->rx_frames[i], .iov_len = sizeof(c->rx_frames[i]) };
                c->rx_msgs[i] = (struct mmsghdr) {
                        .msg_hdr = {
                                .msg_iov = &c->rx_iov[i],
                                .msg_iovlen = 1,
                                .msg_control = &c->rx_control[i],
                                .msg_controllen = sizeof(c->rx_control[i]),
                        },
                };
        }
}

/* Up to FRAMES_PER_WAKEUP frames in one recvmmsg(); the loop calls again while more wait. */
static int raw_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        SocketCanRaw *c = userdata;
        struct mmsghdr *msgs = c->rx_msgs;
        int n;

        n = recvmmsg(c->fd, msgs, FRAMES_PER_WAKEUP, MSG_DONTWAIT, NULL);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                if (errno == ENETDOWN) {
                        frame_link_set_state(&c->link, LINK_STATE_DOWN);
                        return 0;
                }
                log_warning_errno(errno, "%s: read failed: %m", c->link.description);
                return 0;
        }
        for (int i = 0; i < n; i++) {
                check_dropped(c, &msgs[i].msg_hdr);
                /* the kernel shortened it to what it wrote */
                msgs[i].msg_hdr.msg_controllen = sizeof(c->rx_control[i]);
                raw_handle_frame(c, &c->rx_frames[i], msgs[i].msg_len);
        }
        return 0;
}

static int raw_apply_filter(FrameLink *l) {
        SocketCanRaw *c = (SocketCanRaw *) l;
        struct can_filter filters[FRAME_LINK_MAX_FILTERS];
        size_t n = 0;

        if (l->accept_all) {
                filters[n++] = (struct can_filter) { .can_id = 0, .can_mask = 0 };
        } else
                for (size_t i = 0; i < l->n_filter; i++) {
                        bool eff = l->filter[i] & CAN_EFF_FLAG;
                        filters[n++] = (struct can_filter) {
                                .can_id = l->filter[i],
                                .can_mask = (eff ? CAN_EFF_MASK : CAN_SFF_MASK) | CAN_EFF_FLAG | CAN_RTR_FLAG,
                        };
                }

        /* No filter at all means: no data frames (error frames still come). */
        if (setsockopt(c->fd, SOL_CAN_RAW, CAN_RAW_FILTER, n ? filters : NULL, n * sizeof(filters[0])) < 0)
                return log_error_errno(errno, "%s: cannot set the receive filter: %m", l->description);
        return 0;
}

static int raw_send(FrameLink *l, const struct can_frame *f) {
        SocketCanRaw *c = (SocketCanRaw *) l;
        ssize_t n;

        n = write(c->fd, f, sizeof(*f));
        if (n < 0) {
                if (errno == EAGAIN || errno == ENOBUFS)
                        return -EAGAIN; /* the interface's transmit queue is full */
                if (errno == ENETDOWN)
                        frame_link_set_state(l, LINK_STATE_DOWN);
                return -errno;
        }
        return n == sizeof(*f) ? 0 : -EIO;
}

static int raw_send_batch(FrameLink *l, const struct can_frame *frames, size_t n) {
        SocketCanRaw *c = (SocketCanRaw *) l;
        struct iovec iov[FRAMES_PER_SEND];
        struct mmsghdr msgs[FRAMES_PER_SEND];
        int r;

        n = MIN(n, (size_t) FRAMES_PER_SEND);
        for (size_t i = 0; i < n; i++) {
                iov[i] = (struct iovec) { .iov_base = (void *) &frames[i], .iov_len = sizeof(frames[i]) };
                msgs[i] = (struct mmsghdr) { .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } };
        }
        /* Stops at the first frame the interface refuses; those before it went out. */
        r = sendmmsg(c->fd, msgs, n, MSG_DONTWAIT);
        if (r < 0) {
                int error = errno; /* the state handler may change errno */

                if (error == EAGAIN || error == ENOBUFS)
                        return -EAGAIN; /* the interface's transmit queue is full */
                if (error == ENETDOWN)
                        frame_link_set_state(l, LINK_STATE_DOWN);
                return -error;
        }
        for (int i = 0; i < r; i++)
                if (msgs[i].msg_len != sizeof(frames[i]))
                        return i > 0 ? i : -EIO;
        return r > 0 ? r : -EAGAIN;
}

static void raw_free(FrameLink *l) {
        SocketCanRaw *c = (SocketCanRaw *) l;

        sd_event_source_disable_unref(c->io);
        if (c->fd >= 0)
                close(c->fd);
        free(c);
}

static const FrameLinkOps raw_ops = {
        .send = raw_send,
        .send_batch = raw_send_batch,
        .apply_filter = raw_apply_filter,
        .free = raw_free,
};

int socketcan_raw_open(sd_event *e, const char *ifname, FrameLink **ret) {
        struct sockaddr_can addr = { .can_family = AF_CAN };
        can_err_mask_t err_mask = CAN_ERR_BUSOFF | CAN_ERR_CRTL | CAN_ERR_RESTARTED;
        char desc[IFNAMSIZ + 16];
        struct ifreq ifr = {};
        SocketCanRaw *c;
        LinkState state;
        int r;

        if (strlen(ifname) >= IFNAMSIZ)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        snprintf(desc, sizeof(desc), "socketcan:%s", ifname);
        frame_link_init(&c->link, &raw_ops, e, desc);
        strcpy(c->ifname, ifname);
        raw_rx_init(c);

        c->fd = socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
        if (c->fd < 0) {
                r = log_error_errno(errno, "%s: cannot open a CAN_RAW socket (is SocketCAN in this kernel?): %m",
                                    desc);
                goto fail;
        }

        strcpy(ifr.ifr_name, ifname);
        if (ioctl(c->fd, SIOCGIFINDEX, &ifr) < 0) {
                r = log_error_errno(errno, "%s: no such CAN interface: %m", desc);
                goto fail;
        }
        addr.can_ifindex = ifr.ifr_ifindex;
        if (ioctl(c->fd, SIOCGIFMTU, &ifr) < 0 || (ifr.ifr_mtu != CAN_MTU && ifr.ifr_mtu != CANFD_MTU)) {
                r = log_error_errno(EPROTOTYPE, "%s: not a CAN interface (MTU %d)", desc, ifr.ifr_mtu);
                goto fail;
        }

        /* Until the owner sets a filter, take no data frames; error frames always. */
        r = raw_apply_filter(&c->link);
        if (r < 0)
                goto fail;
        if (setsockopt(c->fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &err_mask, sizeof(err_mask)) < 0) {
                r = log_error_errno(errno, "%s: cannot ask for error frames: %m", desc);
                goto fail;
        }
        /* Above rmem_max only with CAP_NET_ADMIN (immod.service gives none); else as much as allowed. */
        int rcvbuf = RX_BUFFER_BYTES, one = 1;
        if (setsockopt(c->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 &&
            setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
                log_debug_errno(errno, "%s: cannot enlarge the receive buffer: %m", desc);
        if (setsockopt(c->fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof(one)) < 0)
                log_debug_errno(errno, "%s: cannot count dropped frames: %m", desc);
        if (bind(c->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0) {
                r = log_error_errno(errno, "%s: cannot bind: %m", desc);
                goto fail;
        }

        r = sd_event_add_io(e, &c->io, c->fd, EPOLLIN, raw_on_io, c);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(c->io, "socketcan-raw");

        /* The controller's error state where it has one (not on vcan); else up or down. */
        if (can_adapter_get_state(ifname, &state) >= 0)
                frame_link_set_state(&c->link, state);
        else {
                bool up;
                if (can_adapter_is_up(ifname, &up) >= 0)
                        frame_link_set_state(&c->link, up ? LINK_STATE_UP : LINK_STATE_DOWN);
        }

        *ret = &c->link;
        return 0;
fail:
        frame_link_free(&c->link);
        return r;
}
