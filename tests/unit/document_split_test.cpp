// data.split: Megatron's weights and its rule for the documents of each part.
#include <gtest/gtest.h>

#include "common/errors.h"
#include "data/document_split.h"

namespace rondo {
namespace {

using Parts = std::vector<std::pair<uint64_t, uint64_t>>;

TEST(DocumentSplit, WeightsAreNormalisedToThreeParts) {
  EXPECT_EQ(parse_document_split(""), (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(parse_document_split("98,2"), (std::vector<double>{0.98, 0.02, 0}));
  const auto w = parse_document_split(" 969, 30 ,1 ");
  EXPECT_DOUBLE_EQ(w[0], 0.969);
  EXPECT_DOUBLE_EQ(w[1], 0.03);
  EXPECT_DOUBLE_EQ(w[2], 0.001);
}

TEST(DocumentSplit, BadSplitsAreRefusedNamingTheKey) {
  for (const char* bad : {"a", "98,", "1,2,3,4", "0,1", "-1,2", "nan,1", "1e999,1", "98;2"}) {
    try {
      parse_document_split(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("data.split"), std::string::npos) << e.what();
    }
  }
}

TEST(DocumentSplit, DocumentsFollowMegatronsRule) {
  // Each part round(share x documents) (half to even, as Python rounds), the excess off the end.
  EXPECT_EQ(split_documents(14, parse_document_split("80,20")), (Parts{{0, 11}, {11, 14}, {14, 14}}));
  EXPECT_EQ(split_documents(1000, parse_document_split("969,30,1")),
            (Parts{{0, 969}, {969, 999}, {999, 1000}}));
  EXPECT_EQ(split_documents(5, parse_document_split("1,1")), (Parts{{0, 3}, {3, 5}, {5, 5}}));
  EXPECT_EQ(split_documents(3, parse_document_split("1,1,1")), (Parts{{0, 1}, {1, 2}, {2, 3}}));
  EXPECT_EQ(split_documents(14, parse_document_split("99.9,0.1")), (Parts{{0, 14}, {14, 14}, {14, 14}}));
  EXPECT_EQ(split_documents(0, parse_document_split("98,2")), (Parts{{0, 0}, {0, 0}, {0, 0}}));
}

}  // namespace
}  // namespace rondo
