//! The process's open-file limit: every connection is a file descriptor, and a soft limit
//! of 1024 (a common default) would lock out real clients long before `--max-connections`.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The soft open-file limit before and after [`raise_open_files`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: Option<u64>,
    pub now: Option<u64>,
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (`None`: unlimited). Returns the
/// values, or the error of `setrlimit`.
pub fn raise_open_files() -> Result<OpenFiles, std::io::Error> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current == limit.maximum {
        return Ok(OpenFiles { before, now: before, hard: limit.maximum });
    }
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })?;
    let now = getrlimit(Resource::Nofile).current;
    Ok(OpenFiles { before, now, hard: limit.maximum })
}
