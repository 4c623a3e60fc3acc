/**
 * Charts as PNG files, for `make results` and `make experiment`: Vega-Lite specifications compiled
 * and rendered to SVG by Vega (headless, no browser, no canvas), then rasterised by resvg (a
 * self-contained native renderer shipped in an npm package). Everything works offline.
 *
 * Build a chart with lineChart / barChart (or any Vega-Lite spec) and write it with writePng.
 */
import { writeFile } from "node:fs/promises";
import { Resvg } from "@resvg/resvg-js";
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

export type ChartSpec = TopLevelSpec;

/** Sizes and fonts shared by every chart, so a results folder looks like one report. */
const CONFIG = {
  font: "DejaVu Sans",
  background: "white",
  padding: 12,
  view: { stroke: "#e3e7ef" },
  axis: { labelColor: "#4a5263", titleColor: "#1c2433", gridColor: "#eef0f5", domainColor: "#b8c0cf", tickColor: "#b8c0cf", labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12, orient: "bottom" as const },
  title: { fontSize: 15, anchor: "start" as const, color: "#1c2433", subtitleColor: "#6b7587" },
  range: { category: ["#3559e0", "#e8743b", "#19a979", "#945ecf", "#ed4a7b", "#13a4b4", "#bf399e", "#6c8893", "#d6a21e", "#525df4"] },
};

export interface Point {
  /** Legend entry the point belongs to (one line per series). */
  series: string;
  x: number;
  y: number;
}

/** One line per series; points drawn when a series has few of them. */
export function lineChart(o: {
  title: string;
  subtitle?: string;
  xTitle: string;
  yTitle: string;
  points: readonly Point[];
  seriesTitle?: string;
  /** d3-format of the y axis labels, e.g. ".0%" or ",.0f". */
  yFormat?: string;
  yZero?: boolean;
  /** Whole-number x values (epochs): ticks on integers only. */
  xInteger?: boolean;
  width?: number;
  height?: number;
}): ChartSpec {
  const perSeries = new Map<string, number>();
  for (const p of o.points) perSeries.set(p.series, (perSeries.get(p.series) ?? 0) + 1);
  const few = [...perSeries.values()].every((n) => n <= 30);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title,
    width: o.width ?? 640,
    height: o.height ?? 320,
    data: { values: o.points.map((p) => ({ ...p })) },
    mark: { type: "line", point: few, strokeWidth: 2, interpolate: "linear" },
    encoding: {
      x: { field: "x", type: "quantitative", title: o.xTitle, ...(o.xInteger ? { axis: { tickMinStep: 1, format: "d" } } : {}) },
      y: { field: "y", type: "quantitative", title: o.yTitle, scale: { zero: o.yZero ?? false }, ...(o.yFormat ? { axis: { format: o.yFormat } } : {}) },
      color: { field: "series", type: "nominal", title: o.seriesTitle ?? null },
    },
    config: CONFIG,
  };
}

/** Bars per category, optionally grouped (side by side) by `group`. */
export function barChart(o: {
  title: string;
  subtitle?: string;
  xTitle: string;
  yTitle: string;
  bars: readonly { category: string; value: number; group?: string }[];
  yFormat?: string;
  width?: number;
  height?: number;
}): ChartSpec {
  const grouped = o.bars.some((b) => b.group !== undefined);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    title: o.subtitle ? { text: o.title, subtitle: o.subtitle } : o.title,
    width: o.width ?? 640,
    height: o.height ?? 300,
    data: { values: o.bars.map((b) => ({ ...b })) },
    mark: { type: "bar", cornerRadiusTopLeft: 3, cornerRadiusTopRight: 3 },
    encoding: {
      x: { field: "category", type: "nominal", title: o.xTitle, sort: null, axis: { labelAngle: 0 } },
      y: { field: "value", type: "quantitative", title: o.yTitle, ...(o.yFormat ? { axis: { format: o.yFormat } } : {}) },
      ...(grouped ? { xOffset: { field: "group" }, color: { field: "group", type: "nominal", title: null } } : { color: { value: "#3559e0" } }),
    },
    config: CONFIG,
  };
}

/** The chart as SVG text. */
export async function renderSvg(spec: ChartSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The chart as PNG bytes, at `scale` times its size (2 for sharp text on high-density screens). */
export async function renderPng(spec: ChartSpec, scale = 2): Promise<Buffer> {
  const svg = await renderSvg(spec);
  const resvg = new Resvg(svg, { fitTo: { mode: "zoom", value: scale }, font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans" }, background: "white" });
  return resvg.render().asPng();
}

export async function writePng(path: string, spec: ChartSpec, scale = 2): Promise<void> {
  await writeFile(path, await renderPng(spec, scale));
}
