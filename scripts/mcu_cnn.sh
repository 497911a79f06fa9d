#!/usr/bin/env bash
# The convolutional firmware examples (docs/mcu.md), end to end:
#  1. make_cnn (host) trains the LeNet-5-like CNN on Fashion-MNIST, and the DS-CNN and the
#     residual CNN resnet_kws (two residual blocks, int8 adds: an add record per block, model
#     file 1.4) on synthetic spectrograms (seeded), quantizes them to int8 and writes their model
#     files, test inputs and the host's logits as C headers; it checks on the host that the bound
#     (flash) network equals the owning one and the scalar back end, and that files of another
#     shape or with a flipped bit are rejected;
#  2. the firmware source cnn_int8.cpp is built for the host with c++ and clang++-14 for each
#     model: its output is the reference and the two compilers must agree;
#  3. the firmware is cross-built for Cortex-M3 (mps2-an385), Cortex-M4F (mps2-an386) and
#     Cortex-M55 with Helium (mps3-an547) and run under QEMU: exit status 0 (the firmware also
#     compares its logits with the host's and rejects a model file of another shape) and output
#     identical to the host's, apart from lines starting with "device:";
#  4. the minimal firmware cnn_compiled.cpp (the same network, parameters compiled in as const
#     arrays instead of a model file) on the three cores: exit 0, logits equal to the host's;
#  5. size report (runtime code vs weights) and the target: runtime code of the LeNet-5 CNN on
#     Cortex-M4F ≤ 8 KiB of flash (cnn_lenet5_compiled; the model-file firmware adds the
#     validating reader and its messages, reported too).
# The pruned LeNet-5 (make_cnn --lenet5-sparsity, here per weighted layer 0,0.6,0.7,0.6,0.3:
# the first conv kept dense, the 400→120 layer pruned most; TL_LENET5_SPARSITY) runs as
# a further program, lenet5_sparse: cnn_int8.cpp with TL_SPARSE (int8 CSR records run compressed
# by a sparse_flash_storage network), through steps 2, 3 and 5 like the others; so does the
# weight-shared LeNet-5 (make_cnn --lenet5-clusters, here 16 int8 values per weighted layer, 4-bit
# indices; TL_LENET5_CLUSTERS), lenet5_shared: cnn_int8.cpp with TL_SHARED (int8 codebook records),
# and the same weights with Huffman-coded indices, lenet5_huffman: cnn_int8.cpp with TL_HUFFMAN
# (int8 Huffman codebook records, decoded one output channel at a time). The residual CNN is
# compressed the same three ways (make_cnn --resnet-sparsity, here 0,0.6,0,0,0,0.6 per
# weighted layer, TL_RESNET_SPARSITY; --resnet-clusters 16, TL_RESNET_CLUSTERS): the programs
# resnet_kws_sparse / _shared / _huffman run compressed records inside the residual blocks,
# between the add records.
# The residual CNN runs like LeNet-5 and the DS-CNN: cnn_resnet_kws binds its model file (8 952 B,
# an add record per block) in place, cnn_resnet_kws_compiled has the same parameters compiled in
# (7 136 B of const arrays). Measured 2026-12-07, runtime code without weights / stack high-water:
# model file M3 39 248 / 2 368 B, M4F 40 004 / 2 312 B, M55 41 040 / 2 416 B; compiled in
# M3 7 332 / 712 B, M4F 8 320 / 784 B, M55 9 096 / 688 B (docs/mcu.md, "Residual blocks in int8").
# Usage: scripts/mcu_cnn.sh [build-root]   (needs scripts/deps.sh build data mcu)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu-cnn}
cxx=${CXX:-c++}
clangxx=${TINYLARGE_CLANGXX:-clang++-14}
runtime_limit=8192
models="lenet5 ds_cnn resnet_kws"
compressed="lenet5_sparse lenet5_shared lenet5_huffman resnet_kws_sparse resnet_kws_shared resnet_kws_huffman"
programs="$models $compressed"  # cnn_int8.cpp builds: the models, then the compressed LeNet-5s and resnet_kws
defs_of() {  # the model and the storage of program $1 (<model>[_sparse|_shared|_huffman])
  case $1 in
    *_sparse) echo "-DTL_MODEL=${1%_sparse} -DTL_SPARSE=1" ;;
    *_shared) echo "-DTL_MODEL=${1%_shared} -DTL_SHARED=1" ;;
    *_huffman) echo "-DTL_MODEL=${1%_huffman} -DTL_HUFFMAN=1" ;;
    *) echo "-DTL_MODEL=$1" ;;
  esac
}
mkdir -p "$out/gen"

run_qemu() {  # board elf
  timeout 300 qemu-system-arm -M "$1" -display none -monitor none -serial none \
    -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0 -kernel "$2"
}
same() { diff <(grep -v '^device:' "$1") <(grep -v '^device:' "$2"); }

# 1. Generator (host profile).
"$cxx" -std=c++20 -O2 -I"$root/include" -I"$root/examples/mcu" "$root/examples/mcu/make_cnn.cpp" \
  -o "$out/make_cnn" -lz 2> "$out/make_cnn.build.log" || { cat "$out/make_cnn.build.log"; exit 1; }
"$out/make_cnn" --out "$out/gen" --lenet5-sparsity "${TL_LENET5_SPARSITY:-0,0.6,0.7,0.6,0.3}" \
  --lenet5-clusters "${TL_LENET5_CLUSTERS:-16}" --resnet-sparsity "${TL_RESNET_SPARSITY:-0,0.6,0,0,0,0.6}" \
  --resnet-clusters "${TL_RESNET_CLUSTERS:-16}" > "$out/make_cnn.log" 2>&1 || { cat "$out/make_cnn.log"; exit 1; }
grep '^make_cnn:' "$out/make_cnn.log"

# 2. Host reference, from both compilers.
status=0
# host_reference PROGRAM SOURCE DEFINES: SOURCE built for the host by both compilers and run;
# its output cnn_PROGRAM-host.txt is the reference, and the two compilers must agree.
host_reference() {
  local m=$1 src=$2 defs=$3 compiler tag
  for compiler in "$cxx" "$clangxx"; do
    command -v "$compiler" > /dev/null 2>&1 || continue
    tag=$(basename "$compiler")
    "$compiler" -std=c++20 -O2 -ffp-contract=off -Wall -Wextra -I"$root/include" -I"$root/examples/mcu" -I"$out/gen" \
      $defs "$root/examples/mcu/$src" -o "$out/cnn_$m-host-$tag"
    "$out/cnn_$m-host-$tag" > "$out/cnn_$m-host-$tag.txt" || { echo "mcu-cnn: $m host build ($tag) FAILED"; status=1; }
  done
  cp "$out/cnn_$m-host-$(basename "$cxx").txt" "$out/cnn_$m-host.txt"
  if command -v "$clangxx" > /dev/null 2>&1; then
    if same "$out/cnn_$m-host.txt" "$out/cnn_$m-host-$(basename "$clangxx").txt" > /dev/null; then
      echo "mcu-cnn: $m: host reference identical from $cxx and $clangxx"
    else
      echo "mcu-cnn: $m: host reference differs between $cxx and $clangxx"; status=1
    fi
  fi
}
for m in $programs; do
  host_reference "$m" cnn_int8.cpp "$(defs_of "$m") -DTL_MODEL_HEADER=${m}_model.h -DTL_DATA_HEADER=${m}_data.h"
done
# The comparison must be able to fail: one logit changed is noticed.
sed '0,/^input 0: /s/\(^input 0: class [0-9]*, logits\) \(-\?[0-9]*\)/\1 999/' "$out/cnn_lenet5-host.txt" > "$out/altered.txt"
if same "$out/cnn_lenet5-host.txt" "$out/altered.txt" > /dev/null; then
  echo "mcu-cnn: the output comparison cannot fail"; status=1
fi

# 3. Cortex-M3, M4F, M55 under QEMU.
for target in "cortex-m3 mps2-an385" "cortex-m4 mps2-an386" "cortex-m55 mps3-an547"; do
  set -- $target
  cpu=$1 board=$2 dir=$out/$1
  cmake -S "$root/examples/mcu" -B "$dir" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU="$cpu" \
    -DTINYLARGE_MCU_GENERATED="$out/gen" > /dev/null
  cmake --build "$dir" -j"${TINYLARGE_JOBS:-2}" --target $(printf 'cnn_%s ' $programs) \
    $(printf 'cnn_%s_compiled ' $models) \
    > "$dir.build.log" 2>&1 ||
    { cat "$dir.build.log"; exit 1; }
  for m in $programs; do
    txt=$out/cnn_$m-$cpu.txt
    if run_qemu "$board" "$dir/cnn_$m.elf" > "$txt"; then
      echo "mcu-cnn: $m on $cpu ($board): exit 0, $(grep '^device: back end' "$txt" | sed 's/device: //')"
    else
      echo "mcu-cnn: $m on $cpu ($board): FAILED"; cat "$txt"; status=1
    fi
    if same "$out/cnn_$m-host.txt" "$txt" > "$txt.diff"; then
      echo "mcu-cnn: $m on $cpu: int8 logits identical to the host's; a model file of another shape rejected"
    else
      echo "mcu-cnn: $m on $cpu: output differs from the host's:"; cat "$txt.diff"; status=1
    fi
    [[ " $compressed " == *" $m "* ]] && continue  # no compiled-in variant
    ctxt=$out/cnn_${m}_compiled-$cpu.txt
    if run_qemu "$board" "$dir/cnn_${m}_compiled.elf" > "$ctxt" &&
       diff <(grep '^input ' "$out/cnn_$m-host.txt") <(grep '^input ' "$ctxt") > /dev/null; then
      echo "mcu-cnn: ${m}_compiled on $cpu: exit 0, int8 logits identical to the host's"
    else
      echo "mcu-cnn: ${m}_compiled on $cpu: FAILED"; cat "$ctxt"; status=1
    fi
  done
done

# 4. Size report: runtime code = vector table + .text (code, constants, strings, libgcc/libc
# pieces) + .init_array + .data initialisers; weights = .tl_weights (the model files: the
# model and the one of another shape); embedded inputs and expected logits = .tl_data.
echo "size: program (core) | runtime code | weights (model files) | inputs | static RAM | arena | stack high-water"
for cpu in cortex-m3 cortex-m4 cortex-m55; do
  for m in $programs ${models// /_compiled }_compiled; do
    elf=$out/$cpu/cnn_$m.elf txt=$out/cnn_$m-$cpu.txt
    [[ -f $txt ]] || txt=$out/cnn_${m%_compiled}-$cpu.txt
    arena=$(sed -n 's/^device: activation arena \([0-9]*\).*/\1/p' "$txt")
    stack=$(sed -n 's/^device: stack high-water mark \([0-9]*\).*/\1/p' "$txt")
    arm-none-eabi-size -A "$elf" | awk -v label="cnn_$m ($cpu)" -v arena="$arena" -v stack="$stack" '
      $1 == ".isr_vector" || $1 == ".text" || $1 == ".ARM.exidx" || $1 == ".init_array" { code += $2 }
      $1 == ".data" { data = $2 } $1 == ".bss" { bss = $2 }
      $1 == ".tl_weights" { w = $2 } $1 == ".tl_data" { d = $2 }
      END { printf "size: %-24s | %6d B | %6d B | %5d B | %6d B | %6d B | %5d B\n", label, code + data, w, d, data + bss, arena, stack
            print code + data > "/dev/stderr" }' 2> "$out/cnn_$m-$cpu.runtime"
  done
done
runtime=$(cat "$out/cnn_lenet5_compiled-cortex-m4.runtime")
if (( runtime <= runtime_limit )); then
  echo "mcu-cnn: runtime code of the int8 LeNet-5 CNN on Cortex-M4F (cnn_lenet5_compiled): $runtime B <= $runtime_limit B (target met)"
else
  echo "mcu-cnn: runtime code of the int8 LeNet-5 CNN on Cortex-M4F (cnn_lenet5_compiled): $runtime B > $runtime_limit B (target MISSED)"; status=1
fi
exit $status
