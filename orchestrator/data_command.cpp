#include "orchestrator/data_command.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <numeric>

#include "common/errors.h"
#include "data/chunk_plan.h"
#include "data/indexed_dataset.h"

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

}  // namespace

int run_data_prepare(const DataPrepareOptions& o) {
  if (o.dtype != "uint16" && o.dtype != "int32")
    throw ConfigError("--dtype", "uint16 or int32, got " + o.dtype);
  if (o.out.empty()) throw ConfigError("--out", "give the output PREFIX (writes PREFIX.bin and PREFIX.idx)");
  const auto files = expand_inputs(o.inputs);
  if (files.empty()) throw ConfigError("INPUT", "no input files");
  IndexedDatasetWriter writer(o.out, o.dtype == "uint16" ? TokenType::kUint16 : TokenType::kInt32);
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
        writer.add_bytes(text.data(), text.size());
      }
    } else {
      const auto text = read_whole(file);
      bytes_in += text.size();
      if (text.empty()) {
        ++empty;
      } else {
        writer.add_bytes(text.data(), text.size());
      }
    }
    ++done;
    if (bytes_in >= next_report) {
      std::fprintf(stderr, "prepare: %zu/%zu files, %zu documents, %.1f MB read\n", done, files.size(),
                   writer.documents(), static_cast<double>(bytes_in) / 1e6);
      next_report = bytes_in + kProgressBytes;
    }
  }
  writer.finish();
  std::fprintf(
      stderr, "prepare: wrote %s.bin and %s.idx: %zu documents, %llu tokens (%s; byte tokenizer)%s\n",
      o.out.c_str(), o.out.c_str(), writer.documents(), static_cast<unsigned long long>(writer.tokens()),
      o.dtype.c_str(), empty ? (", " + std::to_string(empty) + " empty document(s) skipped").c_str() : "");
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
