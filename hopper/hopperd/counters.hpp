// Counters that hopperd's threads bump and the /metrics endpoint reads.
//
// Every counter is a relaxed atomic: each is an independent tally read only for
// reporting, so no other memory is ordered by it and a slightly stale value is fine.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "hopperd/lines.hpp"

namespace hopperd {

using Counter = std::atomic<std::uint64_t>;

inline void bump(Counter& c, std::uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
inline std::uint64_t read(const Counter& c) noexcept { return c.load(std::memory_order_relaxed); }

enum class Transport { tcp, udp };

// The listeners' side. Bumped by the I/O thread, read by the metrics endpoint.
struct IngestCounters {
  Counter tcp_lines{0}, udp_lines{0};      // lines accepted (before fan-out)
  Counter tcp_bytes{0}, udp_bytes{0};      // bytes read
  Counter udp_datagrams{0};
  std::array<Counter, static_cast<std::size_t>(DropReason::count)> tcp_dropped{}, udp_dropped{};
  Counter connections_open{0};             // a gauge: incremented and decremented
  Counter connections_total{0};
  Counter connections_rejected{0};         // over input.max_tcp_clients
  Counter connections_rejected_fd{0};      // accepted and closed at once: out of file descriptors
  Counter accept_errors{0};                // accept() calls that failed
  Counter accept_pauses{0};                // times accepting paused: out of file descriptors
  Counter idle_closed{0};                  // connections closed after input.idle_timeout_ms
  Counter tls_handshake_failures{0};       // TLS clients that failed the handshake
  Counter backpressure_pauses{0};          // a TCP connection stopped reading: a queue was full
  Counter read_errors{0};
  // The daemon's own (bumped on the I/O thread).
  Counter reloads{0};                      // SIGHUP reloads that took effect
  Counter reload_failures{0};              // ... that were refused (the old config kept running)
  Counter last_reload_ok{1};               // a gauge: 1 when the last reload (or the start) worked
};

// One output's side. Bumped by its egress thread (and by ingest for drops).
struct OutputCounters {
  Counter delivered{0};          // lines written to the downstream and committed
  Counter bytes_written{0};
  Counter batches{0};
  Counter connects{0};           // connections established
  Counter reconnects{0};         // ... after the first
  Counter connect_failures{0};
  Counter write_errors{0};       // writes that failed or were cut by the peer
  Counter replayed_lines{0};     // lines written again after a reconnect (replay window)
  Counter expired_held{0};       // lines of a batch taken from the queue, past max_age before it could be written
  Counter expired_held_bytes{0};
  Counter commits{0};
  Counter commit_errors{0};
  Counter receive_errors{0};     // the queue could not read a page (I/O), retried
  Counter connected{0};          // a gauge: 1 while connected
  Counter dropped_full{0};       // lines not queued: queue full (UDP, or when_full = fail)
  Counter dropped_error{0};      // lines not queued: the queue refused them otherwise

  // Kafka outputs (type = "kafka"); `delivered` counts acknowledged lines, `connected` is 1
  // while a broker is reachable.
  Counter in_flight{0};          // a gauge: produced, not yet acknowledged or rejected
  Counter retried{0};            // lines produced again after a failed delivery
  Counter rejected{0};           // lines the brokers will never take (too large, ...)
  Counter dead_lettered{0};      // ... of them, kept in the dead-letter queue
  Counter dead_letter_failures{0};  // ... of them, refused by the dead-letter queue: lost
  Counter producer_restarts{0};  // the producer hit a fatal error and was replaced
  Counter oldest_unacked_since{0};  // a gauge: steady_clock ns of the oldest unsettled line; 0 = none
  // From librdkafka's statistics (statistics.interval.ms).
  Counter brokers_up{0};
  Counter lib_queue_messages{0}, lib_queue_bytes{0};
  Counter lib_requests{0}, lib_request_errors{0}, lib_request_retries{0}, lib_request_timeouts{0};
  Counter lib_rtt_us{0};         // the largest of the brokers' average round-trip times
};

}  // namespace hopperd
