/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the UDS client (lib/uds.c) on a fake clock with a scripted transport.
 *
 * The input is a configuration (P2, P2*, responsePending limit, queue length, tester
 * present) and then a program: requests (session control, ECU reset, read DID, security
 * access, routine control, tester present, unknown services, with and without the
 * suppress-positive-response bit), answers (positive echoes of what went out, negative
 * answers, responsePending, arbitrary bytes, empty ones), sent() and receive_failed()
 * reports with and without errors, time steps, tester present changes, cancel_all. The
 * transport takes one message at a time; it can answer -EBUSY or fail, and can report
 * "sent" from inside send(). Callbacks may queue new requests or cancel everything.
 *
 * What is checked (promised by uds.h):
 *   - every accepted request's callback runs exactly once: by the end, after
 *     uds_client_cancel_all(), all have run and the client is idle; or, when the input
 *     ends the run with uds_client_free() alone, none runs after it (and ASan's leak
 *     check sees what it did not free); uds_client_request()'s return codes;
 *   - each response is consistent: the request's service id; an error is a negative errno
 *     and comes without data; a positive answer echoes the service id + 0x40 and the
 *     sub-function, DID or routine id of the request; a negative one names the service and
 *     its NRC (never responsePending); a suppressed answer only for a request that
 *     suppressed it, without data; pending above max_pending only in a -ETIMEDOUT;
 *   - send() gets 1..4095 bytes;
 *   - after uds_client_tick(now), uds_client_next_deadline() is not in the past, and a
 *     busy client whose transport is idle always has a deadline (it cannot hang).
 */
#include <stdio.h>

#include "fuzz.h"
#include "uds.h"

#define MS USEC_PER_MSEC
#define T0 (1000 * USEC_PER_SEC)
#define MAX_REQUESTS 256
#define MAX_OPS 1024

typedef struct Req {
        uint8_t data[16];
        size_t size;
        bool accepted;
        unsigned calls;
        uint8_t then; /* what the callback does: 1 queue another request, 2 cancel all */
} Req;

typedef enum SendMode {
        SEND_HOLD,      /* take it; the program reports sent() later */
        SEND_SYNC_OK,   /* report sent(0) from inside send() */
        SEND_SYNC_FAIL, /* report sent(-EIO) from inside send() */
        SEND_BUSY,      /* -EBUSY */
        SEND_FAIL,      /* -ENETDOWN */
        _SEND_MAX,
} SendMode;

static struct {
        UdsClient *c;
        UdsClientConfig cfg;
        usec_t now;
        bool freed, ending;

        Req req[MAX_REQUESTS];
        unsigned n_req;
        unsigned budget; /* requests the callbacks may still queue */

        SendMode mode;
        unsigned mode_count; /* messages the mode holds for; then SEND_HOLD */
        bool in_flight;
        uint8_t last[UDS_MAX_MESSAGE]; /* the last message send() took */
        size_t last_size;
        unsigned depth;
} S;

static int new_request(uint8_t kind, uint8_t arg, uint8_t then);

static void on_response(UdsClient *c, const UdsResponse *resp, void *userdata) {
        Req *r = userdata;
        uint8_t sid = r->data[0];

        FUZZ_CHECK(!S.freed);
        FUZZ_CHECK(c == S.c);
        FUZZ_CHECK(r >= S.req && r < S.req + S.n_req && r->accepted);
        FUZZ_CHECK(++r->calls == 1);

        FUZZ_CHECK(resp->sid == sid);
        FUZZ_CHECK(resp->error <= 0);
        /* counted are those seen, so one past the limit ends the request with -ETIMEDOUT */
        FUZZ_CHECK(resp->pending <= S.cfg.max_pending + 1);
        FUZZ_CHECK(resp->pending <= S.cfg.max_pending || resp->error == -ETIMEDOUT);
        if (resp->error < 0) {
                FUZZ_CHECK(!resp->data && resp->nrc == 0 && !resp->suppressed);
        } else if (resp->suppressed) {
                FUZZ_CHECK(!resp->data && resp->nrc == 0 && resp->pending == 0);
                FUZZ_CHECK(r->size >= 2 && uds_service_has_subfunction(sid) && (r->data[1] & UDS_SPRMIB));
        } else {
                const uint8_t *d = resp->data;
                size_t n = resp->size;

                FUZZ_CHECK(d && n >= 1 && n <= UDS_MAX_MESSAGE);
                if (d[0] == (uint8_t) (sid + 0x40)) {
                        /* positive: the echoes uds.h promises to match */
                        if (uds_service_has_subfunction(sid) && r->size >= 2)
                                FUZZ_CHECK(n >= 2 && d[1] == (r->data[1] & 0x7f));
                        if (sid == UDS_READ_DID || sid == 0x2e)
                                FUZZ_CHECK(n >= 3 && r->size >= 3 && d[1] == r->data[1] && d[2] == r->data[2]);
                        if (sid == UDS_ROUTINE_CONTROL)
                                FUZZ_CHECK(n >= 4 && r->size >= 4 && d[2] == r->data[2] && d[3] == r->data[3]);
                } else {
                        FUZZ_CHECK(d[0] == UDS_NEGATIVE_RESPONSE && n >= 3 && d[1] == sid);
                        FUZZ_CHECK(d[2] != UDS_NRC_RESPONSE_PENDING);
                }
                if (d[0] == UDS_NEGATIVE_RESPONSE && n >= 3)
                        FUZZ_CHECK(resp->nrc == d[2]);
                else
                        FUZZ_CHECK(resp->nrc == 0);
        }

        if (resp->nrc != 0) {
                char text[256];
                FUZZ_CHECK(uds_nrc_to_string(resp->nrc) != NULL);
                uds_nrc_describe(sid, resp->nrc, text, sizeof(text));
                FUZZ_CHECK(memchr(text, '\0', sizeof(text)) && text[0] != '\0');
        }
        FUZZ_CHECK(uds_service_to_string(sid) != NULL);

        if (S.ending || S.depth > 8)
                return;
        S.depth++;
        if (r->then == 1 && S.budget > 0) {
                S.budget--;
                (void) new_request(r->data[0], r->data[1], 0);
        } else if (r->then == 2)
                uds_client_cancel_all(S.c, -ECANCELED, S.now);
        S.depth--;
}

static int on_send(void *userdata, const uint8_t *data, size_t size) {
        SendMode mode;

        FUZZ_CHECK(!S.freed);
        FUZZ_CHECK(size >= 1 && size <= UDS_MAX_MESSAGE);
        if (S.in_flight)
                return -EBUSY; /* one message at a time, as a real transport */

        mode = S.mode;
        if (S.mode_count > 0 && --S.mode_count == 0)
                S.mode = SEND_HOLD;

        switch (mode) {
        case SEND_BUSY:
                return -EBUSY;
        case SEND_FAIL:
                return -ENETDOWN;
        default:
                break;
        }

        memcpy(S.last, data, size);
        S.last_size = size;
        if (mode == SEND_HOLD) {
                S.in_flight = true;
                return 0;
        }
        /* a transport that finishes at once and reports from inside send() */
        if (S.depth > 16) {
                S.in_flight = true;
                return 0;
        }
        S.depth++;
        uds_client_sent(S.c, mode == SEND_SYNC_OK ? 0 : -EIO, S.now);
        S.depth--;
        return 0;
}

static void on_unexpected(void *userdata, const uint8_t *data, size_t size) {
        volatile uint8_t sum = 0;

        FUZZ_CHECK(size >= 1);
        for (size_t i = 0; i < size; i++)
                sum += data[i];
        (void) sum;
}

static const UdsClientIo io = {
        .send = on_send,
        .unexpected = on_unexpected,
};

/* Builds a request of one of the services the client knows, or anything. */
static int new_request(uint8_t kind, uint8_t arg, uint8_t then) {
        static const uint8_t sids[] = {
                UDS_SESSION_CONTROL, UDS_ECU_RESET, UDS_READ_DID, UDS_SECURITY_ACCESS,
                UDS_ROUTINE_CONTROL, UDS_TESTER_PRESENT, 0x2e, 0x3f
        };
        Req *r;
        int ret;

        if (S.n_req >= MAX_REQUESTS)
                return -ENOSPC;
        r = &S.req[S.n_req];
        *r = (Req) { .then = then };

        r->data[0] = (kind & 0x80) ? kind : sids[kind & 7];
        r->data[1] = arg;
        r->data[2] = (uint8_t) (arg * 7 + 1);
        r->data[3] = (uint8_t) (arg * 13 + 5);
        r->data[4] = 0x42;
        r->size = (kind & 0x80) ? 1 + (arg & 0x0f) : 1 + ((kind >> 3) & 3) + (kind & 0x20 ? 2 : 0);
        if (kind == 0xff)
                r->size = 0;
        S.n_req++;

        /* the callback may run inside uds_client_request() already */
        r->accepted = true;
        ret = uds_client_request(S.c, r->data, r->size, on_response, r, S.now);
        if (r->size == 0 || !uds_is_request_sid(r->data[0]))
                FUZZ_CHECK(ret == -EINVAL);
        else
                FUZZ_CHECK(ret == 0 || ret == -ENOBUFS);
        if (ret < 0) {
                FUZZ_CHECK(r->calls == 0);
                r->accepted = false;
        }
        return ret;
}

static void answer(uint8_t kind, FuzzInput *in) {
        uint8_t buf[32];
        size_t n = 0;

        switch (kind % 8) {
        case 0:
        case 1: /* a positive answer to what went out last */
                if (S.last_size == 0)
                        return;
                buf[n++] = (uint8_t) (S.last[0] + 0x40);
                for (size_t i = 1; i < MIN(S.last_size, 4u); i++)
                        buf[n++] = i == 1 ? (S.last[1] & 0x7f) : S.last[i];
                for (unsigned i = 0; i < (kind >> 4); i++)
                        buf[n++] = fuzz_u8(in);
                break;
        case 2: /* a negative one */
                buf[n++] = UDS_NEGATIVE_RESPONSE;
                buf[n++] = S.last_size > 0 ? S.last[0] : 0;
                buf[n++] = fuzz_u8(in);
                break;
        case 3:
        case 4: /* responsePending */
                buf[n++] = UDS_NEGATIVE_RESPONSE;
                buf[n++] = (kind & 0x80) ? fuzz_u8(in) : (S.last_size > 0 ? S.last[0] : 0);
                buf[n++] = UDS_NRC_RESPONSE_PENDING;
                break;
        case 5: /* anything */
                n = (kind >> 3) & 0x1f;
                fuzz_bytes(in, buf, n);
                break;
        case 6: /* a tester present answer */
                buf[n++] = UDS_TESTER_PRESENT + 0x40;
                buf[n++] = 0x00;
                break;
        case 7: /* nothing at all */
                break;
        }

        /* exact size, so ASan sees a read past the end */
        uint8_t *copy = malloc(n + 1);
        FUZZ_CHECK(copy);
        memcpy(copy, buf, n);
        uds_client_received(S.c, copy, n, S.now);
        free(copy);
}

static void check_deadline(bool after_tick) {
        usec_t d = uds_client_next_deadline(S.c);

        if (after_tick)
                FUZZ_CHECK(d >= S.now);
        /* a busy client waits for the transport, or has a timer: it never hangs */
        if (uds_client_busy(S.c) && !S.in_flight)
                FUZZ_CHECK(d != USEC_INFINITY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const usec_t p2s[] = { 1, 1 * MS, 50 * MS, 150 * MS };
        static const usec_t p2stars[] = { 1, 100 * MS, 2000 * MS, 5000 * MS };
        static const usec_t tps[] = { 0, 0, 1 * MS, 2000 * MS };
        static const usec_t steps[] = { 0, 1, 500, 1 * MS, 10 * MS, 150 * MS, 2000 * MS, 5000 * MS };
        FuzzInput in = { data, size };
        bool free_only;
        uint8_t b;
        int r;

        memset(&S, 0, sizeof(S));
        S.now = T0;
        S.budget = 64;

        uds_client_config_init(&S.cfg);
        b = fuzz_u8(&in);
        S.cfg.p2 = p2s[b & 3];
        S.cfg.p2_star = p2stars[(b >> 2) & 3];
        S.cfg.tester_present = tps[(b >> 4) & 3];
        S.cfg.max_queue = 1 + ((b >> 6) ? fuzz_u8(&in) % 20 : 15);
        b = fuzz_u8(&in);
        free_only = b & 0x80; /* end with uds_client_free() alone */
        S.cfg.max_pending = (b & 0x7f) % 6;
        if (S.cfg.max_pending == 5)
                S.cfg.max_pending = 1000;

        r = uds_client_new(&S.cfg, &io, NULL, &S.c);
        FUZZ_CHECK(r == 0);

        for (unsigned ops = 0; !fuzz_eof(&in) && ops < MAX_OPS; ops++) {
                uint8_t op = fuzz_u8(&in);

                switch (op % 16) {
                case 0:
                case 1:
                case 2: {
                        uint8_t kind = fuzz_u8(&in), arg = fuzz_u8(&in);
                        (void) new_request(kind, arg, (op >> 4) % 4);
                        break;
                }
                case 3:
                case 4:
                case 5:
                        answer(fuzz_u8(&in), &in);
                        break;
                case 6:
                case 7: /* the transport reports the message in flight */
                        if (S.in_flight) {
                                S.in_flight = false;
                                uds_client_sent(S.c, (op & 0x10) ? -ECOMM : 0, S.now);
                        }
                        break;
                case 8: { /* how the transport takes the next messages */
                        uint8_t m = fuzz_u8(&in);
                        S.mode = m % _SEND_MAX;
                        S.mode_count = m >> 4;
                        break;
                }
                case 9:
                        uds_client_receive_failed(S.c, (op & 0x10) ? -ETIMEDOUT : ((op & 0x20) ? 0 : -EILSEQ),
                                                  S.now);
                        break;
                case 10:
                case 11: {
                        uint8_t s = fuzz_u8(&in);
                        S.now += steps[s & 7] * (1 + (s >> 3));
                        uds_client_tick(S.c, S.now);
                        check_deadline(true);
                        break;
                }
                case 12: { /* to the next deadline */
                        usec_t d = uds_client_next_deadline(S.c);
                        if (d != USEC_INFINITY)
                                S.now = MAX(S.now, d);
                        uds_client_tick(S.c, S.now);
                        check_deadline(true);
                        break;
                }
                case 13:
                        uds_client_set_tester_present(S.c, tps[(op >> 4) & 3], S.now);
                        break;
                case 14:
                        if ((op >> 4) == 0)
                                uds_client_cancel_all(S.c, -ECANCELED, S.now);
                        break;
                default:
                        break;
                }
                check_deadline(false);
        }

        if (free_only) {
                /* Freed first: no callback runs any more (on_response() checks), and
                 * ASan's leak check sees whether the queued requests were freed. */
                S.c = uds_client_free(S.c);
                S.freed = true;
                for (unsigned i = 0; i < S.n_req; i++)
                        FUZZ_CHECK(S.req[i].calls <= 1);
                return 0;
        }

        /* The end: everything still queued or waiting is cancelled; every callback has run. */
        S.ending = true;
        uds_client_cancel_all(S.c, -ECANCELED, S.now);
        FUZZ_CHECK(!uds_client_busy(S.c));
        for (unsigned i = 0; i < S.n_req; i++)
                FUZZ_CHECK(S.req[i].calls == (S.req[i].accepted ? 1u : 0u));

        S.c = uds_client_free(S.c);
        S.freed = true;
        return 0;
}
