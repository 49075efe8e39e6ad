//! The database: `DATABASE_URL`, `DATABASE_POOL_SIZE`, `DATABASE_CONNECT_TIMEOUT_SECS`,
//! `DATABASE_STATEMENT_TIMEOUT_SECS`.

use std::collections::HashMap;
use std::time::Duration;

use super::{ConfigError, Vars, parse, positive};

/// The longest a statement runs when `DATABASE_STATEMENT_TIMEOUT_SECS` is not set: under the
/// request's own 25 s, so that a page gets its 503 from the database layer, not the edge.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The embedded default database.
const DEFAULT_DATABASE_URL: &str = "sqlite://data/stowage.db";

/// `DATABASE_URL` and how the pool talks to it.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool_size: u32,
    /// How long start-up keeps retrying a database that does not answer.
    pub connect_timeout: Duration,
    /// The longest one statement may run, and a wait for its answer may last.
    pub statement_timeout: Duration,
}

impl DatabaseConfig {
    pub(super) fn from_vars(vars: &dyn Vars) -> Result<Self, ConfigError> {
        let url = vars
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        Ok(Self {
            url,
            pool_size: u32::try_from(positive(vars, "DATABASE_POOL_SIZE", 10)?)
                .map_err(|_| ConfigError::new("DATABASE_POOL_SIZE", "is too large"))?,
            connect_timeout: Duration::from_secs(parse(vars, "DATABASE_CONNECT_TIMEOUT_SECS", 30)?),
            statement_timeout: Duration::from_secs(positive(
                vars,
                "DATABASE_STATEMENT_TIMEOUT_SECS",
                DEFAULT_STATEMENT_TIMEOUT.as_secs(),
            )?),
        })
    }

    /// Another database's URL (`LIVE_DATABASE_URL`), with the default pool settings.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = [("DATABASE_URL".to_owned(), url.to_owned())].into();
        Self::from_vars(&vars)
    }

    /// The same database with a pool of `size` connections (the one-shot commands need one
    /// or two).
    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }
}
