//! `stowage collectstatic`: uploads `static/` to the static storage under content-hashed names,
//! then the manifest (see [`crate::statics`]). Run it in the release phase, beside `migrate`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::jobs::collect_static::{self, Options, Planned, Progress};
use crate::media::checks::human_size;
use crate::storage::Storages;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory of assets to collect.
    #[arg(long, default_value = "static")]
    pub source: PathBuf,
    /// List what would be uploaded; upload nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How many uploads to keep in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub jobs: u16,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let storages = Storages::from_config(&config);
    let storage = storages.static_files.as_ref();
    let started = Instant::now();
    let options = Options {
        jobs: usize::from(args.jobs),
        dry_run: args.dry_run,
    };

    let progress = Display::new();
    let report = collect_static::collect(&args.source, storage, &options, &progress)
        .await
        .with_context(|| format!("collecting {}", args.source.display()))?;
    progress.finish();

    if args.dry_run {
        for name in &report.uploaded {
            println!("would upload {name}");
        }
        println!(
            "dry run: {} to upload ({}), {} unchanged{}",
            report.uploaded.len(),
            human_size(report.bytes),
            report.unchanged,
            if report.manifest_written {
                ", and the manifest"
            } else {
                ""
            }
        );
        return Ok(());
    }
    for (name, reason) in &report.failed {
        eprintln!("failed: {name}: {reason}");
    }
    if !report.failed.is_empty() {
        anyhow::bail!(
            "{} of {} uploads failed; the manifest was left as it was",
            report.failed.len(),
            report.failed.len() + report.uploaded.len()
        );
    }
    if report.uploaded.is_empty() && !report.manifest_written {
        println!(
            "Nothing to upload: all {} files are unchanged ({:.2} s).",
            report.total,
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "{} uploaded ({}), {} unchanged, manifest {}; at most {} uploads in flight; {:.2} s",
            report.uploaded.len(),
            human_size(report.bytes),
            report.unchanged,
            if report.manifest_written {
                "updated"
            } else {
                "unchanged"
            },
            report.max_in_flight,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// A bar on a terminal; otherwise a plain log line at every tenth of the uploads.
struct Display {
    bar: Option<ProgressBar>,
    total: AtomicUsize,
    done: AtomicUsize,
}

impl Display {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("uploading [{bar:30}] {pos}/{len} {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Display {
    fn start(&self, uploads: usize) {
        self.total.store(uploads, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(uploads as u64);
        }
    }

    fn uploaded(&self, file: &Planned) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.total.load(Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.set_message(file.name.clone());
                bar.inc(1);
            }
            None if done.is_multiple_of((total / 10).max(1)) || done == total => {
                tracing::info!("collectstatic: {done}/{total} uploaded");
            }
            None => {}
        }
    }
}
