// The text half of a Hugging Face tokenizer.json, ahead of its BPE model: the normalizer (NFC,
// NFD, NFKC, NFKD, or a Sequence of them; utf8proc) and the pre-tokenizer (Split by a regex or a
// string with any of Hugging Face's five delimiter behaviours, ByteLevel with GPT-2's regex and
// its prefix space, a Sequence of them), which cut text into the pieces BPE encodes one by one.
// Regexes are Hugging Face's own patterns run by PCRE2 (UTF, Unicode properties, JIT), so
// `\p{L}`, `(?i:...)` and `\s+(?!\S)` mean what they mean there. Anything else in those sections
// is refused naming the section and the type.
#pragma once

#include <deque>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace rondo {

// `text` when it is valid UTF-8, else a copy with each invalid byte replaced by U+FFFD;
// `replaced` (when given) counts the replacements.
std::string_view valid_utf8(std::string_view text, std::string& repaired, size_t* replaced = nullptr);

class TextNormalizer {
 public:
  // `j`: the tokenizer.json "normalizer" (null: none); `where` names the file for errors.
  static TextNormalizer from_json(const nlohmann::json& j, const std::string& where);
  bool empty() const { return forms_.empty(); }
  std::string apply(std::string_view text) const;  // text must be valid UTF-8

 private:
  std::vector<int> forms_;  // utf8proc option sets, applied in order
};

class PreTokenizer {
 public:
  // `j`: the tokenizer.json "pre_tokenizer" (null: the text is one piece).
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& where);
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  ~PreTokenizer();

  // Whether a ByteLevel step maps the pieces to byte-level symbols (what a byte-level BPE needs).
  bool byte_level() const { return byte_level_; }
  // Appends the pieces of `text` (valid UTF-8) to `pieces`: views into `text`, or into strings
  // appended to `storage` (a ByteLevel prefix space).
  void split(std::string_view text, std::vector<std::string_view>& pieces,
             std::deque<std::string>& storage) const;

  struct Step;

 private:
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Step>> steps_;
  bool byte_level_ = false;
};

}  // namespace rondo
