//! Debian version ordering (dpkg's algorithm) and version-prefix matching.

use std::cmp::Ordering;

/// Compares two Debian versions (`[epoch:]upstream[-revision]`) as dpkg does.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua, ub))
        .then_with(|| verrevcmp(ra, rb))
}

/// Whether `version` starts with `prefix` at a component boundary: `3.4.23` matches
/// `3.4.23-4+b6` and `1:3.4.23-1` but `3.4.2` does not match `3.4.23-1`.
pub fn version_matches(version: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return true;
    }
    let without_epoch = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => version,
    };
    [version, without_epoch].iter().any(|v| {
        v.strip_prefix(prefix).is_some_and(|rest| {
            // A prefix ending in a digit must not stop in the middle of a number.
            let ends_in_digit = prefix.bytes().last().is_some_and(|b| b.is_ascii_digit());
            !(ends_in_digit && rest.bytes().next().is_some_and(|b| b.is_ascii_digit()))
        })
    })
}

fn split(v: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (e.parse().unwrap_or(0), rest),
        None => (0, v),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's character weight: `~` before everything (even the end), letters before other symbols.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn orders_like_dpkg() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0", "1.0+b1", Less),
            ("1:0.9", "2.0", Greater),
            ("3.4.23-4+b6", "3.4.23-4", Greater),
            ("3.4.23-4+b6", "3.4.23-10", Less),
            ("9.1-1", "9.1-1+deb12u1", Less),
            ("1.10", "1.9", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0-1", "1.0", Greater),
            ("2.0.01", "2.0.1", Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn prefixes_match_at_boundaries() {
        assert!(version_matches("3.4.23-4+b6", "3.4.23"));
        assert!(version_matches("3.4.23-4+b6", "3.4"));
        assert!(version_matches("1:3.4.23-1", "3.4.23"));
        assert!(version_matches("1:3.4.23-1", "1:3.4"));
        assert!(!version_matches("3.4.23-1", "3.4.2"));
        assert!(!version_matches("3.5.0-1", "3.4"));
        assert!(version_matches("anything", ""));
    }
}
