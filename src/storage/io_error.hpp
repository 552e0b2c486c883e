// as_io_error: a file system's failure, as a queue reports it.
#pragma once

#include <string>

#include <hopper/status.hpp>

namespace hopper::detail {

// What a sender, flush(), a receiver or inspect is told of a file operation that failed:
// an io_error whatever the file system called it (a missing file, say), naming the path.
inline Status as_io_error(const Status& s) {
  if (s.ok() || s.code() == Errc::io_error) return s;
  std::string m = s.message();
  const std::string prefix = std::string(to_string(s.code())) + ": ";
  if (m.rfind(prefix, 0) == 0) m.erase(0, prefix.size());
  return Status(Errc::io_error, std::move(m));
}

}  // namespace hopper::detail
