# Sourced by scripts/test.sh: the packages (issue 9) — install into an empty prefix,
# build test_package/ against it with find_package (g++ and clang++) and with
# pkg-config only, check the Conan recipe compiles and the vcpkg port's manifest,
# versions and features agree with CMakeLists.txt (scripts/packaging_test.sh).
register_step packaging bash "$ROOT/scripts/packaging_test.sh" "$BUILD_ROOT/packaging"
