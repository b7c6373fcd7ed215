//! The `vane worker` process: reads request frames on stdin, runs them in
//! order, writes response frames on stdout (those of a batch of requests
//! already waiting leave together). Its parent set its memory cap
//! before exec; if an interpreter aborts, only this process dies.
//! `handle_frame` is also what an in-process worker thread runs.

use std::any::Any;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::protocol::{Frame, Request, Response, frame_buffered, read_frame, whole_frame, write_frame};
use super::{EngineError, Engines};
use crate::domain::Lang;

/// Longest a reply waits in the output buffer behind later requests.
const FLUSH_EVERY: Duration = Duration::from_millis(1);
/// The request pipe's read buffer.
const INPUT_BYTES: usize = 256 << 10;

/// Serves until stdin closes. `confine` runs once the engines are built and
/// before the ready frame: from then on the process may lose its rights.
/// Returns an error only for a broken pipe, a malformed frame or a failed
/// confinement, which mean the parent is gone or the worker is unsafe.
pub fn serve(code_cache_entries: usize, confine: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    // Panics are reported in the reply; the default hook would only add noise.
    std::panic::set_hook(Box::new(|_| {}));
    let mut engines = Engines::new(code_cache_entries);
    confine()?;
    serve_on(&mut engines, std::io::stdin().lock(), std::io::stdout().lock())
}

/// The serving loop, over any pipes (tests use memory).
fn serve_on(engines: &mut Engines, input: impl Read, output: impl Write) -> std::io::Result<()> {
    // Room for many frames: a frame wholly in the buffer is read in place.
    let mut input = BufReader::with_capacity(INPUT_BYTES, input);
    let mut output = BufWriter::new(output);
    // An empty frame says "ready", so start-up time is not charged to the
    // first request's deadline.
    write_frame(&mut output, b"")?;
    let mut flushed = Instant::now();
    loop {
        // Requests queued behind this one are answered together in one
        // write, but never held past FLUSH_EVERY: the parent times each run
        // from the reply before it.
        if !frame_buffered(input.buffer()) || flushed.elapsed() >= FLUSH_EVERY {
            output.flush()?;
            flushed = Instant::now();
        }
        if input.buffer().is_empty() && input.fill_buf()?.is_empty() {
            return Ok(());
        }
        let (reply, poisoned) = match whole_frame(input.buffer()) {
            Some(len) => {
                let frame = &input.buffer()[4..4 + len];
                if Frame::alone(frame) {
                    output.flush()?;
                }
                let reply = handle_frame(engines, frame);
                input.consume(4 + len);
                reply
            }
            None => match read_frame(&mut input) {
                Ok(frame) => {
                    if Frame::alone(&frame) {
                        output.flush()?;
                    }
                    handle_frame(engines, &frame)
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            },
        };
        write_frame(&mut output, &reply)?;
        if poisoned {
            // An interpreter panicked midway; its state cannot be trusted.
            output.flush()?;
            return Ok(());
        }
        engines.prepare();
    }
}

/// Answers one request frame with one response frame. Shared by the worker
/// process and by in-process worker threads. `true` means an interpreter
/// panicked (starlark's arena panics when it cannot grow) and the caller
/// must stop serving after sending the reply.
pub fn handle_frame(engines: &mut Engines, frame: &[u8]) -> (Vec<u8>, bool) {
    let mut poisoned = false;
    let decoded = Frame::read(frame).and_then(|frame| {
        let (json, after) = match frame {
            Frame::Json(json) => (json, None),
            Frame::Split { json, params } => (json, Some(params)),
        };
        let request = serde_json::from_slice::<Request>(json).map_err(|e| e.to_string())?;
        Ok((request, after))
    });
    let response = match decoded {
        Ok((request, after)) => match std::panic::catch_unwind(AssertUnwindSafe(|| handle(engines, request, after))) {
            Ok(Reply::Json(text)) => {
                // `{"ok":<text>}`, as `Response::Ok` writes it, without
                // reading the text again to prove it JSON.
                let mut reply = Vec::with_capacity(text.len() + 7);
                reply.extend_from_slice(br#"{"ok":"#);
                reply.extend_from_slice(text.as_bytes());
                reply.push(b'}');
                return (reply, false);
            }
            Ok(Reply::Response(response)) => response,
            Err(panic) => {
                poisoned = true;
                Response::Poisoned(panic_error(panic.as_ref()))
            }
        },
        Err(e) => Response::Err(EngineError::Runtime {
            message: format!("bad request frame: {e}"),
        }),
    };
    // A response always serializes; the fallback keeps the frame well-formed anyway.
    let reply = serde_json::to_vec(&response)
        .unwrap_or_else(|_| br#"{"err":{"kind":"runtime","message":"unencodable response"}}"#.to_vec());
    (reply, poisoned)
}

fn panic_error(panic: &(dyn Any + Send)) -> EngineError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    // starlark refuses single values over 4 GiB with an `AlignedSize` panic.
    if ["out of memory", "capacity overflow", "allocation", "AlignedSize"]
        .iter()
        .any(|m| message.contains(m))
    {
        EngineError::Memory {
            message: format!("the interpreter could not allocate ({message})"),
        }
    } else {
        EngineError::Runtime {
            message: format!("the interpreter failed: {message}"),
        }
    }
}

/// What `handle` answers: a Starlark result, which serde_json wrote and so
/// is JSON, or a response to encode.
enum Reply {
    Json(String),
    Response(Response),
}

/// Answers `request`; `after`: the params that followed its JSON, if they
/// did.
fn handle(engines: &mut Engines, request: Request, after: Option<&[u8]>) -> Reply {
    let result = match request {
        Request::Run {
            code_id,
            recompile,
            lang,
            source,
            params,
            limits,
        } => {
            let engine = engines.get(lang);
            if recompile {
                engine.forget(&code_id);
            }
            let text;
            let params = match (after, params.text()) {
                (Some(after), _) => match std::str::from_utf8(after) {
                    Ok(after) => after,
                    Err(e) => return Reply::Response(Response::Err(super::unreadable_params(e))),
                },
                (None, Ok(inline)) => {
                    text = inline;
                    text.get()
                }
                (None, Err(e)) => return Reply::Response(Response::Err(super::unreadable_params(e))),
            };
            let result = match source {
                Some(source) => engine.run_text(&code_id, &source, params, &limits),
                None if engine.has(&code_id) => engine.run_text(&code_id, "", params, &limits),
                None => return Reply::Response(Response::NeedSource),
            };
            match result {
                Ok(text) if lang == Lang::Starlark => return Reply::Json(text),
                other => other,
            }
        }
        Request::Check { lang, source } => engines.get(lang).check(&source).map(|()| "null".to_owned()),
        #[cfg(debug_assertions)]
        Request::Probe(probe) => probe_result(probe),
    };
    Reply::Response(
        match result.and_then(|text| {
            RawValue::from_string(text).map_err(|e| EngineError::Runtime {
                message: format!("result is not JSON: {e}"),
            })
        }) {
            Ok(raw) => Response::Ok(raw),
            Err(e) => Response::Err(e),
        },
    )
}

/// What a probe got; a confined worker gets a refusal or is killed first.
#[cfg(debug_assertions)]
fn probe_result(probe: super::protocol::Probe) -> Result<String, EngineError> {
    use super::protocol::Probe;
    let refused = |e: std::io::Error| EngineError::Runtime {
        message: format!("{probe:?} refused: {e}"),
    };
    match probe {
        Probe::Open => std::fs::File::open("/etc/hostname").map_err(refused)?,
        Probe::Socket => {
            std::net::TcpStream::connect("127.0.0.1:9").map_err(refused)?;
            return Ok("\"connected\"".into());
        }
        Probe::Exec => {
            std::process::Command::new("/bin/true").status().map_err(refused)?;
            return Ok("\"ran\"".into());
        }
    };
    Ok("\"opened\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Lang;
    use crate::engine::Limits;
    use crate::engine::protocol::Params;
    use std::borrow::Cow;

    fn run(engines: &mut Engines, source: Option<&str>) -> Response {
        run_as(engines, source, false)
    }

    fn run_as(engines: &mut Engines, source: Option<&str>, recompile: bool) -> Response {
        let request = Request::Run {
            code_id: "c1".into(),
            recompile,
            lang: Lang::Starlark,
            source: source.map(Cow::Borrowed),
            params: Params::Value(Cow::Owned(serde_json::json!({"n": 2}))),
            limits: Limits::roomy(),
        };
        let (frame, poisoned) = handle_frame(engines, &serde_json::to_vec(&request).unwrap());
        assert!(!poisoned);
        serde_json::from_slice(&frame).unwrap()
    }

    #[test]
    fn the_source_is_asked_for_only_when_the_code_is_not_held() {
        let mut engines = Engines::new(4);
        assert!(matches!(run(&mut engines, None), Response::NeedSource));
        assert!(matches!(run(&mut engines, Some("return p['n'] * 3")), Response::Ok(v) if v.get() == "6"));
        assert!(matches!(run(&mut engines, None), Response::Ok(v) if v.get() == "6"));
    }

    #[test]
    fn recompile_replaces_the_code_held_under_the_id() {
        let mut engines = Engines::new(4);
        let answers = |r: Response, want: &str| matches!(r, Response::Ok(v) if v.get() == want);
        assert!(answers(run(&mut engines, Some("return p['n'] * 3")), "6"));
        // The id is held: its source is not compiled again unless asked.
        assert!(answers(run(&mut engines, Some("return p['n'] * 5")), "6"));
        assert!(answers(run_as(&mut engines, Some("return p['n'] * 5"), true), "10"));
        // A frame from a server that still calls the flag `fresh`.
        let old = br#"{"run":{"code_id":"c1","fresh":true,"lang":"starlark","source":"return p['n'] * 7",
            "params":{"n":2},"limits":{"deadline_ms":10000,"heap_bytes":268435456,"max_callstack":50,
            "max_output_bytes":1048576,"max_output_depth":64}}}"#;
        let (frame, _) = handle_frame(&mut engines, old);
        assert!(answers(serde_json::from_slice(&frame).unwrap(), "14"));
    }

    #[test]
    fn a_run_reads_params_that_follow_its_json() {
        let mut engines = Engines::new(4);
        let request = Request::Run {
            code_id: "c1".into(),
            recompile: false,
            lang: Lang::Starlark,
            source: Some("return p['n'] * 3".into()),
            params: Params::Follow,
            limits: Limits::roomy(),
        };
        let text = |t: &str| Params::Value(Cow::Owned(serde_json::from_str(t).unwrap()));
        let frame = Frame::write_split(&request, &text(r#"{"n": 4}"#), false).unwrap();
        let (reply, _) = handle_frame(&mut engines, &frame[4..]);
        assert_eq!(reply, br#"{"ok":12}"#);
        // Params that are not JSON, or not UTF-8, are the run's error.
        let mut frame = Frame::write_split(&request, &text("{}"), true).unwrap();
        frame.truncate(frame.len() - 1);
        frame.extend_from_slice(b"\xff");
        let (reply, poisoned) = handle_frame(&mut engines, &frame[4..]);
        let reply = String::from_utf8(reply).unwrap();
        assert!(!poisoned && reply.contains("params could not be read"), "{reply}");
        let (reply, _) = handle_frame(&mut engines, &[1, 0, 0, 0, 99, b'{']);
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.contains("bad request frame"), "{reply}");
    }

    /// A pipe that keeps each write apart, so a test sees what left
    /// together.
    #[derive(Default)]
    struct Writes(std::rc::Rc<std::cell::RefCell<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_run_that_goes_alone_follows_the_replies_held_before_it() {
        let mut engines = Engines::new(4);
        let request = |source: Option<&'static str>| Request::Run {
            code_id: "quick".into(),
            recompile: false,
            lang: Lang::Starlark,
            source: source.map(Cow::Borrowed),
            params: Params::Follow,
            limits: Limits::roomy(),
        };
        let params = Params::Value(Cow::Owned(serde_json::json!({"n": 1})));
        // Compiled before, so the runs below are quick: a reply is held
        // for later requests only up to FLUSH_EVERY.
        let first = Frame::write_split(&request(Some("return p['n']")), &params, false).unwrap();
        assert_eq!(handle_frame(&mut engines, &first[4..]).0, br#"{"ok":1}"#);
        let mut input = Vec::new();
        for alone in [false, true] {
            let mut frame = Frame::write_split(&request(None), &params, alone).unwrap();
            let len = (frame.len() - 4) as u32;
            frame[..4].copy_from_slice(&len.to_be_bytes());
            input.extend_from_slice(&frame);
        }
        let writes = Writes::default();
        let seen = writes.0.clone();
        serve_on(&mut engines, &input[..], writes).unwrap();
        let reply = |body: &[u8]| [&(body.len() as u32).to_be_bytes()[..], body].concat();
        // The ready frame, the first run's reply alone (sent before the
        // run that goes alone started), then the second's.
        let expected = [reply(b""), reply(br#"{"ok":1}"#), reply(br#"{"ok":1}"#)];
        let seen = seen.borrow();
        assert_eq!(seen.concat(), expected.concat());
        assert!(seen.len() >= 3 && seen[seen.len() - 2] == expected[1], "{seen:?}");
    }

    #[test]
    fn a_check_that_goes_alone_is_answered_as_a_check() {
        let mut engines = Engines::new(4);
        let check = |source: &str| Request::Check {
            lang: Lang::Starlark,
            source: source.to_owned().into(),
        };
        let frame = Frame::write_split(&check("return 1"), &Params::Follow, true).unwrap();
        assert!(Frame::alone(&frame[4..]));
        let (reply, _) = handle_frame(&mut engines, &frame[4..]);
        assert!(reply.starts_with(br#"{"ok""#), "{}", String::from_utf8_lossy(&reply));
        let frame = Frame::write_split(&check("return ("), &Params::Follow, true).unwrap();
        let (reply, _) = handle_frame(&mut engines, &frame[4..]);
        assert!(reply.starts_with(br#"{"err""#), "{}", String::from_utf8_lossy(&reply));
    }
}
