# Sourced by scripts/test.sh: a time-bounded libFuzzer run of each fuzz target
# (scripts/fuzz_target.sh: clang++ -fsanitize=fuzzer,address,undefined, seeded from
# valid inputs; any crash, sanitizer report, leak or timeout fails the step).
# TINYLARGE_FUZZ_SECONDS sets the time per target (default 60).
# Targets: the model-file reader (issue 4), the data/I-O parsers (IDX, gzip, DEFLATE,
# .npy, .npz; issue 25). The wire-frame target is run by the transport step
# (scripts/transport_test.sh fuzz); to time-bound it here too, add `wire` below.
for fuzz_target in model_file parsers; do
  register_step "fuzz-${fuzz_target//_/-}" bash "$ROOT/scripts/fuzz_target.sh" "$fuzz_target" \
    "${TINYLARGE_FUZZ_SECONDS:-60}" "$BUILD_ROOT/fuzz-$fuzz_target"
done
unset fuzz_target
