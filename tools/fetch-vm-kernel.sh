#!/bin/bash
# Fetch a Debian kernel for the test VM (tests/vm/run-vm.sh).
#
# Downloads the newest linux-image-6.1.0-NN-amd64-unsigned package that apt
# knows about (not the -cloud- flavour, which has no CAN; not -rt-) and
# unpacks it with `dpkg -x` into the cache folder:
#
#   $IMMOD_VM_CACHE (default: <repo>/vm-cache)/kernel/<version>/
#       boot/vmlinuz-<version>
#       lib/modules/<version>/...
#
# Idempotent: if a complete kernel is already in the cache it does nothing
# (no network) and just prints where it is.  --update looks for a newer one.
#
# Usage: tools/fetch-vm-kernel.sh [--update] [--quiet]
set -euo pipefail

die() { echo "fetch-vm-kernel: error: $*" >&2; exit 1; }
say() { [ "$quiet" = 1 ] || echo "fetch-vm-kernel: $*" >&2; }

update=0
quiet=0
for a in "$@"; do
        case "$a" in
        --update) update=1 ;;
        --quiet) quiet=1 ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown argument '$a' (try --help)" ;;
        esac
done

repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cache=${IMMOD_VM_CACHE:-$repo/vm-cache}
kdir=$cache/kernel

# Newest complete kernel already in the cache, or nothing.
cached_kernel() {
        local d best=
        [ -d "$kdir" ] || return 0
        for d in "$kdir"/*/; do
                d=${d%/}
                [ -f "$d/.complete" ] || continue
                best=$(printf '%s\n%s\n' "$best" "${d##*/}" | sed '/^$/d' | sort -V | tail -n1)
        done
        [ -n "$best" ] && echo "$kdir/$best"
        return 0
}

have=$(cached_kernel)
if [ -n "$have" ] && [ "$update" = 0 ]; then
        say "kernel already in cache"
        echo "$have"
        exit 0
fi

command -v apt-cache >/dev/null || die "apt-cache not found (this needs a Debian system)"
command -v apt-get >/dev/null || die "apt-get not found (this needs a Debian system)"
command -v dpkg >/dev/null || die "dpkg not found (this needs a Debian system)"

find_pkg() {
        apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' 2>/dev/null |
                awk '{print $1}' |
                grep -E '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' |
                sort -V | tail -n1 || true
}

pkg=$(find_pkg)
if [ -z "$pkg" ]; then
        # A fresh machine may have empty package lists.
        if [ "$(id -u)" = 0 ]; then
                say "no linux-image-6.1.0-*-amd64-unsigned known to apt; running apt-get update"
                apt-get update -qq >&2 || die "apt-get update failed"
                pkg=$(find_pkg)
        fi
fi
[ -n "$pkg" ] || die "apt knows no linux-image-6.1.0-NN-amd64-unsigned package (run 'apt-get update' as root?)"

version=${pkg#linux-image-}
version=${version%-unsigned}          # e.g. 6.1.0-56-amd64
dest=$kdir/$version
if [ -f "$dest/.complete" ]; then
        say "newest kernel $version already in cache"
        echo "$dest"
        exit 0
fi

mkdir -p "$kdir" || die "cannot create $kdir"
# Keep the cache (hundreds of MB) out of git when it is inside the work tree.
[ -e "$cache/.gitignore" ] || echo '*' > "$cache/.gitignore"
tmp=$(mktemp -d "$kdir/.fetch.XXXXXX") || die "cannot create a scratch folder in $kdir"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

say "downloading $pkg"
# Download as root without apt's _apt sandbox user (it may not be able to
# write into the scratch folder; apt would only warn about it).
aq=-q; [ "$quiet" = 1 ] && aq=-qq
(cd "$tmp" && apt-get download "$aq" -o APT::Sandbox::User=root "$pkg" >&2) ||
        die "apt-get download $pkg failed"
deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n1)
[ -n "$deb" ] || die "apt-get download $pkg produced no .deb"

say "unpacking $(basename "$deb")"
mkdir "$tmp/root"
dpkg -x "$deb" "$tmp/root" || die "dpkg -x $deb failed"
[ -f "$tmp/root/boot/vmlinuz-$version" ] || die "package has no boot/vmlinuz-$version"
[ -d "$tmp/root/lib/modules/$version" ] || die "package has no lib/modules/$version"
# dpkg -x does not run depmod's postinst, but the package ships modules.dep
# and modules.builtin, which is all run-vm.sh needs.
[ -f "$tmp/root/lib/modules/$version/modules.builtin" ] ||
        say "warning: no modules.builtin in the package"

rm -rf "$dest"
mv "$tmp/root" "$dest" || die "cannot move the kernel into $dest"
echo "$pkg" > "$dest/.complete"
say "kernel $version ready"
echo "$dest"
