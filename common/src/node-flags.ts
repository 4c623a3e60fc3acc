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
 */
export const NODE_FLAGS: readonly string[] = ["--initial-old-space-size=256"];
