/**
 * Parameter layouts the benchmarks move: names and shapes only (no tfjs), so the benchmark measures
 * the wire and the server, not a model.
 *
 * "55k" is the worker's MNIST MLP (55,050 parameters), the model whose step is all round trip.
 * "11.2M" is the CIFAR ResNet-18 of worker/src/model/resnet.ts tensor for tensor: 62 trainable
 * tensors, conv kernels [kh, kw, cin, cout] without bias, batch-norm gamma and beta [c], the dense
 * layer [512, 10] plus bias — 11,173,962 parameters. "1M" and "25M" are the same network with its
 * channel widths scaled (x0.3125 and x1.5), so tensor counts and the spread of tensor sizes stay
 * realistic.
 */
import { elementCount } from "@distributed-ps/common/named-tensor.ts";

export interface TensorSpec {
  name: string;
  shape: number[];
}

export interface ModelLayout {
  name: string;
  description: string;
  tensors: TensorSpec[];
  params: number;
}

/** A CIFAR ResNet-18 (3x3 stem, four stages of two basic blocks) with the given stage widths. */
export function resnet18Layout(widths: readonly [number, number, number, number], classes = 10, inChannels = 3): TensorSpec[] {
  const out: TensorSpec[] = [];
  const conv = (name: string, k: number, cin: number, cout: number) => out.push({ name: `${name}/kernel`, shape: [k, k, cin, cout] });
  const bn = (name: string, c: number) => out.push({ name: `${name}/gamma`, shape: [c] }, { name: `${name}/beta`, shape: [c] });

  conv("stem_conv", 3, inChannels, widths[0]);
  bn("stem_bn", widths[0]);
  let cin = widths[0];
  widths.forEach((channels, s) => {
    for (let b = 0; b < 2; b++) {
      const prefix = `stage${s + 1}_block${b + 1}`;
      const stride = s > 0 && b === 0 ? 2 : 1;
      conv(`${prefix}_conv1`, 3, cin, channels);
      bn(`${prefix}_bn1`, channels);
      conv(`${prefix}_conv2`, 3, channels, channels);
      bn(`${prefix}_bn2`, channels);
      if (stride !== 1 || cin !== channels) {
        conv(`${prefix}_shortcut_conv`, 1, cin, channels);
        bn(`${prefix}_shortcut_bn`, channels);
      }
      cin = channels;
    }
  });
  out.push({ name: "fc/kernel", shape: [cin, classes] }, { name: "fc/bias", shape: [classes] });
  return out;
}

function layout(name: string, description: string, tensors: TensorSpec[]): ModelLayout {
  return { name, description, tensors, params: tensors.reduce((n, t) => n + elementCount(t.shape), 0) };
}

/** The worker's `mlp` on 28x28x1 images (worker/src/model/mlp.ts): 784-64-64-10 dense layers. */
export function mnistMlpLayout(): TensorSpec[] {
  const dense = (name: string, inputs: number, units: number) => [
    { name: `${name}/kernel`, shape: [inputs, units] },
    { name: `${name}/bias`, shape: [units] },
  ];
  return [...dense("dense1", 784, 64), ...dense("dense2", 64, 64), ...dense("dense3", 64, 10)];
}

export const MODELS: Record<string, () => ModelLayout> = {
  "55k": () => layout("55k", "the MNIST MLP (784-64-64-10): 6 tensors", mnistMlpLayout()),
  "1M": () => layout("1M", "ResNet-18 (CIFAR) at 0.3125x width: 20/40/80/160 channels", resnet18Layout([20, 40, 80, 160])),
  "11.2M": () => layout("11.2M", "ResNet-18 (CIFAR), 10 classes: 62 tensors", resnet18Layout([64, 128, 256, 512])),
  "25M": () => layout("25M", "ResNet-18 (CIFAR) at 1.5x width: 96/192/384/768 channels", resnet18Layout([96, 192, 384, 768])),
};

/** A named layout, or "tiny" (a few small tensors, for tests); throws for unknown names. */
export function modelLayout(name: string): ModelLayout {
  if (name === "tiny") {
    return layout("tiny", "three small tensors (tests)", [
      { name: "a/kernel", shape: [64, 32] },
      { name: "a/bias", shape: [32] },
      { name: "b/kernel", shape: [32, 10] },
    ]);
  }
  const make = MODELS[name];
  if (make === undefined) throw new RangeError(`unknown model "${name}" (expected one of: ${Object.keys(MODELS).join(", ")}, tiny)`);
  return make();
}
