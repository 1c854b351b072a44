/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The gate to the ECU for one owner (a procedure): one request at a time, each a handle that
 * the owner drops when it ends or cancels, the way a dropped sd_bus_slot never calls back:
 * a dropped request's answer is never acted on.
 *
 * An answer later than P2 is not taken for sleep: the gate asks `3E 00` first. An answer
 * that comes while the probe is out is delivered as if in time. For reads whose answer must
 * not be lost (routine results carry key events that the ECU reports once), the gate goes
 * on waiting after the probe was answered, until the late window ends; meanwhile it is busy,
 * so that no second read can take the late answer's place. Only an unanswered probe means
 * the ECU sleeps.
 *
 * The owner hears every outcome through one dispatch function, with the response's error:
 *   0            an answer (in time or late; nrc set for a negative one)
 *   -ENOMSG      the ECU answered the probe but this request's answer was lost
 *   -ETIMEDOUT   no answer, and none to the probe either: the ECU sleeps
 *   -ECANCELED   immod shuts down; other negative errno: the link failed
 */

#include "uds.h"

#define ECU_GATE_LOST (-ENOMSG)
#define ECU_GATE_LATE_WINDOW_USEC (5 * USEC_PER_SEC) /* P2*server: an ECU late beyond it is not coming */

enum {
        ECU_GATE_WAIT_LATE = 1U << 0,   /* the answer stays welcome after the probe was answered */
        ECU_GATE_OWNER_FLAGS = 1U << 8, /* bits from here on are the owner's, handed back */
};

typedef struct EcuGate EcuGate;
typedef void (*EcuGateFn)(void); /* the owner's continuation, handed back as given */

/* How a request reaches the ECU: uds_link_request() in immod, a script in the unit tests.
 * The callback must run exactly once for every request accepted. */
typedef int (*EcuGateSend)(void *link, const uint8_t *data, size_t n, UdsCallback cb, void *userdata);
typedef void (*EcuGateDispatch)(void *owner, EcuGateFn fn, unsigned flags, const UdsResponse *r);
/* The gate became free (nothing in flight, no late answer awaited). */
typedef void (*EcuGateIdle)(void *owner);
typedef usec_t (*EcuGateClock)(void);

typedef struct EcuGateOps {
        EcuGateSend send;
        EcuGateDispatch dispatch;
        EcuGateIdle idle; /* optional */
        EcuGateClock clock;
} EcuGateOps;

int ecu_gate_new(const EcuGateOps *ops, void *link, void *owner, EcuGate **ret);
/* Drops what is in flight (its answer is then ignored) and frees the gate. */
EcuGate *ecu_gate_free(EcuGate *g);

/* -EBUSY while a request is in flight or a late answer is awaited. */
int ecu_gate_request(EcuGate *g, const uint8_t *data, size_t n, EcuGateFn fn, unsigned flags);
/* The owner ends or cancels: nothing in flight will be dispatched. */
void ecu_gate_drop(EcuGate *g);
bool ecu_gate_busy(const EcuGate *g);
/* An answer that matched no request (the link's unexpected handler): maybe the late one. */
void ecu_gate_unexpected(EcuGate *g, const uint8_t *data, size_t n);
/* Ends an awaited late answer whose window is over (as lost); from the owner's timer. */
void ecu_gate_tick(EcuGate *g);
