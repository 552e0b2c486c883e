// Json: just enough of a JSON value to write the driver's results file.
#pragma once

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace hopper::bench {

// A JSON value built in memory and written once. Objects keep their keys sorted.
// Not thread-safe (one owner).
class Json {
 public:
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;

  Json() = default;
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  Json(int n) : v_(static_cast<double>(n)) {}
  Json(long n) : v_(static_cast<double>(n)) {}
  Json(long long n) : v_(static_cast<double>(n)) {}
  Json(unsigned n) : v_(static_cast<double>(n)) {}
  Json(unsigned long n) : v_(static_cast<double>(n)) {}
  Json(unsigned long long n) : v_(static_cast<double>(n)) {}
  Json(double d) : v_(d) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(Array a) : v_(std::make_shared<Array>(std::move(a))) {}
  Json(Object o) : v_(std::make_shared<Object>(std::move(o))) {}

  // Object member access; turns a null value into an object.
  Json& operator[](const std::string& key) {
    if (std::holds_alternative<std::monostate>(v_)) v_ = std::make_shared<Object>();
    return (*std::get<std::shared_ptr<Object>>(v_))[key];
  }
  // Appends to an array; turns a null value into an array.
  void push_back(Json j) {
    if (std::holds_alternative<std::monostate>(v_)) v_ = std::make_shared<Array>();
    std::get<std::shared_ptr<Array>>(v_)->push_back(std::move(j));
  }

  std::string dump(int indent = 0) const {
    std::string out;
    write(out, indent, 0);
    out += '\n';
    return out;
  }

 private:
  static void quote(std::string& out, const std::string& s) {
    out += '"';
    for (char c : s) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\t': out += "\\t"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += c;
          }
      }
    }
    out += '"';
  }

  void write(std::string& out, int indent, int depth) const {
    const std::string pad = indent ? "\n" + std::string((depth + 1) * indent, ' ') : "";
    const std::string end = indent ? "\n" + std::string(depth * indent, ' ') : "";
    if (std::holds_alternative<std::monostate>(v_)) {
      out += "null";
    } else if (auto* b = std::get_if<bool>(&v_)) {
      out += *b ? "true" : "false";
    } else if (auto* d = std::get_if<double>(&v_)) {
      if (!std::isfinite(*d)) {
        out += "null";
      } else {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.10g", *d);
        out += buf;
      }
    } else if (auto* s = std::get_if<std::string>(&v_)) {
      quote(out, *s);
    } else if (auto* a = std::get_if<std::shared_ptr<Array>>(&v_)) {
      out += '[';
      bool first = true;
      for (const Json& j : **a) {
        if (!first) out += ',';
        first = false;
        out += pad;
        j.write(out, indent, depth + 1);
      }
      if (!(*a)->empty()) out += end;
      out += ']';
    } else if (auto* o = std::get_if<std::shared_ptr<Object>>(&v_)) {
      out += '{';
      bool first = true;
      for (const auto& [k, j] : **o) {
        if (!first) out += ',';
        first = false;
        out += pad;
        quote(out, k);
        out += indent ? ": " : ":";
        j.write(out, indent, depth + 1);
      }
      if (!(*o)->empty()) out += end;
      out += '}';
    }
  }

  std::variant<std::monostate, bool, double, std::string, std::shared_ptr<Array>, std::shared_ptr<Object>> v_;
};

}  // namespace hopper::bench
