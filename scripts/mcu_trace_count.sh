#!/usr/bin/env bash
# Exact instruction counts between marker calls, from a QEMU single-step execution trace.
#
# A program marks regions by calling the noinline extern "C" function
# `tl_layer_boundary(id, begin)` before and after each region (tests/mcu/mac_count.cpp,
# examples/mcu/cnn_int8.cpp with TL_PROFILE). Every instruction executed between a "begin"
# call and the next "end" call — the region's code and all it calls, inlined or not, plus the
# 2–4 instructions of the call sequence — is counted; instructions of the marker function
# itself are not. The trace goes through a FIFO to awk, so nothing large touches the disk.
# QEMU is not cycle-accurate: these are executed instructions, not cycles.
#
# Usage: scripts/mcu_trace_count.sh BOARD ELF PROGRAM_OUTPUT
#   prints one line per region: "region <n> <instructions>" (n = 0, 1, … in execution order);
#   the program's own output (semihosting) goes to PROGRAM_OUTPUT; exit status = QEMU's.
set -euo pipefail
board=$1 elf=$2 prog_out=$3
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tl-trace.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/trace"
awk '
  { fn = $NF }
  fn == "tl_layer_boundary" {
    if (!inside) {
      inside = 1; ++calls
      if (calls % 2 == 1) { counting = 1; n = 0 } else { counting = 0; printf "region %d %d\n", calls / 2 - 1, n }
    }
    next
  }
  { inside = 0; if (counting) ++n }
  END { if (calls == 0) { print "mcu_trace_count: no tl_layer_boundary calls in the trace" > "/dev/stderr"; exit 1 } }
' "$tmp/trace" > "$tmp/counts" &
awk_pid=$!
rc=0
timeout 900 qemu-system-arm -M "$board" -display none -monitor none -serial none \
  -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0 \
  -kernel "$elf" -singlestep -d exec,nochain -D "$tmp/trace" > "$prog_out" || rc=$?
wait "$awk_pid" || rc=1
cat "$tmp/counts"
exit $rc
