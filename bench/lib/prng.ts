/** A small seeded PRNG (mulberry32): benchmark data is generated deterministically, never downloaded. */
export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Lowercase hex string of `length` characters (ids, like the server's 32-hex profile ids). */
  hex(length: number): string {
    let out = "";
    while (out.length < length) out += this.int(0x10000).toString(16).padStart(4, "0");
    return out.slice(0, length);
  }

  /** A number with two decimals in [min, max). */
  price(min: number, max: number): number {
    return Math.round((min + this.next() * (max - min)) * 100) / 100;
  }
}

/** A seed derived from a label and a number, so each scenario and each batch has its own stream. */
export function seedOf(label: string, n = 0): number {
  let h = 2166136261 ^ n;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 16777619);
  return h >>> 0;
}
