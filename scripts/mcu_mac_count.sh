#!/usr/bin/env bash
# Instructions per int8 MAC on Cortex-M4: the DSP (SMLAD) path against the
# plain path, counted exactly from a QEMU single-step execution trace of
# tests/mcu/mac_count.cpp. QEMU is not cycle-accurate: these are executed
# instructions (including the requantization of each output), not cycles.
# Usage: scripts/mcu_mac_count.sh [build-root]   (after scripts/mcu_selftest.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu}
elf="$out/cortex-m4/mac_count.elf"
[[ -f "$elf" ]] || { echo "mcu_mac_count: $elf missing; run scripts/mcu_selftest.sh first" >&2; exit 1; }
trace="$out/mac_count.trace"
timeout 300 qemu-system-arm -M mps2-an386 -display none -monitor none -serial none \
  -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0 \
  -kernel "$elf" -singlestep -d exec,nochain -D "$trace"
# One trace line per instruction; the last field names the function of the PC.
awk -v macs=16384 '
  { fn = $NF }
  fn == "tl_run_dsp"   { dsp++ }
  fn == "tl_run_plain" { plain++ }
  END {
    if (dsp == 0 || plain == 0) { print "mcu_mac_count: functions not found in trace"; exit 1 }
    printf "cortex-m4 int8 dense 1x256->64: dsp %d instr (%.2f/MAC), plain %d instr (%.2f/MAC), plain/dsp = %.2fx\n",
      dsp, dsp / macs, plain, plain / macs, plain / dsp
  }' "$trace"
rm -f "$trace"
