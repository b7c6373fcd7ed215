//! The `vane worker` process: reads request frames on stdin, runs them, writes
//! response frames on stdout, one at a time. Its parent set its memory cap
//! before exec; if an interpreter aborts, only this process dies.

use std::io::{BufReader, BufWriter};

use serde_json::value::RawValue;

use super::protocol::{Request, Response, read_frame, write_frame};
use super::{EngineError, Engines};

/// Serves until stdin closes. Returns an error only for a broken pipe or a
/// malformed frame, which means the parent is gone or confused.
pub fn serve(code_cache_entries: usize) -> std::io::Result<()> {
    let mut engines = Engines::new(code_cache_entries);
    let mut input = BufReader::new(std::io::stdin().lock());
    let mut output = BufWriter::new(std::io::stdout().lock());
    // An empty frame says "ready", so start-up time is not charged to the
    // first request's deadline.
    write_frame(&mut output, b"")?;
    loop {
        let frame = match read_frame(&mut input) {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let response = match serde_json::from_slice::<Request>(&frame) {
            Ok(request) => handle(&mut engines, request),
            Err(e) => Response::Err(EngineError::Runtime {
                message: format!("bad request frame: {e}"),
            }),
        };
        let body = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
        write_frame(&mut output, &body)?;
    }
}

fn handle(engines: &mut Engines, request: Request) -> Response {
    let result = match request {
        Request::Run {
            code_id,
            fresh,
            lang,
            source,
            params,
            limits,
        } => {
            let engine = engines.get(lang);
            if fresh {
                engine.forget(&code_id);
            }
            engine.run(&code_id, &source, &params, &limits)
        }
        Request::Check { lang, source } => engines.get(lang).check(&source).map(|()| "null".to_owned()),
    };
    match result.and_then(|text| {
        RawValue::from_string(text).map_err(|e| EngineError::Runtime {
            message: format!("result is not JSON: {e}"),
        })
    }) {
        Ok(raw) => Response::Ok(raw),
        Err(e) => Response::Err(e),
    }
}
