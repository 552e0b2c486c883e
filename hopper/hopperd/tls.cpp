#include "hopperd/tls.hpp"

#include <cerrno>
#include <cstring>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace hopperd {

using hopper::Errc;
using hopper::Status;

std::string tls_error_text(unsigned long fallback_errno) {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed": the reason is what helps.
    const char* reason = ERR_reason_error_string(e);
    if (!text.empty()) text += "; ";
    text += reason ? reason : buf;
  }
  if (text.empty()) text = fallback_errno ? std::strerror(static_cast<int>(fallback_errno)) : "unknown TLS error";
  return text;
}

namespace {

// TLS 1.2 or later, no renegotiation or compression: what every current peer speaks.
std::shared_ptr<asio::ssl::context> base_context(asio::ssl::context::method method) {
  auto ctx = std::make_shared<asio::ssl::context>(method);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                   asio::ssl::context::no_compression);
  SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_RENEGOTIATION);
  return ctx;
}

// `origin` names the key: "hopperd.toml:6: input.tls_cert_file".
Status load_failure(const std::string& origin, const std::string& file, const std::string& what) {
  return Status(Errc::invalid_argument, origin + ": cannot use " + what + " \"" + file + "\": " + tls_error_text());
}

Status load_pair(asio::ssl::context& ctx, const std::string& cert_origin, const std::string& cert,
                 const std::string& key_origin, const std::string& key) {
  ERR_clear_error();
  if (SSL_CTX_use_certificate_chain_file(ctx.native_handle(), cert.c_str()) != 1)
    return load_failure(cert_origin, cert, "the certificate");
  if (SSL_CTX_use_PrivateKey_file(ctx.native_handle(), key.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx.native_handle()) != 1)
    return load_failure(key_origin, key, "the key (it must be the PEM key of tls_cert_file)");
  return Status();
}

}  // namespace

hopper::Result<std::shared_ptr<asio::ssl::context>> make_server_context(const TlsServerConfig& config) {
  auto ctx = base_context(asio::ssl::context::tls_server);
  if (Status s = load_pair(*ctx, config.cert_origin, config.cert_file, config.key_origin, config.key_file); !s.ok())
    return s;
  if (!config.client_ca_file.empty()) {
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(ctx->native_handle(), config.client_ca_file.c_str(), nullptr) != 1)
      return load_failure(config.ca_origin, config.client_ca_file, "the client CA");
    // Clients are told which CAs are accepted, and one without a certificate is refused.
    SSL_CTX_set_client_CA_list(ctx->native_handle(), SSL_load_client_CA_file(config.client_ca_file.c_str()));
    ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  } else {
    ctx->set_verify_mode(asio::ssl::verify_none);
  }
  return ctx;
}

hopper::Result<std::shared_ptr<asio::ssl::context>> make_client_context(const TlsClientConfig& config,
                                                                        const std::string& origin) {
  auto ctx = base_context(asio::ssl::context::tls_client);
  ERR_clear_error();
  if (!config.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx->native_handle(), config.ca_file.c_str(), nullptr) != 1)
      return load_failure(config.ca_origin, config.ca_file, "the CA");
  } else if (SSL_CTX_set_default_verify_paths(ctx->native_handle()) != 1) {
    return Status(Errc::invalid_argument, origin + ": cannot load the system's CAs: " + tls_error_text());
  }
  if (!config.cert_file.empty())
    if (Status s = load_pair(*ctx, config.cert_origin, config.cert_file, config.key_origin, config.key_file); !s.ok())
      return s;
  ctx->set_verify_mode(config.verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return ctx;
}

// ---- TlsSession -----------------------------------------------------------------------

TlsSession::TlsSession(asio::ssl::context& context, int fd, const std::string& server_name, bool verify_name)
    : ssl_(SSL_new(context.native_handle())) {
  if (!ssl_) return;
  SSL_set_fd(ssl_, fd);
  // Partial writes, and a retried write may come from a buffer that moved (the egress
  // keeps the rest of its batch in a std::string_view that advances).
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!server_name.empty()) {
    // SNI is for names only; an IP address is verified against the certificate's IP SANs.
    const bool ip = server_name.find_first_not_of("0123456789.") == std::string::npos ||
                    server_name.find(':') != std::string::npos;
    if (!ip) SSL_set_tlsext_host_name(ssl_, server_name.c_str());
    if (verify_name) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      if (ip) X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
      else {
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), server_name.size());
      }
    }
  }
  SSL_set_connect_state(ssl_);
}

TlsSession::~TlsSession() {
  if (ssl_) SSL_free(ssl_);
}

namespace {

// What an OpenSSL call's return means: ok, wait for read/write, or a failure.
Status classify(ssl_st* ssl, int rc, TlsSession::Want& want, const char* what) {
  const int err = SSL_get_error(ssl, rc);
  const int saved_errno = errno;
  want = TlsSession::Want::nothing;
  switch (err) {
    case SSL_ERROR_WANT_READ:
      want = TlsSession::Want::read;
      return Status();
    case SSL_ERROR_WANT_WRITE:
      want = TlsSession::Want::write;
      return Status();
    case SSL_ERROR_ZERO_RETURN:
      return Status(Errc::closed, std::string(what) + ": the downstream closed the TLS session");
    case SSL_ERROR_SYSCALL: {
      std::string text = tls_error_text(static_cast<unsigned long>(saved_errno));
      if (saved_errno == 0 && text == "unknown TLS error") text = "the connection was closed";
      return Status(Errc::io_error, std::string(what) + ": " + text);
    }
    default: {
      std::string text = tls_error_text();
      if (const long v = SSL_get_verify_result(ssl); v != X509_V_OK)
        text += " (" + std::string(X509_verify_cert_error_string(v)) + ")";
      return Status(Errc::io_error, std::string(what) + ": " + text);
    }
  }
}

}  // namespace

Status TlsSession::handshake(Want& want) {
  if (!ssl_) return Status(Errc::io_error, "TLS: cannot create a session: " + tls_error_text());
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    want = Want::nothing;
    return Status();
  }
  Status s = classify(ssl_, rc, want, "TLS handshake");
  if (s.ok() && want == Want::nothing) return Status(Errc::io_error, "TLS handshake failed");
  return s;
}

Status TlsSession::write(std::string_view bytes, std::size_t& written, Want& want) {
  written = 0;
  want = Want::nothing;
  if (bytes.empty()) return Status();
  ERR_clear_error();
  std::size_t n = 0;
  const int rc = SSL_write_ex(ssl_, bytes.data(), bytes.size(), &n);
  if (rc == 1) {
    written = n;
    return Status();
  }
  return classify(ssl_, rc, want, "TLS write");
}

bool TlsSession::drain() {
  char buf[4096];
  for (;;) {
    ERR_clear_error();
    std::size_t n = 0;
    const int rc = SSL_read_ex(ssl_, buf, sizeof buf, &n);
    if (rc == 1) continue;  // a downstream that talks back: ignored
    Want want;
    const Status s = classify(ssl_, rc, want, "TLS read");
    return s.ok() && want != Want::nothing;  // nothing more now (a read or write is wanted)
  }
}

void TlsSession::shutdown() noexcept {
  if (!ssl_) return;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace hopperd
