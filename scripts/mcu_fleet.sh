#!/usr/bin/env bash
# A heterogeneous FedAvg fleet: two Cortex-M4F devices under QEMU (mps2-an386,
# tests/mcu/serial_device.cpp, CMSDK UART0 as `-serial tcp:`) and two host clients in the
# same rounds of one FedAvg server over MQTT (Mosquitto on a free loopback port), the
# devices joined through the serial gateway (transport/serial_gateway.hpp, the `gateway`
# mode of tests/transport/fleet_node.cpp: MQTT endpoints 3 and 4; over MPI, ranks 3 and 4
# of `fleet_node mpi`). Every client runs the
# same local round (tests/mcu/serial_task.hpp). Bytes on both serial lines are dropped,
# flipped or followed by garbage in both directions (--fault-per-mille), and every frame
# of the run carries the run key's MAC (transport/auth.hpp).
#
# Three fleets, one after the other: over MQTT with fp32 updates, then with int8 updates (chunks of
# 17 values per scale), from the devices as from the host clients; then over MPI with fp32 updates
# (ranks 3 and 4 are the devices' gateways). TL_FLEET_RUNS='mqtt:fp16 mpi:int8 …' picks others.
#
# Must hold: the server completes every round with all 4 updates (min_clients = 4: a
# lost update fails the round; the server takes one update per client and round, so
# none is double-counted), the gateways and devices end cleanly, faults were injected,
# and the final model equals, byte for byte, the in-process simulation of the same
# 4-client fleet (the FedAvg roles over in_process). Bit-identical is required, not a
# tolerance: the device's fp32 local round is the host's bit for bit (no FMA on either
# side: -ffp-contract=off; checked per update by scripts/mcu_serial.sh), and the server
# and the simulation are the same code. The host program is built with g++ (server,
# host clients) and clang++ (gateway), and both builds' simulations must agree.
# Usage: scripts/mcu_fleet.sh [build-dir]   (needs scripts/deps.sh first: the arm-none-eabi
# toolchain, qemu-system-arm, mosquitto + libmosquitto-dev, OpenMPI, libsodium, clang++-14)
set -euo pipefail
for tool in arm-none-eabi-g++ qemu-system-arm mosquitto mpirun mpicxx "${TINYLARGE_CLANGXX:-clang++-14}"; do
  command -v "$tool" > /dev/null || { echo "mcu-fleet: $tool not found (bash scripts/deps.sh)"; exit 1; }
done
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build-mcu-fleet}
mkdir -p "$out"
rounds=4
seed=3
faults=5  # per mille of the bytes damaged, each way on each line

cmake -S "$root/tests/mcu" -B "$out/cortex-m4" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/cmake/toolchains/arm-none-eabi.cmake" -DTINYLARGE_MCU_CPU=cortex-m4 > /dev/null
cmake --build "$out/cortex-m4" --target serial_device -j"${TINYLARGE_JOBS:-1}" > "$out/build.log" 2>&1 \
  || { cat "$out/build.log"; exit 1; }
elf=$out/cortex-m4/serial_device.elf

read -r -a mpi_compile <<<"$(mpicxx --showme:compile)"
read -r -a mpi_link <<<"$(mpicxx --showme:link)"
flags=(-std=c++20 -O2 -ffp-contract=off -Wall -Wextra -Werror -DTINYLARGE_WITH_MQTT=1 -DTINYLARGE_WITH_MPI=1
  -DTINYLARGE_SECAGG_HAS_SODIUM=1 "${mpi_compile[@]}" -I"$root/include")
libs=("${mpi_link[@]}" -lmosquitto -lsodium -pthread)
build_start=$SECONDS
g++ "${flags[@]}" "$root/tests/transport/fleet_node.cpp" -o "$out/fleet_node-gcc" "${libs[@]}" &
gcc_pid=$!
"${TINYLARGE_CLANGXX:-clang++-14}" "${flags[@]}" "$root/tests/transport/fleet_node.cpp" -o "$out/fleet_node-clang" "${libs[@]}"
wait "$gcc_pid"
node=$out/fleet_node-gcc
gateway=$out/fleet_node-clang
echo "mcu-fleet: host program built with g++ and clang++ in $((SECONDS - build_start)) s"

work=$out/run
rm -rf "$work" && mkdir -p "$work"
python3 -c 'import secrets; print(secrets.token_hex(32))' > "$work/run.key"
export TL_RUN_KEY_FILE=$work/run.key
# mpirun as root (containers) and on 2 cores (as scripts/transport_test.sh).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

pids=()
cleanup() {  # end what this script started, by PID
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
  sleep 0.1
done

# run_fleet TRANSPORT UPDATE: the fleet over TRANSPORT (mqtt, mpi) with updates encoded as UPDATE (fp32,
# fp16, int8), then the comparison with the simulation of the same fleet. Over MQTT one gateway process
# serves both devices (a thread and an MQTT endpoint each); over MPI ranks 3 and 4 are the gateways.
run_fleet() {
  local transport=$1 update=$2 dir=$work/$1-$2 start=$SECONDS
  mkdir -p "$dir"
  echo "==== $transport, $update updates: the simulation (the same 4-client fleet over in_process; g++ and clang++ builds) ===="
  "$node" inproc --clients 4 --rounds $rounds --seed $seed --update "$update" --out "$dir/inproc.bin"
  "$gateway" inproc --clients 4 --rounds $rounds --seed $seed --update "$update" --out "$dir/inproc-clang.bin"
  cmp "$dir/inproc.bin" "$dir/inproc-clang.bin" || return 1
  local common=(--clients 4 --rounds $rounds --seed $seed --update "$update")
  local gw_pid fleet_pid
  if [[ $transport == mpi ]]; then
    timeout 50 mpirun --oversubscribe -np 5 "$node" mpi "${common[@]}" --devices 3,4 --port-dir "$dir" \
      --fault-per-mille $faults --out "$dir/fleet.bin" > "$dir/mpi.txt" 2>&1 &
    fleet_pid=$!
    pids+=($fleet_pid)
  else
    common+=(--port "$port" --run "fleet-$update")
    timeout 50 "$gateway" gateway "${common[@]}" --devices 3,4 --port-dir "$dir" --fault-per-mille $faults \
      > "$dir/gateway.txt" 2>&1 &
    gw_pid=$!
    pids+=($gw_pid)
  fi
  local qemu_pids=() client_pids=() k p status=0
  for k in 3 4; do
    for _ in $(seq 150); do [[ -s $dir/port-$k ]] && break; sleep 0.1; done
    [[ -s $dir/port-$k ]] || { echo "mcu-fleet: the gateway did not listen for device $k"; cat "$dir"/*.txt; return 1; }
    timeout 50 qemu-system-arm -M mps2-an386 -display none -monitor none \
      -serial "tcp:127.0.0.1:$(cat "$dir/port-$k")" -chardev stdio,id=sh0 \
      -semihosting-config "enable=on,target=native,chardev=sh0,arg=serial_device,arg=$((k - 1)),arg=$update" \
      -kernel "$elf" > "$dir/device-$k.txt" 2>&1 &
    qemu_pids+=($!)
    pids+=($!)
  done
  local logs=(mpi device-3 device-4)
  if [[ $transport == mpi ]]; then
    wait "$fleet_pid" || status=1
    cp "$dir/mpi.txt" "$dir/server.txt"
  else
    logs=(server client-1 client-2 gateway device-3 device-4)
    for k in 1 2; do
      timeout 50 "$node" mqtt-client "${common[@]}" --id $k > "$dir/client-$k.txt" 2>&1 &
      client_pids+=($!)
      pids+=($!)
    done
    timeout 50 "$node" mqtt-server "${common[@]}" --round-timeout-ms 20000 --out "$dir/fleet.bin" \
      > "$dir/server.txt" 2>&1 || status=1
    for p in "${client_pids[@]}" "$gw_pid"; do wait "$p" || status=1; done
  fi
  for p in "${qemu_pids[@]}"; do wait "$p" || status=1; done
  for f in "${logs[@]}"; do echo "---- $f ----"; cat "$dir/$f.txt"; done
  if [[ $status -ne 0 ]]; then echo "mcu-fleet: a process of the $transport $update fleet FAILED"; return 1; fi
  grep -q "updates per round \[ $(printf '4 %.0s' $(seq $rounds))\]" "$dir/server.txt" \
    || { echo "mcu-fleet: not every round aggregated all 4 updates"; return 1; }
  for k in 3 4; do
    grep -q "serial_device: rounds $rounds " "$dir/device-$k.txt" \
      || { echo "mcu-fleet: device $k did not train $rounds rounds"; return 1; }
  done
  cmp "$dir/inproc.bin" "$dir/fleet.bin" || return 1
  echo "mcu-fleet: $transport, $update updates: final model of the fleet (2 host clients + 2 QEMU Cortex-M4F devices" \
    "through the gateway) bit-identical to the in-process simulation: crc32" \
    "$(python3 -c "import zlib,sys; print('%08x' % zlib.crc32(open(sys.argv[1],'rb').read()))" "$dir/fleet.bin")" \
    "($((SECONDS - start)) s)"
}

result=0
for run in ${TL_FLEET_RUNS:-mqtt:fp32 mqtt:int8 mpi:fp32}; do
  run_fleet "${run%%:*}" "${run##*:}" || result=1
done
arm-none-eabi-size "$elf" | sed "s|$out/||"
exit $result
