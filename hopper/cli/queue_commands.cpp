// hopper inspect / verify / dump: read-only views of a queue directory, through
// hopper/inspect.hpp (no lock taken, nothing consumed).
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <hopper/hopper.hpp>
#include <hopper/inspect.hpp>

#include "cli/commands.hpp"
#include "cli/output.hpp"

namespace hopper::cli {
namespace {

std::string format_segment(std::uint64_t n) {
  std::string digits = std::to_string(n);
  return "hopper-" + std::string(20 - std::min<std::size_t>(20, digits.size()), '0') + digits + ".seg";
}

std::string opt(const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : "-"; }
template <class T>
Json json_opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

std::string process_name(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

std::string lock_text(const LockHolder& l) {
  if (!l.known) return "unknown (/proc/locks unreadable)" + (l.recorded_pid ? "; LOCK names pid " + std::to_string(*l.recorded_pid) : std::string());
  if (l.held) {
    std::string s = "held";
    if (l.pid) {
      s += " by pid " + std::to_string(*l.pid);
      const std::string name = process_name(*l.pid);
      if (!name.empty()) s += " (" + name + ")";
    }
    return s + ": the queue is open; what is shown may change while you look";
  }
  return std::string("not held") + (l.recorded_pid ? " (last holder: pid " + std::to_string(*l.recorded_pid) + ")" : "");
}

std::string segment_state(const SegmentSummary& s, bool live) {
  std::string st;
  if (s.bytes < 32) return live ? "being created" : "cut short";
  if (!s.header_ok) st = "bad header";
  if (s.corrupt_pages) st += (st.empty() ? "" : ", ") + std::to_string(s.corrupt_pages) + " damaged";
  if (s.tail_bytes) st += (st.empty() ? "" : ", ") + std::string(live ? "tail being written" : "torn tail");
  return st.empty() ? "ok" : st;
}

std::string ratio(std::uint64_t raw, std::uint64_t disk) {
  if (disk == 0) return "-";
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << static_cast<double>(raw) / static_cast<double>(disk) << "x";
  return s.str();
}

void print_damage(const Inspection& r, std::ostream& out) {
  for (const DamagedRange& d : r.damaged)
    out << "  " << format_segment(d.segment) << ": bytes " << d.begin << ".." << d.end << " (" << d.end - d.begin
        << " bytes): " << d.reason << "\n";
  for (const SegmentSummary& s : r.segments)
    if (s.tail_bytes)
      out << "  " << s.path.filename().string() << ": last " << s.tail_bytes << " bytes are an incomplete page ("
          << (r.lock.held ? "being written by the queue's owner" : "torn: its writer stopped mid-append; recovery cuts it")
          << ")\n";
  for (const std::string& n : r.notes) out << "  " << n << "\n";
}

std::string json_inspection(const Inspection& r) {
  Json segments = Json::array();
  for (const SegmentSummary& s : r.segments)
    segments.push_back({{"number", s.number}, {"path", json_text(s.path.string())}, {"bytes", s.bytes},
                        {"pages", s.pages}, {"items", s.items}, {"raw_bytes", s.raw_bytes},
                        {"first_seq", json_opt(s.first_seq)}, {"last_seq", json_opt(s.last_seq)},
                        {"header_ok", s.header_ok}, {"corrupt_pages", s.corrupt_pages}, {"tail_bytes", s.tail_bytes}});
  Json damaged = Json::array();
  for (const DamagedRange& d : r.damaged)
    damaged.push_back({{"segment", d.segment}, {"begin", d.begin}, {"end", d.end}, {"reason", json_text(d.reason)}});
  Json notes = Json::array();
  for (const std::string& n : r.notes) notes.push_back(json_text(n));
  const Json j = {
      {"directory", json_text(r.directory.string())},
      {"intact", r.intact()},
      {"lock", {{"held", r.lock.held}, {"known", r.lock.known}, {"pid", json_opt(r.lock.pid)},
                {"recorded_pid", json_opt(r.lock.recorded_pid)}}},
      {"cursor", json_opt(r.cursor)},
      {"cursor_damaged", r.cursor_damaged},
      {"segments", r.segments.size()},
      {"pages", r.pages},
      {"items", r.items},
      {"undelivered_items", r.undelivered_items},
      {"disk_bytes", r.disk_bytes},
      {"raw_bytes", r.raw_bytes},
      {"oldest_seq", json_opt(r.oldest_seq)},
      {"newest_seq", json_opt(r.newest_seq)},
      {"corrupt_pages", r.corrupt_pages},
      {"tail_bytes", r.tail_bytes},
      {"pages_decoded", r.pages_decoded},
      {"segment_files", std::move(segments)},
      {"damaged", std::move(damaged)},
      {"notes", std::move(notes)},
  };
  return j.dump(1) + "\n";
}

}  // namespace

int inspect_command(const std::string& dir, bool json) {
  auto r = inspect(dir);
  if (!r.ok()) {
    std::cerr << "hopper inspect: " << r.status().message() << "\n";
    return kError;
  }
  if (json) {
    std::cout << json_inspection(*r);
    return kOk;
  }
  const bool live = r->lock.held;
  std::cout << "queue     " << dir << "\n";
  std::cout << "lock      " << lock_text(r->lock) << "\n";
  if (r->cursor)
    std::cout << "cursor    next to deliver: seq " << *r->cursor << "\n";
  else
    std::cout << "cursor    " << (r->cursor_damaged ? "DAMAGED (delivery restarts from the oldest page)" : "none yet (no commit or clean shutdown)") << "\n";
  std::cout << "segments  " << r->segments.size() << " files, " << with_commas(r->pages) << " pages\n";
  std::cout << "items     " << with_commas(r->items) << " on disk, " << with_commas(r->undelivered_items)
            << " not yet delivered";
  if (r->oldest_seq) std::cout << "; seq " << *r->oldest_seq << " .. " << *r->newest_seq;
  std::cout << "\n";
  std::cout << "bytes     " << human_bytes(r->disk_bytes) << " on disk, " << human_bytes(r->raw_bytes)
            << " uncompressed (" << ratio(r->raw_bytes, r->disk_bytes) << ")\n";
  std::cout << "damage    ";
  if (r->damaged.empty() && r->tail_bytes == 0 && r->notes.empty()) {
    std::cout << "none found (checksums; `hopper verify` also decodes every page)\n";
  } else {
    std::cout << r->damaged.size() << " damaged range(s)" << (r->tail_bytes ? ", an incomplete tail" : "") << "\n";
    print_damage(*r, std::cout);
  }
  if (!r->segments.empty()) {
    std::cout << "\n";
    Table t({"SEGMENT", "BYTES", "PAGES", "ITEMS", "RAW", "FIRST SEQ", "LAST SEQ", "STATE"},
            {false, true, true, true, true, true, true, false});
    for (const SegmentSummary& s : r->segments)
      t.row({s.path.filename().string(), with_commas(s.bytes), with_commas(s.pages), with_commas(s.items),
             human_bytes(s.raw_bytes), opt(s.first_seq), opt(s.last_seq), segment_state(s, live)});
    t.print(std::cout);
  }
  return kOk;
}

int verify_command(const std::string& dir, bool json, bool progress) {
  InspectOptions o;
  o.decode_pages = true;
  const bool show = progress && ::isatty(STDERR_FILENO);
  if (show) {
    o.progress = [](std::uint64_t done, std::uint64_t total) {
      const int pct = total ? static_cast<int>(done * 100 / total) : 100;
      std::cerr << "\rverifying: " << pct << "% (" << human_bytes(done) << " of " << human_bytes(total) << ")   "
                << std::flush;
    };
  }
  auto r = inspect(dir, o);
  if (show) std::cerr << "\r\033[K" << std::flush;
  if (!r.ok()) {
    std::cerr << "hopper verify: " << r.status().message() << "\n";
    return kError;
  }
  const bool intact = r->intact();
  if (json) {
    std::cout << json_inspection(*r);
  } else {
    std::cout << dir << ": " << with_commas(r->segments.size()) << " segments, " << with_commas(r->pages_decoded)
              << " pages checked (checksum and decode), " << with_commas(r->items) << " items\n";
    if (!r->damaged.empty() || r->tail_bytes || !r->notes.empty()) print_damage(*r, std::cout);
    std::cout << (intact ? "intact" : "NOT INTACT") << "\n";
  }
  return intact ? kOk : kDamaged;
}

int dump_command(const std::string& dir, const DumpOptions& options) {
  ItemReader::Options ro;
  ro.from_cursor = !options.all;
  auto r = ItemReader::open(dir, ro);
  if (!r.ok()) {
    std::cerr << "hopper dump: " << r.status().message() << "\n";
    return kError;
  }
  StoredItem item;
  std::string text;
  std::uint64_t n = 0, undecodable = 0;
  std::ostream& out = std::cout;
  while ((options.limit == 0 || n < options.limit) && r->next(item)) {
    ++n;
    if (!decode_item(item.bytes, text)) {
      ++undecodable;
      if (options.json)
        out << Json{{"seq", item.seq}, {"undecodable_bytes", item.bytes.size()}}.dump() << "\n";
      else
        std::cerr << "seq " << item.seq << ": not a string item (" << item.bytes.size() << " bytes)\n";
      continue;
    }
    if (options.json) {
      out << Json{{"seq", item.seq}, {"item", json_text(text)}}.dump() << "\n";
    } else {
      if (options.seq) out << item.seq << '\t';
      out << text << '\n';
    }
  }
  out.flush();
  if (!r->status().ok()) {
    std::cerr << "hopper dump: " << r->status().message() << "\n";
    return kError;
  }
  if (r->skipped_pages() > 0)
    std::cerr << "hopper dump: " << r->skipped_pages()
              << " page(s) skipped: deleted by the queue's owner while reading, or damaged\n";
  if (undecodable > 0) {
    std::cerr << "hopper dump: " << undecodable << " item(s) were not strings: is this a queue of another type?\n";
    return kDamaged;
  }
  return kOk;
}

}  // namespace hopper::cli
