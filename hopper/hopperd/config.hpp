// hopperd's configuration: the TOML file, parsed and checked into plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hopper/options.hpp>
#include <hopper/status.hpp>

namespace hopperd {

// A host:port to listen on or connect to, with where the config said so (for errors).
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string origin;  // e.g. "hopperd.toml:5: input.tcp[0]"
  std::string text() const;  // "host:port"
  bool same(const Endpoint& o) const noexcept { return host == o.host && port == o.port; }
};

enum class OutputType { tcp, kafka };

// TLS on a TCP listener: the server's certificate chain and key (PEM); with a client CA,
// every client must present a certificate it signed (mutual TLS).
struct TlsServerConfig {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // empty: clients are not asked for a certificate
  std::string origin;          // "hopperd.toml:3: input"
  // Where each file was named, for errors: "hopperd.toml:6: input.tls_cert_file".
  std::string cert_origin, key_origin, ca_origin;
  bool operator==(const TlsServerConfig&) const = default;
};

// TLS to a TCP downstream.
struct TlsClientConfig {
  bool enabled = false;
  bool verify = true;           // the downstream's certificate and name are checked
  std::string ca_file;          // empty: the system's CAs
  std::string server_name;      // SNI and the name verified; empty: the address's host
  std::string cert_file;        // a client certificate, when the downstream asks for one
  std::string key_file;
  std::string origin;
  std::string cert_origin, key_origin, ca_origin;
  bool operator==(const TlsClientConfig&) const = default;
};

// What /healthz calls healthy (docs/operations.md, "Health").
enum class HealthMode {
  serving,  // hopperd runs and its listeners are open, whatever the outputs do
  any,      // ... and at least one output delivers (or has nothing to deliver)
  all,      // ... and every output does
};
struct HealthConfig {
  HealthMode mode = HealthMode::any;
  // Not 0: an output whose oldest undelivered line is older than this does not count as
  // delivering, even while connected (a downstream too slow for its input).
  std::chrono::milliseconds max_backlog_age{0};
};

// What the Kafka output does with a line the brokers will never take (too large, topic
// not authorized or unknown): both count it; dead_letter also keeps it in a queue.
enum class OnReject { drop, dead_letter };

// A Kafka downstream: librdkafka's producer, fed from the output's queue.
struct KafkaConfig {
  std::string brokers;  // bootstrap.servers: "host:port,host:port"
  std::string topic;
  // 0: no key (librdkafka spreads the lines over partitions); N: the N-th field of the
  // line, 1-based, fields separated by spaces or tabs (lines without it get no key).
  unsigned key_field = 0;
  // librdkafka properties in the order they are set: hopperd's defaults and the values it
  // derives from the budgets first, then [output.librdkafka] (which may override them).
  std::vector<std::pair<std::string, std::string>> properties;
  OnReject on_reject = OnReject::drop;
  hopper::Options dead_letter;  // the dead-letter queue (directory empty unless dead_letter)
  std::string dead_letter_origin;
  std::string origin;  // "hopperd.toml:20: output[1]"
  // What librdkafka's own queue may hold (derived from max_memory_bytes unless set): small,
  // so that the backlog of an outage lives in the hopper queue, compressed and budgeted.
  std::uint64_t queue_bytes = 0;
  std::uint64_t queue_messages = 0;
};

// One downstream and its queue.
struct OutputConfig {
  std::string name;
  OutputType type = OutputType::tcp;
  KafkaConfig kafka;  // type == kafka
  Endpoint address;   // type == tcp
  TlsClientConfig tls;  // type == tcp
  hopper::Options queue;  // directory, budgets, full policy, sync; manual_commit is forced on
  std::string queue_origin;  // where queue_dir was set
  std::uint64_t batch_bytes = 64 << 10;     // bytes written per write() at most (about)
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds write_timeout{10000};
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10000};
  std::chrono::milliseconds commit_interval{200};
  // Lines already written are kept, up to this many bytes, and written again after a
  // reconnect: what the downstream's kernel had accepted but its process never read
  // (it was stopped) is not lost. 0 turns it off (then a restart of the downstream may
  // lose what was in flight; set 0 for non-idempotent receivers such as statsd counters).
  std::uint64_t replay_bytes = 4 << 20;

  // The same downstream, queue and behaviour (a reload keeps such an output running).
  bool same_as(const OutputConfig& other) const;
};

struct Config {
  std::string path;  // the file it came from

  // [input]
  std::vector<Endpoint> tcp;
  std::vector<Endpoint> udp;
  std::vector<Endpoint> tls;  // TCP listeners speaking TLS
  TlsServerConfig tls_server;  // their certificate, key and client CA
  std::size_t max_line_bytes = 4096;
  std::size_t max_tcp_clients = 1024;
  std::string max_tcp_clients_origin;
  // A TCP client that sends nothing for this long is disconnected (0: never), so that
  // silent clients cannot hold every slot of max_tcp_clients.
  std::chrono::milliseconds idle_timeout{300000};
  std::size_t udp_receive_buffer = 4 << 20;  // SO_RCVBUF asked for each UDP socket

  // [metrics]
  std::optional<Endpoint> metrics;

  // [log]
  std::string log_file;  // empty: stderr
  std::string log_level = "info";
  std::string log_origin;

  // [daemon]
  std::chrono::milliseconds shutdown_timeout{5000};  // for the egress to finish a write

  // [health]
  HealthConfig health;

  std::vector<OutputConfig> outputs;
};

// Parses `text` (named `path` in messages). invalid_argument naming the file, line and key:
// "hopperd.toml:12: output[1].when_full: expected one of block, fail, drop_oldest".
hopper::Result<Config> parse_config(std::string_view text, const std::string& path);
hopper::Result<Config> load_config(const std::string& path);

// A Status's message without its code ("io_error: mkdir /q: ..." -> "mkdir /q: ..."): what
// hopperd prints after the config key that caused it.
std::string plain(const hopper::Status& s);

// "64MiB" -> 67108864. Accepts B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (of 1024).
std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace hopperd
