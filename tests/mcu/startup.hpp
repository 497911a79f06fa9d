// Bare-metal start-up and ARM semihosting for the QEMU mps2 boards.
// Used by the Cortex-M test and example programs; not part of the library.
#pragma once

#include <cstdint>

namespace tl_mcu {

/// ARM semihosting call (BKPT 0xAB in Thumb state).
inline int semihost(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

/// Print a NUL-terminated string (SYS_WRITE0).
inline void puts(const char* s) { semihost(0x04, s); }

/// Print a signed integer in decimal.
inline void put_int(long v) {
  char buf[24];
  int i = 22;
  buf[23] = '\0';
  const bool neg = v < 0;
  unsigned long u = neg ? 0ul - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
  do {
    buf[i--] = static_cast<char>('0' + (u % 10));
    u /= 10;
  } while (u != 0 && i > 0);
  if (neg) buf[i--] = '-';
  puts(&buf[i + 1]);
}

/// Print " name value" (a counter in a firmware's closing report).
inline void put_stat(const char* name, unsigned long long v) {
  puts(" ");
  puts(name);
  puts(" ");
  put_int(static_cast<long>(v));
}

/// The serial link's counters (`serial::link_stats`) in a firmware's closing report.
template <class LinkStats>
inline void put_link_stats(const LinkStats& st) {
  put_stat("delivered", st.delivered);
  put_stat("sent", st.frames_sent);
  put_stat("retransmissions", st.retransmissions);
  put_stat("duplicates", st.duplicates);
  put_stat("corrupt", st.corrupt);
  put_stat("oversized", st.oversized);
  put_stat("stale_acks", st.stale_acks);
}

/// End the emulation with an exit code (SYS_EXIT_EXTENDED, ADP_Stopped_ApplicationExit).
[[noreturn]] inline void exit(int code) {
  const std::uint32_t block[2] = {0x20026u, static_cast<std::uint32_t>(code)};
  semihost(0x20, block);
  for (;;) {
  }
}

}  // namespace tl_mcu
