//! The embedded store: one SQLite file in WAL mode, so `sqlite3` can read it while the
//! worker runs.
//!
//! All writes go through one writer thread that commits whatever changes are waiting as a
//! single transaction ("group commit"): with many events in flight, one fsync covers
//! hundreds of them, and each caller still hears back only after its own commit.

use super::versioning::{CreatePlan, Life, Remembers, plan_create, plan_remove, report_remove};
use super::wal::{self, BUSY_TIMEOUT, DEFAULT_WAL_MAX, WalBound, WalStats};
use super::{Ended, ErrorKind, Limits, NotificationStore, Report, StoreError};
use crate::domain::{ActionKey, Change, FeedItem, Id, Notification, Timestamp, Version};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::sync::oneshot;

/// Most changes committed in one transaction.
const MAX_CHANGES_PER_COMMIT: usize = 2048;

/// Rowid tables with the key as an index beside them, not `WITHOUT ROWID` (clustered on the
/// key): events arrive in no order of (owner, action_key), and a clustered table takes each
/// whole row into a random page of its B-tree, where a rowid table appends the row and puts
/// only the small key entry in a random page. On realistic traffic the minimal writer went
/// 1.62 times as fast, the worker's drain 1.36 times (BENCHMARKS.md, "Main rows: realistic
/// traffic"). Files made before keep their clustered tables: both run the same statements.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    owner         TEXT    NOT NULL,
    action_key    TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    userid        TEXT    NOT NULL,
    username      TEXT,
    userpic       TEXT,
    userbio       TEXT,
    action        INTEGER NOT NULL,
    resource_type TEXT    NOT NULL,
    resource_id   TEXT    NOT NULL,
    excerpt       TEXT,
    read_status   INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL,
    created_seq   TEXT,
    version       TEXT,
    actor_count   INTEGER,
    actors        TEXT,
    started_at    INTEGER,
    PRIMARY KEY (owner, action_key)
);
CREATE INDEX IF NOT EXISTS notifications_owner_created_at ON notifications (owner, created_at);
CREATE TABLE IF NOT EXISTS tombstones (
    owner         TEXT    NOT NULL,
    action_key    TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    expires_at    INTEGER NOT NULL,
    ended_id      TEXT,
    ended_created TEXT,
    ended_by      TEXT,
    PRIMARY KEY (owner, action_key)
);
CREATE INDEX IF NOT EXISTS tombstones_expires_at ON tombstones (expires_at);
";

/// Columns added after a table's first release (name and type): a file created before gets
/// them from `setup`. Rows written before have none: notifications count as the oldest
/// versions and are no aggregates, and tombstones remember no life (their removes'
/// redeliveries report nothing ended).
const ADDED_COLUMNS: [(&str, &[&str]); 2] = [
    (
        "notifications",
        &[
            "created_seq TEXT",
            "version TEXT",
            "actor_count INTEGER",
            "actors TEXT",
            "started_at INTEGER",
        ],
    ),
    (
        "tombstones",
        &["ended_id TEXT", "ended_created TEXT", "ended_by TEXT"],
    ),
];

/// One notification as the API reads it, in [`feed_item`]'s column order.
pub(super) const FIND: &str =
    "SELECT owner, action_key, id, userid, username, userpic, userbio, action, resource_type,
        resource_id, excerpt, read_status, created_at, actor_count, actors
    FROM notifications WHERE owner = ?1 AND action_key = ?2";

/// (owner, action_key, id, userid, username, userpic, userbio, action, resource_type,
/// resource_id, excerpt, read_status, created_at, created_seq, version). `OR REPLACE` only
/// matters for a new life replacing an old one ([`CreatePlan::Replace`]); otherwise the
/// transaction has just seen that no row exists.
const INSERT: &str = "INSERT OR REPLACE INTO notifications
    (owner, action_key, id, userid, username, userpic, userbio, action, resource_type, resource_id,
     excerpt, read_status, created_at, created_seq, version)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)";

const READ_LIFE: &str =
    "SELECT created_seq, version, id FROM notifications WHERE owner = ?1 AND action_key = ?2";
const READ_TOMBSTONE: &str =
    "SELECT version, ended_id, ended_created, ended_by FROM tombstones WHERE owner = ?1 AND action_key = ?2";
const RAISE_VERSION: &str = "UPDATE notifications SET version = ?3 WHERE owner = ?1 AND action_key = ?2";
/// (owner, action_key, version, expires_at, ended_id, ended_created): the remove's version
/// is also `ended_by`, and a raise that ended nothing forgets the older remove's life.
const WRITE_TOMBSTONE: &str = "INSERT INTO tombstones (owner, action_key, version, expires_at, ended_id, ended_created, ended_by)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?5 IS NULL THEN NULL ELSE ?3 END)
    ON CONFLICT (owner, action_key) DO UPDATE SET version = excluded.version, expires_at = excluded.expires_at,
        ended_id = excluded.ended_id, ended_created = excluded.ended_created, ended_by = excluded.ended_by";
/// A remove that deleted under a tombstone of its own version it did not raise (written
/// before its delete, by hand or by another process): only that tombstone is its to mark.
const REMEMBER_ENDED: &str = "UPDATE tombstones SET ended_id = ?4, ended_created = ?5, ended_by = ?3
    WHERE owner = ?1 AND action_key = ?2 AND version = ?3";
const DELETE: &str = "DELETE FROM notifications WHERE owner = ?1 AND action_key = ?2";
/// Tombstones past their lifetime, a bounded number at a time so the writer never stalls.
const PURGE_TOMBSTONES: &str = "DELETE FROM tombstones WHERE (owner, action_key) IN
    (SELECT owner, action_key FROM tombstones WHERE expires_at < ?1 LIMIT 1000)";

/// A change ready to bind: what needs formatting is formatted by the caller, on the async
/// runtime's threads, so that the one writer thread only binds and steps.
struct Write {
    change: Change,
    version: Version,
    /// The version as stored (fixed-width text).
    version_text: String,
    id: String,
    created_at: String,
    /// When a tombstone this write leaves may go (unix seconds).
    expires_at: i64,
}

impl Write {
    fn new(change: &Change, version: Version, tombstone_ttl: Duration) -> Write {
        let (id, created_at, expires_at) = match change {
            Change::Create(n) => (n.id.hyphenated().to_string(), n.created_at.to_rfc3339(), 0),
            Change::Join(_) => (String::new(), String::new(), 0),
            // A remove's tombstone, and an unliking actor's standing, are kept as long.
            Change::Remove { .. } | Change::Leave { .. } => {
                let ttl = i64::try_from(tombstone_ttl.as_secs()).unwrap_or(i64::MAX);
                (
                    String::new(),
                    String::new(),
                    Timestamp::now().unix().saturating_add(ttl),
                )
            }
        };
        Write {
            change: change.clone(),
            version,
            version_text: version.to_text(),
            id,
            created_at,
            expires_at,
        }
    }
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Report, StoreError>>,
}

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Request>,
    /// Dropping it stops the checkpoint thread.
    stop_checkpoints: Option<mpsc::Sender<()>>,
    /// Joined on drop, so that both connections are checkpointed and closed before the
    /// process exits.
    threads: Vec<std::thread::JoinHandle<()>>,
    wal_stats: Arc<WalStats>,
    /// Reads (feed) use their own connection: WAL lets them run beside the writer.
    reader: Arc<Mutex<Connection>>,
    tombstone_ttl: Duration,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) the database at `path`, with
    /// the default WAL bound.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with_wal_max(path, DEFAULT_WAL_MAX)
    }

    /// Opens the database at `path`, keeping its WAL file under `wal_max` bytes while no
    /// other connection holds an old snapshot (see `wal.rs`).
    pub fn open_with_wal_max(path: &Path, wal_max: u64) -> Result<SqliteStore, StoreError> {
        if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|error| {
                StoreError::new(
                    ErrorKind::Systemic,
                    format!(
                        "cannot create the folder {} for NOTIF_SQLITE_PATH: {error}",
                        folder.display()
                    ),
                )
            })?;
        }
        let mut writer_connection = connect(path)?;
        // The writer never checkpoints automatically (that would stall a commit at
        // whatever moment the WAL crosses 1,000 pages): the checkpoint thread copies in the
        // background, and the writer truncates between commits when the bound needs it.
        writer_connection
            .execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -8192;")
            .map_err(classify)?;
        let checkpoint_connection = connect(path)?;
        let reader = connect(path)?;
        let wal_stats = Arc::new(WalStats::default());
        let checkpoint_turn = Arc::new(Mutex::new(()));
        let bound = WalBound::attach(
            &mut writer_connection,
            path,
            wal_max,
            Arc::clone(&wal_stats),
            Arc::clone(&checkpoint_turn),
        )
        .map_err(classify)?;
        let (writer, requests) = mpsc::channel();
        let (stop_checkpoints, stopped) = mpsc::channel::<()>();
        let spawn_failed = |error: std::io::Error| {
            StoreError::new(ErrorKind::Systemic, format!("cannot start a thread: {error}"))
        };
        let stats = Arc::clone(&wal_stats);
        let checkpoints = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_connection, stopped, &checkpoint_turn, &stats))
            .map_err(spawn_failed)?;
        let writes = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(writer_connection, requests, bound))
            .map_err(spawn_failed)?;
        Ok(SqliteStore {
            path: path.to_owned(),
            writer,
            stop_checkpoints: Some(stop_checkpoints),
            threads: vec![checkpoints, writes],
            wal_stats,
            reader: Arc::new(Mutex::new(reader)),
            tombstone_ttl: super::DEFAULT_TOMBSTONE_TTL,
        })
    }

    /// How long removal records are kept (`NOTIF_TOMBSTONE_TTL`).
    pub fn with_tombstone_ttl(mut self, ttl: Duration) -> SqliteStore {
        self.tombstone_ttl = ttl;
        self
    }

    /// The WAL's size and checkpoint counts, for the metrics.
    pub fn wal_stats(&self) -> Arc<WalStats> {
        Arc::clone(&self.wal_stats)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        on_connection(&self.reader, work).await
    }
}

pub(super) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|error| {
        StoreError::new(
            ErrorKind::Systemic,
            format!("cannot open {} (NOTIF_SQLITE_PATH): {error}", path.display()),
        )
    })?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on disk before
    // the event is acknowledged, power loss included; group commit keeps that cheap.
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
        .map_err(classify)?;
    // Another process (a second worker, sqlite3) may hold the lock briefly.
    connection.busy_timeout(BUSY_TIMEOUT).map_err(classify)?;
    Ok(connection)
}

/// How often the checkpoint thread copies the WAL back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// How long the final checkpoint at close waits for other readers.
const CLOSE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

fn checkpoint_loop(connection: Connection, stop: mpsc::Receiver<()>, turn: &Mutex<()>, stats: &WalStats) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        wal::passive_checkpoint(&connection, turn, stats);
    }
    close(connection, "checkpoint");
}

fn close(connection: Connection, which: &str) {
    if let Err((_, error)) = connection.close() {
        tracing::warn!(%error, connection = which, "cannot close a sqlite connection cleanly");
    }
}

/// How often the writer deletes expired tombstones (a bounded batch each time).
const PURGE_EVERY: Duration = Duration::from_secs(60);

fn write_loop(mut connection: Connection, requests: mpsc::Receiver<Request>, mut bound: WalBound) {
    let mut wrote = false;
    let mut last_purge = std::time::Instant::now();
    loop {
        let first = match requests.recv_timeout(wal::IDLE_TEND_EVERY) {
            Ok(request) => request,
            // Idle: a WAL left over its bound by a reader that has since ended is
            // truncated without waiting for the next event.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bound.tend(&connection);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = std::time::Instant::now();
            if let Err(error) = purge_expired(&connection, Timestamp::now().unix()) {
                tracing::debug!(%error, "cannot delete expired tombstones and aggregate members; trying again later");
            }
        }
        let mut batch = vec![first];
        while batch.len() < MAX_CHANGES_PER_COMMIT {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        match commit(&mut connection, batch.iter().map(|request| &request.write)) {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            // One bad change must not fail the others: commit each on its own.
            Err(_) if batch.len() > 1 => {
                for request in batch {
                    let outcome = commit(&mut connection, std::iter::once(&request.write))
                        .map(|mut outcomes| outcomes.remove(0))
                        .map_err(classify);
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                let error = classify(error);
                for request in batch {
                    let _ = request.reply.send(Err(error.clone()));
                }
            }
        }
        wrote = true;
        // After the replies, so that callers never wait for a checkpoint; only the next
        // commit does, and only when the WAL is near its bound.
        bound.tend(&connection);
    }
    // Every sender is gone: the store is being closed. After writing, leave an empty WAL
    // behind, so the database file alone holds everything (and a copy of it alone is
    // complete). A store that wrote nothing (`feed`, `setup`) leaves the WAL to whoever
    // writes it: checkpointing here would only make a running worker wait.
    if wrote {
        let wal_checkpointed = bound.truncate(&connection, CLOSE_PATIENCE);
        close(connection, "writer");
        tracing::info!(wal_checkpointed, "sqlite store closed");
    } else {
        close(connection, "writer");
        tracing::debug!("sqlite store closed");
    }
}

impl Drop for SqliteStore {
    /// Stops the checkpoint thread, lets the writer commit what it holds, run a final
    /// checkpoint and close, and waits for both: a worker that exits leaves a complete
    /// database file, never a WAL that the next start would have to recover.
    fn drop(&mut self) {
        drop(self.stop_checkpoints.take());
        // The writer stops once its last sender is gone; `apply` keeps using this field,
        // so it is swapped for a dead one rather than made optional.
        drop(std::mem::replace(&mut self.writer, mpsc::channel().0));
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn commit<'a>(
    connection: &mut Connection,
    writes: impl Iterator<Item = &'a Write>,
) -> rusqlite::Result<Vec<Report>> {
    // IMMEDIATE: take the write lock before the first read, so that what a change reads
    // (the key's life and tombstone) cannot be changed by another process (a second worker
    // on the same file) before it writes.
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = writes
        .map(|write| apply_one(&transaction, write))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    transaction.commit()?;
    Ok(outcomes)
}

/// Applies one change by the rules of [`super::versioning`], inside the caller's
/// transaction: read the key's life and tombstone, decide, write.
fn apply_one(connection: &Connection, write: &Write) -> rusqlite::Result<Report> {
    match &write.change {
        Change::Create(n) => apply_keyed(connection, write, &n.owner, &n.action_key, Some(n)),
        Change::Remove { owner, action_key } => apply_keyed(connection, write, owner, action_key, None),
        Change::Join(join) => super::aggregate_sqlite::join(connection, join, write.version),
        Change::Leave { group, actor } => {
            super::aggregate_sqlite::leave(connection, group, actor, write.version, write.expires_at)
        }
    }
}

/// A create (`Some` notification) or a remove of one key.
fn apply_keyed(
    connection: &Connection,
    write: &Write,
    owner: &Id,
    action_key: &ActionKey,
    create: Option<&Notification>,
) -> rusqlite::Result<Report> {
    let (owner, action_key) = (owner.as_str(), action_key.as_str());
    let stored = read_life(connection, owner, action_key)?;
    let life = stored.as_ref().map(|(life, _)| *life);
    let (tombstone, remembers) = match read_tombstone(connection, owner, action_key)? {
        Some((version, remembers)) => (Some(version), remembers),
        None => (None, None),
    };
    match create {
        Some(n) => {
            let plan = plan_create(life, tombstone, write.version);
            match plan {
                CreatePlan::Insert | CreatePlan::Replace => {
                    connection.prepare_cached(INSERT)?.execute(params![
                        owner,
                        action_key,
                        write.id,
                        n.trigger_user.as_str(),
                        n.username,
                        n.user_picture,
                        n.user_bio,
                        n.action.code(),
                        n.resource_type.as_str(),
                        n.resource_id.as_str(),
                        n.excerpt,
                        n.read_status,
                        write.created_at,
                        write.version_text,
                    ])?;
                }
                CreatePlan::Keep { raise_version: true } => {
                    connection.prepare_cached(RAISE_VERSION)?.execute(params![
                        owner,
                        action_key,
                        write.version_text
                    ])?;
                }
                // Never met in SQLite, whose removes delete in the transaction that writes
                // their tombstone; kept for the rules' sake (and for files another process
                // left half-written by hand).
                CreatePlan::FinishRemove => {
                    connection
                        .prepare_cached(DELETE)?
                        .execute(params![owner, action_key])?;
                }
                CreatePlan::Keep { raise_version: false }
                | CreatePlan::AlreadyCreated
                | CreatePlan::Superseded => {}
            }
            Ok(Report::from(plan.applied()))
        }
        None => {
            let plan = plan_remove(life, tombstone, write.version);
            let deleted = stored.filter(|_| plan.delete).map(|(life, id)| Ended {
                id,
                created: life.created,
            });
            let ended_id = deleted.as_ref().map(|ended| ended.id.as_str());
            let ended_created = deleted.as_ref().map(|ended| ended.created.to_text());
            if plan.raise_tombstone {
                connection.prepare_cached(WRITE_TOMBSTONE)?.execute(params![
                    owner,
                    action_key,
                    write.version_text,
                    write.expires_at,
                    ended_id,
                    ended_created,
                ])?;
            } else if plan.delete {
                connection.prepare_cached(REMEMBER_ENDED)?.execute(params![
                    owner,
                    action_key,
                    write.version_text,
                    ended_id,
                    ended_created,
                ])?;
            }
            if plan.delete {
                connection
                    .prepare_cached(DELETE)?
                    .execute(params![owner, action_key])?;
            }
            Ok(report_remove(deleted, tombstone, remembers, write.version))
        }
    }
}

/// The live notification's versions, and its id (what a remove that deletes it ended).
fn read_life(
    connection: &Connection,
    owner: &str,
    action_key: &str,
) -> rusqlite::Result<Option<(Life, String)>> {
    connection
        .prepare_cached(READ_LIFE)?
        .query_row(params![owner, action_key], |row| {
            let life = Life {
                created: stored_version(row.get(0)?),
                version: stored_version(row.get(1)?),
            };
            Ok((life, row.get(2)?))
        })
        .optional()
}

/// The newest remove's version, and the life a remove remembered ending there.
fn read_tombstone(
    connection: &Connection,
    owner: &str,
    action_key: &str,
) -> rusqlite::Result<Option<(Version, Option<Remembers>)>> {
    connection
        .prepare_cached(READ_TOMBSTONE)?
        .query_row(params![owner, action_key], |row| {
            let version = stored_version(row.get(0)?);
            let ended_id: Option<String> = row.get(1)?;
            let ended_by: Option<String> = row.get(3)?;
            let remembers = match (ended_id, ended_by.as_deref().and_then(Version::parse)) {
                (Some(id), Some(by)) => Some(Remembers {
                    ended: Ended {
                        id,
                        created: stored_version(row.get(2)?),
                    },
                    by,
                }),
                _ => None,
            };
            Ok((version, remembers))
        })
        .optional()
}

/// A stored version; a row without one (written before versions) is the oldest.
pub(super) fn stored_version(text: Option<String>) -> Version {
    text.as_deref()
        .and_then(Version::parse)
        .unwrap_or(Version::LEGACY)
}

/// Deletes tombstones (and aggregate members that are out) past their lifetime at `now`
/// (unix seconds), at most a bounded batch of each per call.
fn purge_expired(connection: &Connection, now: i64) -> rusqlite::Result<usize> {
    let tombstones = connection
        .prepare_cached(PURGE_TOMBSTONES)?
        .execute(params![now])?;
    let members = super::aggregate_sqlite::purge_expired_members(connection, now)?;
    Ok(tombstones + members)
}

/// Adds the columns a database made by an earlier release lacks.
fn migrate(connection: &Connection) -> rusqlite::Result<()> {
    for (table, columns) in ADDED_COLUMNS {
        let existing: Vec<String> = connection
            .prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for column in columns {
            let name = column.split_whitespace().next().unwrap_or(column);
            if !existing.iter().any(|existing| existing == name) {
                connection.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column}"))?;
            }
        }
    }
    Ok(())
}

/// The one place SQLite errors are sorted into [`ErrorKind`]s.
/// Runs `work` on a shared connection off the async threads (SQLite calls block).
pub(super) async fn on_connection<T: Send + 'static>(
    connection: &Arc<Mutex<Connection>>,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    let connection = Arc::clone(connection);
    tokio::task::spawn_blocking(move || {
        let connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        work(&connection).map_err(classify)
    })
    .await
    .map_err(|error| StoreError::new(ErrorKind::Transient, format!("sqlite task failed: {error}")))?
}

pub(super) fn classify(error: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    let kind = match error.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => ErrorKind::Transient,
        Some(ConstraintViolation | TooBig | TypeMismatch) => ErrorKind::Permanent,
        // A missing table, a full or read-only disk, a broken file: nothing will succeed
        // until someone acts.
        _ => ErrorKind::Systemic,
    };
    let hint = match error.sqlite_error_code() {
        Some(Unknown) if error.to_string().contains("no such table") => {
            " (run `notification-worker setup` to create the schema)"
        }
        // A file from an earlier release: `setup` adds what it lacks. (Reported as an SQL
        // input error, which carries no error code.)
        _ if error.to_string().contains("no such column") => {
            " (run `notification-worker setup` to update the schema)"
        }
        Some(DiskFull) => " (free disk space)",
        Some(ReadOnly | CannotOpen | PermissionDenied) => " (check NOTIF_SQLITE_PATH and its permissions)",
        _ => "",
    };
    StoreError::new(kind, format!("sqlite: {error}{hint}"))
}

impl NotificationStore for SqliteStore {
    async fn setup(&self) -> Result<(), StoreError> {
        self.with_reader(|connection| {
            connection.execute_batch(SCHEMA)?;
            connection.execute_batch(super::aggregate_sqlite::SCHEMA)?;
            migrate(connection)
        })
        .await
    }

    async fn apply_reported(&self, change: &Change, version: Version) -> Result<Report, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            write: Write::new(change, version, self.tombstone_ttl),
            reply,
        };
        let writer_gone = || StoreError::new(ErrorKind::Systemic, "sqlite writer thread stopped");
        self.writer.send(request).map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.with_reader(|connection| {
            connection
                // Names every table and column the writer needs, so a file from an earlier
                // release reads as "run setup" rather than failing writes one by one.
                .prepare_cached(
                    "SELECT (SELECT version || actor_count || actors || started_at FROM notifications LIMIT 1),
                            (SELECT version FROM tombstones LIMIT 1),
                            (SELECT ended_id || ended_created || ended_by FROM tombstones LIMIT 1),
                            (SELECT generation FROM aggregate_generations LIMIT 1),
                            (SELECT present FROM aggregate_members LIMIT 1)",
                )?
                .exists([])
                .map(|_| ())
        })
        .await
    }

    async fn feed(&self, owner: &Id, limit: usize) -> Result<Vec<FeedItem>, StoreError> {
        let owner = owner.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT owner, action_key, id, userid, username, userpic, userbio, action, resource_type,
                        resource_id, excerpt, read_status, created_at, actor_count, actors
                 FROM notifications WHERE owner = ?1
                 ORDER BY created_at DESC, action_key DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![owner, limit], feed_item)?;
            rows.collect()
        })
        .await
    }

    async fn find(&self, owner: &Id, action_key: &str) -> Result<Option<FeedItem>, StoreError> {
        let owner = owner.to_string();
        let action_key = action_key.to_owned();
        self.with_reader(move |connection| {
            connection
                .prepare_cached(FIND)?
                .query_row(params![owner, action_key], feed_item)
                .optional()
        })
        .await
    }

    fn limits(&self, concurrency: usize) -> Limits {
        // Commit size is what makes SQLite fast (one fsync per commit), so `WORKER_CONCURRENCY`
        // must not cap it at a few dozen (SPEC.md, configuration): hold many events, and let
        // each be a store call: the writer thread folds them into one transaction.
        let in_flight = concurrency.saturating_mul(32).clamp(concurrency, 2048);
        Limits {
            store_calls: in_flight,
            in_flight,
        }
    }
}

/// A row of `notifications` in the column order of the feed queries.
pub(super) fn feed_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<FeedItem> {
    Ok(FeedItem {
        owner: row.get(0)?,
        action_key: row.get(1)?,
        id: row.get(2)?,
        userid: row.get(3)?,
        username: row.get(4)?,
        userpic: row.get(5)?,
        userbio: row.get(6)?,
        action: row.get(7)?,
        resource_type: row.get(8)?,
        resource_id: row.get(9)?,
        excerpt: row.get(10)?,
        read_status: row.get(11)?,
        created_at: row.get(12)?,
        actor_count: row.get::<_, Option<i64>>(13)?.map(i64::unsigned_abs),
        // Written by this worker from a list; anything else reads as no list.
        actors: row
            .get::<_, Option<String>>(14)?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, Actor, Group, Join, ResourceType};

    /// What remembers a remove (a tombstone, an unliking actor's standing) goes once its
    /// lifetime is over; an actor still in is never purged.
    #[tokio::test]
    async fn expired_tombstones_and_members_out_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.db");
        let store = SqliteStore::open(&path)
            .unwrap()
            .with_tombstone_ttl(Duration::ZERO);
        store.setup().await.unwrap();
        let id = |text: &str| Id::parse("id", text).unwrap();
        let group = Group {
            owner: id("user-1"),
            action: Action::from_code(1).unwrap(),
            resource_type: ResourceType::Post,
            resource_id: id("post-1"),
        };
        let join = |actor: &str| {
            Change::Join(Join {
                group: group.clone(),
                actor: Actor {
                    id: id(actor),
                    username: None,
                    user_picture: None,
                    user_bio: None,
                    created_at: Timestamp::now(),
                },
                excerpt: None,
            })
        };
        let v = |sequence| Version::new(1, sequence).unwrap();
        store.apply(&join("fan-a"), v(1)).await.unwrap();
        store.apply(&join("fan-b"), v(2)).await.unwrap();
        let leave = Change::Leave {
            group: group.clone(),
            actor: id("fan-a"),
        };
        store.apply(&leave, v(3)).await.unwrap();
        let remove = Change::Remove {
            owner: id("user-1"),
            action_key: ActionKey::new(&id("fan-c"), &id("post-2"), group.action),
        };
        store.apply(&remove, v(4)).await.unwrap();
        let connection = connect(&path).unwrap();
        let count = |table: &str| -> i64 {
            connection
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!((count("tombstones"), count("aggregate_members")), (1, 2));
        // Not yet: their lifetime ends now.
        assert_eq!(
            purge_expired(&connection, Timestamp::now().unix() - 1).unwrap(),
            0
        );
        assert_eq!(
            purge_expired(&connection, Timestamp::now().unix() + 1).unwrap(),
            2
        );
        assert_eq!((count("tombstones"), count("aggregate_members")), (0, 1));
    }
}
