//! The download log's writer.
//!
//! A redirect hands its entry to [`DownloadLog`] and goes on: a task of its own takes the
//! entries every [`FLUSH_EVERY`] and writes those of each second once the second has ended (one
//! transaction, [`BATCH`] entries at most), so the hot path never waits on the database.
//! [`DownloadLog::flush`] writes whatever is pending; `serve` calls it once the server has
//! stopped, so nothing recorded before SIGTERM is lost. While the database does not answer,
//! entries are kept (up to [`MAX_PENDING`]) and written once it does.
//!
//! A batch's downloads of one resume by one member or link in one second go into one row
//! ([`groups`]), which lists their request ids in order; the readers ([`super`]) open the rows
//! back into downloads. Writing a second only once it has ended puts all of its downloads in one
//! batch: a member or link fetching a resume again and again so costs the database a row a
//! second rather than a row a download.
//!
//! On PostgreSQL a batch goes by `COPY`, on a connection of the writer's own
//! (`application_name` `stowage-download-log`, beside the pool): a row so costs the database
//! about half what an `INSERT` of the batch as JSON did, which at thousands of downloads a
//! second is most of what the log costs. An entry whose profile, member or link was deleted
//! meanwhile (an account deleted while its entries waited) is left out, as the SQLite statement
//! leaves it out. The batch's transaction holds [`DELETION_LOCK`] shared and an account's
//! deletion holds it alone, so a deletion either came before (the batch, reading after it,
//! drops the entry) or waits for the batch and then deletes its rows too (see
//! [`Database::delete_account`]). Locking the rows a batch names instead (`FOR KEY SHARE`)
//! wrote a lock into each of hundreds of rows per batch and cost a fifth of the redirects.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};

use super::{DELETION_LOCK, Download};
use crate::db::{
    ACQUIRE_TIMEOUT, Backend, Database, DbError, now, postgres_session_settings, timed_out,
};

/// The `application_name` of the writer's own PostgreSQL connection.
pub const WRITER_NAME: &str = "stowage-download-log";

/// The columns of a log row: a [`Group`].
const GROUP_COLUMNS: &str = "profile_id, member_id, share_link_id, who, at, hits, request_ids";

/// The most downloads one row holds; more of the same second start another row.
const MOST_PER_ROW: usize = 1_000;

/// One log row: downloads of one resume, by one member or link, in one second (see the
/// migration `download_log_groups`). `request_ids` is a JSON array, in the order they came.
#[derive(Debug, serde::Serialize)]
struct Group<'a> {
    profile_id: i64,
    member_id: Option<i64>,
    share_link_id: Option<i64>,
    who: &'a str,
    at: i64,
    hits: usize,
    request_ids: String,
    /// Where its first download came among the batch's.
    #[serde(skip)]
    first: usize,
}

impl Download {
    /// What the downloads sharing a row have in common.
    fn row_key(&self) -> (i64, i64, Option<i64>, Option<i64>, &str) {
        (
            self.profile_id,
            self.at,
            self.member_id,
            self.share_link_id,
            &self.who,
        )
    }
}

/// `entries` as log rows, in profile order: consecutive rows then go to the same leaf of the
/// index on (profile_id, at), which most of a row's cost is. A profile's rows keep the order of
/// their first downloads (the readers order by id within a second), a row's request ids the
/// order their downloads came in.
fn groups<'a>(entries: impl IntoIterator<Item = &'a Download>) -> Vec<Group<'a>> {
    // With its place, so that an unstable sort (no scratch memory) keeps the order they came.
    let mut sorted: Vec<(usize, &Download)> = entries.into_iter().enumerate().collect();
    sorted.sort_unstable_by(|(i, a), (j, b)| a.row_key().cmp(&b.row_key()).then(i.cmp(j)));
    let mut groups = Vec::new();
    for run in sorted.chunk_by(|(_, a), (_, b)| a.row_key() == b.row_key()) {
        for part in run.chunks(MOST_PER_ROW) {
            let first = part[0].1;
            // Text cannot hold NUL on PostgreSQL, even escaped in JSON; a request id never
            // has one (header values cannot), and one sent anyway is dropped.
            let ids: Vec<Cow<'_, str>> = part
                .iter()
                .map(|(_, d)| {
                    if d.request_id.contains('\0') {
                        Cow::Owned(d.request_id.replace('\0', ""))
                    } else {
                        Cow::Borrowed(d.request_id.as_str())
                    }
                })
                .collect();
            groups.push(Group {
                profile_id: first.profile_id,
                member_id: first.member_id,
                share_link_id: first.share_link_id,
                who: &first.who,
                at: first.at,
                hits: part.len(),
                request_ids: serde_json::to_string(&ids).expect("strings serialize"),
                first: part[0].0,
            });
        }
    }
    groups.sort_unstable_by_key(|group| (group.profile_id, group.first));
    groups
}

/// SQLite's batch: one JSON array of rows bound to one parameter, expanded by its own JSON
/// functions (binding seven parameters a row cost more than the row). A row whose profile,
/// member or link was deleted meanwhile is left out.
const INSERT_SQLITE: &str = "INSERT INTO downloads (profile_id, member_id, share_link_id, who, \
     at, hits, request_ids) SELECT profile_id, member_id, share_link_id, who, at, hits, \
     request_ids FROM \
     (SELECT json_extract(value, '$.profile_id') AS profile_id, \
     json_extract(value, '$.member_id') AS member_id, \
     json_extract(value, '$.share_link_id') AS share_link_id, \
     json_extract(value, '$.who') AS who, json_extract(value, '$.at') AS at, \
     json_extract(value, '$.hits') AS hits, \
     json_extract(value, '$.request_ids') AS request_ids FROM json_each($1)) AS d \
     WHERE EXISTS (SELECT 1 FROM profiles p WHERE p.id = d.profile_id) \
     AND (d.member_id IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.id = d.member_id)) \
     AND (d.share_link_id IS NULL \
     OR EXISTS (SELECT 1 FROM share_links l WHERE l.id = d.share_link_id))";

/// Where batches go: on PostgreSQL, the writer's own connection (for `COPY`); else the pool.
pub struct LogWriter {
    db: Database,
    copy: Option<PgPool>,
}

impl LogWriter {
    pub fn new(db: Database) -> Self {
        let copy = (db.backend == Backend::Postgres)
            .then(|| PgConnectOptions::from_str(db.url.expose_secret()).ok())
            .flatten()
            .map(|options| {
                let settings = postgres_session_settings(db.deadline);
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(move |conn, _| {
                        let settings = settings.clone();
                        Box::pin(async move {
                            sqlx::Executor::execute(&mut *conn, settings.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_lazy_with(options.application_name(WRITER_NAME))
            });
        Self { db, copy }
    }

    /// Writes `entries` in one transaction, leaving out those whose rows are gone.
    pub async fn write<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a Download>,
    ) -> Result<(), DbError> {
        let groups = groups(entries);
        match &self.copy {
            Some(pool) => {
                // Within the deadline, on a connection closed rather than given back when it
                // does not answer (see `session_loads`): the writer has one, and a batch
                // waiting on it for ever would leave every later entry pending.
                let deadline = self.db.deadline;
                let mut conn = pool.acquire().await?;
                match tokio::time::timeout(deadline, copy_downloads(&mut conn, &groups)).await {
                    Ok(done) => done,
                    Err(_) => {
                        drop(conn.detach());
                        Err(DbError::Unavailable(timed_out(deadline)))
                    }
                }
            }
            None => {
                let rows = serde_json::to_string(&groups)
                    .map_err(|e| DbError::Failed(sqlx::Error::Encode(Box::new(e))))?;
                sqlx::query(INSERT_SQLITE)
                    .bind(rows)
                    .execute(&self.db.pool)
                    .await?;
                Ok(())
            }
        }
    }
}

/// PostgreSQL's batch: under [`DELETION_LOCK`] (shared), keep the rows whose profile, member
/// and link are all there and `COPY` them in.
async fn copy_downloads(conn: &mut PgConnection, groups: &[Group<'_>]) -> Result<(), DbError> {
    let ids = |pick: fn(&Group<'_>) -> Option<i64>| -> Vec<i64> {
        let set: BTreeSet<i64> = groups.iter().filter_map(pick).collect();
        set.into_iter().collect()
    };
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(DELETION_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut present = Vec::with_capacity(3);
    for (table, wanted) in [
        ("users", ids(|g| g.member_id)),
        ("profiles", ids(|g| Some(g.profile_id))),
        ("share_links", ids(|g| g.share_link_id)),
    ] {
        let found: Vec<i64> = if wanted.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = ANY($1)"))
                .bind(&wanted)
                .fetch_all(&mut *tx)
                .await?
        };
        present.push(found.into_iter().collect::<BTreeSet<i64>>());
    }
    let [users, profiles, links] = &present[..] else {
        unreachable!("three tables")
    };
    let mut rows = String::with_capacity(groups.len() * 128);
    for group in groups {
        let there = |set: &BTreeSet<i64>, id: Option<i64>| id.is_none_or(|id| set.contains(&id));
        if there(profiles, Some(group.profile_id))
            && there(users, group.member_id)
            && there(links, group.share_link_id)
        {
            copy_row(&mut rows, group);
        }
    }
    if !rows.is_empty() {
        let mut copy = tx
            .copy_in_raw(&format!("COPY downloads ({GROUP_COLUMNS}) FROM STDIN"))
            .await?;
        copy.send(rows.as_bytes()).await?;
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `group` as a line of `COPY`'s text format: tab-separated, `\N` for NULL, and backslash,
/// tab, newline and carriage return escaped in the text columns.
fn copy_row(out: &mut String, group: &Group<'_>) {
    let text = |out: &mut String, value: &str| {
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                // Text columns cannot hold NUL; labels and request ids never have one.
                '\0' => {}
                c => out.push(c),
            }
        }
    };
    let number = |out: &mut String, value: Option<i64>| match value {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("\\N"),
    };
    number(out, Some(group.profile_id));
    out.push('\t');
    number(out, group.member_id);
    out.push('\t');
    number(out, group.share_link_id);
    out.push('\t');
    text(out, group.who);
    out.push('\t');
    number(out, Some(group.at));
    out.push('\t');
    let _ = write!(out, "{}", group.hits);
    out.push('\t');
    text(out, &group.request_ids);
    out.push('\n');
}

/// How often the writer takes what arrived and writes the seconds that have ended: an entry
/// is written at most this long after its second.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The most entries written in one transaction: about two seconds of one instance at full
/// speed (some 150 bytes an entry). More pending than this are written at once, seconds ended
/// or not.
const BATCH: usize = 100_000;
/// Entries kept while the database does not answer; beyond, the oldest are dropped (logged).
const MAX_PENDING: usize = 100_000;
/// How many entries may wait in the channel between two ticks; a redirect waits only when
/// the writer is this far behind.
const CHANNEL: usize = 50_000;
/// The longest request id an entry keeps, in bytes: the edge takes a client's id only up to
/// this size (see `web::edge`), and [`DownloadLog::record`] cuts any longer one all the same.
pub const REQUEST_ID_MAX_BYTES: usize = 200;
/// The longest name of who downloaded (a username of 150 characters, a link's label of 100,
/// at up to 4 bytes a character): with [`REQUEST_ID_MAX_BYTES`] it bounds an entry's size, so
/// the channel holds at most [`CHANNEL`] entries of about 900 bytes (43 MiB), whatever clients send.
pub const WHO_MAX_BYTES: usize = 600;
/// The bytes of entries kept while the database does not answer; beyond, the oldest are dropped
/// as they are beyond [`MAX_PENDING`]. 100,000 ordinary entries (a UUID, a short name) weigh
/// about 13 MiB.
const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;

enum Command {
    Record(Download),
    Flush(oneshot::Sender<()>),
}

/// Records downloads off the request path; cheap to clone. Off when `DOWNLOAD_LOG_DAYS` is 0.
#[derive(Debug, Clone)]
pub struct DownloadLog {
    sender: Option<mpsc::Sender<Command>>,
}

impl DownloadLog {
    /// A log writing to `db`, by a task of the current runtime.
    pub fn start(db: Database) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL);
        tokio::spawn(write_batches(LogWriter::new(db), receiver));
        Self {
            sender: Some(sender),
        }
    }

    /// A log that keeps nothing.
    pub fn off() -> Self {
        Self { sender: None }
    }

    /// Hands `entry` to the writer (waiting only when it is far behind). A request id or a
    /// name past its bound is cut to it, so that no entry weighs more than
    /// [`Download::weight`] allows.
    pub async fn record(&self, mut entry: Download) {
        cut_to(&mut entry.request_id, REQUEST_ID_MAX_BYTES);
        cut_to(&mut entry.who, WHO_MAX_BYTES);
        if let Some(sender) = &self.sender
            && sender.send(Command::Record(entry)).await.is_err()
        {
            tracing::warn!("download log writer stopped: an entry was not recorded");
        }
    }

    /// Writes every entry recorded so far; waits at most `limit`.
    pub async fn flush(&self, limit: Duration) {
        let Some(sender) = &self.sender else {
            return;
        };
        let (ack, done) = oneshot::channel();
        if sender.send(Command::Flush(ack)).await.is_err() {
            return;
        }
        if tokio::time::timeout(limit, done).await.is_err() {
            tracing::error!(
                limit_secs = limit.as_secs(),
                "download log: pending entries not written before the limit"
            );
        }
    }
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut_to(text: &mut String, max: usize) {
    if text.len() > max {
        let end = (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(end);
        text.shrink_to_fit();
    }
}

impl Download {
    /// What the entry holds in memory, in bytes: at most about 900 once recorded.
    pub fn weight(&self) -> usize {
        std::mem::size_of::<Self>() + self.who.capacity() + self.request_id.capacity()
    }
}

/// Every [`FLUSH_EVERY`], takes whatever arrived and writes the seconds that have ended. The
/// channel is drained on the tick rather than awaited entry by entry, so a redirect's send
/// never wakes this task: at thousands of downloads a second, a wake-up each cost a third of
/// the redirect's rate.
async fn write_batches(db: LogWriter, mut receiver: mpsc::Receiver<Command>) {
    let mut pending: Vec<Download> = Vec::new();
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let mut acks = Vec::new();
        let mut closed = false;
        loop {
            match receiver.try_recv() {
                Ok(Command::Record(entry)) => pending.push(entry),
                Ok(Command::Flush(ack)) => acks.push(ack),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
            if pending.len() >= BATCH {
                write(&db, &mut pending, None).await;
            }
        }
        // Waiting for the current second to end is what lets each of its rows be whole; a
        // flush or the end writes it now.
        let current = (acks.is_empty() && !closed).then(now);
        write(&db, &mut pending, current).await;
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

/// Whether `entry` is written now when the second `keep` (if any) waits. Not `at < keep`:
/// after the clock went back, entries "from the future" go too.
fn goes_now(entry: &Download, keep: Option<i64>) -> bool {
    Some(entry.at) != keep
}

/// Writes the entries of `pending` but those of the second `keep` (when given), which stay
/// pending; on failure keeps them all (the newest [`MAX_PENDING`]) for the next attempt.
/// `pending` is filtered in place and keeps its memory: moving tens of thousands of entries
/// a second into new vectors (fresh pages, each zeroed by the kernel) cost more than the rest
/// of the writer.
async fn write(db: &LogWriter, pending: &mut Vec<Download>, keep: Option<i64>) {
    let ready = pending.iter().filter(|e| goes_now(e, keep)).count();
    if ready == 0 {
        return;
    }
    match db.write(pending.iter().filter(|e| goes_now(e, keep))).await {
        Ok(()) => pending.retain(|e| !goes_now(e, keep)),
        Err(err) => {
            tracing::warn!(error = %err, entries = ready, "download log: write failed, will retry");
            let dropped = over_budget(pending);
            if dropped > 0 {
                pending.drain(..dropped);
                tracing::error!(
                    dropped,
                    "download log: entries dropped while the database was down"
                );
            }
        }
    }
}

/// How many of the oldest entries of `pending` go to bring it within [`MAX_PENDING`] entries
/// and [`MAX_PENDING_BYTES`].
fn over_budget(pending: &[Download]) -> usize {
    let mut bytes = 0;
    let kept = pending
        .iter()
        .rev()
        .take(MAX_PENDING)
        .take_while(|entry| {
            bytes += entry.weight();
            bytes <= MAX_PENDING_BYTES
        })
        .count();
    pending.len() - kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(profile_id: i64, member_id: Option<i64>, at: i64, request_id: &str) -> Download {
        Download {
            profile_id,
            member_id,
            share_link_id: None,
            who: format!("member {member_id:?}"),
            request_id: request_id.into(),
            at,
        }
    }

    #[test]
    fn downloads_of_one_resume_by_one_member_in_one_second_share_a_row_in_order_of_arrival() {
        let entries = [
            entry(2, Some(1), 100, "a"),
            entry(1, Some(1), 100, "b"),
            entry(2, Some(1), 100, "c"),
            entry(2, Some(3), 100, "d"),
            entry(2, Some(1), 101, "e"),
            entry(2, Some(1), 100, "f"),
            entry(2, None, 100, "g"),
        ];
        let rows: Vec<String> = groups(&entries)
            .iter()
            .map(|g| {
                let (profile, member, at) = (g.profile_id, g.member_id, g.at);
                format!("{profile} {member:?} {at} {} {}", g.hits, g.request_ids)
            })
            .collect();
        assert_eq!(
            rows,
            [
                r#"1 Some(1) 100 1 ["b"]"#,
                r#"2 Some(1) 100 3 ["a","c","f"]"#,
                r#"2 Some(3) 100 1 ["d"]"#,
                r#"2 Some(1) 101 1 ["e"]"#,
                r#"2 None 100 1 ["g"]"#,
            ]
        );
    }

    #[test]
    fn long_ids_and_names_are_cut_at_a_character_boundary() {
        let mut id = "é".repeat(REQUEST_ID_MAX_BYTES);
        cut_to(&mut id, REQUEST_ID_MAX_BYTES);
        assert_eq!(id, "é".repeat(REQUEST_ID_MAX_BYTES / 2));
        let mut short = "abc".to_owned();
        cut_to(&mut short, 2);
        assert_eq!(short, "ab");
        let mut big = entry(1, Some(2), 3, &"x".repeat(60_000));
        big.who = "w".repeat(10_000);
        cut_to(&mut big.request_id, REQUEST_ID_MAX_BYTES);
        cut_to(&mut big.who, WHO_MAX_BYTES);
        assert!(big.weight() <= 1024, "{}", big.weight());
    }

    #[test]
    fn pending_entries_are_kept_within_their_count_and_their_bytes() {
        let small: Vec<Download> = (0..10).map(|i| entry(1, Some(2), i, "id")).collect();
        assert_eq!(over_budget(&small), 0);
        let heavy_entry = |at: i64| Download {
            who: "w".repeat(WHO_MAX_BYTES),
            ..entry(1, Some(2), at, &"r".repeat(REQUEST_ID_MAX_BYTES))
        };
        let fit = MAX_PENDING_BYTES / heavy_entry(0).weight();
        assert!(fit < MAX_PENDING, "the bytes bind first");
        let heavy: Vec<Download> = (0..fit + 7).map(|i| heavy_entry(i as i64)).collect();
        assert_eq!(over_budget(&heavy), 7, "the oldest go first");
        let many: Vec<Download> = (0..MAX_PENDING + 3)
            .map(|i| entry(1, None, i as i64, ""))
            .collect();
        assert_eq!(over_budget(&many), 3);
    }

    #[test]
    fn the_current_second_waits_and_everything_else_goes() {
        let goes = |at, keep| goes_now(&entry(1, Some(1), at, "r"), keep);
        assert!(!goes(100, Some(100)));
        assert!(goes(99, Some(100)), "an ended second");
        assert!(goes(101, Some(100)), "after the clock went back");
        assert!(goes(100, None), "a flush");
    }

    #[test]
    fn a_row_holds_at_most_its_share_of_downloads() {
        let entries: Vec<Download> = (0..MOST_PER_ROW + 1)
            .map(|i| entry(1, None, 100, &i.to_string()))
            .collect();
        let hits: Vec<usize> = groups(&entries).iter().map(|g| g.hits).collect();
        assert_eq!(hits, [MOST_PER_ROW, 1]);
    }

    #[test]
    fn copy_rows_escape_what_copy_text_format_reads_as_syntax() {
        let mut out = String::new();
        let entries = [Download {
            profile_id: 7,
            member_id: None,
            share_link_id: Some(3),
            who: "a\\N\tb".into(),
            request_id: "x\ny\rz\0".into(),
            at: -1,
        }];
        copy_row(&mut out, &groups(&entries)[0]);
        assert_eq!(out, "7\t\\N\t3\ta\\\\N\\tb\t-1\t1\t[\"x\\\\ny\\\\rz\"]\n");
    }
}
