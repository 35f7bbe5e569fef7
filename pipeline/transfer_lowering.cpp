#include "pipeline/transfer_lowering.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace rondo {
namespace {

uint64_t action_key(const ComputeAction& a) {
  return (static_cast<uint64_t>(a.kind) << 58) | (static_cast<uint64_t>(a.stage) << 32) |
         static_cast<uint32_t>(a.microbatch);
}

StepKind transfer_kind(ComputeKind produced, bool send) {
  if (produced == ComputeKind::kF) return send ? StepKind::kSendF : StepKind::kRecvF;
  return send ? StepKind::kSendB : StepKind::kRecvB;
}

StepKind compute_kind(ComputeKind k) {
  switch (k) {
    case ComputeKind::kF:
      return StepKind::kF;
    case ComputeKind::kB:
      return StepKind::kB;
    case ComputeKind::kI:
      return StepKind::kI;
    case ComputeKind::kW:
      return StepKind::kW;
  }
  return StepKind::kF;
}

// The compute a step runs; nullopt for a transfer.
std::optional<ComputeKind> computed(StepKind k) {
  switch (k) {
    case StepKind::kF:
      return ComputeKind::kF;
    case StepKind::kB:
      return ComputeKind::kB;
    case StepKind::kI:
      return ComputeKind::kI;
    case StepKind::kW:
      return ComputeKind::kW;
    default:
      return std::nullopt;
  }
}

}  // namespace

std::vector<std::vector<PipelineStep>> lower_transfers(const PipelineSchedule& s) {
  std::unordered_map<uint64_t, int> rank_of;
  std::unordered_map<uint64_t, std::vector<int>> consumers;
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    for (const auto& a : s.ranks[r]) rank_of[action_key(a)] = static_cast<int>(r);
  }
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    for (const auto& a : s.ranks[r]) {
      for (const auto& in : action_inputs(s, a)) {
        auto& c = consumers[action_key(in)];
        if (std::find(c.begin(), c.end(), static_cast<int>(r)) == c.end()) c.push_back(static_cast<int>(r));
      }
    }
  }
  std::vector<std::vector<PipelineStep>> out(s.ranks.size());
  for (size_t r = 0; r < s.ranks.size(); ++r) {
    const int me = static_cast<int>(r);
    for (const auto& a : s.ranks[r]) {
      for (const auto& in : action_inputs(s, a)) {
        const int from = rank_of.at(action_key(in));
        if (from != me) out[r].push_back({transfer_kind(in.kind, false), in.stage, in.microbatch, from});
      }
      out[r].push_back({compute_kind(a.kind), a.stage, a.microbatch, -1});
      if (auto c = consumers.find(action_key(a)); c != consumers.end()) {
        for (int to : c->second) {
          if (to != me) out[r].push_back({transfer_kind(a.kind, true), a.stage, a.microbatch, to});
        }
      }
    }
  }
  return out;
}

std::vector<std::vector<PipelineStep>> lower_async_window(const PipelineSchedule& s) {
  if (!s.async || s.iterations < 3) {
    throw std::logic_error("lower_async_window: an asynchronous stream of three or more iterations, not " +
                           s.name + " with " + std::to_string(s.iterations));
  }
  const int m = s.microbatches;
  const auto stream = lower_transfers(s);
  std::vector<std::vector<PipelineStep>> out(stream.size());
  for (size_t r = 0; r < stream.size(); ++r) {
    const auto& steps = stream[r];
    // Where iteration k's steps end on this rank: after its last backward and that backward's sends.
    const auto end_of = [&](int k) {
      size_t end = 0;
      for (size_t i = 0; i < steps.size(); ++i) {
        const auto& st = steps[i];
        if (st.kind != StepKind::kB || st.microbatch / m != k) continue;
        end = i + 1;
        while (end < steps.size() && steps[end].kind == StepKind::kSendB &&
               steps[end].microbatch == st.microbatch && steps[end].stage == st.stage) {
          ++end;
        }
      }
      if (end == 0)
        throw std::logic_error("lower_async_window: rank " + std::to_string(r) + " has no backward");
      return end;
    };
    for (size_t i = end_of(0); i < end_of(1); ++i) {
      PipelineStep st = steps[i];
      const int k = st.microbatch / m;
      const bool forward =
          st.kind == StepKind::kF || st.kind == StepKind::kSendF || st.kind == StepKind::kRecvF;
      if (k == 0 || k > 2 || (k == 2 && !forward)) {
        throw std::logic_error("lower_async_window: rank " + std::to_string(r) +
                               "'s window holds microbatch " + std::to_string(st.microbatch) +
                               " of iteration " + std::to_string(k));
      }
      st.ahead = k == 2;
      st.microbatch %= m;
      out[r].push_back(st);
    }
  }
  return out;
}

std::vector<ComputeAction> string_windows(const std::vector<WindowAction>& window, int microbatches,
                                          int iterations) {
  std::vector<ComputeAction> out;
  const auto add = [&](const WindowAction& w, int step) {
    out.push_back({w.action.kind, w.action.stage, w.action.microbatch + step * microbatches});
  };
  for (const auto& w : window) {
    if (w.ahead) add(w, 0);
  }
  for (int k = 0; k < iterations; ++k) {
    for (const auto& w : window) {
      if (w.ahead && k + 1 == iterations) continue;
      add(w, k + (w.ahead ? 1 : 0));
    }
  }
  return out;
}

PipelineSchedule periodic_async_stream(const PipelineSchedule& stream, int iterations) {
  const auto windows = lower_async_window(stream);
  PipelineSchedule out = stream;
  out.iterations = iterations;
  for (size_t r = 0; r < windows.size(); ++r) {
    std::vector<WindowAction> window;
    for (const auto& st : windows[r]) {
      if (const auto kind = computed(st.kind)) window.push_back({{*kind, st.stage, st.microbatch}, st.ahead});
    }
    out.ranks[r] = string_windows(window, stream.microbatches, iterations);
  }
  return out;
}

}  // namespace rondo
