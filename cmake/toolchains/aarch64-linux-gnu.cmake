# Toolchain for ARM Linux hosts, 64-bit (AArch64: Raspberry Pi 3/4/5 with a
# 64-bit OS, phones, ARM servers), with Debian's cross compiler and qemu-user:
#
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   cmake --build build-arm64 -j2 && ctest --test-dir build-arm64   # tests run under qemu-aarch64
#
# Packages: scripts/deps.sh arm (g++-aarch64-linux-gnu, qemu-user). NEON is
# always on for AArch64; add -DCMAKE_CXX_FLAGS=-march=armv8.2-a+dotprod (or
# -mcpu=<your core>) for the SDOT int8 kernels (arch::neon_dotprod). QEMU's
# default CPU ("max") runs SDOT; `-cpu cortex-a53` would raise SIGILL.
#
# zlib (tinylarge::tinylarge links ZLIB::ZLIB) is not part of the cross
# sysroot: pass an AArch64 zlib with -DZLIB_INCLUDE_DIR=… -DZLIB_LIBRARY=…/libz.a
# (scripts/arm_linux_test.sh extracts Debian's zlib1g-dev:arm64 for that).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(TINYLARGE_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${TINYLARGE_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${TINYLARGE_CROSS_TRIPLE}-g++)

# ctest (and add_test COMMANDs naming a target) run the binaries through QEMU;
# binfmt_misc is not assumed. -L: where the dynamic loader and libraries are.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/${TINYLARGE_CROSS_TRIPLE})

# Libraries only from the target sysroot (never link an x86-64 .so); headers
# and CMake package configs also from the host, because Debian's header-only
# xtensor/xsimd/xtl/Catch2 are architecture independent. The cross compiler
# already searches /usr/include after its own folder.
set(CMAKE_FIND_ROOT_PATH /usr/${TINYLARGE_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# xsimd's and xtensor's CMake configs sit in the amd64 multiarch folder, which
# a search for an aarch64 target does not look into.
list(APPEND CMAKE_PREFIX_PATH /usr/lib/x86_64-linux-gnu/cmake)
