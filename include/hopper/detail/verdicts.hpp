// The vocabulary Queue<T> and the engine's rooms share: how long a call may wait, and
// what the engine answers about an item. Not part of the public API.
#pragma once

#include <chrono>

#include <hopper/detail/sync.hpp>

namespace hopper::detail {

// How long a call may wait for room or for an item.
struct Wait {
  enum Kind { never, forever, until } kind = forever;
  Clock::time_point deadline{};
  static Wait none() { return {never, {}}; }
  static Wait always() { return {forever, {}}; }
  static Wait for_(std::chrono::milliseconds d) { return {until, Clock::now() + d}; }
  bool expired(Clock::time_point now) const noexcept { return kind == never || (kind == until && now >= deadline); }
};

// Where a sent item goes (Core::route): the sender's mode, memory or disk.
enum class Route {
  memory,      // it fits the memory budget and senders are in memory mode
  leave_disk,  // back to memory: seal the open page (its items come first), then memory
  page,        // disk mode: into the open page
  no_room,     // nowhere now: the full policy applies
  too_large,   // memory can never take it and spilling is off
};

// What happened to an item offered to the open page.
enum class SpillVerdict {
  accepted,   // the item is in the open page, numbered next
  need_seal,  // the page must be sealed first (it cannot grow past a segment); retry
  full,       // no room in the disk budget
  behind,     // too many sealed pages wait for the writer: help it, or wait for it (the
              // budgets have room: not a reason to fail or drop anything — unless the disk
              // refuses writes)
  too_large,  // the item can never fit in a segment
};

// SyncPolicy::always: where an item stands.
enum class Durability {
  waiting,  // not yet synced
  durable,  // synced: its send may return ok
  failed,   // its page was not stored (told once, to its sender)
};

}  // namespace hopper::detail
