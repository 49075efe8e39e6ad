//! Static assets: the files of `static/`, collected under content-hashed names into the `static`
//! storage by `stowage collectstatic` (its engine is `jobs::collect_static`), and the URLs
//! pages link them with.
//!
//! Like Django's `ManifestStaticFilesStorage`: `css/site.css` is stored as
//! `css/site.3f2a9c1b.css` (cached for a year, immutable) beside a manifest,
//! `staticfiles.json`, that maps original names to hashed ones (never cached). A changed file
//! gets a new name while the old object stays, so pages already loaded keep working.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, StorageBackend};
use crate::storage::{Storage, StorageError, read_to_end};

/// The manifest's key in the static storage.
pub const MANIFEST: &str = "staticfiles.json";
/// `Cache-Control` of hashed names: their content never changes.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of the manifest: always revalidated.
pub const NO_CACHE: &str = "no-cache";
/// Hex digits of the content hash in a hashed name.
const HASH_LEN: usize = 8;

/// `staticfiles.json`: original name → hashed name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: String,
    pub paths: BTreeMap<String, String>,
}

impl Manifest {
    pub fn new(paths: BTreeMap<String, String>) -> Self {
        Self {
            version: "1".into(),
            paths,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        json.push(b'\n');
        json
    }

    /// Reads the manifest from `storage`; `None` when there is none yet.
    pub async fn load(storage: &dyn Storage) -> Result<Option<Self>, ManifestError> {
        let bytes = match read_to_end(storage, MANIFEST).await {
            Ok(bytes) => bytes,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(serde_json::from_slice(&bytes)?))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{MANIFEST} is not a valid manifest: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// `css/site.css` with content `bytes` → `css/site.3f2a9c1b.css`.
pub fn hashed_name(name: &str, bytes: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    let hash = &digest[..HASH_LEN];
    let (dir, file) = match name.rfind('/') {
        Some(i) => name.split_at(i + 1),
        None => ("", name),
    };
    match file.rfind('.') {
        Some(dot) if dot > 0 => format!("{dir}{}.{hash}{}", &file[..dot], &file[dot..]),
        _ => format!("{dir}{file}.{hash}"),
    }
}

/// Where pages link assets: through the manifest once `collectstatic` has run, else straight
/// to `static/`, which the app serves itself at `/static/`.
#[derive(Debug, Clone)]
pub struct StaticSite {
    /// The URL hashed names are appended to (`STATIC_URL`, or its default).
    base: String,
    manifest: BTreeMap<String, String>,
    hashed: HashSet<String>,
}

/// Where the app serves `static/` (and, on the filesystem backend, the collected assets).
pub use crate::config::STATIC_SERVED_AT as SERVED_AT;

impl Default for StaticSite {
    fn default() -> Self {
        Self::uncollected()
    }
}

impl StaticSite {
    /// No manifest: every asset is served from `static/`.
    pub fn uncollected() -> Self {
        Self {
            base: SERVED_AT.into(),
            manifest: BTreeMap::new(),
            hashed: HashSet::new(),
        }
    }

    /// Reads the manifest from the static storage. Without one (or when the storage cannot be
    /// read, which is logged) pages link to `static/` as served by the app.
    pub async fn load(config: &Config, storage: &dyn Storage) -> Self {
        let manifest = match Manifest::load(storage).await {
            Ok(Some(manifest)) => manifest,
            Ok(None) => return Self::uncollected(),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the static manifest; serving static/ as it is");
                return Self::uncollected();
            }
        };
        let base = match (&config.statics.url, config.statics.backend) {
            (Some(url), _) => url.clone(),
            (None, StorageBackend::Filesystem) => SERVED_AT.into(),
            (None, StorageBackend::S3) => storage.base_url(),
        };
        Self::with_manifest(base, manifest)
    }

    pub fn with_manifest(base: String, manifest: Manifest) -> Self {
        Self {
            base,
            hashed: manifest.paths.values().cloned().collect(),
            manifest: manifest.paths,
        }
    }

    /// What the links of collected assets start with: `/static/`, `STATIC_URL`, or the
    /// bucket's public URL of `ASSETS_PREFIX`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether `collectstatic` has run: links use hashed names.
    pub fn is_collected(&self) -> bool {
        !self.manifest.is_empty()
    }

    /// Whether `path` (below [`SERVED_AT`]) is a hashed name of the manifest.
    pub fn is_hashed(&self, path: &str) -> bool {
        self.hashed.contains(path)
    }

    /// The URL of the asset `name` (`css/site.css`).
    pub fn url(&self, name: &str) -> String {
        match self.manifest.get(name) {
            Some(hashed) => format!("{}{hashed}", self.base),
            None => format!("{SERVED_AT}{name}"),
        }
    }
}

/// Rewrites the `url(…)` references of the stylesheet `css_name` to the hashed names `hashed`
/// gives for the files they point at, keeping each reference's own directory part, query and
/// fragment. External, absolute, `data:` and unknown references are left as they are.
pub fn rewrite_css(css_name: &str, css: &str, hashed: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(at) = find_ascii_case_insensitive(rest, "url(") {
        let (before, after) = rest.split_at(at + 4);
        out.push_str(before);
        let Some(close) = after.find(')') else {
            break;
        };
        out.push_str(&rewrite_reference(css_name, &after[..close], hashed));
        rest = &after[close..];
    }
    out.push_str(rest);
    out
}

/// The files a stylesheet's `url(…)` references resolve to (for ordering stylesheets that
/// reference each other).
pub fn css_references(css_name: &str, css: &str) -> Vec<String> {
    let found = std::cell::RefCell::new(Vec::new());
    rewrite_css(css_name, css, &|name| {
        found.borrow_mut().push(name.to_owned());
        None
    });
    found.into_inner()
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn rewrite_reference(
    css_name: &str,
    inner: &str,
    hashed: &dyn Fn(&str) -> Option<String>,
) -> String {
    let trimmed = inner.trim();
    let (quote, target) = match trimmed.chars().next() {
        Some(q @ ('"' | '\'')) if trimmed.len() >= 2 && trimmed.ends_with(q) => {
            (&trimmed[..1], &trimmed[1..trimmed.len() - 1])
        }
        _ => ("", trimmed),
    };
    let external = target.is_empty()
        || target.starts_with('/')
        || target.starts_with('#')
        || target.contains(':');
    if external {
        return inner.to_owned();
    }
    let (path, suffix) = target.split_at(target.find(['?', '#']).unwrap_or(target.len()));
    let Some(new_name) = resolve(css_name, path).and_then(|name| hashed(&name)) else {
        return inner.to_owned();
    };
    let new_file = new_name.rsplit('/').next().unwrap_or(&new_name);
    let dir = path.rfind('/').map_or("", |i| &path[..=i]);
    format!("{quote}{dir}{new_file}{suffix}{quote}")
}

/// `css/site.css` + `../img/a.png` → `img/a.png`; `None` when it climbs out of the tree.
fn resolve(css_name: &str, reference: &str) -> Option<String> {
    let mut parts: Vec<&str> = css_name.split('/').collect();
    parts.pop();
    for segment in reference.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_keep_the_directory_and_the_extension() {
        let h = &hex::encode(Sha256::digest(b"body"))[..8];
        assert_eq!(
            hashed_name("css/site.css", b"body"),
            format!("css/site.{h}.css")
        );
        assert_eq!(
            hashed_name("app.min.js", b"body"),
            format!("app.min.{h}.js")
        );
        assert_eq!(hashed_name("LICENSE", b"body"), format!("LICENSE.{h}"));
        assert_eq!(
            hashed_name("img/.hidden", b"body"),
            format!("img/.hidden.{h}")
        );
        assert_ne!(hashed_name("a.css", b"one"), hashed_name("a.css", b"two"));
    }

    #[test]
    fn css_references_are_rewritten_to_hashed_names() {
        let hashed = |name: &str| match name {
            "img/logo.png" => Some("img/logo.1234abcd.png".to_owned()),
            "css/fonts/a.woff2" => Some("css/fonts/a.aaaa0000.woff2".to_owned()),
            _ => None,
        };
        let css = concat!(
            ".a{background:url(../img/logo.png)}\n",
            ".b{background:URL( \"../img/logo.png?v=1#x\" )}\n",
            "@font-face{src:url('fonts/a.woff2') format('woff2')}\n",
            ".c{background:url(data:image/png;base64,AAAA)}\n",
            ".d{background:url(https://cdn.example/x.png)}\n",
            ".e{background:url(/static/img/logo.png)}\n",
            ".f{background:url(../img/missing.png)}\n",
            ".g{background:url(../../../etc/passwd)}\n",
            ".h{behavior:url(#default)}\n",
        );
        let out = rewrite_css("css/site.css", css, &hashed);
        let expected = concat!(
            ".a{background:url(../img/logo.1234abcd.png)}\n",
            ".b{background:URL(\"../img/logo.1234abcd.png?v=1#x\")}\n",
            "@font-face{src:url('fonts/a.aaaa0000.woff2') format('woff2')}\n",
            ".c{background:url(data:image/png;base64,AAAA)}\n",
            ".d{background:url(https://cdn.example/x.png)}\n",
            ".e{background:url(/static/img/logo.png)}\n",
            ".f{background:url(../img/missing.png)}\n",
            ".g{background:url(../../../etc/passwd)}\n",
            ".h{behavior:url(#default)}\n",
        );
        assert_eq!(out, expected);
        assert_eq!(
            css_references("css/site.css", css),
            [
                "img/logo.png",
                "img/logo.png",
                "css/fonts/a.woff2",
                "img/missing.png"
            ]
        );
    }

    #[test]
    fn urls_resolve_through_the_manifest_when_there_is_one() {
        let site = StaticSite::uncollected();
        assert_eq!(site.url("css/site.css"), "/static/css/site.css");
        assert!(!site.is_collected());
        let manifest = Manifest::new(BTreeMap::from([(
            "css/site.css".to_owned(),
            "css/site.0123abcd.css".to_owned(),
        )]));
        let site = StaticSite::with_manifest("https://cdn.example/assets/".into(), manifest);
        assert_eq!(
            site.url("css/site.css"),
            "https://cdn.example/assets/css/site.0123abcd.css"
        );
        assert_eq!(
            site.url("js/new.js"),
            "/static/js/new.js",
            "not collected yet"
        );
        assert!(site.is_hashed("css/site.0123abcd.css"));
        assert!(!site.is_hashed("css/site.css"));
    }
}
