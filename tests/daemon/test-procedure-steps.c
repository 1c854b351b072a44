/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "procedure-steps.h"

/* The step ids of dbus-api.md, in order: the contract front ends rely on. */
static const char *const contract[_PROCEDURE_KIND_MAX][10] = {
        [PROCEDURE_IMMOBILIZER_RESET] = { "confirm-erase-all", "open-driver-door", "immobilizer-passcode",
                                          "confirm-duration", "smart-code-passcode", "resetting", "done" },
        [PROCEDURE_KEY_REGISTRATION] = { "confirm-instructions", "smart-code-passcode", "check-slots",
                                         "place-keys", "touch-registered-key", "pre-start-check",
                                         "touch-new-keys", "function-check", "done" },
        [PROCEDURE_KEY_ERASURE] = { "confirm-warning", "declare-keys", "confirm-counts", "confirm-agree",
                                    "smart-code-passcode", "touch-keys", "done" },
};

static void test_contract_step_ids(void **state) {
        for (ProcedureKind k = 0; k < _PROCEDURE_KIND_MAX; k++) {
                size_t n, expected = 0;
                const StepInfo *s = procedure_steps(k, &n);

                while (contract[k][expected])
                        expected++;
                assert_non_null(s);
                assert_int_equal(n, expected);
                for (size_t i = 0; i < n; i++) {
                        assert_string_equal(s[i].id, contract[k][i]);
                        assert_int_equal(procedure_step_index(k, s[i].id), (int) i);
                        assert_true(strlen(s[i].prompt) > 10);
                }
                assert_int_equal(s[n - 1].end, STEP_END_NONE);
        }
        assert_int_equal(procedure_step_index(PROCEDURE_KEY_ERASURE, "resetting"), -ENOENT);
        assert_int_equal(procedure_step_index(PROCEDURE_KEY_ERASURE, NULL), -ENOENT);
}

static void test_how_steps_end(void **state) {
        size_t n;
        const StepInfo *r = procedure_steps(PROCEDURE_IMMOBILIZER_RESET, &n);
        const StepInfo *g = procedure_steps(PROCEDURE_KEY_REGISTRATION, &n);
        const StepInfo *e = procedure_steps(PROCEDURE_KEY_ERASURE, &n);

        assert_int_equal(r[1].end, STEP_END_ACKNOWLEDGE); /* open-driver-door */
        assert_int_equal(r[2].end, STEP_END_PASSCODE);
        assert_int_equal(r[5].end, STEP_END_BY_ITSELF); /* resetting */
        assert_false(r[5].cancellable);                 /* NotCancellable while the ECU resets */
        assert_false(r[5].waiting);
        assert_int_equal(g[4].end, STEP_END_ECU_EVENT); /* touch-registered-key */
        assert_int_equal(g[6].end, STEP_END_ECU_EVENT); /* touch-new-keys */
        assert_int_equal(e[1].end, STEP_END_KEY_COUNT); /* declare-keys */
        assert_int_equal(e[5].end, STEP_END_ERASE);     /* touch-keys */
}

/* Where an interrupted procedure goes on, and what each step holds open: the rows that the
 * engine runs. */
static void test_behaviour_rows(void **state) {
        static const struct {
                ProcedureKind kind;
                const char *at, *resume;
        } resume[] = {
                { PROCEDURE_IMMOBILIZER_RESET, "open-driver-door", "open-driver-door" },
                { PROCEDURE_IMMOBILIZER_RESET, "confirm-duration", "immobilizer-passcode" },
                { PROCEDURE_IMMOBILIZER_RESET, "smart-code-passcode", "immobilizer-passcode" },
                { PROCEDURE_KEY_REGISTRATION, "confirm-instructions", "confirm-instructions" },
                { PROCEDURE_KEY_REGISTRATION, "touch-new-keys", "smart-code-passcode" },
                { PROCEDURE_KEY_REGISTRATION, "function-check", "function-check" },
                { PROCEDURE_KEY_ERASURE, "confirm-agree", "declare-keys" },
                { PROCEDURE_KEY_ERASURE, "touch-keys", "declare-keys" },
                { PROCEDURE_KEY_ERASURE, "done", "done" },
        };
        size_t n;

        for (size_t i = 0; i < ELEMENTSOF(resume); i++) {
                int at = procedure_step_index(resume[i].kind, resume[i].at);
                assert_true(at >= 0);
                assert_int_equal(procedure_resume_index(resume[i].kind, (size_t) at),
                                 procedure_step_index(resume[i].kind, resume[i].resume));
        }
        /* only the running reset refuses Cancel; every step that holds a routine open polls it */
        for (ProcedureKind k = 0; k < _PROCEDURE_KIND_MAX; k++) {
                const StepInfo *s = procedure_steps(k, &n);
                for (size_t i = 0; i + 1 < n; i++) {
                        assert_true(s[i].cancellable == (s[i].poll != POLL_RESET));
                        if (s[i].enter == ENTER_REGISTRATION_MODE_1 || s[i].enter == ENTER_REGISTRATION_MODE_2)
                                assert_int_equal(s[i].poll, POLL_REGISTRATION);
                        if (s[i].enter == ENTER_ERASURE_WINDOW)
                                assert_int_equal(s[i].poll, POLL_ERASURE);
                        if (s[i].enter == ENTER_IMMOBILIZER_SEED || s[i].enter == ENTER_SMART_CODE_SEED)
                                assert_int_equal(s[i].end, STEP_END_PASSCODE);
                }
                assert_int_equal(s[n - 1].enter, ENTER_FINAL_KEYS);
        }
        assert_int_equal(procedure_step_entering(PROCEDURE_KEY_REGISTRATION, ENTER_REGISTRATION_MODE_1),
                         procedure_step_index(PROCEDURE_KEY_REGISTRATION, "touch-registered-key"));
        assert_int_equal(procedure_step_entering(PROCEDURE_KEY_ERASURE, ENTER_REGISTRATION_MODE_1), -ENOENT);
        /* the reset's second passcode starts it */
        const StepInfo *r = procedure_steps(PROCEDURE_IMMOBILIZER_RESET, &n);
        assert_int_equal(r[procedure_step_index(PROCEDURE_IMMOBILIZER_RESET, "smart-code-passcode")].passcode,
                         PASSCODE_START_RESET);
        assert_int_equal(r[procedure_step_index(PROCEDURE_IMMOBILIZER_RESET, "open-driver-door")].check,
                         CHECK_DOOR_OPEN);
}

static void test_kind_names(void **state) {
        ProcedureKind k = _PROCEDURE_KIND_MAX;

        assert_int_equal(procedure_kind_from_string("immobilizer-reset", &k), 0);
        assert_int_equal(k, PROCEDURE_IMMOBILIZER_RESET);
        assert_int_equal(procedure_kind_from_string("key-registration", &k), 0);
        assert_int_equal(k, PROCEDURE_KEY_REGISTRATION);
        assert_int_equal(procedure_kind_from_string("key-erasure", &k), 0);
        assert_int_equal(k, PROCEDURE_KEY_ERASURE);
        assert_int_equal(procedure_kind_from_string("Key-Erasure", &k), -EINVAL);
        assert_int_equal(procedure_kind_from_string("", &k), -EINVAL);
        assert_int_equal(procedure_kind_from_string(NULL, &k), -EINVAL);
        assert_int_equal(k, PROCEDURE_KEY_ERASURE); /* untouched on failure */
        assert_string_equal(procedure_kind_to_string(PROCEDURE_KEY_REGISTRATION), "key-registration");
        assert_null(procedure_kind_to_string(_PROCEDURE_KIND_MAX));
}

static void test_percentage_weighted_by_duration(void **state) {
        ProcedureKind k = PROCEDURE_IMMOBILIZER_RESET;

        assert_int_equal(procedure_percentage(k, 0, 0), 0);
        /* the 960 s reset dominates: everything before it is 150 of 1110 s */
        assert_int_equal(procedure_percentage(k, 5, 0), 150 * 100 / 1110);
        assert_int_equal(procedure_percentage(k, 5, 500), (150 + 480) * 100 / 1110);
        assert_int_equal(procedure_percentage(k, 5, 1000), 100);
        assert_int_equal(procedure_percentage(k, 5, 5000), 100); /* fraction clamped */
        assert_int_equal(procedure_percentage(k, 6, 0), 100);    /* done */
        assert_int_equal(procedure_percentage(k, 99, 0), 100);
        for (size_t i = 1; i < 7; i++)
                assert_true(procedure_percentage(k, i, 0) >= procedure_percentage(k, i - 1, 0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_contract_step_ids),
                cmocka_unit_test(test_how_steps_end),
                cmocka_unit_test(test_behaviour_rows),
                cmocka_unit_test(test_kind_names),
                cmocka_unit_test(test_percentage_weighted_by_duration),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
