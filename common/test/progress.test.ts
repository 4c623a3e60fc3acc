/**
 * Terminal progress bars: the bar, the ETA, and the board's redraw protocol (cursor up over the
 * board, clear, log line, board again), on a fake terminal.
 */
import t from "tap";
import { EtaEstimator, formatDuration, formatRow, ProgressBoard, renderBar } from "../src/progress.ts";

t.test("bars fill proportionally, with eighth-cell resolution, and clamp", async (t) => {
  t.equal(renderBar(0, 10), "··········");
  t.equal(renderBar(0.5, 10), "█████·····");
  t.equal(renderBar(0.55, 10), "█████▌····");
  t.equal(renderBar(1, 10), "██████████");
  t.equal(renderBar(7, 4), "████", "over 1 is full");
  t.equal(renderBar(NaN, 4), "····", "NaN is empty");
});

t.test("durations read like a clock", async (t) => {
  t.equal(formatDuration(42.2), "42s");
  t.equal(formatDuration(185), "3m05s");
  t.equal(formatDuration(3725), "1h02m");
  t.equal(formatDuration(NaN), "?");
});

t.test("the ETA comes from the rate since the first observation", async (t) => {
  let now = 0;
  const eta = new EtaEstimator(() => now);
  t.ok(Number.isNaN(eta.update(0.5)), "no rate yet (a resumed run starts half-way)");
  now = 10_000;
  t.ok(Math.abs(eta.update(0.6) - 40) < 1e-9, "0.1 in 10 s: 0.4 left takes 40 s");
  now = 20_000;
  t.equal(eta.update(1), 0, "done");
});

t.test("rows never exceed the terminal's width", async (t) => {
  const row = formatRow({ label: "worker-0", fraction: 0.25, detail: "epoch 1/4 · batch 10/250 · ETA 3m05s".repeat(4) }, 60);
  t.equal(row.length, 60);
  t.match(row, /^worker-0\s+█/);
  t.equal(formatRow({ label: "", detail: "elapsed 3s" }, 60).trim(), "elapsed 3s", "text-only rows have no bar");
});

t.test("the board redraws below the log lines", async (t) => {
  const written: string[] = [];
  const board = new ProgressBoard({ write: (s) => (written.push(s), true), columns: 80 }, { minIntervalMs: 0 });
  board.setAll([{ label: "a", fraction: 0.5, detail: "half" }, { label: "", detail: "status" }]);
  t.notMatch(written[0]!, /\x1b\[/, "the first draw moves no cursor");
  board.log("a log line");
  t.match(written[1]!, /^\x1b\[2F\x1b\[0Ja log line\na .*50% half\n +status\n$/, "a log line goes up over the two board lines, clears, then the board follows");
  board.finish();
  board.log("after");
  t.equal(written.at(-1), "after", "after finish, lines are written plainly below the board");
});
