#!/usr/bin/env bash
# Instructions per int8 MAC of the library's kernels on the shapes of Arm's CMSIS-NN figures
# (tests/mcu/mac_count.cpp): fully connected 1×256→64, convolution 3×3 16→16 on 16×16 (pad 1),
# depthwise 3×3 on 16×16×32 (pad 1) — on Cortex-M4 (mps2-an386: scalar and the DSP/SMLAD path)
# and Cortex-M55 (mps3-an547: scalar, DSP and Helium/MVE). Counted exactly from a QEMU
# single-step trace between marker calls around each kernel call, callees included
# (scripts/mcu_trace_count.sh). QEMU is not cycle-accurate: these are instructions.
#
# CMSIS-NN reference (measured this month with CMSIS-NN built by arm-none-eabi-gcc 12.2 -O2
# under QEMU mps2-an386, quoted in issue 18): arm_fully_connected_s8 2.08, arm_convolve_s8 2.33,
# arm_depthwise_conv_wrapper_s8 8.07 instructions per MAC.
# Checks: the back ends' outputs are identical (the program exits 1 otherwise), the M4 DSP path
# needs at most CMSIS-NN's instructions per MAC on the fully connected layer and the conv, and the
# M55 Helium path at least 2× fewer than the M4 DSP path on the conv and on the depthwise conv.
# Usage: scripts/mcu_mac_count.sh [build-root]   (after scripts/mcu_selftest.sh for cortex-m4)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu}
status=0
for target in "cortex-m4 mps2-an386" "cortex-m55 mps3-an547"; do
  set -- $target
  cpu=$1 board=$2
  if [[ ! -f "$out/$cpu/CMakeCache.txt" ]]; then
    cmake -S "$root/tests/mcu" -B "$out/$cpu" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU="$cpu" > /dev/null
  fi
  cmake --build "$out/$cpu" -j2 --target mac_count > "$out/$cpu.mac_count.build.log" 2>&1 || { cat "$out/$cpu.mac_count.build.log"; exit 1; }
  if ! "$root/scripts/mcu_trace_count.sh" "$board" "$out/$cpu/mac_count.elf" "$out/mac_count-$cpu.txt" > "$out/mac_count-$cpu.counts"; then
    echo "mcu_mac_count: $cpu: FAILED"; cat "$out/mac_count-$cpu.txt"; status=1; continue
  fi
  grep -q 'outputs identical on every back end' "$out/mac_count-$cpu.txt" || { cat "$out/mac_count-$cpu.txt"; status=1; }
  # "mac_count: backend B fc N conv N depthwise N" lines, in the order of the regions (3 per back end).
  awk -v cpu="$cpu" '
    FNR == NR { if ($1 == "region") count[$2] = $3; next }
    $2 == "backend" { b = nb++; name[b] = $3; macs[0] = $5; macs[1] = $7; macs[2] = $9
      for (k = 0; k < 3; ++k) ipm[b, k] = count[3 * b + k] / macs[k] }
    END {
      split("2.08 2.33 8.07", cmsis, " "); split("fully connected 1x256->64|conv 3x3 16->16 16x16 pad 1|depthwise 3x3 16x16x32 pad 1", shape, "|")
      for (k = 0; k < 3; ++k) {
        line = sprintf("%s %-30s", cpu, shape[k + 1])
        for (b = 0; b < nb; ++b) line = line sprintf(" | %s %5.2f", name[b], ipm[b, k])
        printf "%s | CMSIS-NN (M4) %s instr/MAC\n", line, cmsis[k + 1]
        if (k >= 1 && (name[nb - 1] == "cortex_m_mve" || name[nb - 1] == "cortex_m_dsp"))
          printf "RATIO %s %.4f\n", (k == 1 ? "conv" : "depthwise"), ipm[nb - 1, k] > "/dev/stderr"
        if (name[nb - 1] == "cortex_m_dsp" && k < 2) printf "CMSIS %d %.4f %s\n", k, ipm[nb - 1, k], cmsis[k + 1] > "/dev/stderr"
      }
    }' "$out/mac_count-$cpu.counts" "$out/mac_count-$cpu.txt" 2> "$out/mac_count-$cpu.conv"
done
# The M4 DSP path at or below CMSIS-NN's instructions per MAC on the fully connected layer and the conv.
while read -r _ k ours theirs; do
  what=$([[ $k == 0 ]] && echo "fully connected" || echo conv)
  if awk -v a="$ours" -v b="$theirs" 'BEGIN { exit !(a <= b) }'; then
    echo "mcu_mac_count: $what on M4: $ours instr/MAC, CMSIS-NN $theirs (at or below: met)"
  else
    echo "mcu_mac_count: $what on M4: $ours instr/MAC, CMSIS-NN $theirs: ABOVE CMSIS-NN"; status=1
  fi
done < <(grep '^CMSIS ' "$out/mac_count-cortex-m4.conv" 2>/dev/null || true)
for what in conv depthwise; do
  m4=$(sed -n "s/^RATIO $what //p" "$out/mac_count-cortex-m4.conv" 2>/dev/null || true)
  m55=$(sed -n "s/^RATIO $what //p" "$out/mac_count-cortex-m55.conv" 2>/dev/null || true)
  if [[ -n "$m4" && -n "$m55" ]]; then
    if awk -v a="$m4" -v b="$m55" 'BEGIN { exit !(a >= 2 * b) }'; then
      echo "mcu_mac_count: $what: M55 Helium $m55 vs M4 DSP $m4 instr/MAC: $(awk -v a="$m4" -v b="$m55" 'BEGIN { printf "%.2f", a / b }')x fewer (target >= 2x met)"
    else
      echo "mcu_mac_count: $what: M55 Helium $m55 vs M4 DSP $m4 instr/MAC: target >= 2x MISSED"; status=1
    fi
  else
    status=1
  fi
done
exit $status
