;; SIMD kernels for the data path's per-element loops (see simd.ts for how they are called).
;;
;; Every kernel works on whole vectors: the caller pads its scratch blocks so that the lanes past
;; `n` hold harmless values, and copies back only the first `n` results. Pointers are byte offsets
;; into this module's own memory; the caller owns the layout.
;;
;; Results are bit-identical to the JavaScript loops they replace (simd.test.ts checks it), NaN
;; payloads aside: float32 sums are correctly rounded either way, the optimizer steps are computed
;; in float64 exactly as JavaScript evaluates them, decoding is exact, and encoding rounds to
;; nearest, ties to even, as the scalar code does.
;;
;; Vector constants used in a loop sit in locals set before it: V8 materialises a v128.const
;; inside a loop again on every iteration, which made the float16 decoder 1.7x slower.
;;
;; Edit this file, then `make kernels` (scripts/build-kernels.ts) regenerates gen/simd-wasm.ts.
(module
  (memory (export "memory") 1 65536)

  ;; dst[0..n) ← float16 src[0..n), or dst[0..n) += float16 src[0..n) when $add is 1 (float32 sums,
  ;; as f32_add: a sync step adds its summands as it decodes them, without a block between), n
  ;; rounded up to 4. Returns 1 if any source value is infinite or NaN (exponent bits all ones), else 0. After F. Giesen's half_to_float_SSE2: shift exponent and
  ;; mantissa into place and rebias the exponent by 127 − 15; infinity/NaN get the rest of the
  ;; exponent, and subnormals (and zero) are rebuilt as 2^-14 × 1.mantissa − 2^-14, exactly. No
  ;; lane ever feeds a float32 subnormal to the FPU, which costs a microcode assist per vector on
  ;; x86. Four halves per iteration, each zero-extended into a 32-bit lane by the load.
  (func (export "f16_decode") (param $src i32) (param $dst i32) (param $n i32) (param $add i32) (result i32)
    (local $end i32) (local $x v128) (local $o v128) (local $f v128) (local $e v128) (local $special v128) (local $tiny v128) (local $bad v128)
    (local $c7fff v128) (local $cexp v128) (local $cbias v128) (local $cone v128) (local $cmin v128) (local $csign v128) (local $zero v128)
    (local.set $c7fff (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff))
    (local.set $cexp (v128.const i32x4 0x0f800000 0x0f800000 0x0f800000 0x0f800000))
    (local.set $cbias (v128.const i32x4 0x38000000 0x38000000 0x38000000 0x38000000))
    (local.set $cone (v128.const i32x4 0x00800000 0x00800000 0x00800000 0x00800000))
    (local.set $cmin (v128.const i32x4 0x38800000 0x38800000 0x38800000 0x38800000))
    (local.set $csign (v128.const i32x4 0x8000 0x8000 0x8000 0x8000))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $x (v128.load16x4_u (local.get $src)))
        ;; exponent and mantissa in float32 position
        (local.set $o (i32x4.shl (v128.and (local.get $x) (local.get $c7fff)) (i32.const 13)))
        (local.set $e (v128.and (local.get $o) (local.get $cexp)))
        (local.set $special (i32x4.eq (local.get $e) (local.get $cexp)))
        (local.set $tiny (i32x4.eq (local.get $e) (local.get $zero)))
        (local.set $bad (v128.or (local.get $bad) (local.get $special)))
        (local.set $o
          (i32x4.add
            (i32x4.add (local.get $o) (local.get $cbias))
            (v128.or
              ;; infinity/NaN: the exponent all ones (another 128 − 16)
              (v128.and (local.get $special) (local.get $cbias))
              ;; subnormal or zero: exponent one higher, as 2^-14 × 1.mantissa
              (v128.and (local.get $tiny) (local.get $cone)))))
        (local.set $f
          (v128.or
            (f32x4.sub (local.get $o) (v128.and (local.get $tiny) (local.get $cmin)))
            (i32x4.shl (v128.and (local.get $x) (local.get $csign)) (i32.const 16))))
        ;; the same branch every iteration, so always predicted
        (if (local.get $add) (then (local.set $f (f32x4.add (v128.load (local.get $dst)) (local.get $f)))))
        (v128.store (local.get $dst) (local.get $f))
        (local.set $src (i32.add (local.get $src) (i32.const 8)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next)))
    (v128.any_true (local.get $bad)))

  ;; 1 if any of the float32 values at src[0..n) (n rounded up to 4) is infinite or NaN, else 0.
  ;; Four vectors per iteration into four flags: one flag made each iteration wait for the last.
  (func (export "f32_any_nonfinite") (param $src i32) (param $n i32) (result i32)
    (local $end i32) (local $end4 i32) (local $bad v128) (local $bad1 v128) (local $bad2 v128) (local $bad3 v128) (local $cexp v128)
    (local.set $cexp (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (local.set $end4 (i32.sub (local.get $end) (i32.const 48)))
    (block $done4
      (loop $next4
        (br_if $done4 (i32.ge_s (local.get $src) (local.get $end4)))
        (local.set $bad (v128.or (local.get $bad)
          (i32x4.eq (v128.and (v128.load (local.get $src)) (local.get $cexp)) (local.get $cexp))))
        (local.set $bad1 (v128.or (local.get $bad1)
          (i32x4.eq (v128.and (v128.load offset=16 (local.get $src)) (local.get $cexp)) (local.get $cexp))))
        (local.set $bad2 (v128.or (local.get $bad2)
          (i32x4.eq (v128.and (v128.load offset=32 (local.get $src)) (local.get $cexp)) (local.get $cexp))))
        (local.set $bad3 (v128.or (local.get $bad3)
          (i32x4.eq (v128.and (v128.load offset=48 (local.get $src)) (local.get $cexp)) (local.get $cexp))))
        (local.set $src (i32.add (local.get $src) (i32.const 64)))
        (br $next4)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $bad
          (v128.or (local.get $bad)
            (i32x4.eq (v128.and (v128.load (local.get $src)) (local.get $cexp)) (local.get $cexp))))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (br $next)))
    (v128.any_true (v128.or (v128.or (local.get $bad) (local.get $bad1)) (v128.or (local.get $bad2) (local.get $bad3)))))

  ;; 1 if any of the 16-bit values at src[0..n) (n rounded up to 8) has every bit of `mask` set,
  ;; else 0: the exponent of an infinite or NaN float16 (mask 0x7c00) or bfloat16 (0x7f80). The check
  ;; alone, for values kept encoded until they are used; four vectors per iteration, as above.
  (func (export "u16_any_all_ones") (param $src i32) (param $n i32) (param $mask i32) (result i32)
    (local $end i32) (local $end4 i32) (local $bad v128) (local $bad1 v128) (local $bad2 v128) (local $bad3 v128) (local $m v128)
    (local.set $m (i16x8.splat (local.get $mask)))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)) (i32.const 1))))
    (local.set $end4 (i32.sub (local.get $end) (i32.const 48)))
    (block $done4
      (loop $next4
        (br_if $done4 (i32.ge_s (local.get $src) (local.get $end4)))
        (local.set $bad (v128.or (local.get $bad)
          (i16x8.eq (v128.and (v128.load (local.get $src)) (local.get $m)) (local.get $m))))
        (local.set $bad1 (v128.or (local.get $bad1)
          (i16x8.eq (v128.and (v128.load offset=16 (local.get $src)) (local.get $m)) (local.get $m))))
        (local.set $bad2 (v128.or (local.get $bad2)
          (i16x8.eq (v128.and (v128.load offset=32 (local.get $src)) (local.get $m)) (local.get $m))))
        (local.set $bad3 (v128.or (local.get $bad3)
          (i16x8.eq (v128.and (v128.load offset=48 (local.get $src)) (local.get $m)) (local.get $m))))
        (local.set $src (i32.add (local.get $src) (i32.const 64)))
        (br $next4)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $bad
          (v128.or (local.get $bad)
            (i16x8.eq (v128.and (v128.load (local.get $src)) (local.get $m)) (local.get $m))))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (br $next)))
    (v128.any_true (v128.or (v128.or (local.get $bad) (local.get $bad1)) (v128.or (local.get $bad2) (local.get $bad3)))))

  ;; acc[0..n) += src[0..n), float32, n rounded up to 4.
  (func (export "f32_add") (param $acc i32) (param $src i32) (param $n i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $acc) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $acc) (local.get $end)))
        (v128.store (local.get $acc) (f32x4.add (v128.load (local.get $acc)) (v128.load (local.get $src))))
        (local.set $acc (i32.add (local.get $acc) (i32.const 16)))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (br $next))))

  ;; Plain SGD with weight decay over param[0..n) and grad[0..n), float32 storage, n rounded up to 4.
  (func (export "sgd") (param $param i32) (param $grad i32) (param $n i32) (param $lr f64) (param $scale f64) (param $wd f64)
    (local $end i32) (local $p v128) (local $g v128) (local $vlr v128) (local $vscale v128) (local $vwd v128)
    (local.set $vlr (f64x2.splat (local.get $lr)))
    (local.set $vscale (f64x2.splat (local.get $scale)))
    (local.set $vwd (f64x2.splat (local.get $wd)))
    (local.set $end (i32.add (local.get $param) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $param) (local.get $end)))
        ;; Two lanes at a time in float64, as JavaScript computes p − lr·(g·scale + wd·p).
        (local.set $p (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $param))))
        (local.set $g (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $grad))))
        (v128.store64_lane 0 (local.get $param)
          (f32x4.demote_f64x2_zero
            (f64x2.sub (local.get $p)
              (f64x2.mul (local.get $vlr)
                (f64x2.add (f64x2.mul (local.get $g) (local.get $vscale)) (f64x2.mul (local.get $vwd) (local.get $p)))))))
        (local.set $param (i32.add (local.get $param) (i32.const 8)))
        (local.set $grad (i32.add (local.get $grad) (i32.const 8)))
        (br $next))))

  ;; float16 bits of float32 src[0..n) → dst[0..n), n rounded up to 8: round to nearest, ties to
  ;; even, overflow to infinity, NaN to the quiet NaN 0x7e00 (as Float16Array and dtype.ts's
  ;; halfFromFloatBits, after F. Giesen's float_to_half_fast3_rtne). Per 32-bit lane:
  ;;   sign:   bit 31 moved to bit 15;
  ;;   NaN:    the quiet bit 0x200 on top of the infinity below;
  ;;   |f| < 2^-14, a float16 subnormal: adding 0.5 lets the FPU round the mantissa;
  ;;   normal: rebias the exponent (−(127 − 15) << 23) and add the rounding bias 0xfff, one more
  ;;           when the kept mantissa is odd; from 65520 up (infinity and NaN included) the result
  ;;           is at least 0x7c00, and the minimum makes it infinity.
  ;; Eight values per iteration, the same expression on two vectors ($f/$u and $g/$w), so one
  ;; narrow fills a whole vector and one store writes it; with four values and a half-empty narrow,
  ;; bench/kernels.ts's "float16 encode" (copies included) took 6.5 ms per 11.2M values, 6.0–6.2 now.
  (func (export "f32_to_f16") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32) (local $f v128) (local $u v128) (local $g v128) (local $w v128)
    (local $cabs v128) (local $csign v128) (local $cinf v128) (local $cquiet v128) (local $chalf v128)
    (local $cbias v128) (local $cone v128) (local $chinf v128) (local $cmin v128)
    (local.set $cabs (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
    (local.set $csign (v128.const i32x4 0x8000 0x8000 0x8000 0x8000))
    (local.set $cinf (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
    (local.set $cquiet (v128.const i32x4 0x200 0x200 0x200 0x200))
    (local.set $chalf (v128.const i32x4 0x3f000000 0x3f000000 0x3f000000 0x3f000000))
    (local.set $cbias (v128.const i32x4 0xc8000fff 0xc8000fff 0xc8000fff 0xc8000fff))
    (local.set $cone (v128.const i32x4 1 1 1 1))
    (local.set $chinf (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00))
    (local.set $cmin (v128.const i32x4 0x38800000 0x38800000 0x38800000 0x38800000))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $f (v128.load (local.get $src)))
        (local.set $u (v128.and (local.get $f) (local.get $cabs)))
        (local.set $g (v128.load offset=16 (local.get $src)))
        (local.set $w (v128.and (local.get $g) (local.get $cabs)))
        (v128.store (local.get $dst)
          (i16x8.narrow_i32x4_u
              (v128.or
                (v128.or
                  (v128.and (i32x4.shr_u (local.get $f) (i32.const 16)) (local.get $csign))
                  (v128.and (i32x4.gt_s (local.get $u) (local.get $cinf)) (local.get $cquiet)))
                (v128.bitselect
                  (i32x4.sub (f32x4.add (local.get $u) (local.get $chalf)) (local.get $chalf))
                  (i32x4.min_u
                    (i32x4.shr_u
                      (i32x4.add
                        (i32x4.add (local.get $u) (local.get $cbias))
                        (v128.and (i32x4.shr_u (local.get $u) (i32.const 13)) (local.get $cone)))
                      (i32.const 13))
                    (local.get $chinf))
                  (i32x4.lt_s (local.get $u) (local.get $cmin))))
              (v128.or
                (v128.or
                  (v128.and (i32x4.shr_u (local.get $g) (i32.const 16)) (local.get $csign))
                  (v128.and (i32x4.gt_s (local.get $w) (local.get $cinf)) (local.get $cquiet)))
                (v128.bitselect
                  (i32x4.sub (f32x4.add (local.get $w) (local.get $chalf)) (local.get $chalf))
                  (i32x4.min_u
                    (i32x4.shr_u
                      (i32x4.add
                        (i32x4.add (local.get $w) (local.get $cbias))
                        (v128.and (i32x4.shr_u (local.get $w) (i32.const 13)) (local.get $cone)))
                      (i32.const 13))
                    (local.get $chinf))
                  (i32x4.lt_s (local.get $w) (local.get $cmin))))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next))))

  ;; dst[0..n) ← bfloat16 src[0..n) (the upper half of a float32), or += when $add is 1, as
  ;; f16_decode; n rounded up to 4. Returns 1 if any value is infinite or NaN, else 0.
  (func (export "bf16_decode") (param $src i32) (param $dst i32) (param $n i32) (param $add i32) (result i32)
    (local $end i32) (local $x v128) (local $f v128) (local $bad v128) (local $cexp v128)
    (local.set $cexp (v128.const i32x4 0x7f80 0x7f80 0x7f80 0x7f80))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 3)) (i32.const -4)) (i32.const 1))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $x (v128.load16x4_u (local.get $src)))
        (local.set $bad (v128.or (local.get $bad) (i32x4.eq (v128.and (local.get $x) (local.get $cexp)) (local.get $cexp))))
        (local.set $f (i32x4.shl (local.get $x) (i32.const 16)))
        (if (local.get $add) (then (local.set $f (f32x4.add (v128.load (local.get $dst)) (local.get $f)))))
        (v128.store (local.get $dst) (local.get $f))
        (local.set $src (i32.add (local.get $src) (i32.const 8)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next)))
    (v128.any_true (local.get $bad)))

;; bfloat16 bits of float32 src[0..n) → dst[0..n), n rounded up to 8: round to nearest, ties to
  ;; even; a NaN stays a NaN (its quiet bit set, so rounding cannot carry it into infinity). Eight
  ;; values per iteration, as f32_to_f16.
  (func (export "f32_to_bf16") (param $src i32) (param $dst i32) (param $n i32)
    (local $end i32) (local $x v128) (local $y v128)
    (local $cquiet v128) (local $cround v128) (local $cone v128) (local $cabs v128) (local $cinf v128)
    (local.set $cquiet (v128.const i32x4 0x40 0x40 0x40 0x40))
    (local.set $cround (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff))
    (local.set $cone (v128.const i32x4 1 1 1 1))
    (local.set $cabs (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
    (local.set $cinf (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))
    (local.set $end (i32.add (local.get $src) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $x (v128.load (local.get $src)))
        (local.set $y (v128.load offset=16 (local.get $src)))
        (v128.store (local.get $dst)
          (i16x8.narrow_i32x4_u
            (v128.bitselect
              (v128.or (i32x4.shr_u (local.get $x) (i32.const 16)) (local.get $cquiet))
              (i32x4.shr_u
                (i32x4.add
                  (i32x4.add (local.get $x) (local.get $cround))
                  (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (local.get $cone)))
                (i32.const 16))
              (i32x4.gt_s (v128.and (local.get $x) (local.get $cabs)) (local.get $cinf)))
            (v128.bitselect
              (v128.or (i32x4.shr_u (local.get $y) (i32.const 16)) (local.get $cquiet))
              (i32x4.shr_u
                (i32x4.add
                  (i32x4.add (local.get $y) (local.get $cround))
                  (v128.and (i32x4.shr_u (local.get $y) (i32.const 16)) (local.get $cone)))
                (i32.const 16))
              (i32x4.gt_s (v128.and (local.get $y) (local.get $cabs)) (local.get $cinf)))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next))))

  ;; SGD with momentum, PyTorch's formulation, over param, grad and velocity [0..n), n rounded up
  ;; to 2, in float64 as momentum.ts's loops compute it (the new velocity feeds the parameter
  ;; update unrounded):
  ;;   classic:  v' = μ·v + g·scale + wd·p;  p ← p − lr·v'
  ;;   Nesterov: d = g·scale + wd·p;  v' = μ·v + d;  p ← p − lr·(d + μ·v')
  (func (export "momentum") (param $param i32) (param $grad i32) (param $vel i32) (param $n i32)
    (param $lr f64) (param $scale f64) (param $wd f64) (param $mu f64) (param $nesterov i32)
    (local $end i32) (local $p v128) (local $d v128) (local $v v128)
    (local $vlr v128) (local $vscale v128) (local $vwd v128) (local $vmu v128)
    (local.set $vlr (f64x2.splat (local.get $lr)))
    (local.set $vscale (f64x2.splat (local.get $scale)))
    (local.set $vwd (f64x2.splat (local.get $wd)))
    (local.set $vmu (f64x2.splat (local.get $mu)))
    (local.set $end (i32.add (local.get $param) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 1)) (i32.const -2)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $param) (local.get $end)))
        (local.set $p (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $param))))
        (if (local.get $nesterov)
          (then
            (local.set $d
              (f64x2.add
                (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $grad))) (local.get $vscale))
                (f64x2.mul (local.get $vwd) (local.get $p))))
            (local.set $v (f64x2.add (f64x2.mul (local.get $vmu) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $vel)))) (local.get $d)))
            (local.set $p (f64x2.sub (local.get $p) (f64x2.mul (local.get $vlr) (f64x2.add (local.get $d) (f64x2.mul (local.get $vmu) (local.get $v)))))))
          (else
            (local.set $v
              (f64x2.add
                (f64x2.add
                  (f64x2.mul (local.get $vmu) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $vel))))
                  (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $grad))) (local.get $vscale)))
                (f64x2.mul (local.get $vwd) (local.get $p))))
            (local.set $p (f64x2.sub (local.get $p) (f64x2.mul (local.get $vlr) (local.get $v))))))
        (v128.store64_lane 0 (local.get $vel) (f32x4.demote_f64x2_zero (local.get $v)))
        (v128.store64_lane 0 (local.get $param) (f32x4.demote_f64x2_zero (local.get $p)))
        (local.set $param (i32.add (local.get $param) (i32.const 8)))
        (local.set $grad (i32.add (local.get $grad) (i32.const 8)))
        (local.set $vel (i32.add (local.get $vel) (i32.const 8)))
        (br $next))))

  ;; Adam with bias correction and decoupled weight decay over param, grad, m and v [0..n), n
  ;; rounded up to 2, in float64 as adam.ts's loop computes it (the new moments feed the parameter
  ;; update unrounded):
  ;;   g = grad·scale;  m' = β1·m + (1−β1)·g;  v' = β2·v + (1−β2)·g·g
  ;;   p ← p·decay − lr·(m'/c1) / (√(v'/c2) + ε)
  (func (export "adam") (param $param i32) (param $grad i32) (param $m i32) (param $v i32) (param $n i32)
    (param $lr f64) (param $scale f64) (param $b1 f64) (param $b2 f64) (param $c1 f64) (param $c2 f64)
    (param $eps f64) (param $decay f64)
    (local $end i32) (local $g v128) (local $mi v128) (local $vi v128)
    (local $vlr v128) (local $vscale v128) (local $vb1 v128) (local $v1b1 v128) (local $vb2 v128) (local $v1b2 v128)
    (local $vc1 v128) (local $vc2 v128) (local $veps v128) (local $vdecay v128)
    (local.set $vlr (f64x2.splat (local.get $lr)))
    (local.set $vscale (f64x2.splat (local.get $scale)))
    (local.set $vb1 (f64x2.splat (local.get $b1)))
    (local.set $v1b1 (f64x2.splat (f64.sub (f64.const 1) (local.get $b1))))
    (local.set $vb2 (f64x2.splat (local.get $b2)))
    (local.set $v1b2 (f64x2.splat (f64.sub (f64.const 1) (local.get $b2))))
    (local.set $vc1 (f64x2.splat (local.get $c1)))
    (local.set $vc2 (f64x2.splat (local.get $c2)))
    (local.set $veps (f64x2.splat (local.get $eps)))
    (local.set $vdecay (f64x2.splat (local.get $decay)))
    (local.set $end (i32.add (local.get $param) (i32.shl (i32.and (i32.add (local.get $n) (i32.const 1)) (i32.const -2)) (i32.const 2))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $param) (local.get $end)))
        (local.set $g (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $grad))) (local.get $vscale)))
        (local.set $mi
          (f64x2.add
            (f64x2.mul (local.get $vb1) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $m))))
            (f64x2.mul (local.get $v1b1) (local.get $g))))
        (local.set $vi
          (f64x2.add
            (f64x2.mul (local.get $vb2) (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $v))))
            (f64x2.mul (f64x2.mul (local.get $v1b2) (local.get $g)) (local.get $g))))
        (v128.store64_lane 0 (local.get $m) (f32x4.demote_f64x2_zero (local.get $mi)))
        (v128.store64_lane 0 (local.get $v) (f32x4.demote_f64x2_zero (local.get $vi)))
        (v128.store64_lane 0 (local.get $param)
          (f32x4.demote_f64x2_zero
            (f64x2.sub
              (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $param))) (local.get $vdecay))
              (f64x2.div
                (f64x2.mul (local.get $vlr) (f64x2.div (local.get $mi) (local.get $vc1)))
                (f64x2.add (f64x2.sqrt (f64x2.div (local.get $vi) (local.get $vc2))) (local.get $veps))))))
        (local.set $param (i32.add (local.get $param) (i32.const 8)))
        (local.set $grad (i32.add (local.get $grad) (i32.const 8)))
        (local.set $m (i32.add (local.get $m) (i32.const 8)))
        (local.set $v (i32.add (local.get $v) (i32.const 8)))
        (br $next))))
)
