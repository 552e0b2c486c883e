// Uses the installed hopper package: sends strings through a queue small enough to spill,
// receives them, reopens the directory, and exits non-zero on any mismatch.
#include <hopper/hopper.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

int fail(const std::string& what) {
  std::fprintf(stderr, "consumer: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path dir =
      argc > 1 ? std::filesystem::path(argv[1])
               : std::filesystem::temp_directory_path() / "hopper-consumer-queue";
  std::filesystem::remove_all(dir);

  hopper::Options options;
  options.directory = dir;
  options.max_memory_bytes = 256;  // a few strings; the rest spill to disk
  options.page_bytes = 512;
  options.segment_bytes = 4096;
  options.max_disk_bytes = 1 << 20;

  std::vector<std::string> sent;
  for (int i = 0; i < 200; ++i) sent.push_back("line " + std::to_string(i) + std::string(i % 50, '.'));

  {
    auto ch = hopper::channel<std::string>(options);
    if (!ch) return fail("channel: " + ch.status().message());
    for (const auto& s : sent) {
      hopper::Status st = ch->sender.send(s);
      if (!st.ok()) return fail("send: " + st.message());
    }
    ch->sender.close();
    std::vector<std::string> got;
    for (std::string& s : ch->receiver) got.push_back(s);
    if (!ch->receiver.status().ok()) return fail("recv: " + ch->receiver.status().message());
    if (got != sent) return fail("received " + std::to_string(got.size()) + " items, not the 200 sent, in order");
    if (ch->receiver.stats().items_spilled == 0) return fail("nothing spilled: the disk path was not used");
  }
  {
    // A clean shutdown after everything was received leaves nothing behind.
    auto ch = hopper::channel<std::string>(options);
    if (!ch) return fail("reopen: " + ch.status().message());
    std::string extra;
    if (ch->receiver.try_recv(extra).code() != hopper::Errc::empty) return fail("an item came back after reopen");
  }
  std::filesystem::remove_all(dir);
  std::printf("consumer: 200 items sent and received through the installed hopper\n");
  return 0;
}
