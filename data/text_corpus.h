// TextCorpus: the training text as bytes (the byte-level tokenizer maps each byte to its token
// id 0..255). `builtin` is the concatenation of the license texts every Debian system has in
// /usr/share/common-licenses (package base-files, which is Essential), regular files only, in
// name order: about 230 KB of real English text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rondo {

inline constexpr const char* kBuiltinCorpusDir = "/usr/share/common-licenses";

class TextCorpus {
 public:
  // Loads `path` ("builtin" or a file). Throws ConfigError naming data.path if it cannot be read
  // or holds fewer than `min_bytes` bytes.
  static TextCorpus load(const std::string& path, size_t min_bytes);

  const std::vector<uint8_t>& bytes() const { return bytes_; }
  size_t size() const { return bytes_.size(); }
  const std::string& source() const { return source_; }

 private:
  std::vector<uint8_t> bytes_;
  std::string source_;
};

}  // namespace rondo
