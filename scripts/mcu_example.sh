#!/usr/bin/env bash
# The firmware example of examples/mcu (docs/mcu.md), end to end:
#  1. make_model (host) trains and Deep-Compresses LeNet-300-100 on Fashion-MNIST with a fixed
#     seed and writes the generated headers (model file, images, dense int8 weights);
#  2. the firmware source is built for the host (c++ and clang++-14) and run: its output is the
#     reference (both compilers must agree), and a model with one flipped bit must be rejected
#     (exit status 2);
#  3. the firmware programs are cross-built for Cortex-M4F and Cortex-M3 and run under
#     qemu-system-arm (mps2-an386, mps2-an385): exit status 0, and output identical to the
#     host's (lenet_compressed: every line but "device:" ones; lenet_int8_min: the host's
#     kernels::dense_s8 results written by make_model; lenet_mixed, the int8 | fp32 | int8
#     network: predictions and the fp32 logits' bit patterns of the host's
#     mixed_inference_network, mixed_expected.txt — the same source built for the host too);
#  4. size report (text/data/bss split into runtime code, weights and embedded data) and
#     the target: runtime code of lenet_int8_min on Cortex-M4 ≤ 4 KiB of flash.
# Usage: scripts/mcu_example.sh [build-root]   (needs scripts/deps.sh first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu-example}
cxx=${CXX:-c++}
runtime_limit=4096
mkdir -p "$out/gen"

run_qemu() {  # board elf
  timeout 300 qemu-system-arm -M "$1" -display none -monitor none -serial none \
    -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0 -kernel "$2"
}
# same FILE_A FILE_B: equal apart from lines starting with "device:" (target-specific facts).
same() { diff <(grep -v '^device:' "$1") <(grep -v '^device:' "$2"); }

# 1. Generator (host profile, full library).
"$cxx" -std=c++20 -O2 -ffp-contract=off -I"$root/include" -I"$root/examples/mcu" "$root/examples/mcu/make_model.cpp" \
  -o "$out/make_model" -lz 2> "$out/make_model.build.log" || { cat "$out/make_model.build.log"; exit 1; }
"$out/make_model" --out "$out/gen" > "$out/make_model.log" || { cat "$out/make_model.log"; exit 1; }
grep '^make_model:' "$out/make_model.log"

# 2. Host build of the firmware source: the reference output.
"$cxx" -std=c++20 -O2 -ffp-contract=off -I"$root/include" -I"$root/examples/mcu" -I"$out/gen" \
  "$root/examples/mcu/lenet_compressed.cpp" -o "$out/lenet_compressed-host"
"$out/lenet_compressed-host" > "$out/lenet_compressed-host.txt" || {
  cat "$out/lenet_compressed-host.txt"; echo "mcu-example: host build FAILED"; exit 1; }
status=0
# The same reference from clang++ (host code must build with both compilers).
clangxx=${TINYLARGE_CLANGXX:-clang++-14}
if command -v "$clangxx" > /dev/null 2>&1; then
  "$clangxx" -std=c++20 -O2 -ffp-contract=off -I"$root/include" -I"$root/examples/mcu" -I"$out/gen" \
    "$root/examples/mcu/lenet_compressed.cpp" -o "$out/lenet_compressed-host-clang"
  "$out/lenet_compressed-host-clang" > "$out/lenet_compressed-host-clang.txt" || status=1
  if cmp -s "$out/lenet_compressed-host.txt" "$out/lenet_compressed-host-clang.txt"; then
    echo "mcu-example: host reference identical from $cxx and $clangxx"
  else
    echo "mcu-example: host reference differs between $cxx and $clangxx"; status=1
  fi
fi
rc=0
"$out/lenet_compressed-host" --corrupt-byte 100 > "$out/corrupt.txt" || rc=$?
if [[ $rc -eq 2 ]] && grep -q 'CRC-32 mismatch' "$out/corrupt.txt"; then
  echo "mcu-example: a model with one flipped bit is rejected (exit 2, CRC-32 mismatch)"
else
  echo "mcu-example: a corrupted model was NOT rejected (exit $rc)"; cat "$out/corrupt.txt"; status=1
fi
# The mixed-precision firmware source on the host (c++ and clang++): the host class's logits, bit for bit.
for hostcxx in "$cxx" "$clangxx"; do
  command -v "$hostcxx" > /dev/null 2>&1 || continue
  "$hostcxx" -std=c++20 -O2 -ffp-contract=off -I"$root/include" -I"$root/examples/mcu" -I"$out/gen" \
    "$root/examples/mcu/lenet_mixed.cpp" -o "$out/lenet_mixed-host"
  if "$out/lenet_mixed-host" > "$out/lenet_mixed-host.txt" && same "$out/gen/mixed_expected.txt" "$out/lenet_mixed-host.txt"; then
    echo "mcu-example: lenet_mixed source on the host ($hostcxx): predictions and fp32 logit bits identical to mixed_inference_network's"
  else
    echo "mcu-example: lenet_mixed source on the host ($hostcxx) differs from mixed_inference_network"; status=1
  fi
done
# The comparison itself must be able to fail: one logit changed must be noticed.
sed '0,/^image 0: /s/\(^image 0: .* logits\) \(-\?[0-9]*\)/\1 999/' "$out/lenet_compressed-host.txt" > "$out/altered.txt"
if same "$out/lenet_compressed-host.txt" "$out/altered.txt" > /dev/null; then
  echo "mcu-example: the output comparison cannot fail"; status=1
fi

# 3. Cortex-M4F and Cortex-M3 under QEMU.
for target in "cortex-m4 mps2-an386" "cortex-m3 mps2-an385"; do
  set -- $target
  cpu=$1 board=$2 dir=$out/$1
  cmake -S "$root/examples/mcu" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU="$cpu" \
    -DTINYLARGE_MCU_GENERATED="$out/gen" > /dev/null
  cmake --build "$dir" -j2 > "$dir.build.log" 2>&1 || { cat "$dir.build.log"; exit 1; }
  for prog in lenet_compressed lenet_int8_min lenet_mixed; do
    txt=$out/$prog-$cpu.txt
    if run_qemu "$board" "$dir/$prog.elf" > "$txt"; then
      echo "mcu-example: $prog on $cpu ($board): exit 0"
    else
      echo "mcu-example: $prog on $cpu ($board): FAILED"; cat "$txt"; status=1
    fi
    ref=$out/lenet_compressed-host.txt
    [[ $prog == lenet_int8_min ]] && ref=$out/gen/min_expected.txt
    [[ $prog == lenet_mixed ]] && ref=$out/gen/mixed_expected.txt
    what="int8 logits"
    [[ $prog == lenet_mixed ]] && what="fp32 logits (bit patterns)"
    if same "$ref" "$txt" > "$txt.diff"; then
      echo "mcu-example: $prog on $cpu: predictions and $what identical to the host's"
    else
      echo "mcu-example: $prog on $cpu: output differs from the host's:"; cat "$txt.diff"; status=1
    fi
  done
done
grep -E '^(accuracy|fine-tuning: held|RAM|device: (static|stack))' "$out/lenet_compressed-cortex-m4.txt" | sed 's/^/  M4F: /'
grep '^device: stack' "$out/lenet_int8_min-cortex-m4.txt" | sed 's/^/  M4F lenet_int8_min: /'
grep -E '^(correct|device: (RAM|stack))' "$out/lenet_mixed-cortex-m4.txt" | sed 's/^/  M4F lenet_mixed: /'

# 4. Size report: runtime code = vector table + .text (code, constants, strings, libgcc/libc
# pieces) + .data initialisers; weights = .tl_weights; embedded test data = .tl_data.
size_report() {  # elf label
  arm-none-eabi-size -A "$1" | awk -v label="$2" '
    $1 == ".isr_vector" || $1 == ".text" || $1 == ".ARM.exidx" || $1 == ".init_array" { code += $2 }
    $1 == ".data" { data = $2 } $1 == ".bss" { bss = $2 }
    $1 == ".tl_weights" { w = $2 } $1 == ".tl_data" { d = $2 }
    END { printf "size: %-28s runtime code %6d B flash (+ %d B .data init) | weights %7d B | embedded data %6d B | RAM .data+.bss %6d B\n",
                 label, code, data, w, d, data + bss
          print code + data > "/dev/stderr" }'
}
for cpu in cortex-m4 cortex-m3; do
  for prog in lenet_int8_min lenet_compressed lenet_mixed; do
    size_report "$out/$cpu/$prog.elf" "$prog ($cpu)" 2> "$out/$prog-$cpu.runtime"
  done
done
runtime=$(cat "$out/lenet_int8_min-cortex-m4.runtime")
echo "size: largest code symbols of lenet_int8_min (cortex-m4), bytes:"
text_range=$(arm-none-eabi-size -A "$out/cortex-m4/lenet_int8_min.elf" | awk '$1 == ".text" { printf "%d %d", $3, $3 + $2 }')
arm-none-eabi-nm -S -C -t d --size-sort "$out/cortex-m4/lenet_int8_min.elf" | awk -v r="$text_range" '
  BEGIN { split(r, a, " ") }
  $1 + 0 >= a[1] + 0 && $1 + 0 < a[2] + 0 && NF >= 4 { s = $4; for (i = 5; i <= NF; ++i) s = s " " $i; printf "  %5d %s\n", $2 + 0, s }' \
  | sort -rn | head -12
if (( runtime <= runtime_limit )); then
  echo "mcu-example: runtime code of int8 LeNet-300-100 on Cortex-M4: $runtime B <= $runtime_limit B (target met)"
else
  echo "mcu-example: runtime code of int8 LeNet-300-100 on Cortex-M4: $runtime B > $runtime_limit B (target MISSED)"; status=1
fi
exit $status
