/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>

#include "ecu-gate.h"
#include "log.h"

#define LATE_ANSWER_MAX 1024U /* routine results with every event fit */

typedef struct GateCall {
        EcuGate *gate; /* NULL once dropped: the answer is then only freed */
        EcuGateFn fn;
        unsigned flags;
        bool probe;
        uint8_t head[4]; /* the request's first bytes, to know its late answer */
        size_t n_head;
} GateCall;

struct EcuGate {
        EcuGateOps ops;
        void *link, *owner;
        GateCall *inflight; /* on the wire: a request, or the probe */
        GateCall *late;     /* timed out; its answer is still welcome */
        bool late_probed;   /* ... and the probe was answered: welcome until late_until */
        usec_t late_until;
        uint8_t late_answer[LATE_ANSWER_MAX]; /* came while the probe was out */
        size_t late_size;
};

static const uint8_t probe_request[2] = { UDS_TESTER_PRESENT, 0x00 };

static void on_answer(UdsClient *c, const UdsResponse *resp, void *userdata);

int ecu_gate_new(const EcuGateOps *ops, void *link, void *owner, EcuGate **ret) {
        EcuGate *g;

        assert(ops && ops->send && ops->dispatch && ops->clock);
        assert(ret);
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        g->ops = *ops;
        g->link = link;
        g->owner = owner;
        *ret = g;
        return 0;
}

void ecu_gate_drop(EcuGate *g) {
        if (!g)
                return;
        if (g->inflight)
                g->inflight->gate = NULL; /* freed by on_answer(), which the link always calls */
        g->inflight = NULL;
        g->late = mfree(g->late);
        g->late_size = 0;
        g->late_probed = false;
}

EcuGate *ecu_gate_free(EcuGate *g) {
        ecu_gate_drop(g);
        free(g);
        return NULL;
}

bool ecu_gate_busy(const EcuGate *g) {
        return g->inflight || g->late;
}

static int send_call(EcuGate *g, const uint8_t *data, size_t n, EcuGateFn fn, unsigned flags, bool probe) {
        GateCall *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (GateCall) { .gate = g, .fn = fn, .flags = flags, .probe = probe, .n_head = MIN(n, sizeof(c->head)) };
        memcpy(c->head, data, c->n_head);
        r = g->ops.send(g->link, data, n, on_answer, c);
        if (r < 0) {
                free(c);
                return r;
        }
        g->inflight = c;
        return 0;
}

int ecu_gate_request(EcuGate *g, const uint8_t *data, size_t n, EcuGateFn fn, unsigned flags) {
        assert(g);
        assert(data && n > 0);
        if (ecu_gate_busy(g))
                return -EBUSY;
        return send_call(g, data, n, fn, flags, false);
}

static void maybe_idle(EcuGate *g) {
        if (!ecu_gate_busy(g) && g->ops.idle)
                g->ops.idle(g->owner);
}

/* Hands the owner the outcome of the awaited late request and forgets it. */
static void end_late(EcuGate *g, const UdsResponse *r) {
        GateCall *late = TAKE_PTR(g->late);

        g->late_probed = false;
        g->ops.dispatch(g->owner, late->fn, late->flags, r);
        free(late);
}

static void deliver_late_answer(EcuGate *g) {
        UdsResponse r = { .sid = g->late->head[0], .data = g->late_answer, .size = g->late_size };

        if (g->late_answer[0] == UDS_NEGATIVE_RESPONSE && g->late_size >= 3)
                r.nrc = g->late_answer[2];
        g->late_size = 0;
        log_info("ECU: the late answer to service 0x%02X came after all.", r.sid);
        end_late(g, &r);
}

static void probe_answered(EcuGate *g, const UdsResponse *resp) {
        if (!g->late)
                return;
        if (g->late_size > 0)
                return deliver_late_answer(g);
        if (resp->error == 0 && (g->late->flags & ECU_GATE_WAIT_LATE)) {
                /* awake, and slow: the answer may still come */
                g->late_probed = true;
                g->late_until = g->ops.clock() + ECU_GATE_LATE_WINDOW_USEC;
                return;
        }
        if (resp->error == 0) {
                log_info("ECU: it answers, but its answer to service 0x%02X was lost.", g->late->head[0]);
                return end_late(g, &(UdsResponse) { .error = ECU_GATE_LOST, .sid = g->late->head[0] });
        }
        end_late(g, &(UdsResponse) { .error = resp->error, .sid = g->late->head[0] });
}

static void on_answer(UdsClient *c, const UdsResponse *resp, void *userdata) {
        _cleanup_free_ GateCall *call = userdata;
        EcuGate *g = call->gate;

        if (!g) /* dropped */
                return;
        assert(g->inflight == call);
        g->inflight = NULL;

        if (call->probe)
                probe_answered(g, resp);
        else if (resp->error == -ETIMEDOUT) {
                /* late, or asleep? the probe tells; the answer stays welcome meanwhile. The
                 * owner's own 3E 00 too: one late answer to it is not sleep either. */
                g->late = TAKE_PTR(call);
                g->late_size = 0;
                g->late_probed = false;
                if (send_call(g, probe_request, sizeof(probe_request), NULL, 0, true) >= 0) {
                        log_info("ECU: no answer to service 0x%02X within P2; asking 3E 00.", g->late->head[0]);
                        return;
                }
                end_late(g, resp);
        } else
                g->ops.dispatch(g->owner, call->fn, call->flags, resp);
        maybe_idle(g);
}

/* How many bytes after the service id a positive answer repeats of its request: the DID
 * (22), the sub-function and routine id (31), else the sub-function (10, 27, 3E), never
 * a key or an option. */
static size_t echoed_bytes(const GateCall *c) {
        size_t n = 1;

        if (c->head[0] == UDS_READ_DID)
                n = 2;
        else if (c->head[0] == UDS_ROUTINE_CONTROL)
                n = 3;
        return MIN(n, c->n_head - 1);
}

void ecu_gate_unexpected(EcuGate *g, const uint8_t *data, size_t n) {
        GateCall *late = g ? g->late : NULL;

        if (!late || n == 0 || g->late_size > 0)
                return;
        size_t echo = echoed_bytes(late);
        bool negative = n >= 3 && data[0] == UDS_NEGATIVE_RESPONSE && data[1] == late->head[0];
        bool positive = data[0] == (uint8_t) (late->head[0] + 0x40) && n >= 1 + echo &&
                        memcmp(data + 1, late->head + 1, echo) == 0;
        if (!negative && !positive)
                return;
        if (negative && data[2] == UDS_NRC_RESPONSE_PENDING)
                return; /* still working on it */
        if (n > sizeof(g->late_answer)) {
                log_warning("ECU: a late answer of %zu bytes is too long to keep; dropped.", n);
                return;
        }
        memcpy(g->late_answer, data, n);
        g->late_size = n;
        if (g->late_probed) { /* else when the probe's answer is in */
                deliver_late_answer(g);
                maybe_idle(g);
        }
}

void ecu_gate_tick(EcuGate *g) {
        if (!g || !g->late || !g->late_probed || g->ops.clock() < g->late_until)
                return;
        log_info("ECU: the late answer to service 0x%02X never came.", g->late->head[0]);
        end_late(g, &(UdsResponse) { .error = ECU_GATE_LOST, .sid = g->late->head[0] });
        maybe_idle(g);
}
