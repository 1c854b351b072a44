/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzzes the ISO-TP engine (lib/isotp.c) on a fake clock.
 *
 * Byte 0 picks the mode:
 *   even: one engine, fed arbitrary CAN frames (single, first, consecutive and flow control
 *         frames, raw frames, frames for other ids), time steps, isotp_send() calls, bus
 *         busy/failure answers, aborts and flow control changes, under a fuzzed
 *         configuration (normal or extended addressing, 11 or 29-bit ids, padding, BS,
 *         STmin, FC.WAIT frames, N_WFTmax, timeouts, also invalid ones);
 *   odd:  two engines wired back to back (full duplex), with fuzzed messages, flow control,
 *         bus busy answers and time steps that stay inside the timeouts.
 *
 * What is checked (each promised by isotp.h or by ISO 15765-2 as isotp.h cites it):
 *   - every frame handed to send_frame() has len <= 8, our CAN id, our address byte, a
 *     valid PCI; padded to 8 bytes with the padding byte when padding is on;
 *   - the single/first/consecutive frames that went out carry exactly the message given to
 *     isotp_send(), in order, with sequence numbers 1, 2, ... 15, 0, 1, ...; sent(N_OK)
 *     comes only after all of it went out;
 *   - flow control frames advertise the configured BS and STmin;
 *   - sent() runs at most once per accepted isotp_send(), never after isotp_abort_send(),
 *     with a sender's N_Result; isotp_sending() agrees; isotp_send()'s return codes;
 *   - received() gets 1..4095 bytes: a single frame's payload, or a message of the size
 *     announced by the last valid first frame, starting with its bytes; receive_failed()
 *     gets a receiver's N_Result;
 *   - after isotp_tick(now), isotp_next_deadline() is not in the past;
 *   - back to back: a message is delivered exactly as sent, at most once, and a sender's
 *     N_OK means the peer has it (the clock steps stay well inside N_As/N_Bs/N_Cr).
 */
#include <stdio.h>

#include "fuzz.h"
#include "isotp.h"

#define MS USEC_PER_MSEC
#define T0 (1000 * USEC_PER_SEC)
#define QUEUE_MAX 8192
#define MAX_OPS 2048

typedef struct Side {
        IsoTp *tp;
        IsoTpConfig cfg;   /* as created, with the flow control last set */
        struct Side *peer; /* back to back only */

        /* send_frame() answers: */
        unsigned busy; /* -EAGAIN (or -ENOBUFS) this many more times */
        bool busy_enobufs;
        int fail; /* this error once, when non-zero */

        /* the message isotp_send() accepted, and what of it went out */
        bool pending;
        uint8_t msg[ISOTP_MAX_MESSAGE];
        size_t msg_size;
        bool shadow_started;
        size_t shadow_off;
        uint8_t shadow_sn;
        bool ok_unchecked; /* sent(N_OK) came; the peer's delivery is still to be checked */

        /* back to back: the message the peer is sending us */
        bool expect, delivered;
        uint8_t expect_msg[ISOTP_MAX_MESSAGE];
        size_t expect_size;

        /* one engine: what we fed last */
        bool in_handle_frame;
        uint8_t last_sf[8];
        size_t last_sf_size;
        bool last_was_sf;
        size_t last_ff_size; /* 0: no valid first frame fed yet */
        uint8_t last_ff[6];
        size_t last_ff_first;
        uint8_t auto_sn;
        size_t auto_off;
} Side;

typedef struct Queued {
        struct can_frame f;
        Side *to;
} Queued;

static struct {
        bool loopback;
        usec_t now;
        Side side[2];
        Queued queue[QUEUE_MAX];
        size_t q_head, q_len;
} S;

static size_t addr_len(const Side *s) {
        return s->cfg.extended ? 1 : 0;
}

static size_t sf_cap(const Side *s) {
        return 7 - addr_len(s);
}

static void check_padding(const Side *s, const uint8_t *p, size_t from, size_t n) {
        if (!s->cfg.tx_padding)
                return;
        for (size_t i = from; i < n; i++)
                FUZZ_CHECK(p[i] == s->cfg.padding_byte);
}

/* Checks a frame that went out against the message being sent. */
static void account_frame(Side *s, const struct can_frame *f) {
        size_t off = addr_len(s), cap = sf_cap(s), n = f->len - off, size, want;
        const uint8_t *p = f->data + off;

        switch (p[0] >> 4) {
        case 0: /* single frame */
                size = p[0] & 0x0f;
                FUZZ_CHECK(s->pending && !s->shadow_started);
                FUZZ_CHECK(size >= 1 && size <= cap && n >= 1 + size);
                FUZZ_CHECK(size == s->msg_size && memcmp(p + 1, s->msg, size) == 0);
                FUZZ_CHECK(s->cfg.tx_padding || n == 1 + size);
                check_padding(s, p, 1 + size, n);
                s->shadow_started = true;
                s->shadow_off = size;
                break;
        case 1: /* first frame: fills the CAN frame */
                size = (size_t) (p[0] & 0x0f) << 8 | p[1];
                FUZZ_CHECK(s->pending && !s->shadow_started);
                FUZZ_CHECK(n == 8 - off);
                FUZZ_CHECK(size == s->msg_size && size > cap);
                FUZZ_CHECK(memcmp(p + 2, s->msg, n - 2) == 0);
                s->shadow_started = true;
                s->shadow_off = n - 2;
                s->shadow_sn = 1;
                break;
        case 2: /* consecutive frame */
                FUZZ_CHECK(s->pending && s->shadow_started && s->shadow_off < s->msg_size);
                FUZZ_CHECK((p[0] & 0x0f) == s->shadow_sn);
                want = MIN(cap, s->msg_size - s->shadow_off);
                FUZZ_CHECK(n >= 1 + want);
                FUZZ_CHECK(s->cfg.tx_padding || n == 1 + want);
                FUZZ_CHECK(memcmp(p + 1, s->msg + s->shadow_off, want) == 0);
                check_padding(s, p, 1 + want, n);
                s->shadow_off += want;
                s->shadow_sn = (s->shadow_sn + 1) & 0x0f;
                break;
        case 3: /* flow control, from our receiver */
                FUZZ_CHECK(n >= 3);
                FUZZ_CHECK((p[0] & 0x0f) <= 2);
                if ((p[0] & 0x0f) != 2) {
                        FUZZ_CHECK(p[1] == s->cfg.block_size);
                        FUZZ_CHECK(p[2] == s->cfg.st_min);
                }
                FUZZ_CHECK(s->cfg.tx_padding || n == 3);
                check_padding(s, p, 3, n);
                break;
        default:
                FUZZ_CHECK(!"a frame with a reserved PCI type went out");
        }
}

static int on_send_frame(void *userdata, const struct can_frame *f) {
        Side *s = userdata;
        int r;

        FUZZ_CHECK(f->len <= CAN_MAX_DLEN);
        FUZZ_CHECK(f->can_id == s->cfg.tx_id);
        FUZZ_CHECK(f->len >= addr_len(s) + 1);
        FUZZ_CHECK(!s->cfg.extended || f->data[0] == s->cfg.tx_ext_address);
        FUZZ_CHECK(!s->cfg.tx_padding || f->len == CAN_MAX_DLEN);

        if (s->fail) {
                r = s->fail;
                s->fail = 0;
                return r;
        }
        if (s->busy > 0) {
                s->busy--;
                return s->busy_enobufs ? -ENOBUFS : -EAGAIN;
        }

        account_frame(s, f);

        if (S.loopback) {
                FUZZ_CHECK(S.q_len < QUEUE_MAX);
                S.queue[(S.q_head + S.q_len) % QUEUE_MAX] = (Queued) { .f = *f, .to = s->peer };
                S.q_len++;
        }
        return 0;
}

static void on_received(void *userdata, const uint8_t *data, size_t size) {
        Side *s = userdata;
        volatile uint8_t sum = 0;

        FUZZ_CHECK(size >= 1 && size <= ISOTP_MAX_MESSAGE);
        for (size_t i = 0; i < size; i++) /* the whole buffer must be readable */
                sum += data[i];
        (void) sum;

        if (S.loopback) {
                FUZZ_CHECK(s->expect && !s->delivered);
                FUZZ_CHECK(size == s->expect_size && memcmp(data, s->expect_msg, size) == 0);
                s->delivered = true;
                return;
        }

        /* Only a frame we feed completes a message. */
        FUZZ_CHECK(s->in_handle_frame);
        if (s->last_was_sf) {
                FUZZ_CHECK(size == s->last_sf_size && memcmp(data, s->last_sf, size) == 0);
                return;
        }
        FUZZ_CHECK(size > sf_cap(s));
        FUZZ_CHECK(size == s->last_ff_size);
        FUZZ_CHECK(memcmp(data, s->last_ff, s->last_ff_first) == 0);
}

static void on_sent(void *userdata, IsoTpResult result) {
        Side *s = userdata;

        FUZZ_CHECK(s->pending);
        s->pending = false;
        /* the N_Results a sender can see */
        FUZZ_CHECK(result == ISOTP_N_OK || result == ISOTP_N_TIMEOUT_A || result == ISOTP_N_TIMEOUT_BS ||
                   result == ISOTP_N_INVALID_FS || result == ISOTP_N_WFT_OVRN ||
                   result == ISOTP_N_BUFFER_OVFLW || result == ISOTP_N_ERROR);
        FUZZ_CHECK(isotp_result_to_string(result) != NULL);
        FUZZ_CHECK((isotp_result_to_errno(result) == 0) == (result == ISOTP_N_OK));
        FUZZ_CHECK(isotp_result_to_errno(result) <= 0);
        if (result == ISOTP_N_OK) {
                FUZZ_CHECK(s->shadow_started && s->shadow_off == s->msg_size);
                s->ok_unchecked = S.loopback;
        }
}

static void on_receive_failed(void *userdata, IsoTpResult result) {
        /* the N_Results a receiver can see */
        FUZZ_CHECK(result == ISOTP_N_TIMEOUT_A || result == ISOTP_N_TIMEOUT_CR || result == ISOTP_N_WRONG_SN ||
                   result == ISOTP_N_UNEXP_PDU || result == ISOTP_N_ERROR);
        FUZZ_CHECK(isotp_result_to_string(result) != NULL);
        FUZZ_CHECK(isotp_result_to_errno(result) < 0);
}

/* As sendmmsg() does: in order, until one is refused; how many went out. */
static int on_send_frames(void *userdata, const struct can_frame *frames, size_t n) {
        int r;

        FUZZ_CHECK(n >= 2 && n <= ISOTP_TX_BATCH);
        for (size_t i = 0; i < n; i++) {
                r = on_send_frame(userdata, &frames[i]);
                if (r < 0)
                        return i > 0 ? (int) i : r;
        }
        return (int) n;
}

static const IsoTpCallbacks batch_callbacks = {
        .send_frame = on_send_frame,
        .send_frames = on_send_frames,
        .received = on_received,
        .sent = on_sent,
        .receive_failed = on_receive_failed,
};

static const IsoTpCallbacks callbacks = {
        .send_frame = on_send_frame,
        .received = on_received,
        .sent = on_sent,
        .receive_failed = on_receive_failed,
};

static void check_state(Side *s) {
        FUZZ_CHECK(isotp_sending(s->tp) == s->pending);
}

static void do_send(Side *s, size_t size, uint8_t seed) {
        bool was_pending = s->pending;
        uint8_t *buf;
        int r;

        buf = calloc(MAX(size, 1u), 1); /* exact size, so ASan sees a read past the end */
        FUZZ_CHECK(buf);
        fuzz_pattern(buf, size, seed);

        if (size >= 1 && size <= ISOTP_MAX_MESSAGE && !was_pending) {
                /* set up before the call: the message may go out and finish inside it */
                memcpy(s->msg, buf, size);
                s->msg_size = size;
                s->shadow_started = false;
                s->shadow_off = 0;
                s->pending = true;
                if (S.loopback) {
                        Side *o = s->peer;
                        memcpy(o->expect_msg, buf, size);
                        o->expect_size = size;
                        o->expect = true;
                        o->delivered = false;
                }
        }

        r = isotp_send(s->tp, buf, size, S.now);
        free(buf);

        if (size == 0)
                FUZZ_CHECK(r == -EINVAL);
        else if (size > ISOTP_MAX_MESSAGE)
                FUZZ_CHECK(r == -EMSGSIZE);
        else if (was_pending)
                FUZZ_CHECK(r == -EBUSY);
        else
                FUZZ_CHECK(r == 0);
}

static void do_tick(Side *s) {
        isotp_tick(s->tp, S.now);
        FUZZ_CHECK(isotp_next_deadline(s->tp) >= S.now);
}

static void do_abort(Side *s) {
        isotp_abort_send(s->tp);
        s->pending = false;
}

/* --- back to back --- */

static void drain(void) {
        unsigned steps = 0;

        while (S.q_len > 0) {
                Queued q = S.queue[S.q_head];

                S.q_head = (S.q_head + 1) % QUEUE_MAX;
                S.q_len--;
                /* no frame storm without the clock moving: a message has at most 586 CFs */
                FUZZ_CHECK(++steps < 4 * QUEUE_MAX);
                isotp_handle_frame(q.to->tp, &q.f, S.now);
        }

        for (unsigned i = 0; i < 2; i++) {
                Side *s = &S.side[i];

                check_state(s);
                if (s->ok_unchecked) {
                        FUZZ_CHECK(s->peer->delivered);
                        s->ok_unchecked = false;
                }
        }
}

static uint8_t valid_st_min(uint8_t v) {
        return (v <= 0x7f || (v >= 0xf1 && v <= 0xf9)) ? v : (v & 0x7f);
}

static int run_loopback(FuzzInput *in) {
        uint8_t flags = fuzz_u8(in);
        IsoTpConfig c;
        int r;

        isotp_config_init(&c);
        c.extended = flags & 1;
        c.tx_padding = flags & 2;
        c.padding_byte = fuzz_u8(in);
        c.max_wait = fuzz_u8(in) % 16;
        /* N_As below N_Bs below N_Cr, with room for the longest STmin and clock step */
        c.n_as = 500 * MS;
        c.n_bs = 1000 * MS;
        c.n_cr = 2000 * MS;

        for (unsigned i = 0; i < 2; i++) {
                Side *s = &S.side[i];

                s->cfg = c;
                if (flags & 4) {
                        s->cfg.tx_id = i == 0 ? (0x18da10f1 | CAN_EFF_FLAG) : (0x18daf110 | CAN_EFF_FLAG);
                        s->cfg.rx_id = i == 0 ? (0x18daf110 | CAN_EFF_FLAG) : (0x18da10f1 | CAN_EFF_FLAG);
                } else {
                        s->cfg.tx_id = i == 0 ? 0x7e0 : 0x7e8;
                        s->cfg.rx_id = i == 0 ? 0x7e8 : 0x7e0;
                }
                s->cfg.tx_ext_address = i == 0 ? 0xf1 : 0x10;
                s->cfg.rx_ext_address = i == 0 ? 0x10 : 0xf1;
                s->cfg.block_size = fuzz_u8(in) % 9;
                s->cfg.st_min = valid_st_min(fuzz_u8(in));
                s->cfg.wait_frames = fuzz_u8(in) % 4;
                s->peer = &S.side[1 - i];

                /* flag 8: consecutive frames in batches, as on CAN_RAW */
                r = isotp_new(&s->cfg, (flags & 8) ? &batch_callbacks : &callbacks, s, &s->tp);
                FUZZ_CHECK(r == 0);
        }

        for (unsigned ops = 0; !fuzz_eof(in) && ops < MAX_OPS; ops++) {
                uint8_t op = fuzz_u8(in);
                Side *s = &S.side[op >> 7];

                switch (op & 0x7f) {
                case 0 ... 15: { /* a message, mostly short */
                        uint8_t sel = fuzz_u8(in), seed = fuzz_u8(in);
                        size_t size = sel & 0x80 ? 1 + fuzz_u16(in) % ISOTP_MAX_MESSAGE : 1 + (size_t) (sel & 0x7f);
                        do_send(s, size, seed);
                        break;
                }
                case 16 ... 47: { /* a clock step of up to 255 ms, far inside every timeout */
                        S.now += (usec_t) fuzz_u8(in) * MS + fuzz_u8(in);
                        do_tick(&S.side[0]);
                        drain();
                        do_tick(&S.side[1]);
                        break;
                }
                case 48 ... 79: { /* to the next deadline, if it is near */
                        usec_t d = MIN(isotp_next_deadline(S.side[0].tp), isotp_next_deadline(S.side[1].tp));
                        if (d != USEC_INFINITY && d > S.now)
                                S.now = MIN(d, S.now + 255 * MS);
                        do_tick(&S.side[0]);
                        drain();
                        do_tick(&S.side[1]);
                        break;
                }
                case 80 ... 95: {
                        uint8_t b = fuzz_u8(in);
                        s->busy = b % 8;
                        s->busy_enobufs = b & 0x80;
                        break;
                }
                case 96 ... 99:
                        s->fail = (op & 1) ? -EIO : -ENETDOWN;
                        break;
                case 100 ... 103:
                        do_abort(s);
                        break;
                case 104 ... 111: {
                        /* our receiver's flow control; changed only between messages */
                        uint8_t bs = fuzz_u8(in) % 9, st = valid_st_min(fuzz_u8(in)), w = fuzz_u8(in) % 4;
                        if (s->peer->pending)
                                break;
                        isotp_set_flow_control(s->tp, bs, st, w);
                        s->cfg.block_size = bs;
                        s->cfg.st_min = st;
                        s->cfg.wait_frames = w;
                        break;
                }
                default:
                        break;
                }
                drain();
        }

        /* Let everything finish or time out. */
        for (unsigned i = 0; i < 4096; i++) {
                usec_t d = MIN(isotp_next_deadline(S.side[0].tp), isotp_next_deadline(S.side[1].tp));
                if (d == USEC_INFINITY)
                        break;
                if (d > S.now)
                        S.now = MIN(d, S.now + 255 * MS);
                S.side[0].busy = S.side[1].busy = 0;
                S.side[0].fail = S.side[1].fail = 0;
                do_tick(&S.side[0]);
                drain();
                do_tick(&S.side[1]);
                drain();
        }

        for (unsigned i = 0; i < 2; i++)
                isotp_free(S.side[i].tp);
        return 0;
}

/* --- one engine, arbitrary frames --- */

static const usec_t timeouts[] = { 1, 100, 1 * MS, 25 * MS, 150 * MS, 1000 * MS, 5000 * MS, 70 * USEC_PER_SEC };
static const usec_t steps[] = { 0, 1, 100, 1 * MS, 10 * MS, 50 * MS, 127 * MS, 1000 * MS };

static void feed(Side *s, struct can_frame *f) {
        size_t off = addr_len(s), len = MIN(f->len, CAN_MAX_DLEN);
        const uint8_t *p = f->data + off;
        bool ours = f->can_id == s->cfg.rx_id && len >= off + 1 &&
                    (!s->cfg.extended || f->data[0] == s->cfg.rx_ext_address);

        /* What the frame would deliver, for on_received()'s checks. */
        s->last_was_sf = false;
        if (ours && (p[0] >> 4) == 0) {
                size_t size = p[0] & 0x0f;
                if (size >= 1 && size <= sf_cap(s) && len - off >= 1 + size) {
                        s->last_was_sf = true;
                        s->last_sf_size = size;
                        memcpy(s->last_sf, p + 1, size);
                }
        }
        if (ours && (p[0] >> 4) == 1 && len - off >= 8 - off) {
                size_t size = (size_t) (p[0] & 0x0f) << 8 | p[1];
                if (size > sf_cap(s)) {
                        s->last_ff_size = size;
                        s->last_ff_first = 6 - off;
                        memcpy(s->last_ff, p + 2, 6 - off);
                }
        }

        s->in_handle_frame = true;
        isotp_handle_frame(s->tp, f, S.now);
        s->in_handle_frame = false;
}

/* Lays out a frame for the engine: address byte, the PCI and data bytes, then a length
 * chosen by the input (natural, padded to 8, or any raw value up to 15). */
static void make_frame(Side *s, FuzzInput *in, struct can_frame *f, const uint8_t *bytes, size_t n) {
        size_t off = addr_len(s);
        uint8_t mode = fuzz_u8(in);

        memset(f, 0, sizeof(*f));
        f->can_id = s->cfg.rx_id;
        if (s->cfg.extended)
                f->data[0] = (mode & 0x40) ? fuzz_u8(in) : s->cfg.rx_ext_address;
        n = MIN(n, CAN_MAX_DLEN - off);
        memcpy(f->data + off, bytes, n);
        if (mode < 0x80)
                f->len = off + n;
        else if (mode < 0xc0) {
                memset(f->data + off + n, 0xaa, CAN_MAX_DLEN - off - n);
                f->len = CAN_MAX_DLEN;
        } else
                f->len = mode & 0x0f; /* also above 8: the engine must not read past data[] */
}

static int run_single(FuzzInput *in) {
        static const canid_t ids[][2] = {
                { 0x7e0, 0x7e8 },
                { 0x18da10f1 | CAN_EFF_FLAG, 0x18daf110 | CAN_EFF_FLAG },
                { 0x000, 0x7ff },
                { 0x7e0, 0x7e8 | CAN_EFF_FLAG }, /* the same number, once 29-bit */
                { 0x7e0, 0x7e0 },                /* invalid: equal */
                { 0x800, 0x7e8 },                /* invalid: 11-bit out of range */
                { 0x7e0 | CAN_RTR_FLAG, 0x7e8 }, /* invalid: RTR */
                { 0x7e0, 0x7e8 | CAN_ERR_FLAG }, /* invalid: error frame flag */
        };
        Side *s = &S.side[0];
        uint8_t flags = fuzz_u8(in), tm = fuzz_u8(in);
        const char *reason = NULL;
        IsoTpConfig *c = &s->cfg;
        int r;

        isotp_config_init(c);
        c->tx_id = ids[flags & 7][0];
        c->rx_id = ids[flags & 7][1];
        c->extended = flags & 0x08;
        c->tx_padding = flags & 0x10;
        c->tx_ext_address = fuzz_u8(in);
        c->rx_ext_address = fuzz_u8(in);
        c->padding_byte = fuzz_u8(in);
        c->block_size = fuzz_u8(in);
        c->st_min = fuzz_u8(in);
        c->wait_frames = fuzz_u8(in) % 8;
        c->max_wait = (flags & 0x20) ? 256 : fuzz_u8(in) % 16;
        c->n_as = timeouts[tm & 7];
        c->n_bs = timeouts[(tm >> 3) & 7];
        c->n_cr = timeouts[(tm >> 6) | ((flags >> 6) & 1) << 2];
        if (flags & 0x80)
                c->n_cr = 0; /* invalid */

        r = isotp_new(c, &callbacks, s, &s->tp);
        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL);
                FUZZ_CHECK(isotp_config_validate(c, &reason) == -EINVAL && reason);
                return 0;
        }
        FUZZ_CHECK(isotp_config_validate(c, NULL) == 0);

        for (unsigned ops = 0; !fuzz_eof(in) && ops < MAX_OPS; ops++) {
                uint8_t op = fuzz_u8(in), bytes[8];
                struct can_frame f;

                switch (op % 16) {
                case 0: { /* single frame */
                        uint8_t b = fuzz_u8(in);
                        bytes[0] = b & 0x0f;
                        fuzz_bytes(in, bytes + 1, 7);
                        make_frame(s, in, &f, bytes, (b & 0x80) ? 8 : 1 + (b & 0x0f));
                        feed(s, &f);
                        break;
                }
                case 1: { /* first frame */
                        uint16_t size = fuzz_u16(in);
                        bytes[0] = 0x10 | ((size >> 8) & 0x0f);
                        bytes[1] = size & 0xff;
                        fuzz_pattern(bytes + 2, 6, (uint8_t) size);
                        make_frame(s, in, &f, bytes, 8);
                        s->auto_sn = 1;
                        s->auto_off = 6 - addr_len(s);
                        feed(s, &f);
                        break;
                }
                case 2:
                case 3: { /* consecutive frames: the next sequence number, or any */
                        uint8_t b = fuzz_u8(in), count = (op % 16 == 3) ? 1 + (b & 0x0f) : 1;
                        for (unsigned i = 0; i < count; i++) {
                                bytes[0] = 0x20 | ((b & 0x80) ? (b & 0x0f) : s->auto_sn);
                                fuzz_pattern(bytes + 1, 7, (uint8_t) s->auto_off);
                                make_frame(s, in, &f, bytes, 8);
                                s->auto_sn = (s->auto_sn + 1) & 0x0f;
                                s->auto_off += 7 - addr_len(s);
                                feed(s, &f);
                        }
                        break;
                }
                case 4: { /* flow control */
                        uint8_t b = fuzz_u8(in);
                        bytes[0] = 0x30 | (b & 0x07);
                        bytes[1] = fuzz_u8(in);
                        bytes[2] = fuzz_u8(in);
                        make_frame(s, in, &f, bytes, (b & 0x80) ? 2 : 3);
                        feed(s, &f);
                        break;
                }
                case 5: { /* anything, for our id or another */
                        uint8_t b = fuzz_u8(in);
                        memset(&f, 0, sizeof(f));
                        f.can_id = (b & 1) ? s->cfg.rx_id : ((b & 2) ? s->cfg.tx_id : ids[b >> 5][1]);
                        f.len = (b >> 2) & 0x0f;
                        fuzz_bytes(in, f.data, 8);
                        feed(s, &f);
                        break;
                }
                case 6:
                case 7: { /* a clock step */
                        uint8_t b = fuzz_u8(in);
                        S.now += steps[b & 7] * (1 + (b >> 3));
                        do_tick(s);
                        break;
                }
                case 8: { /* run the timers until nothing is due for a while */
                        uint8_t b = fuzz_u8(in);
                        for (unsigned i = 0; i < 1u + b; i++) {
                                usec_t d = isotp_next_deadline(s->tp);
                                if (d == USEC_INFINITY)
                                        break;
                                S.now = MAX(S.now, d);
                                do_tick(s);
                        }
                        break;
                }
                case 9:
                case 10: { /* a message to send: 0..4100 bytes, mostly short */
                        uint8_t sel = fuzz_u8(in), seed = fuzz_u8(in);
                        size_t size = (sel & 0x80) ? fuzz_u16(in) % (ISOTP_MAX_MESSAGE + 6) : (size_t) (sel & 0x3f);
                        do_send(s, size, seed);
                        break;
                }
                case 11: {
                        uint8_t b = fuzz_u8(in);
                        s->busy = b & 0x1f;
                        s->busy_enobufs = b & 0x80;
                        break;
                }
                case 12:
                        s->fail = fuzz_bool(in) ? -EIO : -ENETDOWN;
                        break;
                case 13:
                        do_abort(s);
                        break;
                case 14: {
                        uint8_t bs = fuzz_u8(in), st = fuzz_u8(in), w = fuzz_u8(in) % 8;
                        isotp_set_flow_control(s->tp, bs, st, w);
                        c->block_size = bs;
                        c->st_min = st;
                        c->wait_frames = w;
                        FUZZ_CHECK(isotp_get_config(s->tp)->block_size == bs);
                        break;
                }
                default:
                        break;
                }
                check_state(s);
        }

        isotp_free(s->tp);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzInput in = { data, size };

        memset(&S, 0, sizeof(S));
        S.now = T0;
        S.loopback = fuzz_u8(&in) & 1;
        return S.loopback ? run_loopback(&in) : run_single(&in);
}
