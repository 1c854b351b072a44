#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""peer-ecu: an immobilizer / smart key ECU written from vehicle-protocol.md alone.

It exists to test immod against an ECU that immod's authors did not write: it follows
only the reference protocol (docs: /work/shared/spec/vehicle-protocol.md, cited below as
"spec §N"), uses only the python3 standard library, and talks over the Linux kernel's
ISO-TP socket (CAN_ISOTP), so it needs SocketCAN (the test VM's vcan0).

Usage:
    peer-ecu.py --interface vcan0 --vin VIN --master-key-file FILE --control SOCKET
                [--model "ES 250"] [--keys 11111111,22222222] [--battery 13.8]
                [--time-scale N] [--window-scale N] [--sleep-after S]
                [--addressing extended|normal] [--ext-addr 0x57] [--padding 0x55|none]
                [--rx-id 0x750] [--tx-id 0x758] [--data1 HEX11] [-v]
    peer-ecu.py --self-test tests/test-vectors.json

Link (spec §1): requests on CAN id 0x750, answers on 0x758, extended addressing with the
sub-address 0x57 as the first byte of every frame in both directions, frames padded to
8 bytes with 0x55 (received frames need not be padded), flow control BS=0 STmin=0.
The kernel's ISO-TP does the segmentation, flow control and N_* timeouts.

Time (spec §7): --time-scale N divides the vehicle's durations (reset 960 s, lockout
600 s) by N; --window-scale N (default: the time scale) divides the windows in which a
person acts (erasure window 30 s, registration timeout 60 s). S3 (5 s) and the sleep
timer (30 s, --sleep-after, 0 = never sleep) are never scaled.

Control interface: a Unix stream socket (--control PATH). The client writes one command
per line; the ECU answers each with exactly one line, starting with "ok" or "error".
    touch KEYID        touch the key (8 hex digits, its 32-bit transponder id) to the
                       start switch; answers "ok event=E slot=S" or "ok ignored"
    door open|close    the driver's door (opening or closing it works the door courtesy
                       switch, so it also wakes a sleeping ECU)
    courtesy           press the door courtesy switch (a wake event)
    highbeam           flash the high beams (a wake event)
    battery VOLTS      set +B, e.g. "battery 13.8"
    speed KMH          set the vehicle speed (0 = standing)
    ignition on|off    engine on|off    cabin on|off (a registered key in the cabin)
    sleep              put the ECU to sleep now
    keys               "ok SLOT:KEYID ..." the registered keys
    state              "ok {JSON}" the whole state
    events             "ok [JSON]" every event and beep so far, oldest first
Unknown commands answer "error unknown command".

Where the spec is silent or ambiguous the choice made is written next to the code,
marked "AMBIGUITY:".
"""

import argparse
import hashlib
import hmac
import json
import math
import os
import secrets
import select
import socket
import struct
import sys
import time

# ----------------------------------------------------------------------------- constants

# UDS negative response codes (ISO 14229-1) used by the spec.
NRC_SERVICE_NOT_SUPPORTED = 0x11
NRC_SUBFUNCTION_NOT_SUPPORTED = 0x12
NRC_INCORRECT_LENGTH = 0x13
NRC_CONDITIONS_NOT_CORRECT = 0x22
NRC_REQUEST_SEQUENCE_ERROR = 0x24
NRC_REQUEST_OUT_OF_RANGE = 0x31
NRC_SECURITY_ACCESS_DENIED = 0x33
NRC_INVALID_KEY = 0x35
NRC_EXCEEDED_ATTEMPTS = 0x36
NRC_TIME_DELAY_NOT_EXPIRED = 0x37
NRC_SERVICE_NOT_IN_SESSION = 0x7F

SESSION_DEFAULT = 0x01
SESSION_EXTENDED = 0x03

S3_SECONDS = 5.0                 # spec §3, never scaled
RESET_SECONDS = 960.0            # spec §4 A101, scaled by --time-scale
LOCKOUT_SECONDS = 600.0          # spec §4 security access, scaled by --time-scale
ERASURE_WINDOW_SECONDS = 30.0    # spec §4 A103, scaled by --window-scale
REGISTRATION_IDLE_SECONDS = 60.0  # spec §4 A102, scaled by --window-scale
ATTEMPTS = 3                     # wrong passcodes in a row before a lockout
MAX_SLOTS = 7
RESET_MIN_VOLTS = 12.0           # the ECU's own minimum to start A101
RESET_FAIL_VOLTS = 9.0           # below this during A101 the reset fails (reason 1)

# Events in A102/A103 results (spec §4), with their beeps.
EV_RECOGNISED = 1
EV_REGISTERED = 2
EV_REJECTED_ERASED = 3
EV_REJECTED_NO_SLOT = 4
EV_REJECTED_ALREADY = 5
EV_TIMED_OUT = 6
EV_KEPT = 7
EV_UNKNOWN_KEY = 8

# A020 last registration result codes.
REG_NONE, REG_SUCCESS, REG_SLOTS_FULL, REG_ERASED, REG_ALREADY, REG_NO_REGISTERED_KEY, \
    REG_TIMED_OUT, REG_MOVING, REG_TRANSPONDER = range(9)

# A002 immobilizer states.
IMMO_NORMAL, IMMO_RESET_RUNNING, IMMO_RESET_DONE, IMMO_REGISTRATION, IMMO_ERASURE, \
    IMMO_RESET_FAILED = range(6)

# linux/can/isotp.h (SOL_CAN_ISOTP = SOL_CAN_BASE 100 + CAN_ISOTP 6)
SOL_CAN_ISOTP = 106
CAN_ISOTP_OPTS = 1
CAN_ISOTP_RECV_FC = 2
CAN_ISOTP_EXTEND_ADDR = 0x002
CAN_ISOTP_TX_PADDING = 0x004
CAN_ISOTP_RX_EXT_ADDR = 0x200
CAN_ISOTP_WAIT_TX_DONE = 0x400


def log(msg):
    sys.stderr.write("%.3f peer-ecu: %s\n" % (time.monotonic(), msg))
    sys.stderr.flush()


# ----------------------------------------------------------------------------- spec §6

def vin_key(master, vin):
    return hmac.new(master, b"immod/vin-key/v1:" + vin.encode(), hashlib.sha256).digest()


def immobilizer_passcode(kvin, seed):
    """6 ASCII digits: RFC 4226 dynamic truncation of the HMAC over the raw seed."""
    h = hmac.new(kvin, b"immod/immobilizer-reset/v1:" + seed, hashlib.sha256).digest()
    offset = h[31] & 0x0F
    value = struct.unpack(">I", h[offset:offset + 4])[0] & 0x7FFFFFFF
    return "%06d" % (value % 1000000)


def smart_code_passcode(kvin, vin, data1, data2, data3):
    """6 bytes; the Data fields are the uppercase hex strings without check characters."""
    msg = "immod/smart-code/v1:%s:%s:%s:%s" % (vin, data1, data2, data3)
    return hmac.new(kvin, msg.encode(), hashlib.sha256).digest()[:6]


def self_test(vectors_path):
    v = json.load(open(vectors_path))
    master = bytes.fromhex(v["master_key_hex"])
    n = 0
    for t in v["immobilizer"]:
        got = immobilizer_passcode(vin_key(master, t["vin"]), bytes.fromhex(t["seed_hex"]))
        assert got == t["passcode"], "immobilizer %s: %s != %s" % (t["vin"], got, t["passcode"])
        n += 1
    for t in v["smart_code"]:
        got = smart_code_passcode(vin_key(master, t["vin"]), t["vin"], t["data1"], t["data2"],
                                  t["data3"]).hex().upper()
        assert got == t["passcode"], "smart code %s: %s != %s" % (t["vin"], got, t["passcode"])
        n += 1
    print("peer-ecu self-test: %d known answers match" % n)


# ----------------------------------------------------------------------------- routines

class Routine:
    """The state of one routine (A102 or A103): its status, its events not yet reported."""

    def __init__(self):
        self.started = False   # ever started (results before that: NRC 0x24)
        self.active = False
        self.status = 0
        self.events = []       # (event, slot, key id), each reported once

    def take_events(self):
        out, self.events = self.events, []
        return out


class Ecu:
    def __init__(self, args, master):
        self.vin = args.vin
        self.model = args.model
        self.kvin = vin_key(master, self.vin)
        # Data1: the ECU's 44-bit identity, constant per ECU (spec §5).
        if args.data1:
            self.data1 = int(args.data1, 16) & ((1 << 44) - 1)
        else:
            self.data1 = int.from_bytes(hashlib.sha256(b"peer-ecu data1:" + self.vin.encode()).digest()[:6],
                                        "big") & ((1 << 44) - 1)
        self.time_scale = args.time_scale
        self.window_scale = args.window_scale or args.time_scale
        self.sleep_after = args.sleep_after

        self.slots = [None] * (MAX_SLOTS + 1)   # slots[1..7] = key id or None
        for i, k in enumerate(args.keys):
            self.slots[i + 1] = k
        self.revoked = set()
        self.keyset_generation = 0

        self.door_open = False
        self.ignition = False
        self.engine = False
        self.speed = 0.0
        self.key_in_cabin = False
        self.battery_mv = int(round(args.battery * 1000))

        now = time.monotonic()
        self.session = SESSION_DEFAULT
        self.last_request = now
        self.asleep = False
        # security, per level 1 (immobilizer) and 3 (smart code)
        self.seed = {1: None, 3: None}
        self.unlocked = {1: None, 3: None}      # unlock time (order matters for A101)
        self.failures = {1: 0, 3: 0}
        self.locked_until = {1: 0.0, 3: 0.0}

        self.reset_status = 0          # A101: 0 idle, 1 running, 2 succeeded, 3 failed
        self.reset_started = 0.0
        self.reset_progress = 0
        self.reset_fail_reason = 0
        self.reset_done_no_keys = False
        self.registration = Routine()
        self.reg_mode = 0
        self.reg_last_touch = 0.0
        self.erasure = Routine()
        self.erase_keep = 0
        self.erase_touched = set()
        self.erase_deadline = 0.0
        self.erase_deleted = 0
        self.last_registration_result = REG_NONE
        self.event_log = []

        self.services = {
            0x10: self.svc_session_control,
            0x22: self.svc_read_did,
            0x27: self.svc_security_access,
            0x31: self.svc_routine_control,
            0x3E: self.svc_tester_present,
        }
        # DID -> (name, function returning the data bytes)
        self.dids = {
            0xF190: ("VIN", lambda: self.vin.encode()),
            0xF195: ("ECU software version", lambda: b"peer-ecu 1.0"),
            0xF197: ("vehicle model", lambda: self.model.encode()),
            0xA001: ("key status", self.did_key_status),
            0xA002: ("immobilizer state", self.did_immobilizer_state),
            0xA003: ("vehicle status", self.did_vehicle_status),
            0xA004: ("security attempts", self.did_security_attempts),
            0xA010: ("battery", lambda: struct.pack(">H", max(0, min(0xFFFF, self.battery_mv)))),
            0xA020: ("last registration result", lambda: bytes([self.last_registration_result])),
        }
        # RID -> {sub-function: handler(option bytes) -> response data or NRC int}
        self.routines = {
            0xA101: {1: self.reset_start, 2: self.reset_stop, 3: self.reset_results},
            0xA102: {1: self.registration_start, 2: self.registration_stop, 3: self.registration_results},
            0xA103: {1: self.erasure_start, 2: self.erasure_stop, 3: self.erasure_results},
        }

    # ------------------------------------------------------------------ helpers

    def registered(self):
        return sum(1 for k in self.slots[1:] if k is not None)

    def slot_of(self, key):
        for i in range(1, MAX_SLOTS + 1):
            if self.slots[i] == key:
                return i
        return 0

    def data3(self):
        """The key set's 32-bit state: changes whenever the keys change (spec §5)."""
        h = hashlib.sha256(("peer-ecu keyset:%s:%d:%s" % (
            self.vin, self.keyset_generation,
            ",".join("%08X" % k if k is not None else "-" for k in self.slots[1:]))).encode())
        return int.from_bytes(h.digest()[:4], "big")

    def keys_changed(self):
        self.keyset_generation += 1

    def revoke(self, slot):
        key = self.slots[slot]
        if key is not None:
            self.revoked.add(key)
            self.slots[slot] = None

    def level_locked_out(self, level, now):
        return self.locked_until[level] > now

    def relock(self, why):
        if self.unlocked[1] or self.unlocked[3] or self.seed[1] or self.seed[3]:
            log("security re-locked (%s)" % why)
        self.seed = {1: None, 3: None}
        self.unlocked = {1: None, 3: None}

    def event(self, routine, ev, slot, key):
        beeps = {EV_RECOGNISED: 1, EV_REGISTERED: 2, EV_KEPT: 1}.get(ev, 0)
        if ev == EV_REGISTERED and self.reg_mode == 2:
            beeps = 1   # "2 beeps; 1 beep after a reset"
        routine.events.append((ev, slot, key))
        self.event_log.append({"event": ev, "slot": slot, "key": "%08X" % key, "beeps": beeps})
        log("event %d slot %d key %08X (%d beep(s))" % (ev, slot, key, beeps))

    def end_person_routines(self, why):
        """A session drop or sleep ends registration and erasure, never a running reset."""
        if self.registration.active:
            self.registration.active = False
            self.registration.status = 3
            log("registration ended (%s)" % why)
        if self.erasure.active:
            # AMBIGUITY: A103 has no status for "ended by a session drop or sleep"; 4
            # (failed) is used, 3 (expired) being the window's own timeout.
            self.erasure.active = False
            self.erasure.status = 4
            log("erasure window ended, nothing deleted (%s)" % why)

    def enter_session(self, session, why):
        # AMBIGUITY: the spec says unlocks are lost on a session change and that a session
        # drop ends registration and erasure. Any 10 xx request (even 10 01 in the default
        # session, which ISO 14229-1 says re-initialises it) is treated as a session change
        # that does both.
        self.relock(why)
        self.end_person_routines(why)
        self.session = session

    # ------------------------------------------------------------------ timers

    def tick(self, now):
        if self.session != SESSION_DEFAULT and now - self.last_request > S3_SECONDS:
            log("S3 expired: back to the default session")
            self.enter_session(SESSION_DEFAULT, "S3 timeout")
        if (not self.asleep and self.sleep_after > 0 and now - self.last_request > self.sleep_after):
            self.go_to_sleep("no diagnostic frame for %g s" % self.sleep_after)
        for level in (1, 3):
            if self.locked_until[level] and self.locked_until[level] <= now:
                self.locked_until[level] = 0.0
                self.failures[level] = 0
                log("level %02X lockout over" % level)
        if self.reset_status == 1:
            duration = RESET_SECONDS / self.time_scale
            elapsed = now - self.reset_started
            self.reset_progress = min(100, int(100 * elapsed / duration))
            if self.battery_mv < RESET_FAIL_VOLTS * 1000:
                self.reset_end(False, 1)
            elif elapsed >= duration:
                self.reset_end(True, 0)
        if self.registration.active and \
                now - self.reg_last_touch > REGISTRATION_IDLE_SECONDS / self.window_scale:
            self.event(self.registration, EV_TIMED_OUT, 0, 0)
            self.registration.active = False
            self.registration.status = 3
            self.last_registration_result = REG_TIMED_OUT
            log("registration mode ended: no touch for %g s" % (REGISTRATION_IDLE_SECONDS / self.window_scale))
        if self.erasure.active and now >= self.erase_deadline:
            # AMBIGUITY: the spec lists event 6 "timed out" without saying which routine
            # reports it; the erasure window's expiry reports it too.
            self.event(self.erasure, EV_TIMED_OUT, 0, 0)
            self.erasure.active = False
            self.erasure.status = 3
            log("erasure window expired, nothing deleted")

    def go_to_sleep(self, why):
        log("asleep (%s)" % why)
        self.asleep = True
        self.relock("sleep")
        self.end_person_routines("sleep")
        self.session = SESSION_DEFAULT

    def wake(self, why):
        """A wake event: an awake ECU only restarts its sleep timer."""
        if self.asleep:
            log("awake (%s): default session, locked" % why)
            self.asleep = False
            self.session = SESSION_DEFAULT
        self.last_request = time.monotonic()

    # ------------------------------------------------------------------ requests

    def handle(self, req, now):
        """One request; returns the response bytes, or None for no response."""
        if self.asleep:
            log("asleep: ignoring %s" % req.hex())
            return None
        # AMBIGUITY: "no diagnostic frame on the bus for 30 s" is judged by the requests
        # to this ECU (the kernel's ISO-TP socket shows no other traffic); S3 restarts on
        # every request too, 3E 80 included.
        self.last_request = now
        if not req:
            return None
        sid = req[0]
        service = self.services.get(sid)
        if service is None:
            return bytes([0x7F, sid, NRC_SERVICE_NOT_SUPPORTED])
        result = service(req, now)
        if isinstance(result, int):
            return bytes([0x7F, sid, result])
        if result is None:
            return None
        # suppressPosRspMsgIndicationBit (ISO 14229-1): only for services with a sub-function
        if sid in (0x10, 0x27, 0x31, 0x3E) and len(req) >= 2 and req[1] & 0x80:
            return None
        return bytes([sid + 0x40]) + result

    # 10: DiagnosticSessionControl
    def svc_session_control(self, req, now):
        if len(req) != 2:
            return NRC_INCORRECT_LENGTH
        session = req[1] & 0x7F
        if session not in (SESSION_DEFAULT, SESSION_EXTENDED):
            return NRC_SUBFUNCTION_NOT_SUPPORTED
        self.enter_session(session, "session change to %02X" % session)
        # P2 = 50 ms, P2* = 5000 ms in 10 ms units
        return bytes([session, 0x00, 0x32, 0x01, 0xF4])

    # 3E: TesterPresent
    def svc_tester_present(self, req, now):
        if len(req) != 2:
            return NRC_INCORRECT_LENGTH
        if req[1] & 0x7F != 0x00:
            return NRC_SUBFUNCTION_NOT_SUPPORTED
        return bytes([0x00])

    # 22: ReadDataByIdentifier, one DID per request
    def svc_read_did(self, req, now):
        # AMBIGUITY: "one DID per request": a request with more than one DID (or a
        # partial one) is answered NRC 0x13, not with the first DID.
        if len(req) != 3:
            return NRC_INCORRECT_LENGTH
        did = (req[1] << 8) | req[2]
        entry = self.dids.get(did)
        if entry is None:
            return NRC_REQUEST_OUT_OF_RANGE
        return req[1:3] + entry[1]()

    def did_key_status(self):
        n = self.registered()
        return bytes([n, MAX_SLOTS - n, MAX_SLOTS])

    def did_immobilizer_state(self):
        if self.reset_status == 1:
            return bytes([IMMO_RESET_RUNNING, self.reset_progress])
        if self.registration.active:
            return bytes([IMMO_REGISTRATION, 0])
        if self.erasure.active:
            return bytes([IMMO_ERASURE, 0])
        if self.reset_status == 3:
            return bytes([IMMO_RESET_FAILED, self.reset_progress])
        if self.reset_done_no_keys and self.registered() == 0:
            return bytes([IMMO_RESET_DONE, 100])
        return bytes([IMMO_NORMAL, 0])

    def did_vehicle_status(self):
        bits = (1 if self.door_open else 0) | (2 if self.ignition else 0) | \
            (4 if self.engine else 0) | (8 if self.speed > 0 else 0) | (16 if self.key_in_cabin else 0)
        return bytes([bits])

    def did_security_attempts(self):
        now = time.monotonic()
        left = []
        for level in (1, 3):
            left.append(0 if self.level_locked_out(level, now) else max(0, ATTEMPTS - self.failures[level]))
        remaining = max(self.locked_until[1] - now, self.locked_until[3] - now, 0.0)
        return bytes(left) + struct.pack(">H", min(0xFFFF, int(math.ceil(remaining))))

    # 27: SecurityAccess
    def svc_security_access(self, req, now):
        if len(req) < 2:
            return NRC_INCORRECT_LENGTH
        sub = req[1] & 0x7F
        if sub not in (1, 2, 3, 4):
            return NRC_SUBFUNCTION_NOT_SUPPORTED
        # AMBIGUITY: "extended session only" names no NRC; ISO 14229-1 answers a service
        # that is not supported in the active session with 0x7F. Used for 27 02/04 too.
        if self.session != SESSION_EXTENDED:
            return NRC_SERVICE_NOT_IN_SESSION
        if sub & 1:
            return self.request_seed(sub, req, now)
        return self.send_key(sub - 1, req, now)

    def request_seed(self, level, req, now):
        if len(req) != 2:
            return NRC_INCORRECT_LENGTH
        if self.level_locked_out(level, now):
            return NRC_TIME_DELAY_NOT_EXPIRED
        # AMBIGUITY: ISO 14229-1 answers a seed request for an unlocked level with an
        # all-zero seed; the spec says "every 27 01 / 27 03 returns a fresh seed", so a
        # fresh seed it is, and the level stays unlocked.
        if level == 1:
            seed = secrets.token_bytes(48)
            while not any(seed):
                seed = secrets.token_bytes(48)
            self.seed[1] = seed
            return bytes([0x01]) + seed
        data2 = secrets.randbits(48) or 1
        data3 = self.data3()
        self.seed[3] = (data2, data3)
        return bytes([0x03]) + self.vin.encode() + self.data1.to_bytes(6, "big") + \
            data2.to_bytes(6, "big") + data3.to_bytes(4, "big")

    def expected_key(self, level):
        if level == 1:
            return immobilizer_passcode(self.kvin, self.seed[1]).encode()
        data2, data3 = self.seed[3]
        return smart_code_passcode(self.kvin, self.vin, "%011X" % self.data1, "%012X" % data2, "%08X" % data3)

    def send_key(self, level, req, now):
        # AMBIGUITY: a key of the wrong length is a malformed request (0x13) and does not
        # use up the seed; a key of the right length but wrong content is a wrong passcode.
        if len(req) != 2 + 6:
            return NRC_INCORRECT_LENGTH
        if self.seed[level] is None:
            return NRC_REQUEST_SEQUENCE_ERROR
        expected = self.expected_key(level)
        self.seed[level] = None     # one attempt per seed
        if hmac.compare_digest(bytes(req[2:]), expected):
            self.failures[level] = 0
            self.unlocked[level] = now
            log("level %02X unlocked" % (level + 1))
            return bytes([level + 1])
        self.failures[level] += 1
        log("level %02X: wrong passcode (%d in a row)" % (level + 1, self.failures[level]))
        if self.failures[level] >= ATTEMPTS:
            self.locked_until[level] = now + LOCKOUT_SECONDS / self.time_scale
            return NRC_EXCEEDED_ATTEMPTS
        return NRC_INVALID_KEY

    # 31: RoutineControl
    def svc_routine_control(self, req, now):
        if len(req) < 4:
            return NRC_INCORRECT_LENGTH
        sub = req[1] & 0x7F
        if sub not in (1, 2, 3):
            return NRC_SUBFUNCTION_NOT_SUPPORTED
        rid = (req[2] << 8) | req[3]
        handlers = self.routines.get(rid)
        if handlers is None:
            return NRC_REQUEST_OUT_OF_RANGE
        # AMBIGUITY: the spec lists "the extended session" among the preconditions that
        # get NRC 0x22 (ISO 14229-1 would say 0x7F); that applies to stop and results
        # too ("results can be read again after re-entering the extended session").
        if self.session != SESSION_EXTENDED:
            return NRC_CONDITIONS_NOT_CORRECT
        result = handlers[sub](bytes(req[4:]), now)
        if isinstance(result, int):
            return result
        return bytes([sub]) + req[2:4] + result

    # --- A101 smart code reset
    def reset_start(self, opt, now):
        if opt:
            return NRC_INCORRECT_LENGTH
        if self.reset_status == 1:
            return NRC_CONDITIONS_NOT_CORRECT
        if not self.unlocked[1] or not self.unlocked[3]:
            return NRC_SECURITY_ACCESS_DENIED
        # AMBIGUITY: both levels unlocked but the smart code first: a precondition not
        # met (0x22), the levels themselves are not locked.
        if self.unlocked[1] > self.unlocked[3]:
            return NRC_CONDITIONS_NOT_CORRECT
        if not self.door_open or self.battery_mv < RESET_MIN_VOLTS * 1000:
            return NRC_CONDITIONS_NOT_CORRECT
        if self.registration.active or self.erasure.active:
            return NRC_CONDITIONS_NOT_CORRECT
        self.reset_status = 1
        self.reset_started = now
        self.reset_progress = 0
        self.reset_fail_reason = 0
        log("smart code reset started (%g s)" % (RESET_SECONDS / self.time_scale))
        return b""

    def reset_end(self, ok, reason):
        if ok:
            for slot in range(1, MAX_SLOTS + 1):
                self.revoke(slot)
            self.keys_changed()
            self.reset_status = 2
            self.reset_progress = 100
            self.reset_done_no_keys = True
            log("smart code reset succeeded: every key erased and revoked")
        else:
            self.reset_status = 3
            self.reset_fail_reason = reason
            log("smart code reset failed (reason %d), nothing erased" % reason)
        self.relock("smart code reset ended")

    def reset_stop(self, opt, now):
        if self.reset_status == 1:
            return NRC_CONDITIONS_NOT_CORRECT
        # AMBIGUITY: a stop when no reset runs is a stop without a start (0x24, ISO).
        return NRC_REQUEST_SEQUENCE_ERROR

    def reset_results(self, opt, now):
        if opt:
            return NRC_INCORRECT_LENGTH
        remaining = 0
        if self.reset_status == 1:
            remaining = int(math.ceil(max(0.0, self.reset_started + RESET_SECONDS / self.time_scale - now)))
        return bytes([self.reset_status, self.reset_progress]) + struct.pack(">H", remaining) + \
            bytes([self.reset_fail_reason])

    # --- A102 key registration
    def person_routine_preconditions(self):
        if not self.unlocked[3]:
            return NRC_SECURITY_ACCESS_DENIED
        if self.speed > 0:
            return NRC_CONDITIONS_NOT_CORRECT
        # AMBIGUITY: starting a routine while registration, erasure or the reset runs is
        # "conditions not correct" (0x22), not a restart.
        if self.reset_status == 1 or self.registration.active or self.erasure.active:
            return NRC_CONDITIONS_NOT_CORRECT
        return None

    def registration_start(self, opt, now):
        if len(opt) != 1:
            return NRC_INCORRECT_LENGTH
        mode = opt[0]
        if mode not in (1, 2):
            return NRC_REQUEST_OUT_OF_RANGE
        nrc = self.person_routine_preconditions()
        if nrc:
            return nrc
        if mode == 2 and self.registered() != 0:
            return NRC_CONDITIONS_NOT_CORRECT   # "only when no key is registered"
        # AMBIGUITY: mode 1 needs a registered key to be touched first, so with none
        # registered it cannot succeed: refused with 0x22.
        if mode == 1 and self.registered() == 0:
            return NRC_CONDITIONS_NOT_CORRECT
        r = self.registration
        r.started = r.active = True
        r.status = 1 if mode == 1 else 2
        r.events = []
        self.reg_mode = mode
        self.reg_last_touch = now
        log("registration mode %d started" % mode)
        return b""

    def registration_stop(self, opt, now):
        if opt:
            return NRC_INCORRECT_LENGTH
        # AMBIGUITY: stopping a registration that is not running (never started, or
        # already ended by itself) is a request sequence error (0x24, ISO 14229-1).
        if not self.registration.active:
            return NRC_REQUEST_SEQUENCE_ERROR
        self.registration.active = False
        self.registration.status = 3
        log("registration mode stopped by the tester")
        return b""

    def registration_results(self, opt, now):
        if opt:
            return NRC_INCORRECT_LENGTH
        r = self.registration
        if not r.started:
            return NRC_REQUEST_SEQUENCE_ERROR
        events = r.take_events()
        n = self.registered()
        out = bytes([r.status, n, MAX_SLOTS - n, len(events)])
        for ev, slot, key in events:
            out += struct.pack(">BBI", ev, slot, key)
        return out

    # --- A103 undesignated key erasure
    def erasure_start(self, opt, now):
        if len(opt) != 1:
            return NRC_INCORRECT_LENGTH
        keep = opt[0]
        if not 1 <= keep <= self.registered():
            return NRC_REQUEST_OUT_OF_RANGE
        nrc = self.person_routine_preconditions()
        if nrc:
            return nrc
        e = self.erasure
        e.started = e.active = True
        e.status = 1
        e.events = []
        self.erase_keep = keep
        self.erase_touched = set()
        self.erase_deleted = 0
        self.erase_deadline = now + ERASURE_WINDOW_SECONDS / self.window_scale
        log("erasure window open (%g s), keep %d" % (ERASURE_WINDOW_SECONDS / self.window_scale, keep))
        return b""

    def erasure_stop(self, opt, now):
        if len(opt) != 1:
            return NRC_INCORRECT_LENGTH
        e = self.erasure
        if not e.started:
            return NRC_REQUEST_SEQUENCE_ERROR
        if not e.active:
            return NRC_CONDITIONS_NOT_CORRECT     # "a stop after the window closed"
        delete = opt[0]
        touched = {k for k in self.erase_touched if self.slot_of(k)}
        if delete != self.registered() - len(touched) or len(touched) < self.erase_keep:
            log("erasure stop refused: delete %d, registered %d, touched %d, keep %d" %
                (delete, self.registered(), len(touched), self.erase_keep))
            return NRC_CONDITIONS_NOT_CORRECT     # the window stays open
        for slot in range(1, MAX_SLOTS + 1):
            if self.slots[slot] is not None and self.slots[slot] not in touched:
                log("erasing key %08X in slot %d" % (self.slots[slot], slot))
                self.revoke(slot)
        if delete:
            self.keys_changed()
        self.erase_deleted = delete
        e.active = False
        e.status = 2
        return b""

    def erasure_results(self, opt, now):
        if opt:
            return NRC_INCORRECT_LENGTH
        e = self.erasure
        if not e.started:
            return NRC_REQUEST_SEQUENCE_ERROR
        touched = len(self.erase_touched)
        if e.status == 2:
            # AMBIGUITY: after the deletion, "to-delete" reports how many were deleted.
            to_delete = self.erase_deleted
        else:
            to_delete = max(0, self.registered() - touched)
        remaining = int(max(0.0, self.erase_deadline - now) * 1000) if e.active else 0
        events = e.take_events()
        out = bytes([e.status, touched, to_delete]) + struct.pack(">H", min(0xFFFF, remaining)) + \
            bytes([len(events)])
        for ev, slot, key in events:
            out += struct.pack(">BBI", ev, slot, key)
        return out

    # ------------------------------------------------------------------ the person at the car

    def touch(self, key, now):
        if self.registration.active:
            return self.touch_registration(key, now)
        if self.erasure.active:
            return self.touch_erasure(key)
        log("key %08X touched, no registration or erasure running" % key)
        return None

    def touch_registration(self, key, now):
        r = self.registration
        self.reg_last_touch = now
        slot = self.slot_of(key)
        if key in self.revoked:
            self.event(r, EV_REJECTED_ERASED, 0, key)
            self.last_registration_result = REG_ERASED
            return EV_REJECTED_ERASED, 0
        if r.status == 1:       # mode 1: waiting for a registered key
            if slot:
                self.event(r, EV_RECOGNISED, slot, key)
                r.status = 2
                return EV_RECOGNISED, slot
            # AMBIGUITY: a key that is not registered, touched while a registered one is
            # awaited, is "unknown key touched" (8); A020 says no registered key presented.
            self.event(r, EV_UNKNOWN_KEY, 0, key)
            self.last_registration_result = REG_NO_REGISTERED_KEY
            return EV_UNKNOWN_KEY, 0
        if slot:
            self.event(r, EV_REJECTED_ALREADY, slot, key)
            self.last_registration_result = REG_ALREADY
            return EV_REJECTED_ALREADY, slot
        free = [i for i in range(1, MAX_SLOTS + 1) if self.slots[i] is None]
        if not free:
            self.event(r, EV_REJECTED_NO_SLOT, 0, key)
            self.last_registration_result = REG_SLOTS_FULL
            r.active = False
            r.status = 3
            return EV_REJECTED_NO_SLOT, 0
        slot = free[0]
        self.slots[slot] = key
        self.keys_changed()
        self.event(r, EV_REGISTERED, slot, key)
        self.last_registration_result = REG_SUCCESS
        if self.reg_mode == 1 or self.registered() == MAX_SLOTS:
            r.active = False
            r.status = 3
            log("registration mode ended (%s)" % ("one key added" if self.reg_mode == 1 else "slots full"))
        return EV_REGISTERED, slot

    def touch_erasure(self, key):
        e = self.erasure
        slot = self.slot_of(key)
        if slot:
            if key in self.erase_touched:
                # AMBIGUITY: a kept key touched again is not counted or reported twice.
                return EV_KEPT, slot
            self.erase_touched.add(key)
            self.event(e, EV_KEPT, slot, key)
            return EV_KEPT, slot
        if key in self.revoked:
            self.event(e, EV_REJECTED_ERASED, 0, key)
            return EV_REJECTED_ERASED, 0
        self.event(e, EV_UNKNOWN_KEY, 0, key)
        return EV_UNKNOWN_KEY, 0

    def state(self):
        now = time.monotonic()
        return {
            "vin": self.vin, "model": self.model, "asleep": self.asleep,
            "session": self.session, "unlocked": [lvl + 1 for lvl in (1, 3) if self.unlocked[lvl]],
            "failures": {"01": self.failures[1], "03": self.failures[3]},
            "lockout_s": max(0.0, self.locked_until[1] - now, self.locked_until[3] - now),
            "slots": {str(i): "%08X" % k for i, k in enumerate(self.slots) if k is not None},
            "revoked": sorted("%08X" % k for k in self.revoked),
            "door_open": self.door_open, "speed": self.speed, "battery_mv": self.battery_mv,
            "reset": {"status": self.reset_status, "progress": self.reset_progress,
                      "fail_reason": self.reset_fail_reason},
            "registration": {"active": self.registration.active, "status": self.registration.status,
                             "mode": self.reg_mode},
            "erasure": {"active": self.erasure.active, "status": self.erasure.status,
                        "keep": self.erase_keep, "touched": len(self.erase_touched)},
            "last_registration_result": self.last_registration_result,
        }

    def control(self, line):
        words = line.split()
        if not words:
            return "error empty command"
        cmd, arg = words[0].lower(), (words[1].lower() if len(words) > 1 else "")
        now = time.monotonic()
        try:
            if cmd == "touch":
                key = int(arg, 16)
                if not (len(arg) == 8 and 0 <= key <= 0xFFFFFFFF):
                    return "error touch needs an 8-hex-digit key id"
                r = self.touch(key, now)
                return "ok ignored" if r is None else "ok event=%d slot=%d" % r
            if cmd == "door" and arg in ("open", "close"):
                # AMBIGUITY: the door courtesy switch is the switch the door works, so
                # opening or closing the driver's door is a wake event too.
                self.door_open = arg == "open"
                self.wake("door courtesy switch")
                return "ok"
            if cmd in ("courtesy", "highbeam"):
                self.wake(cmd)
                return "ok"
            if cmd == "battery":
                self.battery_mv = int(round(float(arg) * 1000))
                return "ok"
            if cmd == "speed":
                self.speed = float(arg)
                if self.speed > 0 and (self.registration.active or self.erasure.active):
                    if self.registration.active:
                        self.last_registration_result = REG_MOVING
                    self.end_person_routines("vehicle moving")
                return "ok"
            if cmd in ("ignition", "engine", "cabin") and arg in ("on", "off"):
                setattr(self, {"ignition": "ignition", "engine": "engine", "cabin": "key_in_cabin"}[cmd],
                        arg == "on")
                return "ok"
            if cmd == "sleep":
                self.go_to_sleep("control")
                return "ok"
            if cmd == "keys":
                return "ok " + " ".join("%d:%08X" % (i, k) for i, k in enumerate(self.slots) if k is not None)
            if cmd == "state":
                return "ok " + json.dumps(self.state(), sort_keys=True)
            if cmd == "events":
                return "ok " + json.dumps(self.event_log)
        except ValueError as e:
            return "error %s" % e
        return "error unknown command"


# ----------------------------------------------------------------------------- the link

def open_isotp(args):
    s = socket.socket(socket.AF_CAN, socket.SOCK_DGRAM, socket.CAN_ISOTP)
    flags = CAN_ISOTP_WAIT_TX_DONE
    ext = 0
    if args.addressing == "extended":
        flags |= CAN_ISOTP_EXTEND_ADDR | CAN_ISOTP_RX_EXT_ADDR
        ext = args.ext_addr
    pad = 0
    if args.padding != "none":
        flags |= CAN_ISOTP_TX_PADDING
        pad = int(args.padding, 0)
    # struct can_isotp_options { u32 flags; u32 frame_txtime; u8 ext_address;
    #   u8 txpad_content; u8 rxpad_content; u8 rx_ext_address; } -- before bind()
    s.setsockopt(SOL_CAN_ISOTP, CAN_ISOTP_OPTS, struct.pack("=IIBBBB", flags, 0, ext, pad, 0, ext))
    # struct can_isotp_fc_options { u8 bs; u8 stmin; u8 wftmax; }: BS 0, STmin 0
    s.setsockopt(SOL_CAN_ISOTP, CAN_ISOTP_RECV_FC, struct.pack("=BBB", 0, 0, 0))
    s.bind((args.interface, args.rx_id, args.tx_id))   # (interface, rx id, tx id)
    return s


def main():
    p = argparse.ArgumentParser(description="an immobilizer ECU from vehicle-protocol.md")
    p.add_argument("--self-test", metavar="VECTORS")
    p.add_argument("--interface", default="vcan0")
    p.add_argument("--vin")
    p.add_argument("--model", default="ES 250")
    p.add_argument("--master-key-file")
    p.add_argument("--keys", default="", help="comma-separated 8-hex-digit key ids, slots 1..")
    p.add_argument("--battery", type=float, default=12.6, help="+B in volts")
    p.add_argument("--time-scale", type=float, default=1.0)
    p.add_argument("--window-scale", type=float, default=0.0)
    p.add_argument("--sleep-after", type=float, default=30.0)
    p.add_argument("--addressing", choices=("extended", "normal"), default="extended")
    p.add_argument("--ext-addr", type=lambda x: int(x, 0), default=0x57)
    p.add_argument("--padding", default="0x55")
    p.add_argument("--rx-id", type=lambda x: int(x, 0), default=0x750)
    p.add_argument("--tx-id", type=lambda x: int(x, 0), default=0x758)
    p.add_argument("--data1")
    p.add_argument("--control")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()

    if args.self_test:
        self_test(args.self_test)
        return 0
    if not (args.vin and args.master_key_file and args.control):
        p.error("--vin, --master-key-file and --control are needed")
    if args.time_scale <= 0 or args.window_scale < 0:
        p.error("the scales must be positive")
    args.keys = [int(k, 16) for k in args.keys.split(",") if k]
    if len(args.keys) > MAX_SLOTS:
        p.error("at most %d keys" % MAX_SLOTS)
    master = bytes.fromhex(open(args.master_key_file).read().strip())
    if len(master) != 32:
        p.error("the master key must be 32 bytes (64 hex digits)")

    ecu = Ecu(args, master)
    link = open_isotp(args)
    try:
        os.unlink(args.control)
    except FileNotFoundError:
        pass
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.bind(args.control + ".tmp")
    os.rename(args.control + ".tmp", args.control)   # appears only when ready
    ctl.listen(8)
    clients = {}   # socket -> pending input bytes
    log("on %s rx %03X tx %03X, %s addressing%s, VIN %s, model %s, keys %s, time scale %g, window scale %g"
        % (args.interface, args.rx_id, args.tx_id, args.addressing,
           " %02X" % args.ext_addr if args.addressing == "extended" else "",
           ecu.vin, ecu.model, ",".join("%08X" % k for k in args.keys) or "none",
           ecu.time_scale, ecu.window_scale))

    while True:
        readable, _, _ = select.select([link, ctl] + list(clients), [], [], 0.02)
        now = time.monotonic()
        for r in readable:
            if r is link:
                try:
                    req = link.recv(4095)
                except OSError as e:   # ETIMEDOUT, EILSEQ, EBADMSG: a broken transfer
                    log("ISO-TP receive error: %s" % e)
                    continue
                ecu.tick(now)          # S3 and sleep are judged before this request counts
                rsp = ecu.handle(req, now)
                if args.verbose or (rsp and rsp[0] == 0x7F):
                    log("%s -> %s" % (req.hex(), rsp.hex() if rsp else "(none)"))
                if rsp:
                    try:
                        link.send(rsp)
                    except OSError as e:   # ECOMM: no flow control from the tester
                        log("ISO-TP send error: %s" % e)
            elif r is ctl:
                c, _ = ctl.accept()
                clients[c] = b""
            else:
                try:
                    data = r.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    del clients[r]
                    r.close()
                    continue
                clients[r] += data
                while b"\n" in clients[r]:
                    line, clients[r] = clients[r].split(b"\n", 1)
                    answer = ecu.control(line.decode(errors="replace").strip())
                    log("control %r -> %s" % (line.decode(errors="replace").strip(), answer[:200]))
                    try:
                        r.sendall(answer.encode() + b"\n")
                    except OSError:
                        pass
        ecu.tick(time.monotonic())


if __name__ == "__main__":
    sys.exit(main())
