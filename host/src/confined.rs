//! Paths that come from outside input (a manifest, a locked app from a
//! registry) and the one way such a path reaches the disk.
//!
//! A path from outside is first made a [`relative`] path: no root, no `..`,
//! no empty name, nothing but plain names. Reads go through [`inside`], which
//! resolves symlinks and refuses a target outside the directory it is read
//! from. Writes go through [`create_file`], which makes the parent
//! directories one name at a time and never follows a symlink on the way, and
//! which never replaces a file that is already there. Together these keep an
//! artifact or a manifest from reading or writing anything outside the
//! directories the host owns, whatever names it carries.

use anyhow::{Context, Result, bail};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// `text` as a path relative to some directory it must not leave: refuses an
/// absolute path, `..`, an empty path and a NUL byte. `.` parts are dropped;
/// `/` and `\` are both separators, so a name never smuggles either.
pub fn relative(text: &str) -> Result<PathBuf> {
    if text.contains('\0') {
        bail!("`{}` contains a NUL byte", text.escape_debug());
    }
    if text.starts_with('/') || text.starts_with('\\') {
        bail!("`{text}` is an absolute path; only paths relative to the app are allowed");
    }
    let mut out = PathBuf::new();
    for part in text.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => bail!("`{text}` contains `..`; paths may not leave their directory"),
            name => out.push(name),
        }
    }
    if out.as_os_str().is_empty() {
        bail!("`{text}` names no file");
    }
    Ok(out)
}

/// The real location of `root/relative`, following symlinks, if it stays
/// inside `root` (itself resolved): a symlink leading out is refused. The
/// path must exist.
pub fn inside(root: &Path, relative: &Path) -> Result<PathBuf> {
    let root = root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
    let path = root.join(relative);
    let real = path.canonicalize().with_context(|| format!("`{}` does not exist", relative.display()))?;
    if !real.starts_with(&root) {
        bail!("`{}` leads outside {} (to {})", relative.display(), root.display(), real.display());
    }
    Ok(real)
}

/// Creates the new file `root/relative` for writing, with its parent
/// directories. No symlink is followed, neither a directory on the way nor
/// the file itself, and an existing file is an error rather than replaced,
/// so the write lands inside `root` or not at all. `root` itself is trusted
/// (a directory of the host's own).
pub fn create_file(root: &Path, relative: &Path) -> Result<File> {
    let mut dir = root.to_path_buf();
    let mut parts = relative.components().peekable();
    while let Some(part) = parts.next() {
        let Component::Normal(name) = part else {
            bail!("`{}` is not a plain relative path", relative.display());
        };
        let path = dir.join(name);
        if parts.peek().is_none() {
            return OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .with_context(|| format!("cannot create {}", path.display()));
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => bail!("cannot create {}: `{}` is in the way and is not a directory", relative.display(), path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        }
        dir = path;
    }
    bail!("`{}` names no file", relative.display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn relative_paths_cannot_leave_their_directory() {
        assert_eq!(relative("a/./b//c").unwrap(), PathBuf::from("a/b/c"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "", ".", "//x", "\\x", "a\\..\\..\\x", "a\0b"] {
            assert!(relative(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reads_do_not_follow_symlinks_out() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::fs::write(root.path().join("ok"), "o").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link")).unwrap();
        std::os::unix::fs::symlink(root.path().join("ok"), root.path().join("inner-link")).unwrap();
        assert!(inside(root.path(), Path::new("ok")).is_ok());
        assert!(inside(root.path(), Path::new("inner-link")).is_ok(), "a link that stays inside is fine");
        let err = format!("{:#}", inside(root.path(), Path::new("link")).unwrap_err());
        assert!(err.contains("leads outside"), "{err}");
    }

    #[test]
    fn writes_do_not_follow_symlinks_or_replace_files() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        create_file(root.path(), Path::new("a/b/c.txt")).unwrap().write_all(b"x").unwrap();
        assert_eq!(std::fs::read(root.path().join("a/b/c.txt")).unwrap(), b"x");
        assert!(create_file(root.path(), Path::new("a/b/c.txt")).is_err(), "an existing file is not replaced");

        std::os::unix::fs::symlink(outside.path(), root.path().join("dir-link")).unwrap();
        assert!(create_file(root.path(), Path::new("dir-link/x")).is_err());
        std::os::unix::fs::symlink(outside.path().join("target"), root.path().join("file-link")).unwrap();
        assert!(create_file(root.path(), Path::new("file-link")).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was written outside");
    }
}
