// Negative-compile test (tests/CMakeLists.txt): a deployment (run_federated_server,
// workflow/federated_deploy.hpp) has no link model, so a server whose selection policy
// needs links (workflow/selection.hpp) must not compile there, and the message names
// `Selection::needs_links`. Built with -DTINYLARGE_CASE=1 the server selects
// channel-aware, with 2 deadline-aware; with -DTINYLARGE_EXPECT_VALID it selects
// uniformly and compiles: the control.
#include "tinylarge/transport/in_process.hpp"
#include "tinylarge/workflow/federated_deploy.hpp"

namespace tl = tinylarge;
namespace wf = tl::workflow;

#if defined(TINYLARGE_EXPECT_VALID)
using selection = wf::uniform_selection;
#elif TINYLARGE_CASE == 1
using selection = wf::channel_aware_selection;
#elif TINYLARGE_CASE == 2
using selection = wf::deadline_aware_selection;
#else
#error "define TINYLARGE_CASE (1-2) or TINYLARGE_EXPECT_VALID"
#endif

int main() {
  tl::in_process::hub net(3);
  tl::in_process server(net, 0);
  wf::fedavg_server<tl::fedavg, tl::fp32_update, selection> role(tl::fedavg{}, 4, 1);
  wf::federated_server_options opt;
  opt.rounds = 1;
  return wf::run_federated_server(server, role, opt).ok() ? 0 : 1;
}
