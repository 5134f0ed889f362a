//! TensorBoard event files: TFRecord framing around `Event` protobuf messages.
//!
//! A record is `length` (u64, little endian), the masked CRC-32C of those 8 bytes (u32 LE),
//! `length` bytes of data, and the masked CRC-32C of the data (u32 LE); the mask is
//! `((crc >> 15) | (crc << 17)) + 0xa282ead8`. The first event of a file carries
//! `file_version = "brain.Event:2"`; the others carry a `Summary` of scalar values
//! (`simple_value`). Each process writes a new file (`events.out.tfevents.<time>.<host>`), so a
//! resumed run adds a file and never rewrites one; steps are the run's global ones.

use crate::error::{ReportError, Result};
use prost::Message;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The `file_version` of the first event.
pub const FILE_VERSION: &str = "brain.Event:2";

/// `tensorflow.Event` (the fields wrnc writes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The step the values belong to.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// What the event carries.
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// The payload of an [`Event`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// The format version (first event of a file).
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Summary values.
    #[prost(message, tag = "5")]
    Summary(Summary),
    /// A session status (wrnc writes `START` when a process starts logging steps).
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorflow.SessionLog`: TensorBoard drops every value logged at a step at or after a
/// `START`'s step before it (a restarted run logs those steps again).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionLog {
    /// [`SessionLog::START`], ...
    #[prost(int32, tag = "1")]
    pub status: i32,
}

impl SessionLog {
    /// `SessionStatus.START`.
    pub const START: i32 = 1;
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a scalar.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The series name, e.g. `epoch/train_loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The scalar.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// The masked CRC-32C that TFRecord stores.
pub fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    // ((crc >> 15) | (crc << 17)) + 0xa282ead8, modulo 2^32.
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `data` framed as one TFRecord.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// This machine's name as a file-name part (`localhost` when unknown).
fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Appends scalar events to a new event file of one process.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// Creates `dir` and a new event file in it, named
    /// `events.out.tfevents.<unix seconds>.<host>` (with `.1`, `.2`, ... appended when that
    /// name exists), and writes the file-version event.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        let base = format!("events.out.tfevents.{}.{}", now() as u64, host());
        let mut n = 0usize;
        let (path, file) = loop {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let path = dir.join(name);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => break (path, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(ReportError::io(&path, e)),
            }
        };
        let mut w = EventWriter {
            path,
            file: std::io::BufWriter::new(file),
        };
        w.write_event(&Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion(FILE_VERSION.into())),
        })?;
        w.flush()?;
        Ok(w)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &Event) -> Result<()> {
        let record = frame(&event.encode_to_vec());
        self.file
            .write_all(&record)
            .map_err(|e| ReportError::io(&self.path, e))
    }

    /// Appends a `SessionLog` `START` at `step`: the values logged before at `step` or later
    /// are stale (a resumed run logs them again).
    pub fn session_start(&mut self, step: i64) -> Result<()> {
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::SessionLog(SessionLog {
                status: SessionLog::START,
            })),
        })
    }

    /// Appends one event holding the scalars `values` (tag, value) at `step`.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .map(|(tag, v)| SummaryValue {
                tag: (*tag).to_string(),
                simple_value: Some(*v as f32),
            })
            .collect();
        self.write_event(&Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Writes the buffered events to the file (TensorBoard reads what is flushed).
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| ReportError::io(&self.path, e))
    }
}

/// Reads every record of an event file, checking the framing and both CRCs of each record.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| ReportError::io(path, e))?;
    let bad = |at: usize, what: &str| ReportError::BadEventFile {
        path: path.to_path_buf(),
        message: format!("record at byte {at}: {what}"),
    };
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let head = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad(at, "truncated header"))?;
        if masked_crc(&head[..8]) != u32_at(head, 8) {
            return Err(bad(at, "length CRC mismatch"));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&head[..8]);
        let len = usize::try_from(u64::from_le_bytes(len8)).map_err(|_| bad(at, "too long"))?;
        let start = at + 12;
        let end = start
            .checked_add(len)
            .filter(|e| e + 4 <= bytes.len())
            .ok_or_else(|| bad(at, "truncated data"))?;
        let data = &bytes[start..end];
        if masked_crc(data) != u32_at(&bytes, end) {
            return Err(bad(at, "data CRC mismatch"));
        }
        events.push(Event::decode(data).map_err(|e| bad(at, &format!("not an Event: {e}")))?);
        at = end + 4;
    }
    Ok(events)
}

/// The scalar series of `events` (one or more files' events, in order) by tag: (step, value)
/// in order, where a `SessionLog` `START` at step `s` drops the values logged before it at
/// steps `>= s`, as TensorBoard does.
pub fn scalars(events: &[Event]) -> BTreeMap<String, Vec<(i64, f32)>> {
    let mut out: BTreeMap<String, Vec<(i64, f32)>> = BTreeMap::new();
    for e in events {
        match &e.what {
            Some(What::Summary(s)) => {
                for v in &s.value {
                    if let Some(x) = v.simple_value {
                        out.entry(v.tag.clone()).or_default().push((e.step, x));
                    }
                }
            }
            Some(What::SessionLog(l)) if l.status == SessionLog::START => {
                for series in out.values_mut() {
                    series.retain(|(step, _)| *step < e.step);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's published check value ("123456789" -> 0xE3069283) and the mask on it.
    #[test]
    fn crc32c_check_value_and_mask() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xa282ead8 mod 2^32, worked by hand.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    /// The field numbers of TensorFlow's `event.proto` / `summary.proto`: a wrong number is
    /// skipped silently by TensorBoard, so the keys on the wire are checked here.
    #[test]
    fn wire_keys_follow_tensorflows_event_proto() {
        let key = |field: u8, wire: u8| (field << 3) | wire;
        let version = Event {
            wall_time: 1.0,
            step: 2,
            what: Some(What::FileVersion(FILE_VERSION.into())),
        }
        .encode_to_vec();
        assert_eq!(version[0], key(1, 1), "wall_time: field 1, 64-bit");
        assert_eq!(version[9], key(2, 0), "step: field 2, varint");
        assert_eq!(version[11], key(3, 2), "file_version: field 3");
        let start = Event {
            wall_time: 0.0,
            step: 0,
            what: Some(What::SessionLog(SessionLog {
                status: SessionLog::START,
            })),
        }
        .encode_to_vec();
        assert_eq!(
            start,
            vec![key(7, 2), 2, key(1, 0), 1],
            "session_log: field 7"
        );
        let summary = Event {
            wall_time: 0.0,
            step: 0,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: "a".into(),
                    simple_value: Some(1.0),
                }],
            })),
        }
        .encode_to_vec();
        assert_eq!(
            summary,
            vec![
                key(5, 2),
                10,
                key(1, 2),
                8,
                key(1, 2),
                1,
                b'a',
                key(2, 5),
                0,
                0,
                0x80,
                0x3f
            ],
            "summary: field 5; value: field 1; tag: 1; simple_value: 2 (float)"
        );
    }

    #[test]
    fn written_events_read_back_with_framing_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        w.scalars(3, &[("a", 0.5), ("b", 2.0)]).unwrap();
        w.scalars(4, &[("a", 0.25)]).unwrap();
        w.scalars(5, &[("a", 9.0)]).unwrap();
        // A restart at step 5: the value logged at 5 is stale and logged again.
        w.session_start(5).unwrap();
        w.scalars(5, &[("a", 0.125)]).unwrap();
        w.flush().unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        let events = read_events(&path).unwrap();
        assert_eq!(events[0].what, Some(What::FileVersion(FILE_VERSION.into())));
        let s = scalars(&events);
        assert_eq!(s["a"], vec![(3, 0.5), (4, 0.25), (5, 0.125)]);
        assert_eq!(s["b"], vec![(3, 2.0)]);
        // A second writer in the same second gets its own file.
        let w2 = EventWriter::create(dir.path()).unwrap();
        assert_ne!(w2.path(), path);
        // A flipped data byte is caught by the data CRC.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = read_events(&path).unwrap_err().to_string();
        assert!(e.contains("CRC"), "{e}");
    }
}
