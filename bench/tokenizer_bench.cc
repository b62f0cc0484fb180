// loopserve_tokenizer_bench: encode and decode throughput (MB/s of UTF-8 text)
// of engine/tokenizer on one text file, single-threaded. "cold" loads a fresh
// tokenizer per repetition (empty word cache: every distinct piece is merged);
// "warm" encodes again with the cache filled, as a long-running server does.
// Plain main; one line per figure and a final `RESULT {json}` line.
//
//   bible "Gen1:1-Rev22:21" > /tmp/kjv.txt
//   python3 tests/reference/bpe_tokenizer.py train --vocab 4096 /tmp/kjv.txt /tmp/tok.json
//   loopserve_tokenizer_bench --tokenizer /tmp/tok.json --text /tmp/kjv.txt --bytes 1000000
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/streaming_decoder.h"
#include "engine/tokenizer.h"

ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json");
ABSL_FLAG(std::string, text, "", "UTF-8 text file to encode");
ABSL_FLAG(int64_t, bytes, 1000000, "use the first N bytes of the text (0 = all)");
ABSL_FLAG(int, reps, 5, "timed repetitions (the median is reported)");

namespace loopserve {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double MedianSeconds(int reps, F&& f) {
  std::vector<double> s;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return Median(s);
}

int Run() {
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  std::ifstream file(absl::GetFlag(FLAGS_text), std::ios::binary);
  if (path.empty() || !file) {
    std::fprintf(stderr, "need --tokenizer and a readable --text\n");
    return 2;
  }
  std::stringstream ss;
  ss << file.rdbuf();
  std::string text = ss.str();
  const int64_t limit = absl::GetFlag(FLAGS_bytes);
  if (limit > 0 && static_cast<int64_t>(text.size()) > limit) {
    text.resize(limit);
    while (!text.empty() && (static_cast<uint8_t>(text.back()) & 0xC0) == 0x80) text.pop_back();
    if (!text.empty() && static_cast<uint8_t>(text.back()) >= 0xC0) text.pop_back();
  }
  const double mb = static_cast<double>(text.size()) / 1e6;
  const int reps = std::max(1, absl::GetFlag(FLAGS_reps));

  std::vector<int32_t> ids;
  std::vector<double> cold_s;
  for (int r = 0; r < reps; ++r) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> fresh = Tokenizer::Load(path);
    if (!fresh.ok()) {
      std::fprintf(stderr, "%s\n", fresh.status().ToString().c_str());
      return 1;
    }
    const auto t0 = Clock::now();
    ids = (*fresh)->Encode(text, false);
    cold_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  const double cold = Median(cold_s);
  absl::StatusOr<std::unique_ptr<Tokenizer>> loaded = Tokenizer::Load(path);
  const Tokenizer& tok = **loaded;
  const double load = MedianSeconds(reps, [&] { (void)Tokenizer::Load(path); });
  tok.Encode(text, false);  // fill the cache
  const double warm = MedianSeconds(reps, [&] { ids = tok.Encode(text, false); });
  std::string decoded;
  const double decode = MedianSeconds(reps, [&] { decoded = tok.Decode(ids); });
  const double stream = MedianSeconds(reps, [&] {
    StreamingDecoder d(tok);
    std::string out;
    for (int32_t id : ids) out += d.Add(id);
    out += d.Flush();
  });
  if (decoded != text) {
    std::fprintf(stderr, "decode(encode(text)) != text\n");
    return 1;
  }
  const double cold_mbs = mb / cold, warm_mbs = mb / warm;
  std::printf("text: %.3f MB, %zu tokens (%.2f bytes/token), vocab %lld\n", mb, ids.size(),
              static_cast<double>(text.size()) / ids.size(),
              static_cast<long long>(tok.vocab_size()));
  std::printf("load tokenizer.json:  %.1f ms\n", load * 1e3);
  std::printf("encode cold cache:    %.1f MB/s\n", cold_mbs);
  std::printf("encode warm cache:    %.1f MB/s (%.2f M tokens/s)\n", warm_mbs,
              ids.size() / warm / 1e6);
  std::printf("decode:               %.1f MB/s\n", mb / decode);
  std::printf("streaming decode:     %.1f MB/s\n", mb / stream);
  std::printf(
      "RESULT {\"bytes\": %zu, \"tokens\": %zu, \"encode_cold_mbs\": %.2f, "
      "\"encode_warm_mbs\": %.2f, \"decode_mbs\": %.2f, \"stream_decode_mbs\": %.2f, "
      "\"load_ms\": %.2f}\n",
      text.size(), ids.size(), cold_mbs, warm_mbs, mb / decode, mb / stream, load * 1e3);
  return 0;
}

}  // namespace
}  // namespace loopserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return loopserve::Run();
}
