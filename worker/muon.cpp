#include "worker/muon.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace rondo {

torch::Tensor newton_schulz(const torch::Tensor& g, int steps) {
  if (g.dim() != 2) throw std::invalid_argument("newton_schulz needs a matrix");
  const bool tall = g.size(0) > g.size(1);
  auto x = tall ? g.t() : g;
  x = x / (x.norm() + 1e-7);
  for (int i = 0; i < steps; ++i) {
    const auto a = torch::mm(x, x.t());
    const auto b = kMuonB * a + kMuonC * torch::mm(a, a);
    x = kMuonA * x + torch::mm(b, x);
  }
  return tall ? x.t().contiguous() : x;
}

torch::Tensor muon_update(const torch::Tensor& u, int stacked) {
  if (stacked < 1 || u.size(0) % stacked != 0) {
    throw std::invalid_argument("Muon: " + std::to_string(u.size(0)) + " rows do not stack " +
                                std::to_string(stacked) + " matrices");
  }
  const int64_t rows = u.size(0) / stacked, cols = u.size(1);
  const double scale = kMuonRmsScale * std::sqrt(static_cast<double>(std::max(rows, cols)));
  if (stacked == 1) return newton_schulz(u) * scale;
  std::vector<torch::Tensor> parts;
  for (const auto& part : u.split(rows, 0)) parts.push_back(newton_schulz(part) * scale);
  return torch::cat(parts, 0);
}

Muon::Muon(std::vector<torch::Tensor> matrices, std::vector<torch::Tensor> others,
           torch::optim::AdamWOptions adamw, std::vector<int> stacked)
    : torch::optim::Optimizer({torch::optim::OptimizerParamGroup([&] {
                                auto all = matrices;
                                all.insert(all.end(), others.begin(), others.end());
                                return all;
                              }())},
                              std::make_unique<torch::optim::AdamWOptions>(adamw)),
      matrices_(std::move(matrices)),
      others_(std::move(others)),
      stacked_(std::move(stacked)),
      beta1_(std::get<0>(adamw.betas())),
      beta2_(std::get<1>(adamw.betas())),
      eps_(adamw.eps()),
      weight_decay_(adamw.weight_decay()) {
  for (const auto& m : matrices_) {
    if (m.dim() != 2)
      throw std::invalid_argument("Muon trains 2-D matrices; got " + std::to_string(m.dim()) + "-D");
    momentum_.push_back(torch::zeros_like(m));
  }
  if (stacked_.empty()) stacked_.assign(matrices_.size(), 1);
  if (stacked_.size() != matrices_.size())
    throw std::invalid_argument("Muon: a stacking count per matrix, got " + std::to_string(stacked_.size()));
  for (const auto& p : others_) {
    exp_avg_.push_back(torch::zeros_like(p));
    exp_avg_sq_.push_back(torch::zeros_like(p));
  }
}

torch::Tensor Muon::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = closure ? closure() : torch::Tensor();
  const double lr = static_cast<const torch::optim::AdamWOptions&>(param_groups().front().options()).lr();
  ++step_;
  for (size_t i = 0; i < matrices_.size(); ++i) {
    auto& w = matrices_[i];
    const auto& g = w.grad();
    if (!g.defined()) continue;
    auto& buf = momentum_[i];
    buf.mul_(kMuonMomentum).add_(g);
    const auto update = muon_update(g + kMuonMomentum * buf, stacked_[i]);
    w.mul_(1.0 - lr * weight_decay_).add_(update, -lr);
  }
  // AdamW, as torch::optim::AdamW (bias-corrected moments, decoupled decay); like FlatAdamW, only
  // parameters of two or more dimensions decay (embeddings and the LM head, not norms and biases).
  const double correction1 = 1.0 - std::pow(beta1_, static_cast<double>(step_));
  const double correction2 = 1.0 - std::pow(beta2_, static_cast<double>(step_));
  for (size_t i = 0; i < others_.size(); ++i) {
    auto& p = others_[i];
    const auto& g = p.grad();
    if (!g.defined()) continue;
    if (p.dim() >= 2) p.mul_(1.0 - lr * weight_decay_);
    exp_avg_[i].mul_(beta1_).add_(g, 1.0 - beta1_);
    exp_avg_sq_[i].mul_(beta2_).addcmul_(g, g, 1.0 - beta2_);
    const auto denom = (exp_avg_sq_[i].sqrt() / std::sqrt(correction2)).add_(eps_);
    p.addcdiv_(exp_avg_[i], denom, -lr / correction1);
  }
  return loss;
}

void Muon::save(torch::serialize::OutputArchive& archive) const {
  archive.write("muon_step", torch::tensor(step_, torch::kInt64));
  for (size_t i = 0; i < momentum_.size(); ++i)
    archive.write("muon_momentum_" + std::to_string(i), momentum_[i]);
  for (size_t i = 0; i < exp_avg_.size(); ++i) {
    archive.write("muon_adamw_exp_avg_" + std::to_string(i), exp_avg_[i]);
    archive.write("muon_adamw_exp_avg_sq_" + std::to_string(i), exp_avg_sq_[i]);
  }
}

void Muon::load(torch::serialize::InputArchive& archive) {
  torch::Tensor step;
  const auto read = [&](const std::string& key, torch::Tensor& into) {
    torch::Tensor t;
    if (!archive.try_read(key, t) || t.sizes() != into.sizes()) {
      throw std::runtime_error("Muon optimizer state: " + key + " missing or of another shape");
    }
    into.copy_(t);
  };
  if (!archive.try_read("muon_step", step))
    throw std::runtime_error("Muon optimizer state: muon_step missing");
  for (size_t i = 0; i < momentum_.size(); ++i) read("muon_momentum_" + std::to_string(i), momentum_[i]);
  for (size_t i = 0; i < exp_avg_.size(); ++i) {
    read("muon_adamw_exp_avg_" + std::to_string(i), exp_avg_[i]);
    read("muon_adamw_exp_avg_sq_" + std::to_string(i), exp_avg_sq_[i]);
  }
  step_ = step.item<int64_t>();
}

}  // namespace rondo
