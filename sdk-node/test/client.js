'use strict';
// A small length-line client over node:net, written apart from the package on purpose: the tests check
// the Rust core against an independent reader and writer, not against itself.

const net = require('node:net');

/** Frames one payload the way this project writes: "%10d\r\n" then the bytes. */
function frame(payload) {
  const bytes = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${String(bytes.length).padStart(10)}\r\n`, 'latin1'), bytes]);
}

/** One connection; replies come back in order, so each call waits for the next whole frame. */
class Client {
  #socket;
  #buffer = Buffer.alloc(0);
  #waiting = [];
  #replies = [];
  #closed = false;
  #error = null;

  constructor(socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#drain();
    });
    socket.on('error', (error) => {
      this.#error = error;
    });
    socket.on('close', () => {
      this.#closed = true;
      this.#drain();
    });
  }

  static connect(port, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host);
      socket.once('connect', () => resolve(new Client(socket)));
      socket.once('error', reject);
    });
  }

  #drain() {
    while (this.#buffer.length >= 12) {
      const length = Number(this.#buffer.subarray(0, 10).toString('latin1').trim());
      if (this.#buffer.length < 12 + length) break;
      this.#replies.push(this.#buffer.subarray(12, 12 + length));
      this.#buffer = this.#buffer.subarray(12 + length);
    }
    while (this.#waiting.length > 0 && (this.#replies.length > 0 || this.#closed)) {
      const { resolve, reject } = this.#waiting.shift();
      if (this.#replies.length > 0) resolve(this.#replies.shift());
      else reject(this.#error ?? new Error('connection closed before a reply'));
    }
  }

  /** Writes raw bytes (a frame, part of one, or garbage). */
  write(bytes) {
    this.#socket.write(bytes);
  }

  /** Half-closes: no more requests. */
  end() {
    this.#socket.end();
  }

  /** The next reply's raw payload. */
  next() {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ resolve, reject });
      this.#drain();
    });
  }

  /** Resolves when the server has closed the connection; true if it had nothing left to say. */
  closed() {
    return new Promise((resolve) => {
      const check = () => resolve(this.#replies.length === 0 && this.#buffer.length === 0);
      if (this.#closed) check();
      else this.#socket.once('close', check);
    });
  }

  /** Sends `{head: {method, ...head}, data}` and returns the parsed reply. */
  async call(method, data, head = {}) {
    this.write(frame(JSON.stringify({ head: { method, ...head }, data })));
    return JSON.parse((await this.next()).toString('utf8'));
  }

  destroy() {
    this.#socket.destroy();
  }
}

/** One call on a fresh connection. */
async function call(port, method, data, head) {
  const client = await Client.connect(port);
  try {
    return await client.call(method, data, head);
  } finally {
    client.destroy();
  }
}

/** A TCP port nobody listens on right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

module.exports = { Client, call, frame, freePort };
