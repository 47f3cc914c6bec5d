//! Charts of several runs, one line per run: how `pgstress compare` sets modes (or servers,
//! or settings) against each other, step by step.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::legend::draw_legend;
use super::plot::{
    BLUE, Break, Drawn, GREEN, ORANGE, PLOT_WIDTH, PURPLE, Picture, builder, draw_breaks,
    draw_lines, mesh, note, saturation_line,
};
use super::series::{self, Line};
use crate::logs::StepRow;
use crate::model::rules::Thresholds;

/// One run as a series: its label (e.g. "A burst"), its steps, and what its summary says
/// (nothing for a run known by its steps CSV alone).
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub steps: Vec<StepRow>,
    /// The step size where the run broke, marked in the run's colour.
    pub breaking_requests: Option<u32>,
    /// The run's `--saturated-cpu`, for the CPU chart's saturation line.
    pub saturated_cpu_pct: Option<f64>,
}

/// One colour per run, told apart from the saturation line's red and the breaking points'
/// black; past eight runs they repeat.
const RUN_COLORS: [RGBColor; 8] = [
    BLUE,
    ORANGE,
    GREEN,
    PURPLE,
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// What a comparison chart sets side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Failed,
    Wall,
    P99,
    HostCpu,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Failed, Metric::Wall, Metric::P99, Metric::HostCpu];

    /// The file name's part.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Failed => "failures",
            Metric::Wall => "wall",
            Metric::P99 => "latency",
            Metric::HostCpu => "cpu",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Failed => "Failed requests per step",
            Metric::Wall => "Wall time per step",
            Metric::P99 => "Latency p99 of the successful requests",
            Metric::HostCpu => "Client host CPU per step (mean)",
        }
    }

    fn y_desc(self) -> &'static str {
        match self {
            Metric::Failed => "failed requests",
            Metric::Wall => "wall time (s)",
            Metric::P99 => "latency p99 (ms)",
            Metric::HostCpu => "CPU (% of all the host's cores)",
        }
    }

    fn value(self, row: &StepRow) -> Option<f64> {
        match self {
            Metric::Failed => Some(f64::from(row.failed)),
            Metric::Wall => Some(row.wall_s),
            Metric::P99 => row.latency_p99_ms,
            Metric::HostCpu => row.host_cpu_mean,
        }
    }
}

/// A metric of every run, one line per run.
pub struct ComparisonChart<'a> {
    pub metric: Metric,
    pub runs: &'a [Series],
}

impl ComparisonChart<'_> {
    /// Each run's breaking point in the run's colour, short enough for the legend's column.
    fn breaks(&self) -> Vec<Break> {
        self.runs
            .iter()
            .zip(RUN_COLORS.into_iter().cycle())
            .filter_map(|(run, color)| {
                let requests = run.breaking_requests?;
                let letter = run.label.split(' ').next().unwrap_or(&run.label);
                Some(Break {
                    requests,
                    color,
                    label: format!("{letter} breaks at {requests}"),
                })
            })
            .collect()
    }

    /// The saturation thresholds the runs were judged by (one line each), the default
    /// when no run's summary says.
    fn saturation_thresholds(&self) -> Vec<f64> {
        let mut thresholds: Vec<f64> = Vec::new();
        for pct in self.runs.iter().filter_map(|run| run.saturated_cpu_pct) {
            if !thresholds.contains(&pct) {
                thresholds.push(pct);
            }
        }
        if thresholds.is_empty() {
            thresholds.push(Thresholds::default().saturated_cpu_pct);
        }
        thresholds
    }
}

impl Picture for ComparisonChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Drawn {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (plot, legend_area) = root.split_horizontally(PLOT_WIDTH);
        let metric = self.metric;
        let lines: Vec<Line> = self
            .runs
            .iter()
            .map(|run| series::line(&run.label, &run.steps, |row| metric.value(row)))
            .collect();
        let every_step: Vec<StepRow> = self.runs.iter().flat_map(|r| r.steps.clone()).collect();
        let x = series::requests_axis(&every_step);
        let (low, high) = series::value_range(&lines).unwrap_or((0.0, 1.0));
        let colors = RUN_COLORS.into_iter().cycle();
        let breaks = self.breaks();
        let mut legend = Vec::new();
        if metric == Metric::P99 && series::use_log_scale(low, high) {
            let title = format!("{} (log scale)", metric.title());
            let y = series::log_axis(low, high);
            let mut chart = builder(&plot, &title)
                .build_cartesian_2d(x, y.clone().log_scale())
                .map_err(|e| e.to_string())?;
            mesh(&mut chart, "latency p99 (ms, log scale)", false)?;
            draw_lines(&mut chart, &lines, colors, &mut legend)?;
            draw_breaks(&mut chart, &breaks, &y, &mut legend)?;
        } else {
            let y = match metric {
                Metric::HostCpu => 0.0..105.0,
                Metric::Failed => series::linear_axis(high.max(4.0)),
                Metric::Wall | Metric::P99 => series::linear_axis(high),
            };
            let mut chart = builder(&plot, metric.title())
                .build_cartesian_2d(x.clone(), y.clone())
                .map_err(|e| e.to_string())?;
            mesh(&mut chart, metric.y_desc(), metric == Metric::Failed)?;
            draw_lines(&mut chart, &lines, colors, &mut legend)?;
            if metric == Metric::HostCpu {
                for saturated in self.saturation_thresholds() {
                    saturation_line(&mut chart, x.clone(), saturated, &mut legend)?;
                }
            }
            // Every line lies on zero, the last drawn hiding the others: say so in words.
            if metric == Metric::Failed && high == 0.0 {
                note(&mut chart, "no request failed in any run", x, y.clone())?;
            }
            draw_breaks(&mut chart, &breaks, &y, &mut legend)?;
        }
        draw_legend(&legend_area, &legend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(label: &str, breaking: Option<u32>, saturated: Option<f64>) -> Series {
        Series {
            label: label.to_owned(),
            steps: Vec::new(),
            breaking_requests: breaking,
            saturated_cpu_pct: saturated,
        }
    }

    fn chart(runs: &[Series]) -> ComparisonChart<'_> {
        ComparisonChart {
            metric: Metric::HostCpu,
            runs,
        }
    }

    #[test]
    fn breaking_points_are_named_by_the_run_letter_in_the_run_colour() {
        let runs = [
            run("A pool", None, None),
            run("B burst", Some(150), None),
            run("C", Some(40), None),
        ];
        let breaks = chart(&runs).breaks();
        let labels: Vec<_> = breaks.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["B breaks at 150", "C breaks at 40"]);
        assert_eq!(breaks[0].color, RUN_COLORS[1]);
    }

    #[test]
    fn saturation_lines_follow_the_runs_own_thresholds() {
        let same = [run("A", None, Some(80.0)), run("B", None, Some(80.0))];
        assert_eq!(chart(&same).saturation_thresholds(), [80.0]);
        let differ = [run("A", None, Some(80.0)), run("B", None, Some(95.0))];
        assert_eq!(chart(&differ).saturation_thresholds(), [80.0, 95.0]);
        let csv_only = [run("A", None, None)];
        let default = Thresholds::default().saturated_cpu_pct;
        assert_eq!(chart(&csv_only).saturation_thresholds(), [default]);
    }
}
