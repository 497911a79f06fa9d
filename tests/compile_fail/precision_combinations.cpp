// Negative-compile tests (tests/CMakeLists.txt): precision combinations the library
// cannot run fail to compile with a static_assert naming the member, never a silent
// fp32 run. Built with -DTINYLARGE_CASE=N (one case per ctest entry); with
// -DTINYLARGE_EXPECT_VALID the same file instantiates the supported neighbours of
// every case and must compile: the control.
//  1. split: an int8 server side                (Traits::server)
//  2. split: an fp16 device side with pruning    (Traits::device)
//  3. split: a quantized device precision that is not int8 (Traits::device)
//  4. nn::network whose Precision is int8       (Precision)
//  5. nn::network<…, fp16> with a depthwise_conv2d layer
//  6. federated_transfer: int8 training precision  (Traits::precision)
//  7. federated_reptile: int8 training precision   (Traits::precision)
//  8. federated_lora: int8 training precision      (Traits::precision)
//  9. knowledge_distillation: int8 student training precision (Traits::precision; int8 is Traits::device)
// 10. adapted_accuracy with an int8 Precision      (Precision)
#include "tinylarge/workflow/distill.hpp"
#include "tinylarge/workflow/lora.hpp"
#include "tinylarge/workflow/reptile.hpp"
#include "tinylarge/workflow/split.hpp"
#include "tinylarge/workflow/transfer.hpp"

namespace tl = tinylarge;
namespace nn = tl::nn;

using mlp = tl::sequential<nn::dense<8, 6>, nn::relu, nn::dense<6, 4>, nn::relu, nn::dense<4, 2>>;
using dw = tl::sequential<tl::input<6, 6, 2>, nn::depthwise_conv2d<3>, nn::relu, nn::flatten, nn::dense<32, 2>>;
using prune = tl::compress::magnitude_prune<tl::compress::constant_sparsity>;

/// A quantized precision that is not int8 (4-bit codes): nothing in the library runs it.
struct int4_precision {
  using storage_type = std::int8_t;
  using accumulator_type = std::int32_t;
  static constexpr bool quantized = true;
  static constexpr unsigned storage_bits = 4;
  static constexpr const char* name() noexcept { return "int4"; }
};

#if defined(TINYLARGE_EXPECT_VALID)
struct traits_1 { using model = mlp; using partition = tl::cut<2>; using server = tl::side<tl::bf16>; };
struct traits_2 { using model = mlp; using partition = tl::cut<2>; using device = tl::side<tl::int8_per_channel, prune>; };
struct traits_3 { using model = mlp; using partition = tl::cut<2>; using device = tl::side<tl::fp16>; };
using net_4 = nn::network<mlp, nn::heap_storage, tl::bf16>;
using dw_fp32 = tl::sequential<tl::input<6, 6, 2>, nn::with_precision<nn::depthwise_conv2d<3>, tl::fp32>, nn::relu,
                               nn::flatten, nn::dense<32, 2>>;
using net_5 = nn::network<dw_fp32, nn::heap_storage, tl::fp16>;
using train_6 = tl::fp16;
using train_7 = tl::bf16;
using train_8 = tl::fp16;
using train_9 = tl::bf16;
using adapt_10 = tl::fp16;
#else
struct traits_1 { using model = mlp; using partition = tl::cut<2>; using server = tl::side<tl::int8_per_channel>; };
struct traits_2 { using model = mlp; using partition = tl::cut<2>; using device = tl::side<tl::fp16, prune>; };
struct traits_3 { using model = mlp; using partition = tl::cut<2>; using device = tl::side<int4_precision>; };
using net_4 = nn::network<mlp, nn::heap_storage, tl::int8_per_channel>;
using net_5 = nn::network<dw, nn::heap_storage, tl::fp16>;
using train_6 = tl::int8_per_channel;
using train_7 = tl::int8_per_tensor;
using train_8 = tl::int8_per_channel;
using train_9 = tl::int8_per_channel;
using adapt_10 = tl::int8_per_tensor;
#endif

template <class P>
struct fl_traits {
  using model = mlp;
  using precision = P;
};
template <class P>
struct kd_traits {
  using teacher = mlp;
  using student = tl::sequential<nn::dense<8, 3>, nn::relu, nn::dense<3, 2>>;
  using precision = P;
};

int main() {
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 1
  tl::psl<traits_1> r1;
  (void)r1;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 2
  tl::psl<traits_2> r2;
  (void)r2;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 3
  tl::psl<traits_3> r3;
  (void)r3;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 4
  net_4 n4;
  (void)n4;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 5
  net_5 n5;
  (void)n5;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 6
  tl::workflow::federated_transfer<fl_traits<train_6>> r6(tl::workflow::transfer_options{},
                                                          tl::workflow::federated_options{});
  (void)r6;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 7
  tl::workflow::federated_reptile<fl_traits<train_7>> r7(tl::workflow::federated_options{});
  (void)r7;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 8
  tl::workflow::federated_lora<fl_traits<train_8>> r8(tl::workflow::lora_options{});
  (void)r8;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 9
  tl::workflow::knowledge_distillation<kd_traits<train_9>> r9;
  (void)r9;
#endif
#if defined(TINYLARGE_EXPECT_VALID) || TINYLARGE_CASE == 10
  const std::vector<float> w(mlp::param_count, 0.0f);
  const nn::labelled_view<std::uint8_t> none{};
  (void)tl::workflow::adapted_accuracy<mlp, adapt_10>(w, none, none, nn::sgd{}, 1, 1, 1);
#endif
  return 0;
}
