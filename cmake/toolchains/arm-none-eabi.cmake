# Toolchain for the freestanding profile on Cortex-M (Debian gcc-arm-none-eabi).
#   cmake -S tests/mcu -B build-m4 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-none-eabi.cmake -DTINYLARGE_MCU_CPU=cortex-m4
# TINYLARGE_MCU_CPU: cortex-m4 (hard float, DSP) | cortex-m3 | cortex-m7 | cortex-m55 (Helium, hard float) | cortex-m0plus
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(TINYLARGE_MCU_CPU "cortex-m4" CACHE STRING "Cortex-M core to build for")
if(TINYLARGE_MCU_CPU STREQUAL "cortex-m4")
  set(_tl_cpu_flags "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16")
elseif(TINYLARGE_MCU_CPU STREQUAL "cortex-m55")
  # MVE (Helium) needs the FP/vector register file: hard-float ABI.
  set(_tl_cpu_flags "-mcpu=cortex-m55 -mthumb -mfloat-abi=hard")
elseif(TINYLARGE_MCU_CPU STREQUAL "cortex-m7")
  set(_tl_cpu_flags "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-sp-d16")
else()
  set(_tl_cpu_flags "-mcpu=${TINYLARGE_MCU_CPU} -mthumb -mfloat-abi=soft")
endif()

set(CMAKE_C_FLAGS_INIT "${_tl_cpu_flags} -ffunction-sections -fdata-sections")
set(CMAKE_CXX_FLAGS_INIT "${_tl_cpu_flags} -ffunction-sections -fdata-sections -fno-exceptions -fno-rtti -fno-threadsafe-statics -fno-use-cxa-atexit")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-nostartfiles --specs=nano.specs --specs=nosys.specs -Wl,--gc-sections")

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
