/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * UDS client tests on a fake clock, against a scripted transport and a scripted ECU.
 *
 * The fake transport records every message handed to send() with its fake time, keeps
 * one message "in flight" until the test (or the run loop, in auto mode) reports it sent
 * with uds_client_sent(), answers -EBUSY while one is in flight as a real transport
 * would, and can refuse, fail, or report "sent" synchronously from inside send(). The
 * clock jumps from one uds_client_next_deadline() to the next, calling uds_client_tick()
 * there. Answers from the ECU are fed with uds_client_received().
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <cmocka.h>

#include "uds.h"

#define MS USEC_PER_MSEC
#define SEC USEC_PER_SEC
/* The fake clock starts here: far from 0, which a real monotonic clock never shows. */
#define T0 (1000 * SEC)
#define P2 (150 * MS)
#define P2_STAR (5000 * MS)

#define MAX_TX 1024
#define MAX_RESP 64
#define MAX_DATA 64

typedef struct Msg {
        uint8_t d[MAX_DATA];
        size_t n;
        usec_t t;
} Msg;

typedef struct Resp {
        int error;
        uint8_t sid, nrc;
        bool suppressed;
        bool has_data;
        uint8_t d[MAX_DATA];
        size_t n;
        unsigned pending;
        usec_t t;
        uintptr_t tag;
} Resp;

static struct {
        usec_t now;
        UdsClient *c;

        Msg tx[MAX_TX]; /* messages the transport took */
        size_t n_tx;
        unsigned attempts;     /* send() calls */
        unsigned refused_busy; /* of them answered -EBUSY */
        bool in_flight;        /* taken, "sent" not reported yet */
        unsigned busy;         /* answer -EBUSY this many more times */
        int fail;              /* answer this error, once */
        bool sync;             /* report "sent" from inside send() */
        unsigned depth, max_depth;
        bool auto_sent; /* the run loop reports "sent" tx_latency after send() */
        usec_t tx_latency, sent_due;

        Resp resp[MAX_RESP];
        size_t n_resp;
        Msg unexpected[MAX_RESP];
        size_t n_unexpected;

        /* what the callback does besides recording */
        uintptr_t requeue_tag; /* queue a 27 01 from the callback of this tag */
        int requeue_result;
} E;

static char ctx[200];
#define ASSERT(x)                                                        \
        do {                                                             \
                if (!(x))                                                \
                        fail_msg("%s: %s (line %d)", ctx, #x, __LINE__); \
        } while (0)

static void on_response(UdsClient *c, const UdsResponse *r, void *userdata);

static int io_send(void *userdata, const uint8_t *d, size_t n) {
        E.attempts++;
        if (E.busy > 0) {
                E.busy--;
                E.refused_busy++;
                return -EBUSY;
        }
        if (E.in_flight) {
                /* still sending the last one, as ISO-TP would answer */
                E.refused_busy++;
                return -EBUSY;
        }
        if (E.fail) {
                int r = E.fail;
                E.fail = 0;
                return r;
        }
        ASSERT(E.n_tx < MAX_TX);
        ASSERT(n >= 1 && n <= MAX_DATA);
        memcpy(E.tx[E.n_tx].d, d, n);
        E.tx[E.n_tx].n = n;
        E.tx[E.n_tx].t = E.now;
        E.n_tx++;
        E.in_flight = true;
        E.sent_due = E.now + E.tx_latency;

        if (E.sync) {
                E.depth++;
                E.max_depth = MAX(E.max_depth, E.depth);
                /* a bound, so that a client that recurses fails the test instead of the stack */
                if (E.depth <= 4) {
                        E.in_flight = false;
                        uds_client_sent(E.c, 0, E.now);
                }
                E.depth--;
        }
        return 0;
}

static void io_unexpected(void *userdata, const uint8_t *d, size_t n) {
        ASSERT(E.n_unexpected < MAX_RESP);
        memcpy(E.unexpected[E.n_unexpected].d, d, MIN(n, (size_t) MAX_DATA));
        E.unexpected[E.n_unexpected].n = n;
        E.unexpected[E.n_unexpected].t = E.now;
        E.n_unexpected++;
}

static const UdsClientIo io = {
        .send = io_send,
        .unexpected = io_unexpected,
};

static void on_response(UdsClient *c, const UdsResponse *r, void *userdata) {
        Resp *x;

        ASSERT(c == E.c);
        ASSERT(E.n_resp < MAX_RESP);
        x = &E.resp[E.n_resp++];
        *x = (Resp) {
                .error = r->error,
                .sid = r->sid,
                .nrc = r->nrc,
                .suppressed = r->suppressed,
                .has_data = r->data != NULL,
                .n = r->size,
                .pending = r->pending,
                .t = E.now,
                .tag = (uintptr_t) userdata,
        };
        if (r->data) {
                ASSERT(r->size <= MAX_DATA);
                memcpy(x->d, r->data, r->size);
        } else
                ASSERT(r->size == 0);

        if (E.requeue_tag && (uintptr_t) userdata == E.requeue_tag) {
                static const uint8_t req[] = { 0x27, 0x01 };
                E.requeue_tag = 0;
                E.requeue_result = uds_client_request(c, req, sizeof(req), on_response, (void *) 99, E.now);
        }
}

static UdsClientConfig config(void) {
        UdsClientConfig cfg;

        uds_client_config_init(&cfg);
        return cfg;
}

static void client_new(const UdsClientConfig *cfg) {
        assert_int_equal(uds_client_new(cfg, &io, NULL, &E.c), 0);
        assert_non_null(E.c);
}

static void reset(void) {
        E.c = uds_client_free(E.c);
        memset(&E, 0, sizeof(E));
        E.now = T0;
        snprintf(ctx, sizeof(ctx), "uds");
}

static int setup(void **state) {
        UdsClientConfig cfg = config();

        reset();
        client_new(&cfg);
        return 0;
}

static int teardown(void **state) {
        reset();
        return 0;
}

/* The transport reports the message in flight as sent (error 0) or failed. */
static void transport_done(int error) {
        ASSERT(E.in_flight);
        E.in_flight = false;
        uds_client_sent(E.c, error, E.now);
}

/* Runs the fake clock up to `until`, ticking at every deadline on the way. */
static void run_until(usec_t until) {
        for (unsigned guard = 0;; guard++) {
                usec_t d = uds_client_next_deadline(E.c);

                ASSERT(guard < 100000); /* a deadline that never moves on */
                if (E.auto_sent && E.in_flight)
                        d = MIN(d, E.sent_due);
                if (d == USEC_INFINITY || d > until)
                        break;
                if (d > E.now)
                        E.now = d;
                if (E.auto_sent && E.in_flight && E.sent_due <= E.now) {
                        transport_done(0);
                        continue;
                }
                uds_client_tick(E.c, E.now);
        }
        if (until != USEC_INFINITY && until > E.now)
                E.now = until;
}

static void run_for(usec_t delta) {
        run_until(E.now + delta);
}

#define REQUEST(tag, ...)                                                                                \
        ({                                                                                               \
                const uint8_t _d[] = { __VA_ARGS__ };                                                    \
                uds_client_request(E.c, _d, sizeof(_d), on_response, (void *) (uintptr_t) (tag), E.now); \
        })
#define ANSWER(...)                                              \
        do {                                                     \
                const uint8_t _d[] = { __VA_ARGS__ };            \
                uds_client_received(E.c, _d, sizeof(_d), E.now); \
        } while (0)

static void expect_bytes(const uint8_t *got, size_t n_got, const uint8_t *want, size_t n_want) {
        assert_int_equal(n_got, n_want);
        assert_memory_equal(got, want, n_want);
}
#define EXPECT_TX(i, ...)                                           \
        do {                                                        \
                const uint8_t _w[] = { __VA_ARGS__ };               \
                assert_true((size_t) (i) < E.n_tx);                 \
                expect_bytes(E.tx[i].d, E.tx[i].n, _w, sizeof(_w)); \
        } while (0)
#define EXPECT_RESP_DATA(i, ...)                                        \
        do {                                                            \
                const uint8_t _w[] = { __VA_ARGS__ };                   \
                assert_true((size_t) (i) < E.n_resp);                   \
                assert_true(E.resp[i].has_data);                        \
                expect_bytes(E.resp[i].d, E.resp[i].n, _w, sizeof(_w)); \
        } while (0)

static bool is_tester_present(const Msg *m) {
        return m->n == 2 && m->d[0] == 0x3e && m->d[1] == 0x80;
}

static size_t count_tester_present(usec_t from, usec_t to) {
        size_t n = 0;

        for (size_t i = 0; i < E.n_tx; i++)
                if (is_tester_present(&E.tx[i]) && E.tx[i].t >= from && E.tx[i].t <= to)
                        n++;
        return n;
}

/* ---------------------------------------------------------------- answers */

static void test_positive_read_did(void **state) {
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(E.n_tx, 1);
        EXPECT_TX(0, 0x22, 0xf1, 0x90);
        assert_true(E.tx[0].t == T0);
        assert_true(uds_client_busy(E.c));

        E.now += 5 * MS;
        transport_done(0);
        E.now += 15 * MS;
        ANSWER(0x62, 0xf1, 0x90, 'J', 'T', 'H', 'B', 'K', '1', 'G', 'G', '0', 'K', '2', '0', '1', '2', '3', '4',
               '5');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[0].sid, 0x22);
        assert_int_equal(E.resp[0].nrc, 0);
        assert_false(E.resp[0].suppressed);
        assert_int_equal(E.resp[0].pending, 0);
        assert_int_equal(E.resp[0].tag, 1);
        assert_true(E.resp[0].t == T0 + 20 * MS);
        EXPECT_RESP_DATA(0, 0x62, 0xf1, 0x90, 'J', 'T', 'H', 'B', 'K', '1', 'G', 'G', '0', 'K', '2', '0', '1', '2',
                         '3', '4', '5');
        assert_false(uds_client_busy(E.c));
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
        assert_int_equal(E.n_unexpected, 0);

        const UdsClientStats *s = uds_client_stats(E.c);
        assert_int_equal(s->requests, 1);
        assert_int_equal(s->answers, 1);
        assert_int_equal(s->timeouts, 0);
        assert_int_equal(s->unexpected, 0);

        /* the same answer again matches nothing any more */
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.n_unexpected, 1);
        assert_int_equal(s->unexpected, 1);
}

static void test_echo_sub_function(void **state) {
        assert_int_equal(REQUEST(1, 0x27, 0x01), 0);
        transport_done(0);
        /* the seed of the other level, and another service's answer: not ours */
        ANSWER(0x67, 0x03, 0x01, 0x02);
        ANSWER(0x50, 0x01, 0x00, 0x32, 0x01, 0xf4);
        ANSWER(0x67);
        assert_int_equal(E.n_resp, 0);
        assert_int_equal(E.n_unexpected, 3);
        expect_bytes(E.unexpected[0].d, E.unexpected[0].n, (const uint8_t[]) { 0x67, 0x03, 0x01, 0x02 }, 4);
        assert_int_equal(uds_client_stats(E.c)->unexpected, 3);
        ANSWER(0x67, 0x01, 0xde, 0xad, 0xbe, 0xef);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[0].sid, 0x27);
        EXPECT_RESP_DATA(0, 0x67, 0x01, 0xde, 0xad, 0xbe, 0xef);

        /* session control */
        assert_int_equal(REQUEST(2, 0x10, 0x03), 0);
        transport_done(0);
        ANSWER(0x50, 0x01, 0x00, 0x32, 0x01, 0xf4);
        assert_int_equal(E.n_resp, 1);
        ANSWER(0x50, 0x03, 0x00, 0x32, 0x01, 0xf4);
        assert_int_equal(E.n_resp, 2);
        EXPECT_RESP_DATA(1, 0x50, 0x03, 0x00, 0x32, 0x01, 0xf4);

        /* the passcode */
        assert_int_equal(REQUEST(3, 0x27, 0x02, '1', '2', '3', '4', '5', '6'), 0);
        transport_done(0);
        ANSWER(0x67, 0x04);
        assert_int_equal(E.n_resp, 2);
        ANSWER(0x67, 0x02);
        assert_int_equal(E.n_resp, 3);
        EXPECT_RESP_DATA(2, 0x67, 0x02);

        /* tester present asked for an answer */
        assert_int_equal(REQUEST(4, 0x3e, 0x00), 0);
        transport_done(0);
        ANSWER(0x7e, 0x00);
        assert_int_equal(E.n_resp, 4);
        EXPECT_RESP_DATA(3, 0x7e, 0x00);
        assert_int_equal(E.n_unexpected, 5);
}

static void test_echo_did(void **state) {
        assert_int_equal(REQUEST(1, 0x22, 0xa0, 0x01), 0);
        transport_done(0);
        ANSWER(0x62, 0xa0, 0x02, 0x00, 0x00);
        ANSWER(0x62, 0xf1, 0x90, 'J');
        ANSWER(0x62, 0xa0);
        ANSWER(0x62);
        assert_int_equal(E.n_resp, 0);
        assert_int_equal(E.n_unexpected, 4);
        ANSWER(0x62, 0xa0, 0x01, 0x03, 0x02, 0x07);
        assert_int_equal(E.n_resp, 1);
        EXPECT_RESP_DATA(0, 0x62, 0xa0, 0x01, 0x03, 0x02, 0x07);
}

static void test_echo_routine(void **state) {
        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        ANSWER(0x71, 0x01, 0xa1, 0x02);
        ANSWER(0x71, 0x02, 0xa1, 0x01);
        ANSWER(0x71, 0x01, 0xa2, 0x01);
        ANSWER(0x71, 0x01, 0xa1);
        assert_int_equal(E.n_resp, 0);
        assert_int_equal(E.n_unexpected, 4);
        ANSWER(0x71, 0x01, 0xa1, 0x01);
        assert_int_equal(E.n_resp, 1);
        EXPECT_RESP_DATA(0, 0x71, 0x01, 0xa1, 0x01);

        assert_int_equal(REQUEST(2, 0x31, 0x03, 0xa1, 0x01), 0);
        transport_done(0);
        ANSWER(0x71, 0x03, 0xa1, 0x03, 0x01, 0x32, 0x00, 0x78, 0x00);
        ANSWER(0x71, 0x03, 0xa1, 0x01, 0x01, 0x32, 0x00, 0x78, 0x00);
        assert_int_equal(E.n_resp, 2);
        EXPECT_RESP_DATA(1, 0x71, 0x03, 0xa1, 0x01, 0x01, 0x32, 0x00, 0x78, 0x00);
        assert_int_equal(E.n_unexpected, 5);
}

static void test_answer_when_idle_unexpected(void **state) {
        ANSWER(0x7e, 0x00);
        ANSWER(0x7f, 0x3e, 0x12);
        assert_int_equal(E.n_unexpected, 2);
        assert_int_equal(uds_client_stats(E.c)->unexpected, 2);
        assert_int_equal(E.n_resp, 0);
        /* an empty message is no answer at all */
        uds_client_received(E.c, (const uint8_t[]) { 0 }, 0, E.now);
        assert_int_equal(E.n_resp, 0);
}

/* ---------------------------------------------------------------- P2 and P2* */

static void test_p2_timeout(void **state) {
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        /* P2 does not run while the transport still sends (a long ISO-TP message) */
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
        run_until(T0 + 3 * SEC);
        assert_int_equal(E.n_resp, 0);
        transport_done(0);
        assert_true(uds_client_next_deadline(E.c) == T0 + 3 * SEC + P2);
        uds_client_tick(E.c, T0 + 3 * SEC + P2 - 1);
        run_until(T0 + 3 * SEC + P2 - 1);
        assert_int_equal(E.n_resp, 0);
        run_until(T0 + 3 * SEC + P2);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_int_equal(E.resp[0].sid, 0x22);
        assert_int_equal(E.resp[0].nrc, 0);
        assert_false(E.resp[0].suppressed);
        assert_false(E.resp[0].has_data);
        assert_int_equal(E.resp[0].pending, 0);
        assert_true(E.resp[0].t == T0 + 3 * SEC + P2);
        assert_int_equal(uds_client_stats(E.c)->timeouts, 1);
        assert_false(uds_client_busy(E.c));
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);

        /* a late answer belongs to nothing */
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.n_unexpected, 1);
}

static void test_p2_starts_at_sent(void **state) {
        assert_int_equal(REQUEST(1, 0x22, 0xa0, 0x02), 0);
        run_for(149 * MS);
        transport_done(0); /* at T0 + 149 ms */
        run_until(T0 + P2);
        assert_int_equal(E.n_resp, 0);
        run_until(T0 + 149 * MS + P2 - 1);
        assert_int_equal(E.n_resp, 0);
        run_until(T0 + 149 * MS + P2);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);

        /* a custom P2 */
        reset();
        UdsClientConfig cfg = config();
        cfg.p2 = 1000 * MS;
        client_new(&cfg);
        assert_int_equal(REQUEST(1, 0x22, 0xa0, 0x02), 0);
        transport_done(0);
        run_for(999 * MS);
        assert_int_equal(E.n_resp, 0);
        ANSWER(0x62, 0xa0, 0x02, 0x01, 0x32);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
}

static void test_response_pending_run(void **state) {
        const UdsClientStats *s = uds_client_stats(E.c);

        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        run_for(100 * MS);
        for (unsigned i = 0; i < 50; i++) {
                ANSWER(0x7f, 0x31, 0x78);
                assert_int_equal(s->pending, i + 1);
                /* each 0x78 re-arms P2* */
                assert_true(uds_client_next_deadline(E.c) == E.now + P2_STAR);
                run_for(P2_STAR - 1);
                assert_int_equal(E.n_resp, 0);
        }
        /* 50 * 5 s: far beyond any overall limit, yet still waiting */
        assert_true(E.now - T0 > 240 * SEC);
        assert_true(uds_client_busy(E.c));
        ANSWER(0x71, 0x01, 0xa1, 0x01);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[0].nrc, 0);
        assert_int_equal(E.resp[0].pending, 50);
        EXPECT_RESP_DATA(0, 0x71, 0x01, 0xa1, 0x01);
        assert_int_equal(s->timeouts, 0);
        assert_int_equal(s->pending, 50);
        assert_int_equal(E.n_unexpected, 0);
        assert_int_equal(E.n_tx, 1);
}

static void test_response_pending_then_quiet(void **state) {
        usec_t last;

        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        run_for(40 * MS);
        ANSWER(0x7f, 0x31, 0x78);
        last = E.now;
        /* P2 (150 ms) is no longer what counts */
        run_until(T0 + P2 + 1 * SEC);
        assert_int_equal(E.n_resp, 0);
        run_until(last + P2_STAR - 1);
        assert_int_equal(E.n_resp, 0);
        run_until(last + P2_STAR);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_int_equal(E.resp[0].pending, 1);
        assert_true(E.resp[0].t == last + P2_STAR);
        assert_false(E.resp[0].has_data);

        /* three of them, then quiet */
        assert_int_equal(REQUEST(2, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        for (unsigned i = 0; i < 3; i++) {
                ANSWER(0x7f, 0x31, 0x78);
                last = E.now;
                run_for(2 * SEC);
        }
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, -ETIMEDOUT);
        assert_int_equal(E.resp[1].pending, 3);
        assert_true(E.resp[1].t == last + P2_STAR);
        assert_int_equal(uds_client_stats(E.c)->timeouts, 2);
}

static void test_response_pending_custom_p2_star(void **state) {
        UdsClientConfig cfg = config();

        reset();
        cfg.p2_star = 2 * SEC;
        client_new(&cfg);
        assert_int_equal(REQUEST(1, 0x27, 0x01), 0);
        transport_done(0);
        ANSWER(0x7f, 0x27, 0x78);
        assert_true(uds_client_next_deadline(E.c) == E.now + 2 * SEC);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_true(E.resp[0].t == T0 + 2 * SEC);
}

static void test_max_pending(void **state) {
        UdsClientConfig cfg = config();

        reset();
        cfg.max_pending = 3;
        client_new(&cfg);
        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        for (unsigned i = 0; i < 3; i++) {
                ANSWER(0x7f, 0x31, 0x78);
                assert_int_equal(E.n_resp, 0);
                run_for(1 * SEC);
        }
        /* the fourth in a row is one too many */
        ANSWER(0x7f, 0x31, 0x78);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_int_equal(E.resp[0].pending, 4);
        assert_true(E.resp[0].t == T0 + 3 * SEC);
        assert_false(uds_client_busy(E.c));
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);

        /* the count is per request */
        assert_int_equal(REQUEST(2, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        for (unsigned i = 0; i < 3; i++)
                ANSWER(0x7f, 0x31, 0x78);
        ANSWER(0x71, 0x01, 0xa1, 0x01);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, 0);
        assert_int_equal(E.resp[1].pending, 3);
}

/* ---------------------------------------------------------------- negative answers */

static void test_every_nrc(void **state) {
        static const struct {
                uint8_t req[8];
                size_t n;
                uint8_t nrc;
                const char *name;
        } cases[] = {
                { { 0x10, 0x05 }, 2, 0x12, "subFunctionNotSupported" },
                { { 0x22, 0xf1 }, 2, 0x13, "incorrectMessageLengthOrInvalidFormat" },
                { { 0x31, 0x01, 0xa1, 0x01 }, 4, 0x22, "conditionsNotCorrect" },
                { { 0x27, 0x02, '1', '2', '3', '4', '5', '6' }, 8, 0x24, "requestSequenceError" },
                { { 0x22, 0x12, 0x34 }, 3, 0x31, "requestOutOfRange" },
                { { 0x31, 0x01, 0xa1, 0x02, 0x01 }, 5, 0x33, "securityAccessDenied" },
                { { 0x27, 0x02, '0', '0', '0', '0', '0', '0' }, 8, 0x35, "invalidKey" },
                { { 0x27, 0x04, 1, 2, 3, 4, 5, 6 }, 8, 0x36, "exceedNumberOfAttempts" },
                { { 0x27, 0x01 }, 2, 0x37, "requiredTimeDelayNotExpired" },
                { { 0x27, 0x03 }, 2, 0x7e, "subFunctionNotSupportedInActiveSession" },
                { { 0x31, 0x03, 0xa1, 0x01 }, 4, 0x7f, "serviceNotSupportedInActiveSession" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint8_t sid = cases[i].req[0];
                const uint8_t nr[] = { 0x7f, sid, cases[i].nrc };
                char buf[200], hex[16];

                snprintf(ctx, sizeof(ctx), "NRC 0x%02X", cases[i].nrc);
                ASSERT(uds_client_request(E.c, cases[i].req, cases[i].n, on_response, (void *) (uintptr_t) i,
                                          E.now) == 0);
                transport_done(0);
                run_for(30 * MS);
                uds_client_received(E.c, nr, sizeof(nr), E.now);
                ASSERT(E.n_resp == i + 1);
                ASSERT(E.resp[i].error == 0);
                ASSERT(E.resp[i].sid == sid);
                ASSERT(E.resp[i].nrc == cases[i].nrc);
                ASSERT(!E.resp[i].suppressed);
                ASSERT(E.resp[i].has_data);
                ASSERT(E.resp[i].n == 3);
                ASSERT(memcmp(E.resp[i].d, nr, 3) == 0);
                ASSERT(E.resp[i].pending == 0);
                ASSERT(E.resp[i].tag == i);
                ASSERT(!uds_client_busy(E.c));

                ASSERT(streq(uds_nrc_to_string(cases[i].nrc), cases[i].name));
                uds_nrc_describe(sid, cases[i].nrc, buf, sizeof(buf));
                ASSERT(strstr(buf, cases[i].name) != NULL);
                snprintf(hex, sizeof(hex), "0x%02X", cases[i].nrc);
                ASSERT(strstr(buf, hex) != NULL);
                ASSERT(strstr(buf, uds_service_to_string(sid)) != NULL);
        }
        assert_int_equal(E.n_unexpected, 0);
        assert_int_equal(uds_client_stats(E.c)->answers, ELEMENTSOF(cases));
}

static void test_nrc_after_pending(void **state) {
        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        ANSWER(0x7f, 0x31, 0x78);
        run_for(3 * SEC);
        ANSWER(0x7f, 0x31, 0x78);
        run_for(3 * SEC);
        ANSWER(0x7f, 0x31, 0x22);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[0].nrc, 0x22);
        assert_int_equal(E.resp[0].pending, 2);
        EXPECT_RESP_DATA(0, 0x7f, 0x31, 0x22);
}

static void test_nrc_names(void **state) {
        static const struct {
                uint8_t nrc;
                const char *name;
        } names[] = {
                { 0x10, "generalReject" },
                { 0x11, "serviceNotSupported" },
                { 0x12, "subFunctionNotSupported" },
                { 0x13, "incorrectMessageLengthOrInvalidFormat" },
                { 0x21, "busyRepeatRequest" },
                { 0x22, "conditionsNotCorrect" },
                { 0x24, "requestSequenceError" },
                { 0x31, "requestOutOfRange" },
                { 0x33, "securityAccessDenied" },
                { 0x35, "invalidKey" },
                { 0x36, "exceedNumberOfAttempts" },
                { 0x37, "requiredTimeDelayNotExpired" },
                { 0x78, "requestCorrectlyReceivedResponsePending" },
                { 0x7e, "subFunctionNotSupportedInActiveSession" },
                { 0x7f, "serviceNotSupportedInActiveSession" },
                { 0x93, "voltageTooLow" },
                { 0xf0, "vehicleManufacturerSpecific" },
                { 0xf5, "vehicleManufacturerSpecific" },
                { 0xfe, "vehicleManufacturerSpecific" },
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                assert_string_equal(uds_nrc_to_string(names[i].nrc), names[i].name);
        for (unsigned v = 0; v <= 0xff; v++) {
                const char *s = uds_nrc_to_string((uint8_t) v);
                assert_non_null(s);
                assert_true(strlen(s) > 0);
        }
        /* codes without a name are not passed off as manufacturer specific */
        assert_string_not_equal(uds_nrc_to_string(0x00), "vehicleManufacturerSpecific");
        assert_string_not_equal(uds_nrc_to_string(0xff), "vehicleManufacturerSpecific");
        assert_string_not_equal(uds_nrc_to_string(0x23), "conditionsNotCorrect");

        char buf[200];
        uds_nrc_describe(0x27, 0x35, buf, sizeof(buf));
        assert_non_null(strstr(buf, "invalidKey"));
        assert_non_null(strstr(buf, "0x35"));
        /* truncation is safe */
        uds_nrc_describe(0x27, 0x35, buf, 8);
        assert_int_equal(strlen(buf), 7);

        assert_string_equal(uds_service_to_string(0x27), "SecurityAccess");
        assert_string_equal(uds_service_to_string(0x31), "RoutineControl");
        assert_string_equal(uds_service_to_string(0x22), "ReadDataByIdentifier");
        assert_non_null(uds_service_to_string(0x99));

        assert_true(uds_service_has_subfunction(0x10));
        assert_true(uds_service_has_subfunction(0x11));
        assert_true(uds_service_has_subfunction(0x27));
        assert_true(uds_service_has_subfunction(0x31));
        assert_true(uds_service_has_subfunction(0x3e));
        assert_false(uds_service_has_subfunction(0x22));
        assert_false(uds_service_has_subfunction(0x2e));
        assert_false(uds_service_has_subfunction(0x7f));
}

static void test_negative_other_sid_ignored(void **state) {
        assert_int_equal(REQUEST(1, 0x22, 0xa0, 0x04), 0);
        transport_done(0);
        ANSWER(0x7f, 0x31, 0x22);
        ANSWER(0x7f, 0x27, 0x35);
        ANSWER(0x7f, 0x3e, 0x78); /* a responsePending for another service re-arms nothing */
        ANSWER(0x7f, 0x22);       /* too short to be a negative answer */
        assert_int_equal(E.n_resp, 0);
        assert_int_equal(E.n_unexpected, 4);
        assert_int_equal(uds_client_stats(E.c)->pending, 0);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_true(E.resp[0].t == T0 + P2);

        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x04), 0);
        transport_done(0);
        ANSWER(0x7f, 0x31, 0x22);
        ANSWER(0x7f, 0x22, 0x31);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].nrc, 0x31);
}

/* ---------------------------------------------------------------- suppressed answers */

static void test_suppress_positive_response(void **state) {
        /* 3E 80 asked by the user: no answer is due, it completes when P2 is over */
        assert_int_equal(REQUEST(1, 0x3e, 0x80), 0);
        EXPECT_TX(0, 0x3e, 0x80);
        E.now += 2 * MS;
        transport_done(0);
        run_until(T0 + 2 * MS + P2 - 1);
        assert_int_equal(E.n_resp, 0);
        assert_true(uds_client_busy(E.c));
        run_until(T0 + 2 * MS + P2);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_true(E.resp[0].suppressed);
        assert_int_equal(E.resp[0].nrc, 0);
        assert_false(E.resp[0].has_data);
        assert_int_equal(E.resp[0].sid, 0x3e);
        assert_int_equal(uds_client_stats(E.c)->timeouts, 0);

        /* 10 83 */
        assert_int_equal(REQUEST(2, 0x10, 0x83), 0);
        transport_done(0);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, 0);
        assert_true(E.resp[1].suppressed);
        assert_int_equal(E.resp[1].sid, 0x10);

        /* 31 81: routine control has a sub-function too */
        assert_int_equal(REQUEST(3, 0x31, 0x81, 0xa1, 0x01), 0);
        transport_done(0);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 3);
        assert_true(E.resp[2].suppressed);
        assert_int_equal(E.resp[2].error, 0);
}

static void test_suppress_with_nrc(void **state) {
        /* negative answers are not suppressed */
        assert_int_equal(REQUEST(1, 0x10, 0x83), 0);
        transport_done(0);
        run_for(20 * MS);
        ANSWER(0x7f, 0x10, 0x22);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[0].nrc, 0x22);
        assert_false(E.resp[0].suppressed);
        EXPECT_RESP_DATA(0, 0x7f, 0x10, 0x22);
        assert_true(E.resp[0].t == T0 + 20 * MS);

        /* after a responsePending a final answer is due: silence is a timeout */
        assert_int_equal(REQUEST(2, 0x10, 0x83), 0);
        transport_done(0);
        ANSWER(0x7f, 0x10, 0x78);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, -ETIMEDOUT);
        assert_false(E.resp[1].suppressed);
        assert_int_equal(E.resp[1].pending, 1);

        /* a positive answer that comes anyway is delivered */
        assert_int_equal(REQUEST(3, 0x10, 0x83), 0);
        transport_done(0);
        ANSWER(0x50, 0x03, 0x00, 0x32, 0x01, 0xf4);
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(E.resp[2].error, 0);
        assert_false(E.resp[2].suppressed);
        EXPECT_RESP_DATA(2, 0x50, 0x03, 0x00, 0x32, 0x01, 0xf4);
}

static void test_no_suppress_without_sub_function(void **state) {
        /* 22 F1 90: 0xF1 has bit 7 set, but ReadDataByIdentifier has no sub-function */
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        transport_done(0);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_false(E.resp[0].suppressed);

        /* a one-byte request has no sub-function either */
        assert_int_equal(REQUEST(2, 0x3e), 0);
        transport_done(0);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, -ETIMEDOUT);
}

/* ---------------------------------------------------------------- tester present */

static void test_tester_present_interval(void **state) {
        E.auto_sent = true;
        E.tx_latency = 1 * MS;
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        assert_int_equal(E.n_tx, 1);
        EXPECT_TX(0, 0x3e, 0x80);
        assert_true(E.tx[0].t == T0);
        run_until(T0 + 20 * SEC);
        assert_int_equal(E.n_tx, 11);
        for (size_t i = 0; i < E.n_tx; i++) {
                EXPECT_TX(i, 0x3e, 0x80);
                assert_true(E.tx[i].t == T0 + i * 2 * SEC);
        }
        assert_int_equal(uds_client_stats(E.c)->tester_present, 11);
        assert_int_equal(E.n_resp, 0);
        /* tester present is not a request: nothing is busy */
        assert_false(uds_client_busy(E.c));

        /* stopped */
        uds_client_set_tester_present(E.c, 0, E.now);
        run_until(T0 + 60 * SEC);
        assert_int_equal(E.n_tx, 11);
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
}

static void test_tester_present_from_config(void **state) {
        UdsClientConfig cfg = config();

        reset();
        cfg.tester_present = 2 * SEC;
        client_new(&cfg);
        E.auto_sent = true;
        assert_true(uds_client_next_deadline(E.c) <= T0);
        run_until(T0 + 10 * SEC);
        assert_int_equal(count_tester_present(T0, T0 + 10 * SEC), 6);
        assert_true(E.tx[0].t == T0);
        assert_true(E.tx[5].t == T0 + 10 * SEC);
}

static void test_tester_present_during_pending(void **state) {
        E.auto_sent = true;
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        run_until(T0);
        /* tester present first (it was in flight), then the request */
        assert_int_equal(E.n_tx, 2);
        EXPECT_TX(0, 0x3e, 0x80);
        EXPECT_TX(1, 0x31, 0x01, 0xa1, 0x01);

        /* the reset routine answers 0x78 within P2, then every 4 s */
        for (unsigned k = 0; k < 5; k++) {
                run_until(T0 + 40 * MS + k * 4 * SEC);
                ASSERT(E.n_resp == 0);
                ANSWER(0x7f, 0x31, 0x78);
        }
        run_until(T0 + 20 * SEC);
        assert_int_equal(E.n_resp, 0);
        /* tester present went on all along: at 0, 2, 4 .. 20 s */
        assert_int_equal(count_tester_present(T0, T0 + 20 * SEC), 11);
        {
                usec_t prev = 0;
                size_t n = 0;
                for (size_t i = 0; i < E.n_tx; i++) {
                        if (!is_tester_present(&E.tx[i]))
                                continue;
                        if (n > 0)
                                assert_true(E.tx[i].t - prev == 2 * SEC);
                        prev = E.tx[i].t;
                        n++;
                }
        }
        run_until(T0 + 20500 * MS);
        assert_int_equal(E.n_resp, 0);
        ANSWER(0x71, 0x01, 0xa1, 0x01);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[0].pending, 5);
        /* the request went out once */
        size_t n_req = 0;
        for (size_t i = 0; i < E.n_tx; i++)
                if (E.tx[i].d[0] == 0x31)
                        n_req++;
        assert_int_equal(n_req, 1);
        assert_int_equal(uds_client_stats(E.c)->timeouts, 0);
}

static void test_tester_present_waits_for_transport(void **state) {
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        assert_int_equal(E.n_tx, 1);
        transport_done(0);

        /* a request whose transmission takes long */
        run_until(T0 + 1 * SEC);
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(E.n_tx, 2);
        unsigned attempts = E.attempts;
        run_until(T0 + 3500 * MS);
        /* tester present is due since 3 s (a period after the request) but the transport is
         * busy: not even offered */
        assert_int_equal(E.attempts, attempts);
        assert_int_equal(E.n_tx, 2);
        transport_done(0);
        assert_int_equal(E.n_tx, 3);
        EXPECT_TX(2, 0x3e, 0x80);
        assert_true(E.tx[2].t == T0 + 3500 * MS);
        transport_done(0);
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
}

/* A request restarts the ECU's S3 as tester present does: the keep-alive is due a period
 * after the last request, so a request made every period is the only one on the bus. */
static void test_tester_present_after_requests(void **state) {
        E.auto_sent = true;
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        assert_int_equal(count_tester_present(T0, T0), 1);
        for (unsigned k = 1; k <= 5; k++) {
                run_until(T0 + k * 1900 * MS);
                assert_int_equal(REQUEST(1, 0x3e, 0x00), 0);
                run_for(5 * MS);
                ANSWER(0x7e, 0x00);
        }
        assert_int_equal(E.n_resp, 5);
        run_until(T0 + 5 * 1900 * MS + 1999 * MS);
        assert_int_equal(count_tester_present(T0, E.now), 1);
        /* then, with no request, tester present a period after the last one, and on */
        run_until(T0 + 5 * 1900 * MS + 2 * SEC);
        assert_int_equal(count_tester_present(T0, E.now), 2);
        assert_true(E.tx[E.n_tx - 1].t == T0 + 5 * 1900 * MS + 2 * SEC);
}

/* Tester present on a fixed grid: one sent late (the transport busy) does not push the
 * later ones back, and the slots missed while late are not sent in a burst. */
static void test_tester_present_grid(void **state) {
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        transport_done(0); /* at 0 */
        run_until(T0 + 2 * SEC);
        assert_int_equal(count_tester_present(T0, E.now), 2);
        /* its transmission takes 300 ms: the one at 4 s goes on time all the same */
        run_until(T0 + 2300 * MS);
        transport_done(0);
        run_until(T0 + 4 * SEC);
        assert_int_equal(count_tester_present(T0, E.now), 3);
        assert_true(E.tx[E.n_tx - 1].t == T0 + 4 * SEC);
        /* held up for 5 s: one goes at once, then the grid (10 s, 12 s), not three at once */
        run_until(T0 + 9 * SEC);
        transport_done(0);
        assert_int_equal(count_tester_present(T0, E.now), 4);
        transport_done(0);
        assert_int_equal(count_tester_present(T0, E.now), 4);
        E.auto_sent = true;
        run_until(T0 + 12 * SEC);
        assert_int_equal(count_tester_present(T0, E.now), 6);
        assert_true(E.tx[E.n_tx - 2].t == T0 + 10 * SEC);
        assert_true(E.tx[E.n_tx - 1].t == T0 + 12 * SEC);
}

static void test_tester_present_busy_retry(void **state) {
        usec_t d;

        /* the transport answers -EBUSY (sending for someone else): the client retries later,
         * without spinning on a deadline that is already past */
        E.busy = 2;
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        assert_int_equal(E.n_tx, 0);
        assert_int_equal(E.attempts, 1);
        d = uds_client_next_deadline(E.c);
        assert_true(d > E.now);
        assert_true(d <= E.now + 100 * MS);
        run_until(T0 + 500 * MS);
        assert_int_equal(E.attempts, 3);
        assert_int_equal(E.n_tx, 1);
        EXPECT_TX(0, 0x3e, 0x80);
        assert_true(E.tx[0].t > T0);
        assert_true(E.tx[0].t <= T0 + 100 * MS);
        transport_done(0);
}

static void test_request_busy_retry(void **state) {
        E.busy = 2;
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(E.n_tx, 0);
        assert_true(uds_client_busy(E.c));
        assert_true(uds_client_next_deadline(E.c) > E.now);
        run_until(T0 + 100 * MS);
        assert_int_equal(E.attempts, 3);
        assert_int_equal(E.n_tx, 1);
        EXPECT_TX(0, 0x22, 0xf1, 0x90);
        usec_t t_tx = E.tx[0].t;
        assert_true(t_tx > T0);
        /* P2 from when it was sent */
        transport_done(0);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ETIMEDOUT);
        assert_true(E.resp[0].t == T0 + 100 * MS + P2);
        assert_int_equal(uds_client_stats(E.c)->requests, 1);
}

/* ---------------------------------------------------------------- queue */

static void test_queue_in_order(void **state) {
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x01), 0);
        assert_int_equal(REQUEST(3, 0x31, 0x03, 0xa1, 0x01), 0);
        /* one on the wire at a time */
        assert_int_equal(E.n_tx, 1);
        transport_done(0);
        run_for(50 * MS);
        assert_int_equal(E.n_tx, 1);
        /* an answer for the second is not taken for the first */
        ANSWER(0x62, 0xa0, 0x01, 0x03, 0x02, 0x07);
        assert_int_equal(E.n_resp, 0);
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.n_tx, 2);
        EXPECT_TX(1, 0x22, 0xa0, 0x01);
        assert_true(E.tx[1].t == E.now);
        transport_done(0);
        ANSWER(0x62, 0xa0, 0x01, 0x03, 0x02, 0x07);
        assert_int_equal(E.n_tx, 3);
        EXPECT_TX(2, 0x31, 0x03, 0xa1, 0x01);
        transport_done(0);
        run_until(USEC_INFINITY); /* the third times out */
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(E.resp[0].tag, 1);
        assert_int_equal(E.resp[1].tag, 2);
        assert_int_equal(E.resp[2].tag, 3);
        assert_int_equal(E.resp[0].error, 0);
        assert_int_equal(E.resp[1].error, 0);
        assert_int_equal(E.resp[2].error, -ETIMEDOUT);
        EXPECT_RESP_DATA(1, 0x62, 0xa0, 0x01, 0x03, 0x02, 0x07);
        assert_false(uds_client_busy(E.c));
}

static void test_queue_limits(void **state) {
        static uint8_t big[UDS_MAX_MESSAGE + 1];
        UdsClientConfig cfg = config();

        reset();
        cfg.max_queue = 2;
        client_new(&cfg);
        assert_int_equal(REQUEST(1, 0x22, 0xa0, 0x01), 0); /* on the wire */
        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x02), 0);
        assert_int_equal(REQUEST(3, 0x22, 0xa0, 0x03), 0);
        assert_int_equal(REQUEST(4, 0x22, 0xa0, 0x04), -ENOBUFS);
        assert_int_equal(E.n_tx, 1);
        transport_done(0);
        ANSWER(0x62, 0xa0, 0x01, 0x00);
        /* room again */
        assert_int_equal(REQUEST(4, 0x22, 0xa0, 0x04), 0);
        assert_int_equal(REQUEST(5, 0x22, 0xa0, 0x10), -ENOBUFS);
        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        assert_int_equal(E.n_resp, 4);
        assert_int_equal(E.resp[3].tag, 4);

        /* sizes */
        memset(big, 0x22, sizeof(big));
        assert_int_equal(uds_client_request(E.c, big, 0, on_response, NULL, E.now), -EINVAL);
        assert_int_equal(uds_client_request(E.c, big, UDS_MAX_MESSAGE + 1, on_response, NULL, E.now), -EINVAL);

        /* an answer's id is no request: 0x3F would expect 0x7F, the negative answer */
        for (unsigned sid = 0; sid < 256; sid++) {
                uint8_t req[2] = { (uint8_t) sid, 0x01 };
                bool answer_id = (sid >= 0x3f && sid < 0x80) || sid >= 0xc0;
                int r = uds_client_request(E.c, req, sizeof(req), NULL, NULL, E.now);
                assert_int_equal(r == -EINVAL, answer_id);
                if (r == 0)
                        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        }
        assert_int_equal(E.n_resp, 4);
        E.in_flight = false;
        E.n_tx = 0;
        /* the fake transport records only the first MAX_DATA bytes: refuse, just count */
        E.fail = -EMSGSIZE;
        assert_int_equal(uds_client_request(E.c, big, UDS_MAX_MESSAGE, on_response, (void *) 7, E.now), 0);
        assert_int_equal(E.n_resp, 5);
        assert_int_equal(E.resp[4].error, -EMSGSIZE);
}

static void test_request_from_callback(void **state) {
        E.requeue_tag = 1;
        assert_int_equal(REQUEST(1, 0x10, 0x03), 0);
        transport_done(0);
        ANSWER(0x50, 0x03, 0x00, 0x32, 0x01, 0xf4);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.requeue_result, 0);
        /* queued from inside the callback, and on the wire at once */
        assert_int_equal(E.n_tx, 2);
        EXPECT_TX(1, 0x27, 0x01);
        assert_true(uds_client_busy(E.c));
        transport_done(0);
        ANSWER(0x67, 0x01, 0x11, 0x22);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].tag, 99);
        assert_int_equal(E.resp[1].error, 0);
        EXPECT_RESP_DATA(1, 0x67, 0x01, 0x11, 0x22);

        /* from the callback of a timeout, with another request already queued behind */
        E.requeue_tag = 3;
        assert_int_equal(REQUEST(3, 0x22, 0xa0, 0x02), 0);
        assert_int_equal(REQUEST(4, 0x22, 0xa0, 0x03), 0);
        transport_done(0);
        run_for(P2);
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(E.resp[2].error, -ETIMEDOUT);
        /* the one queued first goes first */
        EXPECT_TX(E.n_tx - 1, 0x22, 0xa0, 0x03);
        transport_done(0);
        ANSWER(0x62, 0xa0, 0x03, 0x00);
        EXPECT_TX(E.n_tx - 1, 0x27, 0x01);
        transport_done(0);
        ANSWER(0x67, 0x01, 0x33);
        assert_int_equal(E.n_resp, 5);
        assert_int_equal(E.resp[3].tag, 4);
        assert_int_equal(E.resp[4].tag, 99);
}

static void test_cancel_all(void **state) {
        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x02), 0);
        assert_int_equal(REQUEST(3, 0x22, 0xa0, 0x04), 0);
        transport_done(0);
        ANSWER(0x7f, 0x31, 0x78);
        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        assert_int_equal(E.n_resp, 3);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(E.resp[i].error, -ECANCELED);
                assert_int_equal(E.resp[i].tag, i + 1);
                assert_false(E.resp[i].has_data);
                assert_false(E.resp[i].suppressed);
        }
        assert_int_equal(E.resp[0].sid, 0x31);
        assert_int_equal(E.resp[1].sid, 0x22);
        assert_false(uds_client_busy(E.c));
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
        assert_int_equal(E.n_tx, 1);
        /* the answer, late */
        ANSWER(0x71, 0x01, 0xa1, 0x01);
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(E.n_unexpected, 1);
        run_for(10 * SEC);
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(uds_client_stats(E.c)->timeouts, 0);

        /* nothing to cancel */
        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        assert_int_equal(E.n_resp, 3);
}

static void test_cancel_while_in_transport(void **state) {
        assert_int_equal(REQUEST(1, 0x27, 0x01), 0);
        assert_true(E.in_flight);
        uds_client_cancel_all(E.c, -ESHUTDOWN, E.now);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ESHUTDOWN);
        /* the transport finishes the message later: that report is no request's any more */
        run_for(10 * MS);
        transport_done(0);
        run_for(10 * SEC);
        assert_int_equal(E.n_resp, 1);
        /* and the client works on */
        assert_int_equal(REQUEST(2, 0x27, 0x01), 0);
        run_until(E.now + 10 * MS);
        assert_int_equal(E.n_tx, 2);
        transport_done(0);
        ANSWER(0x67, 0x01, 0x44);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, 0);
        assert_int_equal(E.resp[1].tag, 2);
}

static void test_cancel_then_request_while_transport_busy(void **state) {
        /* cancelled while the transport still sends it; a new request at once: the
         * transport refuses it (-EBUSY) until it has finished the old one */
        assert_int_equal(REQUEST(1, 0x31, 0x01, 0xa1, 0x01), 0);
        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x02), 0);
        assert_int_equal(E.n_tx, 1);
        assert_int_equal(E.refused_busy, 1);
        run_for(5 * MS);
        assert_int_equal(E.n_tx, 1);
        assert_true(E.refused_busy > 1);
        transport_done(0); /* the old one is out */
        run_for(1 * MS);
        assert_int_equal(E.n_tx, 2);
        EXPECT_TX(1, 0x22, 0xa0, 0x02);
        transport_done(0);
        assert_true(uds_client_next_deadline(E.c) == E.now + P2);
        ANSWER(0x62, 0xa0, 0x02, 0x00, 0x00);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[0].error, -ECANCELED);
        assert_int_equal(E.resp[1].error, 0);
        assert_int_equal(E.resp[1].tag, 2);
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
}

static void test_cancel_queues_from_callback(void **state) {
        E.requeue_tag = 1;
        assert_int_equal(REQUEST(1, 0x22, 0xa0, 0x01), 0);
        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x02), 0);
        transport_done(0);
        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        /* both cancelled; the request queued from the first callback lives on */
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[0].tag, 1);
        assert_int_equal(E.resp[1].tag, 2);
        assert_int_equal(E.resp[1].error, -ECANCELED);
        assert_int_equal(E.requeue_result, 0);
        assert_true(uds_client_busy(E.c));
        EXPECT_TX(E.n_tx - 1, 0x27, 0x01);
        transport_done(0);
        ANSWER(0x67, 0x01, 0x55);
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(E.resp[2].tag, 99);
        assert_int_equal(E.resp[2].error, 0);
}

static void test_cancel_during_busy_retry(void **state) {
        /* the transport refuses the request (busy) and the caller gives up on it: nothing
         * is left to do, so no deadline may stay behind (it would spin the event loop) */
        E.busy = 1000;
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(E.n_tx, 0);
        uds_client_cancel_all(E.c, -ECANCELED, E.now);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -ECANCELED);
        assert_false(uds_client_busy(E.c));
        uds_client_tick(E.c, E.now + 1 * MS);
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
}

static void test_stop_tester_present_during_busy_retry(void **state) {
        E.busy = 1000;
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        assert_int_equal(E.n_tx, 0);
        uds_client_set_tester_present(E.c, 0, E.now);
        uds_client_tick(E.c, E.now + 1 * MS);
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
}

/* ---------------------------------------------------------------- transport failures */

static void test_transport_send_failure(void **state) {
        /* send() fails at once */
        E.fail = -EIO;
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -EIO);
        assert_false(E.resp[0].has_data);
        assert_false(uds_client_busy(E.c));
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);

        /* the transport reports a failure later (e.g. no flow control: N_Bs) */
        assert_int_equal(REQUEST(2, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(REQUEST(3, 0x22, 0xa0, 0x01), 0);
        run_for(1 * SEC);
        transport_done(-ECOMM);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, -ECOMM);
        assert_int_equal(E.resp[1].tag, 2);
        /* the next one goes out */
        EXPECT_TX(E.n_tx - 1, 0x22, 0xa0, 0x01);
        transport_done(0);
        ANSWER(0x62, 0xa0, 0x01, 0x00);
        assert_int_equal(E.n_resp, 3);
        assert_int_equal(E.resp[2].error, 0);

        /* a failure of a queued request's send does not stop the queue */
        assert_int_equal(REQUEST(4, 0x22, 0xa0, 0x01), 0);
        assert_int_equal(REQUEST(5, 0x22, 0xa0, 0x02), 0);
        E.fail = -ENETDOWN;
        transport_done(0);
        ANSWER(0x62, 0xa0, 0x01, 0x00);
        assert_int_equal(E.n_resp, 5);
        assert_int_equal(E.resp[4].error, -ENETDOWN);
        assert_int_equal(E.resp[4].tag, 5);
        assert_false(uds_client_busy(E.c));
}

static void test_receive_failed(void **state) {
        /* nothing waits: nothing to fail */
        uds_client_receive_failed(E.c, -EILSEQ, E.now);
        assert_int_equal(E.n_resp, 0);

        assert_int_equal(REQUEST(1, 0x27, 0x01), 0);
        transport_done(0);
        run_for(20 * MS);
        uds_client_receive_failed(E.c, -EILSEQ, E.now);
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, -EILSEQ);
        assert_true(E.resp[0].t == T0 + 20 * MS);
        assert_false(uds_client_busy(E.c));

        /* also in a run of responsePending */
        assert_int_equal(REQUEST(2, 0x31, 0x01, 0xa1, 0x01), 0);
        transport_done(0);
        ANSWER(0x7f, 0x31, 0x78);
        run_for(1 * SEC);
        uds_client_receive_failed(E.c, -ETIMEDOUT, E.now);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, -ETIMEDOUT);
        assert_int_equal(E.resp[1].pending, 1);
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
}

static void test_answer_before_sent_report(void **state) {
        /* the transport may hand up the answer before it reports the request sent */
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
        transport_done(0);
        run_for(10 * SEC);
        assert_int_equal(E.n_resp, 1);
        assert_true(uds_client_next_deadline(E.c) == USEC_INFINITY);
}

/* ---------------------------------------------------------------- synchronous transport */

static void test_sync_transport(void **state) {
        E.sync = true;
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(REQUEST(2, 0x22, 0xa0, 0x01), 0);
        assert_int_equal(E.n_tx, 1);
        assert_false(E.in_flight);
        /* reported sent from inside send(): P2 runs */
        assert_true(uds_client_next_deadline(E.c) == T0 + P2);
        run_for(10 * MS);
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.n_tx, 2);
        EXPECT_TX(1, 0x22, 0xa0, 0x01);
        assert_true(uds_client_next_deadline(E.c) == T0 + 10 * MS + P2);
        run_until(USEC_INFINITY);
        assert_int_equal(E.n_resp, 2);
        assert_int_equal(E.resp[1].error, -ETIMEDOUT);
        assert_true(E.resp[1].t == T0 + 10 * MS + P2);
        assert_int_equal(E.max_depth, 1);
        assert_false(uds_client_busy(E.c));
}

static void test_sync_transport_tester_present(void **state) {
        E.sync = true;
        uds_client_set_tester_present(E.c, 2 * SEC, E.now);
        /* one tester present, not one per nested "sent" report */
        assert_int_equal(E.n_tx, 1);
        assert_int_equal(E.max_depth, 1);
        EXPECT_TX(0, 0x3e, 0x80);
        run_until(T0 + 10 * SEC);
        assert_int_equal(E.n_tx, 6);
        for (size_t i = 0; i < E.n_tx; i++)
                assert_true(E.tx[i].t == T0 + i * 2 * SEC);

        /* with a request */
        assert_int_equal(REQUEST(1, 0x22, 0xf1, 0x90), 0);
        assert_int_equal(E.n_tx, 7);
        ANSWER(0x62, 0xf1, 0x90, 'J');
        assert_int_equal(E.n_resp, 1);
        assert_int_equal(E.resp[0].error, 0);
}

/* ---------------------------------------------------------------- construction */

static void test_config_and_new(void **state) {
        UdsClientConfig cfg = config(), bad;
        UdsClientIo noio = { 0 };
        UdsClient *c = NULL;

        assert_true(cfg.p2 == 150 * MS);
        assert_true(cfg.p2_star == 5000 * MS);
        assert_int_equal(cfg.max_pending, 1000);
        assert_int_equal(cfg.max_queue, 16);
        assert_true(cfg.tester_present == 0);

        assert_int_equal(uds_client_new(&cfg, &noio, NULL, &c), -EINVAL);
        bad = cfg;
        bad.p2 = 0;
        assert_int_equal(uds_client_new(&bad, &io, NULL, &c), -EINVAL);
        bad = cfg;
        bad.p2_star = 0;
        assert_int_equal(uds_client_new(&bad, &io, NULL, &c), -EINVAL);
        bad = cfg;
        bad.max_queue = 0;
        assert_int_equal(uds_client_new(&bad, &io, NULL, &c), -EINVAL);
        assert_null(c);
        assert_null(uds_client_free(NULL));

        /* the default queue holds 16 behind the active one */
        for (unsigned i = 0; i < 17; i++)
                assert_int_equal(REQUEST(i, 0x22, 0xa0, 0x01), 0);
        assert_int_equal(REQUEST(17, 0x22, 0xa0, 0x01), -ENOBUFS);
        /* freeing with requests queued and active releases them without callbacks */
        E.c = uds_client_free(E.c);
        assert_int_equal(E.n_resp, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_positive_read_did),
                T(test_echo_sub_function),
                T(test_echo_did),
                T(test_echo_routine),
                T(test_answer_when_idle_unexpected),
                T(test_p2_timeout),
                T(test_p2_starts_at_sent),
                T(test_response_pending_run),
                T(test_response_pending_then_quiet),
                T(test_response_pending_custom_p2_star),
                T(test_max_pending),
                T(test_every_nrc),
                T(test_nrc_after_pending),
                T(test_nrc_names),
                T(test_negative_other_sid_ignored),
                T(test_suppress_positive_response),
                T(test_suppress_with_nrc),
                T(test_no_suppress_without_sub_function),
                T(test_tester_present_interval),
                T(test_tester_present_from_config),
                T(test_tester_present_during_pending),
                T(test_tester_present_waits_for_transport),
                T(test_tester_present_after_requests),
                T(test_tester_present_grid),
                T(test_tester_present_busy_retry),
                T(test_request_busy_retry),
                T(test_queue_in_order),
                T(test_queue_limits),
                T(test_request_from_callback),
                T(test_cancel_all),
                T(test_cancel_while_in_transport),
                T(test_cancel_then_request_while_transport_busy),
                T(test_cancel_queues_from_callback),
                T(test_cancel_during_busy_retry),
                T(test_stop_tester_present_during_busy_retry),
                T(test_transport_send_failure),
                T(test_receive_failed),
                T(test_answer_before_sent_report),
                T(test_sync_transport),
                T(test_sync_transport_tester_present),
                T(test_config_and_new),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
