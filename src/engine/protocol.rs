//! What an Evaluator and its worker (a process, or a thread) say to each
//! other: frames of a 4-byte big-endian length followed by that many bytes
//! of JSON. A run's frame may instead carry its params after the JSON
//! (`Frame`), so the worker reads them once, as its engine parses them,
//! rather than once more to find where they end.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::codec::LengthDelimitedCodec;

use super::{EngineError, Limits};
use crate::domain::Lang;

/// Frames larger than this are refused rather than allocated.
pub const MAX_FRAME: usize = 64 << 20;

/// Borrowed when the server encodes it, owned when the worker decodes it,
/// so sending a request never copies the source or the params.
#[derive(Debug, Serialize, Deserialize)]
// Externally tagged: an internal tag makes serde buffer the whole request
// before decoding it (12% of a worker's time under load).
#[serde(rename_all = "snake_case")]
pub enum Request<'a> {
    /// Runs a version's code, or a playground's source. The source is left
    /// out once the worker has the code; it answers `NeedSource` if it has
    /// not (after an eviction, or a parent that guessed wrong).
    Run {
        /// The version's code id, the key of the compiled-code cache.
        code_id: Cow<'a, str>,
        /// Compile `source` even if code is cached under `code_id`, replacing
        /// it: every playground run shares one id and brings its own source.
        /// A version's code id always names the same source, so never for
        /// one. (Named `fresh` before; a server of that release may start
        /// this binary as its worker.)
        #[serde(alias = "fresh")]
        recompile: bool,
        /// The version's language.
        lang: Lang,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        /// The source, when the worker may not hold the code.
        source: Option<Cow<'a, str>>,
        /// The request's params, unless they follow the JSON (`Frame`).
        #[serde(borrow, default, skip_serializing_if = "Params::follow")]
        params: Params<'a>,
        /// The run's limits.
        limits: Limits,
    },
    /// Compiles without caching, to check an upload.
    Check {
        /// The source's language.
        lang: Lang,
        /// The source to compile.
        source: Cow<'a, str>,
    },
    /// Debug builds only (those `cargo test` runs): tries what a confined
    /// worker must not do, so tests can see it refused.
    #[cfg(debug_assertions)]
    Probe(Probe),
}

/// A run's params: the server sends the JSON text it already holds (its
/// memo key) or a value; the worker always reads the text.
#[derive(Debug, Default)]
pub enum Params<'a> {
    /// JSON text, written into the frame as it is.
    Text(&'a RawValue),
    /// A value, written out when the frame is.
    Value(Cow<'a, serde_json::Value>),
    /// After the request's JSON, in the frame (`Frame::Split`).
    #[default]
    Follow,
}

impl Params<'_> {
    /// Whether they follow the request's JSON rather than sit in it.
    pub fn follow(&self) -> bool {
        matches!(self, Self::Follow)
    }

    /// The params as JSON text. What a worker decodes is always text; a
    /// value is written out here only for a request built in the same
    /// process.
    pub fn text(&self) -> serde_json::Result<Cow<'_, RawValue>> {
        match self {
            Self::Text(t) => Ok(Cow::Borrowed(t)),
            Self::Value(v) => serde_json::value::to_raw_value(v.as_ref()).map(Cow::Owned),
            Self::Follow => serde_json::value::to_raw_value(&serde_json::Value::Null).map(Cow::Owned),
        }
    }

    /// Writes them as JSON text.
    pub fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Self::Text(t) => out.extend_from_slice(t.get().as_bytes()),
            Self::Value(v) => serde_json::to_writer(out, v.as_ref())?,
            Self::Follow => out.extend_from_slice(b"null"),
        }
        Ok(())
    }
}

/// The first byte of a frame whose run's params follow its JSON: never
/// the first byte of JSON text.
const SPLIT: u8 = 1;
/// The same, for a job that goes alone (a suspect's run, or any job whose
/// worker died under it, a check too, its params then `null`): the worker
/// sends the replies it holds before it starts it. Replies are written in
/// batches, so a job that hangs would otherwise hold back answers to runs
/// before it, and the kill would be charged to the first of those.
const ALONE: u8 = 2;

/// A request frame's body, as the worker reads it.
pub enum Frame<'a> {
    /// All JSON (checks and probes that do not go alone, and runs from a
    /// server of an earlier release).
    Json(&'a [u8]),
    /// `SPLIT`, the JSON's length (4 bytes, big-endian), the JSON, then the
    /// run's params as JSON text.
    Split {
        /// The request, its params left out.
        json: &'a [u8],
        /// The run's params, JSON text.
        params: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// Reads a frame's body; errs if it says it is split and is too short.
    pub fn read(body: &'a [u8]) -> Result<Self, String> {
        let rest = match body.split_first() {
            Some((&(SPLIT | ALONE), rest)) => rest,
            _ => return Ok(Self::Json(body)),
        };
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or("a split frame without its length")?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > rest.len() {
            return Err(format!("a split frame's JSON of {len} bytes in {} bytes", rest.len()));
        }
        let (json, params) = rest.split_at(len);
        Ok(Self::Split { json, params })
    }

    /// Whether a frame's body is a job that goes alone (`ALONE`).
    pub fn alone(body: &[u8]) -> bool {
        body.first() == Some(&ALONE)
    }

    /// `request` with its params after it, as a frame's body (after the
    /// 4 bytes of its length, which are left zero for the caller); `alone`
    /// marks a run that goes alone.
    pub fn write_split(request: &Request<'_>, params: &Params<'_>, alone: bool) -> serde_json::Result<Vec<u8>> {
        let mut frame = vec![0; 4];
        frame.push(if alone { ALONE } else { SPLIT });
        frame.extend_from_slice(&[0; 4]);
        serde_json::to_writer(&mut frame, request)?;
        let len = (frame.len() - 9) as u32;
        frame[5..9].copy_from_slice(&len.to_be_bytes());
        params.write(&mut frame)?;
        Ok(frame)
    }
}

impl Serialize for Params<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(text) => text.serialize(serializer),
            Self::Value(value) => value.serialize(serializer),
            // Left out of the JSON by `skip_serializing_if`.
            Self::Follow => serializer.serialize_unit(),
        }
    }
}

/// Read as the text it is in the frame, borrowed: the worker's engine reads
/// the text itself (Starlark straight onto its heap).
impl<'de: 'a, 'a> Deserialize<'de> for Params<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(Self::Text)
    }
}

/// What a probe tries from inside a worker.
#[cfg(debug_assertions)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Open a file for reading.
    Open,
    /// Open a TCP socket.
    Socket,
    /// Start a program.
    Exec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
/// A worker's answer to a request.
pub enum Response {
    /// The JSON text of the result (`null` for a check).
    Ok(Box<RawValue>),
    /// The run or compile failed.
    Err(EngineError),
    /// An error after which the worker stops serving: its interpreter
    /// panicked and may be left in a torn state.
    Poisoned(EngineError),
    /// A run without its source for code the worker does not hold.
    NeedSource,
}

fn too_large(len: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("frame of {len} bytes is over {MAX_FRAME}"),
    )
}

/// Reads one length-prefixed frame, refusing one over the frame limit.
pub fn read_frame(r: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(too_large(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Writes a frame without flushing, so replies to a batch of requests can
/// leave in one write.
pub fn write_frame(w: &mut impl std::io::Write, body: &[u8]) -> std::io::Result<()> {
    if body.len() > MAX_FRAME {
        return Err(too_large(body.len()));
    }
    w.write_all(&(body.len() as u32).to_be_bytes())?;
    w.write_all(body)
}

/// The same framing for the async side of the pipe.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .big_endian()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Whether `buffer` starts with a whole frame, so reading it cannot block.
pub fn frame_buffered(buffer: &[u8]) -> bool {
    whole_frame(buffer).is_some()
}

/// The length of the frame `buffer` starts with, if it holds all of it
/// (and it is within the frame limit).
pub fn whole_frame(buffer: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(*buffer.first_chunk::<4>()?) as usize;
    (len <= MAX_FRAME && buffer.len() - 4 >= len).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_frame_carries_its_params_after_its_json() {
        let request = Request::Check {
            lang: Lang::Starlark,
            source: "x".into(),
        };
        let params: &RawValue = serde_json::from_str(r#"{"a": [1, "}"]}"#).unwrap();
        let frame = Frame::write_split(&request, &Params::Text(params), false).unwrap();
        match Frame::read(&frame[4..]).unwrap() {
            Frame::Split { json, params } => {
                assert_eq!(json, br#"{"check":{"lang":"starlark","source":"x"}}"#);
                assert_eq!(params, br#"{"a": [1, "}"]}"#);
            }
            Frame::Json(_) => panic!("read as all JSON"),
        }
        assert!(matches!(Frame::read(b"{}").unwrap(), Frame::Json(b"{}")));
        for short in [&[SPLIT][..], &[SPLIT, 0, 0], &[SPLIT, 0, 0, 0, 9, b'{']] {
            assert!(Frame::read(short).is_err(), "{short:?}");
        }
    }

    #[test]
    fn frames_round_trip_and_refuse_oversize() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"{\"a\":1}").unwrap();
        assert_eq!(&buf[..4], &[0, 0, 0, 7]);
        assert_eq!(read_frame(&mut buf.as_slice()).unwrap(), b"{\"a\":1}");
        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(read_frame(&mut huge.as_slice()).is_err());
        assert!(frame_buffered(&buf));
        assert!(!frame_buffered(&buf[..buf.len() - 1]));
        assert!(!frame_buffered(&buf[..3]));
    }
}
