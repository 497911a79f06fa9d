#!/usr/bin/env bash
# Builds one libFuzzer target with clang++ (-fsanitize=fuzzer,address,undefined), writes
# its seed corpus from valid inputs, and runs it time-bounded. Exits non-zero on any crash,
# sanitizer report, leak or timeout.
#
# Usage: scripts/fuzz_target.sh TARGET [seconds=60] [build-dir=build-fuzz/TARGET] [libFuzzer args...]
#   TARGET       model_file  compressed model-file reader   tests/fuzz/fuzz_model_file.cpp
#                parsers     IDX, gzip, DEFLATE, .npy, .npz  tests/data/fuzz_parsers.cpp
#                wire        wire frames and checkpoints     tests/transport/fuzz_wire.cpp
#   FUZZ_NICE=1  run at low priority (long runs on shared machines)
#   CLANGXX      compiler (default clang++-14)
# A new target is one more entry in the `case` below: its source, its seed-corpus
# generator (an ordinary program: `gen DIR`), its libraries and its -max_len.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${1:?usage: fuzz_target.sh TARGET [seconds] [build-dir] [libFuzzer args...]}
seconds=${2:-60}
out=${3:-$root/build-fuzz/$target}
shift $(( $# < 3 ? $# : 3 ))
case "$target" in
  model_file) src=tests/fuzz/fuzz_model_file.cpp; gen=tests/fuzz/make_model_file_corpus.cpp; libs=(); max_len=65536 ;;
  parsers) src=tests/data/fuzz_parsers.cpp; gen=tests/data/make_parsers_corpus.cpp; libs=(-lz); max_len=16384 ;;
  wire) src=tests/transport/fuzz_wire.cpp; gen=tests/transport/wire_corpus.cpp; libs=(); max_len=4096 ;;
  *) echo "fuzz_target.sh: unknown target '$target' (model_file, parsers, wire)" >&2; exit 2 ;;
esac
cxx=${CLANGXX:-clang++-14}
command -v "$cxx" > /dev/null || cxx=clang++
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -I"$root/include" -I"$root/tests")
mkdir -p "$out/corpus" "$out/work"

# The corpus generator is an ordinary host program (no fuzzer runtime).
"$cxx" "${flags[@]}" "$root/$gen" "${libs[@]}" -o "$out/make_corpus"
"$out/make_corpus" "$out/corpus"
"$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$root/$src" "${libs[@]}" -o "$out/fuzz_$target"

prefix=()
[[ "${FUZZ_NICE:-0}" == 1 ]] && prefix=(nice -n 19)
# New inputs go to work/ (the seeds stay pristine); a crashing input is saved as
# $out/crash-<sha1> (reproduce: $out/fuzz_$target $out/crash-<sha1>).
status=0
"${prefix[@]}" "$out/fuzz_$target" "$out/work" "$out/corpus" \
  -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$out/" -print_final_stats=1 "$@" > "$out/fuzz.log" 2>&1 || status=$?
grep -E "INITED|DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb|accepted" "$out/fuzz.log" || true
if [[ $status -ne 0 ]] || grep -qE "ERROR: (libFuzzer|AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)|runtime error" "$out/fuzz.log"; then
  grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$out/fuzz.log" || tail -30 "$out/fuzz.log"
  echo "fuzz $target: FAILED (exit $status; see $out/fuzz.log)"
  exit 1
fi
echo "fuzz $target: OK (${seconds} s, no crash; log: $out/fuzz.log)"
