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

}  // namespace hopper::cli
