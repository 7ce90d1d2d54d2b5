'use strict';
// The JavaScript face of modproxy-sdk. Framing, dispatch and serving happen in the Rust core
// (`native.js` loads it); this file only adapts handlers and errors to JavaScript habits.

const native = loadNative();

function loadNative() {
  try {
    return require('./native.js');
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND' || !String(error.message).includes('native.js')) throw error;
    throw new Error(`modproxy-sdk: the native addon is not built; run \`npm run build\` in ${__dirname}`, {
      cause: error,
    });
  }
}

const METHOD_ERROR = Symbol.for('modproxy-sdk.MethodError');

/**
 * Throw this from a handler to choose the error reply: `{"error": {"code": code, "message": message}}`.
 * Anything else a handler throws or rejects with becomes a `handler_error` reply.
 */
class MethodError extends Error {
  constructor(code, message) {
    super(message === undefined ? String(code) : String(message));
    if (typeof code !== 'string' || code === '') {
      throw new TypeError('MethodError: code must be a non-empty string');
    }
    this.name = 'MethodError';
    this.code = code;
  }

  // Recognises MethodErrors from another copy of this package too (e.g. one bundled twice);
  // subclasses keep the ordinary prototype check.
  static [Symbol.hasInstance](value) {
    if (this !== MethodError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return value !== null && typeof value === 'object' && value[METHOD_ERROR] === true;
  }
}
Object.defineProperty(MethodError.prototype, METHOD_ERROR, { value: true });

/** A frame the core refused; `code` is the core's error kind and `frames` the payloads before it. */
class FrameError extends Error {
  constructor(kind, message, frames) {
    super(message);
    this.name = 'FrameError';
    this.code = kind;
    this.frames = frames;
  }
}

/**
 * Decodes length-line frames with the core's decoder, as a reader of a stream would: `input` is one
 * buffer or an array of successive reads. Returns the payloads, or throws a FrameError.
 */
function decodeFrames(input, maxFrame) {
  const chunks = (Array.isArray(input) ? input : [input]).map(toBuffer);
  const { frames, error } = native.decodeFrames(chunks, maxFrame);
  if (error) throw new FrameError(error.kind, error.message, frames);
  return frames;
}

function toBuffer(chunk) {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('decodeFrames: input must be a Buffer, a string, or an array of them');
}

/** Says what a non-MethodError throw was, for the `handler_error` message. */
function describe(thrown) {
  if (typeof thrown === 'string') return thrown;
  // Whatever was thrown may have getters, toJSON or toString that throw in turn.
  for (const show of [
    // An Error, also one from another realm (a vm context, a worker's structured clone).
    (value) => (typeof value?.message === 'string' ? value.message || value.name : undefined),
    (value) => JSON.stringify(value),
    (value) => String(value),
  ]) {
    try {
      const shown = show(thrown);
      if (typeof shown === 'string') return shown;
    } catch {
      // try the next way
    }
  }
  return 'a value that cannot be shown';
}

/**
 * Wraps a user handler into the shape the core calls: never throws, never rejects. `data` and `head`
 * arrive as JSON text. A handler that returns a plain value gets its reply back to the core at once as
 * JSON text, without a promise to settle; one that returns a promise (an `async` function) gets a promise
 * of an Outcome. The reply travels as JSON text so that `toJSON`, `undefined` and friends behave as in
 * `JSON.stringify`.
 */
function adapt(name, fn) {
  const failed = (thrown) =>
    thrown instanceof MethodError
      ? { code: thrown.code, message: thrown.message }
      : { code: 'handler_error', message: `'${name}' threw: ${describe(thrown)}` };
  const reply = (value) => {
    try {
      return JSON.stringify(value) ?? 'null';
    } catch (thrown) {
      return { code: 'handler_error', message: `reply of '${name}' is not JSON: ${describe(thrown)}` };
    }
  };
  return (dataJson, headJson) => {
    let value;
    try {
      value = fn(JSON.parse(dataJson), JSON.parse(headJson));
    } catch (thrown) {
      return failed(thrown);
    }
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return reply(value);
    let then;
    try {
      then = value.then; // a getter may throw, which an `await` would have turned into a rejection
    } catch (thrown) {
      return failed(thrown);
    }
    if (typeof then !== 'function') return reply(value);
    return Promise.resolve(value).then(
      (settled) => {
        const json = reply(settled);
        return typeof json === 'string' ? { reply: json } : json;
      },
      failed,
    );
  };
}

/** The `{doc, data, result}` JSON text the core's `_describe` serves for one method. */
function methodDescription(name, schema) {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw new TypeError(`Backend.method('${name}'): the schema must be an object {data, result, doc}`);
  }
  const { data = {}, result = {}, doc = null } = schema;
  for (const [key, value] of [['data', data], ['result', result]]) {
    if (typeof value !== 'boolean' && (value === null || typeof value !== 'object' || Array.isArray(value))) {
      throw new TypeError(`Backend.method('${name}'): schema.${key} must be a JSON Schema object`);
    }
  }
  if (doc !== null && typeof doc !== 'string') {
    throw new TypeError(`Backend.method('${name}'): schema.doc must be a string`);
  }
  return JSON.stringify({ doc, data, result });
}

/**
 * Calls methods over one keep-alive connection: of a backend (`addr` is its `"host:port"`), or of a
 * module through the proxy (`addr` is the proxy's port with `[server] raw_frames = true`, and
 * `options.module` names the module). `options.timeout` (ms, default 30000) bounds connecting and
 * each reply. An error reply rejects with a `MethodError` carrying its `code`; no reply in time with an
 * Error whose `code` is `ETIMEDOUT`; a broken connection with one whose `code` is `ECONNECTION` (the
 * next call connects again). Concurrent calls take turns on the connection.
 */
class Client {
  #native;

  constructor(addr, options = {}) {
    if (typeof addr !== 'string') throw new TypeError('Client: addr must be a "host:port" string');
    const { module = null, timeout = 30000 } = options;
    if (!Number.isInteger(timeout) || timeout <= 0 || timeout > 0xffffffff) {
      throw new TypeError('Client: options.timeout must be a positive whole number of milliseconds');
    }
    this.#native = new native.NativeClient(addr, module, timeout);
  }

  /** Calls `method` with `data` (anything `JSON.stringify` accepts) and resolves with the reply. */
  async call(method, data = null) {
    const answer = await this.#native.call(String(method), JSON.stringify(data) ?? 'null');
    if (answer.reply !== undefined && answer.reply !== null) return JSON.parse(answer.reply);
    if (answer.code !== undefined && answer.code !== null) throw new MethodError(answer.code, answer.message);
    const error = new Error(answer.message);
    error.code = answer.failure === 'timeout' ? 'ETIMEDOUT' : 'ECONNECTION';
    throw error;
  }

  /** Closes the connection; a later call opens another. */
  close() {
    return this.#native.close();
  }
}

/**
 * A backend: register methods, then `listen`. Each method is a plain function `(data, head)`, sync or
 * async; its return value is the reply.
 */
class Backend {
  #native = new native.NativeBackend();
  #listening = null;
  #stopped = null;

  /**
   * Registers `fn` under `name`. Returns the backend, so calls chain. Throws an Error if the name is
   * empty, begins with `_` (reserved for the protocol) or is already registered: the core's rules.
   * `schema` (`{data, result, doc}`, each optional) is what `_describe` says about the method: JSON
   * Schemas of `data` and of the reply, and a doc string; what is left out is described as any JSON.
   */
  method(name, fn, schema = {}) {
    if (typeof name !== 'string') {
      throw new TypeError('Backend.method: name must be a string');
    }
    if (typeof fn !== 'function') {
      throw new TypeError(`Backend.method('${name}'): the handler must be a function`);
    }
    const description = methodDescription(name, schema);
    const one = adapt(name, fn);
    // The core hands calls over in batches (see src/handler.rs): one result per call, in order.
    this.#native.method(name, (datas, heads) => datas.map((data, i) => one(data, heads[i])), description);
    return this;
  }

  /**
   * Binds `addr` (`"host:port"`; port 0 picks a free one) and serves. Resolves with the bound address
   * once bound; rejects if binding fails. The process stays alive until `close()`.
   */
  listen(addr, options = {}) {
    if (typeof addr !== 'string') {
      return Promise.reject(new TypeError('Backend.listen: addr must be a "host:port" string'));
    }
    if (this.#listening) {
      return Promise.reject(new Error('Backend.listen: listen() was already called: a Backend listens once'));
    }
    this.#listening = this.#native.listen(addr, options.maxFrame, options.register).then((bound) => {
      // A pending native promise holds Node's event loop open while serving; it settles on close().
      this.#stopped = this.#native.stopped();
      return bound;
    });
    return this.#listening;
  }

  /** The bound address (like `server.address()`), or `null` when not listening. */
  address() {
    return this.#native.address();
  }

  /**
   * Stops accepting connections and resolves once in-flight calls have been answered. Called again while
   * they finish (a second Ctrl-C), it stops at once without waiting for them.
   */
  async close() {
    if (this.#listening) await this.#listening.catch(() => {});
    await this.#native.close();
    if (this.#stopped) await this.#stopped;
  }
}

module.exports = { Backend, Client, MethodError, FrameError, decodeFrames };
