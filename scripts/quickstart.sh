#!/usr/bin/env bash
# scripts/quickstart.sh — README's first command: set up, build and run the main example.
#
#   bash scripts/quickstart.sh [ARGS...]     ARGS are passed to the example
#
# Installs what is missing (scripts/deps.sh, groups "build data"), configures a
# Release build (-O2 -march=native, the configuration scripts/test.sh tests as
# <compiler>-release-native) in build-quickstart/, builds only the example
# target and runs it.
#
# Environment: TINYLARGE_CXX (default g++), TINYLARGE_JOBS (default 2),
#              TINYLARGE_SKIP_DEPS=1 (do not install anything).
set -euo pipefail

# The main example: the flagship end-to-end split-learning run (examples/split_fashion_mnist).
# To run another example, change these two lines (the CMake target and its deps.sh groups).
EXAMPLE_TARGET=split_fashion_mnist
EXAMPLE_DEPS=(build data)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${TINYLARGE_QUICKSTART_BUILD:-$ROOT/build-quickstart}
CXX_COMPILER=${TINYLARGE_CXX:-g++}
JOBS=${TINYLARGE_JOBS:-2}

bash "$ROOT/scripts/deps.sh" "${EXAMPLE_DEPS[@]}"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
echo "quickstart: configuring $BUILD"
cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" --log-level=WARNING \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$CXX_COMPILER" \
  -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DCMAKE_CXX_FLAGS="-march=native" \
  -DTINYLARGE_BUILD_TESTS=OFF -DTINYLARGE_BUILD_EXAMPLES=ON -DTINYLARGE_BUILD_BENCHMARKS=OFF
echo "quickstart: building target $EXAMPLE_TARGET"
cmake --build "$BUILD" --target "$EXAMPLE_TARGET" -j "$JOBS"

# The executable's location is up to the example's CMakeLists; find it.
exe=$(find "$BUILD" -type f -name "$EXAMPLE_TARGET" -perm -u+x -not -path '*/CMakeFiles/*' | head -n 1)
if [[ -z "$exe" ]]; then
  echo "quickstart: built target '$EXAMPLE_TARGET' but found no executable of that name under $BUILD" >&2
  exit 1
fi
echo "quickstart: running ${exe#"$ROOT"/}"
echo
exec "$exe" "$@"
