// hopper: a multi-producer, single-consumer queue whose memory is bounded in bytes and
// which spills to disk, in order, instead of dropping data. Everything public is here.
#pragma once

#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#include <hopper/channel.hpp>
#include <hopper/file_system.hpp>
#include <hopper/footprint.hpp>
#include <hopper/options.hpp>
#include <hopper/stats.hpp>
#include <hopper/status.hpp>
