// Json: the value type of the driver's results file — nlohmann::json (objects keep their
// keys sorted, as the plotting script and diffs of results files expect).
#pragma once

#include <nlohmann/json.hpp>

namespace hopper::bench {

using Json = nlohmann::json;

}  // namespace hopper::bench
