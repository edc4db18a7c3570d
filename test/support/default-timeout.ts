/**
 * Preloaded by bunfig.toml for every test run: the default timeout of a test
 * and of a hook is 30 s instead of Bun's 5 s. Many tests start real processes
 * (daemons, a rendezvous, a browser), and on a loaded 2-core machine a
 * four-daemon cluster can take longer than 5 s to come up; a test that needs
 * more, or wants to fail faster, still says so itself.
 *
 * `setDefaultTimeout` applies to the file it is called in: called here alone,
 * it covered only the first test file of a run, and every later file's hooks
 * timed out at 5 s under load. So each test file is loaded with the call
 * prepended on its first line (line numbers in stack traces are unchanged).
 */
import { plugin } from "bun";
import { setDefaultTimeout } from "bun:test";

export const DEFAULT_TEST_TIMEOUT_MS = 30_000;

setDefaultTimeout(DEFAULT_TEST_TIMEOUT_MS);
plugin({
  name: "pilot-default-test-timeout",
  setup(build) {
    build.onLoad({ filter: /\.test\.[cm]?tsx?$/ }, async (args) => ({
      contents: `import { setDefaultTimeout as __pilotSetDefaultTimeout } from "bun:test"; __pilotSetDefaultTimeout(${DEFAULT_TEST_TIMEOUT_MS}); ${await Bun.file(args.path).text()}`,
      loader: args.path.endsWith("x") ? "tsx" : "ts",
    }));
  },
});
