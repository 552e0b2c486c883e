// ByteSource: turns a fuzzer's input into the numbers and byte strings a harness needs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace hopper::fuzz {

// Reads little-endian integers and byte runs off the front of the input; past the end it
// yields zeros and empty strings, so every input decodes to something (the fuzzer need not
// learn a length field before it reaches the code under test). Not thread-safe.
class ByteSource {
 public:
  ByteSource(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  bool empty() const noexcept { return pos_ >= size_; }
  std::size_t remaining() const noexcept { return size_ - pos_; }

  std::uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(u16() | (std::uint32_t{u16()} << 16)); }
  std::uint64_t u64() { return u32() | (std::uint64_t{u32()} << 32); }

  // `n` bytes (fewer at the end of the input).
  std::string bytes(std::size_t n) {
    n = std::min(n, remaining());
    std::string out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }
  // Everything that is left.
  std::string rest() { return bytes(remaining()); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace hopper::fuzz
