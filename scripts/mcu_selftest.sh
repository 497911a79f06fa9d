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

# Programs whose output must equal the same source built for the host, and
# programs that only run on the device (they check themselves).
compared="freestanding_selftest precision_selftest"
device_only="compress_selftest model_file_selftest"

for prog in $compared; do
  c++ -std=c++20 -O2 -I"$root/include" "$root/tests/mcu/$prog.cpp" -o "$out/$prog-host"
  "$out/$prog-host" > "$out/$prog-host.txt"
done

status=0
for target in "cortex-m4 mps2-an386" "cortex-m3 mps2-an385"; do
  set -- $target
  cpu=$1 board=$2
  cmake -S "$root/tests/mcu" -B "$out/$cpu" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU="$cpu" > /dev/null
  cmake --build "$out/$cpu" -j2 > "$out/$cpu.build.log" 2>&1 || { cat "$out/$cpu.build.log"; exit 1; }
  for prog in $compared $device_only; do
    elf="$out/$cpu/$prog.elf"
    if run_qemu "$board" "$elf" > "$out/$prog-$cpu.txt"; then
      echo "mcu: $prog on $cpu ($board): exit 0"
    else
      echo "mcu: $prog on $cpu ($board): FAILED"; cat "$out/$prog-$cpu.txt"; status=1
    fi
    case " $compared " in *" $prog "*)
      # Same values as the host, apart from lines naming the back end.
      if diff <(grep -v 'backend:' "$out/$prog-host.txt") <(grep -v 'backend:' "$out/$prog-$cpu.txt") > "$out/$prog-$cpu.diff"; then
        echo "mcu: $prog on $cpu: output identical to the host build"
      else
        echo "mcu: $prog on $cpu: output differs from the host build:"; cat "$out/$prog-$cpu.diff"; status=1
      fi;;
    esac
  done
  arm-none-eabi-size "$out/$cpu"/*.elf | sed "s|$out/||"
done
exit $status
