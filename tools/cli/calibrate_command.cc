// `loopserve-cli calibrate`: one teacher-forced full-depth Score pass per
// prompt, per-position exit statistics recorded once, then every criterion ×
// threshold × min_loops evaluated offline (engine/calibration.h) next to the
// static-depth baseline. Prints the table, writes CSV / JSON / SVG into
// --out and the cheapest policy meeting the target into exit_policies.json.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/calibration.h"
#include "engine/named_policies.h"
#include "nlohmann/json.hpp"
#include "tools/cli/calibrate_free.h"
#include "tools/cli/calibrate_report.h"
#include "tools/cli/cli_common.h"

ABSL_FLAG(std::string, prompts, "",
          "file with one prompt per line (text with a tokenizer, else token ids); blank lines and "
          "lines starting with # are skipped");
ABSL_FLAG(std::string, criteria, "max_prob,margin,entropy,kl,top1_stable,hidden_cosine,gate",
          "criteria to sweep (gate is skipped on models without an exit gate)");
ABSL_FLAG(int, thresholds, 20, "thresholds per criterion (quantiles of its statistic)");
ABSL_FLAG(std::string, min_loops_grid, "1,2", "min_loops values to sweep");
ABSL_FLAG(double, max_nll_increase, 0.01,
          "target: relative mean-NLL increase vs full depth (0.01 = 1%)");
ABSL_FLAG(double, min_agreement, 0,
          "target instead: top-1 agreement with full depth (e.g. 0.99); overrides "
          "--max_nll_increase when > 0");
ABSL_FLAG(std::string, policy_name, "calibrated", "name of the selected policy");
ABSL_FLAG(std::string, policies_file, "",
          "exit_policies.json to merge the selected policy into (default: <model>/"
          "exit_policies.json; \"none\": do not write)");
ABSL_FLAG(std::string, out, "", "directory for calibration.csv/.json/.svg (empty: none)");
ABSL_FLAG(int, free_tokens, 16,
          "greedy tokens per prompt for the free-generation check of the selected policy and "
          "the Pareto-front policies (0 = skip)");
ABSL_FLAG(bool, all_points, false, "print every sweep point, not only Pareto fronts");
ABSL_FLAG(bool, time_baseline, true,
          "also time a plain full-depth prefill of the prompts (the cost reference)");

namespace loopserve::cli {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

absl::StatusOr<std::vector<std::vector<int32_t>>> ReadPrompts(const std::string& path,
                                                              const Tokenizer* tokenizer,
                                                              int max_positions) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--prompts: cannot open ", path));
  std::vector<std::vector<int32_t>> out;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    const absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text.front() == '#') continue;
    std::vector<int32_t> ids;
    if (tokenizer != nullptr) {
      ids = tokenizer->Encode(text, /*add_bos=*/true);
    } else {
      absl::StatusOr<std::vector<int32_t>> parsed = ParseIds(std::string(text));
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_no, ": ", parsed.status().message()));
      }
      ids = *parsed;
    }
    if (static_cast<int>(ids.size()) > max_positions) {
      std::fprintf(stderr, "warning: %s:%d: %zu tokens, truncated to %d (context)\n", path.c_str(),
                   line_no, ids.size(), max_positions);
      ids.resize(static_cast<size_t>(max_positions));
    }
    if (ids.size() < 2) {
      std::fprintf(stderr, "warning: %s:%d: fewer than 2 tokens, skipped\n", path.c_str(), line_no);
      continue;
    }
    out.push_back(std::move(ids));
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no prompts"));
  return out;
}

absl::StatusOr<SweepOptions> SweepOptionsFromFlags(const ModelConfig& config) {
  SweepOptions options;
  for (absl::string_view name :
       absl::StrSplit(absl::GetFlag(FLAGS_criteria), ',', absl::SkipWhitespace())) {
    absl::StatusOr<ExitCriterion> c = ParseExitCriterion(absl::StripAsciiWhitespace(name));
    if (!c.ok())
      return absl::InvalidArgumentError(absl::StrCat("--criteria: ", c.status().message()));
    if (*c == ExitCriterion::kGate && !config.exit_gate) {
      std::fprintf(stderr, "note: model has no exit gate; criterion gate skipped\n");
      continue;
    }
    if (*c == ExitCriterion::kNever) continue;  // the static-depth rows are always there
    options.criteria.push_back(*c);
  }
  options.thresholds_per_criterion = absl::GetFlag(FLAGS_thresholds);
  if (options.thresholds_per_criterion < 1) {
    return absl::InvalidArgumentError("--thresholds: expected >= 1");
  }
  absl::StatusOr<std::vector<int32_t>> grid = ParseIds(absl::GetFlag(FLAGS_min_loops_grid));
  if (!grid.ok()) return absl::InvalidArgumentError("--min_loops_grid: expected e.g. 1,2");
  options.min_loops_grid.assign(grid->begin(), grid->end());
  for (int m : options.min_loops_grid) {
    if (m < 1 || m > config.num_loops) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--min_loops_grid: ", m, " outside [1, num_loops = ", config.num_loops, "]"));
    }
  }
  absl::StatusOr<KvFill> fill = ParseKvFill(absl::GetFlag(FLAGS_kv_fill));
  if (!fill.ok()) return fill.status();
  options.kv_fill = *fill;
  return options;
}

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status WriteSelectedPolicy(const CalibrationReport& report, const std::string& path) {
  std::optional<std::string> existing;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    existing = text.str();
  }
  absl::StatusOr<std::string> merged =
      MergeNamedPolicy(existing, report.policy_name, report.points[*report.selected].policy);
  if (!merged.ok())
    return absl::Status(merged.status().code(),
                        absl::StrCat(path, ": ", merged.status().message()));
  return WriteText(path, *merged);
}

absl::Status WriteOutputs(const CalibrationReport& report, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string base = (std::filesystem::path(dir) / "calibration").string();
  if (absl::Status s = WriteText(base + ".csv", ReportCsv(report)); !s.ok()) return s;
  if (absl::Status s = WriteText(base + ".json", ReportJson(report).dump(2) + "\n"); !s.ok()) {
    return s;
  }
  PlotOptions plot;
  plot.title = absl::StrCat(
      "exit calibration: ", std::filesystem::path(report.model).filename().string(), ", ",
      report.prompts, " prompts, ", report.tokens, " positions (teacher-forced)");
  plot.target_y = report.target.kind == QualityTarget::Kind::kMaxNllIncrease
                      ? 100 * report.target.value
                      : std::numeric_limits<double>::quiet_NaN();
  plot.y_max = std::max(5.0, 5 * plot.target_y);
  if (!std::isfinite(plot.y_max)) plot.y_max = 5;
  return WriteText(base + ".svg", CalibrationPlotSvg(ReportSeries(report), plot));
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int RunCalibrate() {
  absl::StatusOr<std::unique_ptr<Engine>> engine = LoadEngine();
  if (!engine.ok()) return Fail(engine.status());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = LoadTokenizer();
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  const ModelConfig& config = (*engine)->config();
  if (absl::GetFlag(FLAGS_prompts).empty())
    return Fail(absl::InvalidArgumentError("--prompts is required"));
  absl::StatusOr<std::vector<std::vector<int32_t>>> prompts =
      ReadPrompts(absl::GetFlag(FLAGS_prompts), tokenizer->get(), config.max_position_embeddings);
  if (!prompts.ok()) return Fail(prompts.status());
  absl::StatusOr<SweepOptions> options = SweepOptionsFromFlags(config);
  if (!options.ok()) return Fail(options.status());

  CalibrationReport report;
  report.model = absl::GetFlag(FLAGS_model);
  report.prompts = static_cast<int>(prompts->size());
  report.criteria = options->criteria;
  report.policy_name = absl::GetFlag(FLAGS_policy_name);
  if (absl::GetFlag(FLAGS_min_agreement) > 0) {
    report.target = {QualityTarget::Kind::kMinAgreement, absl::GetFlag(FLAGS_min_agreement)};
  } else {
    report.target = {QualityTarget::Kind::kMaxNllIncrease, absl::GetFlag(FLAGS_max_nll_increase)};
  }

  std::vector<SequenceRecord> records;
  for (const std::vector<int32_t>& ids : *prompts) {
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<ScoreResult> score = (*engine)->Score(ids);
    if (!score.ok()) return Fail(score.status());
    const Clock::time_point t1 = Clock::now();
    report.timing.score_s += std::chrono::duration<double>(t1 - t0).count();
    absl::StatusOr<SequenceRecord> record = RecordSequence((*engine)->model(), *score, ids);
    if (!record.ok()) return Fail(record.status());
    report.timing.record_s += Seconds(t1);
    report.tokens += record->num_positions;
    records.push_back(std::move(*record));
  }
  const Clock::time_point t_sweep = Clock::now();
  absl::StatusOr<std::vector<PolicyEvaluation>> points = SweepPolicies(records, config, *options);
  if (!points.ok()) return Fail(points.status());
  report.timing.sweep_s = Seconds(t_sweep);
  report.points = std::move(*points);
  report.selected = SelectCheapest(report.points, report.target);

  if (absl::GetFlag(FLAGS_time_baseline)) {
    // The same prompts through the serving path at full depth: prefill only
    // (max_tokens 1), one head per prompt — what a plain forward costs.
    const Clock::time_point t0 = Clock::now();
    for (const std::vector<int32_t>& ids : *prompts) {
      GenerationRequest request;
      request.prompt = ids;
      request.max_tokens = 1;
      absl::StatusOr<std::vector<GenerationResult>> r = (*engine)->Generate({request});
      if (!r.ok()) return Fail(r.status());
    }
    report.timing.baseline_s = Seconds(t0);
  }

  PrintReport(report, absl::GetFlag(FLAGS_all_points));
  if (const int free_tokens = absl::GetFlag(FLAGS_free_tokens); free_tokens > 0) {
    // Served generation differs from teacher-forced scoring (exited tokens'
    // K/V): check the front policies the way the server would run them.
    std::vector<ExitPolicy> policies;
    auto add = [&](size_t i) {
      const ExitPolicy& p = report.points[i].policy;
      if (std::find(policies.begin(), policies.end(), p) == policies.end()) policies.push_back(p);
    };
    if (report.selected.has_value()) add(*report.selected);
    for (ExitCriterion c : report.criteria) {
      for (size_t i : ParetoFront(report.points, c)) add(i);
    }
    for (size_t i : ParetoFront(report.points, ExitCriterion::kNever)) add(i);
    absl::StatusOr<std::vector<FreeGenerationResult>> free =
        CheckFreeGeneration(**engine, *prompts, policies, free_tokens);
    if (!free.ok()) return Fail(free.status());
    std::printf("\n%s", FreeGenerationTable(*free, free_tokens).c_str());
    if (!absl::GetFlag(FLAGS_out).empty()) {
      const std::string path =
          (std::filesystem::path(absl::GetFlag(FLAGS_out)) / "calibration_free.txt").string();
      if (absl::Status s = WriteText(path, FreeGenerationTable(*free, free_tokens)); !s.ok()) {
        return Fail(s);
      }
    }
  }
  if (!absl::GetFlag(FLAGS_out).empty()) {
    if (absl::Status s = WriteOutputs(report, absl::GetFlag(FLAGS_out)); !s.ok()) return Fail(s);
    std::printf("wrote %s/calibration.{csv,json,svg}\n", absl::GetFlag(FLAGS_out).c_str());
  }
  if (!report.selected.has_value()) {
    std::printf("no policy meets the target; nothing written to exit_policies.json\n");
    return 0;
  }
  std::string path = absl::GetFlag(FLAGS_policies_file);
  if (path == "none") return 0;
  if (path.empty()) path = (std::filesystem::path(report.model) / "exit_policies.json").string();
  if (absl::Status s = WriteSelectedPolicy(report, path); !s.ok()) return Fail(s);
  std::printf("policy \"%s\" = %s written to %s\n", report.policy_name.c_str(),
              ExitPolicyToJson(report.points[*report.selected].policy).dump().c_str(),
              path.c_str());
  return 0;
}

}  // namespace loopserve::cli
