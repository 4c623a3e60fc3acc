/**
 * The named-tensor store: the model's parameters as the server sees them (names, shapes, float32
 * values) and their version. It knows nothing about models.
 *
 * Pulls stream the parameters over many event-loop turns while updates may be applied in between,
 * yet every pull must see one version. A pull therefore holds a snapshot; an update writes in place
 * when nobody holds the current buffers, and otherwise copies them first (copy-on-write) into
 * buffers recycled from earlier versions, so steady state allocates nothing. The buffers are shared
 * memory: the step's helper threads update them in place (optimizer/parallel-step.ts).
 */
import { elementCount, type NamedTensor } from "@distributed-ps/common/named-tensor.ts";
import { sharedCopy, sharedFloat32 } from "./shared-memory.ts";

/** One version of the parameters as a pull sees it. Call release() when done with it. */
export interface Snapshot {
  readonly version: number;
  readonly tensors: readonly NamedTensor[];
  release(): void;
}

interface Generation {
  version: number;
  tensors: NamedTensor[];
  readers: number;
}

export class ParameterStore {
  #current: Generation | undefined;
  /** Released buffers of superseded versions, reused by the next copy-on-write. */
  #spare: NamedTensor[][] = [];
  readonly #index = new Map<string, number>();
  #elements = 0;
  #held = 0;
  readonly #spareBytes: number;

  /** `spareBytes`: how many bytes of released parameter sets are kept for reuse, beyond two sets. */
  constructor(o: { spareBytes?: number } = {}) {
    this.#spareBytes = o.spareBytes ?? 32 << 20;
  }

  get initialized(): boolean {
    return this.#current !== undefined;
  }

  get version(): number {
    return this.#current?.version ?? 0;
  }

  get elementCount(): number {
    return this.#elements;
  }

  get tensorCount(): number {
    return this.#index.size;
  }

  /** Snapshots acquired and not yet released, of any version. */
  get snapshotsHeld(): number {
    return this.#held;
  }

  /** Shape of a stored tensor, or undefined for an unknown name. */
  shapeOf(name: string): readonly number[] | undefined {
    const i = this.#index.get(name);
    return i === undefined ? undefined : this.#current!.tensors[i]!.shape;
  }

  /** Position of a stored tensor in storage order, or undefined for an unknown name. */
  indexOf(name: string): number | undefined {
    return this.#index.get(name);
  }

  /** Names and shapes in storage order. */
  layout(): { name: string; shape: readonly number[] }[] {
    return (this.#current?.tensors ?? []).map((t) => ({ name: t.name, shape: t.shape }));
  }

  /** Stores the initial parameters (version `version`, 0 for a fresh run). Only once. */
  initialize(tensors: readonly NamedTensor[], version = 0): void {
    if (this.#current !== undefined) throw new Error("parameters are already initialised");
    const seen = new Set<string>();
    for (const t of tensors) {
      if (seen.has(t.name)) throw new Error(`duplicate tensor name "${t.name}"`);
      seen.add(t.name);
      if (elementCount(t.shape) !== t.data.length) throw new Error(`tensor "${t.name}" data does not match shape [${t.shape}]`);
    }
    this.#current = {
      version,
      readers: 0,
      tensors: tensors.map((t) => ({ name: t.name, shape: [...t.shape], data: sharedCopy(t.data) })),
    };
    this.#current.tensors.forEach((t, i) => this.#index.set(t.name, i));
    this.#elements = tensors.reduce((n, t) => n + t.data.length, 0);
  }

  /** Takes a consistent view of the current version; the caller must release() it. */
  acquire(): Snapshot {
    const gen = this.#current;
    if (gen === undefined) throw new Error("parameters are not initialised");
    gen.readers++;
    this.#held++;
    let released = false;
    return {
      version: gen.version,
      tensors: gen.tensors,
      release: () => {
        if (released) return;
        released = true;
        gen.readers--;
        this.#held--;
        if (gen.readers === 0 && gen !== this.#current && this.#keepsSpare()) this.#spare.push(gen.tensors);
      },
    };
  }

  /**
   * Whether one more released set is kept for reuse: two, enough for a steady stream of
   * overlapping pulls; more for a small model, up to `spareBytes`, since every push's answer may
   * hold its own version (PushHeader.return_parameters) and a set dropped here is replaced by a
   * fresh allocation that only the collector frees.
   */
  #keepsSpare(): boolean {
    return this.#spare.length < 2 || (this.#spare.length + 1) * this.#elements * 4 <= this.#spareBytes;
  }

  /**
   * Applies `mutate` to writable parameter buffers and advances the version by one. `mutate` must
   * finish synchronously: nothing else may observe a half-applied update.
   */
  update(mutate: (tensors: readonly NamedTensor[]) => void): number {
    const gen = this.#current;
    if (gen === undefined) throw new Error("parameters are not initialised");
    if (gen.readers === 0) {
      mutate(gen.tensors);
      gen.version++;
      return gen.version;
    }
    const tensors = this.#spare.pop() ?? gen.tensors.map((t) => ({ ...t, data: sharedFloat32(t.data.length) }));
    tensors.forEach((t, i) => t.data.set(gen.tensors[i]!.data));
    mutate(tensors);
    this.#current = { version: gen.version + 1, tensors, readers: 0 };
    return this.#current.version;
  }
}
