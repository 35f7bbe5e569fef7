#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "common/errors.h"
#include "comms/traffic_planner.h"
#include "orchestrator/config.h"
#include "orchestrator/plan_builder.h"
#include "orchestrator/plan_views.h"
#include "pipeline/pipeline_schedule.h"
#include "pipeline/transfer_lowering.h"
#include "proto/plan_names.h"

namespace rondo {
namespace {

TEST(PlanBuilder, DataParallelPlanHasOneSliceOfTheBatchPerRank) {
  const auto plan =
      build_plan(parse_config("", "t", {"parallel.world_size=2", "training.global_batch_size=16"}));
  EXPECT_EQ(plan.version(), kPlanVersion);
  EXPECT_EQ(plan.training().num_microbatches(), 2u);
  std::set<uint32_t> starts;
  for (const auto& r : plan.ranks()) {
    ASSERT_EQ(r.microbatch_first_sample_size(), 2);
    for (auto s : r.microbatch_first_sample()) starts.insert(s);
    // F0 B0 F1 B1 ALLREDUCE OPTIM
    ASSERT_EQ(r.actions_size(), 6);
    EXPECT_EQ(action_to_string(r.actions(0)), "0F0");
    EXPECT_EQ(action_to_string(r.actions(3)), "0B1");
    EXPECT_EQ(r.actions(4).kind(), plan::ACTION_ALLREDUCE);
    EXPECT_EQ(r.actions(5).kind(), plan::ACTION_OPTIM);
  }
  // Every sample of the global batch is covered exactly once.
  EXPECT_EQ(starts, (std::set<uint32_t>{0, 4, 8, 12}));
}

TEST(PlanBuilder, JsonHasTheDocumentedFields) {
  const auto plan =
      build_plan(parse_config("", "t",
                              {"parallel.world_size=8", "parallel.pipeline_model_parallel_size=2",
                               "parallel.tensor_model_parallel_size=2", "training.global_batch_size=16"}));
  const auto j = plan_to_json(plan, false);
  EXPECT_EQ(j["world_size"], 8);
  EXPECT_EQ(j["mesh"]["tp"], 2);
  EXPECT_EQ(j["mesh"]["pp"], 2);
  EXPECT_EQ(j["mesh"]["dp"], 2);
  EXPECT_EQ(j["mesh"]["cp"], 1);
  EXPECT_EQ(j["mesh"]["ep"], 1);
  EXPECT_EQ(j["micro_batch_size"], 4);
  EXPECT_EQ(j["global_batch_size"], 16);
  EXPECT_EQ(j["num_microbatches"], 2);
  ASSERT_EQ(j["ranks"].size(), 8u);
  EXPECT_EQ(j["ranks"][5]["coords"]["pp"], 1);
  EXPECT_EQ(j["ranks"][5]["stages"], nlohmann::json::array({1}));
  EXPECT_EQ(j["stages"][1]["lm_head"], true);
}

TEST(PlanBuilder, PipelineRanksExchangeWithTheirNeighbours) {
  const auto plan =
      build_plan(parse_config("", "t",
                              {"parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                               "training.global_batch_size=8", "training.micro_batch_size=2"}));
  // Rank 0 (stage 0) sends activations to rank 1 and receives gradients from it.
  int sends = 0, recvs = 0;
  for (const auto& a : plan.ranks(0).actions()) {
    if (a.kind() == plan::ACTION_SEND_F) {
      EXPECT_EQ(a.peer(), 1);
      ++sends;
    }
    if (a.kind() == plan::ACTION_RECV_B) {
      EXPECT_EQ(a.peer(), 1);
      ++recvs;
    }
  }
  EXPECT_EQ(sends, 4);
  EXPECT_EQ(recvs, 4);
}

// 1f1b at pp=2 deadlocks when a send blocks until matched (rank 0 in SEND_F of microbatch 1,
// rank 1 in SEND_B of microbatch 0); gpipe does not. rondo's executor runs both (its sends never
// block: tests/system/test_pipeline_equivalence.py, messages above the eager limit).
TEST(PlanBuilder, BlockingSendCheckFindsThe1F1BDeadlock) {
  const auto make = [](const std::string& schedule) {
    return build_plan(parse_config("", "t",
                                   {"parallel.world_size=2", "parallel.pipeline_model_parallel_size=2",
                                    "training.global_batch_size=32", "pipeline.schedule=" + schedule}));
  };
  const std::string stuck = blocking_send_deadlock(make("1f1b"));
  EXPECT_NE(stuck.find("rank 0 blocked in SEND_F"), std::string::npos) << stuck;
  EXPECT_NE(stuck.find("rank 1 blocked in SEND_B"), std::string::npos) << stuck;
  EXPECT_EQ(blocking_send_deadlock(make("gpipe")), "");
  EXPECT_EQ(blocking_send_deadlock(build_plan(parse_config("", "t", {"parallel.world_size=2"}))), "");
}

TEST(PlanBuilder, ParameterCountOfTheDefaultModel) {
  const auto plan = build_plan(parse_config(default_config_yaml(), "default"));
  // 256*128 + 128*128 + 4 * (attention 66048 + mlp 131712 + norms 512) + 256 + 128*256
  EXPECT_EQ(count_parameters(plan.model()), 875264);
}

TEST(PlanBuilder, SixteenThousandRanksPlanQuickly) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto plan = build_plan(parse_config(
      "", "t",
      {"parallel.world_size=16384", "parallel.tensor_model_parallel_size=8",
       "parallel.pipeline_model_parallel_size=8", "model.num_layers=32", "model.num_attention_heads=8",
       "training.global_batch_size=4096", "training.micro_batch_size=1"}));
  EXPECT_EQ(plan.ranks_size(), 16384);
  EXPECT_EQ(plan.mesh().dp(), 256u);
  // Not a timing threshold: the duration is only logged for the record.
  std::cout << "16384-rank plan built in "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

plan::Plan pipeline_plan(const std::string& schedule) {
  return build_plan(
      parse_config("", "t",
                   {"parallel.world_size=4", "parallel.pipeline_model_parallel_size=4", "model.num_layers=8",
                    "training.global_batch_size=32", "pipeline.schedule=" + schedule}));
}

TEST(PlanPrediction, ReportsStepBubbleAndMemoryPerPipelineRank) {
  const auto one = pipeline_plan("1f1b"), zb = pipeline_plan("zb_h1"), gp = pipeline_plan("gpipe");
  ASSERT_EQ(one.prediction().ranks_size(), 4);
  EXPECT_GT(one.prediction().step_time_s(), 0);
  // 8 microbatches, 4 stages: the LM head makes the last stage heavier than the closed form.
  EXPECT_GE(one.prediction().bubble_fraction(), 3.0 / 11.0 - 1e-9);
  EXPECT_LT(zb.prediction().step_time_s(), one.prediction().step_time_s());
  // 1F1B's first rank holds 4 microbatches in flight, its last 1; GPipe holds all 8 everywhere.
  EXPECT_DOUBLE_EQ(one.prediction().ranks(0).peak_activations(), 4);
  EXPECT_DOUBLE_EQ(one.prediction().ranks(3).peak_activations(), 1);
  EXPECT_DOUBLE_EQ(gp.prediction().ranks(3).peak_activations(), 8);
  EXPECT_GT(one.prediction().ranks(0).activation_bytes(), one.prediction().ranks(3).activation_bytes());
  EXPECT_GT(one.prediction().ranks(0).weight_bytes(), 0);
  const auto j = plan_to_json(one, false);
  EXPECT_EQ(j["prediction"]["ranks"].size(), 4u);
}

TEST(PlanPrediction, ZeroBubbleVPlacesTwoStagesPerRankInAV) {
  const auto p = pipeline_plan("zbv");
  ASSERT_EQ(p.stages_size(), 8);
  EXPECT_EQ(std::vector<uint32_t>(p.ranks(0).stages().begin(), p.ranks(0).stages().end()),
            (std::vector<uint32_t>{0, 7}));
  EXPECT_EQ(std::vector<uint32_t>(p.ranks(3).stages().begin(), p.ranks(3).stages().end()),
            (std::vector<uint32_t>{3, 4}));
  // Stage 3 -> 4 stays on rank 3: no send between them.
  for (const auto& a : p.ranks(3).actions()) {
    if (a.kind() == plan::ACTION_SEND_F) {
      EXPECT_NE(a.stage(), 3u);
    }
  }
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

TEST(PlanPrediction, AMemoryCapThatOneFOneBCannotMeetIsReportedByKey) {
  const std::vector<std::string> big = {"model.num_layers=32",
                                        "model.hidden_size=4096",
                                        "model.num_attention_heads=32",
                                        "model.ffn_hidden_size=14336",
                                        "model.vocab_size=128256",
                                        "model.seq_length=8192",
                                        "parallel.world_size=64",
                                        "parallel.tensor_model_parallel_size=8",
                                        "parallel.pipeline_model_parallel_size=8",
                                        "training.micro_batch_size=1",
                                        "training.global_batch_size=16"};
  auto with_cap = big;
  with_cap.push_back("pipeline.memory_cap_gb=80");
  const auto unconstrained = build_plan(parse_config("", "t", big));
  EXPECT_GT(unconstrained.prediction().ranks(0).weight_bytes() +
                unconstrained.prediction().ranks(0).activation_bytes(),
            80e9);
  try {
    build_plan(parse_config("", "t", with_cap));
    FAIL() << "a plan over the memory cap was accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "pipeline.memory_cap_gb");
    EXPECT_NE(std::string(e.what()).find("pipeline rank 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("roundpipe"), std::string::npos) << e.what();
  }
  // RoundPipe's stateless workers hold one stage (plus the prefetched next) and one working set.
  auto roundpipe = with_cap;
  roundpipe.push_back("pipeline.schedule=roundpipe");
  const auto p = build_plan(parse_config("", "t", roundpipe));
  EXPECT_TRUE(p.stateless_workers());
  ASSERT_GT(p.backward_stages_size(), p.stages_size());
  EXPECT_TRUE(p.backward_stages(0).has_lm_head());  // the fused tail
  for (const auto& r : p.prediction().ranks()) EXPECT_LE(r.weight_bytes() + r.activation_bytes(), 80e9);
  EXPECT_EQ(p.ranks(0).stages_size(), 0);  // no stage is bound to a rank
  // 1F1B fits too once it recomputes: selective drops the attention scores and probabilities;
  // full keeps each stage's input and rebuilds one stage at a time. Both lengthen the backward.
  for (const char* granularity : {"selective", "full"}) {
    auto recompute = with_cap;
    recompute.push_back(std::string("model.recompute_granularity=") + granularity);
    const auto r = build_plan(parse_config("", "t", recompute));
    EXPECT_EQ(r.model().recompute_granularity(),
              std::string(granularity) == "full" ? plan::RECOMPUTE_FULL : plan::RECOMPUTE_SELECTIVE);
    EXPECT_LT(r.prediction().ranks(0).activation_bytes(),
              unconstrained.prediction().ranks(0).activation_bytes())
        << granularity;
    EXPECT_GT(r.prediction().ranks(0).busy_s(), unconstrained.prediction().ranks(0).busy_s()) << granularity;
  }
}

TEST(PlanPrediction, ChunkedTrainingBoundsActivationsByTheChunkSize) {
  // Long rows: the attention scores of a whole 8192-token row dominate; chunks of 1024 keep a
  // K-chunk slice of them, plus every token's keys and values.
  const std::vector<std::string> base = {"model.seq_length=8192", "parallel.world_size=1",
                                         "training.micro_batch_size=1", "training.global_batch_size=2"};
  const auto activations = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), base.begin(), base.end());
    return build_plan(parse_config("", "t", extra)).prediction().ranks(0).activation_bytes();
  };
  const double whole = activations({});
  const double k1 = activations({"data.chunk_size=1024", "data.chunks_in_memory=1"});
  const double k2 = activations({"data.chunk_size=1024", "data.chunks_in_memory=2"});
  EXPECT_LT(k1, whole / 6);
  EXPECT_GT(k2, k1);
  EXPECT_LT(k2, 2 * k1);
}

TEST(PlanPrediction, PipelinedChunksAreTheSchedulesMicrobatches) {
  const std::vector<std::string> base = {"model.seq_length=4096",
                                         "parallel.world_size=2",
                                         "parallel.pipeline_model_parallel_size=2",
                                         "training.micro_batch_size=1",
                                         "training.global_batch_size=2",
                                         "pipeline.schedule=1f1b"};
  const auto plan = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), base.begin(), base.end());
    return build_plan(parse_config("", "t", extra));
  };
  const auto whole = plan({});
  const auto tokens = plan({"data.chunk_size=1024"});
  EXPECT_EQ(whole.data().pipeline_chunk_lengths_size(), 0);
  ASSERT_EQ(tokens.data().pipeline_chunk_lengths_size(), 4);
  for (int64_t len : tokens.data().pipeline_chunk_lengths()) EXPECT_EQ(len, 1024);
  // Two rows of four chunks: eight forwards per rank, each row's backwards in reverse.
  std::vector<int> forwards, backwards;
  for (const auto& a : tokens.ranks(1).actions()) {
    if (a.kind() == plan::ACTION_F) forwards.push_back(static_cast<int>(a.microbatch()));
    if (a.kind() == plan::ACTION_B) backwards.push_back(static_cast<int>(a.microbatch()));
  }
  EXPECT_EQ(forwards, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(backwards, (std::vector<int>{3, 2, 1, 0, 7, 6, 5, 4}));
  // Cost-balanced boundaries: later chunks attend to more keys, so they hold fewer tokens.
  const auto cost = plan({"data.chunk_size=1024", "data.chunk_balance=cost"});
  const auto& lengths = cost.data().pipeline_chunk_lengths();
  EXPECT_EQ(std::accumulate(lengths.begin(), lengths.end(), int64_t{0}), 4096);
  EXPECT_GT(lengths.size(), 4);
  EXPECT_GT(lengths[0], lengths[lengths.size() - 1]);
  // The prediction: finer microbatches fill the pipeline sooner; activations bounded by chunks.
  EXPECT_LT(tokens.prediction().bubble_fraction(), whole.prediction().bubble_fraction());
  EXPECT_LT(tokens.prediction().ranks(0).activation_bytes(),
            0.6 * whole.prediction().ranks(0).activation_bytes());
}

// An asynchronous plan's windows, strung together as the executor runs them (the warm-up: the
// ahead forwards as the first step's own; then each step's window, its ahead forwards belonging
// to the next step; the last without them), are the simulator's PipeDream-2BW stream.
TEST(AsyncPlan, WindowsStringTogetherIntoThe2BWStream) {
  constexpr int kSteps = 4;
  for (int p = 1; p <= 4; ++p) {
    for (int m : {std::max(1, p - 1), p, 2 * p + 1}) {
      const auto plan = build_plan(
          parse_config("", "t",
                       {"parallel.world_size=" + std::to_string(p),
                        "parallel.pipeline_model_parallel_size=" + std::to_string(p), "model.num_layers=12",
                        "training.micro_batch_size=1", "training.global_batch_size=" + std::to_string(m),
                        "pipeline.async=true", "pipeline.delay_correction=error_feedback"}));
      ASSERT_TRUE(plan.asynchronous());
      EXPECT_EQ(plan.delay_correction(), plan::DELAY_CORRECTION_ERROR_FEEDBACK);
      ScheduleRequest req{"1f1b", p, m, 1, {}};
      req.iterations = kSteps;
      req.async = true;
      const auto stream = generate_schedule(req);
      for (int r = 0; r < p; ++r) {
        const auto& actions = plan.ranks(r).actions();
        std::vector<ComputeAction> got;
        const auto add = [&](const plan::Action& a, int offset) {
          if (a.kind() == plan::ACTION_F || a.kind() == plan::ACTION_B) {
            got.push_back({a.kind() == plan::ACTION_F ? ComputeKind::kF : ComputeKind::kB,
                           static_cast<int>(a.stage()), static_cast<int>(a.microbatch()) + offset});
          }
        };
        int ahead = 0;
        for (const auto& a : actions) {
          if (a.ahead()) {
            add(a, 0);
            ahead += a.kind() == plan::ACTION_F;
            EXPECT_TRUE(a.kind() == plan::ACTION_F || a.kind() == plan::ACTION_SEND_F ||
                        a.kind() == plan::ACTION_RECV_F);
          }
        }
        EXPECT_EQ(ahead, std::min(p - 1 - r, m)) << "p " << p << " m " << m << " rank " << r;
        for (int k = 0; k < kSteps; ++k) {
          for (const auto& a : actions) {
            if (a.ahead() && k + 1 == kSteps) continue;
            add(a, (k + (a.ahead() ? 1 : 0)) * m);
          }
        }
        EXPECT_EQ(got, stream.ranks[static_cast<size_t>(r)]) << "p " << p << " m " << m << " rank " << r;
      }
    }
  }
  // Roundpipe's dispatch rotates workers from one iteration to the next, so its stream is not
  // periodic per step; the plan runs (and predicts) the periodic stream of its windows, whose
  // own window is the same again.
  for (int p : {2, 4}) {
    const auto plan = build_plan(
        parse_config("", "t",
                     {"parallel.world_size=" + std::to_string(p),
                      "parallel.pipeline_model_parallel_size=" + std::to_string(p), "model.num_layers=8",
                      "training.micro_batch_size=1", "training.global_batch_size=8",
                      "pipeline.schedule=roundpipe", "pipeline.async=true"}));
    ScheduleRequest req{"roundpipe", p, 8, 1, {}};
    req.iterations = 4;
    req.async = true;
    const auto stream = generate_schedule(req);
    const auto periodic = periodic_async_stream(stream, 4);
    EXPECT_EQ(lower_async_window(periodic).size(), lower_async_window(stream).size());
    for (size_t r = 0; r < periodic.ranks.size(); ++r) {
      const auto a = lower_async_window(periodic)[r], b = lower_async_window(stream)[r];
      ASSERT_EQ(a.size(), b.size()) << "p " << p << " rank " << r;
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(a[i].kind == b[i].kind && a[i].stage == b[i].stage &&
                    a[i].microbatch == b[i].microbatch && a[i].ahead == b[i].ahead)
            << "p " << p << " rank " << r << " step " << i;
      }
    }
    EXPECT_GT(plan.prediction().step_time_s(), 0.0);
  }
  // The steady state has no flush: the predicted bubble is the synchronous one's fraction.
  const std::vector<std::string> pp4 = {"parallel.world_size=4", "parallel.pipeline_model_parallel_size=4",
                                        "training.micro_batch_size=1", "training.global_batch_size=8"};
  auto with_async = pp4;
  with_async.push_back("pipeline.async=true");
  const auto sync = build_plan(parse_config("", "t", pp4)),
             async = build_plan(parse_config("", "t", with_async));
  EXPECT_LT(async.prediction().bubble_fraction(), 0.5 * sync.prediction().bubble_fraction());
  EXPECT_LT(async.prediction().step_time_s(), sync.prediction().step_time_s());
  EXPECT_GT(async.prediction().ranks(0).weight_bytes(), sync.prediction().ranks(0).weight_bytes());
  // Too few microbatches for a rank's warm-up to fit in one step: refused naming the batch.
  auto few = with_async;
  few.push_back("training.global_batch_size=2");
  try {
    build_plan(parse_config("", "t", few));
    ADD_FAILURE() << "2 microbatches at pp=4 async were accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "training.global_batch_size") << e.what();
  }
}

TEST(PlanTransfers, EverySendHasItsReceiveForEverySchedule) {
  for (const char* schedule : {"gpipe", "1f1b", "interleaved_1f1b", "zb_h1", "zbv", "roundpipe"}) {
    std::vector<std::string> sets = {"parallel.world_size=8", "parallel.pipeline_model_parallel_size=4",
                                     "model.num_layers=8", "training.global_batch_size=32",
                                     std::string("pipeline.schedule=") + schedule};
    if (std::string(schedule) == "interleaved_1f1b")
      sets.push_back("parallel.virtual_pipeline_model_parallel_size=2");
    // With microbatches a multiple of the workers, RoundPipe keeps each microbatch on one worker.
    if (std::string(schedule) == "roundpipe") sets.push_back("training.global_batch_size=24");
    auto p = build_plan(parse_config("", "t", sets));
    int transfers = 0;
    for (const auto& a : p.ranks(2).actions()) transfers += a.peer() >= 0;
    EXPECT_GT(transfers, 0) << schedule;
    // Drop one receive: the plan no longer checks out.
    auto* actions = p.mutable_ranks(2)->mutable_actions();
    for (int i = 0; i < actions->size(); ++i) {
      const auto kind = actions->Get(i).kind();
      if (kind == plan::ACTION_RECV_F || kind == plan::ACTION_RECV_B) {
        actions->DeleteSubrange(i, 1);
        break;
      }
    }
    try {
      validate_plan_transfers(p);
      ADD_FAILURE() << schedule << ": a dropped receive went unnoticed";
    } catch (const PlanError& e) {
      EXPECT_NE(std::string(e.what()).find("sent but never received"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

// Every schedule the registry names has a plan enum value and comes back under its own name.
TEST(PlanNames, EveryScheduleAndStyleRoundTripsThroughThePlanEnums) {
  for (const auto& name : schedule_names()) {
    const auto value = schedule_from_name(name);
    ASSERT_TRUE(value.has_value()) << name;
    EXPECT_EQ(name_of(*value), name);
  }
  for (const char* name : {"constant", "linear", "cosine"}) {
    ASSERT_TRUE(lr_decay_style_from_name(name).has_value()) << name;
    EXPECT_EQ(name_of(*lr_decay_style_from_name(name)), name);
  }
  for (const char* name : {"adamw", "sgd", "muon"}) EXPECT_EQ(name_of(*optimizer_from_name(name)), name);
  for (const char* name : {"none", "full", "selective"}) {
    EXPECT_EQ(name_of(*recompute_granularity_from_name(name)), name);
  }
  EXPECT_FALSE(schedule_from_name("unspecified").has_value());
  EXPECT_FALSE(schedule_from_name("magic").has_value());
  EXPECT_EQ(name_of(static_cast<plan::Schedule>(99)), "");
  EXPECT_EQ(name_of(plan::OPTIMIZER_UNSPECIFIED), "");
  const auto p = build_plan(parse_config("", "t", {"pipeline.schedule=zbv"}));
  EXPECT_EQ(p.schedule(), plan::SCHEDULE_ZBV);
  EXPECT_EQ(plan_to_json(p, false)["schedule"], "zbv");
}

// A model no device could hold per rank is warned about (pipeline.memory_cap_gb unset): against the
// largest GPU for training.device cuda, against the host's memory for cpu.
TEST(PlanBuilder, ARankNeedingMoreMemoryThanAnyDeviceIsWarnedAbout) {
  const std::vector<std::string> huge = {"model.num_layers=96", "model.hidden_size=16384",
                                         "model.num_attention_heads=128", "model.ffn_hidden_size=65536"};
  auto gpu = huge;
  gpu.push_back("training.device=cuda");
  const auto on_gpu = build_plan(parse_config("", "t", gpu));
  const std::string warning = memory_warning(on_gpu, 1e15);
  EXPECT_NE(warning.find("more than any one GPU holds (288 GB)"), std::string::npos) << warning;
  EXPECT_NE(warning.find("pipeline.memory_cap_gb"), std::string::npos) << warning;
  EXPECT_NE(plan_summary(on_gpu).find("warning: pipeline rank 0 needs"), std::string::npos);
  const auto on_cpu = build_plan(parse_config("", "t", huge));
  EXPECT_NE(memory_warning(on_cpu, 64e9).find("more than this machine's memory (64 GB)"), std::string::npos);
  // The default model fits both.
  const auto small = build_plan(parse_config("", "t", {}));
  EXPECT_EQ(memory_warning(small, 64e9), "");
  EXPECT_EQ(memory_warning(build_plan(parse_config("", "t", {"training.device=cuda"})), 64e9), "");
}

TEST(PlanBuilder, EmulatedOpsFarShorterThanAMillisecondAreWarnedAboutNamingTheRateThatFixesThem) {
  const std::vector<std::string> sets = {"parallel.world_size=4", "parallel.pipeline_model_parallel_size=4",
                                         "training.global_batch_size=16", "training.emulate_compute=true"};
  const auto tiny = build_plan(parse_config("", "t", sets));
  const std::string warning = emulated_op_warning(tiny);
  ASSERT_NE(warning.find("pipeline.device_tflops="), std::string::npos) << warning;
  EXPECT_NE(plan_summary(tiny).find(warning), std::string::npos);
  // The rate it names gives millisecond ops: no warning then.
  const auto at = warning.find("pipeline.device_tflops=") + std::string("pipeline.device_tflops=").size();
  const double rate = std::stod(warning.substr(at));
  EXPECT_LT(rate, 1.0);
  auto slower = sets;
  slower.push_back("pipeline.device_tflops=" + std::to_string(rate * 0.99));
  EXPECT_EQ(emulated_op_warning(build_plan(parse_config("", "t", slower))), "");
  // Real compute: nothing to warn about.
  EXPECT_EQ(emulated_op_warning(build_plan(parse_config("", "t", {"parallel.world_size=2"}))), "");
}

}  // namespace
}  // namespace rondo

namespace rondo {
namespace {

TEST(PlanBuilder, DataParallelRingsAreOrderedAroundAvoidedLinks) {
  const std::vector<std::string> sets = {"parallel.world_size=6", "parallel.pipeline_model_parallel_size=2",
                                         "model.num_layers=4", "training.global_batch_size=12"};
  // Each data-parallel group's first member's link to its second: used by the rank-order ring.
  std::set<std::pair<int, int>> avoid;
  std::string avoid_text;
  const auto plain = build_plan(parse_config("", "t", sets));
  for (const auto& g : plain.mesh().groups()) {
    if (g.kind() != plan::GROUP_DP) continue;
    avoid.insert({static_cast<int>(g.ranks(0)), static_cast<int>(g.ranks(1))});
    avoid_text +=
        (avoid_text.empty() ? "" : ", ") + std::to_string(g.ranks(0)) + ">" + std::to_string(g.ranks(1));
  }
  auto with_avoid = sets;
  with_avoid.push_back("comms.avoid_links=" + avoid_text);
  const auto plan = build_plan(parse_config("", "t", with_avoid));
  int ordered = 0;
  for (const auto& g : plan.mesh().groups()) {
    if (g.kind() != plan::GROUP_DP) continue;
    std::vector<int> members(g.ranks().begin(), g.ranks().end());
    std::vector<int> ring(g.ring().begin(), g.ring().end());
    if (ring.empty()) {
      ring = members;  // the rank order already avoids them
    } else {
      ++ordered;
      EXPECT_TRUE(std::is_permutation(ring.begin(), ring.end(), members.begin(), members.end()));
    }
    EXPECT_EQ(avoided_links_used(ring, avoid), 0);
  }
  EXPECT_EQ(ordered, 2);  // both groups' rank-order rings used an avoided link
  EXPECT_NE(plan_summary(plan).find("around avoided links (comms.avoid_links)"), std::string::npos);
}

TEST(PlanBuilder, AnAvoidedLinkOutsideTheJobNamesTheKey) {
  for (const char* bad : {"comms.avoid_links=0>9", "comms.avoid_links=1-0", "comms.avoid_links=1>1"}) {
    try {
      parse_config("", "t", {"parallel.world_size=2", bad});
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_EQ(e.key(), "comms.avoid_links") << bad;
    }
  }
}

}  // namespace
}  // namespace rondo
