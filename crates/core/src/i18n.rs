//! The words a person reads, in their language: one Fluent catalogue per language
//! (`crates/core/locales/<lang>/talkbell.ftl`, compiled into the binary), and the
//! language chosen for this process.
//!
//! Why Fluent (`fluent-bundle`) rather than gettext or strings in code: its messages
//! carry their own CLDR plural rules and selectors, so "1 new message" / "2 new messages"
//! in English and `wang2 等 3 人发来 12 条消息` in Chinese (another word order, no plural)
//! are each written once in their catalogue, with no plural or word-order code here; and
//! it needs no build step or system library (the catalogues are plain text in the repo).
//! Numbers are formatted by Fluent's `NUMBER`, plurals chosen by its rules.
//!
//! - Every message is a [`Msg`]: code cannot name a key that is not declared, and the
//!   tests check that each declared key is in every catalogue, with the same variables,
//!   and that no catalogue has a key the code does not declare.
//! - The language ([`Lang`]) comes from `LC_ALL`, else `LC_MESSAGES`, else `LANG` (the
//!   first one set and not empty decides, as in POSIX): `zh…` is Simplified Chinese,
//!   anything else English. The config's `language` ([`LanguageSetting`]) overrides it.
//! - [`current`] is the process's language: English until a binary calls [`set_current`]
//!   (the CLI, the daemon and the tray app do at start, and the app again when the
//!   setting changes). The renderers that take a [`Lang`] (`*_in`) are what tests use.
//! - Fluent's Unicode isolation marks (U+2068/U+2069 around each variable) are off: they
//!   would reach D-Bus and terminals as invisible characters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use serde::{Deserialize, Serialize};

/// A language Talkbell speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The BCP 47 tag: `en`, `zh-CN` (the catalogue's folder, and the window's `lang`).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language of a POSIX locale name (`zh_CN.UTF-8`, `zh_TW`, `en_US.UTF-8`, `C`).
    pub fn of_locale(locale: &str) -> Lang {
        if locale.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("zh")) {
            Lang::ZhCn
        } else {
            Lang::En
        }
    }

    /// The language of the environment `var` reads: `LC_ALL` > `LC_MESSAGES` > `LANG`.
    pub fn from_env_with(var: impl Fn(&str) -> Option<String>) -> Lang {
        ["LC_ALL", "LC_MESSAGES", "LANG"]
            .into_iter()
            .find_map(|name| var(name).filter(|v| !v.is_empty()))
            .map_or(Lang::En, |locale| Lang::of_locale(&locale))
    }

    /// The language of this process's environment.
    pub fn from_env() -> Lang {
        Lang::from_env_with(|name| std::env::var(name).ok())
    }

    fn index(self) -> u8 {
        match self {
            Lang::En => 0,
            Lang::ZhCn => 1,
        }
    }
}

/// The config's `language`: follow the system (the default), or one language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LanguageSetting {
    #[default]
    #[serde(rename = "system")]
    System,
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl LanguageSetting {
    /// The language this setting picks, `system` being the one of the environment.
    pub fn resolve_with(self, system: Lang) -> Lang {
        match self {
            LanguageSetting::System => system,
            LanguageSetting::En => Lang::En,
            LanguageSetting::ZhCn => Lang::ZhCn,
        }
    }

    /// [`resolve_with`](Self::resolve_with) the process's environment.
    pub fn resolve(self) -> Lang {
        self.resolve_with(Lang::from_env())
    }
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

/// The process's language (English until [`set_current`]).
pub fn current() -> Lang {
    match CURRENT.load(Ordering::Relaxed) {
        1 => Lang::ZhCn,
        _ => Lang::En,
    }
}

/// Sets the process's language: what every renderer without a `Lang` uses from now on.
pub fn set_current(lang: Lang) {
    CURRENT.store(lang.index(), Ordering::Relaxed);
}

/// Chooses the process's language from `setting` and the environment, and returns it.
pub fn choose(setting: LanguageSetting) -> Lang {
    let lang = setting.resolve();
    set_current(lang);
    lang
}

macro_rules! messages {
    ($($variant:ident => $id:literal,)*) => {
        /// Every message of the catalogues, by its Fluent id ([`Msg::id`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Msg {
            $($variant,)*
        }

        impl Msg {
            /// Every message the code may use.
            pub const ALL: &'static [Msg] = &[$(Msg::$variant,)*];

            /// Its id in the `.ftl` files.
            pub fn id(self) -> &'static str {
                match self {
                    $(Msg::$variant => $id,)*
                }
            }
        }
    };
}

messages! {
    PopupTalkTitle => "popup-talk-title",
    PopupSummaryTitle => "popup-summary-title",
    PopupSummaryBody => "popup-summary-body",
    PopupAlreadyRunningTitle => "popup-already-running-title",
    PopupActionOpen => "popup-action-open",
    PopupActionMarkRead => "popup-action-mark-read",
    PopupActionMute => "popup-action-mute",
    MuteEightHours => "mute-eight-hours",
    MuteUntilUnmuted => "mute-until-unmuted",
    PopupActionReply => "popup-action-reply",
    PopupReplyPlaceholder => "popup-reply-placeholder",
    PopupReplyNotSentTitle => "popup-reply-not-sent-title",
    StateConnected => "state-connected",
    StateConnecting => "state-connecting",
    StateAuthenticating => "state-authenticating",
    StateOffline => "state-offline",
    StateSignedOut => "state-signed-out",
    StateStopped => "state-stopped",
    StateNotRunning => "state-not-running",
    StatusConnectedAs => "status-connected-as",
    StatusConnected => "status-connected",
    StatusConnectedUserUnknown => "status-connected-user-unknown",
    StatusConnecting => "status-connecting",
    StatusAuthenticating => "status-authenticating",
    StatusReadingKeyring => "status-reading-keyring",
    StatusWaitingForKeyring => "status-waiting-for-keyring",
    StatusSignedOut => "status-signed-out",
    StatusOfflineRetrying => "status-offline-retrying",
    StatusOffline => "status-offline",
    StatusTray => "status-tray",
    StatusUnread => "status-unread",
    StatusPaused => "status-paused",
    StatusNextTry => "status-next-try",
    StatusAdviceSignIn => "status-advice-sign-in",
    StatusAdviceNotRunning => "status-advice-not-running",
    ReasonBadUrl => "reason-bad-url",
    ReasonDns => "reason-dns",
    ReasonRefused => "reason-refused",
    ReasonUnreachable => "reason-unreachable",
    ReasonTimedOut => "reason-timed-out",
    ReasonCertUntrusted => "reason-cert-untrusted",
    ReasonCertWrongHost => "reason-cert-wrong-host",
    ReasonCertNotFor => "reason-cert-not-for",
    ReasonCertValidFor => "reason-cert-valid-for",
    ReasonCertExpired => "reason-cert-expired",
    ReasonCertNotYetValid => "reason-cert-not-yet-valid",
    ReasonPortSpeaksTls => "reason-port-speaks-tls",
    ReasonPortSpeaksPlain => "reason-port-speaks-plain",
    ReasonTls => "reason-tls",
    ReasonHttp => "reason-http",
    ReasonHandshake => "reason-handshake",
    ReasonHeartbeatTimeout => "reason-heartbeat-timeout",
    ReasonClosed => "reason-closed",
    ReasonClosedCode => "reason-closed-code",
    ReasonLost => "reason-lost",
    ReasonOversized => "reason-oversized",
    ReasonHistory => "reason-history",
    UntrustedUnknownIssuer => "untrusted-unknown-issuer",
    UntrustedRevoked => "untrusted-revoked",
    UntrustedBadSignature => "untrusted-bad-signature",
    UntrustedInvalidPurpose => "untrusted-invalid-purpose",
    ProxyUnreachable => "proxy-unreachable",
    ProxyAuthRequired => "proxy-auth-required",
    ProxyRefused => "proxy-refused",
    ProxyBadAnswer => "proxy-bad-answer",
    ProxyUnsupported => "proxy-unsupported",
    SignedOutReadingKeyring => "signed-out-reading-keyring",
    SignedOutKeyringLocked => "signed-out-keyring-locked",
    SignedOutNoKeyring => "signed-out-no-keyring",
    SignedOutKeyringNoAnswer => "signed-out-keyring-no-answer",
    SignedOutKeyringFailed => "signed-out-keyring-failed",
    SignedOutNoPersistentKeyring => "signed-out-no-persistent-keyring",
    RefusalHttp => "refusal-http",
    RefusalCloseWords => "refusal-close-words",
    RefusalCloseCode => "refusal-close-code",
    RefusalError => "refusal-error",
    EngineSignedOutMeanwhile => "engine-signed-out-meanwhile",
    EngineUnreachable => "engine-unreachable",
    EngineStopped => "engine-stopped",
    EngineNoUserId => "engine-no-user-id",
    EngineUserIdFromServer => "engine-user-id-from-server",
    EngineTimeout => "engine-timeout",
    EngineBadServer => "engine-bad-server",
    UrlNotAUrl => "url-not-a-url",
    UrlWrongScheme => "url-wrong-scheme",
    UrlNoScheme => "url-no-scheme",
    UrlNoHost => "url-no-host",
    InstanceDaemonRunning => "instance-daemon-running",
    InstanceTrayAppRunning => "instance-tray-app-running",
    InstanceOtherRunning => "instance-other-running",
    SecretsNoKeyring => "secrets-no-keyring",
    SecretsLocked => "secrets-locked",
    SecretsNotFound => "secrets-not-found",
    SecretsNoAnswer => "secrets-no-answer",
    SecretsNoPersistentStore => "secrets-no-persistent-store",
    SecretsAccess => "secrets-access",
    HistoryOpen => "history-open",
    HistoryDir => "history-dir",
    HistoryThread => "history-thread",
    HistoryWriterGone => "history-writer-gone",
    HistoryDiskFull => "history-disk-full",
    HistoryBusy => "history-busy",
    HistoryCorrupt => "history-corrupt",
    HistoryOther => "history-other",
    HistoryStopped => "history-stopped",
    HistoryFailed => "history-failed",
    NotifyNoService => "notify-no-service",
    NotifyBus => "notify-bus",
    NotifyRefused => "notify-refused",
    NotifyNoAnswer => "notify-no-answer",
    NotifyFailed => "notify-failed",
    LogOffline => "log-offline",
    LogSignedOutBecause => "log-signed-out-because",
    LogDropped => "log-dropped",
    LogOversized => "log-oversized",
    LogStoreFailed => "log-store-failed",
    LogSignedIn => "log-signed-in",
    LogQueueReset => "log-queue-reset",
    LogReplyRefused => "log-reply-refused",
    ReplyEmpty => "reply-empty",
    ReplyTooLong => "reply-too-long",
    ReplySignedOut => "reply-signed-out",
    ReplyUnknownUser => "reply-unknown-user",
    ReplyNotOffered => "reply-not-offered",
    ReplyNotKept => "reply-not-kept",
    ReplyStopped => "reply-stopped",
    ReplyFailedNotOffered => "reply-failed-not-offered",
    BadDayTime => "bad-day-time",
    TrayOpen => "tray-open",
    TrayReconnect => "tray-reconnect",
    TrayPause => "tray-pause",
    TrayRecent => "tray-recent",
    TrayPauseHour => "tray-pause-hour",
    TrayPauseForever => "tray-pause-forever",
    TrayResume => "tray-resume",
    TraySignOut => "tray-sign-out",
    TrayQuit => "tray-quit",
    CliAbout => "cli-about",
    CliUsageHeading => "cli-usage-heading",
    CliOptionsHeading => "cli-options-heading",
    CliCommandsHeading => "cli-commands-heading",
    CliHelpHelp => "cli-help-help",
    CliVersionHelp => "cli-version-help",
    CliHiddenHelp => "cli-hidden-help",
    CliOpenTalkHelp => "cli-open-talk-help",
    CliReplyHelp => "cli-reply-help",
    CliLoginAbout => "cli-login-about",
    CliLoginServerHelp => "cli-login-server-help",
    CliLoginUserIdHelp => "cli-login-user-id-help",
    CliLogoutAbout => "cli-logout-about",
    CliStatusAbout => "cli-status-about",
    CliStatusJsonHelp => "cli-status-json-help",
    CliHistoryAbout => "cli-history-about",
    CliHistoryJsonHelp => "cli-history-json-help",
    CliHistorySearchHelp => "cli-history-search-help",
    CliHistoryLimitHelp => "cli-history-limit-help",
    ConfigParse => "config-parse",
    ConfigInvalid => "config-invalid",
    ConfigNoHome => "config-no-home",
    ConfigTokenHint => "config-token-hint",
    ConfigBadServer => "config-bad-server",
    ConfigHeartbeatZero => "config-heartbeat-zero",
    ConfigConnectionZero => "config-connection-zero",
    ConfigBackoffOrder => "config-backoff-order",
    ConfigBurstZero => "config-burst-zero",
    ConfigQuietHoursEmpty => "config-quiet-hours-empty",
    CliDaemonAbout => "cli-daemon-about",
    CliDaemonHelp => "cli-daemon-help",
    CliError => "cli-error",
    CliCannotStart => "cli-cannot-start",
    CliCannotStartApp => "cli-cannot-start-app",
    CliCannotStartEngine => "cli-cannot-start-engine",
    CliNoProfileLock => "cli-no-profile-lock",
    CliSignedOut => "cli-signed-out",
    CliSignedIn => "cli-signed-in",
    CliTokenUnreadable => "cli-token-unreadable",
    CliNoToken => "cli-no-token",
    CliLimitZero => "cli-limit-zero",
    CliNoTalks => "cli-no-talks",
    CliStatusState => "cli-status-state",
    CliStatusReason => "cli-status-reason",
    CliStatusNextTry => "cli-status-next-try",
    CliStatusProcess => "cli-status-process",
    CliStatusServer => "cli-status-server",
    CliStatusUser => "cli-status-user",
    CliStatusUnread => "cli-status-unread",
    CliProcessTrayApp => "cli-process-tray-app",
    CliProcessDaemon => "cli-process-daemon",
    CliProcessPid => "cli-process-pid",
    CliServerNone => "cli-server-none",
    CliUserNameId => "cli-user-name-id",
    CliUserId => "cli-user-id",
    CliUserNone => "cli-user-none",
    CliUserUnknown => "cli-user-unknown",
    CmdOutOfRange => "cmd-out-of-range",
    CmdTooLong => "cmd-too-long",
    CmdEmpty => "cmd-empty",
    CmdBadServer => "cmd-bad-server",
    CmdBadUserId => "cmd-bad-user-id",
    CmdAutostart => "cmd-autostart",
    CmdInterrupted => "cmd-interrupted",
    UiReply => "ui-reply",
    UiSend => "ui-send",
    UiReplyPlaceholder => "ui-reply-placeholder",
    UiMuteHour => "ui-mute-hour",
    UiMuteLonger => "ui-mute-longer",
    UiMuteEightHours => "ui-mute-eight-hours",
    UiMuteUntilUnmuted => "ui-mute-until-unmuted",
    UiOutgoingQueued => "ui-outgoing-queued",
    UiOutgoingSent => "ui-outgoing-sent",
    UiOutgoingFailed => "ui-outgoing-failed",
    UiNotificationsHeading => "ui-notifications-heading",
    UiSound => "ui-sound",
    UiQuietFrom => "ui-quiet-from",
    UiQuietTo => "ui-quiet-to",
    UiMutesHeading => "ui-mutes-heading",
    UiMutesNone => "ui-mutes-none",
    UiUnmute => "ui-unmute",
    UiMutedUntil => "ui-muted-until",
    UiMutedForever => "ui-muted-forever",
    UiFilterLabel => "ui-filter-label",
    UiFilterMe => "ui-filter-me",
    UiFilterAll => "ui-filter-all",
    UiToday => "ui-today",
    UiYesterday => "ui-yesterday",
    WhatSearch => "what-search",
    WhatRowBefore => "what-row-before",
    WhatPageSize => "what-page-size",
    WhatMarkList => "what-mark-list",
    WhatRow => "what-row",
    WhatServerUrl => "what-server-url",
    WhatToken => "what-token",
    WhatUserId => "what-user-id",
    WhatPauseMinutes => "what-pause-minutes",
    WhatHeartbeatInterval => "what-heartbeat-interval",
    WhatHeartbeatTimeout => "what-heartbeat-timeout",
    WhatReply => "what-reply",
    WhatMuteMinutes => "what-mute-minutes",
    WhatQuietHours => "what-quiet-hours",
    UiTitle => "ui-title",
    UiStarting => "ui-starting",
    UiTabHistory => "ui-tab-history",
    UiTabAccount => "ui-tab-account",
    UiTabLog => "ui-tab-log",
    UiSearch => "ui-search",
    UiHistoryLabel => "ui-history-label",
    UiHistoryEmpty => "ui-history-empty",
    UiSignInHeading => "ui-sign-in-heading",
    UiServer => "ui-server",
    UiToken => "ui-token",
    UiUserId => "ui-user-id",
    UiSignIn => "ui-sign-in",
    UiCheckingToken => "ui-checking-token",
    UiReconnect => "ui-reconnect",
    UiSignOut => "ui-sign-out",
    UiSettingsHeading => "ui-settings-heading",
    UiHeartbeatInterval => "ui-heartbeat-interval",
    UiHeartbeatTimeout => "ui-heartbeat-timeout",
    UiAutostart => "ui-autostart",
    UiLanguage => "ui-language",
    UiLanguageSystem => "ui-language-system",
    UiSave => "ui-save",
    UiSaved => "ui-saved",
    UiPauseHour => "ui-pause-hour",
    UiPauseForever => "ui-pause-forever",
    UiResume => "ui-resume",
    UiLogLabel => "ui-log-label",
    UiError => "ui-error",
    SignInDone => "sign-in-done",
    SignInDoneUserUnknown => "sign-in-done-user-unknown",
    UserIdSaved => "user-id-saved",
    CmdOutOfRangeSeconds => "cmd-out-of-range-seconds",
    CmdNotSeconds => "cmd-not-seconds",
    UiUserIdHeading => "ui-user-id-heading",
    UiUserIdExplain => "ui-user-id-explain",
    UiAdvanced => "ui-advanced",
    UiLanguageEn => "ui-language-en",
    UiLanguageZhCn => "ui-language-zh-cn",
}

/// A value for a message's variable: a text, or a number (plurals select on numbers).
#[derive(Clone, Debug, PartialEq)]
pub enum Arg<'a> {
    Text(&'a str),
    Number(f64),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(s)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(s)
    }
}

impl From<f64> for Arg<'_> {
    fn from(n: f64) -> Self {
        Arg::Number(n)
    }
}

macro_rules! number_args {
    ($($t:ty),*) => {
        $(impl From<$t> for Arg<'_> {
            #[allow(clippy::cast_precision_loss)]
            fn from(n: $t) -> Self {
                // Counts, sizes and pids: far below 2^53, where f64 is exact.
                Arg::Number(n as f64)
            }
        })*
    };
}
number_args!(u32, u64, usize, i64);

type Bundle = FluentBundle<FluentResource>;

const SOURCES: [(Lang, &str); 2] = [
    (Lang::En, include_str!("../locales/en/talkbell.ftl")),
    (Lang::ZhCn, include_str!("../locales/zh-CN/talkbell.ftl")),
];

/// The `.ftl` text of `lang`'s catalogue.
pub fn source(lang: Lang) -> &'static str {
    SOURCES.iter().find(|(l, _)| *l == lang).map_or("", |(_, s)| s)
}

static BUNDLES: LazyLock<Vec<Bundle>> = LazyLock::new(|| Lang::ALL.iter().map(|&l| bundle(l)).collect());

fn bundle(lang: Lang) -> Bundle {
    let locale = lang.tag().parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![locale]);
    bundle.set_use_isolating(false);
    if let Err(e) = bundle.add_builtins() {
        tracing::error!(error = ?e, "the catalogue's functions cannot be added");
    }
    // The catalogues are compiled in and checked by the tests: an error here is a bug,
    // logged, and the messages that did parse are used.
    let resource = FluentResource::try_new(source(lang).to_owned()).unwrap_or_else(|(resource, errors)| {
        tracing::error!(lang = lang.tag(), ?errors, "the catalogue has syntax errors");
        resource
    });
    if let Err(errors) = bundle.add_resource(resource) {
        tracing::error!(lang = lang.tag(), ?errors, "the catalogue has duplicate messages");
    }
    bundle
}

/// `msg` in `lang`, with its variables from `args` (name, value).
pub fn text_in(lang: Lang, msg: Msg, args: &[(&str, Arg<'_>)]) -> String {
    let Some(bundle) = BUNDLES.get(usize::from(lang.index())) else { return msg.id().to_owned() };
    let Some(pattern) = bundle.get_message(msg.id()).and_then(|m| m.value()) else {
        tracing::error!(key = msg.id(), lang = lang.tag(), "a message is missing from the catalogue");
        return msg.id().to_owned();
    };
    let mut fluent_args = FluentArgs::with_capacity(args.len());
    for (name, value) in args {
        let value = match value {
            Arg::Text(s) => FluentValue::from(*s),
            Arg::Number(n) => FluentValue::from(*n),
        };
        fluent_args.set(*name, value);
    }
    let mut errors = Vec::new();
    let out = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors).into_owned();
    if !errors.is_empty() {
        // The errors name variables, never their values (which may be a talk).
        tracing::error!(key = msg.id(), lang = lang.tag(), ?errors, "a message was formatted with errors");
        debug_assert!(false, "{}: {errors:?}", msg.id());
    }
    out
}

/// `msg` in the process's language.
pub fn text(msg: Msg, args: &[(&str, Arg<'_>)]) -> String {
    text_in(current(), msg, args)
}

/// `msg`, which has no variables, in the process's language.
pub fn t(msg: Msg) -> String {
    text(msg, &[])
}

/// The window's messages in `lang` (every `ui-…` key), by id: the page fills its
/// elements from them.
pub fn window_texts(lang: Lang) -> BTreeMap<&'static str, String> {
    Msg::ALL.iter().filter(|m| m.id().starts_with("ui-")).map(|&m| (m.id(), text_in(lang, m, &[]))).collect()
}

#[cfg(test)]
mod tests;
