// PagedAttention against a naive contiguous attention in double, with
// scattered block tables, GQA, several sequences per call and the
// self_k/self_v probe.
#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/thread_pool.h"
#include "tests/unit/kernels/kernel_test_util.h"

namespace loopserve {
namespace {

using kernel_test::RandomFloats;

// One sequence: contiguous K/V (len, kv_dim) and the blocks holding them.
struct Sequence {
  std::vector<float> k, v;
  std::vector<int32_t> table;
};

struct Fixture {
  AttentionShape shape;
  int block_size = 0;
  int num_instances = 2;
  int instance = 1;
  std::vector<float> pool;
  PagedKvView view;
  std::vector<Sequence> seqs;
};

// Scatters `lengths` sequences over a shuffled set of blocks of a pool whose
// other contents are random noise (so reading a wrong row shows).
Fixture MakeFixture(std::mt19937& rng, int block_size, AttentionShape shape,
                    const std::vector<int>& lengths) {
  Fixture f;
  f.shape = shape;
  f.block_size = block_size;
  const int kv_dim = shape.num_kv_heads * shape.head_dim;
  int blocks_needed = 0;
  for (int len : lengths) blocks_needed += (len + block_size - 1) / block_size;
  const int num_blocks = blocks_needed * 2 + 3;
  f.pool = RandomFloats(rng, int64_t{num_blocks} * f.num_instances * 2 * block_size * kv_dim);
  f.view = PagedKvView{f.pool.data(), f.num_instances, block_size, kv_dim};
  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  size_t next = 0;
  for (int len : lengths) {
    Sequence s;
    for (int b = 0; b < (len + block_size - 1) / block_size; ++b)
      s.table.push_back(free_blocks[next++]);
    s.k = RandomFloats(rng, int64_t{len} * kv_dim);
    s.v = RandomFloats(rng, int64_t{len} * kv_dim);
    for (int p = 0; p < len; ++p) {
      std::copy_n(s.k.data() + p * kv_dim, kv_dim, f.view.RowAt(s.table.data(), f.instance, 0, p));
      std::copy_n(s.v.data() + p * kv_dim, kv_dim, f.view.RowAt(s.table.data(), f.instance, 1, p));
    }
    f.seqs.push_back(std::move(s));
  }
  return f;
}

// Naive causal attention of one query row over seq positions 0..pos.
std::vector<double> NaiveAttention(const AttentionShape& shape, const float* q, const Sequence& s,
                                   int pos) {
  const int d = shape.head_dim, kv_dim = shape.num_kv_heads * d;
  std::vector<double> out(static_cast<size_t>(shape.num_heads) * d, 0.0);
  for (int h = 0; h < shape.num_heads; ++h) {
    const int g = h / (shape.num_heads / shape.num_kv_heads);
    std::vector<double> score(pos + 1);
    for (int p = 0; p <= pos; ++p) {
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += double{q[h * d + c]} * s.k[p * kv_dim + g * d + c];
      score[p] = dot / std::sqrt(static_cast<double>(d));
    }
    const double mx = *std::max_element(score.begin(), score.end());
    double sum = 0;
    for (double& e : score) sum += (e = std::exp(e - mx));
    for (int p = 0; p <= pos; ++p) {
      for (int c = 0; c < d; ++c) out[h * d + c] += score[p] / sum * s.v[p * kv_dim + g * d + c];
    }
  }
  return out;
}

struct Query {
  int seq;
  int pos;
};

void CheckAgainstNaive(int block_size, AttentionShape shape, ThreadPool* pool,
                       bool portable = false) {
  std::mt19937 rng(block_size * 31 + shape.num_heads);
  const std::vector<int> lengths = {23, 1, 40};
  Fixture f = MakeFixture(rng, block_size, shape, lengths);
  // A prefill chunk of sequence 0, a first token and a decode row.
  const std::vector<Query> queries = {{0, 0}, {0, 5}, {0, 17}, {0, 22}, {1, 0}, {2, 39}, {2, 12}};
  const int64_t n = static_cast<int64_t>(queries.size());
  const int64_t qdim = int64_t{shape.num_heads} * shape.head_dim;
  std::vector<float> q = RandomFloats(rng, n * qdim, -2.0f, 2.0f);
  std::vector<int32_t> positions;
  std::vector<const int32_t*> tables;
  for (const Query& qr : queries) {
    positions.push_back(qr.pos);
    tables.push_back(f.seqs[qr.seq].table.data());
  }
  std::vector<float> out(n * qdim);
  (portable ? PagedAttentionPortable : PagedAttention)(f.view, f.instance, shape, q.data(), n,
                                                       positions.data(), tables.data(), nullptr,
                                                       nullptr, out.data(), pool);
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<double> ref =
        NaiveAttention(shape, q.data() + i * qdim, f.seqs[queries[i].seq], queries[i].pos);
    for (int64_t c = 0; c < qdim; ++c) {
      // f32 scores and softmax against double; outputs are O(1).
      ASSERT_NEAR(out[i * qdim + c], ref[c], 2e-5) << "row " << i << " elem " << c;
    }
  }
}

TEST(PagedAttentionTest, MatchesNaiveBlockSize4Gqa) { CheckAgainstNaive(4, {8, 2, 16}, nullptr); }

TEST(PagedAttentionTest, MatchesNaiveBlockSize16WithPool) {
  ThreadPool pool(3);
  CheckAgainstNaive(16, {4, 4, 32}, &pool);   // plain MHA
  CheckAgainstNaive(16, {12, 2, 40}, &pool);  // group of 6 (4 + 2 tiles)
  CheckAgainstNaive(16, {6, 1, 20}, &pool);   // MQA, odd head_dim
}

TEST(PagedAttentionTest, PortablePathMatchesNaive) {
  ThreadPool pool(2);
  CheckAgainstNaive(4, {8, 2, 16}, nullptr, /*portable=*/true);
  CheckAgainstNaive(16, {6, 3, 20}, &pool, /*portable=*/true);
}

TEST(PagedAttentionTest, SelfProbeEqualsWritingRowsFirst) {
  std::mt19937 rng(7);
  const AttentionShape shape{4, 2, 8};
  const int kv_dim = 16;
  Fixture f = MakeFixture(rng, 4, shape, {9, 14, 3});
  // One row per sequence (distinct sequences), each at its last position.
  const std::vector<int32_t> positions = {8, 13, 2};
  std::vector<const int32_t*> tables;
  for (const Sequence& s : f.seqs) tables.push_back(s.table.data());
  const int64_t n = 3, qdim = 32;
  std::vector<float> q = RandomFloats(rng, n * qdim);
  std::vector<float> self_k = RandomFloats(rng, n * kv_dim), self_v = RandomFloats(rng, n * kv_dim);

  std::vector<float> probed(n * qdim);
  ThreadPool pool(2);
  PagedAttention(f.view, f.instance, shape, q.data(), n, positions.data(), tables.data(),
                 self_k.data(), self_v.data(), probed.data(), &pool);
  // The probe must not write the pool.
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(f.view.RowAt(tables[i], f.instance, 0, positions[i])[0],
              f.seqs[i].k[positions[i] * kv_dim]);
  }
  for (int64_t i = 0; i < n; ++i) {
    std::copy_n(self_k.data() + i * kv_dim, kv_dim,
                f.view.RowAt(tables[i], f.instance, 0, positions[i]));
    std::copy_n(self_v.data() + i * kv_dim, kv_dim,
                f.view.RowAt(tables[i], f.instance, 1, positions[i]));
  }
  std::vector<float> written(n * qdim);
  PagedAttention(f.view, f.instance, shape, q.data(), n, positions.data(), tables.data(), nullptr,
                 nullptr, written.data(), nullptr);
  EXPECT_EQ(probed, written);  // same arithmetic, same order: bit-identical
}

TEST(PagedAttentionTest, ReadsOnlyItsInstance) {
  std::mt19937 rng(9);
  const AttentionShape shape{2, 1, 4};
  Fixture f = MakeFixture(rng, 4, shape, {6});
  const int32_t pos = 5;
  const int32_t* table = f.seqs[0].table.data();
  std::vector<float> q = RandomFloats(rng, 8), before(8), after(8);
  PagedAttention(f.view, f.instance, shape, q.data(), 1, &pos, &table, nullptr, nullptr,
                 before.data(), nullptr);
  for (int p = 0; p <= pos; ++p) f.view.RowAt(table, 0, 0, p)[0] += 100.0f;  // other instance
  PagedAttention(f.view, f.instance, shape, q.data(), 1, &pos, &table, nullptr, nullptr,
                 after.data(), nullptr);
  EXPECT_EQ(before, after);
}

}  // namespace
}  // namespace loopserve
