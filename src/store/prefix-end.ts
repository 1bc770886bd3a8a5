/** startsWith as a range: the upper bound both segment compilers give a prefix. */

/** The smallest string greater than every string that starts with `s` (code point order), or null if none. */
export function prefixEnd(s: string): string | null {
  // Walks back from the end, code point by code point: spreading every code point into String.fromCodePoint
  // overflowed the stack for a value of about 150k characters (a 500; hostile-input audit F6).
  let end = s.length;
  for (;;) {
    if (end === 0) return null;
    const start =
      end >= 2 && isLowSurrogate(s.charCodeAt(end - 1)) && isHighSurrogate(s.charCodeAt(end - 2)) ? end - 2 : end - 1;
    const last = s.codePointAt(start) as number;
    if (last !== 0x10ffff) return s.slice(0, start) + String.fromCodePoint(last + 1 === 0xd800 ? 0xe000 : last + 1);
    end = start;
  }
}

function isHighSurrogate(unit: number): boolean {
  return unit >= 0xd800 && unit <= 0xdbff;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
