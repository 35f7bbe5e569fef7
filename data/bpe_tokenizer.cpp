#include "data/bpe_tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "common/errors.h"
#include "data/pretokenizer.h"

namespace rondo {

namespace {

using json = nlohmann::json;

// GPT-2's byte-to-symbol table: printable Latin-1 bytes stand for themselves, the others for
// code points from 256 on, so every byte has a visible character in the vocabulary's strings.
std::array<char32_t, 256> byte_symbols() {
  std::array<char32_t, 256> table{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    table[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return table;
}

// Decodes a vocabulary string of byte symbols into the bytes it stands for; nullopt when a
// character is not a byte symbol.
std::optional<std::string> symbols_to_bytes(std::string_view token,
                                            const std::unordered_map<char32_t, uint8_t>& byte_of) {
  std::string bytes;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(token.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(token.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) return std::nullopt;
    const auto it = byte_of.find(static_cast<char32_t>(cp));
    if (it == byte_of.end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
    p += n;
    left -= n;
  }
  return bytes;
}

std::string symbols_of(std::string_view bytes, const std::array<char32_t, 256>& symbols) {
  std::string out;
  for (char c : bytes) {
    utf8proc_uint8_t buf[4];
    const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(symbols[static_cast<uint8_t>(c)]), buf);
    out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
  }
  return out;
}

// The code point at text[i] (valid UTF-8) and its length.
std::pair<char32_t, size_t> code_point_at(std::string_view text, size_t i) {
  utf8proc_int32_t cp = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                  static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  return {static_cast<char32_t>(cp), static_cast<size_t>(std::max<utf8proc_ssize_t>(n, 1))};
}

// The code point ending at text[end - 1] (valid UTF-8) and its length.
std::pair<char32_t, size_t> code_point_before(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return {code_point_at(text, start).first, end - start};
}

bool is_whitespace(char32_t c) {
  return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_word_character(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
      return true;
    default:
      return false;
  }
}

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

// A piece of text between added tokens (id < 0), or an added token.
struct Segment {
  std::string_view text;
  int32_t id = -1;
};

// Finds added tokens leftmost-longest, as Hugging Face's added vocabulary does.
class AddedTokenMatcher {
 public:
  void add(const AddedToken* token) {
    if (token->content.empty()) return;
    tokens_.push_back(token);
    starts_[static_cast<uint8_t>(token->content[0])] = true;
    std::stable_sort(tokens_.begin(), tokens_.end(), [](const AddedToken* a, const AddedToken* b) {
      return a->content.size() > b->content.size();
    });
  }
  bool empty() const { return tokens_.empty(); }

  void split(std::string_view text, std::vector<Segment>& out) const {
    size_t last = 0;  // the end of the previous match
    for (size_t i = 0; i < text.size(); ++i) {
      if (!starts_[static_cast<uint8_t>(text[i])]) continue;
      const AddedToken* hit = nullptr;
      for (const AddedToken* t : tokens_) {
        if (text.compare(i, t->content.size(), t->content) == 0 && word_bounded(*t, text, i)) {
          hit = t;
          break;
        }
      }
      if (!hit) continue;
      size_t begin = i, end = i + hit->content.size();
      while (hit->lstrip && begin > last) {
        const auto [c, n] = code_point_before(text, begin);
        if (!is_whitespace(c)) break;
        begin -= n;
      }
      while (hit->rstrip && end < text.size()) {
        const auto [c, n] = code_point_at(text, end);
        if (!is_whitespace(c)) break;
        end += n;
      }
      if (begin > last) out.push_back({text.substr(last, begin - last), -1});
      out.push_back({text.substr(begin, end - begin), hit->id});
      last = end;
      i = end - 1;
    }
    if (last < text.size()) out.push_back({text.substr(last), -1});
  }

 private:
  static bool word_bounded(const AddedToken& t, std::string_view text, size_t at) {
    if (!t.single_word) return true;
    const size_t end = at + t.content.size();
    if (at > 0 && is_word_character(code_point_before(text, at).first)) return false;
    return end >= text.size() || !is_word_character(code_point_at(text, end).first);
  }
  std::vector<const AddedToken*> tokens_;
  std::array<bool, 256> starts_{};
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

constexpr size_t kCacheEntries = 1 << 18;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

struct BpeTokenizer::Model {
  std::string where;
  TextNormalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::deque<AddedToken> added;
  AddedTokenMatcher raw_added, normalized_added;
  StringMap<int32_t> id_by_bytes;        // vocabulary entries by the bytes they stand for
  std::vector<std::string> bytes_by_id;  // decoding: vocabulary bytes or an added token's content
  std::vector<uint8_t> special_by_id;
  std::array<int32_t, 256> byte_ids{};
  struct Merge {
    int32_t rank, id;
  };
  std::unordered_map<uint64_t, Merge> merges;
  bool ignore_merges = false;
  std::vector<int32_t> prefix, suffix;  // the post-processor's tokens around one sequence
  StringMap<std::vector<int32_t>> cache;

  Model(TextNormalizer n, PreTokenizer p) : normalizer(std::move(n)), pre_tokenizer(std::move(p)) {}
  // Reading tokenizer.json (errors name `where`): the vocabulary, returning its byte-symbol strings'
  // ids (the merges name tokens by them); the merges; the added tokens.
  StringMap<int32_t> read_vocabulary(const nlohmann::json& vocab, const nlohmann::json& added);
  void read_merges(const nlohmann::json& merges, const StringMap<int32_t>& id_by_symbols);
  void read_added_tokens(const nlohmann::json& added);
  void encode_word(std::string_view word, std::vector<int32_t>& out);
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
};

void BpeTokenizer::Model::encode_word(std::string_view word, std::vector<int32_t>& out) {
  if (word.size() == 1) {
    out.push_back(byte_ids[static_cast<uint8_t>(word[0])]);
    return;
  }
  if (ignore_merges) {
    if (const auto it = id_by_bytes.find(word); it != id_by_bytes.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (const auto it = cache.find(word); it != cache.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t from = out.size();
  merge_word(word, out);
  if (cache.size() >= kCacheEntries) cache.clear();
  cache.emplace(std::string(word),
                std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(from), out.end()));
}

// BPE on one word: start from its bytes and apply the lowest-ranked merge present, leftmost
// first, until none applies. Symbols form a linked list; stale heap entries are skipped.
void BpeTokenizer::Model::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  const int n = static_cast<int>(word.size());
  std::vector<int32_t> ids(word.size());
  std::vector<int> prev(word.size()), next(word.size());
  for (int i = 0; i < n; ++i) {
    ids[i] = byte_ids[static_cast<uint8_t>(word[i])];
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank, id;
    int pos;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto consider = [&](int left) {
    const int right = next[left];
    if (right < 0) return;
    if (const auto it = merges.find(pair_key(ids[left], ids[right])); it != merges.end()) {
      heap.push({it->second.rank, it->second.id, left});
    }
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  std::vector<uint8_t> gone(word.size(), 0);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const int right = next[top.pos];
    if (gone[top.pos] || right < 0) continue;
    const auto it = merges.find(pair_key(ids[top.pos], ids[right]));
    if (it == merges.end() || it->second.id != top.id) continue;  // stale
    ids[top.pos] = top.id;
    gone[right] = 1;
    next[top.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = top.pos;
    if (prev[top.pos] >= 0) consider(prev[top.pos]);
    consider(top.pos);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

namespace {

bool is_empty_or_null(const json& j, const char* key) {
  return !j.contains(key) || j[key].is_null() || (j[key].is_string() && j[key].get<std::string>().empty());
}

// The BPE model's checks: byte-level BPE only, with nothing that changes ids at random.
void check_model(const json& model, const std::string& where) {
  if (!model.is_object()) throw DataError(where, "has no \"model\" object");
  const auto type = model.value("type", std::string("BPE"));
  if (type != "BPE") {
    throw DataError(
        where, "model type \"" + type + "\" is not supported: only byte-level BPE (GPT-2, Llama 3, Qwen)");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object())
    throw DataError(where, "model has no \"vocab\" object");
  if (!model.contains("merges") || !model["merges"].is_array())
    throw DataError(where, "model has no \"merges\" array");
  if (!is_empty_or_null(model, "dropout"))
    throw DataError(where, "model.dropout is set: BPE dropout is not supported");
  if (model.value("byte_fallback", false)) {
    throw DataError(where, "model.byte_fallback is set: a SentencePiece-style BPE, not byte-level");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!is_empty_or_null(model, key))
      throw DataError(where, std::string("model.") + key + " is not supported");
  }
}

// The two halves of a merge: "a b" or ["a", "b"].
std::pair<std::string, std::string> merge_parts(const json& merge, size_t index, const std::string& where) {
  if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
    return {merge[0].get<std::string>(), merge[1].get<std::string>()};
  }
  if (merge.is_string()) {
    const auto& text = merge.get_ref<const std::string&>();
    const auto space = text.find(' ');
    if (space != std::string::npos && text.find(' ', space + 1) == std::string::npos) {
      return {text.substr(0, space), text.substr(space + 1)};
    }
  }
  throw DataError(where, "model.merges[" + std::to_string(index) + "] is not \"a b\" or a pair of strings");
}

// The ids a post-processor puts before and after one sequence.
void post_processor_tokens(const json& j, const std::string& where, std::vector<int32_t>& prefix,
                           std::vector<int32_t>& suffix) {
  if (j.is_null()) return;
  const auto type = j.value("type", std::string());
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    for (const auto& p : j.value("processors", json::array()))
      post_processor_tokens(p, where, prefix, suffix);
    return;
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    prefix.push_back(j.at("cls").at(1).get<int32_t>());
    suffix.insert(suffix.begin(), j.at("sep").at(1).get<int32_t>());
    return;
  }
  if (type != "TemplateProcessing") {
    throw DataError(where, "post_processor \"" + type +
                               "\" is not supported (TemplateProcessing, ByteLevel, "
                               "RobertaProcessing, BertProcessing or a Sequence)");
  }
  const auto& special = j.value("special_tokens", json::object());
  bool after = false;
  std::vector<int32_t> before_sequence, after_sequence;
  for (const auto& item : j.value("single", json::array())) {
    if (item.contains("Sequence")) {
      after = true;
    } else if (item.contains("SpecialToken")) {
      const auto name = item["SpecialToken"].value("id", std::string());
      if (!special.contains(name)) {
        throw DataError(where, "post_processor: special token \"" + name + "\" is not in special_tokens");
      }
      auto& target = after ? after_sequence : before_sequence;
      for (const auto& id : special[name].value("ids", json::array())) target.push_back(id.get<int32_t>());
    }
  }
  prefix.insert(prefix.end(), before_sequence.begin(), before_sequence.end());
  suffix.insert(suffix.begin(), after_sequence.begin(), after_sequence.end());
}

void check_decoder(const json& j, const std::string& where) {
  if (j.is_null()) return;
  const auto type = j.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& d : j.value("decoders", json::array())) check_decoder(d, where);
  } else if (type != "ByteLevel") {
    throw DataError(where,
                    "decoder \"" + type + "\" is not supported (byte-level BPE tokenizers use ByteLevel)");
  }
}

// The eos_token of a tokenizer_config.json beside `path`, if there is one.
std::optional<std::string> configured_eos(const std::string& path) {
  const auto config = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::ifstream f(config);
  if (!f) return std::nullopt;
  const auto j = json::parse(f, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("eos_token")) return std::nullopt;
  const auto& eos = j["eos_token"];
  if (eos.is_string()) return eos.get<std::string>();
  if (eos.is_object() && eos.contains("content") && eos["content"].is_string())
    return eos["content"].get<std::string>();
  return std::nullopt;
}

// An added token's id: a non-negative 32-bit integer.
int32_t added_id(const json& a, const std::string& where) {
  if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
      a["id"].get<int64_t>() > INT32_MAX || !a.contains("content") || !a["content"].is_string()) {
    throw DataError(where, "added_tokens: an entry without a non-negative \"id\" and a string \"content\"");
  }
  return a["id"].get<int32_t>();
}

}  // namespace

StringMap<int32_t> BpeTokenizer::Model::read_vocabulary(const json& vocab, const json& added) {
  const auto symbols = byte_symbols();
  std::unordered_map<char32_t, uint8_t> byte_of;
  for (int b = 0; b < 256; ++b) byte_of[symbols[b]] = static_cast<uint8_t>(b);
  StringMap<int32_t> id_by_symbols;
  int64_t size = 0;
  for (const auto& [token, id_json] : vocab.items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 || id_json.get<int64_t>() > INT32_MAX) {
      throw DataError(where, "model.vocab[\"" + token + "\"] is not a non-negative 32-bit id");
    }
    const auto id = id_json.get<int32_t>();
    id_by_symbols.emplace(token, id);
    size = std::max<int64_t>(size, id + 1);
  }
  for (const auto& a : added) size = std::max<int64_t>(size, int64_t{added_id(a, where)} + 1);
  bytes_by_id.assign(static_cast<size_t>(size), std::string("\xEF\xBF\xBD"));
  special_by_id.assign(static_cast<size_t>(size), 0);
  for (const auto& [token, id] : id_by_symbols) {
    const auto bytes = symbols_to_bytes(token, byte_of);
    bytes_by_id[id] = bytes ? *bytes : token;  // not byte symbols: only reachable by decoding
    if (bytes) id_by_bytes.emplace(*bytes, id);
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = id_by_symbols.find(symbols_of(std::string(1, static_cast<char>(b)), symbols));
    if (it == id_by_symbols.end()) {
      throw DataError(
          where, "model.vocab has no entry for byte " + std::to_string(b) + ": not a byte-level vocabulary");
    }
    byte_ids[b] = it->second;
  }
  return id_by_symbols;
}

// Merges in rank order: the pair of ids -> (rank, the merged id).
void BpeTokenizer::Model::read_merges(const json& list, const StringMap<int32_t>& id_by_symbols) {
  merges.reserve(list.size());
  for (size_t rank = 0; rank < list.size(); ++rank) {
    const auto [left, right] = merge_parts(list[rank], rank, where);
    const auto l = id_by_symbols.find(left), r = id_by_symbols.find(right),
               merged = id_by_symbols.find(left + right);
    if (l == id_by_symbols.end() || r == id_by_symbols.end() || merged == id_by_symbols.end()) {
      throw DataError(where, "model.merges[" + std::to_string(rank) + "] (\"" + left + " " + right +
                                 "\") names a token missing from model.vocab");
    }
    merges.emplace(pair_key(l->second, r->second), Merge{static_cast<int32_t>(rank), merged->second});
  }
}

void BpeTokenizer::Model::read_added_tokens(const json& list) {
  for (const auto& a : list) {
    const int32_t id = added_id(a, where);  // checks the entry first
    AddedToken t{a["content"].get<std::string>(), id,
                 a.value("special", false),       a.value("lstrip", false),
                 a.value("rstrip", false),        a.value("single_word", false),
                 a.value("normalized", false)};
    bytes_by_id[t.id] = t.content;
    special_by_id[t.id] = t.special ? 1 : 0;
    added.push_back(std::move(t));
    (added.back().normalized && !normalizer.empty() ? normalized_added : raw_added).add(&added.back());
  }
}

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw DataError(path, "cannot read the tokenizer file");
  const std::string text{std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  auto tokenizer = parse(text, path);
  for (const auto& name :
       {configured_eos(path), std::optional<std::string>("<|endoftext|>"),
        std::optional<std::string>("<|end_of_text|>"), std::optional<std::string>("</s>")}) {
    if (!name) continue;
    tokenizer.end_of_text_ = tokenizer.token_id(*name);
    if (tokenizer.end_of_text_) break;
  }
  return tokenizer;
}

BpeTokenizer BpeTokenizer::parse(std::string_view json_text, const std::string& where) {
  const auto j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw DataError(where, "not a JSON object (a Hugging Face tokenizer.json)");
  const auto& model = j.contains("model") ? j["model"] : json();
  check_model(model, where);
  auto pre = PreTokenizer::from_json(j.value("pre_tokenizer", json()), where);
  if (!pre.byte_level()) {
    throw DataError(where,
                    "pre_tokenizer has no ByteLevel step: only byte-level BPE tokenizers (GPT-2, Llama 3, "
                    "Qwen) are supported");
  }
  check_decoder(j.value("decoder", json()), where);
  BpeTokenizer out;
  out.model_ = std::make_unique<Model>(TextNormalizer::from_json(j.value("normalizer", json()), where),
                                       std::move(pre));
  auto& m = *out.model_;
  m.where = where;
  m.ignore_merges = model.value("ignore_merges", false);

  const auto& added = j.value("added_tokens", json::array());
  const auto id_by_symbols = m.read_vocabulary(model["vocab"], added);
  m.read_merges(model["merges"], id_by_symbols);
  m.read_added_tokens(added);
  post_processor_tokens(j.value("post_processor", json()), where, m.prefix, m.suffix);
  return out;
}

BpeTokenizer::BpeTokenizer() = default;
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

void BpeTokenizer::encode(std::string_view text, std::vector<int32_t>& out, bool add_special_tokens) {
  auto& m = *model_;
  if (add_special_tokens) out.insert(out.end(), m.prefix.begin(), m.prefix.end());
  std::string repaired;
  text = valid_utf8(text, repaired, &replaced_bytes_);
  std::vector<Segment> segments;
  m.raw_added.split(text, segments);
  std::vector<std::string_view> pieces;
  std::deque<std::string> storage;
  std::vector<Segment> inner;
  for (const auto& segment : segments) {
    if (segment.id >= 0) {
      out.push_back(segment.id);
      continue;
    }
    std::string_view normalized = segment.text;
    if (!m.normalizer.empty()) {
      storage.push_back(m.normalizer.apply(segment.text));
      normalized = storage.back();
    }
    inner.clear();
    m.normalized_added.split(normalized, inner);
    for (const auto& part : inner) {
      if (part.id >= 0) {
        out.push_back(part.id);
        continue;
      }
      pieces.clear();
      m.pre_tokenizer.split(part.text, pieces, storage);
      for (auto piece : pieces) m.encode_word(piece, out);
    }
    storage.clear();
  }
  if (add_special_tokens) out.insert(out.end(), m.suffix.begin(), m.suffix.end());
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_special_tokens) {
  std::vector<int32_t> out;
  encode(text, out, add_special_tokens);
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= model_->bytes_by_id.size()) {
      out.append("\xEF\xBF\xBD");
    } else if (!(skip_special_tokens && model_->special_by_id[id])) {
      out.append(model_->bytes_by_id[id]);
    }
  }
  return out;
}

int64_t BpeTokenizer::vocab_size() const { return static_cast<int64_t>(model_->bytes_by_id.size()); }

std::optional<int32_t> BpeTokenizer::token_id(std::string_view token) const {
  for (const auto& a : model_->added) {
    if (a.content == token) return a.id;
  }
  if (const auto it = model_->id_by_bytes.find(token); it != model_->id_by_bytes.end()) return it->second;
  return std::nullopt;
}

}  // namespace rondo
