// Tests engine/compute_accounting: FLOP figures worked out by hand for tiny
// configs (dense and MoE parts, shared experts, IterAdaLN), full depth as the
// sum of its parts, and Done() agreeing with FullDepth() when nothing is
// skipped.
#include "engine/compute_accounting.h"

#include "gtest/gtest.h"

namespace loopserve {
namespace {

// D = 8, H = 2, Hkv = 1, d = 4 (q_dim 8, kv_dim 4), V = 10.
// Prelude: 1 dense layer (I = 12); recurrent: 2 MoE layers (E = 4, k = 2,
// moe I = 6, 1 shared expert) with IterAdaLN r = 2; coda: 1 dense; L = 3.
ModelConfig HandConfig() {
  ModelConfig c;
  c.vocab_size = 10;
  c.hidden_size = 8;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.num_prelude_layers = 1;
  c.num_recurrent_layers = 2;
  c.num_coda_layers = 1;
  c.num_loops = 3;
  c.prelude_ffn = FfnKind::kDense;
  c.recurrent_ffn = FfnKind::kMoe;
  c.coda_ffn = FfnKind::kDense;
  c.intermediate_size = 12;
  c.num_experts = 4;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 6;
  c.num_shared_experts = 1;
  c.iter_adaln_rank = 2;
  return c;
}

// Attention projections: 2*D*(q + 2 kv) + 2*q*D = 2*8*16 + 2*8*8 = 384;
// attention itself 4*q*keys = 32 keys.
TEST(FlopModel, DenseLayerByHand) {
  const FlopModel f(HandConfig());
  // + SwiGLU 6*D*I = 576.
  EXPECT_EQ(f.Layer(ModelPart::kPrelude, 1), 384 + 32 + 576);
  EXPECT_EQ(f.Layer(ModelPart::kPrelude, 5), 384 + 32 * 5 + 576);
  EXPECT_EQ(f.Layer(ModelPart::kCoda, 5), 384 + 32 * 5 + 576);
}

TEST(FlopModel, MoeLayerWithSharedExpertsAndIterAdaLnByHand) {
  const FlopModel f(HandConfig());
  // Router 2*D*E = 64; (k + shared) = 3 experts of 6*D*6 = 288 each = 864;
  // IterAdaLN 2*D*r + 2*r*6*D = 32 + 192 = 224.
  EXPECT_EQ(f.Layer(ModelPart::kRecurrent, 5), 384 + 32 * 5 + 64 + 864 + 224);
  EXPECT_EQ(f.Part(ModelPart::kRecurrent, 5), 2 * (384 + 32 * 5 + 64 + 864 + 224));

  ModelConfig no_adaln_no_shared = HandConfig();
  no_adaln_no_shared.iter_adaln_rank = 0;
  no_adaln_no_shared.num_shared_experts = 0;
  const FlopModel g(no_adaln_no_shared);
  EXPECT_EQ(g.Layer(ModelPart::kRecurrent, 5), 384 + 32 * 5 + 64 + 2 * 288);
  // IterAdaLN is a recurrent-only cost: it never shows up in other parts.
  EXPECT_EQ(g.Layer(ModelPart::kPrelude, 5), f.Layer(ModelPart::kPrelude, 5));
}

TEST(FlopModel, MoePreludeHasNoIterAdaLn) {
  ModelConfig c = HandConfig();
  c.prelude_ffn = FfnKind::kMoe;
  const FlopModel f(c);
  EXPECT_EQ(f.Layer(ModelPart::kPrelude, 5), 384 + 32 * 5 + 64 + 864);
}

TEST(FlopModel, ExitHeadGateAndPropagateFillByHand) {
  const FlopModel f(HandConfig());
  // Coda (1 dense layer) + LM head 2*D*V = 160.
  EXPECT_EQ(f.ExitHead(5), (384 + 32 * 5 + 576) + 160);
  EXPECT_EQ(f.GateEval(), 16);
  // K and V projections 2*D*2*kv_dim = 128, plus IterAdaLN 224.
  EXPECT_EQ(f.PropagateFill(), 128 + 224);
  ModelConfig c = HandConfig();
  c.iter_adaln_rank = 0;
  EXPECT_EQ(FlopModel(c).PropagateFill(), 128);
}

TEST(FlopModel, FullDepthByHand) {
  const FlopModel f(HandConfig());
  // keys = pos + 1 = 5: prelude 1120, 3 loops × 2 layers × 1696, head 1280.
  EXPECT_EQ(f.FullDepth(4), 1120 + 3 * 2 * 1696 + 1280);
  // Every part's attention grows by 32 FLOPs per key per layer:
  // (1 prelude + 3*2 recurrent + 1 coda) * 32 = 256 per position.
  EXPECT_EQ(f.FullDepth(5) - f.FullDepth(4), 256);
}

TEST(FlopModel, DoneByHand) {
  const FlopModel f(HandConfig());
  // One loop, two exit heads, one gate, four filled recurrent instances.
  EXPECT_EQ(f.Done(4, 1, 2, 1, 4), 1120 + 2 * 1696 + 2 * 1280 + 16 + 4 * 352);
  EXPECT_EQ(f.Done(4, 2, 1, 0, 0), 1120 + 2 * 2 * 1696 + 1280);
}

TEST(FlopModel, DoneAtFullDepthWithOneHeadEqualsFullDepth) {
  for (int r : {0, 2}) {
    for (FfnKind kind : {FfnKind::kDense, FfnKind::kMoe}) {
      ModelConfig c = HandConfig();
      c.iter_adaln_rank = r;
      c.recurrent_ffn = kind;
      const FlopModel f(c);
      for (int64_t pos : {0, 7, 100}) {
        EXPECT_EQ(f.Done(pos, c.num_loops, 1, 0, 0), f.FullDepth(pos)) << pos;
        // Each extra check costs something: more heads, gates or fills add.
        EXPECT_GT(f.Done(pos, c.num_loops, 2, 0, 0), f.FullDepth(pos));
        EXPECT_LT(f.Done(pos, c.num_loops - 1, 1, 0, 0), f.FullDepth(pos));
      }
    }
  }
}

TEST(FlopModel, VanillaModelIsOnePassAndOneHead) {
  ModelConfig c = HandConfig();
  c.num_loops = 1;
  c.iter_adaln_rank = 0;
  c.num_prelude_layers = 0;
  c.num_coda_layers = 0;
  const FlopModel f(c);
  EXPECT_EQ(f.ExitHead(3), 160);
  EXPECT_EQ(f.FullDepth(2), 2 * (384 + 32 * 3 + 64 + 864) + 160);
}

}  // namespace
}  // namespace loopserve
