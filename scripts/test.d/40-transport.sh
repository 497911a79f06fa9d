# Sourced by scripts/test.sh: the transport layer end to end (issue 8) — MPI and
# MQTT FedAvg bit-identical to in-process, client and server kills, malformed
# frames, and a bounded libFuzzer run of the wire decoder.
step_transport() {
  TL_FUZZ_RUNS=${TL_FUZZ_RUNS:-500000} bash "$ROOT/scripts/transport_test.sh" "$BUILD_ROOT/transport"
}
register_step transport step_transport
