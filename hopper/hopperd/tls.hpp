// TLS for hopperd: asio's ssl contexts over OpenSSL for the TLS listeners (asio::ssl::stream
// in ingest) and for TCP downstreams, where the egress thread drives one OpenSSL session
// over its own non-blocking socket (TlsSession).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <asio/ssl/context.hpp>

#include <hopper/status.hpp>

#include "hopperd/config.hpp"

struct ssl_st;

namespace hopperd {

// The listeners' context: certificate chain and key, and with a client CA, every client
// must present a certificate it signed. invalid_argument naming the config key and
// OpenSSL's reason (unreadable file, key not matching the certificate, ...).
hopper::Result<std::shared_ptr<asio::ssl::context>> make_server_context(const TlsServerConfig& config);

// A downstream's context: TLS 1.2 or later, the peer verified against `ca_file` (or the
// system's CAs) unless verify is off, and a client certificate when one is configured.
hopper::Result<std::shared_ptr<asio::ssl::context>> make_client_context(const TlsClientConfig& config,
                                                                        const std::string& origin);

// One TLS session on a connected non-blocking socket that the caller owns and polls.
// Not thread-safe: owned by one egress thread.
class TlsSession {
 public:
  // What the caller must wait for before calling again.
  enum class Want { nothing, read, write };

  TlsSession(asio::ssl::context& context, int fd, const std::string& server_name, bool verify_name);
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // One step of the handshake: ok when done; `want` says what to poll for otherwise. A
  // failure names OpenSSL's reason (certificate verify failed, ...).
  hopper::Status handshake(Want& want);
  // Writes some of `bytes`; `written` is how many. `want` as above when 0 were written.
  hopper::Status write(std::string_view bytes, std::size_t& written, Want& want);
  // Reads and discards what the peer sent. false when it closed (close_notify or EOF) or
  // failed; true when nothing more is there now.
  bool drain();
  // Sends close_notify (best effort, never waits).
  void shutdown() noexcept;

 private:
  ssl_st* ssl_ = nullptr;
};

// OpenSSL's error queue as text (and cleared), for messages.
std::string tls_error_text(unsigned long fallback_errno = 0);

}  // namespace hopperd
