/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "frame-link-internal.h"
#include "log.h"
#include "vbus.h"

#define RECONNECT_USEC (1 * USEC_PER_SEC)
#define PACKETS_PER_WAKEUP 64 /* so one chatty peer cannot starve the loop */

static int vbus_address(const char *path, struct sockaddr_un *ret) {
        if (strlen(path) >= sizeof(ret->sun_path))
                return -ENAMETOOLONG;
        *ret = (struct sockaddr_un) { .sun_family = AF_UNIX };
        strcpy(ret->sun_path, path);
        return 0;
}

/* Reads one packet. 1: a valid frame, 0: nothing more now, -ECONNRESET: the other side closed,
 * -EBADMSG: a packet that is not a frame (dropped), other negative errno: failure. */
static int vbus_read_frame(int fd, struct can_frame *ret) {
        uint8_t buf[sizeof(struct can_frame) + 1];
        ssize_t n;

        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        if ((size_t) n != sizeof(struct can_frame))
                return -EBADMSG;
        memcpy(ret, buf, sizeof(*ret));
        if (ret->len > CAN_MAX_DLEN)
                return -EBADMSG;
        return 1;
}

static int vbus_write_frame(int fd, const struct can_frame *f) {
        if (send(fd, f, sizeof(*f), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
                return errno == EAGAIN || errno == ENOBUFS ? -EAGAIN : -errno;
        return 0;
}

/* --- a peer of the bus: the "vbus:PATH" frame link --- */

typedef struct VbusClient {
        FrameLink link;
        char path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        int fd;
        sd_event_source *io, *reconnect;
        unsigned bad_packets;
} VbusClient;

static int client_connect(VbusClient *c);

static void client_disconnect(VbusClient *c, const char *why) {
        c->io = sd_event_source_disable_unref(c->io);
        if (c->fd >= 0) {
                close(c->fd);
                c->fd = -1;
                log_info("%s: disconnected: %s", c->link.description, why);
        }
        frame_link_set_state(&c->link, LINK_STATE_DOWN);
        /* The hub may come back (the simulator restarted): try again, once a second. */
        (void) sd_event_source_set_time_relative(c->reconnect, RECONNECT_USEC);
        (void) sd_event_source_set_enabled(c->reconnect, SD_EVENT_ONESHOT);
}

static int client_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VbusClient *c = userdata;
        struct can_frame f;
        int r;

        for (unsigned i = 0; i < PACKETS_PER_WAKEUP; i++) {
                r = vbus_read_frame(c->fd, &f);
                if (r == 0)
                        break;
                if (r == -EBADMSG) {
                        if (c->bad_packets++ == 0)
                                log_warning("%s: dropped a packet that is not a 16-byte CAN frame",
                                            c->link.description);
                        continue;
                }
                if (r < 0) {
                        client_disconnect(c, r == -ECONNRESET ? "the hub closed the bus" : strerror(-r));
                        return 0;
                }
                frame_link_deliver(&c->link, &f);
                if (c->fd < 0)
                        return 0; /* a handler closed the link */
        }
        if (revents & (EPOLLHUP | EPOLLERR) && !(revents & EPOLLIN))
                client_disconnect(c, "the hub hung up");
        return 0;
}

static int client_on_reconnect(sd_event_source *s, uint64_t usec, void *userdata) {
        VbusClient *c = userdata;

        if (client_connect(c) < 0)
                client_disconnect(c, "reconnect failed");
        return 0;
}

static int client_connect(VbusClient *c) {
        _cleanup_close_ int fd = -1;
        struct sockaddr_un sa;
        int r;

        r = vbus_address(c->path, &sa);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_debug_errno(errno, "%s: cannot connect to %s: %m", c->link.description, c->path);

        r = sd_event_add_io(c->link.event, &c->io, fd, EPOLLIN, client_on_io, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->io, "vbus-peer");
        c->fd = TAKE_FD(fd);
        log_debug("%s: connected", c->link.description);
        frame_link_set_state(&c->link, LINK_STATE_UP);
        return 0;
}

static int client_send(FrameLink *l, const struct can_frame *f) {
        VbusClient *c = (VbusClient *) l;
        int r;

        if (c->fd < 0)
                return -ENOTCONN;
        r = vbus_write_frame(c->fd, f);
        if (r < 0 && r != -EAGAIN) {
                client_disconnect(c, strerror(-r));
                return -ENOTCONN;
        }
        return r;
}

static void client_free(FrameLink *l) {
        VbusClient *c = (VbusClient *) l;

        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->reconnect);
        if (c->fd >= 0)
                close(c->fd);
        free(c);
}

static const FrameLinkOps client_ops = {
        .send = client_send,
        .free = client_free,
};

int vbus_client_open(sd_event *e, const char *path, FrameLink **ret) {
        char desc[sizeof(((struct sockaddr_un *) 0)->sun_path) + 8];
        VbusClient *c;
        int r;

        if (strlen(path) >= sizeof(c->path))
                return -ENAMETOOLONG;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        snprintf(desc, sizeof(desc), "vbus:%s", path);
        frame_link_init(&c->link, &client_ops, e, desc);
        strcpy(c->path, path);
        c->fd = -1;

        r = sd_event_add_time(e, &c->reconnect, CLOCK_MONOTONIC, USEC_INFINITY, 0, client_on_reconnect, c);
        if (r < 0) {
                frame_link_free(&c->link);
                return r;
        }
        (void) sd_event_source_set_description(c->reconnect, "vbus-reconnect");

        /* A hub that is not there yet is no error: the link shows "down" and keeps trying. */
        if (client_connect(c) < 0)
                client_disconnect(c, "no hub yet");
        *ret = &c->link;
        return 0;
}

/* --- the hub --- */

typedef struct VbusPeer {
        VbusHub *hub;
        int fd;
        sd_event_source *io;
        struct can_frame *queue; /* ring of VBUS_PEER_QUEUE frames, allocated when first needed */
        size_t head, count;
        unsigned dropped, bad_packets;
} VbusPeer;

struct VbusHub {
        FrameLink local; /* first: the hub is its own local link */
        char path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
        int listen_fd;
        sd_event_source *listen_io;
        VbusPeer *peers[VBUS_MAX_PEERS];
        size_t n_peers;
};

static void peer_free(VbusPeer *p) {
        VbusHub *h = p->hub;

        for (size_t i = 0; i < h->n_peers; i++)
                if (h->peers[i] == p) {
                        h->peers[i] = h->peers[--h->n_peers];
                        break;
                }
        sd_event_source_disable_unref(p->io);
        close(p->fd);
        free(p->queue);
        free(p);
}

static int peer_update_events(VbusPeer *p) {
        return sd_event_source_set_io_events(p->io, EPOLLIN | (p->count > 0 ? EPOLLOUT : 0));
}

/* Sends what the peer's socket takes now. -errno when the peer is gone. */
static int peer_flush(VbusPeer *p) {
        int r;

        while (p->count > 0) {
                r = vbus_write_frame(p->fd, &p->queue[p->head]);
                if (r == -EAGAIN)
                        break;
                if (r < 0)
                        return r;
                p->head = (p->head + 1) % VBUS_PEER_QUEUE;
                p->count--;
        }
        return peer_update_events(p);
}

static void peer_enqueue(VbusPeer *p, const struct can_frame *f) {
        if (p->count == 0 && vbus_write_frame(p->fd, f) == 0)
                return; /* the common case: straight through */

        if (!p->queue) {
                p->queue = calloc(VBUS_PEER_QUEUE, sizeof(struct can_frame));
                if (!p->queue) {
                        p->dropped++;
                        return;
                }
        }
        if (p->count >= VBUS_PEER_QUEUE) {
                /* A peer that stopped reading must not stall the bus for the others. */
                if (p->dropped++ == 0)
                        log_warning("vbus hub: a peer does not read its frames; dropping frames for it");
                return;
        }
        p->queue[(p->head + p->count) % VBUS_PEER_QUEUE] = *f;
        p->count++;
        (void) peer_update_events(p);
}

static void hub_forward(VbusHub *h, VbusPeer *from, const struct can_frame *f) {
        for (size_t i = 0; i < h->n_peers; i++)
                if (h->peers[i] != from)
                        peer_enqueue(h->peers[i], f);
        if (from)
                frame_link_deliver(&h->local, f);
}

static int peer_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VbusPeer *p = userdata;
        VbusHub *h = p->hub;
        struct can_frame f;
        int r;

        if (revents & EPOLLOUT && peer_flush(p) < 0) {
                peer_free(p);
                return 0;
        }

        for (unsigned i = 0; revents & EPOLLIN && i < PACKETS_PER_WAKEUP; i++) {
                r = vbus_read_frame(p->fd, &f);
                if (r == 0)
                        break;
                if (r == -EBADMSG) {
                        if (p->bad_packets++ == 0)
                                log_warning("vbus hub: dropped a packet that is not a 16-byte CAN frame");
                        continue;
                }
                if (r < 0) {
                        log_debug("vbus hub: a peer left (%zu remain)", h->n_peers - 1);
                        peer_free(p);
                        return 0;
                }
                hub_forward(h, p, &f);
        }

        if (revents & (EPOLLHUP | EPOLLERR) && !(revents & EPOLLIN))
                peer_free(p);
        return 0;
}

static int hub_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VbusHub *h = userdata;
        _cleanup_close_ int cfd = -1;
        VbusPeer *p;
        int r;

        cfd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "vbus hub: accept failed: %m");
                return 0;
        }
        if (h->n_peers >= VBUS_MAX_PEERS) {
                log_warning("vbus hub: refusing a peer, already %d on the bus", VBUS_MAX_PEERS);
                return 0;
        }

        p = calloc(1, sizeof(*p));
        if (!p)
                return 0;
        r = sd_event_add_io(h->local.event, &p->io, cfd, EPOLLIN, peer_on_io, p);
        if (r < 0) {
                free(p);
                log_warning_errno(r, "vbus hub: cannot watch a new peer: %m");
                return 0;
        }
        (void) sd_event_source_set_description(p->io, "vbus-hub-peer");
        p->hub = h;
        p->fd = TAKE_FD(cfd);
        h->peers[h->n_peers++] = p;
        log_debug("vbus hub: a peer joined (%zu on the bus)", h->n_peers);
        return 0;
}

static int hub_local_send(FrameLink *l, const struct can_frame *f) {
        hub_forward((VbusHub *) l, NULL, f);
        return 0;
}

static void hub_local_free(FrameLink *l) {
        VbusHub *h = (VbusHub *) l;

        while (h->n_peers > 0)
                peer_free(h->peers[0]);
        sd_event_source_disable_unref(h->listen_io);
        if (h->listen_fd >= 0) {
                close(h->listen_fd);
                (void) unlink(h->path);
        }
        free(h);
}

static const FrameLinkOps hub_ops = {
        .send = hub_local_send,
        .free = hub_local_free,
};

/* Removes a socket left behind by a hub that died, but never another kind of file. */
static int remove_stale_socket(const char *path) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISSOCK(st.st_mode))
                return -EEXIST;
        return unlink(path) < 0 ? -errno : 0;
}

int vbus_hub_new(sd_event *e, const char *path, VbusHub **ret) {
        char desc[sizeof(((struct sockaddr_un *) 0)->sun_path) + 16];
        struct sockaddr_un sa;
        VbusHub *h;
        int r;

        r = vbus_address(path, &sa);
        if (r < 0)
                return log_error_errno(r, "vbus hub: socket path too long: %s", path);
        r = remove_stale_socket(path);
        if (r < 0)
                return log_error_errno(r, "vbus hub: %s exists and is not a socket, not replacing it: %m", path);

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        snprintf(desc, sizeof(desc), "vbus-hub:%s", path);
        frame_link_init(&h->local, &hub_ops, e, desc);
        strcpy(h->path, path);
        h->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (h->listen_fd < 0) {
                r = -errno;
                goto fail;
        }
        if (bind(h->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(h->listen_fd, 16) < 0) {
                r = log_error_errno(errno, "vbus hub: cannot listen on %s: %m", path);
                close(h->listen_fd);
                h->listen_fd = -1;
                goto fail;
        }
        r = sd_event_add_io(e, &h->listen_io, h->listen_fd, EPOLLIN, hub_on_accept, h);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_description(h->listen_io, "vbus-hub-listen");

        h->local.state = LINK_STATE_UP;
        *ret = h;
        return 0;
fail:
        frame_link_free(&h->local);
        return r;
}

VbusHub *vbus_hub_free(VbusHub *h) {
        if (h)
                frame_link_free(&h->local);
        return NULL;
}

FrameLink *vbus_hub_local_link(VbusHub *h) {
        return &h->local;
}

size_t vbus_hub_n_peers(VbusHub *h) {
        return h->n_peers;
}
