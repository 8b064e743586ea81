//! Text from the network (a server's error message or close reason, names, user ids,
//! talk text) made fit for a log line or a terminal, so that it can neither forge a log
//! line nor send escape sequences (OSC, CSI, BEL...) to whoever reads it.
//!
//! One mapping, [`escape_char`], used two ways:
//! - [`untrusted`] for logs: a `Display` wrapper that also cuts at [`MAX_LOGGED_CHARS`]
//!   characters with `…` (a server's message can be 64 KiB);
//! - [`escaped`] for a terminal (`talkbell history`, `talkbell status`): the whole text.
//!
//! Escaped are the control characters (C0 with `\n`, `\r` and `\t`, DEL, C1), the
//! invisible characters that reorder or hide text (U+061C, U+200B..U+200F, U+2028..U+202E,
//! U+2066..U+2069, U+FEFF), and the backslash itself, so that an escape in the output
//! always means one in the input. Written `\n`, `\r`, `\t`, `\\` and `\u{1b}`, as the relay
//! writes them.

use std::fmt::{self, Display, Write};

/// The most characters of untrusted text a log line carries.
pub const MAX_LOGGED_CHARS: usize = 200;

/// `text` for a log line: escaped, and cut at [`MAX_LOGGED_CHARS`] with `…`.
pub fn untrusted(text: &str) -> Untrusted<'_> {
    Untrusted(text)
}

/// `text` for a terminal: escaped, whole.
pub fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // Writing to a String cannot fail.
        let _ = escape_char(&mut out, c);
    }
    out
}

/// See [`untrusted`].
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(&'a str);

impl Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_LOGGED_CHARS) {
            escape_char(f, c)?;
        }
        if chars.next().is_some() {
            f.write_char('…')?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Whether `c` reorders or hides text without being a control character.
fn is_invisible_format(c: char) -> bool {
    // U+061C (ARABIC LETTER MARK) is the third of Unicode's bidi marks, beside U+200E/U+200F.
    matches!(c, '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Whether [`escaped`] leaves `c` as it is.
pub fn is_kept(c: char) -> bool {
    !(c.is_control() || is_invisible_format(c) || c == '\\')
}

fn escape_char(out: &mut impl Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\\' => out.write_str("\\\\"),
        c if !is_kept(c) => write!(out, "\\u{{{:x}}}", u32::from(c)),
        c => out.write_char(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_direction_overrides_are_escaped() {
        let cases = [
            ("plain 字", "plain 字"),
            ("two\nlines\r\n", "two\\nlines\\r\\n"),
            ("\u{1b}]0;pwned\u{7}", "\\u{1b}]0;pwned\\u{7}"),
            ("\u{1b}[2J\u{9b}1m", "\\u{1b}[2J\\u{9b}1m"),
            ("nul\0del\u{7f}", "nul\\u{0}del\\u{7f}"),
            ("a\\u{1b}", "a\\\\u{1b}"),
            ("evil\u{202e}txt", "evil\\u{202e}txt"),
            ("marks \u{61c}\u{200e}\u{200f}", "marks \\u{61c}\\u{200e}\\u{200f}"),
            ("tab\there", "tab\\there"),
        ];
        for (input, want) in cases {
            assert_eq!(escaped(input), want, "{input:?}");
            assert_eq!(untrusted(input).to_string(), want, "{input:?}");
        }
        assert_eq!(format!("{:?}", untrusted("a\nb")), "\"a\\nb\"");
    }

    #[test]
    fn a_log_line_carries_at_most_200_characters() {
        let long = "x".repeat(10_000);
        let logged = untrusted(&long).to_string();
        assert_eq!(logged.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(logged.ends_with('…'));
        assert_eq!(escaped(&long).len(), 10_000, "a terminal gets the whole text");
    }
}
