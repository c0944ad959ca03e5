#!/usr/bin/env bash
# pku_guest.sh: runs a command in an emulated guest whose CPU has PKU, for
# machines whose own CPU has none.
#
#   tests/guest/pku_guest.sh run [--] COMMAND [ARG...]
#   tests/guest/pku_guest.sh prepare       fetch and cache the kernel only
#
# The guest is QEMU's TCG with `-cpu max` (it emulates PKU; no KVM needed)
# running Debian 13's kernel (6.12: Debian 12's 6.1 is too old for mpkbox).
# A busybox initramfs mounts this machine's `/` over virtio-9p, chroots into
# it and runs COMMAND in the caller's directory, so binaries built here run
# unchanged. The exit status is COMMAND's; a guest that dies is a failure.
# Inside, MPKBOX_EMULATED_PKU=1 tells tests that timings mean nothing.
# Transparent huge pages are "madvise", Debian 12's default: Debian 13's
# kernel says "always", under which the 4,096-compartment test's host-side
# allocator state takes 10 GiB instead of 0.5 GiB (bench/RESULTS.md, "Huge
# pages"): more than the guest has.
#
# Environment:
#   MPKBOX_GUEST_CACHE    where the kernel and initramfs are cached
#                         (default ${XDG_CACHE_HOME:-$HOME/.cache}/mpkbox-guest)
#   MPKBOX_GUEST_CPU      QEMU -cpu model (default max; max,-pku for a
#                         guest without PKU)
#   MPKBOX_GUEST_MEM      guest memory (default 6G)
#   MPKBOX_GUEST_TIMEOUT  seconds before the guest is killed (default 4800)
#
# The kernel package comes from Debian's archive through a private apt
# configuration under the cache: the system's sources are not touched and
# nothing is installed. Packages it needs on the host (qemu-system-x86,
# busybox-static, xz-utils, cpio) come from apt-get.
set -euo pipefail

readonly CACHE="${MPKBOX_GUEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/mpkbox-guest}"
readonly SUITE=trixie
# The 9p stack, in load order (the kernel has virtio-pci built in).
readonly MODULES=(fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p)
readonly HOST_PACKAGES=(qemu-system-x86 busybox-static xz-utils cpio)

log() { echo "pku_guest: $*" >&2; }
die() { echo "pku_guest: $*" >&2; exit 1; }

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root or sudo to run: $*"
  fi
}

install_host_packages() {
  local missing=() pkg
  for pkg in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Status}\n' "$pkg" 2>/dev/null \
      | grep -qx installed || missing+=("$pkg")
  done
  [[ "${#missing[@]}" -eq 0 ]] && return
  log "installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update >&2
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
}

# apt-get/apt-cache with a configuration of their own under $CACHE/apt.
private_apt() {
  local tool="$1"; shift
  local d="$CACHE/apt"
  "$tool" -o Dir::Etc::SourceList="$d/sources.list" \
    -o Dir::Etc::SourceParts="$d/empty" \
    -o Dir::Etc::Preferences="$d/empty/none" \
    -o Dir::Etc::PreferencesParts="$d/empty" \
    -o Dir::State="$d" -o Dir::State::Lists="$d/lists" \
    -o Dir::State::Status="$d/status" \
    -o Dir::Cache="$d" -o Dir::Cache::Archives="$d/archives" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root \
    -o APT::Architecture=amd64 "$@"
}

# Fetches the suite's current amd64 kernel; leaves vmlinuz and the modules
# in $CACHE/kernel.
fetch_kernel() {
  local d="$CACHE/apt"
  mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/empty"
  touch "$d/status"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
    "http://deb.debian.org/debian $SUITE main" >"$d/sources.list"
  log "fetching Debian ${SUITE}'s kernel (private apt configuration in $d)"
  private_apt apt-get -q update >&2
  local image
  image="$(private_apt apt-cache depends linux-image-amd64 \
    | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"
  [[ -n "$image" ]] || die "no linux-image-amd64 in Debian ${SUITE}"
  rm -rf "$d/archives"/*.deb "$CACHE/kernel.tmp"
  (cd "$d/archives" && private_apt apt-get -q download "$image" >&2)
  mkdir -p "$CACHE/kernel.tmp"
  dpkg-deb -x "$d/archives/${image}"_*.deb "$CACHE/kernel.tmp/pkg"
  local release="${image#linux-image-}" m
  local moddir="$CACHE/kernel.tmp/pkg/usr/lib/modules/$release/kernel"
  cp "$CACHE/kernel.tmp/pkg/boot/vmlinuz-$release" "$CACHE/kernel.tmp/vmlinuz"
  mkdir -p "$CACHE/kernel.tmp/modules"
  for m in "${MODULES[@]}"; do
    xz -dc "$moddir/$m.ko.xz" >"$CACHE/kernel.tmp/modules/${m##*/}.ko"
  done
  echo "$release" >"$CACHE/kernel.tmp/release"
  rm -rf "$CACHE/kernel.tmp/pkg" "$d/archives"/*.deb "$d/lists" "$CACHE/kernel"
  mv "$CACHE/kernel.tmp" "$CACHE/kernel"
}

# The guest's /init: mount this machine's / over 9p, chroot, run, power off.
write_init() {
  cat <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
fail() { echo "pku_guest (guest): $*" >/dev/console; poweroff -f; }
for m in netfs 9pnet 9pnet_virtio 9p; do
  insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=mmap \
  hostroot /mnt || fail "cannot mount the host's / over 9p"
mount -t proc proc /mnt/proc
mount -t sysfs sys /mnt/sys
mount -t devtmpfs dev /mnt/dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
mount -t devpts devpts /mnt/dev/pts
mount -t tmpfs shm /mnt/dev/shm
mount -t tmpfs tmp /mnt/tmp
[ -f "/mnt$mpkbox_ctl/run.sh" ] || fail "no command in '$mpkbox_ctl'"
stty -F /dev/console -onlcr 2>/dev/null
chroot /mnt /bin/bash "$mpkbox_ctl/run.sh" </dev/null >/dev/console 2>&1
echo $? >"/mnt$mpkbox_ctl/status"
sync
poweroff -f
INIT
}

build_initramfs() {
  local root="$CACHE/initramfs.tmp"
  rm -rf "$root"
  mkdir -p "$root"/{bin,proc,sys,dev,mnt,lib/modules}
  cp /bin/busybox "$root/bin/busybox"
  cp "$CACHE/kernel/modules/"*.ko "$root/lib/modules/"
  write_init >"$root/init"
  chmod 755 "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) \
    >"$CACHE/initramfs.gz.tmp"
  mv "$CACHE/initramfs.gz.tmp" "$CACHE/initramfs.gz"
  rm -rf "$root"
}

prepare() {
  install_host_packages
  file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' \
    || [[ "$(ldd /bin/busybox 2>&1)" == *"not a dynamic"* ]] \
    || die "/bin/busybox is not static (install busybox-static)"
  mkdir -p "$CACHE"
  [[ -f "$CACHE/kernel/vmlinuz" ]] || fetch_kernel
  # The init script is part of this file: rebuild when it changes.
  local stamp
  stamp="$(sha256sum "${BASH_SOURCE[0]}" /bin/busybox | sha256sum | cut -c1-16)"
  if [[ ! -f "$CACHE/initramfs.gz" \
        || "$(cat "$CACHE/initramfs.stamp" 2>/dev/null)" != "$stamp" ]]; then
    build_initramfs
    echo "$stamp" >"$CACHE/initramfs.stamp"
  fi
}

run() {
  [[ "${1:-}" == "--" ]] && shift
  [[ $# -gt 0 ]] || die "run: no command"
  prepare
  ctl="$(mktemp -d "$CACHE/run.XXXXXX")"
  trap 'rm -rf "$ctl"' EXIT
  {
    echo "cd $(printf '%q' "$PWD") || exit 125"
    local var
    for var in PATH HOME LANG TERM CI CTEST_OUTPUT_ON_FAILURE; do
      [[ -n "${!var:-}" ]] && echo "export $var=$(printf '%q' "${!var}")"
    done
    echo "export MPKBOX_EMULATED_PKU=1"
    printf 'exec'
    printf ' %q' "$@"
    echo
  } >"$ctl/run.sh"
  log "booting Linux $(cat "$CACHE/kernel/release") under QEMU TCG" \
    "(-cpu ${MPKBOX_GUEST_CPU:-max}) to run: $*"
  local rc=0
  timeout --foreground -k 30 "${MPKBOX_GUEST_TIMEOUT:-4800}" \
    qemu-system-x86_64 -nodefaults -no-reboot -display none \
      -machine q35 -accel tcg,thread=single -cpu "${MPKBOX_GUEST_CPU:-max}" \
      -smp 2 -m "${MPKBOX_GUEST_MEM:-6G}" \
      -kernel "$CACHE/kernel/vmlinuz" -initrd "$CACHE/initramfs.gz" \
      -append "console=ttyS0 quiet loglevel=1 panic=-1 transparent_hugepage=madvise mpkbox_ctl=$ctl" \
      -virtfs "local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap,id=hostroot" \
      -chardev stdio,id=console,signal=off -serial chardev:console \
      </dev/null || rc=$?
  if [[ ! -f "$ctl/status" ]]; then
    die "the guest stopped before the command finished (qemu exit ${rc})"
  fi
  rc="$(cat "$ctl/status")"
  log "guest command exited with status ${rc}"
  return "$rc"
}

case "${1:-}" in
  run) shift; run "$@" ;;
  prepare) prepare ;;
  *) sed -n '2,8s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
