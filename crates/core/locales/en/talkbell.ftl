# Talkbell's English messages. Every key is one variant of talkbell_core::i18n::Msg, with
# the same variables in every language (the i18n tests check both).

## Popups (talkbell_core::notify)

# The title of a talk's popup; its body is the talk itself.
popup-talk-title = { $sender }
popup-summary-title = New messages
# A burst or a catch-up in one popup: $count talks from $senders people, most of them
# from $sender; $others is $senders - 1.
popup-summary-body =
    { $senders ->
        [1]
            { $count ->
                [one] { $count } new message from { $sender }
               *[other] { $count } new messages from { $sender }
            }
       *[other]
            { $count } new messages from { $sender } and { $others ->
                [one] 1 other
               *[other] { $others } others
            }
    }
popup-already-running-title = Talkbell is already running
popup-action-open = Open
popup-action-mark-read = Mark read
popup-action-mute = Mute { $name } for 1 hour
mute-eight-hours = Mute { $name } for 8 hours
mute-until-unmuted = Mute { $name } until unmuted
popup-action-reply = Reply
popup-reply-placeholder = Reply to { $name }
popup-reply-not-sent-title = Your reply to { $name } was not sent

## The status line, the tray's first line and `talkbell status` (status/words.rs)

state-connected = connected
state-connecting = connecting
state-authenticating = authenticating
state-offline = offline
state-signed-out = signed out
state-stopped = stopped
state-not-running = not running
status-connected-as = Connected as { $user }
status-connected = Connected
status-connecting = Connecting…
status-authenticating = Signing in…
status-reading-keyring = Reading the keyring…
status-waiting-for-keyring = Waiting for the keyring
status-signed-out = Signed out
status-offline-retrying = Offline, retrying in { $seconds } s
status-offline = Offline
status-tray = Talkbell: { $state }
status-unread = { $count } unread
status-paused = notifications paused
status-next-try = in { $seconds } s
status-advice-sign-in = not signed in: run `talkbell login --server URL`
status-advice-not-running = no tray app or daemon runs for this profile: start `talkbell` or `talkbell daemon`

## Why offline or signed out (session/reason.rs)

reason-bad-url = the server URL { $url } cannot be used: { $detail }
reason-dns = the server's name { $host } cannot be resolved: { $detail }
reason-refused = the server { $addr } refused the connection: is it running, and is the port right?
reason-unreachable = the server { $addr } cannot be reached: { $detail }
reason-timed-out = no connection within { $seconds } s
reason-cert-untrusted = the server's certificate is not trusted: { $why }
reason-cert-wrong-host = the server's certificate is for another host name: { $why }
reason-cert-not-for = it is not valid for { $expected }
reason-cert-valid-for = it is valid for { $presented }, not for { $expected }
reason-cert-expired = the server's certificate has expired
reason-cert-not-yet-valid = the server's certificate is not valid yet: is this computer's clock right?
reason-port-speaks-tls = this port speaks TLS: use wss://
reason-port-speaks-plain = this port does not speak TLS: use ws://
reason-tls = the TLS handshake failed: { $detail }
reason-http = the server answered HTTP { $status } instead of opening a WebSocket: is the URL's path right?
reason-handshake = the WebSocket handshake failed: { $detail }
reason-heartbeat-timeout = no answer to the heartbeat within { $seconds } s
reason-closed = the server closed the connection
reason-closed-code = the server closed the connection (code { $code })
reason-lost = the connection was lost: { $detail }
reason-oversized = refused a message of { $size } bytes (limit { $limit })
reason-history = the history cannot be used: { $error }
untrusted-unknown-issuer = unknown issuer (self-signed, or from a certificate authority not in the system store)
untrusted-revoked = it has been revoked
untrusted-bad-signature = its signature is not valid
untrusted-invalid-purpose = it is not meant for a TLS server
proxy-unreachable = the proxy { $proxy } cannot be reached: { $detail }
proxy-auth-required = the proxy { $proxy } asks for a user name and password (HTTP 407): put them in the proxy URL (http://user:password@host:port) of https_proxy
proxy-refused = the proxy { $proxy } refused to connect to { $target } (HTTP { $status })
proxy-bad-answer = the proxy { $proxy } did not answer the CONNECT with HTTP
proxy-unsupported = the proxy URL scheme { $scheme } is not supported: use an http:// proxy
signed-out-reading-keyring = reading the token from the keyring
signed-out-keyring-locked = the keyring is locked: unlock it to connect
signed-out-no-keyring = no keyring is available ({ $detail }): start one (GNOME Keyring, KWallet or KeePassXC with Secret Service enabled) to connect
signed-out-keyring-no-answer = the keyring does not answer: if it asks for its password, answer it to connect
signed-out-keyring-failed = the token cannot be read from the keyring: { $detail }
signed-out-no-persistent-keyring = no persistent keyring on this platform: sign in again after each start
refusal-http = the server refused the token (HTTP { $status })
refusal-close-words = the server refused the token: { $reason }
refusal-close-code = the server refused the token (close code { $code })
refusal-error = the server refused the token: { $message }

## Signing in (engine.rs)

engine-signed-out-meanwhile = signed out before the server took the token
engine-unreachable = could not reach the server: { $reason }
engine-stopped = could not reach the server: the session has stopped
engine-no-user-id = the server accepted the token but did not say who you are; sign in again with --user-id
engine-timeout = no answer from the server within { $seconds } s
engine-bad-server = invalid server URL { $url }: { $reason }

url-not-a-url = not a URL: { $detail }
url-wrong-scheme = the scheme must be ws:// or wss://, not { $scheme }://
url-no-scheme = the URL must start with ws:// or wss://
url-no-host = the URL has no host

## One Talkbell per profile, and the keyring (instance.rs, secrets.rs)

instance-daemon-running = talkbell-daemon is already running for this profile (pid { $pid }, data in { $profile }), and only one Talkbell may run per profile. Stop it with `systemctl --user stop talkbell-daemon` (or `kill { $pid }`), then start this again.
instance-tray-app-running = the Talkbell tray app is already running for this profile (pid { $pid }, data in { $profile }), and only one Talkbell may run per profile. Quit it from its tray menu (Quit), then start this again.
instance-other-running = another Talkbell process is already running for this profile (data in { $profile }), and only one Talkbell may run per profile.
secrets-no-keyring = no keyring is available ({ $detail }). Talkbell keeps your token only in the system keyring: start one (GNOME Keyring, KWallet or KeePassXC with Secret Service enabled) in your desktop session, then sign in again
secrets-locked = the keyring is locked and was not unlocked. Unlock it (for example in "Passwords and Keys", or by logging in again) and retry
secrets-not-found = no token is stored for { $server }: sign in to this server
secrets-no-answer = the keyring did not answer within { $seconds } s. If it is asking for its password, answer the prompt and retry
secrets-no-persistent-store = no persistent keyring on this platform: the token would be lost at restart. Talkbell stores tokens only in the Secret Service (Linux), the Keychain (macOS) or the Credential Manager (Windows)
secrets-access = the keyring refused the request: { $error }

## The history and the notification service (history.rs, session/mod.rs, notify/mod.rs)

history-open = cannot open the history at { $path }: { $error }
history-dir = cannot create { $path }: { $error }
history-thread = cannot start the history's writer thread: { $error }
history-writer-gone = the history's writer has stopped
history-disk-full = the disk is full: the history cannot grow (free some space; nothing stored so far is lost)
history-busy = the history is busy in another process; try again
history-corrupt = the history file is damaged: { $detail }
history-other = history: { $error }
history-stopped = the history has stopped: restart Talkbell
history-failed = the history failed: { $detail }
notify-no-service = no notification service is running ({ $detail }): notifications need a notification daemon in the desktop session (every major desktop has one; on a bare window manager start dunst or mako)
notify-bus = cannot reach the D-Bus session bus ({ $detail }): notifications need the desktop session's bus (DBUS_SESSION_BUS_ADDRESS); log in to a desktop session, or start one with dbus-run-session
notify-refused = the notification service refused the notification ({ $name }: { $message }); if this repeats, check the notification daemon's own log
notify-no-answer = the notification service did not answer within { $seconds } s; it may be stuck: restart the notification daemon
notify-failed = the notification could not be shown: { $error }

## The connection log

log-offline = offline ({ $reason }); next attempt in { NUMBER($seconds, minimumFractionDigits: 1) } s
log-signed-out-because = signed out: { $reason }
log-dropped = dropped a frame: { $error }
log-oversized = refused a message of { $size } bytes (limit { $limit }); reconnecting
log-store-failed = could not store a talk: { $error }
log-signed-in = signed in as { $user }
log-queue-reset = the server lost its queue: talks sent while it was lost may be missing
log-reply-refused = a reply was refused: { $error }
reply-empty = The reply is empty: write something first.
reply-too-long = The reply is { $chars } characters long; a server takes at most { $max }: shorten it.
reply-signed-out = Not signed in: sign in to reply.
reply-unknown-user = The server has not said who you are yet: wait until connected.
reply-not-offered = This server does not take replies.
reply-not-kept = The reply could not be kept: { $error }
reply-stopped = Talkbell is stopping; the reply was not kept.
reply-failed-not-offered = this server does not take replies
bad-day-time = “{ $text }” is not a time of day: write it as HH:MM, 24-hour (for example 22:00 or 07:30).

## The tray menu

tray-open = Open Talkbell
tray-reconnect = Reconnect now
tray-pause = Pause notifications
tray-recent = Recent
tray-pause-hour = For 1 hour
tray-pause-forever = Until resumed
tray-resume = Resume notifications
tray-sign-out = Sign out
tray-quit = Quit

## The command line (talkbell, talkbell-daemon)

cli-about = Rings when someone talks to you.
cli-usage-heading = Usage:
cli-options-heading = Options
cli-commands-heading = Commands
cli-help-help = Print help
cli-version-help = Print version
cli-hidden-help = Start in the tray only, with no window (as at login).
cli-open-talk-help = Open the window at this talk (its id in the history). The headless daemon starts the app so from a popup's Open or Reply, and stops: the app waits for the profile.
cli-reply-help = With --open-talk: the talk's reply box open.
cli-login-about = Sign in: reads the token from standard input, checks it against the server, and keeps it in the OS keyring.
cli-login-server-help = The talk server, ws:// or wss://.
cli-login-user-id-help = Your user id, for servers that do not send a welcome.
cli-logout-about = Sign out: removes the token from the keyring.
cli-status-about = Prints the state of this profile's tray app or daemon (why offline or signed out), the server, the user and the unread count.
cli-status-json-help = One JSON object instead of lines of text (keys: running, process, state, reason, retry_at_ms, server, user, user_name, unread).
cli-history-about = Prints the history, newest first.
cli-history-json-help = One JSON array instead of lines of text.
cli-history-search-help = Only talks matching these words.
cli-history-limit-help = At most this many.

cli-daemon-about = Talkbell without a window: the connection, the history and popups, until SIGTERM.
cli-daemon-help =
    Environment:
      TALKBELL_CONFIG_DIR  the config dir (default $XDG_CONFIG_HOME/talkbell)
      TALKBELL_DATA_DIR    the data dir (default $XDG_DATA_HOME/talkbell)
      RUST_LOG             the log filter (logs go to standard error)

    One Talkbell runs per profile (these two dirs): with the tray app or another daemon
    running, this exits with code 75 saying which one runs. Sign in first with
    `talkbell login --server URL`; `talkbell status` shows the state.
cli-error = { $program }: { $error }
cli-cannot-start = cannot start: { $error }
cli-cannot-start-app = cannot start the desktop app
cli-cannot-start-engine = cannot start
cli-no-profile-lock = cannot take the profile's lock
cli-signed-out = Signed out; the token is removed from the keyring.
cli-signed-in = Signed in to { $server } as user { $user }; the token is in the keyring.
cli-token-unreadable = could not read the token from standard input
cli-no-token = no token on standard input
cli-limit-zero = --limit must be at least 1
cli-no-talks = (no talks yet)
cli-status-state = State:
cli-status-reason = Reason:
cli-status-next-try = Next try:
cli-status-process = Process:
cli-status-server = Server:
cli-status-user = User:
cli-status-unread = Unread:
cli-process-tray-app = the tray app (talkbell)
cli-process-daemon = talkbell-daemon
cli-process-pid = { $process }, pid { $pid }
cli-server-none = none (not signed in)
cli-user-name-id = { $name } (id { $id })
cli-user-id = id { $id }
cli-user-none = none
cli-user-unknown = unknown: this server doesn't say who you are (set your user id in the window, or sign in again with `talkbell login --user-id ID`)

## The config file's errors (config.rs)

config-parse =
    { $path }:{ $line }:{ $column }: { $message }
      Fix line { $line } of this file (or delete the line to use the default), then start Talkbell again.
config-invalid =
    { $path }: { $problem }
      Fix that setting in this file (or delete it to use the default), then start Talkbell again.
config-no-home = no home directory: set HOME, or TALKBELL_CONFIG_DIR and TALKBELL_DATA_DIR
config-token-hint = (tokens are kept in the OS keyring, never in this file: use `talkbell login`)
config-bad-server = server { $url }: { $reason }
config-heartbeat-zero = heartbeat interval_ms and timeout_ms must be above 0
config-connection-zero = connection connect_timeout_ms and backoff_min_ms must be above 0
config-backoff-order = connection backoff_min_ms ({ $min }) is above backoff_max_ms ({ $max })
config-burst-zero = notifications burst_count must be at least 1
config-quiet-hours-empty = notifications quiet_hours start and end at the same time ({ $at }): give two different times, or remove quiet_hours

## The window's commands: what went wrong (src-tauri/gui/error.rs)

cmd-out-of-range = { $what } must be from { $min } to { $max }, not { $got }
cmd-too-long = { $what } is too long: { $len }, at most { $max }
cmd-empty = { $what } is empty
cmd-bad-server = the server URL "{ $url }" is not usable: { $reason }
cmd-bad-user-id = the user id is not usable: { $reason }
cmd-autostart = start at login: { $error }
cmd-interrupted = the request could not finish: { $error }
what-search = the search
what-row-before = the row to list before
what-page-size = the page size
what-mark-list = the list of talks to mark read
what-row = a talk's row
what-server-url = the server URL
what-token = the token
what-user-id = the user id
what-pause-minutes = the pause in minutes
what-heartbeat-interval = the heartbeat interval
what-heartbeat-timeout = the time to wait for an answer
what-reply = the reply
what-mute-minutes = the mute in minutes
what-quiet-hours = the start and the end of quiet hours

## The window (ui/index.html, ui/app.js)

ui-title = Talkbell
ui-starting = Starting…
ui-tab-history = History
ui-tab-account = Account
ui-tab-log = Log
ui-search = Search talks
ui-history-label = Talks, newest first
ui-history-empty = No talks yet. When someone talks to you, it pops up and is kept here. Not signed in? Open Account and sign in with your server and token.
ui-sign-in-heading = Sign in
ui-server = Server
ui-token = Token
ui-user-id = Your user id
ui-sign-in = Sign in
ui-checking-token = Checking the token with the server…
ui-reconnect = Reconnect now
ui-sign-out = Sign out
ui-settings-heading = Settings
ui-heartbeat-interval = Heartbeat after this many seconds without a word from the server
ui-heartbeat-timeout = Reconnect after this many seconds without an answer
ui-autostart = Start at login
ui-language = Language
ui-language-system = Same as the system
ui-save = Save
ui-saved = Saved; new timings apply from the next connection.
ui-pause-hour = Pause notifications 1 hour
ui-pause-forever = Pause until resumed
ui-resume = Resume notifications
ui-log-label = Connection events
ui-error = error:
sign-in-done = Signed in as user { $user }.
ui-language-en = English
ui-language-zh-cn = 简体中文
ui-reply = Reply
ui-send = Send
ui-reply-placeholder = Write a reply (Enter sends)
ui-mute-hour = Mute 1 hour
ui-mute-longer = Mute longer…
ui-mute-eight-hours = for 8 hours
ui-mute-until-unmuted = until unmuted
ui-outgoing-queued = waiting to send
ui-outgoing-sent = sent
ui-outgoing-failed = not sent
ui-notifications-heading = Notifications
ui-sound = Play a sound
ui-quiet-from = Quiet hours from
ui-quiet-to = to
ui-mutes-heading = Muted senders
ui-mutes-none = Nobody is muted.
ui-unmute = Unmute
ui-muted-until = until
ui-muted-forever = until unmuted
ui-filter-label = Which talks
ui-filter-me = For me
ui-filter-all = Everything
ui-today = Today
ui-yesterday = Yesterday
status-connected-user-unknown = Connected · this server doesn't say who you are
engine-user-id-from-server = this server says who you are, so it needs no user id
sign-in-done-user-unknown = Signed in. This server doesn't tell Talkbell who you are: enter your user id below.
user-id-saved = Saved: talks to user { $user } are yours.
cmd-out-of-range-seconds = { $what } must be from { $min } to { $max } seconds, not { $got }
cmd-not-seconds = { $what } must be a number of seconds, for example 5 or 2.5
ui-user-id-heading = Who you are
ui-user-id-explain = This server doesn't tell Talkbell who you are. Enter your user id (the id your team's server gives you) so Talkbell knows which talks are for you.
ui-advanced = Advanced
