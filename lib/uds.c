/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "uds.h"

/* How soon to offer a message again when the transport is still busy sending. */
#define RETRY_USEC (1 * USEC_PER_MSEC)

typedef struct Request {
        uint8_t *data;
        size_t size;
        UdsCallback cb;
        void *userdata;
} Request;

typedef enum ActiveStage {
        ACTIVE_NONE,
        ACTIVE_TO_SEND, /* waiting for the transport to be free */
        ACTIVE_SENDING, /* handed to the transport, not yet reported sent */
        ACTIVE_WAITING, /* sent; P2 or P2* runs */
} ActiveStage;

typedef enum InTransport {
        IN_TRANSPORT_NONE,
        IN_TRANSPORT_REQUEST,
        IN_TRANSPORT_TESTER_PRESENT,
} InTransport;

struct UdsClient {
        UdsClientConfig config;
        UdsClientIo io;
        void *userdata;

        Request *queue;
        size_t n_queue;
        Request *cancelling; /* room for the queue while uds_client_cancel_all() runs */

        Request active;
        ActiveStage stage;
        usec_t deadline; /* P2 or P2*, in ACTIVE_WAITING */
        unsigned pending;

        InTransport in_transport;
        usec_t retry_at; /* when to offer a message again after -EBUSY; 0 when not needed */

        usec_t tp_interval, tp_next;

        UdsClientStats stats;
};

void uds_client_config_init(UdsClientConfig *c) {
        *c = (UdsClientConfig) {
                .p2 = 150 * USEC_PER_MSEC,
                .p2_star = 5000 * USEC_PER_MSEC,
                .max_pending = 1000,
                .max_queue = 16,
        };
}

int uds_client_new(const UdsClientConfig *config, const UdsClientIo *io, void *userdata, UdsClient **ret) {
        UdsClient *c;

        if (!io->send || config->p2 == 0 || config->p2_star == 0 || config->max_queue == 0)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->queue = calloc(config->max_queue, sizeof(Request));
        c->cancelling = calloc(config->max_queue, sizeof(Request));
        if (!c->queue || !c->cancelling) {
                free(c->queue);
                free(c->cancelling);
                free(c);
                return -ENOMEM;
        }
        c->config = *config;
        c->io = *io;
        c->userdata = userdata;
        c->tp_interval = config->tester_present;
        *ret = c;
        return 0;
}

UdsClient *uds_client_free(UdsClient *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->n_queue; i++)
                free(c->queue[i].data);
        free(c->queue);
        free(c->cancelling);
        free(c->active.data);
        free(c);
        return NULL;
}

const UdsClientStats *uds_client_stats(UdsClient *c) {
        return &c->stats;
}

bool uds_client_busy(UdsClient *c) {
        return c->stage != ACTIVE_NONE || c->n_queue > 0;
}

static bool suppresses_positive_answer(const Request *r) {
        return r->size >= 2 && uds_service_has_subfunction(r->data[0]) && (r->data[1] & UDS_SPRMIB);
}

static void dispatch(UdsClient *c, usec_t now);

/* Ends the active request. The callback may queue new requests. */
static void complete(UdsClient *c, int error, const uint8_t *data, size_t size, bool suppressed, usec_t now) {
        Request done = c->active;
        UdsResponse resp = {
                .error = error,
                .sid = done.data[0],
                .suppressed = suppressed,
                .data = data,
                .size = size,
                .pending = c->pending,
        };

        if (error == 0 && data && size >= 3 && data[0] == UDS_NEGATIVE_RESPONSE)
                resp.nrc = data[2];
        if (error == -ETIMEDOUT)
                c->stats.timeouts++;

        c->active = (Request) {};
        c->stage = ACTIVE_NONE;
        c->pending = 0;

        if (done.cb)
                done.cb(c, &resp, done.userdata);
        free(done.data);

        dispatch(c, now);
}

/* Offers one message to the transport. Returns false when the transport is busy. */
static bool offer(UdsClient *c, InTransport what, const uint8_t *data, size_t size, int *ret_error, usec_t now) {
        int r;

        /* The transport may report "sent" from inside send(): mark it in flight first. */
        c->in_transport = what;
        r = c->io.send(c->userdata, data, size);
        if (r == -EBUSY || r == -EAGAIN) {
                c->in_transport = IN_TRANSPORT_NONE;
                c->retry_at = now + RETRY_USEC;
                return false;
        }
        c->retry_at = 0;
        if (r < 0 && c->in_transport == what)
                c->in_transport = IN_TRANSPORT_NONE;
        *ret_error = r < 0 ? r : 0;
        return true;
}

static void dispatch(UdsClient *c, usec_t now) {
        static const uint8_t tester_present[] = { UDS_TESTER_PRESENT, UDS_SPRMIB };
        int r;

        /* Whatever waited for a retry is offered again below, or is gone (cancelled,
         * tester present stopped): either way the old retry time no longer holds. */
        c->retry_at = 0;
        if (c->in_transport != IN_TRANSPORT_NONE)
                return;

        if (c->tp_interval > 0 && now >= c->tp_next) {
                usec_t due = c->tp_next;

                /* Schedule the next one first: the transport may report "sent" from inside
                 * send(), which comes back here. On a fixed grid: a late one does not push
                 * the later ones back, and slots already missed are not sent in a burst. */
                c->tp_next = due + c->tp_interval;
                if (c->tp_next <= now)
                        c->tp_next = now + c->tp_interval - (now - due) % c->tp_interval;
                if (!offer(c, IN_TRANSPORT_TESTER_PRESENT, tester_present, sizeof(tester_present), &r, now)) {
                        c->tp_next = due;
                        return;
                }
                /* A lost tester present is not worth failing anything for; the next one follows. */
                c->stats.tester_present++;
                if (c->in_transport != IN_TRANSPORT_NONE)
                        return;
        }

        if (c->stage == ACTIVE_NONE && c->n_queue > 0) {
                c->active = c->queue[0];
                memmove(c->queue, c->queue + 1, (c->n_queue - 1) * sizeof(Request));
                c->n_queue--;
                c->stage = ACTIVE_TO_SEND;
                c->pending = 0;
        }

        if (c->stage == ACTIVE_TO_SEND) {
                c->stage = ACTIVE_SENDING;
                if (!offer(c, IN_TRANSPORT_REQUEST, c->active.data, c->active.size, &r, now)) {
                        c->stage = ACTIVE_TO_SEND;
                        return;
                }
                c->stats.requests++;
                /* any request restarts the ECU's S3: the next keep-alive is due a period
                 * after it, so that a request made now and then is the only one on the bus */
                if (r >= 0 && c->tp_interval > 0)
                        c->tp_next = MAX(c->tp_next, now + c->tp_interval);
                if (r < 0)
                        complete(c, r, NULL, 0, false, now);
        }
}

int uds_client_request(UdsClient *c, const uint8_t *data, size_t size, UdsCallback cb, void *userdata,
                       usec_t now) {
        uint8_t *copy;

        if (size == 0 || size > UDS_MAX_MESSAGE || !uds_is_request_sid(data[0]))
                return -EINVAL;
        if (c->n_queue >= c->config.max_queue)
                return -ENOBUFS;

        copy = malloc(size);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, data, size);
        c->queue[c->n_queue++] = (Request) { .data = copy, .size = size, .cb = cb, .userdata = userdata };

        dispatch(c, now);
        return 0;
}

void uds_client_cancel_all(UdsClient *c, int error, usec_t now) {
        /* Take the queue out first, into room allocated with the client (nothing to fail
         * here): callbacks may queue new requests, which must not be mixed up with these. */
        size_t n = c->n_queue;

        memcpy(c->cancelling, c->queue, n * sizeof(Request));
        c->n_queue = 0;

        if (c->stage != ACTIVE_NONE) {
                if (c->in_transport == IN_TRANSPORT_REQUEST)
                        c->in_transport = IN_TRANSPORT_NONE; /* its "sent" report is ignored */
                complete(c, error, NULL, 0, false, now);
        }

        for (size_t i = 0; i < n; i++) {
                Request r = c->cancelling[i];
                UdsResponse resp = { .error = error, .sid = r.data[0] };

                if (r.cb)
                        r.cb(c, &resp, r.userdata);
                free(r.data);
        }
}

void uds_client_set_tester_present(UdsClient *c, usec_t interval, usec_t now) {
        c->tp_interval = interval;
        c->tp_next = now;
        dispatch(c, now);
}

void uds_client_sent(UdsClient *c, int error, usec_t now) {
        InTransport what = c->in_transport;

        c->in_transport = IN_TRANSPORT_NONE;

        if (what == IN_TRANSPORT_REQUEST && c->stage == ACTIVE_SENDING) {
                if (error < 0) {
                        complete(c, error, NULL, 0, false, now);
                        return;
                }
                c->stage = ACTIVE_WAITING;
                c->deadline = now + c->config.p2;
        }
        dispatch(c, now);
}

/* Whether an answer belongs to the request: its service id, and the sub-function, DID or
 * routine id it echoes. */
static bool positive_answer_matches(const Request *req, const uint8_t *d, size_t n) {
        uint8_t sid = req->data[0];

        if (d[0] != (uint8_t) (sid + 0x40))
                return false;
        if (uds_service_has_subfunction(sid) && req->size >= 2 && (n < 2 || d[1] != (req->data[1] & 0x7f)))
                return false;

        switch (sid) {
        case UDS_READ_DID:
        case 0x2e: /* WriteDataByIdentifier */
                return req->size >= 3 && n >= 3 && d[1] == req->data[1] && d[2] == req->data[2];
        case UDS_ROUTINE_CONTROL:
                return req->size >= 4 && n >= 4 && d[2] == req->data[2] && d[3] == req->data[3];
        default:
                return true;
        }
}

void uds_client_received(UdsClient *c, const uint8_t *data, size_t size, usec_t now) {
        bool waiting = c->stage == ACTIVE_SENDING || c->stage == ACTIVE_WAITING;

        if (size == 0)
                return;

        if (waiting && size >= 3 && data[0] == UDS_NEGATIVE_RESPONSE && data[1] == c->active.data[0]) {
                if (data[2] == UDS_NRC_RESPONSE_PENDING) {
                        c->stats.pending++;
                        if (++c->pending > c->config.max_pending) {
                                complete(c, -ETIMEDOUT, NULL, 0, false, now);
                                return;
                        }
                        c->stage = ACTIVE_WAITING;
                        c->deadline = now + c->config.p2_star;
                        return;
                }
                c->stats.answers++;
                complete(c, 0, data, size, false, now);
                return;
        }

        if (waiting && positive_answer_matches(&c->active, data, size)) {
                c->stats.answers++;
                complete(c, 0, data, size, false, now);
                return;
        }

        /* A late answer to a request that timed out, a tester present answer, noise. */
        c->stats.unexpected++;
        if (c->io.unexpected)
                c->io.unexpected(c->userdata, data, size);
}

void uds_client_receive_failed(UdsClient *c, int error, usec_t now) {
        /* The answer being received was lost; waiting out P2 would tell nothing more. */
        if (c->stage == ACTIVE_WAITING)
                complete(c, error < 0 ? error : -EIO, NULL, 0, false, now);
}

void uds_client_tick(UdsClient *c, usec_t now) {
        if (c->stage == ACTIVE_WAITING && now >= c->deadline) {
                if (c->pending == 0 && suppresses_positive_answer(&c->active))
                        complete(c, 0, NULL, 0, true, now);
                else
                        complete(c, -ETIMEDOUT, NULL, 0, false, now);
                return; /* complete() dispatched already */
        }
        dispatch(c, now);
}

usec_t uds_client_next_deadline(UdsClient *c) {
        usec_t d = USEC_INFINITY;

        if (c->stage == ACTIVE_WAITING)
                d = c->deadline;
        if (c->retry_at > 0)
                d = MIN(d, c->retry_at);
        if (c->tp_interval > 0 && c->in_transport == IN_TRANSPORT_NONE)
                d = MIN(d, MAX(c->tp_next, c->retry_at)); /* a busy transport delays it */
        return d;
}
