//! A .deb's data tarball, streamed out of `dpkg-deb --fsys-tarfile` (which knows every
//! compression dpkg does), for callers that take members out of it.

use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;

use crate::error::DebError;

/// Runs `f` on the data tarball of the .deb at `path`. `f`'s own errors pass through; the
/// command's failures are [`DebError`]s, converted into the caller's error type.
pub fn with_data_tar<E: From<DebError>>(
    path: &Path,
    f: &mut dyn FnMut(&mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    let command = format!("dpkg-deb --fsys-tarfile {}", path.display());
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DebError::Spawn {
            command: command.clone(),
            source,
        })?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let result = f(&mut stdout).and_then(|()| {
        // The tar reader stops at the end marker: drain the padding so dpkg-deb
        // is not killed by a broken pipe.
        io::copy(&mut stdout, &mut io::sink())
            .map(drop)
            .map_err(|source| {
                DebError::DataTar {
                    path: path.to_owned(),
                    source,
                }
                .into()
            })
    });
    drop(stdout);
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| DebError::Spawn {
        command: command.clone(),
        source,
    })?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if result.is_ok() && !status.success() {
        return Err(DebError::Command {
            command,
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
        }
        .into());
    }
    result
}
