//! Mean and peak of a series over a step: the shape every side's CPU is logged and judged in.

/// Mean and peak of one CPU series over a step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MeanPeak {
    pub mean: f64,
    /// The highest sample; None where the step had fewer than `MIN_SAMPLES_FOR_PEAK` samples
    /// (one or two samples are the mean again, not a peak).
    pub peak: Option<f64>,
}

/// Samples a step needs before its highest one is called a peak.
pub const MIN_SAMPLES_FOR_PEAK: usize = 3;

impl MeanPeak {
    /// The mean of the samples, and their peak when there are enough of them.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
        mean.map(|mean| MeanPeak::with_mean(mean, &values))
    }

    /// The same series in another unit: `factor` times each value.
    pub fn times(self, factor: f64) -> Self {
        MeanPeak {
            mean: self.mean * factor,
            peak: self.peak.map(|peak| peak * factor),
        }
    }

    /// An exact mean (from counters) and the peak of the samples, when there are enough.
    pub fn with_mean(mean: f64, samples: &[f64]) -> Self {
        let peak = (samples.len() >= MIN_SAMPLES_FOR_PEAK)
            .then(|| samples.iter().copied().fold(f64::MIN, f64::max).max(mean));
        MeanPeak { mean, peak }
    }
}
