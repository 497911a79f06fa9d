/// @file workflow/transfer_deploy.hpp
/// @brief Federated transfer learning (workflow/transfer.hpp) as the programs
///        of its two roles over any `transport_policy`: the server pre-trains
///        and then runs the FedAvg server role; client k runs the FedAvg client
///        role on its training part and personalises the final model.
///
/// The phases are the functions of `federated_transfer` that its in-process
/// `run` calls too — `pretrain`, `split`, `personalize` — around the FedAvg
/// family's deployed roles (workflow/federated_deploy.hpp). Hence the same
/// seeds give, on every transport, the same final global model and the same
/// personal model on every client as `federated_transfer::run`, bit for bit
/// (scripts/transport_test.sh, step `nn-transfer`).
///
/// Message sequence: phase 1 sends nothing (the server's data never leave
/// it); phase 2 is the FedAvg round of docs/deployment.md; after the last
/// round the server's `control`/`stop` carries the final global model
/// (`federated_server_options::final_model_to_clients`), on which each
/// client personalises (phase 3) — its personal model never leaves it.
///
/// A restarted server (a checkpoint in `federated_server_options`) pre-trains
/// again and then continues from the checkpoint's rounds, which override the
/// pre-trained start.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "../core/error.hpp"
#include "../nn/train.hpp"
#include "../transport/policy.hpp"
#include "federated_deploy.hpp"
#include "transfer.hpp"

namespace tinylarge::workflow {

/// The server's program (endpoint 0): phase 1 on `server_data`, then
/// `run_federated_server` from the pre-trained model with the final model
/// sent to the clients. `ftl.pretrained()` and `ftl.federated().global()`
/// hold the two models afterwards.
/// @param opt the FedAvg server settings (deadlines, checkpoints, bounds, …);
///        the round settings come from the `federated_options` `ftl` was built
///        with — `rounds`, `client_fraction` and `poisson_sampling` are set
///        from them here, as is `final_model_to_clients`
/// @return the status of `run_federated_server`
/// @throws what `federated_transfer::pretrain` throws for bad server data
template <transport_policy Transport, federated_traits Traits>
status run_transfer_server(Transport& net, federated_transfer<Traits>& ftl,
                           const nn::labelled_view<std::uint8_t>& server_data, federated_server_options opt,
                           federated_server_report* report = nullptr) {
  (void)ftl.pretrain(server_data);
  ftl.federated().set_global(ftl.pretrained());
  const federated_options& fo = ftl.federated().options();
  TINYLARGE_CHECK(fo.rounds <= 0xFFFFFFFFu, errc::invalid_argument, "run_transfer_server: more rounds than the wire counts");
  opt.rounds = static_cast<std::uint32_t>(fo.rounds);
  opt.client_fraction = fo.client_fraction;
  opt.poisson_sampling = fo.poisson_sampling;
  opt.final_model_to_clients = true;
  return run_federated_server(net, ftl.federated().server_program(), opt, report);
}

/// Client k's program (endpoint k + 1): the FedAvg client role on the
/// training part of `data` (`ftl.split`), then phase 3 on the final model:
/// `personal` holds its personal model and `*result` (if given) what it
/// measured on its holdout part.
/// @param opt the FedAvg client settings; a user `on_final` is called before the personalisation
/// @return the status of `run_federated_client`; `invalid_argument` when the
///         server stopped without sending the final model (a server run
///         without `final_model_to_clients`)
/// @throws what `federated_transfer::split` / `personalize` throw (too few
///         samples for the holdout split; training that diverges)
template <transport_policy Transport, federated_traits Traits>
status run_transfer_client(Transport& net, federated_transfer<Traits>& ftl, const nn::labelled_view<std::uint8_t>& data,
                           typename federated_transfer<Traits>::network_type& personal,
                           typename federated_transfer<Traits>::personalization* result = nullptr,
                           federated_client_options opt = {}) {
  using ftl_type = federated_transfer<Traits>;
  using fl_type = typename ftl_type::fl_type;
  TINYLARGE_CHECK(net.id() != server_endpoint, errc::invalid_argument, "run_transfer_client: endpoint 0 is the server");
  const std::size_t k = net.id() - 1;
  const typename ftl_type::client_split part = ftl.split(data);
  // The computation looks clients up by id: this client's training part at index k.
  std::vector<nn::labelled_view<std::uint8_t>> views(k + 1, nn::labelled_view<std::uint8_t>{});
  views[k] = part.train;
  auto& computation = ftl.federated().client_computation();
  computation.set_clients(views);
  typename fl_type::client_role role(computation, ftl.federated().options().int8_chunk);
  bool personalised = false;
  opt.on_final = [&, user = opt.on_final](std::uint32_t round, std::span<const float> w) {
    if (user) user(round, w);
    const typename ftl_type::personalization p = ftl.personalize(k, w, part, personal);
    if (result != nullptr) *result = p;
    personalised = true;
  };
  const status s = run_federated_client(net, role, opt);
  computation.set_clients({});  // `views` ends here
  TINYLARGE_TRY(s);
  TINYLARGE_CHECK(personalised, errc::invalid_argument,
                  "run_transfer_client: the server stopped without the final model (run it with "
                  "run_transfer_server, or set federated_server_options::final_model_to_clients)");
  return status::success();
}

}  // namespace tinylarge::workflow
