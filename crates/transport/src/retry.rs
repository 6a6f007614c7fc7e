//! The try-each-source loop: sources in order, transient failures retried with capped
//! exponential backoff, the classification of each error deciding what comes next, and
//! one deadline over it all.

use std::thread;
use std::time::{Duration, Instant};

use crate::client::TransportOptions;
use crate::error::{error_chain, Attempt, Classify, Reaction, TransportError};

/// First backoff delay; doubled on each retry up to [`TransportOptions::max_backoff`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Delay before retry number `retry` (0-based), capped at `max`.
pub fn backoff(retry: u32, max: Duration) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << retry.min(16)).min(max)
}

/// The time one download may take over all its sources, tries and backoffs; started by
/// [`try_sources`] and handed to each attempt so no wait on a server outlasts it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    limit: Duration,
}

impl Deadline {
    /// A deadline `limit` from now.
    pub fn start(limit: Duration) -> Deadline {
        Deadline {
            start: Instant::now(),
            limit,
        }
    }

    /// The limit it was started with.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.start.elapsed())
    }

    /// Whether it has passed.
    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The longest one wait on a server may last: `idle`, or less when the deadline is
    /// nearer (never zero, which the client would take as "no limit").
    pub fn wait(&self, idle: Duration) -> Duration {
        idle.min(self.remaining()).max(Duration::from_millis(1))
    }
}

/// A source that worked, its value, and the sources given up on before it.
#[derive(Debug)]
pub struct Success<S, T, E> {
    /// The source that gave the value.
    pub source: S,
    /// What it gave.
    pub value: T,
    /// Sources given up on before it, in order.
    pub skipped: Vec<Attempt<E>>,
}

/// Why no source gave a value.
#[derive(Debug)]
pub enum Exhausted<E> {
    /// An error that stops the whole fetch (local trouble).
    Fatal(E),
    /// Every source was given up on: the last error of each, in order.
    AllFailed(Vec<Attempt<E>>),
}

impl Exhausted<TransportError> {
    /// The one error for the caller: the fatal one, or [`TransportError::AllSourcesFailed`]
    /// naming `what`.
    pub fn into_error(self, what: &str) -> TransportError {
        match self {
            Exhausted::Fatal(e) => e,
            Exhausted::AllFailed(attempts) => TransportError::AllSourcesFailed {
                what: what.to_owned(),
                attempts,
            },
        }
    }
}

/// Tries each source in turn (`name` gives its URL for logs and the attempt list),
/// retrying transient failures with capped exponential backoff; `on_fail` hears about
/// every source given up on as it happens. The first success wins.
///
/// All of it runs within one [`Deadline`] of [`TransportOptions::deadline`], passed to each
/// attempt: once it passes, the source being tried is given up on and the sources after
/// it are listed as not tried ([`TransportError::DeadlineExceeded`]).
pub fn try_sources<S: Clone, T, E: Classify + std::error::Error + From<TransportError>>(
    what: &str,
    sources: &[S],
    opts: &TransportOptions,
    name: impl Fn(&S) -> String,
    mut on_fail: impl FnMut(&S, &E),
    mut attempt: impl FnMut(&S, &Deadline) -> Result<T, E>,
) -> Result<Success<S, T, E>, Exhausted<E>> {
    let deadline = Deadline::start(opts.deadline);
    let mut attempts = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match attempt(source, &deadline) {
                Ok(value) => {
                    return Ok(Success {
                        source: source.clone(),
                        value,
                        skipped: attempts,
                    })
                }
                Err(e) => e,
            };
            let reaction = error.reaction();
            if reaction != Reaction::Fatal && deadline.passed() {
                tracing::warn!(url = %name(source), error = %error_chain(&error), limit = ?deadline.limit(), "{what}: deadline passed");
                on_fail(source, &error);
                attempts.push(Attempt {
                    url: name(source),
                    tries,
                    error,
                });
                for left in &sources[index + 1..] {
                    let error = E::from(TransportError::DeadlineExceeded {
                        url: name(left),
                        limit: deadline.limit(),
                    });
                    on_fail(left, &error);
                    attempts.push(Attempt {
                        url: name(left),
                        tries: 0,
                        error,
                    });
                }
                return Err(Exhausted::AllFailed(attempts));
            }
            match reaction {
                Reaction::Fatal => return Err(Exhausted::Fatal(error)),
                Reaction::Retry if tries <= opts.retries => {
                    // Never sleep past the deadline: the next attempt's waits are cut to
                    // what is left, and it ends the loop when nothing is.
                    let delay = backoff(tries - 1, opts.max_backoff).min(deadline.remaining());
                    tracing::warn!(
                        url = %name(source),
                        tries,
                        delay_ms = delay.as_millis() as u64,
                        error = %error_chain(&error),
                        "{what}: transient failure, retrying"
                    );
                    thread::sleep(delay);
                }
                _ => {
                    tracing::warn!(url = %name(source), error = %error_chain(&error), "{what}: giving up on this source");
                    on_fail(source, &error);
                    attempts.push(Attempt {
                        url: name(source),
                        tries,
                        error,
                    });
                    break;
                }
            }
        }
    }
    Err(Exhausted::AllFailed(attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(1);
        assert_eq!(backoff(0, max), Duration::from_millis(250));
        assert_eq!(backoff(1, max), Duration::from_millis(500));
        assert_eq!(backoff(2, max), max);
        assert_eq!(backoff(40, max), max);
    }
}
