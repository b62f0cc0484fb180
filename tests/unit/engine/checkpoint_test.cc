// Tests for engine/checkpoint: single-file and sharded layouts, and the
// index/shard disagreements that must be reported with both sides named.
#include "engine/checkpoint.h"

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::RawTensor;

std::vector<RawTensor> SomeTensors() {
  return {testutil::FloatTensor("a", DType::kF32, {2, 2}, {1, 2, 3, 4}),
          testutil::FloatTensor("b", DType::kBF16, {3}, {0.5f, 1.5f, -2}),
          testutil::FloatTensor("c", DType::kF16, {1, 2}, {7, 8}),
          testutil::FloatTensor("d", DType::kF32, {1}, {9})};
}

// Writes an index mapping tensor -> shard file, and the shards themselves.
void WriteShards(const testutil::TempDir& dir,
                 const std::map<std::string, std::vector<RawTensor>>& shards,
                 const nlohmann::json& weight_map) {
  for (const auto& [file, tensors] : shards) {
    ASSERT_TRUE(testutil::WriteSafetensors(dir.Join(file), tensors).ok());
  }
  nlohmann::json index = {{"weight_map", weight_map}};
  ASSERT_TRUE(testutil::WriteFile(dir.Join("model.safetensors.index.json"), index.dump()).ok());
}

std::string ErrorOf(const testutil::TempDir& dir) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(CheckpointTest, SingleFile) {
  testutil::TempDir dir;
  ASSERT_TRUE(testutil::WriteSafetensors(dir.Join("model.safetensors"), SomeTensors()).ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->dir(), dir.path());
  EXPECT_THAT((*c)->tensor_names(), ElementsAre("a", "b", "c", "d"));
  EXPECT_EQ((*c)->num_tensors(), 4u);
  Checkpoint::Entry e = (*c)->FindEntry("b");
  ASSERT_NE(e.tensor, nullptr);
  EXPECT_EQ(e.file->path(), dir.Join("model.safetensors"));
  EXPECT_EQ(e.tensor->dtype, SafetensorsDType::kBF16);
  EXPECT_EQ((VectorView{DType::kBF16, 3, e.tensor->data}.At(2)), -2.0f);
  EXPECT_EQ((*c)->Find("zzz"), nullptr);
  EXPECT_EQ((*c)->FindEntry("zzz").file, nullptr);
}

TEST(CheckpointTest, ShardedEqualsSingleFile) {
  testutil::TempDir single_dir, sharded_dir;
  ASSERT_TRUE(testutil::WriteSafetensors(single_dir.Join("model.safetensors"), SomeTensors()).ok());
  ASSERT_TRUE(testutil::WriteShardedSafetensors(sharded_dir.path(), SomeTensors(), 3).ok());
  absl::StatusOr<std::unique_ptr<Checkpoint>> single = Checkpoint::Open(single_dir.path());
  absl::StatusOr<std::unique_ptr<Checkpoint>> sharded = Checkpoint::Open(sharded_dir.path());
  ASSERT_TRUE(single.ok()) << single.status();
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  EXPECT_EQ((*sharded)->files().size(), 3u);
  ASSERT_EQ((*single)->tensor_names(), (*sharded)->tensor_names());
  for (const std::string& name : (*single)->tensor_names()) {
    const TensorInfo* a = (*single)->Find(name);
    const TensorInfo* b = (*sharded)->Find(name);
    ASSERT_NE(b, nullptr) << name;
    EXPECT_EQ(a->dtype, b->dtype) << name;
    EXPECT_EQ(a->shape, b->shape) << name;
    ASSERT_EQ(a->nbytes, b->nbytes) << name;
    EXPECT_EQ(memcmp(a->data, b->data, a->nbytes), 0) << name;
  }
  // Round-robin: "c" is the third tensor, so it lives in the third shard.
  EXPECT_EQ((*sharded)->FindEntry("c").file->path(),
            sharded_dir.Join("model-00003-of-00003.safetensors"));
}

TEST(CheckpointTest, NoCheckpointFiles) {
  testutil::TempDir dir;
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr(dir.path() + ": no model.safetensors or "
                                                           "model.safetensors.index.json"));
}

TEST(CheckpointTest, BothLayoutsIsAmbiguous) {
  testutil::TempDir dir;
  ASSERT_TRUE(testutil::WriteSafetensors(dir.Join("model.safetensors"), SomeTensors()).ok());
  WriteShards(dir, {{"s1.safetensors", SomeTensors()}},
              {{"a", "s1.safetensors"},
               {"b", "s1.safetensors"},
               {"c", "s1.safetensors"},
               {"d", "s1.safetensors"}});
  EXPECT_THAT(ErrorOf(dir), HasSubstr("both model.safetensors and model.safetensors.index.json"));
}

TEST(CheckpointTest, IndexPointsToMissingShard) {
  testutil::TempDir dir;
  WriteShards(dir, {{"s1.safetensors", SomeTensors()}},
              {{"a", "s1.safetensors"},
               {"b", "s1.safetensors"},
               {"c", "s1.safetensors"},
               {"d", "s2.safetensors"}});
  absl::StatusOr<std::unique_ptr<Checkpoint>> c = Checkpoint::Open(dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr(dir.Join("s2.safetensors") + ": cannot open"));
  EXPECT_THAT(c.status().message(),
              HasSubstr("shard listed in " + dir.Join("model.safetensors.index.json")));
}

TEST(CheckpointTest, TensorInIndexButNotInItsShard) {
  testutil::TempDir dir;
  std::vector<RawTensor> t = SomeTensors();
  WriteShards(dir, {{"s1.safetensors", {t[0], t[1]}}, {"s2.safetensors", {t[2]}}},
              {{"a", "s1.safetensors"},
               {"b", "s1.safetensors"},
               {"c", "s2.safetensors"},
               {"d", "s2.safetensors"}});
  EXPECT_EQ(ErrorOf(dir), dir.Join("model.safetensors.index.json") + ": tensor d: listed for " +
                              dir.Join("s2.safetensors") + ", but that shard lacks it");
}

TEST(CheckpointTest, TensorInShardButNotInIndex) {
  testutil::TempDir dir;
  std::vector<RawTensor> t = SomeTensors();
  WriteShards(dir, {{"s1.safetensors", {t[0], t[1]}}, {"s2.safetensors", {t[2], t[3]}}},
              {{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}});
  EXPECT_EQ(ErrorOf(dir), dir.Join("model.safetensors.index.json") + ": tensor d: present in " +
                              dir.Join("s2.safetensors") + ", but the index does not list it");
}

TEST(CheckpointTest, TensorListedForAnotherShard) {
  testutil::TempDir dir;
  std::vector<RawTensor> t = SomeTensors();
  WriteShards(dir, {{"s1.safetensors", {t[0], t[1]}}, {"s2.safetensors", {t[2], t[3]}}},
              {{"a", "s1.safetensors"},
               {"b", "s2.safetensors"},
               {"c", "s2.safetensors"},
               {"d", "s2.safetensors"}});
  EXPECT_EQ(ErrorOf(dir), dir.Join("model.safetensors.index.json") + ": tensor b: listed for " +
                              dir.Join("s2.safetensors") + ", but found in " +
                              dir.Join("s1.safetensors"));
}

TEST(CheckpointTest, TensorInTwoShards) {
  testutil::TempDir dir;
  std::vector<RawTensor> t = SomeTensors();
  WriteShards(dir, {{"s1.safetensors", {t[0], t[1]}}, {"s2.safetensors", {t[1], t[2], t[3]}}},
              {{"a", "s1.safetensors"},
               {"b", "s1.safetensors"},
               {"c", "s2.safetensors"},
               {"d", "s2.safetensors"}});
  EXPECT_EQ(ErrorOf(dir), "tensor b: present in both " + dir.Join("s1.safetensors") + " and " +
                              dir.Join("s2.safetensors"));
}

TEST(CheckpointTest, MalformedIndex) {
  testutil::TempDir dir;
  const std::string index = dir.Join("model.safetensors.index.json");
  ASSERT_TRUE(testutil::WriteFile(index, "{\"weight_map\": [").ok());
  EXPECT_THAT(ErrorOf(dir), HasSubstr(index + ": not valid JSON"));
  ASSERT_TRUE(testutil::WriteFile(index, "{\"metadata\": {}}").ok());
  EXPECT_EQ(ErrorOf(dir), index + ": expected an object with a `weight_map` object");
  ASSERT_TRUE(testutil::WriteFile(index, R"({"weight_map": {"a": "../escape.safetensors"}})").ok());
  EXPECT_EQ(ErrorOf(dir), index +
                              ": weight_map[a]: expected a file name in the checkpoint "
                              "directory, found \"../escape.safetensors\"");
}

}  // namespace
}  // namespace loopserve
