// ESM entry: the same classes as the CommonJS entry, so `instanceof` agrees across both.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const sdk = require('./index.js');

export const { Backend, Client, MethodError, FrameError, decodeFrames } = sdk;
