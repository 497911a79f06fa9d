// The kernel table of arch::avx2 for run-time dispatch (kernels/dispatch.hpp).
// Built into the static library tinylarge_dispatch with the flags of avx2 (CMake
// option TINYLARGE_DISPATCH, CMakeLists.txt). Not compiled into any other target.
#include "tinylarge/kernels/dense.hpp"

namespace tinylarge::kernels::detail {

const kernel_table& kernel_table_avx2() noexcept {
  static_assert(arch::avx2::supported(), "src/dispatch/avx2.cpp must be compiled with the flags of avx2");
  static constexpr kernel_table table = make_kernel_table<arch::avx2>();
  return table;
}

}  // namespace tinylarge::kernels::detail
