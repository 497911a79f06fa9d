#!/bin/sh
# Instruction counts (valgrind callgrind) of the device segment's training
# forward pass compiled from the split-learning templates vs a hand-written
# input copy + kernel call + ReLU loop doing the same work (see the .cpp);
# fails when they differ by more than 2%.
#   benchmarks/bench_split_callgrind.sh [CXX]      (default g++)
# Built for x86-64-v3: valgrind 3.19 cannot run AVX-512 code (notes/MCU.md).
set -eu
CXX=${1:-g++}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$CXX" -std=c++20 -O2 -march=x86-64-v3 -I"$here/../include" "$here/bench_split_callgrind.cpp" -o "$tmp/bench"
count() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" --toggle-collect="$2" "$tmp/bench" "$1" >/dev/null 2>&1
  # "totals:" (or "summary:") is the collected instruction count.
  grep -E '^(totals|summary):' "$tmp/cg.$1" | head -1 | awk '{print $2}'
}
wf=$(count workflow tl_bench_workflow_forward)
hd=$(count hand tl_bench_hand_forward)
echo "device segment forward, 20 batches of 16 (dense<784,300> + relu), compiler $CXX:"
echo "  workflow templates (tl::psl<Traits>::device_model in tl::nn::network, training): $wf instructions"
echo "  hand-written (input copy + dense_f32 call + ReLU loop):                         $hd instructions"
awk -v a="$wf" -v b="$hd" 'BEGIN { r = a / b; printf "  ratio %.4f (%+.2f%%)\n", r, 100 * (r - 1); exit (r > 1.02 || r < 0.98) ? 1 : 0 }'
