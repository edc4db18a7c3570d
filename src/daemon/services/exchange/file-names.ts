/**
 * Names for received files. A name a peer offers is a suggestion, never a
 * path: only its last component is kept, control and bidi characters are
 * dropped, characters other systems cannot store become "_", leading dots
 * (hidden files, "..") and surrounding spaces go, and the result is at most
 * NAME_BYTES of UTF-8 with its extension kept. Nothing left: "file".
 * Collisions get a suffix before the extension: "report-1.pdf".
 */
const NAME_BYTES = 200;
const EXTENSION_CHARS = 16;

// eslint-disable-next-line no-control-regex
const DROP = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;
const REPLACE = /[<>:"|?*\\]/g;

function utf8Length(s: string): number {
  return Buffer.byteLength(s, "utf8");
}

/** Cuts `s` to at most `bytes` of UTF-8, at a character boundary. */
function cut(s: string, bytes: number): string {
  if (utf8Length(s) <= bytes) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    const l = utf8Length(ch);
    if (n + l > bytes) break;
    out += ch;
    n += l;
  }
  return out;
}

function splitExtension(name: string): [string, string] {
  const dot = name.lastIndexOf(".");
  if (dot <= 0 || name.length - dot > EXTENSION_CHARS) return [name, ""];
  return [name.slice(0, dot), name.slice(dot)];
}

/** A safe single-component file name for whatever a peer offered. */
export function sanitizeFileName(offered: string): string {
  let name = offered.normalize("NFC");
  // Only the last component of anything path-like (both separator styles).
  name = name.slice(Math.max(name.lastIndexOf("/"), name.lastIndexOf("\\")) + 1);
  name = name.replace(DROP, "").replace(REPLACE, "_");
  name = name.replace(/^[\s.]+/, "").replace(/[\s.]+$/, "");
  if (name === "") return "file";
  if (utf8Length(name) > NAME_BYTES) {
    const [base, ext] = splitExtension(name);
    name = cut(base, NAME_BYTES - utf8Length(ext)).replace(/[\s.]+$/, "") + ext;
    if (name.startsWith(".") || name === "") name = "file" + ext;
  }
  return name;
}

/** The `n`th alternative for a taken name: "report.pdf" -> "report-1.pdf". */
export function withSuffix(name: string, n: number): string {
  if (n === 0) return name;
  const [base, ext] = splitExtension(name);
  return `${base}-${n}${ext}`;
}
