// Vector table and reset handler for the QEMU mps2 boards (Cortex-M3/M4F).
#include <cstdint>

#include "startup.hpp"

extern "C" {
extern std::uint32_t _data_load, _data_start, _data_end, _bss_start, _bss_end, _stack_top,
    _stack_limit;
extern void (*__init_array_start[])();
extern void (*__init_array_end[])();
void* __dso_handle = nullptr;
int main();
[[noreturn]] void tl_reset_handler();
[[noreturn]] void tl_fault_handler();
}

/// Fill value for stack painting: tl_stack_high_water() counts untouched words.
constexpr std::uint32_t stack_paint = 0xDEADBEEFu;

// The .data copy and .bss clear stay plain loops: GCC would otherwise turn them into calls
// to newlib's memcpy and memset, ~470 bytes of flash that a minimal firmware does not need.
extern "C" [[noreturn]] __attribute__((optimize("no-tree-loop-distribute-patterns"))) void tl_reset_handler() {
#if defined(__ARM_FP)
  // Enable CP10/CP11 (the FPU) before any floating-point instruction.
  volatile std::uint32_t* cpacr = reinterpret_cast<volatile std::uint32_t*>(0xE000ED88u);
  *cpacr |= (0xFu << 20);
  __asm__ volatile("dsb\n isb");
#endif
  for (std::uint32_t *src = &_data_load, *dst = &_data_start; dst < &_data_end;) *dst++ = *src++;
  for (std::uint32_t* dst = &_bss_start; dst < &_bss_end;) *dst++ = 0;
  // Paint the free stack below the current frame so the high-water mark can be measured.
  {
    std::uint32_t* sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (std::uint32_t* p = &_stack_limit; p < sp - 16; ++p) *p = stack_paint;
  }
  for (auto f = __init_array_start; f < __init_array_end; ++f) (*f)();
  tl_mcu::exit(main());
}

extern "C" [[noreturn]] void tl_fault_handler() {
  tl_mcu::puts("FAULT: hard fault or unexpected exception\n");
  tl_mcu::exit(99);
}

/// Bytes of stack ever used since reset (the painted words that were overwritten).
extern "C" std::uint32_t tl_stack_high_water() {
  const std::uint32_t* p = &_stack_limit;
  while (p < &_stack_top && *p == stack_paint) ++p;
  return static_cast<std::uint32_t>(reinterpret_cast<std::uintptr_t>(&_stack_top) -
                                    reinterpret_cast<std::uintptr_t>(p));
}

__attribute__((section(".isr_vector"), used)) void (*const tl_vectors[16])() = {
    reinterpret_cast<void (*)()>(&_stack_top),
    tl_reset_handler,
    tl_fault_handler,  // NMI
    tl_fault_handler,  // HardFault
    tl_fault_handler,  // MemManage
    tl_fault_handler,  // BusFault
    tl_fault_handler,  // UsageFault
    nullptr, nullptr, nullptr, nullptr,
    tl_fault_handler,  // SVCall
    tl_fault_handler,  // DebugMon
    nullptr,
    tl_fault_handler,  // PendSV
    tl_fault_handler,  // SysTick
};
