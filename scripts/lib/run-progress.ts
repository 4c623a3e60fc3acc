/**
 * `make test-local`'s terminal view: on a TTY, one progress bar per worker (epoch, batch, loss, ETA)
 * plus a line with the dashboard URL, kept below the scrolling log lines. The bars are fed from the
 * workers' own periodic progress lines, so they need nothing from the server. When stdout is not a
 * terminal the output is exactly the prefixed log lines, which tests parse.
 */
import { EtaEstimator, formatDuration, ProgressBoard, type ProgressRow, type TerminalStream } from "../../common/src/progress.ts";

/** "epoch 2/5 batch 40/125 | version 300 | loss 0.6123 | ..." (a worker's periodic line). */
const STEP = /epoch (\d+)\/(\d+) batch (\d+)\/(\d+) \| version (\d+) \| loss ([\d.]+)/;
/** "epoch 2/5 done | test accuracy 78.10% | ..." */
const EPOCH_DONE = /epoch (\d+)\/(\d+) done \| test accuracy ([\d.]+)%/;
/** "finished: test accuracy 79.97% after ..." */
const FINISHED = /finished: test accuracy ([\d.]+)%/;

interface WorkerView {
  fraction: number;
  detail: string;
  done: boolean;
  eta: EtaEstimator;
  accuracy: string;
}

export class RunProgress {
  readonly #board: ProgressBoard | undefined;
  readonly #out: TerminalStream;
  readonly #workers: WorkerView[];
  readonly #started = Date.now();
  readonly #dashboardUrl: string | undefined;
  readonly #timer: NodeJS.Timeout | undefined;

  constructor(o: { workers: number; dashboardUrl: string | undefined; out?: TerminalStream & { isTTY?: boolean } }) {
    const out = o.out ?? process.stdout;
    this.#out = out;
    this.#board = out.isTTY ? new ProgressBoard(out) : undefined;
    this.#dashboardUrl = o.dashboardUrl;
    this.#workers = Array.from({ length: o.workers }, () => ({ fraction: 0, detail: "starting", done: false, eta: new EtaEstimator(), accuracy: "" }));
    if (this.#board) {
      this.#draw();
      // The elapsed time and ETAs move even when no line arrives.
      this.#timer = setInterval(() => this.#draw(), 1000);
      this.#timer.unref();
    }
  }

  /** A line a process printed: shown above the bars (or plainly), and fed to its worker's bar. */
  line(name: string, text: string): void {
    const prefixed = `${name.padEnd(9)}| ${text}\n`;
    if (this.#board === undefined) {
      this.#out.write(prefixed);
      return;
    }
    const m = /^worker-(\d+)$/.exec(name);
    const w = m ? this.#workers[Number(m[1])] : undefined;
    if (w) this.#feed(w, text);
    this.#board.setAll(this.#rows(), false);
    this.#board.log(prefixed);
  }

  #feed(w: WorkerView, text: string): void {
    let s: RegExpExecArray | null;
    if ((s = STEP.exec(text))) {
      const [epoch, epochs, batch, batches] = [Number(s[1]), Number(s[2]), Number(s[3]), Number(s[4])];
      w.fraction = (epoch - 1 + batch / Math.max(1, batches)) / epochs;
      w.detail = `epoch ${epoch}/${epochs} · batch ${batch}/${batches} · loss ${s[6]}`;
    } else if ((s = EPOCH_DONE.exec(text))) {
      w.fraction = Number(s[1]) / Number(s[2]);
      w.accuracy = `${s[3]}%`;
      w.detail = `epoch ${s[1]}/${s[2]} done`;
    } else if ((s = FINISHED.exec(text))) {
      w.fraction = 1;
      w.done = true;
      w.accuracy = `${s[1]}%`;
      w.detail = "finished";
    }
  }

  #rows(): ProgressRow[] {
    const rows: ProgressRow[] = this.#workers.map((w, i) => {
      const eta = w.done ? "" : ` · ETA ${formatDuration(w.eta.update(w.fraction))}`;
      return { label: `worker-${i}`, fraction: w.fraction, detail: `${w.detail}${w.accuracy ? ` · test acc ${w.accuracy}` : ""}${eta}` };
    });
    const elapsed = formatDuration((Date.now() - this.#started) / 1000);
    rows.push({ label: "", detail: `elapsed ${elapsed}${this.#dashboardUrl ? ` · dashboard ${this.#dashboardUrl}` : ""}` });
    return rows;
  }

  #draw(): void {
    this.#board?.setAll(this.#rows());
  }

  /** Leaves the bars on screen; what follows (the summary) prints below them. */
  finish(): void {
    clearInterval(this.#timer);
    this.#draw();
    this.#board?.finish();
  }
}
