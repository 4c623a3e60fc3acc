/**
 * V8 flags for the server and worker processes: every launcher puts them on node's command line
 * (scripts/run-local.ts, the Dockerfiles' CMD, bench/lib/ps-case.ts). V8 reads heap flags when it
 * creates the heap, so neither NODE_OPTIONS (which refuses this one) nor v8.setFlagsFromString at
 * run time can set them.
 *
 * --initial-old-space-size: both processes stream tens of megabytes per round through socket
 * buffers. With V8's default old-generation limit (a few times the ~11 MB of live objects), the
 * allocation rate keeps that limit within reach and V8 starts a full mark-compact two or three
 * times per round; a worker then spends a third of its CPU in the collector. Starting the limit at
 * 256 MB cut collections from ~45 to 6 in 30 rounds and a byte-moving worker's CPU from 65–71 to
 * 40 ms per round, with the same peak RSS (bench: `--node-flags ""` runs without it). The limit
 * only delays collection of old objects, which these processes hardly create; it caps nothing.
 *
 * --max-semi-space-size=1 (MB): every socket read is a new ArrayBuffer outside the JavaScript heap,
 * and V8 counts those bytes as "external memory". They die young, but only a scavenge (a young-
 * generation collection) frees them, and V8 runs one only when its young generation fills with
 * JavaScript objects, at up to 16 MB. Meanwhile ~80 MB of socket buffers piled up, past V8's
 * 64 MB allowance of external growth, and V8 started a full mark-compact for "external memory
 * pressure": once per sync step on the server, with its concurrent marking threads taking ~0.2 of
 * the machine's 2 cores (`--trace-incremental-marking`, `perf`). A 1 MB young generation is
 * scavenged every few milliseconds (~0.5 ms each), which frees the buffers before they count:
 * in one run the server's full collections went from 30 to 3, its CPU per round from ~40 to ~31 ms
 * and its peak memory from ~430 to ~300 MB.
 *
 * --experimental-wasm-fp16: lets V8 compile WebAssembly's FP16 instructions (a proposal not yet
 * enabled by default in Node 24) to the CPU's own float16 conversions (F16C on x86-64), which
 * common/src/kernels/simd-fp16.wat uses for the workers' float16 encoding and the server's
 * decoding of float16 gradients. `node bench/kernels.ts` with and without it, per 11.2M values:
 * encoding 6.1–6.6 → 2.9–3.1 ms, decoding 6.6–7.3 → 4.4–4.6 ms, a sync step of four float16
 * gradients 24.9–25.0 → 15.4–16.0 ms on one thread. In three paired `bench/run.ts` runs of the
 * target workload: 4–8% more rounds/s, ~2 ms less server CPU and 3–4 ms less worker CPU per round.
 * The results are the same bits (common/test/simd.test.ts runs its tests both ways). Without the
 * flag WebAssembly.validate() refuses that module and the portable SIMD kernels run instead; the
 * server's first log line names the conversion in use. Once a Node release enables FP16 by default
 * and drops the flag, remove it here and from the Dockerfiles (node refuses unknown flags).
 */
export const NODE_FLAGS: readonly string[] = ["--initial-old-space-size=256", "--max-semi-space-size=1", "--experimental-wasm-fp16"];
