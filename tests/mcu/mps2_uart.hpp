// The MPS2 boards' CMSDK APB UART0 as a `tl::serial::byte_port` and SysTick as a
// `tl::serial::ms_clock`, for firmware that speaks transport/serial.hpp
// (tests/mcu/serial_device.cpp, tests/mcu/split_device.cpp). Not part of the library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "tinylarge/core/error.hpp"

namespace tl_mcu {

/// CMSDK APB UART0 of the MPS2 boards, polled.
struct uart_port {
  static constexpr std::uintptr_t base = 0x40004000u;
  static volatile std::uint32_t& reg(std::uintptr_t off) {
    return *reinterpret_cast<volatile std::uint32_t*>(base + off);
  }
  static constexpr std::uint32_t data = 0x00, state = 0x04, ctrl = 0x08, bauddiv = 0x10;
  static constexpr std::uint32_t tx_full = 1u, rx_full = 2u;

  void init() {
    reg(bauddiv) = 16;  // the smallest legal divider
    reg(ctrl) = 0x3u;   // TX and RX enabled, no interrupts
  }
  tinylarge::status write(std::span<const std::uint8_t> out) {
    for (const std::uint8_t b : out) {
      while ((reg(state) & tx_full) != 0) {
      }
      reg(data) = b;
    }
    return tinylarge::status::success();
  }
  tinylarge::status read(std::span<std::uint8_t> in, std::size_t& got) {
    got = 0;
    while (got < in.size() && (reg(state) & rx_full) != 0) in[got++] = static_cast<std::uint8_t>(reg(data));
    return tinylarge::status::success();
  }
};

/// Milliseconds from SysTick, free-running on the 25 MHz processor clock of the MPS2
/// boards: the 24-bit counter is read often (every loop of the link), so its wraps
/// (every 0.67 s) are accumulated.
struct systick_clock {
  static volatile std::uint32_t& reg(std::uintptr_t a) { return *reinterpret_cast<volatile std::uint32_t*>(a); }
  static constexpr std::uintptr_t csr = 0xE000E010u, rvr = 0xE000E014u, cvr = 0xE000E018u;
  static constexpr std::uint32_t ticks_per_ms = 25000;
  std::uint32_t last = 0;
  std::uint64_t ticks = 0;

  void init() {
    reg(rvr) = 0xFFFFFFu;
    reg(cvr) = 0;
    reg(csr) = 0x5u;  // enabled, processor clock, no interrupt
    last = reg(cvr);
  }
  std::uint32_t now_ms() {
    const std::uint32_t cur = reg(cvr) & 0xFFFFFFu;
    ticks += (last - cur) & 0xFFFFFFu;  // a down counter
    last = cur;
    return static_cast<std::uint32_t>(ticks / ticks_per_ms);
  }
};

}  // namespace tl_mcu
