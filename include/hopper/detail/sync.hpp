// The queue's lock and the capabilities clang's thread-safety analysis checks
// (-Wthread-safety): a Mutex, a scoped MutexLock, a CondVar that waits on the Mutex, and
// Token, a capability that is not a lock (the writer token, the receiver's role). Also
// HOPPER_ASSERT, for invariants. Not part of the public API.
//
// Every member that some lock or token guards says so with HOPPER_GUARDED_BY (or
// HOPPER_PT_GUARDED_BY for what a pointer owns), and every function that must be called
// with one held says so with HOPPER_REQUIRES; a clang build with -Wthread-safety -Werror
// (scripts/ci-thread-safety) proves that no access breaks that. With other compilers the
// annotations are empty.
#pragma once

#include <atomic>
#include <cerrno>
#include <ctime>
#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__GLIBC__)
#include <pthread.h>
#endif

#if defined(__clang__)
#define HOPPER_TSA(x) __attribute__((x))
#else
#define HOPPER_TSA(x)
#endif

#define HOPPER_CAPABILITY(name) HOPPER_TSA(capability(name))
#define HOPPER_SCOPED_CAPABILITY HOPPER_TSA(scoped_lockable)
#define HOPPER_GUARDED_BY(x) HOPPER_TSA(guarded_by(x))
#define HOPPER_PT_GUARDED_BY(x) HOPPER_TSA(pt_guarded_by(x))
#define HOPPER_REQUIRES(...) HOPPER_TSA(requires_capability(__VA_ARGS__))
#define HOPPER_ACQUIRE(...) HOPPER_TSA(acquire_capability(__VA_ARGS__))
#define HOPPER_RELEASE(...) HOPPER_TSA(release_capability(__VA_ARGS__))
#define HOPPER_TRY_ACQUIRE(...) HOPPER_TSA(try_acquire_capability(__VA_ARGS__))
#define HOPPER_EXCLUDES(...) HOPPER_TSA(locks_excluded(__VA_ARGS__))
#define HOPPER_RETURN_CAPABILITY(x) HOPPER_TSA(lock_returned(x))
#define HOPPER_NO_THREAD_SAFETY_ANALYSIS HOPPER_TSA(no_thread_safety_analysis)

// A function with one caller on a per-item path, which the compiler would otherwise keep
// out of line for its size (the call and its register traffic then cost more than the body).
#if defined(__GNUC__) || defined(__clang__)
#define HOPPER_INLINE_ONCE __attribute__((always_inline)) inline
#else
#define HOPPER_INLINE_ONCE inline
#endif

// HOPPER_ASSERT(condition, message): an invariant of the queue. Checked in debug builds
// (no NDEBUG) and in sanitizer builds (CMake defines HOPPER_ASSERTS=1 with HOPPER_SANITIZE;
// compilers that say they sanitize turn it on too); a failure prints where and why, then
// aborts. Elsewhere it costs nothing and the condition is not evaluated.
#if !defined(HOPPER_ASSERTS)
#if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HOPPER_ASSERTS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define HOPPER_ASSERTS 1
#endif
#endif
#endif
#if !defined(HOPPER_ASSERTS)
#define HOPPER_ASSERTS 0
#endif

namespace hopper::detail {
[[noreturn]] void assertion_failed(const char* condition, const char* message, const char* file, int line) noexcept;
}  // namespace hopper::detail

#if HOPPER_ASSERTS
#define HOPPER_ASSERT(condition, message) \
  ((condition) ? (void)0 : ::hopper::detail::assertion_failed(#condition, message, __FILE__, __LINE__))
#else
#define HOPPER_ASSERT(condition, message) ((void)sizeof(!(condition)))
#endif

namespace hopper::detail {

using Clock = std::chrono::steady_clock;

// The queue's lock, a capability clang's analysis knows. Under glibc a POSIX mutex of the
// adaptive kind, which spins briefly before sleeping: its holders keep it for tens of
// nanoseconds, and a sender that found it taken then usually gets it without a futex
// sleep and wake-up (each a system call, and dear under virtualisation). Measured:
// docs/performance.md, "The lock". Elsewhere a std::mutex.
#if defined(__GLIBC__)
class HOPPER_CAPABILITY("mutex") Mutex {
 public:
  Mutex() noexcept {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&m_, &attr);
    pthread_mutexattr_destroy(&attr);
  }
  ~Mutex() { pthread_mutex_destroy(&m_); }
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() HOPPER_ACQUIRE() { pthread_mutex_lock(&m_); }
  void unlock() HOPPER_RELEASE() { pthread_mutex_unlock(&m_); }

 private:
  friend class CondVar;
  pthread_mutex_t m_;
};
#else
class HOPPER_CAPABILITY("mutex") Mutex {
 public:
  void lock() HOPPER_ACQUIRE() { m_.lock(); }
  void unlock() HOPPER_RELEASE() { m_.unlock(); }

 private:
  friend class CondVar;
  std::mutex m_;
};
#endif

// Holds a Mutex for its scope; unlock() and lock() open and close a window without it.
class HOPPER_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) HOPPER_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() HOPPER_RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  void unlock() HOPPER_RELEASE() {
    mu_.unlock();
    held_ = false;
  }
  void lock() HOPPER_ACQUIRE() {
    mu_.lock();
    held_ = true;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

// A condition variable waiting on a Mutex the caller holds (released while waiting, held
// again on return, as std::condition_variable does).
#if defined(__GLIBC__)
class CondVar {
 public:
  CondVar() noexcept {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);  // Clock (steady_clock) is CLOCK_MONOTONIC
    pthread_cond_init(&cv_, &attr);
    pthread_condattr_destroy(&attr);
  }
  ~CondVar() { pthread_cond_destroy(&cv_); }
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;
  void wait(Mutex& mu) HOPPER_REQUIRES(mu) { pthread_cond_wait(&cv_, &mu.m_); }
  // True when `deadline` passed.
  bool wait_until(Mutex& mu, Clock::time_point deadline) HOPPER_REQUIRES(mu) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
    if (ns <= 0) return Clock::now() >= deadline;
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    return pthread_cond_timedwait(&cv_, &mu.m_, &ts) == ETIMEDOUT;
  }
  void notify_one() noexcept { pthread_cond_signal(&cv_); }
  void notify_all() noexcept { pthread_cond_broadcast(&cv_); }

 private:
  pthread_cond_t cv_;
};
#else
class CondVar {
 public:
  void wait(Mutex& mu) HOPPER_REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu.m_, std::adopt_lock);
    cv_.wait(lk);
    lk.release();
  }
  // True when `deadline` passed.
  bool wait_until(Mutex& mu, Clock::time_point deadline) HOPPER_REQUIRES(mu) {
    std::unique_lock<std::mutex> lk(mu.m_, std::adopt_lock);
    const bool timed_out = cv_.wait_until(lk, deadline) == std::cv_status::timeout;
    lk.release();
    return timed_out;
  }
  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};
#endif

// A capability that is not a lock: the right to touch what it guards, held by one thread
// at a time by the queue's own rules (the writer token is taken under the queue lock; the
// receiver's role belongs to whoever calls the Receiver, one thread at a time). Acquiring
// and releasing it costs nothing; with HOPPER_ASSERTS a second holder aborts.
class HOPPER_CAPABILITY("token") Token {
 public:
  void acquire() noexcept HOPPER_ACQUIRE() {
#if HOPPER_ASSERTS
    HOPPER_ASSERT(!held_.exchange(true, std::memory_order_relaxed), "a second thread took a token already held");
#endif
  }
  void release() noexcept HOPPER_RELEASE() {
#if HOPPER_ASSERTS
    HOPPER_ASSERT(held_.exchange(false, std::memory_order_relaxed), "a token released that was not held");
#endif
  }

 private:
  // Checks only (HOPPER_ASSERTS), but present in every build: the layout of a class that
  // holds a Token must not depend on whether the code that sees it checks assertions.
  std::atomic<bool> held_{false};
};

// Holds a Token for its scope.
class HOPPER_SCOPED_CAPABILITY TokenScope {
 public:
  explicit TokenScope(Token& t) HOPPER_ACQUIRE(t) : t_(t) { t_.acquire(); }
  ~TokenScope() HOPPER_RELEASE() { t_.release(); }
  TokenScope(const TokenScope&) = delete;
  TokenScope& operator=(const TokenScope&) = delete;

 private:
  Token& t_;
};

}  // namespace hopper::detail
