#include "data/text_codec.h"

namespace rondo {

TextCodec::TextCodec(const std::string& tokenizer_path)
    : name_(tokenizer_path.empty() ? "bytes" : tokenizer_path) {
  if (!tokenizer_path.empty()) bpe_.emplace(BpeTokenizer::load(tokenizer_path));
}

void TextCodec::encode(std::string_view text, std::vector<int32_t>& out, bool add_special_tokens) {
  if (bpe_) {
    bpe_->encode(text, out, add_special_tokens);
    return;
  }
  for (char c : text) out.push_back(static_cast<uint8_t>(c));
}

std::string TextCodec::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  if (bpe_) return bpe_->decode(ids, skip_special_tokens);
  std::string text;
  for (int32_t v : ids) {
    if (v >= 0 && v < 256) {
      text.push_back(static_cast<char>(v));
    } else {
      text.append("\xEF\xBF\xBD");
    }
  }
  return text;
}

}  // namespace rondo
