//! The `stowage` command line: one subcommand per file, each with its `Args` and `run`.

pub mod changepassword;
pub mod check_media;
pub mod collectstatic;
pub mod copy_media;
pub mod createuser;
pub mod doctor;
pub mod downloads;
pub mod make_staging;
pub mod mark_staging;
pub mod migrate;
pub mod seed_demo;
pub mod serve;

use clap::{Parser, Subcommand};

/// Pluggable public and private file storage for a members' site.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the site (the default): applies migrations, then listens on HOST:PORT.
    Serve(serve::Args),
    /// Apply the migrations of the database DATABASE_URL names.
    Migrate(migrate::Args),
    /// Create a member; the password is read from a prompt or from standard input.
    Createuser(createuser::Args),
    /// Create demo members with generated avatars and PDF resumes.
    SeedDemo(seed_demo::Args),
    /// Upload static/ to the static storage under content-hashed names, then the manifest.
    Collectstatic(collectstatic::Args),
    /// Set a member's password (ends all their sessions); from a prompt or standard input.
    Changepassword(changepassword::Args),
    /// Mark the database DATABASE_URL names (a restored copy of live) as staging.
    MarkStaging(mark_staging::Args),
    /// Scrub a restored copy of live into a staging database (non-staff users, sessions).
    MakeStaging(make_staging::Args),
    /// Copy every referenced object from the live storage (read-only key) into this one.
    CopyMedia(copy_media::Args),
    /// List references to missing objects and objects nothing references; --verify digests.
    CheckMedia(check_media::Args),
    /// Check every storage, key and the database as the app will use them; print the fixes.
    Doctor(doctor::Args),
    /// Print the download log from a date on, as CSV (who fetched which resume, and when).
    Downloads(downloads::Args),
}
