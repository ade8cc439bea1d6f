//! Plain progress lines for output that is not a terminal (a log file, CI, a batch job),
//! where the progress bar is hidden: a line now and then with the step, the training
//! loss, images/s and the time left, as Keras' `fit` logs.

use std::time::{Duration, Instant};

/// Seconds between two plain progress lines.
pub const EVERY: Duration = Duration::from_secs(10);

/// Says when the next plain line is due: at the first tick, then every `EVERY`.
pub struct Ticker {
    last: Option<Instant>,
    every: Duration,
}

impl Ticker {
    pub fn new(every: Duration) -> Ticker {
        Ticker { last: None, every }
    }

    /// Whether a line is due now (and if so, the next one is `every` later).
    pub fn due(&mut self) -> bool {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// `1h02m`, `3m05s`, `42s`: a duration as a log line shows it.
pub fn human(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Seconds left of a run at `step` of `max_steps` (steps per second so far) and/or before
/// a `deadline`: whichever ends it first.
pub fn eta(
    step: u64,
    max_steps: Option<u64>,
    steps_per_second: f64,
    deadline: Option<Instant>,
) -> Option<f64> {
    let by_steps = max_steps
        .filter(|_| steps_per_second > 0.0)
        .map(|m| m.saturating_sub(step) as f64 / steps_per_second);
    let by_time = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
    match (by_steps, by_time) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(human(42.4), "42s");
        assert_eq!(human(185.0), "3m05s");
        assert_eq!(human(3720.0), "1h02m");
        assert_eq!(human(f64::NAN), "?");
    }

    #[test]
    fn the_eta_is_the_nearer_end() {
        assert_eq!(eta(10, Some(110), 2.0, None), Some(50.0));
        assert_eq!(eta(10, None, 2.0, None), None);
        let soon = Instant::now() + Duration::from_secs(5);
        assert!(eta(10, Some(110), 2.0, Some(soon)).unwrap() <= 5.0);
    }

    #[test]
    fn the_first_tick_is_due_and_the_next_waits() {
        let mut t = Ticker::new(Duration::from_secs(3600));
        assert!(t.due());
        assert!(!t.due());
        let mut t = Ticker::new(Duration::ZERO);
        assert!(t.due() && t.due());
    }
}
