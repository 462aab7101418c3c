//! Pacing of group creation per instance, so numbers are not banned for creating groups too fast.
//!
//! A policy has a minimum interval, a burst and a daily cap. It is read as a token bucket (GCRA): up to `burst`
//! creations may go back to back, the long-run rate is one per `min_interval_secs`, and no more than `daily_cap`
//! creations fall in any 24 hours. Everything is computed from the instance's recent attempts, so it survives
//! restarts and needs no timer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PacingPolicy {
    /// Long-run least time between creations, in seconds (0: no limit; at most 86400).
    #[schema(example = 300, minimum = 0, maximum = 86400)]
    pub min_interval_secs: u64,
    /// Creations that may go back to back before the interval applies (at least 1).
    #[schema(example = 1, minimum = 1)]
    pub burst: u32,
    /// Most creations in any 24 hours (absent: no cap).
    #[schema(example = 30, minimum = 1)]
    pub daily_cap: Option<u32>,
}

impl PacingPolicy {
    /// No pacing at all.
    pub const UNLIMITED: Self = Self { min_interval_secs: 0, burst: 1, daily_cap: None };
    /// What a real number is kept to unless configured otherwise: one creation per 5 minutes, 30 a day.
    pub const REAL_NUMBER: Self = Self { min_interval_secs: 300, burst: 1, daily_cap: Some(30) };

    pub fn validate(&self) -> Result<(), String> {
        if self.burst == 0 {
            return Err("burst must be at least 1".into());
        }
        if self.daily_cap == Some(0) {
            return Err("daily_cap must be at least 1 (leave it out for no cap)".into());
        }
        if self.min_interval_secs > DAY.as_secs() {
            return Err("min_interval_secs must be at most 86400 (one day)".into());
        }
        Ok(())
    }

    /// Whether `next_allowed` reads the attempts at all: a policy with no interval and no daily cap allows every
    /// creation whatever came before, so callers can skip reading a day of attempts (which grows with the rate).
    pub fn needs_history(&self) -> bool {
        self.min_interval_secs > 0 || self.daily_cap.is_some()
    }

    /// The earliest time a new creation is allowed, given the times of the attempts of the last 24 hours (any
    /// order) and a pause the network imposed. `now` or earlier means: allowed now.
    pub fn next_allowed(&self, recent: &[Timestamp], paused_until: Option<Timestamp>, now: Timestamp) -> Timestamp {
        let mut times: Vec<Timestamp> = recent.iter().copied().filter(|t| t.plus(DAY) > now).collect();
        times.sort();
        let interval = Duration::from_secs(self.min_interval_secs);
        // GCRA: the theoretical arrival time after the recent attempts; a new one may come `burst - 1` intervals early.
        let mut tat: Option<Timestamp> = None;
        for t in &times {
            tat = Some(tat.map_or(*t, |tat| tat.max(*t)).plus(interval));
        }
        let by_rate = tat.map(|tat| {
            let early = interval.saturating_mul(self.burst.saturating_sub(1));
            Timestamp::from_millis(tat.as_millis() - i64::try_from(early.as_millis()).unwrap_or(i64::MAX))
        });
        let by_day = self.daily_cap.and_then(|cap| {
            let cap = cap.max(1) as usize;
            (times.len() >= cap).then(|| times[times.len() - cap].plus(DAY))
        });
        [Some(now), by_rate, by_day, paused_until].into_iter().flatten().max().unwrap_or(now)
    }

    /// The least time `count` creations take under this policy from an idle start: what a campaign is measured
    /// against.
    pub fn minimum_duration(&self, count: u64) -> Duration {
        if count == 0 {
            return Duration::ZERO;
        }
        let interval = Duration::from_secs(self.min_interval_secs);
        let paced = count.saturating_sub(u64::from(self.burst));
        let by_rate = interval.saturating_mul(u32::try_from(paced).unwrap_or(u32::MAX));
        let by_day = match self.daily_cap {
            Some(cap) if count > u64::from(cap) => {
                DAY.saturating_mul(u32::try_from((count - 1) / u64::from(cap)).unwrap_or(u32::MAX))
            }
            _ => Duration::ZERO,
        };
        by_rate.max(by_day)
    }
}

/// One number of a pool, as a forecast sees it.
#[derive(Clone, Debug)]
pub struct PoolNumber {
    pub policy: PacingPolicy,
    /// Its attempts of the last 24 hours.
    pub recent: Vec<Timestamp>,
    pub paused_until: Option<Timestamp>,
}

/// When the last of `count` creations may start from `now`, each going to whichever number of `pool` may create
/// soonest, as the queue sends them; `None` when there is nothing to place. Network refusals and failures are not
/// foreseen: this is the earliest pacing allows.
pub fn forecast_last(pool: &[PoolNumber], count: usize, now: Timestamp) -> Option<Timestamp> {
    let mut pool = pool.to_vec();
    let mut last = None;
    for _ in 0..count {
        let (number, at) = pool
            .iter_mut()
            .map(|n| {
                let at = n.policy.next_allowed(&n.recent, n.paused_until, now);
                (n, at)
            })
            .min_by_key(|(_, at)| *at)?;
        number.recent.push(at);
        last = Some(at);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forecast_places_each_creation_on_the_number_free_soonest() {
        let now = Timestamp::from_millis(1_000_000);
        let every_five_minutes =
            PoolNumber { policy: PacingPolicy::REAL_NUMBER, recent: Vec::new(), paused_until: None };
        let paused =
            PoolNumber { paused_until: Some(now.plus(Duration::from_secs(3_600))), ..every_five_minutes.clone() };
        let two = [every_five_minutes.clone(), every_five_minutes.clone()];

        assert_eq!(forecast_last(&two, 0, now), None);
        assert_eq!(forecast_last(&[], 3, now), None);
        assert_eq!(forecast_last(&two, 2, now), Some(now), "one each, at once");
        assert_eq!(forecast_last(&two, 4, now), Some(now.plus(Duration::from_secs(300))));
        // The paused number takes none of five creations until its pause ends (after 12 intervals of the other).
        assert_eq!(
            forecast_last(&[every_five_minutes.clone(), paused], 5, now),
            Some(now.plus(Duration::from_secs(1_200)))
        );
        // A daily cap of 30: the 31st waits a day after the first.
        assert_eq!(forecast_last(&[every_five_minutes], 31, now), Some(now.plus(DAY)));
    }

    #[test]
    fn a_policy_that_needs_no_history_allows_the_same_with_or_without_it() {
        let now = at(86_000);
        let history: Vec<Timestamp> = (0..500).map(|i| at(i * 100)).chain([now]).collect();
        let paused = Some(now.plus(Duration::from_secs(60)));
        for policy in [
            PacingPolicy { min_interval_secs: 0, burst: 1, daily_cap: None },
            PacingPolicy { min_interval_secs: 0, burst: 5, daily_cap: None },
        ] {
            assert!(!policy.needs_history());
            for pause in [None, paused] {
                assert_eq!(policy.next_allowed(&history, pause, now), policy.next_allowed(&[], pause, now));
            }
        }
        for policy in [
            PacingPolicy { min_interval_secs: 1, burst: 1, daily_cap: None },
            PacingPolicy { min_interval_secs: 0, burst: 1, daily_cap: Some(400) },
        ] {
            assert!(policy.needs_history());
            assert_ne!(policy.next_allowed(&history, None, now), policy.next_allowed(&[], None, now), "{policy:?}");
        }
    }

    const T0: Timestamp = Timestamp::from_millis(1_795_392_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    /// Creates as early as the policy allows for `days`, returning every creation time.
    fn run(policy: PacingPolicy, days: u64) -> Vec<Timestamp> {
        let end = at(days * 86_400);
        let mut done: Vec<Timestamp> = Vec::new();
        let mut now = T0;
        while now < end {
            let next = policy.next_allowed(&done, None, now);
            if next >= end {
                break;
            }
            now = next;
            done.push(now);
        }
        done
    }

    #[test]
    fn a_week_of_a_real_number_is_thirty_a_day_five_minutes_apart() {
        let times = run(PacingPolicy::REAL_NUMBER, 7);
        assert_eq!(times.len(), 7 * 30);
        for pair in times.windows(2) {
            assert!(pair[0].until(pair[1]) >= Duration::from_secs(300));
        }
        for (i, t) in times.iter().enumerate() {
            let in_window = times.iter().filter(|u| **u <= *t && u.plus(DAY) > *t).count();
            assert!(in_window <= 30, "creation {i} has {in_window} in its 24 hours");
        }
    }

    #[test]
    fn a_burst_goes_back_to_back_then_the_interval_applies() {
        let policy = PacingPolicy { min_interval_secs: 60, burst: 3, daily_cap: None };
        let times = run(policy, 1);
        assert_eq!(&times[..4], &[at(0), at(0), at(0), at(60)]);
        assert_eq!(times.len(), 3 + 1439, "three at once, then one a minute");
    }

    #[test]
    fn a_pause_from_the_network_holds_everything() {
        let policy = PacingPolicy::UNLIMITED;
        assert_eq!(policy.next_allowed(&[], Some(at(3600)), T0), at(3600));
        assert_eq!(policy.next_allowed(&[], Some(at(10)), at(20)), at(20));
    }

    #[test]
    fn attempts_older_than_a_day_do_not_count() {
        let policy = PacingPolicy { min_interval_secs: 0, burst: 1, daily_cap: Some(1) };
        assert_eq!(policy.next_allowed(&[at(0)], None, at(10)), at(86_400));
        assert_eq!(policy.next_allowed(&[at(0)], None, at(86_400)), at(86_400));
    }

    #[test]
    fn the_minimum_duration_matches_a_run() {
        let policy = PacingPolicy::REAL_NUMBER;
        assert_eq!(policy.minimum_duration(25), Duration::from_secs(24 * 300));
        assert_eq!(policy.minimum_duration(31), DAY);
        assert_eq!(PacingPolicy::UNLIMITED.minimum_duration(1000), Duration::ZERO);
        let times = run(policy, 1);
        assert_eq!(T0.until(times[24]), policy.minimum_duration(25));
    }

    #[test]
    fn policies_are_validated() {
        assert!(PacingPolicy { burst: 0, ..PacingPolicy::UNLIMITED }.validate().is_err());
        assert!(PacingPolicy { daily_cap: Some(0), ..PacingPolicy::UNLIMITED }.validate().is_err());
        assert!(PacingPolicy::REAL_NUMBER.validate().is_ok());
    }
}
