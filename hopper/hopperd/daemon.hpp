// The daemon: opens the outputs' queues, binds the listeners, runs until SIGTERM/SIGINT,
// then stops in order so that every queue is persisted. SIGHUP reloads the config.
#pragma once

#include <string>

#include "hopperd/config.hpp"

namespace hopperd {

struct RunOptions {
  std::string ready_file;  // written (JSON: pid and bound addresses) once serving; "" = none
  std::string log_level;   // overrides log.level when not empty
};

// Exit status: 0 after a clean stop, 1 when it could not start (the reason is printed on
// stderr in one line, "hopperd: FILE:LINE: KEY: why", and logged).
int run_daemon(const Config& config, const RunOptions& options);

// --check-config: 0 and a summary on stdout when `path` is a valid config that could start
// now (its queue directories creatable and not locked, its addresses free, its TLS files
// usable); 2 and the error (file:line: key: why) on stderr otherwise.
int check_config(const std::string& path);

}  // namespace hopperd
