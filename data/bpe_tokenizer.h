// BpeTokenizer: a byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-2,
// Llama 3, Qwen and their kin), giving the ids Hugging Face's own tokenizer gives. It reads the
// added and special tokens (matched leftmost-longest before anything else, with lstrip/rstrip/
// single_word and normalized as declared), the normalizer and pre-tokenizer (data/pretokenizer.h),
// the BPE model (vocab, merges as "a b" strings or pairs, ignore_merges), the post-processor
// (TemplateProcessing, Roberta/Bert, ByteLevel, a Sequence) and the ByteLevel decoder.
//
// Words are merged by rank with a heap over a linked list, and each word's ids are cached, so encode()
// is not thread-safe: load one tokenizer per thread. Plain C++ (PCRE2, utf8proc), no
// LibTorch: the coordinator uses it for `rondo data prepare --tokenizer` and `rondo generate`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rondo {

class BpeTokenizer {
 public:
  // Reads `path` (a tokenizer.json); a malformed or unsupported file is refused naming it and
  // the section (DataError).
  static BpeTokenizer load(const std::string& path);
  // The same from the file's text; `where` names it in errors.
  static BpeTokenizer parse(std::string_view json_text, const std::string& where);
  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Appends the ids of `text` (UTF-8; each invalid byte reads as U+FFFD) to `out`.
  // add_special_tokens: the post-processor's tokens around them (a beginning-of-text, ...).
  void encode(std::string_view text, std::vector<int32_t>& out, bool add_special_tokens = false);
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false);
  // The bytes the ids stand for (an id past the vocabulary: U+FFFD). Byte-level tokens can split
  // a UTF-8 character, so the decoding of a prefix of ids need not be valid UTF-8.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // One past the largest id (vocabulary and added tokens): the smallest model vocab_size.
  int64_t vocab_size() const;
  // The id of an added token's content, or of a vocabulary entry's bytes.
  std::optional<int32_t> token_id(std::string_view token) const;
  // The end-of-text token documents are separated by: the eos_token of a tokenizer_config.json
  // beside the loaded file, else an added token named <|endoftext|>, <|end_of_text|> or </s>.
  std::optional<int32_t> end_of_text() const { return end_of_text_; }
  // Invalid UTF-8 bytes replaced so far by encode().
  size_t replaced_bytes() const { return replaced_bytes_; }

  struct Model;

 private:
  BpeTokenizer();
  std::unique_ptr<Model> model_;
  std::optional<int32_t> end_of_text_;
  size_t replaced_bytes_ = 0;
};

}  // namespace rondo
