#!/usr/bin/env bash
# scripts/transport_test.sh — end-to-end tests of the transport layer (issue 8):
#
#   bash scripts/transport_test.sh [BUILD_DIR]      (default: ${TINYLARGE_BUILD_ROOT:-<repo>/build-test}/transport)
#
# Steps (each prints PASS/FAIL; the exit status is non-zero if any failed):
#   build        configure with -DTINYLARGE_WITH_MPI=ON -DTINYLARGE_WITH_MQTT=ON, build the
#                transport programs, run the in-process FedAvg demo (the unit test
#                test_transport needs neither MPI nor MQTT: the ctest steps of scripts/test.sh
#                run it under the same sanitizers)
#   fuzz         libFuzzer on the wire decoder and the checkpoint parsers (clang++-14
#                -fsanitize=fuzzer,address,undefined), seeded by transport_wire_corpus,
#                bounded by TL_FUZZ_SECONDS (default 60) of wall time; started by the build step
#                as soon as transport_wire_corpus is built, so that it runs on the core the rest
#                of the build leaves idle (its output and verdict are shown in this step)
#   mpi          FedAvg (the FedAvg family's server / client roles run by workflow/federated_deploy.hpp,
#                a synthetic least-squares client step), 1 server + 4 clients under
#                `mpirun -np 5 --oversubscribe`: final vector bit-identical (cmp) to the in-process run
#   mqtt         the same over a Mosquitto broker started here on 127.0.0.1:<free port>
#   mqtt-client-killed   client 3 SIGKILLs itself at the model of round 2: the rounds
#                complete from the other 3 (min_clients 3, round deadline), and the result
#                equals the in-process run in which client 3 leaves at round 2
#   mpi-robustness / mqtt-robustness   a peer sends an oversized message, a frame with a
#                forged sender, random bytes, a frame with a flipped payload bit, then a good
#                frame: only the good one is received, each other is counted under its reason
#   mqtt-server-killed   FedAvgM (momentum 0.9) with a checkpoint per round; the server
#                SIGKILLs itself in round 3 after 2 updates, is restarted, resumes from the
#                checkpoint of round 2: final vector equals the uninterrupted in-process run
#   nn-fedavg    the FedAvg family's roles (workflow/federated_roles.hpp) on a 784-64-10 MLP, a
#                seeded Fashion-MNIST subset (2000 train / 1000 test images, 4 non-IID shards per
#                client, 1 local epoch per round): federated_averaging in process (the simulation),
#                the same roles under `mpirun -np 5` and over MQTT — final models cmp-identical, for
#                FedAvg (4 rounds), FedAdam, coordinate median, DP-FedAvg (fixed clipping) and
#                int8 updates from 2 of 4 clients per round (2 rounds each; over MQTT the clients start
#                5 s after the server: the model sent to a client before it subscribed is retained);
#                accuracy is printed
#   nn-fedavg-client-killed   FedAdam through the roles; over MQTT client 3 SIGKILLs itself at the
#                model of round 2: rounds of 4, 3, 3 updates (deadline 4 s); identical to the
#                deployment drivers over in_process threads in which client 3 leaves at round 2
#   nn-fedavg-secure   FedAvg (4 rounds) and FedAdam (2 rounds) with secure aggregation (--secure:
#                X25519 key agreement, ChaCha20 masks, Shamir shares; aggregate/secure.hpp):
#                federated_averaging in process, the deployment drivers over in_process threads, under
#                `mpirun -np 5` and over MQTT — final models cmp-identical
#   nn-fedavg-secure-client-killed   FedAdam with secure aggregation; client 3 leaves in round 2
#                after its masks were set up (its sealed shares sent, its masked update not): over
#                MQTT it SIGKILLs itself, over in_process threads it returns; the survivors' shares
#                remove its masks: rounds of 4, 3, 3 updates, both final models identical
#   nn-transfer  federated transfer learning (workflow/transfer_deploy.hpp): the server pre-trains,
#                4 FedAvg rounds, the final model sent with the stop, each client personalises it;
#                federated_transfer::run in process vs `mpirun -np 5` vs MQTT: the final global model
#                and every client's personal model cmp-identical
#   nn-fedlora   federated LoRA fine-tuning (workflow/lora_deploy.hpp: the FedAvg roles with the adapter
#                vector as the model, hetlora_mean as the server's aggregation) of the same model, the
#                base W0 pre-trained the same way by every process, 4 rounds: federated_lora::run in
#                process vs the roles over in_process threads, `mpirun -np 5` and MQTT — final adapters
#                cmp-identical, for ranks 1, 2, 3, 4 with 2 of 4 clients per round (HetLoRA); rank 4 on
#                every client (FedLoRA) in process, over threads and under mpirun
#   nn-splitfed  SplitFedV1 (workflow/split_deploy.hpp) of the same model cut after dense+relu:
#                in process, under `mpirun -np 5` and over MQTT, cmp-identical to each other
#                AND to workflow/split.hpp's in-process SplitFedV1 with the same seeds (also with
#                Dirichlet(0.5) clients of unequal size, in process; and with int8 smashed data and
#                fp16 gradients, in process and under mpirun); then hostile peers
#   nn-psl       parallel split learning (workflow/split_deploy.hpp `psl_deployment`: one server
#                segment, step t of every client in one concatenated batch): workflow/split.hpp's
#                PSL = the deployment in process = `mpirun -np 5` = MQTT, cmp; with int8 smashed
#                data and fp16 gradients, workflow/split.hpp = mpirun; client 3 SIGKILLed at step 5
#                of round 2 over MQTT = in process with the same client leaving (the step waits
#                `round_timeout`, then goes on without it: rounds of 4, 3, 3, 3 clients); the server
#                stopped in round 3 and resumed from its checkpoint, in process: the same bits
#   nn-multihop  multi-hop PSL, device → edge → cloud (`psl_deployment` with cut<2, 4> of a 784-64-32-10
#                MLP: the edge serves the devices in PSL's lockstep and runs each step through the cloud,
#                the cloud runs the last segment and the loss): workflow/split.hpp's psl with cut<2, 4> =
#                the edge and cloud over in_process threads = `mpirun -np 6` (edge rank 0, 4 devices, cloud
#                rank 5) = MQTT (the cloud on its own run), cmp; with int8 smashed data and fp16 gradients
#                at both cuts, in process = the engine; device 3 SIGKILLed at step 5 of round 2 over MQTT =
#                in process with the same device leaving (rounds of 4, 3, 3, 3 devices)
#   nn-epsl      EPSL (`epsl_deployment`: PSL's lockstep, the server aggregating the last-layer
#                gradients of round(phi*b) rows of every client's batch, the same role function
#                server_step_aggregated as the engine): workflow/split.hpp's epsl = in process =
#                `mpirun -np 5` = MQTT with phi 0.5, cmp; phi 1 in process = the engine and differs
#                from phi 0.5; phi 0 in process = nn-psl's PSL model (when that step ran)
#   nn-splitfed-v2  SplitFedV2 (`splitfed_v2_deployment`: the clients one after another on one server
#                segment): workflow/split.hpp's splitfed_v2 = in process = `mpirun -np 5` = MQTT, cmp;
#                Dirichlet(0.5) clients of unequal size in process (the reshuffle order is client-major);
#                client 3 SIGKILLed at step 5 of round 2 over MQTT = in process (its turn times out,
#                client 4 goes on: rounds of 4, 3, 3, 3 clients)
#   nn-vsl       vanilla split learning (`vsl_deployment`: the clients one after another, the device
#                segment handed from client to client — sent to a client at the start of its turn,
#                taken back with its update): workflow/split.hpp's vsl = in process = `mpirun -np 5`
#                = MQTT, cmp; Dirichlet(0.5) clients of unequal size in process; the server stopped in
#                round 3 and resumed from its checkpoint, in process; client 3 SIGKILLed at step 5 of
#                round 2 over MQTT = in process (its turns time out: rounds of 4, 3, 3, 3 hand-overs)
#   nn-edge-split  EdgeSplit / CPSL (`edge_split_deployment`: clusters of clients one after another,
#                PSL's lockstep within a cluster, its device segments averaged at the end of its turn
#                and sent to the next cluster): workflow/split.hpp's edge_split (2 clusters) = in
#                process = `mpirun -np 5` = MQTT, cmp; 3 clusters with Dirichlet(0.5) clients of
#                unequal size in process; client 3 SIGKILLed at step 5 of round 2 over MQTT = in
#                process (its cluster's steps wait round_timeout, then go on: rounds of 4, 3, 3, 3)
#   nn-split-client-killed   over MQTT, client 3 SIGKILLs itself at step 5 of round 2:
#                rounds of 4, 3, 3, 3 clients; identical to the in-process run in which
#                client 3 leaves at the same step
#   mpi-attacks  (issue 25) a run key; client 4 is hostile: NaN / Inf / count-2^63 updates before
#                its real one, its real one with count 2^32 (server cap 48), and over raw MPI a stop
#                and a model of round r+1 stamped sender 0 to rank 1, an update without MAC to rank 0:
#                all refused, the result cmp-identical to the clean in-process run
#   mqtt-attacks (issue 25) the same hostile client over MQTT, plus an outsider on the broker
#                (transport_robustness mqtt-attack: retained model of round 2^32-1, forged model of
#                round r+1, NaN/Inf/huge-count updates on every client topic, a forged stop, 20 x 32
#                MiB of junk): with the run key the result is cmp-identical to the clean run; without
#                it the same attack must break the run (the test has teeth)
#   mqtt-acl-tls (issue 25) the deployment configuration of docs/transport.md: Mosquitto with TLS
#                (self-signed CA made with openssl), a password file and per-client ACLs on
#                127.0.0.1; the run over TLS with logins equals the clean run; an attacker with
#                client 1's stolen login cannot publish on the control or other clients' topics,
#                and a plain-TCP / anonymous connection is refused
#   nn-split-server-killed   SplitFedV1 with a checkpoint per round; the split server dies in
#                round 3 after serving 20 steps (in process: the server object stops and a new
#                one resumes; over MQTT: SIGKILL, then a restarted process), resumes from the
#                checkpoint of round 2 with restart epoch 1, every client redoes round 3 from
#                step 0: both final models equal the uninterrupted run's (cmp)
#   pipeline-mpi pipeline-parallel inference (workflow/pipeline.hpp) of a 784-512-512-512-10 MLP in
#                K = 2, 3, 4 stages: the whole model in one process on the same micro-batches,
#                in_process threads and `mpirun -np K` (one stage per rank) write the same output
#                bytes (257 rows in micro-batches of 16: the last one has one row); then pipeline
#                training (GPipe schedule, SGD with momentum) over K = 3 threads and 2 and 3 MPI
#                ranks ends with the same trained parameters as the whole model trained in one
#                process on the same batches and micro-batches
#
# Step selection: TL_TRANSPORT_STEPS='nn-* mpi' runs only the steps whose names match one of
# the globs (the build step always runs; steps that are not selected are not counted).
# Needs: scripts/deps.sh net (libopenmpi-dev openmpi-bin mosquitto libmosquitto-dev),
# clang-14 + libclang-rt-14-dev for the fuzzer. The broker is never started as a
# service: each MQTT step starts its own on a free loopback port and stops it.
# Environment: TINYLARGE_JOBS (default 2), TL_FUZZ_SECONDS (TL_FUZZ_RUNS: also stop after that many
# inputs), TL_CXX_FLAGS (default sanitizers), CXX (default g++).
# Every MPI and MQTT run of this script authenticates its frames with a fresh run key
# (TL_RUN_KEY_FILE, transport/auth.hpp), as a deployment should.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-${TINYLARGE_BUILD_ROOT:-$ROOT/build-test}/transport}
JOBS=${TINYLARGE_JOBS:-2}
FUZZ_RUNS=${TL_FUZZ_RUNS:--1}
FUZZ_SECONDS=${TL_FUZZ_SECONDS:-60}
# -g1: line tables only, so the sanitizers' reports keep function, file and line; full -g made
# transport_nn_node.cpp take 220 s of CPU to compile instead of 158 s (and objects twice the size).
CXX_FLAGS=${TL_CXX_FLAGS:--O1 -g1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer}
WORK=$BUILD/transport-e2e
NODE=$BUILD/tests/transport/transport_fedavg_node
NN=$BUILD/tests/transport/transport_nn_node
PIPE=$BUILD/tests/transport/transport_pipeline_node
FMNIST_DIR=${TL_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
SELECT=${TL_TRANSPORT_STEPS:-*}
mkdir -p "$WORK"
# A fresh run key for every MPI / MQTT endpoint started here (transport/auth.hpp).
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$WORK/run.key"
export TL_RUN_KEY_FILE=$WORK/run.key

# mpirun as root (containers) and on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none  # no CMA in containers
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# OpenMPI leaks at MPI_Finalize by design; processes killed with SIGKILL never report.
ASAN_DEFAULT=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}

PASSED=0
FAILED=0
RESULTS=()
selected() {  # selected NAME: is the step NAME selected by TL_TRANSPORT_STEPS?
  local glob globs
  read -r -a globs <<<"$SELECT"  # no pathname expansion of the globs
  for glob in "${globs[@]}"; do
    # shellcheck disable=SC2053
    [[ $1 == $glob || $1 == build ]] && return 0
  done
  return 1
}
step() {  # step NAME FUNCTION
  local name=$1; shift
  selected "$name" || return 0
  echo "==== [transport:$name] $(date -u +%H:%M:%S)"
  local start=$SECONDS
  if "$@"; then
    PASSED=$((PASSED + 1)); RESULTS+=("$(printf '%-22s PASS %4ds' "$name" $((SECONDS - start)))")
  else
    FAILED=$((FAILED + 1)); RESULTS+=("$(printf '%-22s FAIL %4ds' "$name" $((SECONDS - start)))")
  fi
}

common=(--dim 1000 --seed 3 --rounds 5)

step_build() {
  local gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  # A cache made with another compiler would be wiped by CMake together with our -D options: start over.
  if [[ -f "$BUILD/CMakeCache.txt" ]]; then
    local cached
    cached=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
    [[ "$cached" == "$(command -v "${CXX:-g++}")" ]] || rm -f "$BUILD/CMakeCache.txt"
  fi
  cmake -S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG= -DCMAKE_CXX_COMPILER="${CXX:-g++}" \
    -DCMAKE_CXX_FLAGS="$CXX_FLAGS" -DTINYLARGE_WITH_MPI=ON -DTINYLARGE_WITH_MQTT=ON \
    -DTINYLARGE_BUILD_EXAMPLES=OFF >"$WORK/configure.log" 2>&1 || { cat "$WORK/configure.log"; return 1; }
  # The seed generator first: the fuzz step (clang++ build of the fuzzer, then TL_FUZZ_SECONDS of
  # fuzzing, one core) then runs in the background while the rest builds — the build's last
  # ~100 s are transport_nn_node's one translation unit alone, on one of the two cores.
  cmake --build "$BUILD" -j "$JOBS" --target transport_wire_corpus \
    >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; return 1; }
  if selected fuzz; then
    rm -f "$WORK/fuzz.step.rc"
    ( fuzz_body >"$WORK/fuzz.step.log" 2>&1; echo $? >"$WORK/fuzz.step.rc" ) &
    FUZZ_PID=$!
  fi
  cmake --build "$BUILD" -j "$JOBS" --target transport_fedavg_node transport_wire_corpus transport_robustness transport_nn_node transport_pipeline_node \
    >>"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; return 1; }
  ASAN_OPTIONS=$ASAN_DEFAULT "$NODE" inproc --clients 4 "${common[@]}" --out "$WORK/inproc.bin" || return 1
}

FUZZ_PID=
step_fuzz() {  # started by step_build (fuzz_body in the background): wait for it, show its output
  [[ -n "$FUZZ_PID" ]] || { echo "the fuzz run was not started (build failed?)"; return 1; }
  wait "$FUZZ_PID"
  FUZZ_PID=
  cat "$WORK/fuzz.step.log"
  [[ "$(cat "$WORK/fuzz.step.rc" 2>/dev/null)" == 0 ]]
}
fuzz_body() {
  local clangxx=${TINYLARGE_CLANGXX:-clang++-14}
  command -v "$clangxx" >/dev/null || { echo "no $clangxx"; return 1; }
  "$clangxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$ROOT/include" "$ROOT/tests/transport/fuzz_wire.cpp" -o "$WORK/fuzz_wire" || return 1
  rm -rf "$WORK/corpus" && mkdir -p "$WORK/corpus"
  "$BUILD/tests/transport/transport_wire_corpus" "$WORK/corpus" || return 1
  # -max_len: frames up to 4 KiB; the limits inside keep valid giants out of RSS.
  ASAN_OPTIONS=detect_leaks=1 "$WORK/fuzz_wire" -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_SECONDS" -max_len=4096 -rss_limit_mb=1024 \
    -print_final_stats=1 "$WORK/corpus" >"$WORK/fuzz.log" 2>&1
  local rc=$?
  grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$WORK/fuzz.log" | tail -2
  [[ $rc -eq 0 ]] || { tail -40 "$WORK/fuzz.log"; return 1; }
}

step_mpi() {
  rm -f "$WORK/mpi.bin"
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 300 mpirun --oversubscribe -np 5 \
    "$NODE" mpi "${common[@]}" --out "$WORK/mpi.bin" || return 1
  cmp "$WORK/inproc.bin" "$WORK/mpi.bin" && echo "mpi: final vector bit-identical to in_process"
}

# --- Mosquitto on a free loopback port -------------------------------------
BROKER_PID=
start_broker() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\n%s' \
    "$port" "${BROKER_EXTRA:-}" >"$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 50); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      BROKER_PORT=$port
      return 0
    fi
    sleep 0.1
  done
  echo "mosquitto did not start:"; cat "$WORK/mosquitto.log"; return 1
}
stop_broker() {
  [[ -n "$BROKER_PID" ]] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
  BROKER_PID=
}
trap stop_broker EXIT

# run_mqtt NAME SERVER_ARGS... -- per-client extra args in CLIENT_EXTRA[k]
declare -A CLIENT_EXTRA=()
start_clients() {  # start_clients RUN ARGS...
  local run=$1; shift
  CLIENT_PIDS=()
  for k in 1 2 3 4; do
    # shellcheck disable=SC2086
    ASAN_OPTIONS=$ASAN_DEFAULT "$NODE" mqtt-client --port "$BROKER_PORT" --run "$run" --clients 4 --id "$k" \
      "$@" ${CLIENT_EXTRA[$k]:-} >"$WORK/$run-client-$k.log" 2>&1 &
    CLIENT_PIDS+=($!)
  done
}
stop_clients() {  # after a failure: end the clients this step started (by PID)
  for pid in "${CLIENT_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait "${CLIENT_PIDS[@]}" 2>/dev/null
}
wait_clients() {  # every client must exit 0, or be one that was told to die
  local rc=0 k=1
  for pid in "${CLIENT_PIDS[@]}"; do
    wait "$pid"; local c=$?
    if [[ $c -ne 0 && -z "${CLIENT_EXTRA[$k]:-}" ]]; then echo "client $k exited $c:"; cat "$WORK/$1-client-$k.log"; rc=1; fi
    k=$((k + 1))
  done
  return $rc
}

step_mpi_robustness() {
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 120 mpirun --oversubscribe -np 3 \
    "$BUILD/tests/transport/transport_robustness" mpi
}

step_mqtt_robustness() {
  start_broker || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 60 "$BUILD/tests/transport/transport_robustness" mqtt --port "$BROKER_PORT"
  local rc=$?
  stop_broker
  return $rc
}

step_mqtt() {
  start_broker || return 1
  rm -f "$WORK/mqtt.bin"
  CLIENT_EXTRA=()
  start_clients plain "${common[@]}"
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NODE" mqtt-server --port "$BROKER_PORT" --run plain --clients 4 \
    "${common[@]}" --out "$WORK/mqtt.bin"
  local rc=$?
  wait_clients plain || rc=1
  stop_broker
  [[ $rc -eq 0 ]] || return 1
  cmp "$WORK/inproc.bin" "$WORK/mqtt.bin" && echo "mqtt: final vector bit-identical to in_process"
}

step_mqtt_client_killed() {
  local fault=(--min-clients 3 --round-timeout-ms 5000)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NODE" inproc --clients 4 "${common[@]}" "${fault[@]}" --drop-client 3 --drop-round 2 \
    --out "$WORK/inproc-drop.bin" || return 1
  start_broker || return 1
  rm -f "$WORK/mqtt-drop.bin"
  CLIENT_EXTRA=([3]="--die-round 2")
  start_clients drop "${common[@]}" "${fault[@]}"
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NODE" mqtt-server --port "$BROKER_PORT" --run drop --clients 4 \
    "${common[@]}" "${fault[@]}" --out "$WORK/mqtt-drop.bin" | tee "$WORK/drop-server.log"
  local rc=${PIPESTATUS[0]}
  wait_clients drop || rc=1
  CLIENT_EXTRA=()
  stop_broker
  [[ $rc -eq 0 ]] || return 1
  grep -q "SIGKILL" "$WORK/drop-client-3.log" || { echo "client 3 did not die"; return 1; }
  grep -q "updates per round \[ 4 3 3 3 3 \]" "$WORK/drop-server.log" || { echo "unexpected round sizes"; return 1; }
  cmp "$WORK/inproc-drop.bin" "$WORK/mqtt-drop.bin" && echo "mqtt: client killed in round 2, rounds completed from the other 3, result equals in_process"
}

step_mqtt_server_killed() {
  local pol=(--policy fedavgm --min-clients 4)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NODE" inproc --clients 4 "${common[@]}" "${pol[@]}" --out "$WORK/inproc-fedavgm.bin" || return 1
  start_broker || return 1
  rm -f "$WORK/server.ckpt" "$WORK/mqtt-resume.bin"
  CLIENT_EXTRA=()
  start_clients resume "${common[@]}" "${pol[@]}"
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NODE" mqtt-server --port "$BROKER_PORT" --run resume --clients 4 \
    "${common[@]}" "${pol[@]}" --checkpoint "$WORK/server.ckpt" --crash-round 3 --crash-after 2 \
    --out "$WORK/mqtt-resume.bin" >"$WORK/resume-server-1.log" 2>&1
  local first=$?
  cat "$WORK/resume-server-1.log"
  [[ $first -eq 137 ]] || { echo "the first server should have died of SIGKILL (137), got $first"; stop_clients; stop_broker; return 1; }
  [[ ! -e "$WORK/mqtt-resume.bin" ]] || { echo "the killed server wrote a result"; stop_clients; stop_broker; return 1; }
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NODE" mqtt-server --port "$BROKER_PORT" --run resume --clients 4 \
    "${common[@]}" "${pol[@]}" --checkpoint "$WORK/server.ckpt" --out "$WORK/mqtt-resume.bin" | tee "$WORK/resume-server-2.log"
  local rc=${PIPESTATUS[0]}
  wait_clients resume || rc=1
  stop_broker
  [[ $rc -eq 0 ]] || return 1
  grep -q "rounds 3\.\.5" "$WORK/resume-server-2.log" || { echo "the restarted server did not resume at round 3"; return 1; }
  cmp "$WORK/inproc-fedavgm.bin" "$WORK/mqtt-resume.bin" && echo "mqtt: server SIGKILLed in round 3, resumed from its checkpoint; result equals the uninterrupted run"
}

# --- Hostile networks (issue 25) ------------------------------------------------
hostile=(--hostile 4 --claim-count 4294967296 --max-examples 48)

step_mpi_attacks() {
  rm -f "$WORK/mpi-attacks.bin"
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 300 mpirun --oversubscribe -np 5 \
    "$NODE" mpi "${common[@]}" "${hostile[@]}" --out "$WORK/mpi-attacks.bin" | tee "$WORK/mpi-attacks.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  grep -q "mpi: frames authenticated" "$WORK/mpi-attacks.log" || { echo "the run was not authenticated"; return 1; }
  grep -q "rejected frames 15, clipped counts 5, .* unauthenticated 5," "$WORK/mpi-attacks.log" \
    || { echo "the server did not refuse 15 bad updates and 5 unauthenticated ones, clip 5 counts"; return 1; }
  grep -q "mpi client 1: stopped by the server; spoofed 10," "$WORK/mpi-attacks.log" \
    || { echo "client 1 did not refuse 10 frames stamped sender 0 from rank 4"; return 1; }
  cmp "$WORK/inproc.bin" "$WORK/mpi-attacks.bin" && echo "mpi attacks: all refused, result bit-identical to the clean run"
}

# mqtt_attacked RUN OUT [node args...]: clients 1-4 (4 hostile), the server, and an outsider on the
# broker (ATTACKER: its extra arguments).
ATTACKER=()
mqtt_attacked() {
  local run=$1 out=$2; shift 2
  CLIENT_EXTRA=()
  start_clients "$run" "${common[@]}" "${hostile[@]}" --slow-ms 300 "$@"
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 60 "$BUILD/tests/transport/transport_robustness" mqtt-attack --port "$BROKER_PORT" \
    --run "$run" --clients 4 --dim 1000 "${ATTACKER[@]}" >"$WORK/$run-attacker.log" 2>&1 &
  local apid=$!
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NODE" mqtt-server --port "$BROKER_PORT" --run "$run" --clients 4 \
    "${common[@]}" "${hostile[@]}" "$@" --out "$out" >"$WORK/$run-server.log" 2>&1
  local rc=$?
  cat "$WORK/$run-server.log"
  [[ $rc -eq 0 ]] || stop_clients
  wait_clients "$run" || rc=1
  wait "$apid" || { echo "the attacker failed:"; rc=1; }
  cat "$WORK/$run-attacker.log"
  return $rc
}

step_mqtt_attacks() {
  BROKER_EXTRA=$'max_packet_size 65536\n'  # docs/transport.md: the broker drops what no endpoint accepts
  start_broker || return 1
  rm -f "$WORK/mqtt-attacks.bin" "$WORK/mqtt-attacks-nokey.bin"
  local rc=0
  mqtt_attacked attacks "$WORK/mqtt-attacks.bin" --round-timeout-ms 10000 || rc=1
  grep -q "rejected frames 15, clipped counts 5, .* unauthenticated 16," "$WORK/attacks-server.log" \
    || { echo "the server did not refuse 15 bad updates and 16 forged ones, clip 5 counts"; rc=1; }
  for k in 1 2 3 4; do
    grep -q "stopped by the server; spoofed 0, unauthenticated 3," "$WORK/attacks-client-$k.log" \
      || { echo "client $k did not refuse the retained model, the forged model and the forged stop:"; cat "$WORK/attacks-client-$k.log"; rc=1; }
  done
  grep -q "disconnected due to oversize packet" "$WORK/mosquitto.log" || { echo "the broker did not cut the junk off"; rc=1; }
  cmp "$WORK/inproc.bin" "$WORK/mqtt-attacks.bin" || rc=1
  [[ $rc -eq 0 ]] && echo "mqtt attacks with a run key: all refused, result bit-identical to the clean run"
  # Teeth: the same attack on a run without a key must break it (the clients obey the forged stop).
  local teeth=0
  TL_RUN_KEY_FILE='' mqtt_attacked nokey "$WORK/mqtt-attacks-nokey.bin" --round-timeout-ms 3000 || teeth=1
  stop_broker
  BROKER_EXTRA=
  if [[ $teeth -eq 0 ]] && cmp -s "$WORK/inproc.bin" "$WORK/mqtt-attacks-nokey.bin"; then
    echo "the attack did not change a run without a key: the test cannot fail"; return 1
  fi
  echo "without a run key the same attack breaks the run (as it should: the check has teeth)"
  return $rc
}

step_mqtt_acl_tls() {
  command -v openssl >/dev/null && command -v mosquitto_passwd >/dev/null || { echo "needs openssl and mosquitto_passwd"; return 1; }
  local d="$WORK/acl-tls" run=acl port rc=0
  rm -rf "$d" && mkdir -p "$d"
  # A self-signed CA and a broker certificate for 127.0.0.1.
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tinylarge test CA" -keyout "$d/ca.key" -out "$d/ca.crt" >/dev/null 2>&1 &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/broker.key" -out "$d/broker.csr" >/dev/null 2>&1 &&
    printf 'subjectAltName=IP:127.0.0.1\n' >"$d/san.ext" &&
    openssl x509 -req -in "$d/broker.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
      -extfile "$d/san.ext" -out "$d/broker.crt" >/dev/null 2>&1 || { echo "openssl failed"; return 1; }
  chmod a+r "$d"/*  # a broker started as root drops to the user 'mosquitto' (test-only key)
  # Logins and ACLs as in docs/transport.md ("Deploying over MQTT").
  : >"$d/passwd"
  mosquitto_passwd -b "$d/passwd" server server-secret || return 1
  for k in 1 2 3 4; do mosquitto_passwd -b "$d/passwd" "client$k" "secret-$k" || return 1; done
  chmod a+r "$d/passwd"
  {
    printf 'user server\ntopic write tl/%s/model\ntopic write tl/%s/control\ntopic write tl/%s/to/+\n' $run $run $run
    printf 'topic read tl/%s/update/+\ntopic read tl/%s/smashed/+\ntopic read tl/%s/gradient/+\ntopic read tl/%s/control/+\ntopic read tl/%s/secagg/+\n' $run $run $run $run $run
    for k in 1 2 3 4; do
      printf '\nuser client%s\ntopic read tl/%s/model\ntopic read tl/%s/control\ntopic read tl/%s/to/%s\n' $k $run $run $run $k
      for t in update smashed gradient control secagg; do printf 'topic write tl/%s/%s/%s\n' $run $t $k; done
    done
  } >"$d/acl"
  chmod a+r "$d/acl"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf '%s\n' "per_listener_settings false" "allow_anonymous false" "password_file $d/passwd" "acl_file $d/acl" \
    "persistence false" "max_queued_messages 10000" "max_packet_size 65536" "log_type all" "listener $port 127.0.0.1" \
    "cafile $d/ca.crt" "certfile $d/broker.crt" "keyfile $d/broker.key" "tls_version tlsv1.2" >"$WORK/mosquitto.conf"
  mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  BROKER_PORT=$port
  kill -0 "$BROKER_PID" 2>/dev/null || { echo "mosquitto did not start:"; cat "$WORK/mosquitto.log"; return 1; }
  # Plain TCP, and TLS without a login, are refused.
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 20 "$NODE" mqtt-client --port "$port" --run $run --clients 4 --id 1 "${common[@]}" \
    --user client1 --password secret-1 >"$d/plain.log" 2>&1 && { echo "a plain-TCP client was accepted"; rc=1; }
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 20 "$NODE" mqtt-client --port "$port" --run $run --clients 4 --id 1 "${common[@]}" \
    --ca "$d/ca.crt" >"$d/anon.log" 2>&1 && { echo "an anonymous TLS client was accepted"; rc=1; }
  # The run: TLS + logins + run key; client 4 hostile as before; an attacker with client 1's stolen login.
  CLIENT_EXTRA=()
  CLIENT_PIDS=()
  local k
  for k in 1 2 3 4; do
    local extra=()
    [[ $k -eq 4 ]] && extra=("${hostile[@]}")
    ASAN_OPTIONS=$ASAN_DEFAULT "$NODE" mqtt-client --port "$port" --run $run --clients 4 --id "$k" "${common[@]}" \
      "${extra[@]}" --slow-ms 300 --ca "$d/ca.crt" --user "client$k" --password "secret-$k" >"$WORK/$run-client-$k.log" 2>&1 &
    CLIENT_PIDS+=($!)
  done
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 60 "$BUILD/tests/transport/transport_robustness" mqtt-attack --port "$port" \
    --run $run --clients 4 --dim 1000 --user client1 --password secret-1 --ca "$d/ca.crt" >"$WORK/$run-attacker.log" 2>&1 &
  local apid=$!
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NODE" mqtt-server --port "$port" --run $run --clients 4 "${common[@]}" \
    "${hostile[@]}" --ca "$d/ca.crt" --user server --password server-secret --out "$WORK/mqtt-acl.bin" | tee "$WORK/$run-server.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { stop_clients; rc=1; }
  wait_clients $run || rc=1
  wait "$apid"
  cat "$WORK/$run-attacker.log"
  stop_broker
  grep -q "Denied PUBLISH from tl-$run-attacker .*tl/$run/control" "$WORK/mosquitto.log" \
    || { echo "the broker did not deny the stolen login's stop"; rc=1; }
  grep -q "Denied PUBLISH from tl-$run-attacker .*tl/$run/update/2" "$WORK/mosquitto.log" \
    || { echo "the broker did not deny the stolen login's frames on client 2's topic"; rc=1; }
  # What the ACL lets through (client 1's own topic) the run key refuses.
  grep -q "unauthenticated 4," "$WORK/$run-server.log" || { echo "the server did not refuse the 4 forged frames on client 1's topic"; rc=1; }
  [[ $rc -eq 0 ]] || return 1
  cmp "$WORK/inproc.bin" "$WORK/mqtt-acl.bin" && echo "mqtt over TLS with logins and ACLs: attacks refused, result bit-identical to the clean run"
}

# --- FedAvg and SplitFedV1 of a real model (tests/transport/nn_node.cpp) ---------
nn_common=(--clients 4 --seed 5 --rounds 4)
NN_DATA_READY=0
SPLITFED_INPROC_DONE=0  # nn-splitfed-inproc.bin made by this run
nn_data() {  # the seeded Fashion-MNIST subset every process reads (made once per run of this script)
  [[ $NN_DATA_READY -eq 1 ]] && return 0
  rm -rf "$WORK/fmnist" && mkdir -p "$WORK/fmnist"
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" prepare --data-dir "$FMNIST_DIR" --dir "$WORK/fmnist" --train 2000 --test 1000 --seed 5 \
    && NN_DATA_READY=1
}
nn_mpi() {  # nn_mpi WORKFLOW OUT [ARGS...] — NN_NP=N: mpirun -np N (default 5: a server and 4 clients)
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 300 mpirun --oversubscribe -np "${NN_NP:-5}" \
    "$NN" "$1" mpi --dir "$WORK/fmnist" "${nn_common[@]}" "${@:3}" --out "$2"
}
nn_mqtt() {  # nn_mqtt WORKFLOW RUN OUT [ARGS...] — per-client extras in CLIENT_EXTRA[k]
  # NN_CLIENTS_LATE=S: start the server first and the clients S seconds later (after the server
  # has published round 1), as a fleet whose devices come up after the server does.
  # NN_MQTT_CLOUD=1 (--cuts 2): also start the cloud (mode mqtt-cloud); the server is the edge.
  local wf=$1 run=$2 out=$3; shift 3
  start_broker || return 1
  CLIENT_PIDS=()
  local server_pid= cloud_pid=
  if [[ ${NN_MQTT_CLOUD:-0} != 0 ]]; then
    ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NN" "$wf" mqtt-cloud --dir "$WORK/fmnist" --port "$BROKER_PORT" \
      --run "$run" "${nn_common[@]}" "$@" >"$WORK/$run-cloud.log" 2>&1 &
    cloud_pid=$!
  fi
  if [[ ${NN_CLIENTS_LATE:-0} != 0 ]]; then
    ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NN" "$wf" mqtt-server --dir "$WORK/fmnist" --port "$BROKER_PORT" \
      --run "$run" "${nn_common[@]}" "$@" --out "$out" >"$WORK/$run-server.log" 2>&1 &
    server_pid=$!
    sleep "$NN_CLIENTS_LATE"
  fi
  for k in 1 2 3 4; do
    # shellcheck disable=SC2086
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" "$wf" mqtt-client --dir "$WORK/fmnist" --port "$BROKER_PORT" --run "$run" \
      --id "$k" "${nn_common[@]}" "$@" ${CLIENT_EXTRA[$k]:-} >"$WORK/$run-client-$k.log" 2>&1 &
    CLIENT_PIDS+=($!)
  done
  local rc
  if [[ -n $server_pid ]]; then
    wait "$server_pid"; rc=$?
    cat "$WORK/$run-server.log"
  else
    ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NN" "$wf" mqtt-server --dir "$WORK/fmnist" --port "$BROKER_PORT" \
      --run "$run" "${nn_common[@]}" "$@" --out "$out" | tee "$WORK/$run-server.log"
    rc=${PIPESTATUS[0]}
  fi
  [[ $rc -eq 0 ]] || stop_clients
  wait_clients "$run" || rc=1
  if [[ -n $cloud_pid ]]; then
    [[ $rc -eq 0 ]] || kill "$cloud_pid" 2>/dev/null
    wait "$cloud_pid" || { echo "the cloud exited $?:"; rc=1; }
    cat "$WORK/$run-cloud.log"
  fi
  stop_broker
  return $rc
}
same() {  # same A B LABEL
  cmp "$1" "$2" && echo "$3: bit-identical (crc32 $(python3 -c "import zlib,sys; print('%08x' % zlib.crc32(open(sys.argv[1],'rb').read()))" "$1"))"
}

split_over_mpi_mqtt() {  # KEY TOPIC LABEL REFERENCE REFERENCE_NAME [NN_NODE ARGS...]
  # The split deployment over MPI (mpirun -np 5) and over MQTT (run TOPIC): each final model = REFERENCE.
  local key=$1 topic=$2 label=$3 ref=$4 refname=$5
  shift 5
  nn_mpi splitfed "$WORK/nn-$key-mpi.bin" "$@" || return 1
  same "$ref" "$WORK/nn-$key-mpi.bin" "$label: mpi vs $refname" || return 1
  CLIENT_EXTRA=()
  nn_mqtt splitfed "$topic" "$WORK/nn-$key-mqtt.bin" "$@" || return 1
  same "$ref" "$WORK/nn-$key-mqtt.bin" "$label: mqtt vs $refname"
}

step_nn_fedavg() {  # the FedAvg family's roles: federated_averaging in process vs the same roles over MPI and MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-fedavg-*.bin
  local spec pol extra name
  # policy[:extra args] — FedAvg (4 rounds), a server optimizer, a robust rule, a DP wrapper (2 rounds each),
  # and int8 updates from 2 of 4 clients per round (the model sent to the selected clients only).
  for spec in "fedavg:" "fedadam:--rounds 2" "median:--rounds 2" "dp:--rounds 2" "fedavg:--rounds 2 --update int8 --fraction 0.5"; do
    pol=${spec%%:*}
    read -r -a extra <<<"${spec#*:}"
    name=$pol${extra[*]:+-$(echo "${extra[*]}" | tr -d ' -' )}
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedavg inproc --dir "$WORK/fmnist" "${nn_common[@]}" --policy "$pol" "${extra[@]}" \
      --out "$WORK/nn-fedavg-$name-inproc.bin" || return 1
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 300 mpirun --oversubscribe -np 5 \
      "$NN" fedavg mpi --dir "$WORK/fmnist" "${nn_common[@]}" --policy "$pol" "${extra[@]}" --out "$WORK/nn-fedavg-$name-mpi.bin" || return 1
    same "$WORK/nn-fedavg-$name-inproc.bin" "$WORK/nn-fedavg-$name-mpi.bin" "nn fedavg --policy $pol ${extra[*]}: mpi vs in_process" || return 1
    CLIENT_EXTRA=()
    # With --fraction the server sends round 1's model to the selected clients only (tl/<run>/to/<k>,
    # retained): here the clients come up 5 s after the server, when it has sent it.
    local late=0
    [[ ${extra[*]} == *--fraction* ]] && late=5
    NN_CLIENTS_LATE=$late nn_mqtt fedavg "nnfed$name" "$WORK/nn-fedavg-$name-mqtt.bin" --policy "$pol" "${extra[@]}" || return 1
    same "$WORK/nn-fedavg-$name-inproc.bin" "$WORK/nn-fedavg-$name-mqtt.bin" "nn fedavg --policy $pol ${extra[*]}: mqtt vs in_process" || return 1
  done
}

step_nn_fedavg_client_killed() {  # the roles' deadline: in-process threads dropping client 3 vs MQTT killing it
  nn_data || return 1
  local fault=(--rounds 3 --min-clients 3 --round-timeout-ms 4000 --policy fedadam)
  rm -f "$WORK"/nn-feddrop-*.bin
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedavg threads --dir "$WORK/fmnist" "${nn_common[@]}" "${fault[@]}" \
    --drop-client 3 --drop-round 2 --out "$WORK/nn-feddrop-inproc.bin" | tee "$WORK/nnfeddrop-inproc.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  CLIENT_EXTRA=([3]="--die-round 2")
  nn_mqtt fedavg nnfeddrop "$WORK/nn-feddrop-mqtt.bin" "${fault[@]}"
  local rc=$?
  CLIENT_EXTRA=()
  [[ $rc -eq 0 ]] || return 1
  grep -q "SIGKILL" "$WORK/nnfeddrop-client-3.log" || { echo "client 3 did not die"; return 1; }
  for f in "$WORK/nnfeddrop-inproc.log" "$WORK/nnfeddrop-server.log"; do
    grep -q "updates per round \[ 4 3 3 \]" "$f" || { echo "unexpected round sizes in $f"; return 1; }
  done
  same "$WORK/nn-feddrop-inproc.bin" "$WORK/nn-feddrop-mqtt.bin" \
    "nn fedavg (FedAdam): client 3 killed at the model of round 2, rounds closed at the deadline; mqtt vs in-process threads"
}

step_nn_fedavg_secure() {  # secure aggregation: in process vs threads vs MPI vs MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-fedsec-*.bin
  local spec pol extra name
  for spec in "fedavg:" "fedadam:--rounds 2"; do
    pol=${spec%%:*}
    read -r -a extra <<<"${spec#*:}"
    name=$pol${extra[*]:+-$(echo "${extra[*]}" | tr -d ' -' )}
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedavg inproc --dir "$WORK/fmnist" "${nn_common[@]}" --secure --policy "$pol" \
      "${extra[@]}" --out "$WORK/nn-fedsec-$name-inproc.bin" || return 1
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedavg threads --dir "$WORK/fmnist" "${nn_common[@]}" --secure --policy "$pol" \
      "${extra[@]}" --out "$WORK/nn-fedsec-$name-threads.bin" || return 1
    same "$WORK/nn-fedsec-$name-inproc.bin" "$WORK/nn-fedsec-$name-threads.bin" \
      "nn fedavg --secure --policy $pol ${extra[*]}: in_process threads vs federated_averaging" || return 1
    nn_mpi fedavg "$WORK/nn-fedsec-$name-mpi.bin" --secure --policy "$pol" "${extra[@]}" || return 1
    same "$WORK/nn-fedsec-$name-inproc.bin" "$WORK/nn-fedsec-$name-mpi.bin" \
      "nn fedavg --secure --policy $pol ${extra[*]}: mpi vs in_process" || return 1
    CLIENT_EXTRA=()
    nn_mqtt fedavg "nnfedsec$name" "$WORK/nn-fedsec-$name-mqtt.bin" --secure --policy "$pol" "${extra[@]}" || return 1
    same "$WORK/nn-fedsec-$name-inproc.bin" "$WORK/nn-fedsec-$name-mqtt.bin" \
      "nn fedavg --secure --policy $pol ${extra[*]}: mqtt vs in_process" || return 1
  done
}

step_nn_fedavg_secure_client_killed() {  # a client dropped after masking is recovered from the survivors' shares
  nn_data || return 1
  local fault=(--rounds 3 --min-clients 3 --round-timeout-ms 4000 --policy fedadam --secure)
  rm -f "$WORK"/nn-fedsecdrop-*.bin
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedavg threads --dir "$WORK/fmnist" "${nn_common[@]}" "${fault[@]}" \
    --drop-client 3 --drop-round 2 --die-secure-step masked --out "$WORK/nn-fedsecdrop-inproc.bin" \
    | tee "$WORK/nnfedsecdrop-inproc.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  CLIENT_EXTRA=([3]="--die-round 2 --die-secure-step masked")
  nn_mqtt fedavg nnfedsecdrop "$WORK/nn-fedsecdrop-mqtt.bin" "${fault[@]}"
  local rc=$?
  CLIENT_EXTRA=()
  [[ $rc -eq 0 ]] || return 1
  grep -q "leaving before secure step masked of round 2" "$WORK/nnfedsecdrop-client-3.log" \
    && grep -q "SIGKILL" "$WORK/nnfedsecdrop-client-3.log" || { echo "client 3 did not die after masking"; return 1; }
  for f in "$WORK/nnfedsecdrop-inproc.log" "$WORK/nnfedsecdrop-server.log"; do
    grep -q "updates per round \[ 4 3 3 \]" "$f" || { echo "unexpected round sizes in $f"; return 1; }
  done
  same "$WORK/nn-fedsecdrop-inproc.bin" "$WORK/nn-fedsecdrop-mqtt.bin" \
    "nn fedavg --secure (FedAdam): client 3 killed after masking in round 2, its masks removed; mqtt vs in-process threads"
}

step_nn_transfer() {  # pre-training, FedAvg rounds, personalisation: in process vs the roles over MPI and MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-transfer-*
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" transfer inproc --dir "$WORK/fmnist" "${nn_common[@]}" \
    --out "$WORK/nn-transfer-inproc.bin" --personal "$WORK/nn-transfer-inproc-personal" || return 1
  nn_mpi transfer "$WORK/nn-transfer-mpi.bin" --personal "$WORK/nn-transfer-mpi-personal" || return 1
  CLIENT_EXTRA=()
  nn_mqtt transfer nntransfer "$WORK/nn-transfer-mqtt.bin" --personal "$WORK/nn-transfer-mqtt-personal" || return 1
  local via k
  for via in mpi mqtt; do
    same "$WORK/nn-transfer-inproc.bin" "$WORK/nn-transfer-$via.bin" "nn transfer, final global model: $via vs in_process" || return 1
    for k in 1 2 3 4; do
      same "$WORK/nn-transfer-inproc-personal.$k" "$WORK/nn-transfer-$via-personal.$k" \
        "nn transfer, client $k's personal model: $via vs in_process" || return 1
    done
  done
}

step_nn_fedlora() {  # FedLoRA and HetLoRA: federated_lora::run vs the roles over threads, MPI and MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-fedlora-*.bin
  local name via vias extra
  for name in homogeneous heterogeneous; do
    # Rank 4 everywhere, C = 1: threads and MPI; ranks 1-4, C = 0.5: threads, MPI and MQTT (the
    # transports are the FedAvg steps' own: MQTT's retained broadcast is exercised there).
    extra=() vias=(threads mpi)
    [[ $name == heterogeneous ]] && extra=(--lora-ranks 1,2,3,4 --fraction 0.5) vias=(threads mpi mqtt)
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedlora inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${extra[@]}" \
      --out "$WORK/nn-fedlora-$name-inproc.bin" || return 1
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" fedlora threads --dir "$WORK/fmnist" "${nn_common[@]}" "${extra[@]}" \
      --out "$WORK/nn-fedlora-$name-threads.bin" || return 1
    nn_mpi fedlora "$WORK/nn-fedlora-$name-mpi.bin" "${extra[@]}" || return 1
    if [[ $name == heterogeneous ]]; then
      CLIENT_EXTRA=()
      nn_mqtt fedlora "nnlora$name" "$WORK/nn-fedlora-$name-mqtt.bin" "${extra[@]}" || return 1
    fi
    for via in "${vias[@]}"; do
      same "$WORK/nn-fedlora-$name-inproc.bin" "$WORK/nn-fedlora-$name-$via.bin" \
        "nn fedlora ($name ranks), final adapters: $via vs federated_lora::run" || return 1
    done
  done
  cmp -s "$WORK/nn-fedlora-homogeneous-inproc.bin" "$WORK/nn-fedlora-heterogeneous-inproc.bin" &&
    { echo "the ranks changed nothing"; return 1; }
  return 0
}

step_nn_splitfed() {
  nn_data || return 1
  rm -f "$WORK"/nn-splitfed-*.bin
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" --out "$WORK/nn-splitfed-inproc.bin" || return 1
  SPLITFED_INPROC_DONE=1  # nn-split-server-killed compares with this run too
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" --out "$WORK/nn-splitfed-workflow.bin" || return 1
  same "$WORK/nn-splitfed-workflow.bin" "$WORK/nn-splitfed-inproc.bin" "nn splitfed: workflow/split_deploy.hpp in_process vs workflow/split.hpp" || return 1
  # Unequal client sizes (Dirichlet 0.5): clients run out of data at different steps, so the
  # batch order depends on workflow/split.hpp's shared reshuffle counter — replicated or not.
  local dir=(--dirichlet 0.5)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${dir[@]}" --out "$WORK/nn-splitfed-dir-inproc.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${dir[@]}" --out "$WORK/nn-splitfed-dir-workflow.bin" || return 1
  same "$WORK/nn-splitfed-dir-workflow.bin" "$WORK/nn-splitfed-dir-inproc.bin" \
    "nn splitfed, Dirichlet(0.5) clients of unequal size: workflow/split_deploy.hpp in_process vs workflow/split.hpp" || return 1
  split_over_mpi_mqtt splitfed nnsplit "nn splitfed" "$WORK/nn-splitfed-inproc.bin" "in_process" || return 1
  # int8 smashed data up, fp16 gradients down: workflow/split.hpp with the same codecs = the deployment
  # in process = over MPI (the servers also check each step's payload bytes against the codecs' sizes).
  local q=(--codecs int8-fp16)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${q[@]}" --out "$WORK/nn-splitfed-q-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${q[@]}" --out "$WORK/nn-splitfed-q-inproc.bin" || return 1
  same "$WORK/nn-splitfed-q-workflow.bin" "$WORK/nn-splitfed-q-inproc.bin" \
    "nn splitfed --codecs int8-fp16: workflow/split_deploy.hpp in_process vs workflow/split.hpp" || return 1
  nn_mpi splitfed "$WORK/nn-splitfed-q-mpi.bin" "${q[@]}" || return 1
  same "$WORK/nn-splitfed-q-inproc.bin" "$WORK/nn-splitfed-q-mpi.bin" "nn splitfed --codecs int8-fp16: mpi vs in_process" || return 1
  cmp -s "$WORK/nn-splitfed-inproc.bin" "$WORK/nn-splitfed-q-inproc.bin" && { echo "the codecs changed nothing"; return 1; }
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NN" splitfed hostile --dir "$WORK/fmnist" "${nn_common[@]}"
}

step_nn_psl() {  # PSL: the engine in process vs the lockstep deployment in process, over MPI and over MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-psl-*.bin
  local psl=(--scheme psl)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${psl[@]}" --out "$WORK/nn-psl-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${psl[@]}" --out "$WORK/nn-psl-inproc.bin" || return 1
  same "$WORK/nn-psl-workflow.bin" "$WORK/nn-psl-inproc.bin" "nn psl: psl_deployment in_process vs workflow/split.hpp's psl" || return 1
  # The server stopped in round 3 after 20 steps and resumed from its checkpoint (the one server
  # segment's Adam state in it); every client redoes round 3 from step 0.
  local ck="$WORK/nn-psl.ckpt"
  rm -f "$ck" "$ck.tmp"
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${psl[@]}" --checkpoint "$ck" \
    --crash-round 3 --crash-after 20 --out "$WORK/nn-psl-resume.bin" | tee "$WORK/nnpslresume.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  grep -q "resumed at round 3 (restart epoch 1" "$WORK/nnpslresume.log" || { echo "the PSL server did not resume"; return 1; }
  same "$WORK/nn-psl-workflow.bin" "$WORK/nn-psl-resume.bin" "nn psl: server stopped in round 3, resumed from its checkpoint, vs workflow/split.hpp" || return 1
  split_over_mpi_mqtt psl nnpsl "nn psl" "$WORK/nn-psl-workflow.bin" "workflow/split.hpp" "${psl[@]}" || return 1
  local q=(--codecs int8-fp16)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${psl[@]}" "${q[@]}" --out "$WORK/nn-psl-q-workflow.bin" || return 1
  nn_mpi splitfed "$WORK/nn-psl-q-mpi.bin" "${psl[@]}" "${q[@]}" || return 1
  same "$WORK/nn-psl-q-workflow.bin" "$WORK/nn-psl-q-mpi.bin" "nn psl --codecs int8-fp16: mpi vs workflow/split.hpp" || return 1
  cmp -s "$WORK/nn-psl-workflow.bin" "$WORK/nn-psl-q-workflow.bin" && { echo "the codecs changed nothing"; return 1; }
  [[ -f "$WORK/nn-splitfed-inproc.bin" ]] && cmp -s "$WORK/nn-psl-inproc.bin" "$WORK/nn-splitfed-inproc.bin" \
    && { echo "PSL computed SplitFedV1's model"; return 1; }
  # A client killed mid-round: the lockstep step waits round_timeout for it, then goes on without it.
  split_client_killed nnpsldrop "nn psl: client 3 killed at step 5 of round 2, the steps go on with the other 3" "${psl[@]}"
}

split_engine_vs_inproc() {  # KEY LABEL [NN_NODE ARGS...]
  # workflow/split.hpp's engine and the split deployment over in_process threads: nn-KEY-workflow.bin = nn-KEY-inproc.bin.
  local key=$1 label=$2
  shift 2
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "$@" --out "$WORK/nn-$key-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "$@" --out "$WORK/nn-$key-inproc.bin" || return 1
  same "$WORK/nn-$key-workflow.bin" "$WORK/nn-$key-inproc.bin" "$label: in_process vs workflow/split.hpp"
}
step_nn_multihop() {  # multi-hop PSL, device → edge → cloud: the engine with cut<2, 4> vs the deployment in process, MPI, MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-mh-*.bin
  local mh=(--scheme psl --cuts 2)
  split_engine_vs_inproc mh "nn psl multi-hop (edge and cloud on threads; the engine with cut<2, 4>)" "${mh[@]}" || return 1
  # mpirun -np 6: the edge (rank 0), 4 devices, the cloud (rank 5); MQTT: the cloud on the run nnmh-cloud.
  NN_NP=6 NN_MQTT_CLOUD=1 split_over_mpi_mqtt mh nnmh "nn psl multi-hop" "$WORK/nn-mh-workflow.bin" "workflow/split.hpp" "${mh[@]}" || return 1
  # int8 smashed data and fp16 gradients at both cuts, in process.
  split_engine_vs_inproc mh-q "nn psl multi-hop --codecs int8-fp16" "${mh[@]}" --codecs int8-fp16 || return 1
  cmp -s "$WORK/nn-mh-workflow.bin" "$WORK/nn-mh-q-workflow.bin" && { echo "the codecs changed nothing"; return 1; }
  # A device killed mid-round: the edge's lockstep step waits round_timeout for it, then goes on
  # through the cloud without it.
  NN_MQTT_CLOUD=1 split_client_killed nnmhdrop "nn psl multi-hop: device 3 killed at step 5 of round 2, the edge's steps go on with the other 3" "${mh[@]}"
}

step_nn_epsl() {  # EPSL: the engine in process vs the lockstep deployment with aggregated rows in process, MPI, MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-epsl-*.bin
  local epsl=(--scheme epsl --phi 0.5)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${epsl[@]}" --out "$WORK/nn-epsl-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${epsl[@]}" --out "$WORK/nn-epsl-inproc.bin" || return 1
  same "$WORK/nn-epsl-workflow.bin" "$WORK/nn-epsl-inproc.bin" "nn epsl (phi 0.5): epsl_deployment in_process vs workflow/split.hpp's epsl" || return 1
  split_over_mpi_mqtt epsl nnepsl "nn epsl (phi 0.5)" "$WORK/nn-epsl-workflow.bin" "workflow/split.hpp" "${epsl[@]}" || return 1
  # phi = 1 (one shared row per batch position: the server's backward batch is b, not 4b), in
  # process; phi = 0 is PSL: the deployment computes PSL's model (nn-psl's, when that step ran).
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" --scheme epsl --phi 1 --out "$WORK/nn-epsl-1-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" --scheme epsl --phi 1 --out "$WORK/nn-epsl-1-inproc.bin" || return 1
  same "$WORK/nn-epsl-1-workflow.bin" "$WORK/nn-epsl-1-inproc.bin" "nn epsl (phi 1): in_process vs workflow/split.hpp" || return 1
  cmp -s "$WORK/nn-epsl-workflow.bin" "$WORK/nn-epsl-1-workflow.bin" && { echo "phi changed nothing"; return 1; }
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" --scheme epsl --phi 0 --out "$WORK/nn-epsl-0-inproc.bin" || return 1
  if [[ -f "$WORK/nn-psl-workflow.bin" ]]; then
    same "$WORK/nn-psl-workflow.bin" "$WORK/nn-epsl-0-inproc.bin" "nn epsl (phi 0) in_process vs workflow/split.hpp's psl" || return 1
  fi
  cmp -s "$WORK/nn-epsl-workflow.bin" "$WORK/nn-epsl-0-inproc.bin" && { echo "EPSL (phi 0.5) computed PSL's model"; return 1; }
  return 0
}

step_nn_splitfed_v2() {  # SplitFedV2: the engine in process vs the sequential deployment in process, MPI, MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-v2-*.bin
  local v2=(--scheme splitfed_v2) dir=(--dirichlet 0.5)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${v2[@]}" --out "$WORK/nn-v2-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${v2[@]}" --out "$WORK/nn-v2-inproc.bin" || return 1
  same "$WORK/nn-v2-workflow.bin" "$WORK/nn-v2-inproc.bin" "nn splitfed_v2: splitfed_v2_deployment in_process vs workflow/split.hpp" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${v2[@]}" "${dir[@]}" --out "$WORK/nn-v2-dir-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${v2[@]}" "${dir[@]}" --out "$WORK/nn-v2-dir-inproc.bin" || return 1
  same "$WORK/nn-v2-dir-workflow.bin" "$WORK/nn-v2-dir-inproc.bin" \
    "nn splitfed_v2, Dirichlet(0.5) clients of unequal size: in_process vs workflow/split.hpp" || return 1
  split_over_mpi_mqtt v2 nnv2 "nn splitfed_v2" "$WORK/nn-v2-workflow.bin" "workflow/split.hpp" "${v2[@]}" || return 1
  for f in nn-psl-workflow nn-splitfed-inproc; do
    [[ -f "$WORK/$f.bin" ]] && cmp -s "$WORK/nn-v2-workflow.bin" "$WORK/$f.bin" && { echo "SplitFedV2 computed $f's model"; return 1; }
  done
  split_client_killed nnv2drop "nn splitfed_v2: client 3 killed at step 5 of round 2, its turn timed out, client 4 went on" "${v2[@]}"
}

step_nn_vsl() {  # VSL: the engine in process vs the hand-over deployment in process, MPI, MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-vsl-*.bin
  local vsl=(--scheme vsl) dir=(--dirichlet 0.5)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${vsl[@]}" --out "$WORK/nn-vsl-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${vsl[@]}" --out "$WORK/nn-vsl-inproc.bin" || return 1
  same "$WORK/nn-vsl-workflow.bin" "$WORK/nn-vsl-inproc.bin" "nn vsl: vsl_deployment in_process vs workflow/split.hpp's vsl" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${vsl[@]}" "${dir[@]}" --out "$WORK/nn-vsl-dir-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${vsl[@]}" "${dir[@]}" --out "$WORK/nn-vsl-dir-inproc.bin" || return 1
  same "$WORK/nn-vsl-dir-workflow.bin" "$WORK/nn-vsl-dir-inproc.bin" \
    "nn vsl, Dirichlet(0.5) clients of unequal size: in_process vs workflow/split.hpp" || return 1
  # The server stopped in round 3 after 20 steps (client 2's turn) and resumed from its checkpoint:
  # client 1 redoes its turn of round 3 from the round's start, client 2 abandons its turn and redoes it.
  local ck="$WORK/nn-vsl.ckpt"
  rm -f "$ck" "$ck.tmp"
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${vsl[@]}" --checkpoint "$ck" \
    --crash-round 3 --crash-after 20 --out "$WORK/nn-vsl-resume.bin" | tee "$WORK/nnvslresume.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  grep -q "resumed at round 3 (restart epoch 1" "$WORK/nnvslresume.log" || { echo "the VSL server did not resume"; return 1; }
  same "$WORK/nn-vsl-workflow.bin" "$WORK/nn-vsl-resume.bin" "nn vsl: server stopped in round 3, resumed from its checkpoint, vs workflow/split.hpp" || return 1
  split_over_mpi_mqtt vsl nnvsl "nn vsl" "$WORK/nn-vsl-workflow.bin" "workflow/split.hpp" "${vsl[@]}" || return 1
  for f in nn-v2-workflow nn-psl-workflow; do
    [[ -f "$WORK/$f.bin" ]] && cmp -s "$WORK/nn-vsl-workflow.bin" "$WORK/$f.bin" && { echo "VSL computed $f's model"; return 1; }
  done
  split_client_killed nnvsldrop "nn vsl: client 3 killed at step 5 of round 2, its turn timed out, client 4 went on with the segment of client 2" "${vsl[@]}"
}

step_nn_edge_split() {  # EdgeSplit / CPSL: the engine in process vs the cluster-turn deployment in process, MPI, MQTT
  nn_data || return 1
  rm -f "$WORK"/nn-edge-*.bin
  local edge=(--scheme edge_split --clusters 2)
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" "${edge[@]}" --out "$WORK/nn-edge-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "${edge[@]}" --out "$WORK/nn-edge-inproc.bin" || return 1
  same "$WORK/nn-edge-workflow.bin" "$WORK/nn-edge-inproc.bin" "nn edge_split (2 clusters): edge_split_deployment in_process vs workflow/split.hpp's edge_split" || return 1
  # Dirichlet(0.5) clients of unequal size, 3 clusters of 4 clients (1 | 2 | 3, 4): the reshuffle order is
  # cluster-major, and a cluster of one runs PSL alone.
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed workflow --dir "$WORK/fmnist" "${nn_common[@]}" --scheme edge_split --clusters 3 --dirichlet 0.5 --out "$WORK/nn-edge-dir-workflow.bin" || return 1
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" --scheme edge_split --clusters 3 --dirichlet 0.5 --out "$WORK/nn-edge-dir-inproc.bin" || return 1
  same "$WORK/nn-edge-dir-workflow.bin" "$WORK/nn-edge-dir-inproc.bin" \
    "nn edge_split (3 clusters), Dirichlet(0.5) clients of unequal size: in_process vs workflow/split.hpp" || return 1
  split_over_mpi_mqtt edge nnedge "nn edge_split (2 clusters)" "$WORK/nn-edge-workflow.bin" "workflow/split.hpp" "${edge[@]}" || return 1
  for f in nn-psl-workflow nn-vsl-workflow; do
    [[ -f "$WORK/$f.bin" ]] && cmp -s "$WORK/nn-edge-workflow.bin" "$WORK/$f.bin" && { echo "EdgeSplit computed $f's model"; return 1; }
  done
  # Client 3 (second cluster: 3, 4) killed mid-turn: its cluster's lockstep goes on with client 4.
  split_client_killed nnedgedrop "nn edge_split: client 3 killed at step 5 of round 2, its cluster went on with client 4" "${edge[@]}"
}

# split_client_killed RUN LABEL [ARGS...]: client 3 leaves at step 5 of round 2 — a thread that
# returns in process, a SIGKILLed process over MQTT; both runs must close rounds of 4, 3, 3, 3
# clients and end with the same bytes. ARGS choose the scheme.
split_client_killed() {
  local run=$1 label=$2; shift 2
  local fault=(--min-clients 3 --round-timeout-ms 4000)
  rm -f "$WORK/nn-$run-inproc.bin" "$WORK/nn-$run-mqtt.bin"
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" "$@" "${fault[@]}" \
    --drop-client 3 --drop-round 2 --drop-step 5 --out "$WORK/nn-$run-inproc.bin" | tee "$WORK/$run-inproc.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  CLIENT_EXTRA=([3]="--die-round 2 --die-step 5")
  nn_mqtt splitfed "$run" "$WORK/nn-$run-mqtt.bin" "$@" "${fault[@]}"
  local rc=$?
  CLIENT_EXTRA=()
  [[ $rc -eq 0 ]] || return 1
  grep -q "SIGKILL" "$WORK/$run-client-3.log" || { echo "client 3 did not die"; return 1; }
  local f
  for f in "$WORK/$run-inproc.log" "$WORK/$run-server.log"; do
    grep -q "clients per round \[ 4 3 3 3 \]" "$f" || { echo "unexpected round sizes in $f"; return 1; }
  done
  same "$WORK/nn-$run-inproc.bin" "$WORK/nn-$run-mqtt.bin" "$label; mqtt vs in_process"
}

step_nn_splitfed_client_killed() {
  nn_data || return 1
  split_client_killed nnsplitdrop "nn splitfed: client 3 killed at step 5 of round 2, rounds completed from the other 3"
}

step_nn_split_server_killed() {
  nn_data || return 1
  local ck="$WORK/nn-split.ckpt" crash=(--crash-round 3 --crash-after 20)
  rm -f "$WORK"/nn-splitresume-*.bin "$ck" "$ck.tmp"
  # The uninterrupted run: nn-splitfed's in-process run of this script has the same arguments.
  if [[ $SPLITFED_INPROC_DONE -eq 1 ]]; then
    cp "$WORK/nn-splitfed-inproc.bin" "$WORK/nn-splitresume-straight.bin" || return 1
  else
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" \
      --out "$WORK/nn-splitresume-straight.bin" || return 1
  fi
  # In process: the first server object stops in round 3, a new one resumes with the same clients.
  ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed inproc --dir "$WORK/fmnist" "${nn_common[@]}" --checkpoint "$ck" \
    "${crash[@]}" --out "$WORK/nn-splitresume-inproc.bin" | tee "$WORK/nnsplitresume-inproc.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || return 1
  grep -q "resumed at round 3 (restart epoch 1;" "$WORK/nnsplitresume-inproc.log" \
    || { echo "the in-process server did not resume at round 3"; return 1; }
  same "$WORK/nn-splitresume-straight.bin" "$WORK/nn-splitresume-inproc.bin" \
    "nn splitfed: server stopped in round 3 and resumed from its checkpoint, in process, vs uninterrupted" || return 1
  # MQTT: the server process SIGKILLs itself, a new process resumes; the clients live on.
  rm -f "$ck" "$ck.tmp"
  start_broker || return 1
  CLIENT_EXTRA=()
  CLIENT_PIDS=()
  for k in 1 2 3 4; do
    ASAN_OPTIONS=$ASAN_DEFAULT "$NN" splitfed mqtt-client --dir "$WORK/fmnist" --port "$BROKER_PORT" --run nnsplitresume \
      --id "$k" "${nn_common[@]}" >"$WORK/nnsplitresume-client-$k.log" 2>&1 &
    CLIENT_PIDS+=($!)
  done
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NN" splitfed mqtt-server --dir "$WORK/fmnist" --port "$BROKER_PORT" \
    --run nnsplitresume "${nn_common[@]}" --checkpoint "$ck" "${crash[@]}" --out "$WORK/nn-splitresume-mqtt.bin" \
    >"$WORK/nnsplitresume-server-1.log" 2>&1
  local first=$?
  cat "$WORK/nnsplitresume-server-1.log"
  [[ $first -eq 137 ]] || { echo "the first server should have died of SIGKILL (137), got $first"; stop_clients; stop_broker; return 1; }
  [[ ! -e "$WORK/nn-splitresume-mqtt.bin" ]] || { echo "the killed server wrote a result"; stop_clients; stop_broker; return 1; }
  ASAN_OPTIONS=$ASAN_DEFAULT timeout 120 "$NN" splitfed mqtt-server --dir "$WORK/fmnist" --port "$BROKER_PORT" \
    --run nnsplitresume "${nn_common[@]}" --checkpoint "$ck" --out "$WORK/nn-splitresume-mqtt.bin" \
    | tee "$WORK/nnsplitresume-server-2.log"
  local rc=${PIPESTATUS[0]}
  [[ $rc -eq 0 ]] || stop_clients
  wait_clients nnsplitresume || rc=1
  stop_broker
  [[ $rc -eq 0 ]] || return 1
  grep -q "resumed at round 3 (restart epoch 1;" "$WORK/nnsplitresume-server-2.log" \
    || { echo "the restarted server did not resume at round 3"; return 1; }
  for k in 1 2 3 4; do
    grep -q "redoing round 3 from step 0" "$WORK/nnsplitresume-client-$k.log" \
      || { echo "client $k did not redo round 3:"; cat "$WORK/nnsplitresume-client-$k.log"; return 1; }
  done
  same "$WORK/nn-splitresume-straight.bin" "$WORK/nn-splitresume-mqtt.bin" \
    "nn splitfed: server SIGKILLed in round 3, restarted from its checkpoint over MQTT, vs uninterrupted"
}

step build step_build
step_pipeline_mpi() {  # pipeline stages over in_process threads and MPI ranks vs the whole model
  local k opts=(--rows 257 --micro-batch 16)
  "$PIPE" single --stages 2 "${opts[@]}" --out "$WORK/pipe-single.bin" || return 1
  for k in 2 3 4; do
    "$PIPE" inproc --stages "$k" "${opts[@]}" --out "$WORK/pipe-inproc-$k.bin" || return 1
    same "$WORK/pipe-single.bin" "$WORK/pipe-inproc-$k.bin" "pipeline K=$k: in_process threads vs one process" || return 1
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 120 mpirun --oversubscribe -np "$k" \
      "$PIPE" mpi --stages "$k" "${opts[@]}" --out "$WORK/pipe-mpi-$k.bin" || return 1
    same "$WORK/pipe-single.bin" "$WORK/pipe-mpi-$k.bin" "pipeline K=$k: mpirun -np $k vs one process" || return 1
  done
  # Training (pipeline_training): 230 rows in batches of 64, micro-batches of 24 (a short last
  # micro-batch in every batch, a short last batch), SGD with momentum.
  local train=(--rows 230 --micro-batch 24 --train 64)
  "$PIPE" single --stages 2 "${train[@]}" --out "$WORK/pipetrain-single.bin" || return 1
  "$PIPE" inproc --stages 3 "${train[@]}" --out "$WORK/pipetrain-inproc-3.bin" || return 1
  same "$WORK/pipetrain-single.bin" "$WORK/pipetrain-inproc-3.bin" \
    "pipeline training K=3: in_process threads vs one process" || return 1
  for k in 2 3; do
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 timeout 120 mpirun --oversubscribe -np "$k" \
      "$PIPE" mpi --stages "$k" "${train[@]}" --out "$WORK/pipetrain-mpi-$k.bin" || return 1
    same "$WORK/pipetrain-single.bin" "$WORK/pipetrain-mpi-$k.bin" \
      "pipeline training K=$k: mpirun -np $k vs one process (trained parameters)" || return 1
  done
}

if [[ $FAILED -eq 0 ]]; then
  step fuzz step_fuzz
  step mpi step_mpi
  step mpi-robustness step_mpi_robustness
  step mqtt step_mqtt
  step mqtt-robustness step_mqtt_robustness
  step mqtt-client-killed step_mqtt_client_killed
  step mqtt-server-killed step_mqtt_server_killed
  step mpi-attacks step_mpi_attacks
  step mqtt-attacks step_mqtt_attacks
  step mqtt-acl-tls step_mqtt_acl_tls
  step nn-fedavg step_nn_fedavg
  step nn-fedavg-client-killed step_nn_fedavg_client_killed
  step nn-fedavg-secure step_nn_fedavg_secure
  step nn-fedavg-secure-client-killed step_nn_fedavg_secure_client_killed
  step nn-transfer step_nn_transfer
  step nn-fedlora step_nn_fedlora
  step nn-splitfed step_nn_splitfed
  step nn-psl step_nn_psl
  step nn-multihop step_nn_multihop
  step nn-epsl step_nn_epsl
  step nn-splitfed-v2 step_nn_splitfed_v2
  step nn-vsl step_nn_vsl
  step nn-edge-split step_nn_edge_split
  step nn-split-client-killed step_nn_splitfed_client_killed
  step nn-split-server-killed step_nn_split_server_killed
  step pipeline-mpi step_pipeline_mpi
else
  [[ -n "$FUZZ_PID" ]] && { kill "$FUZZ_PID" 2>/dev/null; wait "$FUZZ_PID" 2>/dev/null; }
  echo "build failed: the end-to-end steps are skipped (counted as failed)"
  FAILED=$((FAILED + 26))
fi

echo "==== transport summary"
printf '%s\n' "${RESULTS[@]}"
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
