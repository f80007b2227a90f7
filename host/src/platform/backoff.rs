//! The one pause schedule of every retry loop (calls, scheduled runs,
//! spawned calls waiting for room, failure webhooks): doubling from a
//! first pause up to a ceiling.

use std::time::Duration;

/// A doubling pause: `first`, `2 × first`, … up to `max`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Backoff {
    /// The pause before the first retry.
    pub(crate) first: Duration,
    /// The longest pause.
    pub(crate) max: Duration,
}

impl Backoff {
    /// Retries of failed calls and scheduled runs.
    pub(crate) const RETRY: Backoff = Backoff {
        first: Duration::from_millis(500),
        max: Duration::from_secs(30),
    };

    /// A deploy or rollback whose version number another host took at the
    /// same time: short pauses, so the other host's queued deploys go
    /// first and this one lands after them.
    pub(crate) const VERSION_RACE: Backoff = Backoff {
        first: Duration::from_millis(5),
        max: Duration::from_millis(250),
    };

    /// An instance that finds every slot of the host busy: the next try
    /// comes soon, since a slot frees as soon as any execution ends.
    pub(crate) const HOST_FULL: Backoff = Backoff {
        first: Duration::from_millis(1),
        max: Duration::from_millis(50),
    };

    /// The pause before retry `attempt` (the first retry is attempt 1).
    pub(crate) fn delay(self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        (self.first * (1 << doublings)).min(self.max)
    }

    /// Sleeps for [`delay`](Self::delay)`(attempt)`.
    pub(crate) async fn wait(self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_ceiling() {
        let b = Backoff::RETRY;
        let ms = |a| b.delay(a).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(7), ms(8), ms(100)],
            [500, 1000, 2000, 30_000, 30_000, 30_000]
        );
        assert_eq!(ms(0), 500);
    }
}
