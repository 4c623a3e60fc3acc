/**
 * What Linux's /proc says about another process (CPU time, resident memory) and about the machine,
 * sampled over time so a benchmark can cut out its measured window afterwards.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc's utime/stime (almost always 100). */
export const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU seconds `pid` has used so far, or undefined once it is gone. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime, stime (fields 14 and 15)
  } catch {
    return undefined;
  }
}

/** Resident memory now and at its peak (VmRSS, VmHWM), in bytes, or undefined once it is gone. */
export function processMemory(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb("VmRSS"), peak: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

/** Busy and total CPU seconds of the whole machine so far (all cores), from /proc/stat. */
export function machineCpuSeconds(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal (guest is inside user)
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    return { busy: (total - idle) / CLOCK_TICKS, total: total / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

export interface Sample {
  /** Milliseconds since the epoch (comparable across processes). */
  t: number;
  /** Summed over the sampled processes (several server shards are one server). */
  cpu: number;
  rss: number;
  peak: number;
  /** Per process, in the order of the pids. */
  cpus: number[];
  peaks: number[];
  machineBusy: number;
}

/** Samples one or more processes every `intervalMs` until stop() or until one of them exits. */
export class ProcessSampler {
  readonly pids: readonly number[];
  readonly samples: Sample[] = [];
  readonly #timer: NodeJS.Timeout;

  constructor(pids: number | readonly number[], intervalMs = 100) {
    this.pids = typeof pids === "number" ? [pids] : pids;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs);
    this.#timer.unref();
  }

  sample(): void {
    const cpus = this.pids.map(processCpuSeconds);
    const mems = this.pids.map(processMemory);
    const machine = machineCpuSeconds();
    if (cpus.some((c) => c === undefined) || mems.some((m) => m === undefined)) return;
    const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
    const peaks = mems.map((m) => m!.peak);
    this.samples.push({
      t: Date.now(),
      cpu: sum(cpus as number[]),
      rss: sum(mems.map((m) => m!.rss)),
      peak: sum(peaks),
      cpus: cpus as number[],
      peaks,
      machineBusy: machine?.busy ?? NaN,
    });
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
