// The kernel table of arch::avx512_bf16 for run-time dispatch (kernels/dispatch.hpp).
// Built into the static library tinylarge_dispatch with the flags of avx512_bf16 (CMake
// option TINYLARGE_DISPATCH, CMakeLists.txt). Not compiled into any other target.
#include "tinylarge/kernels/dense.hpp"

namespace tinylarge::kernels::detail {

const kernel_table& kernel_table_avx512_bf16() noexcept {
  static_assert(arch::avx512_bf16::supported(), "src/dispatch/avx512_bf16.cpp must be compiled with the flags of avx512_bf16");
  static constexpr kernel_table table = make_kernel_table<arch::avx512_bf16>();
  return table;
}

}  // namespace tinylarge::kernels::detail
