import { expect, test } from "bun:test";
import { sanitizeFileName, withSuffix } from "../../../src/daemon/services/exchange/file-names.ts";

test("a name from a peer never becomes a path", () => {
  const cases: [string, string][] = [
    ["report.pdf", "report.pdf"],
    ["../../etc/passwd", "passwd"],
    ["..", "file"],
    [".", "file"],
    ["...", "file"],
    ["/", "file"],
    ["a/b/c.txt", "c.txt"],
    ["..\\..\\windows\\system32\\x.dll", "x.dll"],
    [".bashrc", "bashrc"],
    ["  .hidden  ", "hidden"],
    ["a\u0000b", "ab"],
    ["line\nbreak\r.txt", "linebreak.txt"],
    ["evil\u202Etxt.exe", "eviltxt.exe"],
    ['what?<>:"|*.txt', "what_______.txt"],
    ["trailing. . .", "trailing"],
  ];
  for (const [offered, expected] of cases) expect(sanitizeFileName(offered)).toBe(expected);
});

test("every sanitised name is one safe component of bounded length", () => {
  const hostile = ["../".repeat(100) + "x", "a".repeat(5000), "é".repeat(3000) + ".tar.gz", "\u0000".repeat(10), "x/" + ".".repeat(300), "名前".repeat(200) + ".txt"];
  for (let i = 0; i < 2000; i++) {
    let s = "";
    for (let j = 0; j < (i % 40) + 1; j++) s += String.fromCharCode([0, 0x2e, 0x2f, 0x5c, 0x61, 0x0a, 0xe9, 0x202e, 0x20][(i * 7 + j * 13) % 9]!);
    hostile.push(s);
  }
  for (const h of hostile) {
    const n = sanitizeFileName(h);
    expect(n.length).toBeGreaterThan(0);
    expect(Buffer.byteLength(n)).toBeLessThanOrEqual(200);
    expect(n).not.toContain("/");
    expect(n).not.toContain("\\");
    expect(n).not.toContain("\u0000");
    expect(n.startsWith(".")).toBe(false);
    expect(n === ".." || n === ".").toBe(false);
    // eslint-disable-next-line no-control-regex
    expect(/[\u0000-\u001f]/.test(n)).toBe(false);
  }
  // A long name keeps its extension.
  expect(sanitizeFileName("a".repeat(400) + ".tar.gz").endsWith(".gz")).toBe(true);
});

test("collisions get a suffix before the extension", () => {
  expect(withSuffix("report.pdf", 0)).toBe("report.pdf");
  expect(withSuffix("report.pdf", 2)).toBe("report-2.pdf");
  expect(withSuffix("README", 1)).toBe("README-1");
});
