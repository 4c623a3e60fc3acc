;; The float16 conversions of simd.wat with WebAssembly's FP16 proposal, which V8 compiles to the
;; CPU's own conversion instructions (F16C's vcvtps2ph / vcvtph2ps on x86-64). Same contracts and
;; the same bits as f32_to_f16 and f16_decode there (simd.test.ts checks both against the same
;; references), NaN payloads aside: the hardware keeps a NaN's payload where simd.wat makes every
;; NaN 0x7e00.
;;
;; Node 24 runs this module only with --experimental-wasm-fp16 (common/src/node-flags.ts); without
;; it WebAssembly.validate() refuses the module and simd.ts keeps simd.wat's portable kernels.
;; The kernels alone, per 11.2M values here: encoding 0.6–0.7 ms, decoding 0.8–0.9 ms; simd.wat's
;; decoder took 3.9–4.3 ms in the same measurement.
;;
;; wabt cannot read the proposal's two instructions yet; scripts/lib/compile-kernels.ts assembles
;; them through stand-ins and writes the real opcodes into the binary.
;;
;; Edit this file, then `make kernels` regenerates gen/simd-fp16-wasm.ts.
(module
  ;; simd.wat's memory: the same scratch blocks, so simd.ts calls either module's kernels alike.
  (import "kernels" "memory" (memory 1 65536))

  ;; float16 bits of float32 src[0..n) → dst[0..n), n rounded up to 8: round to nearest, ties to
  ;; even, overflow to infinity.
  (func (export "f32_to_f16") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        ;; each conversion fills the low four lanes of its result
        (v128.store64_lane 0 (local.get $dst) (f16x8.demote_f32x4_zero (v128.load (local.get $src))))
        (v128.store64_lane offset=8 0 (local.get $dst) (f16x8.demote_f32x4_zero (v128.load offset=16 (local.get $src))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next))))

  ;; dst[0..n) ← float16 src[0..n), or dst[0..n) += float16 src[0..n) when $add is 1, n rounded up
  ;; to 4. Returns 1 if any source value is infinite or NaN (exponent bits all ones), else 0.
  (func (export "f16_decode") (param $src i32) (param $dst i32) (param $n i32) (param $add i32) (result i32)
    (local $end i32) (local $x v128) (local $f v128) (local $bad v128) (local $cexp v128)
    (local.set $cexp (v128.const i16x8 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00 0x7c00))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        ;; four halves in the low lanes, zeros (finite) above them
        (local.set $x (v128.load64_zero (local.get $src)))
        (local.set $bad (v128.or (local.get $bad) (i16x8.eq (v128.and (local.get $x) (local.get $cexp)) (local.get $cexp))))
        (local.set $f (f32x4.promote_low_f16x8 (local.get $x)))
        ;; the same branch every iteration, so always predicted
        (if (local.get $add) (then (local.set $f (f32x4.add (v128.load (local.get $dst)) (local.get $f)))))
        (v128.store (local.get $dst) (local.get $f))
        (local.set $src (i32.add (local.get $src) (i32.const 8)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next)))
    (v128.any_true (local.get $bad)))
)
