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
/// Written with `io::write_file` (temporary file, fsync, rename, fsync of the
/// directory), so a crash or power loss during the write leaves the previous
/// checkpoint intact. Loading refuses NaN / ±Inf parameters and states
/// (`checkpoint_finite`).
///
/// Supported aggregation states: stateless policies (fedavg, fedprox, the
/// robust rules), `fedavgm` (momentum, rounds) and the FedOpt family (m, v,
/// rounds). Another stateful policy needs an overload of `checkpoint_state`.
///
/// Limitation: `tl::rng` has no public state accessors, so its state is
/// stored as its object representation (`sizeof(tl::rng)` bytes): valid
/// between builds with the same layout, rejected (size check) otherwise.
///
/// ## Split-server checkpoints (`split_checkpoint`, workflow/split_deploy.hpp)
///
/// The SplitFedV1 server saves arrays of different lengths (two segments,
/// two policy states, one optimizer state per server copy), so it has its
/// own payload: one wire frame of type `checkpoint`, dtype `bytes`, `round` =
/// rounds completed, `aux` = `split_checkpoint_tag` (the FedAvg checkpoint
/// has `aux` = 0; each decoder refuses the other's file by name). Payload
/// (little-endian):
///
///     offset  size      field
///     0       4         magic "TLSC"
///     4       4         layout version (1)
///     8       4         restarts: the restart epoch of the server that wrote it
///     12      4         n, server copies (one per client)
///     16      4         kd, state vectors of the device-segment policy (≤ 16)
///     20      4         ks, state vectors of the server-segment policy (≤ 16)
///     24      4         ko, optimizer state vectors per copy (≤ 16; 0 if n = 0)
///     28      4         reserved, 0
///     32      8         device-segment policy step counter
///     40      8         server-segment policy step counter
///     48      8·n       each copy's optimizer step counter, copy 1 first
///     48+8n   …         2 + kd + ks + n·ko arrays, each a u32 length L and
///                       then L fp32 values (4·L bytes), in this order: the
///                       global device segment, the global server segment,
///                       the device policy's state vectors, the server
///                       policy's, then copy 1's optimizer vectors … copy n's
///
/// Every count and length is checked against the bytes that remain before
/// anything is allocated; trailing bytes, a nonzero reserved field, another
/// magic or version are refused, so an accepted payload re-encodes to the
/// same bytes. Optimizer states: `nn::sgd` (velocity, empty when μ = 0) and
/// `nn::adam` (m, v, step count), via `checkpoint_optimizer`.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
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

namespace detail {
/// One wire frame of type `checkpoint`, dtype `bytes`, holding `payload`
/// (at most 4 GiB, checked by the callers), `round` = rounds completed.
inline std::vector<std::uint8_t> checkpoint_frame(std::uint32_t rounds_completed, std::uint64_t aux,
                                                  std::span<const std::uint8_t> payload) {
  wire::message_header h;
  h.type = wire::message_type::checkpoint;
  h.dtype = wire::wire_dtype::bytes;
  h.round = rounds_completed;
  h.aux = aux;
  h.count = static_cast<std::uint32_t>(payload.size());
  std::vector<std::uint8_t> frame(wire::frame_size(payload.size()));
  std::size_t written = 0;
  wire::wire_limits lim;
  lim.max_payload_bytes = 0xFFFFFFFFu;
  raise_if_error(wire::encode(h, payload, frame, written, lim));
  return frame;
}
}  // namespace detail

namespace detail {
/// The header fields `checkpoint_frame` always writes as they are: a decoder
/// refuses any other value, so that an accepted file re-encodes to itself.
[[nodiscard]] inline status check_checkpoint_header(const wire::message_header& h) noexcept {
  TINYLARGE_CHECK(h.dtype == wire::wire_dtype::bytes && h.sender == 0 && h.sequence == 0 && h.flags == 0,
                  errc::corrupt, "checkpoint frame: dtype, sender, sequence or flags differ from what the writer puts there");
  return status::success();
}
/// Read and decode a checkpoint file without letting an exception out:
/// `found` = false (and success) when it cannot be opened, else the verdict
/// of `decode(bytes)`, or an error status for a directory, a read error, a
/// file above the size limit or an allocation failure.
template <class Decode>
[[nodiscard]] status read_checkpoint_file(const std::string& path, bool& found, Decode&& decode) noexcept {
  found = io::file_readable(path);
  if (!found) return status::success();
#if TINYLARGE_HAS_EXCEPTIONS
  try {
    // No larger than the largest frame the decoder accepts: /dev/zero stops there.
    return decode(io::read_file(path, wire::frame_size(wire::wire_limits{}.max_payload_bytes)));
  } catch (const error& e) {
    return {e.code(), "cannot read the checkpoint file (a directory? unreadable? larger than the largest checkpoint frame?)"};
  } catch (const std::exception&) {
    return {errc::io_error, "cannot read the checkpoint file (a directory? out of memory?)"};
  }
#else
  return decode(io::read_file(path, wire::frame_size(wire::wire_limits{}.max_payload_bytes)));  // without exceptions, errors end in on_fatal_error
#endif
}
/// Runs a checkpoint write (which throws on a full disk, a missing
/// directory, …) and turns an exception into a status, for the servers'
/// `status`-returning loops.
template <class Write>
[[nodiscard]] status save_checkpoint_status(Write&& write) noexcept {
#if TINYLARGE_HAS_EXCEPTIONS
  try {
    write();
  } catch (const error& e) {
    return {e.code(), "cannot write the checkpoint file (directory missing? disk full?)"};
  } catch (const std::exception&) {
    return {errc::io_error, "cannot write the checkpoint file (out of memory?)"};
  }
#else
  write();
#endif
  return status::success();
}
}  // namespace detail

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
  TINYLARGE_REQUIRE(payload <= 0xFFFFFFFFu, errc::too_large, "encode_server_checkpoint: checkpoint above 4 GiB");
  return detail::checkpoint_frame(c.rounds_completed, 0, p);
}

/// Parse a checkpoint frame (untrusted bytes: every size checked).
[[nodiscard]] inline status decode_server_checkpoint(std::span<const std::uint8_t> bytes, server_checkpoint& c,
                                              const wire::wire_limits& limits = {}) {
  wire::message_view m;
  TINYLARGE_TRY(wire::decode(bytes, m, limits));
  TINYLARGE_CHECK(m.header.type == wire::message_type::checkpoint, errc::corrupt,
                  "checkpoint file holds a wire frame that is not a checkpoint");
  TINYLARGE_TRY(detail::check_checkpoint_header(m.header));
  TINYLARGE_CHECK(m.header.aux == 0, errc::corrupt,
                  "this is not a FedAvg server checkpoint (aux is not 0: a split-server checkpoint?)");
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

/// `non_finite` when the parameters or the policy state of `c` hold a NaN or
/// ±Inf: a CRC-valid checkpoint of a diverged run is not resumed from.
[[nodiscard]] inline status checkpoint_finite(const server_checkpoint& c) noexcept {
  TINYLARGE_CHECK(first_non_finite(c.global.data(), c.global.size()) == c.global.size(), errc::non_finite,
                  "checkpoint: the global parameters hold a NaN or infinite value");
  for (const auto& v : c.state)
    TINYLARGE_CHECK(first_non_finite(v.data(), v.size()) == v.size(), errc::non_finite,
                    "checkpoint: the policy state holds a NaN or infinite value");
  return status::success();
}

/// Write `c` to `path` atomically and durably (`io::write_file`).
inline void save_server_checkpoint(const std::string& path, const server_checkpoint& c) {
  io::write_file(path, encode_server_checkpoint(c));
}

/// Load `path` into `c` without throwing: `found` = false (and success) when
/// it does not exist; a file that exists but cannot be read or fails
/// validation is an error status — never skipped.
[[nodiscard]] inline status read_server_checkpoint(const std::string& path, server_checkpoint& c, bool& found) noexcept {
  return detail::read_checkpoint_file(
      path, found, [&](const std::vector<std::uint8_t>& bytes) {
        const status s = decode_server_checkpoint(bytes, c);
        return s.ok() ? checkpoint_finite(c) : s;
      });
}

/// Load `path`; `false` when it does not exist. A file that exists but fails
/// validation raises (tl::format_error): resuming from a corrupt checkpoint
/// silently would lose work.
inline bool load_server_checkpoint(const std::string& path, server_checkpoint& c) {
  bool found = false;
  const status s = read_server_checkpoint(path, c, found);
  if (!s.ok()) TINYLARGE_RAISE(s.code, std::string("cannot resume from '") + path + "': " + s.message);
  return found;
}

// ---- split-server checkpoints (layout in the file comment) ---------------------

/// `aux` of a split checkpoint frame, and its payload magic: "TLSC".
inline constexpr std::uint32_t split_checkpoint_tag = 0x43534C54u;
/// The payload layout version this build writes and reads.
inline constexpr std::uint32_t split_checkpoint_version = 1;

/// Everything the SplitFedV1 server (workflow/split_deploy.hpp) needs to resume.
struct split_checkpoint {
  /// The optimizer state of one server copy (`checkpoint_optimizer`).
  struct optimizer {
    std::vector<std::vector<float>> vectors;
    std::uint64_t steps = 0;
  };
  std::uint32_t rounds_completed = 0;
  std::uint32_t restarts = 0;                   ///< restart epoch of the server that wrote it
  std::vector<float> device, server;            ///< the global segments after `rounds_completed` rounds
  std::vector<std::vector<float>> device_state, server_state;  ///< the two aggregators' policy states
  std::uint64_t device_state_steps = 0, server_state_steps = 0;
  std::vector<optimizer> copies;                ///< the server copy of client k at index k − 1
};

/// Whether `checkpoint_optimizer` can save an optimizer state of type `S`
/// (`nn::sgd::state`, `nn::adam::state`: they have checkpoint accessors).
template <class S>
inline constexpr bool optimizer_checkpointable =
    requires(const S& s) { s.velocity(); } || requires(const S& s) { s.first_moment(); s.second_moment(); s.steps(); };

/// Copies an optimizer state to checkpoint vectors: sgd its velocity (none
/// when μ = 0), adam m and v, and its step count.
template <class S>
void checkpoint_optimizer(const S& s, std::vector<std::vector<float>>& vecs, std::uint64_t& steps) {
  static_assert(optimizer_checkpointable<S>, "checkpoint_optimizer: this optimizer state has no checkpoint accessors");
  vecs.clear();
  steps = 0;
  if constexpr (requires { s.velocity(); }) {
    if (!s.velocity().empty()) vecs.push_back(s.velocity());
  } else {
    vecs.push_back(s.first_moment());
    vecs.push_back(s.second_moment());
    steps = s.steps();
  }
}

/// Restores what `checkpoint_optimizer` saved; `corrupt` when the shapes differ.
template <class S>
[[nodiscard]] status restore_optimizer(S& s, const std::vector<std::vector<float>>& vecs, std::uint64_t steps) {
  static_assert(optimizer_checkpointable<S>, "restore_optimizer: this optimizer state has no checkpoint accessors");
  if constexpr (requires { s.velocity(); }) {
    const bool ok = s.velocity().empty() ? vecs.empty() : (vecs.size() == 1 && s.restore(vecs[0]));
    TINYLARGE_CHECK(ok && steps == 0, errc::corrupt, "checkpoint: the optimizer state does not match (sgd velocity)");
  } else {
    TINYLARGE_CHECK(vecs.size() == 2 && s.restore(vecs[0], vecs[1], steps), errc::corrupt,
                    "checkpoint: the optimizer state does not match (expected adam's two moment vectors)");
  }
  return status::success();
}

/// Serialise `c` into one wire frame (every copy must hold as many optimizer vectors).
inline std::vector<std::uint8_t> encode_split_checkpoint(const split_checkpoint& c) {
  const std::size_t n = c.copies.size();
  const std::size_t ko = n == 0 ? 0 : c.copies[0].vectors.size();
  for (const auto& o : c.copies)
    TINYLARGE_REQUIRE(o.vectors.size() == ko, errc::shape_mismatch,
                      "encode_split_checkpoint: the copies' optimizer states differ in their number of vectors");
  TINYLARGE_REQUIRE(c.device_state.size() <= 16 && c.server_state.size() <= 16 && ko <= 16, errc::invalid_argument,
                    "encode_split_checkpoint: more than 16 state vectors");
  std::uint64_t payload = 48 + 8 * std::uint64_t{n};
  auto add = [&](const std::vector<float>& v) { payload += 4 + 4 * std::uint64_t{v.size()}; };
  add(c.device);
  add(c.server);
  for (const auto& v : c.device_state) add(v);
  for (const auto& v : c.server_state) add(v);
  for (const auto& o : c.copies)
    for (const auto& v : o.vectors) add(v);
  TINYLARGE_REQUIRE(payload <= 0xFFFFFFFFu, errc::too_large, "encode_split_checkpoint: checkpoint above 4 GiB");
  std::vector<std::uint8_t> p(static_cast<std::size_t>(payload));
  using wire::detail::wire_put32;
  using wire::detail::wire_put64;
  wire_put32(p.data(), split_checkpoint_tag);
  wire_put32(p.data() + 4, split_checkpoint_version);
  wire_put32(p.data() + 8, c.restarts);
  wire_put32(p.data() + 12, static_cast<std::uint32_t>(n));
  wire_put32(p.data() + 16, static_cast<std::uint32_t>(c.device_state.size()));
  wire_put32(p.data() + 20, static_cast<std::uint32_t>(c.server_state.size()));
  wire_put32(p.data() + 24, static_cast<std::uint32_t>(ko));
  wire_put32(p.data() + 28, 0);
  wire_put64(p.data() + 32, c.device_state_steps);
  wire_put64(p.data() + 40, c.server_state_steps);
  std::size_t off = 48;
  for (const auto& o : c.copies) {
    wire_put64(p.data() + off, o.steps);
    off += 8;
  }
  auto put = [&](const std::vector<float>& v) {
    wire_put32(p.data() + off, static_cast<std::uint32_t>(v.size()));
    off += 4;
    for (const float x : v) {
      wire_put32(p.data() + off, std::bit_cast<std::uint32_t>(x));
      off += 4;
    }
  };
  put(c.device);
  put(c.server);
  for (const auto& v : c.device_state) put(v);
  for (const auto& v : c.server_state) put(v);
  for (const auto& o : c.copies)
    for (const auto& v : o.vectors) put(v);
  return detail::checkpoint_frame(c.rounds_completed, split_checkpoint_tag, p);
}

/// Parse a split checkpoint frame (untrusted bytes: every count and length is
/// checked against the remaining bytes before anything is allocated).
[[nodiscard]] inline status decode_split_checkpoint(std::span<const std::uint8_t> bytes, split_checkpoint& c,
                                                    const wire::wire_limits& limits = {}) {
  using wire::detail::wire_get32;
  using wire::detail::wire_get64;
  wire::message_view m;
  TINYLARGE_TRY(wire::decode(bytes, m, limits));
  TINYLARGE_CHECK(m.header.type == wire::message_type::checkpoint, errc::corrupt,
                  "split checkpoint file holds a wire frame that is not a checkpoint");
  TINYLARGE_TRY(detail::check_checkpoint_header(m.header));
  TINYLARGE_CHECK(m.header.aux != 0, errc::corrupt,
                  "this is a FedAvg server checkpoint (workflow/federated_deploy.hpp), not a split-server one");
  TINYLARGE_CHECK(m.header.aux == split_checkpoint_tag, errc::corrupt, "checkpoint of an unknown kind (aux tag)");
  const auto p = m.payload;
  const std::uint64_t size = p.size();
  TINYLARGE_CHECK(size >= 48, errc::truncated, "split checkpoint payload shorter than its 48-byte preamble");
  TINYLARGE_CHECK(wire_get32(p.data()) == split_checkpoint_tag, errc::corrupt, "split checkpoint: magic 'TLSC' missing");
  TINYLARGE_CHECK(wire_get32(p.data() + 4) == split_checkpoint_version, errc::unsupported_version,
                  "split checkpoint: layout version is not 1, the only one this build reads");
  const std::uint64_t n = wire_get32(p.data() + 12);
  const std::uint64_t kd = wire_get32(p.data() + 16), ks = wire_get32(p.data() + 20), ko = wire_get32(p.data() + 24);
  TINYLARGE_CHECK(kd <= 16 && ks <= 16 && ko <= 16, errc::corrupt, "split checkpoint declares more than 16 state vectors");
  TINYLARGE_CHECK(wire_get32(p.data() + 28) == 0, errc::corrupt, "split checkpoint: reserved field is not 0");
  TINYLARGE_CHECK(n != 0 || ko == 0, errc::corrupt, "split checkpoint: optimizer vectors declared without copies");
  TINYLARGE_CHECK(n <= (size - 48) / 8, errc::corrupt, "split checkpoint: more server copies than the payload holds");
  std::uint64_t off = 48 + 8 * n;
  const std::uint64_t arrays = 2 + kd + ks + n * ko;
  TINYLARGE_CHECK(arrays <= (size - off) / 4, errc::corrupt,
                  "split checkpoint: more arrays declared than the payload can hold");
  auto get = [&](std::vector<float>& v) -> status {
    TINYLARGE_CHECK(size - off >= 4, errc::truncated, "split checkpoint: an array length runs past the payload");
    const std::uint64_t len = wire_get32(p.data() + off);
    off += 4;
    TINYLARGE_CHECK(len <= (size - off) / 4, errc::corrupt, "split checkpoint: an array is longer than the payload");
    v.resize(static_cast<std::size_t>(len));
    for (float& x : v) {
      x = std::bit_cast<float>(wire_get32(p.data() + off));
      off += 4;
    }
    return status::success();
  };
  split_checkpoint r;
  r.rounds_completed = m.header.round;
  r.restarts = wire_get32(p.data() + 8);
  r.device_state_steps = wire_get64(p.data() + 32);
  r.server_state_steps = wire_get64(p.data() + 40);
  r.copies.resize(static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < r.copies.size(); ++k) r.copies[k].steps = wire_get64(p.data() + 48 + 8 * k);
  TINYLARGE_TRY(get(r.device));
  TINYLARGE_TRY(get(r.server));
  r.device_state.resize(static_cast<std::size_t>(kd));
  for (auto& v : r.device_state) TINYLARGE_TRY(get(v));
  r.server_state.resize(static_cast<std::size_t>(ks));
  for (auto& v : r.server_state) TINYLARGE_TRY(get(v));
  for (auto& o : r.copies) {
    o.vectors.resize(static_cast<std::size_t>(ko));
    for (auto& v : o.vectors) TINYLARGE_TRY(get(v));
  }
  TINYLARGE_CHECK(off == size, errc::corrupt, "split checkpoint: trailing bytes after the last array");
  c = std::move(r);
  return status::success();
}

/// `non_finite` when a segment, a policy state or an optimizer state of `c`
/// holds a NaN or ±Inf.
[[nodiscard]] inline status checkpoint_finite(const split_checkpoint& c) noexcept {
  auto ok = [](const std::vector<float>& v) { return first_non_finite(v.data(), v.size()) == v.size(); };
  TINYLARGE_CHECK(ok(c.device) && ok(c.server), errc::non_finite,
                  "split checkpoint: a global segment holds a NaN or infinite value");
  for (const auto* states : {&c.device_state, &c.server_state})
    for (const auto& v : *states)
      TINYLARGE_CHECK(ok(v), errc::non_finite, "split checkpoint: a policy state holds a NaN or infinite value");
  for (const auto& o : c.copies)
    for (const auto& v : o.vectors)
      TINYLARGE_CHECK(ok(v), errc::non_finite, "split checkpoint: an optimizer state holds a NaN or infinite value");
  return status::success();
}

/// Write `c` to `path` atomically and durably (`io::write_file`).
inline void save_split_checkpoint(const std::string& path, const split_checkpoint& c) {
  io::write_file(path, encode_split_checkpoint(c));
}

/// Load `path` into `c`: `found` = false (and success) when it does not
/// exist; a file that exists but fails validation is an error status — a
/// corrupt checkpoint is refused, never skipped.
[[nodiscard]] inline status read_split_checkpoint(const std::string& path, split_checkpoint& c, bool& found) noexcept {
  return detail::read_checkpoint_file(
      path, found, [&](const std::vector<std::uint8_t>& bytes) {
        const status s = decode_split_checkpoint(bytes, c);
        return s.ok() ? checkpoint_finite(c) : s;
      });
}

}  // namespace tinylarge
