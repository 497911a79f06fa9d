# Sourced by scripts/test.sh: the transport layer end to end (issue 8) — MPI and
# MQTT FedAvg bit-identical to in-process, client and server kills, malformed
# frames, a bounded libFuzzer run of the wire decoder, and FedAvg / SplitFedV1 of a
# 784-64-10 MLP on a Fashion-MNIST subset over MPI and MQTT, bit-identical to in-process
# (and SplitFedV1 to workflow/split.hpp).
step_transport() {
  TL_FUZZ_RUNS=${TL_FUZZ_RUNS:-500000} bash "$ROOT/scripts/transport_test.sh" "$BUILD_ROOT/transport"
}
register_step transport step_transport
