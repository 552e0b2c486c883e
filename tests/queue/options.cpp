// Options and the queue directory: every invalid option named, limits accepted, a missing
// directory created, unusable ones refused with io_error; and the directory lock, held
// while any handle remains, against this process and another.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <string>
#include <vector>

#include <hopper/hopper.hpp>

#include "helpers.hpp"
#include "test_util.hpp"

namespace hopper::test {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------- options

struct BadOption {
  const char* name;
  void (*spoil)(Options&);
  const char* must_mention;
};

TEST(Queue, EveryInvalidOptionIsNamed) {
  TempDir dir;
  const BadOption cases[] = {
      {"empty directory", [](Options& o) { o.directory.clear(); }, "directory"},
      {"zero memory", [](Options& o) { o.max_memory_bytes = 0; }, "max_memory_bytes"},
      {"zero page", [](Options& o) { o.page_bytes = 0; }, "page_bytes"},
      {"page larger than segment",
       [](Options& o) {
         o.page_bytes = 4096;
         o.segment_bytes = test::min_segment_for_page(4096) - 1;
       },
       "segment_bytes"},
      {"page larger than segment (page named)",
       [](Options& o) {
         o.page_bytes = 4096;
         o.segment_bytes = 4096;
       },
       "page_bytes"},
      {"segment larger than disk",
       [](Options& o) {
         o.segment_bytes = 1 << 20;
         o.max_disk_bytes = (1 << 20) - 1;
       },
       "max_disk_bytes"},
      {"page above the maximum", [](Options& o) { o.page_bytes = (1u << 30) + 1; }, "page_bytes"},
      {"compression too low", [](Options& o) { o.compression_level = -8; }, "compression_level"},
      {"compression too high", [](Options& o) { o.compression_level = 23; }, "compression_level"},
      {"too many compression threads", [](Options& o) { o.compression_threads = 17; }, "compression_threads"},
  };
  for (const BadOption& c : cases) {
    Options o = test::small_options(dir.path());
    c.spoil(o);
    Status v = validate(o);
    EXPECT_EQ(v.code(), Errc::invalid_argument) << c.name;
    EXPECT_NE(v.message().find(c.must_mention), std::string::npos) << c.name << ": " << v.message();
    auto ch = channel<std::uint32_t>(o);
    ASSERT_FALSE(ch.ok()) << c.name;
    EXPECT_EQ(ch.status().code(), Errc::invalid_argument) << c.name;
    EXPECT_NE(ch.status().message().find(c.must_mention), std::string::npos) << c.name << ": " << ch.status().message();
  }
  // Nothing was created by a refused open.
  EXPECT_TRUE(test::dir_entries(dir.path()).empty());
}

TEST(Queue, OptionsAtTheirLimitsAreValid) {
  TempDir dir;
  for (int level : {-7, 22}) {
    Options o = test::small_options(dir.path());
    o.compression_level = level;
    EXPECT_TRUE(validate(o).ok()) << level << ": " << validate(o).message();
  }
  Options o = test::small_options(dir.path());
  o.segment_bytes = test::min_segment_for_page(o.page_bytes);
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  o.max_disk_bytes = o.segment_bytes;
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  // Spilling off: segment and page sizes do not matter.
  o.max_disk_bytes = 0;
  o.segment_bytes = 1;
  EXPECT_TRUE(validate(o).ok()) << validate(o).message();
  auto ch = channel<std::uint32_t>(o);
  EXPECT_TRUE(ch.ok()) << ch.status().message();
  EXPECT_TRUE(validate(test::tiny_options(dir.path(), 1)).ok());
}

TEST(Queue, ExtremeCompressionLevelsRoundTrip) {
  for (int level : {-7, 0, 22}) {
    TempDir dir;
    Options o = u32_options(dir.path(), 2);
    o.compression_level = level;
    auto ch = open<std::uint32_t>(o);
    for (std::uint32_t i = 0; i < 300; ++i) ASSERT_TRUE(send_u32(ch.sender, i).ok());
    ASSERT_TRUE(ch.sender.flush().ok());
    ch.sender.close();
    EXPECT_EQ(test::recv_until_closed(ch.receiver), test::iota_u32(300)) << "level " << level;
  }
}

TEST(Queue, MissingDirectoryIsCreated) {
  TempDir dir;
  Options o = test::small_options(dir / "a/b/c");
  auto ch = channel<std::uint32_t>(o);
  ASSERT_TRUE(ch.ok()) << ch.status().message();
  EXPECT_TRUE(std::filesystem::is_directory(dir / "a/b/c"));
}

TEST(Queue, DirectoryThatIsARegularFileIsAnIoError) {
  TempDir dir;
  test::write_file(dir / "plain", "not a directory");
  auto ch = channel<std::uint32_t>(test::small_options(dir / "plain"));
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::io_error);
  EXPECT_NE(ch.status().message().find((dir / "plain").native()), std::string::npos) << ch.status().message();
  EXPECT_EQ(test::read_file(dir / "plain"), "not a directory");
}

TEST(Queue, DirectoryUnderARegularFileIsAnIoError) {
  TempDir dir;
  test::write_file(dir / "plain", "x");
  auto ch = channel<std::uint32_t>(test::small_options(dir / "plain" / "queue"));
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::io_error);
  EXPECT_NE(ch.status().message().find("plain"), std::string::npos) << ch.status().message();
  EXPECT_NE(ch.status().message().find("Not a directory"), std::string::npos) << ch.status().message();
}

TEST(Queue, DirectoryUnderAReadOnlyParentIsAnIoError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions; covered by the ENOTDIR test";
  TempDir dir;
  std::filesystem::create_directory(dir / "ro");
  std::filesystem::permissions(dir / "ro", std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  auto ch = channel<std::uint32_t>(test::small_options(dir / "ro" / "queue"));
  std::filesystem::permissions(dir / "ro", std::filesystem::perms::owner_all);
  ASSERT_FALSE(ch.ok());
  EXPECT_EQ(ch.status().code(), Errc::io_error);
  EXPECT_NE(ch.status().message().find("ro"), std::string::npos) << ch.status().message();
}

// ---------------------------------------------------------------- locking

TEST(Queue, SecondChannelOnTheSameDirectoryIsLocked) {
  TempDir dir;
  {
    auto first = channel<std::uint32_t>(test::small_options(dir.path()));
    ASSERT_TRUE(first.ok()) << first.status().message();
    ASSERT_TRUE(first->sender.send(1).ok());
    auto second = channel<std::uint32_t>(test::small_options(dir.path()));
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.status().code(), Errc::locked) << second.status().message();
    EXPECT_NE(second.status().message().find(dir.path().native()), std::string::npos) << second.status().message();
    // The refused open did not disturb the first.
    std::uint32_t v = 0;
    ASSERT_TRUE(first->receiver.try_recv(v).ok());
    EXPECT_EQ(v, 1u);
  }
  // Released when the first closes.
  auto again = channel<std::uint32_t>(test::small_options(dir.path()));
  EXPECT_TRUE(again.ok()) << again.status().message();
}

TEST(Queue, LockHeldWhileAnyHandleRemains) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  Sender<std::uint32_t> keep = ch.sender;
  ch.receiver.close();
  ch.sender.close();
  EXPECT_EQ(channel<std::uint32_t>(test::small_options(dir.path())).status().code(), Errc::locked);
  keep.close();
  EXPECT_TRUE(channel<std::uint32_t>(test::small_options(dir.path())).ok());
}

TEST(Queue, AnotherProcessGetsLocked) {
  TempDir dir;
  auto ch = open<std::uint32_t>(test::small_options(dir.path()));
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto other = channel<std::uint32_t>(test::small_options(dir.path()));
    ::_exit(!other.ok() && other.status().code() == Errc::locked ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child process was not refused with Errc::locked";
}

}  // namespace
}  // namespace hopper::test
