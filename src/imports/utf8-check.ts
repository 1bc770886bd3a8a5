/**
 * Finds CSV records whose bytes are not valid UTF-8 (SEMANTICS §11 CSV cells: text is UTF-8), without slowing the
 * reading of valid files: each read is checked at once by the native `isUtf8`, and only a read that fails it is kept
 * for its records to be checked one by one. Decoding alone would turn the bad bytes into U+FFFD and store that as the user's data.
 */
import { isUtf8 } from "node:buffer";

/** How many bytes at the end of `buf` begin a character that the next read completes. */
function incompleteTail(buf: Buffer): number {
  for (let back = 1; back <= Math.min(3, buf.length); back++) {
    const byte = buf[buf.length - back] as number;
    if (byte < 0x80) return 0;
    if (byte >= 0xc0) {
      const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : 2;
      return need > back ? back : 0;
    }
  }
  return 0;
}

export class Utf8Records {
  /**
   * Reads that failed the check and that records still to come may cover (the parser hands a record on a little
   * after reading its end, and a record may span reads): each from a character boundary to one, with its offset.
   */
  private readonly dirty: Array<{ base: number; bytes: Buffer }> = [];
  private carry: Buffer | null = null;

  /** Takes the next read; `offset` is where it starts in the bytes the parser is given. */
  read(chunk: Buffer, offset: number): void {
    const buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
    const base = offset - (this.carry?.length ?? 0);
    const end = buf.length - incompleteTail(buf);
    this.carry = end < buf.length ? Buffer.from(buf.subarray(end)) : null;
    const bytes = buf.subarray(0, end);
    if (!isUtf8(bytes)) this.dirty.push({ base, bytes });
  }

  /** Whether the file ended in the middle of a character: its last record is then not valid UTF-8. */
  get cutAtEnd(): boolean {
    return this.carry !== null;
  }

  /** Whether the record between `start` and `end` (offsets in the parsed bytes) holds bytes that are not UTF-8. */
  invalid(start: number, end: number): boolean {
    // Records come in order: reads that end before this one starts are done with.
    while (this.dirty.length > 0) {
      const first = this.dirty[0] as { base: number; bytes: Buffer };
      if (first.base + first.bytes.length > start) break;
      this.dirty.shift();
    }
    for (const read of this.dirty) {
      if (read.base >= end) break;
      const from = Math.max(start, read.base) - read.base;
      const to = Math.min(end, read.base + read.bytes.length) - read.base;
      if (from < to && !isUtf8(read.bytes.subarray(from, to))) return true;
    }
    return false;
  }
}
