// Item encoding: cereal's binary encoding (the same bytes cereal::BinaryOutputArchive
// writes: native byte order, sizes as 64-bit), through an archive pair that appends to a
// std::string and reads from a byte view, without iostreams. The reader refuses any size
// larger than the bytes left, so damaged input cannot make it allocate wildly.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include <cereal/cereal.hpp>

namespace hopper::detail {

class OutArchive : public cereal::OutputArchive<OutArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit OutArchive(std::string& out) : OutputArchive(this), out_(out) {}
  void saveBinary(const void* data, std::size_t size) { out_.append(static_cast<const char*>(data), size); }

 private:
  std::string& out_;
};

// Counts the bytes OutArchive would append, without writing them: the size of an item's
// encoding for the price of walking it (O(1) for numbers and strings).
class SizeArchive : public cereal::OutputArchive<SizeArchive, cereal::AllowEmptyClassElision> {
 public:
  SizeArchive() : OutputArchive(this) {}
  void saveBinary(const void*, std::size_t size) { bytes_ += size; }
  std::uint64_t bytes() const noexcept { return bytes_; }

 private:
  std::uint64_t bytes_ = 0;
};

class InArchive : public cereal::InputArchive<InArchive, cereal::AllowEmptyClassElision> {
 public:
  explicit InArchive(std::string_view in) : InputArchive(this), in_(in) {}
  void loadBinary(void* data, std::size_t size) {
    if (size > in_.size() - pos_) throw cereal::Exception("item is shorter than its encoding claims");
    if (size > 0) std::memcpy(data, in_.data() + pos_, size);
    pos_ += size;
  }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
};

}  // namespace hopper::detail

namespace cereal {

template <class Archive, class T>
inline CEREAL_ARCHIVE_RESTRICT(hopper::detail::OutArchive, hopper::detail::SizeArchive)
    CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const T& t) requires std::is_arithmetic_v<T> {
  ar.saveBinary(std::addressof(t), sizeof(t));
}
template <class T>
inline std::enable_if_t<std::is_arithmetic_v<T>> CEREAL_LOAD_FUNCTION_NAME(hopper::detail::InArchive& ar, T& t) {
  ar.loadBinary(std::addressof(t), sizeof(t));
}
template <class Archive, class T>
inline CEREAL_ARCHIVE_RESTRICT(hopper::detail::InArchive, hopper::detail::OutArchive)
    CEREAL_SERIALIZE_FUNCTION_NAME(Archive& ar, NameValuePair<T>& t) {
  ar(t.value);
}
template <class T>
inline void CEREAL_SERIALIZE_FUNCTION_NAME(hopper::detail::SizeArchive& ar, NameValuePair<T>& t) {
  ar(t.value);
}
template <class Archive, class T>
inline CEREAL_ARCHIVE_RESTRICT(hopper::detail::OutArchive, hopper::detail::SizeArchive)
    CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const SizeTag<T>& t) {
  ar(t.size);
}
template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(hopper::detail::InArchive& ar, SizeTag<T>& t) {
  ar(t.size);
  // Every element takes at least one byte, so a larger count is damage, not data.
  if (static_cast<std::uint64_t>(t.size) > ar.remaining())
    throw Exception("container size " + std::to_string(static_cast<std::uint64_t>(t.size)) +
                    " exceeds the item's remaining bytes");
}
template <class Archive, class T>
inline CEREAL_ARCHIVE_RESTRICT(hopper::detail::OutArchive, hopper::detail::SizeArchive)
    CEREAL_SAVE_FUNCTION_NAME(Archive& ar, const BinaryData<T>& bd) {
  ar.saveBinary(bd.data, static_cast<std::size_t>(bd.size));
}
template <class T>
inline void CEREAL_LOAD_FUNCTION_NAME(hopper::detail::InArchive& ar, BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

}  // namespace cereal

CEREAL_REGISTER_ARCHIVE(hopper::detail::OutArchive)
CEREAL_REGISTER_ARCHIVE(hopper::detail::SizeArchive)
CEREAL_REGISTER_ARCHIVE(hopper::detail::InArchive)
CEREAL_SETUP_ARCHIVE_TRAITS(hopper::detail::InArchive, hopper::detail::OutArchive)
// SizeArchive pairs with InArchive too (cereal checks save/load symmetry through this map).
namespace cereal::traits::detail {
template <>
struct get_input_from_output<hopper::detail::SizeArchive> {
  using type = hopper::detail::InArchive;
};
}  // namespace cereal::traits::detail

namespace hopper::detail {

// Numbers and std::string, the usual items, are written and read directly: the same bytes
// the archives produce (a number's bytes; a string's size as cereal::size_type, then its
// characters), without building an archive per item — cereal's archives set up and tear
// down hash tables (for pointer tracking) each time, which cost more than the copy itself.
// Everything else goes through cereal. tests: ItemCodec.* compare both ways.
template <class T>
inline constexpr bool kDirectNumber = std::is_arithmetic_v<T>;
template <class T>
inline constexpr bool kDirectString = std::is_same_v<T, std::string>;
using StringSize = cereal::size_type;

// Appends the encoding of `item` to `out`.
template <class T>
void encode(const T& item, std::string& out) {
  if constexpr (kDirectNumber<T>) {
    out.append(reinterpret_cast<const char*>(&item), sizeof item);
  } else if constexpr (kDirectString<T>) {
    const auto size = static_cast<StringSize>(item.size());
    const std::size_t at = out.size();
    out.resize(at + sizeof size + item.size());
    std::memcpy(out.data() + at, &size, sizeof size);
    if (!item.empty()) std::memcpy(out.data() + at + sizeof size, item.data(), item.size());
  } else {
    OutArchive ar(out);
    ar(item);
  }
}

// The number of bytes encode(item, out) appends, without encoding.
template <class T>
std::uint64_t encoded_size(const T& item) {
  if constexpr (kDirectNumber<T>) {
    return sizeof item;
  } else if constexpr (kDirectString<T>) {
    return sizeof(StringSize) + item.size();
  } else {
    SizeArchive ar;
    ar(item);
    return ar.bytes();
  }
}

// Decodes `bytes` into `out`. False when the bytes are not exactly one T's encoding.
template <class T>
bool decode(std::string_view bytes, T& out) noexcept {
  if constexpr (kDirectNumber<T>) {
    if (bytes.size() != sizeof out) return false;
    std::memcpy(&out, bytes.data(), sizeof out);
    return true;
  } else if constexpr (kDirectString<T>) {
    StringSize size = 0;
    if (bytes.size() < sizeof size) return false;
    std::memcpy(&size, bytes.data(), sizeof size);
    if (size != bytes.size() - sizeof size) return false;  // shorter, or trailing bytes
    try {
      out.assign(bytes.data() + sizeof size, bytes.size() - sizeof size);
    } catch (const std::exception&) {
      return false;
    }
    return true;
  } else {
    try {
      InArchive ar(bytes);
      ar(out);
      return ar.remaining() == 0;
    } catch (const std::exception&) {
      return false;
    }
  }
}

}  // namespace hopper::detail
