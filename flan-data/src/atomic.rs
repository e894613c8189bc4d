//! Output files that appear whole or not at all.
//!
//! A run that fails halfway (a bad record, a model error, a full disk, a kill) must not leave a
//! half-written file where a good one was: a scheduler that retries, or a person who reads the
//! file, cannot tell a truncated output from a complete one. [`AtomicFile`] writes to a
//! temporary file beside the target (same directory, so the same file system) and renames it
//! over the target in [`AtomicFile::commit`]; dropped without a commit, it removes the
//! temporary and the target keeps its old content.
//!
//! A target that is not a regular file (`/dev/stdout`, `/dev/null`, a FIFO) is written in place:
//! renaming over a device would replace the device node, and a stream has no old content to
//! keep. A symbolic link is followed, so the link stays and the file it points to is replaced.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Temporaries made by this process so far (part of their names, so that two outputs of one
/// process never share one).
static MADE: AtomicU64 = AtomicU64::new(0);

/// A file being written; it replaces its target on [`AtomicFile::commit`] only.
#[derive(Debug)]
pub struct AtomicFile {
    /// The path the user named.
    target: PathBuf,
    /// Where the bytes go until the commit; `None` when writing in place.
    temp: Option<PathBuf>,
    file: BufWriter<File>,
}

impl AtomicFile {
    /// Starts writing `target`: a temporary `.<name>.tmp-<pid>-<n>` beside it (with the old
    /// file's permissions), or `target` itself when it is a device or a pipe.
    pub fn create(target: impl AsRef<Path>) -> Result<AtomicFile> {
        let target = target.as_ref().to_path_buf();
        let invalid = |why: &str| Error::write(&target, std::io::Error::other(why.to_string()));
        let existing = std::fs::metadata(&target).ok();
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(invalid("is a directory; expected a file name"));
            }
            if !meta.is_file() {
                let file = File::create(&target).map_err(|e| Error::write(&target, e))?;
                return Ok(AtomicFile {
                    target,
                    temp: None,
                    file: BufWriter::new(file),
                });
            }
        }
        // Replace the file a link points to, not the link.
        let real = match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::canonicalize(&target).map_err(|e| Error::write(&target, e))?
            }
            _ => target.clone(),
        };
        let name = real
            .file_name()
            .ok_or_else(|| invalid("has no file name"))?
            .to_string_lossy()
            .into_owned();
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let temp = real.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let file = File::create(&temp).map_err(|e| Error::write(&target, e))?;
        let out = AtomicFile {
            target,
            temp: Some(temp),
            file: BufWriter::new(file),
        };
        if let (Some(meta), Some(temp)) = (&existing, &out.temp) {
            std::fs::set_permissions(temp, meta.permissions())
                .map_err(|e| Error::write(&out.target, e))?;
        }
        Ok(out)
    }

    /// The path the file will have once committed.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Writes `bytes`; an error names the target.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::write(&self.target, e))
    }

    /// Flushes, syncs and renames the temporary over the target: from here on the target holds
    /// everything written, and before it the old content (or nothing). Errors name the target.
    pub fn commit(mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| Error::write(&self.target, e))?;
        let Some(temp) = self.temp.take() else {
            return Ok(());
        };
        let renamed = self
            .file
            .get_ref()
            .sync_all()
            .and_then(|()| std::fs::rename(&temp, self.real_target()?));
        if let Err(e) = renamed {
            let _ = std::fs::remove_file(&temp);
            return Err(Error::write(&self.target, e));
        }
        Ok(())
    }

    /// The file the rename replaces: the target, or the file its link points to.
    fn real_target(&self) -> std::io::Result<PathBuf> {
        match std::fs::symlink_metadata(&self.target) {
            Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(&self.target),
            _ => Ok(self.target.clone()),
        }
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Commits `files` in order, after all of them were written: outputs that belong together
/// (an evaluation's samples, results and table; a mixture's shards) are replaced together or,
/// when a write failed before this point, not at all.
pub fn commit_all(files: Vec<AtomicFile>) -> Result<()> {
    for file in files {
        file.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect()
    }

    #[test]
    fn the_target_changes_on_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.jsonl");
        std::fs::write(&target, "old\n").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_bytes(b"new 1\n").unwrap();
        writeln!(f, "new 2").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        drop(f);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );

        let mut f = AtomicFile::create(&target).unwrap();
        f.write_bytes(b"new\n").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn permissions_and_links_are_kept_and_devices_written_in_place() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        std::fs::write(&real, "old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut f = AtomicFile::create(&link).unwrap();
        f.write_bytes(b"new").unwrap();
        f.commit().unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);

        let mut null = AtomicFile::create("/dev/null").unwrap();
        null.write_bytes(b"gone").unwrap();
        null.commit().unwrap();
        assert!(Path::new("/dev/null").exists());

        let err = AtomicFile::create(dir.path()).unwrap_err();
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_device_is_an_error_that_names_it() {
        let mut f = AtomicFile::create("/dev/full").unwrap();
        f.write_bytes(&[b'x'; 64]).unwrap();
        let err = f.commit().unwrap_err();
        let text = crate::error::chain(&err);
        assert!(text.starts_with("writing /dev/full: "), "{text}");
        assert!(text.contains("No space left"), "{text}");
    }
}
