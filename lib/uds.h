/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A UDS (ISO 14229-1) client over any message transport, without I/O of its own.
 *
 * One request is on the wire at a time; others wait in a bounded queue. The answer is
 * matched by service id and by the echoed sub-function, DID or routine id. P2 runs from
 * the moment the request left; each 0x78 (responsePending) re-arms P2*, and nothing else
 * cuts a run of them short. Tester present (3E 80) goes on at its interval, also while an
 * answer is pending. Like the ISO-TP engine, the client is driven with the current time
 * and tells when it needs to run next (uds_client_next_deadline()).
 */

#include "util.h"

#define UDS_MAX_MESSAGE 4095U
#define UDS_NEGATIVE_RESPONSE 0x7f
#define UDS_NRC_RESPONSE_PENDING 0x78
#define UDS_SPRMIB 0x80 /* suppressPosRspMsgIndicationBit in the sub-function byte */

/* The negative response codes the reference protocol uses (ISO 14229-1 table A.1). */
typedef enum UdsNrc {
        UDS_NRC_SERVICE_NOT_SUPPORTED = 0x11,
        UDS_NRC_SUBFUNCTION_NOT_SUPPORTED = 0x12,
        UDS_NRC_INCORRECT_LENGTH = 0x13,
        UDS_NRC_BUSY_REPEAT_REQUEST = 0x21,
        UDS_NRC_CONDITIONS_NOT_CORRECT = 0x22,
        UDS_NRC_REQUEST_SEQUENCE_ERROR = 0x24,
        UDS_NRC_REQUEST_OUT_OF_RANGE = 0x31,
        UDS_NRC_SECURITY_ACCESS_DENIED = 0x33,
        UDS_NRC_INVALID_KEY = 0x35,
        UDS_NRC_EXCEEDED_ATTEMPTS = 0x36,
        UDS_NRC_TIME_DELAY_NOT_EXPIRED = 0x37,
        UDS_NRC_SERVICE_NOT_IN_SESSION = 0x7f,
} UdsNrc;

typedef enum UdsService {
        UDS_SESSION_CONTROL = 0x10,
        UDS_ECU_RESET = 0x11,
        UDS_READ_DID = 0x22,
        UDS_SECURITY_ACCESS = 0x27,
        UDS_ROUTINE_CONTROL = 0x31,
        UDS_TESTER_PRESENT = 0x3e,
} UdsService;

/* The name ISO 14229-1 gives a negative response code, e.g. "conditionsNotCorrect";
 * "vehicleManufacturerSpecific" or "reserved" for codes without one. Never NULL. */
const char *uds_nrc_to_string(uint8_t nrc);
/* A sentence for people, e.g. "the ECU refused: conditionsNotCorrect (NRC 0x22)". */
void uds_nrc_describe(uint8_t sid, uint8_t nrc, char *buf, size_t n);
const char *uds_service_to_string(uint8_t sid);
/* Whether a byte can start a request: not a positive answer's id (0x40-0x7F, 0xC0-0xFF),
 * whose answer id would otherwise be confused with 0x7F, the negative answer. */
static inline bool uds_is_request_sid(uint8_t sid) {
        return sid < 0x3f || (sid >= 0x80 && sid < 0xc0);
}
/* Whether the service has a sub-function byte whose bit 7 suppresses the positive answer. */
bool uds_service_has_subfunction(uint8_t sid);

typedef struct UdsClientConfig {
        usec_t p2;             /* P2client: wait for the first answer */
        usec_t p2_star;        /* P2*client: wait after each responsePending */
        unsigned max_pending;  /* responsePending answers accepted in a row for one request */
        size_t max_queue;      /* requests waiting behind the one on the wire */
        usec_t tester_present; /* interval of 3E 80; 0: none */
} UdsClientConfig;

/* P2 150 ms, P2* 5000 ms, 1000 responsePending, 16 queued, no tester present. */
void uds_client_config_init(UdsClientConfig *c);

typedef struct UdsResponse {
        int error;           /* 0: an answer came (see nrc); -ETIMEDOUT: none in P2/P2*;
                              * -ECANCELED; other: the transport failed (negative errno) */
        uint8_t sid;         /* the request's service id */
        uint8_t nrc;         /* 0 for a positive answer or a suppressed one */
        bool suppressed;     /* the request suppressed its positive answer and none was due */
        const uint8_t *data; /* the whole answer, service id first; NULL without one */
        size_t size;
        unsigned pending; /* responsePending answers seen before the end */
} UdsResponse;

typedef struct UdsClient UdsClient;
typedef void (*UdsCallback)(UdsClient *c, const UdsResponse *response, void *userdata);

typedef struct UdsClientIo {
        /* Hands a whole request to the transport. The transport then reports through
         * uds_client_sent(). -EBUSY when it is still sending: the client tries again. */
        int (*send)(void *userdata, const uint8_t *data, size_t size);
        /* Optional: told about answers that matched no request (for logs). */
        void (*unexpected)(void *userdata, const uint8_t *data, size_t size);
} UdsClientIo;

int uds_client_new(const UdsClientConfig *config, const UdsClientIo *io, void *userdata, UdsClient **ret);
UdsClient *uds_client_free(UdsClient *c);
static inline void uds_client_freep(UdsClient **c) {
        uds_client_free(*c);
}

/* Queues a request; the callback runs exactly once, unless the client is freed first.
 * -EINVAL for an empty or oversized request or one that starts with an answer's id,
 * -ENOBUFS when the queue is full. */
int uds_client_request(UdsClient *c, const uint8_t *data, size_t size, UdsCallback cb, void *userdata,
                       usec_t now);
/* Ends every queued and active request with the given error (e.g. -ECANCELED). */
void uds_client_cancel_all(UdsClient *c, int error, usec_t now);
bool uds_client_busy(UdsClient *c);

/* Starts (interval > 0) or stops (0) tester present. The first one goes out at once. */
void uds_client_set_tester_present(UdsClient *c, usec_t interval, usec_t now);

/* The transport reports: the last message handed to send() left completely (0) or not. */
void uds_client_sent(UdsClient *c, int error, usec_t now);
/* The transport delivers a whole message from the ECU. */
void uds_client_received(UdsClient *c, const uint8_t *data, size_t size, usec_t now);
/* The transport lost a message being received (negative errno). */
void uds_client_receive_failed(UdsClient *c, int error, usec_t now);

void uds_client_tick(UdsClient *c, usec_t now);
usec_t uds_client_next_deadline(UdsClient *c);

/* Counters, for logs and tests. */
typedef struct UdsClientStats {
        unsigned requests, answers, timeouts, pending, unexpected, tester_present;
} UdsClientStats;
const UdsClientStats *uds_client_stats(UdsClient *c);
