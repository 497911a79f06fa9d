/// @file workflow/federated_roles.hpp
/// @brief The FedAvg family written once, as the programs of its two roles:
///        the **server** (select clients, send the model, accept updates,
///        aggregate) and the **client** (train on the model, encode the
///        update). Drivers run them: `federated_averaging<Traits>`
///        (workflow/federated.hpp) in one process, zero copy — the
///        simulation — and `run_federated_server` / `run_federated_client`
///        (workflow/federated_deploy.hpp) over any `transport_policy`
///        (MPI, MQTT, `in_process` threads) — the deployments.
///
/// One round r of the protocol, as the roles see it:
///
///     server                                   client k (0-based id; endpoint k + 1)
///     m = begin_round(K)  ── model {r, seed_r, w_t} ──▶  out = computation.compute(k, m)
///     S = select(⌈C·K⌉) / select_poisson(C)              buffer.encode(out.weights)
///     accept(k, update, n_k)  ◀── update {r, n_k, U} ──
///     close_round(): aggregate in (wave, client id) order → w_{t+1}
///
/// With secure aggregation (aggregate/secure.hpp; linear policies only) the
/// server never holds an individual update; between the model and the
/// close, per round:
///
///     server                                        client k
///     begin_secure(settings)            ◀── keys {c_pk, s_pk}        (session.advertise)
///     close_roster: relay the roster    ── roster ──▶                session.share_keys
///     receive_shares / shares_for       ◀── sealed shares ── / ── boxes for k ──▶
///                                       ◀── masked {y_k} ──          fedavg_client::mask(Δ = w_k − w_t, n_k)
///     close_masked: survivors, dropped  ── unmask request ──▶        session.respond
///     close_round_secure: unmask Σ, mean = w_t + Σ n_k Δ_k / N, policy.apply
///
/// Determinism across transports: the client set of a round is drawn from
/// the server's own RNG stream (seeded by `seed`, saved in checkpoints); a
/// client's local randomness is `rng(seed_r, k + 1)` with
/// seed_r = `round_task_seed(seed, r)`, a function of (seed, round) that the
/// model message carries; updates are aggregated in client-id order (within
/// a selection wave), never in arrival order. So the same seeds give the
/// same bits in one process, over MPI and over MQTT.
///
/// What a client computes is a policy (`client_computation`): the FedAvg
/// family's ClientUpdate is `fedavg_training<Traits>` (workflow/federated.hpp,
/// `train_locally` with FedProx's proximal term); the transport tests use a
/// synthetic least-squares step. What goes on the wire is the update
/// encoding `U` (`fp32_update`, `fp16_update`, `int8_update`):
/// `update_buffer<U>` holds one encoded update and maps it to and from a
/// wire payload.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../aggregate/aggregator.hpp"
#include "../aggregate/policy.hpp"
#include "../aggregate/secure.hpp"
#include "../aggregate/update.hpp"
#include "../core/arch.hpp"
#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../precision/convert.hpp"
#include "../precision/fp16.hpp"
#include "../transport/wire.hpp"
#include "selection.hpp"

namespace tinylarge::workflow {

/// What one client's local training did.
struct local_training_result {
  double mean_loss = 0.0;        ///< mean training loss over all steps (weighted by batch size)
  std::size_t steps = 0;         ///< optimizer steps
  std::uint64_t samples = 0;     ///< samples processed (forward + backward)
};

/// The seed of round r's local randomness (client k draws from
/// `rng(round_task_seed(seed, r), k + 1)`): seed ⊕ (0x9e3779b97f4a7c15 · r).
constexpr std::uint64_t round_task_seed(std::uint64_t seed, std::uint32_t round) noexcept {
  return seed ^ (0x9e3779b97f4a7c15ULL * round);
}

/// The server → client message of one round.
struct model_message {
  std::uint32_t round = 0;          ///< 1, 2, …
  std::uint64_t task_seed = 0;      ///< `round_task_seed(seed, round)`
  std::span<const float> global{};  ///< w_t (fp32)
};

/// What a client computed from a model message.
struct client_output {
  std::span<float> weights{};        ///< the new parameters, in the computation's storage (valid until its next call)
  std::int64_t examples = 0;         ///< n_k, the weight of the update (> 0)
  local_training_result training{};  ///< loss and work, for the report
};

/// What a client computes: `compute(client, model)` returns its new
/// parameters (a view of its own storage) and its example count. Must be a
/// pure function of (client, round, task seed, global), so that a repeated
/// model (QoS 1 redelivery, a restarted server) is answered with the same bits.
template <class C>
concept client_computation = requires(C& c, std::uint64_t client, const model_message& m) {
  { c.compute(client, m) } -> std::same_as<client_output>;
};

// ---------------------------------------------------------------------------
// Encoded updates: one client's upload, in memory and on the wire
// ---------------------------------------------------------------------------

/// One client's update encoded as U, with its wire payload.
///
/// Wire layout (the `update` frame's payload; aux = n_k):
///  - fp32: dtype fp32, count P, the values little-endian;
///  - fp16: dtype fp16, count P, IEEE binary16 little-endian;
///  - int8: dtype bytes, count 4 + 4·⌈P/c⌉ + P: chunk size c (u32), the
///    ⌈P/c⌉ fp32 scales, then the P int8 values (symmetric, zero point 0).
template <update_encoding U>
struct update_buffer;

template <>
struct update_buffer<fp32_update> {
  std::vector<float> values;
  std::size_t length = 0;
  void encode(std::span<const float> w, std::size_t /*chunk*/) { values.assign(w.begin(), w.end()); length = w.size(); }
  fp32_update view() const { return {std::span<const float>(values.data(), length)}; }
  /// Bytes of an encoded update of P values (the upload the report counts).
  static std::uint64_t encoded_bytes(std::size_t p, std::size_t /*chunk*/) noexcept { return p * sizeof(float); }
  std::uint64_t bytes() const noexcept { return encoded_bytes(length, 0); }
  static constexpr wire::wire_dtype dtype = wire::wire_dtype::fp32;
  static std::size_t wire_count(std::size_t p, std::size_t /*chunk*/) noexcept { return p; }
  std::span<const std::uint8_t> payload() const noexcept {
    return {reinterpret_cast<const std::uint8_t*>(values.data()), length * sizeof(float)};
  }
  /// Reads a payload of P values (the header was checked by the caller);
  /// `non_finite` when a value is NaN or ±Inf.
  status read(std::span<const std::uint8_t> p, std::size_t n) {
    TINYLARGE_CHECK(p.size() == n * sizeof(float), errc::shape_mismatch, "fp32 update: wrong payload size");
    values.resize(n);
    length = n;
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) {
      values[i] = std::bit_cast<float>(wire::detail::wire_get32(p.data() + 4 * i));
      ok = ok && std::isfinite(values[i]);
    }
    TINYLARGE_CHECK(ok, errc::non_finite, "fp32 update: a NaN or infinite value");
    return status::success();
  }
};

template <>
struct update_buffer<fp16_update> {
  std::vector<half> values;
  std::size_t length = 0;
  void encode(std::span<const float> w, std::size_t /*chunk*/) {
    values.resize(w.size());
    convert(arch::best{}, w, std::span<half>(values));
    length = w.size();
  }
  fp16_update view() const { return {std::span<const half>(values.data(), length)}; }
  static std::uint64_t encoded_bytes(std::size_t p, std::size_t /*chunk*/) noexcept { return p * sizeof(half); }
  std::uint64_t bytes() const noexcept { return encoded_bytes(length, 0); }
  static constexpr wire::wire_dtype dtype = wire::wire_dtype::fp16;
  static std::size_t wire_count(std::size_t p, std::size_t /*chunk*/) noexcept { return p; }
  std::span<const std::uint8_t> payload() const noexcept {
    static_assert(std::endian::native == std::endian::little, "update_buffer: big-endian hosts are not supported");
    return {reinterpret_cast<const std::uint8_t*>(values.data()), length * sizeof(half)};
  }
  status read(std::span<const std::uint8_t> p, std::size_t n) {
    TINYLARGE_CHECK(p.size() == n * sizeof(half), errc::shape_mismatch, "fp16 update: wrong payload size");
    values.resize(n);
    length = n;
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) {
      values[i].bits = static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
      ok = ok && (values[i].bits & 0x7C00u) != 0x7C00u;  // exponent all ones: Inf or NaN
    }
    TINYLARGE_CHECK(ok, errc::non_finite, "fp16 update: a NaN or infinite value");
    return status::success();
  }
};

template <>
struct update_buffer<int8_update> {
  std::vector<std::int8_t> values;
  std::vector<float> scales;
  std::size_t length = 0;
  std::size_t chunk = 0;
  bool corrupt_scale = false;  ///< a non-finite attack on an int8 update (simulation): a NaN scale
  std::vector<std::uint8_t> wire_bytes;
  void encode(std::span<const float> w, std::size_t chunk_size) {
    chunk = chunk_size == 0 || chunk_size > w.size() ? std::max<std::size_t>(w.size(), 1) : chunk_size;
    values.resize(w.size());
    scales.resize((w.size() + chunk - 1) / chunk);
    // Non-finite values cannot be int8-encoded; encode the finite ones and corrupt a scale.
    std::vector<float> finite;
    std::span<const float> src = w;
    corrupt_scale = false;
    if (std::any_of(w.begin(), w.end(), [](float v) { return !std::isfinite(v); })) {
      finite.assign(w.begin(), w.end());
      for (float& v : finite) v = std::isfinite(v) ? v : 0.0f;
      src = finite;
      corrupt_scale = true;
    }
    encode_int8_update(src, chunk, values, scales);
    if (corrupt_scale && !scales.empty()) scales[0] = std::numeric_limits<float>::quiet_NaN();
    length = w.size();
  }
  int8_update view() const {
    return {std::span<const std::int8_t>(values.data(), length), std::span<const float>(scales), {}, chunk};
  }
  std::uint64_t bytes() const noexcept { return length + scales.size() * sizeof(float); }
  /// P int8 values and ⌈P/c⌉ fp32 scales (c = the chunk `encode` uses).
  static std::uint64_t encoded_bytes(std::size_t p, std::size_t chunk_size) noexcept {
    const std::size_t c = chunk_size == 0 || chunk_size > p ? std::max<std::size_t>(p, 1) : chunk_size;
    return p + sizeof(float) * ((p + c - 1) / c);
  }
  static constexpr wire::wire_dtype dtype = wire::wire_dtype::bytes;
  static std::size_t wire_count(std::size_t p, std::size_t chunk_size) noexcept {
    return static_cast<std::size_t>(4 + encoded_bytes(p, chunk_size));
  }
  std::span<const std::uint8_t> payload() {
    wire_bytes.resize(4 + 4 * scales.size() + length);
    wire::detail::wire_put32(wire_bytes.data(), static_cast<std::uint32_t>(chunk));
    for (std::size_t k = 0; k < scales.size(); ++k)
      wire::detail::wire_put32(wire_bytes.data() + 4 + 4 * k, std::bit_cast<std::uint32_t>(scales[k]));
    if (length != 0) std::memcpy(wire_bytes.data() + 4 + 4 * scales.size(), values.data(), length);
    return wire_bytes;
  }
  status read(std::span<const std::uint8_t> p, std::size_t n) {
    TINYLARGE_CHECK(p.size() >= 4, errc::shape_mismatch, "int8 update: payload shorter than its chunk size");
    const std::size_t c = wire::detail::wire_get32(p.data());
    TINYLARGE_CHECK(c >= 1 && c <= std::max<std::size_t>(n, 1), errc::shape_mismatch, "int8 update: bad chunk size");
    const std::size_t ns = (n + c - 1) / c;
    TINYLARGE_CHECK(p.size() == 4 + 4 * ns + n, errc::shape_mismatch, "int8 update: wrong payload size");
    chunk = c;
    length = n;
    scales.resize(ns);
    values.resize(n);
    for (std::size_t k = 0; k < ns; ++k) scales[k] = std::bit_cast<float>(wire::detail::wire_get32(p.data() + 4 + 4 * k));
    if (n != 0) std::memcpy(values.data(), p.data() + 4 + 4 * ns, n);
    TINYLARGE_CHECK(view().check_encoding().ok(), errc::non_finite, "int8 update: a scale is not finite and positive");
    return status::success();
  }
};

namespace detail {
/// m = max(⌈C·K⌉, 1), at most K.
inline std::size_t clients_per_round(double fraction, std::size_t k) {
  TINYLARGE_REQUIRE(fraction > 0.0 && fraction <= 1.0, errc::invalid_argument,
                    "federated: client_fraction C must be in (0, 1]");
  const auto m = static_cast<std::size_t>(std::ceil(fraction * static_cast<double>(k) - 1e-9));
  return std::clamp<std::size_t>(m, 1, k);
}
}  // namespace detail

// ---------------------------------------------------------------------------
// The server role
// ---------------------------------------------------------------------------

/// The server program of the FedAvg family, as a message-driven state
/// machine: `begin_round` → `select` (one or more waves) → `accept` per
/// update → `close_round`. It owns the global model w_t, the aggregation
/// policy with its state (`Policy`: FedAvg, FedAvgM, FedProx, FedAdam /
/// Yogi / Adagrad, the robust rules, the DP wrappers, …), the client
/// selection policy (`Selection`, workflow/selection.hpp) and the RNG that
/// draws the clients.
///
/// @tparam Policy    an `aggregation_policy`
/// @tparam U         the update encoding clients send (`update_encoding`)
/// @tparam Selection a `selection_policy` (default `uniform_selection`)
template <aggregation_policy Policy, update_encoding U = fp32_update, selection_policy Selection = uniform_selection>
class fedavg_server {
 public:
  using policy_type = Policy;
  using update_type = U;
  using selection_type = Selection;

  /// @param dimension parameters P of the model (w_t starts at zero: `set_global`)
  /// @param seed      the run seed: client draws (stream 0xfeda0001) and the round task seeds
  /// @param selection the client selection policy with its hyperparameters
  fedavg_server(const Policy& policy, std::size_t dimension, std::uint64_t seed, const Selection& selection = {})
      : agg_(policy, dimension), global_(dimension, 0.0f), rng_(seed, 0xfeda'0001ULL), seed_(seed),
        selection_(selection) {}

  std::span<float> global() noexcept { return global_; }
  std::span<const float> global() const noexcept { return global_; }
  /// @throws tl::shape_mismatch when `w` does not have P values.
  void set_global(std::span<const float> w) {
    TINYLARGE_REQUIRE(w.size() == global_.size(), errc::shape_mismatch, "fedavg_server::set_global: wrong number of parameters");
    std::copy(w.begin(), w.end(), global_.begin());
  }
  tinylarge::aggregator<Policy>& aggregation() noexcept { return agg_; }
  const tinylarge::aggregator<Policy>& aggregation() const noexcept { return agg_; }
  /// The RNG that draws the clients (and, in the simulation, its faults).
  rng& generator() noexcept { return rng_; }
  const rng& generator() const noexcept { return rng_; }
  std::uint64_t seed() const noexcept { return seed_; }
  const Selection& selection() const noexcept { return selection_; }
  std::size_t dimension() const noexcept { return global_.size(); }
  /// Rounds begun so far (the current round's number while one is open).
  std::uint32_t round() const noexcept { return round_; }
  /// Resume after `rounds` rounds (a checkpoint): the next round is rounds + 1.
  void set_round(std::uint32_t rounds) noexcept { round_ = rounds; }

  /// Opens round r = round() + 1 among `clients` clients (ids 0 … K−1) and
  /// returns the model message to send to the selected ones.
  model_message begin_round(std::size_t clients) {
    TINYLARGE_REQUIRE(clients > 0, errc::invalid_argument, "fedavg_server: no clients");
    ++round_;
    pool_.resize(clients);
    for (std::size_t i = 0; i < clients; ++i) pool_[i] = static_cast<std::uint32_t>(i);
    next_ = 0;
    waves_ = 0;
    pending_.clear();
    return {round_, round_task_seed(seed_, round_), std::span<const float>(global_)};
  }

  /// Up to `count` clients not yet asked this round, chosen by the
  /// selection policy (`uniform_selection`: without replacement, a partial
  /// Fisher–Yates over the K ids), in ascending id order: one wave.
  /// @param links every client's link and predicted cost this round, indexed
  ///        by id; required (K entries) when `Selection::needs_links`, else ignored
  /// @throws tl::invalid_argument when a link-aware policy gets no links, or
  ///         a policy picks more than it was asked for.
  std::vector<std::uint32_t> select(std::size_t count, std::span<const candidate_link> links = {}) {
    if constexpr (Selection::needs_links)
      TINYLARGE_REQUIRE(links.size() == pool_.size(), errc::invalid_argument,
                        std::string("fedavg_server::select: the selection policy ") + Selection::name() +
                            " needs every client's link this round (a wireless fleet: federated_options::wireless), "
                            "got " + std::to_string(links.size()) + " for " + std::to_string(pool_.size()) +
                            " clients");
    const std::span<std::uint32_t> rest(pool_.data() + next_, pool_.size() - next_);
    const std::size_t n = selection_.choose(rest, count, links, rng_);
    TINYLARGE_REQUIRE(n <= std::min(count, rest.size()), errc::invalid_argument,
                      std::string("fedavg_server::select: the selection policy ") + Selection::name() +
                          " chose more clients than asked for or available");
    std::vector<std::uint32_t> out(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(n));
    next_ += n;
    std::sort(out.begin(), out.end());
    ++waves_;
    return out;
  }

  /// Poisson sampling: each client independently with probability q (the
  /// sampling of client-level DP); no further waves this round.
  /// @throws tl::invalid_argument with a link-aware selection policy (it
  ///         chooses a fixed number of clients; Poisson sampling chooses none).
  std::vector<std::uint32_t> select_poisson(double q) {
    if constexpr (Selection::needs_links)
      TINYLARGE_RAISE(errc::invalid_argument,
                      std::string("fedavg_server::select_poisson: the selection policy ") + Selection::name() +
                          " picks clients by their links and cannot be combined with Poisson sampling");
    std::vector<std::uint32_t> out;
    for (std::size_t c = 0; c < pool_.size(); ++c)
      if (static_cast<double>(rng_.uniform()) < q) out.push_back(static_cast<std::uint32_t>(c));
    next_ = pool_.size();
    ++waves_;
    return out;
  }

  /// Takes one client's update of the open round (zero copy: the update's
  /// storage must stay valid until `close_round`). Validation (length,
  /// NaN / Inf, int8 metadata, duplicates) happens in `close_round`.
  void accept(std::uint64_t client, const U& update, std::int64_t examples) {
    pending_.push_back({waves_, client_result<U>{client, update, examples}});
  }
  /// Updates accepted so far this round.
  std::size_t accepted() const noexcept { return pending_.size(); }

#if TINYLARGE_SECAGG_HAS_SODIUM
  // ---- Secure aggregation (aggregate/secure.hpp): the server side ---------
  // With it, `accept` / `close_round` are not used: the clients' masked
  // inputs go to the round's `secure_session()`, and `close_round_secure`
  // unmasks their sum. Linear policies only (the server never sees an update).

  /// Opens the secure-aggregation session of the open round (after `begin_round`).
  secagg::server_session& begin_secure(const secagg::settings& s) {
    static_assert(linear_aggregation<Policy>,
                  "fedavg_server: secure aggregation needs a linear aggregation policy (fedavg, fedavgm, fedprox, "
                  "fedadam, fedyogi, fedadagrad): the server sees only the masked sum, and this Policy (robust "
                  "rule or DP wrapper) reads individual updates");
    secure_ = std::make_unique<secagg::server_session>(round_, s, global_.size());
    secure_fp_ = s.fp;
    return *secure_;
  }
  /// The open round's session (begin_secure first).
  /// @throws tl::invalid_argument when no secure session is open.
  secagg::server_session& secure_session() {
    TINYLARGE_REQUIRE(secure_ != nullptr, errc::invalid_argument, "fedavg_server: no secure-aggregation session open");
    return *secure_;
  }

  /// Closes a secure round: unmasks the survivors' sum (their responses
  /// received), decodes the FedAvg mean w_t + Σ n_k Δ_k / N and applies the
  /// policy to it. `failed` (not ok) ends the round without an update (a
  /// protocol step already failed: too few clients, …). The report lists
  /// the survivors as accepted; w_t is unchanged on any failure, and when
  /// fewer survivors than the policy's `min_clients()`.
  round_report close_round_secure(status failed = status::success()) {
    round_report rep;
    rep.round = round_;
    pending_.clear();
    if (secure_ == nullptr) {
      rep.outcome = status{errc::invalid_argument, "fedavg_server: no secure-aggregation session open"};
      return rep;
    }
    rep.outcome = failed;
    if (rep.outcome.ok()) {
      for (const std::uint32_t c : secure_->request().survivors) rep.accepted.push_back(c);
      rep.outcome = rep.accepted.size() >= agg_.policy().min_clients()
                        ? status::success()
                        : status{errc::invalid_argument, "aggregation round: fewer survivors than the policy's min_clients()"};
    }
    if (rep.outcome.ok()) {
      secure_sum_.assign(global_.size() + 1, 0u);
      rep.outcome = secure_->unmask(secure_sum_);
    }
    if (rep.outcome.ok()) {
      secure_mean_.resize(global_.size());
      rep.outcome = secagg::decode_mean(secure_sum_, global_, secure_fp_, secure_mean_);
    }
    if (rep.outcome.ok())
      agg_.policy().apply(agg_.state(), std::span<float>(global_), std::span<const float>(secure_mean_));
    secure_.reset();
    return rep;
  }
#endif

  /// Aggregates the accepted updates — ordered by (selection wave, client
  /// id), never by arrival — into w_{t+1} through `aggregator::round`
  /// (which rejects bad updates with a reason, and leaves w_t unchanged when
  /// fewer than the policy's `min_clients()` remain).
  round_report close_round() {
    std::stable_sort(pending_.begin(), pending_.end(), [](const entry& a, const entry& b) {
      return a.wave != b.wave ? a.wave < b.wave : a.result.client_id < b.result.client_id;
    });
    results_.clear();
    results_.reserve(pending_.size());
    for (const entry& e : pending_) results_.push_back(e.result);
    pending_.clear();
    return agg_.round(std::span<float>(global_), std::span<const client_result<U>>(results_));
  }

 private:
  struct entry {
    std::size_t wave = 0;
    client_result<U> result;
  };
  tinylarge::aggregator<Policy> agg_;
  std::vector<float> global_;
  rng rng_;
  std::uint64_t seed_ = 0;
  Selection selection_;
  std::uint32_t round_ = 0;
  std::vector<std::uint32_t> pool_;
  std::size_t next_ = 0;
  std::size_t waves_ = 0;
  std::vector<entry> pending_;
  std::vector<client_result<U>> results_;
#if TINYLARGE_SECAGG_HAS_SODIUM
  std::unique_ptr<secagg::server_session> secure_;
  secagg::fixed_point secure_fp_{};
  std::vector<std::uint32_t> secure_sum_;
  std::vector<float> secure_mean_;
#endif
};

// ---------------------------------------------------------------------------
// The client role
// ---------------------------------------------------------------------------

/// The client program of the FedAvg family: on a model message, run the
/// computation (local training) and encode its result as U.
///
/// @tparam C a `client_computation` (`fedavg_training<Traits>` for a model)
/// @tparam U the update encoding sent to the server
template <client_computation C, update_encoding U = fp32_update>
class fedavg_client {
 public:
  using update_type = U;

  /// @param int8_chunk values per scale of int8 updates
  explicit fedavg_client(C& computation, std::size_t int8_chunk = 256) : comp_(&computation), chunk_(int8_chunk) {}

  C& computation() noexcept { return *comp_; }
  std::size_t int8_chunk() const noexcept { return chunk_; }

  /// Step 1: local training on the model (the result stays in the
  /// computation's storage; a simulation may tamper with it here).
  client_output train(std::uint64_t client, const model_message& m) { return comp_->compute(client, m); }
  /// Step 2: the update to send, encoded into `out`.
  void encode(std::span<const float> weights, update_buffer<U>& out) const { out.encode(weights, chunk_); }
  /// Both steps: the client's answer to `m`, encoded into `out`.
  client_output on_model(std::uint64_t client, const model_message& m, update_buffer<U>& out) {
    client_output o = train(client, m);
    encode(o.weights, out);
    return o;
  }

#if TINYLARGE_SECAGG_HAS_SODIUM
  /// Secure aggregation, step 2: the masked input of this client's update
  /// Δ = w − w_t (its trained weights `o` minus the round's model `m`) and
  /// its example count, in `out` (P + 1 lanes), with the round's `session`
  /// (keys shared in step 1). See aggregate/secure.hpp.
  [[nodiscard]] status mask(const secagg::client_session& session, const client_output& o, const model_message& m,
                            std::vector<std::uint32_t>& out) {
    TINYLARGE_CHECK(o.weights.size() == m.global.size(), errc::shape_mismatch,
                    "fedavg_client::mask: the update and the model differ in size");
    delta_.resize(o.weights.size());
    for (std::size_t i = 0; i < delta_.size(); ++i) delta_[i] = o.weights[i] - m.global[i];
    out.resize(secagg::client_session::lanes(delta_.size()));
    return session.mask(delta_, o.examples, out);
  }
#endif

 private:
  C* comp_;
  std::size_t chunk_;
  std::vector<float> delta_;
};

}  // namespace tinylarge::workflow
