// Tests for engine/safetensors: valid files read back exactly; every kind of
// corruption is rejected with a message naming the file and tensor.
#include "engine/safetensors.h"

#include <cstring>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/testing/safetensors_writer.h"

namespace loopserve {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::RawTensor;

class SafetensorsTest : public ::testing::Test {
 protected:
  // Writes `contents` as t.safetensors and opens it.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenBytes(const std::string& contents) {
    EXPECT_TRUE(testutil::WriteFile(path_, contents).ok());
    return SafetensorsFile::Open(path_);
  }
  // The error message for `contents`, which must fail with InvalidArgument.
  std::string ErrorOf(const std::string& contents) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(contents);
    EXPECT_FALSE(f.ok());
    if (f.ok()) return "";
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
    return std::string(f.status().message());
  }
  std::string Header(const std::string& entries) { return "{" + entries + "}"; }

  testutil::TempDir dir_;
  const std::string path_ = dir_.Join("t.safetensors");
};

TEST_F(SafetensorsTest, ReadsBackEveryDtypeAndMetadata) {
  std::vector<RawTensor> tensors = {
      testutil::FloatTensor("a.f32", DType::kF32, {2, 3}, {1, 2, 3, 4, 5, -6.5f}),
      testutil::FloatTensor("b.f16", DType::kF16, {3}, {0.5f, -2.0f, 65504.0f}),
      testutil::FloatTensor("c.bf16", DType::kBF16, {1, 2}, {1.5f, -3.0f}),
      testutil::Int32Tensor("d.i32", {2}, {7, -9}),
      RawTensor{"e.i64", "I64", {1}, std::string("\x05\0\0\0\0\0\0\0", 8)},
      testutil::FloatTensor("f.empty", DType::kF32, {0, 4}, {}),
  };
  std::string bytes = testutil::SerializeSafetensors(tensors);
  // Add metadata by rewriting the header the writer produced.
  uint64_t len;
  memcpy(&len, bytes.data(), 8);
  std::string header = bytes.substr(8, len);
  header = "{\"__metadata__\":{\"format\":\"pt\"}," + header.substr(1);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      OpenBytes(testutil::SerializeRaw(header, bytes.substr(8 + len)));
  ASSERT_TRUE(f.ok()) << f.status();
  const SafetensorsFile& file = **f;
  EXPECT_EQ(file.path(), path_);
  EXPECT_THAT(file.tensor_names(),
              ElementsAre("a.f32", "b.f16", "c.bf16", "d.i32", "e.i64", "f.empty"));
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.Find("missing"), nullptr);

  const TensorInfo* a = file.Find("a.f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, SafetensorsDType::kF32);
  EXPECT_THAT(a->shape, ElementsAre(2, 3));
  EXPECT_EQ(a->nbytes, 24u);
  EXPECT_EQ(a->NumElements(), 6);
  MatrixView av{*ToWeightDType(a->dtype), 2, 3, a->data};
  EXPECT_EQ(av.At(1, 2), -6.5f);
  EXPECT_EQ(av.At(0, 1), 2.0f);

  const TensorInfo* b = file.Find("b.f16");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, SafetensorsDType::kF16);
  VectorView bv{DType::kF16, 3, b->data};
  EXPECT_EQ(bv.At(0), 0.5f);
  EXPECT_EQ(bv.At(1), -2.0f);
  EXPECT_EQ(bv.At(2), 65504.0f);

  const TensorInfo* c = file.Find("c.bf16");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->dtype, SafetensorsDType::kBF16);
  EXPECT_EQ((MatrixView{DType::kBF16, 1, 2, c->data}.At(0, 1)), -3.0f);

  const TensorInfo* d = file.Find("d.i32");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->dtype, SafetensorsDType::kI32);
  EXPECT_FALSE(ToWeightDType(d->dtype).has_value());
  int32_t dv[2];
  memcpy(dv, d->data, 8);
  EXPECT_EQ(dv[1], -9);

  const TensorInfo* e = file.Find("e.i64");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->nbytes, 8u);
  EXPECT_EQ(SafetensorsDTypeSize(e->dtype), 8);

  const TensorInfo* empty = file.Find("f.empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_EQ(empty->nbytes, 0u);
  EXPECT_EQ(empty->NumElements(), 0);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::Open(dir_.Join("no"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr(dir_.Join("no") + ": cannot open"));
}

TEST_F(SafetensorsTest, FileShorterThanLengthField) {
  EXPECT_EQ(ErrorOf("abc"), path_ +
                                ": file is 3 bytes, too small for a safetensors header "
                                "length (8 bytes)");
}

TEST_F(SafetensorsTest, BadHeaderLength) {
  EXPECT_EQ(ErrorOf(testutil::SerializeRaw("", "")),
            path_ + ": header length 0 is too small for a JSON object");
  std::string huge(8, '\0');
  huge[6] = 1;  // 2^48
  huge += "{}";
  EXPECT_THAT(ErrorOf(huge), HasSubstr(path_ + ": header length 281474976710656 is implausible"));
}

TEST_F(SafetensorsTest, HeaderLengthBeyondFile) {
  std::string bytes = testutil::SerializeRaw("{}", "");
  bytes[0] = 40;  // claims 40 header bytes, the file has 2
  EXPECT_EQ(ErrorOf(bytes), path_ +
                                ": header length 40 runs past the end of the file (10 bytes, "
                                "2 after the length field)");
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  EXPECT_THAT(ErrorOf(testutil::SerializeRaw("{\"a\": [1,", "")),
              HasSubstr(path_ + ": header is not valid JSON"));
  EXPECT_EQ(ErrorOf(testutil::SerializeRaw("[1, 2]", "")),
            path_ + ": header is a JSON array, not an object");
}

TEST_F(SafetensorsTest, TruncatedData) {
  std::string bytes =
      testutil::SerializeSafetensors({testutil::FloatTensor("w", DType::kF32, {4}, {1, 2, 3, 4})});
  const size_t full = bytes.size();
  bytes.resize(full - 6);
  EXPECT_EQ(ErrorOf(bytes),
            absl::StrCat(path_, ": tensor w: data ends at byte ", full,
                         " of the file, but the file has only ", full - 6, " bytes (truncated?)"));
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  const std::string header = Header(R"("x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})");
  EXPECT_EQ(ErrorOf(testutil::SerializeRaw(header, std::string(12, '\0'))),
            path_ + ": tensors x [0, 8] and y [4, 12] overlap");
}

TEST_F(SafetensorsTest, SizeDisagreesWithShape) {
  const std::string header = Header(R"("w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,8]})");
  EXPECT_EQ(ErrorOf(testutil::SerializeRaw(header, std::string(8, '\0'))),
            path_ +
                ": tensor w: data_offsets [0, 8] hold 8 bytes, but shape [2, 3] x BF16 "
                "needs 12");
}

TEST_F(SafetensorsTest, UnsupportedDtype) {
  const std::string header = Header(R"("w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]})");
  EXPECT_EQ(ErrorOf(testutil::SerializeRaw(header, std::string(8, '\0'))),
            path_ + ": tensor w: unsupported dtype F64 (supported: F32, F16, BF16, I32, I64)");
}

TEST_F(SafetensorsTest, MalformedEntries) {
  auto error_for = [&](const std::string& entry) {
    return ErrorOf(testutil::SerializeRaw(Header("\"w\":" + entry), std::string(16, '\0')));
  };
  EXPECT_THAT(error_for("[]"), HasSubstr("tensor w: expected an object, found array"));
  EXPECT_THAT(error_for(R"({"shape":[1],"data_offsets":[0,4]})"),
              HasSubstr("tensor w: `dtype` missing or not a string"));
  EXPECT_THAT(error_for(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})"),
              HasSubstr("tensor w: `shape` missing or not an array of non-negative integers"));
  EXPECT_THAT(error_for(R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"),
              HasSubstr("tensor w: `data_offsets` missing or not two non-negative integers"));
  EXPECT_THAT(error_for(R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"),
              HasSubstr("tensor w: data_offsets [8, 4] are reversed"));
  EXPECT_THAT(error_for(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1})"),
              HasSubstr("tensor w: unexpected field `extra`"));
  EXPECT_THAT(error_for(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"),
              HasSubstr("tensor w: shape [4294967296,4294967296] overflows 64-bit sizes"));
}

TEST_F(SafetensorsTest, DuplicateTensorName) {
  const std::string header = Header(R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})");
  EXPECT_EQ(ErrorOf(testutil::SerializeRaw(header, std::string(8, '\0'))),
            path_ + ": tensor w: listed twice in the header");
}

TEST_F(SafetensorsTest, BadMetadata) {
  EXPECT_THAT(ErrorOf(testutil::SerializeRaw(R"({"__metadata__":{"k":1}})", "")),
              HasSubstr("__metadata__: key k: expected a string"));
}

TEST_F(SafetensorsTest, DataRegionIsAlignedByTheWriter) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = OpenBytes(
      testutil::SerializeSafetensors({testutil::FloatTensor("abc", DType::kF32, {1}, {1}),
                                      testutil::FloatTensor("d", DType::kF32, {1}, {2})}));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*f)->Find("abc")->data) % 8, 0u);
}

}  // namespace
}  // namespace loopserve
