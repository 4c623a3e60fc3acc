/**
 * `make kernels`: regenerates common/src/kernels/gen/simd-wasm.ts from common/src/kernels/simd.wat.
 * Run it after editing the .wat; common/test/simd.test.ts fails while the two disagree.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { KERNELS_MODULE, renderKernelsModule } from "./lib/compile-kernels.ts";

writeFileSync(KERNELS_MODULE, await renderKernelsModule());
console.log(`wrote ${fileURLToPath(KERNELS_MODULE)}`);
