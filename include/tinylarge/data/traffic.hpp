/// @file data/traffic.hpp
/// @brief A tabular networking task: flow-level traffic classification with a
///        domain shift between two networks, generated from packet-level
///        simulations of six application types.
///
/// Each sample is one **flow**, observed at the client for its first
/// `traffic_options::max_packets` packets or `window_ms` milliseconds (the
/// early-classification setting of traffic classifiers), and summarised in
/// `traffic_features` numbers; its label is the application type that made it
/// (`traffic_class`). A flow is simulated in two stages:
///
/// 1. **The application** emits messages (direction, bytes, time). Per class,
///    with per-flow parameters drawn around the stated medians:
///
/// | class | transport | what it sends |
/// |---|---|---|
/// | `web` | TCP or QUIC (UDP), ½ each | 1 + ⌊Exp(mean 5)⌋ objects: a 300–900 B request, then a response of lognormal size (median 15 KB, σ 1.2; one in ten a large object, median 1 MB, σ 1); the next request one RTT plus an Exp(150 ms) think time later |
/// | `video` | TCP ⅗, QUIC ⅖ | adaptive streaming: a manifest (400 B request, 2–12 KB response), then a 400 B request every 2 s for a 2-s chunk; the bitrate ramps from 0.3 Mbit/s, doubling per chunk, up to the flow's rate (lognormal, median 2.5 Mbit/s, σ 0.5) |
/// | `voip` | UDP | a codec frame (33, 60 or 160 B, per flow) every 20 ms each way during talk spurts (Exp(1.2 s) on, Exp(0.8 s) off; silence sends a comfort-noise frame every 160 ms) |
/// | `bulk` | TCP | one 200–600 B request, then one object of lognormal size (median 5 MB, σ 1) |
/// | `gaming` | UDP | client updates of 60–160 B every 15–50 ms (per flow); server snapshots of lognormal size (median 250 B, σ 0.5) every 16.7, 33 or 50 ms |
/// | `iot` | TCP (MQTT) ⅞, UDP (CoAP) ⅛ (per flow: 70 % / 30 %) | a 40–300 B telemetry message every lognormal(median 2 s, σ 0.8) seconds; TCP: a 4-byte acknowledgement back |
///
/// 2. **The network** (`traffic_domain`) carries them: messages are segmented
///    into packets of at most `mtu` bytes (40 B of TCP/IP or 28 B of UDP/IP
///    headers each); each direction is a FIFO bottleneck of the domain's rate,
///    shared with cross traffic of a load ρ ~ U(0, 0.8) drawn per flow (the
///    flow gets (1 − ρ) of the rate: a packet departs when the link is free
///    and takes size·8/((1 − ρ)·rate)); a packet reaches the other end after
///    the one-way delay `rtt/2` plus |N(0, jitter²)| plus a queueing wait
///    Exp(mean ρ/(1 − ρ)·`queue_ms`); a response leaves the server `rtt/2` after its request
///    arrived; a TCP receiver acknowledges every second data segment (52 B);
///    a lost packet (probability `loss`) is, on TCP, seen again after a
///    retransmission timeout of max(200 ms, 3·rtt), and on UDP not at all if it
///    was a downlink packet (an uplink packet is seen at the client before it
///    is lost).
///
/// Features (all finite, O(1); `traffic_feature_name`): packet count, duration,
/// downlink share of packets and bytes, mean / std / uplink-mean / downlink-mean
/// packet size, shares of small (≤ 100 B) and large (≥ 1200 B) packets, mean and
/// maximum inter-arrival time, its coefficient of variation, the share of
/// back-to-back arrivals (< 1 ms), throughput, and whether the flow is UDP.
/// Sizes are divided by 1500; times and counts enter as log1p(·)/10.
///
/// **Domains.** `campus_wired()` (the source: 1500 B MTU, 8 ms RTT, 0.3 ms
/// jitter, 1 ms queueing scale, 0.05 % loss, 100/100 Mbit/s, balanced
/// classes) and `cellular_edge()` (the target: 1400 B MTU — tunnel overhead —,
/// 45 ms RTT, 8 ms jitter, 15 ms queueing scale — buffer bloat —, 2 % loss,
/// 10 Mbit/s up / 40 Mbit/s down, a video- and IoT-heavy mix: priors 0.8, 1.6,
/// 0.7, 0.5, 0.8, 1.6 for web … iot). The same applications look different through the two
/// networks (jitter blurs VoIP's 20-ms clock, the smaller MTU moves the large
/// packets, loss adds retransmissions, the slower links stretch bursts): a
/// covariate shift plus a label-prior shift, the situation transfer learning
/// addresses. These are stated, plausible settings, not measurements of a
/// real network; the task is a reproducible benchmark, not a traffic model.
///
/// Determinism: all randomness comes from `tl::rng` (seed, stream = flow
/// index), so a seed gives the same data set on one platform; `std::log` /
/// `exp` / `sqrt` / `cos` are used, so a different libm may change the last
/// bits of a feature. Host profile (uses `std::vector`); errors are
/// `tl::invalid_argument`.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace tinylarge::data {

/// The application types of the traffic task (the labels).
enum class traffic_class : std::uint8_t { web = 0, video, voip, bulk, gaming, iot };
/// Number of classes of the traffic task.
inline constexpr std::size_t traffic_classes = 6;
/// Features per flow.
inline constexpr std::size_t traffic_features = 16;

/// Name of class `c` (`"web"`, …); `"?"` out of range.
inline const char* traffic_class_name(std::size_t c) noexcept {
  constexpr const char* names[traffic_classes] = {"web", "video", "voip", "bulk", "gaming", "iot"};
  return c < traffic_classes ? names[c] : "?";
}

/// Name of feature `f` (`"log_packets"`, …); `"?"` out of range.
inline const char* traffic_feature_name(std::size_t f) noexcept {
  constexpr const char* names[traffic_features] = {
      "log_packets",      "log_duration_ms", "down_packet_share", "down_byte_share",
      "mean_size",        "std_size",        "mean_up_size",      "mean_down_size",
      "small_share",      "large_share",     "log_mean_iat_ms",   "log_max_iat_ms",
      "log1p_iat_cv",     "back_to_back",    "log_bytes_per_ms",  "udp"};
  return f < traffic_features ? names[f] : "?";
}

/// A network that carries the flows (see the file comment).
struct traffic_domain {
  std::string name = "custom";
  double mtu = 1500;            ///< bytes per packet at most (≥ 128)
  double rtt_ms = 10;           ///< round-trip time
  double jitter_ms = 0.5;       ///< σ of the added one-way delay |N(0, σ²)|
  double queue_ms = 1;          ///< queueing-delay scale of the cross traffic (see the file comment)
  double loss = 0.001;          ///< packet loss probability in [0, 0.5]
  double up_mbps = 100;         ///< uplink bottleneck rate
  double down_mbps = 100;       ///< downlink bottleneck rate
  std::array<double, traffic_classes> priors{1, 1, 1, 1, 1, 1};  ///< class mix (relative weights)
};

/// The source domain: a wired campus network, balanced classes.
inline traffic_domain campus_wired() {
  return {"campus_wired", 1500, 8, 0.3, 1, 0.0005, 100, 100, {1, 1, 1, 1, 1, 1}};
}

/// The target domain: a cellular access behind an edge (smaller MTU, longer
/// and jittery delays, loss, slower links), video- and IoT-heavy.
inline traffic_domain cellular_edge() {
  return {"cellular_edge", 1400, 45, 8, 15, 0.02, 10, 40, {0.8, 1.6, 0.7, 0.5, 0.8, 1.6}};
}

/// What `generate_traffic` produces.
struct traffic_options {
  std::size_t flows = 1000;        ///< samples
  std::size_t max_packets = 32;    ///< packets observed per flow at most (early classification)
  double window_ms = 10000;        ///< observation window per flow
  std::uint64_t seed = 1;          ///< data-set seed (flow i uses stream i)
};

/// A generated traffic data set: `count` rows of `traffic_features` floats.
struct traffic_set {
  std::vector<float> x;             ///< count × traffic_features, row-major
  std::vector<std::uint8_t> y;      ///< count labels (`traffic_class`)
  std::size_t count = 0;            ///< flows
  static constexpr std::size_t features = traffic_features;
};

namespace detail {

struct traffic_packet {
  double t;       // observed at the client, ms
  double size;    // bytes on the wire
  bool down;      // server → client
};

struct traffic_message {
  double t;       // handed to the network at the sender, ms
  double bytes;   // application payload
  bool down;
};

inline double traffic_exp(rng& g, double mean) {
  return -mean * std::log(1.0 - static_cast<double>(g.uniform()) * 0.999999);
}
inline double traffic_lognormal(rng& g, double median, double sigma) {
  return median * std::exp(sigma * static_cast<double>(g.normal()));
}
inline double traffic_uniform(rng& g, double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(g.uniform());
}

/// The application's messages of one flow of class `c` within `window` ms
/// (requests from the client; the responses' send times are set by the
/// network stage from `reply_to`). Returns whether the flow is UDP.
/// `reply[i]` ≥ 0 marks message i as the response to message reply[i].
inline bool traffic_application(traffic_class c, rng& g, double window, double rtt, std::vector<traffic_message>& m,
                                std::vector<long>& reply) {
  auto add = [&](double t, double bytes, bool down, long to = -1) {
    m.push_back({t, bytes, down});
    reply.push_back(to);
  };
  switch (c) {
    case traffic_class::web: {
      const bool udp = g.uniform() < 0.5f;
      double t = 0;
      const std::size_t objects = 1 + static_cast<std::size_t>(traffic_exp(g, 5.0));
      for (std::size_t o = 0; o < objects && t < window; ++o) {
        add(t, traffic_uniform(g, 300, 900), false);
        const long req = static_cast<long>(m.size()) - 1;
        const bool large = g.uniform() < 0.1f;  // a download or a large image
        add(0, std::min(large ? traffic_lognormal(g, 1e6, 1.0) : traffic_lognormal(g, 15000, 1.2), 2e7), true, req);
        t += rtt + traffic_exp(g, 150);
      }
      return udp;
    }
    case traffic_class::video: {
      const bool udp = g.uniform() < 0.4f;
      const double rate = traffic_lognormal(g, 2.5, 0.5);  // Mbit/s
      double chunk_rate = 0.3;
      add(0, 400, false);  // the manifest
      add(0, traffic_uniform(g, 2000, 12000), true, 0);
      for (double t = rtt + traffic_exp(g, 50); t < window; t += 2000) {
        add(t, 400, false);
        const long req = static_cast<long>(m.size()) - 1;
        add(0, std::min(chunk_rate, rate) * 2000.0 * 1000.0 / 8.0, true, req);
        chunk_rate *= 2;
      }
      return udp;
    }
    case traffic_class::voip: {
      const double frames[3] = {33, 60, 160};
      const double frame = frames[g.uniform_int(3)];
      bool talking = g.uniform() < 0.5f;
      double t = 0;
      while (t < window) {
        const double spurt = traffic_exp(g, talking ? 1200 : 800);
        const double step = talking ? 20 : 160;
        for (double u = 0; u < spurt && t + u < window; u += step) {
          add(t + u, talking ? frame : 6, false);
          add(t + u + traffic_uniform(g, 0, 2), talking ? frame : 6, true);
        }
        t += spurt;
        talking = !talking;
      }
      return true;
    }
    case traffic_class::bulk: {
      add(0, traffic_uniform(g, 200, 600), false);
      add(0, traffic_lognormal(g, 5e6, 1.0), true, 0);
      return false;
    }
    case traffic_class::gaming: {
      const double up_tick = traffic_uniform(g, 15, 50);
      const double ticks[3] = {1000.0 / 60.0, 1000.0 / 30.0, 50};
      const double down_tick = ticks[g.uniform_int(3)];
      for (double t = 0; t < window; t += up_tick) add(t, traffic_uniform(g, 60, 160), false);
      for (double t = down_tick * static_cast<double>(g.uniform()); t < window; t += down_tick)
        add(t, traffic_lognormal(g, 250, 0.5), true);
      return true;
    }
    case traffic_class::iot: {
      const bool udp = g.uniform() < 0.125f;
      const double period = traffic_lognormal(g, 2000, 0.8);
      for (double t = traffic_uniform(g, 0, 200); t < window; t += period * traffic_uniform(g, 0.9, 1.1)) {
        add(t, traffic_uniform(g, 40, 300), false);
        if (!udp) add(0, 4, true, static_cast<long>(m.size()) - 1);
      }
      return udp;
    }
  }
  return false;
}

/// The network stage: segmentation, bottleneck queues, delay, jitter, loss,
/// TCP acknowledgements and retransmissions; packets as the client sees them.
/// The uplink is carried first (the requests' arrival times at the server fix
/// the responses' send times), then the downlink; each direction carries at
/// most 3·max_packets packets (a 5-MB download is not segmented to its end:
/// only the first max_packets packets of the flow are kept).
inline void traffic_network(const std::vector<traffic_message>& m, const std::vector<long>& reply, bool udp,
                            const traffic_domain& d, const traffic_options& o, rng& g, std::vector<traffic_packet>& out) {
  const double header = udp ? 28 : 40, payload = d.mtu - header;
  const double rto = std::max(200.0, 3 * d.rtt_ms);
  const std::size_t budget = 3 * o.max_packets;
  // Cross traffic: the flow shares each bottleneck with a load rho ~ U(0, 0.8): it gets
  // (1 - rho) of the rate and every packet waits an extra Exp(rho / (1 - rho) · queue_ms).
  const double rho = 0.8 * static_cast<double>(g.uniform());
  const double share = 1 - rho, wait = rho / (1 - rho) * d.queue_ms;
  auto jitter = [&] { return std::abs(static_cast<double>(g.normal())) * d.jitter_ms + traffic_exp(g, wait); };
  std::vector<double> done(m.size(), 0.0);  // when message i has fully arrived at its receiver
  std::vector<std::size_t> order;
  std::vector<double> send(m.size(), 0.0);
  for (const bool down : {false, true}) {
    order.clear();
    for (std::size_t i = 0; i < m.size(); ++i) {
      if (m[i].down != down) continue;
      send[i] = reply[i] >= 0 ? done[static_cast<std::size_t>(reply[i])] + d.rtt_ms / 2 : m[i].t;
      order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return send[a] < send[b]; });
    const double rate = share * (down ? d.down_mbps : d.up_mbps) * 1000.0 / 8.0;  // bytes per ms
    double link = 0;
    std::size_t carried = 0, unacked = 0;
    for (const std::size_t i : order) {
      if (send[i] > o.window_ms || carried >= budget) break;
      double left = m[i].bytes;
      do {
        const double size = std::min(left, payload) + header;
        left -= size - header;
        const double depart = std::max(send[i], link);
        link = depart + size / rate;
        const double arrive = link + d.rtt_ms / 2 + jitter();  // at the receiver
        // Seen at the client: an uplink packet when it leaves, a downlink one when it arrives.
        const double seen = down ? arrive : depart;
        const bool lost = g.uniform() < static_cast<float>(d.loss);
        if (!lost || !down) out.push_back({seen, size, down});
        if (lost && !udp) out.push_back({seen + rto, size, down});  // the retransmission
        done[i] = lost && !udp ? arrive + rto : arrive;
        ++carried;
        if (!udp && ++unacked == 2) {  // the receiver acknowledges every second segment
          unacked = 0;
          out.push_back({down ? arrive : arrive + d.rtt_ms / 2 + jitter(), 52, !down});
        }
      } while (left > 0 && carried < budget);
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const traffic_packet& a, const traffic_packet& b) { return a.t < b.t; });
  const double start = out.empty() ? 0 : out.front().t;
  std::size_t keep = 0;
  while (keep < out.size() && keep < o.max_packets && out[keep].t - start <= o.window_ms) ++keep;
  out.resize(keep);
}

/// The `traffic_features` numbers of one flow's packets.
inline void traffic_summary(const std::vector<traffic_packet>& p, bool udp, float* f) {
  const double n = static_cast<double>(p.size());
  double bytes = 0, down_bytes = 0, down_n = 0, up_bytes = 0, small = 0, large = 0, sq = 0;
  for (const auto& q : p) {
    bytes += q.size;
    sq += q.size * q.size;
    if (q.down) {
      down_bytes += q.size;
      ++down_n;
    } else {
      up_bytes += q.size;
    }
    small += q.size <= 100 ? 1 : 0;
    large += q.size >= 1200 ? 1 : 0;
  }
  const double mean = n > 0 ? bytes / n : 0;
  const double var = n > 0 ? std::max(0.0, sq / n - mean * mean) : 0;
  const double duration = n > 1 ? p.back().t - p.front().t : 0;
  double iat_sum = 0, iat_sq = 0, iat_max = 0, b2b = 0;
  for (std::size_t i = 1; i < p.size(); ++i) {
    const double d = p[i].t - p[i - 1].t;
    iat_sum += d;
    iat_sq += d * d;
    iat_max = std::max(iat_max, d);
    b2b += d < 1.0 ? 1 : 0;
  }
  const double gaps = n > 1 ? n - 1 : 1;
  const double iat_mean = iat_sum / gaps;
  const double iat_sd = std::sqrt(std::max(0.0, iat_sq / gaps - iat_mean * iat_mean));
  const double cv = iat_mean > 0 ? iat_sd / iat_mean : 0;
  const double up_n = n - down_n;
  const double v[traffic_features] = {
      std::log1p(n) / 10,
      std::log1p(duration) / 10,
      n > 0 ? down_n / n : 0,
      bytes > 0 ? down_bytes / bytes : 0,
      mean / 1500,
      std::sqrt(var) / 1500,
      up_n > 0 ? up_bytes / up_n / 1500 : 0,
      down_n > 0 ? down_bytes / down_n / 1500 : 0,
      n > 0 ? small / n : 0,
      n > 0 ? large / n : 0,
      std::log1p(iat_mean) / 10,
      std::log1p(iat_max) / 10,
      std::log1p(cv),
      n > 1 ? b2b / gaps : 0,
      std::log1p(duration > 0 ? bytes / duration : 0) / 10,
      udp ? 1.0 : 0.0};
  for (std::size_t i = 0; i < traffic_features; ++i) f[i] = static_cast<float>(v[i]);
}

}  // namespace detail

/// Generates `o.flows` flows seen through `domain` (see the file comment):
/// classes drawn from `domain.priors`, flow i from `rng(o.seed, i)`.
/// @throws tl::invalid_argument on a domain or options outside their ranges.
inline traffic_set generate_traffic(const traffic_domain& domain, const traffic_options& o) {
  const bool finite = std::isfinite(domain.mtu) && std::isfinite(domain.rtt_ms) && std::isfinite(domain.jitter_ms) &&
                      std::isfinite(domain.queue_ms) && std::isfinite(domain.loss) && std::isfinite(domain.up_mbps) &&
                      std::isfinite(domain.down_mbps);
  TINYLARGE_REQUIRE(finite && domain.mtu >= 128 && domain.rtt_ms >= 0 && domain.jitter_ms >= 0 && domain.queue_ms >= 0 &&
                        domain.loss >= 0 && domain.loss <= 0.5 && domain.up_mbps > 0 && domain.down_mbps > 0,
                    errc::invalid_argument,
                    "data::generate_traffic: the domain needs finite values, mtu >= 128, rtt, jitter, queue >= 0, loss "
                    "in [0, 0.5] and positive link rates");
  double prior_sum = 0;
  bool priors_ok = true;
  for (const double p : domain.priors) {
    priors_ok = priors_ok && std::isfinite(p) && p >= 0;
    prior_sum += p;
  }
  TINYLARGE_REQUIRE(priors_ok && prior_sum > 0, errc::invalid_argument,
                    "data::generate_traffic: the class priors must be finite, >= 0 and not all 0");
  TINYLARGE_REQUIRE(o.max_packets >= 2 && std::isfinite(o.window_ms) && o.window_ms > 0, errc::invalid_argument,
                    "data::generate_traffic: max_packets must be >= 2 and window_ms finite and > 0");
  traffic_set s;
  s.count = o.flows;
  s.x.resize(o.flows * traffic_features);
  s.y.resize(o.flows);
  std::vector<detail::traffic_message> m;
  std::vector<long> reply;
  std::vector<detail::traffic_packet> p;
  for (std::size_t i = 0; i < o.flows; ++i) {
    rng g(o.seed, i);
    double u = static_cast<double>(g.uniform()) * prior_sum;
    std::size_t c = 0;
    while (c + 1 < traffic_classes && u >= domain.priors[c]) u -= domain.priors[c++];
    while (domain.priors[c] == 0) --c;  // u landed on the rounding edge of a zero-weight tail
    m.clear();
    reply.clear();
    p.clear();
    const bool udp = detail::traffic_application(static_cast<traffic_class>(c), g, o.window_ms, domain.rtt_ms, m, reply);
    detail::traffic_network(m, reply, udp, domain, o, g, p);
    detail::traffic_summary(p, udp, s.x.data() + i * traffic_features);
    s.y[i] = static_cast<std::uint8_t>(c);
  }
  return s;
}

}  // namespace tinylarge::data
