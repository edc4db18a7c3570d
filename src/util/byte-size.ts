/**
 * Sizes as people write them: "64MiB", "512k", "1.5G", "2TiB" or a bare number
 * of bytes (units are powers of 1024, case does not matter).
 *
 *   parseByteSize(text): number     bytes, or NaN when the text is not a size
 *   formatByteSize(bytes): string   "64MiB", "512KiB", "1000 bytes"
 */
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: KiB,
  kb: KiB,
  kib: KiB,
  m: MiB,
  mb: MiB,
  mib: MiB,
  g: GiB,
  gb: GiB,
  gib: GiB,
  t: TiB,
  tb: TiB,
  tib: TiB,
};

export function parseByteSize(text: string): number {
  const m = /^([0-9]{1,15}(?:\.[0-9]{1,6})?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  return m && unit !== undefined ? Math.round(Number(m[1]) * unit) : Number.NaN;
}

export function formatByteSize(bytes: number): string {
  for (const [unit, size] of [["TiB", TiB], ["GiB", GiB], ["MiB", MiB], ["KiB", KiB]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes} bytes`;
}
