# Sourced by scripts/test.sh: instructions per int8 MAC of the dense, conv and depthwise kernels
# on Cortex-M4 (scalar, DSP) and Cortex-M55 (scalar, DSP, Helium) from QEMU single-step traces,
# next to CMSIS-NN's figures; fails unless the back ends agree bit for bit and Helium needs
# ≥ 2× fewer instructions per MAC than the M4 DSP path on the conv (scripts/mcu_mac_count.sh).
register_step mcu-mac-count bash "$ROOT/scripts/mcu_mac_count.sh" "$BUILD_ROOT/mcu"
