/**
 * The Python that has the Debian packages the project uses as references (python3-onnx's checker,
 * python3-torch): /usr/bin/python3 where it exists, since a `python3` earlier on PATH (pyenv, a
 * virtualenv) does not see apt's packages; `PYTHON` overrides.
 */
import { existsSync } from "node:fs";

export function referencePython(): string {
  return process.env.PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
}
