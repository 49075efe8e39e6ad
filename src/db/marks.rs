//! What a database can say about itself: which database it is (so two URLs spelled
//! differently are known to name the same one), and the marks an operator put on it (a
//! restored copy of live is marked `staging` before `make-staging` may scrub it).

use super::{Backend, Database, DbError, now};

/// Which database a connection reached: the server (PostgreSQL's system identifier, or the
/// SQLite file's canonical path) and the database's name (the SQLite file's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseIdentity {
    pub server: String,
    pub database: String,
}

impl std::fmt::Display for DatabaseIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database {:?} on server {}", self.database, self.server)
    }
}

impl Database {
    /// Which database this is, whatever URL reached it.
    pub async fn identity(&self) -> Result<DatabaseIdentity, DbError> {
        match self.backend {
            Backend::Postgres => {
                let (database,): (String,) = sqlx::query_as("SELECT current_database()::text")
                    .fetch_one(&self.pool)
                    .await?;
                // The cluster's system identifier names the server whatever its address; a
                // role that may not read it falls back to the address and start time.
                let server: Result<(String,), _> =
                    sqlx::query_as("SELECT system_identifier::text FROM pg_control_system()")
                        .fetch_one(&self.pool)
                        .await;
                let server = match server {
                    Ok((id,)) => format!("system {id}"),
                    Err(_) => {
                        let (addr,): (String,) = sqlx::query_as(
                            "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || \
                             coalesce(inet_server_port()::text, '') || ' started ' || \
                             pg_postmaster_start_time()::text",
                        )
                        .fetch_one(&self.pool)
                        .await?;
                        addr
                    }
                };
                Ok(DatabaseIdentity { server, database })
            }
            Backend::Sqlite => {
                let rows: Vec<(i64, String, String)> = sqlx::query_as("PRAGMA database_list")
                    .fetch_all(&self.pool)
                    .await?;
                let file = rows
                    .into_iter()
                    .find(|(_, name, _)| name == "main")
                    .map(|(_, _, file)| file)
                    .unwrap_or_default();
                let path = std::fs::canonicalize(&file).unwrap_or_else(|_| file.into());
                Ok(DatabaseIdentity {
                    server: format!("sqlite {}", path.display()),
                    database: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                })
            }
        }
    }

    /// Whether the database carries `mark`.
    pub async fn has_mark(&self, mark: &str) -> Result<bool, DbError> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT marked_at FROM instance_marks WHERE mark = $1")
                .bind(mark)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Puts `mark` on the database (again is fine).
    pub async fn set_mark(&self, mark: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO instance_marks (mark, marked_at) VALUES ($1, $2) \
             ON CONFLICT (mark) DO NOTHING",
        )
        .bind(mark)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
