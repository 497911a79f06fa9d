# Sourced by scripts/test.sh: ARM Linux hosts (issue 10) — the tests of architecture-dependent
# code cross-built for aarch64 (the workflow tests run on x86-64 only: see AARCH64_TESTS in
# scripts/arm_linux_test.sh), the kernel tests with +dotprod, the kernel/precision tests for armhf, run
# under qemu-user; int8 outputs (kernel workloads, the quickstart, and the
# Fashion-MNIST LeNet-300-100 trained once on x86-64, all 10 000 test images)
# compared byte for byte with x86-64.
# The host side of the parity checks (int8_parity, fmnist_int8_parity at -march=native) is
# built by gcc-release-native already: the script reuses that build when it is there.
step_arm_linux() {
  TINYLARGE_ARM_HOST_BUILD="$BUILD_ROOT/gcc-release-native" bash "$ROOT/scripts/arm_linux_test.sh" "$BUILD_ROOT/arm"
}
register_step arm-linux step_arm_linux
