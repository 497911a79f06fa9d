/// @file transport/wire.hpp
/// @brief The tinylarge wire format: one versioned, length-prefixed,
///        CRC-32-checked, little-endian frame for every message that crosses
///        a process or machine boundary (model, update, smashed data,
///        gradients, control, checkpoints).
///
/// Freestanding-safe: no heap, no exceptions, no iostream. The encoder writes
/// into a caller buffer; the decoder validates a caller buffer and returns a
/// zero-copy view of the payload. A Cortex-M device produces and checks these
/// frames with the same code as the server. The byte-by-byte layout is in
/// docs/wire-format.md; in short (all integers little-endian):
///
///     offset size field
///      0     4   magic        "TLWM" (0x54 0x4C 0x57 0x4D)
///      4     1   version      wire_version (2)
///      5     1   type         message_type
///      6     1   dtype        wire_dtype
///      7     1   flags        bit 0 `wire_flag_mac`: a 32-byte MAC follows; other bits reserved (rejected)
///      8     4   sender       endpoint id (0 = server)
///     12     4   round        training round
///     16     4   sequence     per-sender message counter
///     20     4   count        number of elements
///     24     8   aux          type-specific (update: num_examples; model: task seed; control: command)
///     32     4   scale        int8: IEEE binary32 scale > 0; otherwise 0
///     36     4   zero_point   int8: in [-128, 127]; otherwise 0
///     40     4   payload_len  bytes of payload = count · itemsize(dtype)
///     44     4   header_crc   CRC-32 of bytes [0, 44)
///     48     L   payload      count elements, little-endian
///     48+L   4   payload_crc  CRC-32 of the payload
///     52+L   32  mac          only with `wire_flag_mac`: keyed BLAKE2b-256 of bytes [0, 52+L)
///                             (computed and checked by transport/auth.hpp, not here)
///
/// Every check happens before the payload is touched, and the declared
/// payload length is compared with `wire_limits` before any caller allocates a
/// buffer for it (`peek_frame_size`). A frame is rejected with a `tl::status`
/// whose message names the reason, and the reason is counted in `wire_stats`.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "../core/config.hpp"
#include "../core/crc32.hpp"
#include "../core/error.hpp"

namespace tinylarge::wire {

/// The frame version this build writes and the only one it reads (2: the
/// `flags` byte may announce a MAC trailer; version 1 had no trailer).
inline constexpr std::uint8_t wire_version = 2;
/// "TLWM" as a little-endian u32.
inline constexpr std::uint32_t wire_magic = 0x4D574C54u;
/// Bytes before the payload.
inline constexpr std::size_t wire_header_bytes = 48;
/// Bytes after the payload (its CRC-32).
inline constexpr std::size_t wire_trailer_bytes = 4;
/// Bytes a frame adds to its payload (without a MAC).
inline constexpr std::size_t wire_overhead_bytes = wire_header_bytes + wire_trailer_bytes;
/// `flags` bit 0: the frame ends with a `wire_mac_bytes` message authentication
/// code over everything before it (transport/auth.hpp).
inline constexpr std::uint8_t wire_flag_mac = 0x01;
/// The flag bits this build knows; any other bit is rejected.
inline constexpr std::uint8_t wire_known_flags = wire_flag_mac;
/// Bytes of the MAC trailer of an authenticated frame.
inline constexpr std::size_t wire_mac_bytes = 32;

/// What a frame carries.
enum class message_type : std::uint8_t {
  model = 1,       ///< global parameters, server → clients
  update = 2,      ///< a client's new parameters after local training (aux = num_examples)
  smashed = 3,     ///< activations at a split-learning cut, device → server
  gradient = 4,    ///< gradients of the smashed data, server → device
  control = 5,     ///< commands (aux = control_command)
  checkpoint = 6,  ///< a server checkpoint written to disk (transport/checkpoint.hpp)
  secagg = 7,      ///< a secure-aggregation step (aux = `secagg_step`; aggregate/secure.hpp)
};
inline constexpr std::uint8_t message_type_max = 7;

/// The step of a `secagg` frame, in `aux` (workflow/federated_deploy.hpp;
/// payloads: aggregate/secure.hpp, docs/wire-format.md).
enum class secagg_step : std::uint64_t {
  advertise = 1,        ///< client → server: its two X25519 public keys
  roster = 2,           ///< server → client: every advertised (id, keys)
  shares = 3,           ///< client → server: its sealed shares, one per other roster member
  boxes = 4,            ///< server → client: the sealed shares addressed to it
  masked = 5,           ///< client → server: its masked update (P + 1 words)
  unmask_request = 6,   ///< server → survivor: the survivors and the dropped
  unmask_response = 7,  ///< survivor → server: its shares of b (survivors) and s_sk (dropped)
};

/// Commands carried in `aux` of a `control` frame.
enum class control_command : std::uint64_t {
  stop = 1,       ///< training is over: leave the receive loop
  hello = 2,      ///< a client announces itself
  heartbeat = 3,  ///< liveness
};

/// How the payload's elements are stored.
enum class wire_dtype : std::uint8_t {
  bytes = 0,  ///< opaque bytes (control, checkpoint); itemsize 1
  fp32 = 1,   ///< IEEE binary32, little-endian
  fp16 = 2,   ///< IEEE binary16, little-endian
  int8 = 3,   ///< affine int8: real = scale · (q − zero_point)
};
inline constexpr std::uint8_t wire_dtype_max = 3;

/// Bytes per element of `d`.
constexpr std::size_t wire_itemsize(wire_dtype d) noexcept {
  switch (d) {
    case wire_dtype::bytes: return 1;
    case wire_dtype::fp32: return 4;
    case wire_dtype::fp16: return 2;
    case wire_dtype::int8: return 1;
  }
  return 0;
}

constexpr const char* to_string(message_type t) noexcept {
  switch (t) {
    case message_type::model: return "model";
    case message_type::update: return "update";
    case message_type::smashed: return "smashed";
    case message_type::gradient: return "gradient";
    case message_type::control: return "control";
    case message_type::checkpoint: return "checkpoint";
    case message_type::secagg: return "secagg";
  }
  return "unknown";
}

/// The fields of a frame other than its payload (what a sender chooses).
struct message_header {
  message_type type = message_type::control;
  wire_dtype dtype = wire_dtype::bytes;
  std::uint32_t sender = 0;
  std::uint32_t round = 0;
  std::uint32_t sequence = 0;
  std::uint32_t count = 0;    ///< elements in the payload
  std::uint64_t aux = 0;      ///< type-specific (see message_type)
  float scale = 0.0f;         ///< int8 only
  std::int32_t zero_point = 0;  ///< int8 only
  std::uint8_t flags = 0;     ///< `wire_flag_mac` or 0 (stamped by the transport, like sender and sequence)
};

/// Limits applied to a frame before anything is allocated or read.
struct wire_limits {
  /// Largest payload accepted (default 64 MiB: a 16M-parameter fp32 model).
  std::uint32_t max_payload_bytes = std::uint32_t{64} << 20;
};

/// Why a frame was rejected; one counter each in `wire_stats`.
enum class wire_reject : std::uint8_t {
  truncated,        ///< fewer bytes than the header, or than header + declared payload + CRC
  bad_magic,        ///< not "TLWM"
  bad_version,      ///< a version this build cannot read
  header_crc,       ///< header CRC-32 mismatch
  bad_type,         ///< unknown message type
  bad_dtype,        ///< unknown dtype
  bad_flags,        ///< unknown flag bits set
  bad_quantization, ///< int8 scale not finite and > 0, zero point out of range, or nonzero on other dtypes
  length_mismatch,  ///< payload_len ≠ count · itemsize(dtype)
  too_large,        ///< payload_len above wire_limits::max_payload_bytes
  trailing_bytes,   ///< bytes after the payload CRC
  payload_crc,      ///< payload CRC-32 mismatch
};
inline constexpr std::size_t wire_reject_count = 12;

constexpr const char* to_string(wire_reject r) noexcept {
  switch (r) {
    case wire_reject::truncated: return "truncated";
    case wire_reject::bad_magic: return "bad magic";
    case wire_reject::bad_version: return "unsupported version";
    case wire_reject::header_crc: return "header CRC mismatch";
    case wire_reject::bad_type: return "unknown message type";
    case wire_reject::bad_dtype: return "unknown dtype";
    case wire_reject::bad_flags: return "unknown flags set";
    case wire_reject::bad_quantization: return "invalid scale or zero point";
    case wire_reject::length_mismatch: return "payload length does not match count and dtype";
    case wire_reject::too_large: return "payload above the size limit";
    case wire_reject::trailing_bytes: return "trailing bytes";
    case wire_reject::payload_crc: return "payload CRC mismatch";
  }
  return "unknown";
}

/// Counters of accepted and rejected frames, by reason. Not synchronised:
/// one per receiving thread.
struct wire_stats {
  std::uint64_t accepted = 0;
  std::uint64_t rejected[wire_reject_count] = {};

  constexpr std::uint64_t total_rejected() const noexcept {
    std::uint64_t s = 0;
    for (const std::uint64_t v : rejected) s += v;
    return s;
  }
  constexpr std::uint64_t operator[](wire_reject r) const noexcept {
    return rejected[static_cast<std::size_t>(r)];
  }
  constexpr void count(wire_reject r) noexcept { ++rejected[static_cast<std::size_t>(r)]; }
};

/// A validated frame: its header and a view of its payload inside the
/// decoded buffer (valid as long as that buffer is).
struct message_view {
  message_header header{};
  std::span<const std::uint8_t> payload{};
  /// With `wire_flag_mac`: the bytes the MAC covers (header, payload, payload
  /// CRC) and the MAC itself; empty otherwise.
  std::span<const std::uint8_t> authenticated{};
  std::span<const std::uint8_t> mac{};
};

namespace detail {

#if TINYLARGE_FREESTANDING
/// Freestanding: the byte-wise CRC-32 of core/crc32.hpp (1 KiB of table in flash).
constexpr std::uint32_t wire_crc32(const std::uint8_t* p, std::size_t n) noexcept { return crc32(p, n); }
#else
/// The 8 tables of slicing-by-8 (Intel, Kounavis & Berry 2005), 8 KiB,
/// computed at compile time: T0 is the byte-wise table, T[k][i] =
/// (T[k−1][i] >> 8) ^ T0[T[k−1][i] & 0xFF].
struct wire_crc_tables_t {
  std::uint32_t t[8][256];
};
constexpr wire_crc_tables_t make_wire_crc_tables() noexcept {
  wire_crc_tables_t r{};
  for (std::uint32_t i = 0; i < 256; ++i) r.t[0][i] = tinylarge::detail::crc32_table.v[i];
  for (int k = 1; k < 8; ++k)
    for (std::uint32_t i = 0; i < 256; ++i) r.t[k][i] = (r.t[k - 1][i] >> 8) ^ r.t[0][r.t[k - 1][i] & 0xFFu];
  return r;
}
inline constexpr wire_crc_tables_t wire_crc_tables = make_wire_crc_tables();

/// CRC-32 (ISO-HDLC, the same value as `tl::crc32`) eight bytes per step:
/// about 5× the byte-wise loop on x86-64, which made CRC the whole cost of
/// the wire format. Host profile only (the tables cost 8 KiB).
/// TODO(core): candidate for core/crc32.hpp.
constexpr std::uint32_t wire_crc32(const std::uint8_t* p, std::size_t n) noexcept {
  const auto& t = wire_crc_tables.t;
  std::uint32_t c = 0xFFFFFFFFu;
  for (; n >= 8; n -= 8, p += 8) {
    const std::uint32_t one = (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                               std::uint32_t{p[3]} << 24) ^ c;
    const std::uint32_t two = std::uint32_t{p[4]} | std::uint32_t{p[5]} << 8 | std::uint32_t{p[6]} << 16 |
                              std::uint32_t{p[7]} << 24;
    c = t[7][one & 0xFFu] ^ t[6][(one >> 8) & 0xFFu] ^ t[5][(one >> 16) & 0xFFu] ^ t[4][one >> 24] ^
        t[3][two & 0xFFu] ^ t[2][(two >> 8) & 0xFFu] ^ t[1][(two >> 16) & 0xFFu] ^ t[0][two >> 24];
  }
  for (; n > 0; --n, ++p) c = t[0][(c ^ *p) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}
static_assert(
    [] {
      constexpr std::uint8_t check[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};
      return wire_crc32(check, 9) == 0xCBF43926u && wire_crc32(check, 17) == crc32(check, 17);
    }(),
    "slicing-by-8 CRC-32 agrees with core/crc32.hpp");
#endif

constexpr void wire_put32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
constexpr void wire_put64(std::uint8_t* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
constexpr std::uint32_t wire_get32(const std::uint8_t* p) noexcept {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}
constexpr std::uint64_t wire_get64(const std::uint8_t* p) noexcept {
  return std::uint64_t{wire_get32(p)} | std::uint64_t{wire_get32(p + 4)} << 32;
}
/// Finite and > 0 and small enough that scale · 255 stays finite.
constexpr bool wire_scale_ok(float s) noexcept { return s > 0.0f && s <= 3.4028234663852886e38f / 256.0f; }

/// Count the reason and return the status.
constexpr status wire_reject_status(wire_stats* stats, wire_reject r, errc code, const char* msg) noexcept {
  if (stats != nullptr) stats->count(r);
  return status{code, msg};
}
}  // namespace detail

/// Size of the frame that carries `payload_bytes` bytes (with the MAC
/// trailer when `flags` has `wire_flag_mac`).
constexpr std::size_t frame_size(std::size_t payload_bytes, std::uint8_t flags = 0) noexcept {
  return wire_overhead_bytes + payload_bytes + ((flags & wire_flag_mac) != 0 ? wire_mac_bytes : 0);
}

/// Check the sender's header before encoding (the same rules the decoder applies).
[[nodiscard]] constexpr status check_header(const message_header& h, const wire_limits& limits = {}) noexcept {
  const auto t = static_cast<std::uint8_t>(h.type);
  const auto d = static_cast<std::uint8_t>(h.dtype);
  TINYLARGE_CHECK(t >= 1 && t <= message_type_max, errc::invalid_argument, "wire encode: unknown message type");
  TINYLARGE_CHECK(d <= wire_dtype_max, errc::invalid_argument, "wire encode: unknown dtype");
  TINYLARGE_CHECK((h.flags & ~wire_known_flags) == 0, errc::invalid_argument, "wire encode: unknown flag bits");
  if (h.dtype == wire_dtype::int8) {
    TINYLARGE_CHECK(detail::wire_scale_ok(h.scale) && h.zero_point >= -128 && h.zero_point <= 127,
                    errc::invalid_argument, "wire encode: int8 scale must be finite and > 0, zero point in [-128, 127]");
  } else {
    TINYLARGE_CHECK(h.scale == 0.0f && h.zero_point == 0, errc::invalid_argument,
                    "wire encode: scale and zero point must be 0 unless the dtype is int8");
  }
  const std::uint64_t bytes = std::uint64_t{h.count} * wire_itemsize(h.dtype);
  TINYLARGE_CHECK(bytes <= limits.max_payload_bytes, errc::too_large,
                  "wire encode: payload above wire_limits::max_payload_bytes");
  return status::success();
}

/// Write the 48-byte header of a frame with `payload_bytes` bytes of payload
/// into `out[0, 48)`. Used by `encode` and by senders that stream the payload.
[[nodiscard]] constexpr status encode_header(const message_header& h, std::size_t payload_bytes,
                                             std::span<std::uint8_t> out, const wire_limits& limits = {}) noexcept {
  TINYLARGE_TRY(check_header(h, limits));
  TINYLARGE_CHECK(payload_bytes == std::size_t{h.count} * wire_itemsize(h.dtype), errc::invalid_argument,
                  "wire encode: payload size differs from count · itemsize(dtype)");
  TINYLARGE_CHECK(out.size() >= wire_header_bytes, errc::capacity_exceeded, "wire encode: output buffer too small");
  std::uint8_t* p = out.data();
  detail::wire_put32(p + 0, wire_magic);
  p[4] = wire_version;
  p[5] = static_cast<std::uint8_t>(h.type);
  p[6] = static_cast<std::uint8_t>(h.dtype);
  p[7] = h.flags;
  detail::wire_put32(p + 8, h.sender);
  detail::wire_put32(p + 12, h.round);
  detail::wire_put32(p + 16, h.sequence);
  detail::wire_put32(p + 20, h.count);
  detail::wire_put64(p + 24, h.aux);
  detail::wire_put32(p + 32, std::bit_cast<std::uint32_t>(h.scale));
  detail::wire_put32(p + 36, static_cast<std::uint32_t>(h.zero_point));
  detail::wire_put32(p + 40, static_cast<std::uint32_t>(payload_bytes));
  detail::wire_put32(p + 44, detail::wire_crc32(p, 44));
  return status::success();
}

/// Encode one frame: header, `payload` (already little-endian bytes, exactly
/// `count · itemsize(dtype)` of them) and its CRC into `out`. With
/// `wire_flag_mac` in `h.flags` the frame ends with `wire_mac_bytes` zero
/// bytes, for the sender's MAC (transport/auth.hpp `frame_key::sign`).
///
/// @param written set to the frame size on success
/// @return `invalid_argument` for an inconsistent header, `too_large` above
///         the limit, `capacity_exceeded` when `out` is too small.
[[nodiscard]] constexpr status encode(const message_header& h, std::span<const std::uint8_t> payload,
                                      std::span<std::uint8_t> out, std::size_t& written,
                                      const wire_limits& limits = {}) noexcept {
  written = 0;
  TINYLARGE_TRY(encode_header(h, payload.size(), out, limits));
  TINYLARGE_CHECK(out.size() >= frame_size(payload.size(), h.flags), errc::capacity_exceeded,
                  "wire encode: output buffer smaller than frame_size(payload)");
  std::uint8_t* p = out.data() + wire_header_bytes;
  for (std::size_t i = 0; i < payload.size(); ++i) p[i] = payload[i];
  detail::wire_put32(p + payload.size(), detail::wire_crc32(payload.data(), payload.size()));
  if ((h.flags & wire_flag_mac) != 0)
    for (std::size_t i = 0; i < wire_mac_bytes; ++i) p[payload.size() + wire_trailer_bytes + i] = 0;
  written = frame_size(payload.size(), h.flags);
  return status::success();
}

/// Encode a frame whose payload is `values` (fp32), stored little-endian.
/// Sets `h.dtype = fp32` and `h.count = values.size()`.
[[nodiscard]] inline status encode_fp32(message_header h, std::span<const float> values, std::span<std::uint8_t> out,
                                        std::size_t& written, const wire_limits& limits = {}) noexcept {
  written = 0;
  h.dtype = wire_dtype::fp32;
  TINYLARGE_CHECK(values.size() <= 0xFFFFFFFFu / 4u, errc::too_large, "wire encode: too many elements");
  h.count = static_cast<std::uint32_t>(values.size());
  const std::size_t n = values.size() * 4;
  TINYLARGE_TRY(encode_header(h, n, out, limits));
  TINYLARGE_CHECK(out.size() >= frame_size(n, h.flags), errc::capacity_exceeded,
                  "wire encode: output buffer smaller than frame_size(payload)");
  std::uint8_t* p = out.data() + wire_header_bytes;
  if constexpr (std::endian::native == std::endian::little) {
    if (n != 0) std::memcpy(p, values.data(), n);
  } else {
    for (std::size_t i = 0; i < values.size(); ++i) detail::wire_put32(p + 4 * i, std::bit_cast<std::uint32_t>(values[i]));
  }
  detail::wire_put32(p + n, detail::wire_crc32(p, n));
  if ((h.flags & wire_flag_mac) != 0)
    for (std::size_t i = 0; i < wire_mac_bytes; ++i) p[n + wire_trailer_bytes + i] = 0;
  written = frame_size(n, h.flags);
  return status::success();
}

/// Validate the 48-byte header at the start of `bytes` and return the size
/// of the whole frame it announces in `frame_bytes` — the check a receiver
/// makes before it allocates a buffer for the rest. Does not look at the
/// payload.
[[nodiscard]] constexpr status decode_header(std::span<const std::uint8_t> bytes, message_header& h,
                                             std::size_t& frame_bytes, const wire_limits& limits = {},
                                             wire_stats* stats = nullptr) noexcept {
  frame_bytes = 0;
  h = message_header{};
  using detail::wire_reject_status;
  if (bytes.size() < wire_header_bytes)
    return wire_reject_status(stats, wire_reject::truncated, errc::truncated, "wire frame shorter than its 48-byte header");
  const std::uint8_t* p = bytes.data();
  if (detail::wire_get32(p) != wire_magic)
    return wire_reject_status(stats, wire_reject::bad_magic, errc::corrupt, "not a tinylarge wire frame: magic 'TLWM' missing");
  if (p[4] != wire_version)
    return wire_reject_status(stats, wire_reject::bad_version, errc::unsupported_version,
                              "wire frame version is not 2, the only version this build reads");
  if (detail::wire_get32(p + 44) != detail::wire_crc32(p, 44))
    return wire_reject_status(stats, wire_reject::header_crc, errc::checksum_mismatch,
                              "wire frame header CRC-32 mismatch: the header is corrupt");
  if (p[5] < 1 || p[5] > message_type_max)
    return wire_reject_status(stats, wire_reject::bad_type, errc::corrupt, "wire frame: unknown message type");
  if (p[6] > wire_dtype_max)
    return wire_reject_status(stats, wire_reject::bad_dtype, errc::corrupt, "wire frame: unknown dtype");
  if ((p[7] & ~wire_known_flags) != 0)
    return wire_reject_status(stats, wire_reject::bad_flags, errc::corrupt,
                              "wire frame: unknown flag bits are set (a newer writer?)");
  h.type = static_cast<message_type>(p[5]);
  h.dtype = static_cast<wire_dtype>(p[6]);
  h.flags = p[7];
  h.sender = detail::wire_get32(p + 8);
  h.round = detail::wire_get32(p + 12);
  h.sequence = detail::wire_get32(p + 16);
  h.count = detail::wire_get32(p + 20);
  h.aux = detail::wire_get64(p + 24);
  h.scale = std::bit_cast<float>(detail::wire_get32(p + 32));
  h.zero_point = static_cast<std::int32_t>(detail::wire_get32(p + 36));
  const std::uint32_t len = detail::wire_get32(p + 40);
  if (h.dtype == wire_dtype::int8) {
    if (!detail::wire_scale_ok(h.scale) || h.zero_point < -128 || h.zero_point > 127)
      return wire_reject_status(stats, wire_reject::bad_quantization, errc::corrupt,
                                "wire frame: int8 scale not finite and > 0, or zero point outside [-128, 127]");
  } else if (detail::wire_get32(p + 32) != 0 || h.zero_point != 0) {
    return wire_reject_status(stats, wire_reject::bad_quantization, errc::corrupt,
                              "wire frame: scale and zero point must be 0 unless the dtype is int8");
  }
  if (std::uint64_t{h.count} * wire_itemsize(h.dtype) != len)
    return wire_reject_status(stats, wire_reject::length_mismatch, errc::corrupt,
                              "wire frame: payload length differs from count · itemsize(dtype)");
  if (len > limits.max_payload_bytes)
    return wire_reject_status(stats, wire_reject::too_large, errc::too_large,
                              "wire frame: payload larger than wire_limits::max_payload_bytes");
  frame_bytes = frame_size(len, h.flags);
  return status::success();
}

/// Validate a whole frame (exactly one, no trailing bytes) and return a view
/// of it. The payload is not copied: `out.payload` points into `bytes`.
///
/// @return success, or `truncated`, `corrupt`, `checksum_mismatch`,
///         `unsupported_version`, `too_large` with the reason in the message;
///         each rejection is counted in `*stats` when given.
[[nodiscard]] constexpr status decode(std::span<const std::uint8_t> bytes, message_view& out,
                                      const wire_limits& limits = {}, wire_stats* stats = nullptr) noexcept {
  out = message_view{};
  std::size_t total = 0;
  message_header h{};
  TINYLARGE_TRY(decode_header(bytes, h, total, limits, stats));
  using detail::wire_reject_status;
  if (bytes.size() < total)
    return wire_reject_status(stats, wire_reject::truncated, errc::truncated,
                              "wire frame is truncated: fewer bytes than its header declares");
  if (bytes.size() > total)
    return wire_reject_status(stats, wire_reject::trailing_bytes, errc::corrupt,
                              "wire frame has trailing bytes after its payload CRC");
  const std::size_t mac = (h.flags & wire_flag_mac) != 0 ? wire_mac_bytes : 0;
  const std::size_t len = total - wire_overhead_bytes - mac;
  const std::uint8_t* payload = bytes.data() + wire_header_bytes;
  if (detail::wire_get32(payload + len) != detail::wire_crc32(payload, len))
    return wire_reject_status(stats, wire_reject::payload_crc, errc::checksum_mismatch,
                              "wire frame payload CRC-32 mismatch: the payload is corrupt");
  out.header = h;
  out.payload = bytes.subspan(wire_header_bytes, len);
  if (mac != 0) {
    out.authenticated = bytes.first(total - mac);
    out.mac = bytes.subspan(total - mac, mac);
  }
  if (stats != nullptr) ++stats->accepted;
  return status::success();
}

/// Copy an fp32 payload (little-endian) into `out` (exactly `count` floats).
[[nodiscard]] inline status read_fp32(const message_view& m, std::span<float> out) noexcept {
  TINYLARGE_CHECK(m.header.dtype == wire_dtype::fp32, errc::invalid_argument, "read_fp32: the payload is not fp32");
  TINYLARGE_CHECK(out.size() == m.header.count && m.payload.size() == out.size() * 4, errc::shape_mismatch,
                  "read_fp32: the message holds a different number of elements");
  if constexpr (std::endian::native == std::endian::little) {
    if (!out.empty()) std::memcpy(out.data(), m.payload.data(), m.payload.size());
  } else {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = std::bit_cast<float>(detail::wire_get32(m.payload.data() + 4 * i));
  }
  return status::success();
}

}  // namespace tinylarge::wire
