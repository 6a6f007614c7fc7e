//! `[fetch]` in cluster.toml: how long downloads may wait on their sources, validated.

use std::ops::Range;
use std::time::Duration;

use crate::raw::RawFetch;

/// Largest `idle-timeout-seconds`: an hour without a byte is never a live transfer.
pub const MAX_IDLE_TIMEOUT_SECONDS: u64 = 3_600;

/// Largest `deadline-seconds`: one day for one download.
pub const MAX_DEADLINE_SECONDS: u64 = 86_400;

/// `[fetch]`, validated; a key left out is `None` and the tool's default applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchSettings {
    /// `idle-timeout-seconds`: no byte from a source for this long ends the try as a stall.
    pub idle_timeout: Option<Duration>,
    /// `deadline-seconds`: limit for one download over all its sources, tries and backoffs.
    pub deadline: Option<Duration>,
}

/// Checks `[fetch]`, reporting each bad value through `err(span, key, message)`.
pub(crate) fn validate(
    raw: &RawFetch,
    err: &mut dyn FnMut(Range<usize>, &str, String),
) -> FetchSettings {
    let mut seconds = |value: &Option<toml::Spanned<u64>>, key: &str, max: u64| {
        let v = value.as_ref()?;
        let n = *v.get_ref();
        if n == 0 || n > max {
            err(
                v.span(),
                key,
                format!("expected a number of seconds from 1 to {max}, found {n}"),
            );
            return None;
        }
        Some(Duration::from_secs(n))
    };
    let idle_timeout = seconds(
        &raw.idle_timeout_seconds,
        "fetch.idle-timeout-seconds",
        MAX_IDLE_TIMEOUT_SECONDS,
    );
    let deadline = seconds(
        &raw.deadline_seconds,
        "fetch.deadline-seconds",
        MAX_DEADLINE_SECONDS,
    );
    if let (Some(idle), Some(limit), Some(v)) = (idle_timeout, deadline, &raw.deadline_seconds) {
        if limit < idle {
            err(
                v.span(),
                "fetch.deadline-seconds",
                format!(
                    "the deadline ({} s) is shorter than fetch.idle-timeout-seconds ({} s)",
                    limit.as_secs(),
                    idle.as_secs()
                ),
            );
        }
    }
    FetchSettings {
        idle_timeout,
        deadline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (FetchSettings, Vec<String>) {
        let raw: RawFetch = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        let settings = validate(&raw, &mut |span, key, msg| {
            errors.push(format!("{}: {key}: {msg}", &text[span]))
        });
        (settings, errors)
    }

    #[test]
    fn left_out_keys_keep_the_defaults_and_given_ones_are_seconds() {
        assert_eq!(check(""), (FetchSettings::default(), vec![]));
        let (s, errors) = check("idle-timeout-seconds = 10\ndeadline-seconds = 90\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.idle_timeout, Some(Duration::from_secs(10)));
        assert_eq!(s.deadline, Some(Duration::from_secs(90)));
    }

    #[test]
    fn out_of_range_values_are_refused_at_their_key() {
        let (s, errors) = check("idle-timeout-seconds = 0\ndeadline-seconds = 86401\n");
        assert_eq!(s, FetchSettings::default());
        assert_eq!(
            errors,
            vec![
                "0: fetch.idle-timeout-seconds: expected a number of seconds from 1 to 3600, found 0",
                "86401: fetch.deadline-seconds: expected a number of seconds from 1 to 86400, found 86401",
            ]
        );
        let (_, errors) = check("idle-timeout-seconds = 60\ndeadline-seconds = 30\n");
        assert_eq!(
            errors,
            vec!["30: fetch.deadline-seconds: the deadline (30 s) is shorter than fetch.idle-timeout-seconds (60 s)"]
        );
    }
}
