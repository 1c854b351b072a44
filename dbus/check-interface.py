#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks org.immod.Immod1.xml against the contract of spec/dbus-api.md.

The contract's names and signatures are fixed, so a change to one of them in the XML
is a bug in the XML.  Also checks that every interface, member and argument carries a
doc text and every method its list of errors, drawn from the contract's error names.
If GLib's GIO library is present, the file must also load as D-Bus introspection data.
"""

import ctypes
import ctypes.util
import sys
import xml.etree.ElementTree as ET

DOC = '{http://www.freedesktop.org/dbus/1.0/doc.dtd}'
EMITS = 'org.freedesktop.DBus.Property.EmitsChangesSignal'

# name -> (type, EmitsChangesSignal)
PROPERTIES = {
    'org.immod.Immod1.Manager': {
        'Version': ('s', 'const'), 'Link': ('s', 'true'), 'LinkState': ('s', 'true'),
        'EcuState': ('s', 'true'), 'BatteryVoltage': ('d', 'true'),
        'BatteryState': ('s', 'true'), 'Vehicle': ('a{sv}', 'true'),
        'Problems': ('as', 'true'), 'ActiveProcedure': ('o', 'true'),
        'Server': ('s', 'true'),
    },
    'org.immod.Immod1.Procedure': {
        'Kind': ('s', 'const'), 'Vin': ('s', 'const'), 'Owner': ('u', 'const'),
        'Created': ('t', 'const'), 'State': ('s', 'true'), 'Step': ('s', 'true'),
        'StepIndex': ('u', 'true'), 'StepCount': ('u', 'true'), 'Prompt': ('s', 'true'),
        'Seed': ('a{sv}', 'true'), 'PasscodeAttemptsLeft': ('u', 'true'),
        'LockoutSeconds': ('u', 'true'), 'Percentage': ('u', 'true'),
        'RemainingSeconds': ('u', 'true'), 'Deadline': ('t', 'true'),
        'Keys': ('a{sv}', 'true'), 'BatteryMinimum': ('d', 'true'),
        'Error': ('s', 'true'), 'ErrorMessage': ('s', 'true'),
    },
}

# name -> [(direction, name, type), ...]
METHODS = {
    'org.immod.Immod1.Manager': {
        'Identify': [('out', 'vehicle', 'a{sv}')],
        'SetVehicle': [('in', 'vin', 's'), ('in', 'options', 'a{sv}')],
        'ReadKeyStatus': [('out', 'status', 'a{sv}')],
        'StartProcedure': [('in', 'kind', 's'), ('in', 'options', 'a{sv}'),
                           ('out', 'procedure', 'o')],
        'ListProcedures': [('out', 'procedures', 'ao')],
        'GetHistory': [('in', 'limit', 'u'), ('out', 'records', 'aa{sv}')],
        'RequestApproval': [('in', 'request', 'a{sv}'), ('in', 'credentials', 'a{sv}'),
                            ('out', 'result', 'a{sv}')],
        'GetApproval': [('in', 'vin', 's'), ('in', 'credentials', 'a{sv}'),
                        ('out', 'result', 'a{sv}')],
    },
    'org.immod.Immod1.Procedure': {
        'Acknowledge': [('in', 'step', 's')],
        'SubmitPasscode': [('in', 'passcode', 's')],
        'FetchPasscode': [('in', 'credentials', 'a{sv}')],
        'SetKeyCount': [('in', 'present', 'u')],
        'Erase': [('in', 'expected_delete', 'u')],
        'Finish': [],
        'Cancel': [],
    },
}

SIGNALS = {
    'org.immod.Immod1.Manager': {},
    'org.immod.Immod1.Procedure': {
        'StepChanged': [('step', 's'), ('index', 'u'), ('prompt', 's')],
        'KeyEvent': [('event', 's'), ('slot', 'u'), ('beeps', 'u')],
        'Finished': [('state', 's'), ('error', 's')],
    },
}

ERRORS = {'org.freedesktop.DBus.Error.InvalidArgs'} | {
    'org.immod.Immod1.Error.' + e for e in '''
    NotAuthorized Busy NoVehicle UnsupportedVehicle InvalidVin WrongStep
    InvalidPasscodeFormat PasscodeRejected LockedOut BatteryLow EcuAsleep
    EcuUnreachable EcuRefused LinkDown Timeout ServerUnreachable ServerRefused
    ApprovalRequired ApprovalPending AuthenticationFailed CountMismatch
    NotCancellable Cancelled'''.split()}

problems = []


def fail(msg):
    problems.append(msg)


def doc_text(el):
    d = el.find(DOC + 'doc')
    if d is None:
        return ''
    return ' '.join(''.join(x.itertext()) for x in d
                    if x.tag in (DOC + 'description', DOC + 'summary')).strip()


def need_doc(el, what):
    if not doc_text(el):
        fail(f'{what}: no doc text')


def check_glib(path):
    name = ctypes.util.find_library('gio-2.0')
    if not name:
        return
    gio = ctypes.CDLL(name)
    gio.g_dbus_node_info_new_for_xml.restype = ctypes.c_void_p
    gio.g_dbus_node_info_new_for_xml.argtypes = [ctypes.c_char_p,
                                                 ctypes.POINTER(ctypes.c_void_p)]
    err = ctypes.c_void_p()
    with open(path, 'rb') as f:
        if not gio.g_dbus_node_info_new_for_xml(f.read(), ctypes.byref(err)):
            fail('GIO cannot load the file as D-Bus introspection data')


def main(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        print(f'{path}: {e}', file=sys.stderr)
        return 1
    ifaces = {i.get('name'): i for i in root.findall('interface')}
    if set(ifaces) != set(PROPERTIES):
        fail(f'interfaces {sorted(ifaces)}, expected {sorted(PROPERTIES)}')

    for iname, iface in ifaces.items():
        need_doc(iface, iname)

        props = {p.get('name'): p for p in iface.findall('property')}
        for name, (typ, emits) in PROPERTIES.get(iname, {}).items():
            p = props.pop(name, None)
            if p is None:
                fail(f'{iname}.{name}: property missing')
                continue
            need_doc(p, f'{iname}.{name}')
            if p.get('type') != typ or p.get('access') != 'read':
                fail(f'{iname}.{name}: {p.get("type")} {p.get("access")}, expected {typ} read')
            ann = {a.get('name'): a.get('value') for a in p.findall('annotation')}
            if ann.get(EMITS, 'true') != emits:
                fail(f'{iname}.{name}: EmitsChangesSignal {ann.get(EMITS)}, expected {emits}')
        for name, p in props.items():  # additions are allowed, but documented
            need_doc(p, f'{iname}.{name}')

        methods = {m.get('name'): m for m in iface.findall('method')}
        for name, args in METHODS.get(iname, {}).items():
            m = methods.pop(name, None)
            if m is None:
                fail(f'{iname}.{name}: method missing')
                continue
            got = [(a.get('direction', 'in'), a.get('name'), a.get('type'))
                   for a in m.findall('arg')]
            if got != args:
                fail(f'{iname}.{name}: args {got}, expected {args}')
        for m in iface.findall('method'):  # additions too
            name = m.get('name')
            need_doc(m, f'{iname}.{name}')
            for a in m.findall('arg'):
                need_doc(a, f'{iname}.{name}({a.get("name")})')
            d = m.find(DOC + 'doc')
            errs = d.find(DOC + 'errors') if d is not None else None
            if errs is None or not list(errs):
                fail(f'{iname}.{name}: no list of errors')
                continue
            for e in errs:
                if e.get('name') not in ERRORS:
                    fail(f'{iname}.{name}: error {e.get("name")} is not in the contract')
                if not ''.join(e.itertext()).strip():
                    fail(f'{iname}.{name}: error {e.get("name")} has no text')

        signals = {s.get('name'): s for s in iface.findall('signal')}
        for name, args in SIGNALS.get(iname, {}).items():
            s = signals.pop(name, None)
            if s is None:
                fail(f'{iname}.{name}: signal missing')
                continue
            got = [(a.get('name'), a.get('type')) for a in s.findall('arg')]
            if got != args:
                fail(f'{iname}.{name}: args {got}, expected {args}')
        for s in iface.findall('signal'):
            need_doc(s, f'{iname}.{s.get("name")}')
            for a in s.findall('arg'):
                need_doc(a, f'{iname}.{s.get("name")}({a.get("name")})')

    check_glib(path)

    for p in problems:
        print(f'{path}: {p}', file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
