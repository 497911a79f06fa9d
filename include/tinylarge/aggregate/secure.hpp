/// @file aggregate/secure.hpp
/// @brief Secure aggregation: pairwise additive masks over Z_2^32 with double
///        masking and t-of-n Shamir recovery of dropped clients (Bonawitz et
///        al., "Practical Secure Aggregation for Privacy-Preserving Machine
///        Learning", CCS 2017, the honest-but-curious protocol of §4), with
///        real primitives from libsodium: X25519 key agreement, BLAKE2b key
///        derivation, ChaCha20 mask expansion, crypto_box for the shares.
///
/// One round among the participants U (ids unique), as the two session
/// classes below run it (`client_session`, `server_session`; the FedAvg
/// roles drive them, workflow/federated_roles.hpp):
///  0. **advertise**: client i draws two X25519 key pairs — (c_sk, c_pk) to
///     encrypt shares, (s_sk, s_pk) to agree mask seeds — and a 32-byte
///     self-mask seed b_i, and sends (c_pk, s_pk); the server relays the
///     roster U1 of every advertisement (needs ≥ max(t, 2));
///  1. **share keys**: i splits s_sk_i and b_i into t-of-|U1| Shamir shares
///     (GF(2^61 − 1), five 7-byte limbs per 32-byte secret) and seals the
///     share for j with `crypto_box_easy` (c_sk_i, c_pk_j); the server
///     forwards each box to its addressee; U2 = who shared;
///  2. **masked input**: i sends y_i = x_i + PRG(b_i) + Σ_{j∈U2, j>i} PRG(s_ij)
///     − Σ_{j∈U2, j<i} PRG(s_ij) mod 2^32, where s_ij = BLAKE2b-256(X25519(
///     s_sk_i, s_pk_j) ‖ s_pk of the lower id ‖ s_pk of the higher id) = s_ji
///     and PRG(k) is the ChaCha20 (IETF) keystream under key k, zero nonce
///     (every key is fresh each round), read as little-endian uint32 lanes;
///     U3 = who sent y (the survivors), D = U2 \ U3 (dropped after the masks
///     were set up);
///  3. **unmask**: each survivor hands the server its share of b_i for every
///     i ∈ U3 and of s_sk_d for every d ∈ D — never both for one client
///     (`client_session::respond` refuses, and answers once);
///  4. the server rebuilds b_i (i ∈ U3) and s_sk_d (d ∈ D) from t shares,
///     removes PRG(b_i) and the masks survivors share with dropped clients,
///     and obtains Σ_{i∈U3} x_i mod 2^32.
///
/// **What x_i is** (`client_session::mask`): P + 1 lanes. Lane p holds
/// round(n_i · clamp(Δ_ip, ±clip) · 2^f) for the client's update
/// Δ_i = w_i − w_t (its new weights minus the round's global model) and its
/// example count n_i; lane P holds n_i itself. So the sum gives
/// Σ n_i Δ_i and N = Σ n_i, and the server forms the FedAvg mean
/// w_t + Σ n_i Δ_i / N without learning any n_i: example weighting is done
/// by the clients, before masking. It decodes correctly while
/// N · clip · 2^f < 2^31 (the server checks it and fails the round
/// otherwise). Quantization: each lane is rounded once, so the decoded mean
/// differs from the exact weighted mean by at most |U3| · 2^−f / (2N) ≤ 2^−(f+1)
/// per coordinate (plus float rounding), when no |Δ| exceeds clip.
///
/// **Threat model** — read before relying on it:
///  - **Real**: the key agreement (X25519, `crypto_scalarmult`), the mask
///    PRG (ChaCha20, `crypto_stream_chacha20_ietf_xor_ic`), the seed
///    derivation (BLAKE2b, `crypto_generichash`), the share encryption
///    (`crypto_box_easy`: X25519 + XSalsa20-Poly1305) and the randomness of
///    the Shamir polynomials (a ChaCha20 generator). Against an
///    honest-but-curious server that follows the protocol, each y_i is x_i
///    plus masks the server cannot compute, so it learns Σ x_i over the
///    survivors (and N) and nothing else about one client — provided at
///    least two honest survivors and fewer than t colluding parties.
///    A dropped client's late y_d stays hidden behind PRG(b_d), whose shares
///    are never released.
///  - **Key material**: each client's 32-byte round seed feeds a ChaCha20
///    generator that draws its key pairs (`crypto_box_seed_keypair`), b_i and
///    its Shamir coefficients. Deployments draw the seed from the operating
///    system (`random_round_seed`: `randombytes_buf`); the in-process
///    simulation derives it from the run seed, the round and the client id
///    (`derived_round_seed`) so that runs repeat bit for bit — anyone who
///    knows the run seed recomputes every mask there: a simulation choice,
///    not for deployment. The final sum is the same bits either way (masks
///    cancel exactly mod 2^32).
///  - **Not protected**: the key advertisements are authenticated only by
///    the transport's frame MAC (transport/auth.hpp: a key shared by the
///    whole fleet *and the server*), not signed per client — a malicious
///    server can substitute public keys (a man in the middle of every pair);
///    there is no consistency round (the paper's round 4: a malicious server
///    can tell different clients different survivor sets and, with enough
///    of them, learn an individual input); no protection against malicious
///    clients (any client can add any value within the clip to the sum, and
///    robust rules cannot run on masked updates: secure aggregation composes
///    with linear rules only); the sum itself — and N — are revealed by
///    design.
///  - **Without libsodium** (the default: `TINYLARGE_SECAGG_HAS_SODIUM` is 0
///    unless the build links libsodium through tinylarge::secagg,
///    tinylarge::mpi or tinylarge::mqtt; freestanding builds) only the
///    fixed-point encoding and the Shamir arithmetic are available;
///    there is no insecure fallback: asking a federated round for secure
///    aggregation without libsodium does not compile.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"

// TINYLARGE_SECAGG_HAS_SODIUM: 1 when the build links libsodium — the CMake
// targets tinylarge::mpi, tinylarge::mqtt and tinylarge::secagg define it —,
// which compiles the secure-aggregation protocol; 0 (the default) leaves it
// out, so that including the library never needs libsodium at link time.
// Asking for secure aggregation with 0 is a compile error (no fallback).
#if !defined(TINYLARGE_SECAGG_HAS_SODIUM)
#define TINYLARGE_SECAGG_HAS_SODIUM 0
#endif
#if TINYLARGE_SECAGG_HAS_SODIUM && TINYLARGE_FREESTANDING
#error "tinylarge: TINYLARGE_SECAGG_HAS_SODIUM=1 needs a hosted build (libsodium)"
#endif
#if TINYLARGE_SECAGG_HAS_SODIUM && defined(__has_include)
#if !__has_include(<sodium.h>)
#error "tinylarge: TINYLARGE_SECAGG_HAS_SODIUM=1 but <sodium.h> is not found (Debian: libsodium-dev)"
#endif
#endif
#if TINYLARGE_SECAGG_HAS_SODIUM
#include <sodium.h>
#endif

namespace tinylarge::secagg {

/// Fixed-point encoding of real values in Z_2^32.
struct fixed_point {
  unsigned frac_bits = 16;  ///< f: resolution 2^−f
  float clip = 8.0f;        ///< values are clamped to [−clip, clip]

  double scale() const noexcept { return std::ldexp(1.0, static_cast<int>(frac_bits)); }
  /// Largest number of clients whose sum cannot leave the int32 range.
  std::size_t max_clients() const noexcept {
    const double per = std::ceil(static_cast<double>(clip) * scale()) + 1.0;
    return static_cast<std::size_t>(std::floor(2147483647.0 / per));
  }
};

/// x → round(clamp(x, ±clip) · 2^f) as a two's-complement word. NaN encodes as 0.
inline void encode(std::span<const float> x, fixed_point fp, std::span<std::uint32_t> out) {
  TINYLARGE_REQUIRE(x.size() == out.size(), errc::shape_mismatch, "secagg::encode: sizes differ");
  TINYLARGE_REQUIRE(fp.frac_bits <= 24 && fp.clip > 0.0f && static_cast<double>(fp.clip) * fp.scale() < 2147483647.0,
                    errc::invalid_argument, "secagg::encode: fixed-point range does not fit int32");
  const double s = fp.scale();
  const double c = fp.clip;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = std::isnan(x[i]) ? 0.0 : std::clamp(static_cast<double>(x[i]), -c, c);
    const auto q = static_cast<std::int32_t>(std::llround(v * s));
    out[i] = static_cast<std::uint32_t>(q);
  }
}

/// Sum word → real value: int32(sum) · 2^−f.
inline void decode_sum(std::span<const std::uint32_t> sum, fixed_point fp, std::span<float> out) {
  TINYLARGE_REQUIRE(sum.size() == out.size(), errc::shape_mismatch, "secagg::decode_sum: sizes differ");
  const double inv = 1.0 / fp.scale();
  for (std::size_t i = 0; i < sum.size(); ++i)
    out[i] = static_cast<float>(static_cast<double>(static_cast<std::int32_t>(sum[i])) * inv);
}

/// Settings of the secure-aggregation option of a federated round.
struct settings {
  /// Fixed point of the masked lanes: clip bounds |Δ| (the update w_k − w_t),
  /// f its resolution; N · clip · 2^f < 2^31 must hold (N = Σ n_k).
  fixed_point fp{16, 1.0f};
  /// t: shares needed to rebuild a secret, and the fewest survivors a round
  /// can finish with; 0 = ⌊n/2⌋ + 1 for n advertised clients.
  std::size_t threshold = 0;
  /// The threshold for n advertised clients (at least 2, at most n).
  std::size_t threshold_for(std::size_t n) const noexcept {
    const std::size_t t = threshold != 0 ? threshold : n / 2 + 1;
    return std::max<std::size_t>(t, 2);
  }
};

// ===========================================================================
// Shamir secret sharing over GF(2^61 − 1)
// ===========================================================================

namespace detail {
/// Arithmetic modulo the Mersenne prime p = 2^61 − 1.
inline constexpr std::uint64_t field_p = (std::uint64_t{1} << 61) - 1;
constexpr std::uint64_t fadd(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t s = a + b;  // a, b < p < 2^61: no overflow
  return s >= field_p ? s - field_p : s;
}
constexpr std::uint64_t fsub(std::uint64_t a, std::uint64_t b) noexcept { return a >= b ? a - b : a + field_p - b; }
/// a·b mod p for a, b < p. The 122-bit product is split at bit 61 and folded,
/// since 2^61 ≡ 1 (mod p). 64-bit targets use the compiler's 128-bit type;
/// 32-bit ones (armhf) build the product from 32-bit halves.
constexpr std::uint64_t fmul(std::uint64_t a, std::uint64_t b) noexcept {
#if defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  const u128 z = static_cast<u128>(a) * b;
  const std::uint64_t lo = static_cast<std::uint64_t>(z) & field_p;
  const std::uint64_t hi = static_cast<std::uint64_t>(z >> 61);
#else
  const std::uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
  const std::uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  // a1, b1 < 2^29, so mid = p01 + p10 + (p00 >> 32) < 2^62 + 2^32: no overflow.
  const std::uint64_t mid = p01 + p10 + (p00 >> 32);
  const std::uint64_t z_lo = (mid << 32) | (p00 & 0xffffffffu);
  const std::uint64_t z_hi = p11 + (mid >> 32);
  const std::uint64_t lo = z_lo & field_p;
  const std::uint64_t hi = (z_hi << 3) | (z_lo >> 61);
#endif
  return fadd(lo, hi);
}
constexpr std::uint64_t fpow(std::uint64_t b, std::uint64_t e) noexcept {
  std::uint64_t r = 1;
  for (; e != 0; e >>= 1) {
    if (e & 1u) r = fmul(r, b);
    b = fmul(b, b);
  }
  return r;
}
constexpr std::uint64_t finv(std::uint64_t a) noexcept { return fpow(a, field_p - 2); }
/// Uniform in [0, p) from any generator with `next_u32()` (`chacha_generator`
/// for real shares, `tl::rng` in the field tests).
template <class G>
std::uint64_t field_random(G& g) noexcept {
  for (;;) {  // rejection sampling: uniform in [0, p)
    const std::uint64_t v = ((static_cast<std::uint64_t>(g.next_u32()) << 32) | g.next_u32()) >> 3;
    if (v < field_p) return v;
  }
}
}  // namespace detail

/// One Shamir share: the polynomial's value y at x = holder id + 1.
struct shamir_share {
  std::uint32_t holder = 0;
  std::uint64_t y = 0;
  std::uint64_t x() const noexcept { return static_cast<std::uint64_t>(holder) + 1; }
};

/// Splits `secret` (< 2^61 − 1) into shares for `holders` (distinct ids) so
/// that any `threshold` of them rebuild it and fewer reveal nothing (Shamir,
/// "How to Share a Secret", CACM 1979): a random polynomial of degree t − 1
/// over GF(2^61 − 1) with constant term `secret`.
///
/// The polynomial's coefficients come from `g`: a cryptographic generator
/// (`chacha_generator`) in the protocol; anything with `next_u32()` otherwise.
template <class G>
std::vector<shamir_share> shamir_split(std::uint64_t secret, std::size_t threshold,
                                       std::span<const std::uint32_t> holders, G& g) {
  TINYLARGE_REQUIRE(secret < detail::field_p && threshold >= 1 && threshold <= holders.size(), errc::invalid_argument,
                    "shamir_split: need secret < 2^61 - 1 and 1 <= threshold <= holders");
  std::vector<std::uint64_t> coef(threshold);
  coef[0] = secret;
  for (std::size_t k = 1; k < threshold; ++k) coef[k] = detail::field_random(g);
  std::vector<shamir_share> out;
  out.reserve(holders.size());
  for (const std::uint32_t h : holders) {
    const std::uint64_t x = static_cast<std::uint64_t>(h) + 1;
    std::uint64_t y = 0;
    for (std::size_t k = threshold; k-- > 0;) y = detail::fadd(detail::fmul(y, x), coef[k]);  // Horner
    out.push_back({h, y});
  }
  return out;
}

/// Lagrange interpolation at 0 from distinct shares. With at least the
/// threshold number of shares this is the secret; with fewer, an unrelated
/// field element (the caller must count).
inline std::uint64_t shamir_combine(std::span<const shamir_share> shares) {
  std::uint64_t secret = 0;
  for (std::size_t a = 0; a < shares.size(); ++a) {
    std::uint64_t num = 1, den = 1;
    for (std::size_t b = 0; b < shares.size(); ++b) {
      if (a == b) continue;
      TINYLARGE_REQUIRE(shares[a].holder != shares[b].holder, errc::invalid_argument, "shamir_combine: repeated share");
      num = detail::fmul(num, shares[b].x());
      den = detail::fmul(den, detail::fsub(shares[b].x(), shares[a].x()));
    }
    secret = detail::fadd(secret, detail::fmul(shares[a].y, detail::fmul(num, detail::finv(den))));
  }
  return secret;
}

#if TINYLARGE_SECAGG_HAS_SODIUM

// ===========================================================================
// Primitives (libsodium)
// ===========================================================================

/// 32 bytes: a key, a seed or a public key.
using key32 = std::array<std::uint8_t, 32>;

namespace detail {
inline void sodium_ready() {
  TINYLARGE_REQUIRE(sodium_init() >= 0, errc::io_error, "secagg: libsodium failed to initialise");
}
inline void put_le32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::uint32_t get_le32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline void put_le64(std::uint8_t* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::uint64_t get_le64(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
}  // namespace detail

/// A cryptographic generator: the ChaCha20 (IETF) keystream under a 32-byte
/// key, zero nonce, read in order. Draws the key pairs, self-mask seeds and
/// Shamir coefficients of a client's round.
class chacha_generator {
 public:
  explicit chacha_generator(const key32& key) : key_(key) { detail::sodium_ready(); }
  chacha_generator(const chacha_generator&) = delete;
  chacha_generator& operator=(const chacha_generator&) = delete;
  ~chacha_generator() {
    sodium_memzero(key_.data(), key_.size());
    sodium_memzero(buf_.data(), buf_.size());
  }
  void fill(std::span<std::uint8_t> out) {
    for (std::uint8_t& b : out) {
      if (pos_ == buf_.size()) refill();
      b = buf_[pos_++];
    }
  }
  std::uint32_t next_u32() {
    std::array<std::uint8_t, 4> b{};
    fill(b);
    return detail::get_le32(b.data());
  }
  key32 next_key() {
    key32 k{};
    fill(k);
    return k;
  }

 private:
  void refill() {
    static constexpr std::array<std::uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
    buf_.fill(0);
    crypto_stream_chacha20_ietf_xor_ic(buf_.data(), buf_.data(), buf_.size(), nonce.data(), block_, key_.data());
    block_ += static_cast<std::uint32_t>(buf_.size() / 64);
    pos_ = 0;
  }
  key32 key_;
  std::array<std::uint8_t, 256> buf_{};
  std::size_t pos_ = 256;
  std::uint32_t block_ = 0;
};

/// v ← v ± PRG(key), element-wise mod 2^32: PRG is the ChaCha20 (IETF)
/// keystream under `key` with a zero nonce, as little-endian uint32 lanes.
inline void apply_mask(std::span<std::uint32_t> v, const key32& key, bool subtract) {
  detail::sodium_ready();
  static constexpr std::array<std::uint8_t, crypto_stream_chacha20_ietf_NONCEBYTES> nonce{};
  std::array<std::uint8_t, 4096> buf{};
  std::uint32_t block = 0;
  for (std::size_t at = 0; at < v.size(); at += buf.size() / 4) {
    const std::size_t lanes = std::min(buf.size() / 4, v.size() - at);
    buf.fill(0);
    crypto_stream_chacha20_ietf_xor_ic(buf.data(), buf.data(), 4 * lanes, nonce.data(), block, key.data());
    block += static_cast<std::uint32_t>(buf.size() / 64);
    for (std::size_t i = 0; i < lanes; ++i) {
      const std::uint32_t m = detail::get_le32(buf.data() + 4 * i);
      v[at + i] = subtract ? v[at + i] - m : v[at + i] + m;
    }
  }
  sodium_memzero(buf.data(), buf.size());
}

/// The pair seed s_ij = s_ji: BLAKE2b-256 of the X25519 shared secret
/// X25519(my_sk, their_pk) followed by both public keys, the lower id's first.
/// Fails (corrupt) when the peer's key is a low-order point (all-zero secret).
[[nodiscard]] inline status pair_key(std::uint32_t my_id, const key32& my_sk, const key32& my_pk,
                                     std::uint32_t their_id, const key32& their_pk, key32& out) {
  detail::sodium_ready();
  key32 shared{};
  TINYLARGE_CHECK(crypto_scalarmult(shared.data(), my_sk.data(), their_pk.data()) == 0, errc::corrupt,
                  "secagg: a peer's X25519 public key is a low-order point");
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, out.size());
  crypto_generichash_update(&st, shared.data(), shared.size());
  const key32& lo = my_id < their_id ? my_pk : their_pk;
  const key32& hi = my_id < their_id ? their_pk : my_pk;
  crypto_generichash_update(&st, lo.data(), lo.size());
  crypto_generichash_update(&st, hi.data(), hi.size());
  crypto_generichash_final(&st, out.data(), out.size());
  sodium_memzero(shared.data(), shared.size());
  return status::success();
}

/// A client's round seed drawn from the operating system (`randombytes_buf`):
/// what deployments use.
inline key32 random_round_seed() {
  detail::sodium_ready();
  key32 k{};
  randombytes_buf(k.data(), k.size());
  return k;
}

/// A client's round seed derived from (run seed, round, client id) with
/// BLAKE2b: what the in-process simulation and the tests use, so that runs
/// repeat bit for bit. NOT for deployment: whoever knows the run seed knows
/// every key.
inline key32 derived_round_seed(std::uint64_t run_seed, std::uint32_t round, std::uint32_t client) {
  detail::sodium_ready();
  static constexpr char domain[] = "tinylarge secagg round seed v1";
  std::array<std::uint8_t, sizeof(domain) - 1 + 16> msg{};
  std::memcpy(msg.data(), domain, sizeof(domain) - 1);
  detail::put_le64(msg.data() + sizeof(domain) - 1, run_seed);
  detail::put_le32(msg.data() + sizeof(domain) - 1 + 8, round);
  detail::put_le32(msg.data() + sizeof(domain) - 1 + 12, client);
  key32 k{};
  crypto_generichash(k.data(), k.size(), msg.data(), msg.size(), nullptr, 0);
  return k;
}

// ===========================================================================
// Shares of 32-byte secrets
// ===========================================================================

/// Limbs of a 32-byte secret: 7 bytes each (< 2^56 < p), five limbs.
inline constexpr std::size_t key_limbs = 5;

/// One holder's share of a 32-byte secret: a Shamir share per limb.
struct key_share {
  std::uint32_t holder = 0;
  std::array<std::uint64_t, key_limbs> y{};
};

/// t-of-n Shamir shares of a 32-byte secret for `holders`, limb by limb.
template <class G>
std::vector<key_share> share_key(const key32& secret, std::size_t threshold, std::span<const std::uint32_t> holders,
                                 G& g) {
  std::vector<key_share> out(holders.size());
  for (std::size_t h = 0; h < holders.size(); ++h) out[h].holder = holders[h];
  for (std::size_t l = 0; l < key_limbs; ++l) {
    std::uint64_t limb = 0;
    for (std::size_t b = 0; b < 7 && 7 * l + b < secret.size(); ++b)
      limb |= static_cast<std::uint64_t>(secret[7 * l + b]) << (8 * b);
    const auto sh = shamir_split(limb, threshold, holders, g);
    for (std::size_t h = 0; h < holders.size(); ++h) out[h].y[l] = sh[h].y;
  }
  return out;
}

/// Rebuilds a 32-byte secret from t shares of distinct holders. Fails
/// (corrupt) when a rebuilt limb is out of range (shares that do not belong together).
[[nodiscard]] inline status combine_key(std::span<const key_share> shares, key32& out) {
  std::vector<shamir_share> limb(shares.size());
  for (std::size_t l = 0; l < key_limbs; ++l) {
    for (std::size_t s = 0; s < shares.size(); ++s) limb[s] = {shares[s].holder, shares[s].y[l]};
    const std::uint64_t v = shamir_combine(limb);
    const std::size_t bytes = std::min<std::size_t>(7, out.size() - 7 * l);
    TINYLARGE_CHECK(v >> (8 * bytes) == 0, errc::corrupt, "secagg: shares of a key do not combine to a key");
    for (std::size_t b = 0; b < bytes; ++b) out[7 * l + b] = static_cast<std::uint8_t>(v >> (8 * b));
  }
  return status::success();
}

// ===========================================================================
// Messages
// ===========================================================================

/// Step 0, client → server (and relayed to every client in the roster).
struct advertisement {
  std::uint32_t id = 0;
  key32 c_pk{};  ///< X25519 public key that seals shares sent to this client
  key32 s_pk{};  ///< X25519 public key of the mask agreement
  static constexpr std::size_t wire_bytes = 4 + 32 + 32;
};

/// Step 1: the share client `from` sends client `to`, sealed (crypto_box_easy).
/// Plain text: from, to, round (u32 each), then the share of s_sk_from and
/// the share of b_from (5 limbs, u64 little-endian each).
struct sealed_share {
  std::uint32_t from = 0;
  std::uint32_t to = 0;
  std::vector<std::uint8_t> box;  ///< crypto_box_MACBYTES + plain_bytes
  static constexpr std::size_t plain_bytes = 12 + 2 * 8 * key_limbs;
  static constexpr std::size_t box_bytes = crypto_box_MACBYTES + plain_bytes;
  static constexpr std::size_t wire_bytes = 8 + box_bytes;
};

/// Step 3, server → survivors: who survived, who dropped.
struct unmask_request {
  std::vector<std::uint32_t> survivors;
  std::vector<std::uint32_t> dropped;
};

/// Step 3, survivor → server: its shares of b for survivors, of s_sk for dropped.
struct unmask_response {
  std::uint32_t from = 0;
  std::vector<std::pair<std::uint32_t, key_share>> b_shares;   ///< (owner, share)
  std::vector<std::pair<std::uint32_t, key_share>> sk_shares;  ///< (owner, share)
};

namespace detail {
/// The crypto_box nonce of the share `from` → `to` in `round`: unique per
/// (key pair, message) since the key pairs are fresh every round.
inline std::array<std::uint8_t, crypto_box_NONCEBYTES> share_nonce(std::uint32_t round, std::uint32_t from,
                                                                   std::uint32_t to) noexcept {
  std::array<std::uint8_t, crypto_box_NONCEBYTES> n{};
  put_le32(n.data(), round);
  put_le32(n.data() + 4, from);
  put_le32(n.data() + 8, to);
  return n;
}
}  // namespace detail

// ===========================================================================
// The client's session of one round
// ===========================================================================

/// One client's state in one secure-aggregation round (steps 0–3 of the file
/// comment). Keys are drawn from a ChaCha20 generator keyed by `round_seed`
/// (`random_round_seed` in deployment, `derived_round_seed` in simulation)
/// and wiped on destruction.
class client_session {
 public:
  client_session(std::uint32_t id, std::uint32_t round, const key32& round_seed, const settings& s)
      : id_(id), round_(round), settings_(s), gen_(round_seed) {
    key32 seed = gen_.next_key();
    crypto_box_seed_keypair(c_pk_.data(), c_sk_.data(), seed.data());
    seed = gen_.next_key();
    crypto_box_seed_keypair(s_pk_.data(), s_sk_.data(), seed.data());
    sodium_memzero(seed.data(), seed.size());
    b_ = gen_.next_key();
  }
  client_session(const client_session&) = delete;
  client_session& operator=(const client_session&) = delete;
  client_session(client_session&&) = delete;
  ~client_session() {
    sodium_memzero(c_sk_.data(), c_sk_.size());
    sodium_memzero(s_sk_.data(), s_sk_.size());
    sodium_memzero(b_.data(), b_.size());
  }

  std::uint32_t id() const noexcept { return id_; }
  std::uint32_t round() const noexcept { return round_; }

  /// Step 0: this client's public keys.
  advertisement advertise() const { return {id_, c_pk_, s_pk_}; }

  /// Step 1: shares of s_sk and b for every roster member (this client's own
  /// share kept), sealed to each other member. The roster must contain this
  /// client, unique ids, at least two entries.
  /// @throws tl::invalid_argument for a bad roster.
  std::vector<sealed_share> share_keys(std::span<const advertisement> roster) {
    std::vector<std::uint32_t> ids;
    for (const advertisement& a : roster) ids.push_back(a.id);
    std::vector<std::uint32_t> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    TINYLARGE_REQUIRE(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end() && roster.size() >= 2 &&
                          std::binary_search(sorted.begin(), sorted.end(), id_),
                      errc::invalid_argument,
                      "secagg::client_session::share_keys: the roster must hold this client and ≥ 2 unique ids");
    roster_.assign(roster.begin(), roster.end());
    threshold_ = settings_.threshold_for(roster.size());
    TINYLARGE_REQUIRE(threshold_ <= roster.size(), errc::invalid_argument,
                      "secagg::client_session::share_keys: threshold above the number of clients");
    const auto sk = share_key(s_sk_, threshold_, ids, gen_);
    const auto b = share_key(b_, threshold_, ids, gen_);
    std::vector<sealed_share> out;
    held_.clear();
    for (std::size_t h = 0; h < roster.size(); ++h) {
      if (roster[h].id == id_) {
        held_.push_back({id_, sk[h], b[h]});
        continue;
      }
      std::array<std::uint8_t, sealed_share::plain_bytes> plain{};
      detail::put_le32(plain.data(), id_);
      detail::put_le32(plain.data() + 4, roster[h].id);
      detail::put_le32(plain.data() + 8, round_);
      for (std::size_t l = 0; l < key_limbs; ++l) {
        detail::put_le64(plain.data() + 12 + 8 * l, sk[h].y[l]);
        detail::put_le64(plain.data() + 12 + 8 * (key_limbs + l), b[h].y[l]);
      }
      sealed_share s;
      s.from = id_;
      s.to = roster[h].id;
      s.box.resize(sealed_share::box_bytes);
      const auto nonce = detail::share_nonce(round_, id_, s.to);
      TINYLARGE_REQUIRE(crypto_box_easy(s.box.data(), plain.data(), plain.size(), nonce.data(),
                                        roster[h].c_pk.data(), c_sk_.data()) == 0,
                        errc::corrupt, "secagg: crypto_box_easy refused a peer's public key");
      sodium_memzero(plain.data(), plain.size());
      out.push_back(std::move(s));
    }
    return out;
  }

  /// Steps 1 → 2: the sealed shares addressed to this client, as the server
  /// forwards them. Their senders (and this client) are U2, the clients this
  /// client masks with. Fails on a box that does not open, is not for this
  /// client and round, comes from outside the roster or twice.
  [[nodiscard]] status receive_shares(std::span<const sealed_share> mine) {
    TINYLARGE_CHECK(!roster_.empty(), errc::invalid_argument, "secagg: shares received before share_keys");
    for (const sealed_share& s : mine) {
      const auto it = std::find_if(roster_.begin(), roster_.end(), [&](const advertisement& a) { return a.id == s.from; });
      TINYLARGE_CHECK(it != roster_.end() && s.from != id_ && s.to == id_, errc::invalid_argument,
                      "secagg: a share from outside the roster or for another client");
      TINYLARGE_CHECK(std::none_of(held_.begin(), held_.end(), [&](const held& h) { return h.owner == s.from; }),
                      errc::invalid_argument, "secagg: two shares from one client");
      TINYLARGE_CHECK(s.box.size() == sealed_share::box_bytes, errc::corrupt, "secagg: a sealed share of wrong size");
      std::array<std::uint8_t, sealed_share::plain_bytes> plain{};
      const auto nonce = detail::share_nonce(round_, s.from, id_);
      TINYLARGE_CHECK(crypto_box_open_easy(plain.data(), s.box.data(), s.box.size(), nonce.data(), it->c_pk.data(),
                                           c_sk_.data()) == 0,
                      errc::checksum_mismatch, "secagg: a sealed share does not open (forged or corrupted)");
      TINYLARGE_CHECK(detail::get_le32(plain.data()) == s.from && detail::get_le32(plain.data() + 4) == id_ &&
                          detail::get_le32(plain.data() + 8) == round_,
                      errc::corrupt, "secagg: a sealed share names another sender, addressee or round");
      held h;
      h.owner = s.from;
      h.sk.holder = h.b.holder = id_;
      for (std::size_t l = 0; l < key_limbs; ++l) {
        h.sk.y[l] = detail::get_le64(plain.data() + 12 + 8 * l);
        h.b.y[l] = detail::get_le64(plain.data() + 12 + 8 * (key_limbs + l));
      }
      sodium_memzero(plain.data(), plain.size());
      held_.push_back(h);
    }
    return status::success();
  }

  /// Lanes of a masked input for P parameters: P, then the example count.
  static constexpr std::size_t lanes(std::size_t parameters) noexcept { return parameters + 1; }

  /// The unmasked input x (file comment): round(n · clamp(Δ, ±clip) · 2^f)
  /// per parameter, then n. What the server must never see.
  /// @throws tl::invalid_argument when n ≤ 0 or n · clip · 2^f ≥ 2^31.
  void encode_input(std::span<const float> delta, std::int64_t examples, std::span<std::uint32_t> out) const {
    const fixed_point fp = settings_.fp;
    TINYLARGE_REQUIRE(out.size() == lanes(delta.size()), errc::shape_mismatch, "secagg: masked input of wrong size");
    TINYLARGE_REQUIRE(examples > 0 && fp.frac_bits <= 24 && fp.clip > 0.0f &&
                          static_cast<double>(examples) * fp.clip * fp.scale() < 2147483647.0,
                      errc::invalid_argument,
                      "secagg: n_k · clip · 2^f must stay below 2^31 (lower clip or frac_bits)");
    const double s = fp.scale() * static_cast<double>(examples);
    const double c = fp.clip;
    for (std::size_t i = 0; i < delta.size(); ++i) {
      const double v = std::isnan(delta[i]) ? 0.0 : std::clamp(static_cast<double>(delta[i]), -c, c);
      out[i] = static_cast<std::uint32_t>(static_cast<std::int32_t>(std::llround(v * s)));
    }
    out[delta.size()] = static_cast<std::uint32_t>(examples);
  }

  /// Step 2: y = x + PRG(b) ± Σ_{j∈U2} PRG(s_ij) for the update Δ = w − w_t
  /// and the example count n.
  /// Fails (corrupt) when a peer's public key is a low-order point.
  /// @throws tl::invalid_argument before `share_keys`, or as `encode_input`.
  [[nodiscard]] status mask(std::span<const float> delta, std::int64_t examples, std::span<std::uint32_t> out) const {
    TINYLARGE_REQUIRE(!held_.empty(), errc::invalid_argument, "secagg: mask before share_keys");
    encode_input(delta, examples, out);
    apply_mask(out, b_, /*subtract=*/false);
    for (const held& h : held_) {
      if (h.owner == id_) continue;
      const auto it = std::find_if(roster_.begin(), roster_.end(), [&](const advertisement& a) { return a.id == h.owner; });
      key32 k{};
      TINYLARGE_TRY(pair_key(id_, s_sk_, s_pk_, h.owner, it->s_pk, k));
      apply_mask(out, k, /*subtract=*/id_ > h.owner);
      sodium_memzero(k.data(), k.size());
    }
    return status::success();
  }

  /// Step 3: shares of b for the survivors, of s_sk for the dropped. Fails
  /// on a second request, when the lists overlap, or when this client is not
  /// a survivor. Owners this client holds no share of are skipped.
  [[nodiscard]] status respond(const unmask_request& req, unmask_response& out) {
    TINYLARGE_CHECK(!answered_, errc::invalid_argument, "secagg: shares already released this round");
    for (const std::uint32_t s : req.survivors)
      TINYLARGE_CHECK(std::find(req.dropped.begin(), req.dropped.end(), s) == req.dropped.end(),
                      errc::invalid_argument, "secagg: a client cannot be both surviving and dropped");
    TINYLARGE_CHECK(std::find(req.survivors.begin(), req.survivors.end(), id_) != req.survivors.end(),
                    errc::invalid_argument, "secagg: an unmask request to a client not listed as a survivor");
    answered_ = true;
    out = {};
    out.from = id_;
    for (const held& h : held_) {
      if (std::find(req.survivors.begin(), req.survivors.end(), h.owner) != req.survivors.end())
        out.b_shares.push_back({h.owner, h.b});
      else if (std::find(req.dropped.begin(), req.dropped.end(), h.owner) != req.dropped.end())
        out.sk_shares.push_back({h.owner, h.sk});
    }
    return status::success();
  }

  /// Test hooks: this client's self-mask seed and mask secret key (what the
  /// protocol shares; a test checks they stay hidden or are rebuilt).
  const key32& self_mask_seed() const noexcept { return b_; }
  const key32& mask_secret_key() const noexcept { return s_sk_; }

 private:
  struct held {
    std::uint32_t owner = 0;
    key_share sk{};
    key_share b{};
  };
  std::uint32_t id_;
  std::uint32_t round_;
  settings settings_;
  chacha_generator gen_;
  key32 c_pk_{}, c_sk_{}, s_pk_{}, s_sk_{}, b_{};
  std::vector<advertisement> roster_;
  std::size_t threshold_ = 0;
  std::vector<held> held_;
  bool answered_ = false;
};

// ===========================================================================
// The server's session of one round
// ===========================================================================

/// The server's side of one secure-aggregation round: collects
/// advertisements, relays them and the sealed shares, collects masked inputs
/// and unmask responses, and unmasks the sum. It never holds an unmasked
/// individual input.
class server_session {
 public:
  /// @param parameters P, the model's parameter count (inputs have P + 1 lanes)
  server_session(std::uint32_t round, const settings& s, std::size_t parameters)
      : round_(round), settings_(s), lanes_(parameters + 1) {
    detail::sodium_ready();
  }

  std::uint32_t round() const noexcept { return round_; }
  std::size_t threshold() const noexcept { return threshold_; }

  /// Step 0: one client's advertisement. Fails on a repeated id or after the roster closed.
  [[nodiscard]] status receive_advertisement(const advertisement& a) {
    TINYLARGE_CHECK(!roster_closed_, errc::invalid_argument, "secagg: an advertisement after the roster closed");
    TINYLARGE_CHECK(std::none_of(roster_.begin(), roster_.end(), [&](const advertisement& r) { return r.id == a.id; }),
                    errc::invalid_argument, "secagg: two advertisements from one client");
    roster_.push_back(a);
    return status::success();
  }
  /// Closes step 0: the roster U1 (ascending ids) to relay to every client.
  /// Fails with fewer than the threshold (or two) clients.
  [[nodiscard]] status close_roster() {
    std::sort(roster_.begin(), roster_.end(), [](const advertisement& a, const advertisement& b) { return a.id < b.id; });
    threshold_ = settings_.threshold_for(roster_.size());
    TINYLARGE_CHECK(roster_.size() >= threshold_, errc::invalid_argument,
                    "secagg: fewer clients advertised keys than the threshold t (or than two)");
    roster_closed_ = true;
    return status::success();
  }
  std::span<const advertisement> roster() const noexcept { return roster_; }

  /// Step 1: the sealed shares of one roster member, one per other member.
  [[nodiscard]] status receive_shares(std::uint32_t from, std::span<const sealed_share> shares) {
    TINYLARGE_CHECK(roster_closed_ && in_roster(from), errc::invalid_argument, "secagg: shares from outside the roster");
    TINYLARGE_CHECK(std::find(shared_.begin(), shared_.end(), from) == shared_.end(), errc::invalid_argument,
                    "secagg: a client shared its keys twice");
    TINYLARGE_CHECK(shares.size() + 1 == roster_.size(), errc::invalid_argument,
                    "secagg: a client must send one sealed share to every other roster member");
    std::vector<std::uint32_t> to;
    for (const sealed_share& s : shares) {
      TINYLARGE_CHECK(s.from == from && s.to != from && in_roster(s.to) && s.box.size() == sealed_share::box_bytes,
                      errc::invalid_argument, "secagg: a sealed share with a wrong sender, addressee or size");
      to.push_back(s.to);
    }
    std::sort(to.begin(), to.end());
    TINYLARGE_CHECK(std::adjacent_find(to.begin(), to.end()) == to.end(), errc::invalid_argument,
                    "secagg: two sealed shares for one addressee");
    shared_.push_back(from);
    boxes_.insert(boxes_.end(), shares.begin(), shares.end());
    return status::success();
  }
  /// U2: the clients whose shares were received, in arrival order.
  std::span<const std::uint32_t> sharers() const noexcept { return shared_; }
  /// Steps 1 → 2: the boxes for client `to` from every client that shared (U2).
  std::vector<sealed_share> shares_for(std::uint32_t to) const {
    std::vector<sealed_share> out;
    for (const sealed_share& s : boxes_)
      if (s.to == to && std::find(shared_.begin(), shared_.end(), to) != shared_.end()) out.push_back(s);
    std::sort(out.begin(), out.end(), [](const sealed_share& a, const sealed_share& b) { return a.from < b.from; });
    return out;
  }

  /// Step 2: one masked input (P + 1 lanes) of a client of U2.
  [[nodiscard]] status receive_masked(std::uint32_t from, std::span<const std::uint32_t> y) {
    TINYLARGE_CHECK(std::find(shared_.begin(), shared_.end(), from) != shared_.end(), errc::invalid_argument,
                    "secagg: a masked input from a client that did not share its keys");
    TINYLARGE_CHECK(std::none_of(masked_.begin(), masked_.end(), [&](const auto& m) { return m.first == from; }),
                    errc::invalid_argument, "secagg: two masked inputs from one client");
    TINYLARGE_CHECK(y.size() == lanes_, errc::shape_mismatch, "secagg: a masked input of wrong length");
    masked_.push_back({from, std::vector<std::uint32_t>(y.begin(), y.end())});
    return status::success();
  }
  /// The masked input of `client` as received (empty if none): what the server sees.
  std::span<const std::uint32_t> masked_of(std::uint32_t client) const noexcept {
    for (const auto& m : masked_)
      if (m.first == client) return m.second;
    return {};
  }

  /// Closes step 2: U3 (survivors, ascending) and D = U2 \ U3. Fails with
  /// fewer survivors than the threshold.
  [[nodiscard]] status close_masked(unmask_request& req) {
    req = {};
    for (const std::uint32_t c : shared_) {
      if (masked_of(c).empty()) req.dropped.push_back(c);
      else req.survivors.push_back(c);
    }
    std::sort(req.survivors.begin(), req.survivors.end());
    std::sort(req.dropped.begin(), req.dropped.end());
    TINYLARGE_CHECK(req.survivors.size() >= threshold_, errc::invalid_argument,
                    "secagg: fewer clients sent a masked input than the threshold t");
    request_ = req;
    return status::success();
  }

  /// Step 3: a survivor's shares. Repeated responses are ignored.
  [[nodiscard]] status receive_response(const unmask_response& r) {
    TINYLARGE_CHECK(std::find(request_.survivors.begin(), request_.survivors.end(), r.from) != request_.survivors.end(),
                    errc::invalid_argument, "secagg: an unmask response from a client that is not a survivor");
    if (std::find(responded_.begin(), responded_.end(), r.from) != responded_.end()) return status::success();
    for (const auto& [owner, sh] : r.b_shares)
      TINYLARGE_CHECK(sh.holder == r.from && std::find(request_.survivors.begin(), request_.survivors.end(), owner) !=
                                                 request_.survivors.end(),
                      errc::invalid_argument, "secagg: a self-mask share of a client that did not survive");
    for (const auto& [owner, sh] : r.sk_shares)
      TINYLARGE_CHECK(sh.holder == r.from &&
                          std::find(request_.dropped.begin(), request_.dropped.end(), owner) != request_.dropped.end(),
                      errc::invalid_argument, "secagg: a key share of a client that did not drop");
    responded_.push_back(r.from);
    b_shares_.insert(b_shares_.end(), r.b_shares.begin(), r.b_shares.end());
    sk_shares_.insert(sk_shares_.end(), r.sk_shares.begin(), r.sk_shares.end());
    return status::success();
  }
  std::size_t responses() const noexcept { return responded_.size(); }

  /// Step 4: Σ_{i∈U3} x_i mod 2^32 (P + 1 lanes) from the masked inputs and
  /// the released shares. Fails with fewer than t responses.
  [[nodiscard]] status unmask(std::span<std::uint32_t> sum) const {
    TINYLARGE_CHECK(sum.size() == lanes_, errc::shape_mismatch, "secagg: sum of wrong length");
    TINYLARGE_CHECK(responded_.size() >= threshold_, errc::truncated,
                    "secagg: fewer survivors released their shares than the threshold t");
    std::fill(sum.begin(), sum.end(), 0u);
    for (const std::uint32_t i : request_.survivors) {
      const auto y = masked_of(i);
      for (std::size_t j = 0; j < lanes_; ++j) sum[j] += y[j];
    }
    key32 secret{};
    for (const std::uint32_t i : request_.survivors) {  // remove the self masks
      TINYLARGE_TRY(rebuild(i, b_shares_, secret));
      apply_mask(sum, secret, /*subtract=*/true);
    }
    for (const std::uint32_t d : request_.dropped) {  // remove the masks survivors share with dropped clients
      TINYLARGE_TRY(rebuild(d, sk_shares_, secret));
      key32 d_pk{};
      crypto_scalarmult_base(d_pk.data(), secret.data());
      const advertisement& da = entry(d);
      TINYLARGE_CHECK(sodium_memcmp(d_pk.data(), da.s_pk.data(), d_pk.size()) == 0, errc::corrupt,
                      "secagg: the rebuilt key of a dropped client does not match its public key");
      for (const std::uint32_t i : request_.survivors) {
        key32 k{};
        TINYLARGE_TRY(pair_key(d, secret, d_pk, i, entry(i).s_pk, k));
        apply_mask(sum, k, /*subtract=*/i < d);  // survivor i added PRG(s_id) if i < d
      }
    }
    sodium_memzero(secret.data(), secret.size());
    return status::success();
  }

  /// The survivors and dropped clients of step 3.
  const unmask_request& request() const noexcept { return request_; }

 private:
  bool in_roster(std::uint32_t id) const noexcept {
    return std::any_of(roster_.begin(), roster_.end(), [&](const advertisement& a) { return a.id == id; });
  }
  const advertisement& entry(std::uint32_t id) const {
    return *std::find_if(roster_.begin(), roster_.end(), [&](const advertisement& a) { return a.id == id; });
  }
  status rebuild(std::uint32_t owner, const std::vector<std::pair<std::uint32_t, key_share>>& all, key32& out) const {
    std::vector<key_share> mine;
    for (const auto& [o, sh] : all)
      if (o == owner && mine.size() < threshold_) mine.push_back(sh);
    TINYLARGE_CHECK(mine.size() >= threshold_, errc::truncated, "secagg: not enough shares to rebuild a secret");
    return combine_key(mine, out);
  }

  std::uint32_t round_;
  settings settings_;
  std::size_t lanes_;
  std::size_t threshold_ = 0;
  bool roster_closed_ = false;
  std::vector<advertisement> roster_;
  std::vector<std::uint32_t> shared_;
  std::vector<sealed_share> boxes_;
  std::vector<std::pair<std::uint32_t, std::vector<std::uint32_t>>> masked_;
  unmask_request request_;
  std::vector<std::uint32_t> responded_;
  std::vector<std::pair<std::uint32_t, key_share>> b_shares_, sk_shares_;
};

/// Step 4 decoded: the FedAvg mean w_t + Σ n_k Δ_k / N from the unmasked sum
/// (P + 1 lanes: Σ round(n_k Δ_k 2^f), then N). Fails (invalid_argument)
/// when N = 0 or N · clip · 2^f ≥ 2^31 (the sum may have wrapped).
[[nodiscard]] inline status decode_mean(std::span<const std::uint32_t> sum, std::span<const float> global,
                                        const fixed_point& fp, std::span<float> mean) {
  TINYLARGE_CHECK(sum.size() == global.size() + 1 && mean.size() == global.size(), errc::shape_mismatch,
                  "secagg::decode_mean: sizes differ");
  const double n = static_cast<double>(sum[global.size()]);
  TINYLARGE_CHECK(n > 0.0 && n * fp.clip * fp.scale() < 2147483647.0, errc::invalid_argument,
                  "secagg: N · clip · 2^f reaches 2^31 (N = the round's total example count): the masked sum may "
                  "have wrapped; lower clip or frac_bits");
  const double inv = 1.0 / (fp.scale() * n);
  for (std::size_t i = 0; i < global.size(); ++i)
    mean[i] = static_cast<float>(static_cast<double>(global[i]) +
                                 static_cast<double>(static_cast<std::int32_t>(sum[i])) * inv);
  return status::success();
}

// ===========================================================================
// Payloads on the wire (the `secagg` frames of workflow/federated_deploy.hpp;
// docs/wire-format.md). All integers little-endian; every decoder checks the
// size against the bytes present before reading.
// ===========================================================================

/// Most participants a roster may list (bounds every decoder's allocation).
inline constexpr std::size_t max_wire_participants = 1u << 16;

/// advertise: c_pk ‖ s_pk (64 bytes); the id is the frame's sender.
inline std::vector<std::uint8_t> encode_keys(const advertisement& a) {
  std::vector<std::uint8_t> out(64);
  std::copy(a.c_pk.begin(), a.c_pk.end(), out.begin());
  std::copy(a.s_pk.begin(), a.s_pk.end(), out.begin() + 32);
  return out;
}
[[nodiscard]] inline status decode_keys(std::uint32_t id, std::span<const std::uint8_t> p, advertisement& a) {
  TINYLARGE_CHECK(p.size() == 64, errc::shape_mismatch, "secagg advertise: payload is not 64 bytes");
  a.id = id;
  std::copy(p.begin(), p.begin() + 32, a.c_pk.begin());
  std::copy(p.begin() + 32, p.end(), a.s_pk.begin());
  return status::success();
}

/// roster: n entries of id (u32) ‖ c_pk ‖ s_pk.
inline std::vector<std::uint8_t> encode_roster(std::span<const advertisement> roster) {
  std::vector<std::uint8_t> out(roster.size() * advertisement::wire_bytes);
  for (std::size_t i = 0; i < roster.size(); ++i) {
    std::uint8_t* q = out.data() + i * advertisement::wire_bytes;
    detail::put_le32(q, roster[i].id);
    std::copy(roster[i].c_pk.begin(), roster[i].c_pk.end(), q + 4);
    std::copy(roster[i].s_pk.begin(), roster[i].s_pk.end(), q + 36);
  }
  return out;
}
/// Fails unless the roster has 2 … max_wire_participants unique ids including `self`.
[[nodiscard]] inline status decode_roster(std::span<const std::uint8_t> p, std::uint32_t self,
                                          std::vector<advertisement>& roster) {
  TINYLARGE_CHECK(p.size() % advertisement::wire_bytes == 0 && p.size() / advertisement::wire_bytes >= 2 &&
                      p.size() / advertisement::wire_bytes <= max_wire_participants,
                  errc::shape_mismatch, "secagg roster: payload is not 2 or more 68-byte entries");
  roster.resize(p.size() / advertisement::wire_bytes);
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < roster.size(); ++i) {
    const std::uint8_t* q = p.data() + i * advertisement::wire_bytes;
    roster[i].id = detail::get_le32(q);
    std::copy(q + 4, q + 36, roster[i].c_pk.begin());
    std::copy(q + 36, q + 68, roster[i].s_pk.begin());
    ids.push_back(roster[i].id);
  }
  std::sort(ids.begin(), ids.end());
  TINYLARGE_CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end() &&
                      std::binary_search(ids.begin(), ids.end(), self),
                  errc::invalid_argument, "secagg roster: repeated ids, or this client is not in it");
  return status::success();
}

/// shares / boxes: n entries of from (u32) ‖ to (u32) ‖ the sealed box.
inline std::vector<std::uint8_t> encode_shares(std::span<const sealed_share> shares) {
  std::vector<std::uint8_t> out(shares.size() * sealed_share::wire_bytes);
  for (std::size_t i = 0; i < shares.size(); ++i) {
    std::uint8_t* q = out.data() + i * sealed_share::wire_bytes;
    detail::put_le32(q, shares[i].from);
    detail::put_le32(q + 4, shares[i].to);
    std::copy(shares[i].box.begin(), shares[i].box.end(), q + 8);
  }
  return out;
}
[[nodiscard]] inline status decode_shares(std::span<const std::uint8_t> p, std::vector<sealed_share>& shares) {
  TINYLARGE_CHECK(p.size() % sealed_share::wire_bytes == 0 && p.size() / sealed_share::wire_bytes < max_wire_participants,
                  errc::shape_mismatch, "secagg shares: payload is not a whole number of sealed shares");
  shares.resize(p.size() / sealed_share::wire_bytes);
  for (std::size_t i = 0; i < shares.size(); ++i) {
    const std::uint8_t* q = p.data() + i * sealed_share::wire_bytes;
    shares[i].from = detail::get_le32(q);
    shares[i].to = detail::get_le32(q + 4);
    shares[i].box.assign(q + 8, q + sealed_share::wire_bytes);
  }
  return status::success();
}

/// masked: the P + 1 lanes as u32.
inline std::vector<std::uint8_t> encode_masked(std::span<const std::uint32_t> y) {
  std::vector<std::uint8_t> out(4 * y.size());
  for (std::size_t i = 0; i < y.size(); ++i) detail::put_le32(out.data() + 4 * i, y[i]);
  return out;
}
[[nodiscard]] inline status decode_masked(std::span<const std::uint8_t> p, std::size_t lanes,
                                          std::vector<std::uint32_t>& y) {
  TINYLARGE_CHECK(p.size() == 4 * lanes, errc::shape_mismatch, "secagg masked: payload is not P + 1 words");
  y.resize(lanes);
  for (std::size_t i = 0; i < lanes; ++i) y[i] = detail::get_le32(p.data() + 4 * i);
  return status::success();
}

/// unmask request: |S| (u32) ‖ |D| (u32) ‖ the survivors' ids ‖ the dropped ids.
inline std::vector<std::uint8_t> encode_request(const unmask_request& r) {
  std::vector<std::uint8_t> out(8 + 4 * (r.survivors.size() + r.dropped.size()));
  detail::put_le32(out.data(), static_cast<std::uint32_t>(r.survivors.size()));
  detail::put_le32(out.data() + 4, static_cast<std::uint32_t>(r.dropped.size()));
  std::size_t at = 8;
  for (const std::uint32_t c : r.survivors) detail::put_le32(out.data() + (at += 4) - 4, c);
  for (const std::uint32_t c : r.dropped) detail::put_le32(out.data() + (at += 4) - 4, c);
  return out;
}
[[nodiscard]] inline status decode_request(std::span<const std::uint8_t> p, unmask_request& r) {
  TINYLARGE_CHECK(p.size() >= 8, errc::shape_mismatch, "secagg unmask request: shorter than its counts");
  const std::uint64_t ns = detail::get_le32(p.data()), nd = detail::get_le32(p.data() + 4);
  TINYLARGE_CHECK(ns + nd <= max_wire_participants && p.size() == 8 + 4 * (ns + nd), errc::shape_mismatch,
                  "secagg unmask request: size does not match its counts");
  r.survivors.resize(ns);
  r.dropped.resize(nd);
  for (std::size_t i = 0; i < ns; ++i) r.survivors[i] = detail::get_le32(p.data() + 8 + 4 * i);
  for (std::size_t i = 0; i < nd; ++i) r.dropped[i] = detail::get_le32(p.data() + 8 + 4 * (ns + i));
  return status::success();
}

/// unmask response: |b| (u32) ‖ |sk| (u32) ‖ entries of owner (u32) ‖ holder
/// (u32) ‖ 5 limbs (u64): the b shares first, then the s_sk shares.
inline constexpr std::size_t share_wire_bytes = 8 + 8 * key_limbs;
inline std::vector<std::uint8_t> encode_response(const unmask_response& r) {
  std::vector<std::uint8_t> out(8 + share_wire_bytes * (r.b_shares.size() + r.sk_shares.size()));
  detail::put_le32(out.data(), static_cast<std::uint32_t>(r.b_shares.size()));
  detail::put_le32(out.data() + 4, static_cast<std::uint32_t>(r.sk_shares.size()));
  std::uint8_t* q = out.data() + 8;
  for (const auto* list : {&r.b_shares, &r.sk_shares})
    for (const auto& [owner, sh] : *list) {
      detail::put_le32(q, owner);
      detail::put_le32(q + 4, sh.holder);
      for (std::size_t l = 0; l < key_limbs; ++l) detail::put_le64(q + 8 + 8 * l, sh.y[l]);
      q += share_wire_bytes;
    }
  return out;
}
[[nodiscard]] inline status decode_response(std::uint32_t from, std::span<const std::uint8_t> p, unmask_response& r) {
  TINYLARGE_CHECK(p.size() >= 8, errc::shape_mismatch, "secagg unmask response: shorter than its counts");
  const std::uint64_t nb = detail::get_le32(p.data()), nk = detail::get_le32(p.data() + 4);
  TINYLARGE_CHECK(nb + nk <= max_wire_participants && p.size() == 8 + share_wire_bytes * (nb + nk),
                  errc::shape_mismatch, "secagg unmask response: size does not match its counts");
  r = {};
  r.from = from;
  const std::uint8_t* q = p.data() + 8;
  for (std::uint64_t i = 0; i < nb + nk; ++i, q += share_wire_bytes) {
    key_share sh;
    sh.holder = detail::get_le32(q + 4);
    for (std::size_t l = 0; l < key_limbs; ++l) {
      sh.y[l] = detail::get_le64(q + 8 + 8 * l);
      TINYLARGE_CHECK(sh.y[l] < detail::field_p, errc::corrupt, "secagg unmask response: a share outside the field");
    }
    (i < nb ? r.b_shares : r.sk_shares).push_back({detail::get_le32(q), sh});
  }
  return status::success();
}

#endif  // TINYLARGE_SECAGG_HAS_SODIUM

}  // namespace tinylarge::secagg
