//! [`SavePoints`]: Redis's `save <seconds> <changes>` rules, parsed and applied.

use std::fmt;

/// When to start a background snapshot, as Redis's `save` setting says it: after
/// `seconds` have passed since the last successful save *and* at least `changes` writes
/// happened, for any of the points. Parses and prints Redis's form
/// (`"3600 1 300 100 60 10000"`, the default; `""` disables).
///
/// ```
/// use forksnap::SavePoints;
/// let points: SavePoints = "900 1 300 10".parse().unwrap();
/// assert_eq!(points.to_string(), "900 1 300 10");
/// // 12 changes, 301 s since the last save, last attempt fine: the second point is due.
/// assert_eq!(points.due(12, 301, 301, true), Some((300, 10)));
/// assert_eq!(points.due(12, 299, 299, true), None);
/// assert!("900".parse::<SavePoints>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavePoints(Vec<(u64, u64)>);

/// Redis waits this long after a failed background save before trying again
/// (`CONFIG_BGSAVE_RETRY_DELAY`).
const RETRY_DELAY_SECS: u64 = 5;

impl SavePoints {
    /// No save points: snapshots only when asked.
    pub fn none() -> Self {
        SavePoints(Vec::new())
    }

    /// The (seconds, changes) points.
    pub fn points(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Whether any point is set (Redis saves at `SHUTDOWN` only then).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The point that is due, as Redis's `serverCron` decides: `changes` writes since the
    /// last save, `secs_since_save` since the last successful one, and a failed last
    /// attempt (`last_ok` false) is retried only `5 s` after it (`secs_since_try`).
    pub fn due(
        &self,
        changes: u64,
        secs_since_save: u64,
        secs_since_try: u64,
        last_ok: bool,
    ) -> Option<(u64, u64)> {
        self.0.iter().copied().find(|&(secs, min_changes)| {
            changes >= min_changes
                && secs_since_save > secs
                && (last_ok || secs_since_try > RETRY_DELAY_SECS)
        })
    }
}

impl Default for SavePoints {
    /// Redis 7's default: `3600 1 300 100 60 10000`.
    fn default() -> Self {
        SavePoints(vec![(3600, 1), (300, 100), (60, 10000)])
    }
}

impl fmt::Display for SavePoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (s, c)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s} {c}")?;
        }
        Ok(())
    }
}

/// A `save` value that is not pairs of non-negative integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavePointsError(String);

impl fmt::Display for SavePointsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid save parameters {:?}: expected \"<seconds> <changes> ...\"", self.0)
    }
}

impl std::error::Error for SavePointsError {}

impl std::str::FromStr for SavePoints {
    type Err = SavePointsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SavePointsError(s.to_string());
        let nums: Vec<u64> = s
            .split_whitespace()
            .map(|w| w.parse().map_err(|_| err()))
            .collect::<Result<_, _>>()?;
        if !nums.len().is_multiple_of(2) {
            return Err(err());
        }
        Ok(SavePoints(nums.chunks(2).map(|p| (p[0], p[1])).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_save_is_retried_after_five_seconds_only() {
        let p: SavePoints = "60 1".parse().unwrap();
        assert_eq!(p.due(1, 100, 3, false), None);
        assert_eq!(p.due(1, 100, 6, false), Some((60, 1)));
        assert_eq!(p.due(0, 100, 100, true), None);
        assert!(SavePoints::none().due(u64::MAX, u64::MAX, u64::MAX, true).is_none());
        assert_eq!("".parse::<SavePoints>().unwrap(), SavePoints::none());
        assert!("60 x".parse::<SavePoints>().is_err());
        assert_eq!(SavePoints::default().to_string(), "3600 1 300 100 60 10000");
    }
}
