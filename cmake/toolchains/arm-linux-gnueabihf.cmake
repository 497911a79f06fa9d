# Toolchain for ARM Linux hosts, 32-bit (ARMv7-A hard-float with NEON: Raspberry
# Pi 2/3/4 with a 32-bit OS, older phones and gateways), with Debian's cross
# compiler and qemu-user:
#
#   cmake -S . -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake
#   cmake --build build-armhf -j2 && ctest --test-dir build-armhf   # tests run under qemu-arm
#
# Packages: scripts/deps.sh arm (g++-arm-linux-gnueabihf, qemu-user).
# -mfpu=neon is required: Debian's armhf default (-mfpu=auto with the base
# ARMv7-A architecture) leaves __ARM_NEON undefined, so arch::neon would be
# unsupported and xsimd would have no architecture. For the NEON binary16
# conversion in dense_f16 use -mfpu=neon-fp16 -mfp16-format=ieee instead
# (otherwise the exact scalar conversion is used). -Wno-psabi silences GCC's
# notes about a parameter-passing change in GCC 7.1 (harmless here).
#
# The flags go to CMAKE_<LANG>_FLAGS_INIT, which CMake uses only when the cache
# has no CMAKE_CXX_FLAGS yet: passing -DCMAKE_CXX_FLAGS=… yourself replaces
# them, so include -mfpu=neon in it (else the build silently has no NEON and
# arch::best becomes cortex_m_dsp, whose SMLAD kernel also runs on ARMv7-A).
#
# zlib: as in aarch64-linux-gnu.cmake, pass -DZLIB_INCLUDE_DIR=… -DZLIB_LIBRARY=…/libz.a.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(TINYLARGE_CROSS_TRIPLE arm-linux-gnueabihf)

set(CMAKE_C_COMPILER ${TINYLARGE_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${TINYLARGE_CROSS_TRIPLE}-g++)
set(TINYLARGE_ARMHF_FPU "neon" CACHE STRING "-mfpu= for the armhf build (neon, neon-fp16, neon-vfpv4)")
set(CMAKE_C_FLAGS_INIT "-mfpu=${TINYLARGE_ARMHF_FPU}")
set(CMAKE_CXX_FLAGS_INIT "-mfpu=${TINYLARGE_ARMHF_FPU} -Wno-psabi")

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm -L /usr/${TINYLARGE_CROSS_TRIPLE})

set(CMAKE_FIND_ROOT_PATH /usr/${TINYLARGE_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
list(APPEND CMAKE_PREFIX_PATH /usr/lib/x86_64-linux-gnu/cmake)
