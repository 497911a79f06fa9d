# Sourced by scripts/test.sh: the firmware example of examples/mcu on Cortex-M4F and
# Cortex-M3 under QEMU — model generated at test time, predictions and int8 logits equal
# to the host's, size report and the ≤ 4 KiB runtime target (scripts/mcu_example.sh).
register_step mcu-example bash "$ROOT/scripts/mcu_example.sh" "$BUILD_ROOT/mcu-example"
# The convolutional examples: the LeNet-5-like CNN, the DS-CNN and a residual CNN (add records)
# bound from int8 model files on Cortex-M3, M4F and M55 (Helium) under QEMU, logits equal to the
# host's, and each with its parameters compiled in (scripts/mcu_cnn.sh).
register_step mcu-cnn bash "$ROOT/scripts/mcu_cnn.sh" "$BUILD_ROOT/mcu-cnn"
