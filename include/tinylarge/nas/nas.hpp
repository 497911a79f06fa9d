/// @file nas/nas.hpp
/// @brief Umbrella header of the architecture search (host profile): the MLP
///        search space, device profiles and costs, the weight-sharing
///        supernet, transfer to a target task, the search strategies, Pareto
///        tools and the emitted model header. See docs/nas.md.
#pragma once

#include "space.hpp"
#include "profile.hpp"
#include "pareto.hpp"
#include "supernet.hpp"
#include "transfer.hpp"
#include "search.hpp"
#include "emit.hpp"
