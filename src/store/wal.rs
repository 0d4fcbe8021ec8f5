//! Keeping the SQLite write-ahead log under `NOTIF_SQLITE_WAL_MAX`.
//!
//! SQLite rewinds the WAL only when a checkpoint has copied every frame back into the
//! database and no reader still uses the log. A PASSIVE checkpoint from another connection
//! runs beside the writer, so under continuous writes it never catches up, the log never
//! rewinds, and nothing ever truncates it: a 200,000-event drain grew it to 0.6–2.8 GB. So
//! two parties share the work:
//! - the checkpoint thread copies frames in the background (PASSIVE: it never blocks a
//!   commit), which is most of the copying;
//! - the writer thread itself, between two commits, once the file has grown past
//!   [`WalBound::threshold`], runs a TRUNCATE checkpoint: it copies what is left, waits
//!   for readers to move to the latest snapshot, and truncates the file to zero bytes. No
//!   commit can slip in meanwhile, because the one writer is the one checkpointing.
//!
//! A reader holding an old snapshot (an open read transaction in `sqlite3`, a backup tool)
//! pins the log, and nothing can rewind it until that reader ends. The writer then waits
//! [`READER_PATIENCE`], logs a warning once, counts it
//! (`notification_worker_sqlite_wal_blocked_total`) and goes on committing: the WAL grows
//! past the bound while the reader holds on (stopping intake would not help: the reader
//! does not end sooner). It tries again every [`RETRY_BLOCKED_EVERY`], and logs when the log
//! is back under the bound.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The default `NOTIF_SQLITE_WAL_MAX`.
pub const DEFAULT_WAL_MAX: u64 = 64 * 1024 * 1024;
/// The smallest `NOTIF_SQLITE_WAL_MAX` accepted: one commit must fit under it with room
/// to spare (see [`COMMIT_ALLOWANCE`]).
pub const MIN_WAL_MAX: u64 = 32 * 1024 * 1024;
/// What one commit can add to the log at most: 2,048 changes, each touching one leaf of the
/// table and one of the index in the worst case (keys spread over many owners), plus page
/// splits and interior pages, at 4 KiB a page plus each frame's 24-byte header
/// (2 × 2,048 × 4,120 B ≈ 16.1 MiB). The writer truncates before the file is closer than
/// this to the bound.
const COMMIT_ALLOWANCE: u64 = 20 * 1024 * 1024;
/// How long the writer waits, when the WAL is over its threshold, for a reader to let go
/// before it logs and carries on.
const READER_PATIENCE: Duration = Duration::from_secs(1);
/// While a reader pins the log, how often the writer tries again (waiting
/// [`RETRY_PATIENCE`] each time, so that a pinned log costs little).
const RETRY_BLOCKED_EVERY: Duration = Duration::from_secs(1);
const RETRY_PATIENCE: Duration = Duration::from_millis(50);
/// How often an idle writer looks at the WAL (one `stat`).
pub const IDLE_TEND_EVERY: Duration = Duration::from_secs(1);
/// The writer connection's usual busy timeout (another process may hold the lock briefly).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a checkpoint ended, counted by mode in
/// `notification_worker_sqlite_checkpoints_total{mode, result}`.
#[derive(Debug, Default)]
pub struct CheckpointCounts {
    /// Every frame copied (TRUNCATE: and the file truncated).
    pub complete: AtomicU64,
    /// Some frames left in the log: the writer appended meanwhile (normal for PASSIVE).
    pub partial: AtomicU64,
    /// A reader or another process's checkpoint prevented it.
    pub busy: AtomicU64,
    /// SQLite answered with an error (I/O, disk full, ...).
    pub failed: AtomicU64,
}

/// What the store tells about its WAL, read by the metrics on each scrape.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Size of the `-wal` file as the writer last saw it, after a commit or checkpoint.
    pub wal_bytes: AtomicU64,
    /// `NOTIF_SQLITE_WAL_MAX`.
    pub limit_bytes: AtomicU64,
    pub passive: CheckpointCounts,
    pub truncate: CheckpointCounts,
    /// Times a reader's snapshot kept the writer from bringing the WAL under its bound.
    pub blocked: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The `-wal` file beside the database.
pub fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// Runs `PRAGMA wal_checkpoint(mode)`: (busy, frames in the log, frames copied).
fn checkpoint(connection: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    connection.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One background PASSIVE checkpoint, checked and counted. The lock keeps it from running
/// at the same time as the writer's TRUNCATE (the second would get SQLITE_BUSY at once).
pub fn passive_checkpoint(connection: &Connection, lock: &Mutex<()>, stats: &WalStats) {
    let _turn = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match checkpoint(connection, "PASSIVE") {
        Ok((_, log, copied)) if copied >= log => bump(&stats.passive.complete),
        Ok(_) => bump(&stats.passive.partial),
        Err(error) if is_busy(&error) => bump(&stats.passive.busy),
        Err(error) => {
            bump(&stats.passive.failed);
            tracing::warn!(%error, "sqlite background checkpoint failed; trying again");
        }
    }
}

/// The writer thread's side: looks at the WAL after each commit and truncates it in time.
pub struct WalBound {
    wal: PathBuf,
    limit: u64,
    threshold: u64,
    stats: Arc<WalStats>,
    lock: Arc<Mutex<()>>,
    /// Set while a reader pins the log: when the writer last tried.
    blocked: Option<Instant>,
}

impl WalBound {
    pub fn new(database: &Path, limit: u64, stats: Arc<WalStats>, lock: Arc<Mutex<()>>) -> WalBound {
        stats.limit_bytes.store(limit, Ordering::Relaxed);
        WalBound {
            wal: wal_path(database),
            limit,
            threshold: WalBound::threshold(limit),
            stats,
            lock,
            blocked: None,
        }
    }

    /// The size past which the writer truncates: the bound less one commit's worst case,
    /// and never less than half the bound.
    pub fn threshold(limit: u64) -> u64 {
        limit.saturating_sub(COMMIT_ALLOWANCE).max(limit / 2)
    }

    /// Called by the writer between two commits, and every [`IDLE_TEND_EVERY`] when idle.
    pub fn tend(&mut self, connection: &Connection) {
        let size = file_size(&self.wal);
        self.stats.wal_bytes.store(size, Ordering::Relaxed);
        if size <= self.threshold {
            if self.blocked.take().is_some() {
                tracing::info!(wal_bytes = size, "sqlite WAL back under NOTIF_SQLITE_WAL_MAX");
            }
            return;
        }
        let patience = match self.blocked {
            Some(last_try) if last_try.elapsed() < RETRY_BLOCKED_EVERY => return,
            Some(_) => RETRY_PATIENCE,
            None => READER_PATIENCE,
        };
        self.truncate(connection, patience);
    }

    /// A TRUNCATE checkpoint waiting at most `patience` for readers; counted, and logged
    /// once per episode when a reader prevents it. Returns whether the log was emptied.
    pub fn truncate(&mut self, connection: &Connection, patience: Duration) -> bool {
        let result = {
            let _turn = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // The busy handler is what waits for readers; shortened for this call only, so
            // that a pinned log pauses the writer briefly instead of for BUSY_TIMEOUT.
            let _ = connection.busy_timeout(patience);
            let result = checkpoint(connection, "TRUNCATE");
            let _ = connection.busy_timeout(BUSY_TIMEOUT);
            result
        };
        let size = file_size(&self.wal);
        self.stats.wal_bytes.store(size, Ordering::Relaxed);
        let counts = &self.stats.truncate;
        match result {
            Ok((0, _, _)) => {
                bump(&counts.complete);
                if self.blocked.take().is_some() {
                    tracing::info!(wal_bytes = size, "sqlite WAL back under NOTIF_SQLITE_WAL_MAX");
                }
                true
            }
            Ok(_) => {
                bump(&counts.busy);
                self.pinned(size);
                false
            }
            Err(error) if is_busy(&error) => {
                bump(&counts.busy);
                self.pinned(size);
                false
            }
            Err(error) => {
                bump(&counts.failed);
                tracing::warn!(%error, "sqlite WAL checkpoint failed; trying again after the next commit");
                false
            }
        }
    }

    fn pinned(&mut self, size: u64) {
        if self.blocked.replace(Instant::now()).is_none() {
            bump(&self.stats.blocked);
            tracing::warn!(
                wal_bytes = size,
                wal_max = self.limit,
                "sqlite WAL cannot be checkpointed: another connection holds a read \
                     transaction on an old snapshot; writes go on and the WAL grows past \
                     NOTIF_SQLITE_WAL_MAX until that reader ends"
            );
        }
    }
}
