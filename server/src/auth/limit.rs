//! Rate limits for password sign-in and sign-up: failures counted per key
//! (an account, a client address) in a sliding window, in memory. Each node
//! counts on its own; a determined attacker spread over many addresses is
//! still slowed by the per-account limit.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Keys tracked before old ones are swept out.
const SWEEP_AT: usize = 10_000;

/// Counts events per key; a key with `max` events in the last `window` is
/// limited until the oldest of them leaves the window.
#[derive(Debug)]
pub struct Limiter {
    max: usize,
    window: Duration,
    // A std Mutex: held only for a few map operations, never across `.await`.
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    pub fn new(max: usize, window: Duration) -> Self {
        Self {
            max,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `key` is limited: how long until it may try again.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    /// [`check`](Self::check) as of `now`.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let Some(times) = events.get_mut(key) else {
            return Ok(());
        };
        self.expire(times, now);
        match times.front() {
            Some(&oldest) if times.len() >= self.max => {
                Err(self.window.saturating_sub(now - oldest))
            }
            _ => Ok(()),
        }
    }

    /// Counts one event (a failure) for `key`.
    pub fn record(&self, key: &str) {
        self.record_at(key, Instant::now())
    }

    /// [`record`](Self::record) as of `now`.
    pub fn record_at(&self, key: &str, now: Instant) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() >= SWEEP_AT {
            events.retain(|_, times| {
                times.retain(|&t| now - t < self.window);
                !times.is_empty()
            });
        }
        let times = events.entry(key.to_owned()).or_default();
        self.expire(times, now);
        times.push_back(now);
        // Never more than needed to decide.
        while times.len() > self.max {
            times.pop_front();
        }
    }

    /// Forgets `key` (after a successful sign-in).
    pub fn clear(&self, key: &str) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.remove(key);
    }

    fn expire(&self, times: &mut VecDeque<Instant>, now: Instant) {
        while times.front().is_some_and(|&t| now - t >= self.window) {
            times.pop_front();
        }
    }
}

/// The limits password sign-in and sign-up use.
#[derive(Debug)]
pub struct Limits {
    /// Failed sign-ins per account (its email key).
    pub account_failures: Limiter,
    /// Failed sign-ins per client address.
    pub ip_failures: Limiter,
    /// Sign-ups per client address (each one costs a password hash).
    pub ip_sign_ups: Limiter,
    /// OpenID sign-ins started per client address (each one stores a row
    /// until it expires).
    pub ip_flow_starts: Limiter,
}

impl Default for Limits {
    fn default() -> Self {
        let quarter_hour = Duration::from_secs(15 * 60);
        Self {
            account_failures: Limiter::new(5, quarter_hour),
            ip_failures: Limiter::new(20, quarter_hour),
            ip_sign_ups: Limiter::new(10, Duration::from_secs(3600)),
            ip_flow_starts: Limiter::new(60, Duration::from_secs(10 * 60)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_after_max_events_in_the_window_and_forgets_old_ones() {
        // An injected clock: the test does not depend on how fast it runs.
        let window = Duration::from_millis(200);
        let limiter = Limiter::new(2, window);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(limiter.check_at("a", at(0)).is_ok());
        limiter.record_at("a", at(0));
        limiter.record_at("a", at(50));
        assert_eq!(
            limiter.check_at("a", at(60)),
            Err(window - (at(60) - at(0)))
        );
        assert!(
            limiter.check_at("b", at(60)).is_ok(),
            "keys are independent"
        );
        assert!(
            limiter.check_at("a", at(199)).is_err(),
            "still limited just inside the window"
        );
        assert!(
            limiter.check_at("a", at(200)).is_ok(),
            "the window slid past the oldest"
        );
        limiter.record_at("a", at(210));
        assert!(
            limiter.check_at("a", at(240)).is_err(),
            "the event at 50 and the one at 210 are both in the window"
        );
        assert!(limiter.check_at("a", at(250)).is_ok(), "50 has left");
        limiter.record_at("a", at(260));
        limiter.clear("a");
        assert!(limiter.check_at("a", at(260)).is_ok());
    }
}
