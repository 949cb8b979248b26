// Drives `tracer serve --upstream` with the official OpenAI Node client, as an application
// would, and prints what it saw as one JSON object on stdout (tests/serve/openai_client_test.cpp
// checks it). Usage: node openai_client.mjs BASE_URL HANDLED_TEXT DEFERRED_TEXT
import OpenAI from 'openai';

const [, , baseURL, handledText, deferredText] = process.argv;
if (!baseURL || !handledText || !deferredText) {
  console.error('usage: node openai_client.mjs BASE_URL HANDLED_TEXT DEFERRED_TEXT');
  process.exit(2);
}
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'sk-test', maxRetries: 0 });
const model = 'gpt-test';
const messages = (text) => [
  { role: 'system', content: 'Classify the intent.' },
  { role: 'user', content: text },
];

async function plain(text, extra = {}) {
  const { data, response } = await client.chat.completions
    .create({ model, messages: messages(text), ...extra })
    .withResponse();
  return {
    decision: response.headers.get('x-tracer-decision'),
    reason: response.headers.get('x-tracer-reason'),
    contents: data.choices.map((c) => c.message.content),
    tool_calls: data.choices[0].message.tool_calls ?? null,
    usage: data.usage ?? null,
  };
}

async function streamed(text) {
  const { data: stream, response } = await client.chat.completions
    .create({ model, messages: messages(text), stream: true, stream_options: { include_usage: true } })
    .withResponse();
  let content = '';
  let usage = null;
  let chunks = 0;
  let finish = null;
  for await (const chunk of stream) {
    chunks += 1;
    const choice = chunk.choices[0];
    if (choice?.delta?.content) content += choice.delta.content;
    if (choice?.finish_reason) finish = choice.finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  return { decision: response.headers.get('x-tracer-decision'), content, usage, chunks, finish };
}

const out = {};
out.handled = await plain(handledText);
out.deferred = await plain(deferredText);
out.stream_handled = await streamed(handledText);
out.stream_deferred = await streamed(deferredText);
out.n3 = await plain(handledText, { n: 3 });
out.tools = await plain(handledText, {
  tools: [{ type: 'function', function: { name: 'set_intent', parameters: { type: 'object', properties: {} } } }],
  tool_choice: 'required',
});
// Floats, as the stand-in answers (the client asks for base64 unless told).
const embedding = await client.embeddings.create({ model: 'embed-test', input: 'hello', encoding_format: 'float' });
out.embeddings = { count: embedding.data.length, dims: embedding.data[0].embedding.length };
const models = [];
for await (const m of client.models.list()) models.push(m.id);
out.models = models;
try {
  await client.chat.completions.create({ model, messages: [] });
  out.error = null;
} catch (e) {
  out.error = { status: e.status ?? null, type: e.error?.type ?? null, message: e.error?.message ?? String(e) };
}
console.log(JSON.stringify(out));
