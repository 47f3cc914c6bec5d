//! How figures read, the same in the terminal, the HTML report and `compare`: milliseconds,
//! one decimal, CPU as mean%/peak%, and the stop rules in words.

use crate::model::facts::PlanFacts;

/// "12.3ms", or "-" when there is no value (no request succeeded).
pub fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}ms"))
}

/// "12.3", or "-" when there is no value.
pub fn one_decimal(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

/// "mean%/peak%", or "-" unless both were measured.
pub fn cpu_mean_peak(mean: Option<f64>, peak: Option<f64>) -> String {
    match (mean, peak) {
        (Some(mean), Some(peak)) => format!("{mean:.0}%/{peak:.0}%"),
        (Some(mean), None) => format!("{mean:.0}%/-"),
        _ => "-".to_owned(),
    }
}

/// The stop rules a run had, in words; None when it had none (`--no-stop`).
pub fn stop_rules(plan: &PlanFacts) -> Option<String> {
    let mut stops = Vec::new();
    if let Some(rate) = plan.stop_failure_rate {
        stops.push(format!("failure rate >= {rate}"));
    }
    if let Some(p99) = plan.stop_p99_ms {
        stops.push(format!("p99 > {p99}ms"));
    }
    if plan.stop_when_unresponsive {
        stops.push("server unresponsive".to_owned());
    }
    (!stops.is_empty()).then(|| stops.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_figures_read_as_a_dash() {
        assert_eq!(ms(Some(12.345)), "12.3ms");
        assert_eq!(ms(None), "-");
        assert_eq!(one_decimal(Some(0.06)), "0.1");
        assert_eq!(one_decimal(None), "-");
        assert_eq!(cpu_mean_peak(Some(35.4), Some(51.0)), "35%/51%");
        assert_eq!(cpu_mean_peak(Some(35.4), None), "35%/-");
        assert_eq!(cpu_mean_peak(None, None), "-");
    }
}
