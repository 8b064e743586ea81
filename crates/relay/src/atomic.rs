//! Replacing a file atomically: a new file beside it, written and synced, then renamed
//! over it. The new file gets the old one's mode, owner and group (a file that did not
//! exist gets the mode the caller asks for, and the caller's owner).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a file could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("cannot give the new file the owner {uid}:{gid} of the old one (run as root or as its owner): {source}")]
    Owner { uid: u32, gid: u32, source: io::Error },
}

/// Tries this many temporary names before giving up (another writer holds each).
const TEMP_ATTEMPTS: u32 = 16;

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A new, empty file in `dir` with a name nobody else holds, created with `mode`.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let path = dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        match opts.open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Gives the new file the final mode (the umask may have narrowed it at creation) and the
/// old file's owner and group.
#[cfg(unix)]
fn match_old(file: &File, old: Option<&fs::Metadata>, mode: u32) -> Result<(), ReplaceError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    let Some(old) = old else { return Ok(()) };
    let new = file.metadata()?;
    let (uid, gid) = (old.uid(), old.gid());
    if new.uid() == uid && new.gid() == gid {
        return Ok(());
    }
    let want_uid = (new.uid() != uid).then_some(uid);
    let want_gid = (new.gid() != gid).then_some(gid);
    std::os::unix::fs::fchown(file, want_uid, want_gid).map_err(|source| ReplaceError::Owner { uid, gid, source })?;
    // chown may clear the set-id bits; the mode is set again for certain.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn match_old(_: &File, _: Option<&fs::Metadata>, _: u32) -> Result<(), ReplaceError> {
    Ok(())
}

#[cfg(unix)]
fn mode_of(old: Option<&fs::Metadata>, new_mode: u32) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    old.map_or(new_mode, |m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_: Option<&fs::Metadata>, new_mode: u32) -> u32 {
    new_mode
}

/// Replaces `path` with `contents`. An existing file keeps its mode, owner and group; a
/// new one is created with `new_mode` (exactly: the umask does not apply).
pub(crate) fn replace_file(path: &Path, contents: &[u8], new_mode: u32) -> Result<(), ReplaceError> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let dir = parent_dir(path);
    let old = match fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let mode = mode_of(old.as_ref(), new_mode);
    let (tmp, mut file) = create_temp(&dir, &name, mode)?;
    let written = (|| {
        match_old(&file, old.as_ref(), mode)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable once the directory is synced; a directory that cannot be
    // opened for that (some file systems) still has the new file.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn new_files_get_the_mode_asked_for_and_old_ones_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.toml");
        replace_file(&path, b"one", 0o640).unwrap();
        assert_eq!(mode(&path), 0o640);
        assert_eq!(fs::read(&path).unwrap(), b"one");

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        replace_file(&path, b"two", 0o640).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("f.toml")], "no temporary file is left");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir").join("f.toml");
        assert!(replace_file(&missing, b"x", 0o640).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
