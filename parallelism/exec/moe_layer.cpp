#include "parallelism/exec/moe_layer.h"

#include <cctype>
#include <cmath>
#include <stdexcept>

#include "comms/collectives.h"

namespace rondo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<int64_t> to_vector(const torch::Tensor& counts) {
  const auto c = counts.to(torch::kCPU).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// The layer's output unchanged; its backward also gives the auxiliary loss the gradient `scale`.
struct AuxLossInjector : public torch::autograd::Function<AuxLossInjector> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& output,
                               const torch::Tensor& /*aux*/, double scale) {
    ctx->saved_data["scale"] = scale;
    return output.clone();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const double scale = ctx->saved_data["scale"].toDouble();
    return {grads[0], torch::full({}, scale, grads[0].options()), torch::Tensor()};
  }
};

}  // namespace

int64_t expert_capacity(int64_t tokens, const MoeOptions& o) {
  return static_cast<int64_t>(std::ceil(o.capacity_factor * static_cast<double>(tokens * o.topk) /
                                        static_cast<double>(o.num_experts)));
}

MoeRouting route_tokens(const torch::Tensor& logits, const MoeOptions& o) {
  const int64_t n = logits.size(0), experts = o.num_experts, k = o.topk;
  MoeRouting r;
  r.probs = torch::softmax(logits, -1);
  const auto [top_logits, top_experts] = torch::topk(logits, k, -1);
  const auto gates = torch::softmax(top_logits, -1);
  // Choice-major: every token's first choice, then every token's second, ...
  const auto chosen = top_experts.t().reshape({-1});
  const auto tokens = torch::arange(n, chosen.options()).repeat({k});
  const auto weights = gates.t().reshape({-1});
  // An assignment's place in its expert's queue.
  const auto place =
      (torch::one_hot(chosen, experts).cumsum(0) - 1).gather(1, chosen.unsqueeze(1)).squeeze(1);
  r.capacity = expert_capacity(n, o);
  r.routed = to_vector(torch::bincount(chosen, {}, experts));
  const auto kept = place.lt(r.capacity).nonzero().squeeze(1);
  const auto by_expert = std::get<1>(torch::sort(chosen.index_select(0, kept), /*stable=*/true, 0, false));
  const auto selected = kept.index_select(0, by_expert);
  r.expert = chosen.index_select(0, selected);
  r.token = tokens.index_select(0, selected);
  r.gate = weights.index_select(0, selected);
  r.kept = to_vector(torch::bincount(r.expert, {}, experts));
  return r;
}

torch::Tensor load_balancing_loss(const MoeRouting& r, int64_t topk) {
  const int64_t n = r.probs.size(0), experts = r.probs.size(1);
  auto routed = torch::tensor(r.routed, torch::kInt64).to(r.probs.options());
  const double norm = static_cast<double>(experts) / (static_cast<double>(n) * static_cast<double>(n * topk));
  return (r.probs.sum(0) * routed).sum() * norm;
}

void MoeRuntime::record(int64_t layer, const MoeRouting& routing, double aux_loss) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& l = load_[layer];
  if (l.routed.empty()) {
    l.routed.assign(routing.routed.size(), 0);
    l.kept.assign(routing.kept.size(), 0);
  }
  for (size_t e = 0; e < routing.routed.size(); ++e) {
    l.routed[e] += routing.routed[e];
    l.kept[e] += routing.kept[e];
  }
  l.aux_loss += aux_loss;
}

ExpertDegrees MoeRuntime::degrees(int64_t layer) const {
  const auto it = layer_degrees_.find(layer);
  return it == layer_degrees_.end() ? degrees_ : it->second;
}

std::map<int64_t, MoeRuntime::LayerLoad> MoeRuntime::take_load() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(load_, {});
}

MoeMlpImpl::MoeMlpImpl(const MoeOptions& options, int64_t layer, std::shared_ptr<MoeRuntime> runtime,
                       const ExpertFactory& make_expert)
    : options_(options),
      layer_(layer),
      runtime_(runtime ? std::move(runtime) : std::make_shared<MoeRuntime>()) {
  const auto& ep = runtime_->expert_parallel();
  if (options.num_experts < 1 || ep.size < 1 || options.num_experts % ep.size != 0) {
    throw std::invalid_argument("MoE layer " + std::to_string(layer) + ": " +
                                std::to_string(options.num_experts) + " experts over " +
                                std::to_string(ep.size) + " expert-parallel ranks");
  }
  router_ = register_module(
      "router",
      torch::nn::Linear(torch::nn::LinearOptions(options.hidden_size, options.num_experts).bias(false)));
  const int64_t local = options.num_experts / ep.size;
  first_expert_ = local * ep.index;
  for (int64_t e = first_expert_; e < first_expert_ + local; ++e)
    experts_.push_back(register_module("expert" + std::to_string(e), make_expert()));
}

torch::Tensor MoeMlpImpl::run_experts(const torch::Tensor& rows, const std::vector<int64_t>& counts) {
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (size_t l = 0; l < experts_.size(); ++l) {
    if (counts[l] > 0) out.push_back(experts_[l]->forward(rows.narrow(0, offset, counts[l])));
    offset += counts[l];
  }
  return out.empty() ? rows.narrow(0, 0, 0) * 0 : torch::cat(out);
}

torch::Tensor MoeMlpImpl::run_across_group(const torch::Tensor& rows, const std::vector<int64_t>& kept) {
  const auto& ep = runtime_->expert_parallel();
  ExpertExchange exchange{.members = ep.size, .local = local_experts(), .sent = kept, .received = {}};
  // Each member learns how many rows of each of its experts every member sends it.
  exchange.received.resize(kept.size());
  ep.group->alltoall(kept.data(), exchange.received.data(), static_cast<size_t>(exchange.local),
                     DType::kInt64);
  return run_expert_pipeline(
      rows, exchange, runtime_->degrees(layer_), *ep.group, *ep.combine,
      [this](int64_t l, const torch::Tensor& x) { return experts_[static_cast<size_t>(l)]->forward(x); },
      runtime_->backward_gap());
}

torch::Tensor MoeMlpImpl::forward(const torch::Tensor& x) {
  const auto flat = x.reshape({-1, options_.hidden_size});
  const auto routing = route_tokens(router_(flat), options_);
  const auto aux = load_balancing_loss(routing, options_.topk);
  const double aux_grad = options_.aux_loss_coeff * runtime_->loss_scale();
  runtime_->record(layer_, routing, aux.item<double>() * aux_grad);
  const auto rows = flat.index_select(0, routing.token);
  const auto& ep = runtime_->expert_parallel();
  const auto outputs = ep.size > 1 ? run_across_group(rows, routing.kept) : run_experts(rows, routing.kept);
  auto out = torch::zeros_like(flat)
                 .index_add(0, routing.token, outputs * routing.gate.unsqueeze(1))
                 .view(x.sizes());
  if (aux_grad > 0 && torch::GradMode::is_enabled()) out = AuxLossInjector::apply(out, aux, aux_grad);
  return out;
}

bool is_expert_parameter(const std::string& name) {
  for (size_t at = name.find(".expert"); at != std::string::npos; at = name.find(".expert", at + 1)) {
    const size_t digit = at + 7;
    if (digit < name.size() && std::isdigit(static_cast<unsigned char>(name[digit]))) return true;
  }
  return false;
}

}  // namespace rondo
