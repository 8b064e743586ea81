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

## The connection log

log-offline = offline ({ $reason }); next attempt in { NUMBER($seconds, minimumFractionDigits: 1) } s
log-signed-out-because = signed out: { $reason }
log-dropped = dropped a frame: { $error }
log-oversized = refused a message of { $size } bytes (limit { $limit }); reconnecting
log-store-failed = could not store a talk: { $error }
log-signed-in = signed in as { $user }
log-queue-reset = the server lost its queue: talks sent while it was lost may be missing

## The tray menu

tray-open = Open Talkbell
tray-reconnect = Reconnect now
tray-pause = Pause notifications
tray-pause-hour = For 1 hour
tray-pause-forever = Until resumed
tray-resume = Resume notifications
tray-sign-out = Sign out
tray-quit = Quit

## The command line (talkbell, talkbell-daemon)

cli-about = Rings when someone talks to you.
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
what-heartbeat-interval = the heartbeat interval (ms)
what-heartbeat-timeout = the heartbeat timeout (ms)

## The window (ui/index.html, ui/app.js)

ui-title = Talkbell
ui-starting = Starting…
ui-tab-history = History
ui-tab-account = Account
ui-tab-log = Log
ui-search = Search talks
ui-history-label = Talks, newest first
ui-history-empty = No talks yet.
ui-sign-in-heading = Sign in
ui-server = Server
ui-token = Token
ui-user-id = User id
ui-user-id-hint = only for servers without a welcome
ui-sign-in = Sign in
ui-checking-token = Checking the token with the server…
ui-reconnect = Reconnect now
ui-sign-out = Sign out
ui-settings-heading = Settings
ui-heartbeat-interval = Heartbeat every (ms)
ui-heartbeat-timeout = Dead after no answer for (ms)
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
