// Checkpoint directory layouts (MODEL_SPEC.md "Files"): a single
// model.safetensors, or shards listed by model.safetensors.index.json.
#include "engine/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using Json = nlohmann::json;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

// A shard must be a plain file name in the checkpoint directory: an index
// must not be able to point the loader at arbitrary paths.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint(dir));
  const std::string single = (fs::path(dir) / kSingleFile).string();
  const std::string index = (fs::path(dir) / kIndexFile).string();
  std::error_code ec;
  const bool has_single = fs::exists(single, ec);
  const bool has_index = fs::exists(index, ec);
  if (has_single && has_index) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": both ", kSingleFile, " and ", kIndexFile,
                                                   " present; keep one layout"));
  }
  if (has_index) {
    if (absl::Status s = ckpt->OpenSharded(index); !s.ok()) return s;
    return ckpt;
  }
  if (!has_single) {
    return absl::NotFoundError(
        absl::StrCat(dir, ": no ", kSingleFile, " or ", kIndexFile, " in the directory"));
  }
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(single);
  if (!file.ok()) return file.status();
  if (absl::Status s = ckpt->AddFile(*std::move(file)); !s.ok()) return s;
  return ckpt;
}

absl::Status Checkpoint::AddFile(std::unique_ptr<SafetensorsFile> file) {
  for (const TensorInfo& t : file->tensors()) {
    auto [it, inserted] = entries_.try_emplace(t.name, Entry{&t, file.get()});
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", t.name, ": present in both ", it->second.file->path(), " and ", file->path()));
    }
  }
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::Status Checkpoint::OpenSharded(const std::string& index_path) {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": ", parts...));
  };
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(index_path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  Json index;
  try {
    index = Json::parse(text.str());
  } catch (const Json::exception& e) {
    return error("not valid JSON: ", e.what());
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    return error("expected an object with a `weight_map` object");
  }
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it->is_string() || !IsPlainFileName(it->get<std::string>())) {
      return error("weight_map[", it.key(), "]: expected a file name in the checkpoint ",
                   "directory, found ", it->dump());
    }
    weight_map[it.key()] = it->get<std::string>();
  }
  std::map<std::string, int> shards;  // sorted: deterministic open order
  for (const auto& [tensor, shard] : weight_map) shards[shard] = 0;
  for (const auto& [shard, unused] : shards) {
    const std::string path = (std::filesystem::path(dir_) / shard).string();
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    if (!file.ok()) {
      return absl::Status(
          file.status().code(),
          absl::StrCat(file.status().message(), " (shard listed in ", index_path, ")"));
    }
    if (absl::Status s = AddFile(*std::move(file)); !s.ok()) return s;
  }
  for (const auto& [tensor, shard] : weight_map) {
    auto it = entries_.find(tensor);
    const std::string shard_path = (std::filesystem::path(dir_) / shard).string();
    if (it == entries_.end()) {
      return error("tensor ", tensor, ": listed for ", shard_path, ", but that shard lacks it");
    }
    if (it->second.file->path() != shard_path) {
      return error("tensor ", tensor, ": listed for ", shard_path, ", but found in ",
                   it->second.file->path());
    }
  }
  for (const std::unique_ptr<SafetensorsFile>& file : files_) {
    for (const TensorInfo& t : file->tensors()) {
      if (!weight_map.contains(t.name)) {
        return error("tensor ", t.name, ": present in ", file->path(),
                     ", but the index does not list it");
      }
    }
  }
  return absl::OkStatus();
}

const TensorInfo* Checkpoint::Find(absl::string_view name) const { return FindEntry(name).tensor; }

Checkpoint::Entry Checkpoint::FindEntry(absl::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? Entry{} : it->second;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace loopserve
