//! Session look-ups that arrive together go to the database together.
//!
//! Without the caches (`CACHE_TTL_SECS=0`, or a session first seen), every signed-in request
//! reads its session, member and wanted resume in one statement (see [`super::prefetch`]). At
//! thousands of such requests a second the statement itself is cheap; what each one costs, on
//! both sides, is its round trip: a pool checkout, a TLS record each way, a wake-up of the
//! request and of a PostgreSQL backend. So look-ups are queued, and at most [`RUNNING`]
//! statements are out at once, each taking every look-up that waited for it (up to [`MOST`]).
//! Alone, a look-up goes out at once, as before; under load, one statement answers many.
//!
//! Nothing is kept between statements: each look-up is answered from a statement sent after it
//! was asked, exactly as fresh as one of its own. It is group commit applied to reads, written
//! here because the pattern (the `dataloader` crates) comes with a delay to gather a batch,
//! which would make a lone request slower.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, FromRow, Row};
use tokio::sync::oneshot;

use super::{Backend, ResumeRef, UserRow};

/// Statements out at once; the others' look-ups wait for the next.
const RUNNING: usize = 2;
/// The most look-ups one statement answers.
const MOST: usize = 128;

/// One look-up as the statement reads it: its place in the batch, the session id, the
/// profile whose resume is wanted.
#[derive(Serialize)]
struct Wanted<'a> {
    i: i64,
    sid: &'a str,
    wanted: Option<i64>,
}

const BATCH_COLUMNS: &str = "s.data, u.id, u.username, u.password_hash, u.is_staff, \
     u.session_epoch, p.resume_key, p.resume_filename";
/// `$1`: the look-ups as a JSON array of [`Wanted`]; `$2`: now. A row per live session found.
const BATCH_JOINS: &str = "JOIN sessions s ON s.id = w.sid AND s.expires_at > $2 \
     LEFT JOIN users u ON u.id = s.user_id \
     LEFT JOIN profiles p ON p.id = w.wanted AND p.resume_key IS NOT NULL \
     AND p.resume_filename IS NOT NULL";

fn batch_statement(backend: Backend) -> String {
    match backend {
        Backend::Postgres => format!(
            "SELECT w.i, {BATCH_COLUMNS} \
             FROM json_to_recordset($1::json) AS w(i BIGINT, sid TEXT, wanted BIGINT) \
             {BATCH_JOINS}"
        ),
        Backend::Sqlite => format!(
            "SELECT w.i, {BATCH_COLUMNS} FROM (SELECT json_extract(value, '$.i') AS i, \
             json_extract(value, '$.sid') AS sid, json_extract(value, '$.wanted') AS wanted \
             FROM json_each($1)) AS w {BATCH_JOINS}"
        ),
    }
}

/// A live session as read: its record (JSON), its member, and the wanted resume if it has one.
#[derive(Debug)]
pub struct Loaded {
    pub data: Vec<u8>,
    pub user: Option<UserRow>,
    pub resume: Option<ResumeRef>,
}

type Answer = Result<Option<Loaded>, String>;

struct Waiting {
    session: String,
    wanted: Option<i64>,
    reply: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    running: usize,
}

/// The most look-ups that may wait at once (each some 100 bytes: a session id, a profile id,
/// a reply channel); past it a look-up is refused at once, as an outage is.
const MOST_WAITING: usize = 8192;

/// The queue of session look-ups of one pool.
pub struct SessionLoads {
    pool: AnyPool,
    statement: String,
    queue: Mutex<Queue>,
    /// How long a statement's answer is waited for; past it the look-ups it carried fail and
    /// its connection is closed, and the runner goes on with the next batch.
    deadline: Duration,
}

impl std::fmt::Debug for SessionLoads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLoads").finish_non_exhaustive()
    }
}

impl SessionLoads {
    pub fn new(pool: AnyPool, backend: Backend, deadline: Duration) -> Self {
        Self {
            pool,
            statement: batch_statement(backend),
            queue: Mutex::default(),
            deadline,
        }
    }

    /// Session `session` if live, with its member and the resume of profile `wanted`, read by
    /// a statement sent after this call; `Err` (the driver's message) when it failed.
    pub async fn load(self: &Arc<Self>, session: String, wanted: Option<i64>) -> Answer {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut queue = self
                .queue
                .lock()
                .expect("the queue's lock is never poisoned");
            if queue.waiting.len() >= MOST_WAITING {
                return Err(format!(
                    "{MOST_WAITING} session look-ups already wait for the database"
                ));
            }
            queue.waiting.push(Waiting {
                session,
                wanted,
                reply,
            });
            let start = queue.running < RUNNING;
            if start {
                queue.running += 1;
            }
            start
        };
        if start {
            // A task of its own, so that a request given up (its client gone, its time limit
            // passed) never strands the look-ups queued behind it.
            tokio::spawn(
                Runner {
                    loads: self.clone(),
                    done: false,
                }
                .run(),
            );
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the session look-up was dropped".to_owned()))
    }

    async fn answer(&self, batch: Vec<Waiting>) {
        let looked_up: Vec<Wanted<'_>> = batch
            .iter()
            .enumerate()
            .map(|(i, waiting)| Wanted {
                i: i as i64,
                sid: &waiting.session,
                wanted: waiting.wanted,
            })
            .collect();
        let looked_up = serde_json::to_string(&looked_up).expect("ids serialize");
        let rows = self.fetch(looked_up).await;
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        answers.resize_with(batch.len(), || Ok(None));
        match rows {
            Ok(rows) => {
                for row in &rows {
                    if let Ok(i) = row.try_get::<i64, _>(0)
                        && let Some(answer) =
                            usize::try_from(i).ok().and_then(|i| answers.get_mut(i))
                    {
                        *answer = loaded(row).map(Some).map_err(|e| e.to_string());
                    }
                }
            }
            Err(err) => {
                let message = err.to_string();
                answers.iter_mut().for_each(|a| *a = Err(message.clone()));
            }
        }
        for (waiting, answer) in batch.into_iter().zip(answers) {
            // A request given up no longer listens; nothing to do.
            let _ = waiting.reply.send(answer);
        }
    }
}

impl SessionLoads {
    /// The batch's rows, within [`SessionLoads::deadline`]. A connection that does not answer
    /// in time is closed, not given back: the pool would ping it again for as long as it stays
    /// silent, and a runner waiting on it for ever left every look-up after it waiting too.
    async fn fetch(&self, looked_up: String) -> Result<Vec<AnyRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(&self.statement)
            .bind(looked_up)
            .bind(super::now())
            .fetch_all(&mut *conn);
        match tokio::time::timeout(self.deadline, rows).await {
            Ok(rows) => rows,
            Err(_) => {
                drop(conn.detach());
                tracing::warn!(
                    deadline_ms = self.deadline.as_millis() as u64,
                    "session look-up: no answer within the deadline; its connection is closed"
                );
                Err(super::timed_out(self.deadline))
            }
        }
    }
}

fn loaded(row: &AnyRow) -> Result<Loaded, sqlx::Error> {
    let user = match row.try_get::<Option<i64>, _>(2)? {
        Some(_) => Some(UserRow::from_row(row)?),
        None => None,
    };
    let key: Option<String> = row.try_get("resume_key")?;
    let filename: Option<String> = row.try_get("resume_filename")?;
    Ok(Loaded {
        data: row.try_get("data")?,
        user,
        resume: key
            .zip(filename)
            .map(|(resume_key, resume_filename)| ResumeRef {
                resume_key,
                resume_filename,
            }),
    })
}

/// One running statement's turn: answers batches while look-ups wait, then gives its place up
/// in the same hold of the lock that finds the queue empty, so that no look-up queued meanwhile
/// is left without a runner.
struct Runner {
    loads: Arc<SessionLoads>,
    done: bool,
}

impl Runner {
    async fn run(mut self) {
        loop {
            let batch: Vec<Waiting> = {
                let mut queue =
                    (self.loads.queue.lock()).expect("the queue's lock is never poisoned");
                if queue.waiting.is_empty() {
                    queue.running -= 1;
                    self.done = true;
                    return;
                }
                let n = queue.waiting.len().min(MOST);
                queue.waiting.drain(..n).collect()
            };
            self.loads.answer(batch).await;
        }
    }
}

/// Only on a panic (a bug): the place is given up and what waits gets an error, not a hang.
impl Drop for Runner {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(mut queue) = self.loads.queue.lock() {
            queue.running -= 1;
            queue.waiting.clear();
        }
    }
}
