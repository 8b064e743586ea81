# Talkbell 的简体中文消息。每个键都是 talkbell_core::i18n::Msg 的一个变体，各语言的变量相同
# （i18n 的测试会检查）。

## 弹窗（talkbell_core::notify）

# 一条消息的弹窗标题；正文就是消息本身。
popup-talk-title = { $sender } 对你说
popup-summary-title = 新消息
# 一阵消息合成一个弹窗：$senders 人发来 $count 条，$sender 发得最多；$others 为 $senders - 1。
popup-summary-body =
    { $others ->
        [0] { $sender } 发来 { $count } 条消息
       *[other] { $sender } 等 { $senders } 人发来 { $count } 条消息
    }
popup-already-running-title = Talkbell 已在运行
popup-action-open = 打开
popup-action-mark-read = 标为已读
popup-action-mute = 1 小时内不提醒 { $name }
mute-eight-hours = 8 小时内不提醒 { $name }
mute-until-unmuted = 不再提醒 { $name }，直到手动恢复
popup-action-reply = 回复
popup-reply-placeholder = 回复 { $name }
popup-reply-not-sent-title = 你给 { $name } 的回复没有发出

## 状态栏、托盘第一行和 `talkbell status`（status/words.rs）

state-connected = 已连接
state-connecting = 正在连接
state-authenticating = 正在验证
state-offline = 离线
state-signed-out = 未登录
state-stopped = 已停止
state-not-running = 未运行
status-connected-as = 已连接，当前用户 { $user }
status-connected = 已连接
status-connecting = 正在连接…
status-authenticating = 正在登录…
status-reading-keyring = 正在读取密钥环…
status-waiting-for-keyring = 正在等待密钥环
status-signed-out = 未登录
status-offline-retrying = 离线，{ $seconds } 秒后重试
status-offline = 离线
status-tray = Talkbell：{ $state }
status-unread = { $count } 条未读
status-paused = 通知已暂停
status-next-try = { $seconds } 秒后
status-advice-sign-in = 尚未登录：请运行 `talkbell login --server URL`
status-advice-not-running = 此配置没有运行中的托盘程序或后台服务：请启动 `talkbell` 或 `talkbell daemon`

## 离线或未登录的原因（session/reason.rs）

reason-bad-url = 服务器 URL { $url } 无法使用：{ $detail }
reason-dns = 无法解析服务器名称 { $host }：{ $detail }
reason-refused = 服务器 { $addr } 拒绝了连接：它在运行吗？端口对吗？
reason-unreachable = 无法连接到服务器 { $addr }：{ $detail }
reason-timed-out = { $seconds } 秒内未能建立连接
reason-cert-untrusted = 服务器的证书不受信任：{ $why }
reason-cert-wrong-host = 服务器的证书属于另一个主机名：{ $why }
reason-cert-not-for = 它对 { $expected } 无效
reason-cert-valid-for = 它适用于 { $presented }，而不是 { $expected }
reason-cert-expired = 服务器的证书已过期
reason-cert-not-yet-valid = 服务器的证书尚未生效：这台电脑的时钟对吗？
reason-port-speaks-tls = 此端口使用 TLS：请用 wss://
reason-port-speaks-plain = 此端口不使用 TLS：请用 ws://
reason-tls = TLS 握手失败：{ $detail }
reason-http = 服务器返回了 HTTP { $status }，而没有打开 WebSocket：URL 的路径对吗？
reason-handshake = WebSocket 握手失败：{ $detail }
reason-heartbeat-timeout = { $seconds } 秒内没有收到心跳应答
reason-closed = 服务器关闭了连接
reason-closed-code = 服务器关闭了连接（代码 { $code }）
reason-lost = 连接已断开：{ $detail }
reason-oversized = 拒收了一条 { $size } 字节的消息（上限 { $limit }）
reason-history = 无法使用历史记录：{ $error }
untrusted-unknown-issuer = 签发者未知（自签名，或来自不在系统证书库中的证书颁发机构）
untrusted-revoked = 它已被吊销
untrusted-bad-signature = 它的签名无效
untrusted-invalid-purpose = 它不能用于 TLS 服务器
proxy-unreachable = 无法连接到代理 { $proxy }：{ $detail }
proxy-auth-required = 代理 { $proxy } 要求用户名和密码（HTTP 407）：请把它们写进 https_proxy 的代理 URL（http://user:password@host:port）
proxy-refused = 代理 { $proxy } 拒绝连接到 { $target }（HTTP { $status }）
proxy-bad-answer = 代理 { $proxy } 没有用 HTTP 回应 CONNECT
proxy-unsupported = 不支持代理 URL 协议 { $scheme }：请使用 http:// 代理
signed-out-reading-keyring = 正在从密钥环读取令牌
signed-out-keyring-locked = 密钥环已锁定：解锁后即可连接
signed-out-no-keyring = 没有可用的密钥环（{ $detail }）：请启动一个（GNOME Keyring、KWallet 或启用了 Secret Service 的 KeePassXC）以便连接
signed-out-keyring-no-answer = 密钥环没有应答：如果它在询问密码，请输入后即可连接
signed-out-keyring-failed = 无法从密钥环读取令牌：{ $detail }
signed-out-no-persistent-keyring = 此平台没有持久的密钥环：每次启动后都需重新登录
refusal-http = 服务器拒绝了令牌（HTTP { $status }）
refusal-close-words = 服务器拒绝了令牌：{ $reason }
refusal-close-code = 服务器拒绝了令牌（关闭代码 { $code }）
refusal-error = 服务器拒绝了令牌：{ $message }

## 登录（engine.rs）

engine-signed-out-meanwhile = 服务器接受令牌之前已退出登录
engine-unreachable = 无法连接到服务器：{ $reason }
engine-stopped = 无法连接到服务器：会话已停止
engine-no-user-id = 服务器接受了令牌，但没有告知你是谁；请用 --user-id 重新登录
engine-timeout = 服务器在 { $seconds } 秒内没有应答
engine-bad-server = 无效的服务器 URL { $url }：{ $reason }

url-not-a-url = 不是 URL：{ $detail }
url-wrong-scheme = 协议必须是 ws:// 或 wss://，而不是 { $scheme }://
url-no-scheme = URL 必须以 ws:// 或 wss:// 开头
url-no-host = URL 中没有主机

## 每个配置只运行一个 Talkbell，以及密钥环（instance.rs、secrets.rs）

instance-daemon-running = 此配置已有 talkbell-daemon 在运行（PID { $pid }，数据在 { $profile }），每个配置只能运行一个 Talkbell。请用 `systemctl --user stop talkbell-daemon`（或 `kill { $pid }`）停止它，然后再启动本程序。
instance-tray-app-running = 此配置已有 Talkbell 托盘程序在运行（PID { $pid }，数据在 { $profile }），每个配置只能运行一个 Talkbell。请从它的托盘菜单中退出（退出），然后再启动本程序。
instance-other-running = 此配置已有另一个 Talkbell 进程在运行（数据在 { $profile }），每个配置只能运行一个 Talkbell。
secrets-no-keyring = 没有可用的密钥环（{ $detail }）。Talkbell 只把令牌保存在系统密钥环中：请在桌面会话中启动一个（GNOME Keyring、KWallet 或启用了 Secret Service 的 KeePassXC），然后重新登录
secrets-locked = 密钥环已锁定且未被解锁。请解锁它（例如在“密码和密钥”中，或重新登录系统）后重试
secrets-not-found = 没有为 { $server } 保存令牌：请登录此服务器
secrets-no-answer = 密钥环在 { $seconds } 秒内没有应答。如果它在询问密码，请回应后重试
secrets-no-persistent-store = 此平台没有持久的密钥环：令牌会在重启后丢失。Talkbell 只把令牌保存在 Secret Service（Linux）、钥匙串（macOS）或凭据管理器（Windows）中
secrets-access = 密钥环拒绝了请求：{ $error }

## 历史记录和通知服务（history.rs、session/mod.rs、notify/mod.rs）

history-open = 无法打开位于 { $path } 的历史记录：{ $error }
history-dir = 无法创建 { $path }：{ $error }
history-thread = 无法启动历史记录的写入线程：{ $error }
history-writer-gone = 历史记录的写入线程已停止
history-disk-full = 磁盘已满：历史记录无法增长（请释放一些空间；已保存的内容不会丢失）
history-busy = 历史记录正被另一个进程占用；请重试
history-corrupt = 历史记录文件已损坏：{ $detail }
history-other = 历史记录：{ $error }
history-stopped = 历史记录已停止：请重启 Talkbell
history-failed = 历史记录出错：{ $detail }
notify-no-service = 没有运行中的通知服务（{ $detail }）：通知需要桌面会话中的通知守护进程（主流桌面都有；在单纯的窗口管理器下请启动 dunst 或 mako）
notify-bus = 无法连接 D-Bus 会话总线（{ $detail }）：通知需要桌面会话的总线（DBUS_SESSION_BUS_ADDRESS）；请登录桌面会话，或用 dbus-run-session 启动一个
notify-refused = 通知服务拒绝了这条通知（{ $name }：{ $message }）；如果反复出现，请查看通知守护进程自己的日志
notify-no-answer = 通知服务在 { $seconds } 秒内没有应答，可能已卡住：请重启通知守护进程
notify-failed = 无法显示通知：{ $error }

## 连接日志

log-offline = 离线（{ $reason }）；{ NUMBER($seconds, minimumFractionDigits: 1) } 秒后再次尝试
log-signed-out-because = 已退出登录：{ $reason }
log-dropped = 丢弃了一帧：{ $error }
log-oversized = 拒收了一条 { $size } 字节的消息（上限 { $limit }）；正在重新连接
log-store-failed = 无法保存消息：{ $error }
log-signed-in = 已登录为 { $user }
log-queue-reset = 服务器丢失了消息队列：期间发送的消息可能缺失
log-reply-refused = 回复被拒绝：{ $error }
reply-empty = 回复是空的：请先写点内容。
reply-too-long = 回复有 { $chars } 个字符，服务器最多接受 { $max } 个：请缩短。
reply-signed-out = 尚未登录：登录后才能回复。
reply-unknown-user = 服务器还没告知你的身份：请等连接上后再试。
reply-not-offered = 这个服务器不支持回复。
reply-not-kept = 回复未能保存：{ $error }
reply-stopped = Talkbell 正在退出，回复未保存。
reply-failed-not-offered = 这个服务器不支持回复
bad-day-time = “{ $text }”不是时间：请按 24 小时制写成 HH:MM（例如 22:00 或 07:30）。

## 托盘菜单

tray-open = 打开 Talkbell
tray-reconnect = 立即重新连接
tray-pause = 暂停通知
tray-recent = 最近消息
tray-pause-hour = 1 小时
tray-pause-forever = 直到恢复
tray-resume = 恢复通知
tray-sign-out = 退出登录
tray-quit = 退出

## 命令行（talkbell、talkbell-daemon）

cli-about = 有人对你说话时提醒你。
cli-usage-heading = 用法：
cli-options-heading = 选项
cli-commands-heading = 命令
cli-help-help = 显示帮助
cli-version-help = 显示版本
cli-hidden-help = 只在托盘中启动，不打开窗口（如登录桌面时）。
cli-open-talk-help = 打开窗口并定位到这条消息（历史记录中的编号）。无窗口的守护进程在通知的“打开”或“回复”时这样启动应用，然后自行退出：应用会等它交出配置。
cli-reply-help = 与 --open-talk 一起使用：同时打开这条消息的回复框。
cli-login-about = 登录：从标准输入读取令牌，向服务器验证后保存在系统密钥环中。
cli-login-server-help = 消息服务器，ws:// 或 wss://。
cli-login-user-id-help = 你的用户编号，用于不发送欢迎消息的服务器。
cli-logout-about = 退出登录：从密钥环中删除令牌。
cli-status-about = 显示本配置的托盘应用或守护进程的状态（为何离线或未登录）、服务器、用户和未读数。
cli-status-json-help = 输出一个 JSON 对象而不是文本行（键：running、process、state、reason、retry_at_ms、server、user、user_name、unread）。
cli-history-about = 显示历史记录，最新的在前。
cli-history-json-help = 输出一个 JSON 数组而不是文本行。
cli-history-search-help = 只显示包含这些词的消息。
cli-history-limit-help = 最多显示这么多条。

cli-daemon-about = 无窗口的 Talkbell：保持连接、记录历史并弹出通知，直到收到 SIGTERM。
cli-daemon-help =
    环境变量：
      TALKBELL_CONFIG_DIR  配置目录（默认 $XDG_CONFIG_HOME/talkbell）
      TALKBELL_DATA_DIR    数据目录（默认 $XDG_DATA_HOME/talkbell）
      RUST_LOG             日志过滤（日志写到标准错误）

    每个配置（即这两个目录）只运行一个 Talkbell：托盘程序或另一个后台服务在运行时，
    本程序以退出码 75 退出，并说明是哪一个在运行。请先用
    `talkbell login --server URL` 登录；`talkbell status` 显示状态。
cli-error = { $program }：{ $error }
cli-cannot-start = 无法启动：{ $error }
cli-cannot-start-app = 无法启动桌面程序
cli-cannot-start-engine = 无法启动
cli-no-profile-lock = 无法获取此配置的锁
cli-signed-out = 已退出登录；令牌已从密钥环中删除。
cli-signed-in = 已登录到 { $server }，用户 { $user }；令牌保存在密钥环中。
cli-token-unreadable = 无法从标准输入读取令牌
cli-no-token = 标准输入中没有令牌
cli-limit-zero = --limit 至少为 1
cli-no-talks = （还没有消息）
cli-status-state = 状态：
cli-status-reason = 原因：
cli-status-next-try = 下次尝试：
cli-status-process = 进程：
cli-status-server = 服务器：
cli-status-user = 用户：
cli-status-unread = 未读：
cli-process-tray-app = 托盘程序（talkbell）
cli-process-daemon = talkbell-daemon
cli-process-pid = { $process }，PID { $pid }
cli-server-none = 无（未登录）
cli-user-name-id = { $name }（ID { $id }）
cli-user-id = ID { $id }
cli-user-none = 无
cli-user-unknown = 未知：此服务器没有告知你是谁（请在窗口中填写你的用户 ID，或用 `talkbell login --user-id ID` 重新登录）

## 配置文件的错误（config.rs）

config-parse =
    { $path }:{ $line }:{ $column }：{ $message }
      请改正该文件的第 { $line } 行（或删掉这一行以使用默认值），然后重新启动 Talkbell。
config-invalid =
    { $path }：{ $problem }
      请在该文件中改正这项设置（或删掉它以使用默认值），然后重新启动 Talkbell。
config-no-home = 找不到主目录：请设置 HOME，或设置 TALKBELL_CONFIG_DIR 和 TALKBELL_DATA_DIR
config-token-hint = （令牌保存在系统密钥环中，从不写入这个文件：请用 `talkbell login`）
config-bad-server = 服务器 { $url }：{ $reason }
config-heartbeat-zero = heartbeat 的 interval_ms 和 timeout_ms 必须大于 0
config-connection-zero = connection 的 connect_timeout_ms 和 backoff_min_ms 必须大于 0
config-backoff-order = connection 的 backoff_min_ms（{ $min }）大于 backoff_max_ms（{ $max }）
config-burst-zero = notifications 的 burst_count 至少为 1
config-quiet-hours-empty = notifications 的 quiet_hours 开始和结束时间相同（{ $at }）：请给出两个不同的时间，或删掉 quiet_hours

## 窗口命令的错误（src-tauri/gui/error.rs）

cmd-out-of-range = { $what }必须在 { $min } 到 { $max } 之间，而不是 { $got }
cmd-too-long = { $what }太长：{ $len }，最多 { $max }
cmd-empty = { $what }为空
cmd-bad-server = 服务器 URL“{ $url }”不可用：{ $reason }
cmd-bad-user-id = 用户 ID 不可用：{ $reason }
cmd-autostart = 登录时启动：{ $error }
cmd-interrupted = 请求未能完成：{ $error }
what-search = 搜索内容
what-row-before = 列表起点的行号
what-page-size = 每页条数
what-mark-list = 要标为已读的消息列表
what-row = 消息的行号
what-server-url = 服务器 URL
what-token = 令牌
what-user-id = 用户 ID
what-pause-minutes = 暂停的分钟数
what-heartbeat-interval = 心跳间隔
what-heartbeat-timeout = 等待应答的时间
what-reply = 回复
what-mute-minutes = 免打扰的分钟数
what-quiet-hours = 免打扰时段的开始和结束时间

## 窗口（ui/index.html、ui/app.js）

ui-title = Talkbell
ui-starting = 正在启动…
ui-tab-history = 历史
ui-tab-account = 账户
ui-tab-log = 日志
ui-search = 搜索消息
ui-history-label = 消息，最新的在前
ui-history-empty = 还没有消息。有人对你说话时会弹出提醒，并保存在这里。还没登录？打开“账户”，填写服务器和令牌即可登录。
ui-sign-in-heading = 登录
ui-server = 服务器
ui-token = 令牌
ui-user-id = 你的用户 ID
ui-sign-in = 登录
ui-checking-token = 正在向服务器验证令牌…
ui-reconnect = 立即重新连接
ui-sign-out = 退出登录
ui-settings-heading = 设置
ui-heartbeat-interval = 服务器多少秒无消息后发送心跳
ui-heartbeat-timeout = 多少秒无应答后重新连接
ui-autostart = 登录时启动
ui-language = 语言
ui-language-system = 跟随系统
ui-save = 保存
ui-saved = 已保存；新的时间设置从下次连接起生效。
ui-pause-hour = 暂停通知 1 小时
ui-pause-forever = 暂停直到恢复
ui-resume = 恢复通知
ui-log-label = 连接事件
ui-error = 错误：
sign-in-done = 已登录为用户 { $user }。
ui-language-en = English
ui-language-zh-cn = 简体中文
ui-reply = 回复
ui-send = 发送
ui-reply-placeholder = 写回复（回车发送）
ui-mute-hour = 1 小时内不提醒
ui-mute-longer = 更长时间不提醒…
ui-mute-eight-hours = 8 小时内不提醒
ui-mute-until-unmuted = 直到手动恢复
ui-outgoing-queued = 等待发送
ui-outgoing-sent = 已发送
ui-outgoing-failed = 未发送
ui-notifications-heading = 通知
ui-sound = 播放提示音
ui-quiet-from = 免打扰时段：从
ui-quiet-to = 到
ui-mutes-heading = 已设为不提醒的人
ui-mutes-none = 没有设为不提醒的人。
ui-unmute = 恢复提醒
ui-muted-until = 直到
ui-muted-forever = 直到手动恢复
ui-filter-label = 显示哪些消息
ui-filter-me = 给我的
ui-filter-all = 全部
ui-today = 今天
ui-yesterday = 昨天
status-connected-user-unknown = 已连接 · 此服务器没有告知你是谁
engine-user-id-from-server = 此服务器会告知你是谁，无需填写用户 ID
sign-in-done-user-unknown = 已登录。此服务器没有告诉 Talkbell 你是谁：请在下方填写你的用户 ID。
user-id-saved = 已保存：发给用户 { $user } 的消息就是你的。
cmd-out-of-range-seconds = { $what }必须在 { $min } 到 { $max } 秒之间，而不是 { $got }
cmd-not-seconds = { $what }必须是秒数，例如 5 或 2.5
ui-user-id-heading = 你是谁
ui-user-id-explain = 此服务器没有告诉 Talkbell 你是谁。请填写你的用户 ID（团队服务器分配给你的 ID），这样 Talkbell 才知道哪些消息是发给你的。
ui-advanced = 高级
