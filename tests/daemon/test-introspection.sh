#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What the running immod introspects against dbus/org.immod.Immod1.xml, the contract's
# machine-readable copy: for the Manager and for a Procedure object, every method with its
# arguments (name, type, direction), every signal with its arguments, every property with
# its type and access, in both directions (nothing missing, nothing extra).
#
# usage: test-introspection.sh IMMOD IMMO_ECUSIM SOURCE_ROOT

set -u -o pipefail

immod=$1
ecusim=$2
src=$3

. "$src/tests/lib/harness.sh"

start_bus
start_ecusim
start_immod none || { fail "immod did not take its bus name"; exit 1; }
wait_for 10 link_up
expect_match "Identify" "\"vin\" s \"$VIN\"" "$(call Identify)"
start_procedure key-registration 0

compare() { # compare OBJECT INTERFACE
        bctl --xml-interface introspect "$DEST" "$1" >"$tmp/live.xml" 2>&1 || { fail "introspect $1: $(cat "$tmp/live.xml")"; return; }
        python3 - "$src/dbus/org.immod.Immod1.xml" "$tmp/live.xml" "$2" <<'PY'
import sys
import xml.etree.ElementTree as ET

def members(path, iface):
    root = ET.parse(path).getroot()
    node = next((i for i in root.iter("interface") if i.get("name") == iface), None)
    if node is None:
        return None
    out = set()
    for m in node:
        if m.tag in ("method", "signal"):
            args = tuple((a.get("name"), a.get("type"), a.get("direction", "in" if m.tag == "method" else "out"))
                         for a in m.findall("arg"))
            out.add((m.tag, m.get("name"), args))
        elif m.tag == "property":
            out.add((m.tag, m.get("name"), (m.get("type"), m.get("access"))))
    return out

want, got = members(sys.argv[1], sys.argv[3]), members(sys.argv[2], sys.argv[3])
if got is None:
    print("FAIL: %s is not introspected" % sys.argv[3]); sys.exit(1)
bad = 0
for m in sorted(want - got, key=str):
    print("FAIL: %s: in the XML, not in immod (or different): %s" % (sys.argv[3], m)); bad += 1
for m in sorted(got - want, key=str):
    print("FAIL: %s: in immod, not in the XML (or different): %s" % (sys.argv[3], m)); bad += 1
if not bad:
    print("ok: %s: %d members as in the XML" % (sys.argv[3], len(want)))
sys.exit(1 if bad else 0)
PY
        [ $? -eq 0 ] || failures=$((failures + 1))
}

compare "$OBJ" "$IFACE"
compare "$proc" "$PIFACE"
pcall Cancel >/dev/null
[ "$failures" -eq 0 ]
