// TextCodec: text to token ids and back for the commands that tokenise (`rondo data prepare`,
// `rondo generate`): a Hugging Face tokenizer.json (data/bpe_tokenizer.h) or, without one, one
// token per byte (ids past 255 decode as U+FFFD).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/bpe_tokenizer.h"

namespace rondo {

class TextCodec {
 public:
  explicit TextCodec(const std::string& tokenizer_path);  // "": bytes
  bool is_bytes() const { return !bpe_.has_value(); }
  // The tokenizer.json, or "bytes".
  const std::string& name() const { return name_; }
  int64_t vocab_size() const { return bpe_ ? bpe_->vocab_size() : 256; }
  // add_special_tokens: the tokenizer's post-processor tokens (none with bytes).
  void encode(std::string_view text, std::vector<int32_t>& out, bool add_special_tokens = false);
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;
  std::optional<int32_t> end_of_text() const { return bpe_ ? bpe_->end_of_text() : std::nullopt; }
  size_t replaced_bytes() const { return bpe_ ? bpe_->replaced_bytes() : 0; }

 private:
  std::string name_;
  std::optional<BpeTokenizer> bpe_;
};

}  // namespace rondo
