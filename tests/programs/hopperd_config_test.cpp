// hopperd's config file: what it accepts, and that every error names the file, line and key.
#include <gtest/gtest.h>

#include <string>

#include "hopperd/config.hpp"

namespace hopperd {
namespace {

const char* kGood = R"(# a full config
[log]
level = "debug"

[input]
tcp = ["127.0.0.1:2003", "[::1]:0"]
udp = "127.0.0.1:8125"
max_line_bytes = "8KiB"

[metrics]
listen = "127.0.0.1:0"

[daemon]
shutdown_timeout_ms = 3000

[[output]]
name = "carbon"
address = "127.0.0.1:2004"
queue_dir = "/var/lib/hopperd/carbon"
max_memory_bytes = "64MiB"
max_disk_bytes = 10000000000
segment_bytes = "16MiB"
when_full = "fail"
replay_bytes = 0

[[output]]
address = "localhost:2005"
queue_dir = "/var/lib/hopperd/second"
)";

std::string error_of(const std::string& text) {
  auto c = parse_config(text, "t.toml");
  if (c.ok()) return "(parsed)";
  EXPECT_EQ(c.status().code(), hopper::Errc::invalid_argument);
  return c.status().message();
}

TEST(Config, ParsesEverySection) {
  auto c = parse_config(kGood, "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->log_level, "debug");
  ASSERT_EQ(c->tcp.size(), 2u);
  EXPECT_EQ(c->tcp[0].host, "127.0.0.1");
  EXPECT_EQ(c->tcp[0].port, 2003);
  EXPECT_EQ(c->tcp[1].host, "::1");
  EXPECT_EQ(c->tcp[1].text(), "[::1]:0");
  EXPECT_NE(c->tcp[0].origin.find("t.toml:6: input.tcp[0]"), std::string::npos) << c->tcp[0].origin;
  ASSERT_EQ(c->udp.size(), 1u);
  EXPECT_EQ(c->udp[0].port, 8125);
  EXPECT_EQ(c->max_line_bytes, 8192u);
  ASSERT_TRUE(c->metrics.has_value());
  EXPECT_EQ(c->shutdown_timeout, std::chrono::milliseconds(3000));
  ASSERT_EQ(c->outputs.size(), 2u);
  const OutputConfig& o = c->outputs[0];
  EXPECT_EQ(o.name, "carbon");
  EXPECT_EQ(o.address.port, 2004);
  EXPECT_EQ(o.queue.directory, "/var/lib/hopperd/carbon");
  EXPECT_EQ(o.queue.max_memory_bytes, 64u << 20);
  EXPECT_EQ(o.queue.max_disk_bytes, 10000000000u);
  EXPECT_EQ(o.queue.when_full, hopper::FullPolicy::fail);
  EXPECT_TRUE(o.queue.manual_commit);
  EXPECT_EQ(o.replay_bytes, 0u);
  EXPECT_EQ(c->outputs[1].name, "output1");
  EXPECT_EQ(c->outputs[1].queue.when_full, hopper::FullPolicy::block);
}

TEST(Config, SyntaxErrorNamesLine) {
  const std::string e = error_of("[input]\ntcp = [\"127.0.0.1:1\"\n[[output]]\n");
  EXPECT_NE(e.find("t.toml:"), std::string::npos) << e;
  EXPECT_TRUE(e.find("t.toml:2") != std::string::npos || e.find("t.toml:3") != std::string::npos) << e;
}

TEST(Config, UnknownKeyNamesKeyAndLine) {
  const std::string e = error_of(
      "[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\nmax_memroy_bytes = 5\n");
  EXPECT_NE(e.find("t.toml:6: output[0].max_memroy_bytes: unknown key"), std::string::npos) << e;
}

TEST(Config, BadPolicyNamesKeyAndLine) {
  const std::string e = error_of(
      "[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\nwhen_full = \"sometimes\"\n");
  EXPECT_NE(e.find("t.toml:6: output[0].when_full"), std::string::npos) << e;
  EXPECT_NE(e.find("block"), std::string::npos) << e;
}

TEST(Config, MaxAgeIsAnOutputsQueueOption) {
  const std::string base = "[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n";
  auto c = parse_config(base + "max_age_ms = 3600000\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->outputs[0].queue.max_age, std::chrono::hours(1));
  auto off = parse_config(base, "t.toml");
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->outputs[0].queue.max_age.count(), 0) << "off unless set";
  EXPECT_FALSE(c->outputs[0].same_as(off->outputs[0])) << "a changed age reopens the queue on reload";
  const std::string e = error_of(base + "max_age_ms = -1\n");
  EXPECT_NE(e.find("t.toml:6: output[0].max_age_ms"), std::string::npos) << e;
}

TEST(Config, CompressionThreadsIsAnOutputsQueueOption) {
  const std::string base = "[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n";
  auto c = parse_config(base + "compression_threads = 2\n", "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->outputs[0].queue.compression_threads, 2u);
  auto off = parse_config(base, "t.toml");
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->outputs[0].queue.compression_threads, 0u) << "none unless asked";
  EXPECT_FALSE(c->outputs[0].same_as(off->outputs[0])) << "a changed count reopens the queue on reload";
  const std::string e = error_of(base + "compression_threads = 17\n");
  EXPECT_NE(e.find("t.toml:6: output[0].compression_threads"), std::string::npos) << e;
}

TEST(Config, BadSizeAndBadPort) {
  EXPECT_NE(error_of("[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n"
                     "max_memory_bytes = \"lots\"\n")
                .find("t.toml:6: output[0].max_memory_bytes: not a size"),
            std::string::npos);
  EXPECT_NE(error_of("[input]\ntcp = \"127.0.0.1:99999\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n")
                .find("t.toml:2: input.tcp: bad port"),
            std::string::npos);
  EXPECT_NE(error_of("[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:0\"\nqueue_dir = \"/q\"\n")
                .find("output[0].address: bad port"),
            std::string::npos);
  EXPECT_NE(error_of("[input]\ntcp = 2003\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n")
                .find("t.toml:2: input.tcp: expected a list"),
            std::string::npos);
}

TEST(Config, MissingPieces) {
  EXPECT_NE(error_of("[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n").find("no listener"), std::string::npos);
  EXPECT_NE(error_of("[input]\ntcp = \"127.0.0.1:1\"\n").find("no [[output]]"), std::string::npos);
  EXPECT_NE(error_of("[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\nqueue_dir = \"/q\"\n").find("t.toml:3: output[0]: missing key \"address\""),
            std::string::npos);
  EXPECT_NE(error_of("[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\n").find("missing key \"queue_dir\""),
            std::string::npos);
}

TEST(Config, OutputsNeedTheirOwnQueueAndName) {
  const std::string two = "[input]\ntcp = \"127.0.0.1:1\"\n"
                          "[[output]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n"
                          "[[output]]\nname = \"b\"\naddress = \"127.0.0.1:3\"\nqueue_dir = \"/q/\"\n";
  EXPECT_NE(error_of(two).find("t.toml:10: output[1].queue_dir"), std::string::npos) << error_of(two);
  const std::string same = "[input]\ntcp = \"127.0.0.1:1\"\n"
                           "[[output]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q1\"\n"
                           "[[output]]\nname = \"a\"\naddress = \"127.0.0.1:3\"\nqueue_dir = \"/q2\"\n";
  EXPECT_NE(error_of(same).find("t.toml:8: output[1].name"), std::string::npos) << error_of(same);
}

TEST(Config, LibraryValidationIsReportedForTheOutput) {
  const std::string e = error_of("[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\n"
                                 "queue_dir = \"/q\"\nmax_disk_bytes = \"1MiB\"\nsegment_bytes = \"16MiB\"\n");
  EXPECT_NE(e.find("t.toml:3: output[0]: queue options"), std::string::npos) << e;
  EXPECT_NE(e.find("segment_bytes"), std::string::npos) << e;
}

TEST(Config, WrongTypeNamesTheKey) {
  const std::string e = error_of("[input]\ntcp = \"127.0.0.1:1\"\nmax_line_bytes = true\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n");
  EXPECT_NE(e.find("t.toml:3: input.max_line_bytes"), std::string::npos) << e;
}

TEST(Config, LoadNamesAMissingFile) {
  auto c = load_config("/nonexistent/hopperd.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), hopper::Errc::io_error);
  EXPECT_NE(c.status().message().find("/nonexistent/hopperd.toml"), std::string::npos);
}

const char* kOne = "[input]\ntcp = \"127.0.0.1:1\"\n[[output]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n";

TEST(Config, HealthLimitsAndTls) {
  auto c = parse_config(std::string("[health]\nready = \"all\"\nmax_backlog_age_ms = 60000\n") + kOne +
                            "tls = true\ntls_server_name = \"sink.test\"\ntls_verify = false\n",
                        "t.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->health.mode, HealthMode::all);
  EXPECT_EQ(c->health.max_backlog_age.count(), 60000);
  EXPECT_EQ(c->idle_timeout.count(), 300000) << "the default: five minutes";
  EXPECT_TRUE(c->outputs[0].tls.enabled);
  EXPECT_FALSE(c->outputs[0].tls.verify);
  EXPECT_EQ(c->outputs[0].tls.server_name, "sink.test");
  auto d = parse_config(kOne, "t.toml");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->health.mode, HealthMode::any) << "the default: any output delivering";
}

TEST(Config, HealthAndTlsErrorsNameTheKey) {
  std::string e = error_of(std::string("[health]\nready = \"most\"\n") + kOne);
  EXPECT_NE(e.find("t.toml:2: health.ready: expected one of any, all, serving; got \"most\""), std::string::npos) << e;
  e = error_of(std::string(kOne) + "tls_server_name = \"x\"\n");
  EXPECT_NE(e.find("t.toml:7: output[0].tls_server_name: only used with tls = true"), std::string::npos) << e;
  e = error_of(std::string(kOne) + "tls = true\ntls_ca_file = \"/nonexistent/ca.crt\"\n");
  EXPECT_NE(e.find("t.toml:8: output[0].tls_ca_file: cannot read \"/nonexistent/ca.crt\""), std::string::npos) << e;
  e = error_of("[input]\ntls = \"127.0.0.1:1\"\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n");
  EXPECT_NE(e.find("t.toml:2: input.tls: TLS listeners need input.tls_cert_file and input.tls_key_file"),
            std::string::npos) << e;
  e = error_of("[input]\ntcp = \"127.0.0.1:1\"\nidle_timeout_ms = -1\n[[output]]\naddress = \"127.0.0.1:2\"\nqueue_dir = \"/q\"\n");
  EXPECT_NE(e.find("t.toml:3: input.idle_timeout_ms: must be between 0 and"), std::string::npos) << e;
  e = error_of(std::string(kOne) + "max_memory_bytes = \"64 MiBs\"\n");
  EXPECT_NE(e.find("t.toml:7: output[0].max_memory_bytes: not a size: \"64 MiBs\""), std::string::npos) << e;
}

TEST(Config, SameAsIgnoresWhereKeysWereWritten) {
  auto a = parse_config(kOne, "a.toml");
  auto b = parse_config(std::string("\n\n") + kOne, "b.toml");
  auto c = parse_config(std::string(kOne) + "batch_bytes = 1000\n", "c.toml");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_TRUE(a->outputs[0].same_as(b->outputs[0])) << "only the lines moved";
  EXPECT_FALSE(a->outputs[0].same_as(c->outputs[0]));
}

TEST(Size, Units) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("512B"), 512u);
  EXPECT_EQ(parse_size("4KiB"), 4096u);
  EXPECT_EQ(parse_size("4 KB"), 4000u);
  EXPECT_EQ(parse_size("64MiB"), 64u << 20);
  EXPECT_EQ(parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(parse_size("1TB"), 1000000000000ull);
  EXPECT_FALSE(parse_size("").has_value());
  EXPECT_FALSE(parse_size("MiB").has_value());
  EXPECT_FALSE(parse_size("5 parsecs").has_value());
  EXPECT_FALSE(parse_size("-5").has_value());
  EXPECT_FALSE(parse_size("99999999999TiB").has_value());
}

}  // namespace
}  // namespace hopperd
