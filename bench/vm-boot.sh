#!/usr/bin/env bash
# VM boot benchmark (qemu backend, TCG on this host):
#   1. `monocore run IMAGE -- /bin/true` vs a bare hand-written qemu-system-x86_64 command booting
#      the same kernel, initramfs and rootfs (same guest init, spec fed through a FIFO), alternating,
#      N rounds each; medians and ratio.
#   2. where the boot time goes (engine timestamps + guest uptime stamps), medians of N boots.
#   3. supervising-process memory per running VM (RSS with M VMs vs 0).
#   4. hang rate: H sequential boots with a watchdog.
# Usage: bash bench/vm-boot.sh [N=10] [M=4] [H=30]     (needs scripts/test-services.sh start for the image)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10}"; M="${2:-4}"; H="${3:-30}"
# shellcheck disable=SC1091
. .monocore-test/env.sh
export MONOCORE_HOME="$PWD/bench/out/vm-home"
export MONOCORE_KERNEL_DIR="${MONOCORE_KERNEL_DIR:-$(bash scripts/guest-kernel.sh | tail -n1)}"
IMAGE="${MONOCORE_BENCH_IMAGE:-$MONOCORE_TEST_IMAGE}"
MC="node apps/cli/dist/main.js"
mkdir -p bench/out
$MC run -q "$IMAGE" -- /bin/true   # warm: pull + initramfs build
ROOTFS="$($MC pull -q --json "$IMAGE" | jq -r .rootfs)"
BLOCK="$(dirname "$ROOTFS")/block-erofs-1/rootfs.erofs"   # the image's root device (docs/OCI.md "Block images")
INITRD="$(ls -t "$MONOCORE_HOME"/kernel/initramfs-*.cpio | head -n1)"
KHZ="$(awk -F: '/cpu MHz/{printf "%d", $2*1000; exit}' /proc/cpuinfo)"
W="$(mktemp -d /tmp/vmbench.XXXXXX)"; trap 'rm -rf "$W"' EXIT
truncate -s 4G "$W/upper.ext4" && mkfs.ext4 -q -F -m 0 "$W/upper.ext4"
body="$(printf 'arg=/bin/true\0env=PATH=/bin\0workdir=/\0hostname=bare\0disk=1\0image=erofs\0' | base64 -w0)"
len="$(printf '%s' "$body" | base64 -d | wc -c)"
bare() {
  rm -f "$W/ctl.in" "$W/ctl.out"; mkfifo "$W/ctl.in" "$W/ctl.out"
  cat "$W/ctl.out" > /dev/null &
  { printf 'MCSPEC1 %s\n' "$len"; printf '%s' "$body" | base64 -d; } > "$W/ctl.in" &
  qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on,isa-serial=on -accel tcg,thread=single -cpu max \
    -m 256 -smp 1 -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -serial "file:$W/console.log" -kernel "$MONOCORE_KERNEL_DIR/vmlinux" -initrd "$INITRD" \
    -append "console=ttyS0 panic=-1 reboot=t quiet no_timer_check tsc_early_khz=$KHZ rdinit=/init" \
    -drive "file=$BLOCK,format=raw,if=none,id=image,read-only=on" -device virtio-blk-device,drive=image,serial=image \
    -device virtio-serial-device,max_ports=4 \
    -chardev "pipe,id=ctl,path=$W/ctl" -device virtserialport,chardev=ctl,name=monocore.control \
    -chardev null,id=out -device virtserialport,chardev=out,name=monocore.stdout \
    -chardev null,id=err -device virtserialport,chardev=err,name=monocore.stderr \
    -drive "file=$W/upper.ext4,format=raw,if=none,id=upper" -device virtio-blk-device,drive=upper,serial=upper
  wait
}
ms() { date +%s%3N; }
: > "$W/run.txt"; : > "$W/bare.txt"
for i in $(seq 1 "$N"); do
  t0=$(ms); $MC run -q "$IMAGE" -- /bin/true; t1=$(ms); echo $((t1 - t0)) >> "$W/run.txt"
  t0=$(ms); bare; t1=$(ms); echo $((t1 - t0)) >> "$W/bare.txt"
done
med() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
RUN="$(med "$W/run.txt")"; BARE="$(med "$W/bare.txt")"
echo "monocore run /bin/true: median ${RUN} ms (all: $(tr '\n' ' ' < "$W/run.txt"))"
echo "bare qemu:              median ${BARE} ms (all: $(tr '\n' ' ' < "$W/bare.txt"))"
echo "ratio: $(awk -v a="$RUN" -v b="$BARE" 'BEGIN{printf "%.3f", a/b}')"
: > "$W/cli.txt"
for i in $(seq 1 "$N"); do t0=$(ms); $MC --version > /dev/null; t1=$(ms); echo $((t1 - t0)) >> "$W/cli.txt"; done
echo "CLI start-up alone (monocore --version): median $(med "$W/cli.txt") ms"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "breakdown (medians of $N): $(node bench/vm-boot.mjs breakdown "$N" "$ROOTFS")"
echo "memory: $(node --expose-gc bench/vm-boot.mjs memory "$M" "$ROOTFS")"
echo "hang rate: $(node bench/vm-boot.mjs hang "$H" "$ROOTFS")"
