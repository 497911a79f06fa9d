// Fault injection for the serial-link tests (scripts/mcu_serial.sh, scripts/mcu_fleet.sh):
// a byte_port (transport/serial.hpp) over a file descriptor that drops, flips or follows
// with garbage each byte it writes and reads with probability rate / denominator (a
// seeded generator), and counts what it did. Used by scripts/mcu_serial.sh,
// scripts/mcu_fleet.sh and scripts/mcu_split.sh. Test code, not part of the library.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "tinylarge/core/rng.hpp"
#include "tinylarge/transport/serial.hpp"

namespace tl_test {

namespace tl = tinylarge;

/// An fd_port that damages the bytes it writes and reads (the test's fault injection).
struct lossy_port {
  tl::serial::fd_port fd;
  tl::rng g;
  std::uint32_t rate;                ///< damaged bytes per `denominator`
  std::uint32_t denominator = 1000;  ///< 1000: per mille; 100000: per 100 000 (KB-sized frames)
  std::uint64_t dropped = 0, flipped = 0, garbage = 0;

  /// 0: keep, 1: drop, 2: flip a bit, 3: keep and add garbage after it.
  int fate() {
    if (rate == 0 || g.uniform_int(denominator) >= rate) return 0;
    return 1 + static_cast<int>(g.uniform_int(3));
  }
  void damage(std::span<const std::uint8_t> in, std::vector<std::uint8_t>& out) {
    out.clear();
    for (const std::uint8_t b : in) {
      switch (fate()) {
        case 0: out.push_back(b); break;
        case 1: ++dropped; break;
        case 2: ++flipped; out.push_back(static_cast<std::uint8_t>(b ^ (1u << g.uniform_int(8)))); break;
        default:
          ++garbage;
          out.push_back(b);
          for (int k = 0; k < 3; ++k) out.push_back(static_cast<std::uint8_t>(g.next_u32()));
      }
    }
  }
  tl::status write(std::span<const std::uint8_t> out) {
    std::vector<std::uint8_t> d;
    damage(out, d);
    return fd.write(d);
  }
  tl::status read(std::span<std::uint8_t> in, std::size_t& got) {
    std::uint8_t raw[16];  // at most in.size() / 4 (and 16) read: room for the garbage bytes added
    std::size_t n = 0;
    const std::size_t want = in.size() < 4 ? in.size() : in.size() / 4;
    TINYLARGE_TRY(fd.read(std::span<std::uint8_t>(raw, want < 16 ? want : 16), n));
    std::vector<std::uint8_t> d;
    damage(std::span<const std::uint8_t>(raw, n), d);
    got = d.size();
    std::memcpy(in.data(), d.data(), d.size());
    return tl::status::success();
  }
};

}  // namespace tl_test
