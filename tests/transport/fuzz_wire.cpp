// libFuzzer target of the wire format (transport/wire.hpp) and the two server
// checkpoint parsers (transport/checkpoint.hpp): every input must be either
// accepted — and then re-encode to the same bytes — or rejected with a status
// and a counted reason; never crash, leak, read out of bounds or allocate
// from a declared size. Built and run by scripts/transport_test.sh:
//
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
//     tests/transport/fuzz_wire.cpp -o fuzz_wire
//   ./fuzz_wire -runs=200000 corpus/      (seeded by transport_wire_corpus)
//
// The first byte selects the parser: even → wire::decode; odd → a checkpoint
// parser, bit 1 clear → the FedAvg one, set → the split server's. Accepted
// frames and checkpoints of both kinds must re-encode to the same bytes (the
// layouts are canonical; a frame's MAC trailer, which the wire layer only
// frames, is copied over: transport/auth.hpp computes and checks it).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "tinylarge/transport/checkpoint.hpp"
#include "tinylarge/transport/wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  namespace wire = tl::wire;
  const std::span<const std::uint8_t> in(data + 1, size - 1);
  wire::wire_limits limits;
  limits.max_payload_bytes = 1u << 20;
  if ((data[0] & 1u) == 0) {
    wire::wire_stats st;
    wire::message_view m;
    const tl::status s = wire::decode(in, m, limits, &st);
    if (s.ok() != (st.accepted == 1) || s.ok() == (st.total_rejected() == 1)) std::abort();  // exactly one outcome counted
    if (s.ok()) {
      // Accepted frames re-encode to the same bytes (the format is canonical).
      std::vector<std::uint8_t> again(wire::frame_size(m.payload.size(), m.header.flags));
      std::size_t written = 0;
      if (!wire::encode(m.header, m.payload, again, written, limits).ok()) std::abort();
      if (written != in.size()) std::abort();
      if (m.mac.size() != ((m.header.flags & wire::wire_flag_mac) != 0 ? wire::wire_mac_bytes : 0)) std::abort();
      std::copy(m.mac.begin(), m.mac.end(), again.end() - static_cast<std::ptrdiff_t>(m.mac.size()));
      if (!std::equal(again.begin(), again.end(), in.begin())) std::abort();
    }
  } else if ((data[0] & 2u) == 0) {
    tl::server_checkpoint c;
    if (tl::decode_server_checkpoint(in, c, limits).ok()) {
      const std::vector<std::uint8_t> again = tl::encode_server_checkpoint(c);
      if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) std::abort();
    }
  } else {
    tl::split_checkpoint c;
    if (tl::decode_split_checkpoint(in, c, limits).ok()) {
      const std::vector<std::uint8_t> again = tl::encode_split_checkpoint(c);
      if (again.size() != in.size() || !std::equal(again.begin(), again.end(), in.begin())) std::abort();
    }
  }
  return 0;
}
