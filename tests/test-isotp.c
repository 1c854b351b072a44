/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ISO 15765-2 engine tests on a fake clock.
 *
 * Every frame an engine emits goes to a log with the fake time it left at. In the
 * scripted tests the test plays the peer by feeding frames with isotp_handle_frame();
 * in the loop-back tests two engines are wired back to back through the log (a frame
 * from one is delivered to the other at the same fake time), and the clock jumps from
 * one isotp_next_deadline() to the next, calling isotp_tick() there. Expected frames
 * are built by an independent segmenter in this file, never by the engine.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <cmocka.h>

#include "isotp.h"

#define TESTER_ID 0x750
#define ECU_ID 0x758
#define ADDR 0x57
#define PAD 0x55
#define MS USEC_PER_MSEC
/* The fake clock starts here: far from 0, which a real monotonic clock never shows. */
#define T0 (1000 * USEC_PER_SEC)

#define MAX_FRAMES 8192
#define MAX_MSGS 8
#define MAX_RESULTS 32

typedef struct Frame {
        struct can_frame f;
        usec_t t;
        unsigned from;
} Frame;

typedef struct Peer {
        unsigned idx;
        IsoTp *tp;

        unsigned n_msgs;
        size_t msg_size[MAX_MSGS];
        usec_t msg_t[MAX_MSGS];
        uint8_t msg[MAX_MSGS][ISOTP_MAX_MESSAGE];

        unsigned n_sent;
        IsoTpResult sent[MAX_RESULTS];
        usec_t sent_t[MAX_RESULTS];

        unsigned n_rxfail;
        IsoTpResult rxfail[MAX_RESULTS];
        usec_t rxfail_t[MAX_RESULTS];

        /* send_frame() behaviour */
        unsigned busy;    /* answer -EAGAIN this many more times */
        bool always_busy; /* answer -EAGAIN forever */
        int fail;         /* answer this error when non-zero */
        unsigned attempts;
        usec_t attempt_t[64];

        /* send_frames() behaviour and record */
        unsigned batch_limit; /* take at most this many frames per call; 0: all */
        unsigned n_batches;   /* calls of send_frames() */
        unsigned batch[700];  /* frames offered in each call */
} Peer;

static struct {
        usec_t now;
        Frame log[MAX_FRAMES];
        size_t n_log, n_delivered;
        Peer peer[2];
        bool loopback;
        bool batched;   /* peers get a send_frames() callback */
        char order[64]; /* callbacks in the order they ran: S sent, R received, F failed */
        size_t n_order;
} B;

static char ctx[200];
#define ASSERT(x)                                                        \
        do {                                                             \
                if (!(x))                                                \
                        fail_msg("%s: %s (line %d)", ctx, #x, __LINE__); \
        } while (0)

static void order_add(char c) {
        if (B.n_order < sizeof(B.order) - 1)
                B.order[B.n_order++] = c;
}

static int cb_send_frame(void *userdata, const struct can_frame *f) {
        Peer *p = userdata;

        if (p->attempts < ELEMENTSOF(p->attempt_t))
                p->attempt_t[p->attempts] = B.now;
        p->attempts++;
        if (p->fail)
                return p->fail;
        if (p->always_busy)
                return -EAGAIN;
        if (p->busy > 0) {
                p->busy--;
                return -EAGAIN;
        }
        ASSERT(B.n_log < MAX_FRAMES);
        ASSERT(f->len <= CAN_MAX_DLEN);
        B.log[B.n_log++] = (Frame) { .f = *f, .t = B.now, .from = p->idx };
        return 0;
}

/* As a link with sendmmsg(): the frames go out in order until the bus is busy or the
 * limit is reached. */
static int cb_send_frames(void *userdata, const struct can_frame *frames, size_t n) {
        Peer *p = userdata;
        size_t take = p->batch_limit > 0 ? MIN(n, (size_t) p->batch_limit) : n;

        ASSERT(n >= 2 && n <= ISOTP_TX_BATCH);
        if (p->n_batches < ELEMENTSOF(p->batch))
                p->batch[p->n_batches] = n;
        p->n_batches++;
        for (size_t i = 0; i < take; i++) {
                int r = cb_send_frame(p, &frames[i]);
                if (r < 0)
                        return i > 0 ? (int) i : r;
        }
        return (int) take;
}

static void cb_received(void *userdata, const uint8_t *data, size_t size) {
        Peer *p = userdata;

        ASSERT(p->n_msgs < MAX_MSGS);
        ASSERT(size >= 1 && size <= ISOTP_MAX_MESSAGE);
        memcpy(p->msg[p->n_msgs], data, size);
        p->msg_size[p->n_msgs] = size;
        p->msg_t[p->n_msgs] = B.now;
        p->n_msgs++;
        order_add('R');
}

static void cb_sent(void *userdata, IsoTpResult result) {
        Peer *p = userdata;

        ASSERT(p->n_sent < MAX_RESULTS);
        p->sent[p->n_sent] = result;
        p->sent_t[p->n_sent] = B.now;
        p->n_sent++;
        order_add('S');
}

static void cb_receive_failed(void *userdata, IsoTpResult result) {
        Peer *p = userdata;

        ASSERT(p->n_rxfail < MAX_RESULTS);
        ASSERT(result != ISOTP_N_OK);
        p->rxfail[p->n_rxfail] = result;
        p->rxfail_t[p->n_rxfail] = B.now;
        p->n_rxfail++;
        order_add('F');
}

static const IsoTpCallbacks callbacks = {
        .send_frame = cb_send_frame,
        .received = cb_received,
        .sent = cb_sent,
        .receive_failed = cb_receive_failed,
};

static const IsoTpCallbacks batch_callbacks = {
        .send_frame = cb_send_frame,
        .send_frames = cb_send_frames,
        .received = cb_received,
        .sent = cb_sent,
        .receive_failed = cb_receive_failed,
};

static void reset(void) {
        for (unsigned i = 0; i < ELEMENTSOF(B.peer); i++)
                B.peer[i].tp = isotp_free(B.peer[i].tp);
        memset(&B, 0, sizeof(B));
        B.now = T0;
        snprintf(ctx, sizeof(ctx), "scripted");
}

static int setup(void **state) {
        reset();
        return 0;
}

static int teardown(void **state) {
        reset();
        return 0;
}

/* The reference protocol's link: tester 0x750 -> ECU 0x758, sub-address 0x57 both ways,
 * padding 0x55. */
static IsoTpConfig config(bool tester, bool extended, bool padding) {
        IsoTpConfig c;

        isotp_config_init(&c);
        c.tx_id = tester ? TESTER_ID : ECU_ID;
        c.rx_id = tester ? ECU_ID : TESTER_ID;
        c.extended = extended;
        c.tx_ext_address = ADDR;
        c.rx_ext_address = ADDR;
        c.tx_padding = padding;
        c.padding_byte = PAD;
        return c;
}

static IsoTp *peer_new(unsigned idx, const IsoTpConfig *c) {
        Peer *p = &B.peer[idx];

        p->idx = idx;
        assert_int_equal(isotp_new(c, B.batched ? &batch_callbacks : &callbacks, p, &p->tp), 0);
        assert_non_null(p->tp);
        return p->tp;
}

static void pattern(uint8_t *buf, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t) (i * 7 + seed * 13 + (i >> 8) * 3 + 1);
}

/* Delivers every logged frame not delivered yet to the other engines (loop-back only). */
static void bus_deliver(void) {
        while (B.n_delivered < B.n_log) {
                Frame fr = B.log[B.n_delivered++];

                if (!B.loopback)
                        continue;
                for (unsigned i = 0; i < ELEMENTSOF(B.peer); i++)
                        if (i != fr.from && B.peer[i].tp)
                                isotp_handle_frame(B.peer[i].tp, &fr.f, B.now);
        }
}

static usec_t bus_next_deadline(void) {
        usec_t d = USEC_INFINITY;

        for (unsigned i = 0; i < ELEMENTSOF(B.peer); i++)
                if (B.peer[i].tp)
                        d = MIN(d, isotp_next_deadline(B.peer[i].tp));
        return d;
}

/* Runs the fake clock up to `until`, ticking every engine at each deadline on the way. */
static void run_until(usec_t until) {
        for (unsigned guard = 0;; guard++) {
                usec_t d;

                ASSERT(guard < 200000); /* a deadline that never moves on */
                bus_deliver();
                d = bus_next_deadline();
                if (d == USEC_INFINITY || d > until)
                        break;
                if (d > B.now)
                        B.now = d;
                for (unsigned i = 0; i < ELEMENTSOF(B.peer); i++)
                        if (B.peer[i].tp)
                                isotp_tick(B.peer[i].tp, B.now);
        }
        if (until != USEC_INFINITY && until > B.now)
                B.now = until;
}

/* Runs from deadline to deadline until n frames were logged. */
static void run_until_frames(size_t n) {
        for (unsigned guard = 0; B.n_log < n; guard++) {
                usec_t d = bus_next_deadline();

                ASSERT(guard < 100000);
                ASSERT(d != USEC_INFINITY);
                run_until(MAX(d, B.now));
        }
}

static void run_for(usec_t delta) {
        run_until(B.now + delta);
}

static void inject_raw(unsigned idx, canid_t id, const uint8_t *d, size_t n) {
        struct can_frame f = { .can_id = id, .len = (uint8_t) n };

        assert_true(n <= CAN_MAX_DLEN);
        memcpy(f.data, d, n);
        isotp_handle_frame(B.peer[idx].tp, &f, B.now);
}
#define INJECT(idx, id, ...)                             \
        do {                                             \
                const uint8_t _d[] = { __VA_ARGS__ };    \
                inject_raw((idx), (id), _d, sizeof(_d)); \
        } while (0)

static void expect_frame_raw(size_t i, canid_t id, const uint8_t *want, size_t n) {
        const struct can_frame *f;

        assert_true(i < B.n_log);
        f = &B.log[i].f;
        assert_int_equal(f->can_id, id);
        assert_int_equal(f->len, n);
        assert_memory_equal(f->data, want, n);
}
#define EXPECT_FRAME(i, id, ...)                             \
        do {                                                 \
                const uint8_t _w[] = { __VA_ARGS__ };        \
                expect_frame_raw((i), (id), _w, sizeof(_w)); \
        } while (0)

/* ISO 15765-2 segmentation, written independently of the engine: the frames a sender must
 * emit for msg (SF, or FF and CFs with SN 1, 2, .. 15, 0, 1 ..). Returns the count. */
static size_t segment(canid_t id, bool extended, bool padding, const uint8_t *msg, size_t size,
                      struct can_frame *out) {
        size_t a = extended ? 1 : 0, n = 0, off;
        uint8_t sn = 1;

        if (size <= 7 - a) {
                struct can_frame *f = &out[n++];
                *f = (struct can_frame) { .can_id = id };
                if (extended)
                        f->data[0] = ADDR;
                f->data[a] = (uint8_t) size;
                memcpy(f->data + a + 1, msg, size);
                f->len = (uint8_t) (a + 1 + size);
        } else {
                struct can_frame *f = &out[n++];
                *f = (struct can_frame) { .can_id = id, .len = 8 };
                if (extended)
                        f->data[0] = ADDR;
                f->data[a] = (uint8_t) (0x10 | (size >> 8));
                f->data[a + 1] = (uint8_t) (size & 0xff);
                memcpy(f->data + a + 2, msg, 6 - a);
                off = 6 - a;
                while (off < size) {
                        size_t chunk = MIN(7 - a, size - off);
                        f = &out[n++];
                        *f = (struct can_frame) { .can_id = id };
                        if (extended)
                                f->data[0] = ADDR;
                        f->data[a] = (uint8_t) (0x20 | sn);
                        sn = (sn + 1) & 0x0f;
                        memcpy(f->data + a + 1, msg + off, chunk);
                        f->len = (uint8_t) (a + 1 + chunk);
                        off += chunk;
                }
        }
        if (padding)
                for (size_t i = 0; i < n; i++) {
                        memset(out[i].data + out[i].len, PAD, 8 - out[i].len);
                        out[i].len = 8;
                }
        return n;
}

static size_t n_cf(size_t size, bool extended) {
        size_t a = extended ? 1 : 0;

        if (size <= 7 - a)
                return 0;
        return (size - (6 - a) + (7 - a) - 1) / (7 - a);
}

static bool frame_is_fc(const Frame *fr, bool extended) {
        return (fr->f.data[extended ? 1 : 0] >> 4) == 3;
}

/* Checks that the data frames (not the FCs) engine `from` logged are exactly the
 * segmentation of msg. */
static void verify_sender_frames(unsigned from, canid_t id, bool extended, bool padding, const uint8_t *msg,
                                 size_t size) {
        static struct can_frame want[800];
        size_t n = segment(id, extended, padding, msg, size, want), k = 0;

        for (size_t i = 0; i < B.n_log; i++) {
                const Frame *fr = &B.log[i];

                if (fr->from != from || frame_is_fc(fr, extended))
                        continue;
                ASSERT(k < n);
                ASSERT(fr->f.can_id == want[k].can_id);
                ASSERT(fr->f.len == want[k].len);
                ASSERT(memcmp(fr->f.data, want[k].data, want[k].len) == 0);
                k++;
        }
        ASSERT(k == n);
}

static usec_t st_usec(uint8_t v) {
        /* ISO 15765-2 table 20: 0..127 ms, 100..900 us, reserved = 127 ms */
        if (v <= 0x7f)
                return v * MS;
        if (v >= 0xf1 && v <= 0xf9)
                return (usec_t) (v - 0xf0) * 100;
        return 127 * MS;
}

/* ---------------------------------------------------------------- single frames */

static void test_sf_normal_padded(void **state) {
        static const uint8_t req[] = { 0x22, 0xf1, 0x90 };
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        assert_int_equal(isotp_send(t, req, sizeof(req), B.now), 0);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, TESTER_ID, 0x03, 0x22, 0xf1, 0x90, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
        assert_false(isotp_sending(t));
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);

        /* the largest single frame: 7 bytes */
        static const uint8_t seven[] = { 1, 2, 3, 4, 5, 6, 7 };
        assert_int_equal(isotp_send(t, seven, sizeof(seven), B.now), 0);
        assert_int_equal(B.n_log, 2);
        EXPECT_FRAME(1, TESTER_ID, 0x07, 1, 2, 3, 4, 5, 6, 7);
        assert_int_equal(B.peer[0].n_sent, 2);
        assert_int_equal(B.peer[0].sent[1], ISOTP_N_OK);

        /* one byte */
        static const uint8_t one[] = { 0x3e };
        assert_int_equal(isotp_send(t, one, 1, B.now), 0);
        EXPECT_FRAME(2, TESTER_ID, 0x01, 0x3e, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55);
}

static void test_sf_extended_padded(void **state) {
        static const uint8_t req[] = { 0x22, 0xf1, 0x90 };
        static const uint8_t six[] = { 0x27, 0x02, '1', '2', '3', '4' };
        IsoTpConfig c = config(true, true, true);
        IsoTp *t = peer_new(0, &c);

        assert_int_equal(isotp_send(t, req, sizeof(req), B.now), 0);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, TESTER_ID, 0x57, 0x03, 0x22, 0xf1, 0x90, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);

        /* the largest single frame with extended addressing: 6 bytes */
        assert_int_equal(isotp_send(t, six, sizeof(six), B.now), 0);
        EXPECT_FRAME(1, TESTER_ID, 0x57, 0x06, 0x27, 0x02, '1', '2', '3', '4');
        assert_int_equal(B.peer[0].n_sent, 2);
}

static void test_sf_unpadded(void **state) {
        static const uint8_t req[] = { 0x22, 0xf1, 0x90 };
        IsoTpConfig cn = config(true, false, false), ce = config(false, true, false);
        IsoTp *n = peer_new(0, &cn), *e = peer_new(1, &ce);

        assert_int_equal(isotp_send(n, req, sizeof(req), B.now), 0);
        EXPECT_FRAME(0, TESTER_ID, 0x03, 0x22, 0xf1, 0x90);
        assert_int_equal(isotp_send(e, req, sizeof(req), B.now), 0);
        EXPECT_FRAME(1, ECU_ID, 0x57, 0x03, 0x22, 0xf1, 0x90);
        assert_int_equal(B.n_log, 2);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[1].n_sent, 1);
}

static void test_config_defaults(void **state) {
        IsoTpConfig c;

        isotp_config_init(&c);
        assert_false(c.extended);
        assert_false(c.tx_padding);
        assert_int_equal(c.block_size, 0);
        assert_int_equal(c.st_min, 0);
        assert_int_equal(c.wait_frames, 0);
        assert_int_equal(c.max_wait, 10);
        assert_true(c.n_as == 1000 * MS);
        assert_true(c.n_bs == 1000 * MS);
        assert_true(c.n_cr == 1000 * MS);
        assert_int_equal(ISOTP_MAX_MESSAGE, 4095);
}

static void test_sf_receive(void **state) {
        IsoTpConfig cn = config(true, false, true), ce = config(false, true, true);

        peer_new(0, &cn);
        peer_new(1, &ce);

        INJECT(0, ECU_ID, 0x03, 0x62, 0xf1, 0x90, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], 3);
        assert_memory_equal(B.peer[0].msg[0], ((uint8_t[]) { 0x62, 0xf1, 0x90 }), 3);

        /* receivers accept unpadded frames */
        INJECT(0, ECU_ID, 0x02, 0x7e, 0x00);
        assert_int_equal(B.peer[0].n_msgs, 2);
        assert_int_equal(B.peer[0].msg_size[1], 2);
        assert_memory_equal(B.peer[0].msg[1], ((uint8_t[]) { 0x7e, 0x00 }), 2);

        /* 7 bytes, normal addressing */
        INJECT(0, ECU_ID, 0x07, 1, 2, 3, 4, 5, 6, 7);
        assert_int_equal(B.peer[0].n_msgs, 3);
        assert_int_equal(B.peer[0].msg_size[2], 7);
        assert_memory_equal(B.peer[0].msg[2], ((uint8_t[]) { 1, 2, 3, 4, 5, 6, 7 }), 7);

        /* extended addressing, padded and unpadded, up to 6 bytes */
        INJECT(1, TESTER_ID, 0x57, 0x02, 0x10, 0x03, 0x55, 0x55, 0x55, 0x55);
        INJECT(1, TESTER_ID, 0x57, 0x02, 0x3e, 0x80);
        INJECT(1, TESTER_ID, 0x57, 0x06, 0x27, 0x02, '9', '8', '7', '6');
        assert_int_equal(B.peer[1].n_msgs, 3);
        assert_int_equal(B.peer[1].msg_size[0], 2);
        assert_memory_equal(B.peer[1].msg[0], ((uint8_t[]) { 0x10, 0x03 }), 2);
        assert_int_equal(B.peer[1].msg_size[1], 2);
        assert_memory_equal(B.peer[1].msg[1], ((uint8_t[]) { 0x3e, 0x80 }), 2);
        assert_int_equal(B.peer[1].msg_size[2], 6);
        assert_memory_equal(B.peer[1].msg[2], ((uint8_t[]) { 0x27, 0x02, '9', '8', '7', '6' }), 6);

        /* a single frame needs no flow control and fails nothing */
        assert_int_equal(B.n_log, 0);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[1].n_rxfail, 0);
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
}

static void test_sf_invalid_length_ignored(void **state) {
        IsoTpConfig cn = config(true, false, true), ce = config(false, true, true);

        peer_new(0, &cn);
        peer_new(1, &ce);

        INJECT(0, ECU_ID, 0x00, 0x62, 0xf1, 0x90, 0x55, 0x55, 0x55, 0x55); /* SF_DL 0 */
        INJECT(0, ECU_ID, 0x08, 1, 2, 3, 4, 5, 6, 7);                      /* SF_DL 8 > 7 */
        INJECT(0, ECU_ID, 0x0f, 1, 2, 3, 4, 5, 6, 7);                      /* SF_DL 15 */
        INJECT(0, ECU_ID, 0x05, 1, 2, 3);                                  /* says 5, carries 3 */
        INJECT(0, ECU_ID, 0x01);                                           /* says 1, carries 0 */
        INJECT(1, TESTER_ID, 0x57, 0x07, 1, 2, 3, 4, 5, 6);                /* SF_DL 7 > 6 */
        INJECT(1, TESTER_ID, 0x57, 0x00, 1, 2, 3, 4, 5, 6);                /* SF_DL 0 */
        INJECT(1, TESTER_ID, 0x57);                                        /* only the address */

        assert_int_equal(B.peer[0].n_msgs, 0);
        assert_int_equal(B.peer[1].n_msgs, 0);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[1].n_rxfail, 0);
        assert_int_equal(B.n_log, 0);

        /* an invalid SF during a reception does not disturb it */
        uint8_t msg[20];
        pattern(msg, sizeof(msg), 1);
        INJECT(0, ECU_ID, 0x10, 20, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        assert_int_equal(B.n_log, 1); /* FC */
        INJECT(0, ECU_ID, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55);
        INJECT(0, ECU_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        INJECT(0, ECU_ID, 0x22, msg[13], msg[14], msg[15], msg[16], msg[17], msg[18], msg[19]);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], 20);
        assert_memory_equal(B.peer[0].msg[0], msg, 20);
}

/* ---------------------------------------------------------------- multi-frame send */

static void test_ff_boundary(void **state) {
        uint8_t msg[8];
        IsoTpConfig cn = config(true, false, true), ce = config(false, true, true);
        IsoTp *n = peer_new(0, &cn), *e = peer_new(1, &ce);

        pattern(msg, sizeof(msg), 0);
        /* 8 bytes do not fit a normal SF */
        assert_int_equal(isotp_send(n, msg, 8, B.now), 0);
        EXPECT_FRAME(0, TESTER_ID, 0x10, 0x08, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        assert_true(isotp_sending(n));
        assert_int_equal(B.peer[0].n_sent, 0);
        /* 7 bytes do not fit an extended SF */
        assert_int_equal(isotp_send(e, msg, 7, B.now), 0);
        EXPECT_FRAME(1, ECU_ID, 0x57, 0x10, 0x07, msg[0], msg[1], msg[2], msg[3], msg[4]);
        assert_true(isotp_sending(e));
        assert_int_equal(B.peer[1].n_sent, 0);
}

static void test_mf_send_8(void **state) {
        uint8_t msg[8];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 5);
        assert_int_equal(isotp_send(t, msg, 8, B.now), 0);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, TESTER_ID, 0x10, 0x08, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        assert_true(isotp_next_deadline(t) == T0 + 1000 * MS);

        run_for(10 * MS);
        assert_int_equal(B.n_log, 1);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 2);
        EXPECT_FRAME(1, TESTER_ID, 0x21, msg[6], msg[7], 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_true(B.log[1].t == T0 + 10 * MS);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
        assert_false(isotp_sending(t));
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
}

static void test_mf_send_8_unpadded_extended(void **state) {
        uint8_t msg[8];
        IsoTpConfig c = config(true, true, false);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 6);
        assert_int_equal(isotp_send(t, msg, 8, B.now), 0);
        EXPECT_FRAME(0, TESTER_ID, 0x57, 0x10, 0x08, msg[0], msg[1], msg[2], msg[3], msg[4]);
        /* an unpadded FC (4 bytes with the address) */
        INJECT(0, ECU_ID, 0x57, 0x30, 0x00, 0x00);
        assert_int_equal(B.n_log, 2);
        EXPECT_FRAME(1, TESTER_ID, 0x57, 0x21, msg[5], msg[6], msg[7]);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
}

/* Sends size bytes against a scripted receiver that answers one FC CTS (BS 0, STmin 0). */
static void send_and_check(size_t size, bool extended, bool padding) {
        static uint8_t msg[ISOTP_MAX_MESSAGE];
        IsoTpConfig c;
        IsoTp *t;

        reset();
        snprintf(ctx, sizeof(ctx), "send size=%zu ext=%d pad=%d", size, extended, padding);
        c = config(true, extended, padding);
        t = peer_new(0, &c);
        pattern(msg, size, (unsigned) size);

        ASSERT(isotp_send(t, msg, size, B.now) == 0);
        ASSERT(B.n_log == 1);
        if (extended)
                INJECT(0, ECU_ID, ADDR, 0x30, 0x00, 0x00);
        else
                INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        run_until(USEC_INFINITY);

        ASSERT(B.n_log == 1 + n_cf(size, extended));
        verify_sender_frames(0, TESTER_ID, extended, padding, msg, size);
        ASSERT(B.peer[0].n_sent == 1);
        ASSERT(B.peer[0].sent[0] == ISOTP_N_OK);
        /* BS 0 STmin 0: every CF right after the FC */
        for (size_t i = 1; i < B.n_log; i++)
                ASSERT(B.log[i].t == T0);
}

static void test_mf_send_sizes(void **state) {
        static const size_t sizes[] = { 8, 13, 14, 62, 255, 256, 300, 1000, 4094, 4095 };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                for (int ext = 0; ext <= 1; ext++)
                        for (int pad = 0; pad <= 1; pad++)
                                send_and_check(sizes[i], ext, pad);
}

static void test_mf_send_62_exact(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 62);
        assert_int_equal(isotp_send(t, msg, 62, B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        /* 6 in the FF, then 8 full CFs: 6 + 8 * 7 = 62 */
        assert_int_equal(B.n_log, 9);
        EXPECT_FRAME(0, TESTER_ID, 0x10, 0x3e, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        for (unsigned k = 1; k <= 8; k++) {
                const uint8_t *d = msg + 6 + (k - 1) * 7;
                EXPECT_FRAME(k, TESTER_ID, (uint8_t) (0x20 | k), d[0], d[1], d[2], d[3], d[4], d[5], d[6]);
        }
        EXPECT_FRAME(8, TESTER_ID, 0x28, msg[55], msg[56], msg[57], msg[58], msg[59], msg[60], msg[61]);

        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);

        /* 63 bytes: a ninth CF with one byte and the padding */
        reset();
        t = peer_new(0, &c);
        uint8_t m63[63];
        pattern(m63, sizeof(m63), 63);
        assert_int_equal(isotp_send(t, m63, 63, B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        assert_int_equal(B.n_log, 10);
        EXPECT_FRAME(0, TESTER_ID, 0x10, 0x3f, m63[0], m63[1], m63[2], m63[3], m63[4], m63[5]);
        EXPECT_FRAME(9, TESTER_ID, 0x29, m63[62], 0x55, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
}

static void test_mf_send_4095_exact(void **state) {
        static uint8_t msg[4095];
        static uint8_t got[4095];
        size_t off = 0;
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 77);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        /* FF_DL 4095 = 0xFFF: low nibble of byte 0 and all of byte 1 */
        EXPECT_FRAME(0, TESTER_ID, 0x1f, 0xff, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        /* 4089 bytes in CFs of 7: 584 full and one with a single byte */
        assert_int_equal(B.n_log, 586);
        memcpy(got, B.log[0].f.data + 2, 6);
        off = 6;
        for (size_t k = 1; k < 586; k++) {
                const struct can_frame *f = &B.log[k].f;
                size_t chunk = MIN(7, sizeof(msg) - off);

                assert_int_equal(f->data[0], 0x20 | (k & 0x0f));
                assert_int_equal(f->len, 8);
                memcpy(got + off, f->data + 1, chunk);
                for (size_t j = 1 + chunk; j < 8; j++)
                        assert_int_equal(f->data[j], PAD);
                off += chunk;
        }
        assert_int_equal(off, sizeof(msg));
        assert_memory_equal(got, msg, sizeof(msg));
        /* sequence numbers wrap from 0xF to 0 */
        assert_int_equal(B.log[15].f.data[0], 0x2f);
        assert_int_equal(B.log[16].f.data[0], 0x20);
        assert_int_equal(B.log[17].f.data[0], 0x21);
        assert_int_equal(B.log[31].f.data[0], 0x2f);
        assert_int_equal(B.log[32].f.data[0], 0x20);
        EXPECT_FRAME(585, TESTER_ID, 0x20 | (585 & 0x0f), msg[4094], 0x55, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
}

static void test_ff_length_encoding(void **state) {
        static const struct {
                size_t size;
                uint8_t b0, b1;
        } cases[] = {
                { 8, 0x10, 0x08 },
                { 62, 0x10, 0x3e },
                { 255, 0x10, 0xff },
                { 256, 0x11, 0x00 },
                { 300, 0x11, 0x2c },
                { 511, 0x11, 0xff },
                { 512, 0x12, 0x00 },
                { 0x7a5, 0x17, 0xa5 },
                { 4095, 0x1f, 0xff },
        };
        static uint8_t msg[4095];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (int ext = 0; ext <= 1; ext++) {
                        IsoTpConfig c;
                        IsoTp *t;

                        reset();
                        c = config(true, ext, true);
                        t = peer_new(0, &c);
                        pattern(msg, cases[i].size, (unsigned) i);
                        assert_int_equal(isotp_send(t, msg, cases[i].size, B.now), 0);
                        assert_int_equal(B.n_log, 1);
                        assert_int_equal(B.log[0].f.data[ext], cases[i].b0);
                        assert_int_equal(B.log[0].f.data[ext + 1], cases[i].b1);
                        if (ext)
                                assert_int_equal(B.log[0].f.data[0], ADDR);
                }
}

/* ---------------------------------------------------------------- multi-frame receive */

static void receive_and_check(size_t size, bool extended, bool padding, uint8_t bs, uint8_t st) {
        static uint8_t msg[ISOTP_MAX_MESSAGE];
        static struct can_frame fr[800];
        size_t n, n_fc = 0, a = extended ? 1 : 0, cfs = 0;
        IsoTpConfig c;

        reset();
        snprintf(ctx, sizeof(ctx), "receive size=%zu ext=%d pad=%d bs=%u st=0x%02x", size, extended, padding, bs,
                 st);
        c = config(false, extended, padding);
        c.block_size = bs;
        c.st_min = st;
        peer_new(0, &c);
        pattern(msg, size, (unsigned) size + 1);
        n = segment(TESTER_ID, extended, true, msg, size, fr);

        for (size_t i = 0; i < n; i++) {
                size_t before = B.n_log;

                isotp_handle_frame(B.peer[0].tp, &fr[i], B.now);
                if (i == 0 || (bs > 0 && i < n - 1 && i % bs == 0)) {
                        /* after the FF and after every block but the last: one FC CTS */
                        const Frame *f;

                        ASSERT(B.n_log == before + 1);
                        f = &B.log[B.n_log - 1];
                        ASSERT(f->f.can_id == ECU_ID);
                        ASSERT(f->f.len == (padding ? 8 : a + 3));
                        if (extended)
                                ASSERT(f->f.data[0] == ADDR);
                        ASSERT(f->f.data[a] == 0x30);
                        ASSERT(f->f.data[a + 1] == bs);
                        ASSERT(f->f.data[a + 2] == st);
                        for (size_t j = a + 3; j < f->f.len; j++)
                                ASSERT(f->f.data[j] == PAD);
                        n_fc++;
                } else
                        ASSERT(B.n_log == before);
                if (i > 0)
                        cfs++;
                B.now += 1 * MS;
        }
        ASSERT(cfs == n_cf(size, extended));
        ASSERT(n_fc == (bs ? (cfs + bs - 1) / bs : 1));
        ASSERT(B.peer[0].n_rxfail == 0);
        ASSERT(B.peer[0].n_msgs == 1);
        ASSERT(B.peer[0].msg_size[0] == size);
        ASSERT(memcmp(B.peer[0].msg[0], msg, size) == 0);
        ASSERT(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
}

static void test_mf_receive(void **state) {
        static const size_t sizes[] = { 7, 8, 14, 62, 256, 300, 4095 };

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                for (int ext = 0; ext <= 1; ext++) {
                        if (sizes[i] <= 7 - (size_t) ext)
                                continue; /* single frame */
                        receive_and_check(sizes[i], ext, true, 0, 0);
                        receive_and_check(sizes[i], ext, false, 0, 0);
                        receive_and_check(sizes[i], ext, true, 4, 0x0a);
                        receive_and_check(sizes[i], ext, false, 1, 0xf3);
                        receive_and_check(sizes[i], ext, true, 255, 0x7f);
                }
}

static void test_mf_receive_8_exact(void **state) {
        IsoTpConfig c = config(false, false, true);

        peer_new(0, &c);
        INJECT(0, TESTER_ID, 0x10, 0x08, 0x31, 0x01, 0xa1, 0x02, 0x02, 0x11);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_true(isotp_next_deadline(B.peer[0].tp) == T0 + 1000 * MS);
        INJECT(0, TESTER_ID, 0x21, 0x22, 0x33, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], 8);
        assert_memory_equal(B.peer[0].msg[0], ((uint8_t[]) { 0x31, 0x01, 0xa1, 0x02, 0x02, 0x11, 0x22, 0x33 }), 8);
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
}

/* ---------------------------------------------------------------- loop-back */

/* A (tester) sends size bytes to B (ECU), B's flow control set to bs/st/waits. Checks the
 * delivered message, every frame on the bus and the pacing of the CFs in fake time. */
static void loopback_one(size_t size, bool extended, bool padding, uint8_t bs, uint8_t st, uint8_t waits,
                         bool batched) {
        static uint8_t msg[ISOTP_MAX_MESSAGE];
        size_t a = extended ? 1 : 0, ncf = n_cf(size, extended), idx, cf = 0;
        usec_t st_us = st_usec(st);
        IsoTpConfig ca, cb;
        IsoTp *A;

        reset();
        B.batched = batched;
        snprintf(ctx, sizeof(ctx), "loopback size=%zu ext=%d pad=%d bs=%u st=0x%02x waits=%u batched=%d", size,
                 extended, padding, bs, st, waits, batched);
        B.loopback = true;
        ca = config(true, extended, padding);
        cb = config(false, extended, padding);
        A = peer_new(0, &ca);
        peer_new(1, &cb);
        isotp_set_flow_control(B.peer[1].tp, bs, st, waits);
        ASSERT(isotp_get_config(B.peer[1].tp)->block_size == bs);
        ASSERT(isotp_get_config(B.peer[1].tp)->st_min == st);
        ASSERT(isotp_get_config(B.peer[1].tp)->wait_frames == waits);
        pattern(msg, size, (unsigned) (size + bs + st));

        ASSERT(isotp_send(A, msg, size, B.now) == 0);
        run_until(USEC_INFINITY);

        ASSERT(B.peer[0].n_sent == 1);
        ASSERT(B.peer[0].sent[0] == ISOTP_N_OK);
        ASSERT(B.peer[0].n_rxfail == 0);
        ASSERT(B.peer[1].n_rxfail == 0);
        ASSERT(B.peer[1].n_sent == 0);
        ASSERT(B.peer[0].n_msgs == 0);
        ASSERT(B.peer[1].n_msgs == 1);
        ASSERT(B.peer[1].msg_size[0] == size);
        ASSERT(memcmp(B.peer[1].msg[0], msg, size) == 0);
        verify_sender_frames(0, TESTER_ID, extended, padding, msg, size);

        /* the sequence on the bus: FF, then per block: WAITs, CTS, CFs */
        ASSERT(B.log[0].from == 0);
        idx = 1;
        while (cf < ncf) {
                size_t block = bs ? MIN((size_t) bs, ncf - cf) : ncf - cf;
                usec_t t_fc, t_prev = 0;

                for (unsigned w = 0; w <= waits; w++) {
                        const Frame *f = &B.log[idx];
                        ASSERT(idx < B.n_log);
                        ASSERT(f->from == 1);
                        ASSERT(f->f.can_id == ECU_ID);
                        ASSERT(f->f.len == (padding ? 8 : a + 3));
                        if (extended)
                                ASSERT(f->f.data[0] == ADDR);
                        /* WAIT frames carry the same BS and STmin as the CTS */
                        ASSERT(f->f.data[a] == (w < waits ? 0x31 : 0x30));
                        ASSERT(f->f.data[a + 1] == bs);
                        ASSERT(f->f.data[a + 2] == st);
                        for (size_t j = a + 3; j < f->f.len; j++)
                                ASSERT(f->f.data[j] == PAD);
                        if (w > 0) {
                                /* each WAIT comes well inside the sender's N_Bs */
                                ASSERT(f->t > t_prev);
                                ASSERT(f->t - t_prev < 1000 * MS);
                        }
                        t_prev = f->t;
                        idx++;
                }
                t_fc = t_prev;

                for (size_t j = 0; j < block; j++) {
                        const Frame *f = &B.log[idx];
                        ASSERT(idx < B.n_log);
                        ASSERT(f->from == 0);
                        ASSERT((f->f.data[a] >> 4) == 2);
                        if (j == 0)
                                ASSERT(f->t >= t_fc);
                        else {
                                /* STmin between two CFs, and no needless delay */
                                ASSERT(f->t - B.log[idx - 1].t >= st_us);
                                ASSERT(f->t - B.log[idx - 1].t <= st_us + 1 * MS);
                        }
                        idx++;
                }
                cf += block;
        }
        ASSERT(idx == B.n_log);
        if (ncf == 0)
                ASSERT(B.n_log == 1);
        ASSERT(B.peer[1].msg_t[0] == B.log[B.n_log - 1].t);

        /* a batch only where no gap is due, never past a block, and the rest of the block
         * (or of the message) in as few calls as the batch size allows */
        if (!batched || st_us > 0 || ncf < 2)
                ASSERT(B.peer[0].n_batches == 0);
        else {
                size_t per_block = bs ? MIN((size_t) bs, ncf) : ncf;
                for (unsigned i = 0; i < B.peer[0].n_batches; i++)
                        ASSERT(B.peer[0].batch[i] <= per_block);
                if (per_block >= 2 && per_block <= ISOTP_TX_BATCH)
                        ASSERT(B.peer[0].batch[0] == per_block);
        }
}

static const uint8_t st_values[] = {
        0x00, 0x01, 0x05, 0x14, 0x7f,       /* milliseconds */
        0xf1, 0xf2, 0xf5, 0xf8, 0xf9,       /* 100..900 us */
        0x80, 0xa5, 0xf0, 0xfa, 0xfe, 0xff, /* reserved: 127 ms */
};
static const uint8_t bs_values[] = { 0, 1, 2, 3, 8, 15, 16, 255 };

static void loopback_matrix(bool extended, bool batched) {
        static const size_t sizes[] = { 5, 8, 62, 300, 4095 };
        unsigned k = 0;

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++)
                for (size_t b = 0; b < ELEMENTSOF(bs_values); b++)
                        for (size_t s = 0; s < ELEMENTSOF(st_values); s++)
                                loopback_one(sizes[i], extended, (k++ & 1) == 0, bs_values[b], st_values[s], 0,
                                             batched);
}

static void test_loopback_normal(void **state) {
        loopback_matrix(false, false);
}

/* The same with a link that sends consecutive frames in batches (sendmmsg()). */
static void test_loopback_batched(void **state) {
        loopback_matrix(false, true);
        loopback_matrix(true, true);
}

static void test_loopback_extended(void **state) {
        loopback_matrix(true, false);
}

static void test_loopback_wait_frames(void **state) {
        static const uint8_t waits[] = { 1, 3, 10 };
        static const uint8_t st[] = { 0x00, 0x0a, 0xf3, 0x90 };

        for (size_t w = 0; w < ELEMENTSOF(waits); w++)
                for (size_t s = 0; s < ELEMENTSOF(st); s++)
                        for (int ext = 0; ext <= 1; ext++) {
                                loopback_one(62, ext, true, 0, st[s], waits[w], false);
                                loopback_one(62, ext, false, 3, st[s], waits[w], false);
                                loopback_one(700, ext, true, 16, st[s], waits[w], true);
                        }
}

static void test_loopback_full_duplex(void **state) {
        static uint8_t ma[300], mb[200];
        IsoTpConfig ca = config(true, true, true), cb = config(false, true, true);
        IsoTp *A = peer_new(0, &ca), *Bt = peer_new(1, &cb);

        B.loopback = true;
        isotp_set_flow_control(A, 2, 0x02, 0);
        isotp_set_flow_control(Bt, 3, 0x01, 0);
        pattern(ma, sizeof(ma), 1);
        pattern(mb, sizeof(mb), 2);
        assert_int_equal(isotp_send(A, ma, sizeof(ma), B.now), 0);
        assert_int_equal(isotp_send(Bt, mb, sizeof(mb), B.now), 0);
        run_until(USEC_INFINITY);

        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
        assert_int_equal(B.peer[1].n_sent, 1);
        assert_int_equal(B.peer[1].sent[0], ISOTP_N_OK);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[1].n_rxfail, 0);
        assert_int_equal(B.peer[1].n_msgs, 1);
        assert_int_equal(B.peer[1].msg_size[0], sizeof(ma));
        assert_memory_equal(B.peer[1].msg[0], ma, sizeof(ma));
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], sizeof(mb));
        assert_memory_equal(B.peer[0].msg[0], mb, sizeof(mb));
        verify_sender_frames(0, TESTER_ID, true, true, ma, sizeof(ma));
        verify_sender_frames(1, ECU_ID, true, true, mb, sizeof(mb));
}

static void test_loopback_29bit_ids(void **state) {
        static uint8_t msg[100];
        IsoTpConfig ca = config(true, false, true), cb = config(false, false, true);
        IsoTp *A;

        ca.tx_id = cb.rx_id = 0x18da57f1 | CAN_EFF_FLAG;
        ca.rx_id = cb.tx_id = 0x18daf157 | CAN_EFF_FLAG;
        A = peer_new(0, &ca);
        peer_new(1, &cb);
        B.loopback = true;
        pattern(msg, sizeof(msg), 9);
        assert_int_equal(isotp_send(A, msg, sizeof(msg), B.now), 0);
        run_until(USEC_INFINITY);
        assert_int_equal(B.peer[1].n_msgs, 1);
        assert_memory_equal(B.peer[1].msg[0], msg, sizeof(msg));
        verify_sender_frames(0, 0x18da57f1 | CAN_EFF_FLAG, false, true, msg, sizeof(msg));
        for (size_t i = 0; i < B.n_log; i++)
                assert_true(B.log[i].f.can_id & CAN_EFF_FLAG);

        /* an 11-bit frame with the same number is another id */
        reset();
        peer_new(1, &cb);
        INJECT(1, 0x18da57f1 & CAN_SFF_MASK, 0x02, 0x3e, 0x00);
        assert_int_equal(B.peer[1].n_msgs, 0);
}

/* ---------------------------------------------------------------- flow control */

static void test_block_size_fc_per_block(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 11);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x03, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        /* FF + a block of 3 */
        assert_int_equal(B.n_log, 4);
        assert_int_equal(B.log[3].f.data[0], 0x23);
        assert_true(isotp_sending(t));
        /* then N_Bs runs again from the block's last CF */
        assert_true(isotp_next_deadline(t) == T0 + 1000 * MS);
        run_for(999 * MS);
        assert_int_equal(B.n_log, 4);
        assert_int_equal(B.peer[0].n_sent, 0);
        INJECT(0, ECU_ID, 0x30, 0x03, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 7);
        assert_int_equal(B.log[4].f.data[0], 0x24);
        assert_int_equal(B.log[6].f.data[0], 0x26);
        assert_true(isotp_next_deadline(t) == B.now + 1000 * MS);
        run_for(500 * MS);
        assert_int_equal(B.n_log, 7);
        INJECT(0, ECU_ID, 0x30, 0x03, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        /* the last block is short: 2 CFs */
        assert_int_equal(B.n_log, 9);
        verify_sender_frames(0, TESTER_ID, false, true, msg, sizeof(msg));
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
}

static void test_first_fc_fixes_bs_and_st_min(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        /* As the kernel's sender does: BS and STmin of the first FC hold for the message. */
        pattern(msg, sizeof(msg), 12);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x02, 0x0a, 0x55, 0x55, 0x55, 0x55, 0x55);
        run_for(100 * MS);
        assert_int_equal(B.n_log, 1 + 2);
        assert_true(B.log[2].t - B.log[1].t == 10 * MS);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        run_for(100 * MS);
        assert_int_equal(B.n_log, 1 + 4);
        assert_true(B.log[4].t - B.log[3].t == 10 * MS);
        assert_true(isotp_sending(t));
}

static void test_fc_wait_up_to_max_wait(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 13);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        for (unsigned i = 0; i < 10; i++) {
                run_for(900 * MS);
                assert_int_equal(B.peer[0].n_sent, 0);
                INJECT(0, ECU_ID, 0x31, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
                assert_true(isotp_sending(t));
                /* each WAIT re-arms N_Bs */
                assert_true(isotp_next_deadline(t) == B.now + 1000 * MS);
        }
        assert_int_equal(B.n_log, 1);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 9);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);

        /* the 11th WAIT in a row is one too many */
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        for (unsigned i = 0; i < 10; i++) {
                run_for(100 * MS);
                INJECT(0, ECU_ID, 0x31, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        }
        assert_int_equal(B.peer[0].n_sent, 1);
        run_for(100 * MS);
        INJECT(0, ECU_ID, 0x31, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_sent, 2);
        assert_int_equal(B.peer[0].sent[1], ISOTP_N_WFT_OVRN);
        assert_true(B.peer[0].sent_t[1] == B.now);
        assert_false(isotp_sending(t));
        assert_int_equal(B.n_log, 10); /* only the second FF */
        assert_int_equal(isotp_result_to_errno(ISOTP_N_WFT_OVRN) < 0, 1);
        /* a CTS now is too late and ignored */
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 10);
        assert_int_equal(B.peer[0].n_sent, 2);
}

static void test_fc_wait_counter_per_block(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        /* 10 WAITs before each of the blocks: the count starts again after each CTS */
        pattern(msg, sizeof(msg), 14);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        for (unsigned block = 0; block < 4; block++) {
                for (unsigned i = 0; i < 10; i++)
                        INJECT(0, ECU_ID, 0x31, 0x02, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
                INJECT(0, ECU_ID, 0x30, 0x02, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        }
        assert_int_equal(B.n_log, 9);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
}

static void test_fc_wait_max_wait_zero(void **state) {
        uint8_t msg[20];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t;

        c.max_wait = 0;
        t = peer_new(0, &c);
        pattern(msg, sizeof(msg), 15);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x31, 0x00, 0x00);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_WFT_OVRN);
        assert_int_equal(B.n_log, 1);
}

static void test_fc_wait_then_n_bs(void **state) {
        uint8_t msg[20];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);
        usec_t t_wait;

        pattern(msg, sizeof(msg), 16);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        run_for(700 * MS);
        INJECT(0, ECU_ID, 0x31, 0x00, 0x00);
        t_wait = B.now;
        run_until(t_wait + 1000 * MS - 1);
        assert_int_equal(B.peer[0].n_sent, 0);
        run_until(t_wait + 1000 * MS);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_BS);
        assert_true(B.peer[0].sent_t[0] == t_wait + 1000 * MS);
}

static void test_receiver_wait_frames(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(false, false, true);

        c.block_size = 2;
        c.st_min = 0x05;
        c.wait_frames = 3;
        peer_new(0, &c);
        pattern(msg, sizeof(msg), 17);

        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        assert_int_equal(B.n_log, 1);
        /* WAIT with the same BS and STmin as the CTS that follows */
        EXPECT_FRAME(0, ECU_ID, 0x31, 0x02, 0x05, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_true(isotp_next_deadline(B.peer[0].tp) > B.now);
        assert_true(isotp_next_deadline(B.peer[0].tp) < B.now + 1000 * MS);
        run_for(5 * USEC_PER_SEC);
        assert_int_equal(B.n_log, 4);
        EXPECT_FRAME(1, ECU_ID, 0x31, 0x02, 0x05, 0x55, 0x55, 0x55, 0x55, 0x55);
        EXPECT_FRAME(2, ECU_ID, 0x31, 0x02, 0x05, 0x55, 0x55, 0x55, 0x55, 0x55);
        EXPECT_FRAME(3, ECU_ID, 0x30, 0x02, 0x05, 0x55, 0x55, 0x55, 0x55, 0x55);
        for (size_t i = 1; i < 4; i++) {
                assert_true(B.log[i].t > B.log[i - 1].t);
                assert_true(B.log[i].t - B.log[i - 1].t < 1000 * MS);
        }
        /* the CTS went out and N_Cr ran out meanwhile (no CF within 1000 ms of it) */
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_TIMEOUT_CR);
        assert_true(B.peer[0].rxfail_t[0] == B.log[3].t + 1000 * MS);

        /* again, feeding the CFs in time: WAITs before every CTS */
        reset();
        peer_new(0, &c);
        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        run_until_frames(4); /* only up to the CTS */
        assert_int_equal(B.n_log, 4);
        assert_true(B.now == B.log[3].t);
        B.now = B.log[3].t + 10 * MS;
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        INJECT(0, TESTER_ID, 0x22, msg[13], msg[14], msg[15], msg[16], msg[17], msg[18], msg[19]);
        assert_int_equal(B.n_log, 5);
        EXPECT_FRAME(4, ECU_ID, 0x31, 0x02, 0x05, 0x55, 0x55, 0x55, 0x55, 0x55);
        /* a CF while we still send WAITs is not expected: ignored */
        INJECT(0, TESTER_ID, 0x23, msg[20], msg[21], msg[22], msg[23], msg[24], msg[25], msg[26]);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        run_for(900 * MS);
        assert_int_equal(B.n_log, 8);
        EXPECT_FRAME(7, ECU_ID, 0x30, 0x02, 0x05, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[0].n_msgs, 0);
}

static void test_loopback_too_many_wait_frames(void **state) {
        uint8_t msg[62];
        IsoTpConfig ca = config(true, true, true), cb = config(false, true, true);
        IsoTp *A = peer_new(0, &ca);

        cb.wait_frames = 11; /* one more than the sender's max_wait */
        peer_new(1, &cb);
        B.loopback = true;
        pattern(msg, sizeof(msg), 18);
        assert_int_equal(isotp_send(A, msg, sizeof(msg), B.now), 0);
        run_until(USEC_INFINITY);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_WFT_OVRN);
        /* the receiver sent its CTS, never got a CF, and gave up after N_Cr */
        assert_int_equal(B.peer[1].n_msgs, 0);
        assert_int_equal(B.peer[1].n_rxfail, 1);
        assert_int_equal(B.peer[1].rxfail[0], ISOTP_N_TIMEOUT_CR);
        assert_true(B.peer[1].rxfail_t[0] == B.log[B.n_log - 1].t + 1000 * MS);
        assert_int_equal(B.n_log, 1 + 12);
}

static void test_fc_overflow(void **state) {
        uint8_t msg[100];
        IsoTpConfig c = config(true, true, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 19);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x57, 0x32, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_BUFFER_OVFLW);
        assert_false(isotp_sending(t));
        assert_int_equal(B.n_log, 1);
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
        assert_int_equal(isotp_result_to_errno(ISOTP_N_BUFFER_OVFLW), -EMSGSIZE);
}

static void test_fc_invalid_fs(void **state) {
        uint8_t msg[30];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 20);
        for (uint8_t fs = 3; fs <= 0x0f; fs++) {
                size_t before = B.n_log;
                unsigned n = B.peer[0].n_sent;

                assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
                INJECT(0, ECU_ID, (uint8_t) (0x30 | fs), 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
                assert_int_equal(B.peer[0].n_sent, n + 1);
                assert_int_equal(B.peer[0].sent[n], ISOTP_N_INVALID_FS);
                assert_int_equal(B.n_log, before + 1); /* the FF, no CF */
                assert_false(isotp_sending(t));
        }
}

static void test_fc_ignored_when_not_expected(void **state) {
        uint8_t msg[30];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        /* idle: an FC means nothing */
        INJECT(0, ECU_ID, 0x32, 0x00, 0x00);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        assert_int_equal(B.peer[0].n_sent, 0);
        assert_int_equal(B.n_log, 0);

        /* between two paced CFs: an FC is not expected and is ignored */
        pattern(msg, sizeof(msg), 21);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x14); /* STmin 20 ms */
        assert_int_equal(B.n_log, 2);
        INJECT(0, ECU_ID, 0x32, 0x00, 0x00);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        assert_int_equal(B.peer[0].n_sent, 0);
        assert_int_equal(B.n_log, 2);
        run_until(USEC_INFINITY);
        assert_int_equal(B.n_log, 1 + n_cf(sizeof(msg), false));
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
        for (size_t i = 2; i < B.n_log; i++)
                assert_true(B.log[i].t - B.log[i - 1].t == 20 * MS);
}

/* ---------------------------------------------------------------- receive errors */

static void test_wrong_sn(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(false, false, true);

        peer_new(0, &c);
        pattern(msg, sizeof(msg), 22);
        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        assert_int_equal(B.n_log, 1);
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        INJECT(0, TESTER_ID, 0x23, msg[13], msg[14], msg[15], msg[16], msg[17], msg[18], msg[19]);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_WRONG_SN);
        assert_int_equal(B.peer[0].n_msgs, 0);
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
        assert_int_equal(isotp_result_to_errno(ISOTP_N_WRONG_SN), -EILSEQ);
        /* the rest of the message is ignored */
        for (unsigned k = 2; k <= 8; k++)
                INJECT(0, TESTER_ID, (uint8_t) (0x20 | k), 1, 2, 3, 4, 5, 6, 7);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].n_msgs, 0);
        assert_int_equal(B.n_log, 1);

        /* a repeated CF is a wrong sequence number too */
        reset();
        peer_new(0, &c);
        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_WRONG_SN);

        /* the first CF must carry SN 1, not 0 */
        reset();
        peer_new(0, &c);
        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        INJECT(0, TESTER_ID, 0x20, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_WRONG_SN);
}

static void test_wrong_sn_at_wrap(void **state) {
        static uint8_t msg[300];
        static struct can_frame fr[64];
        IsoTpConfig c = config(false, false, true);
        size_t n;

        peer_new(0, &c);
        pattern(msg, sizeof(msg), 23);
        n = segment(TESTER_ID, false, true, msg, sizeof(msg), fr);
        assert_true(n > 18);
        /* after SN 0xF the next is 0; a sender that goes on with 0x10 -> 1 is wrong */
        for (size_t i = 0; i <= 15; i++)
                isotp_handle_frame(B.peer[0].tp, &fr[i], B.now);
        assert_int_equal(fr[15].data[0], 0x2f);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        fr[16].data[0] = 0x21;
        isotp_handle_frame(B.peer[0].tp, &fr[16], B.now);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_WRONG_SN);
        assert_int_equal(B.peer[0].n_msgs, 0);
}

static void test_n_bs_timeout(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 24);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        assert_true(isotp_next_deadline(t) == T0 + 1000 * MS);
        /* not before: a tick 1 us early does nothing */
        isotp_tick(t, T0 + 1000 * MS - 1);
        run_until(T0 + 1000 * MS - 1);
        assert_int_equal(B.peer[0].n_sent, 0);
        assert_true(isotp_sending(t));
        run_until(T0 + 1000 * MS);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_BS);
        assert_true(B.peer[0].sent_t[0] == T0 + 1000 * MS);
        assert_false(isotp_sending(t));
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
        assert_int_equal(B.n_log, 1);
        assert_int_equal(isotp_result_to_errno(ISOTP_N_TIMEOUT_BS), -ECOMM);

        /* N_Bs after a block, from its last CF */
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        run_for(300 * MS);
        INJECT(0, ECU_ID, 0x30, 0x02, 0x00);
        assert_int_equal(B.n_log, 4);
        usec_t t_block = B.now;
        run_until(t_block + 1000 * MS - 1);
        assert_int_equal(B.peer[0].n_sent, 1);
        run_until(t_block + 1000 * MS);
        assert_int_equal(B.peer[0].n_sent, 2);
        assert_int_equal(B.peer[0].sent[1], ISOTP_N_TIMEOUT_BS);
}

static void test_n_bs_custom(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t;

        c.n_bs = 250 * MS;
        t = peer_new(0, &c);
        pattern(msg, sizeof(msg), 25);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        run_until(USEC_INFINITY);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_BS);
        assert_true(B.peer[0].sent_t[0] == T0 + 250 * MS);
}

static void test_n_cr_timeout(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(false, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 26);
        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        assert_int_equal(B.n_log, 1);
        /* N_Cr runs from our FC */
        assert_true(isotp_next_deadline(t) == T0 + 1000 * MS);
        run_until(T0 + 600 * MS);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        /* and again from each CF */
        assert_true(isotp_next_deadline(t) == T0 + 1600 * MS);
        isotp_tick(t, T0 + 1600 * MS - 1);
        run_until(T0 + 1600 * MS - 1);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        run_until(T0 + 1600 * MS);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_TIMEOUT_CR);
        assert_true(B.peer[0].rxfail_t[0] == T0 + 1600 * MS);
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
        assert_int_equal(isotp_result_to_errno(ISOTP_N_TIMEOUT_CR), -ETIMEDOUT);
        /* a late CF is ignored */
        INJECT(0, TESTER_ID, 0x22, msg[13], msg[14], msg[15], msg[16], msg[17], msg[18], msg[19]);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].n_msgs, 0);
        assert_int_equal(B.n_log, 1);
}

static void test_n_cr_after_block_fc(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(false, false, true);
        IsoTp *t;

        c.block_size = 1;
        t = peer_new(0, &c);
        pattern(msg, sizeof(msg), 27);
        INJECT(0, TESTER_ID, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        run_for(200 * MS);
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7], msg[8], msg[9], msg[10], msg[11], msg[12]);
        assert_int_equal(B.n_log, 2); /* FC after the block of 1 */
        EXPECT_FRAME(1, ECU_ID, 0x30, 0x01, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_true(isotp_next_deadline(t) == B.now + 1000 * MS);
        run_for(1000 * MS - 1);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        run_for(1);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_TIMEOUT_CR);
}

static void test_unexpected_sf_during_reception(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(false, true, true);

        peer_new(0, &c);
        pattern(msg, sizeof(msg), 28);
        INJECT(0, TESTER_ID, 0x57, 0x10, 62, msg[0], msg[1], msg[2], msg[3], msg[4]);
        INJECT(0, TESTER_ID, 0x57, 0x21, msg[5], msg[6], msg[7], msg[8], msg[9], msg[10]);
        INJECT(0, TESTER_ID, 0x57, 0x03, 0x22, 0xa0, 0x01, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_UNEXP_PDU);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], 3);
        assert_memory_equal(B.peer[0].msg[0], ((uint8_t[]) { 0x22, 0xa0, 0x01 }), 3);
        assert_string_equal(B.order, "FR");
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
        assert_int_equal(isotp_result_to_errno(ISOTP_N_UNEXP_PDU), -EBADMSG);
        /* the old message's CFs now mean nothing */
        INJECT(0, TESTER_ID, 0x57, 0x22, 1, 2, 3, 4, 5, 6);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].n_msgs, 1);
}

static void test_unexpected_ff_during_reception(void **state) {
        uint8_t m1[62], m2[20];
        IsoTpConfig c = config(false, false, true);

        peer_new(0, &c);
        pattern(m1, sizeof(m1), 29);
        pattern(m2, sizeof(m2), 30);
        INJECT(0, TESTER_ID, 0x10, 62, m1[0], m1[1], m1[2], m1[3], m1[4], m1[5]);
        INJECT(0, TESTER_ID, 0x21, m1[6], m1[7], m1[8], m1[9], m1[10], m1[11], m1[12]);
        assert_int_equal(B.n_log, 1);
        INJECT(0, TESTER_ID, 0x10, 20, m2[0], m2[1], m2[2], m2[3], m2[4], m2[5]);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_UNEXP_PDU);
        /* a new FC for the new message */
        assert_int_equal(B.n_log, 2);
        EXPECT_FRAME(1, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        INJECT(0, TESTER_ID, 0x21, m2[6], m2[7], m2[8], m2[9], m2[10], m2[11], m2[12]);
        INJECT(0, TESTER_ID, 0x22, m2[13], m2[14], m2[15], m2[16], m2[17], m2[18], m2[19]);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], 20);
        assert_memory_equal(B.peer[0].msg[0], m2, 20);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_string_equal(B.order, "FR");
}

static void test_other_id_or_address_ignored(void **state) {
        uint8_t msg[20];
        IsoTpConfig cn = config(false, false, true), ce = config(false, true, true);

        peer_new(0, &cn);
        peer_new(1, &ce);
        pattern(msg, sizeof(msg), 31);

        /* idle */
        INJECT(0, 0x751, 0x02, 0x3e, 0x00);
        INJECT(0, ECU_ID, 0x02, 0x3e, 0x00); /* our own tx id */
        INJECT(0, TESTER_ID | CAN_EFF_FLAG, 0x02, 0x3e, 0x00);
        INJECT(0, TESTER_ID | CAN_RTR_FLAG, 0x02, 0x3e, 0x00);
        INJECT(0, TESTER_ID | CAN_ERR_FLAG, 0x02, 0x3e, 0x00);
        INJECT(0, 0x751, 0x10, 20, 1, 2, 3, 4, 5, 6);
        INJECT(1, TESTER_ID, 0x40, 0x02, 0x3e, 0x00);
        INJECT(1, TESTER_ID, 0x58, 0x02, 0x3e, 0x00);
        INJECT(1, 0x751, 0x57, 0x02, 0x3e, 0x00);
        INJECT(1, TESTER_ID, 0x40, 0x10, 20, 1, 2, 3, 4, 5);
        assert_int_equal(B.peer[0].n_msgs, 0);
        assert_int_equal(B.peer[1].n_msgs, 0);
        assert_int_equal(B.n_log, 0);
        /* while the right frames are taken */
        INJECT(0, TESTER_ID, 0x02, 0x3e, 0x00);
        INJECT(1, TESTER_ID, 0x57, 0x02, 0x3e, 0x00);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[1].n_msgs, 1);

        /* during a reception, foreign CFs neither count nor break it */
        INJECT(1, TESTER_ID, 0x57, 0x10, 20, msg[0], msg[1], msg[2], msg[3], msg[4]);
        assert_int_equal(B.n_log, 1);
        INJECT(1, TESTER_ID, 0x40, 0x21, 9, 9, 9, 9, 9, 9);
        INJECT(1, 0x751, 0x57, 0x21, 9, 9, 9, 9, 9, 9);
        INJECT(1, TESTER_ID, 0x40, 0x03, 9, 9, 9, 0x55, 0x55, 0x55); /* would be UNEXP_PDU */
        INJECT(1, TESTER_ID, 0x57, 0x21, msg[5], msg[6], msg[7], msg[8], msg[9], msg[10]);
        INJECT(1, TESTER_ID, 0x40, 0x22, 9, 9, 9, 9, 9, 9);
        INJECT(1, TESTER_ID, 0x57, 0x22, msg[11], msg[12], msg[13], msg[14], msg[15], msg[16]);
        INJECT(1, TESTER_ID, 0x57, 0x23, msg[17], msg[18], msg[19], 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[1].n_rxfail, 0);
        assert_int_equal(B.peer[1].n_msgs, 2);
        assert_int_equal(B.peer[1].msg_size[1], 20);
        assert_memory_equal(B.peer[1].msg[1], msg, 20);
        assert_int_equal(B.n_log, 1);
}

static void test_fc_other_address_ignored(void **state) {
        uint8_t msg[20];
        IsoTpConfig c = config(true, true, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 32);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x40, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55);
        INJECT(0, 0x759, 0x57, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55);
        INJECT(0, ECU_ID, 0x40, 0x32, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 1);
        run_until(USEC_INFINITY);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_BS);
}

static void test_truncated_last_cf(void **state) {
        uint8_t msg[8] = { 0x31, 0x01, 0xa1, 0x02, 0x02, 0x11, 0x22, 0x33 };
        IsoTpConfig c = config(false, false, true);

        peer_new(0, &c);
        /* an unpadded last CF that carries all the data left is complete */
        INJECT(0, TESTER_ID, 0x10, 0x08, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        INJECT(0, TESTER_ID, 0x21, msg[6], msg[7]);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].msg_size[0], 8);
        assert_memory_equal(B.peer[0].msg[0], msg, 8);

        /* one byte short: rejected */
        INJECT(0, TESTER_ID, 0x10, 0x08, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
        INJECT(0, TESTER_ID, 0x21, msg[6]);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_ERROR);
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
        /* and what follows does not complete it */
        INJECT(0, TESTER_ID, 0x22, msg[7]);
        assert_int_equal(B.peer[0].n_msgs, 1);

        /* a short CF in the middle is missing data too */
        uint8_t big[30];
        pattern(big, sizeof(big), 33);
        INJECT(0, TESTER_ID, 0x10, 30, big[0], big[1], big[2], big[3], big[4], big[5]);
        INJECT(0, TESTER_ID, 0x21, big[6], big[7], big[8], big[9], big[10], big[11]);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_int_equal(B.peer[0].n_rxfail, 2);
        assert_int_equal(B.peer[0].rxfail[1], ISOTP_N_ERROR);

        /* extended addressing: an unpadded last CF */
        reset();
        c = config(false, true, false);
        peer_new(0, &c);
        INJECT(0, TESTER_ID, 0x57, 0x10, 0x08, msg[0], msg[1], msg[2], msg[3], msg[4]);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, ECU_ID, 0x57, 0x30, 0x00, 0x00);
        INJECT(0, TESTER_ID, 0x57, 0x21, msg[5], msg[6], msg[7]);
        assert_int_equal(B.peer[0].n_msgs, 1);
        assert_memory_equal(B.peer[0].msg[0], msg, 8);
}

static void test_ff_invalid_ignored(void **state) {
        IsoTpConfig cn = config(false, false, true), ce = config(false, true, true);

        peer_new(0, &cn);
        peer_new(1, &ce);
        /* FF_DL that would fit a single frame */
        INJECT(0, TESTER_ID, 0x10, 0x07, 1, 2, 3, 4, 5, 6);
        INJECT(0, TESTER_ID, 0x10, 0x01, 1, 2, 3, 4, 5, 6);
        INJECT(1, TESTER_ID, 0x57, 0x10, 0x06, 1, 2, 3, 4, 5);
        /* a first frame always fills the CAN frame */
        INJECT(0, TESTER_ID, 0x10, 0x20, 1, 2, 3, 4, 5);
        INJECT(1, TESTER_ID, 0x57, 0x10, 0x20, 1, 2, 3, 4);
        assert_int_equal(B.n_log, 0);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[1].n_rxfail, 0);
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
        assert_true(isotp_next_deadline(B.peer[1].tp) == USEC_INFINITY);
        /* a CF when nothing is being received */
        INJECT(0, TESTER_ID, 0x21, 1, 2, 3, 4, 5, 6, 7);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.peer[0].n_msgs, 0);
        /* the smallest valid FF_DL: 8 (normal), 7 (extended) */
        INJECT(0, TESTER_ID, 0x10, 0x08, 1, 2, 3, 4, 5, 6);
        INJECT(1, TESTER_ID, 0x57, 0x10, 0x07, 1, 2, 3, 4, 5);
        assert_int_equal(B.n_log, 2);
        /* reserved PCI types */
        INJECT(0, TESTER_ID, 0x40, 1, 2, 3, 4, 5, 6, 7);
        INJECT(0, TESTER_ID, 0xf0, 1, 2, 3, 4, 5, 6, 7);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_int_equal(B.n_log, 2);
}

static void test_ff_dl_escape_overflow(void **state) {
        IsoTpConfig cn = config(false, false, true), ce = config(false, true, true);

        peer_new(0, &cn);
        peer_new(1, &ce);
        /* FF_DL = 0 and a 32-bit length: more than classic ISO-TP can take */
        INJECT(0, TESTER_ID, 0x10, 0x00, 0x00, 0x00, 0x10, 0x00, 0xaa, 0xbb);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, ECU_ID, 0x32, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        INJECT(1, TESTER_ID, 0x57, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0xaa);
        assert_int_equal(B.n_log, 2);
        EXPECT_FRAME(1, ECU_ID, 0x57, 0x32, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55);
        /* nothing is being received afterwards */
        INJECT(0, TESTER_ID, 0x21, 1, 2, 3, 4, 5, 6, 7);
        assert_int_equal(B.peer[0].n_msgs, 0);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        assert_true(isotp_next_deadline(B.peer[0].tp) == USEC_INFINITY);
        assert_true(isotp_next_deadline(B.peer[1].tp) == USEC_INFINITY);
}

/* ---------------------------------------------------------------- the bus refusing frames */

static void test_eagain_retried(void **state) {
        uint8_t msg[20];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        B.peer[0].busy = 3;
        assert_int_equal(isotp_send(t, ((uint8_t[]) { 0x3e, 0x00 }), 2, B.now), 0);
        assert_int_equal(B.n_log, 0);
        assert_int_equal(B.peer[0].n_sent, 0);
        assert_true(isotp_sending(t));
        assert_true(isotp_next_deadline(t) > T0);
        assert_true(isotp_next_deadline(t) <= T0 + 10 * MS);
        run_until(T0 + 100 * MS);
        assert_int_equal(B.peer[0].attempts, 4);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, TESTER_ID, 0x02, 0x3e, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_true(B.log[0].t > T0);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);

        /* a busy bus in the middle of the CFs: each CF goes out once, in order */
        pattern(msg, sizeof(msg), 34);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        assert_int_equal(B.n_log, 2);
        B.peer[0].busy = 2;
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        run_until(USEC_INFINITY);
        assert_int_equal(B.n_log, 2 + 2);
        assert_int_equal(B.log[2].f.data[0], 0x21);
        assert_int_equal(B.log[3].f.data[0], 0x22);
        assert_int_equal(B.peer[0].n_sent, 2);
        assert_int_equal(B.peer[0].sent[1], ISOTP_N_OK);
        assert_memory_equal(B.log[2].f.data + 1, msg + 6, 7);
        assert_memory_equal(B.log[3].f.data + 1, msg + 13, 7);
}

/* Batches the link takes only in part, and a busy bus between them: every CF goes out
 * once, in order, and no batch is larger than ISOTP_TX_BATCH. */
static void test_batch_partial_and_busy(void **state) {
        static uint8_t msg[ISOTP_MAX_MESSAGE];
        IsoTpConfig c = config(true, false, true);
        size_t ncf = n_cf(sizeof(msg), false);
        IsoTp *t;

        B.batched = true;
        t = peer_new(0, &c);
        B.peer[0].batch_limit = 5;
        pattern(msg, sizeof(msg), 40);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].batch[0], ISOTP_TX_BATCH);
        assert_int_equal(B.n_log, 1 + ncf);
        assert_int_equal(B.peer[0].n_sent, 1);
        verify_sender_frames(0, TESTER_ID, false, true, msg, sizeof(msg));
        for (unsigned i = 0; i < B.peer[0].n_batches; i++)
                assert_true(B.peer[0].batch[i] >= 2 && B.peer[0].batch[i] <= ISOTP_TX_BATCH);
        /* a batch taken 5 at a time: the rest is offered again at once */
        assert_true(B.peer[0].n_batches >= ncf / 5);

        /* the bus full when the batch of the next message comes: retried shortly, whole */
        B.n_log = B.n_delivered = 0;
        B.peer[0].n_batches = 0;
        B.peer[0].batch_limit = 0;
        assert_int_equal(isotp_send(t, msg, 200, B.now), 0);
        B.peer[0].busy = 2;
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 1);
        run_until(USEC_INFINITY);
        assert_int_equal(B.peer[0].n_batches, 3);
        assert_int_equal(B.n_log, 1 + n_cf(200, false));
        verify_sender_frames(0, TESTER_ID, false, true, msg, 200);
        assert_int_equal(B.peer[0].n_sent, 2);
        assert_int_equal(B.peer[0].sent[1], ISOTP_N_OK);
}

/* The frame gap adds to STmin, as the kernel's frame_txtime does, and a gap means no batch. */
static void test_frame_gap(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t;

        c.frame_gap = 2 * MS;
        B.batched = true;
        t = peer_new(0, &c);
        pattern(msg, sizeof(msg), 41);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x01, 0x55, 0x55, 0x55, 0x55, 0x55);
        run_until(USEC_INFINITY);
        assert_int_equal(B.n_log, 1 + n_cf(sizeof(msg), false));
        verify_sender_frames(0, TESTER_ID, false, true, msg, sizeof(msg));
        for (size_t i = 2; i < B.n_log; i++)
                assert_true(B.log[i].t - B.log[i - 1].t == 3 * MS);
        assert_int_equal(B.peer[0].n_batches, 0);

        /* 0 explicitly: back to back, in batches */
        isotp_free(B.peer[0].tp);
        B.peer[0] = (Peer) {};
        B.n_log = B.n_delivered = 0;
        c.frame_gap = 0;
        t = peer_new(0, &c);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.n_log, 1 + n_cf(sizeof(msg), false));
        assert_int_equal(B.peer[0].n_batches, 1);
        assert_int_equal(B.peer[0].batch[0], n_cf(sizeof(msg), false));
}

static void test_eagain_timeout_a(void **state) {
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        B.peer[0].always_busy = true;
        assert_int_equal(isotp_send(t, ((uint8_t[]) { 0x3e, 0x00 }), 2, B.now), 0);
        run_until(T0 + 1000 * MS - 1);
        assert_int_equal(B.peer[0].n_sent, 0);
        assert_true(B.peer[0].attempts > 2);
        run_until(T0 + 1000 * MS);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_A);
        assert_true(B.peer[0].sent_t[0] == T0 + 1000 * MS);
        assert_false(isotp_sending(t));
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
        assert_int_equal(B.n_log, 0);
        assert_int_equal(isotp_result_to_errno(ISOTP_N_TIMEOUT_A), -ETIMEDOUT);
}

static void test_eagain_timeout_a_cf(void **state) {
        uint8_t msg[20];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t;

        c.n_as = 50 * MS;
        t = peer_new(0, &c);
        pattern(msg, sizeof(msg), 35);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        run_for(10 * MS);
        B.peer[0].always_busy = true;
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        usec_t t_fc = B.now;
        run_until(USEC_INFINITY);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_A);
        assert_true(B.peer[0].sent_t[0] == t_fc + 50 * MS);
        assert_int_equal(B.n_log, 1);
}

static void test_eagain_timeout_a_from_time_zero(void **state) {
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        /* The caller's clock may read 0 (a test clock, a clock that just started): N_As
         * is still n_as from the first refusal. */
        B.now = 0;
        B.peer[0].always_busy = true;
        assert_int_equal(isotp_send(t, ((uint8_t[]) { 0x3e, 0x00 }), 2, B.now), 0);
        run_until(1000 * MS);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_TIMEOUT_A);
        assert_true(B.peer[0].sent_t[0] == 1000 * MS);
}

static void test_eagain_fc_timeout_a(void **state) {
        IsoTpConfig c = config(false, false, true);
        IsoTp *t = peer_new(0, &c);

        /* our FC cannot get out: N_Ar */
        B.peer[0].busy = 5;
        INJECT(0, TESTER_ID, 0x10, 20, 1, 2, 3, 4, 5, 6);
        assert_int_equal(B.n_log, 0);
        run_for(100 * MS);
        assert_int_equal(B.n_log, 1);
        EXPECT_FRAME(0, ECU_ID, 0x30, 0x00, 0x00, 0x55, 0x55, 0x55, 0x55, 0x55);
        assert_int_equal(B.peer[0].n_rxfail, 0);

        reset();
        t = peer_new(0, &c);
        B.peer[0].always_busy = true;
        INJECT(0, TESTER_ID, 0x10, 20, 1, 2, 3, 4, 5, 6);
        run_until(T0 + 1000 * MS - 1);
        assert_int_equal(B.peer[0].n_rxfail, 0);
        run_until(T0 + 1000 * MS);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_TIMEOUT_A);
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
}

static void test_send_frame_error(void **state) {
        uint8_t msg[20];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        B.peer[0].fail = -EIO;
        assert_int_equal(isotp_send(t, ((uint8_t[]) { 0x3e, 0x00 }), 2, B.now), 0);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_ERROR);
        assert_false(isotp_sending(t));

        B.peer[0].fail = 0;
        pattern(msg, sizeof(msg), 36);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        B.peer[0].fail = -ENETDOWN;
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        assert_int_equal(B.peer[0].n_sent, 2);
        assert_int_equal(B.peer[0].sent[1], ISOTP_N_ERROR);
        assert_false(isotp_sending(t));

        /* receiver: the FC fails */
        reset();
        c = config(false, false, true);
        peer_new(0, &c);
        B.peer[0].fail = -EIO;
        INJECT(0, TESTER_ID, 0x10, 20, 1, 2, 3, 4, 5, 6);
        assert_int_equal(B.peer[0].n_rxfail, 1);
        assert_int_equal(B.peer[0].rxfail[0], ISOTP_N_ERROR);
}

/* ---------------------------------------------------------------- API */

static void test_send_errors(void **state) {
        static uint8_t msg[4096];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 37);
        assert_int_equal(isotp_send(t, msg, 4096, B.now), -EMSGSIZE);
        assert_int_equal(isotp_send(t, msg, 0, B.now), -EINVAL);
        assert_int_equal(B.n_log, 0);
        assert_int_equal(B.peer[0].n_sent, 0);
        assert_false(isotp_sending(t));

        assert_int_equal(isotp_send(t, msg, 62, B.now), 0);
        assert_int_equal(isotp_send(t, msg + 100, 62, B.now), -EBUSY);
        assert_int_equal(isotp_send(t, msg, 3, B.now), -EBUSY);
        assert_int_equal(B.n_log, 1);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        /* the message in progress was not disturbed */
        verify_sender_frames(0, TESTER_ID, false, true, msg, 62);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
        /* free again */
        assert_int_equal(isotp_send(t, msg, 4095, B.now), 0);
        EXPECT_FRAME(B.n_log - 1, TESTER_ID, 0x1f, 0xff, msg[0], msg[1], msg[2], msg[3], msg[4], msg[5]);
}

static void test_abort_send(void **state) {
        uint8_t msg[62];
        IsoTpConfig c = config(true, false, true);
        IsoTp *t = peer_new(0, &c);

        pattern(msg, sizeof(msg), 38);
        assert_int_equal(isotp_send(t, msg, sizeof(msg), B.now), 0);
        isotp_abort_send(t);
        assert_false(isotp_sending(t));
        assert_true(isotp_next_deadline(t) == USEC_INFINITY);
        run_for(5 * USEC_PER_SEC);
        assert_int_equal(B.peer[0].n_sent, 0);
        INJECT(0, ECU_ID, 0x30, 0x00, 0x00);
        assert_int_equal(B.n_log, 1);
        assert_int_equal(isotp_send(t, msg, 5, B.now), 0);
        assert_int_equal(B.peer[0].n_sent, 1);
        assert_int_equal(B.peer[0].sent[0], ISOTP_N_OK);
}

static void test_config_validate(void **state) {
        IsoTpConfig base = config(true, true, true), c;
        const char *reason;
        IsoTp *t = NULL;

        reason = NULL;
        assert_int_equal(isotp_config_validate(&base, &reason), 0);
        assert_int_equal(isotp_config_validate(&base, NULL), 0);

#define REJECT(stmt)                                                            \
        do {                                                                    \
                c = base;                                                       \
                stmt;                                                           \
                reason = NULL;                                                  \
                assert_int_equal(isotp_config_validate(&c, &reason), -EINVAL);  \
                assert_non_null(reason);                                        \
                assert_true(strlen(reason) > 0);                                \
                assert_int_equal(isotp_config_validate(&c, NULL), -EINVAL);     \
                assert_int_equal(isotp_new(&c, &callbacks, NULL, &t), -EINVAL); \
        } while (0)
#define ACCEPT(stmt)                                                  \
        do {                                                          \
                c = base;                                             \
                stmt;                                                 \
                assert_int_equal(isotp_config_validate(&c, NULL), 0); \
        } while (0)

        REJECT(c.rx_id = c.tx_id);
        REJECT(c.tx_id = 0x800);
        REJECT(c.rx_id = 0xfff);
        REJECT(c.tx_id = 0x750 | CAN_RTR_FLAG);
        REJECT(c.rx_id = 0x758 | CAN_ERR_FLAG);
        REJECT(c.st_min = 0x80);
        REJECT(c.st_min = 0xf0);
        REJECT(c.st_min = 0xfa);
        REJECT(c.st_min = 0xff);
        REJECT(c.n_as = 0);
        REJECT(c.n_bs = 0);
        REJECT(c.n_cr = 0);
        REJECT(c.max_wait = 256);
        ACCEPT(c.tx_id = 0x7ff);
        ACCEPT(c.tx_id = 0x1fffffff | CAN_EFF_FLAG);
        ACCEPT(c.tx_id = 0x800 | CAN_EFF_FLAG);
        ACCEPT(c.st_min = 0x7f);
        ACCEPT(c.st_min = 0xf1);
        ACCEPT(c.st_min = 0xf9);
        ACCEPT(c.max_wait = 255);
        ACCEPT(c.max_wait = 0);
        ACCEPT(c.block_size = 255);
        ACCEPT(c.frame_gap = 0);
        ACCEPT(c.frame_gap = 127 * MS);
        REJECT(c.frame_gap = 127 * MS + 1);
#undef REJECT
#undef ACCEPT

        /* no send_frame callback */
        IsoTpCallbacks none = { 0 };
        assert_int_equal(isotp_new(&base, &none, NULL, &t), -EINVAL);
        assert_null(t);
}

static void test_st_min_to_usec(void **state) {
        assert_true(isotp_st_min_to_usec(0x00) == 0);
        assert_true(isotp_st_min_to_usec(0x01) == 1000);
        assert_true(isotp_st_min_to_usec(0x0a) == 10000);
        assert_true(isotp_st_min_to_usec(0x7f) == 127000);
        assert_true(isotp_st_min_to_usec(0xf1) == 100);
        assert_true(isotp_st_min_to_usec(0xf5) == 500);
        assert_true(isotp_st_min_to_usec(0xf9) == 900);
        /* reserved values: the longest, 127 ms */
        assert_true(isotp_st_min_to_usec(0x80) == 127000);
        assert_true(isotp_st_min_to_usec(0xf0) == 127000);
        assert_true(isotp_st_min_to_usec(0xfa) == 127000);
        assert_true(isotp_st_min_to_usec(0xff) == 127000);
        for (unsigned v = 0; v <= 0xff; v++) {
                usec_t want = v <= 0x7f ? v * 1000 : ((v >= 0xf1 && v <= 0xf9) ? (v - 0xf0) * 100 : 127000);
                assert_true(isotp_st_min_to_usec((uint8_t) v) == want);
        }
}

static void test_result_strings(void **state) {
        for (int r = 0; r < _ISOTP_N_MAX; r++) {
                const char *s = isotp_result_to_string((IsoTpResult) r);
                assert_non_null(s);
                assert_true(strlen(s) > 0);
                for (int q = 0; q < r; q++)
                        assert_string_not_equal(s, isotp_result_to_string((IsoTpResult) q));
                if (r == ISOTP_N_OK)
                        assert_int_equal(isotp_result_to_errno((IsoTpResult) r), 0);
                else
                        assert_true(isotp_result_to_errno((IsoTpResult) r) < 0);
        }
        assert_non_null(isotp_result_to_string(_ISOTP_N_MAX));
        assert_non_null(isotp_result_to_string((IsoTpResult) 1000));
        assert_non_null(isotp_result_to_string((IsoTpResult) -1));
        assert_non_null(strstr(isotp_result_to_string(ISOTP_N_WRONG_SN), "N_WRONG_SN"));
        assert_non_null(strstr(isotp_result_to_string(ISOTP_N_TIMEOUT_BS), "N_TIMEOUT_Bs"));
        assert_int_equal(isotp_result_to_errno(ISOTP_N_INVALID_FS), -EBADMSG);
}

/* A user that sends the next message from the sent() callback (as a UDS client does). */
static IsoTp *resend_tp;
static unsigned resend_left;
static void cb_sent_resend(void *userdata, IsoTpResult result) {
        cb_sent(userdata, result);
        if (resend_left > 0) {
                resend_left--;
                assert_int_equal(isotp_send(resend_tp, ((uint8_t[]) { 0x3e, 0x80 }), 2, B.now), 0);
        }
}

static void test_sent_callback_can_send_again(void **state) {
        static const IsoTpCallbacks cbs = {
                .send_frame = cb_send_frame,
                .received = cb_received,
                .sent = cb_sent_resend,
                .receive_failed = cb_receive_failed,
        };
        IsoTpConfig c = config(true, false, false);
        Peer *p = &B.peer[0];

        assert_int_equal(isotp_new(&c, &cbs, p, &p->tp), 0);
        resend_tp = p->tp;
        resend_left = 3;
        assert_int_equal(isotp_send(p->tp, ((uint8_t[]) { 0x3e, 0x00 }), 2, B.now), 0);
        assert_int_equal(B.n_log, 4);
        EXPECT_FRAME(0, TESTER_ID, 0x02, 0x3e, 0x00);
        EXPECT_FRAME(3, TESTER_ID, 0x02, 0x3e, 0x80);
        assert_int_equal(p->n_sent, 4);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(p->sent[i], ISOTP_N_OK);
        assert_false(isotp_sending(p->tp));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_sf_normal_padded),
                T(test_sf_extended_padded),
                T(test_sf_unpadded),
                T(test_config_defaults),
                T(test_sf_receive),
                T(test_sf_invalid_length_ignored),
                T(test_ff_boundary),
                T(test_mf_send_8),
                T(test_mf_send_8_unpadded_extended),
                T(test_mf_send_sizes),
                T(test_mf_send_62_exact),
                T(test_mf_send_4095_exact),
                T(test_ff_length_encoding),
                T(test_mf_receive),
                T(test_mf_receive_8_exact),
                T(test_loopback_normal),
                T(test_loopback_batched),
                T(test_loopback_extended),
                T(test_loopback_wait_frames),
                T(test_loopback_full_duplex),
                T(test_loopback_29bit_ids),
                T(test_block_size_fc_per_block),
                T(test_first_fc_fixes_bs_and_st_min),
                T(test_fc_wait_up_to_max_wait),
                T(test_fc_wait_counter_per_block),
                T(test_fc_wait_max_wait_zero),
                T(test_fc_wait_then_n_bs),
                T(test_receiver_wait_frames),
                T(test_loopback_too_many_wait_frames),
                T(test_fc_overflow),
                T(test_fc_invalid_fs),
                T(test_fc_ignored_when_not_expected),
                T(test_wrong_sn),
                T(test_wrong_sn_at_wrap),
                T(test_n_bs_timeout),
                T(test_n_bs_custom),
                T(test_n_cr_timeout),
                T(test_n_cr_after_block_fc),
                T(test_unexpected_sf_during_reception),
                T(test_unexpected_ff_during_reception),
                T(test_other_id_or_address_ignored),
                T(test_fc_other_address_ignored),
                T(test_truncated_last_cf),
                T(test_ff_invalid_ignored),
                T(test_ff_dl_escape_overflow),
                T(test_eagain_retried),
                T(test_eagain_timeout_a),
                T(test_batch_partial_and_busy),
                T(test_frame_gap),
                T(test_eagain_timeout_a_cf),
                T(test_eagain_timeout_a_from_time_zero),
                T(test_eagain_fc_timeout_a),
                T(test_send_frame_error),
                T(test_send_errors),
                T(test_abort_send),
                T(test_sent_callback_can_send_again),
                T(test_config_validate),
                T(test_st_min_to_usec),
                T(test_result_strings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
