//! Keeping the SQLite write-ahead log under `NOTIF_SQLITE_WAL_MAX`.
//!
//! SQLite rewinds the WAL only when a checkpoint has copied every frame back into the
//! database and no reader still uses the log. A PASSIVE checkpoint from another connection
//! runs beside the writer, so under continuous writes it never catches up, the log never
//! rewinds, and nothing ever truncates it: a 200,000-event drain grew it to 0.6–2.8 GB. So
//! two parties share the work:
//! - the checkpoint thread copies frames in the background (PASSIVE: it never blocks a
//!   commit), which is most of the copying;
//! - the writer thread itself, between two commits, once the log has grown past
//!   [`WalBound::threshold`], runs a RESTART checkpoint: it copies what is left and waits
//!   for readers to move to the latest snapshot, so that its next commit writes the log
//!   from the start of the file again. No commit can slip in meanwhile, because the one
//!   writer is the one checkpointing. (RESTART rather than TRUNCATE: overwriting the file
//!   in place costs less than growing it again after each truncation: at most about 7%
//!   of drain speed against 15% in our measurements, see BENCHMARKS.md; the file keeps the
//!   size it reached, which is under the bound.)
//!
//! A reader holding an old snapshot (an open read transaction in `sqlite3`, a backup tool)
//! pins the log, and nothing can rewind it until that reader ends. The writer then waits
//! [`READER_PATIENCE`], logs a warning once, counts it
//! (`notification_worker_sqlite_wal_blocked_total`) and goes on committing: the WAL grows
//! past the bound while the reader holds on (stopping intake would not help: the reader
//! does not end sooner). It tries again every [`RETRY_BLOCKED_EVERY`] (also when idle), and
//! once the reader has ended it truncates the file, and logs that the log is back under
//! the bound.

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
/// (2 × 2,048 × 4,120 B ≈ 16.1 MiB; 13 MiB is the most we measured with 100,000 owners).
/// The writer rewinds the log before it is closer than this to the bound.
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
    /// Every frame copied (RESTART: and the next commit starts the log over; TRUNCATE: and
    /// the file emptied).
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
    pub restart: CheckpointCounts,
    pub truncate: CheckpointCounts,
    /// Times a reader's snapshot kept the writer from bringing the WAL under its bound.
    pub blocked: AtomicU64,
}

#[derive(Clone, Copy)]
enum Mode {
    Restart,
    Truncate,
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

/// The writer thread's side: looks at the WAL after each commit and rewinds it in time.
pub struct WalBound {
    wal: PathBuf,
    limit: u64,
    threshold: u64,
    /// Frames in the log after the writer's last commit, from SQLite's WAL hook: where the
    /// next commit will write, which the file's size does not tell once the log has been
    /// rewound (the file keeps its size and is overwritten from the start).
    frames: Arc<AtomicU64>,
    frame_bytes: u64,
    stats: Arc<WalStats>,
    lock: Arc<Mutex<()>>,
    /// Set while a reader pins the log: when the writer last tried.
    blocked: Option<Instant>,
}

impl WalBound {
    /// Installs the WAL hook on the writer's connection (after `wal_autocheckpoint`, which
    /// would replace it).
    pub fn attach(
        connection: &mut Connection,
        database: &Path,
        limit: u64,
        stats: Arc<WalStats>,
        lock: Arc<Mutex<()>>,
    ) -> rusqlite::Result<WalBound> {
        stats.limit_bytes.store(limit, Ordering::Relaxed);
        let page_size: i64 = connection.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let page_size = u64::try_from(page_size).unwrap_or(4096);
        let frames = Arc::new(AtomicU64::new(0));
        let hook_frames = Arc::clone(&frames);
        connection.wal_hook(Some(
            move |_: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                hook_frames.store(u64::try_from(pages).unwrap_or(0), Ordering::Relaxed);
                Ok(())
            },
        ))?;
        Ok(WalBound {
            wal: wal_path(database),
            limit,
            threshold: WalBound::threshold(limit),
            frames,
            // Each frame is a 24-byte header and a page.
            frame_bytes: page_size + 24,
            stats,
            lock,
            blocked: None,
        })
    }

    /// The log size past which the writer checkpoints: the bound less one commit's worst
    /// case, and never less than half the bound.
    pub fn threshold(limit: u64) -> u64 {
        limit.saturating_sub(COMMIT_ALLOWANCE).max(limit / 2)
    }

    /// Called by the writer between two commits, and every [`IDLE_TEND_EVERY`] when idle.
    pub fn tend(&mut self, connection: &Connection) {
        let file = file_size(&self.wal);
        let log = self.frames.load(Ordering::Relaxed) * self.frame_bytes;
        self.stats.wal_bytes.store(file, Ordering::Relaxed);
        // The file is over the bound only after a reader pinned the log: it must be
        // truncated. Otherwise rewinding is enough, and cheaper: the next commits overwrite
        // the file from its start instead of growing it again (each fsync of a growing file
        // also writes its metadata).
        let mode = if file >= self.limit {
            Mode::Truncate
        } else if log > self.threshold {
            Mode::Restart
        } else {
            if self.blocked.take().is_some() {
                tracing::info!(wal_bytes = file, "sqlite WAL back under NOTIF_SQLITE_WAL_MAX");
            }
            return;
        };
        let patience = match self.blocked {
            Some(last_try) if last_try.elapsed() < RETRY_BLOCKED_EVERY => return,
            Some(_) => RETRY_PATIENCE,
            None => READER_PATIENCE,
        };
        self.checkpoint(connection, mode, patience);
    }

    /// Empties the log and truncates the file (at close), waiting at most `patience` for
    /// readers. Returns whether it was done.
    pub fn truncate(&mut self, connection: &Connection, patience: Duration) -> bool {
        self.checkpoint(connection, Mode::Truncate, patience)
    }

    /// A RESTART or TRUNCATE checkpoint waiting at most `patience` for readers; counted,
    /// and logged once per episode when a reader prevents it. Returns whether the log was
    /// emptied (and the next commit writes from its start).
    fn checkpoint(&mut self, connection: &Connection, mode: Mode, patience: Duration) -> bool {
        let (pragma, counts) = match mode {
            Mode::Restart => ("RESTART", &self.stats.restart),
            Mode::Truncate => ("TRUNCATE", &self.stats.truncate),
        };
        let result = {
            let _turn = self.lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // The busy handler is what waits for readers; shortened for this call only, so
            // that a pinned log pauses the writer briefly instead of for BUSY_TIMEOUT.
            let _ = connection.busy_timeout(patience);
            let result = checkpoint(connection, pragma);
            let _ = connection.busy_timeout(BUSY_TIMEOUT);
            result
        };
        let file = file_size(&self.wal);
        self.stats.wal_bytes.store(file, Ordering::Relaxed);
        match result {
            Ok((0, _, _)) => {
                bump(&counts.complete);
                // The next commit starts the log over; the hook reports it then.
                self.frames.store(0, Ordering::Relaxed);
                if self.blocked.take().is_some() {
                    tracing::info!(wal_bytes = file, "sqlite WAL back under NOTIF_SQLITE_WAL_MAX");
                }
                true
            }
            Ok(_) => {
                bump(&counts.busy);
                self.pinned(file);
                false
            }
            Err(error) if is_busy(&error) => {
                bump(&counts.busy);
                self.pinned(file);
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
                     transaction on an old snapshot (or another process keeps writing the \
                     same file); writes go on and the WAL grows past NOTIF_SQLITE_WAL_MAX \
                     until it ends"
            );
        }
    }
}
