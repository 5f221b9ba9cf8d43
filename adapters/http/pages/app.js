// The buyer's pages: join the line, wait (pushed by GET /v1/queue/events, polling as a
// fallback), then pick a seat, hold it, add points and pay. Plain JavaScript, no build step.
"use strict";

const TEXT = {
  en: {
    title: "Concert tickets", otherLanguage: "한국어",
    joinTitle: "Get in line", joinIntro: "Seats are sold in the order people join the line.",
    join: "Join the line", waitingTitle: "You are in line", position: "Position",
    ahead: (n) => n === 0 ? "You are next." : n === 1 ? "1 person ahead of you." : `${n} people ahead of you.`,
    eta: (s) => `Estimated wait: ${duration(s, "en")}.`,
    moved: (p) => `You are now number ${p} in line.`,
    preQueue: (t) => `The sale opens at ${t}. Everyone here then gets a place, in a fair order; it does not matter when you joined before then.`,
    preQueueSoon: "The sale opens in a moment.",
    keepOpen: "Keep this page open: it moves by itself.", leave: "Leave the line",
    shopTitle: "It is your turn", activeUntil: (t) => `Your turn lasts until ${t}.`,
    admitted: "It is your turn: choose a seat.", pickConcert: "Choose a concert:",
    pickDate: "Choose a date:", seatsOf: (d) => `Seats on ${d}`,
    free: "free", held: "held", sold: "sold", mine: "your hold",
    seat: (n) => `Seat ${n}`, holding: (n, p) => `Seat ${n} is yours for now (${p} points).`,
    holdLeft: (s) => `Hold ends in ${duration(s, "en")}.`, holdLapsed: "Your hold has lapsed.",
    balance: "Points", chargeLabel: "Add points", charge: "Add", pay: "Pay",
    doneTitle: "Booked", receipt: (r) => `Seat ${r.seatNo} on ${r.date} is yours. Paid ${r.amount} points; ${r.balance} left.`,
    endedTitle: "Your turn has ended", rejoin: "Join the line again",
    reasons: { PAID: "You paid.", ACTIVE_TIME_OVER: "Your time to book ran out.", IDLE: "You were away too long.", REVOKED: "An operator ended your turn.", LEFT: "You left the line." },
    problems: {
      SEAT_UNAVAILABLE: "Someone else has that seat. Choose another one.",
      HOLD_LIMIT_REACHED: "You already hold as many seats as allowed.",
      INSUFFICIENT_BALANCE: "Not enough points: add some, then pay again.",
      TOKEN_EXPIRED: "Your turn has ended.", TOKEN_INVALID: "Your place in line was not recognised.",
      QUEUE_NOT_ACTIVE: "It is not your turn yet.", ROOM_CLOSED: "The line is closed.",
      ROOM_NOT_FOUND: "This sale does not exist.", TOKEN_WRONG_ROOM: "This concert is sold in another line.",
      RATE_LIMITED: "Too many tries: wait a moment.", SERVICE_UNAVAILABLE: "The service is busy: trying again shortly.",
      VALIDATION_FAILED: "That input was not accepted.", BALANCE_LIMIT_EXCEEDED: "That would take your points over the limit.",
      RESERVATION_EXPIRED: "Your hold has lapsed. Choose the seat again.",
      RESERVATION_NOT_HELD: "That seat is no longer held for you.",
      CONCERT_NOT_FOUND: "That concert is no longer on sale.", DATE_NOT_FOUND: "That date is no longer on sale.",
      IDEMPOTENCY_KEY_REUSED: "That request was already made differently. Reload the page.",
      IDENTITY_INVALID: "Please sign in again.", IDENTITY_MISMATCH: "This page belongs to another user.",
      generic: "Something went wrong. Please try again.", offline: "No connection. Trying again…",
    },
  },
  ko: {
    title: "콘서트 예매", otherLanguage: "English",
    joinTitle: "줄 서기", joinIntro: "좌석은 줄을 선 순서대로 판매됩니다.",
    join: "줄 서기", waitingTitle: "대기 중입니다", position: "대기 순번",
    ahead: (n) => n === 0 ? "다음 차례입니다." : `앞에 ${n}명이 있습니다.`,
    eta: (s) => `예상 대기 시간: ${duration(s, "ko")}`,
    moved: (p) => `현재 대기 순번은 ${p}번입니다.`,
    preQueue: (t) => `${t}에 판매가 시작됩니다. 그때 이곳의 모든 분께 공정한 순서로 순번이 주어지며, 그 전에 언제 들어왔는지는 상관없습니다.`,
    preQueueSoon: "곧 판매가 시작됩니다.",
    keepOpen: "이 페이지를 열어 두세요. 순서가 자동으로 갱신됩니다.", leave: "줄에서 나가기",
    shopTitle: "차례가 되었습니다", activeUntil: (t) => `${t}까지 예매할 수 있습니다.`,
    admitted: "차례가 되었습니다. 좌석을 선택하세요.", pickConcert: "공연을 선택하세요:",
    pickDate: "날짜를 선택하세요:", seatsOf: (d) => `${d} 좌석`,
    free: "선택 가능", held: "선점 중", sold: "판매 완료", mine: "내 선점 좌석",
    seat: (n) => `${n}번 좌석`, holding: (n, p) => `${n}번 좌석을 선점했습니다 (${p} 포인트).`,
    holdLeft: (s) => `선점 만료까지 ${duration(s, "ko")}`, holdLapsed: "좌석 선점이 만료되었습니다.",
    balance: "포인트", chargeLabel: "포인트 충전", charge: "충전", pay: "결제",
    doneTitle: "예매 완료", receipt: (r) => `${r.date} ${r.seatNo}번 좌석 예매가 완료되었습니다. ${r.amount} 포인트 결제, 잔액 ${r.balance} 포인트.`,
    endedTitle: "차례가 끝났습니다", rejoin: "다시 줄 서기",
    reasons: { PAID: "결제를 마쳤습니다.", ACTIVE_TIME_OVER: "예매 가능 시간이 지났습니다.", IDLE: "오래 자리를 비워 차례가 넘어갔습니다.", REVOKED: "운영자가 차례를 종료했습니다.", LEFT: "줄에서 나갔습니다." },
    problems: {
      SEAT_UNAVAILABLE: "다른 사람이 선택한 좌석입니다. 다른 좌석을 선택하세요.",
      HOLD_LIMIT_REACHED: "선점할 수 있는 좌석 수를 넘었습니다.",
      INSUFFICIENT_BALANCE: "포인트가 부족합니다. 충전한 뒤 다시 결제하세요.",
      TOKEN_EXPIRED: "차례가 끝났습니다.", TOKEN_INVALID: "대기 정보를 확인할 수 없습니다.",
      QUEUE_NOT_ACTIVE: "아직 차례가 아닙니다.", ROOM_CLOSED: "대기열이 닫혔습니다.",
      ROOM_NOT_FOUND: "존재하지 않는 판매입니다.", TOKEN_WRONG_ROOM: "이 공연은 다른 대기열에서 판매됩니다.",
      RATE_LIMITED: "시도가 너무 많습니다. 잠시 후 다시 시도하세요.", SERVICE_UNAVAILABLE: "서비스가 혼잡합니다. 곧 다시 시도합니다.",
      VALIDATION_FAILED: "입력 값을 확인하세요.", BALANCE_LIMIT_EXCEEDED: "보유 가능한 포인트 한도를 넘습니다.",
      RESERVATION_EXPIRED: "좌석 선점이 만료되었습니다. 다시 선택하세요.",
      RESERVATION_NOT_HELD: "더 이상 선점된 좌석이 아닙니다.",
      CONCERT_NOT_FOUND: "판매가 끝난 공연입니다.", DATE_NOT_FOUND: "판매가 끝난 날짜입니다.",
      IDEMPOTENCY_KEY_REUSED: "이미 다른 내용으로 처리된 요청입니다. 페이지를 새로 고치세요.",
      IDENTITY_INVALID: "다시 로그인하세요.", IDENTITY_MISMATCH: "다른 사용자의 페이지입니다.",
      generic: "문제가 발생했습니다. 다시 시도하세요.", offline: "연결이 끊겼습니다. 다시 연결하는 중…",
    },
  },
};

function duration(seconds, language) {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60), rest = s % 60;
  if (language === "ko") return m > 0 ? `${m}분 ${rest}초` : `${rest}초`;
  return m > 0 ? `${m} min ${rest} s` : `${rest} s`;
}

const state = {
  language: localStorage.getItem("concert.language") || document.documentElement.lang || "en",
  userId: localStorage.getItem("concert.userId"),
  token: localStorage.getItem("concert.token"),
  firstPosition: null,
  status: null,
  screen: null,
  stream: null,
  polling: 0,
  hold: JSON.parse(localStorage.getItem("concert.hold") || "null"),
  holdTimer: null,
  concert: null,
  date: null,
};
if (!state.userId) {
  state.userId = crypto.randomUUID();
  localStorage.setItem("concert.userId", state.userId);
}

// An operator's template (PAGES_DIR) may leave elements out: those become detached stand-ins,
// so the page works with whatever it shows.
const standIns = new Map();
const $ = (id) => {
  const element = document.getElementById(id);
  if (element) return element;
  if (!standIns.has(id)) standIns.set(id, document.createElement(id === "charge-form" ? "form" : "div"));
  return standIns.get(id);
};
const t = (key, ...args) => {
  const value = TEXT[state.language][key];
  return typeof value === "function" ? value(...args) : value;
};

function translate() {
  document.documentElement.lang = state.language;
  document.title = t("title");
  for (const element of document.querySelectorAll("[data-t]")) element.textContent = t(element.dataset.t);
  if (state.status) render(state.status);
  // What was drawn from answers is drawn again in the new language.
  if (state.screen === "shop") {
    loadConcerts();
    if (state.concert) loadDates(state.concert);
    if (state.concert && state.date) loadSeats({ date: state.date });
    if (state.hold && new Date(state.hold.expiresAt) > Date.now()) showHold();
  }
  if (state.screen === "done" && state.receipt) $("receipt").textContent = t("receipt", state.receipt);
}

function show(section) {
  if (!$(section).hidden && state.screen === section) return;
  state.screen = section;
  for (const id of ["join", "waiting", "shop", "done", "ended"]) $(id).hidden = id !== section;
  // The button just pressed may be gone: keyboard and screen-reader focus go to the new part.
  const heading = $(section).querySelector("h2");
  if (heading) { heading.tabIndex = -1; heading.focus(); }
}

// Runs `work` with `button` disabled, so a double click sends one request.
async function busy(button, work) {
  if (button.disabled) return;
  button.disabled = true;
  try { await work(); } finally { button.disabled = false; }
}

function forgetToken() {
  state.token = null;
  state.hold = null;
  localStorage.removeItem("concert.token");
  localStorage.removeItem("concert.hold");
}

function announce(text) { $("announce").textContent = text; }

class Problem extends Error {
  constructor(status, code, retryAfter) { super(code); this.status = status; this.code = code; this.retryAfter = retryAfter; }
}

function showProblem(error) {
  const code = error instanceof Problem ? error.code : "offline";
  const problems = TEXT[state.language].problems;
  $("problem").textContent = problems[code] || problems.generic;
  $("problem").hidden = false;
}

function clearProblem() { $("problem").hidden = true; }

async function api(method, path, { body, token, key } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (key) headers["Idempotency-Key"] = key;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 204) return null;
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Problem(response.status, answer.code || "generic", Number(response.headers.get("Retry-After")) || 0);
  return answer;
}

// ---- The line. ----

async function join() {
  clearProblem();
  try {
    // A sale with a waiting room of its own is linked as `/?room=<roomId>`.
    const roomId = new URLSearchParams(location.search).get("room");
    const body = roomId ? { userId: state.userId, roomId } : { userId: state.userId };
    const answer = await api("POST", "/v1/queue/tokens", { body });
    state.token = answer.token;
    localStorage.setItem("concert.token", state.token);
    state.firstPosition = null;
    follow(answer);
  } catch (error) { showProblem(error); }
}

function follow(first) {
  render(first);
  if (first.status !== "EXPIRED") keepUp(state.token);
}

// A page in view is told by the stream; a hidden one (another tab) polls instead, so a buyer
// with many tabs holds one stream, not one connection per tab.
function keepUp(token) {
  if (document.hidden) poll(token); else watch(token);
}

document.addEventListener("visibilitychange", () => {
  if (!state.token || !state.status || state.status.status === "EXPIRED") return;
  if (document.hidden && state.stream) state.stream.abort();
  else if (!document.hidden && !state.stream) { state.polling += 1; watch(state.token); }
});

// Pushed statuses: fetch keeps the token in a header (EventSource cannot send one).
async function watch(token) {
  const stream = new AbortController();
  state.stream = stream;
  try {
    const response = await fetch("/v1/queue/events", { headers: { Authorization: `Bearer ${token}` }, signal: stream.signal });
    if (!response.ok || !response.body) throw new Problem(response.status, "SERVICE_UNAVAILABLE", Number(response.headers.get("Retry-After")) || 1);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const event = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = event.split("\n").find((line) => line.startsWith("data: "));
        if (token !== state.token) return;
        if (event.includes("event: status") && data) render(JSON.parse(data.slice(6)));
      }
    }
  } catch (error) {
    // No stream (too many, no connection, or the page went out of view): poll instead.
  }
  if (state.stream === stream) state.stream = null;
  if (token === state.token && state.status && state.status.status !== "EXPIRED") poll(token);
}

async function poll(token) {
  const since = Date.now();
  state.polling += 1;
  const loop = state.polling;
  while (token === state.token && loop === state.polling) {
    // Now and then try the stream again (the instance it came from may have been replaced).
    if (!document.hidden && Date.now() - since > 30000) { watch(token); return; }
    let wait = 1;
    try {
      const response = await fetch("/v1/queue/status", { headers: { Authorization: `Bearer ${token}` } });
      const answer = await response.json();
      if (response.status === 401) {
        // The token is not known any more (ended long ago, or the keys changed): join again.
        forgetToken();
        show("join");
        showProblem(new Problem(401, answer.code || "TOKEN_INVALID", 0));
        return;
      }
      if (!response.ok) throw new Problem(response.status, answer.code || "generic", Number(response.headers.get("Retry-After")) || 1);
      clearProblem();
      render(answer);
      if (answer.status === "EXPIRED") return;
      wait = Number(response.headers.get("Retry-After")) || (answer.status === "ACTIVE" ? 10 : 1);
    } catch (error) {
      showProblem(error);
      wait = (error instanceof Problem && error.retryAfter) || 2;
    }
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
  }
}

function render(status) {
  const before = state.status;
  state.status = status;
  if (status.status === "PRE_QUEUE") {
    show("waiting");
    $("position").textContent = "–";
    const opens = status.opensAt ? new Date(status.opensAt) : null;
    $("ahead").textContent = opens ? t("preQueue", opens.toLocaleTimeString(state.language)) : t("preQueueSoon");
    $("eta").textContent = "";
    $("progress").value = 0;
    if (!before || before.status !== "PRE_QUEUE") announce($("ahead").textContent);
  } else if (status.status === "WAITING") {
    show("waiting");
    if (state.firstPosition === null || status.position > state.firstPosition) state.firstPosition = status.position;
    $("position").textContent = status.position;
    $("ahead").textContent = t("ahead", status.position - 1);
    $("eta").textContent = status.estimatedWaitSeconds === null ? "" : t("eta", status.estimatedWaitSeconds);
    const done = state.firstPosition > 1 ? (state.firstPosition - status.position) / (state.firstPosition - 1) : 1;
    $("progress").value = Math.round(100 * Math.min(1, Math.max(0, done)));
    if (!before || before.position !== status.position) announce(t("moved", status.position));
  } else if (status.status === "ACTIVE") {
    const until = new Date(status.activeUntil).toLocaleTimeString(state.language);
    $("active-until").textContent = t("activeUntil", until);
    if (!before || before.status !== "ACTIVE") {
      show("shop");
      announce(t("admitted"));
      loadConcerts();
      loadBalance();
      if (state.hold && new Date(state.hold.expiresAt) > Date.now()) showHold();
    }
  } else if (status.status === "EXPIRED") {
    if ($("done").hidden) {
      show("ended");
      $("ended-reason").textContent = (status.reason && TEXT[state.language].reasons[status.reason]) || "";
    }
    localStorage.removeItem("concert.token");
    localStorage.removeItem("concert.hold");
  }
}

async function leave() {
  try { await api("DELETE", "/v1/queue/tokens/current", { token: state.token }); } catch (error) { showProblem(error); }
}

// ---- Booking. ----

function choices(container, label, items, text, pick) {
  container.replaceChildren();
  const title = document.createElement("p");
  title.textContent = label;
  title.className = "small";
  container.append(title);
  for (const item of items) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = text(item);
    button.addEventListener("click", () => pick(item));
    container.append(button);
  }
}

async function loadConcerts() {
  try {
    const concerts = await api("GET", "/v1/concerts", { token: state.token });
    choices($("concerts"), t("pickConcert"), concerts, (c) => c.title, loadDates);
  } catch (error) { showProblem(error); }
}

async function loadDates(concert) {
  clearProblem();
  state.concert = concert;
  try {
    const answer = await api("GET", `/v1/concerts/${concert.concertId}/dates`, { token: state.token });
    choices($("dates"), t("pickDate"), answer.dates, (d) => d.date, loadSeats);
  } catch (error) { showProblem(error); }
}

// The open seat map is read again every few seconds while the page is in view, so seats others
// take show up without a click; it is redrawn only when something changed.
const SEAT_MAP_REFRESH_MS = 5000;

function refreshSeatsLater() {
  clearTimeout(state.seatTimer);
  state.seatTimer = setTimeout(() => {
    if (state.screen === "shop" && state.token && state.date && !document.hidden) loadSeats({ date: state.date }, true);
    else if (state.screen === "shop") refreshSeatsLater();
  }, SEAT_MAP_REFRESH_MS);
}

async function loadSeats(date, quiet = false) {
  if (!quiet) clearProblem();
  state.date = date.date;
  try {
    const answer = await api("GET", `/v1/concerts/${state.concert.concertId}/dates/${date.date}/seat-map`, { token: state.token });
    refreshSeatsLater();
    const drawn = JSON.stringify([answer, state.hold && state.hold.reservationId, state.language]);
    if (quiet && drawn === state.seatsDrawn) return;
    state.seatsDrawn = drawn;
    $("seat-area").hidden = false;
    $("seat-title").textContent = t("seatsOf", date.date);
    const seats = $("seats");
    seats.replaceChildren();
    for (const seat of answer.seats) {
      const n = seat.seatNo;
      const mine = seat.state === "HELD" && state.hold && state.hold.date === date.date && state.hold.seatNo === n
        && state.hold.concertId === state.concert.concertId && new Date(state.hold.expiresAt) > Date.now();
      const shown = mine ? "mine" : seat.state.toLowerCase();
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = n;
      button.dataset.seat = n;
      button.className = `seat ${shown}`;
      button.title = `${t("seat", n)}: ${t(shown)}`;
      button.setAttribute("aria-label", button.title);
      button.disabled = shown !== "free";
      if (shown === "free") button.addEventListener("click", () => hold(n));
      seats.append(button);
    }
  } catch (error) { if (!quiet) showProblem(error); }
}

async function hold(seatNo) {
  clearProblem();
  try {
    state.hold = await api("POST", "/v1/reservations", {
      token: state.token,
      body: { concertId: state.concert.concertId, date: state.date, seatNo },
    });
    localStorage.setItem("concert.hold", JSON.stringify(state.hold));
    showHold();
  } catch (error) { showProblem(error); }
  loadSeats({ date: state.date });
}

function showHold() {
  $("hold").hidden = false;
  $("hold-text").textContent = t("holding", state.hold.seatNo, state.hold.price);
  $("pay-button").hidden = false;
  countdown();
}

function countdown() {
  clearInterval(state.holdTimer);
  const tick = () => {
    const left = (new Date(state.hold.expiresAt) - Date.now()) / 1000;
    $("hold-countdown").textContent = left > 0 ? t("holdLeft", left) : t("holdLapsed");
    if (left <= 0) { clearInterval(state.holdTimer); $("pay-button").hidden = true; }
  };
  tick();
  state.holdTimer = setInterval(tick, 1000);
}

async function loadBalance() {
  try {
    const answer = await api("GET", `/v1/users/${state.userId}/points`);
    $("balance").textContent = answer.balance;
  } catch (error) { showProblem(error); }
}

async function charge(event) {
  event.preventDefault();
  clearProblem();
  const amount = Number($("charge-amount").value);
  // One key per charge the buyer asked for: a retry of the same amount replays, never charges twice.
  if (!state.chargeKey || state.chargeKey.amount !== amount) state.chargeKey = { amount, key: crypto.randomUUID() };
  const button = $("charge-form").querySelector("button") || document.createElement("button");
  await busy(button, async () => {
    try {
      const answer = await api("POST", `/v1/users/${state.userId}/points/charge`, { body: { amount }, key: state.chargeKey.key });
      state.chargeKey = null;
      $("balance").textContent = answer.balance;
      $("charge-amount").value = "";
    } catch (error) { showProblem(error); }
  });
}

async function pay() {
  clearProblem();
  await busy($("pay-button"), async () => {
    try {
      // One key per reservation: a retry after a lost answer replays the payment's first answer.
      const key = `pay-${state.hold.reservationId}-${state.userId}`;
      const payment = await api("POST", "/v1/payments", { token: state.token, body: { reservationId: state.hold.reservationId }, key });
      clearInterval(state.holdTimer);
      show("done");
      state.receipt = { ...payment, seatNo: state.hold.seatNo, date: state.hold.date };
      $("receipt").textContent = t("receipt", state.receipt);
      announce(t("doneTitle"));
      forgetToken();
    } catch (error) { showProblem(error); }
  });
}

// ---- Start. ----

document.addEventListener("DOMContentLoaded", async () => {
  if (!TEXT[state.language]) state.language = "en";
  $("language").addEventListener("click", () => {
    state.language = state.language === "ko" ? "en" : "ko";
    localStorage.setItem("concert.language", state.language);
    translate();
  });
  $("join-button").addEventListener("click", (event) => busy(event.currentTarget, join));
  $("rejoin-button").addEventListener("click", (event) => busy(event.currentTarget, join));
  $("leave-button").addEventListener("click", leave);
  $("charge-form").addEventListener("submit", charge);
  $("pay-button").addEventListener("click", pay);
  translate();
  if (!state.token) { show("join"); return; }
  try {
    follow(await api("GET", "/v1/queue/status", { token: state.token }));
  } catch (error) {
    forgetToken();
    show("join");
  }
});
