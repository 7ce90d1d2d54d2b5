// The ESM flavour of the typed example: named imports resolve through index.d.ts too. Not run.
import { Backend, MethodError } from 'modproxy-sdk';

const backend = new Backend().method('user.get', async (data: { id: number }, head) => {
  if (head.token === undefined) throw new MethodError('forbidden', 'no token');
  return { id: data.id };
});
await backend.listen('127.0.0.1:0');
await backend.close();
