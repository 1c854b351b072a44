/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <linux/can/isotp.h>
#include <net/if.h>
#include <stdio.h>
#include <sys/socket.h>

#include "frame-link-internal.h"
#include "log.h"
#include "transport-internal.h"

/*
 * The kernel's ISO-TP (CAN_ISOTP) as a message transport. Options must be set before
 * bind(). CAN_ISOTP_WAIT_TX_DONE is not used: it makes write() block until the message is
 * out, and nothing here may block; the kernel reports a failed transmission afterwards as a
 * socket error (ECOMM), which ends the waiting request instead.
 */
typedef struct KernelIsoTp {
        Transport transport;
        int fd;
        sd_event_source *io;
        FrameLink *errors; /* a CAN_RAW socket for the controller's error frames only */
} KernelIsoTp;

static const char *kernel_isotp_cause(int error) {
        switch (error) {
        case ECOMM:
                return "no flow control from the receiver in time (N_Bs)";
        case ETIMEDOUT:
                return "the next consecutive frame did not come in time (N_Cr)";
        case EILSEQ:
                return "consecutive frame with a wrong sequence number";
        case EBADMSG:
                return "malformed frame or padding";
        case EMSGSIZE:
                return "message too long for the receiver";
        case ENETDOWN:
                return "the CAN interface is down";
        default:
                return strerror(error);
        }
}

static int kernel_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        KernelIsoTp *k = userdata;
        uint8_t buf[ISOTP_MAX_MESSAGE + 1];
        ssize_t n;

        /* Bounded: a few messages per wakeup. */
        for (unsigned i = 0; i < 16; i++) {
                n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n < 0) {
                        int error = errno; /* the handlers below may change errno */

                        if (error == EAGAIN || error == EINTR)
                                break;
                        if (error == ENETDOWN)
                                transport_report_link_state(&k->transport, LINK_STATE_DOWN);
                        transport_report_receive_failed(&k->transport, -error, kernel_isotp_cause(error));
                        continue; /* the error is consumed by reading it */
                }
                if (n == 0 || (size_t) n > ISOTP_MAX_MESSAGE)
                        continue;
                transport_report_received(&k->transport, buf, n);
        }
        return 0;
}

static void on_error_state(FrameLink *l, LinkState state, void *userdata) {
        KernelIsoTp *k = userdata;
        transport_report_link_state(&k->transport, state);
}

static int kernel_send(Transport *t, const uint8_t *data, size_t size) {
        KernelIsoTp *k = (KernelIsoTp *) t;
        ssize_t n;

        n = write(k->fd, data, size);
        if (n < 0) {
                if (errno == EAGAIN)
                        return -EBUSY; /* the previous message is still going out */
                return log_debug_errno(errno, "%s: write failed: %s", t->description, kernel_isotp_cause(errno));
        }
        if ((size_t) n != size)
                return -EIO;
        /* Handed to the kernel, which paces and finishes it on its own. */
        transport_report_sent(t, 0);
        return 0;
}

static void kernel_free(Transport *t) {
        KernelIsoTp *k = (KernelIsoTp *) t;

        sd_event_source_disable_unref(k->io);
        if (k->fd >= 0)
                close(k->fd);
        frame_link_free(k->errors);
        free(k);
}

static const TransportOps kernel_ops = {
        .send = kernel_send,
        .free = kernel_free,
};

int kernel_isotp_open(sd_event *e, const char *ifname, const IsoTpConfig *c, Transport **ret) {
        struct can_isotp_options opts = {
                .txpad_content = c->padding_byte,
                .ext_address = c->tx_ext_address,
                .rx_ext_address = c->rx_ext_address,
        };
        struct can_isotp_fc_options fc = {
                .bs = c->block_size,
                .stmin = c->st_min,
                .wftmax = c->max_wait,
        };
        struct sockaddr_can addr = { .can_family = AF_CAN };
        char desc[160];
        KernelIsoTp *k;
        int r;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        snprintf(desc, sizeof(desc), "socketcan-isotp:%s tx 0x%X rx 0x%X%s", ifname, c->tx_id, c->rx_id,
                 c->extended ? " extended addressing" : "");
        transport_init(&k->transport, &kernel_ops, e, desc);

        k->fd = socket(PF_CAN, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_ISOTP);
        if (k->fd < 0) {
                r = log_error_errno(errno, "%s: cannot open a CAN_ISOTP socket (is can-isotp loaded?): %m", desc);
                goto fail;
        }

        if (c->extended)
                opts.flags |= CAN_ISOTP_EXTEND_ADDR | CAN_ISOTP_RX_EXT_ADDR;
        if (c->tx_padding)
                opts.flags |= CAN_ISOTP_TX_PADDING;
        /* The gap between our frames, on top of STmin; 0 here would mean the kernel's
         * default (50 us), so a wanted 0 has its own value. */
        if (c->frame_gap != ISOTP_FRAME_GAP_DEFAULT)
                opts.frame_txtime = c->frame_gap == 0 ? CAN_ISOTP_FRAME_TXTIME_ZERO
                                                      : (uint32_t) (c->frame_gap * 1000) /* ns */;
        if (setsockopt(k->fd, SOL_CAN_ISOTP, CAN_ISOTP_OPTS, &opts, sizeof(opts)) < 0 ||
            setsockopt(k->fd, SOL_CAN_ISOTP, CAN_ISOTP_RECV_FC, &fc, sizeof(fc)) < 0) {
                r = log_error_errno(errno, "%s: cannot set the ISO-TP options: %m", desc);
                goto fail;
        }

        addr.can_ifindex = if_nametoindex(ifname);
        if (addr.can_ifindex == 0) {
                r = log_error_errno(errno, "%s: no such CAN interface: %m", desc);
                goto fail;
        }
        addr.can_addr.tp.tx_id = c->tx_id;
        addr.can_addr.tp.rx_id = c->rx_id;
        if (bind(k->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0) {
                r = log_error_errno(errno, "%s: cannot bind: %m", desc);
                goto fail;
        }

        r = sd_event_add_io(e, &k->io, k->fd, EPOLLIN, kernel_on_io, k);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(k->io, "kernel-isotp");

        /* The controller state comes from error frames on a raw socket of its own. */
        r = socketcan_raw_open(e, ifname, &k->errors);
        if (r < 0)
                goto fail;
        frame_link_set_handlers(k->errors, &(FrameLinkHandlers) { .state = on_error_state }, k);
        k->transport.state = frame_link_get_state(k->errors);

        *ret = &k->transport;
        return 0;
fail:
        transport_free(&k->transport);
        return r;
}
