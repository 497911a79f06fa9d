#!/usr/bin/env bash
# scripts/packaging_test.sh [BUILD_DIR] — what can be tested of the packages without a
# registry (docs/packaging.md):
#   1. install tinylarge into an empty prefix and check the tree (headers, CMake package,
#      pkg-config file, no binaries);
#   2. build test_package/ (the project `conan create` and a vcpkg user build) with
#      find_package against that prefix, with g++ and clang++-14, and run it;
#   3. compile test_package.cpp with `pkg-config --cflags --libs tinylarge` only, run it,
#      and again after moving the prefix elsewhere (the .pc file is relocatable);
#   4. the .pc file of a TINYLARGE_USE_XSIMD=OFF configuration drops xsimd and defines TINYLARGE_USE_XSIMD=0;
#   5. conanfile.py and test_package/conanfile.py compile (python -m py_compile);
#      ports/tinylarge/vcpkg.json parses and has the required fields; versions, options,
#      features and license agree across CMakeLists.txt, conanfile.py, vcpkg.json and
#      portfile.cmake (the Python block at the end).
# Exit status non-zero on the first failure. Takes well under a minute on 2 cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$ROOT/build-test/packaging}
GXX=${TINYLARGE_GXX:-g++}
CLANGXX=${TINYLARGE_CLANGXX:-clang++-14}
PY=/usr/bin/python3
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

fail() { echo "packaging_test: FAILED: $*" >&2; exit 1; }
step() { echo "---- packaging_test: $*"; }

rm -rf "$OUT"
mkdir -p "$OUT"
PREFIX=$OUT/prefix

# 1. Install into an empty prefix.
step "install into $PREFIX"
cmake -S "$ROOT" -B "$OUT/cfg" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$GXX" \
  -DTINYLARGE_BUILD_TESTS=OFF -DTINYLARGE_BUILD_EXAMPLES=OFF -DTINYLARGE_BUILD_BENCHMARKS=OFF \
  -DTINYLARGE_INSTALL=ON >"$OUT/cfg.log" 2>&1 || { cat "$OUT/cfg.log"; fail "configure"; }
cmake --install "$OUT/cfg" --prefix "$PREFIX" >"$OUT/install.log" 2>&1 || { cat "$OUT/install.log"; fail "install"; }
for f in include/tinylarge/tinylarge.hpp include/tinylarge/freestanding.hpp \
         share/cmake/tinylarge/tinylargeConfig.cmake share/cmake/tinylarge/tinylargeConfigVersion.cmake \
         share/cmake/tinylarge/tinylargeTargets.cmake share/pkgconfig/tinylarge.pc; do
  [[ -f "$PREFIX/$f" ]] || fail "not installed: $f"
done
n_src=$(find "$ROOT/include" -name '*.hpp' | wc -l)
n_inst=$(find "$PREFIX/include" -name '*.hpp' | wc -l)
[[ "$n_src" -eq "$n_inst" ]] || fail "installed $n_inst headers, the source tree has $n_src"
binaries=$(find "$PREFIX" -type f \( -name '*.a' -o -name '*.so*' -o -perm -u+x \) | head -n 5)
[[ -z "$binaries" ]] || fail "a header-only install contains binaries or executables: $binaries"
[[ ! -d "$PREFIX/lib" ]] || fail "a header-only install must not create lib/ (arch-independent)"
echo "installed $n_inst headers, CMake package and tinylarge.pc"

# 2. test_package through find_package, both compilers.
for cxx in "$GXX" "$CLANGXX"; do
  name=$(basename "$cxx")
  step "test_package (find_package) with $name"
  dir=$OUT/test_package-$name
  cmake -S "$ROOT/test_package" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_PREFIX_PATH="$PREFIX" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$dir.log" 2>&1 \
    || { cat "$dir.log"; fail "configure test_package with $name"; }
  found=$(sed -n 's/^tinylarge_DIR:PATH=//p' "$dir/CMakeCache.txt")
  [[ "$(realpath "$found")" == "$(realpath "$PREFIX")"/share/cmake/tinylarge ]] \
    || fail "test_package found tinylarge in '$found', not in the fresh prefix"
  cmake --build "$dir" >>"$dir.log" 2>&1 || { cat "$dir.log"; fail "build test_package with $name"; }
  "$dir/test_package" || fail "test_package ($name) exited non-zero"
done

# 3. pkg-config consumer, then the same after moving the prefix.
check_pkg_config() {  # check_pkg_config PREFIX LABEL
  local prefix=$1 label=$2 cflags libs
  export PKG_CONFIG_PATH=$prefix/share/pkgconfig
  pkg-config --exists --print-errors tinylarge || fail "pkg-config does not find tinylarge in $prefix"
  [[ "$(pkg-config --modversion tinylarge)" == "$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$OUT/cfg/CMakeCache.txt")" ]] \
    || fail "pkg-config version differs from the CMake project version"
  cflags=$(pkg-config --cflags tinylarge)
  libs=$(pkg-config --libs tinylarge)
  echo "pkg-config --cflags: $cflags"
  echo "pkg-config --libs:   $libs"
  local incdir
  incdir=$(pkg-config --variable=includedir tinylarge)
  [[ "$(realpath "$incdir")" == "$(realpath "$prefix/include")" ]] || fail "includedir $incdir is not $prefix/include"
  [[ " $cflags " == *" -DTINYLARGE_USE_XSIMD=1 "* ]] || fail "Cflags lack -DTINYLARGE_USE_XSIMD=1"
  [[ " $cflags " != *" -std="* ]] || fail "Cflags must not carry -std="
  [[ " $libs " == *" -lz "* ]] || fail "Libs lack -lz (zlib, through Requires)"
  [[ "$(pkg-config --variable=cxx_std tinylarge)" == 20 ]] || fail "cxx_std variable is not 20"
  # shellcheck disable=SC2086
  "$GXX" -std=c++20 -O1 $cflags "$ROOT/test_package/test_package.cpp" -o "$OUT/pc_consumer_$label" $libs \
    || fail "compile with pkg-config flags ($label)"
  "$OUT/pc_consumer_$label" || fail "pkg-config consumer ($label) exited non-zero"
}
step "pkg-config consumer"
check_pkg_config "$PREFIX" installed
step "pkg-config consumer after moving the prefix"
mv "$PREFIX" "$OUT/moved-prefix"
check_pkg_config "$OUT/moved-prefix" moved
mv "$OUT/moved-prefix" "$PREFIX"

# 4. Without xsimd, no xsimd in Requires, and the define says 0 (the headers would otherwise use an
#    xsimd found on the include path).
step "tinylarge.pc with TINYLARGE_USE_XSIMD=OFF"
cmake -S "$ROOT" -B "$OUT/cfg-noxsimd" "${generator[@]}" -DCMAKE_CXX_COMPILER="$GXX" -DTINYLARGE_USE_XSIMD=OFF \
  -DTINYLARGE_BUILD_TESTS=OFF -DTINYLARGE_BUILD_EXAMPLES=OFF -DTINYLARGE_INSTALL=ON >"$OUT/cfg-noxsimd.log" 2>&1 \
  || { cat "$OUT/cfg-noxsimd.log"; fail "configure without xsimd"; }
pc=$OUT/cfg-noxsimd/tinylarge.pc
grep -q '^Requires: xtl xtensor zlib$' "$pc" || fail "no-xsimd .pc Requires: $(grep '^Requires' "$pc")"
grep -q '^Cflags: -I${includedir} -DTINYLARGE_USE_XSIMD=0$' "$pc" || fail "no-xsimd .pc Cflags: $(grep '^Cflags' "$pc")"
grep -q '^use_xsimd=0$' "$pc" || fail "no-xsimd .pc use_xsimd is not 0"

# 5. The recipes.
step "recipes: py_compile, vcpkg.json, consistency"
PYTHONPYCACHEPREFIX="$OUT/pycache" "$PY" -m py_compile "$ROOT/conanfile.py" "$ROOT/test_package/conanfile.py" \
  || fail "py_compile of the Conan recipes"
"$PY" - "$ROOT" <<'EOF' || fail "recipe consistency checks"
import ast, json, pathlib, re, sys

root = pathlib.Path(sys.argv[1])
errors = []

def check(ok, what):
    if not ok:
        errors.append(what)

cmake = (root / "CMakeLists.txt").read_text()
m = re.search(r"project\(tinylarge\s+VERSION\s+([0-9.]+)", cmake)
cmake_version = m.group(1) if m else None
check(cmake_version is not None, "no project(tinylarge VERSION x.y.z) in CMakeLists.txt")
cmake_options = set(re.findall(r"^\s*option\((\w+)", cmake, re.M))

# conanfile.py: read its class attributes without importing conan (not installed here).
tree = ast.parse((root / "conanfile.py").read_text())
classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
check(len(classes) == 1, "conanfile.py must define exactly one class")
conan = {}
methods = set()
for node in classes[0].body:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        try:
            conan[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            pass
    elif isinstance(node, ast.FunctionDef):
        methods.add(node.name)
check(conan.get("name") == "tinylarge", "conanfile.py: name")
check(conan.get("version") == cmake_version,
      f"conanfile.py version {conan.get('version')} != CMakeLists.txt {cmake_version}")
check(conan.get("package_type") == "header-library", "conanfile.py: package_type must be header-library")
for meth in ("requirements", "package_id", "validate", "package", "package_info", "layout"):
    check(meth in methods, f"conanfile.py: no {meth}()")
check(set(conan.get("options", {})) == set(conan.get("default_options", {})),
      "conanfile.py: options and default_options name different options")
conan_src = (root / "conanfile.py").read_text()
check("self.info.clear()" in conan_src, "conanfile.py: package_id must clear info")
check("check_min_cppstd(self, 20)" in conan_src, "conanfile.py: validate must check_min_cppstd(self, 20)")
for dep in ("xtensor/", "xtl/", "xsimd/", "zlib/"):
    check(f'"{dep}' in conan_src, f"conanfile.py: does not require {dep[:-1]}")
check('"TINYLARGE_USE_XSIMD=1"' in conan_src, "conanfile.py: with_xsimd must define TINYLARGE_USE_XSIMD=1")
check('"TINYLARGE_USE_XSIMD=0"' in conan_src, "conanfile.py: with_xsimd=False must define TINYLARGE_USE_XSIMD=0")
check('"pkg_config_custom_content"' in conan_src and "cxx_std=20" in conan_src and "use_xsimd=" in conan_src,
      "conanfile.py: the generated tinylarge.pc must carry cxx_std and use_xsimd (docs/packaging.md)")
check('"cmake_target_name", "tinylarge::tinylarge"' in conan_src, "conanfile.py: cmake_target_name")

# vcpkg.json: required fields, features used by portfile.cmake.
port = root / "ports" / "tinylarge"
manifest = json.loads((port / "vcpkg.json").read_text())
for field in ("name", "version", "description", "license", "dependencies", "features"):
    check(field in manifest, f"vcpkg.json: no '{field}'")
check(manifest.get("name") == "tinylarge", "vcpkg.json: name")
check(manifest.get("version") == cmake_version,
      f"vcpkg.json version {manifest.get('version')} != CMakeLists.txt {cmake_version}")
dep_names = {d if isinstance(d, str) else d["name"] for d in manifest.get("dependencies", [])}
for dep in ("xtensor", "xtl", "zlib", "vcpkg-cmake", "vcpkg-cmake-config"):
    check(dep in dep_names, f"vcpkg.json: no dependency {dep}")
host_tools = [d for d in manifest.get("dependencies", []) if isinstance(d, dict) and d["name"].startswith("vcpkg-")]
check(all(d.get("host") is True for d in host_tools), "vcpkg.json: vcpkg-cmake* must be host dependencies")
portfile = (port / "portfile.cmake").read_text()
m = re.search(r"vcpkg_check_features\(.*?FEATURES(.*?)\)", portfile, re.S)
check(m is not None, "portfile.cmake: no vcpkg_check_features(... FEATURES ...)")
pairs = re.findall(r"([\w-]+)\s+(\w+)", m.group(1)) if m else []
check(set(f for f, _ in pairs) == set(manifest.get("features", {})),
      f"portfile features {sorted(f for f, _ in pairs)} != vcpkg.json features {sorted(manifest.get('features', {}))}")
for _, opt in pairs:
    check(opt in cmake_options, f"portfile.cmake maps a feature to {opt}, which CMakeLists.txt has no option() for")
for d in manifest.get("default-features", []):
    check(d in manifest.get("features", {}), f"vcpkg.json: default feature {d} is not a feature")
for needle in ("set(VCPKG_BUILD_TYPE release)", "vcpkg_cmake_configure(", "vcpkg_cmake_install()",
               "vcpkg_cmake_config_fixup(", "-DTINYLARGE_BUILD_TESTS=OFF", "-DTINYLARGE_BUILD_EXAMPLES=OFF"):
    check(needle in portfile, f"portfile.cmake: no {needle}")
check((port / "usage").is_file(), "ports/tinylarge/usage missing")
for opt in re.findall(r"-D(TINYLARGE_\w+)=", portfile):
    check(opt in cmake_options, f"portfile.cmake sets {opt}, which CMakeLists.txt has no option() for")

# License: both recipes agree with the repository (null / None while there is no LICENSE file).
has_license_file = any(root.glob("LICENSE*"))
if has_license_file:
    check(isinstance(manifest.get("license"), str) and manifest.get("license") == conan.get("license"),
          "a LICENSE file exists: set the same SPDX id in conanfile.py and vcpkg.json")
else:
    check(manifest.get("license") is None and conan.get("license") is None,
          "no LICENSE file: the recipes must not claim a license (null / None)")

for e in errors:
    print("check:", e)
print(f"recipes: {'OK' if not errors else str(len(errors)) + ' problem(s)'} (version {cmake_version})")
sys.exit(1 if errors else 0)
EOF

echo "packaging_test: OK"
