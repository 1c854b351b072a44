#!/bin/bash
# Run one command inside a small qemu VM that has the real kernel CAN stack
# (SocketCAN, CAN_RAW, kernel ISO-TP) and a vcan0 interface.
#
# Usage: tests/vm/run-vm.sh [--timeout SECONDS] [--systemd [--install BUILDDIR]]
#                           [--output DIR] -- COMMAND [ARGS...]
#
# The VM is a Debian kernel (fetched by tools/fetch-vm-kernel.sh into
# $IMMOD_VM_CACHE, default <repo>/vm-cache) under qemu TCG, with a busybox
# initramfs.  The host's root file system is mounted read-only over 9p and
# the command runs chrooted in it, in the caller's working directory, with the
# caller's environment (PATH, LD_LIBRARY_PATH, IMMOD_*, ...; see env_skip).
# In the guest: /proc, /sys, /dev (devtmpfs, with /dev/pts and /dev/shm),
# /run (tmpfs) and writable /tmp and /var/tmp (a tmpfs overlay over the
# host's, so host files there stay visible) ; lo and vcan0 are up;
# IMMOD_IN_VM=1 is set.  Everything else is read-only.
#
# --systemd: boot a real systemd instead (about 20 s more).  The guest root is
# a tmpfs overlay over the host's root (all of it writable, nothing reaches
# the host; the host's /tmp is visible and never cleaned), vcan0 is up, and
# the command runs as root from a oneshot unit (immod-vm-test.service, output to the journal and
# the console) once basic.target is reached, with the real system bus,
# journald, udev and systemctl; getty, postgresql and the periodic timers are
# masked, and nothing of multi-user.target is started.  The VM powers off
# when the command ends (if it has not 30 s later, it is stopped).
# IMMOD_VM_MODE=systemd is set.  --install BUILDDIR: "meson install" the
# build into a scratch folder on the host first and copy that tree over the
# guest root before systemd starts, so its units, bus files and programs are
# where an installed system has them.
# --output DIR: DIR (created if needed) is shared read-write with the guest at
# the same path, and IMMOD_VM_OUTPUT=DIR is set, to keep files of the run.
#
# The guest console is streamed to stdout.  The exit code is the command's,
# or: 77 = skipped (qemu, busybox-static or the kernel missing), 124 = timed
# out, 125 = the VM did not report the command's exit code.
#
# Environment: IMMOD_VM_CACHE (cache folder), IMMOD_VM_TIMEOUT (default
# timeout, 600), IMMOD_VM_BUSYBOX (a static busybox), IMMOD_VM_QEMU_ARGS
# (extra qemu arguments, split on blanks), IMMOD_VM_BZIMAGE=1 (boot the
# compressed bzImage instead of the unpacked vmlinux; slower under TCG).
#
# Cached in $IMMOD_VM_CACHE: initramfs/initramfs-<kernel>-<hash>.cpio (keyed
# by kernel version, this script, busybox and the module list) and
# kernel/<version>/boot/vmlinux-<version>.pvh.  Per-run files live in a
# temporary folder under $TMPDIR (or the cache) and are removed at exit.

# shellcheck disable=SC2317,SC2016,SC2054
set -uo pipefail

prog=run-vm
die() { echo "$prog: error: $*" >&2; exit 125; }
skip() { echo "$prog: SKIP: $*" >&2; exit 77; }

usage() {
        echo "usage: $0 [--timeout SECONDS] [--systemd [--install BUILDDIR]] [--output DIR] -- COMMAND [ARGS...]" >&2
        exit 125
}

timeout_s=${IMMOD_VM_TIMEOUT:-600}
mode=quick
install_build=
output_dir=
while [ $# -gt 0 ]; do
        case "$1" in
        --timeout) [ $# -ge 2 ] || usage; timeout_s=$2; shift 2 ;;
        --timeout=*) timeout_s=${1#--timeout=}; shift ;;
        --systemd) mode=systemd; shift ;;
        --install) [ $# -ge 2 ] || usage; install_build=$2; shift 2 ;;
        --install=*) install_build=${1#--install=}; shift ;;
        --output) [ $# -ge 2 ] || usage; output_dir=$2; shift 2 ;;
        --output=*) output_dir=${1#--output=}; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        --) shift; break ;;
        -*) echo "$prog: unknown option '$1'" >&2; usage ;;
        *) break ;;
        esac
done
[ $# -ge 1 ] || usage
case "$timeout_s" in ''|*[!0-9]*) die "--timeout needs a whole number of seconds, not '$timeout_s'" ;; esac
# Only the systemd mode has a writable root to install into.
[ -z "$install_build" ] || [ "$mode" = systemd ] || die "--install needs --systemd"
if [ -n "$install_build" ]; then
        [ -f "$install_build/meson-private/coredata.dat" ] || die "--install: $install_build is not a meson build folder"
        install_build=$(cd "$install_build" && pwd -P)
fi
if [ -n "$output_dir" ]; then
        mkdir -p "$output_dir" || die "--output: cannot create $output_dir"
        output_dir=$(cd "$output_dir" && pwd -P)
fi

script_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
repo=$(cd "$script_dir/../.." && pwd)
cache=${IMMOD_VM_CACHE:-$repo/vm-cache}

# Kernel modules to load, in this order (each after its dependencies, which
# are added as needed); a module built into the kernel is skipped.
modules="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
netfs fscache 9pnet 9pnet_virtio 9p overlay can can-raw can-isotp can-dev vcan"

# Variables of the caller's environment not passed to the guest command.
env_skip=" _ PWD OLDPWD SHLVL HOSTNAME TERM TERMCAP COLUMNS LINES DISPLAY WAYLAND_DISPLAY
XAUTHORITY XDG_RUNTIME_DIR XDG_SESSION_ID DBUS_SESSION_BUS_ADDRESS DBUS_SYSTEM_BUS_ADDRESS
SSH_AUTH_SOCK SSH_AGENT_PID SSH_CONNECTION SSH_CLIENT SSH_TTY NOTIFY_SOCKET LISTEN_FDS LISTEN_PID
LISTEN_FDNAMES INVOCATION_ID JOURNAL_STREAM MANAGERPID "

# ---------------------------------------------------------------- prerequisites
command -v qemu-system-x86_64 >/dev/null ||
        skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
command -v timeout >/dev/null || skip "timeout (coreutils) not found"
command -v cpio >/dev/null || skip "cpio not found (apt-get install cpio)"

is_static() {
        [ -x "$1" ] || return 1
        case "$(LC_ALL=C ldd "$1" 2>&1)" in
        *"not a dynamic executable"*|*"statically linked"*) return 0 ;;
        esac
        return 1
}
busybox=
for b in ${IMMOD_VM_BUSYBOX:-} /bin/busybox /usr/bin/busybox; do
        if is_static "$b"; then busybox=$b; break; fi
done
[ -n "$busybox" ] || skip "no static busybox found (apt-get install busybox-static)"
if [ "$mode" = systemd ]; then
        [ -x /lib/systemd/systemd ] || skip "--systemd: /lib/systemd/systemd not found (apt-get install systemd)"
        [ -z "$install_build" ] || command -v meson >/dev/null || skip "--install: meson not found"
fi

kernel_root=
if [ -d "$cache/kernel" ]; then
        kver=$(cd "$cache/kernel" && for d in */; do
                d=${d%/}; [ -f "$d/.complete" ] && echo "$d"; done | sort -V | tail -n1)
        [ -n "$kver" ] && kernel_root=$cache/kernel/$kver
fi
[ -n "$kernel_root" ] ||
        skip "no VM kernel in $cache/kernel: run tools/fetch-vm-kernel.sh first"
vmlinuz=$kernel_root/boot/vmlinuz-$kver
moddir=$kernel_root/lib/modules/$kver
[ -f "$vmlinuz" ] || skip "kernel image $vmlinuz missing: run tools/fetch-vm-kernel.sh"
[ -d "$moddir" ] || skip "kernel modules $moddir missing: run tools/fetch-vm-kernel.sh"

# Under TCG, decompressing the bzImage takes seconds at every boot.  Debian's
# kernel has CONFIG_PVH, so qemu can boot the uncompressed ELF vmlinux
# directly: unpack it once into the cache (IMMOD_VM_BZIMAGE=1: don't).
extract_vmlinux() {
        local out=$1 magic cmd off tmp
        grep -q '^CONFIG_PVH=y' "$kernel_root/boot/config-$kver" 2>/dev/null || return 1
        for magic in $'\xfd7zXZ:xz -dc' $'\x28\xb5\x2f\xfd:zstd -qdc' $'\x1f\x8b\x08:gzip -dc'; do
                off=$(LC_ALL=C grep -abo -m1 "${magic%%:*}" "$vmlinuz" 2>/dev/null | head -n1 | cut -d: -f1)
                [ -n "$off" ] || continue
                cmd=${magic#*:}
                command -v "${cmd%% *}" >/dev/null 2>&1 || continue
                tmp=$out.tmp.$$
                # The compressed payload is followed by other data: ignore the
                # decompressor's complaint about it, check the result instead.
                tail -c +"$((off + 1))" "$vmlinuz" | $cmd > "$tmp" 2>/dev/null
                if [ "$(head -c 4 "$tmp" 2>/dev/null)" = $'\x7fELF' ]; then
                        mv -f "$tmp" "$out" && return 0
                fi
                rm -f "$tmp"
        done
        return 1
}
boot_image=$vmlinuz
if [ "${IMMOD_VM_BZIMAGE:-0}" != 1 ]; then
        vmlinux=$kernel_root/boot/vmlinux-$kver.pvh
        if [ -s "$vmlinux" ] || extract_vmlinux "$vmlinux"; then
                boot_image=$vmlinux
        else
                echo "$prog: note: cannot unpack an ELF vmlinux from $vmlinuz, booting the bzImage (slower)"
        fi
fi

# ---------------------------------------------------------------- scratch space
if [ -n "${TMPDIR:-}" ] && [ -d "$TMPDIR" ] && [ -w "$TMPDIR" ]; then
        scratch_parent=$TMPDIR
else
        scratch_parent=$cache
        mkdir -p "$cache" || die "cannot create $cache"
fi
work=$(mktemp -d "$scratch_parent/immod-vm.XXXXXX") || die "cannot create a scratch folder in $scratch_parent"
qemu_pid_file=$work/timeout.pid
stopping=0
cleanup() {
        if [ -s "$qemu_pid_file" ]; then
                kill -TERM "$(cat "$qemu_pid_file")" 2>/dev/null
        fi
        rm -rf "$work"
}
on_signal() {
        stopping=1
        echo "$prog: interrupted, stopping the VM" >&2
        if [ -s "$qemu_pid_file" ]; then
                kill -TERM "$(cat "$qemu_pid_file")" 2>/dev/null
        fi
}
trap cleanup EXIT
trap on_signal INT TERM HUP

# ---------------------------------------------------------------- the initramfs
# The guest's /init.  It reads /vm-run.conf (RUN_ID) and runs /cmd.sh, both
# from a small per-run cpio appended to the cached one.
read -r -d '' init_script <<'INIT_EOF'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
RUN_ID=unknown
MODE=quick
STAGE=
OUTPUT=
. /vm-run.conf

say() { echo "vm-init: $*"; }
finish() {
        printf '\nIMMOD-VM-EXIT=%s run=%s\n' "$1" "$RUN_ID"
        sync
        poweroff -f
        sleep 5
        exit "$1"
}

echo "IMMOD-VM-START run=$RUN_ID kernel=$(uname -r)"
while read -r mod; do
        [ -n "$mod" ] || continue
        insmod "/lib/modules/$mod" || say "insmod $mod failed"
done < /lib/modules/order
[ -s /lib/modules/builtin ] && say "built in, not loaded: $(cat /lib/modules/builtin)"

mkdir -p /lower
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower ||
        { say "cannot mount the host root over 9p"; finish 125; }
L=/lower

hostname immod-vm
ip link set lo up
# vcan0 before anything else: in systemd mode it is kept across switch_root.
if ! { ip link add dev vcan0 type vcan && ip link set vcan0 up; } 2>/dev/null; then
        ip link del dev vcan0 2>/dev/null
        chroot $L /sbin/ip link add dev vcan0 type vcan &&
                chroot $L /sbin/ip link set vcan0 up ||
                say "cannot create vcan0"
fi

# A file of the systemd mode's units: unit NAME, the text on stdin.
unit() { cat > "$N/etc/systemd/system/$1"; }

if [ "$MODE" = systemd ]; then
        # The whole root writable: a tmpfs upper over the read-only 9p lower.
        N=/newroot
        mkdir -p /ovl $N
        mount -t tmpfs -o mode=755 tmpfs /ovl || { say "cannot mount a tmpfs for the overlay"; finish 125; }
        mkdir -p /ovl/root/u /ovl/root/w
        mount -t overlay overlay -o lowerdir=$L,upperdir=/ovl/root/u,workdir=/ovl/root/w $N ||
                { say "cannot mount the overlay root"; finish 125; }
        if [ -n "$STAGE" ]; then
                cp -a "$L$STAGE/." $N/ || { say "cannot copy the installed tree $STAGE"; finish 125; }
        fi
        # The host may be a container: systemd would believe it runs in one.
        rm -f $N/.dockerenv $N/run/.containerenv
        # The host's /tmp stays visible (the source or build tree may live
        # there, as in a CI clone), writable through the overlay; but
        # systemd-tmpfiles must not empty it at boot ("D /tmp"), which would
        # also be slow, file by file over 9p: /etc/tmpfiles.d/tmp.conf
        # overrides Debian's with a plain "d".
        mkdir -p $N/etc/tmpfiles.d
        printf 'd /tmp 1777 root root -\nd /var/tmp 1777 root root -\n' > $N/etc/tmpfiles.d/tmp.conf
        if [ -n "$OUTPUT" ]; then
                mkdir -p "$N$OUTPUT"
                mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hostout "$N$OUTPUT" ||
                        say "cannot mount the output folder $OUTPUT"
        fi
        mkdir -p $N/etc/immod-vm $N/etc/systemd/system $N/etc/systemd/system.conf.d \
                $N/etc/systemd/journald.conf.d
        cp /cmd.sh $N/etc/immod-vm/cmd.sh
        # The marker goes straight to the console: through the journal it
        # would get a prefix, and could come after the power-off.
        cat > $N/etc/immod-vm/run.sh <<EOF
#!/bin/sh
/bin/sh /etc/immod-vm/cmd.sh </dev/null
rc=\$?
sleep 0.5  # lets journald forward the command's last lines first
printf '\\nIMMOD-VM-EXIT=%s run=%s\\n' "\$rc" "$RUN_ID" >/dev/console
systemctl --no-block poweroff
EOF
        # Boot only to basic.target and the test; nothing of multi-user.target.
        unit immod-vm.target <<EOF
[Unit]
Description=immod VM test boot
Wants=basic.target immod-vm-test.service
After=basic.target
AllowIsolate=yes
EOF
        ln -sf immod-vm.target $N/etc/systemd/system/default.target
        # No DefaultDependencies: the test runs even when a unit of basic.target failed.
        unit immod-vm-test.service <<EOF
[Unit]
Description=immod VM test command
DefaultDependencies=no
Wants=basic.target dbus.socket
After=basic.target dbus.socket
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=oneshot
ExecStart=/bin/sh /etc/immod-vm/run.sh
StandardInput=null
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
EOF
        # What slows the boot down or fails without real hardware.
        for u in getty@tty1.service serial-getty@ttyS0.service getty.target \
                postgresql.service postgresql@.service e2scrub_reap.service \
                apt-daily.timer apt-daily-upgrade.timer man-db.timer dpkg-db-backup.timer \
                e2scrub_all.timer fstrim.timer logrotate.timer systemd-tmpfiles-clean.timer \
                systemd-timesyncd.service systemd-pstore.service systemd-modules-load.service \
                cron.service ssh.service remote-fs.target proc-sys-fs-binfmt_misc.automount; do
                ln -sf /dev/null "$N/etc/systemd/system/$u"
        done
        # A unit that hangs at power-off must not hold the VM for 90 s.
        # (And only failures on the console: the test's output is what matters there.)
        printf '[Manager]\nDefaultTimeoutStopSec=10s\nShowStatus=error\n' > $N/etc/systemd/system.conf.d/immod-vm.conf
        printf '[Journal]\nStorage=volatile\n' > $N/etc/systemd/journald.conf.d/immod-vm.conf
        mount -o move /dev $N/dev && mount -o move /proc $N/proc && mount -o move /sys $N/sys ||
                { say "cannot move /dev, /proc and /sys"; finish 125; }
        echo "vm-init: starting systemd"
        exec switch_root $N /lib/systemd/systemd
        echo "vm-init: switch_root failed"
        poweroff -f
fi
mount -t proc proc $L/proc || { say "cannot mount $L/proc"; finish 125; }
mount -t sysfs sysfs $L/sys || { say "cannot mount $L/sys"; finish 125; }
mount -t devtmpfs devtmpfs $L/dev || { say "cannot mount $L/dev"; finish 125; }
mkdir -p $L/dev/pts $L/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $L/dev/pts || say "cannot mount devpts"
mount -t tmpfs -o mode=1777 tmpfs $L/dev/shm || say "cannot mount /dev/shm"
[ -e $L/dev/fd ] || ln -s /proc/self/fd $L/dev/fd
[ -e $L/dev/stdin ] || ln -s /proc/self/fd/0 $L/dev/stdin
[ -e $L/dev/stdout ] || ln -s /proc/self/fd/1 $L/dev/stdout
[ -e $L/dev/stderr ] || ln -s /proc/self/fd/2 $L/dev/stderr
mount -t tmpfs -o mode=755 tmpfs $L/run || { say "cannot mount $L/run"; finish 125; }
# Writable /tmp and /var/tmp: a tmpfs over the host's (read-only) folder.
mkdir -p /ovl
mount -t tmpfs -o mode=755 tmpfs /ovl
for t in /tmp /var/tmp; do
        n=$(echo "$t" | tr / _)
        mkdir -p /ovl/$n/u /ovl/$n/w
        chmod 1777 /ovl/$n/u
        if [ -d $L$t ] && mount -t overlay overlay \
                -o lowerdir=$L$t,upperdir=/ovl/$n/u,workdir=/ovl/$n/w $L$t 2>/dev/null; then
                :
        elif [ -d $L$t ] && mount -t tmpfs -o mode=1777 tmpfs $L$t; then
                say "$t is an empty tmpfs (overlay failed)"
        else
                say "cannot make $t writable"
        fi
done

if [ -n "$OUTPUT" ]; then
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hostout "$L$OUTPUT" ||
                say "cannot mount the output folder $OUTPUT"
fi

mkdir -p $L/run/immod-vm
cp /cmd.sh $L/run/immod-vm/cmd.sh
env -i chroot $L /bin/sh /run/immod-vm/cmd.sh </dev/null
finish $?
INIT_EOF

# Resolve the module list (with dependencies) to files: "name file" lines.
declare -A mod_file=() mod_seen=()
while IFS= read -r f; do
        n=${f##*/}
        n=${n%%.ko*}
        mod_file[${n//-/_}]=$f
done < <(cd "$moddir" && find . -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

builtin_list=
resolved=()
resolve() {
        local n=${1//-/_} f dep
        [ -z "${mod_seen[$n]:-}" ] || return 0
        mod_seen[$n]=1
        f=${mod_file[$n]:-}
        if [ -z "$f" ]; then
                if [ -f "$moddir/modules.builtin" ] &&
                        grep -qE "/${n//_/[-_]}\.ko$" "$moddir/modules.builtin"; then
                        builtin_list="$builtin_list $1"
                        return 0
                fi
                die "kernel module '$1' is neither in $moddir nor built in"
        fi
        if command -v modinfo >/dev/null; then
                for dep in $(modinfo -F depends "$moddir/$f" 2>/dev/null | tr , ' '); do
                        resolve "$dep"
                done
        fi
        resolved+=("$n $f")
}
for m in $modules; do resolve "$m"; done

init_hash=$( {
        printf '%s\n' "$init_script" "$kver" "${resolved[@]}" "builtin:$builtin_list"
        sha256sum "$busybox" | cut -d' ' -f1
        sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
} | sha256sum | cut -c1-16)
initrd_dir=$cache/initramfs
initrd=$initrd_dir/initramfs-$kver-$init_hash.cpio

build_initramfs() {
        local root=$work/initramfs i=0 line n f out
        mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,lower,lib/modules} || return 1
        cp "$busybox" "$root/bin/busybox" || return 1
        mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null  # only as root; /init copes
        printf '%s\n' "$init_script" > "$root/init" && chmod 755 "$root/init" || return 1
        : > "$root/lib/modules/order"
        for line in "${resolved[@]}"; do
                n=${line%% *}
                f=${line#* }
                i=$((i + 1))
                out=$(printf '%02d-%s.ko' "$i" "$n")
                case "$f" in
                *.ko.xz) xz -dc "$moddir/$f" > "$root/lib/modules/$out" ;;
                *.ko.zst) zstd -qdc "$moddir/$f" > "$root/lib/modules/$out" ;;
                *.ko.gz) gzip -dc "$moddir/$f" > "$root/lib/modules/$out" ;;
                *) cp "$moddir/$f" "$root/lib/modules/$out" ;;
                esac || { echo "$prog: cannot unpack $f" >&2; return 1; }
                echo "$out" >> "$root/lib/modules/order"
        done
        printf '%s' "${builtin_list# }" > "$root/lib/modules/builtin"
        mkdir -p "$initrd_dir" || return 1
        [ -e "$cache/.gitignore" ] || echo '*' > "$cache/.gitignore"
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
                cpio --quiet -o -H newc -R 0:0) > "$work/initramfs.cpio" || return 1
        mv -f "$work/initramfs.cpio" "$initrd.tmp.$$" && mv -f "$initrd.tmp.$$" "$initrd" || return 1
        # Drop images of other script versions or kernels not used for a week.
        find "$initrd_dir" -maxdepth 1 -name 'initramfs-*.cpio' ! -name "${initrd##*/}" \
                -mtime +7 -delete 2>/dev/null
        rm -rf "$root"
}
if [ -s "$initrd" ]; then
        touch "$initrd" 2>/dev/null  # still in use: keep it (see build_initramfs)
else
        echo "$prog: building initramfs for kernel $kver (modules:$(printf ' %s' "${resolved[@]%% *}")${builtin_list:+; built in:$builtin_list})"
        build_initramfs || die "cannot build the initramfs in $initrd_dir"
fi

# ---------------------------------------------------------------- this run's command
squote() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }

run_id=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
cwd=$(pwd -P)
mkdir -p "$work/run" || die "cannot create $work/run"
stage=
if [ -n "$install_build" ]; then
        # Under $work, which the guest sees through the 9p root.
        stage=$work/stage
        meson install -C "$install_build" --destdir "$stage" --no-rebuild --quiet > "$work/install.log" 2>&1 ||
                { cat "$work/install.log" >&2; die "meson install -C $install_build failed"; }
fi
{
        echo "RUN_ID=$run_id"
        echo "MODE=$mode"
        echo "STAGE=$(squote "$stage")"
        echo "OUTPUT=$(squote "$output_dir")"
} > "$work/run/vm-run.conf"
{
        echo "# generated by run-vm.sh"
        echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        while IFS= read -r name; do
                case "$name" in *[!A-Za-z0-9_]*|[0-9]*|'') continue ;; esac
                case "$env_skip" in *[[:space:]]"$name"[[:space:]]*) continue ;; esac
                printf 'export %s=%s\n' "$name" "$(squote "${!name}")"
        done < <(compgen -e)
        echo "export IMMOD_IN_VM=1"
        echo "export IMMOD_VM_MODE=$mode"
        [ -z "$output_dir" ] || echo "export IMMOD_VM_OUTPUT=$(squote "$output_dir")"
        # A TMPDIR outside /tmp and /var/tmp would be read-only in the guest.
        echo 'if [ -n "${TMPDIR:-}" ]; then mkdir -p "$TMPDIR" 2>/dev/null; [ -d "$TMPDIR" ] && [ -w "$TMPDIR" ] || export TMPDIR=/tmp; fi'
        printf 'cd %s || { echo "run-vm: cannot enter %s in the guest" >&2; exit 125; }\n' \
                "$(squote "$cwd")" "$(squote "$cwd")"
        printf 'set --'
        for a in "$@"; do printf ' %s' "$(squote "$a")"; done
        printf '\nexec "$@"\n'
} > "$work/run/cmd.sh" || die "cannot write $work/run/cmd.sh"
(cd "$work/run" && printf '%s\n' vm-run.conf cmd.sh | cpio --quiet -o -H newc -R 0:0) \
        > "$work/run.cpio" || die "cannot pack the command"
cat "$initrd" "$work/run.cpio" > "$work/initrd.cpio" || die "cannot write $work/initrd.cpio"

# ---------------------------------------------------------------- boot
# shellcheck disable=SC2206
extra_qemu=(${IMMOD_VM_QEMU_ARGS:-})
qemu=(qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -no-reboot -nic none
        -kernel "$boot_image" -initrd "$work/initrd.cpio"
        -append 'console=ttyS0 quiet panic=-1'
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap)
[ -z "$output_dir" ] ||
        qemu+=(-virtfs "local,path=${output_dir//,/,,},mount_tag=hostout,security_model=none,multidevs=remap")
qemu+=("${extra_qemu[@]}")

echo "$prog: booting kernel $kver ($mode mode, timeout ${timeout_s}s): $*"
start=$(date +%s.%N)
{
        timeout -k 10 "$timeout_s" "${qemu[@]}" &
        echo $! > "$qemu_pid_file"
        wait $!
        echo $? > "$work/qemu.rc"
} < /dev/null 2>&1 | sed -u -e 's/\r$//' -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' | tee "$work/console.log" &
pipeline=$!
# Once the guest has reported its exit code, it gets exit_grace seconds to
# power off (systemd stops its units first) before the VM is stopped.
exit_grace=30
# (Short sleeps only: a sleep left behind would hold the caller's stdout.)
(
        waited=-1
        while kill -0 $pipeline 2>/dev/null; do
                if [ $waited -lt 0 ]; then
                        grep -a -q -E "^IMMOD-VM-EXIT=[0-9]+ run=$run_id\$" "$work/console.log" 2>/dev/null &&
                                waited=0
                elif [ $waited -ge $exit_grace ]; then
                        echo "$prog: the guest did not power off ${exit_grace}s after its command ended, stopping the VM" >&2
                        [ -s "$qemu_pid_file" ] && kill -TERM "$(cat "$qemu_pid_file")" 2>/dev/null
                        exit 0
                else
                        waited=$((waited + 1))
                fi
                sleep 1
        done
) &
watcher=$!
while :; do
        wait $pipeline && break
        # wait returns >128 when a trapped signal interrupts it.
        kill -0 $pipeline 2>/dev/null || break
done
kill $watcher 2>/dev/null
wait $watcher 2>/dev/null
rm -f "$qemu_pid_file"
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

qemu_rc=$(cat "$work/qemu.rc" 2>/dev/null || echo unknown)
rc=$(grep -a -E "^IMMOD-VM-EXIT=[0-9]+ run=$run_id\$" "$work/console.log" | tail -n1 |
        sed -E 's/^IMMOD-VM-EXIT=([0-9]+) .*/\1/')

if [ -n "$rc" ]; then
        echo "$prog: guest command exited with $rc (VM ran ${elapsed}s)"
        exit "$rc"
fi
if [ "$stopping" = 1 ]; then
        echo "$prog: error: interrupted after ${elapsed}s, no exit code from the guest" >&2
        exit 125
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
        echo "$prog: error: timed out after ${timeout_s}s, the VM was killed (no exit code from the guest)" >&2
        exit 124
fi
if grep -a -q "^IMMOD-VM-START run=$run_id" "$work/console.log"; then
        echo "$prog: error: the guest init started but did not report an exit code (qemu exit status $qemu_rc, ${elapsed}s)" >&2
else
        echo "$prog: error: the VM never reached its init (qemu exit status $qemu_rc, ${elapsed}s); see the console output above" >&2
fi
exit 125
