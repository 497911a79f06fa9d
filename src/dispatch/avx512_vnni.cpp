// The kernel table of arch::avx512_vnni for run-time dispatch (kernels/dispatch.hpp).
// Built into the static library tinylarge_dispatch with the flags of avx512_vnni (CMake
// option TINYLARGE_DISPATCH, CMakeLists.txt). Not compiled into any other target.
#include "tinylarge/kernels/dense.hpp"

namespace tinylarge::kernels::detail {

const kernel_table& kernel_table_avx512_vnni() noexcept {
  static_assert(arch::avx512_vnni::supported(), "src/dispatch/avx512_vnni.cpp must be compiled with the flags of avx512_vnni");
  static constexpr kernel_table table = make_kernel_table<arch::avx512_vnni>();
  return table;
}

}  // namespace tinylarge::kernels::detail
