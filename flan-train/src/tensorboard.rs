//! TensorBoard event files beside `metrics.jsonl`, so that `tensorboard --logdir <output_dir>`
//! (and platforms that ingest TensorBoard logs) show the run's loss, learning rate, gradient norm,
//! throughput and evaluation scores.
//!
//! The format is TensorFlow's: a file `events.out.tfevents.<time>.<host>.<pid>` of records, each
//! `length (u64 LE) | masked CRC32C of the length | data | masked CRC32C of the data`, where data
//! is a serialized `tensorflow.Event` protobuf. Only the few fields needed are encoded here, by
//! hand, as proto3 writes them (fields in number order, zero scalars outside a oneof left out):
//! `Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5,
//! session_log = 7 }`, `Summary { value = 1 (repeated) }`, `Summary.Value { tag = 1 (string),
//! simple_value = 2 (float, in a oneof) }`, `SessionLog { status = 1 (enum, START = 1) }`.
//! A resumed run starts a new file with a `SessionLog.START` event at the first step it logs:
//! TensorBoard then drops the earlier files' events from that step on, as the run's
//! `metrics.jsonl` drops its records after the checkpoint.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The version string TensorFlow writes as the first event of every file.
const FILE_VERSION: &str = "brain.Event:2";

/// An open event file.
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates a new event file in `dir`. With `restart_at = Some(step)` (a resumed run whose
    /// next logged step is `step`), a `SessionLog.START` event at that step follows the version.
    pub fn create(dir: &Path, restart_at: Option<u64>) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let now = wall_time();
        let stem = format!(
            "events.out.tfevents.{}.{}.{}",
            now as u64,
            hostname(),
            std::process::id()
        );
        // A second writer of one process within the same second (a resume in-process) must not
        // truncate the first one's file: later ones take a suffix, as TensorFlow's writers do.
        let (path, file) = (0..1000)
            .map(|n| match n {
                0 => dir.join(&stem),
                n => dir.join(format!("{stem}.{n}")),
            })
            .find_map(
                |path| match File::options().write(true).create_new(true).open(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    opened => Some(
                        opened
                            .map(|f| (path.clone(), f))
                            .map_err(|e| Error::io(&path, e)),
                    ),
                },
            )
            .unwrap_or_else(|| {
                Err(Error::io(
                    dir,
                    std::io::Error::other(format!("1000 event files named {stem}* exist")),
                ))
            })?;
        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
        };
        writer.write_event(&Event {
            wall_time: now,
            step: 0,
            what: What::FileVersion(FILE_VERSION.into()),
        })?;
        if let Some(step) = restart_at {
            writer.write_event(&Event {
                wall_time: now,
                step,
                what: What::SessionStart,
            })?;
        }
        Ok(writer)
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `values` (tag, value) as one event at `step` and flushes it, so that a reader
    /// tailing the file sees it at once. Values are stored as fp32, as TensorBoard's scalars are.
    pub fn scalars(&mut self, step: u64, values: &[(String, f64)]) -> Result<()> {
        self.write_event(&Event {
            wall_time: wall_time(),
            step,
            what: What::Scalars(values.iter().map(|(t, v)| (t.clone(), *v as f32)).collect()),
        })
    }

    /// Writes one event as a record and flushes it.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        self.file
            .write_all(&record(event))
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Forces the events written so far to disk.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// An event encoded and framed as a record of an event file.
pub fn record(event: &Event) -> Vec<u8> {
    let data = event.encode();
    let len = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&len);
    record.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    record.extend_from_slice(&data);
    record.extend_from_slice(&masked_crc32c(&data).to_le_bytes());
    record
}

/// One event of an event file, as far as flan writes and reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// The training step.
    pub step: u64,
    /// What the event holds.
    pub what: What,
}

/// The payload of an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// The file's format version (the first event of a file).
    FileVersion(String),
    /// Scalars by tag.
    Scalars(Vec<(String, f32)>),
    /// A (re)start of the run: readers drop earlier events from this step on.
    SessionStart,
    /// Something else a TensorBoard writer may put in a file (skipped by [`read_events`]'s
    /// callers; kept so that reading never fails on a valid file).
    Other,
}

impl Event {
    /// The protobuf encoding of the event.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.wall_time != 0.0 {
            out.push(tag(1, WIRE_FIXED64));
            out.extend_from_slice(&self.wall_time.to_le_bytes());
        }
        if self.step != 0 {
            out.push(tag(2, WIRE_VARINT));
            varint(self.step, &mut out);
        }
        match &self.what {
            What::FileVersion(v) => bytes_field(3, v.as_bytes(), &mut out),
            What::Scalars(values) => {
                let mut summary = Vec::new();
                for (name, value) in values {
                    let mut v = Vec::new();
                    bytes_field(1, name.as_bytes(), &mut v);
                    v.push(tag(2, WIRE_FIXED32));
                    v.extend_from_slice(&value.to_le_bytes());
                    bytes_field(1, &v, &mut summary);
                }
                bytes_field(5, &summary, &mut out);
            }
            What::SessionStart => bytes_field(7, &[tag(1, WIRE_VARINT), 1], &mut out),
            What::Other => {}
        }
        out
    }

    /// Decodes an event (fields flan does not use are skipped).
    pub fn decode(data: &[u8]) -> std::result::Result<Event, String> {
        let mut event = Event {
            wall_time: 0.0,
            step: 0,
            what: What::Other,
        };
        let mut r = Reader { data, pos: 0 };
        while !r.done() {
            let (field, wire) = r.key()?;
            match (field, wire) {
                (1, WIRE_FIXED64) => event.wall_time = f64::from_le_bytes(r.fixed()?),
                (2, WIRE_VARINT) => event.step = r.varint()?,
                (3, WIRE_LEN) => {
                    let v = r.bytes()?;
                    event.what = What::FileVersion(
                        String::from_utf8(v.to_vec()).map_err(|e| e.to_string())?,
                    );
                }
                (5, WIRE_LEN) => event.what = What::Scalars(decode_summary(r.bytes()?)?),
                (7, WIRE_LEN) => {
                    let mut s = Reader {
                        data: r.bytes()?,
                        pos: 0,
                    };
                    while !s.done() {
                        match s.key()? {
                            (1, WIRE_VARINT) if s.varint()? == 1 => event.what = What::SessionStart,
                            (_, wire) => s.skip(wire)?,
                        }
                    }
                }
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(event)
    }
}

fn decode_summary(data: &[u8]) -> std::result::Result<Vec<(String, f32)>, String> {
    let mut values = Vec::new();
    let mut r = Reader { data, pos: 0 };
    while !r.done() {
        match r.key()? {
            (1, WIRE_LEN) => {
                let mut v = Reader {
                    data: r.bytes()?,
                    pos: 0,
                };
                let (mut name, mut value) = (String::new(), None);
                while !v.done() {
                    match v.key()? {
                        (1, WIRE_LEN) => {
                            name =
                                String::from_utf8(v.bytes()?.to_vec()).map_err(|e| e.to_string())?
                        }
                        (2, WIRE_FIXED32) => value = Some(f32::from_le_bytes(v.fixed()?)),
                        (_, wire) => v.skip(wire)?,
                    }
                }
                // Values of other kinds (images, histograms, tensors) are not scalars.
                if let Some(value) = value {
                    values.push((name, value));
                }
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(values)
}

/// Reads every event of an event file, checking both checksums of every record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |offset: usize, what: String| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("record at byte {offset}: {what}"),
            ),
        )
    };
    let mut events = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let header = data
            .get(pos..pos + 12)
            .ok_or_else(|| bad(pos, "truncated header".into()))?;
        let len_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != len_crc {
            return Err(bad(pos, "length checksum mismatch".into()));
        }
        let len = usize::try_from(u64::from_le_bytes(len_bytes))
            .map_err(|_| bad(pos, "length out of range".into()))?;
        let body = data
            .get(pos + 12..)
            .and_then(|rest| rest.get(..len.checked_add(4)?))
            .ok_or_else(|| bad(pos, format!("truncated record of {len} bytes")))?;
        let (payload, crc) = body.split_at(len);
        if masked_crc32c(payload) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(bad(pos, "data checksum mismatch".into()));
        }
        events.push(Event::decode(payload).map_err(|e| bad(pos, e))?);
        pos += 12 + len + 4;
    }
    Ok(events)
}

/// The event files of a directory, oldest first (by name: the creation time leads it).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
        })
        .collect();
    files.sort();
    Ok(files)
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn tag(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag(field, WIRE_LEN));
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> std::result::Result<u8, String> {
        let b = *self.data.get(self.pos).ok_or("truncated protobuf")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn key(&mut self) -> std::result::Result<(u64, u8), String> {
        let k = self.varint()?;
        Ok((k >> 3, (k & 7) as u8))
    }

    fn fixed<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        let end = self.pos.checked_add(N).ok_or("truncated protobuf")?;
        let b = self.data.get(self.pos..end).ok_or("truncated protobuf")?;
        self.pos = end;
        Ok(b.try_into().expect("N bytes"))
    }

    fn bytes(&mut self) -> std::result::Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
        let end = self.pos.checked_add(len).ok_or("truncated protobuf")?;
        let b = self.data.get(self.pos..end).ok_or("truncated protobuf")?;
        self.pos = end;
        Ok(b)
    }

    fn skip(&mut self, wire: u8) -> std::result::Result<(), String> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.fixed::<8>().map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_FIXED32 => self.fixed::<4>().map(drop),
            other => Err(format!("unsupported wire type {other}")),
        }
    }
}

/// TensorFlow's masked CRC32C: rotated and offset so that a CRC of data containing CRCs is
/// still well spread.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The host part of an event file's name (a host name with a `/` would make a path).
fn hostname() -> String {
    Some(crate::lock::host_name())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masked_crc32c_of_known_input() {
        // CRC32C("123456789") = 0xe3069283 (RFC 3720's check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc32c(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn a_written_file_reads_back_and_a_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), Some(7)).unwrap();
        w.scalars(
            7,
            &[
                ("train/loss".into(), 2.5),
                ("train/learning_rate".into(), 1e-3),
            ],
        )
        .unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let events = read_events(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].what, What::FileVersion(FILE_VERSION.into()));
        assert_eq!((events[1].step, &events[1].what), (7, &What::SessionStart));
        assert_eq!(
            events[2].what,
            What::Scalars(vec![
                ("train/loss".into(), 2.5),
                ("train/learning_rate".into(), 1e-3)
            ])
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_events(&path).unwrap_err();
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(
            cause
                .as_deref()
                .is_some_and(|c| c.contains("checksum mismatch")),
            "{err}: {cause:?}"
        );
    }

    proptest! {
        #[test]
        fn events_round_trip(
            wall_time in 0.0f64..4e9,
            step in 0u64..u64::MAX,
            values in proptest::collection::vec(("[a-z/_]{0,12}", any::<f32>()), 0..5),
        ) {
            let event = Event { wall_time, step, what: What::Scalars(values) };
            let back = Event::decode(&event.encode()).unwrap();
            // NaN != NaN: compare bits.
            let bits = |e: &Event| match &e.what {
                What::Scalars(v) => v.iter().map(|(t, x)| (t.clone(), x.to_bits())).collect::<Vec<_>>(),
                _ => Vec::new(),
            };
            prop_assert_eq!((back.wall_time.to_bits(), back.step), (event.wall_time.to_bits(), event.step));
            prop_assert_eq!(bits(&back), bits(&event));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Event::decode(&data);
        }
    }
}
