//! Text from a peer, made fit for a log line: [`untrusted`] is what every log call uses
//! for what a peer sent (a hello's uuid and client name, a user id from a request, a
//! path, a parse error quoting the frame).

use std::fmt::{self, Display, Write};

/// The most characters of untrusted text a log line carries; longer text is cut with `…`.
pub const MAX_LOGGED_CHARS: usize = 200;

/// `s` for a log: control characters (newlines and escape sequences included), Unicode
/// direction overrides and backslashes escaped (`\n`, `\u{1b}`, `\\`), cut at
/// [`MAX_LOGGED_CHARS`] characters with `…`. So a peer can neither forge a log line nor
/// reach an operator's terminal.
pub fn untrusted(s: &str) -> Untrusted<'_> {
    Untrusted(s)
}

/// See [`untrusted`].
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(&'a str);

/// Characters that reorder or hide text on a terminal without being control characters.
fn is_invisible_format(c: char) -> bool {
    // U+061C (ARABIC LETTER MARK) is the third of Unicode's bidi marks, beside U+200E/U+200F.
    matches!(c, '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

impl Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_LOGGED_CHARS) {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() || is_invisible_format(c) => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_is_cut() {
        let forged = "x\n2026-01-01 FAKE LOG LINE\u{1b}]0;pwned\u{7}\r\t\\ \u{202e}é";
        let out = untrusted(forged).to_string();
        assert_eq!(out, "x\\n2026-01-01 FAKE LOG LINE\\u{1b}]0;pwned\\u{7}\\r\\t\\\\ \\u{202e}é");
        assert!(!out.chars().any(|c| c.is_control()));
        assert_eq!(untrusted("plain 中文").to_string(), "plain 中文");
        assert_eq!(untrusted("\u{61c}\u{200f}").to_string(), "\\u{61c}\\u{200f}");
        let long = "é".repeat(MAX_LOGGED_CHARS + 1);
        let cut = untrusted(&long).to_string();
        assert_eq!(cut.chars().count(), MAX_LOGGED_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(untrusted(&long[..MAX_LOGGED_CHARS * 2]).to_string(), "é".repeat(MAX_LOGGED_CHARS));
        assert_eq!(format!("{:?}", untrusted("a\nb")), "\"a\\nb\"");
    }
}
