/// @file workflow/lora_deploy.hpp
/// @brief Federated LoRA fine-tuning (workflow/lora.hpp; FedLoRA and
///        HetLoRA's heterogeneous ranks) as the programs of its two roles over
///        any `transport_policy`: the FedAvg family's deployed roles
///        (workflow/federated_deploy.hpp) with the adapter vector as the
///        round's model, `lora_training` as the client's computation and
///        `hetlora_mean` as the server's aggregation.
///
/// Every party builds the same `federated_lora` (the same `lora_options`,
/// rank table included) and loads the same frozen base W₀ with `set_base`
/// (pre-trained or loaded the same way on each): W₀ never crosses the wire.
/// What does is the FedAvg round of docs/deployment.md on the adapter
/// vector, fp32 (or `Traits::update`: fp16 / int8): the model frame carries
/// the global adapters {A_l, B_l} in the r_max layout, Σ r_max·(In + Out)
/// values; a rank-r_k client answers with the same layout, its trained
/// components in the first r_k rows of A and columns of B and the global
/// values beyond, which the server ignores. The server takes the rank of an
/// update from the sender's client id and the rank table. Hence the same
/// seeds give, on every transport, the same final adapters as
/// `federated_lora::run`, bit for bit (scripts/transport_test.sh, step
/// `nn-fedlora`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../transport/policy.hpp"
#include "federated_deploy.hpp"
#include "lora.hpp"

namespace tinylarge::workflow {

/// The server's program (endpoint 0): `run_federated_server` on the adapter
/// vector of `fl` (its initial adapters, or a checkpoint's). Afterwards
/// `fl.adapters()` holds the final global adapters.
/// @param opt the FedAvg server settings (deadlines, checkpoints, bounds, …);
///        `rounds` and `client_fraction` are set here from `fl.options()`
/// @return the status of `run_federated_server`; `invalid_argument` when the
///         rank table does not have one entry per client endpoint
template <transport_policy Transport, federated_traits Traits>
status run_lora_server(Transport& net, federated_lora<Traits>& fl, federated_server_options opt,
                       federated_server_report* report = nullptr) {
  const lora_options& lo = fl.options();
  TINYLARGE_CHECK(lo.rounds <= 0xFFFFFFFFu, errc::invalid_argument, "run_lora_server: more rounds than the wire counts");
  TINYLARGE_CHECK(lo.client_ranks.empty() || lo.client_ranks.size() + 1 == net.endpoints(), errc::invalid_argument,
                  "run_lora_server: lora_options::client_ranks must have one entry per client endpoint");
  opt.rounds = static_cast<std::uint32_t>(lo.rounds);
  opt.client_fraction = lo.client_fraction;
  opt.poisson_sampling = false;
  return run_federated_server(net, fl.server_program(), opt, report);
}

/// Client k's program (endpoint k + 1): the FedAvg client role with
/// `lora_training` on `data`, its rank r_k from `fl.options().client_ranks`.
/// @return the status of `run_federated_client`; `invalid_argument` when
///         `set_base` was not called or the rank table has no entry for k
template <transport_policy Transport, federated_traits Traits>
status run_lora_client(Transport& net, federated_lora<Traits>& fl, const nn::labelled_view<std::uint8_t>& data,
                       federated_client_options opt = {}) {
  TINYLARGE_CHECK(net.id() != server_endpoint, errc::invalid_argument, "run_lora_client: endpoint 0 is the server");
  auto& computation = fl.client_computation();
  TINYLARGE_CHECK(computation.has_base(), errc::invalid_argument,
                  "run_lora_client: call set_base with the pre-trained weights first");
  const std::size_t k = net.id() - 1;
  const lora_options& lo = fl.options();
  TINYLARGE_CHECK(lo.client_ranks.empty() || k < lo.client_ranks.size(), errc::invalid_argument,
                  "run_lora_client: lora_options::client_ranks has no entry for this client");
  // The computation looks clients up by id: this client's data at index k.
  std::vector<nn::labelled_view<std::uint8_t>> views(k + 1, nn::labelled_view<std::uint8_t>{});
  views[k] = data;
  computation.set_clients(views);
  typename federated_lora<Traits>::client_role role(computation);
  const status s = run_federated_client(net, role, opt);
  computation.set_clients({});  // `views` ends here
  return s;
}

}  // namespace tinylarge::workflow
