//! A WebSocket client written by hand from RFC 6455, so the push routes are
//! tried by something that shares no code with the server's library: it
//! answers each ping with a pong carrying the same payload, as the RFC asks,
//! and nothing else.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A frame the raw client saw.
#[derive(Debug)]
pub enum Seen {
    /// A text frame's payload.
    Text(String),
    /// A close frame's status code.
    Closed(Option<u16>),
}

pub struct RawSocket {
    stream: BufReader<TcpStream>,
    /// Pings answered so far.
    pub pings: usize,
}

impl RawSocket {
    /// Opens `path` on `addr` with the given extra headers; `Err` carries the
    /// refusal's status line and body.
    pub async fn open(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Self, String> {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut stream = BufReader::new(stream);
        let head = read_head(&mut stream).await?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(head);
        }
        // The RFC's example key has this accept value (section 1.3).
        if !head
            .to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=")
        {
            return Err(format!("wrong accept header: {head}"));
        }
        Ok(Self { stream, pings: 0 })
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.write(TEXT, text.as_bytes()).await;
    }

    /// The next text or close frame within `wait`, answering pings on the
    /// way; `None` when nothing came.
    pub async fn next(&mut self, wait: Duration) -> Option<Seen> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let (opcode, payload) = match tokio::time::timeout_at(until, self.read_frame()).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(_)) => return Some(Seen::Closed(None)),
                Err(_) => return None,
            };
            match opcode {
                TEXT => return Some(Seen::Text(String::from_utf8(payload).unwrap())),
                PING => {
                    self.pings += 1;
                    self.write(PONG, &payload).await;
                }
                CLOSE => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Some(Seen::Closed(code));
                }
                _ => {}
            }
        }
    }

    async fn read_frame(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await?;
        let opcode = head[0] & 0x0F;
        let len = match head[1] & 0x7F {
            126 => self.stream.read_u16().await? as usize,
            127 => self.stream.read_u64().await? as usize,
            n => n as usize,
        };
        // Server frames are never masked (RFC 6455, 5.1).
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await?;
        Ok((opcode, payload))
    }

    /// Client frames are masked (RFC 6455, 5.3); one fixed key is enough here.
    async fn write(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.stream.get_mut().write_all(&frame).await;
    }
}

async fn read_head(stream: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.map_err(|e| e.to_string())?;
        head.push(byte);
        if head.len() > 16 << 10 {
            return Err("response head too long".into());
        }
    }
    let mut text = String::from_utf8_lossy(&head).into_owned();
    if !text.starts_with("HTTP/1.1 101") {
        // Read the refusal's body too, so the error names it.
        let mut body = vec![0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut body)).await {
            text.push_str(&String::from_utf8_lossy(&body[..n]));
        }
    }
    Ok(text)
}
