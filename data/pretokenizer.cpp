#include "data/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/errors.h"

namespace rondo {

namespace {

// GPT-2's pre-tokenisation regex, which ByteLevel applies when its use_regex is set.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// The length of the UTF-8 sequence at text[i] when it is valid (RFC 3629: no overlong forms,
// no surrogates, nothing past U+10FFFF), else 0.
size_t utf8_sequence(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

std::string type_of(const nlohmann::json& j, const std::string& where, const std::string& section) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw DataError(where, "\"" + section + "\" is not an object with a string \"type\"");
  }
  return j["type"].get<std::string>();
}

bool flag(const nlohmann::json& j, const char* key, bool fallback) {
  return j.contains(key) && j[key].is_boolean() ? j[key].get<bool>() : fallback;
}

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& name, const std::string& where) {
  if (name == "Removed") return Behavior::kRemoved;
  if (name == "Isolated") return Behavior::kIsolated;
  if (name == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return Behavior::kMergedWithNext;
  if (name == "Contiguous") return Behavior::kContiguous;
  throw DataError(where, "pre_tokenizer Split: unknown behavior \"" + name +
                             "\" (Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous)");
}

struct Pattern {
  pcre2_code* code = nullptr;
  Pattern() = default;
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;
  ~Pattern() { pcre2_code_free(code); }
};

}  // namespace

std::string_view valid_utf8(std::string_view text, std::string& repaired, size_t* replaced) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = utf8_sequence(text, i);
    if (n == 0) break;
    i += n;
  }
  if (i == text.size()) return text;
  size_t count = 0;
  repaired.assign(text.substr(0, i));
  while (i < text.size()) {
    const size_t n = utf8_sequence(text, i);
    if (n == 0) {
      repaired.append("\xEF\xBF\xBD");
      ++count;
      ++i;
    } else {
      repaired.append(text.substr(i, n));
      i += n;
    }
  }
  if (replaced) *replaced += count;
  return repaired;
}

// ---- normalizer ---------------------------------------------------------------------------

TextNormalizer TextNormalizer::from_json(const nlohmann::json& j, const std::string& where) {
  TextNormalizer out;
  if (j.is_null()) return out;
  const auto type = type_of(j, where, "normalizer");
  if (type == "Sequence") {
    for (const auto& step : j.value("normalizers", nlohmann::json::array())) {
      const auto inner = from_json(step, where);
      out.forms_.insert(out.forms_.end(), inner.forms_.begin(), inner.forms_.end());
    }
    return out;
  }
  constexpr int kStable = UTF8PROC_STABLE;
  if (type == "NFC") {
    out.forms_.push_back(kStable | UTF8PROC_COMPOSE);
  } else if (type == "NFD") {
    out.forms_.push_back(kStable | UTF8PROC_DECOMPOSE);
  } else if (type == "NFKC") {
    out.forms_.push_back(kStable | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
  } else if (type == "NFKD") {
    out.forms_.push_back(kStable | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  } else {
    throw DataError(where, "normalizer \"" + type +
                               "\" is not supported (byte-level BPE tokenizers use NFC, NFD, NFKC, NFKD "
                               "or none)");
  }
  return out;
}

std::string TextNormalizer::apply(std::string_view text) const {
  std::string current(text);
  bool ascii = true;
  for (char c : text) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
  if (ascii) return current;  // every normal form of ASCII text is itself
  for (int options : forms_) {
    utf8proc_uint8_t* out = nullptr;
    const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(current.data()),
                                static_cast<utf8proc_ssize_t>(current.size()), &out,
                                static_cast<utf8proc_option_t>(options));
    if (n < 0) throw Error(std::string("normalizing text: ") + utf8proc_errmsg(n));
    current.assign(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
    std::free(out);
  }
  return current;
}

// ---- pre-tokenizer ------------------------------------------------------------------------

struct PreTokenizer::Step {
  Pattern pattern;  // no code: no split (a ByteLevel without its regex)
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool prefix_space = false;  // ByteLevel's add_prefix_space

  void compile(std::string_view regex, bool literal, const std::string& where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    const uint32_t options = literal ? PCRE2_LITERAL | PCRE2_UTF : PCRE2_UTF | PCRE2_UCP;
    pattern.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(), options, &error,
                                 &offset, nullptr);
    if (!pattern.code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      throw DataError(where, "pre_tokenizer regex \"" + std::string(regex) + "\" at offset " +
                                 std::to_string(offset) + ": " + reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(pattern.code, PCRE2_JIT_COMPLETE);  // the interpreter when JIT is unavailable
  }

  // Splits `piece` by the pattern with the step's behaviour, appending to `out`.
  void split(std::string_view piece, pcre2_match_data* match, std::vector<std::string_view>& out) const {
    struct Span {
      size_t begin, end;
      bool matched;
    };
    std::vector<Span> spans;
    size_t at = 0, last = 0;
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
    while (at <= piece.size()) {
      const int rc = pcre2_match(pattern.code, subject, piece.size(), at, PCRE2_NO_UTF_CHECK, match, nullptr);
      if (rc < 0) {
        if (rc == PCRE2_ERROR_NOMATCH) break;
        throw Error("pre-tokenizer regex failed with PCRE2 error " + std::to_string(rc));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
      const size_t begin = ov[0], end = ov[1];
      if (end == begin) {  // an empty match: step over one character
        if (begin >= piece.size()) break;
        at = begin + std::max<size_t>(1, utf8_sequence(piece, begin));
        continue;
      }
      if (begin > last) spans.push_back({last, begin, false});
      spans.push_back({begin, end, true});
      last = at = end;
    }
    if (last < piece.size()) spans.push_back({last, piece.size(), false});
    if (invert) {
      for (auto& s : spans) s.matched = !s.matched;
    }
    const auto view = [&](size_t b, size_t e) { return piece.substr(b, e - b); };
    std::vector<Span> merged;
    for (size_t i = 0; i < spans.size(); ++i) {
      const Span s = spans[i];
      switch (behavior) {
        case Behavior::kIsolated:
          merged.push_back(s);
          break;
        case Behavior::kRemoved:
          if (!s.matched) merged.push_back(s);
          break;
        case Behavior::kMergedWithPrevious:
          if (s.matched && !merged.empty() && !merged.back().matched) {
            merged.back().end = s.end;
            merged.back().matched = true;  // closed: the next span starts afresh
          } else {
            merged.push_back({s.begin, s.end, s.matched});
          }
          break;
        case Behavior::kMergedWithNext:
          if (!merged.empty() && merged.back().matched && !s.matched) {
            merged.back().end = s.end;
            merged.back().matched = false;
          } else {
            merged.push_back(s);
          }
          break;
        case Behavior::kContiguous:
          if (s.matched && !merged.empty() && merged.back().matched) {
            merged.back().end = s.end;
          } else {
            merged.push_back(s);
          }
          break;
      }
    }
    for (const auto& s : merged) {
      if (s.end > s.begin) out.push_back(view(s.begin, s.end));
    }
  }
};

PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;
PreTokenizer::~PreTokenizer() = default;

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& where) {
  PreTokenizer out;
  if (j.is_null()) return out;
  const auto type = type_of(j, where, "pre_tokenizer");
  if (type == "Sequence") {
    for (const auto& step : j.value("pretokenizers", nlohmann::json::array())) {
      auto inner = from_json(step, where);
      for (auto& s : inner.steps_) out.steps_.push_back(std::move(s));
      out.byte_level_ = out.byte_level_ || inner.byte_level_;
    }
    return out;
  }
  auto step = std::make_unique<Step>();
  if (type == "ByteLevel") {
    out.byte_level_ = true;
    step->prefix_space = flag(j, "add_prefix_space", false);
    if (flag(j, "use_regex", true)) step->compile(kGpt2Pattern, false, where);
  } else if (type == "Split") {
    const auto& pattern = j.value("pattern", nlohmann::json::object());
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      step->compile(pattern["Regex"].get<std::string>(), false, where);
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      step->compile(pattern["String"].get<std::string>(), true, where);
    } else {
      throw DataError(where, "pre_tokenizer Split: \"pattern\" needs a \"Regex\" or a \"String\"");
    }
    step->behavior = parse_behavior(j.value("behavior", std::string("Isolated")), where);
    step->invert = flag(j, "invert", false);
  } else {
    throw DataError(where, "pre_tokenizer \"" + type +
                               "\" is not supported (byte-level BPE tokenizers use Split, ByteLevel or a "
                               "Sequence of them)");
  }
  out.steps_.push_back(std::move(step));
  return out;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces,
                         std::deque<std::string>& storage) const {
  const size_t first = pieces.size();
  if (!text.empty()) pieces.push_back(text);
  pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
  std::vector<std::string_view> next;
  try {
    for (const auto& step : steps_) {
      next.clear();
      for (size_t i = first; i < pieces.size(); ++i) {
        std::string_view piece = pieces[i];
        if (step->prefix_space && piece.front() != ' ') {
          storage.push_back(" ");
          storage.back().append(piece);
          piece = storage.back();
        }
        if (step->pattern.code) {
          step->split(piece, match, next);
        } else {
          next.push_back(piece);
        }
      }
      pieces.resize(first);
      pieces.insert(pieces.end(), next.begin(), next.end());
    }
  } catch (...) {
    pcre2_match_data_free(match);
    throw;
  }
  pcre2_match_data_free(match);
}

}  // namespace rondo
