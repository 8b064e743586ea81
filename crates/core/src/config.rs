//! The user's settings: TOML in the platform's config dir. Never the token (that lives
//! in the keyring, see `secrets`).
//!
//! A running engine has one owner of the file, a [`ConfigStore`]: readers get a copy,
//! and every change is one [`ConfigStore::update`] that holds the store's lock across
//! the save, so a sign-in and a new heartbeat setting never overwrite each other.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::i18n::{self, t, text, Lang, LanguageSetting, Msg};
use crate::notify::quiet::{Hush, Mute, QuietHours};
use crate::notify::NotifySettings;
use crate::protocol::UserId;
use crate::session::Timing;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The file is not TOML, or not the config's shape: where, and what the TOML library
    /// says (in its words); the message says to fix or remove that line.
    #[error("{}", text(Msg::ConfigParse, &[
        ("path", path.display().to_string().as_str().into()),
        ("line", line.to_string().as_str().into()),
        ("column", column.to_string().as_str().into()),
        ("message", message.as_str().into()),
    ]))]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    /// The file reads, but a value cannot be used.
    #[error("{}", text(Msg::ConfigInvalid, &[
        ("path", path.display().to_string().as_str().into()),
        ("problem", problem.to_string().as_str().into()),
    ]))]
    Invalid { path: PathBuf, problem: ConfigProblem },
    /// The settings cannot be written as TOML (the library's words).
    #[error("{path}: {message}")]
    Unwritable { path: PathBuf, message: String },
    #[error("{}", t(Msg::ConfigNoHome))]
    NoHome,
}

/// A value of the config that cannot be used, and what to do, in the user's language.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("{}", text(Msg::ConfigBadServer, &[("url", format!("{url:?}").as_str().into()), ("reason", reason.to_string().as_str().into())]))]
    BadServer { url: String, reason: BadServerUrl },
    #[error("{}", t(Msg::ConfigHeartbeatZero))]
    HeartbeatZero,
    #[error("{}", t(Msg::ConfigConnectionZero))]
    ConnectionZero,
    #[error("{}", text(Msg::ConfigBackoffOrder, &[("min", min.to_string().as_str().into()), ("max", max.to_string().as_str().into())]))]
    BackoffOrder { min: u64, max: u64 },
    #[error("{}", t(Msg::ConfigBurstZero))]
    BurstZero,
    #[error("{}", text(Msg::ConfigQuietHoursEmpty, &[("at", at.as_str().into())]))]
    QuietHoursEmpty { at: String },
}

/// Where Talkbell keeps its files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
    pub history_db: PathBuf,
}

impl Paths {
    /// The platform's dirs (`$XDG_CONFIG_HOME/talkbell`, `$XDG_DATA_HOME/talkbell` on
    /// Linux), unless `TALKBELL_CONFIG_DIR` / `TALKBELL_DATA_DIR` say otherwise.
    pub fn from_env() -> Result<Paths, ConfigError> {
        let config_override = std::env::var_os("TALKBELL_CONFIG_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        let data_override = std::env::var_os("TALKBELL_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        let dirs = directories::ProjectDirs::from("", "", "talkbell");
        let config_dir = match (config_override, &dirs) {
            (Some(dir), _) => dir,
            (None, Some(d)) => d.config_dir().to_path_buf(),
            (None, None) => return Err(ConfigError::NoHome),
        };
        let data_dir = match (data_override, &dirs) {
            (Some(dir), _) => dir,
            (None, Some(d)) => d.data_dir().to_path_buf(),
            (None, None) => return Err(ConfigError::NoHome),
        };
        Ok(Paths::with_dirs(config_dir, data_dir))
    }

    pub fn with_dirs(config_dir: PathBuf, data_dir: PathBuf) -> Paths {
        Paths { config_file: config_dir.join("config.toml"), history_db: data_dir.join("history.sqlite3"), data_dir }
    }

    /// Both dirs under one root, for tests.
    pub fn in_dir(root: &Path) -> Paths {
        Paths::with_dirs(root.join("config"), root.join("data"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `ws://` or `wss://` URL of the talk server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Names this device to the server; made on first start.
    pub device_uuid: Uuid,
    /// Who the signed-in user is (from the welcome, or given at login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The language of every word Talkbell shows: `system` (the locale's), `en`, `zh-CN`.
    #[serde(default)]
    pub language: LanguageSetting,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    #[serde(default)]
    pub connection: ConnectionConfig,
    #[serde(default)]
    pub notifications: NotificationConfig,
    #[serde(default)]
    pub history: HistoryConfig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    pub interval_ms: u64,
    pub timeout_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig { interval_ms: 5_000, timeout_ms: 5_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    pub connect_timeout_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub healthy_after_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            connect_timeout_ms: 10_000,
            backoff_min_ms: 1_000,
            backoff_max_ms: 60_000,
            healthy_after_ms: 30_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    pub enabled: bool,
    pub burst_count: usize,
    pub burst_window_ms: u64,
    /// Popups play the desktop theme's message sound.
    pub sound: bool,
    /// A daily quiet period in local time (`from = "22:00"`, `to = "08:00"`): talks are
    /// stored, and one popup tells of them when it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quiet_hours: Option<QuietHours>,
    /// Senders whose talks never pop up (they are stored and counted as unread).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mutes: Vec<Mute>,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            enabled: true,
            burst_count: 3,
            burst_window_ms: 2_000,
            sound: true,
            quiet_hours: None,
            mutes: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    pub max_rows: usize,
    pub max_age_days: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { max_rows: 100_000, max_age_days: 365 }
    }
}

/// Why a server URL cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadServerUrl {
    #[error("{}", text(Msg::UrlNotAUrl, &[("detail", detail.into())]))]
    NotAUrl { detail: String },
    #[error("{}", text(Msg::UrlWrongScheme, &[("scheme", scheme.into())]))]
    WrongScheme { scheme: String },
    #[error("{}", t(Msg::UrlNoScheme))]
    NoScheme,
    #[error("{}", t(Msg::UrlNoHost))]
    NoHost,
}

/// `Ok` for a `ws://` or `wss://` URL with a host; otherwise why not.
pub fn validate_server_url(url: &str) -> Result<(), BadServerUrl> {
    let uri: tokio_tungstenite::tungstenite::http::Uri =
        url.parse().map_err(|e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| BadServerUrl::NotAUrl {
            detail: e.to_string(),
        })?;
    match uri.scheme_str() {
        Some("ws") | Some("wss") => {}
        Some(other) => return Err(BadServerUrl::WrongScheme { scheme: other.to_owned() }),
        None => return Err(BadServerUrl::NoScheme),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(BadServerUrl::NoHost);
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io { path: path.to_path_buf(), source }
}

impl Config {
    /// A fresh config with a new device uuid.
    pub fn new() -> Config {
        Config {
            server: None,
            device_uuid: Uuid::new_v4(),
            user_id: None,
            language: LanguageSetting::default(),
            heartbeat: HeartbeatConfig::default(),
            connection: ConnectionConfig::default(),
            notifications: NotificationConfig::default(),
            history: HistoryConfig::default(),
        }
    }

    /// Reads the file, or on first start writes a new one (with a new device uuid). The
    /// folder and the file are made private to the user if they were not.
    pub fn load_or_create(path: &Path) -> Result<Config, ConfigError> {
        if path.exists() {
            let dir = path.parent().unwrap_or(Path::new("."));
            private_dir(dir).map_err(io(dir))?;
            narrow_file_mode(path);
        }
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let config = Config::new();
                config.save(path)?;
                Ok(config)
            }
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Parses `text` read from `path`; errors name the file, line and column.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|span| line_column(text, span.start)).unwrap_or((1, 1));
            let mut message = e.message().to_owned();
            if message.contains("`token`") {
                message.push(' ');
                message.push_str(&t(Msg::ConfigTokenHint));
            }
            ConfigError::Parse { path: path.to_path_buf(), line, column, message }
        })?;
        config.validate().map_err(|problem| ConfigError::Invalid { path: path.to_path_buf(), problem })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigProblem> {
        if let Some(server) = &self.server {
            validate_server_url(server).map_err(|reason| ConfigProblem::BadServer { url: server.clone(), reason })?;
        }
        let h = &self.heartbeat;
        let c = &self.connection;
        if h.interval_ms == 0 || h.timeout_ms == 0 {
            return Err(ConfigProblem::HeartbeatZero);
        }
        if c.connect_timeout_ms == 0 || c.backoff_min_ms == 0 {
            return Err(ConfigProblem::ConnectionZero);
        }
        if c.backoff_min_ms > c.backoff_max_ms {
            return Err(ConfigProblem::BackoffOrder { min: c.backoff_min_ms, max: c.backoff_max_ms });
        }
        if self.notifications.burst_count == 0 {
            return Err(ConfigProblem::BurstZero);
        }
        if let Some(q) = self.notifications.quiet_hours.filter(|q| q.from == q.to) {
            return Err(ConfigProblem::QuietHoursEmpty { at: q.from.to_string() });
        }
        Ok(())
    }

    /// Writes the file atomically (a temporary file renamed over it), private to the user.
    /// Outside this crate the config is changed through [`ConfigStore::update`].
    pub(crate) fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate().map_err(|problem| ConfigError::Invalid { path: path.to_path_buf(), problem })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        private_dir(dir).map_err(io(dir))?;
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Unwritable { path: path.to_path_buf(), message: e.to_string() })?;
        let mut tmp = tempfile_in(dir).map_err(io(dir))?;
        tmp.1.write_all(text.as_bytes()).and_then(|_| tmp.1.sync_all()).map_err(io(&tmp.0))?;
        std::fs::rename(&tmp.0, path).map_err(io(path))?;
        Ok(())
    }

    /// The `language` of the file at `path`, for a process choosing its language before
    /// anything else: `system` when there is no file or it cannot be read (whatever reads
    /// the config next says why).
    pub fn language_at(path: &Path) -> LanguageSetting {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Config::parse(path, &text).map(|c| c.language).unwrap_or_default()
    }

    pub fn timing(&self) -> Timing {
        let ms = Duration::from_millis;
        Timing {
            heartbeat_interval: ms(self.heartbeat.interval_ms),
            heartbeat_timeout: ms(self.heartbeat.timeout_ms),
            connect_timeout: ms(self.connection.connect_timeout_ms),
            backoff_min: ms(self.connection.backoff_min_ms),
            backoff_max: ms(self.connection.backoff_max_ms),
            healthy_after: ms(self.connection.healthy_after_ms),
            ..Timing::default()
        }
    }

    pub fn notify_settings(&self) -> NotifySettings {
        NotifySettings {
            burst_count: self.notifications.burst_count,
            burst_window: Duration::from_millis(self.notifications.burst_window_ms),
            ..NotifySettings::default()
        }
    }

    /// Quiet hours, mutes and sound, in the system's time zone.
    pub fn hush(&self) -> Hush {
        let n = &self.notifications;
        Hush::new(n.quiet_hours, jiff::tz::TimeZone::system(), n.mutes.clone(), n.sound)
    }
}

/// [`i18n::choose`] with the `language` of this profile's config file
/// (`TALKBELL_CONFIG_DIR`, ...), `system` when it has none: what a binary calls first, so
/// that its help and its errors speak the language too.
pub fn choose_language() -> Lang {
    let setting = Paths::from_env().map(|p| Config::language_at(&p.config_file)).unwrap_or_default();
    i18n::choose(setting)
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

/// The one owner of a config file while an engine runs (see the module doc).
#[derive(Debug)]
pub struct ConfigStore {
    path: PathBuf,
    current: Mutex<Config>,
}

impl ConfigStore {
    /// [`Config::load_or_create`], kept by a store.
    pub fn load_or_create(path: &Path) -> Result<ConfigStore, ConfigError> {
        let config = Config::load_or_create(path)?;
        Ok(ConfigStore { path: path.to_path_buf(), current: Mutex::new(config) })
    }

    /// The file it owns.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config now (a copy).
    pub fn get(&self) -> Config {
        self.lock().clone()
    }

    /// Changes the config with `f` and saves it, the lock held from the read to the save.
    /// Nothing is written when `f` changes nothing. A change that cannot be saved is not
    /// kept either: the error is returned and the config stays as it was.
    pub fn update<T>(&self, f: impl FnOnce(&mut Config) -> T) -> Result<T, ConfigError> {
        let mut current = self.lock();
        let mut next = current.clone();
        let out = f(&mut next);
        if next != *current {
            next.save(&self.path)?;
            *current = next;
        }
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Config> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes `dir` (and any missing parent) and keeps it private to the user: on Unix a new
/// one is made 0700, and an existing one open to the group or others is narrowed to
/// 0700 (logged). A folder that cannot be narrowed (not ours) is logged and used as it is.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            narrow_mode(dir, 0o700);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Makes `path` as an empty file readable by the user alone (0600 on Unix) unless it
/// exists.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Narrows an existing file open to the group or others to 0600 (logged); an absent
/// one is left absent.
pub(crate) fn narrow_file_mode(path: &Path) {
    narrow_mode(path, 0o600);
}

#[cfg(unix)]
fn narrow_mode(path: &Path, private: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            was = format_args!("{mode:04o}"),
            now = format_args!("{private:04o}"),
            "made private to the user"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:04o}"),
            error = %e,
            "readable by others, and its mode cannot be changed"
        ),
    }
}

#[cfg(not(unix))]
fn narrow_mode(_path: &Path, _private: u32) {}

/// A new file beside the config, readable by the user alone.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".config.toml.{}.tmp", Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path)?;
    Ok((path, file))
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_makes_a_file_with_a_uuid_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("talkbell/config.toml");
        let first = Config::load_or_create(&path).unwrap();
        assert!(path.exists());
        let second = Config::load_or_create(&path).unwrap();
        assert_eq!(first.device_uuid, second.device_uuid);
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn round_trip_keeps_every_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut c = Config::new();
        c.server = Some("wss://talk.example.com/ws".into());
        c.user_id = Some("1".into());
        c.heartbeat.interval_ms = 25_000;
        c.notifications.enabled = false;
        c.save(&path).unwrap();
        assert_eq!(Config::load_or_create(&path).unwrap(), c);
    }

    #[test]
    fn the_language_is_system_unless_set_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(Config::language_at(&path), LanguageSetting::System, "no file");
        let old = "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n[heartbeat]\ninterval_ms = 5000\n";
        std::fs::write(&path, old).unwrap();
        assert_eq!(Config::load_or_create(&path).unwrap().language, LanguageSetting::System);
        let mut c = Config::load_or_create(&path).unwrap();
        c.language = LanguageSetting::ZhCn;
        c.save(&path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("language = \"zh-CN\""));
        assert_eq!(Config::language_at(&path), LanguageSetting::ZhCn);
        assert!(Config::parse(&path, &format!("language = \"fr\"\n{old}")).is_err());
    }

    #[test]
    fn defaults_are_the_protocol_timings() {
        let t = Config::new().timing();
        assert_eq!(t.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(t.heartbeat_timeout, Duration::from_secs(5));
        assert_eq!(t.connect_timeout, Duration::from_secs(10));
        assert_eq!(t.backoff_min, Duration::from_secs(1));
        assert_eq!(t.backoff_max, Duration::from_secs(60));
        assert_eq!(t.healthy_after, Duration::from_secs(30));
    }

    #[test]
    fn a_bad_file_names_the_file_and_line() {
        let path = Path::new("/home/u/.config/talkbell/config.toml");
        let text = "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n\n[heartbeat]\ninterval_ms = \"soon\"\n";
        let err = Config::parse(path, text).unwrap_err().to_string();
        assert!(err.starts_with("/home/u/.config/talkbell/config.toml:4:"), "{err}");

        let err = Config::parse(path, "device_uuid = \"x\"\nserver = \n").unwrap_err().to_string();
        assert!(err.contains("config.toml:2:"), "{err}");
    }

    #[test]
    fn unknown_fields_and_tokens_are_refused() {
        let path = Path::new("c.toml");
        let uuid = "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n";
        let err = Config::parse(path, &format!("{uuid}sever = \"ws://x\"\n")).unwrap_err().to_string();
        assert!(err.contains("c.toml:2:") && err.contains("sever"), "{err}");
        let err = Config::parse(path, &format!("{uuid}token = \"abc\"\n")).unwrap_err().to_string();
        assert!(err.contains("keyring"), "{err}");
    }

    #[test]
    fn invalid_values_are_clear_errors() {
        let path = Path::new("c.toml");
        let uuid = "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n";
        let err = Config::parse(path, &format!("{uuid}server = \"http://x/\"\n")).unwrap_err().to_string();
        assert!(err.contains("ws://"), "{err}");
        let err = Config::parse(path, &format!("{uuid}[connection]\nbackoff_min_ms = 5000\nbackoff_max_ms = 10\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("backoff_min_ms"), "{err}");
        let same = "[notifications.quiet_hours]\nfrom = \"22:00\"\nto = \"22:00\"\n";
        let err = Config::parse(path, &format!("{uuid}{same}")).unwrap_err().to_string();
        assert!(err.contains("quiet_hours start and end at the same time (22:00)"), "{err}");
        let late = "[notifications.quiet_hours]\nfrom = \"24:30\"\nto = \"08:00\"\n";
        let err = Config::parse(path, &format!("{uuid}{late}")).unwrap_err().to_string();
        assert!(err.contains("c.toml:3:") && err.contains("HH:MM"), "{err}");
    }

    #[test]
    fn quiet_hours_mutes_and_sound_are_written_as_a_person_would() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut c = Config::new();
        c.notifications.sound = false;
        c.notifications.quiet_hours = Some(QuietHours { from: "22:00".parse().unwrap(), to: "08:00".parse().unwrap() });
        let until = "2026-12-03T10:00:00Z".parse().unwrap();
        c.notifications.mutes = vec![
            Mute { sender: "2".into(), name: "wang2".into(), until: Some(until) },
            Mute { sender: "3".into(), name: "li3".into(), until: None },
        ];
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in ["sound = false", "from = \"22:00\"", "to = \"08:00\"", "until = \"2026-12-03T10:00:00Z\""] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        assert_eq!(Config::load_or_create(&path).unwrap(), c);
        // A file from before these settings loads with sound on and nothing quiet.
        let old = "device_uuid = \"5f0c2b1e-1111-4222-8333-444455556666\"\n[notifications]\nburst_count = 3\n";
        let old = Config::parse(&path, old).unwrap().notifications;
        assert!(old.sound && old.quiet_hours.is_none() && old.mutes.is_empty());
    }

    #[test]
    fn a_store_saves_each_update_and_keeps_an_unsaved_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let store = std::sync::Arc::new(ConfigStore::load_or_create(&path).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .update(|c| {
                            if i % 2 == 0 {
                                c.heartbeat.interval_ms += 1;
                            } else {
                                c.heartbeat.timeout_ms += 1;
                            }
                        })
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let saved = Config::load_or_create(&path).unwrap();
        assert_eq!((saved.heartbeat.interval_ms, saved.heartbeat.timeout_ms), (5_004, 5_004), "no update lost");
        assert_eq!(saved, store.get());
        let refused = store.update(|c| c.heartbeat.interval_ms = 0);
        assert!(matches!(refused, Err(ConfigError::Invalid { .. })), "{refused:?}");
        assert_eq!(store.get().heartbeat.interval_ms, 5_004, "an update that was not saved is not kept");
    }

    #[test]
    fn server_urls() {
        assert!(validate_server_url("ws://127.0.0.1:8765/").is_ok());
        assert!(validate_server_url("wss://talk.example.com/ws").is_ok());
        assert_eq!(
            validate_server_url("http://talk.example.com/"),
            Err(BadServerUrl::WrongScheme { scheme: "http".into() })
        );
        assert_eq!(validate_server_url("talk.example.com"), Err(BadServerUrl::NoScheme));
        assert!(validate_server_url("").is_err());
    }

    #[test]
    fn xdg_and_talkbell_dirs_are_respected() {
        // One test touches the environment, so no other test races it.
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_CONFIG_HOME", dir.path().join("cfg"));
        std::env::set_var("XDG_DATA_HOME", dir.path().join("dat"));
        std::env::remove_var("TALKBELL_CONFIG_DIR");
        std::env::remove_var("TALKBELL_DATA_DIR");
        let p = Paths::from_env().unwrap();
        assert_eq!(p.config_file, dir.path().join("cfg/talkbell/config.toml"));
        assert_eq!(p.history_db, dir.path().join("dat/talkbell/history.sqlite3"));
        std::env::set_var("TALKBELL_DATA_DIR", dir.path().join("elsewhere"));
        let p = Paths::from_env().unwrap();
        assert_eq!(p.history_db, dir.path().join("elsewhere/history.sqlite3"));
        std::env::remove_var("TALKBELL_DATA_DIR");
    }
}
