// Negative-compile test (tests/CMakeLists.txt): transformer layers whose
// template parameters do not fit their input must not compile, and the
// diagnostic must name the parameter (-DTINYLARGE_CASE=N picks the case).
// Built with -DTINYLARGE_EXPECT_VALID, the same file uses fitting layers and
// must compile: that control proves each failure comes from the shape check.
#include "tinylarge/nn/decoder.hpp"
#include "tinylarge/nn/transformer.hpp"

namespace nn = tinylarge::nn;

#if defined(TINYLARGE_EXPECT_VALID)
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<6, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<6, 1>>>;
#elif TINYLARGE_CASE == 1  // tokens of width 6, attention over width 8
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<8, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<6, 1>>>;
#elif TINYLARGE_CASE == 2  // the inner chain widens the tokens from 6 to 12: x + F(x) has no meaning
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<6, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<12, 1>>>;
#else
using attention_model = nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<6, 2>>;
using residual_model = nn::sequential<nn::input<1, 4, 6>, nn::residual<nn::layer_norm<6>, nn::conv2d<6, 1>>>;
#endif

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 3  // two values per position: not one token id
using token_model = nn::sequential<nn::input<1, 4, 2>, nn::embedding<10, 6>, nn::learned_positions<4, 6>>;
#elif !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 4  // a table of 5 positions for 4 tokens
using token_model = nn::sequential<nn::input<1, 4, 1>, nn::embedding<10, 6>, nn::learned_positions<5, 6>>;
#else
using token_model = nn::sequential<nn::input<1, 4, 1>, nn::embedding<10, 6>, nn::learned_positions<4, 6>>;
#endif

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 5  // a KV cache for attention that is not causal
using cache = nn::kv_cache<attention_model::layer<0>>;
#else
using cache = nn::kv_cache<nn::sequential<nn::input<1, 4, 6>, nn::multi_head_attention<6, 2, true>>::layer<0>>;
#endif

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 6  // a flatten + dense head mixes the positions
using decoded_model = nn::sequential<nn::input<1, 4, 1>, nn::embedding<10, 6>, nn::learned_positions<4, 6>,
                                     nn::residual<nn::layer_norm<6>, nn::multi_head_attention<6, 2, true>>,
                                     nn::flatten, nn::dense<24, 10>>;
#elif !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 7  // attention inside a block that is not causal
using decoded_model = nn::sequential<nn::input<1, 4, 1>, nn::embedding<10, 6>, nn::learned_positions<4, 6>,
                                     nn::residual<nn::layer_norm<6>, nn::multi_head_attention<6, 2>>,
                                     nn::conv2d<10, 1>>;
#else
using decoded_model = nn::sequential<nn::input<1, 4, 1>, nn::embedding<10, 6>, nn::learned_positions<4, 6>,
                                     nn::residual<nn::layer_norm<6>, nn::multi_head_attention<6, 2, true>>,
                                     nn::conv2d<10, 1>>;
#endif
static_assert(nn::incremental_decoder<decoded_model>::capacity == 4);

static_assert(attention_model::output_size == 24);
static_assert(residual_model::output_size == 24);
static_assert(token_model::output_size == 24);
static_assert(cache::capacity == 4);

int main() { return 0; }
