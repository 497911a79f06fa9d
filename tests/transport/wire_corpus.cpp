// Writes the seed corpus of the wire-format fuzzer (tests/transport/fuzz_wire.cpp):
// one valid frame of every message type and dtype, plus a FedAvg server
// checkpoint and two split-server checkpoints.
//
//   transport_wire_corpus DIR
#include <cstdio>
#include <string>
#include <vector>

#include "tinylarge/io/file.hpp"
#include "tinylarge/transport/checkpoint.hpp"
#include "tinylarge/transport/wire.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  namespace wire = tl::wire;
  const std::string dir = argv[1];
  int n = 0;
  // The fuzzer's first byte selects the decoder (even: frame; 1: FedAvg checkpoint, 3: split checkpoint).
  auto put = [&](std::uint8_t selector, const std::vector<std::uint8_t>& frame) {
    std::vector<std::uint8_t> file;
    file.push_back(selector);
    file.insert(file.end(), frame.begin(), frame.end());
    tl::io::write_file(dir + "/seed-" + std::to_string(n++), file);
  };
  const wire::wire_dtype dtypes[] = {wire::wire_dtype::bytes, wire::wire_dtype::fp32, wire::wire_dtype::fp16,
                                     wire::wire_dtype::int8};
  for (std::uint8_t t = 1; t <= wire::message_type_max; ++t) {
    for (const auto d : dtypes) {
      for (std::uint32_t count : {0u, 3u, 17u}) {
       for (const std::uint8_t flags : {std::uint8_t{0}, wire::wire_flag_mac}) {  // with and without a MAC trailer
        wire::message_header h;
        h.flags = flags;
        h.type = static_cast<wire::message_type>(t);
        h.dtype = d;
        h.sender = t;
        h.round = count;
        h.count = count;
        h.aux = 1000u + t;
        if (d == wire::wire_dtype::int8) {
          h.scale = 0.02f;
          h.zero_point = -5;
        }
        std::vector<std::uint8_t> payload(count * wire::wire_itemsize(d));
        for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 37 + t);
        std::vector<std::uint8_t> frame(wire::frame_size(payload.size(), flags));
        std::size_t written = 0;
        tl::raise_if_error(wire::encode(h, payload, frame, written));
        put(0, frame);
       }
      }
    }
  }
  tl::server_checkpoint c;
  c.rounds_completed = 2;
  c.global = {1.0f, 2.0f, 3.0f};
  c.state = {{0.5f, 0.25f, 0.125f}};
  put(1, tl::encode_server_checkpoint(c));
  tl::split_checkpoint sc;
  sc.rounds_completed = 2;
  sc.restarts = 1;
  sc.device = {1.0f, 2.0f, 3.0f};
  sc.server = {4.0f, 5.0f};
  put(3, tl::encode_split_checkpoint(sc));  // stateless policies, no copies
  sc.device_state = {{0.5f, 0.25f, 0.125f}};
  sc.server_state = {{-1.0f, 1.0f}};
  sc.device_state_steps = sc.server_state_steps = 2;
  sc.copies = {{{{0.1f, 0.2f}, {0.3f, 0.4f}}, 7}, {{{0.5f, 0.6f}, {0.7f, 0.8f}}, 9}};
  put(3, tl::encode_split_checkpoint(sc));  // momentum states, two Adam copies
  std::printf("wrote %d seed files to %s\n", n, dir.c_str());
  return 0;
}
