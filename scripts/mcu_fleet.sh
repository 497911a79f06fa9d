#!/usr/bin/env bash
# A heterogeneous FedAvg fleet: two Cortex-M4F devices under QEMU (mps2-an386,
# tests/mcu/serial_device.cpp, CMSDK UART0 as `-serial tcp:`) and two host clients in the
# same rounds of one FedAvg server over MQTT (Mosquitto on a free loopback port), the
# devices joined through the serial gateway (transport/serial_gateway.hpp, the `gateway`
# mode of tests/transport/fleet_node.cpp: MQTT endpoints 3 and 4). Every client runs the
# same local round (tests/mcu/serial_task.hpp). Bytes on both serial lines are dropped,
# flipped or followed by garbage in both directions (--fault-per-mille), and every frame
# of the run carries the run key's MAC (transport/auth.hpp).
#
# Two fleets, one after the other: fp32 updates, then int8 updates (chunks of 17 values per
# scale; TL_FLEET_UPDATES='fp32 fp16 int8' adds fp16), from the devices as from the host clients.
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
# Usage: scripts/mcu_fleet.sh [build-dir]   (needs scripts/deps.sh first, mosquitto)
set -euo pipefail
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

flags=(-std=c++20 -O2 -ffp-contract=off -Wall -Wextra -Werror -DTINYLARGE_WITH_MQTT=1 -DTINYLARGE_SECAGG_HAS_SODIUM=1
  -I"$root/include")
libs=(-lmosquitto -lsodium -pthread)
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

# run_fleet UPDATE: the fleet with updates encoded as UPDATE (fp32, fp16, int8), then the comparison
# with the simulation of the same fleet.
run_fleet() {
  local update=$1 dir=$work/$1 start=$SECONDS
  mkdir -p "$dir"
  echo "==== $update updates: the simulation (the same 4-client fleet over in_process; g++ and clang++ builds) ===="
  "$node" inproc --clients 4 --rounds $rounds --seed $seed --update "$update" --out "$dir/inproc.bin"
  "$gateway" inproc --clients 4 --rounds $rounds --seed $seed --update "$update" --out "$dir/inproc-clang.bin"
  cmp "$dir/inproc.bin" "$dir/inproc-clang.bin" || return 1
  local common=(--port "$port" --run "fleet-$update" --clients 4 --rounds $rounds --seed $seed --update "$update")
  timeout 50 "$gateway" gateway "${common[@]}" --devices 3,4 --port-dir "$dir" --fault-per-mille $faults \
    > "$dir/gateway.txt" 2>&1 &
  local gw_pid=$!
  pids+=($gw_pid)
  local qemu_pids=() client_pids=() k p status=0
  for k in 3 4; do
    for _ in $(seq 100); do [[ -s $dir/port-$k ]] && break; sleep 0.1; done
    [[ -s $dir/port-$k ]] || { echo "mcu-fleet: the gateway did not listen for device $k"; cat "$dir/gateway.txt"; return 1; }
    timeout 50 qemu-system-arm -M mps2-an386 -display none -monitor none \
      -serial "tcp:127.0.0.1:$(cat "$dir/port-$k")" -chardev stdio,id=sh0 \
      -semihosting-config "enable=on,target=native,chardev=sh0,arg=serial_device,arg=$((k - 1)),arg=$update" \
      -kernel "$elf" > "$dir/device-$k.txt" 2>&1 &
    qemu_pids+=($!)
    pids+=($!)
  done
  for k in 1 2; do
    timeout 50 "$node" mqtt-client "${common[@]}" --id $k > "$dir/client-$k.txt" 2>&1 &
    client_pids+=($!)
    pids+=($!)
  done
  timeout 50 "$node" mqtt-server "${common[@]}" --round-timeout-ms 20000 --out "$dir/fleet.bin" \
    > "$dir/server.txt" 2>&1 || status=1
  for p in "${client_pids[@]}" "$gw_pid" "${qemu_pids[@]}"; do wait "$p" || status=1; done
  for f in server client-1 client-2 gateway device-3 device-4; do echo "---- $f ----"; cat "$dir/$f.txt"; done
  if [[ $status -ne 0 ]]; then echo "mcu-fleet: a process of the $update fleet FAILED"; return 1; fi
  grep -q "updates per round \[ $(printf '4 %.0s' $(seq $rounds))\]" "$dir/server.txt" \
    || { echo "mcu-fleet: not every round aggregated all 4 updates"; return 1; }
  for k in 3 4; do
    grep -q "serial_device: rounds $rounds " "$dir/device-$k.txt" \
      || { echo "mcu-fleet: device $k did not train $rounds rounds"; return 1; }
  done
  cmp "$dir/inproc.bin" "$dir/fleet.bin" || return 1
  echo "mcu-fleet: $update updates: final model of the MQTT fleet (2 host clients + 2 QEMU Cortex-M4F devices" \
    "through the gateway) bit-identical to the in-process simulation: crc32" \
    "$(python3 -c "import zlib,sys; print('%08x' % zlib.crc32(open(sys.argv[1],'rb').read()))" "$dir/fleet.bin")" \
    "($((SECONDS - start)) s)"
}

result=0
for update in ${TL_FLEET_UPDATES:-fp32 int8}; do
  run_fleet "$update" || result=1
done
arm-none-eabi-size "$elf" | sed "s|$out/||"
exit $result
