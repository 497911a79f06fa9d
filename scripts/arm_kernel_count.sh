#!/usr/bin/env bash
# scripts/arm_kernel_count.sh — guest instructions and QEMU time per int8 /
# fp32 dense call on AArch64, scalar vs NEON vs NEON+SDOT (docs/arm-linux.md).
#
#   bash scripts/arm_kernel_count.sh [BUILD_DIR]     (default <repo>/build-arm/count)
#
# Instruction counts: qemu-aarch64 -d in_asm,exec,nochain logs every translated
# block (with its instructions) and every block execution; the count of one
# call is (count with reps = 1) − (count with reps = 0), so start-up and data
# generation cancel. These are exact *guest instruction* counts of this build
# (static, -O2 -march=armv8.2-a+dotprod; note that GCC 12 may auto-vectorise
# the scalar loops at -O2). QEMU time is host wall time of the emulation:
# QEMU is not cycle-accurate, and neither number is a cycle count on a
# Cortex-A core (NEON multiplies, loads and SDOT have very different costs
# there). Needs scripts/deps.sh arm and python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/build-arm/count}
mkdir -p "$DIR"
BIN=$DIR/arm_kernel_count
aarch64-linux-gnu-g++ -std=c++20 -O2 -DNDEBUG -march=armv8.2-a+dotprod -static -I"$ROOT/include" \
  "$ROOT/tests/arm_kernel_count.cpp" -o "$BIN"

count_insns() {  # count_insns ARGS... : guest instructions of one run
  qemu-aarch64 -d in_asm,exec,nochain "$BIN" "$@" 2>&1 >/dev/null | python3 -c '
import re, sys
size, execs, cur, n = {}, {}, None, 0
tb = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
ins = re.compile(r"^0x([0-9a-f]+):\s")
for line in sys.stdin:
    if line.startswith("IN:"):
        cur, n = None, 0
        continue
    m = ins.match(line)
    if m:
        if cur is None:
            cur = int(m.group(1), 16)
        n += 1
        continue
    if cur is not None and not line.strip():
        size[cur], cur, n = n, None, 0
        continue
    t = tb.match(line)
    if t:
        pc = int(t.group(1), 16)
        execs[pc] = execs.get(pc, 0) + 1
if cur is not None:
    size[cur] = n
print(sum(size.get(pc, 0) * c for pc, c in execs.items()))
'
}

qemu_time() {  # qemu_time ARGS... : wall seconds of one run
  local t0 t1
  t0=$(date +%s.%N)
  qemu-aarch64 "$BIN" "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'{$t1 - $t0:.2f}')"
}

printf '%-5s %-14s %-13s %14s %12s %10s\n' kind shape "back end" "insns/call" "insns/MAC" "vs scalar"
for spec in "s8 1 256 784" "s8 16 64 784" "f32 1 256 784" "f32 16 64 784"; do
  read -r kind m n k <<<"$spec"
  macs=$((m * n * k))
  base=""
  for tag in scalar neon neon_dotprod; do
    [[ $kind == f32 && $tag == neon_dotprod ]] && continue
    c1=$(count_insns "$kind" "$tag" "$m" "$n" "$k" 1)
    c0=$(count_insns "$kind" "$tag" "$m" "$n" "$k" 0)
    per=$((c1 - c0))
    [[ -z "$base" ]] && base=$per
    printf '%-5s %-14s %-13s %14d %12s %9sx\n' "$kind" "${m}x${n}x${k}" "$tag" "$per" \
      "$(python3 -c "print(f'{$per / $macs:.3f}')")" "$(python3 -c "print(f'{$base / $per:.1f}')")"
  done
done

echo
echo "QEMU wall time, 64x256x784 int8 dense x 20 calls (256 M MACs):"
for tag in scalar neon neon_dotprod; do
  printf '  %-13s %6s s\n' "$tag" "$(qemu_time s8 "$tag" 64 256 784 20)"
done
