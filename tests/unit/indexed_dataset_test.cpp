// Megatron's indexed format: what rondo writes reads back; hand-broken indexes are refused naming
// the file and what is wrong; `rondo data prepare` and `rondo data stats` on real files.
#include "data/indexed_dataset.h"
#include "data/bpe_tokenizer.h"
#include "data/token_corpus.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/unit/rondo_cli.h"

namespace rondo {
namespace {

namespace fs = std::filesystem;

class IndexedDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("rondo-indexed-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string prefix(const std::string& name = "corpus") const { return (dir_ / name).string(); }

  // A small dataset: three documents of 5, 0 and 70000-range tokens.
  std::vector<std::vector<int64_t>> write(TokenType type) {
    std::vector<std::vector<int64_t>> docs = {{1, 2, 3, 4, 5}, {}, {}};
    for (int i = 0; i < 1000; ++i)
      docs[2].push_back((i * 7919) % (type == TokenType::kUint16 ? 65536 : 70000));
    IndexedDatasetWriter w(prefix(), type);
    for (const auto& d : docs) w.add_document(d);
    w.finish();
    return docs;
  }

  std::string read_idx() const {
    std::ifstream f(prefix() + ".idx", std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
  void write_idx(const std::string& bytes) const {
    std::ofstream(prefix() + ".idx", std::ios::binary | std::ios::trunc) << bytes;
  }
  std::string open_error() const {
    try {
      IndexedDataset::open(prefix());
    } catch (const DataError& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
};

TEST_F(IndexedDatasetTest, WhatIsWrittenReadsBack) {
  for (auto type : {TokenType::kUint16, TokenType::kInt32}) {
    const auto docs = write(type);
    EXPECT_FALSE(fs::exists(prefix() + ".bin.partial"));
    const auto d = IndexedDataset::open(prefix());
    ASSERT_EQ(d.sequences(), 3u);
    EXPECT_EQ(d.documents(), 3u);
    EXPECT_EQ(d.tokens(), 1005u);
    EXPECT_EQ(d.token_type(), type);
    for (size_t i = 0; i < docs.size(); ++i) {
      EXPECT_EQ(d.document_start(i), static_cast<int64_t>(i));
      std::vector<int64_t> got;
      d.read(i, 0, static_cast<size_t>(d.length(i)), got);
      EXPECT_EQ(got, docs[i]) << token_type_name(type) << " document " << i;
    }
    std::vector<int64_t> part;
    d.read(2, 10, 3, part);
    EXPECT_EQ(part, std::vector<int64_t>(docs[2].begin() + 10, docs[2].begin() + 13));
    EXPECT_THROW(d.read(0, 3, 3, part), DataError);
  }
}

TEST_F(IndexedDatasetTest, TheHeaderLayoutIsMegatrons) {
  write(TokenType::kUint16);
  const auto idx = read_idx();
  ASSERT_EQ(idx.size(), 34u + 3 * 12 + 4 * 8);
  EXPECT_EQ(std::memcmp(idx.data(), "MMIDIDX\0\0", 9), 0);
  uint64_t version, sequences, documents;
  std::memcpy(&version, idx.data() + 9, 8);
  std::memcpy(&sequences, idx.data() + 18, 8);
  std::memcpy(&documents, idx.data() + 26, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(static_cast<uint8_t>(idx[17]), 8);  // uint16
  EXPECT_EQ(sequences, 3u);
  EXPECT_EQ(documents, 4u);  // 0, 1, 2, 3
  int64_t second_offset;
  std::memcpy(&second_offset, idx.data() + 34 + 3 * 4 + 8, 8);
  EXPECT_EQ(second_offset, 10);  // 5 tokens x 2 bytes
}

TEST_F(IndexedDatasetTest, BrokenIndexesAreRefusedNamingTheInconsistency) {
  write(TokenType::kUint16);
  const auto good = read_idx();
  const auto expect_refused = [&](std::string bytes, const std::string& says) {
    write_idx(bytes);
    const auto error = open_error();
    EXPECT_NE(error.find(prefix() + ".idx"), std::string::npos) << error;
    EXPECT_NE(error.find(says), std::string::npos) << error;
  };
  expect_refused(good.substr(0, 20), "truncated");
  auto bad = good;
  bad[0] = 'X';
  expect_refused(bad, "MMIDIDX");
  bad = good;
  bad[9] = 2;
  expect_refused(bad, "version 2");
  bad = good;
  bad[17] = 7;  // float32
  expect_refused(bad, "dtype code 7");
  expect_refused(good.substr(0, good.size() - 8), "need");  // counts say more than the file holds
  bad = good;
  bad[18] = 100;  // 100 sequences
  expect_refused(bad, "need");
  bad = good;
  const int64_t past = 1 << 20;
  std::memcpy(bad.data() + 34 + 3 * 4 + 16, &past, 8);  // the third sequence's offset
  expect_refused(bad, "does not follow");
  bad = good;
  const int32_t longer = 2000;
  std::memcpy(bad.data() + 34 + 8, &longer, 4);  // the third sequence's length
  expect_refused(bad, "does not follow");
  bad = good;
  const int64_t backwards = 0;
  std::memcpy(bad.data() + 34 + 36 + 16, &backwards, 8);  // document index 2
  expect_refused(bad, "backwards");
  // An index that covers less than the .bin holds.
  write_idx(good);
  std::ofstream(prefix() + ".bin", std::ios::binary | std::ios::app) << "xx";
  expect_refused(good, "cover");
  fs::remove(prefix() + ".idx");
  EXPECT_NE(open_error().find("cannot open"), std::string::npos);
}

TEST_F(IndexedDatasetTest, DataPrepareAndStatsOnTextDirectoriesAndJsonl) {
  fs::create_directories(dir_ / "docs" / "sub");
  std::ofstream(dir_ / "docs" / "a.txt") << "hello";
  std::ofstream(dir_ / "docs" / "sub" / "b.txt") << std::string(300, 'x');
  std::ofstream(dir_ / "more.jsonl") << "{\"text\": \"abc\"}\n\n{\"text\": \"\\u00e9\", \"id\": 2}\n";
  const auto out = prefix("prepared");
  const auto r = testing::run_rondo("data prepare " + (dir_ / "docs").string() + " " +
                                    (dir_ / "more.jsonl").string() + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto d = IndexedDataset::open(out);
  EXPECT_EQ(d.documents(), 4u);
  EXPECT_EQ(d.tokens(), 5u + 300 + 3 + 2);  // "é" is two UTF-8 bytes
  std::vector<int64_t> first;
  d.read(0, 0, 5, first);
  EXPECT_EQ(first, (std::vector<int64_t>{'h', 'e', 'l', 'l', 'o'}));

  const auto s = testing::run_rondo("data stats " + out + " --json");
  ASSERT_EQ(s.status, 0) << s.output;
  const auto j = nlohmann::json::parse(s.output.substr(s.output.find('{')));
  EXPECT_EQ(j["documents"], 4);
  EXPECT_EQ(j["tokens"], 310);
  EXPECT_EQ(j["length_max"], 300);
  EXPECT_EQ(j["dtype"], "uint16");
  uint64_t in_histogram = 0;
  for (const auto& b : j["histogram"]) in_histogram += b["sequences"].get<uint64_t>();
  EXPECT_EQ(in_histogram, 4u);

  const auto bad = testing::run_rondo("data prepare " + (dir_ / "nowhere").string() + " --out " + out);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.output.find("nowhere"), std::string::npos) << bad.output;
  std::ofstream(dir_ / "broken.jsonl") << "{\"text\": \"ok\"}\n{\"txt\": 1}\n";
  const auto broken =
      testing::run_rondo("data prepare " + (dir_ / "broken.jsonl").string() + " --out " + out);
  EXPECT_NE(broken.status, 0);
  EXPECT_NE(broken.output.find("broken.jsonl:2"), std::string::npos) << broken.output;
  EXPECT_TRUE(fs::exists(out + ".idx")) << "a failed prepare leaves the earlier dataset alone";
  EXPECT_FALSE(fs::exists(out + ".bin.partial"));
}

TEST_F(IndexedDatasetTest, DataPrepareWithAHuggingFaceTokenizer) {
  const fs::path vocabularies = fs::path(RONDO_SOURCE_DIR) / ".cache/tokenizers";
  ASSERT_TRUE(fs::exists(vocabularies / "llama3/tokenizer.json")) << "run scripts/fetch-tokenizers";
  const std::vector<std::string> docs = {"Hello world! It's 2026.", "naïve café <|begin_of_text|> 日本語"};
  {
    std::ofstream jsonl(dir_ / "docs.jsonl");
    for (const auto& d : docs) jsonl << nlohmann::json{{"text", d}}.dump() << "\n";
  }
  const auto prepare = [&](const std::string& name, const std::string& flags) {
    return testing::run_rondo("data prepare " + (dir_ / "docs.jsonl").string() + " --out " + prefix(name) +
                              " --tokenizer " + (vocabularies / name / "tokenizer.json").string() + " " +
                              flags);
  };
  for (const std::string name : {"llama3", "gpt2"}) {
    const auto r = prepare(name, "--append-eod");
    ASSERT_EQ(r.status, 0) << r.output;
    auto tokenizer = BpeTokenizer::load((vocabularies / name / "tokenizer.json").string());
    const auto d = IndexedDataset::open(prefix(name));
    // Llama 3's 128256 ids need int32; GPT-2's 50257 fit uint16.
    EXPECT_EQ(d.token_type(), name == "llama3" ? TokenType::kInt32 : TokenType::kUint16);
    ASSERT_EQ(d.documents(), docs.size());
    for (size_t i = 0; i < docs.size(); ++i) {
      auto expected = tokenizer.encode(docs[i]);
      expected.push_back(*tokenizer.end_of_text());
      std::vector<int64_t> got;
      d.read(i, 0, static_cast<size_t>(d.length(i)), got);
      EXPECT_EQ(got, std::vector<int64_t>(expected.begin(), expected.end())) << name << " document " << i;
    }
  }
  const auto narrow = prepare("llama3", "--dtype uint16");
  EXPECT_NE(narrow.status, 0);
  EXPECT_NE(narrow.output.find("--dtype"), std::string::npos) << narrow.output;
  const auto eod = testing::run_rondo("data prepare " + (dir_ / "docs.jsonl").string() + " --out " +
                                      prefix("b") + " --append-eod");
  EXPECT_NE(eod.status, 0);
  EXPECT_NE(eod.output.find("--append-eod"), std::string::npos) << eod.output;

  const auto ids =
      testing::run_rondo("data tokenize --json --tokenizer " +
                         (vocabularies / "llama3/tokenizer.json").string() + " --text 'Hello world!'");
  ASSERT_EQ(ids.status, 0) << ids.output;
  const auto j = nlohmann::json::parse(ids.output.substr(ids.output.find('{')));
  EXPECT_EQ(j["ids"], nlohmann::json::array({9906, 1917, 0}));  // Hugging Face's ids
  EXPECT_EQ(j["tokens"], nlohmann::json::array({"Hello", " world", "!"}));
  const auto text =
      testing::run_rondo("data tokenize --tokenizer " + (vocabularies / "llama3/tokenizer.json").string() +
                         " --decode 9906,1917,0");
  EXPECT_NE(text.output.find("Hello world!"), std::string::npos) << text.output;
}

TEST_F(IndexedDatasetTest, TokenCorpusReadsTheSameStreamFromEveryFormat) {
  // Three documents (one empty) as a directory of text files, a JSONL file and an indexed dataset.
  const std::vector<std::string> docs = {"first document. ", "", std::string(500, 'z') + "end"};
  fs::create_directories(dir_ / "texts");
  std::ofstream jsonl(dir_ / "docs.jsonl");
  IndexedDatasetWriter w(prefix(), TokenType::kUint16);
  std::string all;
  for (size_t i = 0; i < docs.size(); ++i) {
    std::ofstream(dir_ / "texts" / ("doc" + std::to_string(i) + ".txt")) << docs[i];
    jsonl << nlohmann::json{{"text", docs[i]}}.dump() << "\n";
    w.add_bytes(docs[i].data(), docs[i].size());
    all += docs[i];
  }
  jsonl.close();
  w.finish();
  EXPECT_EQ(TokenCorpus::resolve_format(prefix(), "auto"), "indexed");
  EXPECT_EQ(TokenCorpus::resolve_format((dir_ / "docs.jsonl").string(), "auto"), "jsonl");
  EXPECT_EQ(TokenCorpus::resolve_format((dir_ / "texts").string(), "auto"), "text");
  for (const auto& [path, format] :
       {std::pair{prefix(), "indexed"}, std::pair{(dir_ / "docs.jsonl").string(), "jsonl"},
        std::pair{(dir_ / "texts").string(), "text"}}) {
    const auto c = TokenCorpus::load(path, format, 10);
    ASSERT_EQ(c.size(), all.size()) << format;
    // Windows that start in one document and end in the next, and the last token.
    for (const auto& [offset, count] :
         {std::pair<uint64_t, size_t>{0, all.size()}, {10, 20}, {15, 3}, {all.size() - 1, 1}}) {
      std::vector<int64_t> got(count);
      c.read(offset, count, got.data());
      EXPECT_EQ(std::string(got.begin(), got.end()), all.substr(offset, count)) << format << " at " << offset;
    }
    std::vector<int64_t> past(2);
    EXPECT_THROW(c.read(all.size() - 1, 2, past.data()), DataError) << format;
    // Document ranges (data.split) read as corpora of their own, a range of a range too.
    const auto first = c.documents_slice(0, 2, "training"), last = c.documents_slice(1, 3, "validation");
    const auto only = last.documents_slice(1, 2, "test");
    for (const auto& [slice, text] : {std::pair{&first, docs[0] + docs[1]},
                                      std::pair{&last, docs[1] + docs[2]}, std::pair{&only, docs[2]}}) {
      ASSERT_EQ(slice->size(), text.size()) << format;
      std::vector<int64_t> got(text.size());
      slice->read(0, got.size(), got.data());
      EXPECT_EQ(std::string(got.begin(), got.end()), text) << format;
      EXPECT_THROW(slice->read(text.size(), 1, got.data()), DataError) << format;
    }
    EXPECT_EQ(last.num_documents(), 2u);
    EXPECT_EQ(last.document_lengths(), (std::vector<int64_t>{0, static_cast<int64_t>(docs[2].size())}))
        << format;
    std::vector<int64_t> ids(4);
    first.documents(14, 2, ids.data());  // the first document's last two tokens
    EXPECT_EQ(ids[0], 0);
    EXPECT_NE(first.source().find("training: documents 0-2 of 3"), std::string::npos) << first.source();
  }
  EXPECT_THROW(TokenCorpus::load(prefix(), "indexed", all.size() + 1), ConfigError);
}

}  // namespace
}  // namespace rondo
