/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The numbers of the reference vehicle protocol (vehicle-protocol.md §4), in one place for
 * the daemon (as its profiles' defaults and to read the answers) and the simulated ECU.
 * A vehicle profile may change the DIDs and RIDs; the codes inside the answers are fixed.
 */

/* Data identifiers (22 DID) */
#define DID_VIN 0xF190
#define DID_SOFTWARE_VERSION 0xF195
#define DID_MODEL 0xF197
#define DID_KEY_STATUS 0xA001          /* registered u8, available u8, max u8 */
#define DID_IMMOBILIZER_STATE 0xA002   /* ImmobilizerState u8, progress u8 */
#define DID_VEHICLE_STATUS 0xA003      /* VEHICLE_STATUS_* bits */
#define DID_SECURITY_ATTEMPTS 0xA004   /* left for 01 u8, left for 03 u8, lockout s u16 */
#define DID_BATTERY 0xA010             /* millivolts at +B, u16 */
#define DID_REGISTRATION_RESULT 0xA020 /* RegistrationResult u8 */

/* Routines (31 sub RID) */
#define RID_SMART_CODE_RESET 0xA101
#define RID_KEY_REGISTRATION 0xA102
#define RID_KEY_ERASURE 0xA103
#define ROUTINE_START 0x01
#define ROUTINE_STOP 0x02
#define ROUTINE_RESULTS 0x03

/* Security access levels: the seed request; the key is the level + 1. */
#define SECURITY_LEVEL_IMMOBILIZER 0x01
#define SECURITY_LEVEL_SMART_CODE 0x03

/* A003 */
#define VEHICLE_STATUS_DOOR_OPEN 0x01
#define VEHICLE_STATUS_IGNITION_ON 0x02
#define VEHICLE_STATUS_ENGINE_RUNNING 0x04
#define VEHICLE_STATUS_MOVING 0x08
#define VEHICLE_STATUS_KEY_IN_CABIN 0x10

/* A002: what is open in the ECU */
typedef enum ImmobilizerState {
        IMMOBILIZER_NORMAL = 0,
        IMMOBILIZER_RESET_RUNNING = 1,
        IMMOBILIZER_RESET_DONE = 2, /* no key registered since */
        IMMOBILIZER_REGISTRATION = 3,
        IMMOBILIZER_ERASURE = 4,
        IMMOBILIZER_RESET_FAILED = 5,
} ImmobilizerState;

/* A101 results: status u8, progress u8, remaining s u16, ResetFailReason u8 */
typedef enum ResetStatus {
        RESET_IDLE,
        RESET_RUNNING,
        RESET_SUCCEEDED,
        RESET_FAILED,
} ResetStatus;
typedef enum ResetFailReason {
        RESET_FAIL_NONE,
        RESET_FAIL_VOLTAGE,
        RESET_FAIL_INTERNAL,
} ResetFailReason;

/* A102: the mode at start; results: status u8, registered u8, available u8, n u8, events */
#define REGISTRATION_MODE_ADD 1         /* a registered key first, then one new key */
#define REGISTRATION_MODE_AFTER_RESET 2 /* several new keys, no key registered */
typedef enum RegStatus {
        REG_NONE,
        REG_WAIT_REGISTERED,
        REG_WAIT_NEW,
        REG_ENDED,
} RegStatus;

/* A103 results: status u8, touched u8, to-delete u8, remaining ms u16, n u8, events */
typedef enum EraseStatus {
        ERASE_NONE,
        ERASE_OPEN,
        ERASE_DELETED,
        ERASE_EXPIRED,
        ERASE_FAILED,
} EraseStatus;

/* The key events in A102/A103 results, 6 bytes each: code u8, slot u8, key id u32 */
#define KEY_EVENT_SIZE 6
typedef enum KeyEventCode {
        EVENT_RECOGNISED = 1,
        EVENT_REGISTERED = 2,
        EVENT_REJECTED_ERASED = 3,
        EVENT_REJECTED_NO_SLOT = 4,
        EVENT_REJECTED_ALREADY = 5,
        EVENT_TIMED_OUT = 6,
        EVENT_KEPT = 7,
        EVENT_UNKNOWN_KEY = 8,
} KeyEventCode;

/* A020 */
typedef enum RegistrationResult {
        RESULT_NONE = 0,
        RESULT_SUCCESS = 1,
        RESULT_SLOTS_FULL = 2,
        RESULT_ERASED = 3,
        RESULT_ALREADY = 4,
        RESULT_NO_REGISTERED_KEY = 5,
        RESULT_TIMED_OUT = 6,
        RESULT_MOVING = 7,
        RESULT_TRANSPONDER = 8,
} RegistrationResult;
