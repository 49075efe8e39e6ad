//! stowage: pluggable public and private file storage for a members' site.
//!
//! Public files (avatars) and private files (PDF resumes) live on the local filesystem or S3
//! behind one [`storage::Storage`] API; members follow `/resume/{id}` to a fresh short-lived
//! signed URL.
//!
//! # Parts
//!
//! The code is in parts, and a part uses only the parts its row names (dependencies point down
//! the table). This table is the one statement of the rule: `tests/it/architecture.rs` reads
//! it and fails when a module imports a part its row does not name.
//!
//! | part | modules | holds | may use |
//! |---|---|---|---|
//! | Face | `main`, `cli` | one file per command: its `Args` and `run` | every part |
//! | Web | `web` | router, state, `AppError`, CSRF, one module per feature | Services, Media, Statics, Auth, Data, Storage, Config, Support |
//! | Jobs | `jobs` | collectstatic, staging (copy and audit media), verifying digests, the doctor, housekeeping | Services, Statics, Media, Data, Storage, Config, Support |
//! | Services | `services` | the one start-up path: database and storages from the config | Data, Storage, Config |
//! | Media | `media` | a member's files: checks, keys, store/replace/delete, direct uploads, export, account deletion | Data, Storage, Config, Support |
//! | Statics | `statics` | the manifest, hashed names, the URL of an asset | Storage, Config |
//! | Auth | `auth` | axum-login backend, password hashing, throttling | Data, Config, Support |
//! | Data | `db` | `Database` (PostgreSQL or SQLite), one module per table family, caches | Config |
//! | Storage | `storage` | the trait, the filesystem and S3 backends, signing | Config |
//! | Support | `slots`, `telemetry` | bounded CPU work; logging set-up | Config |
//! | Config | `config` | every environment variable, per section | — |
//!
//! A `/resume/{id}` request: Web (`web::resume`) asks Data for the profile's resume (cached,
//! invalidated across instances) and Storage for a signed URL, and answers 302. An avatar
//! upload: Web reads the form and hands the bytes to Media, which checks and re-encodes them
//! (on Support's bounded slots), saves them through Storage under a fresh key, points the
//! profile at it through Data, and only then deletes the old object.

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod jobs;
pub mod media;
pub mod services;
pub mod slots;
pub mod statics;
pub mod storage;
pub mod telemetry;
pub mod web;
