// The whole stack a browser test needs: the real `modproxy` binary in front of the three example todo
// backends, started by tests/stack.py (through tests/stack.cjs) as for the end-to-end tests.

import { startStack as launch } from '../stack.cjs';

export const LANGUAGES = ['rust', 'python', 'node'];

/**
 * Starts the proxy and the three backends. Returns `{ url, home, stopBackend(lang), stop() }`;
 * `stop()` ends everything and removes the temporary HOME.
 */
export async function startStack() {
  const modules = Object.fromEntries(LANGUAGES.map((lang) => [lang, `todo-${lang}`]));
  const stack = await launch({ modules, settings: 'pipeline = 16, fail_timeout = 0.5' });
  return {
    url: stack.url,
    home: stack.home,
    /** Stops one backend, e.g. to see how the page shows a backend that is down. */
    async stopBackend(lang) {
      await stack.stop(lang);
    },
    stop: () => stack.close(),
  };
}
