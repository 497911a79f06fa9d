#!/usr/bin/env bash
# scripts/arm_linux_test.sh — cross-build tinylarge for ARM Linux and run the
# tests under qemu-user (docs/arm-linux.md).
#
#   bash scripts/arm_linux_test.sh [BUILD_ROOT]     (default BUILD_ROOT: <repo>/build-arm)
#
# Steps (each timed; all run even when one fails; exit status 1 on any failure):
#   deps       scripts/deps.sh arm (cross g++ for aarch64 and armhf, qemu-user), and
#              Debian's zlib1g-dev for arm64/armhf unpacked into BUILD_ROOT (see below)
#   aarch64    Release cross build of the tests of architecture-dependent code + the quickstart;
#              ctest under qemu-aarch64 (back ends: scalar, neon); see AARCH64_TESTS below
#   aarch64-dotprod  -march=armv8.2-a+dotprod: test_core, test_kernels, test_arm_linux, int8_parity
#              (back ends: scalar, neon, neon_dotprod — the SDOT kernels); builds fmnist_int8_parity
#   armhf      -mfpu=neon: test_core, test_precision, test_kernels, test_aggregate (32-bit
#              arithmetic of secure aggregation), test_arm_linux, int8_parity
#              under qemu-arm; builds fmnist_int8_parity
#   host       native build of int8_parity and fmnist_int8_parity (-march=native) for the comparison
#              (in TINYLARGE_ARM_HOST_BUILD when that is such a build: scripts/test.sh passes its
#              gcc-release-native directory, so the two are not compiled twice)
#   parity     int8_parity's output (hashes of int8 outputs) on x86-64 == aarch64 ==
#              aarch64+dotprod == armhf, byte for byte; each ARM build's default back end
#              is its NEON one (neon / neon_dotprod); the quickstart runs under QEMU
#   fmnist     the trained Fashion-MNIST model: LeNet-300-100 trained and PTQ-quantized once
#              on x86-64 (fp32 training is not bit-reproducible across architectures) and
#              written as an int8 model file; its int8 inference of all 10 000 test images
#              (CRC-32s of the int8 inputs, logits and predicted labels, and the accuracy,
#              which must be >= 80 %) on x86-64 == aarch64 == aarch64+dotprod == armhf, byte
#              for byte; and, so that the comparison is known to be able to fail, the host
#              run with one int8 weight negated must differ. Needs dataset-fashion-mnist
#              (TINYLARGE_FMNIST_DIR, default /usr/share/datasets/fashion-mnist).
#
# Not built in the cross builds: nn_torch_interop (a Python/PyTorch script
# that executes the test binary directly; without binfmt_misc the host cannot
# exec an AArch64 binary, and the interop is architecture independent: see
# tests/CMakeLists.txt). Excluded from the aarch64 ctest run: from
# test_model_file the one test case that compares an x86-64-generated golden
# header of fp32 outputs byte for byte (see step_aarch64).
#
# zlib: tinylarge::tinylarge links ZLIB::ZLIB, and the cross sysroots have no
# zlib. The script downloads zlib1g-dev for arm64 and armhf with apt-get, using
# a private apt state under BUILD_ROOT (the machine's dpkg architectures and
# package lists are not touched), unpacks the .debs there and links libz.a
# statically. Needs apt (or an existing BUILD_ROOT/zlib-<arch>).
#
# Environment: TINYLARGE_JOBS (default 2), TINYLARGE_SKIP_DEPS=1 (no deps.sh, no apt),
#   TINYLARGE_ARM_STEPS="deps armhf host parity fmnist" (a subset of the steps, in that order),
#   TINYLARGE_FMNIST_DIR (the Fashion-MNIST directory), TINYLARGE_ARM_HOST_BUILD (an existing
#   -march=native build directory of this tree, with tests and exceptions, for the host step).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_ROOT=${1:-${TINYLARGE_ARM_BUILD_ROOT:-$ROOT/build-arm}}
JOBS=${TINYLARGE_JOBS:-2}
mkdir -p "$BUILD_ROOT/logs"
BUILD_ROOT=$(cd "$BUILD_ROOT" && pwd)
LOGS=$BUILD_ROOT/logs

GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)

RESULTS=()
FAILED=0
TESTS_PASSED=0
TESTS_FAILED=0
T_ALL=$(date +%s)

# step NAME FUNCTION: run and time one step.
step() {
  local name=$1 fn=$2 t0 t1 rc
  echo
  echo "==== arm-linux [$name] $(date -u +%H:%M:%S) ===="
  t0=$(date +%s)
  "$fn"
  rc=$?
  t1=$(date +%s)
  if [[ $rc -eq 0 ]]; then RESULTS+=("$(printf '%-16s PASS %5ds' "$name" $((t1 - t0)))")
  else RESULTS+=("$(printf '%-16s FAIL %5ds' "$name" $((t1 - t0)))"); FAILED=1; fi
  echo "==== arm-linux [$name] $([[ $rc -eq 0 ]] && echo PASS || echo FAIL) in $((t1 - t0)) s ===="
}

# logged LOG CMD...: output to LOG, shown on failure.
logged() {
  local log=$1; shift
  echo "+ $*" >>"$log"
  if "$@" >>"$log" 2>&1; then return 0; fi
  echo "!! failed: $*"; echo "---- $log (last 60 lines) ----"; tail -n 60 "$log"; echo "---- end ----"
  return 1
}

# ---------------------------------------------------------------------------
step_deps() {
  bash "$ROOT/scripts/deps.sh" arm || return 1
  local arch
  for arch in arm64 armhf; do
    [[ -f "$BUILD_ROOT/zlib-$arch/usr/include/zlib.h" ]] && continue
    if [[ "${TINYLARGE_SKIP_DEPS:-0}" == "1" ]]; then
      echo "!! TINYLARGE_SKIP_DEPS=1 and no $BUILD_ROOT/zlib-$arch"; return 1
    fi
    local apt=$BUILD_ROOT/apt
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs"
    local opts=(-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1"
                -o "APT::Architectures::=arm64" -o "APT::Architectures::=armhf"
                -o "APT::Sandbox::User=root")
    if ! compgen -G "$apt/debs/zlib1g-dev_*_$arch.deb" >/dev/null; then
      # The update may warn about an index of another suite; only bookworm/main matters.
      apt-get "${opts[@]}" update -qq >"$LOGS/apt-update.log" 2>&1 || true
      (cd "$apt/debs" && apt-get "${opts[@]}" download "zlib1g-dev:$arch") >>"$LOGS/apt-update.log" 2>&1 ||
        { echo "!! apt-get download zlib1g-dev:$arch failed"; cat "$LOGS/apt-update.log"; return 1; }
    fi
    dpkg-deb -x "$(compgen -G "$apt/debs/zlib1g-dev_*_$arch.deb" | head -n 1)" "$BUILD_ROOT/zlib-$arch" || return 1
  done
  echo "zlib for arm64/armhf in $BUILD_ROOT/zlib-{arm64,armhf}"
}

# cross_config NAME TOOLCHAIN ZLIB_ARCH TRIPLE "CXXFLAGS" [cmake args...]
# An empty CXXFLAGS is not passed at all: -DCMAKE_CXX_FLAGS would replace the
# toolchain's CMAKE_CXX_FLAGS_INIT (armhf: -mfpu=neon) and silently build
# without NEON.
cross_config() {
  local name=$1 tc=$2 zarch=$3 triple=$4 flags=$5; shift 5
  local dir=$BUILD_ROOT/$name
  : >"$LOGS/$name.log"
  # Cached compiler flags outlive a change of this script: start over then.
  if [[ -f "$dir/.tinylarge-flags" && "$(cat "$dir/.tinylarge-flags")" != "$tc|$flags" ]]; then rm -rf "$dir"; fi
  mkdir -p "$dir" && echo "$tc|$flags" >"$dir/.tinylarge-flags"
  logged "$LOGS/$name.log" cmake -S "$ROOT" -B "$dir" "${GEN[@]}" \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchains/$tc" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" ${flags:+-DCMAKE_CXX_FLAGS="$flags"} \
    -DZLIB_INCLUDE_DIR="$BUILD_ROOT/zlib-$zarch/usr/include" \
    -DZLIB_LIBRARY="$BUILD_ROOT/zlib-$zarch/usr/lib/$triple/libz.a" \
    -DTINYLARGE_BUILD_TESTS=ON -DTINYLARGE_BUILD_BENCHMARKS=OFF -DTINYLARGE_INSTALL=OFF "$@"
}

# cross_build_test NAME "CTEST_ARGS" [targets...]  (no targets: everything)
cross_build_test() {
  local name=$1 ctest_args=$2; shift 2
  local dir=$BUILD_ROOT/$name ok=0 t0 t1 targets=() keep_going=()
  [[ $# -gt 0 ]] && targets=(--target "$@")
  [[ ${#GEN[@]} -gt 0 ]] && keep_going=(-- -k 0)  # build what builds; ctest reports the rest
  t0=$(date +%s)
  logged "$LOGS/$name.log" cmake --build "$dir" -j "$JOBS" "${targets[@]}" "${keep_going[@]}" || ok=1
  t1=$(date +%s)
  echo "build: $((t1 - t0)) s (log $LOGS/$name.log)"
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" --timeout 900 $ctest_args) 2>&1 | tee "$LOGS/$name.ctest.log"
  echo "ctest under QEMU: $(( $(date +%s) - t1 )) s"
  local line
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$LOGS/$name.ctest.log" | tail -n 1)
  if [[ -z "$line" ]]; then echo "!! no CTest summary"; TESTS_FAILED=$((TESTS_FAILED + 1)); return 1; fi
  local failed total
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
  TESTS_PASSED=$((TESTS_PASSED + total - failed)); TESTS_FAILED=$((TESTS_FAILED + failed))
  [[ $failed -eq 0 && $ok -eq 0 ]]
}

# The aarch64 build compiles and runs the test programs of code whose result can depend on the
# architecture: the kernels and their NEON back end (test_kernels, int8_parity, test_arm_linux,
# fmnist_int8_parity), precision conversions (test_precision), compression and its bit-level codecs
# (test_compress), secure-aggregation arithmetic (test_aggregate), the byte-level parsers and
# writers — IDX, gzip, DEFLATE, .npy / .npz, the model file, the C export — whose plain `char`
# is unsigned on AArch64 (test_data, test_model_file), core (test_core), every public header
# compiled and linked for the target (test_link), and the quickstart. Not cross-built: the
# workflow tests test_nn, test_federated, test_split, test_compress_nn, test_custom_policies,
# test_xtensor and test_transport (356 s of the 671 s of compile jobs this build ran, for ~35 s of
# QEMU time): they compose the kernels above into training / federated / split rounds and
# policies; none does `char` arithmetic (grep: their plain `char`s are a byte read from a pipe
# and string literals); the library code they reach beyond the kernels is integer / IEEE fp32
# arithmetic with no architecture test of its own, and the arithmetic that differs on AArch64
# (FMA contraction, NEON reductions) is what test_kernels, test_precision and the two int8 parity
# checks compare. They run on x86-64 in all five host configurations (two compilers, ASan/UBSan,
# no-exceptions, scalar back end).
AARCH64_TESTS=(test_link test_core test_precision test_kernels test_data test_aggregate test_compress
               test_model_file test_arm_linux int8_parity)

step_aarch64() {
  # Compile-fail checks are -fsyntax-only runs of the same g++ 12 front end as the host
  # steps: not repeated here. Of the examples only the quickstart is built (it runs under
  # QEMU below); the others are host programs the release steps already build.
  cross_config aarch64 aarch64-linux-gnu.cmake arm64 aarch64-linux-gnu "" -DTINYLARGE_BUILD_EXAMPLES=ON \
    -DTINYLARGE_TEST_COMPILE_FAIL=OFF || return 1
  local rc=0 regex
  # test_model_file runs below, outside ctest; umbrella_complete is a text check (cmake -P).
  regex="^($(IFS='|'; echo "${AARCH64_TESTS[*]/test_model_file/umbrella_complete}")|example_quickstart)$"
  cross_build_test aarch64 "-R $regex" "${AARCH64_TESTS[@]}" fmnist_int8_parity quickstart || rc=1
  # test_model_file without its one test case that compares, byte for byte, a
  # C header holding fp32 outputs computed on x86-64 (tests/mcu/
  # model_file_selftest_data.h): fp32 sums are not bit-reproducible across
  # architectures (FMA contraction, summation order), so that golden file can
  # only match on the machine type that wrote it. Every other case runs.
  echo "+ test_model_file ~\"c_export: the Cortex-M self-test's header*\" (under qemu-aarch64)"
  if qemu-aarch64 -L /usr/aarch64-linux-gnu "$BUILD_ROOT/aarch64/tests/test_model_file" \
       "~c_export: the Cortex-M self-test's header*" >"$LOGS/aarch64.model_file.log" 2>&1; then
    tail -n 2 "$LOGS/aarch64.model_file.log"; TESTS_PASSED=$((TESTS_PASSED + 1))
  else
    cat "$LOGS/aarch64.model_file.log"; TESTS_FAILED=$((TESTS_FAILED + 1)); rc=1
  fi
  return $rc
}

step_aarch64_dotprod() {
  cross_config aarch64-dotprod aarch64-linux-gnu.cmake arm64 aarch64-linux-gnu "-march=armv8.2-a+dotprod" \
    -DTINYLARGE_BUILD_EXAMPLES=OFF || return 1
  cross_build_test aarch64-dotprod "-R ^(test_core|test_kernels|test_arm_linux|int8_parity)$" \
    test_core test_kernels test_arm_linux int8_parity fmnist_int8_parity
}

step_armhf() {
  cross_config armhf arm-linux-gnueabihf.cmake armhf arm-linux-gnueabihf "" -DTINYLARGE_BUILD_EXAMPLES=OFF || return 1
  cross_build_test armhf "-R ^(test_core|test_precision|test_kernels|test_aggregate|test_arm_linux|int8_parity)$" \
    test_core test_precision test_kernels test_aggregate test_arm_linux int8_parity fmnist_int8_parity
}

# The native build of int8_parity and fmnist_int8_parity: BUILD_ROOT/host, or the directory
# TINYLARGE_ARM_HOST_BUILD names when it is a configured -march=native build with exceptions
# (scripts/test.sh passes its gcc-release-native build, which has built both already: the
# cmake --build below then only checks that they are up to date).
HOST_DIR=$BUILD_ROOT/host
if [[ -n "${TINYLARGE_ARM_HOST_BUILD:-}" && -f "$TINYLARGE_ARM_HOST_BUILD/CMakeCache.txt" ]]; then
  host_flags=$(sed -n 's/^CMAKE_CXX_FLAGS:[A-Z]*=//p' "$TINYLARGE_ARM_HOST_BUILD/CMakeCache.txt")
  if [[ " $host_flags " == *" -march=native "* && " $host_flags " != *" -fno-exceptions "* ]]; then
    HOST_DIR=$(cd "$TINYLARGE_ARM_HOST_BUILD" && pwd)
  fi
  unset host_flags
fi

step_host() {
  local dir=$HOST_DIR
  : >"$LOGS/host.log"
  if [[ "$dir" == "$BUILD_ROOT/host" ]]; then
    logged "$LOGS/host.log" cmake -S "$ROOT" -B "$dir" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_FLAGS="-march=native" -DTINYLARGE_BUILD_TESTS=ON -DTINYLARGE_BUILD_EXAMPLES=OFF \
      -DTINYLARGE_BUILD_BENCHMARKS=OFF -DTINYLARGE_INSTALL=OFF || return 1
  else
    echo "native int8_parity and fmnist_int8_parity of $dir"
  fi
  logged "$LOGS/host.log" cmake --build "$dir" -j "$JOBS" --target int8_parity fmnist_int8_parity
}

step_parity() {
  local rc=0 ref=$BUILD_ROOT/parity-x86_64.txt
  "$HOST_DIR/tests/int8_parity" >"$ref" || rc=1
  echo "x86-64 (host, -march=native):"; cat "$ref"
  local t emu
  for t in aarch64 aarch64-dotprod armhf; do
    if [[ $t == armhf ]]; then emu=(qemu-arm -L /usr/arm-linux-gnueabihf); else emu=(qemu-aarch64 -L /usr/aarch64-linux-gnu); fi
    local out=$BUILD_ROOT/parity-$t.txt
    if ! "${emu[@]}" "$BUILD_ROOT/$t/tests/int8_parity" >"$out" 2>"$out.backend"; then
      echo "!! $t: int8_parity failed (exit status)"; rc=1
    fi
    # The build must really use its NEON back end (a lost -mfpu=neon would fall
    # back silently and still pass every other check).
    local want=neon
    [[ $t == aarch64-dotprod ]] && want=neon_dotprod
    if grep -qx "int8_parity: default_backend = $want" "$out.backend"; then
      echo "$t: default back end $want"
    else
      echo "!! $t: expected default back end $want, got: $(cat "$out.backend")"; rc=1
    fi
    if cmp -s "$ref" "$out"; then
      echo "$t: int8 outputs identical to x86-64 ($(wc -l <"$out") hashed workloads)"
    else
      echo "!! $t: int8 outputs differ from x86-64:"; diff "$ref" "$out"; rc=1
    fi
  done
  echo; echo "quickstart under qemu-aarch64:"
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$BUILD_ROOT/aarch64/examples/quickstart/quickstart" || rc=1
  return $rc
}

# The trained model's int8 inference, x86-64 vs the ARM builds (see the header).
step_fmnist() {
  local rc=0 data=${TINYLARGE_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
  local model=$BUILD_ROOT/fmnist-lenet-300-100.tlmf ref=$BUILD_ROOT/fmnist-x86_64.txt
  local host=$HOST_DIR/tests/fmnist_int8_parity t0
  rm -f "$model" "$BUILD_ROOT"/fmnist-*.txt
  t0=$(date +%s)
  if ! "$host" train "$model" --data "$data" 2>&1 | tee "$LOGS/fmnist-train.log" | sed 's/^/  /'; then
    echo "!! fmnist_int8_parity train failed"; return 1
  fi
  [[ -s "$model" ]] || { echo "!! fmnist_int8_parity train wrote no model file"; return 1; }
  echo "train + quantize + round-trip check on x86-64: $(( $(date +%s) - t0 )) s"
  "$host" infer "$model" --data "$data" >"$ref" 2>"$ref.log" || { cat "$ref.log"; rc=1; }
  echo "x86-64 (host, -march=native, $(sed -n 's/.*default_backend = //p' "$ref.log")):"; cat "$ref"
  # The comparison must be able to fail: one negated weight changes the output.
  "$host" infer "$model" --data "$data" --flip-weight effective >"$BUILD_ROOT/fmnist-flipped.txt" \
    2>"$BUILD_ROOT/fmnist-flipped.txt.log"
  if [[ -s "$ref" ]] && ! cmp -s "$ref" "$BUILD_ROOT/fmnist-flipped.txt"; then
    echo "x86-64 with one output-layer weight negated ($(sed -n 's/^infer: //p' "$BUILD_ROOT/fmnist-flipped.txt.log")): int8 outputs differ, as they must"
  else
    echo "!! a negated weight did not change the printed int8 outputs: the comparison cannot fail"; rc=1
  fi
  local t emu want
  for t in aarch64 aarch64-dotprod armhf; do
    if [[ $t == armhf ]]; then emu=(qemu-arm -L /usr/arm-linux-gnueabihf); else emu=(qemu-aarch64 -L /usr/aarch64-linux-gnu); fi
    local out=$BUILD_ROOT/fmnist-$t.txt
    t0=$(date +%s)
    if ! "${emu[@]}" "$BUILD_ROOT/$t/tests/fmnist_int8_parity" infer "$model" --data "$data" >"$out" 2>"$out.log"; then
      echo "!! $t: fmnist_int8_parity infer failed:"; cat "$out.log"; rc=1
    fi
    want=neon
    [[ $t == aarch64-dotprod ]] && want=neon_dotprod
    if ! grep -qx "fmnist_int8_parity: default_backend = $want" "$out.log"; then
      echo "!! $t: expected default back end $want, got: $(cat "$out.log")"; rc=1
    fi
    if [[ -s "$ref" ]] && cmp -s "$ref" "$out"; then
      echo "$t ($want, $(( $(date +%s) - t0 )) s under QEMU): int8 inference of the trained model identical to x86-64"
    else
      echo "!! $t: int8 inference of the trained model differs from x86-64:"; diff "$ref" "$out"; rc=1
    fi
  done
  return $rc
}

STEPS=${TINYLARGE_ARM_STEPS:-deps aarch64 aarch64-dotprod armhf host parity fmnist}
for s in $STEPS; do
  case $s in
    deps) step deps step_deps ;;
    aarch64) step aarch64 step_aarch64 ;;
    aarch64-dotprod) step aarch64-dotprod step_aarch64_dotprod ;;
    armhf) step armhf step_armhf ;;
    host) step host step_host ;;
    parity) step parity step_parity ;;
    fmnist) step fmnist step_fmnist ;;
    *) echo "unknown step '$s'"; FAILED=1 ;;
  esac
done

echo
echo "==== arm-linux summary: $(( $(date +%s) - T_ALL )) s wall ===="
printf '%s\n' "${RESULTS[@]}"
echo "ctest under QEMU: $TESTS_PASSED passed, $TESTS_FAILED failed"
exit $FAILED
