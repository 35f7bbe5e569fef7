// `rondo data prepare` (text files, directories of them, JSONL with a "text" field -> Megatron's
// indexed format, byte tokenizer) and `rondo data stats` (counts and a length histogram).
#pragma once

#include <string>
#include <vector>

namespace rondo {

struct DataPrepareOptions {
  std::vector<std::string> inputs;
  std::string out;  // PREFIX: writes PREFIX.bin and PREFIX.idx
  std::string dtype = "uint16";
};

int run_data_prepare(const DataPrepareOptions& options);
int run_data_stats(const std::string& prefix, bool json);

}  // namespace rondo
