//! One run per output directory: an advisory lock on `<output_dir>/flan-train.lock`, held for
//! the life of the run.
//!
//! Two runs on one directory would interleave their checkpoints, truncate each other's metrics
//! and both report success, so the second one must refuse to start. The lock is `flock(2)`,
//! exclusive and non-blocking: the kernel releases it when the process exits however it exits
//! (`kill -9`, a crash, a preempted pod), so no stale lock ever has to be cleaned up by hand,
//! and a restarted run takes it over at once. `flock` conflicts between two open files even in
//! one process (unlike `fcntl` record locks), so two trainers in one process are refused too;
//! the file is opened close-on-exec, so child processes do not inherit it. On NFS, Linux maps
//! `flock` to NFS byte-range locks, which hold across hosts (Lustre needs its `flock` mount
//! option).
//!
//! The file holds the holder's pid, host and start time as JSON, written after the lock is
//! taken, so that the refused run can say who has the directory. The file is never removed:
//! deleting a lock file lets two processes hold locks on two different files of one name.
//!
//! Under data parallelism only rank 0 writes, so only rank 0 locks; [`crate::run::prepare`]
//! makes every rank fail when rank 0 cannot lock.

use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Name of the lock file inside the output directory.
pub const LOCK_FILE: &str = "flan-train.lock";

/// Who holds an output directory (the lock file's contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the machine it runs on.
    pub host: String,
    /// When it took the lock, seconds since the Unix epoch.
    pub since_unix: u64,
}

impl Holder {
    fn this_process() -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            since_unix: now_unix(),
        }
    }

    /// "pid 123 on host node-7 (since 42 s ago)".
    pub fn describe(&self) -> String {
        let age = now_unix().saturating_sub(self.since_unix);
        format!(
            "pid {} on host {} (locked {age} s ago)",
            self.pid, self.host
        )
    }
}

/// The lock of one output directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    // Holding the open file holds the lock.
    _file: fs::File,
}

impl OutputLock {
    /// Takes the lock of `output_dir` (created if missing), or fails at once with
    /// [`Error::Locked`] naming the holder.
    pub fn acquire(output_dir: &Path) -> Result<OutputLock> {
        fs::create_dir_all(output_dir).map_err(|e| Error::io(output_dir, e))?;
        let path = output_dir.join(LOCK_FILE);
        // No truncation on open: the holder's record must survive a refused attempt.
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(Error::io(&path, err));
            }
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) => match serde_json::from_str::<Holder>(&text) {
                    Ok(h) => h.describe(),
                    // The holder is between taking the lock and writing its record.
                    Err(_) => "another process (its record is not written yet)".to_string(),
                },
                Err(e) => format!("another process (its record is unreadable: {e})"),
            };
            return Err(Error::Locked {
                dir: output_dir.to_path_buf(),
                holder,
            });
        }
        let record = serde_json::to_string(&Holder::this_process())
            .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(format!("{record}\n").as_bytes()))
            .and_then(|()| file.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok(OutputLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's host name (`unknown` when the system will not say).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let first = OutputLock::acquire(&out).unwrap();
        let err = OutputLock::acquire(&out).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id()))
                && msg.contains(&host_name())
                && msg.contains("run"),
            "{msg}"
        );
        // The refused attempt left the holder's record alone.
        let record: Holder =
            serde_json::from_str(&fs::read_to_string(first.path()).unwrap()).unwrap();
        assert_eq!(record.pid, std::process::id());
        drop(first);
        let again = OutputLock::acquire(&out).unwrap();
        assert!(again.path().is_file());
    }
}
