//! The recording writer: one thread that owns every recording file of the node, fed by a
//! bounded queue, so that the media shards never wait on a disk.
//!
//! ```text
//!   call ──open (try_send)──┐
//!   shard ──Batch (try_send; full: dropped, counted)──> queue ──> writer thread ──> <dir>/<tenant>/<call>.wav.part
//!   call ──finish(slots) (awaits room)──┘                          header patched, fsync, renamed to .wav
//! ```
//!
//! A recording is written as `<dir>/<tenant_id>/<call_id>.wav.part` and renamed to
//! `<call_id>.wav` once complete, its RIFF sizes patched and its data synced, so that a
//! reader never takes a half file for a finished one. The file's timeline is the call's:
//! a batch the queue had no room for (or that came out of order) is written as silence, so
//! that what follows stays where it belongs, and [`RecordingTap::finish`] pads the file to
//! the call's last slot. Paths are built only from parsed ids.
//!
//! Nothing about a file fails a call: an unwritable folder, a full disk or any other write
//! error marks the recording failed ([`RecordingFailure`], its `.part` removed), and the
//! call learns it when it finishes the recording.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::recording::{Batch, HEADER_BYTES, SLOT_BYTES, slots_duration, wav_header};
use crate::ids::{CallId, TenantId};

/// Messages the writer's queue holds: about 20 s of batches of 100 recorded calls.
pub const QUEUE: usize = 10_000;

/// The file of a finished recording: `<dir>/<tenant_id>/<call_id>.wav`.
pub fn recording_path(dir: &Path, tenant: TenantId, call: CallId) -> PathBuf {
    dir.join(tenant.to_string()).join(format!("{call}.wav"))
}

/// Which recording: the call and its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordingKey {
    pub tenant: TenantId,
    pub call: CallId,
}

/// Why a recording failed; [`FailureReason::as_str`] is the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The folder or the file cannot be created.
    Unwritable,
    /// The disk (or the quota) is full.
    DiskFull,
    /// Another write error.
    WriteFailed,
    /// The writer's queue had no room to open the recording.
    QueueFull,
    /// The writer is gone, or did not answer in time.
    WriterStopped,
    /// The call's media never started (its agent's host did not resolve, or no shard took
    /// the session).
    NoMedia,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Unwritable => "unwritable",
            FailureReason::DiskFull => "disk_full",
            FailureReason::WriteFailed => "write_failed",
            FailureReason::QueueFull => "queue_full",
            FailureReason::WriterStopped => "writer_stopped",
            FailureReason::NoMedia => "no_media",
        }
    }

    fn of(e: &io::Error) -> FailureReason {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => FailureReason::DiskFull,
            _ => FailureReason::WriteFailed,
        }
    }
}

/// A recording that failed: the reason and what the system said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFailure {
    pub reason: FailureReason,
    pub detail: String,
}

impl RecordingFailure {
    /// The call's media never started: nothing was recorded.
    pub fn no_media(detail: impl Into<String>) -> Self {
        RecordingFailure::new(FailureReason::NoMedia, detail)
    }

    fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        RecordingFailure {
            reason,
            detail: detail.into(),
        }
    }
}

/// A finished recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The file's size, header included.
    pub bytes: u64,
    pub duration: Duration,
    /// Slots written as silence because their batch never reached the writer.
    pub lost_slots: u64,
}

#[derive(Debug)]
enum Message {
    Open(RecordingKey),
    Frames(RecordingKey, Batch),
    Abort(RecordingKey),
    Finish {
        key: RecordingKey,
        slots: u64,
        reply: oneshot::Sender<Result<Recorded, RecordingFailure>>,
    },
}

/// The node's recording writer. Cloning shares it; the thread ends when the last clone and
/// the last tap are dropped.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: mpsc::Sender<Message>,
    dir: PathBuf,
}

impl Recorder {
    /// Starts the writer thread for recordings under `dir` (created when first needed), its
    /// queue holding `queue` messages.
    pub fn spawn(dir: PathBuf, queue: usize) -> io::Result<Recorder> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let root = dir.clone();
        std::thread::Builder::new()
            .name("vca-recorder".into())
            .spawn(move || Writer::new(root).run(rx))?;
        Ok(Recorder { queue: tx, dir })
    }

    /// Where the recordings are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts the recording of `key`'s call; never waits. The tap goes with the call's media
    /// to its shard, and the call finishes the recording through it.
    pub fn open(&self, key: RecordingKey) -> Result<RecordingTap, RecordingFailure> {
        self.queue
            .try_send(Message::Open(key))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => RecordingFailure::new(
                    FailureReason::QueueFull,
                    "the recording writer's queue is full",
                ),
                mpsc::error::TrySendError::Closed(_) => RecordingFailure::new(
                    FailureReason::WriterStopped,
                    "the recording writer has stopped",
                ),
            })?;
        Ok(RecordingTap {
            key,
            queue: self.queue.clone(),
        })
    }
}

/// One call's way to its recording: the shard hands it batches, the call finishes it.
#[derive(Debug, Clone)]
pub struct RecordingTap {
    key: RecordingKey,
    queue: mpsc::Sender<Message>,
}

/// Taps are told apart by their recording, so that a command carrying one can be compared.
impl PartialEq for RecordingTap {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for RecordingTap {}

/// Longest a call waits for its recording to be finished.
pub const FINISH_WAIT: Duration = Duration::from_secs(10);

impl RecordingTap {
    pub fn key(&self) -> RecordingKey {
        self.key
    }

    /// Queues a batch of the call's audio; false when the queue had no room (the batch is
    /// then silence in the file). Never waits.
    pub fn send(&self, batch: Batch) -> bool {
        self.queue
            .try_send(Message::Frames(self.key, batch))
            .is_ok()
    }

    /// Gives the recording up: its `.part` is removed. Never waits; should the queue be
    /// full, the `.part` stays (and is never taken for a finished file).
    pub fn abort(self) {
        let _ = self.queue.try_send(Message::Abort(self.key));
    }

    /// Ends the recording at `slots` slots of call time and waits (at most [`FINISH_WAIT`])
    /// for the file to be complete. Call once the call's media has ended, so that every
    /// batch it sent is ahead of this in the queue.
    pub async fn finish(self, slots: u64) -> Result<Recorded, RecordingFailure> {
        let stopped = || {
            RecordingFailure::new(
                FailureReason::WriterStopped,
                "the recording writer did not finish the file",
            )
        };
        let (reply, done) = oneshot::channel();
        let finish = Message::Finish {
            key: self.key,
            slots,
            reply,
        };
        let sent = tokio::time::timeout(FINISH_WAIT, self.queue.send(finish)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return Err(stopped());
        }
        match tokio::time::timeout(FINISH_WAIT, done).await {
            Ok(Ok(outcome)) => outcome,
            _ => Err(stopped()),
        }
    }
}

/// One recording being written.
struct Open {
    part: PathBuf,
    done: PathBuf,
    file: Option<BufWriter<File>>,
    /// Slots in the file so far.
    slots: u64,
    lost_slots: u64,
    failure: Option<RecordingFailure>,
}

impl Open {
    fn fail(&mut self, failure: RecordingFailure) {
        if self.failure.is_none() && failure.reason != FailureReason::NoMedia {
            tracing::warn!(file = %self.part.display(), detail = %failure.detail, "recording failed");
            self.failure = Some(failure);
        }
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.part);
        }
    }

    /// Writes silence up to `slot`.
    fn pad_to(&mut self, slot: u64) -> io::Result<()> {
        const SILENCE: [u8; SLOT_BYTES] = [0; SLOT_BYTES];
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        while self.slots < slot {
            file.write_all(&SILENCE)?;
            self.slots += 1;
            self.lost_slots += 1;
        }
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        self.pad_to(batch.first_slot)?;
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        // A batch overlapping what is written already keeps only its new slots.
        let skip = self.slots.saturating_sub(batch.first_slot);
        let from = usize::try_from(skip)
            .unwrap_or(usize::MAX)
            .saturating_mul(SLOT_BYTES);
        if let Some(data) = batch.data.get(from..) {
            file.write_all(data)?;
            self.slots += (data.len() / SLOT_BYTES) as u64;
        }
        Ok(())
    }

    /// Pads to `slots`, patches the header, syncs and renames.
    fn complete(&mut self, slots: u64) -> io::Result<Recorded> {
        self.pad_to(slots)?;
        let lost = self.lost_slots;
        let Some(file) = self.file.take() else {
            return Err(io::Error::other("the recording has no file"));
        };
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        let data = self.slots * SLOT_BYTES as u64;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&wav_header(data))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.part, &self.done)?;
        Ok(Recorded {
            bytes: data + HEADER_BYTES as u64,
            duration: slots_duration(self.slots),
            lost_slots: lost,
        })
    }
}

struct Writer {
    dir: PathBuf,
    open: HashMap<RecordingKey, Open>,
}

impl Writer {
    fn new(dir: PathBuf) -> Writer {
        Writer {
            dir,
            open: HashMap::new(),
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<Message>) {
        while let Some(message) = queue.blocking_recv() {
            match message {
                Message::Open(key) => self.open(key),
                Message::Frames(key, batch) => {
                    if let Some(open) = self.open.get_mut(&key)
                        && let Err(e) = open.write(&batch)
                    {
                        open.fail(RecordingFailure::new(FailureReason::of(&e), e.to_string()));
                    }
                }
                Message::Abort(key) => {
                    if let Some(mut open) = self.open.remove(&key) {
                        open.fail(RecordingFailure::no_media("given up"));
                    }
                }
                Message::Finish { key, slots, reply } => {
                    let outcome = match self.open.remove(&key) {
                        None => Err(RecordingFailure::new(
                            FailureReason::WriterStopped,
                            "the recording was never opened",
                        )),
                        Some(mut open) => match open.failure.take() {
                            Some(failure) => Err(failure),
                            None => open.complete(slots).map_err(|e| {
                                let failure =
                                    RecordingFailure::new(FailureReason::of(&e), e.to_string());
                                open.fail(failure.clone());
                                let _ = fs::remove_file(&open.part);
                                failure
                            }),
                        },
                    };
                    let _ = reply.send(outcome);
                }
            }
        }
        // Every sender is gone: what is still open is left as `.part`, never taken for done.
    }

    fn open(&mut self, key: RecordingKey) {
        let done = recording_path(&self.dir, key.tenant, key.call);
        let part = done.with_extension("wav.part");
        let mut open = Open {
            part,
            done,
            file: None,
            slots: 0,
            lost_slots: 0,
            failure: None,
        };
        let created = open
            .done
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| File::create(&open.part));
        match created {
            Ok(file) => {
                let mut file = BufWriter::with_capacity(64 * 1024, file);
                // The header is patched with the sizes when the file is complete.
                match file.write_all(&wav_header(0)) {
                    Ok(()) => open.file = Some(file),
                    Err(e) => {
                        open.file = Some(file);
                        open.fail(RecordingFailure::new(FailureReason::of(&e), e.to_string()));
                    }
                }
            }
            Err(e) => {
                let reason = match FailureReason::of(&e) {
                    FailureReason::DiskFull => FailureReason::DiskFull,
                    _ => FailureReason::Unwritable,
                };
                open.fail(RecordingFailure::new(
                    reason,
                    format!("{}: {e}", open.part.display()),
                ));
            }
        }
        self.open.insert(key, open);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::recording::{BATCH_SLOTS, interleave};

    fn key() -> RecordingKey {
        RecordingKey {
            tenant: TenantId::new(),
            call: CallId::new(),
        }
    }

    /// A batch whose every left sample is `l` and right sample is `r`.
    fn batch(first_slot: u64, slots: usize, l: i16, r: i16) -> Batch {
        let mut data = Vec::new();
        for _ in 0..slots {
            interleave(&[l; 160], &[r; 160], &mut data);
        }
        Batch {
            first_slot,
            slots,
            data,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_recording_is_a_part_file_until_finished_then_a_wav_with_its_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::spawn(dir.path().to_owned(), 64).unwrap();
        let key = key();
        let tap = recorder.open(key).unwrap();
        assert!(tap.send(batch(0, BATCH_SLOTS, 1, 2)));
        // Slots 10..20 never reached the writer: silence in their place.
        assert!(tap.send(batch(20, 5, 3, 4)));
        let done = recording_path(dir.path(), key.tenant, key.call);
        let recorded = rt().block_on(tap.finish(30)).unwrap();
        assert_eq!(recorded.duration, Duration::from_millis(600));
        assert_eq!(recorded.lost_slots, 15);
        let wav = fs::read(&done).unwrap();
        assert_eq!(wav.len() as u64, recorded.bytes);
        assert_eq!(wav.len(), HEADER_BYTES + 30 * SLOT_BYTES);
        assert_eq!(&wav[..HEADER_BYTES], &wav_header(30 * SLOT_BYTES as u64));
        let sample = |slot: usize, ch: usize| {
            let at = HEADER_BYTES + slot * SLOT_BYTES + ch * 2;
            i16::from_le_bytes([wav[at], wav[at + 1]])
        };
        assert_eq!((sample(0, 0), sample(0, 1)), (1, 2));
        assert_eq!((sample(15, 0), sample(15, 1)), (0, 0));
        assert_eq!((sample(24, 0), sample(24, 1)), (3, 4));
        assert_eq!((sample(29, 0), sample(29, 1)), (0, 0));
        assert!(!done.with_extension("wav.part").exists());
    }

    #[test]
    fn an_aborted_recording_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::spawn(dir.path().to_owned(), 64).unwrap();
        let key = key();
        let tap = recorder.open(key).unwrap();
        assert!(tap.send(batch(0, 1, 1, 1)));
        let again = tap.clone();
        tap.abort();
        // Finishing after the abort finds nothing open.
        let failure = rt().block_on(again.finish(1)).unwrap_err();
        assert_eq!(failure.reason, FailureReason::WriterStopped);
        let folder = recording_path(dir.path(), key.tenant, key.call);
        let folder = folder.parent().unwrap();
        assert_eq!(
            fs::read_dir(folder).unwrap().count(),
            0,
            "no .part, no .wav"
        );
    }

    #[test]
    fn a_folder_that_cannot_be_made_fails_the_recording_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the recordings folder should be.
        let blocked = dir.path().join("recordings");
        fs::write(&blocked, b"not a folder").unwrap();
        let recorder = Recorder::spawn(blocked.clone(), 64).unwrap();
        let tap = recorder.open(key()).unwrap();
        assert!(tap.send(batch(0, 1, 1, 1)));
        let failure = rt().block_on(tap.finish(1)).unwrap_err();
        assert_eq!(failure.reason, FailureReason::Unwritable);
        assert!(failure.detail.contains("recordings"), "{}", failure.detail);
        assert_eq!(fs::read(&blocked).unwrap(), b"not a folder");
    }

    #[test]
    fn a_full_queue_refuses_the_open_and_a_stopped_writer_the_finish() {
        let (tx, rx) = mpsc::channel(1);
        let recorder = Recorder {
            queue: tx,
            dir: PathBuf::from("unused"),
        };
        let tap = recorder.open(key()).unwrap();
        let full = recorder.open(key()).unwrap_err();
        assert_eq!(full.reason, FailureReason::QueueFull);
        assert!(!tap.send(batch(0, 1, 0, 0)), "no room: dropped");
        drop(rx);
        let stopped = rt().block_on(tap.finish(1)).unwrap_err();
        assert_eq!(stopped.reason, FailureReason::WriterStopped);
        assert_eq!(
            recorder.open(key()).unwrap_err().reason,
            FailureReason::WriterStopped
        );
    }

    #[test]
    fn a_full_disk_is_told_from_other_write_errors() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        assert_eq!(FailureReason::of(&full), FailureReason::DiskFull);
        let other = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(FailureReason::of(&other), FailureReason::WriteFailed);
        assert_eq!(FailureReason::DiskFull.as_str(), "disk_full");
    }
}
