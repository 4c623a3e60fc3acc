// A small SVG line chart for the dashboard: axes with round ticks, one line (and optional dots)
// per series, redrawn in place. No library: the page must work offline and without a build step.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, parent) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

/** About `count` round tick values covering [lo, hi]. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Ticks for a span of seconds, on steps a clock reads well (5 s, 15 s, 1 min, ...). */
export function timeTicks(lo, hi, count = 6) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
  const step = steps.find((s) => (hi - lo) / s <= count) ?? 86400 * Math.ceil((hi - lo) / count / 86400);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi; v += step) out.push(v);
  return out;
}

/** Rounds [lo, hi] outwards to tick steps so lines do not touch the frame. */
function niceDomain(lo, hi) {
  if (lo === hi) return lo === 0 ? [0, 1] : [Math.min(0, lo), Math.max(0, hi) * 1.1 || 1];
  const t = ticks(lo, hi, 5);
  const step = t.length > 1 ? t[1] - t[0] : (hi - lo) / 5;
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step];
}

export class LineChart {
  /**
   * @param {HTMLElement} host element to draw into
   * @param {{ xLabel: string, yLabel: string, xFormat?: (v: number) => string, yFormat?: (v: number) => string,
   *           yMin?: number, yMax?: number, xMin?: number, xTime?: boolean, yInteger?: boolean, empty?: string }} o
   */
  constructor(host, o) {
    this.host = host;
    this.o = o;
    this.width = 560;
    this.height = 260;
    this.svg = el("svg", { viewBox: `0 0 ${this.width} ${this.height}`, class: "chart", role: "img", "aria-label": o.yLabel });
    host.appendChild(this.svg);
  }

  /** @param {{ name: string, color: string, points: [number, number][], dots?: boolean, dashed?: boolean }[]} series */
  draw(series) {
    const { width, height, o } = this;
    const m = { left: 54, right: 14, top: 12, bottom: 38 };
    const svg = this.svg;
    svg.replaceChildren();
    const all = series.flatMap((s) => s.points);
    svg.dataset.points = String(all.length);
    if (all.length === 0) {
      el("text", { x: width / 2, y: height / 2, class: "empty", "text-anchor": "middle" }, svg).textContent = o.empty ?? "waiting for data…";
      return;
    }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    let [x0, x1] = [o.xMin ?? Math.min(...xs), Math.max(...xs)];
    if (x1 === x0) x1 = x0 + 1;
    let [y0, y1] = niceDomain(o.yMin ?? Math.min(...ys), o.yMax ?? Math.max(...ys));
    if (o.yMin !== undefined) y0 = o.yMin;
    if (o.yMax !== undefined) y1 = Math.max(o.yMax, Math.max(...ys));
    const px = (v) => m.left + ((v - x0) / (x1 - x0)) * (width - m.left - m.right);
    const py = (v) => height - m.bottom - ((v - y0) / (y1 - y0 || 1)) * (height - m.top - m.bottom);
    const fx = o.xFormat ?? ((v) => String(v));
    const fy = o.yFormat ?? ((v) => String(v));

    const grid = el("g", { class: "grid" }, svg);
    const yTicks = ticks(y0, y1, 5).filter((v) => !o.yInteger || Number.isInteger(v));
    for (const v of yTicks) {
      el("line", { x1: m.left, x2: width - m.right, y1: py(v), y2: py(v) }, grid);
      el("text", { x: m.left - 8, y: py(v) + 4, "text-anchor": "end", class: "tick" }, grid).textContent = fy(v);
    }
    for (const v of o.xTime ? timeTicks(x0, x1) : ticks(x0, x1, 6)) {
      el("line", { x1: px(v), x2: px(v), y1: m.top, y2: height - m.bottom, class: "vgrid" }, grid);
      el("text", { x: px(v), y: height - m.bottom + 16, "text-anchor": "middle", class: "tick" }, grid).textContent = fx(v);
    }
    el("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "axis" }, svg);
    el("text", { x: (m.left + width - m.right) / 2, y: height - 4, "text-anchor": "middle", class: "label" }, svg).textContent = o.xLabel;

    for (const s of series) {
      if (s.points.length === 0) continue;
      const d = s.points.map((p, i) => `${i === 0 ? "M" : "L"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
      el("path", { d, stroke: s.color, class: `line${s.dashed ? " dashed" : ""}`, "data-series": s.name }, svg);
      if (s.dots || s.points.length === 1) {
        for (const p of s.points) el("circle", { cx: px(p[0]), cy: py(p[1]), r: 3.2, fill: s.color, class: "dot" }, svg);
      }
    }
  }
}
