// A checkpoint's tensors across its safetensors files: model.safetensors, or
// the shards named by model.safetensors.index.json, cross-checked against it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/safetensors.h"

namespace loopserve {

class Checkpoint {
 public:
  // A tensor and the file that holds it (for error messages).
  struct Entry {
    const TensorInfo* tensor = nullptr;
    const SafetensorsFile* file = nullptr;
  };

  // Opens `dir`/model.safetensors, or `dir`/model.safetensors.index.json and
  // its shards. With an index, a tensor listed but absent from its shard,
  // present in a shard but not listed (or listed for another shard), or held
  // by two shards is an error naming both sides. Both layouts present at once
  // is an error too: which one is meant would be a guess.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // nullptr / an empty Entry when absent.
  const TensorInfo* Find(absl::string_view name) const;
  Entry FindEntry(absl::string_view name) const;
  // Every tensor name, sorted.
  std::vector<std::string> tensor_names() const;
  size_t num_tensors() const { return entries_.size(); }
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  explicit Checkpoint(std::string dir) : dir_(std::move(dir)) {}
  absl::Status OpenSharded(const std::string& index_path);
  absl::Status AddFile(std::unique_ptr<SafetensorsFile> file);

  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, Entry> entries_;
};

}  // namespace loopserve
