//! The command line in the user's language: `--help` (clap's headings and flags too) and
//! a bad config file's error come from the catalogues, chosen from the locale as the
//! rest of Talkbell is. No desktop needed: nothing here connects or pops up.

mod common;

use std::process::{Command, Output};

use common::*;

/// `bin args` with only `LANG` set of the locale variables, and a profile of its own.
fn run_in(lang: &str, bin: &std::path::Path, args: &[&str], profile: &std::path::Path) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", lang)
        .env("TALKBELL_CONFIG_DIR", profile.join("config"))
        .env("TALKBELL_DATA_DIR", profile.join("data"))
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_is_in_chinese_under_a_chinese_locale_and_in_english_under_c() {
    let profile = tempfile::tempdir().unwrap();
    let (app, daemon) = (talkbell_bin(), talkbell_daemon_bin());
    let zh = stdout(&run_in("zh_CN.UTF-8", &app, &["--help"], profile.path()));
    for words in
        ["有人对你说话时提醒你。", "用法：", "命令:", "选项:", "只在托盘中启动", "显示帮助", "显示版本", "登录："]
    {
        assert!(zh.contains(words), "{words:?} missing from:\n{zh}");
    }
    for english in ["Usage:", "Print help", "Rings when", "Sign in"] {
        assert!(!zh.contains(english), "{english:?} left in English:\n{zh}");
    }
    let login = stdout(&run_in("zh_CN.UTF-8", &app, &["login", "--help"], profile.path()));
    assert!(login.contains("消息服务器，ws:// 或 wss://。") && login.contains("显示帮助"), "{login}");
    let headless = stdout(&run_in("zh_CN.UTF-8", &daemon, &["--help"], profile.path()));
    assert!(headless.contains("无窗口的 Talkbell") && headless.contains("环境变量："), "{headless}");

    let en = stdout(&run_in("C", &app, &["--help"], profile.path()));
    for words in ["Rings when someone talks to you.", "Usage:", "Commands:", "Options:", "Print help", "Print version"]
    {
        assert!(en.contains(words), "{words:?} missing from:\n{en}");
    }
    assert!(!en.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "Chinese under LANG=C:\n{en}");
    let history = stdout(&run_in("C", &app, &["history", "--help"], profile.path()));
    assert!(history.contains("Only talks matching these words."), "{history}");
}

#[test]
fn a_bad_config_file_says_which_line_what_is_wrong_and_what_to_do_in_the_users_language() {
    let profile = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(profile.path().join("config")).unwrap();
    let file = profile.path().join("config/config.toml");
    std::fs::write(
        &file,
        "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n[heartbeat]\ninterval_ms = \"soon\"\n",
    )
    .unwrap();
    let zh = run_in("zh_CN.UTF-8", &talkbell_bin(), &["status"], profile.path());
    let said = String::from_utf8_lossy(&zh.stderr);
    assert!(!zh.status.success());
    assert!(said.contains(&format!("{}:3:", file.display())), "{said}");
    assert!(said.contains("请改正该文件的第 3 行"), "{said}");
    let en = run_in("C", &talkbell_bin(), &["status"], profile.path());
    let said = String::from_utf8_lossy(&en.stderr);
    assert!(said.contains("Fix line 3 of this file"), "{said}");

    // A value that reads but cannot be used: what is wrong, in the user's words too.
    std::fs::write(&file, "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n[notifications]\nburst_count = 0\n")
        .unwrap();
    let zh = run_in("zh_CN.UTF-8", &talkbell_bin(), &["status"], profile.path());
    let said = String::from_utf8_lossy(&zh.stderr);
    assert!(said.contains("burst_count 至少为 1") && said.contains("请在该文件中改正这项设置"), "{said}");
}
