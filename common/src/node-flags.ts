/**
 * V8 flags for the server and worker processes: every launcher puts them on node's command line
 * (scripts/run-local.ts, the Dockerfiles' CMD, bench/lib/ps-case.ts). V8 reads heap flags when it
 * creates the heap, so neither NODE_OPTIONS (which refuses this one) nor v8.setFlagsFromString at
 * run time can set them.
 *
 * --initial-old-space-size=256: the processes stream tens of megabytes per round through socket
 *   buffers; with V8's default old-generation limit the allocation rate kept it within reach and a
 *   full mark-compact ran two or three times per round. The limit only delays collection of old
 *   objects; it caps nothing.
 * --max-semi-space-size=1: socket reads are ArrayBuffers outside the heap that only a scavenge
 *   frees; a small young generation is scavenged often enough to free them before their bytes
 *   count as "external memory pressure", which starts full collections.
 * --experimental-wasm-fp16: lets V8 compile WebAssembly's FP16 instructions to the CPU's float16
 *   conversions (F16C), which common/src/kernels/simd-fp16.wat uses; without it that module fails
 *   to validate and the portable kernels run (same bits). Remove it once Node enables FP16 by
 *   default and drops the flag (node refuses unknown flags), here and in the Dockerfiles.
 *
 * What each flag was measured to change: docs/performance.md, "Node flags".
 */
export const NODE_FLAGS: readonly string[] = ["--initial-old-space-size=256", "--max-semi-space-size=1", "--experimental-wasm-fp16"];
