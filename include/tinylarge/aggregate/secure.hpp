/// @file aggregate/secure.hpp
/// @brief Secure aggregation by pairwise additive masks over Z_2^32, with
///        dropout recovery — a simplified simulation of Bonawitz et al.,
///        "Practical Secure Aggregation for Privacy-Preserving Machine
///        Learning", CCS 2017.
///
/// Protocol (one round, participants P agreed at the start, ids unique):
///  1. each client i encodes its update in fixed point, x_i ∈ Z_2^32^d
///     (`encode`: clamp to [−clip, clip], round(x · 2^f), two's complement);
///  2. for every other participant j it derives a pair seed s_ij = s_ji
///     (`pair_seed`) and adds the mask PRG(s_ij) if i < j, subtracts it if
///     i > j (`mask_update`), then sends y_i = x_i ± Σ_j PRG(s_ij);
///  3. the server learns which clients dropped (D) and which survived (S);
///     each survivor i reveals s_ij for every j ∈ D (`reveal_seeds`);
///  4. the server adds up the y_i of S mod 2^32 — the masks between two
///     survivors cancel — and removes the masks survivors share with dropped
///     clients using the revealed seeds (`unmask_sum`); the result is
///     Σ_{i∈S} x_i mod 2^32, which `decode_sum` turns back into floats.
///
/// Threat model — read before relying on it:
///  - **Protected**, against an honest-but-curious server that follows the
///    protocol and sees every y_i: with at least two surviving honest
///    clients, each y_i is x_i plus a mask the server cannot compute (the
///    masks with the other survivors are never revealed), so the server
///    learns Σ_{i∈S} x_i and nothing about an individual x_i beyond it —
///    *provided* the pair seeds come from a real key agreement and the masks
///    from a cryptographic PRG. `unmask_sum` refuses fewer than two survivors
///    (the sum of one is that client's update).
///  - **Simulated, not secure**: `pair_seed` derives s_ij from a shared
///    session seed with a public mixing function — it stands for the
///    Diffie–Hellman agreement of the paper. Anyone holding the session seed
///    recomputes every mask. The PRG is PCG32 (`tl::rng`), which is fast and
///    well distributed but *not* cryptographically secure: its state is
///    recoverable from its output. Both are simulation choices, made so that
///    runs repeat exactly; swap in X25519 + AES-CTR/ChaCha20 to deploy.
///  - **Not protected by this simple protocol**: there is no self-mask b_i
///    and no secret sharing. A malicious server can declare an honest client
///    dropped, collect its pair seeds from the others and unmask that client's
///    y_i if it arrives; and every survivor must answer step 3. The second
///    protocol below (`mask_update_double` / `unmask_sum_double`) adds
///    Bonawitz et al.'s double masking with t-of-n Shamir shares of the
///    self-mask seed and of a Diffie–Hellman secret key, which closes that
///    hole and needs only t clients to answer step 3. Neither protocol has
///    authentication, a consistency round (a malicious server can still ask
///    different clients different questions — the full paper's round 4) or
///    any protection against malicious clients: a client
///    can add any value to the sum, and robust rules (median, Krum, …) cannot
///    run on masked updates — secure aggregation composes with FedAvg-type
///    (linear) rules only. The sum itself is revealed by design.
///  - **Numerics**: values are clamped to [−clip, clip] and rounded to
///    multiples of 2^−f; the sum of n clients is exact mod 2^32 and decodes
///    correctly while n · clip · 2^f < 2^31 (`fixed_point::max_clients`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"

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

/// SIMULATED key agreement: the seed clients a and b share (s_ab = s_ba),
/// derived from the session seed by SplitMix64 finalisers. Stands for the
/// Diffie–Hellman exchange of Bonawitz et al.; see the threat model.
constexpr std::uint64_t pair_seed(std::uint64_t session_seed, std::uint32_t a, std::uint32_t b) noexcept {
  const std::uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
  auto mix = [](std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  return mix(mix(session_seed) ^ mix((hi << 32) | lo));
}

/// v ← v + PRG(seed) (or − when `subtract`), element-wise mod 2^32.
inline void apply_mask(std::span<std::uint32_t> v, std::uint64_t seed, bool subtract) noexcept {
  rng prg(seed, 0x5ec'a66ULL);
  if (subtract) {
    for (std::uint32_t& w : v) w -= prg.next_u32();
  } else {
    for (std::uint32_t& w : v) w += prg.next_u32();
  }
}

/// Client step 2: masks the encoded update of client `self` in place with its
/// pairwise masks towards every other id in `participants`.
inline void mask_update(std::uint32_t self, std::span<const std::uint32_t> participants, std::uint64_t session_seed,
                        std::span<std::uint32_t> inout) {
  for (const std::uint32_t p : participants) {
    if (p == self) continue;
    apply_mask(inout, pair_seed(session_seed, self, p), /*subtract=*/self > p);
  }
}

/// A pair seed revealed by a survivor for a dropped peer (step 3).
struct revealed_seed {
  std::uint32_t survivor = 0;
  std::uint32_t dropped = 0;
  std::uint64_t seed = 0;
};

/// Client step 3: survivor `self` reveals its pair seeds with each dropped id.
inline std::vector<revealed_seed> reveal_seeds(std::uint32_t self, std::span<const std::uint32_t> dropped,
                                               std::uint64_t session_seed) {
  std::vector<revealed_seed> out;
  out.reserve(dropped.size());
  for (const std::uint32_t d : dropped) out.push_back({self, d, pair_seed(session_seed, self, d)});
  return out;
}

/// Server step 4: `sum` ← Σ_{i∈S} x_i mod 2^32 from the masked vectors of
/// the survivors (`masked[k]` belongs to `survivors[k]`) and the seeds they
/// revealed for the dropped clients. Fails (status) on size mismatch, fewer
/// than two survivors, an id both surviving and dropped or repeated, or a
/// missing revealed seed.
[[nodiscard]] inline status unmask_sum(std::span<const std::uint32_t> survivors,
                                       std::span<const std::span<const std::uint32_t>> masked,
                                       std::span<const std::uint32_t> dropped,
                                       std::span<const revealed_seed> reveals, std::span<std::uint32_t> sum) {
  TINYLARGE_CHECK(survivors.size() == masked.size(), errc::shape_mismatch, "secagg: one masked vector per survivor");
  TINYLARGE_CHECK(survivors.size() >= 2, errc::invalid_argument, "secagg: fewer than two survivors");
  std::vector<std::uint32_t> ids(survivors.begin(), survivors.end());
  ids.insert(ids.end(), dropped.begin(), dropped.end());
  std::sort(ids.begin(), ids.end());
  TINYLARGE_CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end(), errc::invalid_argument,
                  "secagg: participant ids must be unique");
  for (const auto& y : masked) TINYLARGE_CHECK(y.size() == sum.size(), errc::shape_mismatch, "secagg: masked length");
  std::fill(sum.begin(), sum.end(), 0u);
  for (const auto& y : masked)
    for (std::size_t j = 0; j < sum.size(); ++j) sum[j] += y[j];
  for (const std::uint32_t i : survivors) {
    for (const std::uint32_t d : dropped) {
      const auto it = std::find_if(reveals.begin(), reveals.end(),
                                   [&](const revealed_seed& r) { return r.survivor == i && r.dropped == d; });
      TINYLARGE_CHECK(it != reveals.end(), errc::truncated, "secagg: a survivor did not reveal a dropped peer's seed");
      // Survivor i added PRG(s_id) if i < d and subtracted it otherwise: undo that.
      apply_mask(sum, it->seed, /*subtract=*/i < d);
    }
  }
  return status::success();
}


// ===========================================================================
// Double masking with Shamir secret sharing (Bonawitz et al. 2017, §4)
// ===========================================================================
//
// The fuller protocol, closing the hole of the simple one above (a client
// reported dropped whose masked input still arrives can be unmasked):
//  0. each client i has a key pair (sk_i, pk_i = g^sk_i) and a self-mask seed
//     b_i; pair seeds come from Diffie–Hellman, s_ij = pk_j^sk_i = pk_i^sk_j;
//  1. i splits sk_i and b_i into t-of-n Shamir shares, one per participant;
//  2. i sends y_i = x_i + PRG(b_i) ± Σ_j PRG(s_ij);
//  3. for every *surviving* client the others hand the server their share of
//     b_i, for every *dropped* client their share of sk_d — never both for the
//     same client (`share_holder::respond` enforces it);
//  4. the server rebuilds b_i (i ∈ S) and sk_d (d ∈ D) from ≥ t shares,
//     removes PRG(b_i) and the masks survivors share with dropped clients.
// A late y_d of a dropped client stays hidden behind PRG(b_d), whose shares
// were never released. Threat model as above, except for that hole; still a
// SIMULATION: the group is Z_p^* with p = 2^61 − 1 (far too small for real
// Diffie–Hellman), keys come from `tl::rng`, the PRG is PCG32, and there is
// no authentication or consistency check (an actively malicious server can
// still ask different clients different questions).

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
inline std::uint64_t field_random(rng& g) noexcept {
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
inline std::vector<shamir_share> shamir_split(std::uint64_t secret, std::size_t threshold,
                                              std::span<const std::uint32_t> holders, rng& g) {
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

/// Generator of the Diffie–Hellman group (a primitive root mod 2^61 − 1).
inline constexpr std::uint64_t dh_generator = 37;

/// A client's long-term secrets for one round (simulation: drawn from `tl::rng`).
struct client_keys {
  std::uint32_t id = 0;
  std::uint64_t secret_key = 0;      ///< sk ∈ [1, p − 1)
  std::uint64_t public_key = 0;      ///< pk = g^sk mod p, published
  std::uint64_t self_mask_seed = 0;  ///< b, < p

  static client_keys generate(std::uint32_t id, rng& g) {
    client_keys k;
    k.id = id;
    do k.secret_key = detail::field_random(g);
    while (k.secret_key < 2);
    k.public_key = detail::fpow(dh_generator, k.secret_key);
    k.self_mask_seed = detail::field_random(g);
    return k;
  }
};

/// Diffie–Hellman pair seed: pk_other^sk_mine (= pk_mine^sk_other).
constexpr std::uint64_t agree(std::uint64_t my_secret_key, std::uint64_t their_public_key) noexcept {
  return detail::fpow(their_public_key, my_secret_key);
}

/// A participant's id and public key, as the server relays them.
struct public_entry {
  std::uint32_t id = 0;
  std::uint64_t public_key = 0;
};

/// Client step 2 of the double-masking protocol: y = x + PRG(b) ± Σ PRG(s_ij).
inline void mask_update_double(const client_keys& me, std::span<const public_entry> participants,
                               std::span<std::uint32_t> inout) {
  apply_mask(inout, me.self_mask_seed, /*subtract=*/false);
  for (const public_entry& p : participants) {
    if (p.id == me.id) continue;
    apply_mask(inout, agree(me.secret_key, p.public_key), /*subtract=*/me.id > p.id);
  }
}

/// What one client holds after step 1: its shares of every participant's sk
/// and b. Answers the server's step-3 request at most once per round and
/// never releases both secrets of the same client.
class share_holder {
 public:
  std::uint32_t id = 0;
  std::vector<std::pair<std::uint32_t, shamir_share>> sk_shares;  ///< (owner, share)
  std::vector<std::pair<std::uint32_t, shamir_share>> b_shares;   ///< (owner, share)

  /// Step 3: shares of b for `survivors`, of sk for `dropped`. Fails when the
  /// two lists overlap (that would unmask a client) or on a second request.
  [[nodiscard]] status respond(std::span<const std::uint32_t> survivors, std::span<const std::uint32_t> dropped,
                               std::vector<std::pair<std::uint32_t, shamir_share>>& b_out,
                               std::vector<std::pair<std::uint32_t, shamir_share>>& sk_out) {
    TINYLARGE_CHECK(!answered_, errc::invalid_argument, "secagg: shares already released this round");
    for (const std::uint32_t s : survivors)
      TINYLARGE_CHECK(std::find(dropped.begin(), dropped.end(), s) == dropped.end(), errc::invalid_argument,
                      "secagg: a client cannot be both surviving and dropped");
    answered_ = true;
    for (const auto& [owner, sh] : b_shares)
      if (std::find(survivors.begin(), survivors.end(), owner) != survivors.end()) b_out.push_back({owner, sh});
    for (const auto& [owner, sh] : sk_shares)
      if (std::find(dropped.begin(), dropped.end(), owner) != dropped.end()) sk_out.push_back({owner, sh});
    return status::success();
  }

 private:
  bool answered_ = false;
};

/// Step 1 for a whole (simulated) fleet: every client splits its sk and b
/// t-of-n among all participants; returns one `share_holder` per participant,
/// in the order of `keys`.
inline std::vector<share_holder> distribute_shares(std::span<const client_keys> keys, std::size_t threshold, rng& g) {
  std::vector<std::uint32_t> ids;
  for (const auto& k : keys) ids.push_back(k.id);
  std::vector<share_holder> holders(keys.size());
  for (std::size_t h = 0; h < keys.size(); ++h) holders[h].id = keys[h].id;
  for (const auto& k : keys) {
    const auto sk = shamir_split(k.secret_key, threshold, ids, g);
    const auto b = shamir_split(k.self_mask_seed, threshold, ids, g);
    for (std::size_t h = 0; h < keys.size(); ++h) {
      holders[h].sk_shares.push_back({k.id, sk[h]});
      holders[h].b_shares.push_back({k.id, b[h]});
    }
  }
  return holders;
}

/// Server step 4 of the double-masking protocol. `masked[k]` belongs to
/// `survivors[k]`; `participants` lists every id with its public key;
/// `b_shares` / `sk_shares` are what the survivors released in step 3.
/// Needs ≥ `threshold` shares per secret and ≥ 2 survivors; the result is
/// Σ_{i∈S} x_i mod 2^32.
[[nodiscard]] inline status unmask_sum_double(std::span<const std::uint32_t> survivors,
                                              std::span<const std::span<const std::uint32_t>> masked,
                                              std::span<const std::uint32_t> dropped,
                                              std::span<const public_entry> participants, std::size_t threshold,
                                              std::span<const std::pair<std::uint32_t, shamir_share>> b_shares,
                                              std::span<const std::pair<std::uint32_t, shamir_share>> sk_shares,
                                              std::span<std::uint32_t> sum) {
  TINYLARGE_CHECK(survivors.size() == masked.size(), errc::shape_mismatch, "secagg: one masked vector per survivor");
  TINYLARGE_CHECK(survivors.size() >= 2 && survivors.size() >= threshold, errc::invalid_argument,
                  "secagg: fewer survivors than the threshold (or than two)");
  for (const auto& y : masked) TINYLARGE_CHECK(y.size() == sum.size(), errc::shape_mismatch, "secagg: masked length");
  auto rebuild = [](std::uint32_t owner, std::span<const std::pair<std::uint32_t, shamir_share>> all,
                    std::size_t t, std::uint64_t& secret) -> status {
    std::vector<shamir_share> mine;
    for (const auto& entry : all) {
      const shamir_share& sh = entry.second;
      if (entry.first == owner &&
          std::none_of(mine.begin(), mine.end(), [&](const shamir_share& m) { return m.holder == sh.holder; }))
        mine.push_back(sh);
    }
    TINYLARGE_CHECK(mine.size() >= t, errc::truncated, "secagg: not enough shares to rebuild a secret");
    mine.resize(t);
    secret = shamir_combine(mine);
    return status::success();
  };
  std::fill(sum.begin(), sum.end(), 0u);
  for (const auto& y : masked)
    for (std::size_t j = 0; j < sum.size(); ++j) sum[j] += y[j];
  for (const std::uint32_t i : survivors) {  // remove self masks
    std::uint64_t b = 0;
    TINYLARGE_TRY(rebuild(i, b_shares, threshold, b));
    apply_mask(sum, b, /*subtract=*/true);
  }
  for (const std::uint32_t d : dropped) {  // remove masks survivors share with dropped clients
    std::uint64_t sk = 0;
    TINYLARGE_TRY(rebuild(d, sk_shares, threshold, sk));
    for (const std::uint32_t i : survivors) {
      const auto it = std::find_if(participants.begin(), participants.end(),
                                   [&](const public_entry& p) { return p.id == i; });
      TINYLARGE_CHECK(it != participants.end(), errc::invalid_argument, "secagg: survivor without a public key");
      apply_mask(sum, agree(sk, it->public_key), /*subtract=*/i < d);
    }
  }
  return status::success();
}

}  // namespace tinylarge::secagg
