//! Random secrets, constant-time comparison, and redaction of credentials
//! in URLs.

use subtle::ConstantTimeEq;

/// 32 random bytes as 64 hex characters.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex(&bytes)
}

/// SHA-256 of a random credential (a token, a session id), hex: what the
/// store keeps. The value is 256 random bits, so a plain hash is enough.
pub fn sha256_hex(value: &str) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(value.as_bytes()))
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

/// Query keys whose value is a credential, compared without case.
const CREDENTIAL_KEYS: &[&str] = &["password", "pass", "pwd", "sslpassword"];

/// A store or Redis URL fit for logs and answers: the password of its user
/// part (`u:***@`) and the value of every credential query key
/// (`password=`, `pass=`, `pwd=`, `sslpassword=`, in any case) replaced.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &head[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &head[..scheme + 3], &head[at..]),
                None => head.to_owned(),
            }
        }
        _ => head.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if CREDENTIAL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn every_credential_form_is_redacted() {
        for (url, shown) in [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
            ("sqlite://vane.db", "sqlite://vane.db"),
            ("mysql://u@h/db?password=secret", "mysql://u@h/db?password=***"),
            (
                "postgres://h/db?user=u&PassWord=s1&sslmode=require&sslpassword=s2",
                "postgres://h/db?user=u&PassWord=***&sslmode=require&sslpassword=***",
            ),
            ("postgres://h/db?pwd=s1&PASS=s2", "postgres://h/db?pwd=***&PASS=***"),
            ("mysql://u:p%40ss@h/db?Pwd=x", "mysql://u:***@h/db?Pwd=***"),
            ("postgres://h/db?passport=kept", "postgres://h/db?passport=kept"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
