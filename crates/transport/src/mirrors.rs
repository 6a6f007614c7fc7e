//! Mirrors: URL prefix rewrites, tried in order before the original URL. Artifact URLs
//! and registry endpoints (`https://registry/v2/` rewritten to a mirror's `…/v2/prefix/`)
//! alike.

/// Ordered rewrite rules: a URL prefix and the replacement prefixes to try, in order,
/// before the original URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mirrors {
    rules: Vec<(String, Vec<String>)>,
}

impl Mirrors {
    /// No mirrors: every URL is used as is.
    pub fn new() -> Self {
        Mirrors::default()
    }

    /// Adds a rule: URLs starting with `prefix` are first tried with `prefix`
    /// replaced by each of `replacements`, in order. The first matching rule wins.
    pub fn add(&mut self, prefix: impl Into<String>, replacements: Vec<String>) -> &mut Self {
        self.rules.push((prefix.into(), replacements));
        self
    }

    /// Adds `replacements` for `prefix` ahead of any it already has (a new rule when
    /// there is none): what was configured last is tried first.
    pub fn add_first(&mut self, prefix: impl Into<String>, replacements: Vec<String>) -> &mut Self {
        let prefix = prefix.into();
        match self.rules.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, existing)) => {
                existing.splice(0..0, replacements);
            }
            None => self.rules.push((prefix, replacements)),
        }
        self
    }

    /// The replacements of the rule for exactly `prefix`, in order.
    pub fn replacements(&self, prefix: &str) -> &[String] {
        self.rules
            .iter()
            .find(|(p, _)| p == prefix)
            .map_or(&[], |(_, r)| r.as_slice())
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.rules.iter().map(|(p, r)| (p.as_str(), r.as_slice()))
    }

    /// The URLs to try for `url`: mirror rewrites in order, then the original; no duplicates.
    pub fn candidates(&self, url: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some((prefix, replacements)) =
            self.rules.iter().find(|(p, _)| url.starts_with(p.as_str()))
        {
            for replacement in replacements {
                out.push(format!("{replacement}{}", &url[prefix.len()..]));
            }
        }
        out.push(url.to_owned());
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|u| seen.insert(u.clone()));
        out
    }

    /// Candidates for several original URLs, in order, without duplicates.
    pub fn candidates_all(&self, urls: &[String]) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        urls.iter()
            .flat_map(|u| self.candidates(u))
            .filter(|u| seen.insert(u.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_rewrites_in_order_then_original() {
        let mut m = Mirrors::new();
        m.add(
            "https://up.example/dl/",
            vec!["http://m1.local/a/".into(), "file:///srv/mirror/".into()],
        )
        .add("https://up.example/", vec!["http://never.local/".into()]);
        assert_eq!(
            m.candidates("https://up.example/dl/v1/etcd.tar.gz"),
            vec![
                "http://m1.local/a/v1/etcd.tar.gz",
                "file:///srv/mirror/v1/etcd.tar.gz",
                "https://up.example/dl/v1/etcd.tar.gz",
            ]
        );
        assert_eq!(
            m.candidates("https://other.example/x"),
            vec!["https://other.example/x"]
        );
    }

    #[test]
    fn add_first_puts_later_replacements_ahead() {
        let mut m = Mirrors::new();
        m.add_first("http://a/", vec!["http://b/".into()])
            .add_first("http://a/", vec!["http://c/".into(), "http://d/".into()]);
        assert_eq!(
            m.candidates("http://a/x"),
            vec!["http://c/x", "http://d/x", "http://b/x", "http://a/x"]
        );
        assert_eq!(m.replacements("http://a/").len(), 3);
        assert!(m.replacements("http://z/").is_empty());
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut m = Mirrors::new();
        m.add("http://a/", vec!["http://b/".into(), "http://a/".into()]);
        assert_eq!(
            m.candidates_all(&["http://a/x".into(), "http://b/x".into()]),
            vec!["http://b/x", "http://a/x"]
        );
    }
}
