/// @file transport/checkpoint.hpp
/// @brief Server checkpoints for crash recovery: the global parameters, the
///        aggregation policy's state, the round number and the server RNG,
///        written atomically every round and CRC-checked on load.
///
/// A checkpoint file is one wire frame (transport/wire.hpp) of type
/// `checkpoint`, dtype `bytes`, `round` = rounds completed, so it inherits
/// the frame's version, size limit and two CRC-32s. The payload
/// (little-endian):
///
///     offset  size      field
///     0       4         dimension d (parameters)
///     4       4         k, number of state vectors of the policy
///     8       8         policy step counter (e.g. FedAdam's t; 0 if none)
///     16      4         r, bytes of RNG state
///     20      r         RNG state (object representation of `tl::rng`)
///     20+r    4·d       global parameters (fp32)
///     …       4·d·k     the policy's state vectors, in declaration order
///
/// Written with `io::write_file` (temporary file + rename), so a crash during
/// the write leaves the previous checkpoint intact.
///
/// Supported aggregation states: stateless policies (fedavg, fedprox, the
/// robust rules), `fedavgm` (momentum, rounds) and the FedOpt family (m, v,
/// rounds). Another stateful policy needs an overload of `checkpoint_state`.
///
/// Limitation: `tl::rng` has no public state accessors, so its state is
/// stored as its object representation (`sizeof(tl::rng)` bytes): valid
/// between builds with the same layout, rejected (size check) otherwise.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "../aggregate/policy.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../io/file.hpp"
#include "wire.hpp"

namespace tinylarge {

/// Everything a federated server needs to resume after a crash.
struct server_checkpoint {
  std::uint32_t rounds_completed = 0;
  std::vector<float> global;                   ///< parameters after `rounds_completed` rounds
  std::vector<std::vector<float>> state;       ///< the policy's state vectors
  std::uint64_t state_steps = 0;               ///< the policy's step counter
  rng generator{};                             ///< the server RNG after `rounds_completed` rounds
};

static_assert(std::is_trivially_copyable_v<rng>, "checkpoint stores tl::rng by its object representation");

/// Copies a policy state to and from checkpoint vectors. Stateless policies
/// store nothing; `fedavgm` its momentum; FedOpt its two moments.
template <class State>
void checkpoint_state(const State& st, std::vector<std::vector<float>>& vecs, std::uint64_t& steps) {
  vecs.clear();
  steps = 0;
  if constexpr (requires { st.momentum; st.rounds; }) {
    vecs.push_back(st.momentum);
    steps = st.rounds;
  } else if constexpr (requires { st.m; st.v; st.rounds; }) {
    vecs.push_back(st.m);
    vecs.push_back(st.v);
    steps = st.rounds;
  }
}

/// Restores what `checkpoint_state` saved; `corrupt` when the shapes differ.
template <class State>
[[nodiscard]] status restore_state(State& st, const std::vector<std::vector<float>>& vecs, std::uint64_t steps) {
  if constexpr (requires { st.momentum; st.rounds; }) {
    TINYLARGE_CHECK(vecs.size() == 1 && vecs[0].size() == st.momentum.size(), errc::corrupt,
                    "checkpoint: the policy state does not match (expected a momentum vector)");
    st.momentum = vecs[0];
    st.rounds = static_cast<decltype(st.rounds)>(steps);
  } else if constexpr (requires { st.m; st.v; st.rounds; }) {
    TINYLARGE_CHECK(vecs.size() == 2 && vecs[0].size() == st.m.size() && vecs[1].size() == st.v.size(),
                    errc::corrupt, "checkpoint: the policy state does not match (expected two moment vectors)");
    st.m = vecs[0];
    st.v = vecs[1];
    st.rounds = static_cast<decltype(st.rounds)>(steps);
  } else {
    TINYLARGE_CHECK(vecs.empty(), errc::corrupt, "checkpoint: state vectors for a stateless policy");
    (void)st;
    (void)steps;
  }
  return status::success();
}

/// Serialise `c` into one wire frame.
inline std::vector<std::uint8_t> encode_server_checkpoint(const server_checkpoint& c) {
  const std::size_t d = c.global.size();
  for (const auto& v : c.state)
    TINYLARGE_REQUIRE(v.size() == d, errc::shape_mismatch, "encode_server_checkpoint: state vectors differ in size");
  const std::size_t rb = sizeof(rng);
  const std::size_t payload = 20 + rb + 4 * d * (1 + c.state.size());
  std::vector<std::uint8_t> p(payload);
  wire::detail::wire_put32(p.data(), static_cast<std::uint32_t>(d));
  wire::detail::wire_put32(p.data() + 4, static_cast<std::uint32_t>(c.state.size()));
  wire::detail::wire_put64(p.data() + 8, c.state_steps);
  wire::detail::wire_put32(p.data() + 16, static_cast<std::uint32_t>(rb));
  std::memcpy(p.data() + 20, &c.generator, rb);
  std::size_t off = 20 + rb;
  auto put = [&](const std::vector<float>& v) {
    for (const float x : v) {
      wire::detail::wire_put32(p.data() + off, std::bit_cast<std::uint32_t>(x));
      off += 4;
    }
  };
  put(c.global);
  for (const auto& v : c.state) put(v);
  wire::message_header h;
  h.type = wire::message_type::checkpoint;
  h.dtype = wire::wire_dtype::bytes;
  h.round = c.rounds_completed;
  TINYLARGE_REQUIRE(payload <= 0xFFFFFFFFu, errc::too_large, "encode_server_checkpoint: checkpoint above 4 GiB");
  h.count = static_cast<std::uint32_t>(payload);
  std::vector<std::uint8_t> frame(wire::frame_size(payload));
  std::size_t written = 0;
  wire::wire_limits lim;
  lim.max_payload_bytes = 0xFFFFFFFFu;
  raise_if_error(wire::encode(h, p, frame, written, lim));
  return frame;
}

/// Parse a checkpoint frame (untrusted bytes: every size checked).
[[nodiscard]] inline status decode_server_checkpoint(std::span<const std::uint8_t> bytes, server_checkpoint& c,
                                              const wire::wire_limits& limits = {}) {
  wire::message_view m;
  TINYLARGE_TRY(wire::decode(bytes, m, limits));
  TINYLARGE_CHECK(m.header.type == wire::message_type::checkpoint, errc::corrupt,
                  "checkpoint file holds a wire frame that is not a checkpoint");
  const auto p = m.payload;
  TINYLARGE_CHECK(p.size() >= 20, errc::truncated, "checkpoint payload shorter than its 20-byte preamble");
  const std::uint64_t d = wire::detail::wire_get32(p.data());
  const std::uint64_t k = wire::detail::wire_get32(p.data() + 4);
  const std::uint64_t steps = wire::detail::wire_get64(p.data() + 8);
  const std::uint64_t rb = wire::detail::wire_get32(p.data() + 16);
  TINYLARGE_CHECK(rb == sizeof(rng), errc::unsupported_version,
                  "checkpoint RNG state has another size than this build's tl::rng");
  TINYLARGE_CHECK(k <= 16, errc::corrupt, "checkpoint declares more than 16 state vectors");
  TINYLARGE_CHECK(p.size() == 20 + rb + 4 * d * (1 + k), errc::corrupt,
                  "checkpoint payload size disagrees with its dimension and state count");
  c.rounds_completed = m.header.round;
  c.state_steps = steps;
  std::memcpy(&c.generator, p.data() + 20, sizeof(rng));
  std::size_t off = 20 + sizeof(rng);
  auto get = [&](std::vector<float>& v) {
    v.resize(static_cast<std::size_t>(d));
    for (float& x : v) {
      x = std::bit_cast<float>(wire::detail::wire_get32(p.data() + off));
      off += 4;
    }
  };
  get(c.global);
  c.state.assign(static_cast<std::size_t>(k), {});
  for (auto& v : c.state) get(v);
  return status::success();
}

/// Write `c` to `path` atomically (temporary file + rename).
inline void save_server_checkpoint(const std::string& path, const server_checkpoint& c) {
  io::write_file(path, encode_server_checkpoint(c));
}

/// Load `path`; `false` when it does not exist. A file that exists but fails
/// validation raises (tl::format_error): resuming from a corrupt checkpoint
/// silently would lose work.
inline bool load_server_checkpoint(const std::string& path, server_checkpoint& c) {
  if (!io::file_readable(path)) return false;
  const auto bytes = io::read_file(path);
  const status s = decode_server_checkpoint(bytes, c);
  if (!s.ok()) TINYLARGE_RAISE(s.code, std::string("cannot resume from '") + path + "': " + s.message);
  return true;
}

}  // namespace tinylarge
