#include "worker/flat_adamw.h"

#include <cmath>

#include "common/errors.h"

namespace rondo {

FlatAdamW::FlatAdamW(std::vector<torch::Tensor> params, torch::Tensor flat_grads,
                     torch::optim::AdamWOptions options, torch::Tensor flat_params, torch::Tensor moments,
                     std::vector<bool> trained)
    : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(params)},
                              std::make_unique<torch::optim::AdamWOptions>(options)),
      params_(std::move(params)) {
  int64_t n = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    n += params_[i].numel();
    decays_.push_back(params_[i].dim() >= 2 && (trained.empty() || trained.at(i)));
  }
  if (options.amsgrad()) throw Error("FlatAdamW: amsgrad is not supported");
  flat_params_ =
      flat_params.defined() ? flat_params.narrow(0, 0, n) : torch::empty({n}, flat_grads.options());
  flat_grads_ = flat_grads.narrow(0, 0, n);
  exp_avg_ =
      moments.defined() ? moments.select(0, 0).narrow(0, 0, n) : torch::zeros({n}, flat_params_.options());
  exp_avg_sq_ =
      moments.defined() ? moments.select(0, 1).narrow(0, 0, n) : torch::zeros({n}, flat_params_.options());
  bind_parameters();
}

void FlatAdamW::bind_parameters() {
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& p : params_) {
    auto slice = flat_params_.narrow(0, offset, p.numel()).view_as(p);
    if (slice.data_ptr() != p.data_ptr()) {
      slice.copy_(p);
      p.set_data(slice);
    }
    offset += p.numel();
  }
}

torch::Tensor FlatAdamW::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss = closure ? closure() : torch::Tensor();
  const auto& o = static_cast<const torch::optim::AdamWOptions&>(param_groups().front().options());
  const double lr = o.lr(), beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (p.data_ptr() != static_cast<char*>(flat_params_.data_ptr()) + offset * flat_params_.element_size()) {
      throw Error("FlatAdamW: parameter " + std::to_string(i) +
                  " no longer views the flat buffer; call bind_parameters()");
    }
    if (decays_[i] && o.weight_decay() != 0) p.mul_(1 - lr * o.weight_decay());
    offset += p.numel();
  }
  ++step_;
  const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(step_));
  const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(step_));
  exp_avg_.mul_(beta1).add_(flat_grads_, 1 - beta1);
  exp_avg_sq_.mul_(beta2).addcmul_(flat_grads_, flat_grads_, 1 - beta2);
  const auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bias_correction2)).add_(o.eps());
  flat_params_.addcdiv_(exp_avg_, denom, -lr / bias_correction1);
  return loss;
}

void FlatAdamW::save(torch::serialize::OutputArchive& archive) const {
  write_state(archive, {torch::tensor(step_, torch::kInt64), exp_avg_, exp_avg_sq_});
}

void FlatAdamW::write_state(torch::serialize::OutputArchive& archive, const State& state) {
  archive.write("flat_adamw_step", state.step);
  archive.write("flat_adamw_exp_avg", state.exp_avg);
  archive.write("flat_adamw_exp_avg_sq", state.exp_avg_sq);
}

bool FlatAdamW::read_state(torch::serialize::InputArchive& archive, State& state) {
  return archive.try_read("flat_adamw_step", state.step) &&
         archive.try_read("flat_adamw_exp_avg", state.exp_avg) &&
         archive.try_read("flat_adamw_exp_avg_sq", state.exp_avg_sq);
}

void FlatAdamW::load(torch::serialize::InputArchive& archive) {
  State state;
  if (!read_state(archive, state)) {
    throw Error(
        "the optimizer state is not rondo's flat AdamW (written by an older rondo?); "
        "start afresh with --set checkpoint.resume=false");
  }
  if (state.exp_avg.numel() != exp_avg_.numel() || state.exp_avg_sq.numel() != exp_avg_sq_.numel()) {
    throw Error("the optimizer state holds " + std::to_string(state.exp_avg.numel()) +
                " moments for a model of " + std::to_string(exp_avg_.numel()) + " parameters");
  }
  torch::NoGradGuard no_grad;
  step_ = state.step.item<int64_t>();
  exp_avg_.copy_(state.exp_avg);
  exp_avg_sq_.copy_(state.exp_avg_sq);
  bind_parameters();  // the model was loaded first: its parameters have new storage
}

}  // namespace rondo
