#include "tools/cli/calibrate_report.h"

#include <cstdio>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace loopserve::cli {
namespace {

const char* kColours[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728",
                          "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::set<size_t> ParetoSet(const CalibrationReport& r) {
  std::set<size_t> out;
  for (ExitCriterion c : r.criteria) {
    for (size_t i : ParetoFront(r.points, c)) out.insert(i);
  }
  for (size_t i : ParetoFront(r.points, ExitCriterion::kNever)) out.insert(i);
  return out;
}

std::string TargetText(const QualityTarget& t) {
  return t.kind == QualityTarget::Kind::kMaxNllIncrease
             ? absl::StrFormat("NLL increase <= %g%%", 100 * t.value)
             : absl::StrFormat("top-1 agreement >= %g", t.value);
}

void PrintRow(const PolicyEvaluation& e, const char* mark) {
  std::printf("%-14s %10.5g %4d %4d %9.2f%% %7.3f %8.4f %8.4f %+9.3f%% %s\n",
              ExitCriterionName(e.policy.criterion), e.policy.threshold, e.policy.min_loops,
              e.policy.max_loops, 100 * e.compute_saved, e.mean_loops, e.top1_agreement, e.mean_nll,
              100 * e.nll_increase, mark);
}

}  // namespace

void PrintReport(const CalibrationReport& r, bool all_points) {
  const std::set<size_t> pareto = ParetoSet(r);
  std::printf("calibration of %s on %d prompts (%lld scored positions), teacher-forced\n",
              r.model.c_str(), r.prompts, static_cast<long long>(r.tokens));
  if (!r.points.empty()) {
    std::printf("full-depth mean NLL %.4f nats\n", r.points.front().mean_nll_full);
  }
  std::printf("\n%-14s %10s %4s %4s %10s %7s %8s %8s %10s\n", "criterion", "threshold", "min",
              "max", "saved", "loops", "agree", "nll", "dNLL");
  for (size_t i = 0; i < r.points.size(); ++i) {
    const bool on_front = pareto.count(i) > 0;
    if (!all_points && !on_front && !IsStaticDepth(r.points[i])) continue;
    PrintRow(r.points[i], r.selected == i ? "<- selected" : (on_front ? "*" : ""));
  }
  std::printf("(max 0 = num_loops; * = on its criterion's Pareto front%s)\n",
              all_points ? "" : "; --all_points prints every point");
  std::printf("\nbest compute saved with %s, per criterion:\n", TargetText(r.target).c_str());
  std::vector<ExitCriterion> rows = r.criteria;
  rows.push_back(ExitCriterion::kNever);
  for (ExitCriterion c : rows) {
    std::vector<PolicyEvaluation> mine;
    for (const PolicyEvaluation& e : r.points) {
      if (e.policy.criterion == c) mine.push_back(e);
    }
    const std::optional<size_t> best = SelectCheapest(mine, r.target);
    const char* name = c == ExitCriterion::kNever ? "static depth" : ExitCriterionName(c);
    if (!best.has_value()) {
      std::printf("  %-14s none meets the target\n", name);
    } else {
      const PolicyEvaluation& e = mine[*best];
      std::printf(
          "  %-14s %7.2f%%  (threshold %g, min_loops %d, max_loops %d, dNLL %+.3f%%, "
          "agree %.3f)\n",
          name, 100 * e.compute_saved, e.policy.threshold, e.policy.min_loops, e.policy.max_loops,
          100 * e.nll_increase, e.top1_agreement);
    }
  }
  const CalibrationTiming& t = r.timing;
  std::printf(
      "\ntiming: score %.3f s, record %.3f s, sweep of %zu policies %.3f s; "
      "total / score = %.3fx",
      t.score_s, t.record_s, r.points.size(), t.sweep_s,
      (t.score_s + t.record_s + t.sweep_s) / t.score_s);
  if (t.baseline_s > 0) {
    std::printf("; total / plain full-depth prefill (%.3f s) = %.3fx", t.baseline_s,
                (t.score_s + t.record_s + t.sweep_s) / t.baseline_s);
  }
  std::printf("\n");
}

std::string ReportCsv(const CalibrationReport& r) {
  const std::set<size_t> pareto = ParetoSet(r);
  std::string csv =
      "criterion,threshold,min_loops,max_loops,kv_fill,compute_saved,mean_loops,top1_agreement,"
      "mean_nll,mean_nll_full,nll_increase,pareto,selected\n";
  for (size_t i = 0; i < r.points.size(); ++i) {
    const PolicyEvaluation& e = r.points[i];
    absl::StrAppendFormat(&csv, "%s,%.9g,%d,%d,%s,%.6f,%.4f,%.6f,%.6f,%.6f,%.6f,%d,%d\n",
                          ExitCriterionName(e.policy.criterion), e.policy.threshold,
                          e.policy.min_loops, e.policy.max_loops, KvFillName(e.policy.kv_fill),
                          e.compute_saved, e.mean_loops, e.top1_agreement, e.mean_nll,
                          e.mean_nll_full, e.nll_increase, pareto.count(i) > 0 ? 1 : 0,
                          r.selected == i ? 1 : 0);
  }
  return csv;
}

nlohmann::json ReportJson(const CalibrationReport& r) {
  const std::set<size_t> pareto = ParetoSet(r);
  nlohmann::json points = nlohmann::json::array();
  for (size_t i = 0; i < r.points.size(); ++i) {
    const PolicyEvaluation& e = r.points[i];
    points.push_back({{"policy", ExitPolicyToJson(e.policy)},
                      {"compute_saved", e.compute_saved},
                      {"mean_loops", e.mean_loops},
                      {"top1_agreement", e.top1_agreement},
                      {"mean_nll", e.mean_nll},
                      {"nll_increase", e.nll_increase},
                      {"pareto", pareto.count(i) > 0}});
  }
  nlohmann::json out = {
      {"model", r.model},
      {"prompts", r.prompts},
      {"positions", r.tokens},
      {"mode", "teacher-forced"},
      {"target",
       {{"kind", r.target.kind == QualityTarget::Kind::kMaxNllIncrease ? "max_nll_increase"
                                                                       : "min_agreement"},
        {"value", r.target.value}}},
      {"timing_s",
       {{"score", r.timing.score_s},
        {"record", r.timing.record_s},
        {"sweep", r.timing.sweep_s},
        {"plain_full_depth_prefill", r.timing.baseline_s}}},
      {"points", points},
      {"selected", nullptr}};
  if (!r.points.empty()) out["mean_nll_full"] = r.points.front().mean_nll_full;
  if (r.selected.has_value()) {
    out["selected"] = {{"name", r.policy_name},
                       {"index", *r.selected},
                       {"policy", ExitPolicyToJson(r.points[*r.selected].policy)}};
  }
  return out;
}

std::vector<PlotSeries> ReportSeries(const CalibrationReport& r) {
  std::vector<PlotSeries> out;
  for (size_t c = 0; c < r.criteria.size(); ++c) {
    PlotSeries s;
    s.name = ExitCriterionName(r.criteria[c]);
    s.colour = kColours[c % (sizeof(kColours) / sizeof(kColours[0]))];
    for (size_t i : ParetoFront(r.points, r.criteria[c])) {
      s.points.push_back({100 * r.points[i].compute_saved, 100 * r.points[i].nll_increase});
    }
    out.push_back(std::move(s));
  }
  PlotSeries fixed{"static depth (1..L loops)", "black", true, {}};
  for (const PolicyEvaluation& e : r.points) {
    if (IsStaticDepth(e)) fixed.points.push_back({100 * e.compute_saved, 100 * e.nll_increase});
  }
  out.push_back(std::move(fixed));
  return out;
}

}  // namespace loopserve::cli
