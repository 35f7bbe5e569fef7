// The byte-level BPE tokenizer against Hugging Face's own: the ids that `tokenizers` 0.23.2 (npm)
// gave for GPT-2's, Llama 3's and Qwen3's real tokenizer.json on tests/data/tokenizer/corpus.json
// and the GPL-3 text (tests/data/tokenizer/make_reference.js wrote them), exactly; the round trip;
// and the tokenizer.json features those three files do not use, on small hand-written ones.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/errors.h"
#include "data/bpe_tokenizer.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kSource = RONDO_SOURCE_DIR;

std::string read_file(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

fs::path tokenizer_file(const std::string& name) {
  const auto path = kSource / ".cache/tokenizers" / name / "tokenizer.json";
  if (!fs::exists(path)) {
    ADD_FAILURE() << path << " is missing: run scripts/fetch-tokenizers (scripts/build runs it)";
  }
  return path;
}

class HuggingFaceReference : public ::testing::TestWithParam<std::string> {};

TEST_P(HuggingFaceReference, IdsAndDecodingEqualHuggingFaces) {
  const auto path = tokenizer_file(GetParam());
  if (!fs::exists(path)) return;
  auto tokenizer = BpeTokenizer::load(path.string());
  const auto reference =
      json::parse(read_file(kSource / "tests/data/tokenizer" / ("reference-" + GetParam() + ".json")));
  size_t checked = 0;
  for (const auto& c : reference["cases"]) {
    const auto label = c["label"].get<std::string>();
    std::string text;
    if (c.contains("file")) {
      text = read_file(c["file"].get<std::string>());
      ASSERT_EQ(text.size(), c["bytes"].get<size_t>()) << label << " is not the text the reference encoded";
    } else {
      text = c["text"].get<std::string>();
    }
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    const auto ids = tokenizer.encode(text, c["add_special_tokens"].get<bool>());
    ASSERT_EQ(ids, expected) << GetParam() << " " << label;
    if (c.contains("decoded")) {
      EXPECT_EQ(tokenizer.decode(ids), c["decoded"].get<std::string>()) << label;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 48u);
  EXPECT_EQ(tokenizer.replaced_bytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(RealVocabularies, HuggingFaceReference, ::testing::Values("gpt2", "llama3", "qwen3"),
                         [](const auto& info) { return info.param; });

TEST(BpeTokenizer, RoundTripsAnyBytesWithoutANormalizer) {
  const auto path = tokenizer_file("llama3");
  if (!fs::exists(path)) return;
  auto tokenizer = BpeTokenizer::load(path.string());
  EXPECT_EQ(tokenizer.vocab_size(), 128256);
  EXPECT_EQ(tokenizer.end_of_text(), 128001);  // tokenizer_config.json's eos_token
  for (const auto& text : json::parse(read_file(kSource / "tests/data/tokenizer/corpus.json"))) {
    const auto s = text.get<std::string>();
    EXPECT_EQ(tokenizer.decode(tokenizer.encode(s)), s);
  }
  const std::string invalid = "ok \xff\xfe then \xc3( and \xed\xa0\x80";  // bad bytes, a surrogate
  const auto ids = tokenizer.encode(invalid);
  EXPECT_EQ(tokenizer.replaced_bytes(), 6u);
  EXPECT_EQ(tokenizer.decode(ids),
            tokenizer.decode(tokenizer.encode("ok \uFFFD\uFFFD then \uFFFD( and \uFFFD\uFFFD\uFFFD")));
  // Special tokens: kept or skipped when decoding.
  const auto special = tokenizer.encode("<|begin_of_text|>hi<|eot_id|>");
  EXPECT_EQ(special.front(), 128000);
  EXPECT_EQ(tokenizer.decode(special, /*skip_special_tokens=*/true), "hi");
}

// A small byte-level tokenizer.json: the 256 byte symbols, a few merges, and what is varied.
json small_tokenizer() {
  json vocab = json::object();
  // Byte symbols as GPT-2 maps them: printable bytes are themselves, the rest from U+0100 on.
  int next = 256, id = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    vocab[s] = id++;
  }
  for (const char* t : {"ab", "abc",
                        "\xC4\xA0"
                        "a",
                        "bc", "-a", "b-"})
    vocab[t] = id++;  // Ġ: the space
  return json{
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({"b c", "- a", "b -", "a b", "ab c", json::array({"\xC4\xA0", "a"})})}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", json::array({{{"id", 300}, {"content", "<s>"}, {"special", true}},
                                    {{"id", 301}, {"content", "</s>"}, {"special", true}},
                                    {{"id", 302}, {"content", "[M]"}, {"lstrip", true}, {"rstrip", true}}})}};
}

TEST(BpeTokenizer, MergesByRankLeftmostFirst) {
  auto t = BpeTokenizer::parse(small_tokenizer().dump(), "small.json");
  // Byte b has id b. "abc": b c (rank 0) before a b, then nothing joins a + bc; "abab": a b twice.
  EXPECT_EQ(t.encode("abc"), (std::vector<int32_t>{'a', 259}));
  EXPECT_EQ(t.encode("abab"), (std::vector<int32_t>{256, 256}));
  EXPECT_EQ(t.encode(" a"), (std::vector<int32_t>{258}));
  EXPECT_EQ(t.vocab_size(), 303);
  EXPECT_EQ(t.token_id("</s>"), 301);
  EXPECT_EQ(t.token_id("b-"), 261);
}

TEST(BpeTokenizer, AddedTokensStripAndPostProcessorTemplates) {
  auto j = small_tokenizer();
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}})},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {300}}}}, {"</s>", {{"id", "</s>"}, {"ids", {301}}}}}}};
  auto t = BpeTokenizer::parse(j.dump(), "small.json");
  EXPECT_EQ(t.encode("ab", true), (std::vector<int32_t>{300, 256, 301}));
  EXPECT_EQ(t.encode("ab", false), (std::vector<int32_t>{256}));
  // lstrip/rstrip: the spaces around [M] belong to it.
  EXPECT_EQ(t.encode("ab  [M]  ab"), (std::vector<int32_t>{256, 302, 256}));
  EXPECT_EQ(t.encode("<s></s><s"), (std::vector<int32_t>{300, 301, '<', 's'}));
}

TEST(BpeTokenizer, SplitBehaviours) {
  auto j = small_tokenizer();
  const auto with_split = [&](const char* behavior) {
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", false}},
              {{"type", "ByteLevel"}, {"use_regex", false}}})}};
    auto t = BpeTokenizer::parse(j.dump(), "small.json");
    return t.encode("ab-ab--ab");
  };
  // Merged pieces are one word each: "ab-" merges b - first, "-ab" merges - a first.
  const int32_t ab = 256, dash = '-', a = 'a', b = 'b', dash_a = 260, b_dash = 261;
  EXPECT_EQ(with_split("Isolated"), (std::vector<int32_t>{ab, dash, ab, dash, dash, ab}));
  EXPECT_EQ(with_split("Removed"), (std::vector<int32_t>{ab, ab, ab}));
  EXPECT_EQ(with_split("MergedWithPrevious"), (std::vector<int32_t>{a, b_dash, a, b_dash, dash, ab}));
  EXPECT_EQ(with_split("MergedWithNext"), (std::vector<int32_t>{ab, dash_a, b, dash, dash_a, b}));
  EXPECT_EQ(with_split("Contiguous"), (std::vector<int32_t>{ab, dash, ab, dash, dash, ab}));
}

TEST(BpeTokenizer, RefusesWhatItCannotEncodeNamingIt) {
  const auto refused = [](const json& j, const std::string& needle) {
    try {
      BpeTokenizer::parse(j.dump(), "tok.json");
      ADD_FAILURE() << "accepted; expected an error naming " << needle;
    } catch (const DataError& e) {
      EXPECT_EQ(e.path(), "tok.json");
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto j = small_tokenizer();
  j["model"]["type"] = "WordPiece";
  refused(j, "WordPiece");
  j = small_tokenizer();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  refused(j, "Metaspace");
  j = small_tokenizer();
  j["model"]["merges"].push_back("x yz");
  refused(j, "merges[6]");
  j = small_tokenizer();
  j["model"]["vocab"].erase("A");
  refused(j, "byte 65");
  j = small_tokenizer();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  refused(j, "(unclosed");
  j = small_tokenizer();
  j["normalizer"] = {{"type", "Lowercase"}};
  refused(j, "Lowercase");
  j = small_tokenizer();
  j["added_tokens"].push_back({{"id", -1}, {"content", "<bad>"}});
  refused(j, "added_tokens");
  j = small_tokenizer();
  j["added_tokens"].push_back({{"id", 400}});
  refused(j, "added_tokens");
  EXPECT_THROW(BpeTokenizer::parse("{not json", "tok.json"), DataError);
  EXPECT_THROW(BpeTokenizer::load("/nonexistent/tokenizer.json"), DataError);
}

}  // namespace
}  // namespace rondo
