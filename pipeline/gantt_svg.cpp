#include "pipeline/gantt_svg.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace rondo {
namespace {

const char* colour(ComputeKind kind) {
  switch (kind) {
    case ComputeKind::kF:
      return "#4c78a8";
    case ComputeKind::kB:
      return "#54a24b";
    case ComputeKind::kI:
      return "#72b7b2";
    case ComputeKind::kW:
      return "#f58518";
  }
  return "#999999";
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

// A "nice" axis step (1, 2 or 5 times a power of ten) giving about `ticks` ticks.
double tick_step(double span, int ticks) {
  const double raw = span / ticks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * mag) return m * mag;
  }
  return 10 * mag;
}

}  // namespace

std::string gantt_svg(const PipelineSchedule& s, const SimulationResult& r) {
  const int ranks = static_cast<int>(r.timeline.size());
  const double left = 70, top = 56, row = 26, gap = 6, plot_w = 1100, bottom = 40;
  const double width = left + plot_w + 20, height = top + ranks * (row + gap) + bottom;
  const double scale = r.makespan > 0 ? plot_w / r.makespan : 1.0;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << left << "\" y=\"18\" font-size=\"14\" font-weight=\"bold\">" << s.name << ": pp "
    << s.pp << ", " << s.microbatches << " microbatches, v " << s.virtual_stages
    << (s.iterations > 1 ? ", " + std::to_string(s.iterations) + " iterations" : std::string())
    << (s.async ? ", asynchronous" : "")
    << (s.num_backward_stages > 0 ? ", " + std::to_string(s.num_backward_stages) + " backward stages"
                                  : std::string())
    << "</text>\n";
  o << "<text x=\"" << left << "\" y=\"36\">makespan " << fmt(r.makespan) << ", "
    << (s.iterations > 1 ? "steady-state bubble " : "bubble ") << fmt(100 * steady_state_bubble(s, r))
    << "%, exposed communication " << fmt(r.exposed_comm) << "</text>\n";
  // Legend.
  double lx = left + plot_w - 260;
  for (ComputeKind k : {ComputeKind::kF, ComputeKind::kB, ComputeKind::kI, ComputeKind::kW}) {
    o << "<rect x=\"" << lx << "\" y=\"27\" width=\"12\" height=\"12\" fill=\"" << colour(k) << "\"/>";
    o << "<text x=\"" << lx + 16 << "\" y=\"37\">" << compute_kind_letter(k) << "</text>\n";
    lx += 40;
  }
  o << "<rect x=\"" << lx << "\" y=\"27\" width=\"12\" height=\"12\" fill=\"#e6e6e6\"/><text x=\"" << lx + 16
    << "\" y=\"37\">idle</text>\n";
  for (int rank = 0; rank < ranks; ++rank) {
    const double y = top + rank * (row + gap);
    o << "<text x=\"" << left - 8 << "\" y=\"" << y + row / 2 + 4 << "\" text-anchor=\"end\">rank " << rank
      << "</text>\n";
    o << "<rect x=\"" << left << "\" y=\"" << y << "\" width=\"" << plot_w << "\" height=\"" << row
      << "\" fill=\"#e6e6e6\"/>\n";
    for (const auto& t : r.timeline[static_cast<size_t>(rank)]) {
      const double x = left + t.start * scale, w = std::max(0.5, (t.end - t.start) * scale);
      o << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << w << "\" height=\"" << row << "\" fill=\""
        << colour(t.action.kind) << "\" stroke=\"white\" stroke-width=\"0.5\"><title>rank " << rank << ": "
        << to_string(t.action) << " [" << fmt(t.start) << ", " << fmt(t.end) << "]</title></rect>";
      if (w >= 14) {
        o << "<text x=\"" << x + w / 2 << "\" y=\"" << y + row / 2 + 4
          << "\" text-anchor=\"middle\" fill=\"white\">" << t.action.microbatch << "</text>";
      }
      o << "\n";
    }
  }
  // Time axis.
  const double axis_y = top + ranks * (row + gap) + 4;
  o << "<line x1=\"" << left << "\" y1=\"" << axis_y << "\" x2=\"" << left + plot_w << "\" y2=\"" << axis_y
    << "\" stroke=\"black\"/>\n";
  if (r.makespan > 0) {
    const double step = tick_step(r.makespan, 10);
    for (double t = 0; t <= r.makespan + 1e-9; t += step) {
      const double x = left + t * scale;
      o << "<line x1=\"" << x << "\" y1=\"" << axis_y << "\" x2=\"" << x << "\" y2=\"" << axis_y + 5
        << "\" stroke=\"black\"/><text x=\"" << x << "\" y=\"" << axis_y + 17 << "\" text-anchor=\"middle\">"
        << fmt(t) << "</text>\n";
    }
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace rondo
