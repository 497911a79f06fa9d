# Sourced by scripts/test.sh: instructions per int8 MAC on Cortex-M4, DSP path
# vs plain path, from a QEMU single-step trace (uses the mcu-cortex-m build).
register_step mcu-mac-count bash "$ROOT/scripts/mcu_mac_count.sh" "$BUILD_ROOT/mcu"
