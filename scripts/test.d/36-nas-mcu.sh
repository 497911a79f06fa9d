# Sourced by scripts/test.sh: a model found by the architecture search (examples/nas_transfer,
# short search on Fashion-MNIST under the Cortex-M4 profile) emitted as a sequential<> header,
# deployed as int8 by the library's PTQ and run on Cortex-M4F under QEMU: int8 logits equal to
# the host's, flash and RAM within the profile; then the same for the best model of a second short
# search whose space keeps a convolutional stem (scripts/nas_mcu.sh, docs/nas.md).
register_step nas-mcu bash "$ROOT/scripts/nas_mcu.sh" "$BUILD_ROOT/nas-mcu"
