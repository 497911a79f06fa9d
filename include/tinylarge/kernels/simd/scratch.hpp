/// @file kernels/simd/scratch.hpp
/// @brief Per-thread, 64-byte aligned scratch memory for the packing buffers
///        of the host SIMD back ends.
///
/// Host profile only: the scalar back end never allocates. Each slot is a
/// `thread_local` buffer that grows to the largest request seen on that
/// thread and is reused afterwards, so a steady-state kernel call does not
/// touch the allocator. Calls on different threads never share a buffer.
#pragma once

#include <cstddef>
#include <new>

#include "../../core/config.hpp"

#if TINYLARGE_FREESTANDING
#error "kernels/simd/scratch.hpp allocates and is for the host profile only"
#endif

namespace tinylarge::kernels::detail {

/// A growable, 64-byte aligned, uninitialised buffer. Not copyable.
class aligned_scratch {
 public:
  static constexpr std::size_t alignment = 64;

  aligned_scratch() noexcept = default;
  aligned_scratch(const aligned_scratch&) = delete;
  aligned_scratch& operator=(const aligned_scratch&) = delete;
  ~aligned_scratch() { release(); }

  /// Storage for at least `count` objects of trivial type `T`, aligned to 64
  /// bytes. Previous contents are not preserved when the buffer grows.
  template <class T>
  T* get(std::size_t count) {
    const std::size_t bytes = (count * sizeof(T) + alignment - 1) / alignment * alignment;
    if (bytes > bytes_) {
      release();
      ptr_ = ::operator new(bytes, std::align_val_t{alignment});
      bytes_ = bytes;
    }
    return static_cast<T*>(ptr_);
  }

 private:
  void release() noexcept {
    if (ptr_ != nullptr) ::operator delete(ptr_, std::align_val_t{alignment});
    ptr_ = nullptr;
    bytes_ = 0;
  }
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Scratch slots used by the kernels (one buffer per slot and thread).
enum class scratch_slot : int { pack_a = 0, pack_b = 1, vector = 2, accum = 3, column = 4, widen_a = 5, widen_b = 6 };

/// The calling thread's buffer for `Slot`.
template <scratch_slot Slot>
inline aligned_scratch& thread_scratch() noexcept {
  thread_local aligned_scratch buffer;
  return buffer;
}

}  // namespace tinylarge::kernels::detail
