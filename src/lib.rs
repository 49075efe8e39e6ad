//! stowage: pluggable public and private file storage for a members' site.
//!
//! Public files (avatars) and private files (PDF resumes) live on the local filesystem or S3
//! behind one [`storage::Storage`] API; members follow `/resume/{id}` to a fresh short-lived
//! signed URL. The modules depend one way: `web` → (`auth`, `db`, `storage`) → `config`.

pub mod assets;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod member_files;
pub mod slots;
pub mod staging;
pub mod storage;
pub mod telemetry;
pub mod uploads;
pub mod web;
