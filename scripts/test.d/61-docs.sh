# Sourced by scripts/test.sh: the documentation (issue 9).
#  1. Doxygen over include/, README.md and docs/ (Doxyfile): any warning fails
#     (WARN_AS_ERROR = FAIL_ON_WARNINGS, and the warning log must be empty);
#  2. the code quoted by docs/ equals the marked regions of the tests that compile
#     and run it (scripts/check_doc_snippets.py; tests/test_custom_policies.cpp);
#  3. scripts/plots.py draws all three figures: from the committed results
#     (benchmarks/results/) and from short real runs of the split and federated
#     examples (the binaries of gcc-release-native, built here when absent).
step_docs() {
  local out=$BUILD_ROOT/docs log=$LOG_DIR/docs.log version ok=0
  rm -rf "$out"
  mkdir -p "$out"
  : >"$log"
  if ! command -v doxygen >/dev/null 2>&1; then
    echo "!! doxygen not found: bash scripts/deps.sh docs"
    return 1
  fi
  version=$(awk '/^project\(tinylarge/ { p = 1 } p && $1 == "VERSION" { print $2; exit }' "$ROOT/CMakeLists.txt")
  echo "doxygen $(doxygen --version), tinylarge $version -> $out/html"
  # Doxyfile, with this run's output directory and version; warnings go to stderr.
  if (cd "$ROOT" && { cat Doxyfile; echo "OUTPUT_DIRECTORY = $out"; echo "PROJECT_NUMBER = $version"; } |
        doxygen - >"$out/doxygen.out" 2>"$out/warnings.log"); then
    if [[ -s "$out/warnings.log" ]]; then
      echo "!! doxygen warnings:"; cat "$out/warnings.log"; ok=1
    elif [[ ! -f "$out/html/index.html" ]]; then
      echo "!! doxygen wrote no html/index.html"; ok=1
    else
      echo "doxygen: no warnings, $(find "$out/html" -name '*.html' | wc -l) pages"
    fi
  else
    echo "!! doxygen failed:"; cat "$out/doxygen.out" "$out/warnings.log"
    ok=1
  fi

  /usr/bin/python3 "$ROOT/scripts/check_doc_snippets.py" "$ROOT" || ok=1

  local ex=$BUILD_ROOT/gcc-release-native/examples
  local split=$ex/split_fashion_mnist/split_fashion_mnist fed=$ex/federated_fashion_mnist/federated_fashion_mnist
  if [[ ! -x "$split" || ! -x "$fed" ]]; then
    echo "examples not built by gcc-release-native: building the two in $out/examples"
    local generator=()
    command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
    run_logged "$log" cmake -S "$ROOT" -B "$out/examples" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER="$GXX" -DTINYLARGE_BUILD_TESTS=OFF -DTINYLARGE_BUILD_EXAMPLES=ON || return 1
    run_logged "$log" cmake --build "$out/examples" -j "$JOBS" --target split_fashion_mnist federated_fashion_mnist \
      || return 1
    split=$out/examples/examples/split_fashion_mnist/split_fashion_mnist
    fed=$out/examples/examples/federated_fashion_mnist/federated_fashion_mnist
  fi
  run_logged "$log" "$split" --train 1000 --test 300 --rounds 2 --only psl --json "$out/split.json" || ok=1
  run_logged "$log" "$fed" --rounds 3 --fedsgd-rounds 3 --skip-robust --skip-dp --json "$out/federated.json" || ok=1
  # The wireless-fleet mode (per-device cuts, capability clusters): runs, and writes JSON that parses.
  run_logged "$log" "$split" --fleet --train 1000 --test 300 --rounds 1 --json "$out/fleet.json" || ok=1
  run_logged "$log" /usr/bin/python3 -m json.tool "$out/fleet.json" || ok=1
  /usr/bin/python3 "$ROOT/scripts/plots.py" --out "$out/plots" --split "$out/split.json" \
    --federated "$out/federated.json" --require accuracy compression benchmarks selection partitions fleet || ok=1
  return $ok
}
register_step docs step_docs
