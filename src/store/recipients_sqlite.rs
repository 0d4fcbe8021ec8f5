//! The recipient directory in the SQLite file of the notifications: table `recipients`,
//! one row per owner. Each handle has its own connection, as each process would; the
//! revision column makes the writes of several connections (or processes) safe.

use super::recipients::{RecipientStore, Revised, damaged};
use super::sqlite::{connect, on_connection};
use super::{ErrorKind, StoreError};
use crate::domain::Id;
use crate::recipients::Recipient;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// `record` is the whole versioned record ([`Recipient::to_stored`]), the only thing read
/// back. `email` and `locale` repeat its current values in plain columns for people
/// querying the file with `sqlite3`; nothing reads them.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS recipients (
    owner    TEXT    NOT NULL PRIMARY KEY,
    email    TEXT,
    locale   TEXT,
    record   TEXT    NOT NULL,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
";

const READ: &str = "SELECT record, revision FROM recipients WHERE owner = ?1";
/// (owner, email, locale, record): a new record, unless another writer made one first.
const INSERT: &str = "INSERT INTO recipients (owner, email, locale, record, revision)
    VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (owner) DO NOTHING";
/// (owner, email, locale, record, expected revision).
const UPDATE: &str = "UPDATE recipients SET email = ?2, locale = ?3, record = ?4, revision = ?5 + 1
    WHERE owner = ?1 AND revision = ?5";

pub struct SqliteRecipientStore {
    path: PathBuf,
    connection: Arc<Mutex<Connection>>,
}

impl SqliteRecipientStore {
    /// Opens (creating the file and its folder if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteRecipientStore, StoreError> {
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
        Ok(SqliteRecipientStore {
            path: path.to_owned(),
            connection: Arc::new(Mutex::new(connect(path)?)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        on_connection(&self.connection, work).await
    }
}

impl RecipientStore for SqliteRecipientStore {
    async fn setup(&self) -> Result<(), StoreError> {
        self.with_connection(|connection| connection.execute_batch(SCHEMA))
            .await
    }

    async fn read(&self, owner: &Id) -> Result<Option<Revised>, StoreError> {
        let key = owner.as_str().to_owned();
        let row = self
            .with_connection(move |connection| {
                connection
                    .prepare_cached(READ)?
                    .query_row(params![key], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })
                    .optional()
            })
            .await?;
        let Some((text, revision)) = row else {
            return Ok(None);
        };
        let record = Recipient::from_stored(owner.clone(), &text)
            .map_err(|problem| damaged(owner, "table recipients", problem))?;
        let revision = u64::try_from(revision)
            .map_err(|_| damaged(owner, "table recipients", format!("revision {revision}")))?;
        Ok(Some(Revised { record, revision }))
    }

    async fn write_if(&self, record: &Recipient, expected: Option<u64>) -> Result<bool, StoreError> {
        let owner = record.owner().as_str().to_owned();
        let email = record.email().map(|email| email.as_str().to_owned());
        let locale = record.locale().map(|locale| locale.as_str().to_owned());
        let text = record.to_stored();
        let expected = expected
            .map(|revision| {
                i64::try_from(revision).map_err(|_| {
                    StoreError::new(ErrorKind::Permanent, format!("revision {revision} is too large"))
                })
            })
            .transpose()?;
        let written = self
            .with_connection(move |connection| match expected {
                None => connection
                    .prepare_cached(INSERT)?
                    .execute(params![owner, email, locale, text]),
                Some(revision) => connection
                    .prepare_cached(UPDATE)?
                    .execute(params![owner, email, locale, text, revision]),
            })
            .await?;
        Ok(written == 1)
    }
}
