//! The embedded state store: one redb file (under the spool directory by default), so
//! greylisting passes and rate counters survive a restart or a `kill -9`.
//!
//! One writer thread owns the database: calls queue up on a channel and each batch runs in
//! one transaction with one fsync (group commit, as the spool does), so many sessions cost
//! one disk flush. Reads that decide a write go through the same thread, which makes every
//! operation atomic without locks; plain look-ups (classifier counts, map fields) read a
//! snapshot in their own read transaction on the blocking pool, which never waits for the
//! writer. Values carry their expiry; expired entries read as absent and a sweep removes
//! them in small steps between batches. The file is opened in redb's multi-writer mode so
//! the command-line tools can use it while the gateway runs, and opened again after an
//! I/O error (a full disk), which redb otherwise holds against every later transaction.
//!
//! One file (~630 lines) because the writer thread's operations and the trait methods that
//! queue them mirror each other one to one.

use super::algo::{self, Triplet};
use super::{Backend, ContactAnswer, GreylistAnswer, RateAnswer, StateError};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// Key → expiry (unix ms, big-endian) followed by the payload.
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
/// Most operations committed together.
const MAX_BATCH: usize = 512;
/// How long the writer waits for work before it sweeps expired entries.
const SWEEP_IDLE: Duration = Duration::from_secs(60);
/// Longest time between sweeps on a store that is never idle that long (the health
/// watcher pings every few seconds, a tier writes heartbeats): without it expired
/// greylist triplets, contacts and rate buckets would stay in the file for ever.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Entries a sweep step looks at: a few milliseconds of the writer's time.
const SWEEP_STEP: usize = 2_000;
/// Expiry of entries that never expire (counters and maps of the classifier).
const NEVER: u64 = u64::MAX;
/// Separates a map's key from a field's name in the table's key.
const FIELD_SEP: char = '\u{0}';

/// One queued operation.
#[derive(Debug)]
enum Op {
    Incr {
        key: String,
        delta: i64,
        ttl: Duration,
    },
    Get {
        key: String,
    },
    Set {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    SetNx {
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    },
    Delete {
        key: String,
    },
    DeleteIf {
        key: String,
        value: Vec<u8>,
    },
    Rate {
        key: String,
        limit: u64,
        per: Duration,
        burst: u64,
    },
    Greylist {
        key: String,
        delay: Duration,
        window: Duration,
        pass_ttl: Duration,
    },
    Contact {
        key: String,
        member: String,
        memory: Duration,
        fanout: Duration,
        first_by: Vec<String>,
    },
    AddCounters {
        deltas: Vec<(String, i64)>,
    },
    MapSet {
        key: String,
        value: Vec<u8>,
    },
    MapSwap {
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        deltas: Vec<(String, i64)>,
    },
    Ping,
}

/// What an operation answers.
#[derive(Debug)]
enum Answer {
    Int(i64),
    Bytes(Option<Vec<u8>>),
    Bool(bool),
    Unit,
    Rate(RateAnswer),
    Greylist(GreylistAnswer),
    Contact(ContactAnswer),
}

type Request = (Op, oneshot::Sender<Result<Answer, StateError>>);

/// The embedded store. Dropping it stops the writer thread after the queued work.
#[derive(Debug)]
pub struct Embedded {
    requests: mpsc::Sender<Request>,
    /// Reads that need no atomic update (the classifier's counters and maps) take a read
    /// transaction on a blocking thread instead of queuing behind the writes' commits.
    /// Swapped for a new handle when the writer reopens the file (see [`writer`]).
    db: Arc<ArcSwap<Database>>,
    /// Slots of the blocking reads in flight (see [`Embedded::read`]).
    reads: Arc<tokio::sync::Semaphore>,
}

/// Most read transactions on the blocking pool at once (tokio's pool holds 512 threads):
/// enough for every session's classifier look-up on a warm store, few enough that reads
/// stuck on a hung disk leave the pool to the spool and the relay.
const MAX_BLOCKING_READS: usize = 32;

/// Opens the file as every handle of the store does (multi-writer, so the command-line
/// tools can use it while the gateway runs).
fn open_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    // A new store is made owner-only, as the spool's files are: it holds client
    // addresses, senders and digests of learned mail, and `state.path` may lie outside the
    // spool's private directory. redb makes a database in an empty file.
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))),
    }
    Database::builder()
        .set_concurrency_mode(ConcurrencyMode::MultiWriter)
        .create(path)
}

impl Embedded {
    /// Opens (or creates) the store at `path`, creating its directory.
    pub fn open(path: &Path) -> Result<Embedded, StateError> {
        Embedded::open_sweeping_every(path, SWEEP_EVERY)
    }

    fn open_sweeping_every(path: &Path, sweep_every: Duration) -> Result<Embedded, StateError> {
        let failed = |message: String| StateError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        }
        let db = open_database(path).map_err(|e| failed(e.to_string()))?;
        let db = Arc::new(ArcSwap::from_pointee(db));
        let (requests, queue) = mpsc::channel::<Request>();
        let writer_db = Handle {
            db: db.clone(),
            path: path.to_owned(),
        };
        std::thread::Builder::new()
            .name("mxguard-state".into())
            .spawn(move || writer(&writer_db, queue, sweep_every))
            .map_err(|e| failed(e.to_string()))?;
        Ok(Embedded {
            requests,
            db,
            reads: Arc::new(tokio::sync::Semaphore::new(MAX_BLOCKING_READS)),
        })
    }

    /// Runs `read` in a read transaction on a blocking thread, so `state.timeout` can cut
    /// the wait (a read on the async worker never yields, the timer cannot fire, and a
    /// slow disk held the session and every task of that worker). At most
    /// [`MAX_BLOCKING_READS`] run at once: a hung disk must not fill the blocking pool,
    /// and a caller over the bound waits for a slot within its timeout. The slot is held
    /// until the read ends, not until its caller gives up. One hop per call (a message's
    /// up to 2,000 counters are one call), not per key.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StateError>
            + Send
            + 'static,
        empty: T,
    ) -> Result<T, StateError> {
        let slot = self
            .reads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StateError::Backend(format!("state read: {e}")))?;
        let db = self.db.load_full();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            read_now(&db, read, empty)
        })
        .await
        .map_err(|e| StateError::Backend(format!("state read: {e}")))?
    }

    async fn run(&self, op: Op) -> Result<Answer, StateError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((op, tx))
            .map_err(|_| StateError::Backend("state writer stopped".into()))?;
        rx.await
            .map_err(|_| StateError::Backend("state writer stopped".into()))?
    }
}

fn read_now<T>(
    db: &Database,
    read: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StateError>,
    empty: T,
) -> Result<T, StateError> {
    let txn = db.begin_read().map_err(backend_error)?;
    match txn.open_table(TABLE) {
        Ok(table) => read(&table),
        // Nothing was ever written.
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
        Err(e) => Err(backend_error(e)),
    }
}

fn map_key(key: &str, field: &str) -> String {
    format!("{key}{FIELD_SEP}{field}")
}

/// The payload of a raw table value that has not expired.
fn live(raw: &[u8], now: u64) -> Option<&[u8]> {
    let (head, payload) = raw.split_first_chunk::<8>()?;
    (u64::from_be_bytes(*head) > now).then_some(payload)
}

fn unexpected(answer: Answer) -> StateError {
    StateError::Backend(format!("unexpected answer {answer:?}"))
}

#[async_trait]
impl Backend for Embedded {
    async fn incr(&self, key: &str, delta: i64, ttl: Duration) -> Result<i64, StateError> {
        let key = key.to_owned();
        match self.run(Op::Incr { key, delta, ttl }).await? {
            Answer::Int(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let key = key.to_owned();
        match self.run(Op::Get { key }).await? {
            Answer::Bytes(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StateError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        match self.run(Op::Set { key, value, ttl }).await? {
            Answer::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, StateError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        match self.run(Op::SetNx { key, value, ttl }).await? {
            Answer::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        let key = key.to_owned();
        match self.run(Op::Delete { key }).await? {
            Answer::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        let (key, value) = (key.to_owned(), value.to_vec());
        match self.run(Op::DeleteIf { key, value }).await? {
            Answer::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    async fn rate(
        &self,
        key: &str,
        limit: u64,
        per: Duration,
        burst: u64,
    ) -> Result<RateAnswer, StateError> {
        let key = key.to_owned();
        match self
            .run(Op::Rate {
                key,
                limit,
                per,
                burst,
            })
            .await?
        {
            Answer::Rate(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn greylist(
        &self,
        key: &str,
        delay: Duration,
        window: Duration,
        pass_ttl: Duration,
    ) -> Result<GreylistAnswer, StateError> {
        let key = key.to_owned();
        let op = Op::Greylist {
            key,
            delay,
            window,
            pass_ttl,
        };
        match self.run(op).await? {
            Answer::Greylist(g) => Ok(g),
            other => Err(unexpected(other)),
        }
    }

    async fn contact(
        &self,
        key: &str,
        member: &str,
        memory: Duration,
        fanout_window: Duration,
        first_by: &[String],
    ) -> Result<ContactAnswer, StateError> {
        let op = Op::Contact {
            key: key.to_owned(),
            member: member.to_owned(),
            memory,
            fanout: fanout_window,
            first_by: first_by.to_vec(),
        };
        match self.run(op).await? {
            Answer::Contact(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    async fn get_counters(&self, keys: &[String]) -> Result<Vec<i64>, StateError> {
        let n = keys.len();
        let keys = keys.to_vec();
        self.read(
            move |table| {
                let now = now_ms();
                keys.iter()
                    .map(|k| {
                        let guard = table.get(k.as_str()).map_err(backend_error)?;
                        Ok(guard
                            .as_ref()
                            .and_then(|g| live(g.value(), now))
                            .and_then(parse_counter)
                            .unwrap_or(0))
                    })
                    .collect()
            },
            vec![0; n],
        )
        .await
    }

    async fn add_counters(&self, deltas: &[(String, i64)]) -> Result<(), StateError> {
        let deltas = deltas.to_vec();
        match self.run(Op::AddCounters { deltas }).await? {
            Answer::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn map_get(&self, key: &str, field: &str) -> Result<Option<Vec<u8>>, StateError> {
        let key = map_key(key, field);
        self.read(
            move |table| {
                let guard = table.get(key.as_str()).map_err(backend_error)?;
                Ok(guard
                    .as_ref()
                    .and_then(|g| live(g.value(), now_ms()))
                    .map(<[u8]>::to_vec))
            },
            None,
        )
        .await
    }

    async fn map_set(&self, key: &str, field: &str, value: &[u8]) -> Result<(), StateError> {
        let op = Op::MapSet {
            key: map_key(key, field),
            value: value.to_vec(),
        };
        match self.run(op).await? {
            Answer::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn map_swap(
        &self,
        key: &str,
        field: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        deltas: &[(String, i64)],
    ) -> Result<bool, StateError> {
        let op = Op::MapSwap {
            key: map_key(key, field),
            expected: expected.map(<[u8]>::to_vec),
            new: new.map(<[u8]>::to_vec),
            deltas: deltas.to_vec(),
        };
        match self.run(op).await? {
            Answer::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    async fn map_entries(&self, key: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let start = map_key(key, "");
        self.read(
            move |table| {
                let now = now_ms();
                let mut out = Vec::new();
                for item in table.range(start.as_str()..).map_err(backend_error)? {
                    let (k, v) = item.map_err(backend_error)?;
                    let Some(field) = k.value().strip_prefix(start.as_str()) else {
                        break;
                    };
                    if let Some(payload) = live(v.value(), now) {
                        out.push((field.to_string(), payload.to_vec()));
                    }
                }
                Ok(out)
            },
            Vec::new(),
        )
        .await
    }

    async fn ping(&self) -> Result<(), StateError> {
        match self.run(Op::Ping).await? {
            Answer::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// The rate limits' clock (see `algo::gcra`).
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn expiry(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// The writer's view of the store: the handle in use and the file to open again.
struct Handle {
    db: Arc<ArcSwap<Database>>,
    path: PathBuf,
}

impl Handle {
    /// After a failed transaction: redb remembers an I/O error (a full disk, `EIO`) and
    /// refuses every later transaction of that handle ("previous I/O error") until the
    /// file is opened again. Without this, one `ENOSPC` while the spool's disk was full
    /// turned greylisting, rate limits, tier memory and the classifier off (or every
    /// message into `451`) until a restart, long after space came back.
    fn recover(&self) {
        let poisoned = matches!(
            self.db.load().begin_write().map_err(redb::Error::from),
            Err(redb::Error::PreviousIo)
        );
        if !poisoned {
            return;
        }
        match open_database(&self.path) {
            Ok(fresh) => {
                self.db.store(Arc::new(fresh));
                tracing::warn!(path = %self.path.display(), "state store: reopened after an I/O error");
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "state store: cannot reopen after an I/O error; trying again at the next failure");
            }
        }
    }
}

/// The writer thread: batches of queued operations, one transaction and commit each.
/// Expired entries are swept in steps of `SWEEP_STEP` entries between batches, so a
/// table holding a large classifier model never stalls the calls queued behind a sweep;
/// a pass starts when the store is idle, and at least once per `every`. A panic inside
/// a transaction fails that batch only: the thread goes on serving.
fn writer(handle: &Handle, queue: mpsc::Receiver<Request>, every: Duration) {
    let mut swept = std::time::Instant::now();
    // Where the running pass resumes: Some(None) at the start of the table.
    let mut pass: Option<Option<String>> = None;
    loop {
        let wait = if pass.is_some() {
            Duration::ZERO
        } else {
            SWEEP_IDLE.min(every)
        };
        let next = queue.recv_timeout(wait);
        let idle = !wait.is_zero() && matches!(next, Err(mpsc::RecvTimeoutError::Timeout));
        if pass.is_none() && (idle || swept.elapsed() >= every) {
            pass = Some(None);
            swept = std::time::Instant::now();
        }
        if let Some(from) = pass.take() {
            let db = handle.db.load();
            let step = without_panics("sweep", || sweep_step(&db, from.as_deref(), SWEEP_STEP));
            match step {
                Ok(resume) => pass = resume.map(Some),
                Err(e) => {
                    tracing::warn!(error = %e, "state store: sweeping expired entries failed");
                    recover_guarded(handle);
                }
            }
        }
        let first = match next {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().unzip();
        let db = handle.db.load();
        let applied = without_panics("state transaction", || apply(&db, ops));
        match applied {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "state store: transaction failed");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
                recover_guarded(handle);
            }
        }
    }
}

/// Runs `f`, a panic in it read as a backend error naming `what`: the writer thread must
/// outlive a defect in one transaction or sweep.
fn without_panics<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, StateError>,
) -> Result<T, StateError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(StateError::Backend(format!("{what} panicked"))))
}

/// [`Handle::recover`], a panic in it caught too: after a panic a transaction caught,
/// redb's state may make the reopening panic as well, which would end the writer thread.
fn recover_guarded(handle: &Handle) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.recover())).is_err() {
        tracing::error!(
            "state store: reopening after a failure panicked; trying again at the next failure"
        );
    }
}

fn backend_error(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

/// Runs `ops` in one write transaction; the answers in order, or the error that aborted
/// the whole batch (then nothing of it was applied). A batch of reads only is aborted, not
/// committed: a commit would cost two flushes (redb's two-phase commit) for nothing
/// (review: every greylisted RCPT's read paid them). Reads still queue here, behind the
/// writes sent before them (a network's auto-allow credit, then its next client). A ping
/// commits: the health watcher's, once a second, is what finds a disk failing while
/// nothing else writes (review of the change).
fn apply(db: &Database, ops: Vec<Op>) -> Result<Vec<Answer>, StateError> {
    let writes = ops.iter().any(|op| !matches!(op, Op::Get { .. }));
    let txn = db.begin_write().map_err(backend_error)?;
    let mut answers = Vec::with_capacity(ops.len());
    {
        let mut table = txn.open_table(TABLE).map_err(backend_error)?;
        let now = now_ms();
        for op in ops {
            answers.push(apply_one(&mut table, now, op)?);
        }
    }
    if writes {
        txn.commit().map_err(backend_error)?;
    } else {
        txn.abort().map_err(backend_error)?;
    }
    Ok(answers)
}

type Table<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// The live payload of `key` (an expired entry reads as absent).
fn read(table: &Table<'_>, now: u64, key: &str) -> Result<Option<Vec<u8>>, StateError> {
    let Some(guard) = table.get(key).map_err(backend_error)? else {
        return Ok(None);
    };
    Ok(live(guard.value(), now).map(<[u8]>::to_vec))
}

fn parse_counter(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn write(table: &mut Table<'_>, key: &str, expires: u64, payload: &[u8]) -> Result<(), StateError> {
    let mut value = Vec::with_capacity(8 + payload.len());
    value.extend_from_slice(&expires.to_be_bytes());
    value.extend_from_slice(payload);
    table.insert(key, value.as_slice()).map_err(backend_error)?;
    Ok(())
}

fn apply_one(table: &mut Table<'_>, now: u64, op: Op) -> Result<Answer, StateError> {
    Ok(match op {
        Op::Incr { key, delta, ttl } => {
            // Decimal text, as Redis keeps counters: `get` reads the same in both.
            let current = read(table, now, &key)?
                .as_deref()
                .and_then(parse_counter)
                .unwrap_or(0);
            let value = current.saturating_add(delta);
            write(table, &key, expiry(now, ttl), value.to_string().as_bytes())?;
            Answer::Int(value)
        }
        Op::Get { key } => Answer::Bytes(read(table, now, &key)?),
        Op::Set { key, value, ttl } => {
            write(table, &key, expiry(now, ttl), &value)?;
            Answer::Unit
        }
        Op::SetNx { key, value, ttl } => {
            if read(table, now, &key)?.is_some() {
                Answer::Bool(false)
            } else {
                write(table, &key, expiry(now, ttl), &value)?;
                Answer::Bool(true)
            }
        }
        Op::Delete { key } => {
            table.remove(key.as_str()).map_err(backend_error)?;
            Answer::Unit
        }
        Op::DeleteIf { key, value } => {
            if read(table, now, &key)?.as_deref() == Some(value.as_slice()) {
                table.remove(key.as_str()).map_err(backend_error)?;
                Answer::Bool(true)
            } else {
                Answer::Bool(false)
            }
        }
        Op::Rate {
            key,
            limit,
            per,
            burst,
        } => {
            let tat =
                read(table, now, &key)?.and_then(|v| v.try_into().ok().map(u64::from_be_bytes));
            let (answer, next) = algo::gcra(now_us(), tat, limit, per, burst);
            if let Some((tat, keep)) = next {
                write(table, &key, expiry(now, keep), &tat.to_be_bytes())?;
            }
            Answer::Rate(answer)
        }
        Op::Greylist {
            key,
            delay,
            window,
            pass_ttl,
        } => {
            let stored = read(table, now, &key)?.and_then(|v| Triplet::decode(&v));
            let (answer, triplet, keep) =
                algo::greylist(now / 1000, stored, delay, window, pass_ttl);
            write(table, &key, expiry(now, keep), &triplet.encode())?;
            Answer::Greylist(answer)
        }
        Op::Contact {
            key,
            member,
            memory,
            fanout,
            first_by,
        } => {
            let stored = read(table, now, &key)?
                .map(|v| algo::decode_contacts(&v))
                .unwrap_or_default();
            let (answer, kept) =
                algo::contact(now / 1000, stored, &member, memory, fanout, &first_by);
            write(
                table,
                &key,
                expiry(now, memory),
                &algo::encode_contacts(&kept),
            )?;
            Answer::Contact(answer)
        }
        Op::AddCounters { deltas } => {
            add_counters(table, now, &deltas)?;
            Answer::Unit
        }
        Op::MapSet { key, value } => {
            write(table, &key, NEVER, &value)?;
            Answer::Unit
        }
        Op::MapSwap {
            key,
            expected,
            new,
            deltas,
        } => {
            if read(table, now, &key)? != expected {
                return Ok(Answer::Bool(false));
            }
            match new {
                Some(value) => write(table, &key, NEVER, &value)?,
                None => {
                    table.remove(key.as_str()).map_err(backend_error)?;
                }
            }
            add_counters(table, now, &deltas)?;
            Answer::Bool(true)
        }
        Op::Ping => Answer::Unit,
    })
}

/// Adds to counters that never expire, as decimal text like [`Op::Incr`]'s.
fn add_counters(
    table: &mut Table<'_>,
    now: u64,
    deltas: &[(String, i64)],
) -> Result<(), StateError> {
    for (key, delta) in deltas {
        let current = read(table, now, key)?
            .as_deref()
            .and_then(parse_counter)
            .unwrap_or(0);
        let value = current.saturating_add(*delta);
        if value == 0 {
            // A forgotten token leaves nothing behind.
            table.remove(key.as_str()).map_err(backend_error)?;
        } else {
            write(table, key, NEVER, value.to_string().as_bytes())?;
        }
    }
    Ok(())
}

/// Removes the expired entries among the `step` entries after `from` (the table's start
/// when None); where the next step starts, or None once the pass reached the end. The
/// scan reads a snapshot; a write transaction (and its fsync) is paid only when something
/// expired, and each key is checked again inside it, so an entry written since the scan
/// is kept.
fn sweep_step(
    db: &Database,
    from: Option<&str>,
    step: usize,
) -> Result<Option<String>, StateError> {
    let now = now_ms();
    let lower = from.map_or(Bound::Unbounded, Bound::Excluded);
    let (expired, resume) = read_now(
        db,
        |table| {
            let mut expired = Vec::new();
            let mut resume = None;
            let mut seen = 0;
            for entry in table
                .range::<&str>((lower, Bound::Unbounded))
                .map_err(backend_error)?
            {
                let (key, value) = entry.map_err(backend_error)?;
                if live(value.value(), now).is_none() {
                    expired.push(key.value().to_owned());
                }
                seen += 1;
                if seen == step {
                    resume = Some(key.value().to_owned());
                    break;
                }
            }
            Ok((expired, resume))
        },
        (Vec::new(), None),
    )?;
    if !expired.is_empty() {
        let txn = db.begin_write().map_err(backend_error)?;
        {
            let mut table = txn.open_table(TABLE).map_err(backend_error)?;
            for key in &expired {
                let still_expired = table
                    .get(key.as_str())
                    .map_err(backend_error)?
                    .is_some_and(|value| live(value.value(), now).is_none());
                if still_expired {
                    table.remove(key.as_str()).map_err(backend_error)?;
                }
            }
        }
        txn.commit().map_err(backend_error)?;
    }
    Ok(resume)
}

#[cfg(test)]
mod sweep_tests {
    use super::*;
    use crate::state::Backend;

    fn raw_entries(store: &Embedded) -> usize {
        read_now(
            &store.db.load(),
            |table| Ok(table.iter().map_err(backend_error)?.count()),
            0,
        )
        .unwrap_or(0)
    }

    /// Regression (review): the sweep ran over the whole table in one transaction, so a
    /// store holding a classifier model stalled every greylist and rate-limit call queued
    /// behind it. A step looks at a bounded number of entries and says where to resume.
    #[tokio::test]
    async fn a_sweep_step_is_bounded_and_a_pass_reaches_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb")).unwrap();
        for i in 0..2_500 {
            store
                .set(&format!("gl:t:{i:05}"), b"x", Duration::from_millis(1))
                .await
                .unwrap();
        }
        let keep: Vec<(String, i64)> = (0..2_500).map(|i| (format!("bayes:{i:05}"), 1)).collect();
        store.add_counters(&keep).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let db = store.db.load();
        let mut steps = 0;
        let mut from: Option<String> = None;
        loop {
            steps += 1;
            match sweep_step(&db, from.as_deref(), 1_000).unwrap() {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        assert_eq!(
            steps, 6,
            "5,000 entries in steps of 1,000, and one that finds the end"
        );
        assert_eq!(raw_entries(&store), 2_500, "the expired entries are gone");
        assert_eq!(
            store.get_counters(&["bayes:00042".into()]).await.unwrap(),
            vec![1]
        );
    }

    /// Regression (review): expired entries were swept only after a minute with no
    /// request at all, which never comes (the health watcher pings every 5 s), so greylist
    /// triplets, contacts and rate buckets stayed in the file for ever.
    #[tokio::test]
    async fn expired_entries_are_swept_on_a_store_that_is_never_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Embedded::open_sweeping_every(&dir.path().join("s.redb"), Duration::from_millis(300))
                .unwrap();
        for i in 0..100 {
            store
                .set(&format!("gl:t:{i}"), b"x", Duration::from_secs(2))
                .await
                .unwrap();
        }
        store
            .set("kept", b"x", Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(raw_entries(&store), 101, "swept before expiry");
        // Never idle: a ping every 50 ms, as the health watcher and heartbeats keep it.
        let until = std::time::Instant::now() + Duration::from_secs(20);
        while raw_entries(&store) > 1 && std::time::Instant::now() < until {
            store.ping().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(raw_entries(&store), 1, "expired entries were never swept");
        assert_eq!(store.get("kept").await.unwrap(), Some(b"x".to_vec()));
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use crate::config::{OnFailure, StateBackendConfig, StateConfig};
    use crate::metrics::Metrics;
    use crate::state::{State, Unavailable};

    /// Regression (review of the state backend): reads on the blocking pool are bounded,
    /// so reads stuck on a hung disk cannot take every thread of the pool; a read past the
    /// bound waits for a slot within `state.timeout`, fails as a timeout, and goes
    /// through once a slot is free.
    #[tokio::test]
    async fn a_read_over_the_bound_waits_within_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Arc::new(Embedded::open(&path).unwrap());
        store.add_counters(&[("k".into(), 3)]).await.unwrap();
        let config = StateConfig {
            backend: StateBackendConfig::Embedded { path },
            timeout: Duration::from_millis(50),
            on_failure: OnFailure::Closed,
            key_prefix: String::new(),
        };
        let state = State::with_backend(store.clone(), &config, Arc::new(Metrics::new()));
        let stuck = u32::try_from(MAX_BLOCKING_READS).unwrap();
        let stuck = store.reads.clone().acquire_many_owned(stuck).await.unwrap();
        assert_eq!(
            state.get_counters(&["k".into()]).await,
            Err(Unavailable(OnFailure::Closed))
        );
        assert_eq!(
            state.map_get("m", "f").await,
            Err(Unavailable(OnFailure::Closed))
        );
        drop(stuck);
        assert_eq!(state.get_counters(&["k".into()]).await, Ok(vec![3]));
    }
}
