#include "worker/llama_family.h"

#include <cmath>

namespace rondo {

namespace nn = torch::nn;

namespace {

class TokenEmbedding : public EmbeddingPart {
 public:
  explicit TokenEmbedding(const ModelShape& s)
      : token_embedding(register_module("token_embedding", nn::Embedding(s.vocab_size, s.hidden_size))) {}
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& /*positions: rotary*/) override {
    return token_embedding(tokens);
  }

 private:
  nn::Embedding token_embedding;
};

class SwiGluMlp : public ExpertMlp {
 public:
  explicit SwiGluMlp(const ModelShape& s)
      : gate(register_module("gate",
                             DeferrableLinear(s.hidden_size, s.ffn_hidden_size, false, s.fused_kernels))),
        up(register_module("up", DeferrableLinear(s.hidden_size, s.ffn_hidden_size, false, s.fused_kernels))),
        down(register_module("down",
                             DeferrableLinear(s.ffn_hidden_size, s.hidden_size, false, s.fused_kernels))) {}
  torch::Tensor forward(const torch::Tensor& x) override { return down(torch::silu(gate(x)) * up(x)); }

 private:
  DeferrableLinear gate, up, down;
};

// What sets the Llama-style families apart.
struct LlamaVariant {
  bool qk_norm = false;   // qwen3: RMSNorm over each head's queries and keys
  bool qkv_bias = false;  // qwen2: biases on the query, key and value projections
};

AttentionOptions attention_options(const ModelShape& s, LlamaVariant v) {
  return {.hidden_size = s.hidden_size,
          .num_heads = s.num_attention_heads,
          .num_query_groups = s.num_query_groups,
          .head_size = s.head_size,
          .qkv_bias = v.qkv_bias,
          .output_bias = false,
          .rotary = true,
          .rotary_spec = s.rotary,
          .qk_norm = v.qk_norm,
          .norm_epsilon = s.norm_epsilon,
          .selective_recompute = s.selective_recompute,
          .fused_kernels = s.fused_kernels};
}

// A dense block's MLP is a SwiGluMlp ("block3.gate.weight"); an MoE block's an MoeMlp of them
// ("block0.router.weight", "block0.expert5.gate.weight").
class LlamaBlock : public BlockPart {
 public:
  LlamaBlock(const ModelShape& s, int64_t layer, LlamaVariant v)
      : norm1(register_module("norm1", RmsNorm(s.hidden_size, s.norm_epsilon))),
        attn(register_module("attn", CausalSelfAttention(attention_options(s, v)))),
        norm2(register_module("norm2", RmsNorm(s.hidden_size, s.norm_epsilon))) {
    if (s.is_moe_layer(layer)) {
      moe_mlp = MoeMlp(s.moe, layer, s.moe_runtime, [s] { return std::make_shared<SwiGluMlp>(s); });
      adopt_submodules(*this, *moe_mlp);
    } else {
      mlp = std::make_shared<SwiGluMlp>(s);
      adopt_submodules(*this, *mlp);
    }
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& positions, const torch::Tensor& bias,
                        const LayerKeyValues* past, LayerKeyValues* present,
                        const ContextShare* share) override {
    auto h = x + attn(norm1(x), bias, past, present, share, positions);
    const auto normed = norm2(h);
    return h + (mlp ? mlp->forward(normed) : moe_mlp->forward(normed));
  }
  MoeMlpImpl* moe() override { return moe_mlp ? moe_mlp.get() : nullptr; }

 private:
  RmsNorm norm1;
  CausalSelfAttention attn;
  RmsNorm norm2;
  std::shared_ptr<SwiGluMlp> mlp;
  MoeMlp moe_mlp{nullptr};
};

class LlamaHead : public HeadPart {
 public:
  explicit LlamaHead(const ModelShape& s)
      : final_norm(register_module("final_norm", RmsNorm(s.hidden_size, s.norm_epsilon))),
        lm_head(register_module(
            "lm_head", DeferrableLinear(s.hidden_size, s.vocab_size, /*bias=*/false, s.fused_kernels))) {}
  torch::Tensor forward(const torch::Tensor& x) override { return lm_head(final_norm(x)); }

 private:
  RmsNorm final_norm;
  DeferrableLinear lm_head;
};

// Norms keep their ones, biases start at zero; matrices N(0, 0.02), the two that write into the residual
// stream (the attention's output projection, the MLP's down projection) scaled by 1 / sqrt(2 layers).
void initialise(const std::string& name, torch::Tensor& p, const ModelShape& s, at::Generator& gen) {
  if (name.find("norm") != std::string::npos) return;
  if (name.ends_with(".bias")) {  // qwen2's on queries, keys and values
    p.zero_();
    return;
  }
  if (name.ends_with("proj.weight") || name.ends_with("down.weight")) {
    p.normal_(0.0, 0.02 / std::sqrt(2.0 * static_cast<double>(s.num_layers)), gen);
  } else {
    p.normal_(0.0, 0.02, gen);
  }
}

ModelFamily llama_style(std::string name, LlamaVariant v) {
  return {.name = std::move(name),
          .make_embedding = [](const ModelShape& s) { return std::make_shared<TokenEmbedding>(s); },
          .make_block = [v](const ModelShape& s,
                            int64_t layer) { return std::make_shared<LlamaBlock>(s, layer, v); },
          .make_head = [](const ModelShape& s) { return std::make_shared<LlamaHead>(s); },
          // With grouped-query attention the fused QKV stacks matrices of unequal heights: Muon
          // orthogonalises it whole.
          .stacked_matrices = [](const std::string&) { return 1; },
          .initialise = initialise,
          .cost_dims =
              [v](const ModelShape& s) {
                GptDims d{s.num_layers, s.hidden_size, s.ffn_hidden_size, s.vocab_size, s.seq_length};
                d.llama_style = true;
                d.qk_norm = v.qk_norm;
                d.qkv_bias = v.qkv_bias;
                d.num_attention_heads = s.num_attention_heads;
                d.num_query_groups = s.num_query_groups > 0 ? s.num_query_groups : s.num_attention_heads;
                d.head_size = s.head_size;
                return d;
              }};
}

}  // namespace

ModelFamily llama_family() { return llama_style("llama", {}); }
ModelFamily qwen2_family() { return llama_style("qwen2", {.qkv_bias = true}); }
ModelFamily qwen3_family() { return llama_style("qwen3", {.qk_norm = true}); }

}  // namespace rondo
