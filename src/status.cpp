#include <hopper/status.hpp>

#include <cerrno>
#include <cstring>

namespace hopper {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::ok: return "ok";
    case Errc::full: return "full";
    case Errc::empty: return "empty";
    case Errc::timeout: return "timeout";
    case Errc::closed: return "closed";
    case Errc::too_large: return "too_large";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::locked: return "locked";
    case Errc::io_error: return "io_error";
    case Errc::corrupt: return "corrupt";
    case Errc::not_found: return "not_found";
  }
  return "unknown";
}

Status::Status(Errc code, std::string message) {
  if (code != Errc::ok) state_ = std::make_shared<const State>(State{code, std::move(message)});
}

Status Status::IoError(std::string_view what, std::string_view path, int err) {
  std::string m(what);
  m += ' ';
  m += path;
  m += ": ";
  m += std::strerror(err);
  return Status(Errc::io_error, std::move(m));
}

Status Status::FromErrno(std::string_view what, std::string_view path, int err) {
  Status s = IoError(what, path, err);
  if (err == ENOENT) s.state_ = std::make_shared<const State>(State{Errc::not_found, s.state_->message});
  return s;
}

std::string Status::message() const {
  if (!state_) return "ok";
  std::string m(to_string(state_->code));
  if (!state_->message.empty()) {
    m += ": ";
    m += state_->message;
  }
  return m;
}

}  // namespace hopper
