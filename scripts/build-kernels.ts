/**
 * `make kernels`: regenerates common/src/kernels/gen/*.ts from common/src/kernels/*.wat. Run it
 * after editing a .wat; common/test/simd.test.ts fails while they disagree.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KERNEL_SOURCES, renderKernelsModule } from "./lib/compile-kernels.ts";

for (const source of KERNEL_SOURCES) {
  writeFileSync(source.module, await renderKernelsModule(source));
  console.log(`wrote ${fileURLToPath(source.module)}`);
}
