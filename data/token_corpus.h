// TokenCorpus: the training data as one stream of token ids, which the sampler cuts windows from.
// data.format (resolved from data.path when `auto`):
//   builtin  the concatenation of the license texts every Debian system has in
//            /usr/share/common-licenses (package base-files, Essential), regular files only, in
//            name order: about 230 KB of real English text;
//   text     a text file, or a directory's regular files (recursively, in name order), concatenated;
//   jsonl    the `text` fields of a JSONL file's lines, concatenated;
//   indexed  a Megatron indexed dataset PREFIX (PREFIX.bin + PREFIX.idx), its sequences in order,
//            memory-mapped (data/indexed_dataset.h): never read whole;
//   lognormal (data.path: lognormal) a synthetic mix: documents of lognormal lengths cut from the
//            builtin text (data/lognormal_mix.h, parameters data.lognormal_*), held in memory.
// Text is tokenised by the byte tokenizer (each byte one token, 0..255). `auto` picks indexed
// when PREFIX.idx exists, jsonl for a *.jsonl file, text otherwise.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/indexed_dataset.h"
#include "data/lognormal_mix.h"

namespace rondo {

inline constexpr const char* kBuiltinCorpusDir = "/usr/share/common-licenses";

class TokenCorpus {
 public:
  // The format `auto` resolves to for `path` (the others are returned unchanged).
  static std::string resolve_format(const std::string& path, const std::string& format);
  // Loads `path` in `format`. Throws ConfigError naming data.path if it cannot be read (DataError
  // for a corrupt indexed dataset) or holds fewer than `min_tokens` tokens. `mix` is read for
  // the lognormal format only.
  static TokenCorpus load(const std::string& path, const std::string& format, uint64_t min_tokens,
                          const LognormalMix& mix = {});

  uint64_t size() const { return size_; }  // tokens
  // Tokens [offset, offset + count) of the stream into `out`.
  void read(uint64_t offset, size_t count, int64_t* out) const;
  // For the same tokens, which document each belongs to, numbered from 0 at `offset` (a file of
  // a directory or of builtin, a JSONL line, an indexed dataset's document).
  void documents(uint64_t offset, size_t count, int64_t* out) const;
  const std::string& source() const { return source_; }  // for the log: what was loaded
  uint64_t num_documents() const { return document_starts_.size(); }
  uint64_t document_start(uint64_t document) const { return document_starts_.at(document); }
  // Each document's tokens, in order.
  std::vector<int64_t> document_lengths() const;
  // Documents [begin, end) as a corpus of their own (sharing this one's tokens), `part` naming it
  // in source() ("train", "validation"; data.split, data/document_split.h).
  TokenCorpus documents_slice(uint64_t begin, uint64_t end, const std::string& part) const;

 private:
  std::shared_ptr<const std::vector<uint8_t>> bytes_;  // builtin, text, jsonl
  uint64_t base_ = 0;  // a slice: where its tokens start in bytes_ or the indexed dataset's stream
  std::shared_ptr<IndexedDataset> indexed_;  // indexed
  std::vector<uint64_t> sequence_starts_;    // indexed: each sequence's first token in the stream
  std::vector<uint64_t> document_starts_;    // each document's first token in the stream
  uint64_t size_ = 0;
  std::string source_;
};

}  // namespace rondo
