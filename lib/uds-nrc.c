/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "uds.h"

/* ISO 14229-1:2020 table A.1 */
static const char *const nrc_names[256] = {
        [0x10] = "generalReject",
        [0x11] = "serviceNotSupported",
        [0x12] = "subFunctionNotSupported",
        [0x13] = "incorrectMessageLengthOrInvalidFormat",
        [0x14] = "responseTooLong",
        [0x21] = "busyRepeatRequest",
        [0x22] = "conditionsNotCorrect",
        [0x24] = "requestSequenceError",
        [0x25] = "noResponseFromSubnetComponent",
        [0x26] = "failurePreventsExecutionOfRequestedAction",
        [0x31] = "requestOutOfRange",
        [0x33] = "securityAccessDenied",
        [0x34] = "authenticationRequired",
        [0x35] = "invalidKey",
        [0x36] = "exceedNumberOfAttempts",
        [0x37] = "requiredTimeDelayNotExpired",
        [0x70] = "uploadDownloadNotAccepted",
        [0x71] = "transferDataSuspended",
        [0x72] = "generalProgrammingFailure",
        [0x73] = "wrongBlockSequenceCounter",
        [0x78] = "requestCorrectlyReceivedResponsePending",
        [0x7e] = "subFunctionNotSupportedInActiveSession",
        [0x7f] = "serviceNotSupportedInActiveSession",
        [0x81] = "rpmTooHigh",
        [0x82] = "rpmTooLow",
        [0x83] = "engineIsRunning",
        [0x84] = "engineIsNotRunning",
        [0x85] = "engineRunTimeTooLow",
        [0x86] = "temperatureTooHigh",
        [0x87] = "temperatureTooLow",
        [0x88] = "vehicleSpeedTooHigh",
        [0x89] = "vehicleSpeedTooLow",
        [0x8a] = "throttlePedalTooHigh",
        [0x8b] = "throttlePedalTooLow",
        [0x8c] = "transmissionRangeNotInNeutral",
        [0x8d] = "transmissionRangeNotInGear",
        [0x8f] = "brakeSwitchNotClosed",
        [0x90] = "shifterLeverNotInPark",
        [0x91] = "torqueConverterClutchLocked",
        [0x92] = "voltageTooHigh",
        [0x93] = "voltageTooLow",
};

const char *uds_nrc_to_string(uint8_t nrc) {
        if (nrc_names[nrc])
                return nrc_names[nrc];
        if (nrc >= 0xf0 && nrc <= 0xfe)
                return "vehicleManufacturerSpecific";
        if (nrc >= 0x94 && nrc <= 0xef)
                return "reservedForSpecificConditionsNotCorrect";
        return "ISOSAEReserved";
}

const char *uds_service_to_string(uint8_t sid) {
        switch (sid) {
        case UDS_SESSION_CONTROL:
                return "DiagnosticSessionControl";
        case UDS_ECU_RESET:
                return "ECUReset";
        case UDS_READ_DID:
                return "ReadDataByIdentifier";
        case 0x2e:
                return "WriteDataByIdentifier";
        case UDS_SECURITY_ACCESS:
                return "SecurityAccess";
        case UDS_ROUTINE_CONTROL:
                return "RoutineControl";
        case UDS_TESTER_PRESENT:
                return "TesterPresent";
        default:
                return "unknown service";
        }
}

void uds_nrc_describe(uint8_t sid, uint8_t nrc, char *buf, size_t n) {
        snprintf(buf, n, "the ECU refused %s (0x%02X): %s (NRC 0x%02X)", uds_service_to_string(sid), sid,
                 uds_nrc_to_string(nrc), nrc);
}

bool uds_service_has_subfunction(uint8_t sid) {
        switch (sid) {
        case 0x10: /* DiagnosticSessionControl */
        case 0x11: /* ECUReset */
        case 0x27: /* SecurityAccess */
        case 0x28: /* CommunicationControl */
        case 0x29: /* Authentication */
        case 0x31: /* RoutineControl */
        case 0x3e: /* TesterPresent */
        case 0x83: /* AccessTimingParameter */
        case 0x85: /* ControlDTCSetting */
        case 0x86: /* ResponseOnEvent */
        case 0x87: /* LinkControl */
                return true;
        default:
                return false;
        }
}
