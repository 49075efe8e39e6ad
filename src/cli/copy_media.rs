//! `stowage copy-media`: copies every object the database references from the live storage
//! (read-only key) into this instance's storage. See [`crate::jobs::staging`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, LiveConfig, StorageBackend};
use crate::jobs::staging::{self, CopyOptions, CopyProgress, MediaStorages};
use crate::media::checks::human_size;
use crate::services::Services;
use crate::storage::Storages;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "copy_options")] // make-staging flattens these beside its own `Args`
pub struct Args {
    /// Objects copied at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
    /// Copy inside S3 (CopyObject; UploadPartCopy over 5 GiB) instead of streaming through this
    /// process. This instance's key must then be able to read the live bucket.
    #[arg(long)]
    pub server_side: bool,
    /// List what would be copied; copy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the failures to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Seconds one object's copy, retries included, may take.
    #[arg(long, default_value_t = 300)]
    pub object_timeout: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let live = LiveConfig::from_env()?;
    let live_s3 = live.s3.as_ref().context(
        "LIVE_AWS_STORAGE_BUCKET_NAME, LIVE_READ_ONLY_ACCESS_KEY_ID and LIVE_READ_ONLY_SECRET_KEY \
         must name the live storage to copy from",
    )?;
    if args.server_side && config.media.backend != StorageBackend::S3 {
        anyhow::bail!("--server-side copies inside S3: it needs DEFAULT_FILE_STORAGE=s3");
    }
    if config.media.backend == StorageBackend::S3
        && let Some(s3) = &config.s3
        && s3.bucket == live_s3.bucket
        && s3.endpoint_url == live_s3.endpoint_url
    {
        anyhow::bail!(
            "refusing to copy: AWS_STORAGE_BUCKET_NAME is the live bucket {:?}",
            s3.bucket
        );
    }
    let state = Services::build(&config).await?;
    state.check_migrated().await?;
    let references = crate::media::references(&state.db).await?;
    let (public, private) = Storages::s3_media(live_s3, None);
    let live = MediaStorages { public, private };
    let staging = MediaStorages {
        public: state.storages.public.clone(),
        private: state.storages.private.clone(),
    };
    let options = CopyOptions {
        jobs: usize::from(args.jobs),
        server_side: args.server_side,
        dry_run: args.dry_run,
        object_timeout: Duration::from_secs(args.object_timeout.max(1)),
        ..CopyOptions::default()
    };
    let started = Instant::now();
    let progress = Display::new();
    let report = staging::copy_media(&references, &live, &staging, &options, &progress).await?;
    progress.finish();
    state.db.close().await;

    if args.dry_run {
        for reference in &report.to_copy {
            println!(
                "would copy {} ({} row {} {})",
                reference.key, reference.table, reference.row_id, reference.field
            );
        }
        println!(
            "dry run: {} to copy ({}), {} already there, {} missing from live",
            report.to_copy.len(),
            human_size(report.bytes),
            report.skipped,
            report.failed.len()
        );
    }
    for failure in &report.failed {
        let r = &failure.reference;
        eprintln!(
            "failed: {} row {} {} {:?}: {}",
            r.table, r.row_id, r.field, r.key, failure.error
        );
    }
    if let Some(path) = &args.report {
        let mut file = std::fs::File::create(path)
            .with_context(|| format!("creating the report {}", path.display()))?;
        for failure in &report.failed {
            serde_json::to_writer(&mut file, failure)?;
            writeln!(file)?;
        }
    }
    if !args.dry_run {
        println!(
            "copied {}, skipped {}, failed {}, {} in {:.1} s",
            report.copied,
            report.skipped,
            report.failed.len(),
            human_size(report.bytes),
            started.elapsed().as_secs_f64()
        );
    }
    if !report.failed.is_empty() {
        anyhow::bail!("{} objects could not be copied", report.failed.len());
    }
    Ok(())
}

/// Objects and bytes: a bar on a terminal, otherwise a log line every 5 seconds.
struct Display {
    bar: Option<ProgressBar>,
    objects: AtomicUsize,
    total: AtomicUsize,
    bytes: AtomicU64,
    last_line: Mutex<Instant>,
}

impl Display {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "copying [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            objects: AtomicUsize::new(0),
            total: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl CopyProgress for Display {
    fn start(&self, objects: usize, bytes: u64) {
        self.total.store(objects, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
        }
    }

    fn finished(&self, copied: Option<u64>) {
        let done = self.objects.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        let size = copied.unwrap_or(0);
        let bytes = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        match &self.bar {
            Some(bar) => {
                bar.inc(size);
                bar.set_message(format!("{done}/{total} objects"));
            }
            None => {
                let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= Duration::from_secs(5) || done == total {
                    *last = Instant::now();
                    tracing::info!("copy-media: {done}/{total} objects, {}", human_size(bytes));
                }
            }
        }
    }
}
