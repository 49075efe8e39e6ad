//! Integration tests: the real app on a random port against real SQLite, PostgreSQL and an
//! S3-compatible server. One binary, one module per area.

mod architecture;
mod browser;
mod cli;
mod cluster;
mod collectstatic;
mod credentials;
mod direct_upload;
mod doctor;
mod downloads;
mod faults;
mod garage;
mod health;
mod helpers;
mod hostile;
mod login;
mod media;
mod own_data;
mod pages;
mod process;
mod resume;
mod share_links;
mod staging;
mod storage;
mod tcp_proxy;
mod uploads;
