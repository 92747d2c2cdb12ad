//! Local S3 for Distributed Map: the `ItemReader` reads and lists objects, and the
//! `ResultWriter` writes them, in folders of the laptop.
//!
//! A bucket is a set of mounts, each mapping a key prefix to a folder: with `input/` mounted
//! on `./events`, the key `input/2024/a.jsonl` is the file `./events/2024/a.jsonl`. A key maps
//! to the mount with the longest matching prefix; a bucket without mounts is the folder
//! `<root>/<bucket>` when a default root is set. Keys are `/`-separated; a key with a `..`,
//! `.` or empty segment is refused, so nothing outside a mounted folder is ever read or written.
//! Listing walks the folders and returns keys in UTF-8 binary order, as `ListObjectsV2` does.
//! Results are written to a temporary file and renamed, so a crash never leaves half an object.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use upsell_asl::{ItemSource, ObjectInfo, ResultSink};

type Mounts = HashMap<String, Vec<(String, PathBuf)>>;

/// Folders of the laptop served as S3 buckets.
#[derive(Debug, Default)]
pub struct LocalObjects {
    root: Option<PathBuf>,
    buckets: RwLock<Mounts>,
}

impl Clone for LocalObjects {
    fn clone(&self) -> Self {
        LocalObjects {
            root: self.root.clone(),
            buckets: RwLock::new(self.buckets.read().map(|b| b.clone()).unwrap_or_default()),
        }
    }
}

impl LocalObjects {
    /// Buckets without mounts are folders under `root` (`<root>/<bucket>/<key>`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalObjects {
            root: Some(root.into()),
            buckets: RwLock::default(),
        }
    }

    /// No default root: only mounted buckets exist.
    pub fn without_root() -> Self {
        Self::default()
    }

    /// Maps the whole of `bucket` to `dir`.
    pub fn bucket(self, bucket: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        self.mount(&bucket.into(), "", dir);
        self
    }

    /// Serves keys of `bucket` that start with `prefix` from `dir` (the rest of the key is the
    /// path under `dir`). A later mount of the same bucket and prefix replaces the earlier one.
    pub fn mount(&self, bucket: &str, prefix: &str, dir: impl Into<PathBuf>) {
        let dir = dir.into();
        if let Ok(mut b) = self.buckets.write() {
            let mounts = b.entry(bucket.to_string()).or_default();
            mounts.retain(|(p, _)| p != prefix);
            mounts.push((prefix.to_string(), dir));
            // Longest prefix first.
            mounts.sort_by_key(|m| std::cmp::Reverse(m.0.len()));
        }
    }

    fn mounts(&self, bucket: &str) -> Result<Vec<(String, PathBuf)>, String> {
        let mounted = self
            .buckets
            .read()
            .map_err(|_| "object store lock poisoned".to_string())?
            .get(bucket)
            .cloned();
        match (mounted, &self.root) {
            (Some(m), _) => Ok(m),
            (None, Some(root)) if is_plain_name(bucket) => {
                Ok(vec![(String::new(), root.join(bucket))])
            }
            _ => Err(format!(
                "NoSuchBucket: The specified bucket does not exist (no local folder for bucket {bucket:?})"
            )),
        }
    }

    /// The file behind `bucket`/`key`.
    pub fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, String> {
        let mounts = self.mounts(bucket)?;
        let (prefix, dir) = mounts
            .iter()
            .find(|(p, _)| key.starts_with(p.as_str()))
            .ok_or_else(|| format!("no folder is mounted for s3://{bucket}/{key}"))?;
        let rest = &key[prefix.len()..];
        let mut path = dir.clone();
        if rest.is_empty() && !prefix.is_empty() {
            return Ok(path);
        }
        for seg in rest.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." || seg.contains('\\') {
                return Err(format!("invalid object key {key:?}"));
            }
            path.push(seg);
        }
        Ok(path)
    }
}

fn is_plain_name(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket != "."
        && bucket != ".."
        && bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn walk(dir: &Path, key_prefix: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let key = format!("{key_prefix}{name}");
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&entry.path(), &format!("{key}/"), out)?;
        } else if ty.is_file() {
            out.push((key, entry.path()));
        }
    }
    Ok(())
}

impl ItemSource for LocalObjects {
    fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, String> {
        let path = self.path(bucket, key)?;
        std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "NoSuchKey: The specified key does not exist (s3://{bucket}/{key}, {})",
                    path.display()
                )
            } else {
                format!("reading s3://{bucket}/{key} ({}): {e}", path.display())
            }
        })
    }

    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, String> {
        let mut files = Vec::new();
        for (mount, dir) in self.mounts(bucket)? {
            // Only mounts that can hold keys with this prefix.
            if !(mount.starts_with(prefix) || prefix.starts_with(mount.as_str())) {
                continue;
            }
            if dir.is_file() {
                files.push((mount.clone(), dir.clone()));
            } else if dir.is_dir() {
                walk(&dir, &mount, &mut files).map_err(|e| {
                    format!("listing s3://{bucket}/{mount} ({}): {e}", dir.display())
                })?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (key, path) in files {
            // A key under a longer mount shadows the same key under a shorter one.
            if !key.starts_with(prefix) || self.path(bucket, &key).ok().as_ref() != Some(&path) {
                continue;
            }
            if !seen.insert(key.clone()) {
                continue;
            }
            let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let modified: chrono::DateTime<chrono::Utc> = meta
                .modified()
                .map(Into::into)
                .unwrap_or_else(|_| chrono::Utc::now());
            out.push(ObjectInfo {
                etag: format!("\"{:x}-{}\"", meta.len(), modified.timestamp()),
                key,
                size: meta.len(),
                last_modified: modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        out.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        Ok(out)
    }
}

impl ResultSink for LocalObjects {
    fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), String> {
        let path = self.path(bucket, key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        // Write then rename, so a crash never leaves half an object.
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, &body).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_read_list_and_write_without_escaping() {
        let input = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(input.path().join("2024")).unwrap();
        std::fs::write(input.path().join("2024/b.jsonl"), "{}\n").unwrap();
        std::fs::write(input.path().join("a.csv"), "id\n1\n").unwrap();
        std::fs::write(input.path().join(".hidden"), "x").unwrap();
        let s3 = LocalObjects::without_root();
        s3.mount("Backfill", "input/", input.path());
        s3.mount("Backfill", "results/", out.path());

        let keys: Vec<String> = s3
            .list("Backfill", "input/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["input/2024/b.jsonl", "input/a.csv"]);
        let keys: Vec<String> = s3
            .list("Backfill", "input/2")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["input/2024/b.jsonl"]);
        assert_eq!(s3.get("Backfill", "input/a.csv").unwrap(), b"id\n1\n");
        assert!(
            s3.get("Backfill", "input/../x")
                .unwrap_err()
                .contains("invalid object key")
        );
        assert!(
            s3.get("Backfill", "input/none")
                .unwrap_err()
                .starts_with("NoSuchKey")
        );
        assert!(
            s3.get("Other", "input/a.csv")
                .unwrap_err()
                .starts_with("NoSuchBucket")
        );
        assert!(s3.get("Backfill", "").is_err());
        let rooted = LocalObjects::new(input.path()).bucket("ds", out.path());
        assert_eq!(
            rooted.path("2024", "b.jsonl").unwrap(),
            input.path().join("2024/b.jsonl")
        );
        assert!(rooted.path("..", "x").is_err());

        s3.put("Backfill", "results/run/manifest.json", b"{}".to_vec())
            .unwrap();
        assert_eq!(
            std::fs::read(out.path().join("run/manifest.json")).unwrap(),
            b"{}"
        );
    }
}
