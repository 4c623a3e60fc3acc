// deploy.sh and destroy.sh against stand-in `aws`, `docker`, `terraform` and `git` executables.
//
// Each test copies the two scripts into a fresh directory laid out like the repository
// (terraform/, docker/), puts the stand-ins first on PATH, runs the script as a real process and
// reads the log in which every stand-in recorded its arguments, one call per line. PATH holds only
// the stand-ins and links to the few system tools the scripts use, so the real terraform/aws/docker
// of the machine can never be reached, and a missing stand-in is a missing prerequisite.
import t, { type Test } from "tap";
import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const terraformDir = dirname(dirname(fileURLToPath(import.meta.url)));
const SHA = "0123456789ab";
const SERVER_REPO = "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-parameter-server";
const WORKER_REPO = "123456789012.dkr.ecr.us-west-2.amazonaws.com/distributed-ps-dev-worker";
const REGISTRY = "123456789012.dkr.ecr.us-west-2.amazonaws.com";

// Every stand-in appends "name<TAB>arg<TAB>arg..." to $FAKE_LOG; FAKE_* variables steer answers.
const standIns: Record<string, string> = {
  terraform: `
case "$*" in
  *" apply "* | *" destroy "*) [[ "\${FAKE_TERRAFORM_FAIL:-}" == "$2" ]] && { echo "Error: fake $2 failure" >&2; exit 1; } ;;
esac
if [[ "$2" == output ]]; then
  case "$4" in
    parameter_server_ecr_repository_url) echo -n "${SERVER_REPO}" ;;
    worker_ecr_repository_url) echo -n "${WORKER_REPO}" ;;
    region) echo -n "us-west-2" ;;
    estimated_cost_per_hour_usd) echo -n "1.6786" ;;
    monitoring_commands) echo "aws logs tail /ecs/distributed-ps-dev-parameter-server --follow" ;;
    *) echo "fake terraform: unknown output $4" >&2; exit 1 ;;
  esac
fi
exit 0`,
  aws: `
case "$1 $2" in
  "sts get-caller-identity") [[ -n "\${FAKE_AWS_NO_CREDENTIALS:-}" ]] && { echo "Unable to locate credentials" >&2; exit 255; }; echo 123456789012 ;;
  "ecr get-login-password") echo -n "fake-ecr-password" ;;
  "ecr describe-images") [[ -n "\${FAKE_ECR_HAS_TAG:-}" ]] || { echo "ImageNotFoundException" >&2; exit 254; } ;;
esac
exit 0`,
  docker: `
case "$1" in
  info) [[ -n "\${FAKE_DOCKER_DOWN:-}" ]] && { echo "Cannot connect to the Docker daemon" >&2; exit 1; } ;;
  login) stdin="$(cat)"; printf 'docker-login-stdin\\t%s\\n' "$stdin" >>"$FAKE_LOG" ;;
  build) while (($#)); do [[ "$1" == --platform ]] && echo "\${2#linux/}" >"$FAKE_LOG.arch"; shift; done ;;
  image) echo "\${FAKE_DOCKER_ARCH:-$(cat "$FAKE_LOG.arch")}" ;;
esac
exit 0`,
  git: `
[[ -n "\${FAKE_GIT_NO_REPO:-}" ]] && { echo "fatal: not a git repository" >&2; exit 128; }
case "$*" in
  *rev-parse*) echo "${SHA}" ;;
  *status*) [[ -n "\${FAKE_GIT_DIRTY:-}" ]] && echo " M server/src/main.ts" ;;
esac
exit 0`,
};

// System tools the scripts (and the stand-ins) call; everything else is absent from PATH.
const systemTools = ["bash", "cat", "date", "dirname", "rm", "sed"];

function which(tool: string): string {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const candidate = join(dir, tool);
    if (dir && existsSync(candidate)) return candidate;
  }
  throw new Error(`${tool} not found on PATH`);
}

interface Sandbox {
  repo: string;
  run(script: string, args?: string[], opts?: { env?: Record<string, string>; input?: string }): Run;
  calls(): string[][];
  tfvars(): string | undefined;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function sandbox(t: Test, opts: { without?: string[] } = {}): Sandbox {
  const dir = t.testdir({
    repo: {
      terraform: {},
      docker: { "Dockerfile.server": "FROM scratch\n", "Dockerfile.worker": "FROM scratch\n" },
      scripts: { lib: { "cli.sh": readFileSync(join(terraformDir, "..", "scripts", "lib", "cli.sh"), "utf8") } },
    },
    fakebin: {},
    sysbin: {},
  });
  const repo = join(dir, "repo");
  for (const script of ["deploy.sh", "destroy.sh"]) {
    copyFileSync(join(terraformDir, script), join(repo, "terraform", script));
    chmodSync(join(repo, "terraform", script), 0o755);
  }
  for (const [name, body] of Object.entries(standIns)) {
    if (opts.without?.includes(name)) continue;
    const file = join(dir, "fakebin", name);
    writeFileSync(file, `#!/usr/bin/env bash\n(IFS=$'\\t'; printf '%s\\t%s\\n' ${name} "$*") >>"$FAKE_LOG"\n${body}\n`);
    chmodSync(file, 0o755);
  }
  for (const tool of systemTools) symlinkSync(which(tool), join(dir, "sysbin", tool));
  const log = join(dir, "calls.log");
  writeFileSync(log, "");

  return {
    repo,
    run(script, args = [], { env = {}, input } = {}) {
      const result = spawnSync(join(repo, "terraform", script), args, {
        env: { PATH: [join(dir, "fakebin"), join(dir, "sysbin")].join(delimiter), HOME: dir, FAKE_LOG: log, ...env },
        // No input means stdin is /dev/null: a script that asks must see end-of-file.
        stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        input,
        encoding: "utf8",
        timeout: 20_000,
      });
      return { status: result.status, stdout: result.stdout, stderr: result.stderr };
    },
    calls() {
      return readFileSync(log, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => l.split("\t"));
    },
    tfvars() {
      const file = join(repo, "terraform", "deploy.auto.tfvars");
      return existsSync(file) ? readFileSync(file, "utf8") : undefined;
    },
  };
}

// Index of the first call whose leading words are `words` (after skipping `-chdir=` for terraform).
function indexOf(calls: string[][], ...words: string[]): number {
  return calls.findIndex((c) => {
    const argv = c.filter((a) => !a.startsWith("-chdir="));
    return words.every((w, i) => argv[i] === w);
  });
}

const find = (calls: string[][], pred: (c: string[]) => boolean) => calls.filter(pred);
const isFullApply = (c: string[]) => c[0] === "terraform" && c.includes("apply") && !c.some((a) => a.startsWith("-target="));
const isTargetApply = (c: string[]) => c[0] === "terraform" && c.includes("apply") && c.some((a) => a.startsWith("-target="));
const argAfter = (c: string[] | undefined, flag: string) => (c && c.includes(flag) ? c[c.indexOf(flag) + 1] : undefined);
// The first call starting with `words`, or [] when there was none (so assertions on it fail).
const callOf = (calls: string[][], ...words: string[]) => calls[indexOf(calls, ...words)] ?? [];

t.test("deploy runs the steps in order with the commit tag and linux/amd64", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh");
  t.equal(r.status, 0, `deploy succeeds; stderr: ${r.stderr}`);
  const calls = sb.calls();

  const order = [
    indexOf(calls, "terraform", "init"),
    calls.findIndex(isTargetApply),
    indexOf(calls, "terraform", "output", "-raw", "parameter_server_ecr_repository_url"),
    indexOf(calls, "aws", "ecr", "get-login-password"),
    // aws and docker login run concurrently in a pipe; docker logs its stdin once aws has written it.
    indexOf(calls, "docker-login-stdin"),
    calls.findIndex((c) => c[0] === "docker" && c[1] === "build" && c.includes(join(sb.repo, "docker", "Dockerfile.server"))),
    indexOf(calls, "docker", "push", `${SERVER_REPO}:${SHA}`),
    calls.findIndex((c) => c[0] === "docker" && c[1] === "build" && c.includes(join(sb.repo, "docker", "Dockerfile.worker"))),
    indexOf(calls, "docker", "push", `${WORKER_REPO}:${SHA}`),
    calls.findIndex(isFullApply),
    indexOf(calls, "terraform", "output", "-raw", "monitoring_commands"),
  ];
  t.notOk(order.includes(-1), `every step ran: ${JSON.stringify(order)}`);
  t.same(order, [...order].sort((a, b) => a - b), "init, ECR repositories, login, build+push server, build+push worker, apply, monitoring");

  const target = calls.find(isTargetApply)!;
  t.same(
    target.filter((a) => a.startsWith("-target=")).sort(),
    [
      "-target=aws_ecr_lifecycle_policy.parameter_server",
      "-target=aws_ecr_lifecycle_policy.worker",
      "-target=aws_ecr_repository.parameter_server",
      "-target=aws_ecr_repository.worker",
    ],
    "the first apply creates only the ECR repositories and their lifecycle policies",
  );
  for (const c of [target, calls.find(isFullApply)!]) {
    t.ok(c.includes("-auto-approve") && c.includes("-input=false"), "applies run unattended");
    t.ok(c.includes(`image_tag=${SHA}`) && c.includes("cpu_architecture=X86_64"), `apply gets the tag and X86_64: ${c.join(" ")}`);
  }

  const builds = find(calls, (c) => c[0] === "docker" && c[1] === "build");
  t.equal(builds.length, 2, "two images built");
  for (const b of builds) {
    t.equal(argAfter(b, "--platform"), "linux/amd64", "built for linux/amd64 by default");
    t.equal(b.at(-1), sb.repo, "the build context is the repository root");
  }
  t.equal(argAfter(builds[0], "-t"), `${SERVER_REPO}:${SHA}`, "server image tagged with the commit");
  t.equal(argAfter(builds[1], "-t"), `${WORKER_REPO}:${SHA}`, "worker image tagged with the commit");

  t.same(callOf(calls, "docker", "login").slice(1), ["login", "--username", "AWS", "--password-stdin", REGISTRY], "docker logs in to the account's registry");
  t.same(callOf(calls, "docker-login-stdin"), ["docker-login-stdin", "fake-ecr-password"], "the ECR password reaches docker on stdin");
  t.ok(callOf(calls, "aws", "ecr", "get-login-password").includes("us-west-2"), "login uses the deployed region");

  t.match(sb.tfvars(), `image_tag        = "${SHA}"`, "the tag is saved for later plain terraform runs");
  t.match(sb.tfvars(), 'cpu_architecture = "X86_64"', "the architecture is saved too");
  t.match(r.stdout, "aws logs tail /ecs/distributed-ps-dev-parameter-server --follow", "monitoring commands printed");
});

t.test("--platform linux/arm64 builds arm64 images and deploys ARM64 tasks", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh", ["--platform", "linux/arm64"]);
  t.equal(r.status, 0, `deploy succeeds; stderr: ${r.stderr}`);
  const calls = sb.calls();
  const builds = find(calls, (c) => c[0] === "docker" && c[1] === "build");
  t.same(builds.map((b) => argAfter(b, "--platform")), ["linux/arm64", "linux/arm64"], "both images built for linux/arm64");
  t.ok(calls.find(isFullApply)!.includes("cpu_architecture=ARM64"), "apply switches the tasks to ARM64");
  t.match(sb.tfvars(), 'cpu_architecture = "ARM64"', "ARM64 saved");
});

t.test("an image built for the wrong CPU stops the deploy before pushing", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh", ["--platform", "linux/arm64"], { env: { FAKE_DOCKER_ARCH: "amd64" } });
  t.not(r.status, 0, "deploy fails");
  t.match(r.stderr, "was built for amd64, but the tasks run arm64", "says what is wrong");
  const calls = sb.calls();
  t.equal(indexOf(calls, "docker", "push"), -1, "nothing pushed");
  t.equal(calls.findIndex(isFullApply), -1, "infrastructure not applied");
});

t.test("a dirty work tree gets a -dirty tag, the same for both images and terraform", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh", [], { env: { FAKE_GIT_DIRTY: "1" } });
  t.equal(r.status, 0, `deploy succeeds; stderr: ${r.stderr}`);
  const calls = sb.calls();
  const tags = find(calls, (c) => c[0] === "docker" && c[1] === "build").map((b) => argAfter(b, "-t")?.split(":").at(-1));
  t.match(tags[0], new RegExp(`^${SHA}-dirty-\\d{14}$`), "tag marks the uncommitted changes");
  t.equal(tags[1], tags[0], "both images share the tag");
  t.ok(calls.find(isFullApply)!.includes(`image_tag=${tags[0]}`), "terraform deploys that tag");
});

t.test("--tag overrides git, and arguments after -- reach both applies", async (t) => {
  const sb = sandbox(t, { without: ["git"] });
  const r = sb.run("deploy.sh", ["--tag", "v1.2.3", "--region", "eu-west-1", "--", "-var", "worker_count=4"]);
  t.equal(r.status, 0, `deploy succeeds without git; stderr: ${r.stderr}`);
  const calls = sb.calls();
  for (const c of [calls.find(isTargetApply)!, calls.find(isFullApply)!]) {
    t.ok(c.includes("image_tag=v1.2.3") && c.includes("worker_count=4") && c.includes("region=eu-west-1"), c.join(" "));
  }
  t.match(sb.tfvars(), 'region           = "eu-west-1"', "region saved");
});

t.test("-var settings are saved with the deployment and kept by later deploys until changed", async (t) => {
  const sb = sandbox(t);
  const first = sb.run("deploy.sh", [
    "--",
    "-var", "worker_count=4",
    "-var=server_mode=async",
    "-var", 'worker_extra_environment={ LOCAL_STEPS = "2" }',
    "-var", 'dataset=a"b\\c${x}%{y}',
    "-target=aws_ecs_service.worker",
  ]);
  t.equal(first.status, 0, `deploy succeeds; stderr: ${first.stderr}`);
  const saved = sb.tfvars() ?? "";
  t.match(saved, /^worker_count = "4"$/m, "a number, as a string terraform converts");
  t.match(saved, /^server_mode = "async"$/m, "the -var=NAME=VALUE form too");
  t.match(saved, /^worker_extra_environment = \{ LOCAL_STEPS = "2" \}$/m, "a map as written");
  t.match(saved, /^dataset = "a\\"b\\\\c\$\$\{x\}%%\{y\}"$/m, "quotes, backslashes and template sequences escaped");
  t.notMatch(saved, /target/, "other terraform arguments are not settings");

  const second = sb.run("deploy.sh", ["--", "-var", "worker_count=8"]);
  t.equal(second.status, 0, `the next deploy succeeds; stderr: ${second.stderr}`);
  const kept = sb.tfvars() ?? "";
  t.match(kept, /^worker_count = "8"$/m, "a setting given again is replaced");
  t.equal(kept.match(/^worker_count/gm)?.length, 1, "once");
  t.match(kept, /^server_mode = "async"$/m, "the others are kept");
  t.match(kept, /^worker_extra_environment = \{ LOCAL_STEPS = "2" \}$/m, "the map too");
  t.match(kept, `image_tag        = "${SHA}"`, "with the image tag");

  const refused = sb.run("deploy.sh", ["--", "-var", "image_tag=other"]);
  t.equal(refused.status, 1, "a -var of a setting deploy.sh manages is refused");
  t.match(refused.stderr, "use deploy.sh's --tag, --platform or --region instead", "saying what to use");
});

t.test("a re-deploy keeps the region saved by the previous one", async (t) => {
  const sb = sandbox(t);
  writeFileSync(join(sb.repo, "terraform", "deploy.auto.tfvars"), 'image_tag        = "old"\nregion           = "eu-west-1"\n');
  const r = sb.run("deploy.sh");
  t.equal(r.status, 0, `deploy succeeds; stderr: ${r.stderr}`);
  t.ok(sb.calls().find(isFullApply)!.includes("region=eu-west-1"), "apply stays in eu-west-1");
  t.match(sb.tfvars(), 'region           = "eu-west-1"', "region still saved");
  t.match(sb.tfvars(), `image_tag        = "${SHA}"`, "new tag saved");
});

t.test("re-running with a tag already in ECR skips build and push but still applies", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh", [], { env: { FAKE_ECR_HAS_TAG: "1" } });
  t.equal(r.status, 0, `deploy succeeds; stderr: ${r.stderr}`);
  const calls = sb.calls();
  t.equal(indexOf(calls, "docker", "build"), -1, "no rebuild");
  t.equal(indexOf(calls, "docker", "push"), -1, "no push");
  t.not(calls.findIndex(isFullApply), -1, "apply still runs");
  t.match(r.stdout, "already in ECR", "says why it skipped");
});

t.test("--dry-run prints the steps and performs nothing", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh", ["--dry-run", "--platform", "linux/arm64"]);
  t.equal(r.status, 0, `dry run succeeds; stderr: ${r.stderr}`);
  t.same(
    sb.calls().filter((c) => c[0] !== "git"),
    [],
    "no terraform, aws or docker call (git is only read for the tag)",
  );
  t.equal(sb.tfvars(), undefined, "no file written");
  const lines = r.stdout.split("\n").filter((l) => l.startsWith("[dry-run]"));
  const at = (s: string) => lines.findIndex((l) => l.includes(s));
  t.ok(at("init") < at("-target=aws_ecr_repository") && at("-target=") < at("docker login"), "steps printed in order");
  t.ok(at("docker build --platform linux/arm64") > at("docker login"), "build shows the platform");
  t.match(r.stdout, `Dockerfile.server -t <parameter_server_ecr_repository_url>:${SHA}`, "build shows the tag");
});

t.test("a missing prerequisite stops deploy with its message", async (t) => {
  const cases: [string, { without?: string[] }, Record<string, string>, RegExp][] = [
    ["terraform", { without: ["terraform"] }, {}, /terraform is not installed/],
    ["aws CLI", { without: ["aws"] }, {}, /aws CLI is not installed/],
    ["docker", { without: ["docker"] }, {}, /docker is not installed/],
    ["docker daemon", {}, { FAKE_DOCKER_DOWN: "1" }, /docker is installed but its daemon is not running/],
    ["credentials", {}, { FAKE_AWS_NO_CREDENTIALS: "1" }, /AWS credentials are missing or expired/],
  ];
  for (const [what, opts, env, message] of cases) {
    const sb = sandbox(t, opts);
    const r = sb.run("deploy.sh", [], { env });
    t.equal(r.status, 1, `${what}: exit 1`);
    t.match(r.stderr, message, `${what}: says what is missing`);
    const acted = sb.calls().filter((c) => (c[0] === "terraform" || (c[0] === "docker" && c[1] !== "info")));
    t.same(acted, [], `${what}: nothing initialised, built or applied`);
  }

  const sb = sandbox(t, { without: ["terraform", "docker"] });
  const r = sb.run("deploy.sh", [], { env: { FAKE_AWS_NO_CREDENTIALS: "1" } });
  t.match(r.stderr, /terraform is not installed[\s\S]*docker is not installed[\s\S]*AWS credentials/, "lists every missing prerequisite at once");
});

t.test("deploy stops at the first failing step", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("deploy.sh", [], { env: { FAKE_TERRAFORM_FAIL: "apply" } });
  t.not(r.status, 0, "deploy fails");
  t.equal(indexOf(sb.calls(), "docker", "build"), -1, "no image built after the ECR step failed");
});

t.test("deploy rejects bad arguments without acting", async (t) => {
  for (const args of [["--platform", "linux/386"], ["--bogus"], ["--tag", "-bad"]]) {
    const sb = sandbox(t);
    const r = sb.run("deploy.sh", args);
    t.not(r.status, 0, `${args.join(" ")} rejected`);
    t.same(sb.calls().filter((c) => c[0] !== "git"), [], `${args.join(" ")}: nothing run`);
  }
  const sb = sandbox(t, { without: ["git"] });
  const r = sb.run("deploy.sh", [], { env: {} });
  t.match(r.stderr, "pass --tag TAG", "without git the script asks for --tag");
  const help = sandbox(t).run("deploy.sh", ["-h"]);
  t.equal(help.status, 0, "-h exits 0");
  t.match(help.stdout, /Usage: terraform\/deploy\.sh[\s\S]*--platform[\s\S]*--dry-run/, "-h prints usage");
});

t.test("destroy refuses without confirmation", async (t) => {
  for (const [what, input] of [
    ["no stdin", undefined],
    ["answer no", "no\n"],
    ["empty answer", "\n"],
  ] as const) {
    const sb = sandbox(t);
    writeFileSync(join(sb.repo, "terraform", "deploy.auto.tfvars"), 'image_tag = "x"\n');
    const r = sb.run("destroy.sh", [], { input });
    t.equal(r.status, 1, `${what}: exit 1`);
    t.match(r.stderr, "aborted, nothing destroyed", `${what}: says it aborted`);
    t.match(r.stdout, 'Type "yes" to destroy', `${what}: asked first`);
    t.same(sb.calls().filter((c) => c[0] === "terraform"), [], `${what}: terraform never ran`);
    t.ok(sb.tfvars(), `${what}: deployment settings kept`);
  }
});

t.test("destroy destroys after 'yes' or with --yes", async (t) => {
  for (const [what, args, input] of [
    ["typed yes", [], "yes\n"],
    ["--yes", ["--yes"], undefined],
  ] as const) {
    const sb = sandbox(t);
    writeFileSync(join(sb.repo, "terraform", "deploy.auto.tfvars"), 'image_tag = "x"\n');
    const r = sb.run("destroy.sh", [...args], { input });
    t.equal(r.status, 0, `${what}: succeeds; stderr: ${r.stderr}`);
    const calls = sb.calls();
    const init = indexOf(calls, "terraform", "init");
    const destroy = indexOf(calls, "terraform", "destroy");
    t.ok(init !== -1 && destroy > init, `${what}: init, then destroy`);
    t.ok(callOf(calls, "terraform", "destroy").includes("-auto-approve"), `${what}: terraform does not ask again`);
    t.equal(sb.tfvars(), undefined, `${what}: saved deployment settings removed`);
  }
});

t.test("destroy passes extra arguments and stops on missing prerequisites", async (t) => {
  const sb = sandbox(t);
  const r = sb.run("destroy.sh", ["--yes", "--", "-var", "region=eu-west-1"]);
  t.equal(r.status, 0, "destroy --yes succeeds");
  t.ok(callOf(sb.calls(), "terraform", "destroy").includes("region=eu-west-1"), "extra args reach terraform destroy");

  const noTf = sandbox(t, { without: ["terraform"] });
  const r2 = noTf.run("destroy.sh", ["--yes"]);
  t.equal(r2.status, 1, "missing terraform: exit 1");
  t.match(r2.stderr, "terraform is not installed", "says terraform is missing");

  const noCreds = sandbox(t);
  const r3 = noCreds.run("destroy.sh", ["--yes"], { env: { FAKE_AWS_NO_CREDENTIALS: "1" } });
  t.equal(r3.status, 1, "missing credentials: exit 1");
  t.match(r3.stderr, "AWS credentials are missing or expired", "says credentials are missing");
  t.same(noCreds.calls().filter((c) => c[0] === "terraform"), [], "nothing destroyed");

  const help = sandbox(t).run("destroy.sh", ["-h"]);
  t.equal(help.status, 0, "-h exits 0");
  t.match(help.stdout, /Usage: terraform\/destroy\.sh[\s\S]*--yes/, "-h prints usage");
});
