// Output of `loopserve-cli calibrate`: the sweep as a stdout table, CSV and
// JSON, and the plot series (Pareto front per criterion, static depth).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "engine/calibration.h"
#include "nlohmann/json_fwd.hpp"
#include "tools/cli/calibrate_svg.h"

namespace loopserve::cli {

struct CalibrationTiming {
  double score_s = 0;     // Engine::Score of every prompt (per-loop heads traced)
  double record_s = 0;    // per-position statistics
  double sweep_s = 0;     // every policy evaluated offline
  double baseline_s = 0;  // plain full-depth prefill of every prompt (0: not measured)
};

struct CalibrationReport {
  std::string model;
  int prompts = 0;
  int64_t tokens = 0;
  QualityTarget target;
  std::vector<PolicyEvaluation> points;
  std::vector<ExitCriterion> criteria;  // swept, in order
  std::optional<size_t> selected;
  std::string policy_name;
  CalibrationTiming timing;
};

void PrintReport(const CalibrationReport& report, bool all_points);
std::string ReportCsv(const CalibrationReport& report);
nlohmann::json ReportJson(const CalibrationReport& report);
// Pareto front of each criterion plus the static-depth baseline, in percent.
std::vector<PlotSeries> ReportSeries(const CalibrationReport& report);

}  // namespace loopserve::cli
