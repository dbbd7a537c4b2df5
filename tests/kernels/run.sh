#!/bin/bash
# tests/kernels/run.sh - run faultline's tests on stock Debian kernels under QEMU.
#
# Usage: tests/kernels/run.sh [KERNEL...]
#   KERNEL: a package name (linux-image-6.1.0-56-amd64-unsigned), a glob over
#   package names ('linux-image-6.12.*+bpo-amd64-unsigned'), or an alias:
#   6.1 (newest linux-image-6.1.0-N-amd64-unsigned) or 6.12 (newest 6.12
#   backport, +bpo or +deb12). Default: 6.1 6.12.
#
# Builds the tests statically in build-kernels/, boots each kernel once (TCG,
# only the package's /boot is unpacked, nothing is installed as the host's
# kernel) with a busybox initramfs holding every selected test, runs them as
# root one after another, and prints per kernel
#   kernel <version>: N passed, N failed, N skipped
# Exit 0 only if every kernel ran at least one test and none failed.
# See tests/kernels/README.md for the environment variables.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${FL_KERNEL_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/faultline-kernels}
BUILD=${FL_KERNEL_BUILDDIR:-$ROOT/build-kernels}
MEM=${FL_KERNEL_MEM:-2048}
SMP=${FL_KERNEL_SMP:-2}
ACCEL=${FL_KERNEL_ACCEL:-auto}
PY=(python3 "$HERE/flkernels.py")

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

[ $# -gt 0 ] || set -- 6.1 6.12
t_start=$(date +%s)

# ------------------------------------------------------------ host packages
# qemu, a static busybox for the guest, cpio; gcc for the probe; meson and
# ninja if the project builds with meson. apt-get update only when needed.
apt_updated=0
apt_update() {
  [ $apt_updated = 1 ] && return 0
  log "apt-get update"
  apt-get update -qq >&2
  apt_updated=1
}
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v readelf >/dev/null || need+=(binutils)
command -v xz >/dev/null || need+=(xz-utils)     # to unpack kernels once
command -v zstd >/dev/null || need+=(zstd)
command -v python3 >/dev/null || need+=(python3)
if [ -f "$ROOT/meson.build" ]; then
  command -v meson >/dev/null || need+=(meson)
  command -v ninja >/dev/null || need+=(ninja-build)
fi
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]} (run as root or install them)"
  apt_update
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
# apt-cache needs package lists to resolve kernels
ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt_update

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fl-kernels.XXXXXX")
if [ -z "${FL_KERNEL_KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else log "work dir kept: $WORK"; fi
mkdir -p "$CACHE"

# ------------------------------------------------------------ build
# The probe is the runner's own: it shows the guest works and records each
# kernel's userfaultfd features.
gcc -O2 -Wall -static -pthread -o "$WORK/uffd-probe" "$HERE/selftest/uffd-probe.c"

builddir_arg=()
if [ -f "$ROOT/meson.build" ]; then
  if [ ! -f "$BUILD/build.ninja" ]; then
    rm -rf "$BUILD"
    # Debian ships no static libmemcached, and no guest test uses the
    # memcached store: its stub is built instead
    opts=(--buildtype=debugoptimized -Ddefault_library=static -Dprefer_static=true
          -Dmemcached=disabled)
    log "meson setup $BUILD (static)"
    if ! meson setup "$BUILD" "$ROOT" "${opts[@]}" -Dstatic_tests=true >"$WORK/setup.log" 2>&1; then
      if grep -q 'static_tests' "$WORK/setup.log"; then
        # option not wired yet: build dynamically linked tests; their shared
        # libraries are copied into the initramfs instead
        log "warning: meson option static_tests missing; tests will be linked dynamically"
        rm -rf "$BUILD"
        meson setup "$BUILD" "$ROOT" "${opts[@]}" >"$WORK/setup.log" 2>&1 \
          || { cat "$WORK/setup.log" >&2; die "meson setup failed"; }
      else
        cat "$WORK/setup.log" >&2; die "meson setup failed"
      fi
    fi
  fi
  # a build dir made before an option existed (or by hand) is switched
  # over; regenerated first, or meson configure refuses an option the
  # build dir does not know yet
  ninja -C "$BUILD" build.ninja >"$WORK/regen.log" 2>&1 \
    || { cat "$WORK/regen.log" >&2; die "meson regeneration failed"; }
  st=$(meson introspect --buildoptions "$BUILD" 2>/dev/null | python3 -c \
    'import json,sys; o = {o["name"]: o["value"] for o in json.load(sys.stdin)}; print(o.get("static_tests", "missing"), o.get("memcached", "missing"))' || true)
  if [ "${st% *}" != True ]; then
    meson configure "$BUILD" -Dstatic_tests=true >/dev/null 2>&1 || true
  fi
  if [ "${st#* }" = enabled ] || [ "${st#* }" = auto ]; then
    meson configure "$BUILD" -Dmemcached=disabled >/dev/null 2>&1 || true
  fi
  # regenerate if meson.build changed since, so introspection sees new tests
  ninja -C "$BUILD" build.ninja >"$WORK/regen.log" 2>&1 \
    || { cat "$WORK/regen.log" >&2; die "meson regeneration failed"; }
  builddir_arg=(--builddir "$BUILD")
else
  log "no meson.build yet: running only the selftest (uffd-probe)"
fi
probe_arg=(--probe "$WORK/uffd-probe")
[ "${FL_KERNEL_PROBE:-1}" = 0 ] && probe_arg=()
"${PY[@]}" select "${builddir_arg[@]}" "${probe_arg[@]}" --plan "$WORK/plan.json" >"$WORK/targets"
if [ -s "$WORK/targets" ]; then
  log "building $(wc -l <"$WORK/targets") target(s) in $BUILD"
  mapfile -t targets <"$WORK/targets"
  ninja -C "$BUILD" "${targets[@]}" >"$WORK/build.log" 2>&1 \
    || { tail -n 60 "$WORK/build.log" >&2; die "build failed (full log: keep with FL_KERNEL_KEEP=1)"; }
fi
ntests=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/plan.json")
[ "$ntests" -gt 0 ] || die "nothing to run"

# ------------------------------------------------------------ initramfs
# One image for all kernels: no modules are needed (userfaultfd is built in).
nonce=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
stage=$WORK/stage
mkdir -p "$stage/bin"
busybox=$(command -v busybox || echo /bin/busybox)
readelf -lW "$busybox" | grep -q 'program interpreter' && die "$busybox is not static (install busybox-static)"
cp "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
"${PY[@]}" stage --plan "$WORK/plan.json" --stage "$stage" --nonce "$nonce"
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$WORK/initrd.cpio"
log "initramfs: $ntests test(s), $(( $(stat -c %s "$WORK/initrd.cpio") / 1024 )) KiB"

# ------------------------------------------------------------ kernels
# Resolve KERNEL to one package name with a candidate version (newest wins).
resolve() {
  local spec=$1 re names=() cands=() best="" bestv="" n v
  case $spec in
    6.1)  re='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
    6.12) re='^linux-image-6\.12\.[0-9]+\+(bpo|deb12)-amd64-unsigned$' ;;
    *)    re= ;;
  esac
  mapfile -t names < <(apt-cache pkgnames linux-image- | while read -r n; do
    if [ -n "$re" ]; then [[ $n =~ $re ]] && echo "$n"
    else [[ $n == $spec ]] && echo "$n"; fi
  done)
  [ ${#names[@]} -gt 0 ] || return 1
  while read -r n v; do
    [ "$v" = "(none)" ] && continue
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$bestv"; then best=$n bestv=$v; fi
  done < <(apt-cache policy "${names[@]}" | awk '/^[^ ]/{sub(":$","",$1); p=$1} /Candidate:/{print p, $2}')
  [ -n "$best" ] || return 1
  echo "$best $bestv"
}

# Download the package once and unpack only its /boot into the cache.
fetch() {
  local pkg=$1 ver=$2 dir=$CACHE/${1}_${2}
  if ! ls "$dir"/boot/vmlinuz-* >/dev/null 2>&1; then
    log "downloading $pkg $ver (only /boot is unpacked)"
    rm -rf "$dir" "$dir.dl"; mkdir -p "$dir.dl" "$dir.tmp"
    (cd "$dir.dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2)
    dpkg-deb --fsys-tarfile "$dir.dl"/*.deb | tar -x -C "$dir.tmp" --wildcards './boot/*'
    rm -rf "$dir.dl"; mv "$dir.tmp" "$dir"
  fi
  [ -e "$dir/vmlinux" ] || [ -e "$dir/no-vmlinux" ] || extract_vmlinux "$dir"
  echo "$dir"
}

# Under TCG, unpacking the compressed kernel costs seconds (~8 s for 6.1's
# xz). Decompress it once into the cache and boot the ELF through its PVH
# entry point instead; fall back to vmlinuz if that is not possible.
extract_vmlinux() {
  local dir=$1 z off magic tool
  z=$(ls "$dir"/boot/vmlinuz-* | head -1)
  grep -q '^CONFIG_PVH=y' "$dir"/boot/config-* || { touch "$dir/no-vmlinux"; return 0; }
  for magic in xz:'\xfd7zXZ' zstd:'\x28\xb5\x2f\xfd' gzip:'\x1f\x8b\x08'; do
    tool=${magic%%:*}
    command -v "$tool" >/dev/null || continue
    off=$(LC_ALL=C grep -abo "$(printf "${magic#*:}")" "$z" | head -1 | cut -d: -f1)
    [ -n "$off" ] || continue
    tail -c +$((off + 1)) "$z" | "$tool" -dcq >"$dir/vmlinux.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$dir/vmlinux.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] &&
       readelf -n "$dir/vmlinux.tmp" 2>/dev/null | grep -q 'Xen.*0x00000012'; then
      mv "$dir/vmlinux.tmp" "$dir/vmlinux"; return 0
    fi
  done
  rm -f "$dir/vmlinux.tmp"; touch "$dir/no-vmlinux"
}

if [ "$ACCEL" = auto ]; then
  ACCEL=tcg
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then ACCEL=kvm; fi
fi
if [ "$ACCEL" = kvm ]; then accel=(-accel kvm -cpu host); else accel=(-accel "${FL_KERNEL_TCG:-tcg}" -cpu "${FL_KERNEL_CPU:-max}"); fi
# Under TCG an idle vCPU is slow to wake, and every fault hand-off between the
# faulting thread and a handler thread on the other vCPU pays that: idle=poll
# took a uffd fault round trip from ~1.4 ms to ~0.22 ms (host: ~0.024 ms).
idle=; [ "$ACCEL" = tcg ] && idle=idle=poll
total_timeout=$(python3 -c 'import json,sys; print(180 + sum(t["timeout"] + 10 for t in json.load(open(sys.argv[1]))))' "$WORK/plan.json")

status=0
tp=0 tf=0 ts=0
for spec in "$@"; do
  k_start=$(date +%s)
  if ! r=$(resolve "$spec"); then
    [ $apt_updated = 1 ] || { apt_update; r=$(resolve "$spec") || r=; }
  fi
  if [ -z "${r:-}" ]; then
    log "no installable kernel package matches '$spec'"
    echo "kernel $spec: 0 passed, $ntests failed, 0 skipped"
    status=1 tf=$((tf + ntests)); continue
  fi
  read -r pkg ver <<<"$r"
  if ! kdir=$(fetch "$pkg" "$ver"); then
    log "could not fetch $pkg $ver"
    echo "kernel $spec: 0 passed, $ntests failed, 0 skipped"
    status=1 tf=$((tf + ntests)); continue
  fi
  vmlinuz=$(ls "$kdir"/boot/vmlinuz-* | head -1)
  kver=${vmlinuz##*/vmlinuz-}
  kimage=$vmlinuz
  [ "${FL_KERNEL_PVH:-1}" = 1 ] && [ -e "$kdir/vmlinux" ] && kimage=$kdir/vmlinux
  if ! grep -q '^CONFIG_USERFAULTFD=y' "$kdir"/boot/config-*; then
    log "$pkg: CONFIG_USERFAULTFD is not built in"
  fi
  log "booting $kver ($pkg $ver, ${kimage##*/}), $ntests test(s), accel=$ACCEL -m $MEM -smp $SMP"
  set +e
  "${PY[@]}" collect --plan "$WORK/plan.json" --nonce "$nonce" --label "$kver" \
    --log "$WORK/serial-$kver.log" --fallback-version "$kver" --total-timeout "$total_timeout" -- \
    qemu-system-x86_64 "${accel[@]}" -m "$MEM" -smp "$SMP" \
      -nodefaults -no-user-config -display none -no-reboot -monitor none -serial stdio \
      -kernel "$kimage" -initrd "$WORK/initrd.cpio" \
      -append "console=ttyS0 panic=-1 quiet loglevel=3 mitigations=off $idle ${FL_KERNEL_CMDLINE:-}"
  rc=$?
  set -e
  if [ -f "$WORK/serial-$kver.log.counts" ]; then
    read -r p f s _ <"$WORK/serial-$kver.log.counts"
    tp=$((tp + p)) tf=$((tf + f)) ts=$((ts + s))
  fi
  mkdir -p "$CACHE/logs"; cp "$WORK/serial-$kver.log" "$CACHE/logs/" 2>/dev/null || true
  log "$kver: $(( $(date +%s) - k_start )) s wall (serial log: $CACHE/logs/serial-$kver.log)"
  [ $rc = 0 ] || status=1
done
log "all kernels: $tp passed, $tf failed, $ts skipped in $(( $(date +%s) - t_start )) s"
exit $status
