/**
 * Reading a V8 CPU profile (`node --cpu-prof`): self time per function and per source file, so the
 * benchmark can say where a server or worker spends its time.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { ROOT } from "./processes.ts";
import { round } from "./stats.ts";

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number } }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  function: string;
  /** file:line (1-based) relative to the repository, or the URL as V8 gave it. */
  location: string;
  self_ms: number;
  /** Share of the profile's non-idle time. */
  share: number;
}

export interface ProfileSummary {
  file: string;
  /** Whether only the samples inside a window (the measured rounds) were counted. */
  windowed: boolean;
  total_ms: number;
  idle_ms: number;
  functions: SelfTime[];
  files: { file: string; self_ms: number; share: number }[];
}

function where(url: string): string {
  if (url === "") return "";
  const path = url.startsWith("file://") ? decodeURIComponent(new URL(url).pathname) : url;
  return path.startsWith(ROOT) ? relative(ROOT, path) : path.replace(/^.*\/node_modules\//, "node_modules/");
}

/**
 * V8 stamps samples with the monotonic clock in microseconds (CLOCK_MONOTONIC on Linux, the clock of
 * process.hrtime), the same in every process: an epoch-millisecond window maps onto it through this
 * process's offset between the two clocks.
 */
export function epochWindowToMonotonicUs(fromMs: number, toMs: number): { fromUs: number; toUs: number } {
  const offsetUs = Date.now() * 1000 - Number(process.hrtime.bigint() / 1000n);
  return { fromUs: fromMs * 1000 - offsetUs, toUs: toMs * 1000 - offsetUs };
}

/** Self time per function of a profile; only samples inside `window` (monotonic µs) when given. */
export function summarizeProfile(file: string, top = 10, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time before sample i: sample i ran until sample i + 1.
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i] ?? 0;
    if (window !== undefined && (t < window.fromUs || t > window.toUs)) continue;
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + dt);
  }
  const fns = new Map<string, { fn: string; location: string; us: number }>();
  const files = new Map<string, number>();
  let idle = 0;
  let total = 0;
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === "(idle)") {
      idle += us;
      continue;
    }
    const location = f.url === "" ? "" : `${where(f.url)}:${f.lineNumber + 1}`;
    const key = `${f.functionName}@${location}`;
    const e = fns.get(key) ?? { fn: f.functionName || "(anonymous)", location, us: 0 };
    e.us += us;
    fns.set(key, e);
    const fileKey = f.url === "" ? f.functionName : where(f.url);
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
  }
  const busy = total - idle;
  return {
    file: relative(ROOT, file),
    windowed: window !== undefined,
    total_ms: round(total / 1000, 1)!,
    idle_ms: round(idle / 1000, 1)!,
    functions: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((e) => ({ function: e.fn, location: e.location, self_ms: round(e.us / 1000, 1)!, share: round(e.us / busy, 3)! })),
    files: [...files.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([file, us]) => ({ file, self_ms: round(us / 1000, 1)!, share: round(us / busy, 3)! })),
  };
}

/** Summaries of every .cpuprofile file in `dir`. */
export function summarizeProfiles(dir: string, top = 10, window?: { fromUs: number; toUs: number }): ProfileSummary[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".cpuprofile"))
    .sort()
    .map((f) => summarizeProfile(join(dir, f), top, window));
}

export function formatProfile(s: ProfileSummary): string {
  const what = s.windowed ? "in the measured rounds" : "over the whole process";
  const lines = [`${s.file}: ${s.total_ms} ms sampled ${what}, ${s.idle_ms} ms idle; top self time (share of busy time):`];
  for (const f of s.functions) lines.push(`  ${f.self_ms.toFixed(1).padStart(9)} ms ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.function}  ${f.location}`);
  lines.push("  by file:");
  for (const f of s.files) lines.push(`  ${f.self_ms.toFixed(1).padStart(9)} ms ${(f.share * 100).toFixed(1).padStart(5)}%  ${f.file}`);
  return lines.join("\n");
}
