//! Text the agent writes about errors: an error with its causes, and a
//! message cut to a size Vane takes.

/// An error with its causes ("connection refused" lives in the source of
/// reqwest's "error sending request").
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn truncate_at_char(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// This machine's name, for default ids.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_named_once_and_cuts_keep_characters_whole() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let outer = std::io::Error::other(refused);
        assert_eq!(chain(&outer), "Connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Sending(#[source] std::io::Error);
        let sending = Sending(std::io::Error::other("Connection refused"));
        assert_eq!(chain(&sending), "error sending request: Connection refused");
        let mut text = "ééé".to_owned();
        truncate_at_char(&mut text, 3);
        assert_eq!(text, "é");
    }
}
