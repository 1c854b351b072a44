# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The helpers that tests/vm/peer-ecu-test.sh and peer-truth-test.sh share, sourced by both
# (inside the VM). They use the caller's variables: failures, addr (the private bus), proc
# (the Procedure object), DEST MOBJ MIFACE PIFACE, and descriptors 7 and 8 (the python
# helper's FIFOs).

stop_pid() { # stop_pid VARNAME: kill the process whose pid the variable holds, once
        local p=${!1}
        [ -n "$p" ] || return 0
        kill "$p" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
        printf -v "$1" ''
}
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
expect() { # expect DESCRIPTION REGEX TEXT
        if grep -Eq -- "$2" <<<"$3"; then ok "$1"; else fail "$1: wanted /$2/, got: $3"; return 1; fi
}
wait_for() { # wait_for SECONDS COMMAND...: polls every 0.3 s, at most SECONDS
        local end=$((SECONDS + $1))
        shift
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -ge $end ] && return 1
                sleep 0.3
        done
}
helper() { # helper LINE: one request to the helper, its answer line (60 s at most)
        local answer
        echo "$*" >&7 || { echo "error: helper gone"; return 1; }
        IFS= read -r -t 60 answer <&8 || { echo "error: no answer from the helper"; return 1; }
        echo "$answer"
}
bc() { busctl --address="$addr" --timeout=30 "$@"; }
mcall() { bc call $DEST $MOBJ $MIFACE "$@" 2>&1; }
mprop() { bc get-property $DEST $MOBJ $MIFACE "$1" 2>&1; }
pcall() { bc call $DEST "$proc" $PIFACE "$@" 2>&1; }
pprop() { bc get-property $DEST "$proc" $PIFACE "$1" 2>&1; }
perror() { # perror METHOD ARGS...: the D-Bus error name of a Procedure call, or OK
        local out
        if out=$(gdbus call --timeout 30 --address="$addr" --dest=$DEST --object-path="$proc" \
                --method=$PIFACE."$1" "${@:2}" 2>&1); then
                echo OK
        else
                sed -n 's/.*GDBus\.Error:\([A-Za-z0-9_.]*\):.*/\1/p' <<<"$out" | head -n 1
        fi
}
ended() { grep -Eq '"(succeeded|failed|cancelled)"' <<<"$(pprop State)"; }
at_step_or_ended() { step_is "$1" || ended; }
wait_step() { # wait_step SECONDS STEP: fails (1) when not reached, with why
        if wait_for "$1" at_step_or_ended "$2" && step_is "$2"; then
                ok "step $2"
        else
                fail "step $2 not reached: at $(pprop Step), $(pprop State), error $(pprop Error) $(pprop ErrorMessage)"
                return 1
        fi
}
ack() { # ack STEP: wait for it, then Acknowledge it
        wait_step 20 "$1" || return 1
        expect "Acknowledge $1" '^$' "$(pcall Acknowledge s "$1")"
}
