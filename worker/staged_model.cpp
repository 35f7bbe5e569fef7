#include "worker/staged_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "worker/deferrable_linear.h"

namespace rondo {

namespace {

// FNV-1a: a stable hash of a parameter's name (std::hash may differ between builds).
const std::string kTiedMatrix = "token_embedding.weight";

uint64_t name_hash(const std::string& name) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace

StagedModelImpl::StagedModelImpl(const ModelFamily& family, const ModelShape& s, uint64_t seed)
    : StagedModelImpl(family, s, {StageLayers{0, 0, static_cast<int>(s.num_layers), true, true}}, seed) {}

StagedModelImpl::StagedModelImpl(const ModelFamily& family, const ModelShape& s,
                                 std::vector<StageLayers> stages, uint64_t seed)
    : shape_(s), dims_(family.cost_dims(s)), stages_(std::move(stages)) {
  std::sort(stages_.begin(), stages_.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
  for (const auto& st : stages_) {
    if (st.first_layer < 0 || st.num_layers < 0 || st.first_layer + st.num_layers > s.num_layers) {
      throw std::invalid_argument("stage " + std::to_string(st.index) + " holds layers outside the model's " +
                                  std::to_string(s.num_layers));
    }
    if (st.has_embedding) {
      embedding_ = family.make_embedding(s);
      adopt_submodules(*this, *embedding_);
    }
    for (int64_t l = st.first_layer; l < st.first_layer + st.num_layers; ++l) {
      blocks_.emplace(l, register_module("block" + std::to_string(l), family.make_block(s, l)));
    }
    if (st.has_lm_head) {
      head_ = family.make_head(s);
      adopt_submodules(*this, *head_);
    }
  }

  tie_embeddings();
  add_lora_adapters();
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    // Tied embeddings: a last pipeline stage's copy of the matrix starts as the embedding does.
    const auto& name = s.tie_embeddings && item.key() == "lm_head.weight" ? kTiedMatrix : item.key();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ name_hash(name));
    if (!initialise_lora(name, item.value(), gen)) family.initialise(name, item.value(), s, gen);
  }
  // LoRA: only the adapters train.
  if (s.lora.rank > 0) {
    for (auto& item : named_parameters()) item.value().requires_grad_(is_lora_parameter(item.key()));
  }
}

void StagedModelImpl::tie_embeddings() {
  if (!shape_.tie_embeddings || !embedding_ || !head_) return;
  torch::Tensor matrix;
  DeferrableLinearImpl* head = nullptr;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* e = dynamic_cast<torch::nn::EmbeddingImpl*>(item.value().get());
        e && item.key() == "token_embedding")
      matrix = e->weight;
    if (item.key() == "lm_head") head = dynamic_cast<DeferrableLinearImpl*>(item.value().get());
  }
  if (!matrix.defined() || !head)
    throw std::invalid_argument("model.tie_embeddings: the family has no token_embedding and lm_head to tie");
  head->share_weight(matrix);
}

bool is_lora_parameter(const std::string& name) {
  return name.ends_with(".lora_a") || name.ends_with(".lora_b");
}

void StagedModelImpl::add_lora_adapters() {
  const auto& lora = shape_.lora;
  if (lora.rank <= 0) return;
  const auto wanted = [&](const std::string& name) {
    const auto last = name.substr(name.rfind('.') + 1);
    for (const auto& t : lora.targets) {
      if (t == last || (t == "all-linear" && name.starts_with("block"))) return true;
    }
    return false;
  };
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    auto* linear = dynamic_cast<DeferrableLinearImpl*>(item.value().get());
    if (linear && wanted(item.key()))
      linear->add_lora(lora.rank, lora.alpha / static_cast<double>(lora.rank));
  }
}

bool StagedModelImpl::initialise_lora(const std::string& name, torch::Tensor& p, at::Generator& gen) const {
  if (name.ends_with(".lora_b")) {
    p.zero_();  // the adapted model starts as the base model
    return true;
  }
  if (!name.ends_with(".lora_a")) return false;
  // As PEFT initialises A: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in)).
  const double bound = 1.0 / std::sqrt(static_cast<double>(p.size(1)));
  p.uniform_(-bound, bound, gen);
  return true;
}

const StageLayers& StagedModelImpl::stage(int index) const {
  for (const auto& st : stages_) {
    if (st.index == index) return st;
  }
  throw std::out_of_range("this rank's model holds no stage " + std::to_string(index));
}

torch::Tensor StagedModelImpl::forward_stage(int index, const torch::Tensor& input,
                                             const torch::Tensor& documents, const ContextParallel* context) {
  if (context) {
    // Positions from the whole rows, then this rank's share of them.
    const auto& held = context->held;
    const ContextShare share{held, documents.defined() ? documents.index_select(1, held) : torch::Tensor(),
                             context->group};
    const auto positions = documents.defined() ? document_positions(documents).index_select(1, held) : held;
    return run(index, input, positions, {}, {}, nullptr, &share);
  }
  const auto& st = stage(index);
  const int64_t t = input.size(1);
  torch::Tensor bias;
  if (documents.defined() && st.num_layers > 0) bias = causal_bias(0, t, documents, input.device());
  const auto positions =
      documents.defined()
          ? document_positions(documents)
          : torch::arange(t, torch::TensorOptions().dtype(torch::kLong).device(input.device()));
  return run(index, input, positions, bias, {}, nullptr, nullptr);
}

torch::Tensor StagedModelImpl::forward_chunk(int index, const torch::Tensor& input,
                                             const torch::Tensor& positions, const torch::Tensor& bias,
                                             const std::vector<LayerKeyValues>& past,
                                             std::vector<LayerKeyValues>* present) {
  return run(index, input, positions, bias, past, present, nullptr);
}

torch::Tensor StagedModelImpl::run(int index, const torch::Tensor& input, const torch::Tensor& positions,
                                   const torch::Tensor& bias, const std::vector<LayerKeyValues>& past,
                                   std::vector<LayerKeyValues>* present, const ContextShare* share) {
  const auto& st = stage(index);
  if (!past.empty() && static_cast<int64_t>(past.size()) != st.num_layers) {
    throw std::invalid_argument("forward_chunk: " + std::to_string(past.size()) +
                                " layers of past keys for stage " + std::to_string(index) + " of " +
                                std::to_string(st.num_layers) + " layers");
  }
  if (present) present->assign(static_cast<size_t>(st.num_layers), {});
  torch::Tensor x = input;
  if (st.has_embedding) x = embedding_->forward(input, positions);
  for (int64_t i = 0; i < st.num_layers; ++i) {
    const auto slot = static_cast<size_t>(i);
    x = blocks_.at(st.first_layer + i)
            ->forward(x, positions, bias, past.empty() ? nullptr : &past[slot],
                      present ? &(*present)[slot] : nullptr, share);
  }
  if (st.has_lm_head) x = head_->forward(x);
  return x;
}

torch::Tensor StagedModelImpl::loss(const torch::Tensor& logits, const torch::Tensor& targets,
                                    int64_t divisor) const {
  namespace F = torch::nn::functional;
  if (divisor <= 0) return F::cross_entropy(logits.view({-1, shape_.vocab_size}), targets.reshape({-1}));
  return F::cross_entropy(logits.view({-1, shape_.vocab_size}), targets.reshape({-1}),
                          F::CrossEntropyFuncOptions().reduction(torch::kSum)) /
         static_cast<double>(divisor);
}

std::vector<torch::Tensor> StagedModelImpl::stage_parameters(int index) const {
  const auto& st = stage(index);
  std::vector<torch::Tensor> out;
  const auto add = [&](const torch::nn::Module& m) {
    for (const auto& p : m.parameters()) out.push_back(p);
  };
  if (st.has_embedding) add(*embedding_);
  for (int64_t l = st.first_layer; l < st.first_layer + st.num_layers; ++l) add(*blocks_.at(l));
  if (st.has_lm_head) add(*head_);
  return out;
}

std::map<int64_t, MoeMlpImpl*> StagedModelImpl::moe_layers() const {
  std::map<int64_t, MoeMlpImpl*> out;
  for (const auto& [layer, block] : blocks_) {
    if (auto* moe = block->moe()) out[layer] = moe;
  }
  return out;
}

}  // namespace rondo
