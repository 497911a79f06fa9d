#!/usr/bin/env bash
# Instructions per layer and per MAC of the convolutional firmware examples (docs/mcu.md), from
# QEMU single-step traces of the TL_PROFILE builds of examples/mcu/cnn_int8.cpp: every
# instruction executed between the marker calls around each layer of quantized_network::forward
# — the kernels and all they call — is counted (scripts/mcu_trace_count.sh). Instructions, not
# cycles. Slow (one traced inference per model and core: 1–10 M instructions each), so it is a
# measurement, not a test step.
# Usage: scripts/mcu_cnn_cost.sh [build-root] [cores...]   (after scripts/mcu_cnn.sh build-root)
#   cores: cortex-m3 cortex-m4 cortex-m55 (default: all three)
#   TL_COST_MODELS: the programs to trace (default "lenet5 ds_cnn"; lenet5_sparse: the pruned
#   LeNet-5 on its int8 CSR records; lenet5_shared: the weight-shared LeNet-5 on its int8
#   codebook records; lenet5_huffman: the same on its Huffman-coded int8 codebook records;
#   resnet_kws: the residual CNN, each block's add counted as a node named "residual")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu-cnn}
shift || true
cores=${*:-cortex-m3 cortex-m4 cortex-m55}
declare -A board=([cortex-m3]=mps2-an385 [cortex-m4]=mps2-an386 [cortex-m55]=mps3-an547)
models=${TL_COST_MODELS:-lenet5 ds_cnn}
targets=""
for m in $models; do targets="$targets cnn_${m}_profile"; done
for cpu in $cores; do
  cmake --build "$out/$cpu" -j"${TINYLARGE_JOBS:-2}" --target $targets > "$out/$cpu.profile.build.log" 2>&1 ||
    { cat "$out/$cpu.profile.build.log"; exit 1; }
  for m in $models; do
    "$root/scripts/mcu_trace_count.sh" "${board[$cpu]}" "$out/$cpu/cnn_${m}_profile.elf" "$out/profile-$m-$cpu.txt" \
      > "$out/profile-$m-$cpu.counts"
    awk -v cpu="$cpu" -v m="$m" '
      FNR == NR { if ($1 == "region") n[$2] = $3; next }
      $1 == "profile:" { kind[$3] = $4; macs[$3] = $5; if ($3 + 1 > layers) layers = $3 + 1 }
      END {
        for (i = 0; i < layers; ++i) {
          total += n[i]; tm += macs[i]
          if (kind[i] == "conv2d" || kind[i] == "depthwise_conv2d" || kind[i] == "dense") {
            printf "cost: %-10s %-7s layer %2d %-17s %9d MACs %10d instr %6.2f instr/MAC\n", cpu, m, i, kind[i], macs[i], n[i], n[i] / macs[i]
            if (kind[i] == "conv2d") { cm += macs[i]; ci += n[i] }
          } else if (n[i] > 0) {
            printf "cost: %-10s %-7s layer %2d %-17s %9s       %10d instr\n", cpu, m, i, kind[i], "", n[i]
          }
        }
        printf "cost: %-10s %-7s total %10d instr for %d MACs: %.2f instr/MAC; conv2d layers %.2f instr/MAC\n", cpu, m, total, tm, total / tm, ci / cm
      }' "$out/profile-$m-$cpu.counts" "$out/profile-$m-$cpu.txt"
  done
done
