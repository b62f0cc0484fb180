// Fuzzes the safetensors header and tensor table (engine/safetensors): any
// bytes as a whole file image. Accepted files must describe tensors that lie
// inside the image, do not overlap and whose sizes match shape x dtype; every
// byte of every tensor is read so ASan sees any table entry that points
// outside the exact-size buffer.
#include <cstring>
#include <memory>
#include <vector>

#include "engine/safetensors.h"
#include "tests/fuzz/fuzz_fixtures.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using loopserve::SafetensorsFile;
  using loopserve::TensorInfo;
  // An exact-size heap copy: a read one byte past the image is an ASan report.
  std::unique_ptr<uint8_t[]> image(new uint8_t[size]);
  if (size > 0) std::memcpy(image.get(), data, size);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::FromBuffer("fuzz.safetensors", image.get(), size);
  if (!file.ok()) {
    LOOPSERVE_CHECK(!file.status().message().empty());
    return 0;
  }
  const uint8_t* const begin = image.get();
  const uint8_t* const end = begin + size;
  const uint8_t* prev_end = nullptr;
  unsigned checksum = 0;
  for (const TensorInfo& t : (*file)->tensors()) {
    LOOPSERVE_CHECK_EQ(t.nbytes, static_cast<size_t>(t.NumElements()) *
                                     loopserve::SafetensorsDTypeSize(t.dtype))
        << t.name;
    const uint8_t* p = static_cast<const uint8_t*>(t.data);
    LOOPSERVE_CHECK(p >= begin && p + t.nbytes <= end) << t.name;
    if (t.nbytes > 0) {
      // Sorted by offset and disjoint.
      LOOPSERVE_CHECK(prev_end == nullptr || p >= prev_end) << t.name << " overlaps";
      prev_end = p + t.nbytes;
    }
    for (size_t i = 0; i < t.nbytes; ++i) checksum += p[i];
    LOOPSERVE_CHECK((*file)->Find(t.name) == &t) << t.name;
    (void)loopserve::FormatShape(t.shape);
  }
  LOOPSERVE_CHECK_EQ((*file)->tensor_names().size(), (*file)->tensors().size());
  volatile unsigned sink = checksum;  // keep the reads
  (void)sink;
  return 0;
}
