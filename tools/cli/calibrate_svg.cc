#include "tools/cli/calibrate_svg.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace loopserve::cli {
namespace {

constexpr double kWidth = 760, kHeight = 480;
constexpr double kLeft = 70, kRight = 190, kTop = 40, kBottom = 55;

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '&') {
      out += "&amp;";
    } else {
      out += c;
    }
  }
  return out;
}

// A "nice" tick step for a span covered by about `ticks` intervals.
double TickStep(double span, int ticks) {
  const double raw = span / ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) return m * mag;
  }
  return 10 * mag;
}

}  // namespace

std::string CalibrationPlotSvg(const std::vector<PlotSeries>& series, const PlotOptions& options) {
  double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = std::max(options.y_max, 0.5);
  for (const PlotSeries& s : series) {
    for (const PlotPoint& p : s.points) {
      x_lo = std::min(x_lo, std::max(p.x, options.x_min));
      x_hi = std::max(x_hi, p.x);
      y_lo = std::min(y_lo, std::max(p.y, -y_hi));
    }
  }
  const double x_step = TickStep(x_hi - x_lo, 8), y_step = TickStep(y_hi - y_lo, 8);
  x_lo = std::floor(x_lo / x_step) * x_step;
  x_hi = std::ceil(x_hi / x_step) * x_step;
  y_lo = std::floor(y_lo / y_step) * y_step;
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto sx = [&](double x) {
    return kLeft + (std::clamp(x, x_lo, x_hi) - x_lo) / (x_hi - x_lo) * pw;
  };
  auto sy = [&](double y) {
    return kTop + ph - (std::clamp(y, y_lo, y_hi) - y_lo) / (y_hi - y_lo) * ph;
  };

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      kWidth, kHeight, kWidth, kHeight);
  absl::StrAppendFormat(&svg, "<text x=\"%.0f\" y=\"22\" font-size=\"14\">%s</text>\n", kLeft,
                        Escape(options.title));
  // Grid, ticks and axis labels.
  for (double x = x_lo; x <= x_hi + 1e-9; x += x_step) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
                          sx(x), kTop, sx(x), kTop + ph, sx(x), kTop + ph + 16, x);
  }
  for (double y = y_lo; y <= y_hi + 1e-9; y += y_step) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                          kLeft, sy(y), kLeft + pw, sy(y), kLeft - 6, sy(y) + 4, y);
  }
  absl::StrAppendFormat(&svg,
                        "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                        "stroke=\"#444\"/>\n",
                        kLeft, kTop, pw, ph);
  absl::StrAppendFormat(&svg,
                        "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">compute saved (%% of "
                        "full-depth FLOPs, exit checks included)</text>\n",
                        kLeft + pw / 2, kHeight - 14);
  absl::StrAppendFormat(&svg,
                        "<text transform=\"translate(18 %.1f) rotate(-90)\" "
                        "text-anchor=\"middle\">mean NLL increase vs full depth (%%)</text>\n",
                        kTop + ph / 2);
  if (std::isfinite(options.target_y) && options.target_y <= y_hi) {
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#c00\" "
                          "stroke-dasharray=\"2 3\"/><text x=\"%.1f\" y=\"%.1f\" fill=\"#c00\" "
                          "text-anchor=\"end\">target %g%%</text>\n",
                          kLeft, sy(options.target_y), kLeft + pw, sy(options.target_y),
                          kLeft + pw - 4, sy(options.target_y) - 4, options.target_y);
  }
  // Series and legend.
  double legend_y = kTop + 8;
  for (const PlotSeries& s : series) {
    if (s.points.empty()) continue;
    std::string path;
    for (const PlotPoint& p : s.points) {
      absl::StrAppendFormat(&path, "%s%.1f,%.1f", path.empty() ? "" : " ", sx(p.x), sy(p.y));
    }
    absl::StrAppendFormat(&svg,
                          "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" "
                          "stroke-width=\"1.8\"%s/>\n",
                          path, s.colour, s.dashed ? " stroke-dasharray=\"6 4\"" : "");
    for (const PlotPoint& p : s.points) {
      const bool clipped = p.y > y_hi || p.x < x_lo || p.y < y_lo;
      absl::StrAppendFormat(&svg,
                            "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\" stroke=\"%s\">"
                            "<title>%s: saved %.2f%%, NLL %+.3f%%</title></circle>\n",
                            sx(p.x), sy(p.y), clipped ? "white" : s.colour, s.colour,
                            Escape(s.name), p.x, p.y);
    }
    const double lx = kLeft + pw + 14;
    absl::StrAppendFormat(&svg,
                          "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                          "stroke-width=\"2\"%s/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                          lx, legend_y, lx + 22, legend_y, s.colour,
                          s.dashed ? " stroke-dasharray=\"6 4\"" : "", lx + 28, legend_y + 4,
                          Escape(s.name));
    legend_y += 18;
  }
  absl::StrAppendFormat(&svg,
                        "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#666\">hollow: "
                        "off the chart, drawn at the edge</text>\n",
                        kLeft + pw + 14, legend_y + 8);
  svg += "</svg>\n";
  return svg;
}

}  // namespace loopserve::cli
