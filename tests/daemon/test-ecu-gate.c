/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The gate to the ECU against a scripted link: the test plays the UDS client, answering each
 * request when it wants (in time, late, never) and handing over answers that match no
 * request, as the link's unexpected handler does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "ecu-gate.h"

#define SCRIPT_MAX 8

typedef struct Sent {
        uint8_t data[8];
        size_t n;
        UdsCallback cb;
        void *userdata;
        bool answered;
} Sent;

static struct {
        Sent sent[SCRIPT_MAX];
        size_t n_sent;
        int send_error;
        /* what the owner saw */
        unsigned dispatched, idle;
        int last_error;
        uint8_t last_nrc;
        size_t last_size;
        uint8_t last_first;
        EcuGateFn last_fn;
        unsigned last_flags;
        usec_t now;
        EcuGate *gate;
        bool request_on_dispatch; /* the owner sends again from its continuation */
} t;

static int script_send(void *link, const uint8_t *data, size_t n, UdsCallback cb, void *userdata) {
        if (t.send_error < 0)
                return t.send_error;
        assert_true(t.n_sent < SCRIPT_MAX);
        Sent *s = &t.sent[t.n_sent++];
        *s = (Sent) { .n = MIN(n, sizeof(s->data)), .cb = cb, .userdata = userdata };
        memcpy(s->data, data, s->n);
        return 0;
}

static void cont_a(void) {
}
static void cont_b(void) {
}

static void owner_dispatch(void *owner, EcuGateFn fn, unsigned flags, const UdsResponse *r) {
        assert_ptr_equal(owner, &t);
        t.dispatched++;
        t.last_error = r->error;
        t.last_nrc = r->nrc;
        t.last_size = r->size;
        t.last_first = r->data ? r->data[0] : 0;
        t.last_fn = fn;
        t.last_flags = flags;
        if (t.request_on_dispatch) {
                static const uint8_t again[3] = { 0x22, 0xA0, 0x01 };
                t.request_on_dispatch = false;
                assert_int_equal(ecu_gate_request(t.gate, again, sizeof(again), cont_b, 0), 0);
        }
}

static void owner_idle(void *owner) {
        t.idle++;
}

static usec_t script_clock(void) {
        return t.now;
}

static const EcuGateOps ops = {
        .send = script_send,
        .dispatch = owner_dispatch,
        .idle = owner_idle,
        .clock = script_clock,
};

static int setup(void **state) {
        memset(&t, 0, sizeof(t));
        t.now = 1000 * USEC_PER_SEC;
        assert_int_equal(ecu_gate_new(&ops, NULL, &t, &t.gate), 0);
        return 0;
}

static int teardown(void **state) {
        /* every request the gate sent gets its callback, as the UDS client promises */
        for (size_t i = 0; i < t.n_sent; i++)
                if (!t.sent[i].answered) {
                        t.sent[i].answered = true;
                        t.sent[i].cb(NULL, &(UdsResponse) { .error = -ECANCELED, .sid = t.sent[i].data[0] },
                                     t.sent[i].userdata);
                }
        t.gate = ecu_gate_free(t.gate);
        return 0;
}

/* The scripted client answers request i. */
static void answer(size_t i, int error, const uint8_t *data, size_t n) {
        UdsResponse r = { .error = error, .sid = t.sent[i].data[0], .data = data, .size = n };

        assert_true(i < t.n_sent);
        assert_false(t.sent[i].answered);
        t.sent[i].answered = true;
        if (data && n >= 3 && data[0] == 0x7F)
                r.nrc = data[2];
        t.sent[i].cb(NULL, &r, t.sent[i].userdata);
}

static const uint8_t results_req[4] = { 0x31, 0x03, 0xA1, 0x02 };
static const uint8_t results_ans[10] = { 0x71, 0x03, 0xA1, 0x02, 0x02, 0x01, 0x06, 0x01, 0x02, 0x03 };
static const uint8_t did_req[3] = { 0x22, 0xA0, 0x02 };
static const uint8_t did_ans[5] = { 0x62, 0xA0, 0x02, 0x03, 0x00 };
static const uint8_t probe_ok[2] = { 0x7E, 0x00 };
static const uint8_t probe_busy[3] = { 0x7F, 0x3E, 0x21 };

static void test_answer_in_time(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0x300), 0);
        assert_true(ecu_gate_busy(t.gate));
        answer(0, 0, did_ans, sizeof(did_ans));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, 0);
        assert_int_equal(t.last_first, 0x62);
        assert_ptr_equal(t.last_fn, cont_a);
        assert_int_equal(t.last_flags, 0x300); /* the owner's flags come back as given */
        assert_false(ecu_gate_busy(t.gate));
        assert_int_equal(t.idle, 1);
}

static void test_two_requests_race(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        assert_int_equal(ecu_gate_request(t.gate, results_req, sizeof(results_req), cont_b, 0), -EBUSY);
        assert_int_equal(t.n_sent, 1);
        answer(0, 0, did_ans, sizeof(did_ans));
        assert_int_equal(t.dispatched, 1);
        assert_ptr_equal(t.last_fn, cont_a);
        /* free again: the second one goes */
        assert_int_equal(ecu_gate_request(t.gate, results_req, sizeof(results_req), cont_b, 0), 0);
        assert_int_equal(t.n_sent, 2);
}

static void test_continuation_sends_again(void **state) {
        t.request_on_dispatch = true;
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        answer(0, 0, did_ans, sizeof(did_ans));
        assert_int_equal(t.n_sent, 2);
        assert_true(ecu_gate_busy(t.gate));
        assert_int_equal(t.idle, 0); /* not idle: the continuation's request is out */
        answer(1, 0, did_ans, sizeof(did_ans));
        assert_int_equal(t.idle, 1);
}

static void test_answer_after_drop(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        ecu_gate_drop(t.gate); /* Cancel, or the procedure ended */
        assert_false(ecu_gate_busy(t.gate));
        answer(0, 0, did_ans, sizeof(did_ans));
        assert_int_equal(t.dispatched, 0);
        assert_int_equal(t.idle, 0);
        /* and the gate serves the next request */
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_b, 0), 0);
        answer(1, 0, did_ans, sizeof(did_ans));
        assert_int_equal(t.dispatched, 1);
        assert_ptr_equal(t.last_fn, cont_b);
}

static void test_late_answer_during_probe(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        /* not asleep yet: a probe */
        assert_int_equal(t.dispatched, 0);
        assert_int_equal(t.n_sent, 2);
        assert_int_equal(t.sent[1].data[0], 0x3E);
        assert_int_equal(t.sent[1].data[1], 0x00);
        assert_true(ecu_gate_busy(t.gate));
        ecu_gate_unexpected(t.gate, did_ans, sizeof(did_ans)); /* the late answer */
        assert_int_equal(t.dispatched, 0);                     /* ... acted on after the probe */
        answer(1, 0, probe_ok, sizeof(probe_ok));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, 0);
        assert_int_equal(t.last_first, 0x62);
        assert_ptr_equal(t.last_fn, cont_a);
        assert_false(ecu_gate_busy(t.gate));
}

/* 67 04 repeats only the sub-function of 27 04 KEY...: still the late answer to it */
static void test_late_answer_to_key(void **state) {
        static const uint8_t key_req[6] = { 0x27, 0x04, 0x12, 0x34, 0x56, 0x78 };
        static const uint8_t other_ok[2] = { 0x67, 0x02 }, key_ok[2] = { 0x67, 0x04 };

        assert_int_equal(ecu_gate_request(t.gate, key_req, sizeof(key_req), cont_a, 0), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        ecu_gate_unexpected(t.gate, other_ok, sizeof(other_ok)); /* another level's: not it */
        ecu_gate_unexpected(t.gate, key_ok, sizeof(key_ok));
        answer(1, 0, probe_ok, sizeof(probe_ok));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, 0);
        assert_int_equal(t.last_first, 0x67);
        assert_false(ecu_gate_busy(t.gate));
}

static void test_lost_answer(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        answer(1, 0, probe_ok, sizeof(probe_ok));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, ECU_GATE_LOST);
        /* too late now: ignored */
        ecu_gate_unexpected(t.gate, did_ans, sizeof(did_ans));
        assert_int_equal(t.dispatched, 1);
}

static void test_asleep(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        answer(1, -ETIMEDOUT, NULL, 0); /* the probe too */
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, -ETIMEDOUT);
        assert_ptr_equal(t.last_fn, cont_a);
        assert_false(ecu_gate_busy(t.gate));
}

/* The owner's own 3E 00 (its idle probe) answered late once: asked again, not asleep. */
static void test_late_probe_of_owner(void **state) {
        static const uint8_t owner_probe[2] = { 0x3E, 0x00 };

        assert_int_equal(ecu_gate_request(t.gate, owner_probe, sizeof(owner_probe), cont_a, 0), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        assert_int_equal(t.dispatched, 0);
        assert_int_equal(t.n_sent, 2);
        assert_int_equal(t.sent[1].data[0], 0x3E);
        answer(1, 0, probe_ok, sizeof(probe_ok));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, ECU_GATE_LOST);
        assert_false(ecu_gate_busy(t.gate));

        /* and unanswered twice: asleep */
        assert_int_equal(ecu_gate_request(t.gate, owner_probe, sizeof(owner_probe), cont_a, 0), 0);
        answer(2, -ETIMEDOUT, NULL, 0);
        answer(3, -ETIMEDOUT, NULL, 0);
        assert_int_equal(t.dispatched, 2);
        assert_int_equal(t.last_error, -ETIMEDOUT);
}

static void test_results_awaited_after_probe(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, results_req, sizeof(results_req), cont_a, ECU_GATE_WAIT_LATE), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        answer(1, 0, probe_busy, sizeof(probe_busy)); /* busy: awake, still working */
        assert_int_equal(t.dispatched, 0);
        /* still busy, so that no second read can take the late answer's place */
        assert_true(ecu_gate_busy(t.gate));
        assert_int_equal(ecu_gate_request(t.gate, results_req, sizeof(results_req), cont_b, 0), -EBUSY);
        /* an answer to something else is not it */
        ecu_gate_unexpected(t.gate, did_ans, sizeof(did_ans));
        assert_int_equal(t.dispatched, 0);
        ecu_gate_unexpected(t.gate, results_ans, sizeof(results_ans));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, 0);
        assert_int_equal(t.last_size, sizeof(results_ans)); /* its events with it */
        assert_false(ecu_gate_busy(t.gate));
        assert_int_equal(t.idle, 1);
}

static void test_results_window_ends(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, results_req, sizeof(results_req), cont_a, ECU_GATE_WAIT_LATE), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        answer(1, 0, probe_ok, sizeof(probe_ok));
        t.now += ECU_GATE_LATE_WINDOW_USEC - 1;
        ecu_gate_tick(t.gate);
        assert_int_equal(t.dispatched, 0);
        t.now += 1;
        ecu_gate_tick(t.gate);
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, ECU_GATE_LOST);
        assert_false(ecu_gate_busy(t.gate));
        assert_int_equal(t.idle, 1);
}

static void test_drop_during_probe(void **state) {
        assert_int_equal(ecu_gate_request(t.gate, results_req, sizeof(results_req), cont_a, ECU_GATE_WAIT_LATE), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        ecu_gate_drop(t.gate);
        ecu_gate_unexpected(t.gate, results_ans, sizeof(results_ans));
        answer(1, 0, probe_ok, sizeof(probe_ok));
        assert_int_equal(t.dispatched, 0);
        assert_false(ecu_gate_busy(t.gate));
}

static void test_pending_is_not_the_answer(void **state) {
        static const uint8_t pending[3] = { 0x7F, 0x22, 0x78 };
        static const uint8_t refused[3] = { 0x7F, 0x22, 0x31 };

        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        answer(0, -ETIMEDOUT, NULL, 0);
        ecu_gate_unexpected(t.gate, pending, sizeof(pending));
        ecu_gate_unexpected(t.gate, refused, sizeof(refused)); /* a late refusal is an answer */
        answer(1, 0, probe_ok, sizeof(probe_ok));
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, 0);
        assert_int_equal(t.last_nrc, 0x31);
}

static void test_send_fails(void **state) {
        t.send_error = -ENOBUFS;
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), -ENOBUFS);
        assert_false(ecu_gate_busy(t.gate));
        /* a probe that cannot be sent: the timeout is what the owner hears */
        t.send_error = 0;
        assert_int_equal(ecu_gate_request(t.gate, did_req, sizeof(did_req), cont_a, 0), 0);
        t.send_error = -ENOBUFS;
        answer(0, -ETIMEDOUT, NULL, 0);
        assert_int_equal(t.dispatched, 1);
        assert_int_equal(t.last_error, -ETIMEDOUT);
        assert_false(ecu_gate_busy(t.gate));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_answer_in_time, setup, teardown),
                cmocka_unit_test_setup_teardown(test_two_requests_race, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_answer_to_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_continuation_sends_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_answer_after_drop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_answer_during_probe, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lost_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_asleep, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_probe_of_owner, setup, teardown),
                cmocka_unit_test_setup_teardown(test_results_awaited_after_probe, setup, teardown),
                cmocka_unit_test_setup_teardown(test_results_window_ends, setup, teardown),
                cmocka_unit_test_setup_teardown(test_drop_during_probe, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pending_is_not_the_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_send_fails, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
