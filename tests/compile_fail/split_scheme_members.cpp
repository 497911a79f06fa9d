// Negative-compile test (tests/CMakeLists.txt): a split scheme (workflow/split_schemes.hpp)
// that lacks a member of `split_scheme_policy` must not compile, and the message names the
// member. Built with -DTINYLARGE_CASE=N, the scheme lacks:
//  1. run_round            2. aggregated_rows           3. server_copies
// and case 4 deploys a scheme that has no deployment driver (split_deployment with my_scheme,
// complete but defined outside the library):
// it must not compile either, with a message naming the schemes that have one.
// Built with -DTINYLARGE_EXPECT_VALID, the scheme has every member and compiles: the control.
#include "tinylarge/workflow/split.hpp"
#include "tinylarge/workflow/split_deploy.hpp"

namespace tl = tinylarge;

struct traits {
  using model = tl::sequential<tl::dense<8, 6>, tl::relu, tl::dense<6, 2>>;
  using partition = tl::cut<2>;
};

#ifndef TINYLARGE_CASE
#define TINYLARGE_CASE 0
#endif

struct my_scheme {
  static constexpr const char* name() noexcept { return "my_scheme"; }
#if TINYLARGE_CASE != 3
  static constexpr bool server_copies = false;
#endif
  static constexpr bool downloads_each_round = true;
#if TINYLARGE_CASE != 2
  template <class Options>
  std::size_t aggregated_rows(const Options&, std::size_t, std::size_t) const noexcept {
    return 0;
  }
#endif
  template <class Options>
  void validate(const Options&) const noexcept {}
#if TINYLARGE_CASE != 1
  template <class Round>
  void run_round(Round& r) const {
    r.broadcast(r.all());
    for (std::size_t t = 0; t < r.steps(); ++t) r.step(r.all());
    r.collect(r.all());
  }
#endif
};

#if !defined(TINYLARGE_EXPECT_VALID) && TINYLARGE_CASE == 0
#error "define TINYLARGE_CASE (1-4) or TINYLARGE_EXPECT_VALID"
#endif

#if TINYLARGE_CASE == 4
using deployed_scheme = my_scheme;
#else
using deployed_scheme = tl::split_scheme::parallel;  // the control: PSL has a deployment
#endif
using deployment = tl::workflow::split_deployment<deployed_scheme, traits::model, traits::partition, tl::nn::sgd>;

int main() {
  tl::split_learning<traits, my_scheme> run{{.rounds = 1, .batch_size = 2}};
  return static_cast<int>(run.settings().rounds) + static_cast<int>(deployment::cut);
}
