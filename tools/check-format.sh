#!/bin/bash
# Checks that the C files are laid out as .clang-format says, or with --fix lays them out so.
# Usage: tools/check-format.sh [--fix] [FILE...]   (default: every *.c and *.h git knows)
#
# Without --fix: prints the files that differ and the diff, exits 1 if any does.
# With --fix: rewrites them in place. A fix may only change white space: each file, with the
# white space outside string and character literals removed (and backslash-newlines, which
# clang-format moves in macros), must read the same before and after, or it is left alone
# and the script exits 1.
# The layout is defined against clang-format 14, Debian 12's: other versions place some
# lines differently, so with another version (or none) the script says so and exits 77,
# the "skipped" status of meson and automake.
set -euo pipefail

fix=false
if [ "${1:-}" = --fix ]; then
        fix=true
        shift
fi
case "${1:-}" in
-h | --help)
        sed -n '2,12s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
-*)
        echo "check-format: unknown option $1; usage: tools/check-format.sh [--fix] [FILE...]" >&2
        exit 2
        ;;
esac

# FILE arguments are relative to where the script was called from; then work at the top.
files=()
for f in "$@"; do
        [ -f "$f" ] || { echo "check-format: $f: no such file" >&2; exit 2; }
        files+=("$(realpath "$f")")
done
cd "$(dirname "$0")/.."
top=$PWD
if [ ${#files[@]} -eq 0 ]; then
        mapfile -t files < <(git ls-files '*.c' '*.h')
else
        files=("${files[@]#"$top"/}")
fi

clang_format=${CLANG_FORMAT:-clang-format}
if ! version=$("$clang_format" --version 2>/dev/null); then
        echo "check-format: skipped: $clang_format is not installed (tools/install-deps.sh installs" \
                "Debian 12's clang-format 14, the version the layout is defined against)." >&2
        exit 77
fi
major=$(sed -n 's/.*clang-format version \([0-9][0-9]*\)\..*/\1/p' <<<"$version")
if [ "$major" != 14 ]; then
        echo "check-format: skipped: found ${version:-an unknown version} (major version ${major:-unknown});" \
                "the layout is defined against clang-format 14, Debian 12's, and other versions lay" \
                "some lines out differently." >&2
        exit 77
fi
command -v python3 >/dev/null || { echo "check-format: python3 is needed to check a fix" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Each file laid out into $tmp/N.out; the ones that differ are listed in $tmp/differ as "N FILE".
: >"$tmp/differ"
for i in "${!files[@]}"; do
        f=${files[$i]}
        "$clang_format" --style=file --fallback-style=none "$f" >"$tmp/$i.out"
        cmp -s "$f" "$tmp/$i.out" || printf '%s %s\n' "$i" "$f" >>"$tmp/differ"
done
[ -s "$tmp/differ" ] || exit 0

# Those whose text, white space aside, would change: printed one a line.
python3 - "$tmp" >"$tmp/not-white-space" <<'EOF'
import re, sys

def tokens(text):
    """The text without backslash-newlines and without white space outside string and
    character literals (comments included: clang-format re-indents their lines)."""
    text = re.sub(rb'\\\r?\n', b'', text)
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i:i + 1]
        if c in (b'"', b"'"):
            j = i + 1
            while j < n and text[j:j + 1] not in (c, b'\n'):
                j += 2 if text[j:j + 1] == b'\\' else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith(b'//', i) or text.startswith(b'/*', i):
            end = text.find(b'\n', i) if text[i + 1:i + 2] == b'/' else text.find(b'*/', i + 2)
            j = n if end < 0 else (end if text[i + 1:i + 2] == b'/' else end + 2)
            out.append(re.sub(rb'\s+', b'', text[i:j]))
            i = j
        elif c.isspace():
            i += 1
        else:
            out.append(c)
            i += 1
    return b''.join(out)

tmp = sys.argv[1]
with open(f'{tmp}/differ', encoding='utf-8') as differ:
    for line in differ:
        n, path = line.rstrip('\n').split(' ', 1)
        with open(path, 'rb') as a, open(f'{tmp}/{n}.out', 'rb') as b:
            if tokens(a.read()) != tokens(b.read()):
                print(path)
EOF

status=0
if [ -s "$tmp/not-white-space" ]; then
        echo "check-format: clang-format would change more than white space in these files; they are" \
                "left alone (lay them out by hand, or fix .clang-format):" >&2
        sed 's/^/  /' "$tmp/not-white-space" >&2
        status=1
fi

if $fix; then
        n=0
        while read -r i f; do
                grep -qxF "$f" "$tmp/not-white-space" && continue
                cat "$tmp/$i.out" >"$f" # keeps the file's mode
                echo "check-format: laid out $f"
                n=$((n + 1))
        done <"$tmp/differ"
        echo "check-format: $n files laid out (white space only, checked)"
        exit $status
fi

echo "check-format: these files differ from the layout .clang-format defines:"
cut -d' ' -f2- "$tmp/differ" | sed 's/^/  /'
while read -r i f; do
        diff -u --label "a/$f" --label "b/$f" "$f" "$tmp/$i.out" || true
done <"$tmp/differ"
echo "check-format: tools/check-format.sh --fix lays them out." >&2
exit 1
