#!/usr/bin/env bash
# Split learning between a Cortex-M4F firmware under QEMU (mps2-an386,
# tests/mcu/split_device.cpp: the device segment dense<16,32> + relu, fp32 master weights
# in static RAM) and the library's PSL / SplitFedV1 deployment server on the host
# (tests/transport/split_serial_host.cpp, workflow/split_deploy.hpp over
# serial::serial_transport), over the emulated UART (`-serial tcp:`), with bytes dropped,
# flipped or followed by garbage in both directions. The host then runs the same fleet in
# process (the deployment's own host client over in_process endpoints) and the final
# device and server segments must be bit-identical. Two runs: PSL with the fp32 uplink codec
# and a g++-built host, SplitFedV1 with the int8 uplink codec and a clang++-built host
# (different fault seeds), whose server is killed in round 2 and resumed from its checkpoint (the firmware redoes the
# round; the result must still equal the uninterrupted in-process run).
# Reports the firmware's flash / RAM; the link fails if anything uses the heap
# (tests/mcu/mps2.ld).
# Usage: scripts/mcu_split.sh [build-dir]   (needs scripts/deps.sh first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu-split}
mkdir -p "$out"

# The host programs compile while the firmware builds (the three are independent).
# TINYLARGE_USE_XSIMD=0: the host's fp32 GEMMs are the scalar kernels, which sum in the
# order the Cortex-M4's do; -ffp-contract=off on both sides (no fused multiply-adds).
hosts=()
pids=()
run=0
for cxx in g++ "${TINYLARGE_CLANGXX:-clang++-14}"; do
  run=$((run + 1))
  hosts+=("$out/split_serial_host-$run")
  "$cxx" -std=c++20 -O2 -ffp-contract=off -DTINYLARGE_USE_XSIMD=0 -Wall -Wextra -Werror -I"$root/include" \
    "$root/tests/transport/split_serial_host.cpp" -o "$out/split_serial_host-$run" -pthread \
    > "$out/host-build-$run.log" 2>&1 &
  pids+=($!)
done
cmake -S "$root/tests/mcu" -B "$out/cortex-m4" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU=cortex-m4 > /dev/null
cmake --build "$out/cortex-m4" --target split_device split_device_int8 -j"${TINYLARGE_JOBS:-1}" > "$out/build.log" 2>&1 \
  || { cat "$out/build.log"; exit 1; }
for i in 0 1; do
  wait "${pids[$i]}" || { echo "mcu-split: building the host program failed:"; cat "$out/host-build-$((i + 1)).log"; exit 1; }
done

status=0
run=0
for codec in fp32 int8; do
  run=$((run + 1))
  host=${hosts[$((run - 1))]}
  elf=$out/cortex-m4/split_device.elf
  [[ $codec == int8 ]] && elf=$out/cortex-m4/split_device_int8.elf
  portfile=$out/port-$run
  rm -f "$portfile"
  # 15 of 100000 bytes damaged each way: about a dozen faults per run on frames of 1-2 KB. The
  # fault generator's seeds (3, 5) draw a drop, a bit flip and garbage among their first faults
  # (within the first 23 000 bytes, a run moves more than 35 000): the host checks all three came.
  seed=$((run == 1 ? 3 : 5))
  # Run 2 also kills the server (simulated) after step 2 of round 2; a new server resumes from
  # its checkpoint over the same link, and the firmware redoes the round (restart epoch 1).
  # Run 1 is PSL (psl_deployment's server), run 2 SplitFedV1: the same device frames.
  crash=(--scheme psl)
  [[ $run == 2 ]] && crash=(--scheme splitfed_v1 --checkpoint "$out/split-$run.ckpt" --crash-round 2 --crash-after 2)
  timeout 60 "$host" --port-file "$portfile" --rounds 3 --steps 3 --uplink "$codec" --fault-per-100k 15 \
    --seed "$seed" "${crash[@]}" > "$out/host-$run.txt" 2>&1 &
  host_pid=$!
  for _ in $(seq 100); do [[ -s $portfile ]] && break; sleep 0.1; done
  if [[ ! -s $portfile ]]; then
    echo "mcu-split: the host program did not listen"; cat "$out/host-$run.txt"; kill "$host_pid" 2>/dev/null || true
    status=1; continue
  fi
  port=$(cat "$portfile")
  qemu_rc=0
  timeout 60 qemu-system-arm -M mps2-an386 -display none -monitor none \
    -serial "tcp:127.0.0.1:$port" -chardev stdio,id=sh0 -semihosting-config enable=on,target=native,chardev=sh0 \
    -kernel "$elf" > "$out/device-$run.txt" 2>&1 || qemu_rc=$?
  host_rc=0
  wait "$host_pid" || host_rc=$?
  echo "---- host (run $run, uplink $codec, built with $([[ $run == 1 ]] && echo g++ || echo "${TINYLARGE_CLANGXX:-clang++-14}")) ----"
  cat "$out/host-$run.txt"
  echo "---- device (Cortex-M4F, QEMU exit $qemu_rc) ----"; cat "$out/device-$run.txt"
  if [[ $host_rc -ne 0 || $qemu_rc -ne 0 ]]; then
    echo "mcu-split: run $run (uplink $codec) FAILED (host exit $host_rc, firmware exit $qemu_rc)"; status=1
  else
    echo "mcu-split: run $run (uplink $codec): PASS"
  fi
done
arm-none-eabi-size "$out/cortex-m4/split_device.elf" "$out/cortex-m4/split_device_int8.elf" | sed "s|$out/||"
exit $status
