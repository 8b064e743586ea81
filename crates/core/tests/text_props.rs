//! Properties of the two places text from the network is made safe (issue 10, "Hostile
//! input"), for any string:
//! - the popup text (`notify::text`): nothing D-Bus, the notification markup or the reader
//!   cannot take survives [`clean`], the titles and bodies keep their length caps in
//!   characters and are cut at a grapheme boundary, clean text passes unchanged, and every
//!   step is idempotent;
//! - the escaper (`untrusted`): no control character, line separator or direction control
//!   reaches a terminal or a log line, and escaping is reversible (so injective: an escape
//!   in the output always means one in the input).
//!
//! The character classes are written out here from the Unicode ranges, not taken from the
//! modules, so that the modules' own predicates are tested too.

use proptest::prelude::*;
use talkbell_core::notify::text::{clean, fit, popup_body, popup_title, BODY_CHARS, REPLACEMENT, TITLE_CHARS};
use talkbell_core::untrusted::{escaped, is_kept, untrusted, MAX_LOGGED_CHARS};
use unicode_segmentation::UnicodeSegmentation;

/// C0 controls, DEL and C1 controls (Unicode's Cc).
fn is_cc(c: char) -> bool {
    matches!(u32::from(c), 0..=0x1f | 0x7f..=0x9f)
}

/// Unicode's noncharacters: U+FDD0..U+FDEF and the last two code points of every plane.
fn is_noncharacter(c: char) -> bool {
    let n = u32::from(c);
    (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe
}

/// The embeddings, overrides and isolates, which reorder what follows them.
fn is_bidi_reordering(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Every character of Unicode's Bidi_Control property (PropList.txt): the above and the
/// three marks (ALM, LRM, RLM).
fn is_bidi_control(c: char) -> bool {
    is_bidi_reordering(c) || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}')
}

/// What the escaper promises a terminal never sees raw: controls, the invisible
/// characters that reorder or hide text, and the line and paragraph separators.
fn is_unsafe_for_terminal(c: char) -> bool {
    is_cc(c) || is_bidi_control(c) || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// The characters hostile text is made of, and ordinary ones, mixed.
fn hostile_char() -> impl Strategy<Value = char> {
    let special = prop::sample::select(vec![
        '\0',
        '\u{7}',
        '\u{8}',
        '\t',
        '\n',
        '\u{b}',
        '\u{c}',
        '\r',
        '\u{1b}',
        '\u{7f}',
        '\u{80}',
        '\u{85}',
        '\u{9b}',
        '\u{9f}',
        '\u{a0}',
        '\u{ad}',
        '\u{300}',
        '\u{301}',
        '\u{61c}',
        '\u{200b}',
        '\u{200d}',
        '\u{200e}',
        '\u{200f}',
        '\u{2028}',
        '\u{2029}',
        '\u{202a}',
        '\u{202b}',
        '\u{202c}',
        '\u{202d}',
        '\u{202e}',
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{fdd0}',
        '\u{fdef}',
        '\u{feff}',
        '\u{fffd}',
        '\u{fffe}',
        '\u{ffff}',
        '\u{1fffe}',
        '\u{10ffff}',
        '\u{1f1eb}',
        '\u{1f1f7}',
        '\u{1f468}',
        '\u{1f469}',
        '\\',
        'u',
        '{',
        '}',
        'n',
        'r',
        't',
        '1',
        'b',
        '…',
        '字',
        'é',
        ' ',
        'a',
    ]);
    prop_oneof![
        3 => special,
        1 => (0u32..=0x9f).prop_filter_map("a char", char::from_u32),
        2 => any::<char>(),
        2 => prop::char::range(' ', '~'),
    ]
}

/// Any string, hostile characters likely, up to past the body's cap.
fn hostile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_char(), 0..400).prop_map(|chars| chars.into_iter().collect())
}

/// What `clean` promises (the module doc), stated as two passes over the text rather
/// than `clean`'s one: first every line break (`\r\n`, then a lone `\r`) becomes `\n`,
/// then each character is mapped alone.
fn clean_model(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n").chars().filter_map(cleaned_char).collect()
}

/// What stands for `c` once the line breaks are `\n`: nothing for a direction control,
/// U+FFFD for a noncharacter or a control other than `\n` and `\t`, else `c` itself.
fn cleaned_char(c: char) -> Option<char> {
    let replaced = is_noncharacter(c) || (is_cc(c) && !matches!(c, '\n' | '\t'));
    (!is_bidi_reordering(c)).then_some(if replaced { '\u{fffd}' } else { c })
}

/// Whether nothing in `text` is something `clean` changes.
fn is_clean(text: &str) -> bool {
    text.chars().all(|c| c == '\n' || c == '\t' || !(is_cc(c) || is_noncharacter(c) || is_bidi_reordering(c)))
}

/// The inverse of `escaped`: `\n`, `\r`, `\t`, `\\` and `\u{HEX}`; `None` for anything
/// `escaped` cannot have written.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '\\' => out.push('\\'),
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Checks `cut`, made by `fit(text, max)` of a clean `text`.
fn check_fit(text: &str, max: usize, cut: &str) -> Result<(), TestCaseError> {
    let n = cut.chars().count();
    prop_assert!(n <= max, "{n} characters over {max}: {cut:?}");
    if text.chars().count() <= max {
        prop_assert_eq!(cut, text, "text that fits is kept whole");
        return Ok(());
    }
    if max == 0 {
        prop_assert_eq!(cut, "");
        return Ok(());
    }
    let Some(kept) = cut.strip_suffix('…') else {
        return Err(TestCaseError::fail(format!("a cut text ends with …: {cut:?}")));
    };
    prop_assert!(text.starts_with(kept), "the cut is not a prefix: {kept:?} of {text:?}");
    let room = max - 1;
    let first = text.graphemes(true).next().unwrap_or_default();
    if first.chars().count() > room {
        // One grapheme alone is over the room: cut inside it, as much as fits.
        prop_assert_eq!(kept.chars().count(), room);
    } else {
        // At a grapheme boundary, with as many whole graphemes as fit.
        let rest = &text[kept.len()..];
        prop_assert!(text.grapheme_indices(true).any(|(i, _)| i == kept.len()), "cut inside a grapheme");
        let next = rest.graphemes(true).next().unwrap_or_default();
        prop_assert!(kept.chars().count() + next.chars().count() > room, "the next grapheme would have fitted");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn cleaned_text_is_exactly_what_the_module_promises(text in hostile_text()) {
        let cleaned = clean(&text);
        prop_assert_eq!(&cleaned, &clean_model(&text));
        // What D-Bus cannot carry (NUL), nor XML (other C0, noncharacters), nor a terminal
        // (escape sequences start with a C0 or C1 control), nor the reader (overrides).
        for c in cleaned.chars() {
            prop_assert!(c != '\0' && c != '\r', "{c:?} in {cleaned:?}");
            prop_assert!(!is_cc(c) || c == '\n' || c == '\t', "control {c:?} in {cleaned:?}");
            prop_assert!(!is_noncharacter(c), "noncharacter {c:?} in {cleaned:?}");
            prop_assert!(!is_bidi_reordering(c), "direction control {c:?} in {cleaned:?}");
        }
        prop_assert!(cleaned.chars().count() <= text.chars().count());
        prop_assert_eq!(clean(&cleaned), cleaned.clone(), "clean is idempotent");
        prop_assert_eq!(cleaned == text, is_clean(&text), "only clean text is kept as it is");
    }

    #[test]
    fn clean_text_is_unchanged(text in hostile_text().prop_map(|t| t.chars().filter(|&c| is_clean(&c.to_string())).collect::<String>())) {
        prop_assert_eq!(clean(&text), text.clone());
        prop_assert_eq!(popup_body(&text), fit(&text, BODY_CHARS));
        if text.chars().count() <= BODY_CHARS {
            prop_assert_eq!(popup_body(&text), text);
        }
    }

    #[test]
    fn titles_and_bodies_keep_their_caps_and_are_cut_at_graphemes(text in hostile_text()) {
        let cleaned = clean(&text);
        let title = popup_title(&text);
        let body = popup_body(&text);
        check_fit(&cleaned, TITLE_CHARS, &title)?;
        check_fit(&cleaned, BODY_CHARS, &body)?;
        for shown in [&title, &body] {
            prop_assert_eq!(&clean(shown), shown, "what is shown is still clean");
            prop_assert!(!shown.contains('\0'));
        }
        prop_assert_eq!(popup_title(&title), title.clone(), "popup_title is idempotent");
        prop_assert_eq!(popup_body(&body), body.clone(), "popup_body is idempotent");
    }

    #[test]
    fn fit_holds_any_limit(text in hostile_text(), max in 0usize..40) {
        let text = clean(&text);
        let cut = fit(&text, max);
        check_fit(&text, max, &cut)?;
        prop_assert_eq!(fit(&cut, max), cut.clone(), "fit is idempotent");
    }

    #[test]
    fn escaped_text_has_nothing_a_terminal_would_act_on(text in hostile_text()) {
        let out = escaped(&text);
        for c in out.chars() {
            prop_assert!(!is_unsafe_for_terminal(c), "{c:?} ({:x}) raw in {out:?}", u32::from(c));
            prop_assert!(c == '\\' || is_kept(c), "{c:?} in {out:?}");
        }
        prop_assert_eq!(out == text, !text.chars().any(|c| c == '\\' || is_unsafe_for_terminal(c)));
    }

    #[test]
    fn escaping_is_reversible_so_injective(text in hostile_text()) {
        prop_assert_eq!(unescape(&escaped(&text)), Some(text));
    }

    #[test]
    fn different_texts_escape_differently(a in hostile_text(), b in hostile_text()) {
        prop_assert_eq!(escaped(&a) == escaped(&b), a == b);
    }

    #[test]
    fn kept_characters_are_written_as_they_are(c in hostile_char()) {
        let out = escaped(&c.to_string());
        prop_assert_eq!(is_kept(c), out == c.to_string(), "{:?} → {:?}", c, out);
        prop_assert_eq!(is_kept(c), c != '\\' && !is_unsafe_for_terminal(c), "{:?}", c);
    }

    #[test]
    fn a_log_line_is_the_escaped_start_of_the_text(text in hostile_text()) {
        let logged = untrusted(&text).to_string();
        let head: String = text.chars().take(MAX_LOGGED_CHARS).collect();
        let more = text.chars().count() > MAX_LOGGED_CHARS;
        prop_assert_eq!(&logged, &format!("{}{}", escaped(&head), if more { "…" } else { "" }));
        prop_assert!(!logged.contains(['\n', '\r']), "a log line stays one line: {logged:?}");
        prop_assert!(!logged.chars().any(is_unsafe_for_terminal), "{logged:?}");
        prop_assert_eq!(format!("{:?}", untrusted(&text)), format!("\"{logged}\""));
    }
}

#[test]
fn the_classes_above_agree_with_the_standard_library() {
    for n in 0..=0x10ffff {
        if let Some(c) = char::from_u32(n) {
            assert_eq!(is_cc(c), c.is_control(), "{n:x}");
        }
    }
    assert_eq!(REPLACEMENT, '\u{fffd}');
}
