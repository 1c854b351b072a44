#!/bin/bash
# Runs the libFuzzer targets of tests/fuzz/ for a time budget each:
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]     (default 40)
#
# The targets: isotp, uds (CAN answers), text (typed and pasted text), yaml-immod,
# yaml-profile, yaml-server (the YAML readers) and server-api (the passcode server's
# request handling). CI runs each for 40 s: about 5 minutes in all.
#
# Builds them with clang under ASan and UBSan in build-fuzz/, then runs each one on a copy
# of its seed corpus (tests/fuzz/corpus/TARGET/) in a scratch directory, so nothing is
# written into the source tree. Exits non-zero when a target crashes, and prints the path
# of the crashing input; keep it as tests/fuzz/corpus/TARGET/crash-... once the bug is
# reported, so the unit tests replay it. FUZZ_TARGETS="isotp uds" picks targets,
# FUZZ_WORKDIR a scratch directory to keep.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-40}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
        echo "Usage: $0 [SECONDS_PER_TARGET]" >&2
        exit 2
fi
targets=${FUZZ_TARGETS:-isotp uds text yaml-immod yaml-profile yaml-server server-api}
builddir=build-fuzz

if ! command -v clang >/dev/null; then
        echo "fuzz: clang is not installed (apt-get install clang)" >&2
        exit 1
fi

if [ ! -f "$builddir/build.ninja" ]; then
        CC=clang meson setup "$builddir" -Dtests=enabled -Db_sanitize=address,undefined -Db_lundef=false \
                -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$builddir" $(for t in $targets; do echo "tests/fuzz/fuzz-$t"; done)

workdir=${FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/immod-fuzz.XXXXXX")}
mkdir -p "$workdir"

# UBSan reports become crashes; leaks are reported by libFuzzer itself.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

failed=()
summary=()
for t in $targets; do
        exe=$builddir/tests/fuzz/fuzz-$t
        help=$("$exe" -help=1 2>&1 || true)
        if ! grep -q '^Usage:' <<<"$help"; then
                echo "fuzz: $exe is not a libFuzzer binary (does clang here support -fsanitize=fuzzer?)" >&2
                exit 1
        fi

        corpus=$workdir/$t/corpus
        artifacts=$workdir/$t/artifacts
        log=$workdir/$t/fuzz.log
        rm -rf "$corpus" "$artifacts"
        mkdir -p "$corpus" "$artifacts"
        cp -r tests/fuzz/corpus/"$t"/. "$corpus"/

        echo "fuzz: $t for ${seconds}s (log: $log)"
        rc=0
        "$exe" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=4096 \
                -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1 || rc=$?

        done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
        rate=
        if [ -n "$runs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then
                rate=$(( runs / secs ))
        fi
        cov=$(echo "$done_line" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' || true)
        summary+=("$t: ${runs:-?} runs, ${rate:-?} exec/s, ${cov:-no final stats}")

        crashes=$(find "$artifacts" -type f | sort)
        if [ "$rc" -ne 0 ] || [ -n "$crashes" ]; then
                failed+=("$t")
                echo "fuzz: $t FAILED (exit code $rc)" >&2
                grep -E 'invariant violated|ERROR: |runtime error|SUMMARY' "$log" | head -n 20 >&2 || true
                for c in $crashes; do
                        echo "fuzz: crashing input: $c" >&2
                done
                [ -n "$crashes" ] || tail -n 30 "$log" >&2
        fi
done

echo "fuzz: results (${seconds}s per target):"
for s in "${summary[@]}"; do
        echo "  $s"
done

if [ "${#failed[@]}" -gt 0 ]; then
        echo "fuzz: crashes in: ${failed[*]}; inputs and logs kept in $workdir" >&2
        exit 1
fi
[ -n "${FUZZ_WORKDIR:-}" ] || rm -rf "$workdir"
echo "fuzz: no crash"
