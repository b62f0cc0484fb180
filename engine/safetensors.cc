// safetensors parsing and validation over a read-only mmap. Format: u64 LE
// header length N, N bytes of JSON header, then the data region that the
// header's data_offsets index (relative to the region start).
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace loopserve {
namespace {

using Json = nlohmann::json;

// The reference implementation refuses headers past 100 MB; so do we, so that
// a corrupt length cannot make us parse (or allocate for) gigabytes of text.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

std::optional<SafetensorsDType> ParseDType(absl::string_view s) {
  if (s == "F32") return SafetensorsDType::kF32;
  if (s == "F16") return SafetensorsDType::kF16;
  if (s == "BF16") return SafetensorsDType::kBF16;
  if (s == "I32") return SafetensorsDType::kI32;
  if (s == "I64") return SafetensorsDType::kI64;
  return std::nullopt;
}

// A JSON array of non-negative integers, or nullopt.
std::optional<std::vector<uint64_t>> ReadUints(const Json& v) {
  if (!v.is_array()) return std::nullopt;
  std::vector<uint64_t> out;
  for (const Json& e : v) {
    if (!e.is_number_unsigned()) return std::nullopt;  // negatives parse as signed
    out.push_back(e.get<uint64_t>());
  }
  return out;
}

}  // namespace

const char* SafetensorsDTypeName(SafetensorsDType t) {
  switch (t) {
    case SafetensorsDType::kF32:
      return "F32";
    case SafetensorsDType::kF16:
      return "F16";
    case SafetensorsDType::kBF16:
      return "BF16";
    case SafetensorsDType::kI32:
      return "I32";
    case SafetensorsDType::kI64:
      return "I64";
  }
  return "?";
}

int SafetensorsDTypeSize(SafetensorsDType t) {
  switch (t) {
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16:
      return 2;
    case SafetensorsDType::kF32:
    case SafetensorsDType::kI32:
      return 4;
    case SafetensorsDType::kI64:
      return 8;
  }
  return 0;
}

std::optional<DType> ToWeightDType(SafetensorsDType t) {
  switch (t) {
    case SafetensorsDType::kF32:
      return DType::kF32;
    case SafetensorsDType::kF16:
      return DType::kF16;
    case SafetensorsDType::kBF16:
      return DType::kBF16;
    case SafetensorsDType::kI32:
    case SafetensorsDType::kI64:
      return std::nullopt;
  }
  return std::nullopt;
}

int64_t TensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at Open not to overflow
  return n;
}

std::string FormatShape(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = absl::StrCat(path, ": cannot open: ", strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": file is ", size, " bytes, too small for a safetensors header length (8 bytes)"));
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) {
    int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat(path, ": mmap failed: ", strerror(err)));
  }
  // From here the destructor owns fd and mapping, whatever ParseHeader says.
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(path, fd, map, size));
  if (absl::Status s = file->ParseHeader(); !s.ok()) return s;
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(std::string name,
                                                                             const void* data,
                                                                             size_t size) {
  if (size < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": file is ", size, " bytes, too small for a safetensors header length (8 bytes)"));
  }
  // map_ is only ever read through a const pointer (ParseHeader, TensorInfo).
  std::unique_ptr<SafetensorsFile> file(
      new SafetensorsFile(std::move(name), /*fd=*/-1, const_cast<void*>(data), size));
  file->borrowed_ = true;
  if (absl::Status s = file->ParseHeader(); !s.ok()) return s;
  return file;
}

SafetensorsFile::SafetensorsFile(std::string path, int fd, void* map, size_t size)
    : path_(std::move(path)), fd_(fd), map_(map), size_(size) {}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr && !borrowed_) munmap(map_, size_);
  if (fd_ >= 0) close(fd_);
}

absl::Status SafetensorsFile::ParseHeader() {
  const unsigned char* bytes = static_cast<const unsigned char*>(map_);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  auto error = [this](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", parts...));
  };
  if (header_len < 2) {
    return error("header length ", header_len, " is too small for a JSON object");
  }
  if (header_len > kMaxHeaderBytes) {
    return error("header length ", header_len, " is implausible (limit ", kMaxHeaderBytes,
                 " bytes); not a safetensors file?");
  }
  if (header_len > size_ - 8) {
    return error("header length ", header_len, " runs past the end of the file (", size_,
                 " bytes, ", size_ - 8, " after the length field)");
  }

  // nlohmann keeps the last of duplicate keys silently; a duplicated tensor
  // name would hide one of two tensors, so the parse callback flags it.
  Json header;
  std::string duplicate;
  absl::flat_hash_set<std::string> seen;
  auto on_event = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::key && depth == 1 &&
        !seen.insert(parsed.get<std::string>()).second && duplicate.empty()) {
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  try {
    header = Json::parse(text, text + header_len, on_event);
  } catch (const Json::exception& e) {
    return error("header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) return error("header is a JSON ", header.type_name(), ", not an object");
  if (!duplicate.empty()) return error("tensor ", duplicate, ": listed twice in the header");

  const uint64_t data_size = size_ - 8 - header_len;
  const unsigned char* data = bytes + 8 + header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // per tensor, [begin, end)
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const Json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("__metadata__: expected an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m->is_string()) return error("__metadata__: key ", m.key(), ": expected a string");
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    auto tensor_error = [&](auto&&... parts) { return error("tensor ", name, ": ", parts...); };
    if (!entry.is_object()) return tensor_error("expected an object, found ", entry.type_name());
    for (auto f = entry.begin(); f != entry.end(); ++f) {
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets") {
        return tensor_error("unexpected field `", f.key(), "`");
      }
    }
    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return tensor_error("`dtype` missing or not a string");
    }
    std::optional<SafetensorsDType> dtype = ParseDType(dtype_it->get<std::string>());
    if (!dtype) {
      return tensor_error("unsupported dtype ", dtype_it->get<std::string>(),
                          " (supported: F32, F16, BF16, I32, I64)");
    }
    auto shape_it = entry.find("shape");
    std::optional<std::vector<uint64_t>> shape;
    if (shape_it != entry.end()) shape = ReadUints(*shape_it);
    if (!shape) return tensor_error("`shape` missing or not an array of non-negative integers");
    auto offsets_it = entry.find("data_offsets");
    std::optional<std::vector<uint64_t>> offsets;
    if (offsets_it != entry.end()) offsets = ReadUints(*offsets_it);
    if (!offsets || offsets->size() != 2) {
      return tensor_error("`data_offsets` missing or not two non-negative integers");
    }
    const uint64_t begin = (*offsets)[0], end = (*offsets)[1];
    if (begin > end) return tensor_error("data_offsets [", begin, ", ", end, "] are reversed");

    uint64_t needed = static_cast<uint64_t>(SafetensorsDTypeSize(*dtype));
    TensorInfo info;
    info.name = name;
    info.dtype = *dtype;
    for (uint64_t d : *shape) {
      if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(needed, d, &needed) ||
          needed > static_cast<uint64_t>(INT64_MAX)) {
        return tensor_error("shape ", shape_it->dump(), " overflows 64-bit sizes");
      }
      info.shape.push_back(static_cast<int64_t>(d));
    }
    if (end - begin != needed) {
      return tensor_error("data_offsets [", begin, ", ", end, "] hold ", end - begin,
                          " bytes, but shape ", FormatShape(info.shape), " x ",
                          SafetensorsDTypeName(*dtype), " needs ", needed);
    }
    if (end > data_size) {
      return tensor_error("data ends at byte ", 8 + header_len + end, " of the file, but the file",
                          " has only ", size_, " bytes (truncated?)");
    }
    info.data = data + begin;
    info.nbytes = static_cast<size_t>(needed);
    tensors_.push_back(std::move(info));
    ranges.emplace_back(begin, end);
  }

  // Sort by data offset and check neighbours: overlap means one write would
  // clobber another tensor, which no valid writer produces.
  std::vector<size_t> order(tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  const std::pair<uint64_t, uint64_t>* prev = nullptr;
  size_t prev_index = 0;
  for (size_t i : order) {
    if (ranges[i].first == ranges[i].second) continue;  // empty tensors occupy nothing
    if (prev != nullptr && ranges[i].first < prev->second) {
      return error("tensors ", tensors_[prev_index].name, " [", prev->first, ", ", prev->second,
                   "] and ", tensors_[i].name, " [", ranges[i].first, ", ", ranges[i].second,
                   "] overlap");
    }
    prev = &ranges[i];
    prev_index = i;
  }
  std::vector<TensorInfo> sorted;
  sorted.reserve(tensors_.size());
  for (size_t i : order) sorted.push_back(std::move(tensors_[i]));
  tensors_ = std::move(sorted);
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsFile::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const TensorInfo& t : tensors_) names.push_back(t.name);
  return names;
}

const TensorInfo* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace loopserve
