#!/usr/bin/env bash
# The serial link of transport/serial.hpp between a Cortex-M4F firmware under QEMU
# (mps2-an386, tests/mcu/serial_device.cpp, CMSDK UART0 as `-serial tcp:`) and a host
# program (tests/transport/serial_host.cpp) that injects byte drops, bit flips and
# garbage in both directions: every round's update must arrive exactly once and equal,
# bit for bit, the same local round computed on the host. The firmware is the FedAvg client
# of scripts/mcu_fleet.sh; its client id (its local data) is its semihosting argument. The host program is built
# with g++ and with clang++ and each runs against the firmware (different fault seeds).
# Reports the firmware's flash / RAM; the link fails if anything uses the heap
# (tests/mcu/mps2.ld).
# Usage: scripts/mcu_serial.sh [build-dir]   (needs scripts/deps.sh first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu-serial}
mkdir -p "$out"

cmake -S "$root/tests/mcu" -B "$out/cortex-m4" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU=cortex-m4 > /dev/null
cmake --build "$out/cortex-m4" --target serial_device -j"${TINYLARGE_JOBS:-1}" > "$out/build.log" 2>&1 \
  || { cat "$out/build.log"; exit 1; }
elf=$out/cortex-m4/serial_device.elf

status=0
run=0
for cxx in g++ "${TINYLARGE_CLANGXX:-clang++-14}"; do
  run=$((run + 1))
  host=$out/serial_host-$run
  "$cxx" -std=c++20 -O2 -ffp-contract=off -Wall -Wextra -Werror -I"$root/include" \
    "$root/tests/transport/serial_host.cpp" -o "$host"
  portfile=$out/port-$run
  rm -f "$portfile"
  # 5 per mille of the bytes damaged each way: a few dozen faults per run.
  timeout 50 "$host" --port-file "$portfile" --rounds 4 --fault-per-mille 5 --seed "$run" --client-id "$run" \
    > "$out/host-$run.txt" 2>&1 &
  host_pid=$!
  for _ in $(seq 100); do [[ -s $portfile ]] && break; sleep 0.1; done
  if [[ ! -s $portfile ]]; then
    echo "mcu-serial: the host program did not listen"; cat "$out/host-$run.txt"; kill "$host_pid" 2>/dev/null || true
    status=1; continue
  fi
  port=$(cat "$portfile")
  qemu_rc=0
  timeout 50 qemu-system-arm -M mps2-an386 -display none -monitor none \
    -serial "tcp:127.0.0.1:$port" -chardev stdio,id=sh0 -semihosting-config "enable=on,target=native,chardev=sh0,arg=serial_device,arg=$run" \
    -kernel "$elf" > "$out/device-$run.txt" 2>&1 || qemu_rc=$?
  host_rc=0
  wait "$host_pid" || host_rc=$?
  echo "---- host ($cxx) ----"; cat "$out/host-$run.txt"
  echo "---- device (Cortex-M4F, QEMU exit $qemu_rc) ----"; cat "$out/device-$run.txt"
  if [[ $host_rc -ne 0 || $qemu_rc -ne 0 ]]; then
    echo "mcu-serial: run $run ($cxx host) FAILED (host exit $host_rc, firmware exit $qemu_rc)"; status=1
  else
    echo "mcu-serial: run $run ($cxx host): PASS"
  fi
done
arm-none-eabi-size "$elf" | sed "s|$out/||"
exit $status
