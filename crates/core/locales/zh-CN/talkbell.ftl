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

## 连接日志

log-offline = 离线（{ $reason }）；{ NUMBER($seconds, minimumFractionDigits: 1) } 秒后再次尝试
log-signed-out-because = 已退出登录：{ $reason }
log-dropped = 丢弃了一帧：{ $error }
log-oversized = 拒收了一条 { $size } 字节的消息（上限 { $limit }）；正在重新连接
log-store-failed = 无法保存消息：{ $error }
log-signed-in = 已登录为 { $user }
log-queue-reset = 服务器丢失了消息队列：期间发送的消息可能缺失

## 托盘菜单

tray-open = 打开 Talkbell
tray-reconnect = 立即重新连接
tray-pause = 暂停通知
tray-pause-hour = 1 小时
tray-pause-forever = 直到恢复
tray-resume = 恢复通知
tray-sign-out = 退出登录
tray-quit = 退出

## 命令行（talkbell、talkbell-daemon）

cli-about = 有人对你说话时提醒你。
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
what-heartbeat-interval = 心跳间隔（毫秒）
what-heartbeat-timeout = 心跳超时（毫秒）

## 窗口（ui/index.html、ui/app.js）

ui-title = Talkbell
ui-starting = 正在启动…
ui-tab-history = 历史
ui-tab-account = 账户
ui-tab-log = 日志
ui-search = 搜索消息
ui-history-label = 消息，最新的在前
ui-history-empty = 还没有消息。
ui-sign-in-heading = 登录
ui-server = 服务器
ui-token = 令牌
ui-user-id = 用户 ID
ui-user-id-hint = 仅用于不发送欢迎帧的服务器
ui-sign-in = 登录
ui-checking-token = 正在向服务器验证令牌…
ui-reconnect = 立即重新连接
ui-sign-out = 退出登录
ui-settings-heading = 设置
ui-heartbeat-interval = 心跳间隔（毫秒）
ui-heartbeat-timeout = 无应答多久视为断开（毫秒）
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
