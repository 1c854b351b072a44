/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "event-util.h"
#include "log.h"
#include "uds-link.h"

struct UdsLink {
        Transport *transport;
        sd_event *event;
        UdsClient *client;
        DeadlineTimer timer;
        UdsLinkStateHandler link_state_handler;
        void *link_state_userdata;
        UdsLinkUnexpectedHandler unexpected_handler;
        void *unexpected_userdata;
};

static void rearm(UdsLink *l) {
        int r = deadline_timer_set(&l->timer, uds_client_next_deadline(l->client));
        if (r == -ESTALE)
                return; /* the loop is exiting (a SIGTERM): nothing runs any more */
        if (r < 0)
                log_error_errno(r, "%s: cannot arm the UDS timer: %m", transport_describe(l->transport));
}

static int io_send(void *userdata, const uint8_t *data, size_t size) {
        UdsLink *l = userdata;
        return transport_send(l->transport, data, size);
}

static void io_unexpected(void *userdata, const uint8_t *data, size_t size) {
        UdsLink *l = userdata;
        log_debug("%s: an answer that matches no request (%zu bytes, first 0x%02X)", transport_describe(l->transport),
                  size, data[0]);
        if (l->unexpected_handler)
                l->unexpected_handler(l, data, size, l->unexpected_userdata);
}

static void on_received(Transport *t, const uint8_t *data, size_t size, void *userdata) {
        UdsLink *l = userdata;

        uds_client_received(l->client, data, size, event_now(l->event));
        rearm(l);
}

static void on_sent(Transport *t, int error, void *userdata) {
        UdsLink *l = userdata;

        uds_client_sent(l->client, error, event_now(l->event));
        rearm(l);
}

static void on_receive_failed(Transport *t, int error, const char *cause, void *userdata) {
        UdsLink *l = userdata;

        log_info("%s: an answer was lost: %s", transport_describe(t), cause);
        uds_client_receive_failed(l->client, error, event_now(l->event));
        rearm(l);
}

static void on_link_state(Transport *t, LinkState state, void *userdata) {
        UdsLink *l = userdata;

        if (l->link_state_handler)
                l->link_state_handler(l, state, l->link_state_userdata);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        UdsLink *l = userdata;

        uds_client_tick(l->client, event_now(l->event));
        rearm(l);
        return 0;
}

int uds_link_new(Transport *transport, const UdsClientConfig *config, UdsLink **ret) {
        UdsLink *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->event = sd_event_ref(transport_get_event(transport));

        r = uds_client_new(config, &(UdsClientIo) { .send = io_send, .unexpected = io_unexpected }, l, &l->client);
        if (r < 0)
                goto fail;
        r = deadline_timer_init(&l->timer, l->event, "uds-timer", on_timer, l);
        if (r < 0)
                goto fail;

        l->transport = transport;
        transport_set_handlers(transport,
                               &(TransportHandlers) {
                                       .received = on_received,
                                       .sent = on_sent,
                                       .receive_failed = on_receive_failed,
                                       .link_state = on_link_state,
                               },
                               l);
        if (config->tester_present > 0)
                uds_link_set_tester_present(l, config->tester_present);
        *ret = l;
        return 0;
fail:
        uds_client_free(l->client);
        sd_event_unref(l->event);
        free(l);
        return r;
}

UdsLink *uds_link_free(UdsLink *l) {
        if (!l)
                return NULL;
        deadline_timer_done(&l->timer);
        uds_client_free(l->client);
        transport_free(l->transport);
        sd_event_unref(l->event);
        free(l);
        return NULL;
}

int uds_link_request(UdsLink *l, const uint8_t *data, size_t size, UdsCallback cb, void *userdata) {
        int r = uds_client_request(l->client, data, size, cb, userdata, event_now(l->event));
        rearm(l);
        return r;
}

void uds_link_set_tester_present(UdsLink *l, usec_t interval) {
        uds_client_set_tester_present(l->client, interval, event_now(l->event));
        rearm(l);
}

void uds_link_cancel_all(UdsLink *l, int error) {
        uds_client_cancel_all(l->client, error, event_now(l->event));
        rearm(l);
}

void uds_link_set_link_state_handler(UdsLink *l, UdsLinkStateHandler handler, void *userdata) {
        l->link_state_handler = handler;
        l->link_state_userdata = userdata;
}

void uds_link_set_unexpected_handler(UdsLink *l, UdsLinkUnexpectedHandler handler, void *userdata) {
        l->unexpected_handler = handler;
        l->unexpected_userdata = userdata;
}

UdsClient *uds_link_client(UdsLink *l) {
        return l->client;
}

Transport *uds_link_transport(UdsLink *l) {
        return l->transport;
}
