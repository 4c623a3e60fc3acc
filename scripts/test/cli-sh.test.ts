// scripts/lib/cli.sh, the option parsing of the shell scripts: through a small script of its own,
// and through the real scripts' error paths (which stop before anything is built or deployed).
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import t from "tap";

const repo = dirname(dirname(dirname(fileURLToPath(import.meta.url))));

const probe = `
set -euo pipefail
source "${join(repo, "scripts", "lib", "cli.sh")}"
usage() { echo "Usage: probe [--name N] [--flag] [-- REST...]"; }
name=unset
flag=false
cli_value_options=(--name)
[[ -n "\${REST:-}" ]] && cli_rest_allowed=true
option() {
  case "$1" in
    --name)
      [[ -n "$2" ]] || cli_usage_error "--name must not be empty"
      name="$2"
      ;;
    --flag) flag=true ;;
    *) return 1 ;;
  esac
}
cli_parse probe "$@"
echo "name=$name flag=$flag rest=\${cli_rest[*]:-}"
echo "here=$here repo=$repo" >&2
`;

const probeFile = join(t.testdir({ "probe.sh": probe }), "probe.sh");

function probeWith(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync("bash", [probeFile, ...args], { encoding: "utf8", env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test("options, values in both spellings, and what follows --", async (t) => {
  t.same(probeWith([]), { status: 0, stdout: "name=unset flag=false rest=\n", stderr: `here=${dirname(probeFile)} repo=${repo}\n` });
  t.equal(probeWith(["--name", "a b", "--flag"]).stdout, "name=a b flag=true rest=\n");
  t.equal(probeWith(["--name=x=y"]).stdout, "name=x=y flag=false rest=\n", "--opt=value splits at the first =");
  t.equal(probeWith(["--name", "--flag"]).stdout, "name=--flag flag=false rest=\n", "a value may look like an option");
  t.equal(probeWith(["--flag", "--", "--name", "z"], { REST: "1" }).stdout, "name=unset flag=true rest=--name z\n");
});

t.test("-h and --help print the usage on stdout and exit 0", async (t) => {
  for (const arg of ["-h", "--help"]) {
    const r = probeWith(["--flag", arg, "--bogus"]);
    t.equal(r.status, 0, arg);
    t.match(r.stdout, /^Usage: probe/, arg);
  }
});

t.test("bad input: one line naming what was wrong, the usage, exit 2", async (t) => {
  const cases: [string[], string][] = [
    [["--bogus"], "probe: unknown argument: --bogus"],
    [["positional"], "probe: unknown argument: positional"],
    [["--flag=yes"], "probe: unknown argument: --flag=yes"],
    [["--bogus=1"], "probe: unknown argument: --bogus=1"],
    [["--name"], "probe: --name needs a value"],
    [["--name", ""], "probe: --name must not be empty"],
    [["--", "x"], "probe: unknown argument: --"],
  ];
  for (const [args, message] of cases) {
    const r = probeWith(args);
    t.equal(r.status, 2, `${args.join(" ")}: exit 2`);
    t.equal(r.stderr.split("\n")[0], message, `${args.join(" ")}: says what was wrong`);
    t.match(r.stderr, /Usage: probe/, `${args.join(" ")}: with the usage`);
    t.equal(r.stdout, "", `${args.join(" ")}: nothing else ran`);
  }
});

t.test("the project's scripts refuse bad options before doing anything", async (t) => {
  const cases: [string, string[], string][] = [
    ["terraform/deploy.sh", ["--platform"], "deploy: --platform needs a value"],
    ["terraform/deploy.sh", ["--dry-run=1"], "deploy: unknown argument: --dry-run=1"],
    ["terraform/destroy.sh", ["--force"], "destroy: unknown argument: --force"],
    ["docker/build-images.sh", ["--tag"], "build-images: --tag needs a value"],
    ["docker/build-images.sh", ["--", "x"], "build-images: unknown argument: --"],
    ["docker/test-e2e.sh", ["--workers", "0"], "test-e2e: --workers needs a number from 1 to 99, not '0'"],
  ];
  for (const [script, args, message] of cases) {
    const r = spawnSync(join(repo, script), args, { encoding: "utf8" });
    t.equal(r.status, 2, `${script} ${args.join(" ")}: exit 2`);
    t.equal(r.stderr.split("\n")[0], message, `${script} ${args.join(" ")}`);
    t.match(r.stderr, /Usage: /, `${script}: with its usage`);
  }
});
