#!/usr/bin/env bash
# Builds the libFuzzer target of the model-file reader with clang++
# (-fsanitize=fuzzer,address,undefined), generates the seed corpus from valid files, and
# runs the fuzzer bounded. Exits non-zero on any crash, sanitizer report or leak.
#
# Usage: scripts/fuzz_model_file.sh [seconds=30] [build-dir=build-fuzz]
#   FUZZ_NICE=1    run at low priority (long runs on shared machines)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
out=${2:-$root/build-fuzz}
mkdir -p "$out/corpus" "$out/work"
cxx=${CLANGXX:-clang++-14}
command -v "$cxx" > /dev/null || cxx=clang++
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -I"$root/include" -I"$root/tests")

# The corpus generator is an ordinary host program (no fuzzer runtime).
"$cxx" "${flags[@]}" "$root/tests/fuzz/make_model_file_corpus.cpp" -o "$out/make_model_file_corpus"
"$out/make_model_file_corpus" "$out/corpus"

"$cxx" "${flags[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  "$root/tests/fuzz/fuzz_model_file.cpp" -o "$out/fuzz_model_file"

prefix=()
[[ "${FUZZ_NICE:-0}" == 1 ]] && prefix=(nice -n 19)
# New inputs go to work/ (the seeds stay pristine); a crashing input is saved as
# $out/crash-<sha1> (reproduce: $out/fuzz_model_file $out/crash-<sha1>).
status=0
"${prefix[@]}" "$out/fuzz_model_file" "$out/work" "$out/corpus" \
  -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$out/" -print_final_stats=1 > "$out/fuzz.log" 2>&1 || status=$?
grep -E "INITED|DONE|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" "$out/fuzz.log" || true
if [[ $status -ne 0 ]] || grep -qE "ERROR: (libFuzzer|AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)|runtime error" "$out/fuzz.log"; then
  grep -E "ERROR|SUMMARY|runtime error|Test unit written" "$out/fuzz.log" || tail -30 "$out/fuzz.log"
  echo "fuzz_model_file: FAILED (exit $status; see $out/fuzz.log)"
  exit 1
fi
echo "fuzz_model_file: OK (${seconds} s, no crash; log: $out/fuzz.log)"
