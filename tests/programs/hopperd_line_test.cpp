// hopperd's line handling: framing of TCP streams, datagram splitting, what is dropped, and
// what a queued line is charged.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "hopperd/egress.hpp"
#include "hopperd/lines.hpp"
#include "test_util.hpp"

namespace hopperd {
namespace {

struct Taken {
  std::vector<std::string> lines;
  std::vector<DropReason> drops;
};

void take(LineFramer& f, Taken& t) {
  for (;;) {
    const LineFramer::Event e = f.next();
    if (e.kind == LineFramer::Event::need_more) return;
    if (e.kind == LineFramer::Event::ready) t.lines.emplace_back(e.line);
    else t.drops.push_back(e.reason);
  }
}

TEST(LineFramer, SplitsOnNewlinesAcrossReads) {
  LineFramer f(100);
  Taken t;
  f.append("a.b 1 100\nc.d");
  take(f, t);
  f.append(" 2 100\r\ne.f 3 1");
  take(f, t);
  f.append("00\n");
  take(f, t);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"a.b 1 100", "c.d 2 100", "e.f 3 100"}));
  EXPECT_TRUE(t.drops.empty());
  EXPECT_EQ(f.buffered(), 0u);
}

TEST(LineFramer, UnterminatedLastLineCountsAtEnd) {
  LineFramer f(100);
  Taken t;
  f.append("x 1 1\ny 2 2");
  take(f, t);
  ASSERT_EQ(t.lines.size(), 1u);
  f.finish();
  take(f, t);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"x 1 1", "y 2 2"}));
}

TEST(LineFramer, EmptyLinesAreDropped) {
  LineFramer f(100);
  Taken t;
  f.append("\n\r\nok 1 1\n");
  take(f, t);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"ok 1 1"}));
  EXPECT_EQ(t.drops, (std::vector<DropReason>{DropReason::empty, DropReason::empty}));
}

TEST(LineFramer, LineOfExactlyTheMaximumPasses) {
  LineFramer f(8);
  Taken t;
  f.append("12345678\n123456789\n");
  take(f, t);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"12345678"}));
  EXPECT_EQ(t.drops, (std::vector<DropReason>{DropReason::too_long}));
}

TEST(LineFramer, OverlongLineIsDroppedOnceAndNotBuffered) {
  LineFramer f(16);
  Taken t;
  f.append("before 1 1\n");
  const std::string chunk(1000, 'x');
  for (int i = 0; i < 50; ++i) {
    f.append(chunk);
    take(f, t);
    EXPECT_LE(f.buffered(), 16u + 1000u);  // memory stays bounded inside the long line
  }
  f.append("tail of the long line\nafter 2 2\n");
  take(f, t);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"before 1 1", "after 2 2"}));
  EXPECT_EQ(t.drops, (std::vector<DropReason>{DropReason::too_long}));
}

TEST(LineFramer, OverlongLineEndingTheStreamIsDropped) {
  LineFramer f(4);
  Taken t;
  f.append("abcdefgh");
  take(f, t);
  f.finish();
  take(f, t);
  EXPECT_TRUE(t.lines.empty());
  EXPECT_EQ(t.drops, (std::vector<DropReason>{DropReason::too_long}));
}

TEST(LineFramer, InvalidUtf8IsDroppedAndNeighboursKept) {
  LineFramer f(100);
  Taken t;
  f.append("good 1 1\n\xff\xfe garbage\nm\xc3\xa9trique 2 2\n");
  take(f, t);
  EXPECT_EQ(t.lines, (std::vector<std::string>{"good 1 1", "m\xc3\xa9trique 2 2"}));
  EXPECT_EQ(t.drops, (std::vector<DropReason>{DropReason::invalid_utf8}));
}

TEST(Utf8, AcceptsWellFormed) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii that is longer than eight bytes"));
  EXPECT_TRUE(valid_utf8("\xc3\xa9"));              // é
  EXPECT_TRUE(valid_utf8("\xe2\x82\xac"));          // €
  EXPECT_TRUE(valid_utf8("\xf0\x9f\x98\x80"));      // U+1F600
  EXPECT_TRUE(valid_utf8("\xf4\x8f\xbf\xbf"));      // U+10FFFF
}

TEST(Utf8, RejectsMalformed) {
  EXPECT_FALSE(valid_utf8("\x80"));                 // lone continuation
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));             // overlong '/'
  EXPECT_FALSE(valid_utf8("\xe0\x80\xaf"));         // overlong, 3 bytes
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));         // surrogate U+D800
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));     // past U+10FFFF
  EXPECT_FALSE(valid_utf8("\xe2\x82"));             // cut short
  EXPECT_FALSE(valid_utf8("abcdefgh\xe2\x82"));     // cut short after an ASCII run
  EXPECT_FALSE(valid_utf8("\xff"));
}

TEST(Datagram, SplitsLinesAndCountsTheUnterminatedLast) {
  std::vector<std::string> lines;
  std::vector<DropReason> drops;
  for_each_datagram_line("a:1|c\n\nb:2|c\nc:3|c", 100, [&](const LineCheck& c) {
    if (c.ok) lines.emplace_back(c.line);
    else drops.push_back(c.reason);
  });
  EXPECT_EQ(lines, (std::vector<std::string>{"a:1|c", "b:2|c", "c:3|c"}));
  EXPECT_EQ(drops, (std::vector<DropReason>{DropReason::empty}));
}

TEST(Datagram, TrailingNewlineMakesNoEmptyLine) {
  int n = 0, dropped = 0;
  for_each_datagram_line("a:1|c\n", 100, [&](const LineCheck& c) { c.ok ? ++n : ++dropped; });
  EXPECT_EQ(n, 1);
  EXPECT_EQ(dropped, 0);
}

// A line is charged what it costs the heap (hopperd/queue_item.hpp), through the queue
// hopperd's own code sends to: the library's precompiled Queue<std::string> would charge
// the default (the string object and its capacity), and the memory budget would hold half
// as much again as it says.
TEST(LineQueue, ALineIsChargedHopperdsFootprintNotTheLibrarysDefault) {
  hopper::test::TempDir dir;
  OutputConfig c;
  c.name = "q";
  c.address = Endpoint{"127.0.0.1", 9};
  c.queue.directory = dir.path();
  c.queue.max_memory_bytes = 1 << 20;
  auto out = Output::open(c, spdlog::default_logger());
  ASSERT_TRUE(out.ok()) << out.status().message();
  const std::string line(61, 'x');
  std::vector<std::string> lines{line};
  std::size_t taken = 0;
  ASSERT_TRUE((*out)->try_send_many(lines, taken).ok());
  ASSERT_EQ(taken, 1u);
  const std::uint64_t charged = (*out)->stats().memory_bytes;
  EXPECT_EQ(charged, hopper::Footprint<std::string>::of(line));
  EXPECT_EQ(charged, 64u + 80u) << "a 61-byte line: its 64-byte slot and an 80-byte malloc chunk";
}

}  // namespace
}  // namespace hopperd
