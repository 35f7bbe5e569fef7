#include "worker/gpt_family.h"

#include <cmath>

#include "worker/fused_ops.h"

namespace rondo {

namespace nn = torch::nn;

namespace {

class GptEmbedding : public EmbeddingPart {
 public:
  explicit GptEmbedding(const ModelShape& s)
      : token_embedding(register_module("token_embedding", nn::Embedding(s.vocab_size, s.hidden_size))),
        position_embedding(
            register_module("position_embedding", nn::Embedding(s.seq_length, s.hidden_size))) {}
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& positions) override {
    return token_embedding(tokens) + position_embedding(positions);
  }

 private:
  nn::Embedding token_embedding, position_embedding;
};

class GeluMlp : public ExpertMlp {
 public:
  explicit GeluMlp(const ModelShape& s)
      : fc(register_module("fc", DeferrableLinear(s.hidden_size, s.ffn_hidden_size, true, s.fused_kernels))),
        fc_out(register_module("fc_out",
                               DeferrableLinear(s.ffn_hidden_size, s.hidden_size, true, s.fused_kernels))),
        fused_kernels_(s.fused_kernels) {}
  torch::Tensor forward(const torch::Tensor& x) override { return fc_out(gelu(fc(x), fused_kernels_)); }

 private:
  DeferrableLinear fc, fc_out;
  bool fused_kernels_;
};

// A dense block's MLP is a GeluMlp ("block3.fc.weight"); an MoE block's is an MoeMlp of GeluMlp
// experts ("block0.router.weight", "block0.expert5.fc.weight").
class GptBlock : public BlockPart {
 public:
  GptBlock(const ModelShape& s, int64_t layer)
      : ln1(register_module("ln1", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})))),
        attn(register_module("attn", CausalSelfAttention(s.hidden_size, s.num_attention_heads,
                                                         s.selective_recompute, s.fused_kernels))),
        ln2(register_module("ln2", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})))) {
    if (s.is_moe_layer(layer)) {
      moe_mlp = MoeMlp(s.moe, layer, s.moe_runtime, [s] { return std::make_shared<GeluMlp>(s); });
      adopt_submodules(*this, *moe_mlp);
    } else {
      mlp = std::make_shared<GeluMlp>(s);
      adopt_submodules(*this, *mlp);
    }
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& /*positions: learned*/,
                        const torch::Tensor& bias, const LayerKeyValues* past, LayerKeyValues* present,
                        const ContextShare* share) override {
    auto h = x + attn(ln1(x), bias, past, present, share);
    const auto normed = ln2(h);
    return h + (mlp ? mlp->forward(normed) : moe_mlp->forward(normed));
  }
  MoeMlpImpl* moe() override { return moe_mlp ? moe_mlp.get() : nullptr; }

 private:
  nn::LayerNorm ln1;
  CausalSelfAttention attn;
  nn::LayerNorm ln2;
  std::shared_ptr<GeluMlp> mlp;
  MoeMlp moe_mlp{nullptr};
};

class GptHead : public HeadPart {
 public:
  explicit GptHead(const ModelShape& s)
      : final_norm(register_module("final_norm", nn::LayerNorm(nn::LayerNormOptions({s.hidden_size})))),
        lm_head(register_module(
            "lm_head", DeferrableLinear(s.hidden_size, s.vocab_size, /*bias=*/false, s.fused_kernels))) {}
  torch::Tensor forward(const torch::Tensor& x) override { return lm_head(final_norm(x)); }

 private:
  nn::LayerNorm final_norm;
  DeferrableLinear lm_head;
};

bool contains(const std::string& name, const char* part) { return name.find(part) != std::string::npos; }

void initialise(const std::string& name, torch::Tensor& p, const ModelShape& s, at::Generator& gen) {
  if (contains(name, "ln") || contains(name, "norm")) return;  // LayerNorm's own: weight 1, bias 0
  if (p.dim() == 1) {
    p.zero_();
  } else if (contains(name, "proj.weight") || contains(name, "fc_out.weight")) {
    p.normal_(0.0, 0.02 / std::sqrt(2.0 * static_cast<double>(s.num_layers)), gen);
  } else {
    p.normal_(0.0, 0.02, gen);
  }
}

}  // namespace

ModelFamily gpt_family() {
  return {
      .name = "gpt",
      .make_embedding = [](const ModelShape& s) { return std::make_shared<GptEmbedding>(s); },
      .make_block = [](const ModelShape& s, int64_t layer) { return std::make_shared<GptBlock>(s, layer); },
      .make_head = [](const ModelShape& s) { return std::make_shared<GptHead>(s); },
      .stacked_matrices = [](const std::string& name) { return name.ends_with("attn.qkv.weight") ? 3 : 1; },
      .initialise = initialise,
      .cost_dims =
          [](const ModelShape& s) {
            return GptDims{s.num_layers, s.hidden_size, s.ffn_hidden_size, s.vocab_size, s.seq_length};
          }};
}

}  // namespace rondo
