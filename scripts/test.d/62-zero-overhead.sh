# Sourced by scripts/test.sh: zero overhead of the templates, by instruction counts (callgrind,
# deterministic, so a verdict on a shared machine): split learning's device segment forward and
# the device role program (forward, uplink message, gradient message, backward, SGD step) against
# the same work written by hand on the same kernels, each pair within 2%, with g++ and clang++
# (benchmarks/bench_split_callgrind.sh; ~40 s of one core per compiler).
step_zero_overhead() {
  if ! command -v valgrind >/dev/null 2>&1; then
    echo "!! valgrind not found: bash scripts/deps.sh bench"
    return 1
  fi
  local ok=0
  sh "$ROOT/benchmarks/bench_split_callgrind.sh" "$GXX" || ok=1
  sh "$ROOT/benchmarks/bench_split_callgrind.sh" "$CLANGXX" || ok=1
  return $ok
}
register_step zero-overhead step_zero_overhead
