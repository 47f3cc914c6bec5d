//! Live progress on a terminal: one bar for the plan (steps done) and one for the step in
//! flight (requests ended, ok and failed so far, elapsed). Off when stdout is not a terminal
//! (a CI log wants the plain per-step lines only) and with `--quiet`; plain with `NO_COLOR`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::model::record::{StepObserver, Tally};

/// Redraws the elapsed time while no request ends (a step can wait its whole deadline).
const TICK: Duration = Duration::from_millis(250);

/// The plan's bar: plain, and coloured.
const PLAN_TEMPLATES: [&str; 2] = [
    "{prefix:>9} [{bar:30}] {pos}/{len} steps  {elapsed_precise}",
    "{prefix:>9} [{bar:30.green/white}] {pos}/{len} steps  {elapsed_precise}",
];
/// The step in flight's bar: plain, and coloured.
const STEP_TEMPLATES: [&str; 2] = [
    "{prefix:>9} [{bar:30}] {pos}/{len} requests  {msg}  {elapsed}",
    "{prefix:>9} [{bar:30.cyan/blue}] {pos}/{len} requests  {msg}  {elapsed}",
];
/// A step whose request count is known only at its end (a timed pool step): a count, no bar.
const OPEN_STEP_TEMPLATES: [&str; 2] = [
    "{prefix:>9} {spinner} {pos} requests  {msg}  {elapsed}",
    "{prefix:>9} {spinner:.cyan} {pos} requests  {msg}  {elapsed}",
];

pub struct Progress {
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    plan: ProgressBar,
    step: Option<ProgressBar>,
    color: bool,
}

impl Progress {
    /// Bars when stdout is a terminal and the user did not ask for quiet.
    pub fn new(steps: u32, quiet: bool) -> Self {
        if quiet || !std::io::stdout().is_terminal() {
            return Progress { bars: None };
        }
        let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        // Drawn on stdout, where the step lines go, so `suspend` can keep the two apart.
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        let plan = multi.add(ProgressBar::new(u64::from(steps)));
        plan.set_style(style(PLAN_TEMPLATES, color));
        plan.set_prefix("plan");
        Progress {
            bars: Some(Bars {
                multi,
                plan,
                step: None,
                color,
            }),
        }
    }

    /// A bar for the step's `requests`, or a count when they are known only at its end.
    pub fn start_step(&mut self, index: u32, requests: Option<u32>) {
        let Some(bars) = &mut self.bars else { return };
        let (bar, templates) = match requests {
            Some(requests) => (ProgressBar::new(u64::from(requests)), STEP_TEMPLATES),
            None => (ProgressBar::no_length(), OPEN_STEP_TEMPLATES),
        };
        let step = bars.multi.add(bar);
        step.set_style(style(templates, bars.color));
        step.set_prefix(format!("step {index}"));
        step.set_message("0 ok, 0 failed");
        step.enable_steady_tick(TICK);
        bars.step = Some(step);
    }

    /// What the engine tells of the step in flight, if anyone is watching.
    pub fn observer(&self) -> Option<&dyn StepObserver> {
        self.bars.as_ref().map(|bars| bars as &dyn StepObserver)
    }

    pub fn finish_step(&mut self) {
        let Some(bars) = &mut self.bars else { return };
        if let Some(step) = bars.step.take() {
            step.finish_and_clear();
            bars.multi.remove(&step);
        }
        bars.plan.inc(1);
    }

    /// Runs `print` with the bars out of the way, so its lines are not drawn over.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bars {
            Some(bars) => bars.multi.suspend(print),
            None => print(),
        }
    }

    /// Removes the bars: what follows is the summary, in plain lines.
    pub fn finish(&mut self) {
        if let Some(bars) = self.bars.take() {
            if let Some(step) = &bars.step {
                step.finish_and_clear();
            }
            bars.plan.finish_and_clear();
            let _ = bars.multi.clear();
        }
    }
}

impl Drop for Progress {
    // An early return (an I/O error mid-run) must not leave a half-drawn bar behind.
    fn drop(&mut self) {
        self.finish();
    }
}

impl StepObserver for Bars {
    fn request_ended(&self, tally: Tally) {
        if let Some(step) = &self.step {
            step.set_position(u64::from(tally.done));
            step.set_message(format!("{} ok, {} failed", tally.ok, tally.failed));
        }
    }
}

fn style([plain, colored]: [&str; 2], color: bool) -> ProgressStyle {
    let template = if color { colored } else { plain };
    // The templates are constants known to parse; the fallback only guards a typo.
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_in_use_parse() {
        let all = PLAN_TEMPLATES.iter().chain(&STEP_TEMPLATES);
        for template in all.chain(&OPEN_STEP_TEMPLATES) {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }

    #[test]
    fn quiet_means_no_bars_even_on_a_terminal() {
        // Whatever stdout is here, --quiet alone must turn the bars off.
        let mut progress = Progress::new(3, true);
        progress.start_step(1, Some(10));
        assert!(progress.bars.is_none());
        assert!(progress.observer().is_none());
    }
}
