//! `files` mounts: what a component may read from its file system, as Spin
//! provides it. Each component's files are copied into a directory of their
//! own when the app loads (Spin's default), laid out as the component will
//! see them, and that directory is mounted read-only at `/` in every
//! instance. Nothing outside it is visible, and the app directory can change
//! under a running host without the component seeing it.

use crate::manifest::{Component, FileMount};
use anyhow::{Context, Result, bail};
use std::path::{Component as PathPart, Path, PathBuf};

/// Copies the files `spec` mounts, from `app_dir`, into `into`.
pub fn materialize(spec: &Component, app_dir: &Path, into: &Path) -> Result<()> {
    let excluded = spec
        .exclude_files
        .iter()
        .map(|p| glob::Pattern::new(p).with_context(|| format!("exclude_files: `{p}` is not a glob pattern")))
        .collect::<Result<Vec<_>>>()?;
    let keep = |relative: &Path| !excluded.iter().any(|p| p.matches_path(relative));
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    for (i, mount) in spec.files.iter().enumerate() {
        let at = || format!("files[{i}]");
        match mount {
            FileMount::Pattern(pattern) => {
                if pattern.split('/').any(|part| part == ".." || part == ".") {
                    bail!("{}: `{pattern}`: use a source/destination mount for `.` and `..`", at());
                }
                let source = app_dir.join(pattern);
                if source.is_dir() {
                    copy_tree(&source, &into.join(pattern), Path::new(pattern), &keep).with_context(at)?;
                } else if source.is_file() {
                    copy_file(&source, &into.join(pattern), Path::new(pattern), &keep).with_context(at)?;
                } else if glob::Pattern::escape(pattern) != *pattern {
                    let full = source.to_str().context("a path that is not UTF-8")?;
                    for entry in glob::glob(full).with_context(|| format!("{}: `{pattern}` is not a glob pattern", at()))? {
                        let path = entry.with_context(at)?;
                        if path.is_file() {
                            let relative = path.strip_prefix(app_dir).expect("a match under the app dir").to_path_buf();
                            copy_file(&path, &into.join(&relative), &relative, &keep).with_context(at)?;
                        }
                    }
                } else {
                    bail!("{}: `{pattern}` does not exist and is not a glob pattern", at());
                }
            }
            FileMount::Placement { source, destination } => {
                let destination = guest_relative(destination).with_context(|| format!("{}.destination", at()))?;
                let from = app_dir.join(source);
                let to = into.join(&destination);
                if from.is_dir() {
                    copy_tree(&from, &to, Path::new(source), &keep).with_context(at)?;
                } else if from.is_file() {
                    copy_file(&from, &to, Path::new(source), &keep).with_context(at)?;
                } else {
                    bail!("{}.source: `{source}` does not exist", at());
                }
            }
        }
    }
    Ok(())
}

/// A guest path (`/a/b`) as a relative path under the mount root; `..` is refused.
pub fn guest_relative(path: &str) -> Result<PathBuf> {
    let path = Path::new(path);
    if !path.is_absolute() {
        bail!("`{}` must be an absolute path in the component's file system", path.display());
    }
    let mut relative = PathBuf::new();
    for part in path.components() {
        match part {
            PathPart::RootDir | PathPart::CurDir => {}
            PathPart::Normal(name) => relative.push(name),
            _ => bail!("`{}` must not contain `..`", path.display()),
        }
    }
    Ok(relative)
}

/// `relative` is the app-relative name that `exclude_files` patterns see.
fn copy_tree(from: &Path, to: &Path, relative: &Path, keep: &impl Fn(&Path) -> bool) -> Result<()> {
    for (name, path) in walk(from)? {
        copy_file(&path, &to.join(&name), &relative.join(&name), keep)?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path, relative: &Path, keep: &impl Fn(&Path) -> bool) -> Result<()> {
    if !keep(relative) {
        return Ok(());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Every file under `root`, as (path relative to `root` with `/` separators, full path), sorted.
pub fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    fn visit(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|n| anyhow::anyhow!("a file name that is not UTF-8: {n:?}"))?;
            let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let path = entry.path();
            if path.is_dir() {
                visit(&path, &relative, out)?;
            } else if path.is_file() {
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
        let app = tree();
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
}
