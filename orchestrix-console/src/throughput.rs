//! A projection's throughput as the console shows it: events handled per
//! second between two looks at its status at least [`MIN_SPAN`] apart.
//!
//! The runner reports counts, not rates; the console samples them when the
//! projections page is rendered. It keeps the two latest samples that are at
//! least [`MIN_SPAN`] apart, so a page reloaded quickly (or by two operators
//! at once) shows the rate over the last span of a second or more rather
//! than a burst over milliseconds. The first look shows no rate. A counter
//! that goes down (the runner was restarted and counts from 0 again) starts
//! the sampling over.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The shortest span a rate is measured over.
pub(crate) const MIN_SPAN: Duration = Duration::from_secs(1);

/// The samples of one projection.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    samples: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    /// The sample the rate is measured from.
    older: Option<(Instant, u64)>,
    /// The latest sample at least `MIN_SPAN` after `older`.
    newer: Option<(Instant, u64)>,
}

impl Throughput {
    /// Records that `handled` events were handled at `now`, and returns the
    /// rate in events per second over the latest span of at least
    /// [`MIN_SPAN`], if there is one.
    pub(crate) fn observe(&self, now: Instant, handled: u64) -> Option<f64> {
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = samples.newer.or(samples.older);
        if last.is_some_and(|(_, count)| handled < count) {
            *samples = Samples { older: Some((now, handled)), newer: None };
            return None;
        }
        match (samples.older, samples.newer) {
            (None, _) => samples.older = Some((now, handled)),
            (Some((from, _)), None) if now.duration_since(from) >= MIN_SPAN => samples.newer = Some((now, handled)),
            (Some(_), Some((at, _))) if now.duration_since(at) >= MIN_SPAN => {
                samples.older = samples.newer;
                samples.newer = Some((now, handled));
            }
            _ => {}
        }
        let ((from, first), (to, second)) = (samples.older?, samples.newer?);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        Some((second - first) as f64 / to.duration_since(from).as_secs_f64())
    }
}

/// A rate for people: `1,234/s`, `12.5/s`, `0/s`.
pub(crate) fn format_rate(rate: f64) -> String {
    if rate >= 100.0 {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rounded, non-negative, small
        let whole = rate.round() as u64;
        let digits = whole.to_string();
        let mut grouped = String::new();
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        format!("{grouped}/s")
    } else if rate > 0.0 {
        format!("{rate:.1}/s")
    } else {
        "0/s".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_look_has_no_rate_and_later_ones_measure_a_second_or_more() {
        let throughput = Throughput::default();
        let start = Instant::now();
        assert_eq!(throughput.observe(start, 0), None);
        // Within a second of the first: still no span to measure.
        assert_eq!(throughput.observe(start + Duration::from_millis(300), 50), None);
        assert_eq!(throughput.observe(start + Duration::from_secs(2), 400), Some(200.0));
        // A quick reload measures the same span again.
        assert_eq!(throughput.observe(start + Duration::from_millis(2100), 500), Some(200.0));
        // A second later the span moves on: 600 events in 1.5 s.
        assert_eq!(throughput.observe(start + Duration::from_millis(3500), 1000), Some(400.0));
    }

    #[test]
    fn a_counter_that_goes_down_starts_over() {
        let throughput = Throughput::default();
        let start = Instant::now();
        throughput.observe(start, 0);
        assert_eq!(throughput.observe(start + Duration::from_secs(1), 100), Some(100.0));
        assert_eq!(throughput.observe(start + Duration::from_secs(2), 5), None, "a restarted runner");
        assert_eq!(throughput.observe(start + Duration::from_secs(4), 25), Some(10.0));
    }

    #[test]
    fn rates_read_well() {
        assert_eq!(format_rate(0.0), "0/s");
        assert_eq!(format_rate(12.54), "12.5/s");
        assert_eq!(format_rate(1234.4), "1,234/s");
        assert_eq!(format_rate(1_234_567.0), "1,234,567/s");
    }
}
