//! Random secrets and constant-time comparison.

use subtle::ConstantTimeEq;

/// 32 random bytes as 64 hex characters.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

/// Bytes as lower-case hex, two characters each.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Compares secrets without leaking, through timing, how much of a guess was right.
pub fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
