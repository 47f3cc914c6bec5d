//! An outage in one line, the same in the terminal and the report: "outage 3.4 s: first
//! failure at 30.01 s, throughput back at 33.43 s; per-client gap p50 2.9 s, p99 3.4 s, max
//! 3.5 s; 1,212 failed: 1,100 refused, 112 shutdown; nothing lost".

use std::time::Duration;

use crate::model::outage::Outage;

/// The step's outage and whether any of its requests went uncounted.
pub fn line(outage: &Outage, lost: u32) -> String {
    let head = match (outage.duration(), outage.end) {
        (Some(length), Some(end)) => format!(
            "outage {}: first failure at {}, throughput back at {}",
            seconds(length, 1),
            seconds(outage.start, 2),
            seconds(end, 2)
        ),
        _ => format!(
            "outage from {} to the step's end: throughput not back{}",
            seconds(outage.start, 2),
            match outage.first_success {
                Some(first) => format!(" (a first success at {})", seconds(first, 2)),
                None => " (no success after)".to_owned(),
            }
        ),
    };
    let unrecovered = match outage.unrecovered {
        0 => String::new(),
        n => format!(", {n} client{} never back", if n == 1 { "" } else { "s" }),
    };
    let classes: Vec<String> = (outage.failures.iter())
        .map(|(class, n)| format!("{} {class}", thousands(*n)))
        .collect();
    let lost = match lost {
        0 => "nothing lost".to_owned(),
        n => format!("{} lost (uncounted: a pgstress bug)", thousands(n)),
    };
    format!(
        "{head}; per-client gap p50 {}, p99 {}, max {}{unrecovered}; {} failed: {}; {lost}",
        seconds(outage.gap_p50, 1),
        seconds(outage.gap_p99, 1),
        seconds(outage.gap_max, 1),
        thousands(outage.failed()),
        classes.join(", "),
    )
}

/// Seconds, to the millisecond below one (a reconnect's gap is a few of them).
fn seconds(duration: Duration, decimals: usize) -> String {
    let decimals = match duration < Duration::from_secs(1) {
        true => 3,
        false => decimals,
    };
    format!("{:.decimals$} s", duration.as_secs_f64())
}

/// 1212 as "1,212".
pub fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::FailureClass;

    #[test]
    fn an_outage_reads_as_the_issue_shows() {
        let ms = Duration::from_millis;
        let outage = Outage {
            start: ms(30_010),
            first_success: Some(ms(33_100)),
            end: Some(ms(33_430)),
            baseline_per_bin: Some(20.0),
            failures: vec![(FailureClass::Refused, 1100), (FailureClass::Shutdown, 112)],
            gap_p50: ms(2_900),
            gap_p99: ms(3_400),
            gap_max: ms(3_500),
            unrecovered: 0,
            gaps: Vec::new(),
            timeline: Vec::new(),
        };
        assert_eq!(
            line(&outage, 0),
            "outage 3.4 s: first failure at 30.01 s, throughput back at 33.43 s; per-client gap \
             p50 2.9 s, p99 3.4 s, max 3.5 s; 1,212 failed: 1,100 refused, 112 shutdown; nothing lost"
        );
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
