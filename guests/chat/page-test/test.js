// The chat page in jsdom: a fake WebSocket plays the room (shared/protocols/chat.md).
// Run: npm install && npm test
const { JSDOM } = require('jsdom');
const fs = require('fs');
const path = require('path');
const assert = require('assert');
const html = fs.readFileSync(path.join(__dirname, '..', 'src', 'page.html'), 'utf8');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let passed = 0;
const ok = (c, m) => { assert.ok(c, m); passed++; };
const eq = (a, b, m) => { assert.deepStrictEqual(a, b, m); passed++; };

(async () => {
  const sockets = [];
  const fetches = [];
  const dom = new JSDOM(html, {
    url: 'http://localhost:8080/chat/my%20room',
    runScripts: 'dangerously',
    beforeParse(win) {
      class FakeWS {
        constructor(url) { this.url = url; this.sent = []; this.readyState = 0; sockets.push(this); }
        send(d) { if (this.readyState !== 1) throw new Error('not open'); this.sent.push(d); }
        close() { this.readyState = 3; setTimeout(() => this.onclose && this.onclose({}), 0); }
        _open() { this.readyState = 1; this.onopen && this.onopen({}); }
        _recv(o) { this.onmessage && this.onmessage({ data: JSON.stringify(o) }); }
        _drop() { this.readyState = 3; this.onclose && this.onclose({ code: 1006 }); }
      }
      FakeWS.OPEN = 1;
      win.WebSocket = FakeWS;
      win.fetch = async (url, opts) => { fetches.push([url, opts]); return { ok: true, json: async () => ({ system_prompt: 'x', answer_all: true }) }; };
    },
  });
  const { window } = dom;
  const d = window.document;
  const $ = (s) => d.querySelector(s);
  const $$ = (s) => [...d.querySelectorAll(s)];

  ok(!$('#join').hidden && $('#chat').hidden, 'join view first');
  eq($('#room-name').textContent, 'my room');
  // Bad names are refused in the page.
  $('#name-input').value = '   ';
  $('#join-button').click();
  ok($('#join-error').textContent.includes('enter a name'));
  eq(sockets.length, 0);
  $('#name-input').value = '  alice ';
  $('#join-button').click();
  eq(window.localStorage.getItem('lodge.chat.name'), 'alice');
  ok($('#join').hidden && !$('#chat').hidden, 'chat view after join');
  eq(sockets.length, 1);
  eq(sockets[0].url, 'ws://localhost:8080/chat/my%20room/ws?name=alice');
  eq($('#status').dataset.state, 'connecting');
  await sleep(0);
  eq(fetches[0][0], '/chat/my%20room/settings');
  ok($('#ai-hint').textContent.includes('every message'), 'answer_all hint');

  // Written before the room answered: queued, sent after the history.
  $('#message-input').value = 'early bird';
  $('#message-input').dispatchEvent(new window.KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
  eq($('#message-input').value, '');
  const ws = sockets[0];
  ws._open();
  eq($('#status').dataset.state, 'connected');
  ws._recv({ type: 'history', data: [
    { id: 1, name: 'bob', role: 'user', text: 'hi all', ts: 1700000000000 },
    { id: 2, name: 'alice', role: 'user', text: '@ai hello `code`', ts: 1700000001000 },
  ] });
  eq(ws.sent, [JSON.stringify({ type: 'message', text: 'early bird' })]);
  ws._recv({ type: 'presence', users: ['alice', 'bob'] });
  eq($$('.message').map((e) => e.dataset.id), ['1', '2']);
  ok($('.message[data-id="2"]').classList.contains('mine'));
  ok(!$('.message[data-id="1"]').classList.contains('mine'));
  eq($('.message[data-id="1"] .name').textContent, 'bob');
  ok($('.message[data-id="2"] .mention'), 'mention highlighted');
  ok($('.message[data-id="2"] code'), 'inline code');
  eq($$('#presence li.user').map((e) => e.textContent), ['alice', 'bob']);
  ok($('#presence li.me').textContent === 'alice');
  eq($('#presence-count').textContent, '2');

  // Sending.
  $('#message-input').value = '  hello there ';
  $('#message-input').dispatchEvent(new window.KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
  eq(ws.sent[1], JSON.stringify({ type: 'message', text: 'hello there' }));
  // Shift+Enter does not send.
  $('#message-input').value = 'line';
  $('#message-input').dispatchEvent(new window.KeyboardEvent('keydown', { key: 'Enter', shiftKey: true, bubbles: true }));
  eq(ws.sent.length, 2);
  $('#send-button').click();
  eq(ws.sent[2], JSON.stringify({ type: 'message', text: 'line' }));
  // Too long: refused in the page.
  $('#message-input').value = 'x'.repeat(2001);
  $('#send-button').click();
  eq(ws.sent.length, 3);
  ok($$('.error').length === 1);
  $('#message-input').value = '';

  ws._recv({ type: 'message', id: 3, name: 'alice', role: 'user', text: 'hello there', ts: Date.now() });
  ws._recv({ type: 'message', id: 3, name: 'alice', role: 'user', text: 'hello there', ts: Date.now() });
  eq($$('.message').length, 3);
  ws._recv({ type: 'user_joined', name: 'carol', timestamp: Date.now() });
  ok($('.notice.join').textContent.includes('carol joined'));

  // A streamed AI reply.
  ws._recv({ type: 'ai_stream', response_id: 5, content: 'Hel', timestamp: 1 });
  ws._recv({ type: 'ai_stream', response_id: 5, content: 'lo <b>', timestamp: 2 });
  const st = $('.ai-stream[data-response-id="5"]');
  ok(st, 'stream element');
  eq(st.querySelector('.text').textContent, 'Hello <b>');
  ok(!st.querySelector('b'), 'no HTML injection');
  eq(st.querySelector('.name').textContent, 'AI');
  ws._recv({ type: 'ai_response', id: 4, name: 'AI', role: 'assistant', text: 'Hello <b>!', ts: Date.now(), response_id: 5 });
  ok(!$('.ai-stream'), 'stream replaced');
  const fin = $('.message[data-id="4"]');
  ok(fin.classList.contains('ai') && fin.dataset.responseId === '5');
  eq(fin.querySelector('.text').textContent, 'Hello <b>!');

  // AI errors.
  ws._recv({ type: 'ai_error', response_id: 0, error: 'no provider' });
  ok($('.ai-error[data-response-id="0"]').textContent.includes('no provider'));
  ws._recv({ type: 'ai_stream', response_id: 6, content: 'partial', timestamp: 2 });
  ws._recv({ type: 'ai_error', response_id: 6, error: '429' });
  ok(!$('.ai-stream'));
  ok($('.ai-error[data-response-id="6"]').textContent.includes('partial'));

  // An error frame restores what was sent.
  $('#message-input').value = 'oops';
  $('#send-button').click();
  ws._recv({ type: 'error', error: 'the message is too long' });
  eq($('#message-input').value, 'oops');
  ok($$('.error').pop().textContent.includes('too long'));
  $('#message-input').value = '';

  // A stream in flight when the connection drops, then reconnect with backoff.
  ws._recv({ type: 'ai_stream', response_id: 7, content: 'half', timestamp: 2 });
  ws._drop();
  eq($('#status').dataset.state, 'reconnecting');
  ok(/Reconnecting in \d s/.test($('#status').textContent), $('#status').textContent);
  $('#message-input').value = 'while away';
  $('#send-button').click();
  await sleep(1400);
  eq(sockets.length, 2, 'reconnected after ~1 s');
  const ws2 = sockets[1];
  ws2._open();
  ws2._recv({ type: 'history', data: [
    { id: 3, name: 'alice', role: 'user', text: 'hello there', ts: 1 },
    { id: 4, name: 'AI', role: 'assistant', text: 'Hello <b>!', ts: 1 },
    { id: 5, name: 'bob', role: 'user', text: 'missed one', ts: 1 },
    { id: 6, name: 'AI', role: 'assistant', text: 'half done', ts: 1 },
  ] });
  eq($$('.message').map((e) => e.dataset.id), ['1', '2', '3', '4', '5', '6']);
  ok(!$('.ai-stream'), 'stale stream placeholder dropped');
  eq(ws2.sent, [JSON.stringify({ type: 'message', text: 'while away' })]);
  ok($$('.notice.info').some((n) => n.textContent === 'Reconnected'));
  // Late out-of-order entry slots in by id.
  ws2._recv({ type: 'message', id: 8, name: 'bob', role: 'user', text: 'eight', ts: 1 });
  ws2._recv({ type: 'message', id: 7, name: 'bob', role: 'user', text: 'seven', ts: 1 });
  eq($$('.message').map((e) => e.dataset.id), ['1', '2', '3', '4', '5', '6', '7', '8']);

  // Backoff grows: drop twice without a history in between.
  ws2._drop();
  await sleep(1300);
  eq(sockets.length, 3);
  sockets[2]._drop();
  ok(/in [2-3] s/.test($('#status').textContent), $('#status').textContent);
  await sleep(1300);
  eq(sockets.length, 3, 'second retry waits ~2 s');

  // Leave.
  $('#leave-button').click();
  ok(!$('#join').hidden);
  eq($('#name-input').value, 'alice');
  eq($$('.message').length, 0);
  await sleep(1500);
  eq(sockets.length, 3, 'no reconnect after leaving');

  console.log(`page test: ${passed} passed, 0 failed`);
  window.close();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
