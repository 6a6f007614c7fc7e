//! Typed `#cloud-config` user-data and meta-data, limited to the keys kiln writes.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A `#cloud-config` user-data document; `None` and empty fields are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfig {
    /// Short host name (`set_hostname` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Fully qualified domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// Use `fqdn` rather than `hostname` as the system host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_fqdn_over_hostname: Option<bool>,
    /// Whether and how cloud-init manages `/etc/hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_etc_hosts: Option<ManageEtcHosts>,
    /// Users to create; giving any replaces the distribution's default user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<User>,
    /// Public keys for the default user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
    /// Files to write on first boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_files: Vec<WriteFile>,
    /// Commands run early on every boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootcmd: Vec<RunCmd>,
    /// Commands run once, late in the first boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runcmd: Vec<RunCmd>,
    /// Time synchronisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntp: Option<Ntp>,
    /// Time zone name, e.g. `Etc/UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Message printed when cloud-init finishes (a console marker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_message: Option<String>,
}

/// `manage_etc_hosts`: `true`, `false` or `localhost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManageEtcHosts {
    /// `true`: render `/etc/hosts` from cloud-init's template on every boot.
    Enabled,
    /// `false`: leave `/etc/hosts` alone.
    Disabled,
    /// `localhost`: only keep a line for the host name on `127.0.1.1`.
    Localhost,
}

/// The YAML shapes of [`ManageEtcHosts`].
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ManageEtcHostsRepr {
    Bool(bool),
    Str(String),
}

impl Serialize for ManageEtcHosts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Enabled => ManageEtcHostsRepr::Bool(true),
            Self::Disabled => ManageEtcHostsRepr::Bool(false),
            Self::Localhost => ManageEtcHostsRepr::Str("localhost".to_owned()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ManageEtcHosts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ManageEtcHostsRepr::deserialize(deserializer)? {
            ManageEtcHostsRepr::Bool(true) => Ok(Self::Enabled),
            ManageEtcHostsRepr::Bool(false) => Ok(Self::Disabled),
            ManageEtcHostsRepr::Str(s) if s == "localhost" => Ok(Self::Localhost),
            ManageEtcHostsRepr::Str(other) => Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&other),
                &"true, false or localhost",
            )),
        }
    }
}

/// One entry of `users`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Supplementary groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Login shell, e.g. `/bin/bash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// A sudoers rule, e.g. `ALL=(ALL) NOPASSWD:ALL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<String>,
    /// Lock the password (key-only login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_passwd: Option<bool>,
    /// Public keys allowed to log in as this user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_authorized_keys: Vec<String>,
}

/// One entry of `write_files`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteFile {
    /// Absolute destination path.
    pub path: String,
    /// The text, or the base64 of the bytes when `encoding` is `b64`.
    pub content: String,
    /// How `content` is encoded; `None` means plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
    /// `user:group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Octal mode as a string, e.g. `"0600"` (cloud-init defaults to 0644).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// Write in the final stage, after users and packages exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer: Option<bool>,
}

/// `write_files` content encodings kiln uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Encoding {
    /// Base64.
    #[serde(rename = "b64")]
    B64,
}

impl WriteFile {
    /// A file holding `bytes`: plain text when it is printable UTF-8,
    /// base64 otherwise, so that YAML never has to escape binary data.
    pub fn new(path: impl Into<String>, bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        let (content, encoding) = match std::str::from_utf8(bytes) {
            Ok(text) if is_plain_text(text) => (text.to_owned(), None),
            _ => (
                base64::engine::general_purpose::STANDARD.encode(bytes),
                Some(Encoding::B64),
            ),
        };
        Self {
            path: path.into(),
            content,
            encoding,
            ..Self::default()
        }
    }

    /// Sets `permissions` from a numeric mode, e.g. `0o600` gives `"0600"`.
    pub fn with_mode(mut self, mode: u32) -> Self {
        self.permissions = Some(format!("{mode:04o}"));
        self
    }

    /// Sets `owner`, e.g. `root:root`.
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Sets `defer: true`.
    pub fn deferred(mut self) -> Self {
        self.defer = Some(true);
        self
    }

    /// The bytes the host will write: `content` decoded as `encoding` says.
    pub fn decoded(&self) -> Option<Vec<u8>> {
        match self.encoding {
            None => Some(self.content.clone().into_bytes()),
            Some(Encoding::B64) => base64::engine::general_purpose::STANDARD
                .decode(&self.content)
                .ok(),
        }
    }
}

/// Text that YAML carries verbatim in a block scalar: no control characters
/// but newline and tab, and no carriage return (YAML folds it into `\n`).
fn is_plain_text(text: &str) -> bool {
    text.chars()
        .all(|c| c == '\n' || c == '\t' || !(c.is_control() || c == '\u{feff}'))
}

/// A `bootcmd` or `runcmd` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunCmd {
    /// A line run by `sh -c`.
    Shell(String),
    /// An argument vector run without a shell.
    Argv(Vec<String>),
}

impl RunCmd {
    /// An argument vector, run without a shell.
    pub fn argv<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Argv(args.into_iter().map(Into::into).collect())
    }
}

impl From<&str> for RunCmd {
    fn from(line: &str) -> Self {
        Self::Shell(line.to_owned())
    }
}

/// The `ntp` module's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ntp {
    /// Install and configure an NTP client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Server names or addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    /// Pool names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
}

/// The NoCloud `meta-data` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaData {
    /// Changing it makes cloud-init treat the boot as a new instance.
    #[serde(rename = "instance-id")]
    pub instance_id: String,
    /// The host name cloud-init sets when user-data gives none.
    #[serde(
        rename = "local-hostname",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_hostname: Option<String>,
}

/// A deterministic instance id for `host` in build `build_id`.
///
/// It changes with every build, so a host booted from a newer seed runs
/// cloud-init's once-per-instance modules again, and stays the same for the
/// same pair. Shape: `kiln-<host>-<16 hex digits>`, the host reduced to
/// `[a-z0-9.-]` and the digits a 64-bit FNV-1a hash of host and build id.
pub fn instance_id(host: &str, build_id: &str) -> String {
    let name: String = host
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    let mut hash = Fnv64::new();
    hash.write(host.as_bytes());
    hash.write(&[0]);
    hash.write(build_id.as_bytes());
    format!("kiln-{name}-{:016x}", hash.finish())
}

/// 64-bit FNV-1a: tiny, stable across releases and platforms, not secret.
pub(crate) struct Fnv64(u64);

impl Fnv64 {
    pub(crate) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_is_stable_and_separates_inputs() {
        let a = instance_id("etcd-1", "b1");
        assert_eq!(a, instance_id("etcd-1", "b1"));
        assert!(a.starts_with("kiln-etcd-1-"), "{a}");
        assert_eq!(a.len(), "kiln-etcd-1-".len() + 16);
        assert_ne!(a, instance_id("etcd-1", "b2"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(instance_id("ab", "c")[8..], instance_id("a", "bc")[7..]);
        assert!(instance_id("Node_01/x", "b").starts_with("kiln-node-01-x-"));
    }

    #[test]
    fn write_file_picks_base64_for_binary_only() {
        let text = WriteFile::new("/etc/a", "line\n\tindented\n");
        assert_eq!(text.encoding, None);
        assert_eq!(text.content, "line\n\tindented\n");
        for bytes in [&b"\x00\x01\xff"[..], b"crlf\r\n", b"\xef\xbb\xbfbom"] {
            let bin = WriteFile::new("/etc/b", bytes);
            assert_eq!(bin.encoding, Some(Encoding::B64));
            assert_eq!(bin.decoded().unwrap(), bytes);
        }
    }

    #[test]
    fn mode_is_four_octal_digits() {
        assert_eq!(
            WriteFile::new("/a", "")
                .with_mode(0o600)
                .permissions
                .as_deref(),
            Some("0600")
        );
        assert_eq!(
            WriteFile::new("/a", "")
                .with_mode(0o4755)
                .permissions
                .as_deref(),
            Some("4755")
        );
    }
}
