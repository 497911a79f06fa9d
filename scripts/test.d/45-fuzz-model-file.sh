# Sourced by scripts/test.sh: a bounded libFuzzer run (30 s) of the compressed
# model-file reader (issue 4), seeded from valid files; any crash fails.
register_step fuzz-model-file bash "$ROOT/scripts/fuzz_model_file.sh" 30 "$BUILD_ROOT/fuzz-model-file"
