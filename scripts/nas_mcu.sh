#!/usr/bin/env bash
# A searched model on Cortex-M4 under QEMU (docs/nas.md):
#  0. without MODEL_HEADER: nas_transfer (host) runs a short search (Cortex-M4 profile, one
#     seed, budget 20, supernet on 4 000 source images for one epoch) and emits its best model;
#  1. nas_deploy (host) compiles the emitted model header MODEL_HEADER (written by
#     `nas_transfer --header FILE`), quantizes it with the library's PTQ and exports the int8
#     network and 16 target test images (nas_mcu.h) with the host's int8 logits
#     (nas_mcu_expected.txt);
#  2. examples/nas_transfer/firmware.cpp is cross-built for Cortex-M4F (arm-none-eabi-g++,
#     -Os, the start-up code and linker script of tests/mcu) and run under qemu-system-arm
#     (mps2-an386): exit 0 and int8 logits identical to the host's;
#  3. instructions executed per dense layer of one inference (a -DNAS_PROFILE build, counted
#     in a QEMU single-step trace by scripts/mcu_trace_count.sh; instructions, not cycles);
#  4. size report against the Cortex-M4 profile of nas::cortex_m4(): flash of the deployed
#     model (code + .data initialisers + int8 network) ≤ 256 KiB and RAM (.data + .bss +
#     measured stack) ≤ 64 KiB; the embedded test images (.tl_data) are reported apart.
#  5. without MODEL_HEADER, also a model with a convolutional stem: a second short search over
#     the space with a stem of 1-2 conv layers (kernels 3 / 5, 4 or 8 channels; budget 10,
#     supernet on 2 000 source images for one epoch) and steps 1-4 for its best model, which the
#     firmware runs as the library's quantized_network (conv2d_s8, max pooling, dense_s8) bound
#     to the exported arrays; its instructions are counted for the whole inference
#     (NAS_MCU_CONV=0 skips it).
# Usage: scripts/nas_mcu.sh [build-root] [MODEL_HEADER]
#        (needs arm-none-eabi-g++, qemu-system-arm and, without MODEL_HEADER, Fashion-MNIST)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/build-nas-mcu}")
cxx=${CXX:-c++}
finalists=${NAS_MCU_FINALISTS:-2}  # front members deployed beside the best (their instruction counts and sizes)
mkdir -p "$out/gen"
if [[ $# -ge 2 ]]; then
  header=$(realpath "$2")
else
  # 0. A short search on the host; its best model's header.
  "$cxx" -std=c++20 -O2 -I"$root/include" "$root/examples/nas_transfer/main.cpp" -o "$out/nas_transfer" -lz \
    2> "$out/nas_transfer.build.log" || { cat "$out/nas_transfer.build.log"; exit 1; }
  header=$out/nas_model.hpp
  rm -f "$out"/nas_model_finalist_*.hpp
  (cd "$out" && ./nas_transfer --budget 20 --seeds 1 --source-n 4000 --source-epochs 1 --json "$out/nas_front.json" \
     --svg "$out/nas_front.svg" --header "$header" --finalists "$finalists" > "$out/nas_transfer.log") \
    || { cat "$out/nas_transfer.log"; exit 1; }
  grep -E '^(\| NAS best|\| LeNet-300-100 int8|NAS best|finalist )' "$out/nas_transfer.log" | sed 's/^/nas-mcu: search: /'
fi

# Steps 1-4 for one emitted header, in directory $dir; messages prefixed by $tag.
deploy_and_run() {  # header dir tag
  local header=$1 dir=$2 tag=$3
  mkdir -p "$dir/gen"
  # 1. Host: compile the emitted header, PTQ, export.
  "$cxx" -std=c++20 -O2 -I"$root/include" -DNAS_MODEL_HEADER="\"$header\"" "$root/examples/nas_transfer/deploy.cpp" \
    -o "$dir/nas_deploy" -lz 2> "$dir/nas_deploy.build.log" || { cat "$dir/nas_deploy.build.log"; exit 1; }
  "$dir/nas_deploy" --mcu-out "$dir/gen" | tee "$dir/nas_deploy.log"

  # 2. Cortex-M4F under QEMU.
  firmware() {  # elf [extra flags]
    local elf=$1
    shift
    arm-none-eabi-g++ -std=c++20 -Os -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffunction-sections \
      -fdata-sections -fno-exceptions -fno-rtti -fno-threadsafe-statics -fno-use-cxa-atexit -Wall -Wextra -Wshadow \
      -I"$root/include" -I"$root/tests/mcu" -I"$dir/gen" -DNAS_MODEL_HEADER="\"$header\"" "$@" \
      "$root/examples/nas_transfer/firmware.cpp" "$root/tests/mcu/startup.cpp" -nostartfiles --specs=nano.specs \
      --specs=nosys.specs -Wl,--gc-sections -T"$root/tests/mcu/mps2.ld" -o "$elf"
  }
  firmware "$dir/nas_firmware.elf"
  if timeout 300 qemu-system-arm -M mps2-an386 -display none -monitor none -serial none -chardev stdio,id=sh0 \
       -semihosting-config enable=on,target=native,chardev=sh0 -kernel "$dir/nas_firmware.elf" > "$dir/firmware.txt"; then
    echo "nas-mcu: ${tag}firmware on cortex-m4 (mps2-an386): exit 0"
  else
    echo "nas-mcu: ${tag}firmware on cortex-m4 FAILED"; cat "$dir/firmware.txt"; status=1
  fi
  if diff <(grep -v '^device:' "$dir/firmware.txt") "$dir/gen/nas_mcu_expected.txt" > "$dir/firmware.diff"; then
    echo "nas-mcu: ${tag}predictions and int8 logits of $(grep -vc '^device:' "$dir/firmware.txt") images identical to the host's quantized_network"
  else
    echo "nas-mcu: ${tag}firmware output differs from the host's:"; cat "$dir/firmware.diff"; status=1
  fi
  grep '^device:' "$dir/firmware.txt" | sed "s/^/nas-mcu: $tag/"

  # 3. Instructions per layer of one inference.
  firmware "$dir/nas_firmware_profile.elf" -DNAS_PROFILE
  if bash "$root/scripts/mcu_trace_count.sh" mps2-an386 "$dir/nas_firmware_profile.elf" "$dir/profile.txt" > "$dir/counts.txt"; then
    # MACs per dense layer from the exported table ("{n, k, macs, …}" lines of nas_mcu.h: n·k, or a
    # CSR layer's stored entries).
    awk -v tag="$tag" 'NR == FNR { if ($1 ~ /^\{[0-9]+,$/) { gsub(/,/, "", $3); macs[m++] = $3 } next }
         $1 == "region" { total += $3; tm += macs[$2]
           printf "nas-mcu: " tag "layer %d: %d instructions for %d MACs (%.2f per MAC)\n", $2, $3, macs[$2], $3 / macs[$2] }
         END { printf "nas-mcu: " tag "one inference: %d instructions for %d MACs (%.2f per MAC; QEMU counts instructions, not cycles)\n",
                      total, tm, total / tm }' "$dir/gen/nas_mcu.h" "$dir/counts.txt"
  else
    echo "nas-mcu: ${tag}instruction count FAILED"; cat "$dir/counts.txt"; status=1
  fi

  # 4. Sizes against the profile (256 KiB flash, 64 KiB RAM).
  stack=$(sed -n 's/.*stack high water \([0-9]*\) B.*/\1/p' "$dir/firmware.txt")
  arm-none-eabi-size -A "$dir/nas_firmware.elf" | awk -v tag="$tag" -v stack="${stack:-0}" '
    $1 == ".isr_vector" || $1 == ".text" || $1 == ".ARM.exidx" || $1 == ".init_array" { code += $2 }
    $1 == ".data" { data = $2 } $1 == ".bss" { bss = $2 } $1 == ".tl_weights" { w = $2 } $1 == ".tl_data" { d = $2 }
    END {
      flash = code + data + w; ram = data + bss + stack
      printf "nas-mcu: " tag "flash %d B (code %d, .data init %d, int8 network %d) of 262144, + %d B of embedded test images; RAM %d B (.data+.bss %d, stack %d) of 65536\n",
             flash, code, data, w, d, ram, data + bss, stack
      exit !(flash <= 262144 && ram <= 65536)
    }' || { echo "nas-mcu: ${tag}the firmware exceeds the Cortex-M4 profile"; status=1; }
}

status=0
deploy_and_run "$header" "$out" ""
# The finalists of the search (other all-int8 front members): the same deployment, their instruction
# counts and sizes beside the best model's.
for f in "${header%.hpp}"_finalist_*.hpp; do
  [[ -f $f ]] || continue
  k=${f##*_finalist_}; k=${k%.hpp}
  deploy_and_run "$f" "$out/finalist-$k" "finalist $k: "
done
# 5. A model with a conv stem (kernel sizes in the space): a short search that keeps 1-2 conv layers.
if [[ $# -lt 2 && ${NAS_MCU_CONV:-1} != 0 ]]; then
  conv_header=$out/nas_conv_model.hpp
  (cd "$out" && ./nas_transfer --convs 2 --min-convs 1 --conv-channels 4,8 --budget 10 --seeds 1 --population 8 --sample 3 \
     --source-n 2000 --source-epochs 1 --finetune-epochs 0 --json "$out/nas_conv_front.json" --svg "" \
     --header "$conv_header" > "$out/nas_conv_transfer.log") || { cat "$out/nas_conv_transfer.log"; exit 1; }
  grep -E '^(search space|\| NAS best)' "$out/nas_conv_transfer.log" | sed 's/^/nas-mcu: conv search: /'
  deploy_and_run "$conv_header" "$out/conv" "conv stem: "
fi
exit $status
