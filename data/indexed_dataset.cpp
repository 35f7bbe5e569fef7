#include "data/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace rondo {

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr uint64_t kVersion = 1;
constexpr size_t kHeaderBytes = 9 + 8 + 1 + 8 + 8;

template <typename T>
T load(const char* p) {  // the index's arrays are not aligned (the header is 34 bytes)
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

size_t token_size(TokenType type) {
  switch (type) {
    case TokenType::kUint8:
    case TokenType::kInt8:
      return 1;
    case TokenType::kInt16:
    case TokenType::kUint16:
      return 2;
    case TokenType::kInt32:
      return 4;
    case TokenType::kInt64:
      return 8;
  }
  return 0;
}

const char* token_type_name(TokenType type) {
  switch (type) {
    case TokenType::kUint8:
      return "uint8";
    case TokenType::kInt8:
      return "int8";
    case TokenType::kInt16:
      return "int16";
    case TokenType::kUint16:
      return "uint16";
    case TokenType::kInt32:
      return "int32";
    case TokenType::kInt64:
      return "int64";
  }
  return "unknown";
}

// A whole file mapped read-only (nothing mapped for an empty one).
struct IndexedDataset::Mapping {
  std::string path;
  const char* data = nullptr;
  size_t size = 0;

  explicit Mapping(std::string p) : path(std::move(p)) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw DataError(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw DataError(path, "not a regular file");
    }
    size = static_cast<size_t>(st.st_size);
    if (size > 0) {
      void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (m == MAP_FAILED) {
        ::close(fd);
        throw DataError(path, std::string("cannot map: ") + std::strerror(errno));
      }
      data = static_cast<const char*>(m);
    }
    ::close(fd);
  }
  ~Mapping() {
    if (data) ::munmap(const_cast<char*>(data), size);
  }
};

IndexedDataset::IndexedDataset(IndexedDataset&&) noexcept = default;
IndexedDataset& IndexedDataset::operator=(IndexedDataset&&) noexcept = default;
IndexedDataset::~IndexedDataset() = default;

IndexedDataset IndexedDataset::open(const std::string& prefix) {
  IndexedDataset d;
  d.idx_ = std::make_unique<Mapping>(prefix + ".idx");
  const auto& idx = *d.idx_;
  const auto bad = [&](const std::string& why) { return DataError(idx.path, why); };
  if (idx.size < kHeaderBytes) {
    throw bad("truncated: " + std::to_string(idx.size) + " bytes, the header alone takes " +
              std::to_string(kHeaderBytes));
  }
  if (std::memcmp(idx.data, kMagic, sizeof(kMagic)) != 0) {
    throw bad("not a Megatron indexed dataset index (no MMIDIDX header)");
  }
  const auto version = load<uint64_t>(idx.data + 9);
  if (version != kVersion) throw bad("index version " + std::to_string(version) + ", only 1 is known");
  const auto code = static_cast<uint8_t>(idx.data[17]);
  if (code < 1 || code > 8 || code == 6 || code == 7) {
    throw bad("token dtype code " + std::to_string(code) + " is not an integer type (1-5, 8)");
  }
  d.type_ = static_cast<TokenType>(code);
  const auto sequences = load<uint64_t>(idx.data + 18), documents = load<uint64_t>(idx.data + 26);
  // Each count is bounded by the file before any size is computed from it (no overflow).
  if (sequences > idx.size / 12 || documents > idx.size / 8 ||
      kHeaderBytes + 12 * sequences + 8 * documents != idx.size) {
    throw bad("holds " + std::to_string(idx.size) + " bytes, but its header's " + std::to_string(sequences) +
              " sequences and " + std::to_string(documents) + " document indices need " +
              std::to_string(kHeaderBytes + 12 * sequences + 8 * documents));
  }
  d.sequences_ = sequences;
  d.documents_ = documents;
  const char* lengths = idx.data + kHeaderBytes;
  const char* offsets = lengths + 4 * sequences;
  const char* docs = offsets + 8 * sequences;
  if (documents == 0 || load<int64_t>(docs) != 0 ||
      load<int64_t>(docs + 8 * (documents - 1)) != static_cast<int64_t>(sequences)) {
    throw bad("document indices must run from 0 to the sequence count (" + std::to_string(sequences) + ")");
  }
  for (uint64_t i = 1; i < documents; ++i) {
    if (load<int64_t>(docs + 8 * i) < load<int64_t>(docs + 8 * (i - 1))) {
      throw bad("document index " + std::to_string(i) + " goes backwards");
    }
  }
  d.bin_ = std::make_unique<Mapping>(prefix + ".bin");
  const uint64_t item = token_size(d.type_);
  uint64_t expected = 0;
  for (uint64_t i = 0; i < sequences; ++i) {
    const auto length = load<int32_t>(lengths + 4 * i);
    const auto offset = load<int64_t>(offsets + 8 * i);
    if (length < 0) throw bad("sequence " + std::to_string(i) + " has length " + std::to_string(length));
    if (offset != static_cast<int64_t>(expected) ||
        expected + item * static_cast<uint64_t>(length) > d.bin_->size) {
      throw bad("sequence " + std::to_string(i) + " (" + std::to_string(length) + " tokens at byte " +
                std::to_string(offset) + ") does not follow the previous one inside " + d.bin_->path + " (" +
                std::to_string(d.bin_->size) + " bytes)");
    }
    expected += item * static_cast<uint64_t>(length);
    d.tokens_ += static_cast<uint64_t>(length);
  }
  if (expected != d.bin_->size) {
    throw bad("its sequences cover " + std::to_string(expected) + " bytes of " + d.bin_->path +
              ", which has " + std::to_string(d.bin_->size));
  }
  d.lengths_ = lengths;
  d.offsets_ = offsets;
  d.document_index_ = docs;
  return d;
}

int32_t IndexedDataset::length(size_t sequence) const { return load<int32_t>(lengths_ + 4 * sequence); }

int64_t IndexedDataset::document_start(size_t document) const {
  return load<int64_t>(document_index_ + 8 * document);
}

void IndexedDataset::read(size_t sequence, size_t from, size_t count, std::vector<int64_t>& out) const {
  if (sequence >= sequences_ || from + count > static_cast<size_t>(length(sequence))) {
    throw DataError(bin_->path, "read past sequence " + std::to_string(sequence) + "'s end");
  }
  const size_t item = token_size(type_);
  const char* p = bin_->data + load<int64_t>(offsets_ + 8 * sequence) + item * from;
  out.reserve(out.size() + count);
  for (size_t i = 0; i < count; ++i, p += item) {
    switch (type_) {
      case TokenType::kUint8:
        out.push_back(static_cast<uint8_t>(*p));
        break;
      case TokenType::kInt8:
        out.push_back(static_cast<int8_t>(*p));
        break;
      case TokenType::kInt16:
        out.push_back(load<int16_t>(p));
        break;
      case TokenType::kUint16:
        out.push_back(load<uint16_t>(p));
        break;
      case TokenType::kInt32:
        out.push_back(load<int32_t>(p));
        break;
      case TokenType::kInt64:
        out.push_back(load<int64_t>(p));
        break;
    }
  }
}

IndexedDatasetWriter::IndexedDatasetWriter(std::string prefix, TokenType type)
    : prefix_(std::move(prefix)), type_(type) {
  if (type != TokenType::kUint16 && type != TokenType::kInt32) {
    throw DataError(prefix_, "rondo writes uint16 or int32 tokens");
  }
  const std::string bin = prefix_ + ".bin.partial";
  fd_ = ::open(bin.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd_ < 0) throw DataError(bin, std::string("cannot create: ") + std::strerror(errno));
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) {
    std::error_code ignored;
    std::filesystem::remove(prefix_ + ".bin.partial", ignored);
    std::filesystem::remove(prefix_ + ".idx.partial", ignored);
  }
}

void IndexedDatasetWriter::append(const void* data, size_t bytes) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd_, p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw DataError(prefix_ + ".bin.partial", std::string("write failed: ") + std::strerror(errno));
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

void IndexedDatasetWriter::add_document(std::span<const int64_t> tokens) { write_document(tokens); }
void IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) { write_document(tokens); }

template <class Token>
void IndexedDatasetWriter::write_document(std::span<const Token> tokens) {
  if (tokens.size() > static_cast<size_t>(INT32_MAX)) throw DataError(prefix_, "a document over 2^31 tokens");
  const int64_t max = type_ == TokenType::kUint16 ? 65535 : INT32_MAX;
  std::vector<char> buf(tokens.size() * token_size(type_));
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > max) {
      throw DataError(prefix_, "token " + std::to_string(tokens[i]) + " does not fit " +
                                   token_type_name(type_) +
                                   (type_ == TokenType::kUint16 ? " (use --dtype int32)" : ""));
    }
    if (type_ == TokenType::kUint16) {
      const auto v = static_cast<uint16_t>(tokens[i]);
      std::memcpy(buf.data() + 2 * i, &v, 2);
    } else {
      const auto v = static_cast<int32_t>(tokens[i]);
      std::memcpy(buf.data() + 4 * i, &v, 4);
    }
  }
  append(buf.data(), buf.size());
  lengths_.push_back(static_cast<int32_t>(tokens.size()));
  tokens_ += tokens.size();
}

void IndexedDatasetWriter::add_bytes(const char* data, size_t size) {
  std::vector<int32_t> tokens(size);
  for (size_t i = 0; i < size; ++i) tokens[i] = static_cast<uint8_t>(data[i]);
  add_document(std::span<const int32_t>(tokens));
}

void IndexedDatasetWriter::finish() {
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    throw DataError(prefix_ + ".bin.partial", std::string("cannot flush: ") + std::strerror(errno));
  }
  fd_ = -1;
  std::string idx(kMagic, sizeof(kMagic));
  const auto put = [&](const auto& v) { idx.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(kVersion);
  put(static_cast<uint8_t>(type_));
  put(static_cast<uint64_t>(lengths_.size()));
  put(static_cast<uint64_t>(lengths_.size() + 1));
  for (int32_t n : lengths_) put(n);
  int64_t offset = 0;
  for (int32_t n : lengths_) {
    put(offset);
    offset += static_cast<int64_t>(n) * static_cast<int64_t>(token_size(type_));
  }
  for (int64_t i = 0; i <= static_cast<int64_t>(lengths_.size()); ++i) put(i);
  const std::string partial = prefix_ + ".idx.partial";
  {
    std::FILE* f = std::fopen(partial.c_str(), "wb");
    if (!f || std::fwrite(idx.data(), 1, idx.size(), f) != idx.size() || std::fflush(f) != 0 ||
        ::fsync(::fileno(f)) != 0) {
      if (f) std::fclose(f);
      throw DataError(partial, std::string("cannot write: ") + std::strerror(errno));
    }
    std::fclose(f);
  }
  std::filesystem::rename(prefix_ + ".bin.partial", prefix_ + ".bin");
  std::filesystem::rename(partial, prefix_ + ".idx");
  finished_ = true;
}

}  // namespace rondo
