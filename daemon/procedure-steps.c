/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "procedure-steps.h"

/* Immobilizer Reset (all keys lost): bulletin pages 10-22. */
static const StepInfo immobilizer_reset[] = {
        { "confirm-erase-all", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Resetting the immobilizer erases ALL registered keys. Erased keys can never be used again, "
          "on this or any vehicle. Confirm that all keys are lost and that the reset may erase them." },
        { "open-driver-door", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Open the driver's door and leave it open, then confirm." },
        { "immobilizer-passcode", STEP_END_PASSCODE, true, true, 60,
          "Get the immobilizer passcode for the seed shown from the passcode service (Immobilizer Reset, "
          "with the manager's approval for this VIN) and enter it." },
        { "confirm-duration", STEP_END_ACKNOWLEDGE, true, true, 10,
          "The reset takes about 16 minutes. Keep the battery charged (a power supply holding 13.5 V), "
          "keep the driver's door open and do not cycle the engine switch. Confirm to continue." },
        { "smart-code-passcode", STEP_END_PASSCODE, true, true, 60,
          "Get the smart code passcode for the VIN, Data1, Data2 and Data3 shown from the passcode service "
          "(Add/Remove Key) and enter it. The reset starts right after." },
        { "resetting", STEP_END_BY_ITSELF, false, false, 960,
          "The immobilizer is being reset. Leave the car as it is: do not disconnect, keep the driver's "
          "door open, do not cycle the engine switch." },
        { "done", STEP_END_NONE, false, false, 0,
          "The immobilizer was reset: no key is registered. Register new keys with Smart Code "
          "Registration." },
};

/* Smart Code Registration (add keys): bulletin pages 23-29. */
static const StepInfo key_registration[] = {
        { "confirm-instructions", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Have the registered key and the new keys at hand. New keys can only be registered in free "
          "slots. Confirm that you have read the instructions." },
        { "smart-code-passcode", STEP_END_PASSCODE, true, true, 60,
          "Get the smart code passcode for the VIN, Data1, Data2 and Data3 shown from the passcode service "
          "(Add/Remove Key) and enter it." },
        { "check-slots", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Check the number of registered keys and free slots. If no slot is free, no key can be added." },
        { "place-keys", STEP_END_ACKNOWLEDGE, true, true, 20,
          "Place the registered key and the new keys outside the vehicle, then bring only the registered "
          "key into the vehicle, and confirm." },
        { "touch-registered-key", STEP_END_ECU_EVENT, true, true, 20,
          "Touch the engine switch with the registered key." },
        { "pre-start-check", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Pre-start check: new keys are registered by touching them to the engine switch, one at a time. "
          "The vehicle beeps after each key is registered. Confirm to start." },
        { "touch-new-keys", STEP_END_ECU_EVENT, true, true, 30,
          "Touch the engine switch with the new key. The vehicle beeps when the key is registered." },
        { "function-check", STEP_END_ACKNOWLEDGE, true, true, 30,
          "Check each new key: press lock, unlock, panic and trunk, and make sure the vehicle starts with "
          "it. Confirm when done." },
        { "done", STEP_END_NONE, false, false, 0, "The keys are registered." },
};

/* Undesignated Key Permanent Erasure (keys lost or stolen): bulletin pages 30-35. */
static const StepInfo key_erasure[] = {
        { "confirm-warning", STEP_END_ACKNOWLEDGE, true, true, 10,
          "The keys that are NOT present in this procedure will be permanently erased from the vehicle. "
          "Erased keys will never work on this or any vehicle. Confirm to continue." },
        { "declare-keys", STEP_END_KEY_COUNT, true, true, 10,
          "Enter the number of customer keys that are present." },
        { "confirm-counts", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Confirm the number of keys to keep and the number of keys to delete." },
        { "confirm-agree", STEP_END_ACKNOWLEDGE, true, true, 10,
          "Only the keys touched to the engine switch will be kept. All other keys will be deleted and can "
          "never be used again on any vehicle. Agree to continue." },
        { "smart-code-passcode", STEP_END_PASSCODE, true, true, 60,
          "Get the smart code passcode for the VIN, Data1, Data2 and Data3 shown from the passcode service "
          "(Add/Remove Key) and enter it." },
        { "touch-keys", STEP_END_ERASE, true, true, 30,
          "Within 30 seconds, touch each key present to the engine switch, one at a time (one beep per "
          "key). Then delete the keys that were not touched." },
        { "done", STEP_END_NONE, false, false, 0,
          "The keys that were not touched are erased and will never work on any vehicle." },
};

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
