//! The text of a popup: what may travel to the notification service, and how long it may
//! be (PROTOCOL.md §5). The history keeps a talk verbatim; only what is shown goes
//! through here.
//!
//! [`popup_title`] and [`popup_body`] are what every popup's title and body pass through
//! (single talks and summaries alike, in the gate and again in the notifier):
//! 1. [`clean`]: characters a D-Bus string, the notification spec's markup (an XML subset)
//!    or the person reading cannot take are replaced or removed:
//!    - NUL, the other C0 controls but `\n` and `\t`, DEL and the C1 controls become
//!      `�` (U+FFFD), so that it shows that something was there; `\r\n` and a lone `\r`
//!      become `\n`;
//!    - the Unicode noncharacters (U+FDD0..U+FDEF and every U+xFFFE / U+xFFFF), which XML
//!      refuses, become `�` too;
//!    - the bidirectional embeddings, overrides and isolates (U+202A..U+202E,
//!      U+2066..U+2069) are removed: they are invisible, and in a sender's name they can
//!      reverse what follows ("Trojan Source"). The marks U+200E / U+200F stay, as they
//!      cannot reorder anything beyond a character.
//!
//!    Lone surrogates cannot occur in a Rust string, so nothing is done about them.
//! 2. [`fit`]: at most [`TITLE_CHARS`] / [`BODY_CHARS`] characters (not bytes), cut with
//!    `…` at a grapheme boundary (a flag or an accented letter is never split, unless one
//!    grapheme alone is over the limit).
//!
//! Both steps are idempotent, and so is their composition. Markup escaping happens last,
//! in the notifier, only for a service that renders markup.

use unicode_segmentation::UnicodeSegmentation;

use crate::i18n::{self, Lang, Msg};

/// The most characters a popup's title shows (a sender's name).
pub const TITLE_CHARS: usize = 100;

/// The most characters a popup's body shows (a talk's text, or a summary).
pub const BODY_CHARS: usize = crate::protocol::NOTIFY_TEXT_CHARS;

/// What stands for a character that cannot be shown.
pub const REPLACEMENT: char = '\u{fffd}';

/// A popup's title: cleaned and cut to [`TITLE_CHARS`].
pub fn popup_title(text: &str) -> String {
    fit(&clean(text), TITLE_CHARS)
}

/// A popup's body: cleaned and cut to [`BODY_CHARS`].
pub fn popup_body(text: &str) -> String {
    fit(&clean(text), BODY_CHARS)
}

/// The title of a talk's popup in `lang`: the sender's name (`wang2`), or what the
/// language says around it (`wang2 对你说`). The name is cleaned first, so that nothing in
/// it can reorder the words around it, and cut so that those words still fit.
pub fn talk_title_in(lang: Lang, sender: &str) -> String {
    let around = i18n::text_in(lang, Msg::PopupTalkTitle, &[("sender", "".into())]).chars().count();
    let name = fit(&clean(sender), TITLE_CHARS.saturating_sub(around));
    popup_title(&i18n::text_in(lang, Msg::PopupTalkTitle, &[("sender", name.as_str().into())]))
}

/// [`talk_title_in`] the process's language.
pub fn talk_title(sender: &str) -> String {
    talk_title_in(i18n::current(), sender)
}

/// The title and body of a summary in `lang`: `count` talks from `senders` people, most
/// of them from `top` ("12 new messages from wang2 and 2 others", `wang2 等 3 人发来 12 条消息`).
pub fn summary_in(lang: Lang, count: usize, top: &str, senders: usize) -> (String, String) {
    let others = senders.saturating_sub(1);
    let args =
        [("count", count.into()), ("sender", top.into()), ("senders", senders.into()), ("others", others.into())];
    (
        popup_title(&i18n::text_in(lang, Msg::PopupSummaryTitle, &[])),
        popup_body(&i18n::text_in(lang, Msg::PopupSummaryBody, &args)),
    )
}

/// [`summary_in`] the process's language.
pub fn summary(count: usize, top: &str, senders: usize) -> (String, String) {
    summary_in(i18n::current(), count, top, senders)
}

/// Whether `c` must not reach a notification service (see the module doc); `\r` is
/// handled apart, as a line break.
pub fn is_unfit(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_noncharacter(c) || is_bidi_control(c)
}

fn is_noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&n) || (n & 0xFFFE) == 0xFFFE
}

/// The embeddings, overrides and isolates of the Unicode bidirectional algorithm.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with what cannot travel replaced or removed (see the module doc).
pub fn clean(text: &str) -> String {
    if !text.chars().any(|c| c == '\r' || is_unfit(c)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            c if is_bidi_control(c) => {}
            c if is_unfit(c) => out.push(REPLACEMENT),
            c => out.push(c),
        }
    }
    out
}

/// `text` in at most `max` characters: as it is when it fits, else its first graphemes
/// and `…`. `max` 0 gives "".
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let Some(room) = max.checked_sub(1) else { return String::new() };
    let mut out = String::with_capacity(text.len().min(room * 4 + 3));
    let mut used = 0;
    for g in text.graphemes(true) {
        let n = g.chars().count();
        if used + n > room {
            break;
        }
        out.push_str(g);
        used += n;
    }
    if used == 0 {
        // One grapheme longer than the room (a pile of combining marks): cut inside it.
        out = text.chars().take(room).collect();
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cannot_travel_is_replaced_and_bidi_controls_removed() {
        let cases = [
            ("hello", "hello"),
            ("a\0b", "a\u{fffd}b"),
            ("bell\u{7}", "bell\u{fffd}"),
            ("\u{1b}]0;pwned\u{7}", "\u{fffd}]0;pwned\u{fffd}"),
            ("c1 \u{9b}2J", "c1 \u{fffd}2J"),
            ("del\u{7f}", "del\u{fffd}"),
            ("lines\r\nand\rcr\n", "lines\nand\ncr\n"),
            ("tab\tkept", "tab\tkept"),
            ("x\u{fffe}y\u{ffff}z\u{fdd0}\u{10ffff}", "x\u{fffd}y\u{fffd}z\u{fffd}\u{fffd}"),
            ("evil\u{202e}gnp.exe", "evilgnp.exe"),
            ("\u{2066}iso\u{2069}", "iso"),
            ("ltr\u{200e}mark", "ltr\u{200e}mark"),
            ("字 and 🇫🇷", "字 and 🇫🇷"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn fit_counts_characters_and_keeps_graphemes_whole() {
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("exactly10!", 10), "exactly10!");
        assert_eq!(fit("eleven chars", 11), "eleven cha…");
        let cjk = "字".repeat(500);
        let cut = fit(&cjk, 300);
        assert_eq!(cut.chars().count(), 300);
        assert!(cut.ends_with('…'));
        // "e" + a combining acute is one grapheme of two characters: never split.
        let accents = "e\u{301}".repeat(10);
        let cut = fit(&accents, 6);
        assert_eq!(cut, format!("{}…", "e\u{301}".repeat(2)));
        // Flags are two regional indicators each.
        assert_eq!(fit("🇫🇷🇩🇪🇯🇵", 4), "🇫🇷…");
        // One grapheme over the limit is cut inside.
        let zalgo = format!("a{}", "\u{300}".repeat(50));
        assert_eq!(fit(&zalgo, 5).chars().count(), 5);
        assert_eq!(fit("anything", 0), "");
        assert_eq!(fit("ab", 1), "…");
    }

    #[test]
    fn popups_and_summaries_read_as_each_language_writes_them() {
        let cases = [
            (Lang::En, 2, "wang2", 1, "New messages", "2 new messages from wang2"),
            (Lang::En, 12, "wang2", 2, "New messages", "12 new messages from wang2 and 1 other"),
            (Lang::En, 12, "wang2", 3, "New messages", "12 new messages from wang2 and 2 others"),
            (Lang::En, 1, "wang2", 1, "New messages", "1 new message from wang2"),
            (Lang::ZhCn, 8, "wang2", 1, "新消息", "wang2 发来 8 条消息"),
            (Lang::ZhCn, 2, "wang2", 2, "新消息", "wang2 等 2 人发来 2 条消息"),
            (Lang::ZhCn, 12, "wang2", 3, "新消息", "wang2 等 3 人发来 12 条消息"),
            (Lang::ZhCn, 1, "wang2", 1, "新消息", "wang2 发来 1 条消息"),
        ];
        for (lang, count, top, senders, title, body) in cases {
            let got = summary_in(lang, count, top, senders);
            assert_eq!((got.0.as_str(), got.1.as_str()), (title, body), "{lang:?} {count} {senders}");
        }
        assert_eq!(talk_title_in(Lang::En, "wang2"), "wang2");
        assert_eq!(talk_title_in(Lang::ZhCn, "wang2"), "wang2 对你说");
    }

    #[test]
    fn a_long_or_hostile_name_keeps_the_words_around_it() {
        let long = talk_title_in(Lang::ZhCn, &"n".repeat(500));
        assert_eq!(long.chars().count(), TITLE_CHARS);
        assert!(long.ends_with("… 对你说"), "{long}");
        assert_eq!(talk_title_in(Lang::ZhCn, "evil\u{202e}gnp"), "evilgnp 对你说");
        assert_eq!(talk_title_in(Lang::En, &"n".repeat(500)).chars().count(), TITLE_CHARS);
    }

    #[test]
    fn titles_and_bodies_have_their_limits() {
        assert_eq!(popup_title(&"n".repeat(500)).chars().count(), TITLE_CHARS);
        assert_eq!(popup_body(&"b".repeat(5000)).chars().count(), BODY_CHARS);
        assert_eq!(popup_body("a\0b"), "a\u{fffd}b");
    }
}
