//! Charts of several runs, one line per run: how `pgstress compare` sets modes (or servers,
//! or settings) against each other, step by step.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{
    BLUE, Drawn, GREEN, ORANGE, PLOT_WIDTH, PURPLE, Picture, builder, draw_line, mesh,
    saturation_line,
};
use super::legend::{Mark, draw_legend};
use super::series::{self, Line};
use crate::flags::Thresholds;
use crate::logs::StepRow;

/// One run as a series: its label (e.g. "A burst") and its steps.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub steps: Vec<StepRow>,
}

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
        let colors = [BLUE, ORANGE, GREEN, PURPLE].into_iter().cycle();
        let mut legend = Vec::new();
        if metric == Metric::P99 && series::use_log_scale(low, high) {
            let title = format!("{} (log scale)", metric.title());
            let mut chart = builder(&plot, &title)
                .build_cartesian_2d(x, series::log_axis(low, high).log_scale())
                .map_err(|e| e.to_string())?;
            mesh(&mut chart, "latency p99 (ms, log scale)", false)?;
            for (line, color) in lines.iter().zip(colors) {
                draw_line(&mut chart, line, Mark::Line(color), &mut legend)?;
            }
        } else {
            let y = match metric {
                Metric::HostCpu => 0.0..105.0,
                Metric::Failed => series::linear_axis(high.max(4.0)),
                Metric::Wall | Metric::P99 => series::linear_axis(high),
            };
            let mut chart = builder(&plot, metric.title())
                .build_cartesian_2d(x.clone(), y)
                .map_err(|e| e.to_string())?;
            mesh(&mut chart, metric.y_desc(), metric == Metric::Failed)?;
            for (line, color) in lines.iter().zip(colors) {
                draw_line(&mut chart, line, Mark::Line(color), &mut legend)?;
            }
            if metric == Metric::HostCpu {
                let saturated = Thresholds::default().saturated_cpu_pct;
                saturation_line(&mut chart, x, saturated, &mut legend)?;
            }
        }
        draw_legend(&legend_area, &legend)
    }
}
