//! The embedded store: one SQLite file in WAL mode, so `sqlite3` can read it while the
//! worker runs.
//!
//! All writes go through one writer thread that commits whatever changes are waiting as a
//! single transaction ("group commit"): with many events in flight, one fsync covers
//! hundreds of them, and each caller still hears back only after its own commit.

use super::wal::{self, BUSY_TIMEOUT, DEFAULT_WAL_MAX, WalBound, WalStats};
use super::{Applied, ErrorKind, Limits, NotificationStore, StoreError};
use crate::domain::{Change, FeedItem, Id};
use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// Most changes committed in one transaction.
const MAX_CHANGES_PER_COMMIT: usize = 2048;

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
    PRIMARY KEY (owner, action_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notifications_owner_created_at ON notifications (owner, created_at);
";

const INSERT: &str = "INSERT INTO notifications
    (owner, action_key, id, userid, username, userpic, userbio, action, resource_type, resource_id,
     excerpt, read_status, created_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
    ON CONFLICT (owner, action_key) DO NOTHING";

const DELETE: &str = "DELETE FROM notifications WHERE owner = ?1 AND action_key = ?2";

/// A change ready to bind: what needs formatting is formatted by the caller, on the async
/// runtime's threads, so that the one writer thread only binds and steps.
struct Write {
    change: Change,
    id: String,
    created_at: String,
}

impl Write {
    fn new(change: &Change) -> Write {
        let (id, created_at) = match change {
            Change::Create(n) => (n.id.hyphenated().to_string(), n.created_at.to_rfc3339()),
            Change::Remove { .. } => (String::new(), String::new()),
        };
        Write {
            change: change.clone(),
            id,
            created_at,
        }
    }
}

struct Request {
    write: Write,
    reply: oneshot::Sender<Result<Applied, StoreError>>,
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
        })
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
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let connection = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&connection).map_err(classify)
        })
        .await
        .map_err(|error| StoreError::new(ErrorKind::Transient, format!("reader task failed: {error}")))?
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
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

fn write_loop(mut connection: Connection, requests: mpsc::Receiver<Request>, mut bound: WalBound) {
    let mut wrote = false;
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
                        .map(|outcomes| outcomes[0])
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
) -> rusqlite::Result<Vec<Applied>> {
    let transaction = connection.transaction()?;
    let outcomes = writes
        .map(|write| apply_one(&transaction, write))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    transaction.commit()?;
    Ok(outcomes)
}

fn apply_one(connection: &Connection, write: &Write) -> rusqlite::Result<Applied> {
    match &write.change {
        Change::Create(n) => {
            let inserted = connection.prepare_cached(INSERT)?.execute(params![
                n.owner.as_str(),
                n.action_key.as_str(),
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
            ])?;
            Ok(if inserted == 1 {
                Applied::Created
            } else {
                Applied::Duplicate
            })
        }
        Change::Remove { owner, action_key } => {
            let deleted = connection
                .prepare_cached(DELETE)?
                .execute(params![owner.as_str(), action_key.as_str()])?;
            Ok(if deleted == 1 {
                Applied::Removed
            } else {
                Applied::Absent
            })
        }
    }
}

/// The one place SQLite errors are sorted into [`ErrorKind`]s.
fn classify(error: rusqlite::Error) -> StoreError {
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
        Some(DiskFull) => " (free disk space)",
        Some(ReadOnly | CannotOpen | PermissionDenied) => " (check NOTIF_SQLITE_PATH and its permissions)",
        _ => "",
    };
    StoreError::new(kind, format!("sqlite: {error}{hint}"))
}

impl NotificationStore for SqliteStore {
    async fn setup(&self) -> Result<(), StoreError> {
        self.with_reader(|connection| connection.execute_batch(SCHEMA))
            .await
    }

    async fn apply(&self, change: &Change) -> Result<Applied, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            write: Write::new(change),
            reply,
        };
        let writer_gone = || StoreError::new(ErrorKind::Systemic, "sqlite writer thread stopped");
        self.writer.send(request).map_err(|_| writer_gone())?;
        outcome.await.map_err(|_| writer_gone())?
    }

    async fn probe(&self) -> Result<(), StoreError> {
        self.with_reader(|connection| {
            connection
                .prepare_cached("SELECT 1 FROM notifications LIMIT 1")?
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
                        resource_id, excerpt, read_status, created_at
                 FROM notifications WHERE owner = ?1
                 ORDER BY created_at DESC, action_key DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![owner, limit], |row| {
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
                })
            })?;
            rows.collect()
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
