/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "procedure-steps.h"

/* A row: the step id, how it ends, whether a person acts (State "waiting"), whether Cancel
 * may interrupt it, its expected seconds (for Percentage); then its behaviour; then its
 * prompt. A step without `resume_at` resumes where it was. */
#define ACK(id_) .id = id_, .end = STEP_END_ACKNOWLEDGE, .waiting = true, .cancellable = true
#define PASSCODE(id_) .id = id_, .end = STEP_END_PASSCODE, .waiting = true, .cancellable = true
#define DONE .id = "done", .end = STEP_END_NONE, .enter = ENTER_FINAL_KEYS

/* The procedures, laid out by hand: a row per step, in the bulletin's order, its prompt last.
 * clang-format 14 would join some rows into one long line. */
/* clang-format off */

/* Immobilizer Reset (all keys lost): bulletin pages 10-22. Both passcodes must be accepted
 * in one session, so a restart goes back to the first one. */
static const StepInfo immobilizer_reset[] = {
        { ACK("confirm-erase-all"), .weight_s = 10,
          .prompt = "Resetting the immobilizer erases ALL registered keys. Erased keys can never be used again, "
                    "on this or any vehicle. Confirm that all keys are lost and that the reset may erase them." },
        { ACK("open-driver-door"), .weight_s = 10, .check = CHECK_DOOR_OPEN,
          .prompt = "Open the driver's door and leave it open, then confirm." },
        { PASSCODE("immobilizer-passcode"), .weight_s = 60, .enter = ENTER_IMMOBILIZER_SEED,
          .prompt = "Get the immobilizer passcode for the seed shown from the passcode service (Immobilizer "
                    "Reset, with the manager's approval for this VIN) and enter it." },
        { ACK("confirm-duration"), .weight_s = 10, .resume_at = "immobilizer-passcode",
          .prompt = "The reset takes about 16 minutes. Keep the battery charged (a power supply holding 13.5 V), "
                    "keep the driver's door open and do not cycle the engine switch. Confirm to continue." },
        { PASSCODE("smart-code-passcode"), .weight_s = 60, .enter = ENTER_SMART_CODE_SEED,
          .passcode = PASSCODE_START_RESET, .resume_at = "immobilizer-passcode",
          .prompt = "Get the smart code passcode for the VIN, Data1, Data2 and Data3 shown from the passcode "
                    "service (Add/Remove Key) and enter it. The reset starts right after." },
        { .id = "resetting", .end = STEP_END_BY_ITSELF, .weight_s = 960, .poll = POLL_RESET,
          .prompt = "The immobilizer is being reset. Leave the car as it is: do not disconnect, keep the driver's "
                    "door open, do not cycle the engine switch." },
        { DONE, .prompt = "The immobilizer was reset: no key is registered. Register new keys with Smart Code "
                          "Registration." },
};

/* Smart Code Registration (add keys): bulletin pages 23-29. A restart goes back to the
 * passcode: the ECU forgot it, and keys registered so far stay registered. */
static const StepInfo key_registration[] = {
        { ACK("confirm-instructions"), .weight_s = 10,
          .prompt = "Have the registered key and the new keys at hand. New keys can only be registered in free "
                    "slots. Confirm that you have read the instructions." },
        { PASSCODE("smart-code-passcode"), .weight_s = 60, .enter = ENTER_SMART_CODE_SEED,
          .prompt = "Get the smart code passcode for the VIN, Data1, Data2 and Data3 shown from the passcode "
                    "service (Add/Remove Key) and enter it." },
        { ACK("check-slots"), .weight_s = 10, .enter = ENTER_READ_SLOTS, .check = CHECK_FREE_SLOT,
          .resume_at = "smart-code-passcode",
          .prompt = "Check the number of registered keys and free slots. If no slot is free, no key can be added." },
        { ACK("place-keys"), .weight_s = 20, .resume_at = "smart-code-passcode",
          .prompt = "Place the registered key and the new keys outside the vehicle, then bring only the "
                    "registered key into the vehicle, and confirm." },
        { .id = "touch-registered-key", .end = STEP_END_ECU_EVENT, .waiting = true, .cancellable = true,
          .weight_s = 20, .enter = ENTER_REGISTRATION_MODE_1, .poll = POLL_REGISTRATION, .needs_key = true,
          .resume_at = "smart-code-passcode",
          .prompt = "Touch the engine switch with the registered key." },
        { ACK("pre-start-check"), .weight_s = 10, .poll = POLL_REGISTRATION, .resume_at = "smart-code-passcode",
          .prompt = "Pre-start check: new keys are registered by touching them to the engine switch, one at a "
                    "time. The vehicle beeps after each key is registered. Confirm to start." },
        { .id = "touch-new-keys", .end = STEP_END_ECU_EVENT, .waiting = true, .cancellable = true, .weight_s = 30,
          .enter = ENTER_REGISTRATION_MODE_2, .poll = POLL_REGISTRATION, .resume_at = "smart-code-passcode",
          .prompt = "Touch the engine switch with the new key. The vehicle beeps when the key is registered." },
        { ACK("function-check"), .weight_s = 30, /* the keys are registered: nothing to redo */
          .prompt = "Check each new key: press lock, unlock, panic and trunk, and make sure the vehicle starts "
                    "with it. Confirm when done." },
        { DONE, .prompt = "The keys are registered." },
};

/* Undesignated Key Permanent Erasure (keys lost or stolen): bulletin pages 30-35. The
 * counts are not journalled: a restart asks for them again. */
static const StepInfo key_erasure[] = {
        { ACK("confirm-warning"), .weight_s = 10,
          .prompt = "The keys that are NOT present in this procedure will be permanently erased from the vehicle. "
                    "Erased keys will never work on this or any vehicle. Confirm to continue." },
        { .id = "declare-keys", .end = STEP_END_KEY_COUNT, .waiting = true, .cancellable = true, .weight_s = 10,
          .prompt = "Enter the number of customer keys that are present." },
        { ACK("confirm-counts"), .weight_s = 10, .resume_at = "declare-keys",
          .prompt = "Confirm the number of keys to keep and the number of keys to delete." },
        { ACK("confirm-agree"), .weight_s = 10, .resume_at = "declare-keys",
          .prompt = "Only the keys touched to the engine switch will be kept. All other keys will be deleted and "
                    "can never be used again on any vehicle. Agree to continue." },
        { PASSCODE("smart-code-passcode"), .weight_s = 60, .enter = ENTER_SMART_CODE_SEED,
          .resume_at = "declare-keys",
          .prompt = "Get the smart code passcode for the VIN, Data1, Data2 and Data3 shown from the passcode "
                    "service (Add/Remove Key) and enter it." },
        { .id = "touch-keys", .end = STEP_END_ERASE, .waiting = true, .cancellable = true, .weight_s = 30,
          .enter = ENTER_ERASURE_WINDOW, .poll = POLL_ERASURE, .resume_at = "declare-keys",
          .prompt = "Within 30 seconds, touch each key present to the engine switch, one at a time (one beep per "
                    "key). Then delete the keys that were not touched." },
        { DONE, .prompt = "The keys that were not touched are erased and will never work on any vehicle." },
};

/* clang-format on */

#undef ACK
#undef PASSCODE
#undef DONE

static const struct {
        const char *name;
        const StepInfo *steps;
        size_t n;
} kinds[_PROCEDURE_KIND_MAX] = {
        [PROCEDURE_IMMOBILIZER_RESET] = { "immobilizer-reset", immobilizer_reset, ELEMENTSOF(immobilizer_reset) },
        [PROCEDURE_KEY_REGISTRATION] = { "key-registration", key_registration, ELEMENTSOF(key_registration) },
        [PROCEDURE_KEY_ERASURE] = { "key-erasure", key_erasure, ELEMENTSOF(key_erasure) },
};

const char *procedure_kind_to_string(ProcedureKind k) {
        if (k < 0 || k >= _PROCEDURE_KIND_MAX)
                return NULL;
        return kinds[k].name;
}

int procedure_kind_from_string(const char *s, ProcedureKind *ret) {
        for (ProcedureKind k = 0; k < _PROCEDURE_KIND_MAX; k++)
                if (s && streq(s, kinds[k].name)) {
                        *ret = k;
                        return 0;
                }
        return -EINVAL;
}

const StepInfo *procedure_steps(ProcedureKind k, size_t *ret_n) {
        if (k < 0 || k >= _PROCEDURE_KIND_MAX)
                return NULL;
        *ret_n = kinds[k].n;
        return kinds[k].steps;
}

size_t procedure_resume_index(ProcedureKind k, size_t index) {
        size_t n;
        const StepInfo *steps = procedure_steps(k, &n);

        if (!steps || index >= n)
                return 0;
        int i = steps[index].resume_at ? procedure_step_index(k, steps[index].resume_at) : (int) index;
        return i >= 0 ? (size_t) i : 0;
}

int procedure_step_entering(ProcedureKind k, StepEnter enter) {
        size_t n;
        const StepInfo *steps = procedure_steps(k, &n);

        for (size_t i = 0; steps && i < n; i++)
                if (steps[i].enter == enter)
                        return (int) i;
        return -ENOENT;
}

int procedure_step_index(ProcedureKind k, const char *id) {
        size_t n;
        const StepInfo *steps = procedure_steps(k, &n);

        for (size_t i = 0; steps && id && i < n; i++)
                if (streq(steps[i].id, id))
                        return (int) i;
        return -ENOENT;
}

unsigned procedure_percentage(ProcedureKind k, size_t index, unsigned fraction_permille) {
        uint64_t total = 0, done = 0;
        size_t n;
        const StepInfo *steps = procedure_steps(k, &n);

        if (!steps)
                return 0;
        for (size_t i = 0; i < n; i++) {
                total += steps[i].weight_s * 1000ULL;
                if (i < index)
                        done += steps[i].weight_s * 1000ULL;
                else if (i == index)
                        done += steps[i].weight_s * (uint64_t) MIN(fraction_permille, 1000U);
        }
        if (index >= n)
                return 100;
        return (unsigned) (done * 100 / total);
}
