//! The engine of `stowage collectstatic`: plan (walk `static/`, hash, rewrite stylesheets),
//! compare with what the static storage already holds, upload the difference with bounded
//! concurrency, and only then the manifest.
//!
//! What is already stored is known by listing the storage once: a hashed name is its content,
//! so a file whose hashed name is present is unchanged, whatever its modification time. A run
//! with nothing changed therefore makes no upload at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::statics::{
    IMMUTABLE, MANIFEST, Manifest, NO_CACHE, css_references, hashed_name, rewrite_css,
};
use crate::storage::{ByteStream, SaveOptions, Storage, StorageError};

#[derive(Debug, Clone)]
pub struct Options {
    /// Uploads in flight at once.
    pub jobs: usize,
    /// Plan and report, upload nothing.
    pub dry_run: bool,
}

/// One file of the source tree, as it is stored.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Its name below the source directory, `/`-separated: `css/site.css`.
    pub name: String,
    /// Its key in the static storage: `css/site.3f2a9c1b.css`.
    pub hashed: String,
    pub path: PathBuf,
    /// A stylesheet's content after its references were rewritten; other files are read from
    /// `path` when uploaded.
    pub content: Option<Bytes>,
    pub size: u64,
}

/// Every file of the source tree and the manifest that maps them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub files: Vec<Planned>,
    pub manifest: Manifest,
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct Report {
    pub total: usize,
    /// Original names of the files uploaded.
    pub uploaded: Vec<String>,
    pub unchanged: usize,
    /// Bytes uploaded, the manifest not included.
    pub bytes: u64,
    /// Files whose upload failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Whether the manifest was written: only when it changed and nothing failed.
    pub manifest_written: bool,
    /// The most uploads that were in flight at once.
    pub max_in_flight: usize,
}

/// Walks `source` and plans every file: hashes, and for stylesheets the rewritten content
/// (a stylesheet is planned after the stylesheets it references, so its hash covers theirs).
/// Dot-files and editor backups (`~`) are skipped. Blocking: reads every file.
pub fn plan(source: &Path) -> io::Result<Plan> {
    let mut found = Vec::new();
    walk(source, "", &mut found)?;
    found.sort();

    let mut hashed: HashMap<String, String> = HashMap::new();
    let mut files = Vec::new();
    let mut stylesheets = Vec::new();
    for (name, path) in found {
        let bytes = std::fs::read(&path)?;
        let is_css = name.to_ascii_lowercase().ends_with(".css");
        match String::from_utf8(bytes) {
            Ok(text) if is_css => stylesheets.push((name, path, text)),
            other => {
                let bytes = other.map_or_else(|e| e.into_bytes(), String::into_bytes);
                let key = hashed_name(&name, &bytes);
                hashed.insert(name.clone(), key.clone());
                files.push(Planned {
                    name,
                    hashed: key,
                    path,
                    content: None,
                    size: bytes.len() as u64,
                });
            }
        }
    }

    // Stylesheets in dependency order; the members of a cycle keep each other's plain names.
    let mut pending: Vec<(String, PathBuf, String, Vec<String>)> = stylesheets
        .into_iter()
        .map(|(name, path, text)| {
            let refs = css_references(&name, &text);
            (name, path, text, refs)
        })
        .collect();
    while !pending.is_empty() {
        let waiting: HashSet<String> = pending.iter().map(|p| p.0.clone()).collect();
        let (ready, blocked): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(name, _, _, refs)| refs.iter().all(|r| r == name || !waiting.contains(r)));
        let (batch, rest) = if ready.is_empty() {
            (blocked, Vec::new())
        } else {
            (ready, blocked)
        };
        for (name, path, text, _) in batch {
            let rewritten = rewrite_css(&name, &text, &|target| hashed.get(target).cloned());
            let key = hashed_name(&name, rewritten.as_bytes());
            hashed.insert(name.clone(), key.clone());
            files.push(Planned {
                name,
                hashed: key,
                path,
                size: rewritten.len() as u64,
                content: Some(Bytes::from(rewritten)),
            });
        }
        pending = rest;
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let paths: BTreeMap<String, String> = hashed.into_iter().collect();
    Ok(Plan {
        files,
        manifest: Manifest::new(paths),
    })
}

fn walk(dir: &Path, prefix: &str, found: &mut Vec<(String, PathBuf)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(file_name) = entry.file_name().into_string() else {
            tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if file_name.starts_with('.') || file_name.ends_with('~') {
            continue;
        }
        let name = format!("{prefix}{file_name}");
        let meta = std::fs::metadata(entry.path())?;
        if meta.is_dir() {
            walk(&entry.path(), &format!("{name}/"), found)?;
        } else if meta.is_file() {
            found.push((name, entry.path()));
        }
    }
    Ok(())
}

/// Told how uploads go, for a progress display.
pub trait Progress: Sync {
    /// `uploads` uploads are about to start.
    fn start(&self, uploads: usize) {
        let _ = uploads;
    }
    /// The upload of `file` ended, well or not.
    fn uploaded(&self, file: &Planned) {
        let _ = file;
    }
}

/// No progress display.
impl Progress for () {}

/// Collects `source` into `storage`. A failed upload is reported and the others carry on; the
/// manifest is then left as it was, so pages keep the assets they had.
pub async fn collect(
    source: &Path,
    storage: &dyn Storage,
    options: &Options,
    progress: &dyn Progress,
) -> anyhow::Result<Report> {
    let source = source.to_owned();
    let plan = tokio::task::spawn_blocking(move || plan(&source)).await??;
    let stored: HashSet<String> = storage
        .list("")
        .await?
        .into_iter()
        .map(|object| object.key)
        .collect();
    let previous = match Manifest::load(storage).await {
        Ok(previous) => previous,
        Err(crate::statics::ManifestError::Invalid(e)) => {
            tracing::warn!(error = %e, "the stored manifest is not valid; it will be replaced");
            None
        }
        Err(crate::statics::ManifestError::Storage(e)) => return Err(e.into()),
    };
    let manifest_changed = previous.as_ref() != Some(&plan.manifest) || !stored.contains(MANIFEST);

    let to_upload: Vec<&Planned> = plan
        .files
        .iter()
        .filter(|file| !stored.contains(&file.hashed))
        .collect();
    let mut report = Report {
        total: plan.files.len(),
        unchanged: plan.files.len() - to_upload.len(),
        ..Report::default()
    };
    if options.dry_run {
        report.uploaded = to_upload.iter().map(|f| f.name.clone()).collect();
        report.bytes = to_upload.iter().map(|f| f.size).sum();
        report.manifest_written = manifest_changed;
        return Ok(report);
    }

    progress.start(to_upload.len());
    let in_flight = AtomicUsize::new(0);
    let max_in_flight = AtomicUsize::new(0);
    let results: Vec<(&Planned, Result<(), StorageError>)> = futures_util::stream::iter(to_upload)
        .map(|file| {
            let (in_flight, max_in_flight) = (&in_flight, &max_in_flight);
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_flight.fetch_max(now, Ordering::SeqCst);
                let result = upload(storage, file).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                progress.uploaded(file);
                (file, result)
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .collect()
        .await;
    report.max_in_flight = max_in_flight.into_inner();
    for (file, result) in results {
        match result {
            Ok(()) => {
                report.uploaded.push(file.name.clone());
                report.bytes += file.size;
            }
            Err(e) => report.failed.push((file.name.clone(), e.to_string())),
        }
    }
    report.uploaded.sort();
    report.failed.sort();

    if report.failed.is_empty() && manifest_changed {
        let json = plan.manifest.to_json();
        let body: ByteStream<'static> =
            Box::pin(futures_util::stream::iter([Ok(Bytes::from(json))]));
        let options = SaveOptions {
            content_type: Some("application/json".into()),
            cache_control: Some(NO_CACHE.into()),
            ..Default::default()
        };
        storage.save(MANIFEST, body, &options).await?;
        report.manifest_written = true;
    }
    Ok(report)
}

async fn upload(storage: &dyn Storage, file: &Planned) -> Result<(), StorageError> {
    let body: ByteStream<'static> = match &file.content {
        Some(content) => Box::pin(futures_util::stream::iter([Ok(content.clone())])),
        None => {
            let opened = tokio::fs::File::open(&file.path).await?;
            Box::pin(tokio_util::io::ReaderStream::new(opened).map_err(io::Error::other))
        }
    };
    let options = SaveOptions {
        content_type: Some(content_type(&file.name)),
        cache_control: Some(IMMUTABLE.into()),
        ..Default::default()
    };
    storage.save(&file.hashed, body, &options).await?;
    Ok(())
}

/// The `Content-Type` of an asset, by its extension; text types say they are UTF-8.
pub fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    if mime.type_() == mime_guess::mime::TEXT || essence == "application/javascript" {
        format!("{essence}; charset=utf-8")
    } else {
        essence.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stylesheet_is_hashed_after_what_it_references() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("css")).unwrap();
        std::fs::create_dir_all(root.join("img")).unwrap();
        std::fs::write(root.join("img/a.png"), b"png one").unwrap();
        std::fs::write(root.join("css/base.css"), "b{background:url(../img/a.png)}").unwrap();
        std::fs::write(root.join("css/site.css"), "@import url(base.css);").unwrap();
        std::fs::write(root.join(".DS_Store"), b"junk").unwrap();
        std::fs::write(root.join("css/site.css~"), b"backup").unwrap();

        let first = plan(root).unwrap();
        let names: Vec<&str> = first.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["css/base.css", "css/site.css", "img/a.png"]);
        let base = &first.manifest.paths["css/base.css"];
        let png = &first.manifest.paths["img/a.png"];
        let site = first
            .files
            .iter()
            .find(|f| f.name == "css/site.css")
            .unwrap();
        let text = std::str::from_utf8(site.content.as_ref().unwrap()).unwrap();
        assert_eq!(
            text,
            format!("@import url({});", base.trim_start_matches("css/"))
        );
        let base_file = first
            .files
            .iter()
            .find(|f| f.name == "css/base.css")
            .unwrap();
        assert!(
            std::str::from_utf8(base_file.content.as_ref().unwrap())
                .unwrap()
                .contains(png.trim_start_matches("img/"))
        );

        // Same content, same names; a changed image renames it and both stylesheets above it.
        assert_eq!(plan(root).unwrap().manifest, first.manifest);
        std::fs::write(root.join("img/a.png"), b"png two").unwrap();
        let second = plan(root).unwrap();
        for name in ["img/a.png", "css/base.css", "css/site.css"] {
            assert_ne!(
                second.manifest.paths[name], first.manifest.paths[name],
                "{name}"
            );
        }
    }

    #[test]
    fn stylesheets_that_reference_each_other_are_still_planned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.css"), "@import url(b.css);").unwrap();
        std::fs::write(dir.path().join("b.css"), "@import url(a.css);").unwrap();
        let plan = plan(dir.path()).unwrap();
        assert_eq!(plan.files.len(), 2);
    }

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(
            content_type("css/site.1234abcd.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(content_type("img/logo.png"), "image/png");
        assert_eq!(content_type("img/favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("fonts/a.woff2"), "font/woff2");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert!(content_type("js/app.js").ends_with("javascript; charset=utf-8"));
    }
}
