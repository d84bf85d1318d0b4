//! What a mailbox's background checks add up to: one failure can be a blip (a server
//! restarting, a network hiccup), two in a row are "Failing", and the first success after
//! that is a recovery. Admins are told of each change once.

use time::OffsetDateTime;

/// Failures in a row that make a mailbox Failing.
pub const FAILING_AFTER: i64 = 2;

/// What the checks of one mailbox found so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRecord {
    pub last_checked_at: Option<OffsetDateTime>,
    pub last_success_at: Option<OffsetDateTime>,
    pub last_failure_at: Option<OffsetDateTime>,
    /// The step that failed and what the server said.
    pub last_failure: Option<String>,
    pub consecutive_failures: i64,
    /// When the current run of failures began.
    pub failures_since: Option<OffsetDateTime>,
    /// The latest failing spell that ended: when it ended, and since when it had failed.
    pub recovered: Option<(OffsetDateTime, OffsetDateTime)>,
}

/// The state a mailbox's checks show, for pages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    /// Not checked in the background yet.
    Unchecked,
    Passing,
    /// Its last check failed, the one before did not.
    FailedOnce,
    Failing,
}

impl CheckState {
    /// Every state, for metrics that report each one (zero included).
    pub const ALL: [Self; 4] = [
        Self::Unchecked,
        Self::Passing,
        Self::FailedOnce,
        Self::Failing,
    ];

    /// A metrics label: never change a released one.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unchecked => "unchecked",
            Self::Passing => "passing",
            Self::FailedOnce => "failed_once",
            Self::Failing => "failing",
        }
    }

    /// The state of `consecutive_failures` failures in a row, after `checked` checks.
    pub fn of(checked: bool, consecutive_failures: i64) -> Self {
        match consecutive_failures {
            _ if !checked => Self::Unchecked,
            0 => Self::Passing,
            failures if failures < FAILING_AFTER => Self::FailedOnce,
            _ => Self::Failing,
        }
    }
}

/// A change admins are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The check that made it Failing; `since` is the first failure of the run.
    Failing { since: OffsetDateTime },
    /// The success that ended a failing spell begun at `since`.
    Recovered { since: OffsetDateTime },
}

impl CheckRecord {
    pub fn state(&self) -> CheckState {
        CheckState::of(self.last_checked_at.is_some(), self.consecutive_failures)
    }

    /// Failing since when, with what the server said last.
    pub fn failing(&self) -> Option<(OffsetDateTime, &str)> {
        match self.state() {
            CheckState::Failing => Some((
                self.failures_since?,
                self.last_failure.as_deref().unwrap_or_default(),
            )),
            _ => None,
        }
    }

    /// This record after one more check at `now`: `Ok(())` passed, `Err(words)` failed.
    /// Says when the check changed the state admins are told about.
    pub fn after(
        &self,
        outcome: Result<(), &str>,
        now: OffsetDateTime,
    ) -> (Self, Option<Transition>) {
        let mut next = self.clone();
        next.last_checked_at = Some(now);
        let was_failing = self.state() == CheckState::Failing;
        match outcome {
            Ok(()) => {
                next.last_success_at = Some(now);
                next.consecutive_failures = 0;
                next.failures_since = None;
                let recovered = self.failures_since.filter(|_| was_failing);
                if let Some(since) = recovered {
                    next.recovered = Some((now, since));
                }
                (next, recovered.map(|since| Transition::Recovered { since }))
            }
            Err(words) => {
                next.last_failure_at = Some(now);
                next.last_failure = Some(words.to_owned());
                next.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let since = *next.failures_since.get_or_insert(now);
                let became_failing = !was_failing && next.state() == CheckState::Failing;
                (
                    next,
                    became_failing.then_some(Transition::Failing { since }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn two_failures_in_a_row_are_failing_and_the_next_success_a_recovery_each_told_once() {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let hour = |n| start + Duration::hours(n);
        let never = CheckRecord::default();
        assert_eq!(never.state(), CheckState::Unchecked);

        let (passed, told) = never.after(Ok(()), hour(0));
        assert_eq!((passed.state(), told), (CheckState::Passing, None));

        let (once, told) = passed.after(Err("Sign-in failed: refused"), hour(1));
        assert_eq!((once.state(), told), (CheckState::FailedOnce, None));
        assert_eq!(once.failing(), None);

        let (twice, told) = once.after(Err("Sign-in failed: refused again"), hour(2));
        assert_eq!(twice.state(), CheckState::Failing);
        assert_eq!(told, Some(Transition::Failing { since: hour(1) }));
        assert_eq!(
            twice.failing(),
            Some((hour(1), "Sign-in failed: refused again"))
        );

        // Still failing: nothing new to tell.
        let (thrice, told) = twice.after(Err("Sign-in failed: refused"), hour(3));
        assert_eq!((thrice.state(), told), (CheckState::Failing, None));
        assert_eq!(thrice.consecutive_failures, 3);

        let (back, told) = thrice.after(Ok(()), hour(4));
        assert_eq!(back.state(), CheckState::Passing);
        assert_eq!(told, Some(Transition::Recovered { since: hour(1) }));
        assert_eq!(back.recovered, Some((hour(4), hour(1))));
        assert_eq!(back.failures_since, None);
        // The last failure stays on record beside the success.
        assert_eq!(back.last_failure_at, Some(hour(3)));

        let (again, told) = back.after(Ok(()), hour(5));
        assert_eq!((again.state(), told), (CheckState::Passing, None));
    }

    #[test]
    fn a_single_failure_between_successes_is_a_blip_never_told() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let (once, _) = CheckRecord::default().after(Err("TCP connection failed"), now);
        let (back, told) = once.after(Ok(()), now + Duration::hours(1));
        assert_eq!(told, None);
        assert_eq!(back.recovered, None);
        assert_eq!(back.failures_since, None);
    }
}
