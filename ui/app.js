// Talkbell's window. It keeps no state of its own that the backend does not hold: it asks
// for the status and the history, and follows the backend's events. Message text is only
// ever put on the page with textContent, never as HTML.

const { invoke } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;
const appWindow = window.__TAURI__.window.getCurrentWindow();

const $ = (id) => document.getElementById(id);
const PAGE = 50;

// ---- words ---------------------------------------------------------------------------

// The backend owns the catalogues and the chosen language: `get_texts` gives this page
// its messages ({lang, texts}), and the page writes no word of its own.
let lang = "en";
let texts = {};

function i18n(key) {
  return texts[key] ?? key;
}

async function loadTexts() {
  const got = await invoke("get_texts");
  lang = got.lang;
  texts = got.texts;
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = i18n(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = i18n(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", i18n(el.dataset.i18nLabel));
}

// ---- status line ---------------------------------------------------------------------

let status = null;
let countdown = null;
// Counts the statuses shown, so that an answer asked for before a newer status came is
// dropped rather than shown over it.
let shown = 0;

// The words come rendered from the backend (talkbell-core's one renderer); this only puts
// them on the page. `state` is the typed state (`connected`, `signed-out`, ...), which
// the stylesheet colours by.
function showStatus(s) {
  status = s;
  shown++;
  $("status").dataset.state = s.state;
  $("status-text").textContent = s.words.headline;
  // Why offline or signed out, in the server's, the network's or the keyring's words.
  $("status-detail").textContent = s.words.detail ?? "";
  $("resume").hidden = !s.paused;
  // Only a server that does not say who the user is makes the window ask for a user id.
  $("user-id-form").hidden = !s.asks_user_id;
  const field = $("user-id");
  if (s.asks_user_id && s.user_id && !field.value && document.activeElement !== field) field.value = s.user_id;
  // What can do nothing signed out is not offered.
  $("sign-out").disabled = $("reconnect").disabled = s.state === "signed-out";
  // The unread count in the window's title, as chat apps do.
  const title = s.unread > 0 ? `(${s.unread}) ${i18n("ui-title")}` : i18n("ui-title");
  if (document.title !== title) {
    document.title = title;
    appWindow.setTitle(title).catch(logError);
  }
  for (const b of document.querySelectorAll("button.reply")) b.hidden = !s.replies;
  $("pause-hour").hidden = $("pause-forever").hidden = s.paused;
  clearTimeout(countdown);
  // While a countdown is on screen, the backend renders it again every second.
  if (s.state === "offline" && s.retry_at_ms) {
    countdown = setTimeout(refreshStatus, 1000);
  }
}

function refreshStatus() {
  const asked = shown;
  invoke("get_status").then((s) => { if (asked === shown) showStatus(s); }, logError);
}

// ---- history -------------------------------------------------------------------------

let oldest = null;
let exhausted = false;
let query = "";
const unseen = new Set();

function when(ms) {
  const d = new Date(ms);
  return d.toLocaleString(lang, { dateStyle: "short", timeStyle: "short" });
}

// Talks are grouped by day, under "Today", "Yesterday" or the date in the user's language.
function dayOf(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`;
}

function dayHeading(ms) {
  const li = document.createElement("li");
  li.className = "day";
  li.dataset.day = dayOf(ms);
  const yesterday = new Date();
  yesterday.setDate(yesterday.getDate() - 1);
  if (dayOf(ms) === dayOf(Date.now())) li.textContent = i18n("ui-today");
  else if (dayOf(ms) === dayOf(yesterday.getTime())) li.textContent = i18n("ui-yesterday");
  else li.textContent = new Date(ms).toLocaleDateString(lang, { dateStyle: "medium" });
  return li;
}

// At the end of the list (an older page), under its day's heading.
function appendTalk(list, li) {
  const last = [...list.querySelectorAll("li.talk")].pop();
  if (last?.dataset.day !== li.dataset.day) list.append(dayHeading(Number(li.dataset.at)));
  list.append(li);
}

// At the top of the list (a live talk, a new reply), under its day's heading.
function prependTalk(list, li) {
  const first = list.firstElementChild;
  if (first?.classList.contains("day") && first.dataset.day === li.dataset.day) {
    first.after(li);
  } else {
    list.prepend(li);
    li.before(dayHeading(Number(li.dataset.at)));
  }
}

// "For me" (talks to me and my replies) or everything the history holds.
function forMe() {
  return $("filter").value === "me";
}

function item(e) {
  const li = document.createElement("li");
  li.className = "talk";
  li.id = `talk-${e.id}`;
  li.dataset.id = String(e.id);
  if (!e.read) li.classList.add("unread");
  const at = e.server_ts ?? e.received_at;
  li.dataset.at = String(at);
  li.dataset.day = dayOf(at);
  const head = document.createElement("div");
  head.className = "head";
  const from = document.createElement("span");
  from.className = "from";
  from.textContent = e.from.name || String(e.from.id);
  const to = document.createElement("span");
  to.className = "to";
  to.textContent = `→ ${e.to.name || e.to.id}`;
  const time = document.createElement("time");
  time.textContent = new Date(at).toLocaleTimeString(lang, { timeStyle: "short" });
  time.title = when(at);
  head.append(from, to, time);
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = e.talk;
  li.append(head, body);
  if (e.outgoing) {
    li.classList.add("outgoing");
    head.append(outgoingState(e.outgoing));
  } else {
    li.append(talkActions(e));
  }
  if (!e.read) {
    unseen.add(e.id);
    seenObserver.observe(li);
  }
  return li;
}

// ---- replies and mutes ----------------------------------------------------------------

// The most characters a reply may have (PROTOCOL.md 5); the backend checks it too.
const REPLY_MAX = 4000;

// Where a reply of the user's stands: waiting, sent, or not sent (with the reason).
function outgoingState(o) {
  const span = document.createElement("span");
  span.className = `state state-${o.state}`;
  const word = i18n(`ui-outgoing-${o.state}`);
  span.textContent = o.state === "failed" && o.message ? `${word}: ${o.message}` : word;
  return span;
}

// "Mute longer…": 8 hours or until unmuted (minutes; null: until unmuted).
function muteLonger(muteFor) {
  const select = document.createElement("select");
  select.className = "mute-longer";
  select.setAttribute("aria-label", i18n("ui-mute-longer"));
  const choices = [["", "ui-mute-longer"], ["480", "ui-mute-eight-hours"], ["until-unmuted", "ui-mute-until-unmuted"]];
  for (const [value, key] of choices) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = i18n(key);
    option.disabled = value === "";
    option.selected = value === "";
    select.append(option);
  }
  select.addEventListener("change", () => {
    const picked = select.value;
    select.value = "";
    if (picked) muteFor(picked === "until-unmuted" ? null : Number(picked));
  });
  return select;
}

// Reply (where the server takes replies) and mute, under a talk someone sent.
function talkActions(e) {
  const row = document.createElement("div");
  row.className = "actions";
  const reply = document.createElement("button");
  reply.type = "button";
  reply.className = "reply";
  reply.textContent = i18n("ui-reply");
  reply.hidden = !status?.replies;
  reply.addEventListener("click", () => openReply(row, e));
  const mute = document.createElement("button");
  mute.type = "button";
  mute.className = "mute";
  mute.textContent = i18n("ui-mute-hour");
  const muteFor = (minutes) =>
    invoke("mute_sender", { sender: person(e.from), minutes }).then(loadNotifications, logError);
  mute.addEventListener("click", () => muteFor(60));
  row.append(reply, mute, muteLonger(muteFor));
  return row;
}

function person(p) {
  return { id: String(p.id), name: p.name ?? "" };
}

// A reply box under the talk: Enter sends, Shift+Enter is a new line, Esc closes it.
function openReply(row, e) {
  let form = row.querySelector("form.reply-box");
  if (!form) {
    form = document.createElement("form");
    form.className = "reply-box";
    const text = document.createElement("textarea");
    text.rows = 2;
    text.placeholder = i18n("ui-reply-placeholder");
    const count = document.createElement("span");
    count.className = "count";
    const send = document.createElement("button");
    send.type = "submit";
    send.textContent = i18n("ui-send");
    const result = document.createElement("p");
    result.className = "result";
    result.setAttribute("role", "alert");
    const recount = () => {
      const n = [...text.value].length;
      count.textContent = `${n} / ${REPLY_MAX}`;
      count.classList.toggle("over", n > REPLY_MAX);
      send.disabled = n === 0 || n > REPLY_MAX;
    };
    text.addEventListener("input", recount);
    text.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
      if (ev.key === "Escape") { ev.stopPropagation(); form.remove(); }
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await invoke("reply", { to: person(e.from), text: text.value });
        form.remove();
        if (!query) reloadHistory();
      } catch (err) {
        result.textContent = errorText(err);
      }
    });
    form.append(text, count, send, result);
    row.append(form);
    recount();
  }
  form.querySelector("textarea").focus();
}

// The notification settings and the list of mutes, each with its Unmute.
async function loadNotifications() {
  const n = await invoke("get_notifications");
  $("sound").checked = n.sound;
  $("quiet-from").value = n.quiet_from ?? "";
  $("quiet-to").value = n.quiet_to ?? "";
  const list = $("mutes");
  list.replaceChildren();
  for (const m of n.mutes) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.textContent = m.name || m.id;
    const until = document.createElement("span");
    until.className = "muted";
    until.textContent = m.until_ms ? `${i18n("ui-muted-until")} ${when(m.until_ms)}` : i18n("ui-muted-forever");
    const undo = document.createElement("button");
    undo.type = "button";
    undo.textContent = i18n("ui-unmute");
    undo.addEventListener("click", () =>
      invoke("unmute_sender", { sender: { id: m.id, name: m.name } }).then(loadNotifications, logError));
    li.append(who, until, undo);
    list.append(li);
  }
  $("mutes-empty").hidden = n.mutes.length > 0;
}

$("notifications").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const settings = { sound: $("sound").checked, quiet_from: $("quiet-from").value || null, quiet_to: $("quiet-to").value || null };
  try {
    await invoke("save_notifications", { settings });
    $("notifications-result").textContent = i18n("ui-saved");
  } catch (e) {
    $("notifications-result").textContent = errorText(e);
  }
});

// Unread marks clear once a talk has been on screen.
const seenObserver = new IntersectionObserver((entries) => {
  const ids = [];
  for (const en of entries) {
    if (!en.isIntersecting || document.hidden) continue;
    const id = Number(en.target.dataset.id);
    if (unseen.delete(id)) ids.push(id);
    seenObserver.unobserve(en.target);
    setTimeout(() => en.target.classList.remove("unread"), 1500);
  }
  if (ids.length) invoke("mark_read", { ids }).catch(logError);
});

// The page being loaded, so that callers wait for it rather than skip it; `generation`
// tells a page of a list that has since been reloaded (a new search) from a current one.
let inflight = null;
let generation = 0;

function loadMore() {
  if (exhausted) return Promise.resolve();
  if (!inflight) inflight = loadPage().finally(() => { inflight = null; });
  return inflight;
}

async function loadPage() {
  const gen = generation;
  try {
    const page = await invoke("list_history", { search: query || null, before: oldest, limit: PAGE, forMe: forMe() });
    if (gen !== generation) return;
    const list = $("history");
    // A live talk may already be listed: it came while this page was on its way.
    for (const e of page) if (!$(`talk-${e.id}`)) appendTalk(list, item(e));
    if (page.length) oldest = page[page.length - 1].id;
    exhausted = page.length < PAGE;
    $("history-empty").hidden = list.querySelector("li.talk") !== null;
  } catch (e) {
    logError(e);
  }
}

function reloadHistory() {
  generation++;
  $("history").replaceChildren();
  oldest = null;
  exhausted = false;
  inflight = null;
  return loadMore();
}

// More is loaded when the end of the list comes into view.
new IntersectionObserver((entries) => {
  if (entries.some((en) => en.isIntersecting)) loadMore();
}).observe($("history-end"));

let searchTimer = null;
// The filter chosen is kept for the next window.
$("filter").addEventListener("change", () => {
  localStorage.setItem("talkbell.filter", $("filter").value);
  reloadHistory();
});
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    query = $("search").value.trim();
    reloadHistory();
  }, 200);
});

// Shows the talk at `row`; with `reply`, its reply box open and focused (a popup's Reply).
async function focusRow(row, reply = false) {
  showPanel("history");
  for (let tries = 0; tries < 20 && !$(`talk-${row}`) && !exhausted; tries++) await loadMore();
  const el = $(`talk-${row}`);
  if (el) {
    el.scrollIntoView({ block: "center" });
    el.classList.add("focused");
    if (reply) el.querySelector("button.reply")?.click();
  }
}

// ---- panels, forms, log --------------------------------------------------------------

function showPanel(name) {
  for (const p of ["history", "account", "log"]) {
    $(`panel-${p}`).hidden = p !== name;
    $(`tab-${p}`).setAttribute("aria-pressed", String(p === name));
  }
}
for (const p of ["history", "account", "log"]) $(`tab-${p}`).addEventListener("click", () => showPanel(p));

function log(text, atMs = Date.now()) {
  const li = document.createElement("li");
  const t = document.createElement("time");
  t.textContent = new Date(atMs).toLocaleTimeString(lang);
  const s = document.createElement("span");
  s.textContent = text;
  li.append(t, s);
  const list = $("log");
  list.prepend(li);
  while (list.children.length > 500) list.lastElementChild.remove();
}

// A command's error is {kind, message}; the message is for a person.
function errorText(e) {
  return e && typeof e === "object" && "message" in e ? e.message : String(e);
}

function logError(e) {
  log(`${i18n("ui-error")} ${errorText(e)}`);
}

$("sign-in").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const result = $("sign-in-result");
  const button = $("sign-in-button");
  button.disabled = true;
  result.textContent = i18n("ui-checking-token");
  try {
    // The backend says it in the chosen language: "Signed in as user 1."
    result.textContent = await invoke("sign_in", {
      server: $("server").value,
      token: $("token").value,
      userId: null,
    });
    reloadHistory();
  } catch (e) {
    result.textContent = errorText(e);
  } finally {
    // The token goes to the keyring; the page does not keep it.
    $("token").value = "";
    button.disabled = false;
  }
});

// The user id, for a server that does not say who the user is.
$("user-id-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    $("user-id-result").textContent = await invoke("set_user_id", { userId: $("user-id").value });
    if (forMe()) reloadHistory();
  } catch (e) {
    $("user-id-result").textContent = errorText(e);
  }
});

$("sign-out").addEventListener("click", () => invoke("sign_out").catch(logError));
$("reconnect").addEventListener("click", () => invoke("reconnect_now").catch(logError));
$("pause-hour").addEventListener("click", () => invoke("pause_notifications", { minutes: 60 }).catch(logError));
$("pause-forever").addEventListener("click", () => invoke("pause_notifications", { minutes: null }).catch(logError));
$("resume").addEventListener("click", () => invoke("resume_notifications").catch(logError));

// Seconds as typed (decimals allowed); an empty field or no number is null, which the
// backend answers with what to type.
function secondsOf(input) {
  const n = input.value.trim() === "" ? NaN : Number(input.value);
  return Number.isFinite(n) ? n : null;
}

$("settings").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const settings = {
    server: null,
    heartbeat_interval_s: secondsOf($("hb-interval")),
    heartbeat_timeout_s: secondsOf($("hb-timeout")),
    autostart: $("autostart").checked,
    language: $("language").value,
  };
  try {
    await invoke("save_settings", { settings });
    // The language may have changed: the words, the status line and the dates follow.
    await loadTexts();
    refreshStatus();
    reloadHistory();
    $("settings-result").textContent = i18n("ui-saved");
  } catch (e) {
    $("settings-result").textContent = errorText(e);
    // A timing it refused is in the Advanced section: open it, so the field is seen.
    if (e?.kind === "out-of-range" || e?.kind === "not-seconds") $("advanced").open = true;
  }
});

// ---- keyboard ------------------------------------------------------------------------

// Esc closes the window (to the tray), "/" or Ctrl+F searches, the arrows move from talk
// to talk, Enter opens the reply box of the talk in focus.
function talks() {
  return [...document.querySelectorAll("#history li.talk")];
}

function moveFocus(step) {
  const all = talks();
  if (!all.length) return;
  const at = all.indexOf(document.activeElement?.closest("li.talk"));
  const next = all[Math.min(all.length - 1, Math.max(0, at < 0 ? 0 : at + step))];
  next.tabIndex = -1;
  next.focus();
  next.scrollIntoView({ block: "nearest" });
}

document.addEventListener("keydown", (ev) => {
  const typing = ev.target.closest?.("input, textarea, select, button");
  if (ev.key === "Escape" && !ev.defaultPrevented) {
    if (typing && ev.target.id === "search" && ev.target.value) return;
    appWindow.close().catch(logError);
  } else if ((ev.key === "/" && !typing) || (ev.key === "f" && ev.ctrlKey)) {
    ev.preventDefault();
    showPanel("history");
    $("search").focus();
  } else if (!typing && (ev.key === "ArrowDown" || ev.key === "ArrowUp")) {
    ev.preventDefault();
    moveFocus(ev.key === "ArrowDown" ? 1 : -1);
  } else if (!typing && ev.key === "Enter") {
    const talk = document.activeElement?.closest("li.talk");
    const reply = talk?.querySelector("button.reply");
    if (reply && !reply.hidden) { ev.preventDefault(); reply.click(); }
  }
});

// ---- start ---------------------------------------------------------------------------

async function start() {
  await loadTexts();
  $("filter").value = localStorage.getItem("talkbell.filter") === "me" ? "me" : "all";
  await listen("talkbell://status", (ev) => showStatus(ev.payload));
  await listen("talkbell://log", (ev) => log(ev.payload.text, ev.payload.at_ms));
  for (const line of await invoke("get_log")) log(line.text, line.at_ms);
  await listen("talkbell://talk", (ev) => {
    if (query) return; // a search result list is not the live list
    if ($(`talk-${ev.payload.id}`)) return; // the first page, loading meanwhile, had it
    if (forMe() && !ev.payload.for_me) return; // a talk between others
    prependTalk($("history"), item(ev.payload));
    $("history-empty").hidden = true;
  });
  await listen("talkbell://focus", (ev) => focusRow(ev.payload.row, ev.payload.reply));
  await listen("talkbell://reply", (ev) => {
    const el = $(`talk-${ev.payload.row}`);
    if (el) el.querySelector(".state")?.replaceWith(outgoingState(ev.payload.outgoing));
    else if (!query) reloadHistory();
  });
  showStatus(await invoke("get_status"));
  const settings = await invoke("get_settings");
  $("server").value = settings.server ?? "";
  $("hb-interval").value = settings.heartbeat_interval_s;
  $("hb-timeout").value = settings.heartbeat_timeout_s;
  $("autostart").checked = settings.autostart;
  $("language").value = settings.language;
  await loadNotifications();
  if (status.needs_sign_in) showPanel("account");
  await loadMore();
  const at = /^#(row|reply)=(\d+)$/.exec(location.hash);
  if (at) focusRow(Number(at[2]), at[1] === "reply");
}

start().catch(logError);
