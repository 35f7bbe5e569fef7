#include "orchestrator/data_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <span>

#include <fmt/format.h>

#include "common/errors.h"
#include "data/bpe_tokenizer.h"
#include "data/chunk_plan.h"
#include "data/indexed_dataset.h"
#include "data/text_codec.h"

namespace rondo {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kProgressBytes = 64ull << 20;

// Files in argument order; a directory contributes its regular files, recursively, by name.
std::vector<fs::path> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const auto& in : inputs) {
    const fs::path p(in);
    if (fs::is_regular_file(p)) {
      files.push_back(p);
    } else if (fs::is_directory(p)) {
      std::vector<fs::path> found;
      for (const auto& e :
           fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied)) {
        if (e.is_regular_file()) found.push_back(e.path());
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      throw DataError(in, "no such file or directory");
    }
  }
  return files;
}

std::string read_whole(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path.string(), "cannot read");
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A document's tokens: its bytes, or a BPE tokenizer's ids (with the end-of-text token).
class DocumentTokenizer {
 public:
  explicit DocumentTokenizer(const DataPrepareOptions& o) : codec_(o.tokenizer) {
    if (!o.append_eod) return;
    if (codec_.is_bytes())
      throw ConfigError("--append-eod", "needs --tokenizer (bytes have no end-of-text token)");
    eod_ = codec_.end_of_text();
    if (!eod_) {
      throw ConfigError("--append-eod",
                        o.tokenizer +
                            " has no end-of-text token (no eos_token in a tokenizer_config.json "
                            "beside it, no <|endoftext|>, <|end_of_text|> or </s>)");
    }
  }
  int64_t vocab_size() const { return codec_.vocab_size(); }
  void add(std::string_view text, IndexedDatasetWriter& writer) {
    ids_.clear();
    codec_.encode(text, ids_);
    if (eod_) ids_.push_back(*eod_);
    writer.add_document(std::span<const int32_t>(ids_));
  }
  std::string describe() const {
    if (codec_.is_bytes()) return "byte tokenizer";
    std::string out = "tokenizer " + codec_.name() + ", vocabulary " + std::to_string(codec_.vocab_size());
    if (eod_) out += ", end-of-text id " + std::to_string(*eod_) + " after each document";
    if (codec_.replaced_bytes())
      out += ", " + std::to_string(codec_.replaced_bytes()) + " invalid UTF-8 byte(s) read as U+FFFD";
    return out;
  }

 private:
  TextCodec codec_;
  std::optional<int32_t> eod_;
  std::vector<int32_t> ids_;
};

TokenType prepare_token_type(const DataPrepareOptions& o, int64_t vocab_size) {
  const bool fits16 = vocab_size <= 65536;
  if (o.dtype == "auto") return fits16 ? TokenType::kUint16 : TokenType::kInt32;
  if (o.dtype == "int32") return TokenType::kInt32;
  if (o.dtype != "uint16") throw ConfigError("--dtype", "uint16, int32 or auto, got " + o.dtype);
  if (!fits16) {
    throw ConfigError("--dtype", "uint16 cannot hold the tokenizer's " + std::to_string(vocab_size) +
                                     " ids: use int32 (or auto)");
  }
  return TokenType::kUint16;
}

}  // namespace

int run_data_prepare(const DataPrepareOptions& o) {
  if (o.out.empty()) throw ConfigError("--out", "give the output PREFIX (writes PREFIX.bin and PREFIX.idx)");
  DocumentTokenizer tokenizer(o);
  const TokenType type = prepare_token_type(o, tokenizer.vocab_size());
  const auto files = expand_inputs(o.inputs);
  if (files.empty()) throw ConfigError("INPUT", "no input files");
  IndexedDatasetWriter writer(o.out, type);
  const auto started = std::chrono::steady_clock::now();
  uint64_t bytes_in = 0, next_report = kProgressBytes, empty = 0;
  size_t done = 0;
  for (const auto& file : files) {
    if (file.extension() == ".jsonl") {
      std::ifstream f(file);
      if (!f) throw DataError(file.string(), "cannot read");
      std::string line;
      for (size_t n = 1; std::getline(f, line); ++n) {
        bytes_in += line.size() + 1;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("text") || !j["text"].is_string()) {
          throw DataError(file.string() + ":" + std::to_string(n),
                          "not a JSON object with a string \"text\" field");
        }
        const auto& text = j["text"].get_ref<const std::string&>();
        if (text.empty()) {
          ++empty;
          continue;
        }
        tokenizer.add(text, writer);
      }
    } else {
      const auto text = read_whole(file);
      bytes_in += text.size();
      if (text.empty()) {
        ++empty;
      } else {
        tokenizer.add(text, writer);
      }
    }
    ++done;
    if (bytes_in >= next_report) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::fprintf(stderr, "prepare: %zu/%zu files, %zu documents, %.1f MB read, %.1f MB/s, %llu tokens\n",
                   done, files.size(), writer.documents(), static_cast<double>(bytes_in) / 1e6,
                   static_cast<double>(bytes_in) / 1e6 / std::max(seconds, 1e-9),
                   static_cast<unsigned long long>(writer.tokens()));
      next_report = bytes_in + kProgressBytes;
    }
  }
  writer.finish();
  std::fprintf(stderr, "prepare: wrote %s.bin and %s.idx: %zu documents, %llu tokens (%s; %s)%s\n",
               o.out.c_str(), o.out.c_str(), writer.documents(),
               static_cast<unsigned long long>(writer.tokens()), token_type_name(type),
               tokenizer.describe().c_str(),
               empty ? (", " + std::to_string(empty) + " empty document(s) skipped").c_str() : "");
  return kExitOk;
}

namespace {

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::string token;
  const auto flush = [&] {
    if (token.empty()) return;
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(token, &used);
    } catch (const std::exception&) {
    }
    if (used != token.size() || v < 0 || v > INT32_MAX)
      throw ConfigError("--decode", "\"" + token + "\" is not an id");
    ids.push_back(static_cast<int32_t>(v));
    token.clear();
  };
  for (char c : text) {
    if (c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '[' || c == ']') {
      flush();
    } else {
      token.push_back(c);
    }
  }
  flush();
  return ids;
}

std::string json_text(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

int run_data_tokenize(const DataTokenizeOptions& o) {
  if (o.tokenizer.empty()) throw ConfigError("--tokenizer", "give a Hugging Face tokenizer.json");
  const auto clock = [] { return std::chrono::steady_clock::now(); };
  const auto seconds_since = [&](auto start) {
    return std::chrono::duration<double>(clock() - start).count();
  };
  const auto load_start = clock();
  auto tokenizer = BpeTokenizer::load(o.tokenizer);
  const double load_seconds = seconds_since(load_start);
  if (!o.decode.empty()) {
    const auto text = tokenizer.decode(parse_ids(o.decode));
    std::cout << (o.json ? json_text({{"text", text}}) : text) << "\n";
    return kExitOk;
  }
  if (o.inputs.empty()) {
    const auto ids = tokenizer.encode(o.text, o.add_special_tokens);
    if (o.json) {
      nlohmann::json tokens = nlohmann::json::array();
      for (int32_t id : ids) tokens.push_back(tokenizer.decode(std::span<const int32_t>(&id, 1)));
      std::cout << json_text({{"ids", ids}, {"tokens", tokens}, {"count", ids.size()}}) << "\n";
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
      std::cout << "\n";
    }
    return kExitOk;
  }
  // Throughput: each file one document; only the encoding is timed.
  const auto files = expand_inputs(o.inputs);
  uint64_t bytes = 0, tokens = 0;
  uint64_t digest = 0xcbf29ce484222325ull;  // FNV-1a over the ids in order, to compare with another tokenizer
  double seconds = 0;
  std::vector<int32_t> ids;
  for (const auto& file : files) {
    const auto text = read_whole(file);
    const auto start = clock();
    ids.clear();
    tokenizer.encode(text, ids, o.add_special_tokens);
    seconds += seconds_since(start);
    for (int32_t id : ids) digest = (digest ^ static_cast<uint32_t>(id)) * 0x100000001b3ull;
    bytes += text.size();
    tokens += ids.size();
  }
  const double mb_per_s = static_cast<double>(bytes) / 1e6 / std::max(seconds, 1e-9);
  const double bytes_per_token = tokens ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0;
  if (o.json) {
    std::cout << json_text({{"tokenizer", o.tokenizer},
                            {"files", files.size()},
                            {"bytes", bytes},
                            {"tokens", tokens},
                            {"encode_seconds", seconds},
                            {"mb_per_s", mb_per_s},
                            {"bytes_per_token", bytes_per_token},
                            {"load_seconds", load_seconds},
                            {"replaced_bytes", tokenizer.replaced_bytes()},
                            {"ids_fnv1a64", fmt::format("{:016x}", digest)}})
              << "\n";
  } else {
    std::printf(
        "%zu files, %.2f MB -> %llu tokens (%.2f bytes/token) in %.3f s: %.2f MB/s (tokenizer loaded in %.2f "
        "s)\n",
        files.size(), static_cast<double>(bytes) / 1e6, static_cast<unsigned long long>(tokens),
        bytes_per_token, seconds, mb_per_s, load_seconds);
  }
  return kExitOk;
}

int run_data_stats(const std::string& prefix, bool json) {
  const auto d = IndexedDataset::open(prefix);
  std::vector<int32_t> lengths(d.sequences());
  for (size_t i = 0; i < lengths.size(); ++i) lengths[i] = d.length(i);
  std::sort(lengths.begin(), lengths.end());
  const auto quantile = [&](double q) {
    return lengths.empty() ? 0
                           : lengths[std::min(lengths.size() - 1, static_cast<size_t>(q * lengths.size()))];
  };
  // Power-of-two buckets: [2^k, 2^(k+1)) tokens (bucket 0 also holds empty sequences).
  std::vector<uint64_t> buckets;
  for (int32_t n : lengths) {
    const size_t k = n <= 1 ? 0 : static_cast<size_t>(std::floor(std::log2(static_cast<double>(n))));
    if (buckets.size() <= k) buckets.resize(k + 1, 0);
    ++buckets[k];
  }
  size_t first_bucket = 0;  // from the shortest sequence's bucket on
  while (first_bucket + 1 < buckets.size() && buckets[first_bucket] == 0) ++first_bucket;
  const double mean =
      lengths.empty() ? 0.0 : static_cast<double>(d.tokens()) / static_cast<double>(lengths.size());
  if (json) {
    nlohmann::json hist = nlohmann::json::array();
    for (size_t k = first_bucket; k < buckets.size(); ++k) {
      hist.push_back({{"min_tokens", 1ull << k}, {"max_tokens", (2ull << k) - 1}, {"sequences", buckets[k]}});
    }
    std::cout << nlohmann::json{{"prefix", prefix},
                                {"dtype", token_type_name(d.token_type())},
                                {"sequences", d.sequences()},
                                {"documents", d.documents()},
                                {"tokens", d.tokens()},
                                {"length_min", lengths.empty() ? 0 : lengths.front()},
                                {"length_median", quantile(0.5)},
                                {"length_mean", mean},
                                {"length_p90", quantile(0.9)},
                                {"length_max", lengths.empty() ? 0 : lengths.back()},
                                {"histogram", hist}}
                     .dump()
              << "\n";
    return kExitOk;
  }
  std::printf("%s: %zu documents, %zu sequences, %llu tokens (%s)\n", prefix.c_str(), d.documents(),
              d.sequences(), static_cast<unsigned long long>(d.tokens()), token_type_name(d.token_type()));
  std::printf("sequence length: min %d, median %d, mean %.1f, p90 %d, max %d\n",
              lengths.empty() ? 0 : lengths.front(), quantile(0.5), mean, quantile(0.9),
              lengths.empty() ? 0 : lengths.back());
  const uint64_t most = buckets.empty() ? 1 : *std::max_element(buckets.begin(), buckets.end());
  for (size_t k = first_bucket; k < buckets.size(); ++k) {
    const int bar =
        static_cast<int>(std::lround(40.0 * static_cast<double>(buckets[k]) / static_cast<double>(most)));
    std::printf("  %10llu-%-10llu %8llu %s\n", 1ull << k, (2ull << k) - 1,
                static_cast<unsigned long long>(buckets[k]),
                std::string(static_cast<size_t>(bar), '#').c_str());
  }
  return kExitOk;
}

int run_data_chunks(const DataChunksOptions& o) {
  if (o.batch < 1) throw ConfigError("--batch", "must be >= 1");
  const auto d = IndexedDataset::open(o.prefix);
  const GptDims dims{o.layers, o.hidden, o.ffn, o.vocab, o.chunk_size};
  nlohmann::json out = {
      {"prefix", o.prefix},
      {"chunk_size", o.chunk_size},
      {"batch", o.batch},
      {"model", {{"layers", o.layers}, {"hidden", o.hidden}, {"ffn", o.ffn}, {"vocab", o.vocab}}}};
  if (!o.json) {
    std::printf(
        "%s: %zu sequences in batches of %lld, chunk size %lld; costs on a %lld-layer model, hidden %lld\n",
        o.prefix.c_str(), d.sequences(), static_cast<long long>(o.batch),
        static_cast<long long>(o.chunk_size), static_cast<long long>(o.layers),
        static_cast<long long>(o.hidden));
    std::printf(
        "| boundaries | batches | chunks | dependent | largest chunk (tokens) | max/mean cost: worst batch | "
        "median batch | all chunks |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
  }
  for (const auto balance : {ChunkBalance::kTokens, ChunkBalance::kCost}) {
    const char* name = balance == ChunkBalance::kTokens ? "tokens" : "cost";
    std::vector<double> ratios, all;
    size_t chunks = 0, dependent = 0;
    int64_t largest = 0;
    for (size_t first = 0; first < d.sequences(); first += static_cast<size_t>(o.batch)) {
      std::vector<int64_t> lengths;
      for (size_t i = first; i < std::min(d.sequences(), first + static_cast<size_t>(o.batch)); ++i) {
        lengths.push_back(d.length(i));
      }
      const auto plan = plan_chunks(lengths, o.chunk_size, balance, dims);
      if (plan.chunks.empty()) continue;
      ratios.push_back(plan.max_cost() / plan.mean_cost());
      all.insert(all.end(), plan.costs.begin(), plan.costs.end());
      chunks += plan.chunks.size();
      for (const auto& c : plan.chunks) dependent += c.dependent() ? 1 : 0;
      largest = std::max(largest, plan.max_tokens());
    }
    std::sort(ratios.begin(), ratios.end());
    const double worst = ratios.empty() ? 0 : ratios.back(),
                 median = ratios.empty() ? 0 : ratios[ratios.size() / 2];
    const double overall =
        all.empty() ? 0
                    : *std::max_element(all.begin(), all.end()) /
                          (std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size()));
    if (o.json) {
      out[name] = {{"batches", ratios.size()},           {"chunks", chunks},
                   {"dependent_chunks", dependent},      {"largest_chunk_tokens", largest},
                   {"max_over_mean_worst_batch", worst}, {"max_over_mean_median_batch", median},
                   {"max_over_mean_all_chunks", overall}};
    } else {
      std::printf("| %s | %zu | %zu | %zu | %lld | %.3f | %.3f | %.3f |\n", name, ratios.size(), chunks,
                  dependent, static_cast<long long>(largest), worst, median, overall);
    }
  }
  if (o.json) std::cout << out.dump() << "\n";
  return kExitOk;
}

}  // namespace rondo
