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
}

/** A backend: register methods, then `listen`; the process stays alive until `close()`. */
export declare class Backend {
  constructor();
  /**
   * Registers `fn` under `name` (before `listen`). Returns the backend, so calls chain. Throws an `Error`
   * if `name` is empty, begins with `_` (reserved for the protocol: `_ping`, `_pipeline`, ...) or is
   * already registered.
   */
  method<Data = any, Reply = unknown>(name: string, fn: Handler<Data, Reply>): this;
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
