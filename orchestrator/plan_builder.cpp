#include "orchestrator/plan_builder.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "common/errors.h"
#include "comms/traffic_planner.h"
#include "data/chunk_plan.h"
#include "data/document_split.h"
#include "data/token_corpus.h"
#include "orchestrator/fabric.h"
#include "orchestrator/hdp_report.h"
#include "orchestrator/plan_views.h"
#include "orchestrator/step_prediction.h"
#include "parallelism/device_mesh.h"
#include "parallelism/model_parameters.h"
#include "pipeline/gantt_svg.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/plan_actions.h"
#include "pipeline/roundpipe_schedule.h"
#include "pipeline/transfer_lowering.h"
#include "proto/plan_names.h"

namespace rondo {

namespace {

// A config name's plan enum; validate() has accepted the name, so a missing value means the
// enum and the accepted names disagree.
template <typename Enum>
Enum plan_enum(std::optional<Enum> value, const std::string& key, const std::string& name) {
  if (!value) throw ConfigError(key, "'" + name + "' has no value in the plan format");
  return *value;
}

plan::GroupKind to_group_kind(MeshDim dim) {
  switch (dim) {
    case MeshDim::kTp:
      return plan::GROUP_TP;
    case MeshDim::kCp:
      return plan::GROUP_CP;
    case MeshDim::kEp:
      return plan::GROUP_EP;
    case MeshDim::kDp:
      return plan::GROUP_DP;
    case MeshDim::kPp:
      return plan::GROUP_PP;
    case MeshDim::kDpCp:
      return plan::GROUP_DP_CP;
    case MeshDim::kExpertDp:
      return plan::GROUP_EXPERT_DP;
  }
  return plan::GROUP_UNSPECIFIED;
}

// How the config's schedule cuts the model: the forward stages, RoundPipe's own backward stages
// (empty otherwise), and for RoundPipe the per-"model layer" (embedding, each block, LM head)
// forward seconds its partitions were cut from.
struct ModelStages {
  std::vector<StageLayers> forward, backward;
  std::vector<double> layer_seconds;
};

ModelStages roundpipe_layout(const Config& config, int pp) {
  const int blocks = static_cast<int>(config.model.num_layers);
  ModelStages out;
  out.layer_seconds = predicted_stage_costs(config, model_atoms(blocks)).f;
  const auto part = roundpipe_partition(out.layer_seconds, pp);
  for (size_t s = 0; s + 1 < part.forward_bounds.size(); ++s) {
    out.forward.push_back(
        stage_of_atoms(static_cast<int>(s), part.forward_bounds[s], part.forward_bounds[s + 1], blocks));
  }
  for (size_t k = 0; k + 1 < part.backward_bounds.size(); ++k) {
    out.backward.push_back(
        stage_of_atoms(static_cast<int>(k), part.backward_bounds[k + 1], part.backward_bounds[k], blocks));
  }
  return out;
}

// Chunked training with pipeline parallelism: the chunks of a row that is one whole sequence, cut
// by the chunk planner -- the plan's representative step (each step the worker runs its own
// schedule over its chunks). Empty without chunking or pipeline parallelism.
std::vector<int64_t> pipeline_chunk_lengths(const Config& config, int pp) {
  if (pp == 1 || config.data.chunk_size == 0) return {};
  const auto& m = config.model;
  const auto plan =
      plan_chunks({m.seq_length}, config.data.chunk_size, chunk_balance_from_name(config.data.chunk_balance),
                  {m.num_layers, m.hidden_size, m.ffn_hidden_size, m.vocab_size, m.seq_length});
  std::vector<int64_t> out;
  for (const auto& chunk : plan.chunks) out.push_back(chunk.tokens());
  return out;
}

// Iterations of an asynchronous stream the plan's prediction simulates (steady state in between).
constexpr int kAsyncStreamIterations = 4;

// The pipeline schedule of the config, placed with the predicted per-stage costs. With one
// pipeline rank every schedule is plain gradient accumulation (F B per microbatch), which the
// worker executes. With `chunks` > 1 (pipeline_chunk_lengths) each microbatch is that many
// dependent chunks, the schedule's microbatches: the step in which every row is one sequence.
PipelineSchedule schedule_for(const Config& config, int pp, int microbatches, const ModelStages& stages,
                              int chunks) {
  const std::string& name = config.pipeline.schedule;
  if (chunks > 1) {
    ScheduleRequest req{name, pp, microbatches * chunks, 1, {}};
    req.chunk_groups = ChunkGroups::uniform(microbatches * chunks, chunks);
    return generate_schedule(req);
  }
  if (config.pipeline.async && (name != "roundpipe" || pp == 1)) {
    // PipeDream-2BW: an endless 1F1B stream, of which the plan runs one steady-state window per
    // step; four iterations give the simulator a steady state between fill and drain.
    if (microbatches < pp - 1) {
      throw ConfigError("training.global_batch_size",
                        "pipeline.async needs at least pp - 1 = " + std::to_string(pp - 1) +
                            " microbatches per step (a rank's warm-up forwards of the next step fit in one "
                            "step), got " +
                            std::to_string(microbatches));
    }
    ScheduleRequest req{"1f1b", pp, microbatches, 1, predicted_stage_costs(config, stages.forward)};
    req.iterations = kAsyncStreamIterations;
    req.async = true;
    return periodic_async_stream(generate_schedule(req), kAsyncStreamIterations);
  }
  if (pp == 1) {
    auto s = generate_schedule({"1f1b", 1, microbatches, 1, {}});
    s.name = name;
    return s;
  }
  const int vpp = static_cast<int>(config.parallel.virtual_pipeline_model_parallel_size);
  if (name == "roundpipe") {
    ScheduleRequest req{name, pp, microbatches, 1, predicted_stage_costs(config, {})};
    if (config.pipeline.async) {
      // RoundPipe's asynchronous mode: the next iteration's tasks need no update; one step of the
      // stream's steady state is the plan's.
      req.iterations = kAsyncStreamIterations;
      req.async = true;
    }
    req.layer_costs = stages.layer_seconds;
    req.roundpipe_dispatch = config.pipeline.roundpipe_dispatch;
    // A device's share (1/tp) of a stage's float32 weights crosses its host link before the
    // stage's tasks; the gradients go back.
    const double bytes_per_param = 4.0 / static_cast<double>(config.parallel.tensor_model_parallel_size);
    req.costs.host_bandwidth = config.pipeline.h2d_bandwidth_gbps * 1e9;
    for (const auto& st : stages.forward) {
      req.costs.forward_weight_bytes.push_back(bytes_per_param * cost_model(config).parameters(st));
    }
    for (const auto& st : stages.backward) {
      req.costs.backward_weight_bytes.push_back(bytes_per_param * cost_model(config).parameters(st));
    }
    // The executor repeats one window per step: predict the periodic stream it runs.
    return req.async ? periodic_async_stream(generate_schedule(req), kAsyncStreamIterations)
                     : generate_schedule(req);
  }
  try {
    ScheduleRequest req{name, pp, microbatches, vpp, predicted_stage_costs(config, stages.forward)};
    for (const auto& st : stages.forward) req.partition.forward.push_back(st.num_layers);
    return generate_schedule(req);
  } catch (const ConfigError& e) {
    if (e.key() != "microbatches") throw;
    throw ConfigError("training.global_batch_size",
                      std::string(e.what()) + " (microbatches per rank = global / (micro * dp))");
  }
}

// Refuses a plan whose predicted peak memory on some pipeline rank exceeds pipeline.memory_cap_gb,
// naming the rank, what it holds, and the way out.
void check_memory_cap(const Config& config, const StepPrediction& prediction,
                      const std::vector<StageLayers>& stages, const PipelineSchedule& schedule) {
  const double cap = config.pipeline.memory_cap_gb * 1e9;
  if (cap <= 0) return;
  const auto stage_rank = schedule.stage_ranks();
  for (const auto& r : prediction.ranks) {
    if (r.peak_bytes() <= cap) continue;
    std::string held = schedule.stateless_workers ? "a stateless worker" : "";
    for (const auto& st : stages) {
      if (schedule.stateless_workers) break;
      if (stage_rank[static_cast<size_t>(st.index)] != r.pp_rank) continue;
      held += (held.empty() ? "" : ", ") + std::string("stage ") + std::to_string(st.index) +
              (st.has_embedding ? " (embedding)" : "") + (st.has_lm_head ? " (LM head)" : "");
    }
    char buf[512];
    std::snprintf(
        buf, sizeof(buf),
        "%s cannot place pipeline rank %d (%s): it needs %.2f GB (weights, gradients and optimizer "
        "%.2f GB + %.3g microbatches of activations in flight %.2f GB) > %.2f GB. Lower "
        "training.micro_batch_size, raise pipeline_model_parallel_size, recompute activations "
        "(model.recompute_granularity: selective or full), or compare "
        "`rondo simulate --schedule roundpipe`, whose stateless workers hold one stage and one working set",
        schedule.name.c_str(), r.pp_rank, held.c_str(), r.peak_bytes() / 1e9, r.weight_bytes / 1e9,
        r.peak_activations, r.activation_bytes / 1e9, cap / 1e9);
    throw ConfigError("pipeline.memory_cap_gb", buf);
  }
}

// The stages of the config's schedule: pp * chunks-per-rank equal slices of the layers, or
// RoundPipe's partitions.
ModelStages stages_for(const Config& config, int pp) {
  const std::string& name = config.pipeline.schedule;
  const int vpp = static_cast<int>(config.parallel.virtual_pipeline_model_parallel_size);
  if (vpp > 1 && !takes_virtual_stages(name)) {
    throw ConfigError(
        "parallel.virtual_pipeline_model_parallel_size",
        "only pipeline.schedule=interleaved_1f1b or looped_bfs uses virtual stages (schedule is " + name +
            ")");
  }
  if (name == "roundpipe" && pp > 1) return roundpipe_layout(config, pp);
  const int stages = pp == 1 ? 1 : pp * chunks_per_rank(name, vpp);
  const int layers = static_cast<int>(config.model.num_layers);
  if (!config.pipeline.stage_partition.empty()) {
    // validate() checked the counts against the layers and the stages.
    const auto part =
        parse_stage_partition(config.pipeline.stage_partition, layers, "pipeline.stage_partition");
    ModelStages out;
    int first = 0;
    for (size_t s = 0; s < part.forward.size(); ++s) {
      const int n = part.forward[s];
      out.forward.push_back({static_cast<int>(s), first, n, s == 0, s + 1 == part.forward.size()});
      first += n;
    }
    return out;
  }
  if (layers % stages != 0) {
    throw ConfigError("model.num_layers", std::to_string(layers) + " layers cannot fill the " +
                                              std::to_string(stages) + " equal stages of " + name +
                                              " at pp " + std::to_string(pp));
  }
  return {partition_layers_evenly(layers, stages, 1), {}, {}};
}

// What the passes of build_plan share: the config, the mesh, and what earlier passes decided.
struct PlanContext {
  const Config& config;
  DeviceMesh mesh;
  int microbatches;  // per data-parallel rank and step
  plan::Plan plan;
  ModelStages model_stages;
  PipelineSchedule schedule;
};

// A data-parallel group's ring order: by leaf and host on the config's fabric (topology.*), then
// around the directed links in comms.avoid_links (a slow_link verdict's).
std::vector<int> data_parallel_ring(const std::optional<Fabric>& fabric,
                                    const std::set<std::pair<int, int>>& avoid,
                                    const std::vector<int>& members) {
  const auto ring = fabric ? fabric_ring(*fabric, members) : members;
  return avoided_links_used(ring, avoid) == 0 ? ring : ring_avoiding(ring, avoid);
}

// Pass 1, mesh: the layout's dimensions and every group of ranks.
void mesh_pass(PlanContext& c) {
  const auto& mesh = c.mesh;
  auto* m = c.plan.mutable_mesh();
  m->set_world_size(static_cast<uint32_t>(mesh.world_size()));
  m->set_tp(static_cast<uint32_t>(mesh.tp()));
  m->set_cp(static_cast<uint32_t>(mesh.cp()));
  m->set_ep(static_cast<uint32_t>(mesh.ep()));
  m->set_dp(static_cast<uint32_t>(mesh.dp()));
  m->set_pp(static_cast<uint32_t>(mesh.pp()));
  m->set_vpp(static_cast<uint32_t>(c.config.parallel.virtual_pipeline_model_parallel_size));
  const auto fabric = fabric_of(c.config);
  const auto avoid_list = parse_avoid_links(c.config.comms.avoid_links, mesh.world_size());
  const std::set<std::pair<int, int>> avoid(avoid_list.begin(), avoid_list.end());
  std::vector<MeshDim> dims = {MeshDim::kTp, MeshDim::kCp, MeshDim::kEp,
                               MeshDim::kDp, MeshDim::kPp, MeshDim::kDpCp};
  if (mesh.ep() > 1) dims.push_back(MeshDim::kExpertDp);  // expert gradients' groups
  for (MeshDim dim : dims) {
    uint32_t index = 0;
    for (const auto& g : mesh.groups(dim)) {
      auto* group = m->add_groups();
      group->set_kind(to_group_kind(dim));
      group->set_index(index++);
      for (int r : g) group->add_ranks(static_cast<uint32_t>(r));
      if (to_group_kind(dim) != gradient_group_kind(*m)) continue;
      const auto ring = data_parallel_ring(fabric, avoid, g);
      if (ring != g) {
        for (int r : ring) group->add_ring(static_cast<uint32_t>(r));
      }
    }
  }
}

// Microbatches per step of a data-parallel rank (HDP: 1, a template every step's own schedule
// replaces).
int plan_microbatches(const Config& config, const DeviceMesh& mesh) {
  const auto& t = config.training;
  if (config.parallel.hdp) return 1;
  return static_cast<int>(t.global_batch_size / (t.micro_batch_size * mesh.dp()));
}

// parallel.hdp as the workers plan it: the policy, the cap and the step's tokens resolved, and the
// planner's cost model.
void set_hdp(const Config& config, plan::HdpSpec& hdp) {
  const auto& p = config.parallel;
  const auto cost = hdp_cost(config).spec();
  hdp.set_enabled(true);
  hdp.set_policy(plan_enum(hdp_policy_kind_from_name(p.hdp_policy), "parallel.hdp_policy", p.hdp_policy));
  const HdpOptions options = hdp_options(config);
  hdp.set_max_tokens_per_rank(options.max_tokens_per_rank);
  for (int64_t h : options.hosts) hdp.add_rank_hosts(h);
  hdp.set_tokens_per_step(hdp_tokens_per_step(config));
  hdp.set_device_flops(cost.device_flops);
  hdp.set_link_bytes_per_s(cost.link_bytes_per_s);
  hdp.set_link_latency_s(cost.link_latency_s);
  hdp.set_cross_host_bytes_per_s(cost.cross_host_bytes_per_s);
}

// Pass 2, specs: what every worker needs to know about the model, training, data, comms and
// checkpoints.
void set_moe(const Config& config, plan::MoeSpec& moe) {
  const auto& m = config.model;
  moe.set_num_experts(static_cast<uint32_t>(m.num_experts));
  moe.set_router_topk(static_cast<uint32_t>(m.moe_router_topk));
  moe.set_capacity_factor(m.moe_capacity_factor);
  moe.set_aux_loss_coeff(m.moe_aux_loss_coeff);
  moe.set_layer_freq(static_cast<uint32_t>(m.moe_layer_freq));
  moe.set_forward_degree(
      static_cast<uint32_t>(moe_degree(config.moe.a2a_overlap_degree, "moe.a2a_overlap_degree")));
  moe.set_backward_degree(static_cast<uint32_t>(moe_degree(config.moe.bwd_degree, "moe.bwd_degree")));
  moe.set_gradient_partitioning(config.moe.gradient_partitioning);
}

// The model section: the family, its shape and options (MoE, grouped-query attention, rotary).
void set_model(const Config& config, plan::ModelSpec& model) {
  const auto& mc = config.model;
  model.set_family(mc.family);
  model.set_num_layers(static_cast<uint32_t>(mc.num_layers));
  model.set_hidden_size(static_cast<uint32_t>(mc.hidden_size));
  model.set_num_attention_heads(static_cast<uint32_t>(mc.num_attention_heads));
  model.set_ffn_hidden_size(static_cast<uint32_t>(mc.ffn_hidden_size));
  model.set_vocab_size(static_cast<uint32_t>(mc.vocab_size));
  model.set_seq_length(static_cast<uint32_t>(mc.seq_length));
  model.set_recompute_granularity(plan_enum(recompute_granularity_from_name(mc.recompute_granularity),
                                            "model.recompute_granularity", mc.recompute_granularity));
  if (mc.num_experts > 0) set_moe(config, *model.mutable_moe());
  model.set_num_query_groups(static_cast<uint32_t>(mc.num_query_groups));
  model.set_rotary_base(mc.rotary_base);
  model.set_rope_scaling_factor(mc.rope_scaling_factor);
  model.set_rope_low_freq_factor(mc.rope_low_freq_factor);
  model.set_rope_high_freq_factor(mc.rope_high_freq_factor);
  model.set_rope_original_max_positions(static_cast<uint32_t>(mc.rope_original_max_positions));
  model.set_norm_epsilon(mc.norm_epsilon);
  model.set_kv_channels(static_cast<uint32_t>(mc.kv_channels));
  model.set_tie_embeddings(mc.tie_embeddings);
}

// The training section of the plan (microbatches per data-parallel rank from the mesh pass).
void set_training(const TrainingConfig& t, int64_t microbatches, plan::TrainingSpec& ts) {
  ts.set_micro_batch_size(static_cast<uint32_t>(t.micro_batch_size));
  ts.set_global_batch_size(static_cast<uint32_t>(t.global_batch_size));
  ts.set_num_microbatches(static_cast<uint32_t>(microbatches));
  ts.set_train_iters(static_cast<uint32_t>(t.train_iters));
  ts.set_lr(t.lr);
  ts.set_min_lr(t.min_lr);
  ts.set_lr_warmup_iters(static_cast<uint32_t>(t.lr_warmup_iters));
  ts.set_lr_decay_style(
      plan_enum(lr_decay_style_from_name(t.lr_decay_style), "training.lr_decay_style", t.lr_decay_style));
  ts.set_optimizer(plan_enum(optimizer_from_name(t.optimizer), "training.optimizer", t.optimizer));
  ts.set_weight_decay(t.weight_decay);
  ts.set_adam_beta1(t.adam_beta1);
  ts.set_adam_beta2(t.adam_beta2);
  ts.set_adam_eps(t.adam_eps);
  ts.set_clip_grad(t.clip_grad);
  ts.set_seed(static_cast<uint64_t>(t.seed));
  ts.set_exit_interval(static_cast<uint32_t>(t.exit_interval));
  ts.set_log_interval(static_cast<uint32_t>(t.log_interval));
  ts.set_tensorboard(t.tensorboard);
  ts.set_eval_interval(static_cast<uint32_t>(t.eval_interval));
  ts.set_eval_iters(static_cast<uint32_t>(t.eval_iters));
  ts.set_lora_rank(static_cast<uint32_t>(t.lora_rank));
  ts.set_lora_alpha(t.lora_alpha);
  if (t.lora_rank > 0) {
    for (const auto& target : comma_items(t.lora_target_modules)) ts.add_lora_target_modules(target);
  }
  ts.set_num_threads(static_cast<uint32_t>(t.num_threads));
  ts.set_device(plan_enum(device_from_name(t.device), "training.device", t.device));
  ts.set_emulate_compute(t.emulate_compute);
  ts.set_malloc_policy(
      plan_enum(malloc_policy_from_name(t.malloc_policy), "training.malloc_policy", t.malloc_policy));
  ts.set_cpu_kernels(plan_enum(cpu_kernels_from_name(t.cpu_kernels), "training.cpu_kernels", t.cpu_kernels));
}

// The data section of the plan (a chunked pipeline's chunks from the mesh's pp).
void set_data(const Config& config, int pp, plan::DataSpec& d) {
  d.set_path(config.data.path);
  d.set_pack(config.data.pack);
  d.set_pad(config.data.pad);
  if (!config.data.split.empty()) {
    for (double w : parse_document_split(config.data.split)) d.add_split(w);
  }
  d.set_chunk_size(config.data.chunk_size);
  d.set_chunk_balance(chunk_balance_from_plan_name(config.data.chunk_balance).value());
  d.set_chunks_in_memory(static_cast<int32_t>(config.data.chunks_in_memory));
  for (int64_t len : pipeline_chunk_lengths(config, pp)) d.add_pipeline_chunk_lengths(len);
  const auto mix = config.data.lognormal_mix();
  auto* ln = d.mutable_lognormal();
  ln->set_documents(mix.documents);
  ln->set_mu(mix.mu);
  ln->set_sigma(mix.sigma);
  ln->set_max_length(mix.max_length);
  ln->set_seed(mix.seed);
  const std::string format = TokenCorpus::resolve_format(config.data.path, config.data.format);
  d.set_format(plan_enum(data_format_from_name(format), "data.format", format));
}

void spec_pass(PlanContext& c) {
  const Config& config = c.config;
  auto& p = c.plan;
  set_model(config, *p.mutable_model());
  set_training(config.training, c.microbatches, *p.mutable_training());
  p.set_asynchronous(c.config.pipeline.async);
  p.set_delay_correction(plan_enum(delay_correction_from_name(c.config.pipeline.delay_correction),
                                   "pipeline.delay_correction", c.config.pipeline.delay_correction));
  set_data(config, c.mesh.pp(), *p.mutable_data());
  auto* cs = p.mutable_comms();
  cs->set_backend(
      plan_enum(comms_backend_from_name(config.comms.backend), "comms.backend", config.comms.backend));
  cs->set_allreduce(
      plan_enum(allreduce_kind_from_name(config.comms.allreduce), "comms.allreduce", config.comms.allreduce));
  cs->set_timing_recorder(config.comms.timing_recorder);
  cs->set_timing_recorder_blocks(static_cast<uint32_t>(config.comms.timing_recorder_blocks));
  cs->set_timeout_s(config.comms.timeout_s);
  cs->set_recorder_capacity(static_cast<uint32_t>(config.comms.recorder_capacity));
  cs->set_overlap_grad_reduce(config.comms.overlap_grad_reduce);
  cs->set_bucket_size_mb(config.comms.bucket_size_mb);
  cs->set_emulated_link_gbps(config.comms.emulated_link_gbps);
  if (config.parallel.hdp) set_hdp(config, *p.mutable_hdp());
  auto* ck = p.mutable_checkpoint();
  ck->set_interval(static_cast<uint32_t>(config.checkpoint.interval));
  ck->set_resume(config.checkpoint.resume);
  ck->set_resume_step(static_cast<uint32_t>(config.checkpoint.resume_step));
  if (!config.checkpoint.load.empty())
    ck->set_load(std::filesystem::absolute(config.checkpoint.load).string());
}

// Pass 3, layout: the model's stages (and RoundPipe's backward stages) in the plan.
void layout_pass(PlanContext& c) {
  c.model_stages = stages_for(c.config, c.mesh.pp());
  const auto add_stage = [](plan::Stage* st, const StageLayers& s) {
    st->set_index(static_cast<uint32_t>(s.index));
    st->set_first_layer(static_cast<uint32_t>(s.first_layer));
    st->set_num_layers(static_cast<uint32_t>(s.num_layers));
    st->set_has_embedding(s.has_embedding);
    st->set_has_lm_head(s.has_lm_head);
  };
  for (const auto& s : c.model_stages.forward) add_stage(c.plan.add_stages(), s);
  for (const auto& s : c.model_stages.backward) add_stage(c.plan.add_backward_stages(), s);
}

// Pass 4, schedule: the registry's generator for pipeline.schedule over the stages.
void schedule_pass(PlanContext& c) {
  c.schedule = schedule_for(c.config, c.mesh.pp(), c.microbatches, c.model_stages,
                            std::max(1, c.plan.data().pipeline_chunk_lengths_size()));
  c.plan.set_stateless_workers(c.schedule.stateless_workers);
}

// Pass 5, prediction: step time, bubble and memory per pipeline rank from the cost model;
// refuses a plan over pipeline.memory_cap_gb.
void prediction_pass(PlanContext& c) {
  const auto prediction = predict_step(c.config, c.schedule, c.model_stages.forward, c.model_stages.backward);
  check_memory_cap(c.config, prediction, c.model_stages.forward, c.schedule);
  auto* pred = c.plan.mutable_prediction();
  pred->set_step_time_s(prediction.step_time_s);
  pred->set_bubble_fraction(prediction.bubble_fraction);
  pred->set_exposed_comm_s(prediction.exposed_comm_s);
  pred->set_device_tflops(c.config.pipeline.device_tflops);
  for (double f : prediction.costs.f) pred->add_stage_forward_s(f);
  for (double b : prediction.costs.b) pred->add_stage_backward_s(b);
  for (double w : prediction.costs.w) pred->add_stage_weight_s(w);
  for (double lead : prediction.costs.b_lead) pred->add_stage_backward_lead_s(lead);
  for (const auto& rp : prediction.ranks) {
    auto* out = pred->add_ranks();
    out->set_pp_rank(static_cast<uint32_t>(rp.pp_rank));
    out->set_busy_s(rp.busy_s);
    out->set_peak_activations(rp.peak_activations);
    out->set_weight_bytes(rp.weight_bytes);
    out->set_activation_bytes(rp.activation_bytes);
  }
}

// Pass 6, ranks: every world rank's coordinates, stages, actions (the pipeline rank's lowered
// steps with peers mapped through the mesh, then ALLREDUCE and OPTIM) and its slice of the batch.
void ranks_pass(PlanContext& c) {
  const auto& mesh = c.mesh;
  const std::vector<int> stage_rank = c.schedule.stage_ranks();
  // Transfers are worked out once per pipeline rank; each world rank maps its peers through
  // the mesh (same tp, cp, dp position, another pp position).
  const auto by_pp = c.schedule.async ? lower_async_window(c.schedule) : lower_transfers(c.schedule);
  for (int rank = 0; rank < mesh.world_size(); ++rank) {
    const MeshCoords at = mesh.coords(rank);
    auto* rp = c.plan.add_ranks();
    rp->set_rank(static_cast<uint32_t>(rank));
    auto* co = rp->mutable_coords();
    co->set_tp(static_cast<uint32_t>(at.tp));
    co->set_cp(static_cast<uint32_t>(at.cp));
    co->set_ep(static_cast<uint32_t>(at.ep));
    co->set_dp(static_cast<uint32_t>(at.dp));
    co->set_pp(static_cast<uint32_t>(at.pp));
    for (int s = 0; s < c.schedule.num_stages && !c.schedule.stateless_workers; ++s) {
      if (stage_rank[static_cast<size_t>(s)] == at.pp) rp->add_stages(static_cast<uint32_t>(s));
    }
    append_plan_actions(
        by_pp[static_cast<size_t>(at.pp)],
        [&](int pp) {
          MeshCoords peer = at;
          peer.pp = pp;
          return mesh.rank(peer);
        },
        *rp->mutable_actions());
    *rp->add_actions() = make_action(plan::ACTION_ALLREDUCE, 0, 0, -1);
    *rp->add_actions() = make_action(plan::ACTION_OPTIM, 0, 0, -1);
    // Data-parallel rank d takes a contiguous slice of the global batch.
    for (int k = 0; k < c.microbatches; ++k) {
      rp->add_microbatch_first_sample(
          static_cast<uint32_t>((at.dp * c.microbatches + k) * c.config.training.micro_batch_size));
    }
  }
}

}  // namespace

DeviceMesh mesh_of(const Config& config) {
  const auto& pc = config.parallel;
  return DeviceMesh(static_cast<int>(pc.world_size), static_cast<int>(pc.tensor_model_parallel_size),
                    static_cast<int>(pc.context_parallel_size),
                    static_cast<int>(pc.expert_model_parallel_size),
                    static_cast<int>(pc.pipeline_model_parallel_size));
}

plan::Plan build_plan(const Config& config) {
  validate(config);
  PlanContext c{config, mesh_of(config), 0, {}, {}, {}};
  c.microbatches = plan_microbatches(config, c.mesh);
  c.plan.set_version(kPlanVersion);
  c.plan.set_schedule(
      plan_enum(schedule_from_name(config.pipeline.schedule), "pipeline.schedule", config.pipeline.schedule));
  c.plan.set_config_yaml(to_yaml(config));
  // Chunking, hybrid data/context parallelism and MoE each add a pass here.
  mesh_pass(c);
  spec_pass(c);
  layout_pass(c);
  schedule_pass(c);
  prediction_pass(c);
  ranks_pass(c);
  validate_plan_transfers(c.plan);
  return std::move(c.plan);
}

std::string plan_gantt_svg(const Config& config) {
  validate(config);
  PlanContext c{config, mesh_of(config), 0, {}, {}, {}};
  c.microbatches = plan_microbatches(config, c.mesh);
  mesh_pass(c);
  spec_pass(c);
  layout_pass(c);
  schedule_pass(c);
  const auto prediction = predict_step(c.config, c.schedule, c.model_stages.forward, c.model_stages.backward);
  return gantt_svg(c.schedule, simulate_schedule(c.schedule, prediction.costs));
}

}  // namespace rondo
