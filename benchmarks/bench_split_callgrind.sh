#!/bin/sh
# Instruction counts (valgrind callgrind) of split learning's templates vs the
# same work written by hand on the same kernels (see the .cpp), two pairs:
#   forward: the device segment's training forward pass;
#   step:    the device role program (workflow/split_roles.hpp) — forward,
#            uplink message, gradient message, backward and SGD update.
# Fails when a pair differs by more than 2%, or when the two sides of a pair do
# not compute the same numbers. Run by scripts/test.sh (step zero-overhead) with
# g++ and clang++-14.
#   benchmarks/bench_split_callgrind.sh [CXX]      (default g++)
# Built for x86-64-v3: valgrind 3.19 cannot run AVX-512 code (notes/MCU.md).
set -eu
CXX=${1:-g++}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$CXX" -std=c++20 -O2 -march=x86-64-v3 -I"$here/../include" "$here/bench_split_callgrind.cpp" -o "$tmp/bench"
count() {  # count MODE FUNCTION: instructions of FUNCTION (inclusive) when the program runs MODE
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$1" --toggle-collect="$2" "$tmp/bench" "$1" >"$tmp/out.$1" 2>&1 ||
    { cat "$tmp/out.$1"; echo "bench_split_callgrind $1 failed"; return 1; }
  # "totals:" (or "summary:") is the collected instruction count.
  grep -E '^(totals|summary):' "$tmp/cg.$1" | head -1 | awk '{print $2}'
}
same_numbers() {  # same_numbers A B: the two runs printed the same checksums
  if [ "$(grep checksum "$tmp/out.$1" | sed 's/^[a-z-]* checksum/checksum/')" != \
       "$(grep checksum "$tmp/out.$2" | sed 's/^[a-z-]* checksum/checksum/')" ]; then
    echo "  FAIL: $1 and $2 computed different numbers:"; cat "$tmp/out.$1" "$tmp/out.$2"; return 1
  fi
}
ratio() {  # ratio A B: prints A/B and fails outside [0.98, 1.02]
  awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf "  ratio %.4f (%+.2f%%)\n", r, 100 * (r - 1); exit (r > 1.02 || r < 0.98) ? 1 : 0 }'
}
rc=0
wf=$(count workflow tl_bench_workflow_forward)
hd=$(count hand tl_bench_hand_forward)
echo "device segment forward, 20 batches of 16 (dense<784,300> + relu), compiler $CXX:"
echo "  workflow templates (tl::psl<Traits>::device_model in tl::nn::network, training): $wf instructions"
echo "  hand-written (input copy + dense_f32 call + ReLU loop):                         $hd instructions"
same_numbers workflow hand || rc=1
ratio "$wf" "$hd" || rc=1
ws=$(count step-workflow tl_bench_workflow_step)
hs=$(count step-hand tl_bench_hand_step)
echo "device role program, 20 steps of 16 (forward, fp32 uplink message, gradient message, backward, SGD):"
echo "  workflow roles (device_forward, encode_smashed, decode_gradient, device_backward): $ws instructions"
echo "  hand-written on the same kernels:                                                 $hs instructions"
same_numbers step-workflow step-hand || rc=1
ratio "$ws" "$hs" || rc=1
exit $rc
