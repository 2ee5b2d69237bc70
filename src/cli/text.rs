//! Text made safe and short for a terminal: escaping of names and
//! messages, short ids, local times.

/// Text safe to print on a terminal: control characters (newline, escape,
/// C1 ...) as `\n`, `\t`, `\r` or `\xNN`, bytes that are not UTF-8 as
/// `\xNN`, and a backslash as `\\`, so that no name can move the cursor,
/// recolour the screen, or pass for two lines or for another name.
pub(crate) fn escape_bytes(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() && (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// An error line safe for a terminal: control characters escaped as by
/// [`escape_bytes`] (a name in a message cannot move the cursor or fake a
/// second line); backslashes are left alone, so paths in messages read as
/// usual.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&escape_bytes(c.to_string().as_bytes()));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`escape_bytes`] for text that is already a string.
pub(super) fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(|c| c.is_control() || c == '\\') {
        std::borrow::Cow::Owned(escape_bytes(s.as_bytes()))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The first eight characters of an id, as people type them.
pub(super) fn short(hex: &str) -> &str {
    &hex[..8.min(hex.len())]
}

/// A time in the local zone, to the second.
pub(super) fn local_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}
