#!/usr/bin/env bash
# scripts/test.sh — THE test command of tinylarge (README's second command; .ci/run runs it).
#
#   bash scripts/test.sh                 install deps, run every step
#   bash scripts/test.sh STEP...         run only the steps whose name matches a glob (e.g. 'clang-*')
#   bash scripts/test.sh --list          list the steps
#
# Every step runs even when an earlier one failed (the one-core steps named by `light_steps`
# last, two at a time, each one's output shown when it ends); at the end a table of steps
# and their times is printed, then one line `N passed, N failed` (CTest tests
# summed over all configurations, plus one per configure/build failure and per
# step that is not a CTest run), and the exit status is non-zero on any failure.
#
# Environment:
#   TINYLARGE_JOBS=2            parallel jobs for builds and ctest
#   TINYLARGE_BUILD_ROOT=DIR    where build directories go (default: <repo>/build-test)
#   TINYLARGE_SKIP_DEPS=1       do not run scripts/deps.sh
#   TINYLARGE_GXX, TINYLARGE_CLANGXX   compilers (default: g++, clang++-14)
#   TINYLARGE_VERBOSE=1         stream configure/build output (default: shown only on failure)
#
# Adding a step (e.g. a Cortex-M build under QEMU, an aarch64 cross build):
# either append a `register_step` line in the STEPS section below, or drop a
# file scripts/test.d/<NN>-<name>.sh that calls `register_step` (it is sourced
# after the built-in steps, in name order). A step is a shell function that
# returns 0 on success; to report CTest totals it calls `count_ctest <log>`,
# otherwise it counts as one test. `cmake_config` below is the usual body.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOBS=${TINYLARGE_JOBS:-2}
BUILD_ROOT=${TINYLARGE_BUILD_ROOT:-$ROOT/build-test}
GXX=${TINYLARGE_GXX:-g++}
CLANGXX=${TINYLARGE_CLANGXX:-clang++-14}
VERBOSE=${TINYLARGE_VERBOSE:-0}
LOG_DIR=$BUILD_ROOT/logs

# Sanitizers: fail on the first report, with a stack trace.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# ----------------------------------------------------------------------------
# Step machinery
# ----------------------------------------------------------------------------
STEP_NAMES=()
STEP_CMDS=()
STEP_LIGHT=()
register_step() {  # register_step NAME FUNCTION [ARGS...]
  local name=$1; shift
  STEP_NAMES+=("$name")
  STEP_CMDS+=("$(printf '%q ' "$@")")
  STEP_LIGHT+=(0)
}
# light_steps NAME...: these steps use about one core on average (wall ~= CPU seconds) and share
# nothing with each other (own build directory, free ports, no verdict that one more busy core
# beside them could change: see the call below). They run after the other steps, $JOBS at a time,
# in the order given here (longest first packs best), each with its output buffered and shown when
# it ends; the summary keeps the registration order.
LIGHT_ORDER=()
light_steps() {
  local name i
  for name in "$@"; do
    for i in "${!STEP_NAMES[@]}"; do
      [[ ${STEP_NAMES[$i]} == "$name" ]] && { STEP_LIGHT[$i]=1; LIGHT_ORDER+=("$i"); }
    done
  done
}

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()
STEP_COUNTED=0   # set by count_ctest / add_counts inside a step
STEP_PASSED=0
STEP_FAILED=0

add_counts() {  # add_counts PASSED FAILED — a step reports its own totals
  STEP_COUNTED=1
  STEP_PASSED=$((STEP_PASSED + $1))
  STEP_FAILED=$((STEP_FAILED + $2))
}

# count_ctest LOG: add the totals of a `ctest` run (its output in LOG).
count_ctest() {
  local line total failed
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -n 1)
  if [[ -z "$line" ]]; then
    echo "!! no CTest summary found (no tests, or ctest crashed)"
    add_counts 0 1
    return 1
  fi
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  add_counts $((total - failed)) "$failed"
  [[ "$failed" -eq 0 ]]
}

# run_logged LOG CMD...: run CMD with output to LOG (and to the console when
# verbose); on failure print the log so that CI shows why.
run_logged() {
  local log=$1; shift
  echo "+ $(printf '%q ' "$@")" >>"$log"
  if [[ "$VERBOSE" == "1" ]]; then
    "$@" 2>&1 | tee -a "$log"
    return "${PIPESTATUS[0]}"
  fi
  local rc=0
  "$@" >>"$log" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] && return 0
  echo "!! failed (exit $rc): $(printf '%q ' "$@")"
  echo "---- $log ----"
  cat "$log"
  echo "---- end of $log ----"
  return "$rc"
}

# CPU seconds (user + system) used so far by finished child processes.
# (`times` must run in this shell, not in a subshell: hence the file.)
TIMES_FILE=$(mktemp)
trap 'rm -f "$TIMES_FILE"' EXIT
# Sets CPU_SECONDS (call it directly, never as $(...), which would be a subshell).
CPU_SECONDS=0
children_cpu_seconds() {
  times >"$TIMES_FILE"
  # Second line of `times`: "<user>m<s>s <sys>m<s>s" for the children.
  CPU_SECONDS=$(awk 'NR == 2 { total = 0
         for (i = 1; i <= NF; ++i) { split($i, ms, "m"); sub("s", "", ms[2]); total += ms[1] * 60 + ms[2] }
         printf "%d\n", total }' "$TIMES_FILE")
}

run_step() {  # run_step INDEX
  local name=${STEP_NAMES[$1]} cmd=${STEP_CMDS[$1]}
  local start end rc status cpu0 cpu1
  STEP_COUNTED=0 STEP_PASSED=0 STEP_FAILED=0
  echo
  echo "==== [$name] $(date -u +%H:%M:%S) ===="
  start=$(date +%s)
  children_cpu_seconds
  cpu0=$CPU_SECONDS
  eval "$cmd"
  rc=$?
  end=$(date +%s)
  children_cpu_seconds
  cpu1=$CPU_SECONDS
  if [[ $STEP_COUNTED -eq 0 ]]; then
    if [[ $rc -eq 0 ]]; then STEP_PASSED=1; else STEP_FAILED=1; fi
  elif [[ $rc -ne 0 && $STEP_FAILED -eq 0 ]]; then
    STEP_FAILED=1  # the step failed outside what it counted
  fi
  if [[ $rc -eq 0 && $STEP_FAILED -eq 0 ]]; then status=PASS; else status=FAIL; fi
  TOTAL_PASSED=$((TOTAL_PASSED + STEP_PASSED))
  TOTAL_FAILED=$((TOTAL_FAILED + STEP_FAILED))
  SUMMARY[$1]=$(printf '%-24s %-4s %5ds wall %6ds cpu  %4d passed %3d failed' "$name" "$status" \
               $((end - start)) $((cpu1 - cpu0)) "$STEP_PASSED" "$STEP_FAILED")
  echo "==== [$name] $status in $((end - start)) s, $((cpu1 - cpu0)) s CPU ($STEP_PASSED passed, $STEP_FAILED failed) ===="
}

# run_light_steps INDEX...: run these steps $JOBS at a time, each in a subshell whose output goes
# to a file (shown when the step ends) and whose counts come back through another.
run_light_steps() {
  local queue=("$@") i done_pid out res=()
  declare -A pid_step=()
  while [[ ${#queue[@]} -gt 0 || ${#pid_step[@]} -gt 0 ]]; do
    while [[ ${#queue[@]} -gt 0 && ${#pid_step[@]} -lt $JOBS ]]; do
      i=${queue[0]}; queue=("${queue[@]:1}")
      out=$LOG_DIR/step-$i.out
      echo "---- [${STEP_NAMES[$i]}] started $(date -u +%H:%M:%S) (in parallel; output when it ends)"
      ( TIMES_FILE=$out.times  # not the file the other running step uses
        run_step "$i" >"$out" 2>&1
        printf '%s\n%s\n%s\n' "$STEP_PASSED" "$STEP_FAILED" "${SUMMARY[$i]}" >"$out.result" ) &
      pid_step[$!]=$i
    done
    done_pid=
    wait -n -p done_pid "${!pid_step[@]}"
    [[ -n "$done_pid" ]] || continue
    i=${pid_step[$done_pid]}; unset "pid_step[$done_pid]"
    out=$LOG_DIR/step-$i.out
    cat "$out"
    rm -f "$out.times"
    if [[ -f "$out.result" ]] && mapfile -t res <"$out.result" && [[ ${#res[@]} -eq 3 ]]; then
      TOTAL_PASSED=$((TOTAL_PASSED + res[0])); TOTAL_FAILED=$((TOTAL_FAILED + res[1])); SUMMARY[$i]=${res[2]}
    else
      TOTAL_FAILED=$((TOTAL_FAILED + 1))
      SUMMARY[$i]=$(printf '%-24s %-4s (the step did not report its result)' "${STEP_NAMES[$i]}" FAIL)
    fi
  done
}

# ----------------------------------------------------------------------------
# Step bodies
# ----------------------------------------------------------------------------
step_deps() {
  bash "$ROOT/scripts/deps.sh"
}

# cmake_config NAME CXX BUILD_TYPE "CXXFLAGS" [extra CMake arguments...]
# Configure, build (keep going past errors) and ctest one configuration in
# $BUILD_ROOT/NAME. A build failure counts as one failure; the tests that did
# build still run (ctest reports the missing ones as failed).
cmake_config() {
  local name=$1 cxx=$2 type=$3 flags=$4; shift 4
  local dir=$BUILD_ROOT/$name log=$LOG_DIR/$name.log ok=0
  : >"$log"
  local generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "!! compiler '$cxx' not found"
    return 1
  fi
  # A stale cache with another compiler cannot be reconfigured: start over.
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    local cached
    cached=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
    [[ "$cached" == "$(command -v "$cxx")" ]] || rm -rf "$dir"
  fi
  run_logged "$log" cmake -S "$ROOT" -B "$dir" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE="$type" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_CXX_FLAGS="$flags" \
    -DTINYLARGE_BUILD_TESTS=ON "$@" || { add_counts 0 1; return 1; }
  local keep_going=()
  [[ ${#generator[@]} -gt 0 ]] && keep_going=(-- -k 0)
  echo "building in $dir (log: $log)"
  if ! run_logged "$log" cmake --build "$dir" -j "$JOBS" "${keep_going[@]}"; then
    add_counts 0 1  # the build itself
    ok=1
  fi
  local ctest_log=$LOG_DIR/$name.ctest.log
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 600) 2>&1 | tee "$ctest_log"
  count_ctest "$ctest_log" || ok=1
  return $ok
}

# ----------------------------------------------------------------------------
# STEPS (in order). Each compiler gets sanitizers and an optimised native build; g++ also
# the portable scalar back end, both compilers a build without exceptions.
# Examples, the CMake consumer tests and the compile-fail checks (plain `-fsyntax-only` runs,
# identical in every build of one compiler) build in the release configuration of each
# compiler (clang's at -O0, TINYLARGE_EXAMPLES_O0: for clang they are a compile check, and
# the two that run as tests, example_quickstart and example_xtensor_interop, run optimised
# in gcc-release-native); the benchmarks (built, not run: compile checks) in gcc's, the compiler
# scripts/run_benchmarks.py builds them with; the one-TU-per-header check in one
# configuration only; fmnist_int8_parity (a tool the arm-linux step runs, from
# gcc-release-native) not in the sanitizer build, where nothing runs it.
# ----------------------------------------------------------------------------
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
RELEASE=(-DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DTINYLARGE_BUILD_EXAMPLES=ON
         -DTINYLARGE_TEST_CMAKE_IMPORT=ON)
DEBUG=(-DTINYLARGE_BUILD_EXAMPLES=OFF -DTINYLARGE_TEST_COMPILE_FAIL=OFF)

register_step deps                  step_deps
register_step gcc-debug-sanitize cmake_config gcc-debug-sanitize "$GXX" Debug "$SAN" "${DEBUG[@]}" \
  -DTINYLARGE_TEST_FMNIST_PARITY=OFF
register_step gcc-release-native cmake_config gcc-release-native "$GXX" Release "-march=native" "${RELEASE[@]}" \
  -DTINYLARGE_BUILD_BENCHMARKS=ON
# clang++ sanitizes the build without exceptions: the error paths that throw are
# sanitized by g++ above and run optimised by clang-release-native below; a separate
# clang no-exceptions build cost ~3.5 min of the CI budget for no code the other
# steps do not run.
register_step clang-debug-sanitize-no-exceptions cmake_config clang-debug-sanitize-no-exceptions "$CLANGXX" Debug \
  "$SAN -fno-exceptions" "${DEBUG[@]}"
register_step clang-release-native cmake_config clang-release-native "$CLANGXX" Release "-march=native" \
  "${RELEASE[@]}" -DTINYLARGE_BUILD_BENCHMARKS=OFF -DTINYLARGE_TEST_HEADERS_STANDALONE=ON \
  -DTINYLARGE_EXAMPLES_O0=ON

# g++ without exceptions on the portable scalar back end (TINYLARGE_USE_XSIMD=OFF: no SIMD kernel
# header, no xsimd), the whole ctest suite, in one configuration: neither property depends on the
# other, and a configuration costs ~4 min of the CI budget. -march=native shows that OFF wins over
# the instruction sets the compiler could use.
register_step gcc-scalar-no-exceptions cmake_config gcc-scalar-no-exceptions "$GXX" Release \
  "-march=native -fno-exceptions" -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DTINYLARGE_USE_XSIMD=OFF \
  -DTINYLARGE_BUILD_EXAMPLES=OFF -DTINYLARGE_TEST_COMPILE_FAIL=OFF

# README's first command, minus the package installation (deps ran above), on a
# reduced data set so that the suite stays short: every workflow of the flagship
# still runs end to end on real Fashion-MNIST images.
step_quickstart() {
  TINYLARGE_SKIP_DEPS=1 TINYLARGE_QUICKSTART_BUILD="$BUILD_ROOT/quickstart" bash "$ROOT/scripts/quickstart.sh" \
    --train 2000 --test 500 --rounds 1
}
register_step quickstart step_quickstart

# The freestanding profile on Cortex-M4F and Cortex-M3 under QEMU (tests/mcu/).
if [[ -f "$ROOT/scripts/mcu_selftest.sh" ]]; then
  register_step mcu-cortex-m  bash "$ROOT/scripts/mcu_selftest.sh" "$BUILD_ROOT/mcu"
fi
# The serial link (transport/serial.hpp): a Cortex-M4F firmware under QEMU and a host program over
# the emulated UART, with bytes dropped / flipped on the way (scripts/mcu_serial.sh, < 1 min).
register_step mcu-serial timeout 110 bash "$ROOT/scripts/mcu_serial.sh" "$BUILD_ROOT/mcu-serial"
# A heterogeneous FedAvg fleet over MQTT: two QEMU Cortex-M4F devices through the serial gateway
# (transport/serial_gateway.hpp) and two host clients in the same rounds, faults on the serial lines;
# the same over MPI (gateway ranks); each final model equals the in-process simulation byte for byte
# (scripts/mcu_fleet.sh: ~30 s of fleet runs after ~40-100 s compiling the host program twice).
register_step mcu-fleet timeout 300 bash "$ROOT/scripts/mcu_fleet.sh" "$BUILD_ROOT/mcu-fleet"
# Split learning over the serial link: the library's PSL / SplitFedV1 deployment servers on the host, a Cortex-M4F
# device segment under QEMU, final models bit-identical to the in-process run (scripts/mcu_split.sh, 25-85 s).
register_step mcu-split timeout 180 bash "$ROOT/scripts/mcu_split.sh" "$BUILD_ROOT/mcu-split"

# Drop-in steps from later issues.
if compgen -G "$ROOT/scripts/test.d/*.sh" >/dev/null; then
  for f in "$ROOT"/scripts/test.d/*.sh; do
    # shellcheck source=/dev/null
    source "$f"
  done
fi

# About one core each (wall ~= CPU seconds in the step table): two at a time after the rest
# (~980 s of CPU; their wall time goes from the sum to about half of it). transport's verdicts
# include round deadlines (4 s) and timeouts, but it passed at load average 5-7 on the shared
# development machine (its nn phases 3x slower than alone), far more than one other one-core step
# beside it; its MPI / Mosquitto runs use free ports and its own build directory. mcu-mac-count
# (QEMU traces, 124 s CPU in 80 s) reuses mcu-cortex-m's build directory: mcu-cortex-m is not
# light, so it has ended before the light steps start. Not here: the steps that build with -j
# throughout, mcu-cortex-m, mcu-serial (18 s, timeouts), mcu-fleet (timeouts), mcu-split (builds three programs at once,
# timeouts).
light_steps transport mcu-cnn fuzz-model-file mcu-mac-count fuzz-parsers zero-overhead mcu-example nas-mcu quickstart packaging docs

# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------
selected=()
if [[ "${1:-}" == "--list" ]]; then
  printf '%s\n' "${STEP_NAMES[@]}"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  for i in "${!STEP_NAMES[@]}"; do
    for pat in "$@"; do
      # shellcheck disable=SC2053
      if [[ ${STEP_NAMES[$i]} == $pat ]]; then selected+=("$i"); break; fi
    done
  done
  if [[ ${#selected[@]} -eq 0 ]]; then
    echo "test.sh: no step matches: $* (see --list)" >&2
    exit 2
  fi
else
  selected=("${!STEP_NAMES[@]}")
fi

mkdir -p "$LOG_DIR"
echo "tinylarge test run: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $JOBS jobs, build root $BUILD_ROOT"
all_start=$(date +%s)
declare -A is_selected=()
for i in "${selected[@]}"; do
  is_selected[$i]=1
  [[ ${STEP_LIGHT[$i]} -eq 1 && $JOBS -gt 1 ]] || run_step "$i"
done
light=()
if [[ $JOBS -gt 1 ]]; then
  for i in "${LIGHT_ORDER[@]}"; do [[ -n "${is_selected[$i]:-}" ]] && light+=("$i"); done
fi
[[ ${#light[@]} -gt 0 ]] && run_light_steps "${light[@]}"
all_end=$(date +%s)

echo
children_cpu_seconds
echo "==== summary: $((all_end - all_start)) s wall, $CPU_SECONDS s CPU ===="
printf '%s\n' "${SUMMARY[@]}"
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[[ $TOTAL_FAILED -eq 0 ]]
