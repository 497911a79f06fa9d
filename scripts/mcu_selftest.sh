#!/usr/bin/env bash
# Builds the freestanding self-test for Cortex-M4F (mps2-an386) and Cortex-M3
# (mps2-an385) with arm-none-eabi-g++, runs both under qemu-system-arm, checks
# their exit status, and compares their output with the same program built for
# the host. The link fails if anything references the heap (tests/mcu/mps2.ld).
# Usage: scripts/mcu_selftest.sh [build-root]   (needs scripts/deps.sh first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu}
mkdir -p "$out"

run_qemu() {  # board elf
  timeout 120 qemu-system-arm -M "$1" -display none -monitor none -serial none \
    -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0 -kernel "$2"
}

# Host build of the same source: the reference output.
c++ -std=c++20 -O2 -I"$root/include" "$root/tests/mcu/freestanding_selftest.cpp" -o "$out/selftest-host"
"$out/selftest-host" > "$out/selftest-host.txt"

status=0
for target in "cortex-m4 mps2-an386" "cortex-m3 mps2-an385"; do
  set -- $target
  cpu=$1 board=$2
  cmake -S "$root/tests/mcu" -B "$out/$cpu" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU="$cpu" > /dev/null
  cmake --build "$out/$cpu" -j2 > "$out/$cpu.build.log" 2>&1 || { cat "$out/$cpu.build.log"; exit 1; }
  elf="$out/$cpu/freestanding_selftest.elf"
  if run_qemu "$board" "$elf" > "$out/selftest-$cpu.txt"; then
    echo "mcu: $cpu on $board: exit 0"
  else
    echo "mcu: $cpu on $board: FAILED"; cat "$out/selftest-$cpu.txt"; status=1
  fi
  # Same values as the host, apart from the line naming the back end.
  if diff <(grep -v 'backend:' "$out/selftest-host.txt") <(grep -v 'backend:' "$out/selftest-$cpu.txt") > "$out/$cpu.diff"; then
    echo "mcu: $cpu output identical to host ($(grep 'backend:' "$out/selftest-$cpu.txt"))"
  else
    echo "mcu: $cpu output differs from host:"; cat "$out/$cpu.diff"; status=1
  fi
  arm-none-eabi-size "$elf" | sed "s|$out/||"
done
exit $status
