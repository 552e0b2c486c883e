// hopperd's Kafka output without a broker: its config (every error names the file, line and
// key), the key of a line, and the window that decides how far the queue may be committed.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "hopperd/config.hpp"
#include "hopperd/kafka.hpp"

namespace hopperd {
namespace {

const std::string kHead = "[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\n";  // [[output]] is line 3

std::string error_of(const std::string& output_body) {
  auto c = parse_config(kHead + output_body, "t.toml");
  if (c.ok()) return "(parsed)";
  EXPECT_EQ(c.status().code(), hopper::Errc::invalid_argument);
  return c.status().message();
}

const std::string kKafka = "type = \"kafka\"\nbrokers = \"127.0.0.1:9092,127.0.0.1:9093\"\ntopic = \"metrics\"\n"
                           "queue_dir = \"/q\"\n";  // lines 4-7

std::map<std::string, std::string> properties(const KafkaConfig& k) {
  std::map<std::string, std::string> m;
  for (const auto& [name, value] : k.properties) m[name] = value;  // later ones win, as in librdkafka
  return m;
}

TEST(KafkaConfig, DefaultsAndDerivedQueue) {
  auto c = parse_config(kHead + kKafka + "max_memory_bytes = \"64MiB\"\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  const OutputConfig& o = c->outputs.at(0);
  EXPECT_EQ(o.type, OutputType::kafka);
  EXPECT_EQ(o.kafka.topic, "metrics");
  EXPECT_EQ(o.kafka.key_field, 0u);
  EXPECT_EQ(o.kafka.on_reject, OnReject::drop);
  EXPECT_TRUE(o.queue.manual_commit);
  auto p = properties(o.kafka);
  EXPECT_EQ(p["bootstrap.servers"], "127.0.0.1:9092,127.0.0.1:9093");
  EXPECT_EQ(p["acks"], "all");
  EXPECT_EQ(p["enable.idempotence"], "true");
  EXPECT_EQ(p["message.timeout.ms"], "0");
  // A quarter of the memory budget, at most 8 MiB and 100,000 messages: librdkafka holds
  // little, the hopper queue the rest.
  EXPECT_EQ(p["queue.buffering.max.kbytes"], std::to_string(8 << 10));
  EXPECT_EQ(p["queue.buffering.max.messages"], "100000");
  auto small = parse_config(kHead + kKafka + "max_memory_bytes = \"1MiB\"\n", "t.toml");
  ASSERT_TRUE(small.ok()) << small.status().message();
  EXPECT_EQ(small->outputs[0].kafka.queue_bytes, 256u << 10);
  EXPECT_EQ(properties(small->outputs[0].kafka)["queue.buffering.max.messages"], "8192");
}

TEST(KafkaConfig, PassThroughOverridesAndDottedKeys) {
  auto c = parse_config(kHead + kKafka + "key = \"field:2\"\n[output.librdkafka]\ncompression.type = \"zstd\"\n"
                                         "\"linger.ms\" = 20\nacks = 1\nenable.idempotence = false\n",
                        "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  auto p = properties(c->outputs[0].kafka);
  EXPECT_EQ(c->outputs[0].kafka.key_field, 2u);
  EXPECT_EQ(p["compression.type"], "zstd");
  EXPECT_EQ(p["linger.ms"], "20");
  EXPECT_EQ(p["acks"], "1");
  EXPECT_EQ(p["enable.idempotence"], "false");
}

TEST(KafkaConfig, ErrorsNameKeyAndLine) {
  EXPECT_NE(error_of("type = \"kafkaa\"\n").find("t.toml:4: output[0].type: expected one of tcp, kafka"),
            std::string::npos);
  EXPECT_NE(error_of(kKafka + "key = \"field:0\"\n").find("t.toml:8: output[0].key: expected \"none\" or \"field:N\""),
            std::string::npos);
  EXPECT_NE(error_of(kKafka + "key = \"metric\"\n").find("t.toml:8: output[0].key"), std::string::npos);
  EXPECT_NE(error_of(kKafka + "on_reject = \"ignore\"\n").find("t.toml:8: output[0].on_reject: expected one of drop, "
                                                               "dead_letter"),
            std::string::npos);
  EXPECT_NE(error_of(kKafka + "on_reject = \"dead_letter\"\n").find("t.toml:3: output[0]: on_reject = \"dead_letter\" "
                                                                    "needs dead_letter_dir"),
            std::string::npos);
  EXPECT_NE(error_of(kKafka + "on_reject = \"dead_letter\"\ndead_letter_dir = \"/q/\"\n")
                .find("t.toml:9: output[0].dead_letter_dir: \"/q/\" is used by another output"),
            std::string::npos);
  EXPECT_NE(error_of(kKafka + "dead_letter_dir = \"/dl\"\n").find("t.toml:8: output[0].dead_letter_dir: only used with"),
            std::string::npos);
  EXPECT_NE(error_of("type = \"kafka\"\nbrokers = \"localhost\"\ntopic = \"t\"\nqueue_dir = \"/q\"\n")
                .find("t.toml:5: output[0].brokers: expected \"host:port,host:port\""),
            std::string::npos);
  EXPECT_NE(error_of("type = \"kafka\"\nbrokers = \"h:1\"\ntopic = \"a b\"\nqueue_dir = \"/q\"\n")
                .find("t.toml:6: output[0].topic: not a Kafka topic name"),
            std::string::npos);
  EXPECT_NE(error_of("type = \"kafka\"\ntopic = \"t\"\nqueue_dir = \"/q\"\n").find("t.toml:3: output[0]: missing key "
                                                                                  "\"brokers\""),
            std::string::npos);
  EXPECT_NE(error_of("type = \"kafka\"\nbrokers = \"h:1\"\nqueue_dir = \"/q\"\n").find("missing key \"topic\""),
            std::string::npos);
}

TEST(KafkaConfig, KeysOfTheOtherType) {
  EXPECT_NE(error_of(kKafka + "address = \"127.0.0.1:2\"\n").find("t.toml:8: output[0].address: only for type = \"tcp\""),
            std::string::npos);
  EXPECT_NE(error_of(kKafka + "replay_bytes = 0\n").find("t.toml:8: output[0].replay_bytes: only for type"),
            std::string::npos);
  EXPECT_NE(error_of("address = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\ntopic = \"t\"\n")
                .find("t.toml:6: output[0].topic: only for type = \"kafka\""),
            std::string::npos);
}

TEST(KafkaConfig, LibrdkafkaRefusalsNameThePropertyAndLine) {
  std::string e = error_of(kKafka + "[output.librdkafka]\nlinger.msec = 5\n");
  EXPECT_NE(e.find("t.toml:9: output[0].librdkafka.linger.msec: "), std::string::npos) << e;
  EXPECT_NE(e.find("No such configuration property"), std::string::npos) << e;
  e = error_of(kKafka + "[output.librdkafka]\n\"compression.type\" = \"brotli\"\n");
  EXPECT_NE(e.find("t.toml:9: output[0].librdkafka.compression.type: "), std::string::npos) << e;
  e = error_of(kKafka + "[output.librdkafka]\nacks = [1]\n");
  EXPECT_NE(e.find("t.toml:9: output[0].librdkafka.acks: expected a string, a number or true/false"), std::string::npos)
      << e;
  e = error_of(kKafka + "[output.librdkafka]\nbootstrap.servers = \"h:1\"\n");
  EXPECT_NE(e.find("t.toml:9: output[0].librdkafka.bootstrap.servers: set brokers"), std::string::npos) << e;
  e = error_of(kKafka + "librdkafka = 5\n");
  EXPECT_NE(e.find("t.toml:8: output[0].librdkafka: expected a table"), std::string::npos) << e;
}

TEST(LineKey, Fields) {
  EXPECT_EQ(line_key("cpu.load 0.5 1700000000", 1).value(), "cpu.load");
  EXPECT_EQ(line_key("cpu.load 0.5 1700000000", 3).value(), "1700000000");
  EXPECT_EQ(line_key("  a \t b  ", 2).value(), "b");
  EXPECT_FALSE(line_key("cpu.load 0.5", 3).has_value());
  EXPECT_FALSE(line_key("", 1).has_value());
  EXPECT_FALSE(line_key("   ", 1).has_value());
  EXPECT_FALSE(line_key("a b", 0).has_value());
}

using State = AckWindow::State;
const auto kNow = std::chrono::steady_clock::time_point{};

TEST(AckWindow, CommitsOnlyThroughTheFirstUnsettledLine) {
  AckWindow w;
  const auto a = w.push(10, "a", kNow);
  const auto b = w.push(11, "b", kNow);
  const auto c = w.push(12, "c", kNow);
  EXPECT_EQ(w.outstanding(), 3u);
  EXPECT_TRUE(w.settle(c, State::done));  // reports come out of order (other partitions)
  EXPECT_FALSE(w.pop_settled().has_value());
  EXPECT_TRUE(w.settle(a, State::done));
  EXPECT_EQ(w.pop_settled().value(), 10u);
  EXPECT_FALSE(w.pop_settled().has_value());
  EXPECT_TRUE(w.settle(b, State::done));
  EXPECT_EQ(w.pop_settled().value(), 12u);
  EXPECT_TRUE(w.empty());
  EXPECT_FALSE(w.settle(a, State::done));  // gone: an unknown id
  EXPECT_EQ(w.next_id(), c + 1);
}

TEST(AckWindow, RetriesAreProducedAgainInOrder) {
  AckWindow w;
  const auto a = w.push(1, "a", kNow);
  const auto b = w.push(2, "b", kNow);
  const auto c = w.push(3, "c", kNow);
  w.settle(b, State::retry);
  w.settle(a, State::done);
  w.settle(b, State::done);  // a report for a line not in flight is ignored
  EXPECT_EQ(w.find(b)->state, State::retry);
  w.fail_outstanding();  // the producer is replaced: c comes back too
  EXPECT_EQ(w.outstanding(), 0u);
  EXPECT_EQ(w.retries(), 2u);
  EXPECT_EQ(w.pop_settled().value(), 1u);
  EXPECT_EQ(w.next_retry(w.first_id()).value(), b);
  w.resend(b);
  EXPECT_EQ(w.next_retry(b + 1).value(), c);
  w.resend(c);
  EXPECT_FALSE(w.next_retry(c + 1).has_value());
  EXPECT_EQ(w.outstanding(), 2u);
  w.settle(c, State::done);
  w.settle(b, State::done);
  EXPECT_EQ(w.pop_settled().value(), 3u);
  EXPECT_EQ(w.retries(), 0u);
}

TEST(AckWindow, RejectedLinesAreSettled) {
  AckWindow w;
  w.push(5, "too large", kNow, State::done);
  const auto b = w.push(6, "b", kNow);
  EXPECT_EQ(w.outstanding(), 1u);
  EXPECT_EQ(w.pop_settled().value(), 5u);
  EXPECT_EQ(w.oldest()->line, "b");
  w.settle(b, State::done);
  EXPECT_EQ(w.pop_settled().value(), 6u);
  EXPECT_EQ(w.oldest(), nullptr);
}

}  // namespace
}  // namespace hopperd
