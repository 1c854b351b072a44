/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The error names of the D-Bus API (dbus-api.md, "Errors"), and their errno mapping. */

#include <systemd/sd-bus.h>

#include "immod-dbus.h"
#define IMMOD_ERROR_NOT_AUTHORIZED IMMOD_ERROR_PREFIX "NotAuthorized"
#define IMMOD_ERROR_BUSY IMMOD_ERROR_PREFIX "Busy"
#define IMMOD_ERROR_NO_VEHICLE IMMOD_ERROR_PREFIX "NoVehicle"
#define IMMOD_ERROR_UNSUPPORTED_VEHICLE IMMOD_ERROR_PREFIX "UnsupportedVehicle"
#define IMMOD_ERROR_INVALID_VIN IMMOD_ERROR_PREFIX "InvalidVin"
#define IMMOD_ERROR_WRONG_STEP IMMOD_ERROR_PREFIX "WrongStep"
#define IMMOD_ERROR_INVALID_PASSCODE_FORMAT IMMOD_ERROR_PREFIX "InvalidPasscodeFormat"
#define IMMOD_ERROR_PASSCODE_REJECTED IMMOD_ERROR_PREFIX "PasscodeRejected"
#define IMMOD_ERROR_LOCKED_OUT IMMOD_ERROR_PREFIX "LockedOut"
#define IMMOD_ERROR_BATTERY_LOW IMMOD_ERROR_PREFIX "BatteryLow"
#define IMMOD_ERROR_ECU_ASLEEP IMMOD_ERROR_PREFIX "EcuAsleep"
#define IMMOD_ERROR_ECU_UNREACHABLE IMMOD_ERROR_PREFIX "EcuUnreachable"
#define IMMOD_ERROR_ECU_REFUSED IMMOD_ERROR_PREFIX "EcuRefused"
#define IMMOD_ERROR_LINK_DOWN IMMOD_ERROR_PREFIX "LinkDown"
#define IMMOD_ERROR_TIMEOUT IMMOD_ERROR_PREFIX "Timeout"
#define IMMOD_ERROR_SERVER_UNREACHABLE IMMOD_ERROR_PREFIX "ServerUnreachable"
#define IMMOD_ERROR_SERVER_REFUSED IMMOD_ERROR_PREFIX "ServerRefused"
#define IMMOD_ERROR_APPROVAL_REQUIRED IMMOD_ERROR_PREFIX "ApprovalRequired"
#define IMMOD_ERROR_APPROVAL_PENDING IMMOD_ERROR_PREFIX "ApprovalPending"
#define IMMOD_ERROR_AUTHENTICATION_FAILED IMMOD_ERROR_PREFIX "AuthenticationFailed"
#define IMMOD_ERROR_COUNT_MISMATCH IMMOD_ERROR_PREFIX "CountMismatch"
#define IMMOD_ERROR_NOT_CANCELLABLE IMMOD_ERROR_PREFIX "NotCancellable"
#define IMMOD_ERROR_CANCELLED IMMOD_ERROR_PREFIX "Cancelled"

/* Registers the names with sd-bus, so that sd_bus_error_set*() returns a fitting errno. */
int bus_error_register(void);
