# Sourced by scripts/test.sh: the transport layer end to end (issues 8 and 25) — MPI and
# MQTT FedAvg bit-identical to in-process, client and server kills, malformed
# frames, a time-bounded (60 s) libFuzzer run of the wire decoder and checkpoint parsers,
# FedAvg / SplitFedV1 of a 784-64-10 MLP on a Fashion-MNIST subset over MPI and MQTT,
# bit-identical to in-process (the FedAvg family's roles against federated_averaging itself, for
# FedAvg, FedAdam, median, DP-FedAvg and int8 updates; SplitFedV1 to workflow/split.hpp), and the hostile-network
# attacks (authenticated frames, bounded client reports, a TLS + ACL broker).
step_transport() {
  TL_FUZZ_SECONDS=${TL_FUZZ_SECONDS:-60} bash "$ROOT/scripts/transport_test.sh" "$BUILD_ROOT/transport"
}
register_step transport step_transport
