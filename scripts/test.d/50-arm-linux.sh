# Sourced by scripts/test.sh: ARM Linux hosts (issue 10) — the suite cross-built
# for aarch64 (and with +dotprod) and the kernel/precision tests for armhf, run
# under qemu-user; int8 outputs compared byte for byte with x86-64.
register_step arm-linux bash "$ROOT/scripts/arm_linux_test.sh" "$BUILD_ROOT/arm"
