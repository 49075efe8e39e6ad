//! Integration tests: the real app on a random port against real SQLite, PostgreSQL and an
//! S3-compatible server. One binary, one module per area.

#[path = "../support/s3.rs"]
mod s3_server;

mod architecture;
mod browser;
mod cli;
mod collectstatic;
mod direct_upload;
mod faults;
mod health;
mod helpers;
mod hostile;
mod login;
mod media;
mod pages;
mod process;
mod resume;
mod staging;
mod storage;
mod tcp_proxy;
mod uploads;
