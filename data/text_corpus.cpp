#include "data/text_corpus.h"

#include <algorithm>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/errors.h"

namespace rondo {

TextCorpus TextCorpus::load(const std::string& path, size_t min_bytes) {
  TextCorpus corpus;
  std::string text;
  if (path == "builtin") {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(kBuiltinCorpusDir, ec)) {
      if (entry.is_regular_file() && !entry.is_symlink()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) text += read_file(f.string());
    corpus.source_ =
        std::string("builtin (") + kBuiltinCorpusDir + ", " + std::to_string(files.size()) + " files)";
  } else {
    try {
      text = read_file(path);
    } catch (const Error& e) {
      throw ConfigError("data.path", e.what());
    }
    corpus.source_ = path;
  }
  if (text.size() < min_bytes) {
    throw ConfigError("data.path", "'" + path + "' holds " + std::to_string(text.size()) +
                                       " bytes; at least " + std::to_string(min_bytes) +
                                       " (model.seq_length + 1) are needed");
  }
  corpus.bytes_.assign(text.begin(), text.end());
  return corpus;
}

}  // namespace rondo
