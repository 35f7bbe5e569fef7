#include "worker/delayed_update.h"

#include <chrono>
#include <stdexcept>
#include <string>

namespace rondo {

namespace {

// An optimizer that holds no parameter groups of its own: the wrapped one does.
std::vector<torch::optim::OptimizerParamGroup> no_groups() { return {}; }

}  // namespace

DelayedUpdate::DelayedUpdate(torch::optim::Optimizer& optimizer, std::vector<torch::Tensor> master,
                             std::array<std::vector<torch::Tensor>, 2> versions, DelayCorrection correction)
    : torch::optim::Optimizer(no_groups(), std::make_unique<torch::optim::SGDOptions>(0.0)),
      optimizer_(optimizer),
      master_(std::move(master)),
      versions_(std::move(versions)),
      correction_(correction) {
  torch::NoGradGuard no_grad;
  for (const auto& v : versions_) {
    if (v.size() != master_.size())
      throw std::invalid_argument("DelayedUpdate: versions differ from the master");
  }
  for (size_t i = 0; i < master_.size(); ++i) {
    for (auto& v : versions_) v[i].copy_(master_[i]);  // W(-1) = W(0)
    update_.push_back(torch::empty_like(master_[i]));
    if (correction_ != DelayCorrection::kNone) previous_.push_back(torch::zeros_like(master_[i]));
  }
}

DelayedUpdate::~DelayedUpdate() {
  if (thread_.joinable()) thread_.join();
}

void DelayedUpdate::begin(int64_t step, std::function<void()> update, std::function<void()> written) {
  wait();
  thread_ = std::thread([this, step, update = std::move(update), written = std::move(written)] {
    try {
      apply(step, update);
      if (written) written();
    } catch (...) {
      error_ = std::current_exception();
    }
  });
}

void DelayedUpdate::wait() {
  if (thread_.joinable()) {
    const auto t0 = std::chrono::steady_clock::now();
    thread_.join();
    waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void DelayedUpdate::apply(int64_t step, const std::function<void()>& update) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < master_.size(); ++i) update_[i].copy_(master_[i]);
  update();
  auto& out = versions_[static_cast<size_t>(version(step))];
  for (size_t i = 0; i < master_.size(); ++i) {
    auto& u = update_[i];
    u.sub_(master_[i]);  // u_t = W(t) - (W(t) - u_t)
    switch (correction_) {
      case DelayCorrection::kNone:
        out[i].copy_(master_[i]);
        break;
      case DelayCorrection::kErrorFeedback:
        // W(t+1) = W(t) - u_t - (u_t - u_{t-1}); the first step has no u_{t-1} and takes u_t.
        if (has_previous_) master_[i].sub_(u - previous_[i]);
        previous_[i].copy_(u);
        out[i].copy_(master_[i]);
        break;
      case DelayCorrection::kWeightPrediction:
        previous_[i].copy_(u);
        torch::sub_out(out[i], master_[i], u);
        break;
      case DelayCorrection::kVelocityPrediction:
        previous_[i].mul_(kVelocityDecay).add_(u, 1.0 - kVelocityDecay);
        torch::sub_out(out[i], master_[i], previous_[i]);
        break;
    }
  }
  has_previous_ = true;
  last_update_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

torch::Tensor DelayedUpdate::step(LossClosure) {
  throw std::logic_error("DelayedUpdate::step: the delayed update runs through begin()");
}

void DelayedUpdate::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive inner;
  optimizer_.save(inner);
  archive.write("optimizer", inner);
  for (size_t i = 0; i < master_.size(); ++i) archive.write("master/" + std::to_string(i), master_[i]);
  for (size_t k = 0; k < versions_.size(); ++k) {
    for (size_t i = 0; i < master_.size(); ++i) {
      archive.write("version" + std::to_string(k) + "/" + std::to_string(i), versions_[k][i]);
    }
  }
  for (size_t i = 0; i < previous_.size(); ++i)
    archive.write("previous_update/" + std::to_string(i), previous_[i]);
  archive.write("has_previous_update", torch::tensor(has_previous_ ? 1 : 0));
}

void DelayedUpdate::load(torch::serialize::InputArchive& archive) {
  torch::NoGradGuard no_grad;
  torch::serialize::InputArchive inner;
  archive.read("optimizer", inner);
  optimizer_.load(inner);
  const auto read_into = [&](const std::string& key, torch::Tensor& into) {
    torch::Tensor t;
    archive.read(key, t);
    if (!t.sizes().equals(into.sizes())) {
      throw std::runtime_error("checkpoint entry " + key + " has another shape than this rank's parameter");
    }
    into.copy_(t);
  };
  for (size_t i = 0; i < master_.size(); ++i) read_into("master/" + std::to_string(i), master_[i]);
  for (size_t k = 0; k < versions_.size(); ++k) {
    for (size_t i = 0; i < master_.size(); ++i) {
      read_into("version" + std::to_string(k) + "/" + std::to_string(i), versions_[k][i]);
    }
  }
  for (size_t i = 0; i < previous_.size(); ++i)
    read_into("previous_update/" + std::to_string(i), previous_[i]);
  torch::Tensor flag;
  archive.read("has_previous_update", flag);
  has_previous_ = flag.item<int64_t>() != 0;
}

}  // namespace rondo
