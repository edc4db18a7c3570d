/**
 * Preloaded by bunfig.toml for every test file: the default timeout of a test
 * and of a hook is 30 s instead of Bun's 5 s. Many tests start real processes
 * (daemons, a rendezvous, a browser), and on a loaded 2-core machine a
 * four-daemon cluster can take longer than 5 s to come up; a test that needs
 * more, or wants to fail faster, still says so itself.
 */
import { setDefaultTimeout } from "bun:test";

setDefaultTimeout(30_000);
