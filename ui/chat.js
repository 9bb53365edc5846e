// The web chat's page (run by gr.HTML's js_on_load with `element`, `props`, `server`, `upload`).
// Every piece of document text enters the DOM as a text node: nothing from a document or a question
// is parsed as HTML, so nothing needs escaping and nothing is escaped twice.
const settings = JSON.parse(props.settings);
const $ = (id) => element.querySelector('#' + id);
const STORE = 'docqa:chat:' + settings.index;  // this browser's conversation with this index
// v3: since 2026-12-04 the threshold measures an answer against the reader's "no answer" (v2), and
// each reader has its own: a threshold saved before either is not carried over.
const PREFS = 'docqa:settings:v3';
const MAX_TURNS = 200;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const box = $('question'), chat = $('chat'), counter = $('counter'), problem = $('question-error');
const sourcesList = $('sources'), passage = $('passage');
let turns = load(STORE, []);  // [{question, view}], view null while pending
let queue = [];                // indices of turns waiting for their answer, in order
let busy = false;
let active = null;             // the turn whose sources the panel lists
let generation = 0;            // counts new chats: an answer to a question of an earlier chat is dropped

async function call(name, request) {  // a server function; a failure comes back as {error}, like the server's own
  try {
    return await server[name](request);
  } catch (e) {
    return {error: 'The server did not answer (' + (e && e.message ? e.message : e) + '). Try again.'};
  }
}

function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key)) ?? fallback; } catch (e) { return fallback; }
}

function save() {
  try { localStorage.setItem(STORE, JSON.stringify(turns.slice(-MAX_TURNS))); } catch (e) { /* storage full or off */ }
}

// ---- settings, kept per browser ----
// The reader is a choice, each with its own abstention threshold: choosing one resets the threshold.
const readerBox = $('reader');
const readerOf = (name) => settings.readers.find((r) => r.name === name) || settings.readers.find((r) => r.name === settings.reader);
for (const r of settings.readers) {
  const option = document.createElement('option');
  option.value = r.name; option.textContent = r.name;
  readerBox.append(option);
}
const prefs = Object.assign({top_k: settings.top_k, reader: settings.reader}, load(PREFS, {}));
const topK = $('top-k'), threshold = $('threshold');
readerBox.value = readerOf(prefs.reader).name;
topK.value = prefs.top_k;
threshold.value = prefs.reader === readerBox.value && prefs.threshold != null ? prefs.threshold : readerOf(readerBox.value).threshold;
function showSettings() {
  $('top-k-value').textContent = topK.value;
  $('threshold-value').textContent = Number(threshold.value).toFixed(3);
  $('reader-about').textContent = readerOf(readerBox.value).about;
  localStorage.setItem(PREFS, JSON.stringify({top_k: Number(topK.value), reader: readerBox.value, threshold: Number(threshold.value)}));
}
topK.addEventListener('input', showSettings);
threshold.addEventListener('input', showSettings);
readerBox.addEventListener('change', () => { threshold.value = readerOf(readerBox.value).threshold; showSettings(); });
showSettings();

// ---- the question box ----
function showCounter() {
  const n = box.value.length, max = settings.max_question_chars;
  counter.textContent = n.toLocaleString('en') + ' / ' + max.toLocaleString('en');
  counter.classList.toggle('over', n > max);
}
box.addEventListener('input', () => { showCounter(); problem.textContent = ''; });
box.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) { event.preventDefault(); submit(); }
});
$('ask-form').addEventListener('submit', (event) => { event.preventDefault(); submit(); });

function submit() {
  const question = box.value;
  if (!question.trim()) { problem.textContent = 'Type a question first.'; return; }
  if (question.length > settings.max_question_chars) {  // refused, and the text stays in the box
    problem.textContent = 'This question has ' + question.length.toLocaleString('en') + ' characters; questions may have up to '
      + settings.max_question_chars.toLocaleString('en') + '. Shorten it and ask again.';
    return;
  }
  turns.push({question: question, view: null});
  box.value = ''; showCounter(); problem.textContent = '';
  queue.push(turns.length - 1);
  save(); render();
  work();
}

async function work() {  // answers queued questions one after another, in the order asked
  if (busy) return;
  busy = true;
  while (queue.length) {
    const i = queue[0], chatNow = generation;
    render();
    const view = await call('ask', {question: turns[i].question, top_k: Number(topK.value), threshold: Number(threshold.value),
                                    reader: readerBox.value});
    if (chatNow !== generation) continue;  // a new chat was started meanwhile: this answer belongs to no chat
    queue.shift();
    turns[i].view = view;
    save();
    active = i;
    render();
    if (view.sources && view.sources.length && view.kind !== 'not_found') openSource(i, 0);
  }
  busy = false;
  render();
}

// ---- the conversation ----
function render() {
  const atBottom = chat.scrollHeight - chat.scrollTop - chat.clientHeight < 40;
  chat.replaceChildren(...turns.flatMap((turn, i) => [el('div', {class: 'msg user'}, turn.question), botMessage(turn, i)]));
  $('ask').textContent = queue.length > 1 ? 'Ask (' + (queue.length - 1) + ' waiting)' : 'Ask';
  showSources();
  if (atBottom || queue.length) chat.scrollTop = chat.scrollHeight;
}

function botMessage(turn, i) {
  const view = turn.view;
  if (!view) {
    const reading = queue[0] === i;
    return el('div', {class: 'msg bot pending', 'aria-busy': 'true'},
      reading ? 'Reading the documents…' : 'Waiting: an earlier question is being answered first…');
  }
  if (view.error) return el('div', {class: 'msg bot error'}, '⚠️ ' + view.error);
  const body = el('div', {class: 'msg bot ' + (view.kind === 'answer' ? view.confidence.level : 'abstained'), 'data-kind': view.kind});
  if (view.kind === 'answer') {
    body.append(el('span', {class: 'answer-text'}, view.text),
      el('span', {class: 'confidence conf-' + view.confidence.level, title: 'The reader\'s confidence in this span, from 0 to 1'},
        view.confidence.words + ' (' + view.score.toFixed(2) + ')'));
  } else {
    body.append(el('strong', {}, view.kind === 'no_span' ? 'No span of the documents answers this question.'
                                                         : 'The documents do not answer this question.'),
      el('div', {class: 'reason'}, '(' + view.reason + ')'));
    if (view.kind === 'not_found' && view.sources.length) body.append(el('div', {}, 'Closest passages looked at:'));
  }
  if (view.sources.length) {
    const shown = view.kind === 'not_found' ? view.sources.slice(0, 3) : view.sources;
    body.append(el('ol', {class: 'citations'}, ...shown.map((s, n) => el('li', {},
      citeButton(i, n), sentence(s, view.kind === 'not_found' ? 240 : Infinity),
      el('span', {class: 'where'}, ' — ' + s.doc + ', characters ' + s.start + '–' + s.end)))));
  }
  const copy = el('button', {type: 'button', class: 'link copy', onclick: () => copyText(view.copy, copy)}, 'Copy answer');
  body.append(el('div', {class: 'actions'}, copy,
    view.sources.length ? el('span', {class: 'hint'}, 'Choose [1] or another citation to read it in its paragraph.') : null));
  return body;
}

function citeButton(i, n) {
  return el('button', {type: 'button', class: 'link cite', 'aria-label': 'Open source ' + (n + 1),
                       onclick: () => openSource(i, n, true)}, '[' + (n + 1) + ']');
}

function sentence(source, limit) {  // the cited text, its answer marked
  const text = source.text.length > limit ? source.text.slice(0, limit - 1) + '…' : source.text;
  if (source.answer_start === null || source.answer_start === undefined) return el('span', {}, text);
  const a = source.answer_start - source.start, b = source.answer_end - source.start;
  return el('span', {}, text.slice(0, a), el('mark', {}, text.slice(a, b)), text.slice(b));
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard API (an insecure origin): the old way
    const area = el('textarea', {class: 'visually-hidden'}, text);
    document.body.append(area); area.select(); document.execCommand('copy'); area.remove();
  }
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = 'Copy answer'; }, 1500);
}

// ---- sources ----
function showSources() {
  const view = active !== null && turns[active] ? turns[active].view : null;
  const sources = view && view.sources ? view.sources : [];
  sourcesList.replaceChildren(...sources.map((s, n) => el('li', {}, el('button', {
    type: 'button', class: 'secondary', 'data-n': n, onclick: () => openSource(active, n, true)},
    '[' + (n + 1) + '] ' + s.doc + ' · ' + (s.text.length > 90 ? s.text.slice(0, 89) + '…' : s.text)))));
  if (!sources.length) passage.replaceChildren();
}

let opened = null;  // {turn, n} of the source in the panel
async function openSource(i, n, reveal) {  // reveal: scroll the panel into view (below the chat on a phone)
  active = i;
  showSources();
  const s = turns[i].view.sources[n];
  opened = {turn: i, n: n};
  sourcesList.querySelectorAll('button').forEach((b) => b.setAttribute('aria-current', String(Number(b.dataset.n) === n)));
  passage.replaceChildren(el('p', {class: 'hint'}, 'Opening ' + s.doc + '…'));
  const view = await call('source', {doc: s.doc, start: s.start, end: s.end, answer_start: s.answer_start, answer_end: s.answer_end});
  if (!opened || opened.turn !== i || opened.n !== n) return;  // another source was chosen meanwhile
  if (view.removed) {
    passage.replaceChildren(el('p', {class: 'problem'}, '“' + s.doc + '” is no longer among the documents: it was removed after '
      + 'this answer, so its text cannot be shown. The cited sentence was: “' + s.text + '”'));
    return;
  }
  if (view.error) { passage.replaceChildren(el('p', {class: 'problem'}, view.error)); return; }
  passage.replaceChildren(el('div', {class: 'passage-doc'}, view.doc + ' · characters ' + view.start + '–' + view.end),
    textWithMark(view, 'p'),
    el('button', {type: 'button', class: 'secondary', id: 'view-document', onclick: () => openDocument(s)}, 'View whole document'));
  if (reveal) passage.scrollIntoView({block: 'nearest'});
}

function textWithMark(view, tag) {  // before, the cited range marked (its answer in bold), after
  const [pre, answer, post] = view.cited;
  const mark = el('mark', {}, pre, answer ? el('strong', {}, answer) : null, post);
  return el(tag, {}, view.clipped_before ? '…' : '', view.before, mark, view.after, view.clipped_after ? '…' : '');
}

const docView = $('doc-view');
async function openDocument(s) {
  const view = await call('document', {doc: s.doc, start: s.start, end: s.end});
  if (view.removed || view.error) {
    passage.append(el('p', {class: 'problem'}, view.error || ('“' + s.doc + '” is no longer among the documents.')));
    return;
  }
  $('doc-view-title').textContent = view.doc;
  const text = $('doc-view-text');
  text.replaceChildren(textWithMark(view, 'div'));
  docView.hidden = false;
  $('doc-view-close').focus();
  text.querySelector('mark').scrollIntoView({block: 'center'});
}
function closeDocument() { docView.hidden = true; }
$('doc-view-close').addEventListener('click', closeDocument);
docView.addEventListener('click', (event) => { if (event.target === docView) closeDocument(); });
document.addEventListener('keydown', (event) => { if (event.key === 'Escape' && !docView.hidden) closeDocument(); });

$('new-chat').addEventListener('click', () => {
  turns = []; queue = []; generation += 1; active = null; opened = null;
  save(); render(); box.focus();
});

// ---- documents ----
const sizeOf = (chars) => chars < 10000 ? chars.toLocaleString('en') + ' characters'
  : (chars / 1000).toLocaleString('en', {maximumFractionDigits: 0}) + 'k characters';
const when = (iso) => { const d = new Date(iso); return isNaN(d) ? 'date unknown' : d.toLocaleString('en-GB', {dateStyle: 'medium', timeStyle: 'short'}); };

function showDocuments(listing) {
  const docs = listing.documents;
  $('docs-summary').textContent = 'The chat answers from ' + docs.length + ' document' + (docs.length === 1 ? '' : 's') + ':';
  $('documents').replaceChildren(...docs.map((d) => {
    const item = el('li', {'data-name': d.name}, el('span', {class: 'name'}, d.name),
      el('span', {class: 'meta'}, ' · ' + sizeOf(d.chars) + ' · added ' + when(d.added)));
    const remove = el('button', {type: 'button', class: 'secondary', 'aria-label': 'Remove ' + d.name, onclick: () => {
      item.querySelector('.confirm')?.remove();
      item.append(el('span', {class: 'confirm'}, ' Remove it? ',
        el('button', {type: 'button', onclick: () => removeDocument(d.name)}, 'Yes, remove'),
        el('button', {type: 'button', class: 'secondary', onclick: (e) => e.target.parentNode.remove()}, 'Keep')));
    }}, '×');
    item.append(remove);
    return item;
  }));
}

function status(lines) {
  $('upload-status').replaceChildren(...lines.map(([text, bad]) => el('div', {class: bad ? 'problem' : ''}, (bad ? '⚠️ ' : '') + text)));
}

async function removeDocument(name) {
  status([['Removing ' + name + '…', false]]);
  const result = await call('remove_document', {name: name});
  if (result.documents) showDocuments(result);
  status([result.error ? [result.error, true] : ['Removed ' + name + '.', false]]);
}

const uploadInput = $('upload-input');
uploadInput.setAttribute('accept', settings.suffixes.join(','));
$('upload-limit').textContent = settings.suffixes.join(', ') + '; up to ' + settings.max_upload_mb + ' MB each';
uploadInput.addEventListener('change', async () => {
  const files = Array.from(uploadInput.files);
  uploadInput.value = '';
  if (!files.length) return;
  const lines = [], paths = [];
  status([['Uploading and indexing ' + files.map((f) => f.name).join(', ') + '…', false]]);  // replaces the last status
  for (const file of files) {
    const suffix = file.name.includes('.') ? file.name.slice(file.name.lastIndexOf('.')).toLowerCase() : '';
    if (!settings.suffixes.includes(suffix)) {
      lines.push([file.name + ': unsupported file type \'' + (suffix || '(none)') + '\'; supported: ' + settings.suffixes.join(', ') + '. Not added.', true]);
    } else if (file.size > settings.max_upload_mb * 1024 * 1024) {
      lines.push([file.name + ': larger than the ' + settings.max_upload_mb + ' MB limit; not added.', true]);
    } else {
      try { paths.push((await upload(file)).path); } catch (e) { lines.push([file.name + ': the upload failed (' + (e.message || e) + ').', true]); }
    }
  }
  if (paths.length) {
    const result = await call('add_files', {paths: paths});
    if (result.error) {
      lines.push([result.error, true]);
    } else {
      showDocuments(result);
      lines.unshift(...result.added.map((name) => ['Added ' + name + '.', false]));
      lines.push(...result.problems.map((p) => [p, true]));
    }
  }
  status(lines);
});

// ---- start ----
for (const q of settings.examples) {
  $('examples').append(el('button', {type: 'button', class: 'secondary', onclick: () => { box.value = q; showCounter(); box.focus(); }}, q));
}
turns.forEach((turn, i) => { if (!turn.view) queue.push(i); });  // asked before a reload, not yet answered
showCounter();
render();
call('documents', {}).then((listing) => listing.error ? status([[listing.error, true]]) : showDocuments(listing));
box.focus();
work();
