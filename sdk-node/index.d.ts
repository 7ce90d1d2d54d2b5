// Type declarations for modproxy-sdk. The runtime is index.js (CommonJS) and index.mjs (ESM).

/** A JSON value, as handlers receive it in `data`. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** The request's `head`: `method`, the caller's `token` if any, and every other field as sent. */
export interface Head {
  method: string;
  token?: string;
  [field: string]: JsonValue | undefined;
}

/**
 * A method: receives the request's `data` and `head`, returns the reply (anything `JSON.stringify`
 * accepts), or a Promise of it. Throw a `MethodError` to choose the error reply.
 */
export type Handler<Data = any, Reply = unknown> = (data: Data, head: Head) => Reply | PromiseLike<Reply>;

/** The address a backend is bound to, shaped like Node's `server.address()`. */
export interface BoundAddress {
  address: string;
  family: 'IPv4' | 'IPv6';
  port: number;
}

export interface ListenOptions {
  /** Largest request payload in bytes; a larger frame gets a `bad_request` reply. Default 64 MiB. */
  maxFrame?: number;
  /** Register in etcd while serving, so a proxy module with `discover = "etcd"` finds this backend. */
  register?: RegisterOptions;
}

/**
 * Self-registration: the address is written under `prefix` on a lease of `ttl` seconds that is kept
 * alive, renewed after etcd comes back, and revoked by `close()` (before in-flight calls drain).
 */
export interface RegisterOptions {
  /** The etcd cluster's client URLs, e.g. `['http://127.0.0.1:2379']`. */
  etcd: string[];
  /** The proxy module served; the prefix is `/modproxy/modules/<module>/` unless `prefix` is given. */
  module: string;
  /** The `host:port` the proxy should connect to; by default the bound address (not `0.0.0.0`). */
  address?: string;
  /** The etcd key prefix, ending in `/`. */
  prefix?: string;
  /** The lease's TTL in seconds, at least 1. Default 10. */
  ttl?: number;
}

/** A JSON Schema (draft 2020-12): an object, or `true`/`false`. */
export type JsonSchema = boolean | { [keyword: string]: unknown };

/** What `_describe` says about a method; each part left out is described as any JSON (`{}`). */
export interface MethodSchema {
  /** JSON Schema of the request's `data`. */
  data?: JsonSchema;
  /** JSON Schema of the reply. */
  result?: JsonSchema;
  /** What the method does, for people. */
  doc?: string | null;
}

export interface ClientOptions {
  /** The module to call, when `addr` is the proxy's raw-frame port (`[server] raw_frames = true`). */
  module?: string | null;
  /** Milliseconds allowed for connecting and for each reply. Default 30000. */
  timeout?: number;
}

/**
 * Calls methods over one keep-alive connection, of a backend or (with `module`) through the proxy.
 * An error reply rejects with a `MethodError` carrying its `code`; no reply in time with an `Error` whose
 * `code` is `'ETIMEDOUT'`; a broken connection with one whose `code` is `'ECONNECTION'`.
 */
export declare class Client {
  constructor(addr: string, options?: ClientOptions);
  /** Calls `method` with `data` and resolves with the reply. */
  call<Reply = unknown>(method: string, data?: unknown): Promise<Reply>;
  /** Closes the connection; a later call opens another. */
  close(): Promise<void>;
}

/** A backend: register methods, then `listen`; the process stays alive until `close()`. */
export declare class Backend {
  constructor();
  /**
   * Registers `fn` under `name` (before `listen`). Returns the backend, so calls chain. Throws an `Error`
   * if `name` is empty, begins with `_` (reserved for the protocol: `_ping`, `_pipeline`, ...) or is
   * already registered. `schema` describes the method to `_describe` callers.
   */
  method<Data = any, Reply = unknown>(name: string, fn: Handler<Data, Reply>, schema?: MethodSchema): this;
  /** Binds `"host:port"` (port 0 picks a free one) and serves; resolves once bound. */
  listen(addr: string, options?: ListenOptions): Promise<BoundAddress>;
  /** The bound address, or `null` when not listening. */
  address(): BoundAddress | null;
  /** Stops accepting connections; resolves once in-flight calls have been answered. Called again while
   * they finish (a second Ctrl-C), it stops at once without waiting for them. */
  close(): Promise<void>;
}

/** Throw from a handler to reply `{"error": {"code": code, "message": message}}`. */
export declare class MethodError extends Error {
  constructor(code: string, message?: string);
  readonly name: 'MethodError';
  readonly code: string;
}

/** A frame the core's decoder refused. */
export declare class FrameError extends Error {
  readonly name: 'FrameError';
  /** `missing_crlf`, `bad_digit`, `empty`, `too_large` or `truncated`. */
  readonly code: 'missing_crlf' | 'bad_digit' | 'empty' | 'too_large' | 'truncated';
  /** The payloads decoded before the error. */
  readonly frames: Buffer[];
}

/**
 * Decodes length-line frames with the core's decoder; `input` is one buffer or successive reads.
 * Throws a `FrameError` on a bad or truncated stream. Meant for tests and tools.
 */
export declare function decodeFrames(
  input: Uint8Array | string | ReadonlyArray<Uint8Array | string>,
  maxFrame?: number,
): Buffer[];
