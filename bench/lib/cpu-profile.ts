/** Reads the `.cpuprofile` files `node --cpu-prof` wrote and prints where the server's time went. */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

function where(url: string): string {
  if (!url) return "(native)";
  const clean = url.replace(/^file:\/\//, "");
  const inModules = clean.lastIndexOf("node_modules/");
  if (inModules >= 0) return clean.slice(inModules + "node_modules/".length);
  const inDist = clean.indexOf("/dist/");
  return inDist >= 0 ? clean.slice(inDist + "/dist/".length) : clean;
}

/** The top functions by self time, and self time by file/package, of one profile. */
export function summariseProfile(file: string, top = 20): string {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const totalHits = profile.nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0) || 1;
  const ms = (profile.endTime - profile.startTime) / 1000;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  const parent = new Map<number, ProfileNode>();
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) parent.set(child, node);
  }
  const nameOf = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    return `${functionName || "(anonymous)"}  ${where(url)}${url ? `:${lineNumber + 1}` : ""}`;
  };
  /** Inclusive time of the project's own functions (src/), each sample counted once per function. */
  const inclusive = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const seen = new Set<string>();
    for (let at: ProfileNode | undefined = node; at; at = parent.get(at.id)) {
      if (!where(at.callFrame.url).startsWith("src/")) continue;
      const name = nameOf(at);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + hits);
    }
  }
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const file = where(node.callFrame.url);
    const fn = nameOf(node);
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + hits);
    const pkg = file.startsWith("(")
      ? file
      : file
          .split("/")
          .slice(0, file.startsWith("@") ? 2 : 1)
          .join("/");
    const bucket = pkg === "src" || pkg === "bench" ? file : pkg;
    byFile.set(bucket, (byFile.get(bucket) ?? 0) + hits);
  }
  const rows = (map: Map<string, number>, n: number) =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, hits]) => `  ${((100 * hits) / totalHits).toFixed(1).padStart(5)}%  ${name}`)
      .join("\n");
  return [
    `${path.basename(file)}: ${(ms / 1000).toFixed(1)} s profiled`,
    "self time by function:",
    rows(byFunction, top),
    "self time by file / package:",
    rows(byFile, 12),
    "total (inclusive) time of src/ functions:",
    rows(inclusive, top),
  ].join("\n");
}

export function summariseProfiles(dir: string): string {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile"));
  } catch {
    return `no CPU profiles in ${dir}`;
  }
  return files.map((f) => summariseProfile(path.join(dir, f))).join("\n\n");
}
