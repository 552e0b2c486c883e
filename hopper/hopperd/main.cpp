// hopperd: a store-and-forward relay for line-oriented telemetry. See docs/operations.md.
#include <iostream>

#include <CLI/CLI.hpp>

#include "hopperd/config.hpp"
#include "hopperd/daemon.hpp"

// jemalloc's options, read once at start when hopperd is linked with it (MALLOC_CONF in
// the environment overrides them). Transparent huge pages for its memory: a backlog
// filling the memory budget touches tens of megabytes of new heap, and faulting it in 4 KiB
// at a time cost about a fifth of hopperd's CPU time on the way to Kafka
// (docs/operations.md, "Memory").
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "thp:always,metadata_thp:auto";
}

int main(int argc, char** argv) {
  CLI::App app{"hopperd: relays newline-delimited telemetry (graphite, statsd, influx lines) from TCP/UDP\n"
               "listeners to TCP (optionally TLS) or Kafka downstreams, through a disk-backed queue per downstream."};
  std::string config_path;
  std::string check_path;
  hopperd::RunOptions run;
  app.add_option("-c,--config", config_path, "Run with this TOML config file");
  app.add_option("--check-config", check_path, "Check this config file, print what it sets up, and exit");
  app.add_option("--ready-file", run.ready_file,
                 "Once listening (and after each reload), write {\"pid\", \"tcp\", \"tls\", \"udp\", \"metrics\"} "
                 "(bound addresses) as JSON here");
  app.add_option("--log-level", run.log_level, "Override log.level (trace, debug, info, warn, error)");
  app.add_flag_callback("--version", [] {
    std::cout << "hopperd 0.1.0\n";
    throw CLI::Success();
  }, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!check_path.empty()) return hopperd::check_config(check_path);
  if (config_path.empty()) {
    std::cerr << "hopperd: --config FILE is required (or --check-config FILE); see --help\n";
    return 2;
  }
  auto config = hopperd::load_config(config_path);
  if (!config.ok()) {
    std::cerr << "hopperd: " << hopperd::plain(config.status()) << "\n";
    return 2;
  }
  return hopperd::run_daemon(*config, run);
}
