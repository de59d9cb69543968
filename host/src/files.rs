//! `files` mounts: what a component may read from its file system, as Spin
//! provides it. Each component's files are copied into a directory of their
//! own when the app loads (Spin's default), laid out as the component will
//! see them, and that directory is mounted read-only at `/` in every
//! instance. Nothing outside it is visible, and the app directory can change
//! under a running host without the component seeing it.

use crate::manifest::{Component, FileMount};
use anyhow::{Context, Result, bail};
use crate::confined;
use std::path::{Path, PathBuf};

/// Copies the files `spec` mounts, from `app_dir`, into `into`. Every source
/// must lie inside `app_dir`: absolute paths, `..` and symlinks leading out
/// are refused, naming the entry.
pub fn materialize(spec: &Component, app_dir: &Path, into: &Path) -> Result<()> {
    let excluded = spec
        .exclude_files
        .iter()
        .map(|p| glob::Pattern::new(p).with_context(|| format!("exclude_files: `{p}` is not a glob pattern")))
        .collect::<Result<Vec<_>>>()?;
    let keep = |relative: &Path| !excluded.iter().any(|p| p.matches_path(relative));
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    let copier = Copier { app_dir, into, keep: &keep };
    for (i, mount) in spec.files.iter().enumerate() {
        let at = || format!("files[{i}]");
        match mount {
            FileMount::Pattern(pattern) => {
                let relative = confined::relative(pattern).with_context(at)?;
                let source = app_dir.join(&relative);
                if source.is_dir() || source.is_file() {
                    copier.tree_or_file(&relative, &relative).with_context(at)?;
                } else if glob::Pattern::escape(pattern) != *pattern {
                    let base = app_dir.to_str().context("the app directory's path is not UTF-8")?;
                    let full = format!("{}/{}", glob::Pattern::escape(base), relative.to_str().context("a path that is not UTF-8")?);
                    for entry in glob::glob(&full).with_context(|| format!("{}: `{pattern}` is not a glob pattern", at()))? {
                        let path = entry.with_context(at)?;
                        if path.is_file() {
                            let relative = path.strip_prefix(app_dir).with_context(at)?;
                            copier.file(relative, relative).with_context(at)?;
                        }
                    }
                } else {
                    bail!("{}: `{pattern}` does not exist and is not a glob pattern", at());
                }
            }
            FileMount::Placement { source, destination } => {
                let destination = guest_relative(destination).with_context(|| format!("{}.destination", at()))?;
                let source = confined::relative(source).with_context(|| format!("{}.source", at()))?;
                if !app_dir.join(&source).exists() {
                    bail!("{}.source: `{}` does not exist", at(), source.display());
                }
                copier.tree_or_file(&source, &destination).with_context(at)?;
            }
        }
    }
    Ok(())
}

/// A guest path (`/a/b`) as a relative path under the mount root; `..` is
/// refused. `/` itself is the empty path.
pub fn guest_relative(path: &str) -> Result<PathBuf> {
    let Some(rest) = path.strip_prefix('/') else {
        bail!("`{path}` must be an absolute path in the component's file system");
    };
    if rest.split('/').all(|part| part.is_empty() || part == ".") {
        return Ok(PathBuf::new());
    }
    confined::relative(rest).with_context(|| format!("`{path}`"))
}

/// Copies from the app directory into the mount directory.
struct Copier<'a, K: Fn(&Path) -> bool> {
    app_dir: &'a Path,
    into: &'a Path,
    /// Whether an app-relative path survives `exclude_files`.
    keep: &'a K,
}

impl<K: Fn(&Path) -> bool> Copier<'_, K> {
    /// `source` (app-relative) to `destination` (mount-relative): a directory
    /// with everything under it, or one file.
    fn tree_or_file(&self, source: &Path, destination: &Path) -> Result<()> {
        let real = confined::inside(self.app_dir, source)?;
        if !real.is_dir() {
            return self.file(source, destination);
        }
        for (name, _) in walk(&real)? {
            self.file(&source.join(&name), &destination.join(&name))?;
        }
        Ok(())
    }

    fn file(&self, source: &Path, destination: &Path) -> Result<()> {
        if !(self.keep)(source) {
            return Ok(());
        }
        let from = confined::inside(self.app_dir, source)?;
        // Mounts are copied in order and a later one wins, so a file that an
        // earlier mount placed here goes first. The directory is our own and
        // holds only what this function wrote.
        let to = self.into.join(destination);
        if to.is_file() {
            std::fs::remove_file(&to).with_context(|| format!("cannot replace {}", to.display()))?;
        }
        let mut out = confined::create_file(self.into, destination)?;
        let mut input = std::fs::File::open(&from).with_context(|| format!("cannot read {}", from.display()))?;
        std::io::copy(&mut input, &mut out).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        Ok(())
    }
}

/// Every file under `root`, as (path relative to `root` with `/` separators,
/// full path), sorted. Symlinks to files are listed (callers check where they
/// lead); symlinked directories are not followed, so a walk can neither loop
/// nor wander off into the rest of the host.
pub fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn visit(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|n| anyhow::anyhow!("a file name that is not UTF-8: {n:?}"))?;
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                visit(&path, &relative, out)?;
            } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
                out.push((relative, path));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    visit(root, "", &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(files: &str, exclude: &str) -> Component {
        let text = format!("source = \"x.wasm\"\nfiles = {files}\nexclude_files = {exclude}\n");
        toml::from_str(&text).unwrap()
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in [("static/index.html", "<h1>"), ("static/css/site.css", "body{}"), ("static/secret.key", "k"), ("data/a.json", "{}"), ("readme.md", "r")] {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn mounted(files: &str, exclude: &str) -> Result<Vec<String>> {
        mounted_from(&tree(), files, exclude)
    }

    fn mounted_from(app: &tempfile::TempDir, files: &str, exclude: &str) -> Result<Vec<String>> {
        let into = tempfile::tempdir().unwrap();
        materialize(&component(files, exclude), app.path(), into.path())?;
        Ok(walk(into.path())?.into_iter().map(|(name, _)| name).collect())
    }

    #[test]
    fn patterns_directories_and_placements_land_where_spin_puts_them() {
        assert_eq!(mounted(r#"["static/**/*.html", "readme.md"]"#, "[]").unwrap(), ["readme.md", "static/index.html"]);
        assert_eq!(mounted(r#"["static"]"#, r#"["**/*.key"]"#).unwrap(), ["static/css/site.css", "static/index.html"]);
        assert_eq!(mounted(r#"[{ source = "data", destination = "/etc/app" }]"#, "[]").unwrap(), ["etc/app/a.json"]);
        assert_eq!(mounted(r#"[{ source = "readme.md", destination = "/README" }]"#, "[]").unwrap(), ["README"]);
    }

    #[test]
    fn bad_mounts_are_refused_by_entry() {
        let err = |files: &str| format!("{:#}", mounted(files, "[]").unwrap_err());
        assert!(err(r#"["nope.txt"]"#).contains("files[0]: `nope.txt` does not exist"));
        assert!(err(r#"["../outside"]"#).contains("files[0]: `../outside`"));
        assert!(err(r#"["readme.md", { source = "data", destination = "/../up" }]"#).contains("files[1].destination"));
        assert!(err(r#"[{ source = "data", destination = "relative" }]"#).contains("must be an absolute path"));
    }

    #[test]
    fn sources_outside_the_app_directory_are_refused_and_left_alone() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.txt");
        std::fs::write(&victim, "keep me").unwrap();
        let victim = victim.to_str().unwrap();
        let err = |files: String| format!("{:#}", mounted(&files, "[]").unwrap_err());
        // An absolute pattern used to be copied onto itself, truncating it.
        assert!(err(format!("[{victim:?}]")).contains("files[0]: `"));
        assert!(err(format!("[{victim:?}]")).contains("is an absolute path"));
        // An absolute glob used to panic.
        let glob = format!("{}/*.txt", outside.path().display());
        assert!(err(format!("[{glob:?}]")).contains("is an absolute path"));
        assert!(err(r#"[{ source = "../outside.txt", destination = "/x" }]"#.into()).contains("files[0].source: `../outside.txt` contains `..`"));
        assert!(err(format!("[{{ source = {victim:?}, destination = \"/x\" }}]")).contains("files[0].source"));
        assert_eq!(std::fs::read_to_string(victim).unwrap(), "keep me");
    }

    #[test]
    fn symlinks_leading_out_of_the_app_directory_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "root:x:0:0").unwrap();
        let app = tree();
        std::os::unix::fs::symlink(outside.path().join("passwd"), app.path().join("static/passwd")).unwrap();
        std::os::unix::fs::symlink(outside.path(), app.path().join("host-dir")).unwrap();
        let into = tempfile::tempdir().unwrap();
        for files in [r#"["static"]"#, r#"["static/*"]"#, r#"["static/passwd"]"#, r#"[{ source = "host-dir", destination = "/h" }]"#] {
            let err = format!("{:#}", materialize(&component(files, "[]"), app.path(), into.path()).unwrap_err());
            assert!(err.contains("leads outside"), "{files}: {err}");
        }
        assert!(walk(into.path()).unwrap().iter().all(|(name, _)| !name.contains("passwd")));
        // A link that stays inside the app directory is followed.
        std::fs::remove_file(app.path().join("static/passwd")).unwrap();
        std::os::unix::fs::symlink(app.path().join("readme.md"), app.path().join("static/readme-link")).unwrap();
        assert!(mounted_from(&app, r#"["static"]"#, "[]").unwrap().contains(&"static/readme-link".to_string()));
    }
}
