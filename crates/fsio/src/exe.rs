//! Finding a program the way a shell would, for the external tools kiln runs.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Folders of system programs (e2fsprogs) that a user's `PATH` may lack.
pub const SYSTEM_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

fn executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `program` itself when it holds a `/`; else the first executable file of that name in a
/// folder of `PATH`, then in the folders `also` names (e.g. [`SYSTEM_DIRS`]).
pub fn find_executable(program: &Path, also: &[&str]) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return executable(program).then(|| program.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_on_path_or_in_the_folders_named_and_paths_are_checked() {
        assert_eq!(
            find_executable(Path::new("sh"), &[]).map(|p| p.is_absolute()),
            Some(true)
        );
        assert_eq!(
            find_executable(Path::new("/bin/sh"), &[]),
            Some("/bin/sh".into())
        );
        assert_eq!(find_executable(Path::new("/nonexistent/sh"), &[]), None);
        assert_eq!(
            find_executable(Path::new("kiln-no-such-program"), &[]),
            None
        );
        // A folder named besides PATH: found there, by its full path, only when executable.
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("kiln-exe-test-tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        let name = Path::new("kiln-exe-test-tool");
        let also = [dir.path().to_str().unwrap()];
        assert_eq!(find_executable(name, &also), None, "not executable yet");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_executable(name, &also), Some(tool));
        assert_eq!(find_executable(name, &[]), None);
    }
}
