#include "data/token_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/atomic_file.h"
#include "common/errors.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

// Regular files under `dir` (recursively unless `flat`; symlinks skipped), in name order.
std::vector<fs::path> files_in(const fs::path& dir, bool flat) {
  std::vector<fs::path> files;
  std::error_code ec;
  const auto add = [&](const fs::directory_entry& e) {
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path());
  };
  if (flat) {
    for (const auto& e : fs::directory_iterator(dir, ec)) add(e);
  } else {
    for (const auto& e : fs::recursive_directory_iterator(dir, ec)) add(e);
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The JSONL file's texts, concatenated; each text's first byte in `starts`.
std::string jsonl_texts(const std::string& path, std::vector<uint64_t>& starts) {
  std::ifstream f(path);
  if (!f) throw ConfigError("data.path", "cannot read '" + path + "'");
  std::string text, line;
  for (size_t n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
      throw DataError(path + ":" + std::to_string(n), "not a JSON object with a string \"text\" field");
    }
    starts.push_back(text.size());
    text += j["text"].get_ref<const std::string&>();
  }
  return text;
}

// The lognormal mix's documents, each a (wrapping) window of `builtin`; their first bytes in
// `starts` and a description in `source`.
std::string lognormal_text(const std::string& builtin, const LognormalMix& mix, std::vector<uint64_t>& starts,
                           std::string& source) {
  const auto lengths = lognormal_lengths(mix);
  uint64_t total = 0;
  for (int64_t n : lengths) total += static_cast<uint64_t>(n);
  if (total > (uint64_t{1} << 32)) {
    throw ConfigError("data.lognormal_documents",
                      std::to_string(total) + " tokens in all: more than 2^32 (held in memory)");
  }
  std::string out;
  out.reserve(static_cast<size_t>(total));
  starts.clear();
  for (size_t i = 0; i < lengths.size(); ++i) {
    starts.push_back(out.size());
    uint64_t at = lognormal_document_offset(mix, static_cast<int64_t>(i), builtin.size());
    for (auto left = static_cast<uint64_t>(lengths[i]); left > 0;) {
      const uint64_t take = std::min<uint64_t>(left, builtin.size() - at);
      out.append(builtin, static_cast<size_t>(at), static_cast<size_t>(take));
      left -= take;
      at = 0;
    }
  }
  std::ostringstream what;
  what << "lognormal (" << mix.documents << " documents, mu " << mix.mu << ", sigma " << mix.sigma
       << ", seed " << mix.seed << ": " << total << " tokens, longest "
       << *std::max_element(lengths.begin(), lengths.end()) << ")";
  source = what.str();
  return out;
}

}  // namespace

std::string TokenCorpus::resolve_format(const std::string& path, const std::string& format) {
  if (format != "auto") return format;
  if (path == "builtin") return "builtin";
  if (path == "lognormal") return "lognormal";
  if (fs::is_regular_file(path + ".idx")) return "indexed";
  if (fs::path(path).extension() == ".jsonl") return "jsonl";
  return "text";
}

TokenCorpus TokenCorpus::load(const std::string& path, const std::string& format, uint64_t min_tokens,
                              const LognormalMix& mix) {
  TokenCorpus c;
  const std::string f = resolve_format(path, format);
  std::string text;
  if (f == "builtin" || f == "lognormal") {
    const auto files = files_in(kBuiltinCorpusDir, true);
    for (const auto& file : files) {
      c.document_starts_.push_back(text.size());
      text += read_file(file.string());
    }
    c.source_ =
        std::string("builtin (") + kBuiltinCorpusDir + ", " + std::to_string(files.size()) + " files)";
    if (f == "lognormal") text = lognormal_text(text, mix, c.document_starts_, c.source_);
  } else if (f == "indexed") {
    c.indexed_ = std::make_shared<IndexedDataset>(IndexedDataset::open(path));
    c.sequence_starts_.reserve(c.indexed_->sequences());
    for (size_t i = 0; i < c.indexed_->sequences(); ++i) {
      c.sequence_starts_.push_back(c.size_);
      c.size_ += static_cast<uint64_t>(c.indexed_->length(i));
    }
    for (size_t d = 0; d < c.indexed_->documents(); ++d) {
      const auto first =
          static_cast<size_t>(c.indexed_->document_start(d));  // = sequences: an empty last one
      c.document_starts_.push_back(first < c.sequence_starts_.size() ? c.sequence_starts_[first] : c.size_);
    }
    c.source_ = path + " (indexed: " + std::to_string(c.indexed_->documents()) + " documents, " +
                token_type_name(c.indexed_->token_type()) + ")";
  } else if (f == "jsonl") {
    text = jsonl_texts(path, c.document_starts_);
    c.source_ = path + " (jsonl)";
  } else if (f == "text") {
    try {
      if (fs::is_directory(path)) {
        const auto files = files_in(path, false);
        for (const auto& file : files) {
          c.document_starts_.push_back(text.size());
          text += read_file(file.string());
        }
        c.source_ = path + " (" + std::to_string(files.size()) + " files)";
      } else {
        text = read_file(path);
        c.document_starts_.push_back(0);
        c.source_ = path;
      }
    } catch (const ConfigError&) {
      throw;
    } catch (const Error& e) {
      throw ConfigError("data.path", e.what());
    }
  } else {
    throw ConfigError("data.format",
                      "unknown format '" + f + "' (auto | text | jsonl | indexed | lognormal)");
  }
  if (!c.indexed_) {
    c.bytes_ = std::make_shared<const std::vector<uint8_t>>(text.begin(), text.end());
    c.size_ = c.bytes_->size();
  }
  if (c.size_ < min_tokens) {
    throw ConfigError("data.path", "'" + path + "' holds " + std::to_string(c.size_) + " tokens; at least " +
                                       std::to_string(min_tokens) + " (model.seq_length + 1) are needed");
  }
  return c;
}

void TokenCorpus::read(uint64_t offset, size_t count, int64_t* out) const {
  if (offset + count > size_) throw DataError(source_, "read past the end of the token stream");
  offset += base_;
  if (!indexed_) {
    const auto& bytes = *bytes_;
    for (size_t i = 0; i < count; ++i) out[i] = bytes[offset + i];
    return;
  }
  // The sequence holding `offset`, then as many sequences as the window spans.
  auto seq = static_cast<size_t>(std::upper_bound(sequence_starts_.begin(), sequence_starts_.end(), offset) -
                                 sequence_starts_.begin() - 1);
  std::vector<int64_t> buf;
  size_t done = 0;
  for (uint64_t at = offset - sequence_starts_[seq]; done < count; ++seq, at = 0) {
    const auto take = std::min<uint64_t>(count - done, static_cast<uint64_t>(indexed_->length(seq)) - at);
    buf.clear();
    indexed_->read(seq, at, take, buf);
    std::copy(buf.begin(), buf.end(), out + done);
    done += take;
  }
}

void TokenCorpus::documents(uint64_t offset, size_t count, int64_t* out) const {
  if (offset + count > size_) throw DataError(source_, "read past the end of the token stream");
  // Past the documents starting at or before `offset`, count each start the window crosses.
  auto next = std::upper_bound(document_starts_.begin(), document_starts_.end(), offset);
  int64_t id = 0;
  for (size_t i = 0; i < count; ++i) {
    while (next != document_starts_.end() && *next <= offset + i) {
      ++next;
      ++id;
    }
    out[i] = id;
  }
}

std::vector<int64_t> TokenCorpus::document_lengths() const {
  std::vector<int64_t> out(document_starts_.size());
  for (size_t d = 0; d < out.size(); ++d) {
    const uint64_t end = d + 1 < out.size() ? document_starts_[d + 1] : size_;
    out[d] = static_cast<int64_t>(end - document_starts_[d]);
  }
  return out;
}

TokenCorpus TokenCorpus::documents_slice(uint64_t begin, uint64_t end, const std::string& part) const {
  if (begin > end || end > num_documents())
    throw Error("documents [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                std::to_string(num_documents()));
  TokenCorpus c;
  c.bytes_ = bytes_;
  c.indexed_ = indexed_;
  c.sequence_starts_ = sequence_starts_;
  const uint64_t first = begin < end ? document_starts_[begin] : 0;
  const uint64_t last = end < num_documents() ? document_starts_[end] : size_;
  c.base_ = base_ + first;
  c.size_ = begin < end ? last - first : 0;
  for (uint64_t d = begin; d < end; ++d) c.document_starts_.push_back(document_starts_[d] - first);
  c.source_ = source_ + ", " + part + ": documents " + std::to_string(begin) + "-" + std::to_string(end) +
              " of " + std::to_string(num_documents());
  return c;
}

}  // namespace rondo
