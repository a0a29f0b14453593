// Sluice web chat: plain ES module, no dependencies, talks only to the gateway that served it.
// Contract: docs/sessions.md (sessions and the portal session stream) and the resumable streams
// (x-sluice-resume: on → x-sluice-stream-id; GET /v1/streams/{id} with Last-Event-ID; DELETE to cancel).
import { escapeHtml, renderMarkdown } from './markdown.js';

const KEY_STORAGE = 'sluice.apiKey';
const MODEL_STORAGE = 'sluice.model';
const SESSION_STREAM = '/api/llm/chat/session/stream';
// Waits before each reconnect after a dropped stream; the server keeps generating meanwhile (resume grace).
const RESUME_DELAYS_MS = [200, 500, 1000, 2000, 4000];

const $ = id => document.getElementById(id);
const ui = {
  model: $('model'),
  apiKey: $('api-key'),
  notice: $('notice'),
  newChat: $('new-chat'),
  sessions: $('sessions'),
  sessionsEmpty: $('sessions-empty'),
  title: $('chat-title'),
  messages: $('messages'),
  composer: $('composer'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  stats: $('stats'),
};

const state = {
  apiKey: readStorage(KEY_STORAGE) ?? '',
  sessionId: null,
  turn: null,
};

// ---------------------------------------------------------------- HTTP helpers

function readStorage(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

function writeStorage(key, value) {
  try {
    if (value) { localStorage.setItem(key, value); } else { localStorage.removeItem(key); }
  } catch { /* storage disabled: the value lives for this page only */ }
}

function headers(extra = {}) {
  const result = { ...extra };
  if (state.apiKey) {
    result.authorization = 'Bearer ' + state.apiKey;
  }
  return result;
}

/** The server's own error message (OpenAI-style JSON), or a description of the status. */
async function errorMessage(response) {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    const error = body.error;
    if (typeof error === 'string') { return error; }
    if (error && typeof error.message === 'string') { return error.message; }
  } catch { /* not JSON: fall through */ }
  return `The gateway answered ${response.status} ${response.statusText}${text ? ': ' + text.slice(0, 300) : ''}.`;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { 'content-type': 'application/json' } : {}) };
  if (body) { init.body = JSON.stringify(body); }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, `Could not reach the gateway (${e.message}). Check that it is running, then reload.`);
  }
  if (!response.ok) {
    throw new ApiError(response.status, await errorMessage(response));
  }
  return response.json();
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

// ---------------------------------------------------------------- models

async function loadModels() {
  try {
    const list = await api('GET', '/v1/models');
    const wanted = ui.model.value || readStorage(MODEL_STORAGE);
    ui.model.replaceChildren(...list.data.map(m => {
      const option = document.createElement('option');
      option.value = m.id;
      option.textContent = m.id;
      if (m.description) { option.title = m.description; }
      return option;
    }));
    if (wanted && list.data.some(m => m.id === wanted)) { ui.model.value = wanted; }
    ui.model.disabled = list.data.length === 0;
    if (list.data.length === 0) {
      showNotice('This gateway serves no models. Add one to its configuration and reload.');
    }
    return true;
  } catch (e) {
    ui.model.replaceChildren(new Option('No models', ''));
    ui.model.disabled = true;
    showNotice(`Could not load the models: ${e.message}`);
    return false;
  }
}

// ---------------------------------------------------------------- sessions

async function loadSessions() {
  let list;
  try {
    list = await api('GET', '/api/sessions?limit=50');
  } catch (e) {
    showNotice(`Could not load the conversations: ${e.message}`);
    return;
  }
  ui.sessions.replaceChildren(...list.data.map(sessionItem));
  ui.sessionsEmpty.hidden = list.data.length > 0;
}

function sessionItem(session) {
  const li = document.createElement('li');
  li.dataset.sessionId = session.id;
  if (session.id === state.sessionId) { li.classList.add('current'); }
  const open = document.createElement('button');
  open.type = 'button';
  open.className = 'open';
  open.textContent = session.title || 'Untitled';
  open.title = `${session.message_count ?? 0} messages · ${session.model ?? 'default model'}`;
  if (session.id === state.sessionId) { open.setAttribute('aria-current', 'true'); }
  open.addEventListener('click', () => openSession(session.id));
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.textContent = '×';
  remove.setAttribute('aria-label', `Delete conversation: ${session.title || 'Untitled'}`);
  remove.addEventListener('click', () => deleteSession(session.id));
  li.append(open, remove);
  return li;
}

function markCurrent() {
  for (const li of ui.sessions.children) {
    const current = li.dataset.sessionId === state.sessionId;
    li.classList.toggle('current', current);
    const open = li.querySelector('.open');
    if (current) { open.setAttribute('aria-current', 'true'); } else { open.removeAttribute('aria-current'); }
  }
}

function setSession(id, title) {
  state.sessionId = id;
  ui.title.textContent = title || (id ? 'Conversation' : 'New chat');
  const hash = id ? '#' + encodeURIComponent(id) : '';
  if (location.hash !== hash) {
    history.replaceState(null, '', location.pathname + location.search + hash);
  }
  markCurrent();
}

async function openSession(id) {
  if (state.turn) { await state.turn.stop(); }
  let session;
  try {
    session = await api('GET', '/api/sessions/' + encodeURIComponent(id));
  } catch (e) {
    if (e.status === 404) {
      setSession(null);
      ui.messages.replaceChildren();
      await loadSessions();
    }
    showNotice(`Could not open the conversation: ${e.message}`);
    return;
  }
  showNotice('');
  setSession(session.id, session.title);
  if (session.model && [...ui.model.options].some(o => o.value === session.model)) {
    ui.model.value = session.model;
  }
  ui.messages.replaceChildren();
  for (const message of session.messages ?? []) {
    if (message.role === 'user') {
      addUserMessage(message.content);
    } else if (message.role === 'assistant') {
      const view = addAssistantMessage();
      view.body.innerHTML = renderMarkdown(message.content);
      const notes = [];
      if (message.truncated) { notes.push('Stopped: the reply is incomplete'); }
      if (message.finish_reason === 'length') { notes.push('cut off at the token limit'); }
      if (message.usage) { notes.push(`${message.usage.completion_tokens} tokens`); }
      view.meta.textContent = notes.join(' · ');
      view.li.dataset.state = message.truncated ? 'stopped' : 'done';
    }
  }
  scrollToEnd();
  ui.prompt.focus();
}

async function deleteSession(id) {
  try {
    await api('DELETE', '/api/sessions/' + encodeURIComponent(id));
  } catch (e) {
    showNotice(`Could not delete the conversation: ${e.message}`);
    return;
  }
  showNotice('');
  if (id === state.sessionId) { newChat(); }
  await loadSessions();
}

function newChat() {
  if (state.turn) { state.turn.stop(); }
  setSession(null);
  ui.messages.replaceChildren();
  ui.stats.textContent = '';
  ui.prompt.focus();
}

// ---------------------------------------------------------------- messages

function addUserMessage(text) {
  const li = document.createElement('li');
  li.className = 'message user';
  const label = document.createElement('span');
  label.className = 'sr-only';
  label.textContent = 'You: ';
  const body = document.createElement('div');
  body.className = 'body';
  body.textContent = text;
  li.append(label, body);
  ui.messages.append(li);
  return li;
}

function addAssistantMessage() {
  const li = document.createElement('li');
  li.className = 'message assistant';
  const label = document.createElement('span');
  label.className = 'sr-only';
  label.textContent = 'Assistant: ';
  const body = document.createElement('div');
  body.className = 'body';
  const error = document.createElement('p');
  error.className = 'error';
  error.hidden = true;
  const meta = document.createElement('p');
  meta.className = 'meta';
  li.append(label, body, error, meta);
  ui.messages.append(li);
  return { li, body, error, meta };
}

function scrollToEnd() {
  ui.messages.lastElementChild?.scrollIntoView({ block: 'end' });
}

// ---------------------------------------------------------------- one streamed turn

/** One question and its streamed answer: reading, metrics, Stop, and resuming after a dropped connection. */
class Turn {
  constructor(view) {
    this.view = view;
    this.controller = new AbortController();
    this.text = '';
    this.streamId = null;
    this.requestId = null;
    this.lastEventId = null;
    this.state = 'waiting'; // waiting → streaming → done | stopped | error
    this.sentAt = performance.now();
    this.firstAt = null;
    this.endAt = null;
    this.pieces = 0;
    this.usage = null;
    this.finishReason = null;
    this.resumes = 0;
    this.cancelled = null;
    this.renderPending = false;
    this.ticker = setInterval(() => this.showStats(), 250);
    view.li.dataset.state = 'waiting';
    view.li.setAttribute('aria-busy', 'true');
    view.meta.textContent = 'Waiting for the first token…';
  }

  get finished() { return this.state === 'done' || this.state === 'stopped' || this.state === 'error'; }

  async run(message) {
    const body = { message };
    if (state.sessionId) { body.session_id = state.sessionId; }
    if (ui.model.value) { body.model = ui.model.value; }
    let response;
    try {
      response = await fetch(SESSION_STREAM, {
        method: 'POST',
        headers: headers({ 'content-type': 'application/json', accept: 'text/event-stream', 'x-sluice-resume': 'on' }),
        body: JSON.stringify(body),
        signal: this.controller.signal,
      });
    } catch (e) {
      return this.stopped || this.fail(`Could not reach the gateway (${e.message}). Check that it is running and send again.`);
    }

    this.requestId = response.headers.get('x-request-id');
    this.view.li.dataset.requestId = this.requestId ?? '';
    const sessionId = response.headers.get('x-sluice-session-id');
    if (sessionId && sessionId !== state.sessionId) {
      setSession(sessionId, message.slice(0, 60));
    }
    if (!response.ok) {
      return this.fail(await errorMessage(response));
    }
    this.streamId = response.headers.get('x-sluice-stream-id');
    this.view.li.dataset.streamId = this.streamId ?? '';
    if (this.state === 'stopping') {
      // Stop was pressed before the answer started: cancel now that the stream has an id.
      return this.cancelOnServer();
    }

    let attempt = 0;
    while (true) {
      if (response) {
        const before = this.lastEventId;
        try {
          await this.read(response);
        } catch (e) {
          if (this.state === 'stopping' || this.state === 'stopped') { return; }
          // A network error mid-stream: resume below.
        }
        if (this.finished || this.state === 'stopping') { return; }
        if (this.lastEventId !== before) { attempt = 0; }
      }

      // The connection ended before the done event: pick the stream up where it was left.
      if (!this.streamId) {
        return this.fail('The connection dropped and this stream cannot be resumed (no stream id). Send the message again.');
      }
      if (attempt >= RESUME_DELAYS_MS.length) {
        return this.fail(`The connection dropped and ${attempt} attempts to resume failed. Check the gateway, then send the message again.`);
      }
      this.view.meta.textContent = 'Connection lost — resuming…';
      await sleep(RESUME_DELAYS_MS[attempt++]);
      if (this.state === 'stopping' || this.state === 'stopped') { return; }
      response = null;
      try {
        const resumed = await fetch('/v1/streams/' + encodeURIComponent(this.streamId), {
          headers: headers({ accept: 'text/event-stream', 'last-event-id': this.lastEventId ?? '0' }),
          signal: this.controller.signal,
        });
        if (resumed.ok) {
          response = resumed;
          this.resumes++;
        } else if (resumed.status < 500) {
          // Expired, unknown or not ours: retrying cannot help.
          return this.fail(await errorMessage(resumed));
        }
      } catch {
        // Still offline: the next attempt waits longer.
      }
    }
  }

  /** Reads portal SSE events until the body ends; throws on a network error. */
  async read(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let id = null;
    let data = [];
    this.reader = reader;
    while (true) {
      const { value, done } = await reader.read();
      if (done) { return; }
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        let line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.endsWith('\r')) { line = line.slice(0, -1); }
        if (line === '') {
          // A complete event. Half-received events are dropped with the connection and come again on resume.
          if (data.length > 0) { this.dispatch(data.join('\n'), id); }
          data = [];
          id = null;
          if (this.finished) {
            reader.cancel().catch(() => {});
            return;
          }
          continue;
        }
        if (line.startsWith(':')) { continue; }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value2 = colon < 0 ? '' : line.slice(colon + 1);
        if (value2.startsWith(' ')) { value2 = value2.slice(1); }
        if (field === 'data') { data.push(value2); } else if (field === 'id') { id = value2; }
      }
    }
  }

  dispatch(json, id) {
    if (id !== null && id !== '') { this.lastEventId = id; }
    if (this.finished || this.state === 'stopping') { return; }
    let event;
    try {
      event = JSON.parse(json);
    } catch {
      return this.fail(`The gateway sent an event that is not JSON: ${json.slice(0, 200)}`);
    }
    if (typeof event.content === 'string') {
      if (this.firstAt === null) {
        this.firstAt = performance.now();
        this.state = 'streaming';
        this.view.li.dataset.state = 'streaming';
      }
      this.text += event.content;
      this.pieces++;
      this.scheduleRender();
    } else if (event.done) {
      this.usage = event.usage ?? null;
      this.finishReason = event.finish_reason ?? null;
      this.complete('done');
    } else if (event.error) {
      const message = typeof event.error === 'string' ? event.error : event.error.message ?? JSON.stringify(event.error);
      this.fail(message);
    }
  }

  scheduleRender() {
    if (this.renderPending) { return; }
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.render();
    });
  }

  render() {
    this.view.body.innerHTML = renderMarkdown(this.text);
    this.showStats();
    scrollToEnd();
  }

  showStats() {
    const now = this.endAt ?? performance.now();
    const parts = [];
    if (this.firstAt !== null) {
      parts.push(`TTFT ${Math.round(this.firstAt - this.sentAt)} ms`);
      const tokens = this.usage?.completion_tokens ?? this.pieces;
      const seconds = (now - this.firstAt) / 1000;
      if (seconds > 0.05 && tokens > 1) {
        parts.push(`${(tokens / seconds).toFixed(1)} tok/s`);
      }
      parts.push(`${tokens} tokens`);
    } else if (!this.finished) {
      parts.push(`waiting ${((now - this.sentAt) / 1000).toFixed(1)} s`);
    }
    const text = parts.join(' · ');
    ui.stats.textContent = text;
    if (this.state === 'streaming' || this.state === 'waiting') {
      this.view.meta.textContent = text;
    }
    return text;
  }

  complete(finalState, note) {
    if (this.finished) { return; }
    this.state = finalState;
    this.endAt = performance.now();
    clearInterval(this.ticker);
    this.render();
    const parts = [this.showStats()];
    if (note) { parts.unshift(note); }
    if (this.finishReason === 'length') { parts.push('cut off at the token limit'); }
    if (this.resumes > 0) { parts.push(`resumed ${this.resumes}×`); }
    this.view.meta.textContent = parts.filter(Boolean).join(' · ');
    this.view.li.dataset.state = finalState;
    this.view.li.setAttribute('aria-busy', 'false');
    scrollToEnd();
  }

  fail(message) {
    if (this.finished) { return; }
    this.view.error.textContent = message;
    this.view.error.hidden = false;
    this.complete('error', 'Failed');
  }

  get stopped() { return this.state === 'stopping' || this.state === 'stopped'; }

  /** Stop: abort the fetch and cancel the generation on the server (DELETE /v1/streams/{id}). */
  async stop() {
    if (this.finished || this.state === 'stopping') { return; }
    this.state = 'stopping';
    this.view.meta.textContent = 'Stopping…';
    if (this.streamId) {
      await this.cancelOnServer();
    } else {
      // No stream id yet (headers not received): run() cancels as soon as it has one; give up after a while.
      setTimeout(() => {
        if (this.state === 'stopping') {
          this.controller.abort();
          this.complete('stopped', 'Stopped before the answer started');
        }
      }, 3000);
    }
  }

  async cancelOnServer() {
    this.controller.abort();
    if (!this.streamId) {
      this.complete('stopped', 'Stopped (the gateway gave no stream id, so it stops when it notices the closed connection)');
      return;
    }
    let note = 'Stopped';
    try {
      const response = await fetch('/v1/streams/' + encodeURIComponent(this.streamId), { method: 'DELETE', headers: headers() });
      if (response.ok) {
        const result = await response.json();
        this.cancelled = result.cancelled === true;
        note = this.cancelled ? 'Stopped — generation cancelled' : 'Stopped (the answer had already finished)';
      } else {
        note = `Stopped here, but the server could not cancel: ${await errorMessage(response)}`;
      }
    } catch (e) {
      note = `Stopped here, but the cancel request failed (${e.message}); the server stops on its own shortly.`;
    }
    this.complete('stopped', note);
  }
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || state.turn) { return; }
  showNotice('');
  ui.prompt.value = '';
  addUserMessage(text);
  const turn = new Turn(addAssistantMessage());
  state.turn = turn;
  setBusy(true);
  scrollToEnd();
  try {
    await turn.run(text);
  } catch (e) {
    turn.fail(`Unexpected error in the page: ${e.message}`);
  } finally {
    if (!turn.finished && !turn.stopped) { turn.fail('The answer ended without a done event. Send the message again.'); }
    if (state.turn === turn) { state.turn = null; }
    setBusy(false);
  }
  if (turn.stopped) {
    // Wait for the DELETE outcome before the list refresh, so the stored (truncated) reply is in place.
    await waitFor(() => turn.finished, 5000);
  }
  await loadSessions();
}

async function waitFor(condition, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  while (!condition() && performance.now() < deadline) { await sleep(50); }
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  document.body.classList.toggle('busy', busy);
  if (!busy && document.activeElement === ui.stop) { ui.prompt.focus(); }
}

// ---------------------------------------------------------------- wiring

ui.composer.addEventListener('submit', e => {
  e.preventDefault();
  send();
});

ui.prompt.addEventListener('keydown', e => {
  if (e.key === 'Enter' && !e.shiftKey && !e.ctrlKey && !e.altKey && !e.metaKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  } else if (e.key === 'Escape' && state.turn) {
    state.turn.stop();
  }
});

ui.stop.addEventListener('click', () => state.turn?.stop());
ui.newChat.addEventListener('click', newChat);
ui.model.addEventListener('change', () => writeStorage(MODEL_STORAGE, ui.model.value));
ui.apiKey.value = state.apiKey;
ui.apiKey.addEventListener('change', async () => {
  state.apiKey = ui.apiKey.value.trim();
  writeStorage(KEY_STORAGE, state.apiKey);
  showNotice('');
  if (await loadModels()) {
    await loadSessions();
  }
});

async function start() {
  if (await loadModels()) {
    await loadSessions();
  }
  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (fromHash) {
    await openSession(fromHash);
  }
  document.body.dataset.ready = 'true';
}

// Exposed for tests and the console: the renderer, and an HTML-escaping helper.
window.sluiceChat = { renderMarkdown, escapeHtml, state };
start();
