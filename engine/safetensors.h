// A read-only, memory-mapped safetensors file: the header is parsed and
// validated once at Open; tensor data is served as pointers into the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/common/weight_view.h"

namespace loopserve {

// The safetensors dtypes loopserve reads. Weights use the float ones; the
// integer ones are accepted so that a checkpoint carrying them is reported
// precisely ("wrong dtype") rather than as an unreadable file.
enum class SafetensorsDType : uint8_t { kF32, kF16, kBF16, kI32, kI64 };

const char* SafetensorsDTypeName(SafetensorsDType t);  // "F32", "BF16", ...
int SafetensorsDTypeSize(SafetensorsDType t);          // bytes per element
// The weight dtype with the same encoding; nullopt for the integer types.
std::optional<DType> ToWeightDType(SafetensorsDType t);

struct TensorInfo {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // into the mapping; not necessarily aligned
  size_t nbytes = 0;

  int64_t NumElements() const;
};

// "[8, 64]", as error messages print shapes.
std::string FormatShape(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  // Maps `path` and validates its header: entry fields and types, supported
  // dtypes, offsets inside the data region, sizes matching shape x dtype, no
  // overlapping tensors, no duplicate names. Errors name the file and tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same parse and validation over a file image already in memory, named
  // `name` in errors. Not copied: `data` must outlive the result. Lets the
  // fuzzer (tests/fuzz) check bounds against exactly `size` bytes, which a
  // page-rounded mapping would not.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(std::string name,
                                                                     const void* data,
                                                                     size_t size);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensors sorted by data offset (file order).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  std::vector<std::string> tensor_names() const;
  // nullptr when absent.
  const TensorInfo* Find(absl::string_view name) const;
  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t file_size() const { return size_; }

 private:
  SafetensorsFile(std::string path, int fd, void* map, size_t size);
  absl::Status ParseHeader();

  std::string path_;
  int fd_ = -1;
  void* map_ = nullptr;  // the file image; ours to munmap unless borrowed_
  bool borrowed_ = false;  // FromBuffer: the caller owns the bytes
  size_t size_ = 0;
  std::vector<TensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;  // name -> tensors_ slot
  std::map<std::string, std::string> metadata_;
};

}  // namespace loopserve
