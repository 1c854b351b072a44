/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The local virtual bus with real Unix sockets and a real sd-event loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "frame-link.h"
#include "transport.h"
#include "uds-link.h"
#include "vbus.h"

typedef struct Peer {
        FrameLink *link;
        struct can_frame frames[64];
        unsigned n;
        LinkState last_state;
} Peer;

static sd_event *event;
static char dir[] = "/tmp/test-vbus-XXXXXX";
static char path[128];
static char uri_text[160];
static LinkUri uri;

static void on_frame(FrameLink *l, const struct can_frame *f, void *userdata) {
        Peer *p = userdata;
        if (p->n < 64)
                p->frames[p->n] = *f;
        p->n++;
}

static void on_state(FrameLink *l, LinkState s, void *userdata) {
        Peer *p = userdata;
        p->last_state = s;
}

static void peer_open(Peer *p) {
        *p = (Peer) {};
        assert_int_equal(frame_link_open(event, &uri, &p->link), 0);
        frame_link_set_handlers(p->link, &(FrameLinkHandlers) { .frame = on_frame, .state = on_state }, p);
        assert_int_equal(frame_link_accept_all(p->link), 0);
}

/* Runs the loop until nothing happens for a moment. */
static void settle(void) {
        for (int i = 0; i < 50; i++)
                if (sd_event_run(event, 20 * 1000) == 0)
                        break;
}

static void run_for(usec_t usec) {
        usec_t end = now_usec(CLOCK_MONOTONIC) + usec;
        while (now_usec(CLOCK_MONOTONIC) < end)
                sd_event_run(event, 10 * 1000);
}

static struct can_frame frame(canid_t id, uint8_t first) {
        struct can_frame f = { .can_id = id, .len = 8 };
        for (int i = 0; i < 8; i++)
                f.data[i] = first + i;
        return f;
}

static int setup(void **state) {
        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/bus.sock", dir);
        snprintf(uri_text, sizeof(uri_text), "vbus:%s", path);
        assert_int_equal(link_uri_parse(uri_text, &uri, NULL), 0);
        assert_int_equal(sd_event_new(&event), 0);
        return 0;
}

static int teardown(void **state) {
        (void) unlink(path);
        (void) rmdir(dir);
        sd_event_unref(event);
        return 0;
}

static void test_broadcast(void **state) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        Peer a, b, sniffer, local = {};
        struct can_frame f;

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        frame_link_set_handlers(vbus_hub_local_link(hub), &(FrameLinkHandlers) { .frame = on_frame }, &local);
        frame_link_accept_all(vbus_hub_local_link(hub));
        peer_open(&a);
        peer_open(&b);
        peer_open(&sniffer);
        settle();
        assert_int_equal(vbus_hub_n_peers(hub), 3);
        assert_int_equal(frame_link_get_state(a.link), LINK_STATE_UP);

        /* from a peer: every other peer and the hub's owner, never back to the sender */
        f = frame(0x750, 0x10);
        assert_int_equal(frame_link_send(a.link, &f), 0);
        settle();
        assert_int_equal(a.n, 0);
        assert_int_equal(b.n, 1);
        assert_int_equal(sniffer.n, 1);
        assert_int_equal(local.n, 1);
        assert_memory_equal(&b.frames[0], &f, sizeof(f));
        assert_memory_equal(&local.frames[0], &f, sizeof(f));

        /* from the hub's owner: every peer */
        f = frame(0x758, 0x20);
        assert_int_equal(frame_link_send(vbus_hub_local_link(hub), &f), 0);
        settle();
        assert_int_equal(a.n, 1);
        assert_int_equal(b.n, 2);
        assert_int_equal(local.n, 1);
        assert_int_equal(a.frames[0].can_id, 0x758);

        /* a frame longer than 8 bytes is refused before it leaves */
        f.len = 9;
        assert_int_equal(frame_link_send(a.link, &f), -EINVAL);

        frame_link_free(a.link);
        frame_link_free(b.link);
        frame_link_free(sniffer.link);
        settle();
        assert_int_equal(vbus_hub_n_peers(hub), 0);
}

static void test_filter(void **state) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        Peer a;
        canid_t want = 0x758;
        struct can_frame f1 = frame(0x750, 1), f2 = frame(0x758, 2), f3 = frame(0x758 | CAN_EFF_FLAG, 3);

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        peer_open(&a);
        assert_int_equal(frame_link_set_filter(a.link, &want, 1), 0);
        settle();
        frame_link_send(vbus_hub_local_link(hub), &f1);
        frame_link_send(vbus_hub_local_link(hub), &f2);
        frame_link_send(vbus_hub_local_link(hub), &f3); /* a 29-bit id is another id */
        settle();
        assert_int_equal(a.n, 1);
        assert_int_equal(a.frames[0].can_id, 0x758);
        assert_int_equal(a.frames[0].data[0], 2);
        frame_link_free(a.link);
}

static int raw_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

static void test_malformed_packets_dropped(void **state) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        Peer a;
        uint8_t junk[10] = {}, big[32] = {};
        struct can_frame bad_len = frame(0x750, 0), good = frame(0x750, 0x42);
        int fd;

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        peer_open(&a);
        fd = raw_connect();
        settle();

        bad_len.len = 15;
        assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t) sizeof(junk));
        assert_int_equal(send(fd, big, sizeof(big), 0), (ssize_t) sizeof(big));
        assert_int_equal(send(fd, &bad_len, sizeof(bad_len), 0), (ssize_t) sizeof(bad_len));
        assert_int_equal(send(fd, &good, sizeof(good), 0), (ssize_t) sizeof(good));
        settle();
        /* only the well-formed frame crossed, and the sender is still on the bus */
        assert_int_equal(a.n, 1);
        assert_int_equal(a.frames[0].data[0], 0x42);
        assert_int_equal(vbus_hub_n_peers(hub), 2);
        close(fd);
        frame_link_free(a.link);
}

static void test_reconnect(void **state) {
        VbusHub *hub = NULL;
        Peer a;

        /* no hub yet: the peer is down, not failed */
        peer_open(&a);
        assert_int_equal(frame_link_get_state(a.link), LINK_STATE_DOWN);
        struct can_frame f = frame(0x750, 0);
        assert_int_equal(frame_link_send(a.link, &f), -ENOTCONN);

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        for (int i = 0; i < 300 && frame_link_get_state(a.link) != LINK_STATE_UP; i++)
                run_for(10 * 1000);
        assert_int_equal(frame_link_get_state(a.link), LINK_STATE_UP);
        assert_int_equal(a.last_state, LINK_STATE_UP);

        /* the hub goes away: the peer notices */
        vbus_hub_free(hub);
        for (int i = 0; i < 100 && frame_link_get_state(a.link) != LINK_STATE_DOWN; i++)
                run_for(10 * 1000);
        assert_int_equal(a.last_state, LINK_STATE_DOWN);
        frame_link_free(a.link);
}

static void test_not_a_socket(void **state) {
        VbusHub *hub = NULL;
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        fclose(f);
        assert_int_equal(vbus_hub_new(event, path, &hub), -EEXIST);
        assert_null(hub);
        unlink(path);
}

static void test_max_peers(void **state) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        int fds[VBUS_MAX_PEERS + 1];
        char c;

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        for (int i = 0; i <= VBUS_MAX_PEERS; i++) {
                fds[i] = raw_connect();
                settle();
        }
        assert_int_equal(vbus_hub_n_peers(hub), VBUS_MAX_PEERS);
        /* the one too many was closed by the hub */
        assert_int_equal(recv(fds[VBUS_MAX_PEERS], &c, 1, MSG_DONTWAIT), 0);
        for (int i = 0; i <= VBUS_MAX_PEERS; i++)
                close(fds[i]);
}

static void test_slow_peer_does_not_stall(void **state) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        Peer fast;
        int slow;
        unsigned sent = 0;

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        slow = raw_connect(); /* never reads */
        peer_open(&fast);
        settle();

        /* more than the slow peer's socket and queue hold together */
        for (unsigned i = 0; i < VBUS_PEER_QUEUE + 2000; i++) {
                struct can_frame f = frame(0x758, (uint8_t) i);
                assert_int_equal(frame_link_send(vbus_hub_local_link(hub), &f), 0);
                sent++;
                if (i % 100 == 0)
                        settle();
        }
        settle();
        assert_int_equal(fast.n, sent);
        assert_int_equal(vbus_hub_n_peers(hub), 2);
        close(slow);
        frame_link_free(fast.link);
}

/* Our ISO-TP and the UDS client over the bus: the path immod and the simulator use. */
typedef struct Answer {
        bool done;
        int error;
        uint8_t nrc;
        size_t size;
        uint8_t data[64];
} Answer;

static void on_answer(UdsClient *c, const UdsResponse *r, void *userdata) {
        Answer *a = userdata;
        a->done = true;
        a->error = r->error;
        a->nrc = r->nrc;
        a->size = r->size;
        if (r->data)
                memcpy(a->data, r->data, MIN(r->size, sizeof(a->data)));
}

static void responder(Transport *t, const uint8_t *d, size_t n, void *userdata) {
        uint8_t out[40] = { 0x62, 0xf1, 0x90 };

        if (n == 3 && d[0] == 0x22) {
                memcpy(out + 3, "4T1BZ1FB0KU000777", 17);
                transport_send(t, out, 20);
        } else {
                out[0] = 0x7f;
                out[1] = d[0];
                out[2] = 0x11;
                transport_send(t, out, 3);
        }
}

static void test_uds_over_vbus(void **state) {
        _cleanup_(vbus_hub_freep) VbusHub *hub = NULL;
        _cleanup_(transport_freep) Transport *ecu = NULL;
        _cleanup_(uds_link_freep) UdsLink *link = NULL;
        Transport *tester;
        IsoTpConfig c;
        UdsClientConfig uc;
        Answer a = {};

        assert_int_equal(vbus_hub_new(event, path, &hub), 0);
        isotp_config_init(&c);
        c.tx_id = 0x758;
        c.rx_id = 0x750;
        c.extended = true;
        c.tx_ext_address = c.rx_ext_address = 0x57;
        c.tx_padding = true;
        c.padding_byte = 0x55;
        assert_int_equal(transport_open_on_frames(vbus_hub_local_link(hub), &c, &ecu), 0);
        transport_set_handlers(ecu, &(TransportHandlers) { .received = responder }, NULL);

        c.tx_id = 0x750;
        c.rx_id = 0x758;
        assert_int_equal(transport_open(event, uri_text, &c, &tester), 0);
        uds_client_config_init(&uc);
        assert_int_equal(uds_link_new(tester, &uc, &link), 0);
        settle();

        assert_int_equal(uds_link_request(link, (const uint8_t[]) { 0x22, 0xf1, 0x90 }, 3, on_answer, &a), 0);
        for (int i = 0; i < 200 && !a.done; i++)
                sd_event_run(event, 10 * 1000);
        assert_true(a.done);
        assert_int_equal(a.error, 0);
        assert_int_equal(a.nrc, 0);
        assert_int_equal(a.size, 20);
        assert_memory_equal(a.data + 3, "4T1BZ1FB0KU000777", 17);

        a = (Answer) {};
        assert_int_equal(uds_link_request(link, (const uint8_t[]) { 0x2e, 0xf1, 0x90, 0 }, 4, on_answer, &a), 0);
        for (int i = 0; i < 200 && !a.done; i++)
                sd_event_run(event, 10 * 1000);
        assert_true(a.done);
        assert_int_equal(a.error, 0);
        assert_int_equal(a.nrc, 0x11);

        /* with the ECU gone from the bus, the request times out after P2 */
        ecu = transport_free(ecu);
        a = (Answer) {};
        assert_int_equal(uds_link_request(link, (const uint8_t[]) { 0x22, 0xf1, 0x90 }, 3, on_answer, &a), 0);
        for (int i = 0; i < 200 && !a.done; i++)
                sd_event_run(event, 10 * 1000);
        assert_true(a.done);
        assert_int_equal(a.error, -ETIMEDOUT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_broadcast),
                cmocka_unit_test(test_filter),
                cmocka_unit_test(test_malformed_packets_dropped),
                cmocka_unit_test(test_reconnect),
                cmocka_unit_test(test_not_a_socket),
                cmocka_unit_test(test_max_peers),
                cmocka_unit_test(test_slow_peer_does_not_stall),
                cmocka_unit_test(test_uds_over_vbus),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
