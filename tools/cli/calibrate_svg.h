// A dependency-free SVG line chart for the calibration report: compute
// saved (x, %) against NLL increase (y, %), one polyline per series.
#pragma once

#include <string>
#include <vector>

namespace loopserve::cli {

struct PlotPoint {
  double x = 0;  // compute saved, percent
  double y = 0;  // NLL increase, percent
};

struct PlotSeries {
  std::string name;
  std::string colour;  // any SVG colour
  bool dashed = false;
  std::vector<PlotPoint> points;  // drawn in order
};

struct PlotOptions {
  std::string title;
  double y_max = 10;    // points above are drawn on the top edge, hollow
  double x_min = -100;  // points left of it are drawn on the left edge, hollow
  double target_y = 1;  // horizontal reference line (NaN: none)
};

std::string CalibrationPlotSvg(const std::vector<PlotSeries>& series, const PlotOptions& options);

}  // namespace loopserve::cli
