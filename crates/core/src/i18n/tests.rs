use std::collections::{BTreeMap, BTreeSet};

use fluent_syntax::ast::{Entry, Expression, InlineExpression, Pattern, PatternElement};

use super::*;

/// Each message of a catalogue with the variables it uses (in selectors too).
fn messages_of(lang: Lang) -> BTreeMap<String, BTreeSet<String>> {
    let resource = fluent_syntax::parser::parse(source(lang))
        .unwrap_or_else(|(_, errors)| panic!("{}: syntax errors: {errors:?}", lang.tag()));
    let mut out = BTreeMap::new();
    for entry in resource.body {
        if let Entry::Message(m) = entry {
            let mut vars = BTreeSet::new();
            if let Some(p) = &m.value {
                pattern_vars(p, &mut vars);
            }
            assert!(out.insert(m.id.name.to_owned(), vars).is_none(), "{}: {} twice", lang.tag(), m.id.name);
        }
    }
    out
}

fn pattern_vars(p: &Pattern<&str>, vars: &mut BTreeSet<String>) {
    for element in &p.elements {
        if let PatternElement::Placeable { expression } = element {
            expression_vars(expression, vars);
        }
    }
}

fn expression_vars(e: &Expression<&str>, vars: &mut BTreeSet<String>) {
    match e {
        Expression::Inline(inline) => inline_vars(inline, vars),
        Expression::Select { selector, variants } => {
            inline_vars(selector, vars);
            for v in variants {
                pattern_vars(&v.value, vars);
            }
        }
    }
}

fn inline_vars(e: &InlineExpression<&str>, vars: &mut BTreeSet<String>) {
    match e {
        InlineExpression::VariableReference { id } => {
            vars.insert(id.name.to_owned());
        }
        InlineExpression::FunctionReference { arguments, .. } => {
            for a in &arguments.positional {
                inline_vars(a, vars);
            }
        }
        InlineExpression::Placeable { expression } => expression_vars(expression, vars),
        _ => {}
    }
}

#[test]
fn every_catalogue_has_exactly_the_keys_the_code_declares_with_the_same_variables() {
    let declared: BTreeSet<&str> = Msg::ALL.iter().map(|m| m.id()).collect();
    assert_eq!(declared.len(), Msg::ALL.len(), "two variants share an id");
    let english = messages_of(Lang::En);
    for lang in Lang::ALL {
        let catalogue = messages_of(lang);
        let keys: BTreeSet<&str> = catalogue.keys().map(String::as_str).collect();
        let missing: Vec<_> = declared.difference(&keys).collect();
        let stray: Vec<_> = keys.difference(&declared).collect();
        assert!(missing.is_empty(), "{}: keys the code uses are missing: {missing:?}", lang.tag());
        assert!(stray.is_empty(), "{}: keys no code declares: {stray:?}", lang.tag());
        for (key, vars) in &catalogue {
            assert_eq!(Some(vars), english.get(key), "{}: {key} has other variables than in English", lang.tag());
        }
    }
}

#[test]
fn every_message_formats_in_every_language_without_isolation_marks() {
    for lang in Lang::ALL {
        for &msg in Msg::ALL {
            let vars = messages_of(lang).remove(msg.id()).unwrap_or_default();
            let args: Vec<(&str, Arg<'_>)> = vars.iter().map(|v| (v.as_str(), Arg::Number(2.0))).collect();
            let text = text_in(lang, msg, &args);
            assert!(!text.is_empty() && text != msg.id(), "{}: {}", lang.tag(), msg.id());
            assert!(!text.contains(['\u{2068}', '\u{2069}']), "{}: {} {text:?}", lang.tag(), msg.id());
        }
    }
    assert_eq!(text_in(Lang::En, Msg::StatusConnectedAs, &[("user", "wang1".into())]), "Connected as wang1");
    // A message of several lines keeps its indents and its blank line.
    let help = text_in(Lang::En, Msg::CliDaemonHelp, &[]);
    assert!(help.starts_with("Environment:\n  TALKBELL_CONFIG_DIR  the config dir"), "{help}");
    assert!(help.contains("(logs go to standard error)\n\nOne Talkbell runs per profile"), "{help}");
}

#[test]
fn the_language_follows_lc_all_then_lc_messages_then_lang() {
    let cases: [(&[(&str, &str)], Lang); 9] = [
        (&[], Lang::En),
        (&[("LANG", "zh_CN.UTF-8")], Lang::ZhCn),
        (&[("LANG", "zh_TW.UTF-8")], Lang::ZhCn),
        (&[("LANG", "en_US.UTF-8")], Lang::En),
        (&[("LANG", "C.UTF-8")], Lang::En),
        (&[("LANG", "zh_CN.UTF-8"), ("LC_MESSAGES", "en_GB.UTF-8")], Lang::En),
        (&[("LANG", "en_US.UTF-8"), ("LC_MESSAGES", "zh_CN.UTF-8")], Lang::ZhCn),
        (&[("LC_MESSAGES", "zh_CN.UTF-8"), ("LC_ALL", "C")], Lang::En),
        // Set but empty is not set.
        (&[("LC_ALL", ""), ("LANG", "zh_CN.UTF-8")], Lang::ZhCn),
    ];
    for (vars, want) in cases {
        let got = Lang::from_env_with(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()));
        assert_eq!(got, want, "{vars:?}");
    }
}

#[test]
fn the_setting_overrides_the_system_language() {
    for system in Lang::ALL {
        assert_eq!(LanguageSetting::System.resolve_with(system), system);
        assert_eq!(LanguageSetting::En.resolve_with(system), Lang::En);
        assert_eq!(LanguageSetting::ZhCn.resolve_with(system), Lang::ZhCn);
    }
    #[derive(Deserialize, Serialize)]
    struct Doc {
        language: LanguageSetting,
    }
    for (text, setting) in
        [("system", LanguageSetting::System), ("en", LanguageSetting::En), ("zh-CN", LanguageSetting::ZhCn)]
    {
        let doc: Doc = toml::from_str(&format!("language = {text:?}")).unwrap();
        assert_eq!(doc.language, setting);
        assert_eq!(toml::to_string(&doc).unwrap().trim(), format!("language = {text:?}"));
    }
    assert!(toml::from_str::<Doc>("language = \"fr\"").is_err());
}

/// The window's files, which take their words from [`window_texts`].
fn ui_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys in `text` after each `marker` up to the next `"`.
fn keys_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.split(marker).skip(1).filter_map(|rest| rest.split('"').next()).collect()
}

#[test]
fn the_window_has_no_text_of_its_own_and_every_key_it_uses_is_in_the_catalogues() {
    let html = ui_file("index.html");
    let js = ui_file("app.js");
    let window = window_texts(Lang::En);
    let mut used: Vec<&str> = keys_after(&html, "data-i18n=\"");
    used.extend(keys_after(&html, "data-i18n-placeholder=\""));
    used.extend(keys_after(&html, "data-i18n-label=\""));
    used.extend(keys_after(&js, "i18n(\""));
    assert!(used.len() > 20, "{used:?}");
    for key in used {
        assert!(window.contains_key(key), "the window uses {key:?}, which is no ui- message");
    }
    // Between tags there is no text: every word comes from the catalogue.
    for piece in html.split('>').skip(1).filter_map(|rest| rest.split('<').next()) {
        assert!(piece.trim().is_empty(), "text in ui/index.html: {piece:?}");
    }
    for attribute in ["placeholder=\"", "aria-label=\""] {
        let mut hard: Vec<_> = keys_after(&html, &format!(" {attribute}"));
        // An example URL is no word to translate.
        hard.retain(|v| !v.starts_with("wss://"));
        assert!(hard.is_empty(), "{attribute} written in ui/index.html: {hard:?}");
    }
    assert_eq!(window_texts(Lang::ZhCn)["ui-tab-history"], "历史");
}
