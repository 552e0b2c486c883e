// Footprint: what one item costs against Options::max_memory_bytes.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace hopper {

// The memory footprint of an item, in bytes, as counted against max_memory_bytes.
//
// Default: sizeof(T), plus the heap bytes (capacity) of std::basic_string and of
// std::vector, counted recursively for vectors of strings or vectors.
//
// Customization point, in order of preference:
//   1. specialize  template <> struct hopper::Footprint<MyType> {
//                    static std::uint64_t of(const MyType&) noexcept; };
//   2. or give the type a member  std::uint64_t hopper_footprint() const noexcept;
// The value must not change while the item sits in the queue (it is computed once,
// when the item is accepted, and given back when it leaves). For std::string, whose queue
// the library compiles in advance with the default, also define
// HOPPER_NO_EXTERN_STRING_QUEUE for every file of the program (channel.hpp).
template <class T, class = void>
struct Footprint;

namespace detail {

template <class T, class = void>
struct HasMemberFootprint : std::false_type {};
template <class T>
struct HasMemberFootprint<T, std::void_t<decltype(std::declval<const T&>().hopper_footprint())>>
    : std::true_type {};

template <class T>
struct HeapBytes {
  static std::uint64_t of(const T&) noexcept { return 0; }
};
template <class C, class Tr, class A>
struct HeapBytes<std::basic_string<C, Tr, A>> {
  static std::uint64_t of(const std::basic_string<C, Tr, A>& s) noexcept {
    // Short strings live inside the object (its buffer lies within it); only a heap
    // buffer costs extra.
    const auto* data = reinterpret_cast<const unsigned char*>(s.data());
    const auto* self = reinterpret_cast<const unsigned char*>(&s);
    const bool inline_buffer = data >= self && data < self + sizeof(s);
    return inline_buffer ? 0 : (s.capacity() + 1) * sizeof(C);
  }
};
template <class U, class A>
struct HeapBytes<std::vector<U, A>> {
  static std::uint64_t of(const std::vector<U, A>& v) noexcept {
    std::uint64_t n = v.capacity() * sizeof(U);
    if constexpr (!std::is_trivially_copyable_v<U>) {
      for (const U& u : v) n += HeapBytes<U>::of(u);
    }
    return n;
  }
};

}  // namespace detail

template <class T, class>
struct Footprint {
  static std::uint64_t of(const T& item) noexcept {
    if constexpr (detail::HasMemberFootprint<T>::value) {
      return static_cast<std::uint64_t>(item.hopper_footprint());
    } else {
      return sizeof(T) + detail::HeapBytes<T>::of(item);
    }
  }
};

template <class T>
std::uint64_t footprint(const T& item) noexcept {
  return Footprint<T>::of(item);
}

}  // namespace hopper
