// `rondo data prepare` (text files, directories of them, JSONL with a "text" field -> Megatron's
// indexed format, by bytes or a Hugging Face tokenizer.json), `rondo data tokenize` (ids and
// tokenizer throughput) and `rondo data stats` (counts and a length histogram).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace rondo {

struct DataPrepareOptions {
  std::vector<std::string> inputs;
  std::string out;             // PREFIX: writes PREFIX.bin and PREFIX.idx
  std::string dtype = "auto";  // uint16 | int32 | auto (uint16 when the vocabulary fits)
  std::string tokenizer;       // a Hugging Face tokenizer.json; empty: one token per byte
  bool append_eod = false;     // the tokenizer's end-of-text token after each document
};

int run_data_prepare(const DataPrepareOptions& options);

// `rondo data tokenize`: the ids of --text (or of each INPUT file, summarised with MB/s), and
// --decode IDS back to text.
struct DataTokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::vector<std::string> inputs;
  std::string decode;  // ids separated by spaces or commas
  bool json = false;
  bool add_special_tokens = false;
};
int run_data_tokenize(const DataTokenizeOptions& options);
int run_data_stats(const std::string& prefix, bool json);

// `rondo data chunks`: the chunk plans of an indexed dataset's documents taken as global batches
// of `batch` sequences in order, with equal-token and cost-aware boundaries side by side.
struct DataChunksOptions {
  std::string prefix;
  int64_t chunk_size = 4096;
  int64_t batch = 64;
  int64_t layers = 32, hidden = 4096, ffn = 14336, vocab = 128256;  // the model costs are counted on
  bool json = false;
};
int run_data_chunks(const DataChunksOptions& options);

}  // namespace rondo
