import { expect, test } from "bun:test";
import { decodeExchangeFrame, encodeExchangeFrame, type ExchangeFrame } from "../../src/protocol/exchange.ts";
import { fuzz } from "../support/fuzz.ts";
import { SAMPLE_FRAMES } from "./exchange-samples.ts";

const CASES = Number(process.env.PILOT_FUZZ_CASES ?? 100_000);

test(`decodeExchangeFrame survives ${CASES} random and mutated inputs, and what it accepts re-encodes to the same bytes`, () => {
  const seeds = SAMPLE_FRAMES.map((f) => encodeExchangeFrame(f));
  let accepted = 0;
  fuzz({ seed: 1001, cases: CASES, seeds, maxRandomLength: 120 }, (input) => {
    const r = decodeExchangeFrame(input);
    if (r.ok) {
      accepted++;
      // Canonical: one encoding per frame, so a decoded frame re-encodes byte for byte.
      expect(encodeExchangeFrame(r.value as ExchangeFrame)).toEqual(input);
    } else {
      expect(typeof r.error.code).toBe("string");
      expect(typeof r.error.message).toBe("string");
    }
  });
  expect(accepted).toBeGreaterThan(CASES / 10);
});
