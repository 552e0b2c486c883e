// The hopper tool's subcommands. Each returns the process exit status.
#pragma once

#include <cstdint>
#include <string>

namespace hopper::cli {

// Exit statuses shared by the subcommands.
inline constexpr int kOk = 0;
inline constexpr int kDamaged = 1;  // verify: the queue is not intact; demo: a check failed
inline constexpr int kError = 2;    // bad arguments, unreadable directory

int inspect_command(const std::string& dir, bool json);
int verify_command(const std::string& dir, bool json, bool progress);
struct DumpOptions {
  bool json = false;
  bool all = false;          // also items before the CURSOR still on disk
  bool seq = false;          // prefix each line with its sequence number
  std::uint64_t limit = 0;   // 0 = no limit
};
int dump_command(const std::string& dir, const DumpOptions& options);

struct DemoOptions {
  std::string dir;          // queue directory; empty = a fresh temporary one, removed after
  double speed = 1.0;       // phases last 1/speed as long (tests run it faster)
  bool plain = false;       // one status line per second instead of a live line
  bool json = false;        // the summary as JSON on stdout (status lines go to stderr)
};
int demo_command(const DemoOptions& options);

// hopper bench: fill, reopen, drain and a steady state, on this machine's disk.
struct BenchOptions {
  std::string dir;                      // parent of the scratch queue; empty = the temp dir
  std::uint64_t items = 0;              // 0 = 1,000,000 (10,000 with sync "always")
  std::uint64_t item_bytes = 256;
  int producers = 1;
  std::uint64_t memory = 1 << 20;       // Options::max_memory_bytes
  std::uint64_t disk = 1ull << 30;      // Options::max_disk_bytes
  std::uint64_t page = 64 << 10;        // Options::page_bytes
  std::uint64_t segment = 16 << 20;     // Options::segment_bytes
  int level = 1;                        // Options::compression_level
  std::string sync = "none";            // none, interval, always
  bool json = false;
};
int bench_command(const BenchOptions& options);

}  // namespace hopper::cli
