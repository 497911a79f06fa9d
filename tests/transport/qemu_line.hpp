// The host end of a QEMU UART for the serial-link tests (scripts/mcu_serial.sh,
// scripts/mcu_fleet.sh, scripts/mcu_split.sh): listen on 127.0.0.1 on a port the system
// picks, publish it in a file for the script (written whole, then renamed), and accept
// QEMU's connection (`-serial tcp:127.0.0.1:PORT`) within a deadline. Test code, not part
// of the library.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>

namespace tl_test {

/// Listens on 127.0.0.1 and writes the port to `file`; the listening socket, or -1 (errno set).
inline int listen_loopback(const std::string& file) {
  const int ls = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (ls < 0 || ::bind(ls, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(ls, 1) != 0 ||
      ::getsockname(ls, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return -1;
  const std::string tmp = file + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return -1;
  std::fprintf(f, "%u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
  std::fclose(f);
  std::rename(tmp.c_str(), file.c_str());  // appears complete
  return ls;
}

/// Accepts one connection on `listener` within `timeout_ms`; the socket, or -1 with a
/// message on stderr prefixed by `who`.
inline int accept_within(int listener, long timeout_ms, const char* who) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout_ms)) != 1) {
    std::fprintf(stderr, "%s: no connection from QEMU within %ld ms\n", who, timeout_ms);
    return -1;
  }
  const int fd = ::accept(listener, nullptr, nullptr);
  if (fd < 0) std::perror(who);
  return fd;
}

}  // namespace tl_test
