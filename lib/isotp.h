/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * ISO 15765-2 (ISO-TP) over classic CAN frames, as a state machine without I/O.
 *
 * The engine never reads a clock or a socket: the caller feeds it received frames and the
 * current time, and it answers through callbacks (frames to send, messages received,
 * transmissions finished, errors with their N_Result cause). isotp_next_deadline() says
 * when isotp_tick() must be called next. This keeps the protocol testable with a
 * controllable clock and lets one engine run over CAN_RAW, the local virtual bus, or a
 * test script alike. Transmission and reception are independent (full duplex), as in
 * the kernel's implementation.
 */

#include <linux/can.h>

#include "util.h"

#define ISOTP_MAX_MESSAGE 4095U
/* IsoTpConfig.frame_gap unset: no gap of our own on CAN_RAW, the kernel's default on CAN_ISOTP */
#define ISOTP_FRAME_GAP_DEFAULT USEC_INFINITY
#define ISOTP_FRAME_GAP_MAX (127 * USEC_PER_MSEC)
/* At most this many consecutive frames go to send_frames() at once. */
#define ISOTP_TX_BATCH 32U

/* The N_Result values of ISO 15765-2 §8.3.7, which name the cause of every failure. */
typedef enum IsoTpResult {
        ISOTP_N_OK = 0,
        ISOTP_N_TIMEOUT_A,    /* a frame could not be put on the bus within N_As/N_Ar */
        ISOTP_N_TIMEOUT_BS,   /* no flow control within N_Bs after a first frame or block */
        ISOTP_N_TIMEOUT_CR,   /* no consecutive frame within N_Cr */
        ISOTP_N_WRONG_SN,     /* a consecutive frame with the wrong sequence number */
        ISOTP_N_INVALID_FS,   /* a flow control with an unknown flow status */
        ISOTP_N_UNEXP_PDU,    /* a new message began while one was being received */
        ISOTP_N_WFT_OVRN,     /* more FC.WAIT frames in a row than allowed */
        ISOTP_N_BUFFER_OVFLW, /* the receiver answered FC.OVFLW: the message is too long for it */
        ISOTP_N_ERROR,        /* anything else: a frame that could not be sent, a bad length */
        _ISOTP_N_MAX,
} IsoTpResult;

const char *isotp_result_to_string(IsoTpResult r);
/* The errno a socket API would give for this result (as the kernel's ISO-TP does). */
int isotp_result_to_errno(IsoTpResult r);

typedef struct IsoTpConfig {
        canid_t tx_id;          /* CAN id of our frames (CAN_EFF_FLAG for 29-bit ids) */
        canid_t rx_id;          /* CAN id of the peer's frames */
        bool extended;          /* extended addressing: byte 0 of every frame is an address */
        uint8_t tx_ext_address; /* byte 0 of our frames */
        uint8_t rx_ext_address; /* byte 0 expected in the peer's frames */
        bool tx_padding;        /* pad our frames to 8 bytes */
        uint8_t padding_byte;
        uint8_t block_size;      /* BS we advertise as receiver; 0 = no further flow control */
        uint8_t st_min;          /* STmin we advertise as receiver, raw ISO-TP encoding */
        uint8_t wait_frames;     /* FC.WAIT frames we send before each CTS (fault injection) */
        unsigned max_wait;       /* FC.WAIT frames in a row we accept as sender (N_WFTmax) */
        usec_t n_as, n_bs, n_cr; /* timeouts; N_Ar is n_as */
        /* Least time between two consecutive frames we send, added to the receiver's STmin as
         * the kernel adds its frame_txtime; 0..ISOTP_FRAME_GAP_MAX or ISOTP_FRAME_GAP_DEFAULT. */
        usec_t frame_gap;
} IsoTpConfig;

/* Defaults of the reference protocol: normal addressing, no padding, BS 0, STmin 0,
 * at most 10 FC.WAIT, all timeouts 1000 ms, frame gap ISOTP_FRAME_GAP_DEFAULT. */
void isotp_config_init(IsoTpConfig *c);
int isotp_config_validate(const IsoTpConfig *c, const char **ret_reason);

typedef struct IsoTpCallbacks {
        /* Put one frame on the bus. 0 when sent, -EAGAIN when the bus is busy (the engine
         * retries at the next tick until N_As passes), other negative errno: failed. */
        int (*send_frame)(void *userdata, const struct can_frame *frame);
        /* Optional: puts 2..ISOTP_TX_BATCH consecutive frames that need no gap between them
         * on the bus at once (one system call instead of one each). Returns how many went
         * out, in order (1..n), or as send_frame() when none did. */
        int (*send_frames)(void *userdata, const struct can_frame *frames, size_t n);
        /* A whole message arrived. The buffer is only valid during the call. */
        void (*received)(void *userdata, const uint8_t *data, size_t size);
        /* isotp_send()'s message was sent completely (ISOTP_N_OK) or failed. */
        void (*sent)(void *userdata, IsoTpResult result);
        /* A message being received was lost. */
        void (*receive_failed)(void *userdata, IsoTpResult result);
} IsoTpCallbacks;

typedef struct IsoTp IsoTp;

int isotp_new(const IsoTpConfig *config, const IsoTpCallbacks *callbacks, void *userdata, IsoTp **ret);
IsoTp *isotp_free(IsoTp *t);
static inline void isotp_freep(IsoTp **t) {
        isotp_free(*t);
}

const IsoTpConfig *isotp_get_config(IsoTp *t);
/* Changes the fault injection: FC.WAIT frames to send before each CTS, BS and STmin. */
void isotp_set_flow_control(IsoTp *t, uint8_t block_size, uint8_t st_min, uint8_t wait_frames);

/* Starts sending a message of 1..4095 bytes. -EBUSY while one is being sent, -EMSGSIZE
 * when too long, -EINVAL when empty. Completion is reported through sent(). */
int isotp_send(IsoTp *t, const uint8_t *data, size_t size, usec_t now);
bool isotp_sending(IsoTp *t);
/* Abandons the message being sent, without callback. */
void isotp_abort_send(IsoTp *t);

/* Feeds one frame from the bus. Frames with another CAN id or address byte are ignored. */
void isotp_handle_frame(IsoTp *t, const struct can_frame *frame, usec_t now);
/* Runs the timers that are due. */
void isotp_tick(IsoTp *t, usec_t now);
/* When isotp_tick() must run next; USEC_INFINITY when nothing waits. */
usec_t isotp_next_deadline(IsoTp *t);

/* STmin encoding (ISO 15765-2 table 20) to microseconds; reserved values mean 127 ms. */
usec_t isotp_st_min_to_usec(uint8_t st_min);
