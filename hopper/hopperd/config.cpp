#include "hopperd/config.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <fstream>
#include <set>
#include <sstream>

#include <librdkafka/rdkafka.h>
#include <toml++/toml.h>

namespace hopperd {
namespace {

using hopper::Errc;
using hopper::Status;

// Thrown inside the parser only, turned into a Status at the boundary: the walk over the
// TOML tree stays readable without a check after every key.
struct ConfigError {
  std::string message;
};

// Where in the file a node is, for messages. Immutable once built.
class Place {
 public:
  explicit Place(std::string file) : file_(std::move(file)) {}
  std::string at(const toml::source_region& src, const std::string& key) const {
    std::string s = file_;
    if (src.begin.line > 0) s += ":" + std::to_string(src.begin.line);
    return s + ": " + key;
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& key, const std::string& why) const {
    throw ConfigError{at(n.source(), key) + ": " + why};
  }

 private:
  std::string file_;
};

// A table whose keys are consumed one by one; what is left at the end is unknown (a typo).
// Not thread-safe: one per table while parsing.
class Keys {
 public:
  Keys(const toml::table& t, std::string prefix, const Place& place)
      : t_(t), prefix_(std::move(prefix)), place_(place) {}

  const toml::node* get(const std::string& key) {
    used_.insert(key);
    return t_.get(key);
  }
  std::string name(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  const Place& place() const { return place_; }
  const toml::table& table() const { return t_; }

  void reject_unknown() const {
    for (auto&& [k, v] : t_) {
      const std::string key(k.str());
      if (!used_.count(key)) place_.fail(v, name(key), "unknown key");
    }
  }

  std::optional<std::string> string(const std::string& key) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!n->is_string()) place_.fail(*n, name(key), "expected a string");
    return n->value<std::string>();
  }
  std::optional<std::int64_t> integer(const std::string& key, std::int64_t min, std::int64_t max) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!n->is_integer()) place_.fail(*n, name(key), "expected an integer");
    const std::int64_t v = *n->value<std::int64_t>();
    if (v < min || v > max)
      place_.fail(*n, name(key), "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                                     ", got " + std::to_string(v));
    return v;
  }
  // An integer of bytes, or a string with a unit ("64MiB").
  std::optional<std::uint64_t> size(const std::string& key, std::uint64_t min, std::uint64_t max) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    std::optional<std::uint64_t> v;
    if (n->is_integer()) {
      const std::int64_t i = *n->value<std::int64_t>();
      if (i >= 0) v = static_cast<std::uint64_t>(i);
    } else if (n->is_string()) {
      v = parse_size(*n->value<std::string>());
    } else {
      place_.fail(*n, name(key), "expected a size: an integer of bytes or a string such as \"64MiB\"");
    }
    if (!v)
      place_.fail(*n, name(key),
                  (n->is_string() ? "not a size: \"" + *n->value<std::string>() + "\"" : std::string("not a size: negative")) +
                      "; use bytes or a unit B, KiB, MiB, GiB, TiB, KB, MB, GB, TB");
    if (*v < min || *v > max)
      place_.fail(*n, name(key), "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                                     " bytes, got " + std::to_string(*v));
    return v;
  }
  std::optional<std::chrono::milliseconds> millis(const std::string& key, std::int64_t min, std::int64_t max) {
    auto v = integer(key, min, max);
    if (!v) return std::nullopt;
    return std::chrono::milliseconds(*v);
  }
  std::optional<bool> boolean(const std::string& key) {
    const toml::node* n = get(key);
    if (!n) return std::nullopt;
    if (!n->is_boolean()) place_.fail(*n, name(key), "expected true or false");
    return n->value<bool>();
  }
  const toml::node& node_of(const std::string& key) const { return *t_.get(key); }

 private:
  const toml::table& t_;
  std::string prefix_;
  const Place& place_;
  std::set<std::string> used_;
};

Endpoint parse_endpoint(const toml::node& n, const std::string& key, const Place& place, bool allow_port_zero) {
  if (!n.is_string()) place.fail(n, key, "expected a string \"host:port\"");
  const std::string text = *n.value<std::string>();
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    place.fail(n, key, "expected \"host:port\", got \"" + text + "\"");
  Endpoint e;
  e.host = text.substr(0, colon);
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
  const std::string port = text.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535 ||
      (value == 0 && !allow_port_zero))
    place.fail(n, key, "bad port in \"" + text + "\"");
  e.port = static_cast<std::uint16_t>(value);
  e.origin = place.at(n.source(), key);
  return e;
}

std::vector<Endpoint> parse_endpoints(Keys& keys, const std::string& key) {
  const toml::node* n = keys.get(key);
  std::vector<Endpoint> out;
  if (!n) return out;
  if (n->is_string()) {
    out.push_back(parse_endpoint(*n, keys.name(key), keys.place(), true));
    return out;
  }
  const toml::array* a = n->as_array();
  if (!a) keys.place().fail(*n, keys.name(key), "expected a list of \"host:port\" strings");
  for (std::size_t i = 0; i < a->size(); ++i)
    out.push_back(parse_endpoint(*a->get(i), keys.name(key) + "[" + std::to_string(i) + "]", keys.place(), true));
  return out;
}

// A queue directory, normalised, that no other output (or dead-letter queue) may use.
void claim_dir(const std::string& dir, const toml::node& n, const std::string& key, const Place& place,
               std::set<std::string>& dirs) {
  std::filesystem::path normal = std::filesystem::path(dir).lexically_normal();
  if (!normal.has_filename() && normal.has_parent_path() && normal != normal.root_path()) normal = normal.parent_path();
  if (!dirs.insert(normal.string()).second)
    place.fail(n, key, "\"" + dir + "\" is used by another output or dead-letter queue; each needs its own");
}

// "host:port,host:port", each optionally "PROTOCOL://host:port" as librdkafka allows.
bool valid_brokers(const std::string& text) {
  if (text.empty()) return false;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = text.find(',', start);
    std::string one = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!one.empty() && one.front() == ' ') one.erase(0, 1);
    while (!one.empty() && one.back() == ' ') one.pop_back();
    if (const auto scheme = one.find("://"); scheme != std::string::npos) one.erase(0, scheme + 3);
    const auto colon = one.rfind(':');
    if (colon == std::string::npos || colon == 0) return false;
    const std::string port = one.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535)
      return false;
    if (comma == std::string::npos) return true;
    start = comma + 1;
  }
}

// Kafka's rule for topic names.
bool valid_topic(const std::string& t) {
  if (t.empty() || t.size() > 249 || t == "." || t == "..") return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

// [output.librdkafka]: dotted keys may be written bare (compression.type = "zstd", which
// TOML reads as nested tables) or quoted ("compression.type" = "zstd"); both flatten to
// the property name. Values: strings, integers, floats, booleans.
void flatten_properties(const toml::table& t, const std::string& prefix, const std::string& key_prefix,
                        const Place& place, std::vector<std::pair<std::string, const toml::node*>>& out) {
  for (auto&& [k, v] : t) {
    const std::string name = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = v.as_table()) {
      flatten_properties(*sub, name, key_prefix, place, out);
      continue;
    }
    if (!v.is_string() && !v.is_integer() && !v.is_floating_point() && !v.is_boolean())
      place.fail(v, key_prefix + "." + name, "expected a string, a number or true/false");
    out.emplace_back(name, &v);
  }
}

std::string property_value(const toml::node& v) {
  if (v.is_string()) return *v.value<std::string>();
  if (v.is_integer()) return std::to_string(*v.value<std::int64_t>());
  if (v.is_boolean()) return *v.value<bool>() ? "true" : "false";
  std::ostringstream s;
  s << *v.value<double>();
  return s.str();
}

// Keys that only one output type understands.
const std::set<std::string> kTcpOnly{"address",        "batch_bytes",    "connect_timeout_ms", "write_timeout_ms",
                                     "backoff_initial_ms", "backoff_max_ms", "replay_bytes",     "tls",
                                     "tls_verify",     "tls_ca_file",    "tls_server_name",    "tls_cert_file",
                                     "tls_key_file"};

// A file that must exist and be readable now (a certificate, a key, a CA).
std::string readable_file(Keys& k, const std::string& key, std::string* origin = nullptr) {
  auto v = k.string(key);
  if (!v) return {};
  const toml::node& n = k.node_of(key);
  if (origin) *origin = k.place().at(n.source(), k.name(key));
  if (v->empty()) k.place().fail(n, k.name(key), "must not be empty");
  std::ifstream in(*v);
  if (!in) k.place().fail(n, k.name(key), "cannot read \"" + *v + "\": " + std::strerror(errno));
  return *v;
}
const std::set<std::string> kKafkaOnly{"brokers", "topic", "key", "on_reject", "dead_letter_dir",
                                       "dead_letter_max_bytes", "librdkafka"};

void parse_kafka(Keys& k, OutputConfig& o, const toml::table& t, const std::string& prefix, const Place& place,
                 std::set<std::string>& dirs) {
  KafkaConfig& kc = o.kafka;
  kc.origin = place.at(t.source(), prefix);
  auto brokers = k.string("brokers");
  if (!brokers) throw ConfigError{kc.origin + ": missing key \"brokers\" (\"host:port,host:port\" of the Kafka brokers)"};
  if (!valid_brokers(*brokers))
    place.fail(k.node_of("brokers"), k.name("brokers"), "expected \"host:port,host:port\", got \"" + *brokers + "\"");
  kc.brokers = *brokers;
  auto topic = k.string("topic");
  if (!topic) throw ConfigError{kc.origin + ": missing key \"topic\" (the Kafka topic the lines go to)"};
  if (!valid_topic(*topic))
    place.fail(k.node_of("topic"), k.name("topic"),
               "not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -): \"" + *topic + "\"");
  kc.topic = *topic;
  if (auto key = k.string("key")) {
    unsigned n = 0;
    const bool field = key->rfind("field:", 0) == 0;
    if (field) {
      const std::string digits = key->substr(6);
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) n = 0;
    }
    if (*key != "none" && (!field || n < 1 || n > 1024))
      place.fail(k.node_of("key"), k.name("key"),
                 "expected \"none\" or \"field:N\" (N from 1 to 1024: the N-th space-separated field); got \"" + *key +
                     "\"");
    kc.key_field = n;
  }
  if (auto v = k.string("on_reject")) {
    if (*v == "drop") kc.on_reject = OnReject::drop;
    else if (*v == "dead_letter") kc.on_reject = OnReject::dead_letter;
    else place.fail(k.node_of("on_reject"), k.name("on_reject"), "expected one of drop, dead_letter; got \"" + *v + "\"");
  }
  auto dl = k.string("dead_letter_dir");
  if (kc.on_reject == OnReject::dead_letter) {
    if (!dl || dl->empty())
      throw ConfigError{kc.origin + ": on_reject = \"dead_letter\" needs dead_letter_dir (a directory of its own for "
                                    "the rejected lines)"};
    claim_dir(*dl, k.node_of("dead_letter_dir"), k.name("dead_letter_dir"), place, dirs);
    kc.dead_letter.directory = *dl;
    kc.dead_letter_origin = place.at(k.node_of("dead_letter_dir").source(), k.name("dead_letter_dir"));
  } else if (dl) {
    place.fail(k.node_of("dead_letter_dir"), k.name("dead_letter_dir"), "only used with on_reject = \"dead_letter\"");
  }
  // The dead-letter queue: every line straight to disk (visible to `hopper dump` at once),
  // synced as the output's queue is; full is a drop, counted, never a stall.
  kc.dead_letter.max_memory_bytes = 1;
  kc.dead_letter.max_disk_bytes = 256 << 20;
  if (auto v = k.size("dead_letter_max_bytes", 1 << 20, 1ull << 50)) kc.dead_letter.max_disk_bytes = *v;
  kc.dead_letter.segment_bytes = std::min<std::uint64_t>(16 << 20, kc.dead_letter.max_disk_bytes);
  kc.dead_letter.page_bytes = 16 << 10;
  kc.dead_letter.when_full = hopper::FullPolicy::fail;

  // librdkafka's queue: a quarter of the memory budget, within [64 KiB, 8 MiB], and at
  // most 100,000 messages; lines beyond it wait in the hopper queue (memory, then disk).
  // A few round trips' worth is all throughput needs; more only spreads the lines in
  // flight over more memory than any cache holds (measured: 16 MiB was slower than 8).
  kc.queue_bytes = std::clamp<std::uint64_t>(o.queue.max_memory_bytes / 4, 64 << 10, 8 << 20);
  kc.queue_messages = std::clamp<std::uint64_t>(kc.queue_bytes / 32, 1000, 100000);
  kc.properties = {
      {"bootstrap.servers", kc.brokers},
      {"client.id", "hopperd-" + o.name},
      {"acks", "all"},
      {"enable.idempotence", "true"},
      // No local timeout: a line waits for the brokers as long as they are away (the
      // backlog behind it waits in the hopper queue); a stop purges it uncommitted.
      {"message.timeout.ms", "0"},
      {"queue.buffering.max.kbytes", std::to_string(kc.queue_bytes / 1024)},
      {"queue.buffering.max.messages", std::to_string(kc.queue_messages)},
      {"statistics.interval.ms", "1000"},
  };
  std::unique_ptr<rd_kafka_conf_t, decltype(&rd_kafka_conf_destroy)> conf(rd_kafka_conf_new(), &rd_kafka_conf_destroy);
  char err[512];
  for (const auto& [name, value] : kc.properties)
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
      throw ConfigError{kc.origin + ": librdkafka refuses hopperd's " + name + "=" + value + ": " + err};
  if (const toml::node* lib = k.get("librdkafka")) {
    const toml::table* lt = lib->as_table();
    if (!lt) place.fail(*lib, k.name("librdkafka"), "expected a table [output.librdkafka] of librdkafka properties");
    std::vector<std::pair<std::string, const toml::node*>> props;
    flatten_properties(*lt, "", k.name("librdkafka"), place, props);
    for (const auto& [name, node] : props) {
      const std::string key = k.name("librdkafka") + "." + name;
      if (name == "bootstrap.servers" || name == "metadata.broker.list")
        place.fail(*node, key, "set brokers = \"host:port,...\" instead");
      if (name == "transactional.id")
        place.fail(*node, key, "transactions are not used: hopperd commits its queue on each acknowledgement");
      const std::string value = property_value(*node);
      if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
        place.fail(*node, key, err);
      kc.properties.emplace_back(name, value);
    }
  }
  kc.dead_letter.sync = o.queue.sync;
  kc.dead_letter.sync_interval = o.queue.sync_interval;
  if (Status s = hopper::validate(kc.dead_letter); kc.on_reject == OnReject::dead_letter && !s.ok())
    throw ConfigError{kc.dead_letter_origin + ": dead-letter queue options: " + s.message()};
}

OutputConfig parse_output(const toml::table& t, std::size_t index, const Place& place, std::set<std::string>& names,
                          std::set<std::string>& dirs) {
  const std::string prefix = "output[" + std::to_string(index) + "]";
  Keys k(t, prefix, place);
  OutputConfig o;
  if (auto name = k.string("name")) {
    o.name = *name;
    const toml::node& n = k.node_of("name");
    if (o.name.empty() || o.name.find_first_of("\"\\\n ") != std::string::npos)
      place.fail(n, k.name("name"), "must be non-empty, without spaces, quotes or backslashes");
    if (!names.insert(o.name).second) place.fail(n, k.name("name"), "\"" + o.name + "\" is used twice");
  } else {
    o.name = "output" + std::to_string(index);
    names.insert(o.name);
  }

  if (auto type = k.string("type")) {
    if (*type == "tcp") o.type = OutputType::tcp;
    else if (*type == "kafka") o.type = OutputType::kafka;
    else place.fail(k.node_of("type"), k.name("type"), "expected one of tcp, kafka; got \"" + *type + "\"");
  }
  const bool kafka = o.type == OutputType::kafka;
  for (auto&& [key, v] : t) {
    const std::string name(key.str());
    if (kafka && kTcpOnly.count(name)) place.fail(v, k.name(name), "only for type = \"tcp\" (this output is \"kafka\")");
    if (!kafka && kKafkaOnly.count(name)) place.fail(v, k.name(name), "only for type = \"kafka\"");
  }
  if (!kafka) {
    const toml::node* addr = k.get("address");
    if (!addr) throw ConfigError{place.at(t.source(), prefix) + ": missing key \"address\" (\"host:port\" of the downstream)"};
    o.address = parse_endpoint(*addr, k.name("address"), place, false);
    o.tls.origin = place.at(t.source(), prefix);
    if (auto v = k.boolean("tls")) o.tls.enabled = *v;
    if (auto v = k.boolean("tls_verify")) o.tls.verify = *v;
    o.tls.ca_file = readable_file(k, "tls_ca_file", &o.tls.ca_origin);
    if (auto v = k.string("tls_server_name")) o.tls.server_name = *v;
    o.tls.cert_file = readable_file(k, "tls_cert_file", &o.tls.cert_origin);
    o.tls.key_file = readable_file(k, "tls_key_file", &o.tls.key_origin);
    if (o.tls.cert_file.empty() != o.tls.key_file.empty())
      throw ConfigError{o.tls.origin + ": tls_cert_file and tls_key_file go together (a client certificate and its key)"};
    if (!o.tls.enabled) {
      for (const char* key : {"tls_verify", "tls_ca_file", "tls_server_name", "tls_cert_file", "tls_key_file"})
        if (const toml::node* n = t.get(key)) place.fail(*n, k.name(key), "only used with tls = true");
    }
  }

  auto dir = k.string("queue_dir");
  if (!dir || dir->empty())
    throw ConfigError{place.at(dir ? k.node_of("queue_dir").source() : t.source(), prefix) +
                      ": missing key \"queue_dir\" (a directory of its own for this output's queue)"};
  o.queue.directory = *dir;
  o.queue_origin = place.at(k.node_of("queue_dir").source(), k.name("queue_dir"));
  claim_dir(*dir, k.node_of("queue_dir"), k.name("queue_dir"), place, dirs);

  constexpr std::uint64_t kMax = 1ull << 50;
  if (auto v = k.size("max_memory_bytes", 1, kMax)) o.queue.max_memory_bytes = *v;
  if (auto v = k.size("max_disk_bytes", 0, kMax)) o.queue.max_disk_bytes = *v;
  if (auto v = k.size("segment_bytes", 1, kMax)) o.queue.segment_bytes = *v;
  if (auto v = k.size("page_bytes", 1, 1u << 30)) o.queue.page_bytes = static_cast<std::uint32_t>(*v);
  if (auto v = k.integer("compression_level", -7, 22)) o.queue.compression_level = static_cast<int>(*v);
  if (auto v = k.integer("compression_threads", 0, 16)) o.queue.compression_threads = static_cast<std::uint32_t>(*v);
  if (auto v = k.string("when_full")) {
    if (*v == "block") o.queue.when_full = hopper::FullPolicy::block;
    else if (*v == "fail") o.queue.when_full = hopper::FullPolicy::fail;
    else if (*v == "drop_oldest") o.queue.when_full = hopper::FullPolicy::drop_oldest;
    else place.fail(k.node_of("when_full"), k.name("when_full"), "expected one of block, fail, drop_oldest; got \"" + *v + "\"");
  }
  if (auto v = k.string("sync")) {
    if (*v == "none") o.queue.sync = hopper::SyncPolicy::none;
    else if (*v == "interval") o.queue.sync = hopper::SyncPolicy::interval;
    else if (*v == "always") o.queue.sync = hopper::SyncPolicy::always;
    else place.fail(k.node_of("sync"), k.name("sync"), "expected one of none, interval, always; got \"" + *v + "\"");
  }
  if (auto v = k.millis("sync_interval_ms", 1, 3600000)) o.queue.sync_interval = *v;
  // Lines older than this when their turn comes are not delivered (0: never; at most ten years).
  if (auto v = k.millis("max_age_ms", 0, 10ll * 366 * 24 * 3600 * 1000)) o.queue.max_age = *v;
  o.queue.manual_commit = true;

  if (auto v = k.size("batch_bytes", 1, 64 << 20)) o.batch_bytes = *v;
  if (auto v = k.millis("connect_timeout_ms", 1, 600000)) o.connect_timeout = *v;
  if (auto v = k.millis("write_timeout_ms", 1, 600000)) o.write_timeout = *v;
  if (auto v = k.millis("backoff_initial_ms", 1, 600000)) o.backoff_initial = *v;
  if (auto v = k.millis("backoff_max_ms", 1, 3600000)) o.backoff_max = *v;
  if (o.backoff_max < o.backoff_initial)
    throw ConfigError{place.at(t.source(), prefix) + ": backoff_max_ms is smaller than backoff_initial_ms"};
  if (auto v = k.millis("commit_interval_ms", 0, 600000)) o.commit_interval = *v;
  if (auto v = k.size("replay_bytes", 0, 1ull << 32)) o.replay_bytes = *v;
  if (kafka) parse_kafka(k, o, t, prefix, place, dirs);
  k.reject_unknown();

  // The library's own checks, with the key that fixes them.
  if (Status s = hopper::validate(o.queue); !s.ok())
    throw ConfigError{place.at(t.source(), prefix) + ": queue options: " + s.message()};
  return o;
}

Config parse(const toml::table& root, const std::string& path) {
  Place place(path);
  Config c;
  c.path = path;
  Keys top(root, "", place);

  if (const toml::node* n = top.get("input")) {
    const toml::table* t = n->as_table();
    if (!t) place.fail(*n, "input", "expected a table [input]");
    Keys k(*t, "input", place);
    c.tcp = parse_endpoints(k, "tcp");
    c.udp = parse_endpoints(k, "udp");
    c.tls = parse_endpoints(k, "tls");
    if (auto v = k.size("max_line_bytes", 16, 16 << 20)) c.max_line_bytes = *v;
    if (auto v = k.integer("max_tcp_clients", 1, 1000000)) {
      c.max_tcp_clients = static_cast<std::size_t>(*v);
      c.max_tcp_clients_origin = place.at(k.node_of("max_tcp_clients").source(), "input.max_tcp_clients");
    }
    if (auto v = k.size("udp_receive_buffer", 4096, 1 << 30)) c.udp_receive_buffer = *v;
    if (auto v = k.millis("idle_timeout_ms", 0, 86400000)) c.idle_timeout = *v;
    c.tls_server.cert_file = readable_file(k, "tls_cert_file", &c.tls_server.cert_origin);
    c.tls_server.key_file = readable_file(k, "tls_key_file", &c.tls_server.key_origin);
    c.tls_server.client_ca_file = readable_file(k, "tls_client_ca_file", &c.tls_server.ca_origin);
    c.tls_server.origin = place.at(t->source(), "input");
    if (!c.tls.empty() && (c.tls_server.cert_file.empty() || c.tls_server.key_file.empty()))
      place.fail(k.node_of("tls"), "input.tls", "TLS listeners need input.tls_cert_file and input.tls_key_file");
    if (c.tls.empty())
      for (const char* key : {"tls_cert_file", "tls_key_file", "tls_client_ca_file"})
        if (const toml::node* f = t->get(key)) place.fail(*f, std::string("input.") + key, "only used with input.tls listeners");
    k.reject_unknown();
  }
  if (c.tcp.empty() && c.udp.empty() && c.tls.empty())
    throw ConfigError{path + ": input: no listener; set input.tcp, input.tls and/or input.udp to \"host:port\" lists"};

  if (const toml::node* n = top.get("metrics")) {
    const toml::table* t = n->as_table();
    if (!t) place.fail(*n, "metrics", "expected a table [metrics]");
    Keys k(*t, "metrics", place);
    if (const toml::node* l = k.get("listen")) c.metrics = parse_endpoint(*l, "metrics.listen", place, true);
    k.reject_unknown();
  }
  if (const toml::node* n = top.get("log")) {
    const toml::table* t = n->as_table();
    if (!t) place.fail(*n, "log", "expected a table [log]");
    Keys k(*t, "log", place);
    c.log_file = k.string("file").value_or("");
    if (auto v = k.string("level")) {
      static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical", "off"};
      if (!levels.count(*v))
        place.fail(k.node_of("level"), "log.level", "expected one of trace, debug, info, warn, error, critical, off");
      c.log_level = *v;
      c.log_origin = place.at(k.node_of("level").source(), "log.level");
    }
    k.reject_unknown();
  }
  if (const toml::node* n = top.get("daemon")) {
    const toml::table* t = n->as_table();
    if (!t) place.fail(*n, "daemon", "expected a table [daemon]");
    Keys k(*t, "daemon", place);
    if (auto v = k.millis("shutdown_timeout_ms", 1, 600000)) c.shutdown_timeout = *v;
    k.reject_unknown();
  }

  if (const toml::node* n = top.get("health")) {
    const toml::table* t = n->as_table();
    if (!t) place.fail(*n, "health", "expected a table [health]");
    Keys k(*t, "health", place);
    if (auto v = k.string("ready")) {
      if (*v == "serving") c.health.mode = HealthMode::serving;
      else if (*v == "any") c.health.mode = HealthMode::any;
      else if (*v == "all") c.health.mode = HealthMode::all;
      else place.fail(k.node_of("ready"), "health.ready", "expected one of any, all, serving; got \"" + *v + "\"");
    }
    if (auto v = k.millis("max_backlog_age_ms", 0, 30LL * 86400000)) c.health.max_backlog_age = *v;
    k.reject_unknown();
  }

  const toml::node* outs = top.get("output");
  if (!outs) throw ConfigError{path + ": no [[output]]: hopperd needs at least one downstream"};
  const toml::array* arr = outs->as_array();
  if (!arr || !arr->is_array_of_tables()) place.fail(*outs, "output", "expected [[output]] tables");
  if (arr->size() > 32) place.fail(*outs, "output", "at most 32 outputs, got " + std::to_string(arr->size()));
  std::set<std::string> names, dirs;
  for (std::size_t i = 0; i < arr->size(); ++i)
    c.outputs.push_back(parse_output(*arr->get(i)->as_table(), i, place, names, dirs));
  top.reject_unknown();
  return c;
}

}  // namespace

bool OutputConfig::same_as(const OutputConfig& o) const {
  const hopper::Options& a = queue;
  const hopper::Options& b = o.queue;
  const bool same_queue = a.directory == b.directory && a.max_memory_bytes == b.max_memory_bytes &&
                          a.max_disk_bytes == b.max_disk_bytes && a.segment_bytes == b.segment_bytes &&
                          a.page_bytes == b.page_bytes && a.compression_level == b.compression_level &&
                          a.compression_threads == b.compression_threads &&
                          a.when_full == b.when_full && a.sync == b.sync && a.sync_interval == b.sync_interval &&
                          a.max_age == b.max_age;
  const KafkaConfig& k = kafka;
  const KafkaConfig& l = o.kafka;
  const bool same_kafka = k.brokers == l.brokers && k.topic == l.topic && k.key_field == l.key_field &&
                          k.properties == l.properties && k.on_reject == l.on_reject &&
                          k.dead_letter.directory == l.dead_letter.directory &&
                          k.dead_letter.max_disk_bytes == l.dead_letter.max_disk_bytes;
  auto plain = [](TlsClientConfig t) {
    t.origin.clear();
    t.cert_origin.clear();
    t.key_origin.clear();
    t.ca_origin.clear();
    return t;
  };
  return name == o.name && type == o.type && same_queue && same_kafka && address.same(o.address) &&
         plain(tls) == plain(o.tls) && batch_bytes == o.batch_bytes && connect_timeout == o.connect_timeout &&
         write_timeout == o.write_timeout && backoff_initial == o.backoff_initial && backoff_max == o.backoff_max &&
         commit_interval == o.commit_interval && replay_bytes == o.replay_bytes;
}

std::string plain(const hopper::Status& s) {
  std::string m = s.message();
  // The code says nothing the text does not for these two; "locked: ..." and the like
  // keep theirs.
  if (s.code() != hopper::Errc::io_error && s.code() != hopper::Errc::invalid_argument) return m;
  const std::string code = std::string(hopper::to_string(s.code())) + ": ";
  if (m.compare(0, code.size(), code) == 0) m.erase(0, code.size());
  return m;
}

std::string Endpoint::text() const {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end == text.data()) return std::nullopt;
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  struct Unit {
    std::string_view name;
    std::uint64_t factor;
  };
  static constexpr Unit units[] = {{"", 1},          {"B", 1},
                                   {"KB", 1000},     {"MB", 1000 * 1000},   {"GB", 1000ull * 1000 * 1000},
                                   {"TB", 1000ull * 1000 * 1000 * 1000},
                                   {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
  for (const Unit& u : units) {
    if (unit != u.name) continue;
    if (n > UINT64_MAX / u.factor) return std::nullopt;
    return n * u.factor;
  }
  return std::nullopt;
}

hopper::Result<Config> parse_config(std::string_view text, const std::string& path) {
  try {
    toml::table root = toml::parse(text, path);
    return parse(root, path);
  } catch (const toml::parse_error& e) {
    std::string where = path;
    if (e.source().begin.line > 0)
      where += ":" + std::to_string(e.source().begin.line) + ":" + std::to_string(e.source().begin.column);
    return Status(Errc::invalid_argument, where + ": " + std::string(e.description()));
  } catch (const ConfigError& e) {
    return Status(Errc::invalid_argument, e.message);
  }
}

hopper::Result<Config> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("open config", path, errno);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IoError("read config", path, errno);
  return parse_config(text.str(), path);
}

}  // namespace hopperd
