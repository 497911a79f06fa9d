/// @file transport/auth.hpp
/// @brief Frame authentication for the transports that cross a process
///        boundary (MPI, MQTT): a per-run pre-shared key and a keyed
///        BLAKE2b-256 MAC (libsodium `crypto_generichash`) over every frame.
///
/// A frame sent with a key carries `wire_flag_mac` in its `flags` byte and
/// ends with 32 bytes:
///
///     mac = BLAKE2b-256(key = run key, message = bytes [0, 52 + L))
///
/// i.e. over the header (sender, round, type, aux, … — all of it), the
/// payload and the payload CRC. A receiver with a key accepts a frame only
/// when it carries the flag and the MAC verifies (constant-time compare); a
/// receiver without a key accepts only frames without the flag (it cannot
/// check a MAC). That is one code path: `seal` and `authentic` below, used by
/// `mpi_transport` and `mqtt_transport`; `in_process` (the simulation) moves
/// no bytes and has no key.
///
/// What it protects: a party without the run key (anyone else on the broker,
/// a stray process) can neither forge nor alter a frame — a forged stop, a
/// model of round 2³²−1, a poisoned model of round r+1, a NaN update on a
/// client's topic are all refused before the protocol sees them (counted in
/// `transport_stats::unauthenticated`). Replays of a run's own frames are
/// harmless to the protocols: every frame names its round (and its step /
/// epoch), stale rounds are dropped, duplicates are what QoS 1 delivers anyway.
/// What it does not: every holder of the key can MAC any frame, so an
/// enrolled client could claim another client's id in the header; the
/// transports bind the header's `sender` to where the frame came from (MPI
/// source rank; MQTT topic, which the broker's ACLs bind to a device's
/// login: docs/transport.md, "Deploying over MQTT"). Keys are per run: give
/// each run a fresh one (a frame of another run fails its MAC).
///
/// Keys: 32 bytes, as 64 hexadecimal characters or 32 raw bytes, from a file
/// (`frame_key::from_file`) or the environment (`frame_key::from_environment`:
/// `TL_RUN_KEY` = the hex key, or `TL_RUN_KEY_FILE` = a file path). Make one
/// with `openssl rand -hex 32 > run.key` (or `head -c 32 /dev/urandom > run.key`).
///
/// Host only; needs libsodium (linked by `tinylarge::mpi` and `tinylarge::mqtt`).
#pragma once

#if !__has_include(<sodium.h>)
#error "tinylarge/transport/auth.hpp is an optional dependency header: it needs libsodium's <sodium.h> (Debian: libsodium-dev; linked by tinylarge::mpi / tinylarge::mqtt)"
#endif

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../io/file.hpp"
#include "wire.hpp"

#if TINYLARGE_FREESTANDING
#error "transport/auth.hpp is for the host profile"
#endif

namespace tinylarge {

/// A run's pre-shared frame key (see the file comment).
class frame_key {
 public:
  /// Bytes of a key.
  static constexpr std::size_t bytes = 32;
  static_assert(bytes >= crypto_generichash_KEYBYTES_MIN && bytes <= crypto_generichash_KEYBYTES_MAX);
  static_assert(wire::wire_mac_bytes >= crypto_generichash_BYTES_MIN &&
                wire::wire_mac_bytes <= crypto_generichash_BYTES_MAX);

  /// A key from its 32 bytes.
  explicit frame_key(std::span<const std::uint8_t, bytes> k) {
    TINYLARGE_REQUIRE(sodium_init() >= 0, errc::io_error, "frame_key: libsodium failed to initialise");
    std::copy(k.begin(), k.end(), key_.begin());
  }
  frame_key(const frame_key&) = default;
  frame_key& operator=(const frame_key&) = default;
  ~frame_key() { sodium_memzero(key_.data(), key_.size()); }

  /// A key from 64 hexadecimal characters (surrounding white space ignored).
  static frame_key from_hex(std::string_view hex) {
    while (!hex.empty() && (hex.back() == '\n' || hex.back() == '\r' || hex.back() == ' ' || hex.back() == '\t'))
      hex.remove_suffix(1);
    while (!hex.empty() && (hex.front() == ' ' || hex.front() == '\t')) hex.remove_prefix(1);
    TINYLARGE_REQUIRE(hex.size() == 2 * bytes, errc::invalid_argument,
                      "frame_key: a run key is 64 hexadecimal characters (32 bytes)");
    std::array<std::uint8_t, bytes> k{};
    std::size_t n = 0;
    TINYLARGE_REQUIRE(sodium_init() >= 0 &&
                          sodium_hex2bin(k.data(), k.size(), hex.data(), hex.size(), nullptr, &n, nullptr) == 0 &&
                          n == bytes,
                      errc::invalid_argument, "frame_key: the run key is not hexadecimal");
    frame_key key(k);
    sodium_memzero(k.data(), k.size());
    return key;
  }

  /// A key from a file holding 64 hex characters or exactly 32 raw bytes.
  static frame_key from_file(const std::string& path) {
    TINYLARGE_REQUIRE(io::file_readable(path), errc::io_error, "frame_key: the run key file cannot be read");
    std::vector<std::uint8_t> b = io::read_file(path);
    if (b.size() == bytes) {
      frame_key key(std::span<const std::uint8_t, bytes>(b.data(), bytes));
      sodium_memzero(b.data(), b.size());
      return key;
    }
    TINYLARGE_REQUIRE(b.size() <= 4 * bytes, errc::invalid_argument,
                      "frame_key: the run key file is neither 32 raw bytes nor 64 hex characters");
    frame_key key = from_hex(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
    sodium_memzero(b.data(), b.size());
    return key;
  }

  /// `TL_RUN_KEY` (hex) or else `TL_RUN_KEY_FILE` (a path); none set: no key.
  static std::optional<frame_key> from_environment() {
    if (const char* hex = std::getenv("TL_RUN_KEY"); hex != nullptr && *hex != '\0') return from_hex(hex);
    if (const char* path = std::getenv("TL_RUN_KEY_FILE"); path != nullptr && *path != '\0') return from_file(path);
    return std::nullopt;
  }

  /// Writes the MAC of `frame` (one encoded frame with `wire_flag_mac`,
  /// `wire_mac_bytes` reserved at its end) into its last 32 bytes.
  void sign(std::span<std::uint8_t> frame) const noexcept {
    const std::size_t n = frame.size() - wire::wire_mac_bytes;
    crypto_generichash(frame.data() + n, wire::wire_mac_bytes, frame.data(), n, key_.data(), key_.size());
  }

  /// Whether `m` (a decoded frame) carries a MAC and it is this key's.
  bool verify(const wire::message_view& m) const noexcept {
    if ((m.header.flags & wire::wire_flag_mac) == 0 || m.mac.size() != wire::wire_mac_bytes) return false;
    std::uint8_t expect[wire::wire_mac_bytes];
    crypto_generichash(expect, sizeof expect, m.authenticated.data(), m.authenticated.size(), key_.data(),
                       key_.size());
    return sodium_memcmp(expect, m.mac.data(), sizeof expect) == 0;
  }

 private:
  std::array<std::uint8_t, bytes> key_{};
};

/// Encode `h` + `payload` into `out` (resized to the frame): with a key the
/// frame gets `wire_flag_mac` and its MAC, without one it has no trailer.
/// The transports' single encoding path.
[[nodiscard]] inline status seal(const std::optional<frame_key>& key, wire::message_header h,
                                 std::span<const std::uint8_t> payload, std::vector<std::uint8_t>& out,
                                 std::size_t& written, const wire::wire_limits& limits) {
  h.flags = key ? wire::wire_flag_mac : std::uint8_t{0};
  out.resize(wire::frame_size(payload.size(), h.flags));
  TINYLARGE_TRY(wire::encode(h, payload, out, written, limits));
  if (key) key->sign(std::span<std::uint8_t>(out.data(), written));
  return status::success();
}

/// Whether a decoded frame is acceptable to a receiver holding `key` (or
/// none): with a key, a valid MAC; without one, no MAC flag.
inline bool authentic(const std::optional<frame_key>& key, const wire::message_view& m) noexcept {
  if (key) return key->verify(m);
  return (m.header.flags & wire::wire_flag_mac) == 0;
}

}  // namespace tinylarge
