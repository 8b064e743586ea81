//! A process whose language is Simplified Chinese (as `talkbell`, `talkbell-daemon` and
//! the tray app set theirs from the locale or the setting): what the gate pops up, the
//! status line and the reasons behind it, in the words a Chinese speaker reads. Every
//! test of this binary runs in Chinese, so none of them races another over the language.

mod support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use support::Recorder;
use talkbell_core::config::validate_server_url;
use talkbell_core::engine::EngineError;
use talkbell_core::i18n::{self, Lang};
use talkbell_core::instance::{Holder, InstanceError, ProcessKind};
use talkbell_core::notify::{NotificationKind, NotifyError, NotifyGate, NotifySettings};
use talkbell_core::protocol::TalkMessage;
use talkbell_core::session::{OfflineReason, Refusal, SignedOutReason};
use talkbell_core::status::{describe, Facts, StateKind};

#[tokio::test(start_paused = true)]
async fn the_gate_pops_up_what_wang2_said_and_sums_a_burst_up_as_a_chinese_speaker_would() {
    i18n::set_current(Lang::ZhCn);
    let rec = Arc::new(Recorder::default());
    let gate = NotifyGate::spawn(rec.clone(), NotifySettings::default());
    // Two popups, then 12 talks from three people (wang2 most) in one summary.
    let senders = ["wang2", "wang2", "li3", "wang2", "zhao4", "wang2"];
    for i in 0..14 {
        gate.talk(TalkMessage::for_test(senders[i % senders.len()], &format!("第 {i} 条")), i as i64, true);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let popups: Vec<(String, String)> =
        rec.0.lock().unwrap().iter().map(|n| (n.title.clone(), n.body.clone())).collect();
    assert_eq!(
        popups,
        [
            ("wang2 对你说".to_owned(), "第 0 条".to_owned()),
            ("wang2 对你说".to_owned(), "第 1 条".to_owned()),
            ("新消息".to_owned(), "wang2 等 3 人发来 12 条消息".to_owned()),
        ]
    );
    // One sender alone.
    for i in 20..30 {
        gate.talk(TalkMessage::for_test("li3", "x"), i, true);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let last = rec.0.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.title.as_str(), last.body.as_str()), ("新消息", "li3 发来 8 条消息"));
    assert!(matches!(last.kind, NotificationKind::Summary { .. }));
}

#[test]
fn the_status_line_and_the_reasons_behind_it_are_in_chinese() {
    i18n::set_current(Lang::ZhCn);
    let locked = SignedOutReason::KeyringLocked.to_string();
    assert_eq!(locked, "密钥环已锁定：解锁后即可连接");
    let facts = Facts {
        state: StateKind::SignedOut,
        reason: Some(&locked),
        reason_kind: Some(talkbell_core::status::ReasonKind::KeyringLocked),
        unread: 3,
        ..Facts::default()
    };
    let words = describe(&facts, UNIX_EPOCH + Duration::from_secs(1));
    assert_eq!(words.headline, "正在等待密钥环 · 3 条未读");
    assert_eq!(words.tray, "Talkbell：未登录 · 密钥环已锁定：解锁后即可连接 · 3 条未读");
    let cases = [
        (OfflineReason::CertExpired.to_string(), "服务器的证书已过期"),
        (OfflineReason::TimedOut { after: Duration::from_millis(1500) }.to_string(), "1.5 秒内未能建立连接"),
        (OfflineReason::Closed { code: Some(1001) }.to_string(), "服务器关闭了连接（代码 1001）"),
        (SignedOutReason::Refused(Refusal::Http { status: 401 }).to_string(), "服务器拒绝了令牌（HTTP 401）"),
        (EngineError::Unreachable(OfflineReason::CertExpired).to_string(), "无法连接到服务器：服务器的证书已过期"),
        (
            NotifyError::NoAnswer { after: Duration::from_secs(5) }.to_string(),
            "通知服务在 5 秒内没有应答，可能已卡住：请重启通知守护进程",
        ),
        (talkbell_core::session::StoreError::Busy.to_string(), "历史记录正被另一个进程占用；请重试"),
        (validate_server_url("http://x/").unwrap_err().to_string(), "协议必须是 ws:// 或 wss://，而不是 http://"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    let held = InstanceError::AlreadyRunning {
        holder: Some(Holder { kind: ProcessKind::TrayApp, pid: 42 }),
        data_dir: "/home/u/.local/share/talkbell".into(),
    };
    assert_eq!(
        held.to_string(),
        "此配置已有 Talkbell 托盘程序在运行（PID 42，数据在 /home/u/.local/share/talkbell），每个配置只能运行一个 \
         Talkbell。请从它的托盘菜单中退出（退出），然后再启动本程序。"
    );
}
