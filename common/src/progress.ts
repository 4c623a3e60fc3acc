/**
 * Progress bars with an ETA for people at a terminal: a block of rows kept at the bottom of the
 * screen while log lines scroll above it. Only for a TTY — programs whose output is piped (tests,
 * CI, ECS) keep their plain periodic lines, which scripts parse.
 */

export interface ProgressRow {
  label: string;
  /** Done so far, 0..1; undefined for a row that is text only. */
  fraction?: number;
  /** Shown after the bar (or alone). */
  detail: string;
}

/** A bar of `width` cells for `fraction` (0..1), with eighth-cell resolution. */
export function renderBar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const eighths = Math.round(f * width * 8);
  const full = Math.floor(eighths / 8);
  const part = eighths % 8;
  const partial = part === 0 ? "" : (["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"][part] ?? "");
  return `${"█".repeat(full)}${partial}`.padEnd(width, "·");
}

/** "42s", "3m05s", "1h02m"; "?" when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * Estimates the time left from the rate of progress since the first observation (so a run that
 * resumed half-way does not count the half it did not do now).
 */
export class EtaEstimator {
  #first: { at: number; fraction: number } | undefined;
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Seconds left at `fraction` done; NaN until there is a rate to go on. */
  update(fraction: number): number {
    const now = this.#now();
    this.#first ??= { at: now, fraction };
    const done = fraction - this.#first.fraction;
    const elapsed = (now - this.#first.at) / 1000;
    if (done <= 0 || elapsed <= 0) return fraction >= 1 ? 0 : NaN;
    return ((1 - fraction) * elapsed) / done;
  }
}

/** The part of a terminal stream the board needs (a tty.WriteStream has it). */
export interface TerminalStream {
  write(s: string): boolean;
  columns?: number;
}

/**
 * A block of progress rows redrawn in place at the bottom of a terminal. Log lines written through
 * `log()` appear above it. Redraws are throttled; `log()` and `finish()` always redraw.
 */
export class ProgressBoard {
  readonly #out: TerminalStream;
  readonly #rows: ProgressRow[] = [];
  readonly #minIntervalMs: number;
  #drawn = 0;
  #lastDraw = 0;
  #finished = false;

  constructor(out: TerminalStream, o: { minIntervalMs?: number } = {}) {
    this.#out = out;
    this.#minIntervalMs = o.minIntervalMs ?? 100;
  }

  /** Sets row `index` (rows are created as needed) and redraws if the last redraw is old enough. */
  set(index: number, row: ProgressRow): void {
    while (this.#rows.length <= index) this.#rows.push({ label: "", detail: "" });
    this.#rows[index] = row;
    if (Date.now() - this.#lastDraw >= this.#minIntervalMs) this.#redraw("");
  }

  /** Replaces every row; redraws (throttled) unless `redraw` is false. */
  setAll(rows: readonly ProgressRow[], redraw = true): void {
    this.#rows.splice(0, this.#rows.length, ...rows);
    if (redraw && Date.now() - this.#lastDraw >= this.#minIntervalMs) this.#redraw("");
  }

  /** Writes `text` (one or more whole lines) above the board. */
  log(text: string): void {
    if (this.#finished) {
      this.#out.write(text);
      return;
    }
    this.#redraw(text.endsWith("\n") ? text : `${text}\n`);
  }

  /** Draws the board a last time and leaves it on the screen; later logs go below it. */
  finish(): void {
    if (this.#finished) return;
    this.#redraw("");
    this.#finished = true;
  }

  #redraw(above: string): void {
    const width = Math.max(40, (this.#out.columns ?? 100) - 1);
    // Back to the board's first line and clear to the end of the screen, then log, then the board.
    const up = this.#drawn > 0 ? `\x1b[${this.#drawn}F\x1b[0J` : "";
    const lines = this.#rows.map((r) => formatRow(r, width));
    this.#out.write(`${up}${above}${lines.map((l) => `${l}\n`).join("")}`);
    this.#drawn = lines.length;
    this.#lastDraw = Date.now();
  }
}

/** One row, cut to `width` columns so it never wraps (wrapping would break the redraw). */
export function formatRow(r: ProgressRow, width: number): string {
  const label = r.label.padEnd(10).slice(0, 12);
  if (r.fraction === undefined) return `${label} ${r.detail}`.slice(0, width);
  const pct = `${Math.floor(Math.min(1, Math.max(0, r.fraction)) * 100)}`.padStart(3);
  const barWidth = Math.max(10, Math.min(30, width - label.length - r.detail.length - 9));
  return `${label} ${renderBar(r.fraction, barWidth)} ${pct}% ${r.detail}`.slice(0, width);
}
