// The main of a fuzz target when libFuzzer does not provide one.
//
// With file or directory arguments it replays them: every regular file (directories are
// walked recursively, in name order) is fed once to LLVMFuzzerTestOneInput. This is how CI
// runs the seed corpus and the regression inputs, and how a crash is reproduced in a
// debugger.
//
// Built with afl-clang-fast(++) and run without arguments, it is an AFL++ persistent-mode
// driver: inputs arrive through shared memory and many run in one process.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

#ifdef __AFL_FUZZ_TESTCASE_LEN
#include <unistd.h>  // read(), used by the __AFL_FUZZ_TESTCASE_LEN macro
__AFL_FUZZ_INIT();
#endif

namespace {

namespace fs = std::filesystem;

bool run_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
    return false;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.c_str(), bytes.size());
  LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  return true;
}

int replay(int argc, char** argv) {
  std::size_t ran = 0;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      std::vector<fs::path> files;
      for (const auto& e : fs::recursive_directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) ran += run_file(f);
    } else if (fs::exists(arg, ec)) {
      ran += run_file(arg);
    } else {
      std::fprintf(stderr, "replay: %s does not exist\n", arg.c_str());
      return 2;
    }
  }
  std::fprintf(stderr, "replay: %zu inputs ran, no failure\n", ran);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) return replay(argc, argv);
#ifdef __AFL_FUZZ_TESTCASE_LEN
  __AFL_INIT();
  const unsigned char* buf = __AFL_FUZZ_TESTCASE_BUF;
  while (__AFL_LOOP(10000)) {
    LLVMFuzzerTestOneInput(buf, static_cast<std::size_t>(__AFL_FUZZ_TESTCASE_LEN));
  }
  return 0;
#else
  std::fprintf(stderr, "usage: %s FILE_OR_DIR...   (replays each input once)\n", argv[0]);
  return 2;
#endif
}
