/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>

#include "isotp.h"

#define PCI_SF 0x0
#define PCI_FF 0x1
#define PCI_CF 0x2
#define PCI_FC 0x3

#define FS_CTS 0x0
#define FS_WAIT 0x1
#define FS_OVFLW 0x2

/* How long to wait before trying again when the bus refuses a frame (-EAGAIN). */
#define RETRY_USEC (1 * USEC_PER_MSEC)
/* Time between the FC.WAIT frames we send as receiver (fault injection). */
#define ISOTP_WAIT_INTERVAL (50 * USEC_PER_MSEC)

typedef enum TxStage {
        TX_IDLE,
        TX_FIRST,   /* the single or first frame still has to go out */
        TX_WAIT_FC, /* first frame or a block sent, waiting for flow control (N_Bs) */
        TX_CF,      /* sending consecutive frames, paced by STmin */
} TxStage;

typedef enum RxStage {
        RX_IDLE,
        RX_SEND_FC, /* a flow control (WAIT or CTS) has to go out */
        RX_WAIT_CF, /* waiting for the next consecutive frame (N_Cr) */
} RxStage;

/* Since when the bus refuses the frame now due (send_frame() answered -EAGAIN). */
typedef struct Blocked {
        bool on;
        usec_t since;
} Blocked;

struct IsoTp {
        IsoTpConfig config;
        IsoTpCallbacks cb;
        void *userdata;

        struct {
                TxStage stage;
                uint8_t buf[ISOTP_MAX_MESSAGE];
                size_t size, offset;
                uint8_t sn;
                bool have_fc_params; /* the first FC of a message fixes BS and STmin */
                uint8_t bs, st_min;
                unsigned cf_in_block, waits;
                usec_t next; /* when to send the next frame, or when N_Bs expires */
                Blocked blocked;
        } tx;

        struct {
                RxStage stage;
                uint8_t buf[ISOTP_MAX_MESSAGE];
                size_t size, offset;
                uint8_t sn;
                unsigned cf_in_block, waits_sent;
                usec_t next; /* when to send the FC, or when N_Cr expires */
                Blocked blocked;
        } rx;
};

static const char *const result_names[_ISOTP_N_MAX] = {
        [ISOTP_N_OK] = "N_OK: success",
        [ISOTP_N_TIMEOUT_A] = "N_TIMEOUT_A: a frame could not be sent in time (N_As/N_Ar)",
        [ISOTP_N_TIMEOUT_BS] = "N_TIMEOUT_Bs: no flow control from the receiver in time",
        [ISOTP_N_TIMEOUT_CR] = "N_TIMEOUT_Cr: the next consecutive frame did not come in time",
        [ISOTP_N_WRONG_SN] = "N_WRONG_SN: consecutive frame with a wrong sequence number",
        [ISOTP_N_INVALID_FS] = "N_INVALID_FS: flow control with an invalid flow status",
        [ISOTP_N_UNEXP_PDU] = "N_UNEXP_PDU: a new message began before the last one was complete",
        [ISOTP_N_WFT_OVRN] = "N_WFT_OVRN: too many flow control WAIT frames in a row",
        [ISOTP_N_BUFFER_OVFLW] = "N_BUFFER_OVFLW: the receiver cannot take a message this long",
        [ISOTP_N_ERROR] = "N_ERROR: a frame could not be sent or was malformed",
};

const char *isotp_result_to_string(IsoTpResult r) {
        if (r < 0 || r >= _ISOTP_N_MAX)
                return "unknown ISO-TP result";
        return result_names[r];
}

int isotp_result_to_errno(IsoTpResult r) {
        switch (r) {
        case ISOTP_N_OK:
                return 0;
        case ISOTP_N_TIMEOUT_A:
        case ISOTP_N_TIMEOUT_CR:
                return -ETIMEDOUT;
        case ISOTP_N_TIMEOUT_BS:
                return -ECOMM; /* the kernel's code for a missing flow control */
        case ISOTP_N_WRONG_SN:
                return -EILSEQ;
        case ISOTP_N_INVALID_FS:
        case ISOTP_N_UNEXP_PDU:
                return -EBADMSG;
        case ISOTP_N_WFT_OVRN:
                return -ECONNABORTED;
        case ISOTP_N_BUFFER_OVFLW:
                return -EMSGSIZE;
        default:
                return -EIO;
        }
}

void isotp_config_init(IsoTpConfig *c) {
        *c = (IsoTpConfig) {
                .padding_byte = 0xcc,
                .max_wait = 10,
                .n_as = 1000 * USEC_PER_MSEC,
                .n_bs = 1000 * USEC_PER_MSEC,
                .n_cr = 1000 * USEC_PER_MSEC,
                .frame_gap = ISOTP_FRAME_GAP_DEFAULT,
        };
}

static bool can_id_valid(canid_t id) {
        if (id & (CAN_RTR_FLAG | CAN_ERR_FLAG))
                return false;
        if (id & CAN_EFF_FLAG)
                return (id & ~CAN_EFF_FLAG) <= CAN_EFF_MASK;
        return id <= CAN_SFF_MASK;
}

static bool st_min_valid(uint8_t st_min) {
        return st_min <= 0x7f || (st_min >= 0xf1 && st_min <= 0xf9);
}

int isotp_config_validate(const IsoTpConfig *c, const char **ret_reason) {
        const char *reason = NULL;

        if (!can_id_valid(c->tx_id) || !can_id_valid(c->rx_id))
                reason = "CAN ids must be 11-bit (0..0x7FF) or 29-bit with the extended frame flag";
        else if (c->tx_id == c->rx_id)
                reason = "the transmit and receive CAN ids must differ";
        else if (!st_min_valid(c->st_min))
                reason = "STmin must be 0x00..0x7F (ms) or 0xF1..0xF9 (100..900 us)";
        else if (c->n_as == 0 || c->n_bs == 0 || c->n_cr == 0)
                reason = "ISO-TP timeouts must be above zero";
        else if (c->max_wait > 255)
                reason = "at most 255 flow control WAIT frames in a row can be allowed";
        else if (c->frame_gap != ISOTP_FRAME_GAP_DEFAULT && c->frame_gap > ISOTP_FRAME_GAP_MAX)
                reason = "the gap between frames must be 0..127 ms";

        if (reason) {
                if (ret_reason)
                        *ret_reason = reason;
                return -EINVAL;
        }
        return 0;
}

usec_t isotp_st_min_to_usec(uint8_t st_min) {
        if (st_min <= 0x7f)
                return st_min * USEC_PER_MSEC;
        if (st_min >= 0xf1 && st_min <= 0xf9)
                return (st_min - 0xf0) * 100;
        return 0x7f * USEC_PER_MSEC; /* reserved values: the longest valid time, as the standard says */
}

int isotp_new(const IsoTpConfig *config, const IsoTpCallbacks *callbacks, void *userdata, IsoTp **ret) {
        IsoTp *t;
        int r;

        r = isotp_config_validate(config, NULL);
        if (r < 0)
                return r;
        if (!callbacks->send_frame)
                return -EINVAL;

        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->config = *config;
        t->cb = *callbacks;
        t->userdata = userdata;
        *ret = t;
        return 0;
}

IsoTp *isotp_free(IsoTp *t) {
        free(t);
        return NULL;
}

const IsoTpConfig *isotp_get_config(IsoTp *t) {
        return &t->config;
}

void isotp_set_flow_control(IsoTp *t, uint8_t block_size, uint8_t st_min, uint8_t wait_frames) {
        t->config.block_size = block_size;
        t->config.st_min = st_min;
        t->config.wait_frames = wait_frames;
}

static size_t addr_len(IsoTp *t) {
        return t->config.extended ? 1 : 0;
}

/* Builds a frame: address byte, then the given protocol bytes, then padding. */
static void frame_init(IsoTp *t, struct can_frame *f, const uint8_t *bytes, size_t n) {
        size_t off = addr_len(t);

        memset(f, 0, sizeof(*f));
        f->can_id = t->config.tx_id;
        if (t->config.extended)
                f->data[0] = t->config.tx_ext_address;
        memcpy(f->data + off, bytes, n);
        if (t->config.tx_padding) {
                memset(f->data + off + n, t->config.padding_byte, CAN_MAX_DLEN - off - n);
                f->len = CAN_MAX_DLEN;
        } else
                f->len = off + n;
}

static bool bus_busy(int r) {
        return r == -EAGAIN || r == -ENOBUFS;
}

/* Called after send_frame() answered "busy": retries shortly, until N_As/N_Ar expires. */
static bool blocked_too_long(Blocked *b, usec_t *next, usec_t now, usec_t limit) {
        if (!b->on) {
                b->on = true;
                b->since = now;
        }
        if (now - b->since >= limit)
                return true;
        *next = now + RETRY_USEC;
        return false;
}

/* --- sender --- */

static void tx_finish(IsoTp *t, IsoTpResult result) {
        t->tx.stage = TX_IDLE;
        if (t->cb.sent)
                t->cb.sent(t->userdata, result);
}

static size_t sf_capacity(IsoTp *t) {
        return 7 - addr_len(t);
}

static int tx_send_first(IsoTp *t) {
        uint8_t bytes[8];
        struct can_frame f;
        size_t n;

        if (t->tx.size <= sf_capacity(t)) {
                bytes[0] = (PCI_SF << 4) | t->tx.size;
                memcpy(bytes + 1, t->tx.buf, t->tx.size);
                n = 1 + t->tx.size;
        } else {
                n = 8 - addr_len(t);
                bytes[0] = (PCI_FF << 4) | (t->tx.size >> 8);
                bytes[1] = t->tx.size & 0xff;
                memcpy(bytes + 2, t->tx.buf, n - 2);
                t->tx.offset = n - 2;
        }
        frame_init(t, &f, bytes, n);
        return t->cb.send_frame(t->userdata, &f);
}

static size_t cf_capacity(IsoTp *t) {
        return 7 - addr_len(t);
}

/* Builds the consecutive frame that carries the message from `offset` on. */
static void cf_init(IsoTp *t, struct can_frame *f, size_t offset, uint8_t sn) {
        size_t n = MIN(cf_capacity(t), t->tx.size - offset);
        uint8_t bytes[8];

        bytes[0] = (PCI_CF << 4) | sn;
        memcpy(bytes + 1, t->tx.buf + offset, n);
        frame_init(t, f, bytes, 1 + n);
}

/* The time between two consecutive frames: the receiver's STmin plus our own gap. */
static usec_t tx_gap(IsoTp *t) {
        usec_t gap = isotp_st_min_to_usec(t->tx.st_min);

        if (t->config.frame_gap != ISOTP_FRAME_GAP_DEFAULT)
                gap += t->config.frame_gap;
        return gap;
}

/* How many consecutive frames may go out now, back to back: with no gap, the rest of the
 * block (or of the message), at most a batch; otherwise one. */
static size_t tx_cf_due(IsoTp *t) {
        size_t cap = cf_capacity(t), left = (t->tx.size - t->tx.offset + cap - 1) / cap;

        if (!t->cb.send_frames || tx_gap(t) > 0)
                return 1;
        if (t->tx.bs > 0)
                left = MIN(left, (size_t) (t->tx.bs - t->tx.cf_in_block));
        return MIN(left, (size_t) ISOTP_TX_BATCH);
}

/* Sends the consecutive frames due now; returns how many went out (>= 1) or a negative
 * errno as send_frame() does. */
static int tx_send_cfs(IsoTp *t, size_t n) {
        struct can_frame frames[ISOTP_TX_BATCH];
        size_t offset = t->tx.offset;
        int r;

        assert(n >= 1 && n <= ISOTP_TX_BATCH);
        for (size_t i = 0; i < n; i++) {
                cf_init(t, &frames[i], offset, (uint8_t) ((t->tx.sn + i) & 0x0f));
                offset += cf_capacity(t);
        }
        if (n == 1) {
                r = t->cb.send_frame(t->userdata, &frames[0]);
                return r < 0 ? r : 1;
        }
        r = t->cb.send_frames(t->userdata, frames, n);
        if (r == 0)
                return -EAGAIN; /* nothing went out: as busy */
        return r < 0 ? r : (int) MIN((size_t) r, n);
}

/* Takes send_frame()'s answer for the frame now due: true when it went out; otherwise a
 * retry is scheduled, or the message failed. */
static bool tx_frame_went_out(IsoTp *t, int r, usec_t now) {
        if (bus_busy(r)) {
                if (blocked_too_long(&t->tx.blocked, &t->tx.next, now, t->config.n_as))
                        tx_finish(t, ISOTP_N_TIMEOUT_A);
                return false;
        }
        if (r < 0) {
                tx_finish(t, ISOTP_N_ERROR);
                return false;
        }
        t->tx.blocked.on = false;
        return true;
}

/* Sends what is due now. Bounded: a message has at most 586 consecutive frames. A part of
 * a batch that went out counts; the rest goes again at once (and is refused as busy if the
 * bus is full, which schedules the retry). */
static void tx_pump(IsoTp *t, usec_t now) {
        if (t->tx.stage == TX_FIRST && now >= t->tx.next) {
                if (!tx_frame_went_out(t, tx_send_first(t), now))
                        return;
                if (t->tx.size <= sf_capacity(t)) {
                        tx_finish(t, ISOTP_N_OK);
                        return;
                }
                t->tx.stage = TX_WAIT_FC;
                t->tx.sn = 1;
                t->tx.next = now + t->config.n_bs;
                return;
        }

        while (t->tx.stage == TX_CF && now >= t->tx.next) {
                int sent = tx_send_cfs(t, tx_cf_due(t));

                if (!tx_frame_went_out(t, MIN(sent, 0), now))
                        return;
                t->tx.offset = MIN(t->tx.offset + (size_t) sent * cf_capacity(t), t->tx.size);
                t->tx.sn = (t->tx.sn + sent) & 0x0f;
                if (t->tx.offset >= t->tx.size) {
                        tx_finish(t, ISOTP_N_OK);
                        return;
                }
                t->tx.cf_in_block += sent;
                if (t->tx.bs > 0 && t->tx.cf_in_block >= t->tx.bs) {
                        t->tx.stage = TX_WAIT_FC;
                        t->tx.next = now + t->config.n_bs;
                        return;
                }
                t->tx.next = now + tx_gap(t);
        }
}

int isotp_send(IsoTp *t, const uint8_t *data, size_t size, usec_t now) {
        if (size == 0)
                return -EINVAL;
        if (size > ISOTP_MAX_MESSAGE)
                return -EMSGSIZE;
        if (t->tx.stage != TX_IDLE)
                return -EBUSY;

        memcpy(t->tx.buf, data, size);
        t->tx.size = size;
        t->tx.offset = 0;
        t->tx.have_fc_params = false;
        t->tx.waits = 0;
        t->tx.blocked.on = false;
        t->tx.stage = TX_FIRST;
        t->tx.next = now;
        tx_pump(t, now);
        return 0;
}

bool isotp_sending(IsoTp *t) {
        return t->tx.stage != TX_IDLE;
}

void isotp_abort_send(IsoTp *t) {
        t->tx.stage = TX_IDLE;
}

static void tx_handle_fc(IsoTp *t, const uint8_t *p, size_t n, usec_t now) {
        uint8_t fs = p[0] & 0x0f;

        if (t->tx.stage != TX_WAIT_FC)
                return; /* not waiting for one: ignore, as the standard says */
        if (n < 3)
                return; /* too short to carry BS and STmin */

        /* The first flow control of a message fixes BS and STmin, even a WAIT, as the
         * kernel's ISO-TP does; later ones only say go or wait. */
        if (!t->tx.have_fc_params && (fs == FS_CTS || fs == FS_WAIT)) {
                t->tx.have_fc_params = true;
                t->tx.bs = p[1];
                t->tx.st_min = p[2];
        }

        switch (fs) {
        case FS_CTS:
                t->tx.waits = 0;
                t->tx.cf_in_block = 0;
                t->tx.stage = TX_CF;
                t->tx.next = now; /* STmin separates consecutive frames, not FC and CF */
                tx_pump(t, now);
                break;
        case FS_WAIT:
                if (++t->tx.waits > t->config.max_wait) {
                        tx_finish(t, ISOTP_N_WFT_OVRN);
                        return;
                }
                t->tx.next = now + t->config.n_bs;
                break;
        case FS_OVFLW:
                tx_finish(t, ISOTP_N_BUFFER_OVFLW);
                break;
        default:
                tx_finish(t, ISOTP_N_INVALID_FS);
        }
}

/* --- receiver --- */

static void rx_fail(IsoTp *t, IsoTpResult result) {
        t->rx.stage = RX_IDLE;
        if (t->cb.receive_failed)
                t->cb.receive_failed(t->userdata, result);
}

static void rx_deliver(IsoTp *t, const uint8_t *data, size_t size) {
        t->rx.stage = RX_IDLE;
        if (t->cb.received)
                t->cb.received(t->userdata, data, size);
}

static int rx_send_fc(IsoTp *t, uint8_t fs) {
        uint8_t bytes[3] = { (PCI_FC << 4) | fs, t->config.block_size, t->config.st_min };
        struct can_frame f;

        frame_init(t, &f, bytes, sizeof(bytes));
        return t->cb.send_frame(t->userdata, &f);
}

/* WAIT frames (fault injection) carry the same BS and STmin as the CTS that follows,
 * because the kernel's sender takes them from the first flow control it sees. */
static void rx_pump(IsoTp *t, usec_t now) {
        bool wait;
        int r;

        if (t->rx.stage != RX_SEND_FC || now < t->rx.next)
                return;

        wait = t->rx.waits_sent < t->config.wait_frames;
        r = rx_send_fc(t, wait ? FS_WAIT : FS_CTS);
        if (bus_busy(r)) {
                if (blocked_too_long(&t->rx.blocked, &t->rx.next, now, t->config.n_as))
                        rx_fail(t, ISOTP_N_TIMEOUT_A);
                return;
        }
        if (r < 0) {
                rx_fail(t, ISOTP_N_ERROR);
                return;
        }
        t->rx.blocked.on = false;

        if (wait) {
                t->rx.waits_sent++;
                /* well inside the sender's N_Bs, so each WAIT keeps it waiting */
                t->rx.next = now + MIN(ISOTP_WAIT_INTERVAL, t->config.n_bs / 2);
                return;
        }
        t->rx.stage = RX_WAIT_CF;
        t->rx.cf_in_block = 0;
        t->rx.next = now + t->config.n_cr;
}

static void rx_start_fc(IsoTp *t, usec_t now) {
        t->rx.stage = RX_SEND_FC;
        t->rx.waits_sent = 0;
        t->rx.blocked.on = false;
        t->rx.next = now;
        rx_pump(t, now);
}

static void rx_handle_sf(IsoTp *t, const uint8_t *p, size_t n) {
        size_t size = p[0] & 0x0f;
        uint8_t copy[8];

        if (size == 0 || size > sf_capacity(t) || n < 1 + size)
                return; /* invalid SF_DL or a truncated frame: ignored, as the standard says */
        if (t->rx.stage != RX_IDLE)
                rx_fail(t, ISOTP_N_UNEXP_PDU);

        memcpy(copy, p + 1, size);
        rx_deliver(t, copy, size);
}

static void rx_handle_ff(IsoTp *t, const uint8_t *p, size_t n, usec_t now) {
        size_t size = (size_t) (p[0] & 0x0f) << 8 | p[1];
        size_t first = 8 - addr_len(t) - 2;
        struct can_frame f;

        if (n < 8 - addr_len(t))
                return; /* a first frame always fills the CAN frame */
        if (size == 0) {
                /* FF_DL escape: a message above 4095 bytes, which classic ISO-TP cannot hold */
                uint8_t bytes[3] = { (PCI_FC << 4) | FS_OVFLW, 0, 0 };
                if (t->rx.stage != RX_IDLE)
                        rx_fail(t, ISOTP_N_UNEXP_PDU);
                frame_init(t, &f, bytes, sizeof(bytes));
                (void) t->cb.send_frame(t->userdata, &f);
                return;
        }
        if (size <= sf_capacity(t))
                return; /* would have fit a single frame: invalid, ignored */
        if (t->rx.stage != RX_IDLE)
                rx_fail(t, ISOTP_N_UNEXP_PDU);

        memcpy(t->rx.buf, p + 2, first);
        t->rx.size = size;
        t->rx.offset = first;
        t->rx.sn = 1;
        rx_start_fc(t, now);
}

static void rx_handle_cf(IsoTp *t, const uint8_t *p, size_t n, usec_t now) {
        size_t cap = 7 - addr_len(t), want;

        if (t->rx.stage != RX_WAIT_CF)
                return; /* not expecting one (idle, or our FC is not out yet): ignored */

        if ((p[0] & 0x0f) != t->rx.sn) {
                rx_fail(t, ISOTP_N_WRONG_SN);
                return;
        }

        want = MIN(cap, t->rx.size - t->rx.offset);
        if (n < 1 + want) {
                rx_fail(t, ISOTP_N_ERROR); /* truncated: data would be missing */
                return;
        }

        memcpy(t->rx.buf + t->rx.offset, p + 1, want);
        t->rx.offset += want;
        t->rx.sn = (t->rx.sn + 1) & 0x0f;

        if (t->rx.offset >= t->rx.size) {
                rx_deliver(t, t->rx.buf, t->rx.size);
                return;
        }

        if (t->config.block_size > 0 && ++t->rx.cf_in_block >= t->config.block_size) {
                rx_start_fc(t, now);
                return;
        }
        t->rx.next = now + t->config.n_cr;
}

void isotp_handle_frame(IsoTp *t, const struct can_frame *frame, usec_t now) {
        size_t off = addr_len(t), len = MIN(frame->len, CAN_MAX_DLEN);
        const uint8_t *p;

        if (frame->can_id != t->config.rx_id)
                return; /* also drops RTR and error frames, whose flags make the id differ */
        if (len < off + 1)
                return;
        if (t->config.extended && frame->data[0] != t->config.rx_ext_address)
                return;

        p = frame->data + off;
        switch (p[0] >> 4) {
        case PCI_SF:
                rx_handle_sf(t, p, len - off);
                break;
        case PCI_FF:
                rx_handle_ff(t, p, len - off, now);
                break;
        case PCI_CF:
                rx_handle_cf(t, p, len - off, now);
                break;
        case PCI_FC:
                tx_handle_fc(t, p, len - off, now);
                break;
        default:
                break; /* reserved PCI types are ignored */
        }
}

void isotp_tick(IsoTp *t, usec_t now) {
        if (t->tx.stage == TX_WAIT_FC && now >= t->tx.next)
                tx_finish(t, ISOTP_N_TIMEOUT_BS);
        else
                tx_pump(t, now);

        if (t->rx.stage == RX_WAIT_CF && now >= t->rx.next)
                rx_fail(t, ISOTP_N_TIMEOUT_CR);
        else
                rx_pump(t, now);
}

usec_t isotp_next_deadline(IsoTp *t) {
        usec_t d = USEC_INFINITY;

        if (t->tx.stage != TX_IDLE)
                d = t->tx.next;
        if (t->rx.stage != RX_IDLE)
                d = MIN(d, t->rx.next);
        return d;
}
