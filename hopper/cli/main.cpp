// hopper: the command-line tool for hopper queues. `hopper demo` shows what the library
// does; inspect, verify and dump look into a queue directory without changing it; bench
// measures a scratch queue on this machine.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  using namespace hopper::cli;
  CLI::App app{"hopper: look into hopper queue directories, or watch the demo.\n"
               "Exit status: 0 ok, 1 damaged/failed check, 2 usage or I/O error."};
  app.require_subcommand(1);

  DemoOptions demo;
  auto* d = app.add_subcommand("demo", "Generator -> hopper queue -> a downstream that stalls, goes away and comes back "
                                       "(about 20 s, no setup)");
  d->add_option("--dir", demo.dir, "Queue directory to use (default: a temporary one, removed afterwards)");
  d->add_option("--speed", demo.speed, "Run the phases this many times faster")->check(CLI::Range(0.1, 100.0));
  d->add_flag("--plain", demo.plain, "A status line per second instead of a live one");
  d->add_flag("--json", demo.json, "The summary as JSON on stdout (status goes to stderr)");

  std::string dir;
  bool json = false;
  auto* i = app.add_subcommand("inspect", "Segments, pages, items, bytes on disk vs raw, sequence numbers, lock holder");
  i->add_option("DIR", dir, "Queue directory")->required();
  i->add_flag("--json", json, "JSON for scripts");

  bool no_progress = false;
  auto* v = app.add_subcommand("verify", "Check every page (checksum and decode); exit 0 if intact, 1 if not");
  v->add_option("DIR", dir, "Queue directory")->required();
  v->add_flag("--json", json, "JSON for scripts");
  v->add_flag("--no-progress", no_progress, "No progress display on stderr");

  DumpOptions dump;
  auto* u = app.add_subcommand("dump", "Print the items of a string queue, in order, without consuming them");
  u->add_option("DIR", dir, "Queue directory")->required();
  u->add_flag("--json", dump.json, "One JSON object per line: {\"seq\", \"item\"}");
  u->add_flag("--all", dump.all, "Also items already delivered that are still on disk");
  u->add_flag("--seq", dump.seq, "Prefix each item with its sequence number and a tab");
  u->add_option("--limit", dump.limit, "Stop after this many items");

  BenchOptions bench;
  auto* b = app.add_subcommand("bench", "How fast a queue is on this machine and disk: fill (spill), reopen, drain, "
                                        "and producers and receiver at once; checks every item");
  b->add_option("--dir", bench.dir, "Where to create the scratch queue (removed afterwards; default: the temp dir)");
  b->add_option("--items", bench.items, "Items in all (default 1,000,000; 10,000 with --sync always)");
  b->add_option("--item-bytes", bench.item_bytes, "Bytes per item, a telemetry-like text line (min 48)");
  b->add_option("--producers", bench.producers, "Sending threads");
  b->add_option("--memory", bench.memory, "Memory budget, e.g. 1MiB")->transform(CLI::AsSizeValue(false));
  b->add_option("--disk", bench.disk, "Disk budget, e.g. 1GiB")->transform(CLI::AsSizeValue(false));
  b->add_option("--page", bench.page, "Page size, e.g. 64KiB")->transform(CLI::AsSizeValue(false));
  b->add_option("--segment", bench.segment, "Segment file size, e.g. 16MiB")->transform(CLI::AsSizeValue(false));
  b->add_option("--level", bench.level, "zstd compression level");
  b->add_option("--sync", bench.sync, "none, interval or always");
  b->add_flag("--json", bench.json, "The figures as JSON on stdout (progress goes to stderr)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kOk : kError;
  }
  if (d->parsed()) return demo_command(demo);
  if (i->parsed()) return inspect_command(dir, json);
  if (v->parsed()) return verify_command(dir, json, !no_progress);
  if (u->parsed()) return dump_command(dir, dump);
  if (b->parsed()) return bench_command(bench);
  return kError;
}
