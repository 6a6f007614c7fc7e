//! The try-each-source loop: sources in order, transient failures retried with capped
//! exponential backoff, the classification of each error deciding what comes next.

use std::thread;
use std::time::Duration;

use crate::client::TransportOptions;
use crate::error::{error_chain, Attempt, Classify, Reaction, TransportError};

/// First backoff delay; doubled on each retry up to [`TransportOptions::max_backoff`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Delay before retry number `retry` (0-based), capped at `max`.
pub fn backoff(retry: u32, max: Duration) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << retry.min(16)).min(max)
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
pub fn try_sources<S: Clone, T, E: Classify + std::error::Error>(
    what: &str,
    sources: &[S],
    opts: &TransportOptions,
    name: impl Fn(&S) -> String,
    mut on_fail: impl FnMut(&S, &E),
    mut attempt: impl FnMut(&S) -> Result<T, E>,
) -> Result<Success<S, T, E>, Exhausted<E>> {
    let mut attempts = Vec::new();
    for source in sources {
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match attempt(source) {
                Ok(value) => {
                    return Ok(Success {
                        source: source.clone(),
                        value,
                        skipped: attempts,
                    })
                }
                Err(e) => e,
            };
            match error.reaction() {
                Reaction::Fatal => return Err(Exhausted::Fatal(error)),
                Reaction::Retry if tries <= opts.retries => {
                    let delay = backoff(tries - 1, opts.max_backoff);
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
