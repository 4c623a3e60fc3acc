/**
 * The wire seam stays one seam: what belongs to the hand-framed HTTP/2 paths (the private push
 * header, the client-endpoint lookup, HTTP/2 flow-control settings) appears only in the wire
 * modules (common/src/wire/, server/src/wire/, worker/src/wire/), and the flow-control settings in
 * one file of them.
 */
import t from "tap";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === "gen" ? [] : sources(path);
    return name.endsWith(".ts") ? [path] : [];
  });
}

const files = ["common/src", "server/src", "worker/src"].flatMap((d) => sources(join(root, d))).map((f) => ({ path: relative(root, f), text: readFileSync(f, "utf8") }));
const inWire = (path: string) => /^(common|server|worker)\/src\/wire\//.test(path);

t.ok(files.length > 50, `the sources were found (${files.length} files)`);
for (const [what, pattern] of [
  ["the private push header", /x-paramserver-dense-push/],
  ["an ENDPOINT symbol", /\bENDPOINT\b/],
] as const) {
  const outside = files.filter((f) => pattern.test(f.text) && !inWire(f.path)).map((f) => f.path);
  t.same(outside, [], `${what}: only in the wire modules`);
}
const settings = files.filter((f) => /initialWindowSize|setLocalWindowSize/.test(f.text)).map((f) => f.path);
t.same(settings, ["common/src/wire/http2-settings.ts"], "HTTP/2 windows are set in one place");
