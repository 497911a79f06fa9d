#!/usr/bin/env bash
# scripts/deps.sh — the one place that lists tinylarge's Debian 12 packages.
#
#   bash scripts/deps.sh [GROUP...]      install the groups (default: all)
#   bash scripts/deps.sh --list [GROUP...]  print the package names, install nothing
#
# Installs only what is missing (dpkg-query decides), so a second run does not
# touch the network at all. Needs root (or sudo) and a reachable apt mirror the
# first time. Set TINYLARGE_SKIP_DEPS=1 to skip it entirely (e.g. on a machine
# that is not Debian but has the tools).
#
# Groups (add a package to the group that needs it; keep each list sorted):
#   build  compilers, CMake, and the headers every host build needs
#   bench  Google Benchmark and the peers it is measured against
#   data   data sets and the Python peers used to cross-check results
#   mcu    Cortex-M cross toolchain and QEMU (microcontroller profile)
#   arm    ARM Linux cross compilers (aarch64, armhf) and qemu-user (scripts/arm_linux_test.sh)
#   net    MPI and MQTT for the optional transports (scripts/transport_test.sh); the
#          mosquitto broker is never started as a service: the tests start their own
#   docs   Doxygen (API reference, built warning-free by the `docs` step) and matplotlib (scripts/plots.py)
set -euo pipefail

declare -A TL_GROUPS=(
  [build]="catch2 clang-14 cmake g++ git libclang-rt-14-dev libxsimd-dev libxtensor-dev make ninja-build pkg-config python3 xtl-dev zlib1g-dev"
  [bench]="libbenchmark-dev libdnnl-dev libopenblas-dev libzstd-dev ocl-icd-opencl-dev valgrind"
  [data]="dataset-fashion-mnist python3-numpy python3-sklearn python3-torch"
  [mcu]="gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
  [arm]="g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user"
  [net]="libmosquitto-dev libopenmpi-dev libsodium-dev mosquitto openmpi-bin"
  [docs]="doxygen python3-matplotlib"
)
TL_ALL_GROUPS="build bench data mcu arm net docs"

list_only=0
if [[ "${1:-}" == "--list" ]]; then list_only=1; shift; fi
groups=("$@")
[[ ${#groups[@]} -eq 0 ]] && read -r -a groups <<<"$TL_ALL_GROUPS"

packages=()
for g in "${groups[@]}"; do
  if [[ -z "${TL_GROUPS[$g]+set}" ]]; then
    echo "deps.sh: unknown group '$g' (known: $TL_ALL_GROUPS)" >&2
    exit 2
  fi
  read -r -a pkgs <<<"${TL_GROUPS[$g]}"
  packages+=("${pkgs[@]}")
done

if [[ $list_only -eq 1 ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

if [[ "${TINYLARGE_SKIP_DEPS:-0}" == "1" ]]; then
  echo "deps.sh: TINYLARGE_SKIP_DEPS=1, not installing anything"
  exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: not a Debian system (no dpkg/apt-get); install these yourself: ${packages[*]}" >&2
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" != ii* ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps.sh: all ${#packages[@]} packages present (groups: ${groups[*]})"
  exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "deps.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
fi

echo "deps.sh: installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps.sh: done"
