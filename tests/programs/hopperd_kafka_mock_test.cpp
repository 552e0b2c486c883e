// hopperd's Kafka output against librdkafka's mock cluster, in this process: the orders of
// events the end-to-end test (hopperd_kafka.py) meets only by chance, made to happen.
#include <gtest/gtest.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hopperd/config.hpp"
#include "hopperd/counters.hpp"
#include "hopperd/egress.hpp"
#include "test_util.hpp"

namespace hopperd {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The output's log, kept for the test to wait on.
class LogCapture : public spdlog::sinks::base_sink<std::mutex> {
 public:
  bool contains(const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const std::string& l : lines_)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& m) override { lines_.emplace_back(m.payload.data(), m.payload.size()); }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

struct Kafka {
  rd_kafka_t* rk = nullptr;
  explicit Kafka(rd_kafka_type_t type, const std::vector<std::pair<std::string, std::string>>& props = {}) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    for (const auto& [k, v] : props) EXPECT_EQ(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err), RD_KAFKA_CONF_OK) << err;
    rk = rd_kafka_new(type, conf, err, sizeof err);
    EXPECT_NE(rk, nullptr) << err;
  }
  ~Kafka() {
    if (rk) rd_kafka_destroy(rk);
  }
  Kafka(const Kafka&) = delete;
  Kafka& operator=(const Kafka&) = delete;
};

// Every message of partition 0 of `topic`, in offset order (waits up to 30 s for `want`).
std::vector<std::string> read_partition(const std::string& bootstraps, const std::string& topic, std::size_t want) {
  Kafka c(RD_KAFKA_CONSUMER, {{"bootstrap.servers", bootstraps}, {"group.id", "t"}, {"log_level", "3"}});
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, topic.c_str(), 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(c.rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  std::vector<std::string> got;
  const auto deadline = Clock::now() + 30s;
  while (got.size() < want && Clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(c.rk, 200);
    if (!m) continue;
    if (!m->err) got.emplace_back(static_cast<const char*>(m->payload), m->len);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(c.rk);
  return got;
}

template <class F>
bool wait_until(F done, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// The lines of one key time out inside librdkafka while the brokers are away (the user set
// message.timeout.ms); later lines of that key, produced after them, have not timed out yet
// when a broker comes back. Those must not reach the topic ahead of the timed-out lines
// produced again: each key's order holds. (librdkafka itself skips the timed-out lines, bumps
// the idempotent producer's epoch and sends the later ones as soon as it can.)
TEST(KafkaEgress, LinesThatTimedOutAreNotOvertakenByLaterLinesOfTheirKey) {
  Kafka host(RD_KAFKA_PRODUCER, {{"log_level", "3"}});
  struct Cluster {
    rd_kafka_mock_cluster_t* mc;
    ~Cluster() {
      if (mc) rd_kafka_mock_cluster_destroy(mc);  // before its host
    }
  } mock{rd_kafka_mock_cluster_new(host.rk, 1)};
  rd_kafka_mock_cluster_t* cluster = mock.mc;
  ASSERT_NE(cluster, nullptr);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(cluster);
  hopper::test::TempDir dir;
  auto config = parse_config("[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\nname = \"k\"\ntype = \"kafka\"\n"
                             "brokers = \"" + bootstraps + "\"\ntopic = \"t\"\nkey = \"field:1\"\nqueue_dir = \"" +
                                 dir.path().string() + "\"\n[output.librdkafka]\nmessage.timeout.ms = 3000\n"
                                 "statistics.interval.ms = 100\n"
                                 "reconnect.backoff.max.ms = 200\nlog_level = 3\n",
                             "t.toml");
  ASSERT_TRUE(config.ok()) << config.status().message();
  auto sink = std::make_shared<LogCapture>();
  auto log = std::make_shared<spdlog::logger>("k", sink);
  auto out = Output::open(config->outputs.at(0), log);
  ASSERT_TRUE(out.ok()) << out.status().message();
  OutputCounters& counters = *(*out)->shared_counters();
  (*out)->start();
  auto send = [&](const std::string& tag, int n) {
    std::vector<std::string> lines;
    for (int i = 0; i < n; ++i) lines.push_back("key " + tag + "-" + std::to_string(1000 + i));
    std::size_t taken = 0;
    ASSERT_TRUE((*out)->try_send_many(lines, taken).ok());
    ASSERT_EQ(taken, lines.size());
  };

  send("a", 1);  // the producer has its id and the partition's leader before the outage
  ASSERT_TRUE(wait_until([&] { return read(counters.delivered) == 1; }, 20s)) << "the first line acknowledged";
  rd_kafka_mock_broker_set_down(cluster, 1);
  std::this_thread::sleep_for(200ms);
  send("b", 50);  // times out in librdkafka 3 s from now (it looks once a second)
  ASSERT_TRUE(wait_until([&] { return read(counters.lib_queue_messages) == 50; }, 5s)) << "the first wave produced";
  std::this_thread::sleep_for(2s);
  send("c", 50);  // would time out 2 s after the first wave
  ASSERT_TRUE(wait_until([&] { return read(counters.lib_queue_messages) == 100; }, 5s)) << "the second wave produced";
  // The first wave times out: librdkafka's statistics (every 100 ms here) show it gone from
  // its queue, or hopperd produces it again.
  ASSERT_TRUE(wait_until([&] { return read(counters.lib_queue_messages) < 100 || read(counters.retried) > 0; }, 10s))
      << "the first wave timed out";
  rd_kafka_mock_broker_set_up(cluster, 1);  // the second wave has not timed out yet

  ASSERT_TRUE(wait_until([&] { return read(counters.delivered) == 101; }, 30s))
      << "every line acknowledged once the broker is back; delivered " << read(counters.delivered);
  EXPECT_GE(read(counters.retried), 50u) << "the timed-out lines were produced again";
  const std::vector<std::string> got = read_partition(bootstraps, "t", 101);
  (*out)->request_stop(Clock::now() + 5s);
  (*out)->finish();

  // Each line once (the ones that timed out were never written), in the order sent.
  std::vector<std::string> want{"key a-1000"};
  for (const char* tag : {"b", "c"})
    for (int i = 0; i < 50; ++i) want.push_back(std::string("key ") + tag + "-" + std::to_string(1000 + i));
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace hopperd
