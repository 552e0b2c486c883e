// NodeCache: the element blocks of a queue's deques of placements, kept for reuse.
//
// Senders allocate a block of the deque (one per 9 placements of a 256-byte line, one per
// 16 of a u64) under the queue lock; the receiver frees them, most a batch at a time and
// outside the lock (Queue::retired_). Through the allocator that is a free on the
// receiver's thread of what a sender's thread allocated, thousands at once, against the
// senders' next allocations: under glibc's malloc both sides then wait on the sender's
// arena lock (docs/performance.md, "The allocator under the matrix"). The cache takes that
// out of the allocator: freed blocks are kept and handed to the next allocation.
//
// Two lists, so that neither side needs a lock of its own:
//  - `shared`: under the queue lock. Allocations take from it (senders and the receiver
//    allocate only under the lock), and blocks freed under the lock (the deque's
//    pop_front) join it.
//  - `receiver's`: the receiver's own, for blocks it frees without the lock (clearing a
//    used-up batch). It hands them to `shared` in O(1) the next time it holds the lock
//    (publish()).
// Each list keeps at most `cap` blocks (what it is given past that is freed at once), so
// the cache holds at most twice `cap` blocks' bytes (Queue: a quarter of the memory budget
// each). Blocks of another size than the first one asked for (none, with libstdc++: a
// deque's blocks are all one size) pass through to operator new and delete.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

namespace hopper::detail {

class NodeCache {
 public:
  // `cap_bytes`: the most each list keeps.
  explicit NodeCache(std::uint64_t cap_bytes) noexcept : cap_bytes_(cap_bytes) {}
  NodeCache(const NodeCache&) = delete;
  NodeCache& operator=(const NodeCache&) = delete;
  ~NodeCache() {
    release(shared_);
    release(private_);
  }

  // Under the queue lock.
  void* take(std::size_t bytes) {
    std::size_t block = block_.load(std::memory_order_relaxed);
    if (block == 0 && bytes >= sizeof(Block)) {
      block = bytes;
      block_.store(bytes, std::memory_order_release);
    }
    if (bytes != block || shared_.head == nullptr) return ::operator new(bytes);
    Block* b = shared_.head;
    shared_.head = b->next;
    --shared_.count;
    return b;
  }
  // Under the queue lock.
  void give_locked(void* p, std::size_t bytes) noexcept { give(shared_, p, bytes); }
  // The receiver, with or without the lock.
  void give_receivers(void* p, std::size_t bytes) noexcept { give(private_, p, bytes); }
  // The receiver, under the queue lock: its blocks join the shared list.
  void publish() noexcept {
    if (private_.head == nullptr) return;
    private_.tail->next = shared_.head;
    shared_.head = private_.head;
    shared_.count += private_.count;
    private_ = List{};
  }

  // For tests: blocks kept in each list.
  std::size_t shared_blocks() const noexcept { return shared_.count; }
  std::size_t receivers_blocks() const noexcept { return private_.count; }

 private:
  struct Block {
    Block* next;
  };
  struct List {
    Block* head = nullptr;
    Block* tail = nullptr;  // the receiver's list's last block, for publish(); unused in shared_
    std::size_t count = 0;
  };

  void give(List& list, void* p, std::size_t bytes) noexcept {
    // The block size is set by the first allocation, under the lock or before the queue is
    // shared (the deques' constructors allocate one block each); until then nothing is kept.
    if (bytes == 0 || bytes != block_.load(std::memory_order_acquire) || list.count >= cap_bytes_ / bytes) {
      ::operator delete(p);
      return;
    }
    Block* b = ::new (p) Block{list.head};
    if (list.head == nullptr) list.tail = b;
    list.head = b;
    ++list.count;
  }
  static void release(List& list) noexcept {
    for (Block* b = list.head; b != nullptr;) {
      Block* next = b->next;
      ::operator delete(b);
      b = next;
    }
    list = List{};
  }

  std::uint64_t cap_bytes_;
  std::atomic<std::size_t> block_{0};  // the size of the blocks kept (set by the first take)
  List shared_;
  // The receiver's, written without the lock while senders use `shared_`: a line of its own.
  alignas(64) List private_;
};

// The allocator of a deque whose element blocks (of type `Block`, the deque's value type)
// go through a NodeCache; anything else it allocates (its map) goes to operator new.
// `receivers`: this container's blocks are freed by the receiver without the lock (the
// used-up batch); the others are changed only under the queue lock. Allocators of one cache
// compare equal, so the queue's deques swap their contents (the allocators stay with the
// containers: blocks freed through one were maybe allocated through another).
template <class U, class Block>
class CachedAllocator {
 public:
  using value_type = U;
  template <class V>
  struct rebind {
    using other = CachedAllocator<V, Block>;
  };

  CachedAllocator(NodeCache* cache, bool receivers) noexcept : cache_(cache), receivers_(receivers) {}
  template <class V>
  CachedAllocator(const CachedAllocator<V, Block>& o) noexcept : cache_(o.cache()), receivers_(o.receivers()) {}

  U* allocate(std::size_t n) {
    if constexpr (kOverAligned) {
      return static_cast<U*>(::operator new(n * sizeof(U), std::align_val_t(alignof(U))));
    } else if constexpr (std::is_same_v<U, Block>) {
      if (!receivers_) return static_cast<U*>(cache_->take(n * sizeof(U)));
    }
    return static_cast<U*>(::operator new(n * sizeof(U)));
  }
  void deallocate(U* p, std::size_t n) noexcept {
    if constexpr (kOverAligned) {
      ::operator delete(p, std::align_val_t(alignof(U)));
      return;
    } else if constexpr (std::is_same_v<U, Block>) {
      if (receivers_) {
        cache_->give_receivers(p, n * sizeof(U));
      } else {
        cache_->give_locked(p, n * sizeof(U));
      }
      return;
    }
    ::operator delete(p);
  }

  NodeCache* cache() const noexcept { return cache_; }
  // An item type aligned past what operator new guarantees: its blocks bypass the cache
  // (which keeps plain operator new blocks) and take aligned new and delete.
  static constexpr bool kOverAligned = alignof(U) > __STDCPP_DEFAULT_NEW_ALIGNMENT__;
  bool receivers() const noexcept { return receivers_; }
  template <class V>
  bool operator==(const CachedAllocator<V, Block>& o) const noexcept {
    return cache_ == o.cache();
  }

 private:
  NodeCache* cache_;
  bool receivers_;
};

}  // namespace hopper::detail
