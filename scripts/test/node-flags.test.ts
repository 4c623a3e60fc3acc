import t from "tap";
import { readFileSync } from "node:fs";
import { NODE_FLAGS } from "../../common/src/node-flags.ts";

// The images cannot import the list, so their CMD repeats it; this keeps the copies equal.
for (const [image, script] of [["server", "server/src/main.ts"], ["worker", "worker/src/main.ts"]] as const) {
  t.test(`the ${image} image runs ${script} with the node flags of common/src/node-flags.ts`, async (t) => {
    const dockerfile = readFileSync(new URL(`../../docker/Dockerfile.${image}`, import.meta.url), "utf8");
    const cmd = dockerfile.split("\n").filter((l) => l.startsWith("CMD ["));
    t.equal(cmd.length, 1, "one CMD line");
    t.same(JSON.parse(cmd[0]!.slice("CMD ".length)), ["node", ...NODE_FLAGS, script]);
  });
}

t.test("the flags are ones this node accepts", async (t) => {
  // node exits 9 ("bad option") for a flag it does not know.
  const { spawnSync } = await import("node:child_process");
  const r = spawnSync(process.execPath, [...NODE_FLAGS, "-e", "0"], { encoding: "utf8" });
  t.equal(r.status, 0, r.stderr);
});
