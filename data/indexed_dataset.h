// IndexedDataset: the corpus format Megatron-LM's preprocessing writes, PREFIX.bin (every
// sequence's token ids back to back) and PREFIX.idx (header "MMIDIDX\x00\x00", version 1 (uint64),
// the token dtype code (uint8), sequence and document counts (uint64), then int32 sequence
// lengths, int64 byte offsets of the sequences in the .bin, and int64 document indices: the
// first sequence of each document, from 0, ending with the sequence count). Existing Megatron
// corpora load unchanged; `rondo data prepare` writes them.
//
// Both files are memory-mapped read-only and never read whole. open() checks every count,
// offset and length against the files' sizes before anything is read, and refuses an index
// that does not describe its .bin exactly, naming the file and the inconsistency (DataError).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/errors.h"

namespace rondo {

// Megatron's dtype codes (the token types rondo reads; floats are refused).
enum class TokenType : uint8_t { kUint8 = 1, kInt8 = 2, kInt16 = 3, kInt32 = 4, kInt64 = 5, kUint16 = 8 };
size_t token_size(TokenType type);
const char* token_type_name(TokenType type);

class IndexedDataset {
 public:
  static IndexedDataset open(const std::string& prefix);
  IndexedDataset(IndexedDataset&&) noexcept;
  IndexedDataset& operator=(IndexedDataset&&) noexcept;
  ~IndexedDataset();

  size_t sequences() const { return sequences_; }
  size_t documents() const { return documents_ > 0 ? documents_ - 1 : 0; }
  uint64_t tokens() const { return tokens_; }
  TokenType token_type() const { return type_; }
  int32_t length(size_t sequence) const;
  // The first sequence of document `document` (document == documents(): the sequence count).
  int64_t document_start(size_t document) const;
  // Appends sequence `sequence`'s tokens [from, from + count) to `out`.
  void read(size_t sequence, size_t from, size_t count, std::vector<int64_t>& out) const;

 private:
  IndexedDataset() = default;
  struct Mapping;
  std::unique_ptr<Mapping> idx_, bin_;
  TokenType type_ = TokenType::kUint16;
  size_t sequences_ = 0, documents_ = 0;
  uint64_t tokens_ = 0;
  // The index's arrays (unaligned: read through memcpy).
  const char* lengths_ = nullptr;
  const char* offsets_ = nullptr;
  const char* document_index_ = nullptr;
};

// Writes PREFIX.bin and PREFIX.idx, one sequence per document. The files appear under their
// names only when finish() succeeds (written as .partial, then renamed).
class IndexedDatasetWriter {
 public:
  IndexedDatasetWriter(std::string prefix, TokenType type);
  ~IndexedDatasetWriter();
  void add_document(std::span<const int64_t> tokens);
  void add_document(std::span<const int32_t> tokens);
  void add_bytes(const char* data, size_t size);  // the byte tokenizer: one token per byte
  void finish();
  uint64_t tokens() const { return tokens_; }
  size_t documents() const { return lengths_.size(); }

 private:
  void append(const void* data, size_t bytes);
  template <class Token>
  void write_document(std::span<const Token> tokens);
  std::string prefix_;
  TokenType type_;
  int fd_ = -1;
  std::vector<int32_t> lengths_;
  uint64_t tokens_ = 0;
  bool finished_ = false;
};

}  // namespace rondo
